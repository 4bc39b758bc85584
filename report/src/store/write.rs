//! Writing the history: [`History::store`] adds one sweep in one
//! transaction (its `sweep` row, then a value row for every node and
//! (node, check) whose value changed since the scope's previous sweep,
//! then the per-check counts), and [`prune`] keeps the newest sweeps.

use std::collections::{BTreeMap, HashMap, HashSet};

use patrol_checks::{
    CheckOutcome, NodeEntry, NodeState, Severity, Status, SweepDocument, SweepView,
};
use rusqlite::{params, CachedStatement, Connection, OptionalExtension, Transaction};

use super::schema::{state_code, status_code, NodeRow, ObsRow, Spec, GONE};
use super::{scope_key, scope_of, select, History, Stored, SweepSummary};
use crate::diff::FirstSeen;
use crate::error::ReportError;
use crate::summary::scope_text;

impl History {
    /// Store `doc`: its sweep row, and a value row for every (node, check)
    /// whose status, value, message or words changed since the scope's
    /// previous sweep. Then keep only the newest `keep` sweeps of the scope.
    pub fn store(
        &mut self,
        doc: &dyn SweepView,
        first_seen: &FirstSeen,
        summary: SweepSummary,
        keep: usize,
    ) -> Result<Stored, ReportError> {
        let path = self.path.clone();
        let e = |source| ReportError::Database {
            path: path.clone(),
            source,
        };
        let sweep = SweepRow {
            meta: meta_json(doc)?,
            first_seen: serde_json::to_string(first_seen).map_err(|source| {
                ReportError::Encode {
                    what: "first-seen times",
                    source,
                }
            })?,
            summary,
        };
        let tx = self.conn.transaction().map_err(e)?;
        // Returning early drops `tx`: nothing of this sweep is kept.
        let (scope, seq) = match add_sweep(&tx, doc, &sweep).map_err(e)? {
            Placed::At { scope, seq } => (scope, seq),
            Placed::Not(stored) => return Ok(stored),
        };
        let changes = add_values(&tx, doc, scope, seq).map_err(e)?;
        prune(&tx, scope, keep.max(2)).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(Stored::Added { changes })
    }
}

/// The document without its nodes, as stored in `sweep.meta`.
fn meta_json(doc: &dyn SweepView) -> Result<String, ReportError> {
    // Field by field: cloning the whole document would copy every node.
    let h = doc.head();
    let bare = SweepDocument {
        version: h.version,
        sweep_id: h.sweep_id.to_string(),
        cluster: h.cluster.to_string(),
        coordinator: h.coordinator.to_string(),
        started_at_unix_ms: h.started_at_unix_ms,
        deadline_ms: h.deadline_ms,
        selector: h.selector.clone(),
        node_filter: h.node_filter.clone(),
        counts: h.counts.clone(),
        nodes: Vec::new(),
        timing: h.timing.clone(),
        operator: None,
        gone: h.gone.to_vec(),
    };
    serde_json::to_string(&bare).map_err(|source| ReportError::Encode {
        what: "the sweep document",
        source,
    })
}

/// What a `sweep` row holds besides the document's own fields.
struct SweepRow {
    /// [`meta_json`].
    meta: String,
    /// The first-seen times as JSON.
    first_seen: String,
    summary: SweepSummary,
}

/// Where a sweep goes: its new `sweep` row, or why it is not stored.
enum Placed {
    At { scope: i64, seq: i64 },
    Not(Stored),
}

