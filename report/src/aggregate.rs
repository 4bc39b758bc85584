//! Aggregation: the headline figures of a sweep and its anomalies grouped
//! across nodes by (check, status, observed value). Pure functions, no I/O.

use std::collections::HashMap;

use patrol_checks::{NodeState, Status, SweepView};
use serde::{Deserialize, Serialize};

/// The figures at the top of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    pub expected: u64,
    pub ok: u64,
    pub failing: u64,
    pub no_answer: u64,
    pub down: u64,
    pub late_joiners: u64,
    /// Check outcomes received, over every answering node.
    pub checks_run: u64,
    pub checks_passed: u64,
    /// `checks_passed / checks_run` in percent (100 when nothing ran).
    pub pass_rate_pct: f64,
    /// Sweep start to completion, milliseconds.
    pub duration_ms: u64,
    pub reached_p99_ms: Option<u64>,
    pub reached_max_ms: Option<u64>,
}

/// What identifies an anomaly group across nodes and across sweeps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKey {
    pub check: String,
    pub status: Status,
    /// The observed value as text.
    pub observed: String,
}

impl GroupKey {
    /// One-line text used as the key in history files.
    pub fn as_line(&self) -> String {
        format!("{}\u{1f}{}\u{1f}{}", self.check, self.status, self.observed)
    }
}

/// Nodes that share one anomaly: the same check, status and observed value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyGroup {
    pub key: GroupKey,
    pub kind: String,
    /// The expectation in words (from the first node of the group).
    pub expected: String,
    /// The first node's message.
    pub message: String,
    pub remediation: String,
    /// Every node in the group, sorted by name.
    pub nodes: Vec<String>,
}

impl AnomalyGroup {
    /// `fs.file-max = 65536, expected >= 1048576`; for an error,
    /// `kubelet-running: cannot observe: kubelet not found`.
    pub fn title(&self) -> String {
        if self.key.status == Status::Error {
            // An error observed nothing: what it could not observe, and why.
            return format!(
                "{}: cannot observe: {}",
                self.key.check,
                self.message.lines().next().unwrap_or("")
            );
        }
        if self.expected.is_empty() {
            format!("{} = {}", self.key.check, self.key.observed)
        } else {
            format!(
                "{} = {}, expected {}",
                self.key.check, self.key.observed, self.expected
            )
        }
    }
}

/// A node that did not answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreachable {
    pub name: String,
    pub addr: String,
    pub state: NodeState,
    /// Why a `no_answer` node is silent, in words
    /// ([`crate::silence::explain`]); empty when the document does not
    /// say (a down node, an older document).
    #[serde(default)]
    pub why: String,
}

/// Everything the report shows that comes from one sweep alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub headline: Headline,
    /// Worst status first, then most nodes first, then by check and value.
    pub groups: Vec<AnomalyGroup>,
    /// No answer first, then down; by name within each.
    pub unreachable: Vec<Unreachable>,
}

/// Headline figures of `doc`.
pub fn headline(doc: &dyn SweepView) -> Headline {
    let mut checks_run = 0u64;
    let mut checks_passed = 0u64;
    for node in doc.nodes() {
        for c in &node.checks {
            checks_run += 1;
            if c.status == Status::Pass {
                checks_passed += 1;
            }
        }
    }
    let pass_rate_pct = if checks_run == 0 {
        100.0
    } else {
        checks_passed as f64 * 100.0 / checks_run as f64
    };
    let h = doc.head();
    let c = h.counts;
    Headline {
        expected: c.expected,
        ok: c.ok,
        failing: c.failing,
        no_answer: c.no_answer,
        down: c.down,
        late_joiners: c.late_joiners,
        checks_run,
        checks_passed,
        pass_rate_pct,
        duration_ms: h.timing.completed_ms,
        reached_p99_ms: h.timing.reached_p99_ms,
        reached_max_ms: h.timing.reached_max_ms,
    }
}

/// Group every non-passing outcome of `doc` by (check, status, observed).
pub fn group_anomalies(doc: &dyn SweepView) -> Vec<AnomalyGroup> {
    let mut index: HashMap<GroupKey, usize> = HashMap::new();
    let mut groups: Vec<AnomalyGroup> = Vec::new();
    for node in doc.nodes() {
        for c in &node.checks {
            if c.status == Status::Pass {
                continue;
            }
            let key = GroupKey {
                check: c.id.clone(),
                status: c.status,
                observed: c.observed.to_string(),
            };
            match index.get(&key) {
                Some(&i) => groups[i].nodes.push(node.name.clone()),
                None => {
                    index.insert(key.clone(), groups.len());
                    groups.push(AnomalyGroup {
                        key,
                        kind: c.kind.clone(),
                        expected: c.expected.clone(),
                        message: c.message.clone(),
                        remediation: c.remediation.clone(),
                        nodes: vec![node.name.clone()],
                    });
                }
            }
        }
    }
    for g in &mut groups {
        g.nodes.sort();
        g.nodes.dedup();
    }
    groups.sort_by(|a, b| {
        b.key
            .status
            .badness()
            .cmp(&a.key.status.badness())
            .then(b.nodes.len().cmp(&a.nodes.len()))
            .then_with(|| a.key.cmp(&b.key))
    });
    groups
}

/// Nodes that did not answer: no answer first, then down.
pub fn unreachable(doc: &dyn SweepView) -> Vec<Unreachable> {
    let completed_ms = doc.head().timing.completed_ms;
    let mut out: Vec<Unreachable> = doc
        .nodes()
        .filter(|n| matches!(n.state, NodeState::NoAnswer | NodeState::Down))
        .map(|n| Unreachable {
            name: n.name.clone(),
            addr: n.addr.clone(),
            state: n.state,
            why: n
                .silence
                .as_ref()
                .map(|s| crate::silence::explain(s, completed_ms))
                .unwrap_or_default(),
        })
        .collect();
    out.sort_by(|a, b| a.state.cmp(&b.state).then_with(|| a.name.cmp(&b.name)));
    out
}

/// Headline, anomaly groups and unreachable nodes of `doc`.
pub fn aggregate(doc: &dyn SweepView) -> Aggregate {
    Aggregate {
        headline: headline(doc),
        groups: group_anomalies(doc),
        unreachable: unreachable(doc),
    }
}
