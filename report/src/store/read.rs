//! Reading the history: the previous sweep rebuilt from the value rows
//! ([`History::previous`]), a scope's trend, a node's timeline, a check's
//! counts over time, and the scopes stored.

use std::collections::HashMap;

use patrol_checks::{
    CheckOutcome, CompactDocument, CompactNode, NodeEntry, NodeState, Observed, SweepDocument,
    SweepView,
};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::schema::{state_of, status_of, NodeRow, ObsRow, Spec};
use super::{select, CheckPoint, History, NodeChange, StoredSweep, TrendPoint};
use crate::diff::FirstSeen;
use crate::error::ReportError;

/// The stored parts of a `sweep` row the previous sweep is rebuilt from.
struct PreviousRow {
    seq: i64,
    /// The document without its nodes, as JSON.
    meta: String,
    /// The first-seen times, as JSON.
    first_seen: String,
}

/// A sweep as a timeline names it: id and start (Unix ms).
type SweepRef = (String, u64);

/// One `obs` row of a node's timeline, with its scope and check in words.
struct TimelineRow {
    scope: i64,
    scope_text: String,
    check: String,
    seq: i64,
    status: i64,
    observed: String,
    message: String,
}

/// One `node_state` row of a node's timeline, with its scope in words.
struct StateRow {
    scope: i64,
    scope_text: String,
    seq: i64,
    state: i64,
}

