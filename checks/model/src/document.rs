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

/// The longest deadline a sweep may have: 10 minutes. It bounds how long a
/// participant remembers a sweep (its replay guard and its answer timers)
/// and how long a coordinator holds one open. This is the one place the
/// cap is written: the sweep core's `SweepSettings::max_deadline` defaults
/// to it and may only lower it, the control channel's `deadline_max`
/// follows the node's, and the config refuses a `[sweep] default_deadline`
/// or `[checks] default_timeout` above it (a longer one could never run).
pub const MAX_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

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
    /// Check outcomes in the order the node reported them, then what the
    /// coordinator found about the node itself (`patrol.clock_skew` when
    /// its clock is off by more than the coordinator's limit).
    pub checks: Vec<CheckOutcome>,
    /// The node's clock offset from the coordinator's, measured by the
    /// sweep itself; every node that answered has one (absent for nodes
    /// that did not answer, or whose answer did not decode).
    #[serde(default)]
    pub clock: Option<ClockOffset>,
    /// Why the node is silent, as far as the coordinator can tell; only
    /// `no_answer` nodes have one.
    #[serde(default)]
    pub silence: Option<Silence>,
    /// SWIM's view of a node that answered although SWIM did not count it
    /// alive when the sweep started or while it ran (with `[trust]` the
    /// roster expects it and the coordinator asks it directly): the
    /// answer, proven by the node, is what the sweep records; this says
    /// SWIM disagreed.
    #[serde(default)]
    pub swim: Option<SwimState>,
}

/// A node's clock offset from the coordinator's, estimated the way NTP
/// does from the four times of one request and answer: the request's
/// issue time `t1` (coordinator's clock), its arrival at the node `t2` and
/// the answer's departure `t3` (node's clock), the answer's arrival `t4`
/// (coordinator's clock):
///
/// ```text
/// offset = ((t2 - t1) + (t3 - t4)) / 2
/// bound  = ((t4 - t1) - (t3 - t2)) / 2      half the round trip, rounded up
/// ```
///
/// Whatever the split of the round trip between the two directions, the
/// true offset lies within `offset ± bound`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockOffset {
    /// Milliseconds the node's clock is ahead of the coordinator's
    /// (negative: behind).
    pub offset_ms: i64,
    /// Milliseconds the true offset may differ from `offset_ms` either way.
    pub bound_ms: u64,
}

impl ClockOffset {
    /// The estimate from the four times (unix milliseconds; see the type's
    /// doc). A negative round trip (a clock stepped in between) counts as
    /// zero.
    pub fn from_times(t1: u64, t2: u64, t3: u64, t4: u64) -> ClockOffset {
        let (t1, t2, t3, t4) = (
            i128::from(t1),
            i128::from(t2),
            i128::from(t3),
            i128::from(t4),
        );
        let twice = (t2 - t1) + (t3 - t4);
        // Halved, rounded half away from zero.
        let offset = (twice + twice.signum()) / 2;
        let round_trip = ((t4 - t1) - (t3 - t2)).max(0);
        let bound = (round_trip + 1) / 2;
        ClockOffset {
            offset_ms: offset.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
            bound_ms: bound.min(i128::from(u64::MAX)) as u64,
        }
    }

    /// The smallest offset the measurement allows: `|offset| - bound`, or
    /// zero when the bound covers zero. A clock is known to be further off
    /// than `x` only when this exceeds `x`.
    pub fn least_skew_ms(&self) -> u64 {
        self.offset_ms.unsigned_abs().saturating_sub(self.bound_ms)
    }
}

/// A member's SWIM state as the coordinator's mesh saw it.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwimState {
    /// Answers SWIM's probes (directly or through others).
    Alive,
    /// A probe failed: the mesh suspects it, and declares it down unless it
    /// refutes that in time.
    Suspect,
    /// Declared down (or left).
    Down,
    /// Not in the coordinator's member list (or the document was made
    /// without one).
    Unknown,
}

