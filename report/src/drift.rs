//! Drift: values that differ from the majority of their peer group (nodes
//! with the same tags), even where the check passes. This is the
//! hand-changed parameter nobody remembers. Pure functions.

use std::collections::{BTreeMap, HashMap};

use patrol_checks::{NodeState, Status, SweepDocument};
use serde::{Deserialize, Serialize};

/// The majority must hold at least this share of a peer group (percent)
/// before the other values count as drift; below it, the check's values
/// simply vary (memory in use, uptime) and nothing is flagged.
pub const MAJORITY_PCT: usize = 75;
/// Peer groups smaller than this have no meaningful majority.
pub const MIN_PEERS: usize = 3;

/// A value that only a minority of a peer group has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub check: String,
    /// The minority value.
    pub value: String,
    /// Nodes with the minority value, sorted by name.
    pub nodes: Vec<String>,
    /// The value most of the peer group has.
    pub majority_value: String,
    pub majority_count: usize,
    /// The peer group's tags, `k=v,k=v` (empty: untagged nodes).
    pub peer_tags: String,
}

impl Drift {
    /// `vm.swappiness = 60 on 3 nodes, 0 on 9,997 others`.
    pub fn title(&self) -> String {
        format!(
            "{} = {} on {} {}, {} on {} others",
            self.check,
            self.value,
            crate::text::thousands(self.nodes.len() as u64),
            if self.nodes.len() == 1 {
                "node"
            } else {
                "nodes"
            },
            self.majority_value,
            crate::text::thousands(self.majority_count as u64),
        )
    }
}

/// Every drift in `doc`: for each peer group and check, each passing value
/// held by a minority while one value holds at least [`MAJORITY_PCT`].
/// Failing values are left to the anomaly groups. Ordered by check, peer
/// group, then fewest nodes first.
pub fn find_drift(doc: &SweepDocument) -> Vec<Drift> {
    // (peer tags, check id) -> value -> (nodes, all passing)
    type Values<'a> = HashMap<String, (Vec<&'a str>, bool)>;
    let mut table: BTreeMap<(String, &str), Values<'_>> = BTreeMap::new();
    for node in &doc.nodes {
        if !matches!(node.state, NodeState::Ok | NodeState::Failing) {
            continue;
        }
        let peer = node
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        for c in &node.checks {
            let values = table.entry((peer.clone(), c.id.as_str())).or_default();
            let entry = values
                .entry(c.observed.to_string())
                .or_insert_with(|| (Vec::new(), true));
            entry.0.push(node.name.as_str());
            entry.1 &= c.status == Status::Pass;
        }
    }
    let mut out = Vec::new();
    for ((peer, check), values) in table {
        let total: usize = values.values().map(|(n, _)| n.len()).sum();
        if total < MIN_PEERS || values.len() < 2 {
            continue;
        }
        let Some((maj_value, (maj_nodes, _))) = values
            .iter()
            .max_by(|a, b| a.1 .0.len().cmp(&b.1 .0.len()).then(b.0.cmp(a.0)))
        else {
            continue;
        };
        if maj_nodes.len() * 100 < total * MAJORITY_PCT {
            continue;
        }
        let mut found: Vec<Drift> = values
            .iter()
            .filter(|(v, (_, passing))| *v != maj_value && *passing)
            .map(|(v, (nodes, _))| {
                let mut nodes: Vec<String> = nodes.iter().map(|s| s.to_string()).collect();
                nodes.sort();
                Drift {
                    check: check.to_string(),
                    value: v.clone(),
                    nodes,
                    majority_value: maj_value.clone(),
                    majority_count: maj_nodes.len(),
                    peer_tags: peer.clone(),
                }
            })
            .collect();
        found.sort_by(|a, b| {
            a.nodes
                .len()
                .cmp(&b.nodes.len())
                .then_with(|| a.value.cmp(&b.value))
        });
        out.extend(found);
    }
    out
}
