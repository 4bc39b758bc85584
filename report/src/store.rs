//! History in SQLite (`HISTORY_DIR/history.sqlite`, through rusqlite with
//! its bundled library): every sweep, plus a per-node, per-check table that
//! stores a value only when it changes.
//!
//! ```text
//! scope        cluster + selector + node filter (what "the previous sweep" means)
//! sweep        one row per sweep: id, start, the document without its nodes,
//!              headline counts, anomaly groups, drift, first-seen times
//! node_state   (scope, node, sweep) -> state, address, tags: only on change
//! obs          (scope, node, check, sweep) -> status, observed, message and
//!              the check's words (kind, expectation, fix): only on change;
//!              `current = 1` marks each (node, check)'s latest row
//! check_count  (sweep, check) -> nodes passing, warning, failing, in error
//! name, spec   interned node names, check ids and check words
//! ```
//!
//! "The previous sweep" is rebuilt from these rows: the latest row of every
//! (node, check) at or before that sweep. When it is the newest sweep of
//! its scope (the nightly case) that is just the `current` rows.
//!
//! Sweeps of a scope are stored in start order: a sweep older than the
//! newest stored one of its scope is not stored (its changes would rewrite
//! the timeline after it); storing the same sweep again does nothing.
//! Retention keeps the newest `keep` sweeps of each scope; a value row
//! older than that stays while it is the value at the oldest kept sweep.
//! Every store is one transaction; the database runs in WAL mode with
//! `synchronous = FULL`, so a committed sweep has been fsynced. The page
//! cache is 64 MiB (SQLite's default 2 MiB made a 10,000-node store read
//! the same pages from the file again and again).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use patrol_checks::{
    CheckOutcome, NodeEntry, NodeState, Observed, Severity, Status, SweepDocument,
};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::diff::FirstSeen;
use crate::error::ReportError;
use crate::summary::scope_text;

/// The database file inside `[report] history_dir`.
pub const DB_FILE: &str = "history.sqlite";

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

/// Status codes in the database; `GONE` marks a check a node stopped
/// reporting, or a node that left the sweeps of its scope.
const GONE: i64 = -1;

fn status_code(s: Status) -> i64 {
    match s {
        Status::Pass => 0,
        Status::Warn => 1,
        Status::Fail => 2,
        Status::Error => 3,
    }
}

fn status_of(code: i64) -> Option<Status> {
    match code {
        0 => Some(Status::Pass),
        1 => Some(Status::Warn),
        2 => Some(Status::Fail),
        3 => Some(Status::Error),
        _ => None,
    }
}

fn state_code(s: NodeState) -> i64 {
    match s {
        NodeState::Ok => 0,
        NodeState::Failing => 1,
        NodeState::NoAnswer => 2,
        NodeState::Down => 3,
    }
}

fn state_of(code: i64) -> Option<NodeState> {
    match code {
        0 => Some(NodeState::Ok),
        1 => Some(NodeState::Failing),
        2 => Some(NodeState::NoAnswer),
        3 => Some(NodeState::Down),
        _ => None,
    }
}

/// The words of a check that rarely change, stored once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Spec {
    kind: String,
    severity: Severity,
    expected: String,
    description: String,
    remediation: String,
}

/// What the report knew of a sweep when it was stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepSummary {
    pub groups: usize,
    pub new_groups: usize,
    pub drift: usize,
}

impl SweepSummary {
    pub fn of(report: &crate::summary::Report) -> SweepSummary {
        SweepSummary {
            groups: report.groups.len(),
            new_groups: report.new_groups(),
            drift: report.drift.len(),
        }
    }
}

/// What [`History::store`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored; the number of value rows written (changes only).
    Added { changes: usize },
    /// This sweep was stored before; nothing changed.
    AlreadyStored,
    /// Older than the newest stored sweep of its scope: not stored.
    Older,
}

/// A sweep rebuilt from the database. Nodes carry state, address, tags
/// and check outcomes (no timings, no durations).
#[derive(Debug, Clone)]
pub struct StoredSweep {
    pub doc: SweepDocument,
    pub first_seen: FirstSeen,
}

/// One point of a scope's trend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendPoint {
    pub sweep_id: String,
    pub started_ms: u64,
    pub failing: u64,
    /// No answer plus down.
    pub unreachable: u64,
    pub groups: u64,
}