impl SwimState {
    pub fn as_str(self) -> &'static str {
        match self {
            SwimState::Alive => "alive",
            SwimState::Suspect => "suspect",
            SwimState::Down => "down",
            SwimState::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for SwimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the coordinator knew about a `no_answer` node when the sweep
/// ended: enough to tell an agent that runs but did not answer (heard
/// lately, alive, asked again by the backstop) from a node the mesh
/// cannot reach (not heard for long, suspect).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Silence {
    /// Milliseconds between the last datagram the coordinator received
    /// from the node (any kind: SWIM, gossip, sweep) and the end of the
    /// sweep. Absent: nothing heard from it since the coordinator's agent
    /// started (or since it forgot the member).
    #[serde(default)]
    pub last_heard_ago_ms: Option<u64>,
    /// The node's SWIM state at the coordinator when the sweep ended.
    pub swim: SwimState,
    /// How many backstop rounds sent the request straight to the node (0:
    /// none did, e.g. the deadline came first).
    pub backstop_requests: u32,
}

impl Serialize for Silence {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut f = Fields::new(serializer, "Silence", 3)?;
        f.optional("last_heard_ago_ms", &self.last_heard_ago_ms)?;
        f.field("swim", &self.swim)?;
        f.field("backstop_requests", &self.backstop_requests)?;
        f.end()
    }
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
    /// The operator who asked for the sweep, from the operator's
    /// certificate (`null` when the cluster runs without identities).
    #[serde(default)]
    pub operator: Option<String>,
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
    /// With `[trust]`: nodes that left the coordinator's roster (the nodes
    /// it expects) within the roster's expiry, within the node filter:
    /// not expected any more, listed with when they were last seen.
    #[serde(default)]
    pub gone: Vec<GoneNode>,
}

/// A node that left the coordinator's roster.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoneNode {
    pub name: String,
    pub addr: String,
    /// `left` (its own signed leave), `revoked`, `forgotten` (an
    /// operator's `patrol roster forget`) or `expired` (not seen for the
    /// roster's expiry).
    pub reason: String,
    pub last_seen_unix_ms: u64,
    pub gone_unix_ms: u64,
}

impl Serialize for NodeEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut f = Fields::new(serializer, "NodeEntry", 12)?;
        f.field("name", &self.name)?;
        f.field("addr", &self.addr)?;
        f.field("tags", &self.tags)?;
        f.field("state", &self.state)?;
        f.field("late_joiner", &self.late_joiner)?;
        f.optional("reached_ms", &self.reached_ms)?;
        f.optional("answered_ms", &self.answered_ms)?;
        f.optional("checks_ms", &self.checks_ms)?;
        f.field("checks", &self.checks)?;
        f.optional("clock", &self.clock)?;
        f.optional("silence", &self.silence)?;
        f.optional("swim", &self.swim)?;
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
            count(&mut c, n.late_joiner, n.state);
        }
        self.counts = c;
    }
}

/// Count one node into `c`.
pub(crate) fn count(c: &mut StateCounts, late_joiner: bool, state: NodeState) {
    if late_joiner {
        c.late_joiners += 1;
    } else {
        c.expected += 1;
    }
    match state {
        NodeState::Ok => c.ok += 1,
        NodeState::Failing => c.failing += 1,
        NodeState::NoAnswer => c.no_answer += 1,
        NodeState::Down => c.down += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_three_seconds_ahead_is_measured_within_half_the_round_trip() {
        // Request issued at 1000 (coordinator), reached the node at 4010 by
        // its clock (3 s ahead, 10 ms on the way), answer left at 4050 and
        // arrived at 1070: 20 ms back.
        let c = ClockOffset::from_times(1000, 4010, 4050, 1070);
        assert_eq!(c.offset_ms, 2995);
        assert_eq!(c.bound_ms, 15);
        assert!((c.offset_ms - 3000).unsigned_abs() <= c.bound_ms);
        assert_eq!(c.least_skew_ms(), 2980);
    }

    #[test]
    fn a_clock_behind_has_a_negative_offset_and_a_bound_covering_zero_is_no_skew() {
        let behind = ClockOffset::from_times(10_000, 8_001, 8_003, 10_004);
        assert_eq!(behind.offset_ms, -2000);
        assert_eq!(behind.bound_ms, 1);
        let unsure = ClockOffset::from_times(0, 30, 31, 100);
        assert_eq!(unsure.bound_ms, 50);
        assert_eq!(unsure.least_skew_ms(), 0);
    }

    #[test]
    fn a_clock_stepped_during_the_round_trip_gives_no_negative_bound() {
        let c = ClockOffset::from_times(1000, 1000, 5000, 1001);
        assert_eq!(c.bound_ms, 0);
        assert_eq!(c.offset_ms, 2000);
    }
}
