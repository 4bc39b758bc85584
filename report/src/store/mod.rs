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
//!
//! **Invariant:** storing a sweep and rebuilding one read the value rows
//! node by node (each node's `current` rows as it is written; the node
//! and value rows side by side, in node order, as a sweep is rebuilt):
//! neither holds the rows of a whole scope, about a million at 100,000
//! nodes. Besides the documents they hold the page cache, the interned
//! names and one node.
//!
//! - `schema`: the tables, the stored codes and the rows read back;
//! - `write`: [`History::store`], one sweep in one transaction, and
//!   retention;
//! - `read`: the previous sweep rebuilt, trends, timelines and counts.

mod read;
mod schema;
mod write;

use std::path::{Path, PathBuf};

use patrol_checks::{CompactDocument, SweepView};
use rusqlite::{Connection, OptionalExtension, Params, Row};
use serde::{Deserialize, Serialize};

use crate::diff::FirstSeen;
use crate::error::ReportError;
use crate::summary::scope_text;

/// The database file inside `[report] history_dir`.
pub const DB_FILE: &str = "history.sqlite";

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
    pub doc: CompactDocument,
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
fn scope_key(doc: &dyn SweepView) -> String {
    format!("{}\n{}", doc.head().cluster, scope_text(doc))
}

/// The id of the scope with `key`, if it was ever stored.
fn scope_of(conn: &Connection, key: &str) -> Result<Option<i64>, rusqlite::Error> {
    conn.query_row("SELECT id FROM scope WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

/// Every row `sql` selects with `params`, each read by `read`, collected
/// into a `Vec`, a map, ...
fn select<T, B: FromIterator<T>>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    read: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<B> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, read)?;
    rows.collect()
}

impl History {
    /// Open (or create) the database in `history_dir`.
    pub fn open(history_dir: &Path) -> Result<History, ReportError> {
        crate::permissions::create_dir(history_dir)
            .map_err(|e| ReportError::io("create", history_dir, e))?;
        History::open_file(&history_dir.join(DB_FILE))
    }

    /// Open (or create) the database file at `path`.
    pub fn open_file(path: &Path) -> Result<History, ReportError> {
        let db = |source| ReportError::Database {
            path: path.to_path_buf(),
            source,
        };
        if path != Path::new(":memory:") {
            crate::permissions::touch_file(path).map_err(|e| ReportError::io("create", path, e))?;
        }
        let conn = Connection::open(path).map_err(db)?;
        schema::prepare(&conn).map_err(db)?;
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

    fn scope_id(&self, doc: &dyn SweepView) -> Result<Option<i64>, ReportError> {
        scope_of(&self.conn, &scope_key(doc)).map_err(|e| self.err(e))
    }
}