impl History {
    /// The latest stored sweep of `doc`'s scope that started before it,
    /// rebuilt from the database.
    pub fn previous(&self, doc: &dyn SweepView) -> Result<Option<StoredSweep>, ReportError> {
        let Some(scope) = self.scope_id(doc)? else {
            return Ok(None);
        };
        let e = |x| self.err(x);
        let h = doc.head();
        let row = self
            .conn
            .query_row(
                "SELECT seq, meta, first_seen FROM sweep WHERE scope = ?1 AND sweep_id <> ?2
                   AND (started_ms < ?3 OR (started_ms = ?3 AND sweep_id < ?2))
                 ORDER BY started_ms DESC, sweep_id DESC LIMIT 1",
                params![scope, h.sweep_id, h.started_at_unix_ms as i64],
                |r| {
                    Ok(PreviousRow {
                        seq: r.get(0)?,
                        meta: r.get(1)?,
                        first_seen: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(e)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let broken = |what: &str, e: serde_json::Error| ReportError::HistoryEntry {
            path: self.path.clone(),
            what: format!("{what} of stored sweep #{}: {e}", row.seq),
        };
        let mut prev: SweepDocument =
            serde_json::from_str(&row.meta).map_err(|e| broken("the document", e))?;
        let first_seen: FirstSeen =
            serde_json::from_str(&row.first_seen).map_err(|e| broken("the first-seen times", e))?;
        let newest: i64 = self
            .conn
            .query_row(
                "SELECT MAX(seq) FROM sweep WHERE scope = ?1",
                [scope],
                |r| r.get(0),
            )
            .map_err(e)?;
        // Compact while the report is built against it: each node is
        // packed as soon as its rows are read, never all of them spelled
        // out at once (a 100,000-node sweep has two million value rows).
        prev.nodes = Vec::new();
        let mut doc = CompactDocument::from_document(prev);
        self.pack_nodes_as_of(scope, row.seq, row.seq == newest, &mut doc)?;
        Ok(Some(StoredSweep { doc, first_seen }))
    }

    /// Every node of `scope` with its checks as they were at sweep `seq`
    /// (`newest`: `seq` is the scope's newest sweep, whose values are the
    /// `current` rows), packed into `doc` one node at a time, sorted by
    /// name and each node's checks by id.
    ///
    /// The node rows and the value rows are two queries in node order,
    /// read side by side: a node is packed when its rows are read, and no
    /// more than one node is ever spelled out (a map of every node,
    /// spelled out before its checks were read, took 119 MB at 100,000
    /// nodes).
    fn pack_nodes_as_of(
        &self,
        scope: i64,
        seq: i64,
        newest: bool,
        doc: &mut CompactDocument,
    ) -> Result<(), ReportError> {
        let e = |x| self.err(x);
        let names = names(&self.conn).map_err(e)?;
        let specs = specs(&self.conn).map_err(e)?;
        let mut node_stmt = self.conn.prepare(node_state_sql(newest)).map_err(e)?;
        let mut node_rows = node_stmt.query(params![scope, seq]).map_err(e)?;
        let mut obs_stmt = self.conn.prepare(obs_sql(newest)).map_err(e)?;
        let mut obs_rows = obs_stmt.query(params![scope, seq]).map_err(e)?;
        let mut read_obs = || -> Result<Option<ObsRow>, _> {
            obs_rows
                .next()
                .map_err(e)?
                .map(ObsRow::read)
                .transpose()
                .map_err(e)
        };
        let mut next_obs = read_obs()?;
        while let Some(r) = node_rows.next().map_err(e)? {
            let row = NodeRow::read(r).map_err(e)?;
            // Value rows of a node without a state row: none to attach to.
            while next_obs.as_ref().is_some_and(|o| o.node < row.node) {
                next_obs = read_obs()?;
            }
            let mut node = node_entry(row, &names);
            while let Some(o) =
                next_obs.take_if(|o| node.as_ref().is_some_and(|(id, _)| o.node == *id))
            {
                if let Some((_, n)) = node.as_mut() {
                    self.add_check(n, o, &names, &specs)?;
                }
                next_obs = read_obs()?;
            }
            if let Some((_, mut n)) = node {
                n.checks.sort_by(|a, b| a.id.cmp(&b.id));
                doc.nodes.push(CompactNode::pack(&n, &mut doc.catalog));
            }
        }
        doc.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(())
    }

    /// Add the outcome of value row `row` to node `n`: nothing for a check
    /// gone, or a node that did not answer.
    fn add_check(
        &self,
        n: &mut NodeEntry,
        row: ObsRow,
        names: &HashMap<i64, String>,
        specs: &HashMap<i64, Spec>,
    ) -> Result<(), ReportError> {
        let Some(status) = status_of(row.status) else {
            return Ok(());
        };
        if !matches!(n.state, NodeState::Ok | NodeState::Failing) {
            return Ok(());
        }
        let spec = specs.get(&row.spec).cloned().unwrap_or_else(Spec::unknown);
        let observed: Observed =
            serde_json::from_str(&row.observed).map_err(|x| ReportError::HistoryEntry {
                path: self.path.clone(),
                what: format!("an observed value of node {}: {x}", n.name),
            })?;
        n.checks.push(CheckOutcome {
            id: names.get(&row.check).cloned().unwrap_or_default(),
            kind: spec.kind,
            status,
            severity: spec.severity,
            observed,
            expected: spec.expected,
            message: row.message,
            duration_us: 0,
            description: spec.description,
            remediation: spec.remediation,
        });
        Ok(())
    }

    /// The last `n` sweeps of `doc`'s scope, oldest first.
    pub fn trend(&self, doc: &dyn SweepView, n: usize) -> Result<Vec<TrendPoint>, ReportError> {
        let Some(scope) = self.scope_id(doc)? else {
            return Ok(Vec::new());
        };
        let mut out: Vec<TrendPoint> = select(
            &self.conn,
            "SELECT sweep_id, started_ms, failing, unreachable, groups FROM sweep
             WHERE scope = ?1 ORDER BY seq DESC LIMIT ?2",
            params![scope, n as i64],
            |r| {
                Ok(TrendPoint {
                    sweep_id: r.get(0)?,
                    started_ms: r.get::<_, i64>(1)? as u64,
                    failing: r.get::<_, i64>(2)? as u64,
                    unreachable: r.get::<_, i64>(3)? as u64,
                    groups: r.get::<_, i64>(4)? as u64,
                })
            },
        )
        .map_err(|e| self.err(e))?;
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
        if check.is_none() {
            out = node_state_changes(&self.conn, node).map_err(e)?;
        }
        let rows: Vec<TimelineRow> = select(
            &self.conn,
            "SELECT o.scope, sc.text, c.text, o.seq, o.status, o.observed, o.message FROM obs o
             JOIN scope sc ON sc.id = o.scope JOIN name c ON c.id = o.check_id
             WHERE o.node = (SELECT id FROM name WHERE text = ?1)
               AND (?2 IS NULL OR c.text = ?2)
             ORDER BY o.scope, c.text, o.seq",
            params![node, check],
            |r| {
                Ok(TimelineRow {
                    scope: r.get(0)?,
                    scope_text: r.get(1)?,
                    check: r.get(2)?,
                    seq: r.get(3)?,
                    status: r.get(4)?,
                    observed: r.get(5)?,
                    message: r.get(6)?,
                })
            },
        )
        .map_err(e)?;
        for row in rows {
            let (sweep, previous_sweep) =
                sweep_and_before(&self.conn, row.scope, row.seq).map_err(e)?;
            let value = serde_json::from_str::<Observed>(&row.observed)
                .map(|o| o.to_string())
                .unwrap_or_default();
            out.push(NodeChange {
                scope: row.scope_text,
                check: row.check,
                sweep,
                previous_sweep,
                status: status_of(row.status)
                    .map_or("gone", |s| s.as_str())
                    .to_string(),
                value,
                message: row.message,
            });
        }
        out.sort_by(|a, b| a.scope.cmp(&b.scope).then(a.check.cmp(&b.check)));
        Ok(out)
    }

    /// A check's outcome counts over every stored sweep that ran it,
    /// oldest first.
    pub fn check_history(&self, check: &str) -> Result<Vec<CheckPoint>, ReportError> {
        select(
            &self.conn,
            "SELECT sc.text, s.sweep_id, s.started_ms, k.pass, k.warn, k.fail, k.error
             FROM check_count k JOIN sweep s ON s.seq = k.seq JOIN scope sc ON sc.id = k.scope
             WHERE k.check_id = (SELECT id FROM name WHERE text = ?1)
             ORDER BY sc.text, s.started_ms",
            [check],
            |r| {
                Ok(CheckPoint {
                    scope: r.get(0)?,
                    sweep_id: r.get(1)?,
                    started_ms: r.get::<_, i64>(2)? as u64,
                    pass: r.get::<_, i64>(3)? as u64,
                    warn: r.get::<_, i64>(4)? as u64,
                    fail: r.get::<_, i64>(5)? as u64,
                    error: r.get::<_, i64>(6)? as u64,
                })
            },
        )
        .map_err(|e| self.err(e))
    }

    /// Sweeps stored per scope: (scope text, sweeps).
    pub fn scopes(&self) -> Result<Vec<(String, u64)>, ReportError> {
        select(
            &self.conn,
            "SELECT sc.text, COUNT(s.seq) FROM scope sc LEFT JOIN sweep s ON s.scope = sc.id
             GROUP BY sc.id ORDER BY sc.text",
            [],
            |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)),
        )
        .map_err(|e| self.err(e))
    }
}

/// Every interned name (node names and check ids) by id.
fn names(conn: &Connection) -> rusqlite::Result<HashMap<i64, String>> {
    select(conn, "SELECT id, text FROM name", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
}

/// Every check's words by spec id; a body that no longer decodes is left
/// out (its checks get [`Spec::unknown`]).
fn specs(conn: &Connection) -> rusqlite::Result<HashMap<i64, Spec>> {
    let bodies: Vec<(i64, String)> = select(conn, "SELECT id, body FROM spec", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(bodies
        .into_iter()
        .filter_map(|(id, body)| Some((id, serde_json::from_str(&body).ok()?)))
        .collect())
}

/// The `node_state` rows of `scope` that held at sweep `seq`, in node
/// order.
fn node_state_sql(newest: bool) -> &'static str {
    if newest {
        "SELECT node, state, addr, tags, late FROM node_state
         WHERE scope = ?1 AND current = 1 AND seq <= ?2 ORDER BY node"
    } else {
        "SELECT node, state, addr, tags, late FROM node_state o
         WHERE scope = ?1 AND seq <= ?2 AND NOT EXISTS (
           SELECT 1 FROM node_state n WHERE n.scope = o.scope AND n.node = o.node
             AND n.seq > o.seq AND n.seq <= ?2)
         ORDER BY node"
    }
}

/// Node `row` without its checks, with its id; None for a node gone by
/// then.
fn node_entry(row: NodeRow, names: &HashMap<i64, String>) -> Option<(i64, NodeEntry)> {
    let state = state_of(row.state)?;
    let entry = NodeEntry {
        name: names.get(&row.node).cloned().unwrap_or_default(),
        addr: row.addr,
        tags: serde_json::from_str(&row.tags).unwrap_or_default(),
        state,
        late_joiner: row.late,
        reached_ms: None,
        answered_ms: None,
        checks_ms: None,
        checks: Vec::new(),
        // Not kept in the history: the diff reads states and outcomes
        // only.
        clock: None,
        silence: None,
        swim: None,
    };
    Some((row.node, entry))
}

/// The `obs` rows of `scope` that held at sweep `seq`.
fn obs_sql(newest: bool) -> &'static str {
    if newest {
        "SELECT node, check_id, status, spec, observed, message FROM obs
         WHERE scope = ?1 AND current = 1 AND seq <= ?2 ORDER BY node"
    } else {
        "SELECT node, check_id, status, spec, observed, message FROM obs o
         WHERE scope = ?1 AND seq <= ?2 AND NOT EXISTS (
           SELECT 1 FROM obs n WHERE n.scope = o.scope AND n.node = o.node
             AND n.check_id = o.check_id AND n.seq > o.seq AND n.seq <= ?2)
         ORDER BY node"
    }
}

/// Every change of `node`'s state, as timeline entries `(node)`.
fn node_state_changes(conn: &Connection, node: &str) -> rusqlite::Result<Vec<NodeChange>> {
    let rows: Vec<StateRow> = select(
        conn,
        "SELECT o.scope, sc.text, o.seq, o.state FROM node_state o
         JOIN scope sc ON sc.id = o.scope
         WHERE o.node = (SELECT id FROM name WHERE text = ?1)
         ORDER BY o.scope, o.seq",
        [node],
        |r| {
            Ok(StateRow {
                scope: r.get(0)?,
                scope_text: r.get(1)?,
                seq: r.get(2)?,
                state: r.get(3)?,
            })
        },
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (sweep, previous_sweep) = sweep_and_before(conn, row.scope, row.seq)?;
        out.push(NodeChange {
            scope: row.scope_text,
            check: "(node)".into(),
            sweep,
            previous_sweep,
            status: state_of(row.state)
                .map_or("gone", |s| s.as_str())
                .to_string(),
            value: String::new(),
            message: String::new(),
        });
    }
    Ok(out)
}

/// Sweep `seq` (None: pruned) and the sweep of `scope` before it (None:
/// the first one kept).
fn sweep_and_before(
    conn: &Connection,
    scope: i64,
    seq: i64,
) -> rusqlite::Result<(Option<SweepRef>, Option<SweepRef>)> {
    let mut at = conn.prepare_cached("SELECT sweep_id, started_ms FROM sweep WHERE seq = ?1")?;
    let mut before = conn.prepare_cached(
        "SELECT sweep_id, started_ms FROM sweep WHERE scope = ?1 AND seq < ?2
         ORDER BY seq DESC LIMIT 1",
    )?;
    Ok((
        at.query_row([seq], sweep_ref).optional()?,
        before
            .query_row(params![scope, seq], sweep_ref)
            .optional()?,
    ))
}

fn sweep_ref(r: &Row<'_>) -> rusqlite::Result<SweepRef> {
    Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
}