/// Add `doc`'s scope if it is new and its `sweep` row, unless the sweep is
/// stored already or older than the newest of its scope.
fn add_sweep(tx: &Connection, doc: &dyn SweepView, row: &SweepRow) -> rusqlite::Result<Placed> {
    let key = scope_key(doc);
    let h = doc.head();
    tx.execute(
        "INSERT OR IGNORE INTO scope (key, cluster, text) VALUES (?1, ?2, ?3)",
        params![key, h.cluster, scope_text(doc)],
    )?;
    let scope = scope_of(tx, &key)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    let known: Option<i64> = tx
        .query_row(
            "SELECT seq FROM sweep WHERE scope = ?1 AND sweep_id = ?2",
            params![scope, h.sweep_id],
            |r| r.get(0),
        )
        .optional()?;
    if known.is_some() {
        return Ok(Placed::Not(Stored::AlreadyStored));
    }
    let newest: Option<i64> = tx.query_row(
        "SELECT MAX(started_ms) FROM sweep WHERE scope = ?1",
        [scope],
        |r| r.get(0),
    )?;
    if newest.is_some_and(|n| n > h.started_at_unix_ms as i64) {
        return Ok(Placed::Not(Stored::Older));
    }
    let c = h.counts;
    tx.execute(
        "INSERT INTO sweep (scope, sweep_id, started_ms, meta, expected, failing, unreachable,
           groups, new_groups, drift, first_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            scope,
            h.sweep_id,
            h.started_at_unix_ms as i64,
            row.meta,
            c.expected as i64,
            c.failing as i64,
            (c.no_answer + c.down) as i64,
            row.summary.groups as i64,
            row.summary.new_groups as i64,
            row.summary.drift as i64,
            row.first_seen
        ],
    )?;
    Ok(Placed::At {
        scope,
        seq: tx.last_insert_rowid(),
    })
}

/// Write the value rows and check counts of sweep `seq` of `scope`;
/// returns the number of value rows written.
fn add_values(
    tx: &Connection,
    doc: &dyn SweepView,
    scope: i64,
    seq: i64,
) -> rusqlite::Result<usize> {
    let mut w = ValueWriter::new(tx, scope, seq)?;
    for n in doc.nodes() {
        w.node(&n)?;
    }
    w.retire_missing()?;
    let mut add_count = tx.prepare_cached(
        "INSERT INTO check_count (scope, seq, check_id, pass, warn, fail, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (check, [p, w, f, x]) in &w.counts {
        add_count.execute(params![scope, seq, check, p, w, f, x])?;
    }
    Ok(w.changes)
}

/// The texts of one interning table (`name` or `spec`) and their ids:
/// loaded once, added to as new texts come.
struct Interner<'t> {
    ids: HashMap<String, i64>,
    add: CachedStatement<'t>,
}

