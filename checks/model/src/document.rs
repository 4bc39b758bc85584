//! The sweep document: everything a sweep found, as `patrol sweep --format
//! json` prints it and as the report, history and email read it.
//!
//! Produced by the coordinator (in `patrol-agent`), consumed by
//! `patrol-report`. It lives here so that the report never depends on the
//! agent's internals.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

use crate::fields::Fields;
use crate::{CheckOutcome, Selector, Status};

/// Current version of the sweep document format. 2: observed values are
/// plain JSON values and absent fields are left out of the JSON (version
/// 1 wrote `{"number": 0.31}` and empty strings).
pub const DOCUMENT_VERSION: u32 = 2;

/// Where a node of the expected set ended up. Every node of the expected
/// set is in exactly one state.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Answered; every check passed.
    Ok,
    /// Answered; at least one check is warn, fail or error.
    Failing,
    /// Believed alive, but did not answer before the deadline.
    NoAnswer,
    /// SWIM said down or left, at the start or during the sweep.
    Down,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ok => "ok",
            NodeState::Failing => "failing",
            NodeState::NoAnswer => "no_answer",
            NodeState::Down => "down",
        }
    }
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node's line in the sweep document. In JSON the times are left
/// out when unknown.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NodeEntry {
    pub name: String,
    /// The node's gossip address, `ip:port`.
    pub addr: String,
    pub tags: BTreeMap<String, String>,
    pub state: NodeState,
    /// Joined after the sweep started (not in the expected set) but answered.
    pub late_joiner: bool,
    /// Milliseconds from the sweep start until the request reached the node,
    /// as reported by the node (None when it never answered).
    #[serde(default)]
    pub reached_ms: Option<u64>,
    /// Milliseconds from the sweep start until the coordinator had the answer.
    #[serde(default)]
    pub answered_ms: Option<u64>,
    /// How long the node spent running its checks, in milliseconds.
    #[serde(default)]
    pub checks_ms: Option<u64>,
    /// Check outcomes in the order the node reported them.
    pub checks: Vec<CheckOutcome>,
}

impl NodeEntry {
    /// Worst status among this node's checks (Pass when it has none).
    pub fn worst(&self) -> Status {
        self.checks
            .iter()
            .map(|c| c.status)
            .max_by_key(|s| s.badness())
            .unwrap_or(Status::Pass)
    }
}

/// Counts by state.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    /// Size of the expected set (membership snapshot at the start, after the
    /// node filter).
    pub expected: u64,
    pub ok: u64,
    pub failing: u64,
    pub no_answer: u64,
    pub down: u64,
    /// Nodes outside the expected set that answered anyway.
    pub late_joiners: u64,
}

/// Where the time went. In JSON unknown times are left out.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SweepTiming {
    /// Request reached 50% / 99% / 100% of the nodes that answered (ms).
    #[serde(default)]
    pub reached_p50_ms: Option<u64>,
    #[serde(default)]
    pub reached_p99_ms: Option<u64>,
    #[serde(default)]
    pub reached_max_ms: Option<u64>,
    /// Last answer in at the coordinator (ms from start).
    #[serde(default)]
    pub last_answer_ms: Option<u64>,
    /// The sweep was complete (everyone accounted for, or deadline) (ms).
    pub completed_ms: u64,
}

/// A whole sweep.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepDocument {
    pub version: u32,
    /// 16 hex digits.
    pub sweep_id: String,
    /// Cluster name (from the config); part of the history scope.
    pub cluster: String,
    /// Name of the coordinating node.
    pub coordinator: String,
    /// Unix time of the start, milliseconds.
    pub started_at_unix_ms: u64,
    /// The deadline the sweep was given, milliseconds after the start.
    pub deadline_ms: u64,
    pub selector: Selector,
    /// Node filter by tags (all must match).
    pub node_filter: BTreeMap<String, String>,
    pub counts: StateCounts,
    /// Every node of the expected set plus late joiners, sorted by name.
    pub nodes: Vec<NodeEntry>,
    pub timing: SweepTiming,
}

impl Serialize for NodeEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut f = Fields::new(serializer, "NodeEntry", 9)?;
        f.field("name", &self.name)?;
        f.field("addr", &self.addr)?;
        f.field("tags", &self.tags)?;
        f.field("state", &self.state)?;
        f.field("late_joiner", &self.late_joiner)?;
        f.optional("reached_ms", &self.reached_ms)?;
        f.optional("answered_ms", &self.answered_ms)?;
        f.optional("checks_ms", &self.checks_ms)?;
        f.field("checks", &self.checks)?;
        f.end()
    }
}

impl Serialize for SweepTiming {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut f = Fields::new(serializer, "SweepTiming", 5)?;
        f.optional("reached_p50_ms", &self.reached_p50_ms)?;
        f.optional("reached_p99_ms", &self.reached_p99_ms)?;
        f.optional("reached_max_ms", &self.reached_max_ms)?;
        f.optional("last_answer_ms", &self.last_answer_ms)?;
        f.field("completed_ms", &self.completed_ms)?;
        f.end()
    }
}

/// How a document breaks the accounting invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountingError {
    /// A node name appears more than once in `nodes`.
    ListedTwice(String),
    /// `counts` disagree with what `nodes` says (recounted shown).
    CountsDisagree {
        stated: StateCounts,
        recounted: StateCounts,
    },
}

impl std::fmt::Display for AccountingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountingError::ListedTwice(name) => write!(f, "node {name} is listed twice"),
            AccountingError::CountsDisagree { stated, recounted } => write!(
                f,
                "counts disagree with the node list: stated {stated:?}, recounted {recounted:?}"
            ),
        }
    }
}

impl std::error::Error for AccountingError {}

impl SweepDocument {
    /// The accounting invariant: every node is listed once, in exactly one
    /// state, and `counts` (expected set, late joiners and each state) agree
    /// with the list, so `ok + failing + no_answer + down = expected + late
    /// joiners`. Every test that checks a sweep calls this.
    pub fn check_accounting(&self) -> Result<(), AccountingError> {
        let mut seen = std::collections::BTreeSet::new();
        for n in &self.nodes {
            if !seen.insert(n.name.as_str()) {
                return Err(AccountingError::ListedTwice(n.name.clone()));
            }
        }
        let mut recounted = self.clone();
        recounted.recount();
        if recounted.counts != self.counts {
            return Err(AccountingError::CountsDisagree {
                stated: self.counts.clone(),
                recounted: recounted.counts,
            });
        }
        Ok(())
    }

    /// A document read from version-1 JSON (observed values externally
    /// tagged), brought to the current version. Does nothing to a newer one.
    pub fn upgrade_from_v1(&mut self) {
        if self.version != 1 {
            return;
        }
        for c in self.nodes.iter_mut().flat_map(|n| n.checks.iter_mut()) {
            c.observed = std::mem::take(&mut c.observed).read_as_v1();
        }
        self.version = DOCUMENT_VERSION;
    }

    /// Recompute `counts` from `nodes` (used by producers and by tests).
    pub fn recount(&mut self) {
        let mut c = StateCounts::default();
        for n in &self.nodes {
            if n.late_joiner {
                c.late_joiners += 1;
            } else {
                c.expected += 1;
            }
            match n.state {
                NodeState::Ok => c.ok += 1,
                NodeState::Failing => c.failing += 1,
                NodeState::NoAnswer => c.no_answer += 1,
                NodeState::Down => c.down += 1,
            }
        }
        self.counts = c;
    }
}
