//! Nodes grouped by when their certificate expires, from the
//! `patrol.cert_expiry` outcome every certified node adds to its answer
//! (its observed `node` entry: days left). Nodes without the outcome
//! (no `[trust]`, or no answer) are not counted. Pure.

use patrol_checks::{Observed, SweepView};
use serde::{Deserialize, Serialize};

/// The check id of the outcome (the agent's `cert_expiry::CERT_EXPIRY_ID`).
pub const CERT_EXPIRY_CHECK: &str = "patrol.cert_expiry";
/// Nodes named per group; the rest are counted.
pub const MAX_NAMED: usize = 20;

/// The groups, soonest first, with the bounds in days.
const GROUPS: [(&str, f64); 4] = [
    ("expired", 0.0),
    ("under 7 days", 7.0),
    ("7 to 30 days", 30.0),
    ("30 days or more", f64::INFINITY),
];

/// One group of nodes by days left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpiryGroup {
    pub label: String,
    /// Nodes with their days left, soonest first (at most [`MAX_NAMED`]).
    pub nodes: Vec<(String, f64)>,
    pub total: usize,
}

impl ExpiryGroup {
    /// `node-3 (2.5 d), node-9 (6.1 d) and 4 more`.
    pub fn line(&self) -> String {
        let mut named: Vec<String> = self
            .nodes
            .iter()
            .map(|(n, d)| format!("{n} ({d:.1} d)"))
            .collect();
        if self.total > self.nodes.len() {
            named.push(format!("{} more", self.total - self.nodes.len()));
        }
        named.join(", ")
    }
}

/// Days left of the node's own certificate, if the node reported it.
fn node_days(observed: &Observed) -> Option<f64> {
    let Observed::Named(entries) = observed else {
        return None;
    };
    entries.iter().find_map(|(k, v)| match (k.as_str(), v) {
        ("node", Observed::Number(d)) => Some(*d),
        _ => None,
    })
}

/// The non-empty groups of `doc`'s certified nodes.
pub fn groups(doc: &dyn SweepView) -> Vec<ExpiryGroup> {
    let mut all: Vec<(String, f64)> = doc
        .nodes()
        .filter_map(|n| {
            let o = n.checks.iter().find(|c| c.id == CERT_EXPIRY_CHECK)?;
            Some((n.name.clone(), node_days(&o.observed)?))
        })
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let mut out = Vec::new();
    let mut rest = all.as_slice();
    for (label, below) in GROUPS {
        let n = rest.iter().take_while(|(_, d)| *d < below).count();
        let (group, after) = rest.split_at(n);
        if !group.is_empty() {
            out.push(ExpiryGroup {
                label: label.to_string(),
                nodes: group.iter().take(MAX_NAMED).cloned().collect(),
                total: group.len(),
            });
        }
        rest = after;
    }
    out
}

#[cfg(test)]
mod tests {
    use patrol_checks::{CheckOutcome, Severity, Status};

    use super::*;
    use crate::sample;

    fn expiry(days: f64) -> CheckOutcome {
        CheckOutcome {
            id: CERT_EXPIRY_CHECK.into(),
            kind: "patrol".into(),
            status: Status::Pass,
            severity: Severity::Warn,
            observed: Observed::Named(vec![
                ("node".into(), Observed::Number(days)),
                ("ca:root".into(), Observed::Number(3000.0)),
            ]),
            expected: String::new(),
            message: String::new(),
            duration_us: 0,
            description: String::new(),
            remediation: String::new(),
        }
    }

    #[test]
    fn certified_nodes_are_grouped_by_days_left_soonest_first() {
        let mut doc = sample::generate(6, 0, 1);
        let days = [-0.5, 2.0, 6.9, 12.0, 45.0];
        for (node, d) in doc.nodes.iter_mut().zip(days) {
            node.checks.push(expiry(d));
        }
        let g = groups(&doc);
        let labels: Vec<&str> = g.iter().map(|g| g.label.as_str()).collect();
        assert_eq!(
            labels,
            ["expired", "under 7 days", "7 to 30 days", "30 days or more"]
        );
        assert_eq!(g[1].total, 2);
        assert_eq!(g[1].nodes[0].1, 2.0);
        assert!(g[0].line().contains("(-0.5 d)"), "{}", g[0].line());
        // The sixth node reported no expiry: not counted.
        assert_eq!(g.iter().map(|g| g.total).sum::<usize>(), 5);
    }

    #[test]
    fn both_report_bodies_show_the_groups() {
        let mut doc = sample::generate(3, 0, 1);
        for (node, d) in doc.nodes.iter_mut().zip([-1.0, 3.0, 40.0]) {
            node.checks.push(expiry(d));
        }
        let view = crate::render::view(&crate::build(&doc, None), "");
        let text = crate::render::text(&view).unwrap();
        assert!(
            text.contains("CERTIFICATE EXPIRY (certified nodes)"),
            "{text}"
        );
        assert!(
            text.contains("  expired: 1 - node-00001 (-1.0 d)"),
            "{text}"
        );
        let html = crate::render::html(&view).unwrap();
        assert!(html.contains("under 7 days (1)"), "{html}");
    }

    #[test]
    fn a_fleet_without_identities_has_no_groups() {
        assert!(groups(&sample::generate(3, 0, 1)).is_empty());
    }
}
