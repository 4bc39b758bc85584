//! The history database's tables (the DDL, created when missing, so an
//! existing database opens as it is), the codes stored for statuses and
//! node states, and the rows read back from `node_state` and `obs` as
//! named structs.

use patrol_checks::{NodeState, Severity, Status};
use rusqlite::{Connection, Row};
use serde::{Deserialize, Serialize};

/// Settings of every connection: WAL with `synchronous = FULL` (a
/// committed sweep has been fsynced) and a 64 MiB page cache (see the
/// module doc of [`crate::store`]).
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF; PRAGMA cache_size = -65536;";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS scope (
  id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, cluster TEXT NOT NULL, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sweep (
  seq INTEGER PRIMARY KEY, scope INTEGER NOT NULL, sweep_id TEXT NOT NULL,
  started_ms INTEGER NOT NULL, meta TEXT NOT NULL,
  expected INTEGER NOT NULL, failing INTEGER NOT NULL, unreachable INTEGER NOT NULL,
  groups INTEGER NOT NULL, new_groups INTEGER NOT NULL, drift INTEGER NOT NULL,
  first_seen TEXT NOT NULL, UNIQUE (scope, sweep_id));
CREATE TABLE IF NOT EXISTS name (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS spec (id INTEGER PRIMARY KEY, body TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS node_state (
  scope INTEGER NOT NULL, node INTEGER NOT NULL, seq INTEGER NOT NULL,
  state INTEGER NOT NULL, addr TEXT NOT NULL, tags TEXT NOT NULL, late INTEGER NOT NULL,
  current INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS node_state_key ON node_state (scope, node, seq);
CREATE INDEX IF NOT EXISTS node_state_current ON node_state (scope) WHERE current = 1;
CREATE TABLE IF NOT EXISTS obs (
  scope INTEGER NOT NULL, node INTEGER NOT NULL, check_id INTEGER NOT NULL, seq INTEGER NOT NULL,
  status INTEGER NOT NULL, spec INTEGER NOT NULL, observed TEXT NOT NULL, message TEXT NOT NULL,
  current INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS obs_key ON obs (scope, node, check_id, seq);
CREATE INDEX IF NOT EXISTS obs_node ON obs (node, check_id, seq);
CREATE INDEX IF NOT EXISTS obs_current ON obs (scope) WHERE current = 1;
CREATE TABLE IF NOT EXISTS check_count (
  scope INTEGER NOT NULL, seq INTEGER NOT NULL, check_id INTEGER NOT NULL,
  pass INTEGER NOT NULL, warn INTEGER NOT NULL, fail INTEGER NOT NULL, error INTEGER NOT NULL,
  PRIMARY KEY (seq, check_id));
CREATE INDEX IF NOT EXISTS check_count_check ON check_count (check_id, seq);
";

/// Set up a freshly opened connection: its pragmas, and every table and
/// index that does not exist yet.
pub(super) fn prepare(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(PRAGMAS)?;
    conn.execute_batch(SCHEMA)
}

/// Status codes in the database; `GONE` marks a check a node stopped
/// reporting, or a node that left the sweeps of its scope.
pub(super) const GONE: i64 = -1;

pub(super) fn status_code(s: Status) -> i64 {
    match s {
        Status::Pass => 0,
        Status::Warn => 1,
        Status::Fail => 2,
        Status::Error => 3,
    }
}

pub(super) fn status_of(code: i64) -> Option<Status> {
    match code {
        0 => Some(Status::Pass),
        1 => Some(Status::Warn),
        2 => Some(Status::Fail),
        3 => Some(Status::Error),
        _ => None,
    }
}

pub(super) fn state_code(s: NodeState) -> i64 {
    match s {
        NodeState::Ok => 0,
        NodeState::Failing => 1,
        NodeState::NoAnswer => 2,
        NodeState::Down => 3,
    }
}

pub(super) fn state_of(code: i64) -> Option<NodeState> {
    match code {
        0 => Some(NodeState::Ok),
        1 => Some(NodeState::Failing),
        2 => Some(NodeState::NoAnswer),
        3 => Some(NodeState::Down),
        _ => None,
    }
}

/// The words of a check that rarely change, stored once (`spec.body`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Spec {
    pub kind: String,
    pub severity: Severity,
    pub expected: String,
    pub description: String,
    pub remediation: String,
}

impl Spec {
    /// The words of a check whose `spec` row is missing or unreadable.
    pub fn unknown() -> Spec {
        Spec {
            kind: String::new(),
            severity: Severity::Fail,
            expected: String::new(),
            description: String::new(),
            remediation: String::new(),
        }
    }
}

/// A `node_state` row: a node's state, address, tags and late-joiner mark
/// from one sweep on. Selected as `node, state, addr, tags, late`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NodeRow {
    pub node: i64,
    /// A [`state_code`], or [`GONE`].
    pub state: i64,
    pub addr: String,
    /// The tags as JSON.
    pub tags: String,
    pub late: bool,
}

impl NodeRow {
    /// The row from columns `node, state, addr, tags, late`, in that order.
    pub fn read(r: &Row<'_>) -> Result<NodeRow, rusqlite::Error> {
        Ok(NodeRow {
            node: r.get(0)?,
            state: r.get(1)?,
            addr: r.get(2)?,
            tags: r.get(3)?,
            late: r.get(4)?,
        })
    }
}

/// An `obs` row: a node's outcome of one check from one sweep on.
/// Selected as `node, check_id, status, spec, observed, message`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ObsRow {
    pub node: i64,
    pub check: i64,
    /// A [`status_code`], or [`GONE`].
    pub status: i64,
    /// The `spec` row of the check's words.
    pub spec: i64,
    /// The observed value as JSON.
    pub observed: String,
    pub message: String,
}

impl ObsRow {
    /// The row from columns `node, check_id, status, spec, observed,
    /// message`, in that order.
    pub fn read(r: &Row<'_>) -> Result<ObsRow, rusqlite::Error> {
        Ok(ObsRow {
            node: r.get(0)?,
            check: r.get(1)?,
            status: r.get(2)?,
            spec: r.get(3)?,
            observed: r.get(4)?,
            message: r.get(5)?,
        })
    }
}