impl<'t> Interner<'t> {
    /// `sql` selects `text, id`; `insert` adds a text as `?1`.
    fn load(tx: &'t Connection, sql: &str, insert: &str) -> rusqlite::Result<Interner<'t>> {
        let ids = select(tx, sql, [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(Interner {
            ids,
            add: tx.prepare_cached(insert)?,
        })
    }

    /// The id of `text`, added when it is new.
    fn id(&mut self, text: &str) -> rusqlite::Result<i64> {
        if let Some(id) = self.ids.get(text) {
            return Ok(*id);
        }
        let id = self.add.insert([text])?;
        self.ids.insert(text.to_string(), id);
        Ok(id)
    }
}

/// A scope's `current = 1` row, with its rowid (to retire it).
struct Current<T> {
    rowid: i64,
    row: T,
}

/// The `current = 1` rows of one node of a scope: its state row, and one
/// `obs` row per check. Read node by node as the sweep is written, never
/// the whole scope at once: at 100,000 nodes a scope has about a million
/// current `obs` rows, and a map of them all took 180 MB of the 390 MB
/// that `patrol sweep --email` peaked at (bench/RESULTS.md).
struct NodeNow {
    state: Option<Current<NodeRow>>,
    /// By check id; a node has a few dozen checks at most.
    obs: Vec<Current<ObsRow>>,
}

/// The current rows of `node` in `scope`. `INDEXED BY` keeps SQLite on
/// the (scope, node) prefix: the partial `*_current` indexes cover the
/// whole scope.
fn current_of(tx: &Connection, scope: i64, node: i64) -> rusqlite::Result<NodeNow> {
    let state = tx
        .prepare_cached(
            "SELECT node, state, addr, tags, late, rowid FROM node_state INDEXED BY node_state_key
             WHERE scope = ?1 AND node = ?2 AND current = 1",
        )?
        .query_row(params![scope, node], |r| {
            Ok(Current {
                rowid: r.get(5)?,
                row: NodeRow::read(r)?,
            })
        })
        .optional()?;
    let obs = select(
        tx,
        "SELECT node, check_id, status, spec, observed, message, rowid FROM obs INDEXED BY obs_key
         WHERE scope = ?1 AND node = ?2 AND current = 1",
        params![scope, node],
        |r| {
            Ok(Current {
                rowid: r.get(6)?,
                row: ObsRow::read(r)?,
            })
        },
    )?;
    Ok(NodeNow { state, obs })
}

/// The scope's nodes whose current state row is not `GONE`, with that
/// row's rowid: (node, rowid).
fn present_nodes(tx: &Connection, scope: i64) -> rusqlite::Result<Vec<(i64, i64)>> {
    select(
        tx,
        "SELECT node, rowid FROM node_state WHERE scope = ?1 AND current = 1 AND state <> ?2",
        params![scope, GONE],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// A check's words as a node reported them, borrowed from the document.
#[derive(Clone, Copy, PartialEq)]
struct Words<'d> {
    kind: &'d str,
    severity: Severity,
    expected: &'d str,
    description: &'d str,
    remediation: &'d str,
}

impl<'d> Words<'d> {
    fn of(o: &'d CheckOutcome) -> Words<'d> {
        Words {
            kind: &o.kind,
            severity: o.severity,
            expected: &o.expected,
            description: &o.description,
            remediation: &o.remediation,
        }
    }

    /// These words, owned (the document lends a node only while it is
    /// written).
    fn spec(self) -> Spec {
        Spec {
            kind: self.kind.to_string(),
            severity: self.severity,
            expected: self.expected.to_string(),
            description: self.description.to_string(),
            remediation: self.remediation.to_string(),
        }
    }

    /// Whether `spec` holds these words.
    fn are(&self, spec: &Spec) -> bool {
        self.kind == spec.kind
            && self.severity == spec.severity
            && self.expected == spec.expected
            && self.description == spec.description
            && self.remediation == spec.remediation
    }
}

/// The statements that add and retire value rows.
struct Statements<'t> {
    add_obs: CachedStatement<'t>,
    retire_obs: CachedStatement<'t>,
    add_node: CachedStatement<'t>,
    retire_node: CachedStatement<'t>,
}

impl<'t> Statements<'t> {
    fn prepare(tx: &'t Connection) -> rusqlite::Result<Statements<'t>> {
        Ok(Statements {
            add_obs: tx.prepare_cached(
                "INSERT INTO obs (scope, node, check_id, seq, status, spec, observed, message, current)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1)",
            )?,
            retire_obs: tx.prepare_cached("UPDATE obs SET current = 0 WHERE rowid = ?1")?,
            add_node: tx.prepare_cached(
                "INSERT INTO node_state (scope, node, seq, state, addr, tags, late, current)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)",
            )?,
            retire_node: tx.prepare_cached("UPDATE node_state SET current = 0 WHERE rowid = ?1")?,
        })
    }
}

/// The value rows of one sweep being written: each new value retires the
/// current row it replaces and becomes the current one.
struct ValueWriter<'t> {
    tx: &'t Connection,
    scope: i64,
    seq: i64,
    sql: Statements<'t>,
    names: Interner<'t>,
    specs: Interner<'t>,
    /// The words last seen for each check and their spec id: most nodes
    /// share a check's words, so they are compared before being encoded.
    last_spec: HashMap<i64, (Spec, i64)>,
    /// Nodes in this sweep.
    seen_nodes: HashSet<i64>,
    /// Per check: nodes passing, warning, failing, in error.
    counts: BTreeMap<i64, [i64; 4]>,
    /// Value rows written.
    changes: usize,
}

impl<'t> ValueWriter<'t> {
    fn new(tx: &'t Connection, scope: i64, seq: i64) -> rusqlite::Result<ValueWriter<'t>> {
        Ok(ValueWriter {
            tx,
            scope,
            seq,
            names: Interner::load(
                tx,
                "SELECT text, id FROM name",
                "INSERT INTO name (text) VALUES (?1)",
            )?,
            specs: Interner::load(
                tx,
                "SELECT body, id FROM spec",
                "INSERT INTO spec (body) VALUES (?1)",
            )?,
            sql: Statements::prepare(tx)?,
            last_spec: HashMap::new(),
            seen_nodes: HashSet::new(),
            counts: BTreeMap::new(),
            changes: 0,
        })
    }

    /// A node's state row when it changed, then, if it answered, its
    /// checks, and `GONE` rows for the checks it stopped reporting.
    fn node(&mut self, n: &NodeEntry) -> rusqlite::Result<()> {
        let node = self.names.id(&n.name)?;
        self.seen_nodes.insert(node);
        let now = current_of(self.tx, self.scope, node)?;
        let tags = serde_json::to_string(&n.tags).unwrap_or_default();
        let state = state_code(n.state);
        let prev = now.state.as_ref();
        let same = prev.is_some_and(|c| {
            c.row.state == state
                && c.row.addr == n.addr
                && c.row.tags == tags
                && c.row.late == n.late_joiner
        });
        if !same {
            if let Some(c) = prev {
                self.sql.retire_node.execute([c.rowid])?;
            }
            self.sql.add_node.execute(params![
                self.scope,
                node,
                self.seq,
                state,
                n.addr,
                tags,
                n.late_joiner
            ])?;
            self.changes += 1;
        }
        if !matches!(n.state, NodeState::Ok | NodeState::Failing) {
            return Ok(()); // nothing observed: the last values stand
        }
        let mut seen = vec![false; now.obs.len()];
        for o in &n.checks {
            let check = self.names.id(&o.id)?;
            let at = now.obs.iter().position(|c| c.row.check == check);
            if let Some(i) = at {
                seen[i] = true;
            }
            self.check(node, check, at.map(|i| &now.obs[i]), o)?;
        }
        for (c, _) in now.obs.iter().zip(seen).filter(|(_, seen)| !seen) {
            if c.row.status == GONE {
                continue;
            }
            self.sql.retire_obs.execute([c.rowid])?;
            self.sql.add_obs.execute(params![
                self.scope,
                node,
                c.row.check,
                self.seq,
                GONE,
                c.row.spec,
                "null",
                ""
            ])?;
            self.changes += 1;
        }
        Ok(())
    }

    /// One outcome of check `check` (`prev`: its current row): counted,
    /// and a value row when it changed.
    fn check(
        &mut self,
        node: i64,
        check: i64,
        prev: Option<&Current<ObsRow>>,
        o: &CheckOutcome,
    ) -> rusqlite::Result<()> {
        let spec = self.spec_id(check, o)?;
        let status = status_code(o.status);
        self.counts.entry(check).or_default()[status as usize] += 1;
        let observed = serde_json::to_string(&o.observed).unwrap_or_default();
        // A passing check's message repeats its value.
        let message = if o.status == Status::Pass {
            ""
        } else {
            o.message.as_str()
        };
        let same = prev.is_some_and(|c| {
            c.row.status == status
                && c.row.spec == spec
                && c.row.observed == observed
                && c.row.message == message
        });
        if same {
            return Ok(());
        }
        if let Some(c) = prev {
            self.sql.retire_obs.execute([c.rowid])?;
        }
        self.sql.add_obs.execute(params![
            self.scope, node, check, self.seq, status, spec, observed, message
        ])?;
        self.changes += 1;
        Ok(())
    }

    /// The spec id of `o`'s words.
    fn spec_id(&mut self, check: i64, o: &CheckOutcome) -> rusqlite::Result<i64> {
        let words = Words::of(o);
        if let Some((w, id)) = self.last_spec.get(&check) {
            if words.are(w) {
                return Ok(*id);
            }
        }
        let spec = words.spec();
        let id = self
            .specs
            .id(&serde_json::to_string(&spec).unwrap_or_default())?;
        self.last_spec.insert(check, (spec, id));
        Ok(id)
    }

    /// `GONE` rows for the nodes no longer in the sweep.
    fn retire_missing(&mut self) -> rusqlite::Result<()> {
        for (node, rowid) in present_nodes(self.tx, self.scope)? {
            if self.seen_nodes.contains(&node) {
                continue;
            }
            self.sql.retire_node.execute([rowid])?;
            self.sql
                .add_node
                .execute(params![self.scope, node, self.seq, GONE, "", "{}", false])?;
            self.changes += 1;
        }
        Ok(())
    }
}

/// Keep the newest `keep` sweeps of `scope`; keep the value rows that are
/// still the value at the oldest kept sweep.
fn prune(tx: &Transaction<'_>, scope: i64, keep: usize) -> rusqlite::Result<()> {
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
