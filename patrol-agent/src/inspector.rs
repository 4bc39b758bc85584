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

/// What a stop ends: a running check's process goes with its agent.
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use patrol_core::sweep::StartSweep;
    use patrol_core::NodeSettings;

    use super::CatalogInspector;
    use crate::agent::{start, AgentSettings, StopMode};
    use crate::envelope::Envelope;
    use crate::keyring::Keyring;
    use crate::transport::MemoryNetwork;

    /// The pid of a child of this process whose command line is exactly
    /// `args`, if one runs.
    fn child_running(args: &[&str]) -> Option<u32> {
        let me = std::process::id();
        let want: Vec<u8> = args
            .iter()
            .flat_map(|a| [a.as_bytes(), b"\0"].concat())
            .collect();
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            (cmdline == want && parent_of(pid) == Some(me) && alive(pid)).then_some(pid)
        })
    }

    /// The parent of `pid`, from `/proc/<pid>/stat` (the fields after the
    /// command's closing parenthesis: state, ppid, ...).
    fn parent_of(pid: u32) -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        rest.split_whitespace().nth(1)?.parse().ok()
    }

    /// Whether `pid` still runs: it exists and is not a zombie (killed,
    /// waiting to be reaped).
    fn alive(pid: u32) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        !matches!(state, None | Some("Z" | "X"))
    }

    /// Poll `probe` every 20 ms for up to `limit`.
    async fn within(limit: Duration, mut probe: impl FnMut() -> bool) -> bool {
        let start = tokio::time::Instant::now();
        while start.elapsed() < limit {
            if probe() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        probe()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stopping_the_agent_kills_the_process_of_a_running_check() {
        // A duration no other test sleeps, to find this check's process.
        let args = ["sleep", "47.25"];
        let toml = format!(
            "[[check]]\nid = \"slow\"\ntype = \"command\"\nprogram = \"{}\"\nargs = [\"{}\"]\ntimeout = \"60s\"\n",
            args[0], args[1]
        );
        let config = patrol_config::Config::parse(&toml, std::path::Path::new("test.toml"))
            .expect("test config parses");
        let catalog = patrol_checks::Catalog::from_config(&config).expect("test checks parse");
        let inspector = CatalogInspector::new(catalog, BTreeMap::new(), 4);
        let settings = AgentSettings {
            name: "solo".into(),
            tags: BTreeMap::new(),
            seeds: vec![],
            advertise: None,
            node: NodeSettings {
                cluster: "test".into(),
                ..NodeSettings::default()
            },
            clock: Default::default(),
            started_at_unix_ms: None,
            trust: None,
        };
        let net = MemoryNetwork::new(0.0, 1);
        let envelope = Envelope::new(Keyring::generate(), "test");
        let agent = start(settings, net.attach(), envelope, Arc::new(inspector));
        let _events = agent
            .start_sweep(StartSweep {
                selector: Default::default(),
                node_filter: BTreeMap::new(),
                deadline: Duration::from_secs(60),
                id: None,
                authorization: None,
            })
            .await
            .expect("the agent runs");
        let mut pid = None;
        assert!(
            within(Duration::from_secs(10), || {
                pid = child_running(&args);
                pid.is_some()
            })
            .await,
            "the slow check never started"
        );
        let pid = pid.unwrap_or_default();
        agent.stop(StopMode::Crash).await;
        // The check had 60 s left: only the stop can end it this soon.
        assert!(
            within(Duration::from_secs(5), || !alive(pid)).await,
            "the check's process {pid} outlived the agent's stop"
        );
    }
}
