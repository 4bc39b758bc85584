//! The diff against the previous sweep of the same scope: each anomaly
//! group is new, persisting since a date, or resolved. Pure functions.

use std::collections::{BTreeMap, HashSet};

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
pub fn diff(
    current: &[AnomalyGroup],
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
    let prev_keys: HashSet<&GroupKey> = prev.groups.iter().map(|g| &g.key).collect();
    let marked = current
        .iter()
        .map(|g| {
            let change = if prev_keys.contains(&g.key) {
                let since = prev
                    .first_seen
                    .and_then(|fs| fs.get(&g.key.as_line()).copied())
                    .unwrap_or(prev.started_at_unix_ms);
                Change::Persisting {
                    since_unix_ms: since,
                }
            } else {
                Change::New
            };
            MarkedGroup {
                group: g.clone(),
                change,
            }
        })
        .collect();
    let cur_keys: HashSet<&GroupKey> = current.iter().map(|g| &g.key).collect();
    let resolved = prev
        .groups
        .iter()
        .filter(|g| !cur_keys.contains(&g.key))
        .map(|g| MarkedGroup {
            group: g.clone(),
            change: Change::Resolved,
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
