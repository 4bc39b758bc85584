//! The diff against the previous sweep of the same scope: each anomaly
//! group is new, persisting since a date, or resolved. Pure functions.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::aggregate::{AnomalyGroup, GroupKey};

/// When each anomaly group was first seen (unix ms), keyed by
/// [`GroupKey::as_line`]. Stored next to each sweep in the history so that
/// "persisting since" survives more than one sweep.
pub type FirstSeen = BTreeMap<String, u64>;

/// How an anomaly group compares with the previous sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Not in the previous sweep (or there is no previous sweep).
    New,
    /// Already in the previous sweep; first seen at this unix time (ms).
    Persisting { since_unix_ms: u64 },
    /// In the previous sweep, gone now.
    Resolved,
}

/// An anomaly group with its change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkedGroup {
    pub group: AnomalyGroup,
    pub change: Change,
}

/// What the diff needs to know of the previous sweep.
#[derive(Debug, Clone, Copy)]
pub struct Previous<'a> {
    pub groups: &'a [AnomalyGroup],
    pub started_at_unix_ms: u64,
    /// First-seen times stored with the previous sweep, when known.
    pub first_seen: Option<&'a FirstSeen>,
}

/// The current groups marked new or persisting, in their order, and the
/// previous groups that are gone (marked resolved), in theirs.
///
/// The comparison is per node and check, not only per group key, so that
/// a value that merely moved (`process.zombies` 108 yesterday, 112 today
/// on the same node) is not reported as one group resolved and another
/// new:
/// - a current group is **persisting** when its key was in the previous
///   sweep (since that group's first-seen time), or when every one of its
///   nodes already had a non-passing outcome of the same check (since the
///   latest of those nodes' first-seen times); otherwise it is **new**;
/// - a previous group whose key is gone is **resolved**, holding only the
///   nodes that now pass that check; nodes that still fail it (with
///   another value) or are in `unanswered` (no answer, down: nothing is
///   known of them) are left out, and a group with no node left is not
///   listed.
pub fn diff(
    current: &[AnomalyGroup],
    unanswered: &[&str],
    previous: Option<Previous<'_>>,
) -> (Vec<MarkedGroup>, Vec<MarkedGroup>) {
    let Some(prev) = previous else {
        let marked = current
            .iter()
            .map(|g| MarkedGroup {
                group: g.clone(),
                change: Change::New,
            })
            .collect();
        return (marked, Vec::new());
    };
    let since = |g: &AnomalyGroup| {
        prev.first_seen
            .and_then(|fs| fs.get(&g.key.as_line()).copied())
            .unwrap_or(prev.started_at_unix_ms)
    };
    let prev_keys: HashMap<&GroupKey, u64> =
        prev.groups.iter().map(|g| (&g.key, since(g))).collect();
    // (node, check) -> first seen, over the previous anomalies.
    let mut prev_node_check: HashMap<(&str, &str), u64> = HashMap::new();
    for g in prev.groups {
        let t = since(g);
        for n in &g.nodes {
            let e = prev_node_check
                .entry((n.as_str(), g.key.check.as_str()))
                .or_insert(t);
            *e = (*e).min(t);
        }
    }
    let marked = current
        .iter()
        .map(|g| {
            let change = if let Some(&since) = prev_keys.get(&g.key) {
                Change::Persisting {
                    since_unix_ms: since,
                }
            } else {
                let times: Option<Vec<u64>> = g
                    .nodes
                    .iter()
                    .map(|n| {
                        prev_node_check
                            .get(&(n.as_str(), g.key.check.as_str()))
                            .copied()
                    })
                    .collect();
                match times.and_then(|t| t.into_iter().max()) {
                    Some(since) => Change::Persisting {
                        since_unix_ms: since,
                    },
                    None => Change::New,
                }
            };
            MarkedGroup {
                group: g.clone(),
                change,
            }
        })
        .collect();
    let cur_keys: HashSet<&GroupKey> = current.iter().map(|g| &g.key).collect();
    let cur_node_check: HashSet<(&str, &str)> = current
        .iter()
        .flat_map(|g| g.nodes.iter().map(|n| (n.as_str(), g.key.check.as_str())))
        .collect();
    let unanswered: HashSet<&str> = unanswered.iter().copied().collect();
    let resolved = prev
        .groups
        .iter()
        .filter(|g| !cur_keys.contains(&g.key))
        .filter_map(|g| {
            let fixed: Vec<String> = g
                .nodes
                .iter()
                .filter(|n| {
                    !cur_node_check.contains(&(n.as_str(), g.key.check.as_str()))
                        && !unanswered.contains(n.as_str())
                })
                .cloned()
                .collect();
            (!fixed.is_empty()).then(|| MarkedGroup {
                group: AnomalyGroup {
                    nodes: fixed,
                    ..g.clone()
                },
                change: Change::Resolved,
            })
        })
        .collect();
    (marked, resolved)
}

/// First-seen times to store with the current sweep, started at `now_ms`.
pub fn first_seen(marked: &[MarkedGroup], now_ms: u64) -> FirstSeen {
    marked
        .iter()
        .filter_map(|m| {
            let since = match m.change {
                Change::New => now_ms,
                Change::Persisting { since_unix_ms } => since_unix_ms,
                Change::Resolved => return None,
            };
            Some((m.group.key.as_line(), since))
        })
        .collect()
}