/// One change in a node's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeChange {
    /// The scope in words.
    pub scope: String,
    /// The check id, or `(node)` for a change of the node's state.
    pub check: String,
    /// The sweep that first saw the new value (None: pruned).
    pub sweep: Option<(String, u64)>,
    /// The sweep of the scope before it (None: the first one kept).
    pub previous_sweep: Option<(String, u64)>,
    /// `pass`, `fail`, ... or `gone`.
    pub status: String,
    pub value: String,
    pub message: String,
}

/// A check's outcome counts in one sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckPoint {
    pub scope: String,
    pub sweep_id: String,
    pub started_ms: u64,
    pub pass: u64,
    pub warn: u64,
    pub fail: u64,
    pub error: u64,
}

impl CheckPoint {
    /// Nodes where the check did not pass.
    pub fn not_passing(&self) -> u64 {
        self.warn + self.fail + self.error
    }
}

/// The history database.
pub struct History {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("path", &self.path).finish()
    }
}

/// Scope key of a document: cluster and scope text.
fn scope_key(doc: &SweepDocument) -> String {
    format!("{}\n{}", doc.cluster, scope_text(doc))
}

/// The document without its nodes, as stored in `sweep.meta`.
fn meta_json(doc: &SweepDocument) -> Result<String, ReportError> {
    // Field by field: cloning the whole document would copy every node.
    let bare = SweepDocument {
        version: doc.version,
        sweep_id: doc.sweep_id.clone(),
        cluster: doc.cluster.clone(),
        coordinator: doc.coordinator.clone(),
        started_at_unix_ms: doc.started_at_unix_ms,
        deadline_ms: doc.deadline_ms,
        selector: doc.selector.clone(),
        node_filter: doc.node_filter.clone(),
        counts: doc.counts.clone(),
        nodes: Vec::new(),
        timing: doc.timing.clone(),
        operator: None,
    };
    serde_json::to_string(&bare).map_err(|source| ReportError::Encode {
        what: "the sweep document",
        source,
    })
}

type Current = HashMap<(i64, i64), (i64, i64, i64, String, String)>;
type NodeCurrent = HashMap<i64, (i64, i64, String, String, bool)>;

impl History {
    /// Open (or create) the database in `history_dir`.
    pub fn open(history_dir: &Path) -> Result<History, ReportError> {
        std::fs::create_dir_all(history_dir)
            .map_err(|e| ReportError::io("create", history_dir, e))?;
        History::open_file(&history_dir.join(DB_FILE))
    }

