//! No false green: what a finished sweep covered against what it was asked
//! to cover. A sweep that inspected nothing, or not what was named, must
//! not read as "all ok" with exit 0 to a cron job. Each gap is one line
//! for stderr; any gap makes `patrol sweep` exit [`EXIT_GAP`].
//!
//! The gaps: a `--checks` id no node that answered ran (named, with the
//! closest known id); a `--where` filter that matched no node; a selector
//! that ran no check on any node that answered; and a coordinator that
//! sees no other node although the config lists seeds besides itself.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use patrol_checks::printable::one_line;
use patrol_checks::{Catalog, NodeState, SweepView};

/// The exit code of a sweep with a gap (wins over 0, 1 and 2: the result
/// does not answer the question that was asked).
pub const EXIT_GAP: u8 = 5;

/// Ids the coordinator adds about a node itself (`patrol.clock_skew`),
/// not checks a selector chose.
const COORDINATOR_PREFIX: &str = "patrol.";

/// What the sweep was asked, beyond its document.
#[derive(Debug, Default)]
pub struct Asked<'a> {
    /// The config the CLI read (`--config`, else the default one), if any.
    pub config: Option<&'a patrol_config::Config>,
    /// One cluster through `--seed`s (not contexts): only then does a
    /// single expected node mean the coordinator is alone.
    pub single_cluster: bool,
}

/// Every gap between what was asked and what the sweep covered, one line
/// each (empty: the sweep covered what it was asked to).
pub fn gaps(doc: &dyn SweepView, asked: &Asked<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let h = doc.head();
    if h.counts.expected == 0 && h.counts.late_joiners == 0 {
        out.push(if h.node_filter.is_empty() {
            "the coordinator expected no node at all".to_string()
        } else {
            format!(
                "--where {} matched no node (`patrol members` lists every node's tags)",
                one_line(&filter_text(doc))
            )
        });
        return out;
    }
    // One pass: the nodes that answered, the ids they ran (coordinator
    // checks aside), and every id any node has.
    let mut answered = 0;
    let mut ran: BTreeSet<String> = BTreeSet::new();
    let mut in_doc: BTreeSet<String> = BTreeSet::new();
    for n in doc.nodes() {
        let replied = matches!(n.state, NodeState::Ok | NodeState::Failing);
        answered += usize::from(replied);
        for c in &n.checks {
            if replied && !c.id.starts_with(COORDINATOR_PREFIX) && !ran.contains(&c.id) {
                ran.insert(c.id.clone());
            }
            if !in_doc.contains(&c.id) {
                in_doc.insert(c.id.clone());
            }
        }
    }
    if answered > 0 {
        let known = known_ids(in_doc, asked.config);
        let unknown: Vec<&String> = h
            .selector
            .checks
            .iter()
            .filter(|id| !ran.contains(id.as_str()))
            .collect();
        for id in &unknown {
            out.push(format!(
                "--checks {}: no node that answered ({}) has a check with this id{}",
                one_line(id),
                answered,
                closest(id, &known)
                    .map(|k| format!(" (closest known id: {})", one_line(k)))
                    .unwrap_or_default()
            ));
        }
        if ran.is_empty() && unknown.is_empty() {
            out.push(no_check_ran(doc, answered));
        }
    }
    if let Some(line) = alone(doc, asked) {
        out.push(line);
    }
    out
}

fn filter_text(doc: &dyn SweepView) -> String {
    doc.head()
        .node_filter
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" --where ")
}

/// Why nothing ran, in the words that point at the fix.
fn no_check_ran(doc: &dyn SweepView, answered: usize) -> String {
    let s = doc.head().selector;
    let mut line = format!(
        "no check ran on any of the {answered} nodes that answered: {}",
        if s.checks.is_empty() && s.labels.is_empty() && s.profile.is_none() {
            "their configs define no check (add `[checks] profiles = [\"k8s-node\"]` or [[check]] tables)".to_string()
        } else {
            format!(
                "the selector ({}) matches none of their checks",
                one_line(&s.describe())
            )
        }
    );
    if let Some(p) = &s.profile {
        let names = Catalog::builtin_profile_names();
        if !names.contains(&p.as_str()) {
            line.push_str(&format!(
                "; `{}` is not a built-in profile ({})",
                one_line(p),
                names.join(", ")
            ));
        }
    }
    line
}

/// The coordinator alone: one node expected, no `--where`, and the config
/// lists seeds besides this node's own address.
fn alone(doc: &dyn SweepView, asked: &Asked<'_>) -> Option<String> {
    let config = asked.config?;
    let h = doc.head();
    if !asked.single_cluster || !h.node_filter.is_empty() || h.counts.expected != 1 {
        return None;
    }
    let own: Vec<SocketAddr> = [Some(config.node.bind), config.node.advertise]
        .into_iter()
        .flatten()
        .collect();
    let others: Vec<&String> = config
        .node
        .seeds
        .iter()
        .filter(|s| s.parse::<SocketAddr>().map_or(true, |a| !own.contains(&a)))
        .collect();
    if others.is_empty() {
        return None;
    }
    Some(format!(
        "the coordinator {} sees no other node, yet {} lists seeds {}: none of them has joined it (check the seed addresses, that their gossip port is open, and that they share the cluster name and key; `patrol members` shows what the agent sees)",
        one_line(h.coordinator),
        config.source.display(),
        one_line(
            &others
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    ))
}

/// Every check id the CLI can know of: the built-in profiles', the
/// config's own `[[check]]` ids, and the ids in the document.
fn known_ids(in_doc: BTreeSet<String>, config: Option<&patrol_config::Config>) -> BTreeSet<String> {
    let mut known: BTreeSet<String> = Catalog::builtin_profile_names()
        .iter()
        .filter_map(|name| Catalog::builtin_profile(name))
        .flat_map(|c| c.checks().iter().map(|s| s.id.clone()).collect::<Vec<_>>())
        .collect();
    if let Some(config) = config {
        known.extend(
            config
                .check
                .iter()
                .filter_map(|t| t.get("id").and_then(|v| v.as_str()).map(str::to_string)),
        );
    }
    known.extend(in_doc);
    known
}

/// The known id nearest to `id` by edit distance, when near enough to be
/// a typo (at most a third of its length, and at least 2, edits away).
fn closest<'k>(id: &str, known: &'k BTreeSet<String>) -> Option<&'k String> {
    let limit = (id.chars().count() / 3).max(2);
    known
        .iter()
        .filter(|k| k.as_str() != id)
        .map(|k| (edit_distance(id, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance: insertions, deletions and substitutions of chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_char_edits() {
        assert_eq!(edit_distance("ip-forward", "ip-forward"), 0);
        assert_eq!(edit_distance("ip-forwrd", "ip-forward"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn the_closest_id_is_a_near_typo_never_a_stranger() {
        let known: BTreeSet<String> = ["ip-forward", "kubelet-running", "swap-off"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            closest("ip-forwrd", &known).map(String::as_str),
            Some("ip-forward")
        );
        assert_eq!(
            closest("kublet-runing", &known).map(String::as_str),
            Some("kubelet-running")
        );
        assert_eq!(closest("disk-root", &known), None);
    }
}
