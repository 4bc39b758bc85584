//! The check executor: runs the checks of the node's *own* config that a
//! sweep's selector names and whose tags match this node. A request never
//! carries a check definition or a command.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use patrol_checks::{Catalog, CheckOutcome, RealHost, Runner, Selector};

use crate::agent::Inspector;

/// Runs checks from a [`Catalog`] on this machine.
pub struct CatalogInspector {
    catalog: Arc<Catalog>,
    tags: BTreeMap<String, String>,
    runner: Runner,
}

impl std::fmt::Debug for CatalogInspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogInspector")
            .field("checks", &self.catalog.len())
            .finish()
    }
}

impl CatalogInspector {
    pub fn new(catalog: Catalog, tags: BTreeMap<String, String>, concurrency: usize) -> Self {
        CatalogInspector {
            catalog: Arc::new(catalog),
            tags,
            runner: Runner::new(Arc::new(RealHost), concurrency.max(1)),
        }
    }

    /// Use another runner (e.g. over a fixture host).
    pub fn with_runner(catalog: Catalog, tags: BTreeMap<String, String>, runner: Runner) -> Self {
        CatalogInspector {
            catalog: Arc::new(catalog),
            tags,
            runner,
        }
    }
}

impl Inspector for CatalogInspector {
    fn inspect(
        &self,
        selector: &Selector,
        budget: Duration,
    ) -> Pin<Box<dyn Future<Output = Vec<CheckOutcome>> + Send>> {
        let checks = self.catalog.select(selector, &self.tags);
        let runner = self.runner.clone();
        Box::pin(async move { runner.run_within(&checks, budget).await })
    }
}
