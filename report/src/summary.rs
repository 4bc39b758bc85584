//! The whole report of one sweep: aggregation, the diff against the
//! previous sweep of the same scope, and drift. Pure: built from documents
//! already in memory, read node by node ([`SweepView`]).

use patrol_checks::SweepView;
use serde::{Deserialize, Serialize};

use crate::aggregate::{self, Aggregate};
use crate::diff::{self, Change, FirstSeen, MarkedGroup, Previous};
use crate::distribution::{self, Distribution};
use crate::drift::{self, Drift};

/// The previous sweep of the same scope, as the diff sees it.
#[derive(Clone, Copy)]
pub struct PreviousSweep<'a> {
    pub doc: &'a dyn SweepView,
    /// First-seen times stored with it in the history, when known.
    pub first_seen: Option<&'a FirstSeen>,
}

impl std::fmt::Debug for PreviousSweep<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviousSweep")
            .field("sweep_id", &self.doc.head().sweep_id)
            .field("first_seen", &self.first_seen)
            .finish()
    }
}

/// Everything the rendered report shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub cluster: String,
    pub sweep_id: String,
    pub coordinator: String,
    /// The operator who asked (from the operator's certificate).
    pub operator: Option<String>,
    pub started_at_unix_ms: u64,
    /// `Selector::describe` plus the node filter.
    pub scope: String,
    pub aggregate: Aggregate,
    /// Current anomaly groups marked new or persisting, worst first.
    pub groups: Vec<MarkedGroup>,
    /// Groups of the previous sweep that are gone.
    pub resolved: Vec<MarkedGroup>,
    pub drift: Vec<Drift>,
    /// How each check's observed values spread, by check id.
    pub distributions: Vec<Distribution>,
    /// The previous sweep this was compared with (id, start).
    pub previous: Option<(String, u64)>,
    /// Problems with the history that did not stop the report (an
    /// unreadable database: no previous sweep, this one not stored).
    pub warnings: Vec<String>,
    /// Nodes gone from the coordinator's roster (with `[trust]`), most
    /// recently gone first ([`crate::roster::gone`]).
    #[serde(default)]
    pub gone: Vec<patrol_checks::document::GoneNode>,
    /// Nodes that answered with proof although SWIM did not count them
    /// alive, by name.
    #[serde(default)]
    pub swim_disagreed: Vec<crate::roster::SwimDisagreed>,
    /// Certified nodes by when their certificate expires.
    #[serde(default)]
    pub expiry: Vec<crate::expiry::ExpiryGroup>,
    /// The scope's last sweeps, oldest first, this one included (empty
    /// without a history).
    pub trend: Vec<crate::store::TrendPoint>,
    /// The zone every time is shown in (`[report] time_zone`); UTC from
    /// [`build`], set by whoever knows the config.
    #[serde(skip, default = "utc")]
    pub time_zone: jiff::tz::TimeZone,
}

fn utc() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::UTC
}

impl Report {
    /// Number of current groups that are new.
    pub fn new_groups(&self) -> usize {
        self.groups
            .iter()
            .filter(|g| g.change == Change::New)
            .count()
    }

    /// First-seen times to store with this sweep in the history.
    pub fn first_seen(&self) -> FirstSeen {
        diff::first_seen(&self.groups, self.started_at_unix_ms)
    }
}

/// Scope text of a sweep: what it checked and on which nodes.
pub fn scope_text(doc: &dyn SweepView) -> String {
    let h = doc.head();
    let mut s = h.selector.describe();
    if !h.node_filter.is_empty() {
        let f: Vec<String> = h
            .node_filter
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s.push_str(&format!(" on nodes {}", f.join(",")));
    }
    s
}

/// Build the report of `doc`, compared with `previous` when given.
pub fn build(doc: &dyn SweepView, previous: Option<PreviousSweep<'_>>) -> Report {
    let h = doc.head();
    let aggregate = aggregate::aggregate(doc);
    let prev_groups = previous.map(|p| aggregate::group_anomalies(p.doc));
    let prev = match (previous, prev_groups.as_deref()) {
        (Some(p), Some(groups)) => Some(Previous {
            groups,
            started_at_unix_ms: p.doc.head().started_at_unix_ms,
            first_seen: p.first_seen,
        }),
        _ => None,
    };
    let unanswered: Vec<&str> = aggregate
        .unreachable
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    let (groups, resolved) = diff::diff(&aggregate.groups, &unanswered, prev);
    Report {
        cluster: h.cluster.to_string(),
        sweep_id: h.sweep_id.to_string(),
        coordinator: h.coordinator.to_string(),
        operator: h.operator.map(str::to_string),
        started_at_unix_ms: h.started_at_unix_ms,
        scope: scope_text(doc),
        drift: drift::find_drift(doc),
        distributions: distribution::distributions(doc),
        previous: previous.map(|p| {
            let h = p.doc.head();
            (h.sweep_id.to_string(), h.started_at_unix_ms)
        }),
        warnings: Vec::new(),
        gone: crate::roster::gone(doc),
        swim_disagreed: crate::roster::swim_disagreed(doc),
        expiry: crate::expiry::groups(doc),
        trend: Vec::new(),
        aggregate,
        groups,
        resolved,
        time_zone: utc(),
    }
}