    /// Open (or create) the database file at `path`.
    pub fn open_file(path: &Path) -> Result<History, ReportError> {
        let db = |source| ReportError::Database {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(db)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF; PRAGMA cache_size = -65536;",
        )
        .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(History {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> ReportError {
        ReportError::Database {
            path: self.path.clone(),
            source,
        }
    }

    fn scope_id(&self, doc: &SweepDocument) -> Result<Option<i64>, ReportError> {
        self.conn
            .query_row(
                "SELECT id FROM scope WHERE key = ?1",
                [scope_key(doc)],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The latest stored sweep of `doc`'s scope that started before it,
    /// rebuilt from the database.
    pub fn previous(&self, doc: &SweepDocument) -> Result<Option<StoredSweep>, ReportError> {
        let Some(scope) = self.scope_id(doc)? else {
            return Ok(None);
        };
        let row: Option<(i64, String, String)> = self
            .conn
            .query_row(
                "SELECT seq, meta, first_seen FROM sweep WHERE scope = ?1 AND sweep_id <> ?2
                   AND (started_ms < ?3 OR (started_ms = ?3 AND sweep_id < ?2))
                 ORDER BY started_ms DESC, sweep_id DESC LIMIT 1",
                params![scope, doc.sweep_id, doc.started_at_unix_ms as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((seq, meta, first_seen)) = row else {
            return Ok(None);
        };
        let broken = |what: &str, e: serde_json::Error| ReportError::HistoryEntry {
            path: self.path.clone(),
            what: format!("{what} of stored sweep #{seq}: {e}"),
        };
        let mut prev: SweepDocument =
            serde_json::from_str(&meta).map_err(|e| broken("the document", e))?;
        let first_seen: FirstSeen =
            serde_json::from_str(&first_seen).map_err(|e| broken("the first-seen times", e))?;
        let newest: i64 = self
            .conn
            .query_row(
                "SELECT MAX(seq) FROM sweep WHERE scope = ?1",
                [scope],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        prev.nodes = self.nodes_as_of(scope, seq, seq == newest)?;
        Ok(Some(StoredSweep {
            doc: prev,
            first_seen,
        }))
    }

    /// Every node of `scope` with its checks as they were at sweep `seq`
    /// (`newest`: `seq` is the scope's newest sweep, whose values are the
    /// `current` rows).
    fn nodes_as_of(
        &self,
        scope: i64,
        seq: i64,
        newest: bool,
    ) -> Result<Vec<NodeEntry>, ReportError> {
        let e = |x| self.err(x);
        let mut names: HashMap<i64, String> = HashMap::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, text FROM name")
            .map_err(e)?;
        for r in stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(e)?
        {
            let (id, text) = r.map_err(e)?;
            names.insert(id, text);
        }
        let mut specs: HashMap<i64, Spec> = HashMap::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, body FROM spec")
            .map_err(e)?;
        for r in stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(e)?
        {
            let (id, body) = r.map_err(e)?;
            if let Ok(s) = serde_json::from_str(&body) {
                specs.insert(id, s);
            }
        }
        let mut nodes: BTreeMap<i64, NodeEntry> = BTreeMap::new();
        let mut stmt = self
            .conn
            .prepare_cached(if newest {
                "SELECT node, state, addr, tags, late FROM node_state
                 WHERE scope = ?1 AND current = 1 AND seq <= ?2"
            } else {
                "SELECT node, state, addr, tags, late FROM node_state o
                 WHERE scope = ?1 AND seq <= ?2 AND NOT EXISTS (
                   SELECT 1 FROM node_state n WHERE n.scope = o.scope AND n.node = o.node
                     AND n.seq > o.seq AND n.seq <= ?2)"
            })
            .map_err(e)?;
        let rows = stmt
            .query_map(params![scope, seq], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, bool>(4)?,
                ))
            })
            .map_err(e)?;
        for r in rows {
            let (node, state, addr, tags, late) = r.map_err(e)?;
            let Some(state) = state_of(state) else {
                continue; // gone
            };
            nodes.insert(
                node,
                NodeEntry {
                    name: names.get(&node).cloned().unwrap_or_default(),
                    addr,
                    tags: serde_json::from_str(&tags).unwrap_or_default(),
                    state,
                    late_joiner: late,
                    reached_ms: None,
                    answered_ms: None,
                    checks_ms: None,
                    checks: Vec::new(),
                    // Not kept in the history: the diff reads states and
                    // outcomes only.
                    clock: None,
                    silence: None,
                },
            );
        }
        let mut stmt = self
            .conn
            .prepare_cached(if newest {
                "SELECT node, check_id, status, spec, observed, message FROM obs
                 WHERE scope = ?1 AND current = 1 AND seq <= ?2"
            } else {
                "SELECT node, check_id, status, spec, observed, message FROM obs o
                 WHERE scope = ?1 AND seq <= ?2 AND NOT EXISTS (
                   SELECT 1 FROM obs n WHERE n.scope = o.scope AND n.node = o.node
                     AND n.check_id = o.check_id AND n.seq > o.seq AND n.seq <= ?2)"
            })
            .map_err(e)?;
        let rows = stmt
            .query_map(params![scope, seq], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(e)?;
        for r in rows {
            let (node, check, status, spec, observed, message) = r.map_err(e)?;
            let (Some(status), Some(n)) = (status_of(status), nodes.get_mut(&node)) else {
                continue;
            };
            if !matches!(n.state, NodeState::Ok | NodeState::Failing) {
                continue;
            }
            let spec = specs.get(&spec).cloned().unwrap_or(Spec {
                kind: String::new(),
                severity: Severity::Fail,
                expected: String::new(),
                description: String::new(),
                remediation: String::new(),
            });
            let observed: Observed =
                serde_json::from_str(&observed).map_err(|x| ReportError::HistoryEntry {
                    path: self.path.clone(),
                    what: format!("an observed value of node {}: {x}", n.name),
                })?;
            n.checks.push(CheckOutcome {
                id: names.get(&check).cloned().unwrap_or_default(),
                kind: spec.kind,
                status,
                severity: spec.severity,
                observed,
                expected: spec.expected,
                message,
                duration_us: 0,
                description: spec.description,
                remediation: spec.remediation,
            });
        }
        let mut out: Vec<NodeEntry> = nodes.into_values().collect();
        for n in &mut out {
            n.checks.sort_by(|a, b| a.id.cmp(&b.id));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Store `doc`: its sweep row, and a value row for every (node, check)
    /// whose status, value, message or words changed since the scope's
    /// previous sweep. Then keep only the newest `keep` sweeps of the scope.
    pub fn store(
        &mut self,
        doc: &SweepDocument,
        first_seen: &FirstSeen,
        summary: SweepSummary,
        keep: usize,
    ) -> Result<Stored, ReportError> {
        let path = self.path.clone();
        let e = |source| ReportError::Database {
            path: path.clone(),
            source,
        };
        let meta = meta_json(doc)?;
        let seen = serde_json::to_string(first_seen).map_err(|source| ReportError::Encode {
            what: "first-seen times",
            source,
        })?;
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute(
            "INSERT OR IGNORE INTO scope (key, cluster, text) VALUES (?1, ?2, ?3)",
            params![scope_key(doc), doc.cluster, scope_text(doc)],
        )
        .map_err(e)?;
        let scope: i64 = tx
            .query_row(
                "SELECT id FROM scope WHERE key = ?1",
                [scope_key(doc)],
                |r| r.get(0),
            )
            .map_err(e)?;
        let known: Option<i64> = tx
            .query_row(
                "SELECT seq FROM sweep WHERE scope = ?1 AND sweep_id = ?2",
                params![scope, doc.sweep_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)?;
        if known.is_some() {
            return Ok(Stored::AlreadyStored);
        }
        let newest: Option<i64> = tx
            .query_row(
                "SELECT MAX(started_ms) FROM sweep WHERE scope = ?1",
                [scope],
                |r| r.get(0),
            )
            .map_err(e)?;
        if newest.is_some_and(|n| n > doc.started_at_unix_ms as i64) {
            return Ok(Stored::Older);
        }
        let c = &doc.counts;
        tx.execute(
            "INSERT INTO sweep (scope, sweep_id, started_ms, meta, expected, failing, unreachable,
               groups, new_groups, drift, first_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                scope,
                doc.sweep_id,
                doc.started_at_unix_ms as i64,
                meta,
                c.expected as i64,
                c.failing as i64,
                (c.no_answer + c.down) as i64,
                summary.groups as i64,
                summary.new_groups as i64,
                summary.drift as i64,
                seen
            ],
        )
        .map_err(e)?;
        let seq = tx.last_insert_rowid();

        // Interned names and specs, loaded once.
        let mut names: HashMap<String, i64> = HashMap::new();
        {
            let mut stmt = tx.prepare("SELECT text, id FROM name").map_err(e)?;
            for r in stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(e)?
            {
                let (t, id) = r.map_err(e)?;
                names.insert(t, id);
            }
        }
        let mut specs: HashMap<String, i64> = HashMap::new();
        {
            let mut stmt = tx.prepare("SELECT body, id FROM spec").map_err(e)?;
            for r in stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(e)?
            {
                let (t, id) = r.map_err(e)?;
                specs.insert(t, id);
            }
        }
        // The scope's current rows: (node, check) -> (rowid, status, spec, observed, message).
        let mut current: Current = HashMap::new();
        {
            let mut stmt = tx
                .prepare(
                    "SELECT rowid, node, check_id, status, spec, observed, message FROM obs
                     WHERE scope = ?1 AND current = 1",
                )
                .map_err(e)?;
            for r in stmt
                .query_map([scope], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                })
                .map_err(e)?
            {
                let (rowid, node, check, status, spec, observed, message) = r.map_err(e)?;
                current.insert((node, check), (rowid, status, spec, observed, message));
            }
        }
        let mut node_current: NodeCurrent = HashMap::new();
        {
            let mut stmt = tx
                .prepare(
                    "SELECT rowid, node, state, addr, tags, late FROM node_state
                     WHERE scope = ?1 AND current = 1",
                )
                .map_err(e)?;
            for r in stmt
                .query_map([scope], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, bool>(5)?,
                    ))
                })
                .map_err(e)?
            {
                let (rowid, node, state, addr, tags, late) = r.map_err(e)?;
                node_current.insert(node, (rowid, state, addr, tags, late));
            }
        }

        let mut changes = 0usize;
        let mut counts: BTreeMap<i64, [i64; 4]> = BTreeMap::new();
        {
            let mut add_name = tx
                .prepare_cached("INSERT INTO name (text) VALUES (?1)")
                .map_err(e)?;
            let mut add_spec = tx
                .prepare_cached("INSERT INTO spec (body) VALUES (?1)")
                .map_err(e)?;
            let mut retire_obs = tx
                .prepare_cached("UPDATE obs SET current = 0 WHERE rowid = ?1")
                .map_err(e)?;
            let mut add_obs = tx
                .prepare_cached(
                    "INSERT INTO obs (scope, node, check_id, seq, status, spec, observed, message, current)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1)",
                )
                .map_err(e)?;
            let mut retire_node = tx
                .prepare_cached("UPDATE node_state SET current = 0 WHERE rowid = ?1")
                .map_err(e)?;
            let mut add_node = tx
                .prepare_cached(
                    "INSERT INTO node_state (scope, node, seq, state, addr, tags, late, current)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)",
                )
                .map_err(e)?;
            let intern = |map: &mut HashMap<String, i64>,
                          stmt: &mut rusqlite::CachedStatement<'_>,
                          text: &str|
             -> Result<i64, rusqlite::Error> {
                if let Some(id) = map.get(text) {
                    return Ok(*id);
                }
                let id = stmt.insert([text])?;
                map.insert(text.to_string(), id);
                Ok(id)
            };
            type Words<'a> = (&'a str, Severity, &'a str, &'a str, &'a str);
            let mut last_spec: HashMap<i64, (Words<'_>, i64)> = HashMap::new();
            let mut seen_nodes: HashSet<i64> = HashSet::new();
            let mut answered: HashSet<i64> = HashSet::new();
            let mut seen_obs: HashSet<(i64, i64)> = HashSet::new();
            for n in &doc.nodes {
                let node = intern(&mut names, &mut add_name, &n.name).map_err(e)?;
                seen_nodes.insert(node);
                let tags = serde_json::to_string(&n.tags).unwrap_or_default();
                let state = state_code(n.state);
                let same = node_current.get(&node).is_some_and(|(_, s, a, t, l)| {
                    *s == state && *a == n.addr && *t == tags && *l == n.late_joiner
                });
                if !same {
                    if let Some((rowid, ..)) = node_current.get(&node) {
                        retire_node.execute([rowid]).map_err(e)?;
                    }
                    add_node
                        .execute(params![
                            scope,
                            node,
                            seq,
                            state,
                            n.addr,
                            tags,
                            n.late_joiner
                        ])
                        .map_err(e)?;
                    changes += 1;
                }
                if !matches!(n.state, NodeState::Ok | NodeState::Failing) {
                    continue; // nothing observed: the last values stand
                }
                answered.insert(node);
                for o in &n.checks {
                    let check = intern(&mut names, &mut add_name, &o.id).map_err(e)?;
                    seen_obs.insert((node, check));
                    // Most nodes share a check's words: compare them with
                    // the last seen for this check before encoding them.
                    let words = (
                        o.kind.as_str(),
                        o.severity,
                        o.expected.as_str(),
                        o.description.as_str(),
                        o.remediation.as_str(),
                    );
                    let spec = match last_spec.get(&check) {
                        Some((w, id)) if *w == words => *id,
                        _ => {
                            let body = serde_json::to_string(&Spec {
                                kind: o.kind.clone(),
                                severity: o.severity,
                                expected: o.expected.clone(),
                                description: o.description.clone(),
                                remediation: o.remediation.clone(),
                            })
                            .unwrap_or_default();
                            let id = intern(&mut specs, &mut add_spec, &body).map_err(e)?;
                            last_spec.insert(check, (words, id));
                            id
                        }
                    };
                    let status = status_code(o.status);
                    counts.entry(check).or_default()[status as usize] += 1;
                    let observed = serde_json::to_string(&o.observed).unwrap_or_default();
                    // A passing check's message repeats its value.
                    let message = if o.status == Status::Pass {
                        ""
                    } else {
                        o.message.as_str()
                    };
                    let prev = current.get(&(node, check));
                    let same = prev.is_some_and(|(_, s, sp, ob, m)| {
                        *s == status && *sp == spec && *ob == observed && m == message
                    });
                    if same {
                        continue;
                    }
                    if let Some((rowid, ..)) = prev {
                        retire_obs.execute([rowid]).map_err(e)?;
                    }
                    add_obs
                        .execute(params![
                            scope, node, check, seq, status, spec, observed, message
                        ])
                        .map_err(e)?;
                    changes += 1;
                }
            }
            // Checks a node that answered stopped reporting, and nodes gone.
            for ((node, check), (rowid, status, spec, ..)) in &current {
                if *status == GONE || seen_obs.contains(&(*node, *check)) {
                    continue;
                }
                if !answered.contains(node) {
                    continue;
                }
                retire_obs.execute([rowid]).map_err(e)?;
                add_obs
                    .execute(params![scope, node, check, seq, GONE, spec, "null", ""])
                    .map_err(e)?;
                changes += 1;
            }
            for (node, (rowid, state, ..)) in &node_current {
                if *state == GONE || seen_nodes.contains(node) {
                    continue;
                }
                retire_node.execute([rowid]).map_err(e)?;
                add_node
                    .execute(params![scope, node, seq, GONE, "", "{}", false])
                    .map_err(e)?;
                changes += 1;
            }
            let mut add_count = tx
                .prepare_cached(
                    "INSERT INTO check_count (scope, seq, check_id, pass, warn, fail, error)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(e)?;
            for (check, [p, w, f, x]) in &counts {
                add_count
                    .execute(params![scope, seq, check, p, w, f, x])
                    .map_err(e)?;
            }
        }
        prune(&tx, scope, keep.max(2)).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(Stored::Added { changes })
    }

    /// The last `n` sweeps of `doc`'s scope, oldest first.
    pub fn trend(&self, doc: &SweepDocument, n: usize) -> Result<Vec<TrendPoint>, ReportError> {
        let Some(scope) = self.scope_id(doc)? else {
            return Ok(Vec::new());
        };
        let e = |x| self.err(x);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT sweep_id, started_ms, failing, unreachable, groups FROM sweep
                 WHERE scope = ?1 ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(e)?;
        let mut out = stmt
            .query_map(params![scope, n as i64], |r| {
                Ok(TrendPoint {
                    sweep_id: r.get(0)?,
                    started_ms: r.get::<_, i64>(1)? as u64,
                    failing: r.get::<_, i64>(2)? as u64,
                    unreachable: r.get::<_, i64>(3)? as u64,
                    groups: r.get::<_, i64>(4)? as u64,
                })
            })
            .map_err(e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?;
        out.reverse();
        Ok(out)
    }

    /// Every change of `node`'s values (of `check` only, when given), by
    /// scope, check and time, with the sweep before each change.
    pub fn node_timeline(
        &self,
        node: &str,
        check: Option<&str>,
    ) -> Result<Vec<NodeChange>, ReportError> {
        let e = |x| self.err(x);
        let mut out = Vec::new();
        let mut sweep_of = self
            .conn
            .prepare_cached("SELECT sweep_id, started_ms FROM sweep WHERE seq = ?1")
            .map_err(e)?;
        let mut before = self
            .conn
            .prepare_cached(
                "SELECT sweep_id, started_ms FROM sweep WHERE scope = ?1 AND seq < ?2
                 ORDER BY seq DESC LIMIT 1",
            )
            .map_err(e)?;
        let mut lookup = |scope: i64, seq: i64| -> Result<_, rusqlite::Error> {
            let at = sweep_of
                .query_row([seq], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .optional()?;
            let prev = before
                .query_row(params![scope, seq], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .optional()?;
            Ok((at, prev))
        };
        if check.is_none() {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT o.scope, sc.text, o.seq, o.state FROM node_state o
                     JOIN scope sc ON sc.id = o.scope
                     WHERE o.node = (SELECT id FROM name WHERE text = ?1)
                     ORDER BY o.scope, o.seq",
                )
                .map_err(e)?;
            let rows: Vec<(i64, String, i64, i64)> = stmt
                .query_map([node], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(e)?
                .collect::<Result<_, _>>()
                .map_err(e)?;
            for (scope, text, seq, state) in rows {
                let (sweep, previous_sweep) = lookup(scope, seq).map_err(e)?;
                out.push(NodeChange {
                    scope: text,
                    check: "(node)".into(),
                    sweep,
                    previous_sweep,
                    status: state_of(state).map_or("gone", |s| s.as_str()).to_string(),
                    value: String::new(),
                    message: String::new(),
                });
            }
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT o.scope, sc.text, c.text, o.seq, o.status, o.observed, o.message FROM obs o
                 JOIN scope sc ON sc.id = o.scope JOIN name c ON c.id = o.check_id
                 WHERE o.node = (SELECT id FROM name WHERE text = ?1)
                   AND (?2 IS NULL OR c.text = ?2)
                 ORDER BY o.scope, c.text, o.seq",
            )
            .map_err(e)?;
        type Row = (i64, String, String, i64, i64, String, String);
        let rows: Vec<Row> = stmt
            .query_map(params![node, check], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .map_err(e)?
            .collect::<Result<_, _>>()
            .map_err(e)?;
        for (scope, text, check, seq, status, observed, message) in rows {
            let (sweep, previous_sweep) = lookup(scope, seq).map_err(e)?;
            let value = serde_json::from_str::<Observed>(&observed)
                .map(|o| o.to_string())
                .unwrap_or_default();
            out.push(NodeChange {
                scope: text,
                check,
                sweep,
                previous_sweep,
                status: status_of(status).map_or("gone", |s| s.as_str()).to_string(),
                value,
                message,
            });
        }
        out.sort_by(|a, b| a.scope.cmp(&b.scope).then(a.check.cmp(&b.check)));
        Ok(out)
    }

    /// A check's outcome counts over every stored sweep that ran it,
    /// oldest first.
    pub fn check_history(&self, check: &str) -> Result<Vec<CheckPoint>, ReportError> {
        let e = |x| self.err(x);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT sc.text, s.sweep_id, s.started_ms, k.pass, k.warn, k.fail, k.error
                 FROM check_count k JOIN sweep s ON s.seq = k.seq JOIN scope sc ON sc.id = k.scope
                 WHERE k.check_id = (SELECT id FROM name WHERE text = ?1)
                 ORDER BY sc.text, s.started_ms",
            )
            .map_err(e)?;
        let rows = stmt
            .query_map([check], |r| {
                Ok(CheckPoint {
                    scope: r.get(0)?,
                    sweep_id: r.get(1)?,
                    started_ms: r.get::<_, i64>(2)? as u64,
                    pass: r.get::<_, i64>(3)? as u64,
                    warn: r.get::<_, i64>(4)? as u64,
                    fail: r.get::<_, i64>(5)? as u64,
                    error: r.get::<_, i64>(6)? as u64,
                })
            })
            .map_err(e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?;
        Ok(rows)
    }

    /// Sweeps stored per scope: (scope text, sweeps).
    pub fn scopes(&self) -> Result<Vec<(String, u64)>, ReportError> {
        let e = |x| self.err(x);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT sc.text, COUNT(s.seq) FROM scope sc LEFT JOIN sweep s ON s.scope = sc.id
                 GROUP BY sc.id ORDER BY sc.text",
            )
            .map_err(e)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?;
        Ok(rows)
    }
}

/// Keep the newest `keep` sweeps of `scope`; keep the value rows that are
/// still the value at the oldest kept sweep.
fn prune(tx: &rusqlite::Transaction<'_>, scope: i64, keep: usize) -> Result<(), rusqlite::Error> {
    let cutoff: Option<i64> = tx
        .query_row(
            "SELECT seq FROM sweep WHERE scope = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2",
            params![scope, keep as i64 - 1],
            |r| r.get(0),
        )
        .optional()?;
    let Some(cutoff) = cutoff else {
        return Ok(());
    };
    let older: i64 = tx.query_row(
        "SELECT COUNT(*) FROM sweep WHERE scope = ?1 AND seq < ?2",
        params![scope, cutoff],
        |r| r.get(0),
    )?;
    if older == 0 {
        return Ok(());
    }
    tx.execute(
        "DELETE FROM obs WHERE scope = ?1 AND seq < ?2 AND EXISTS (
           SELECT 1 FROM obs n WHERE n.scope = obs.scope AND n.node = obs.node
             AND n.check_id = obs.check_id AND n.seq > obs.seq AND n.seq <= ?2)",
        params![scope, cutoff],
    )?;
    tx.execute(
        "DELETE FROM node_state WHERE scope = ?1 AND seq < ?2 AND EXISTS (
           SELECT 1 FROM node_state n WHERE n.scope = node_state.scope AND n.node = node_state.node
             AND n.seq > node_state.seq AND n.seq <= ?2)",
        params![scope, cutoff],
    )?;
    tx.execute(
        "DELETE FROM check_count WHERE scope = ?1 AND seq < ?2",
        params![scope, cutoff],
    )?;
    tx.execute(
        "DELETE FROM sweep WHERE scope = ?1 AND seq < ?2",
        params![scope, cutoff],
    )?;
    Ok(())
}
