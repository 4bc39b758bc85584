//! Drift: values that differ from their peer group (nodes with the same
//! tags), even where the check passes. This is the hand-changed parameter
//! nobody remembers. Pure functions.
//!
//! Each check kind declares how its values compare
//! ([`patrol_checks::kinds::value_nature`]):
//! - **discrete** values (settings, versions, states) are compared with the
//!   peer group's majority: when one value holds at least [`MAJORITY_PCT`]
//!   of at least [`MIN_PEERS`] nodes, every other passing value is drift;
//! - **gauges** (free memory, process counts, disk use) are compared with a
//!   robust outlier rule: a value is drift only when it lies further from
//!   the peer group's median than [`OUTLIER_SIGMAS`] robust standard
//!   deviations (1.4826 × the median absolute deviation), *and* than
//!   [`RELATIVE_FLOOR`] of the median, *and* than [`ABSOLUTE_FLOOR`].
//!   `memory-available = 97.98` among peers at 97.99 is noise, not drift.
//!   Named gauges (per mount, per counter) are compared name by name;
//! - **ignored** values (latencies) are left out.

use std::collections::{BTreeMap, HashMap};

use patrol_checks::kinds::{value_nature, ValueNature};
use patrol_checks::{NodeState, Observed, Status, SweepDocument};
use serde::{Deserialize, Serialize};

/// The majority must hold at least this share of a peer group (percent)
/// before the other values count as drift; below it, the check's values
/// simply vary and nothing is flagged.
pub const MAJORITY_PCT: usize = 75;
/// Peer groups smaller than this have no meaningful majority.
pub const MIN_PEERS: usize = 3;
/// A gauge needs this many values in a peer group for a median to mean
/// anything.
pub const MIN_GAUGE_PEERS: usize = 5;
/// How many robust standard deviations (1.4826 × MAD) from the median a
/// gauge must be to be an outlier. 6 keeps a 10,000-node fleet of normally
/// distributed noise free of false alarms (P(|z| > 6) ≈ 2e-9 per node).
pub const OUTLIER_SIGMAS: f64 = 6.0;
/// ... and at least this share of the median away from it, so that a
/// gauge whose values barely move (MAD near 0) does not flag a 0.01 step.
pub const RELATIVE_FLOOR: f64 = 0.25;
/// ... and at least this many units away (a zombie or two is not drift).
pub const ABSOLUTE_FLOOR: f64 = 1.0;

/// Which rule found a drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DriftRule {
    /// A discrete value held by a minority; `majority_value` is the value
    /// most peers have.
    Majority,
    /// A gauge far from its peers' median; `majority_value` is that median.
    Outlier {
        /// How far from the median a value had to be.
        threshold: f64,
    },
}

/// A value that only a minority of a peer group has, or a gauge outlier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// The check id (`disk-space[/var]` for one value of a named gauge).
    pub check: String,
    /// The minority value (the range of outlier values for a gauge).
    pub value: String,
    /// Nodes with the minority value, sorted by name.
    pub nodes: Vec<String>,
    /// The value most of the peer group has, or the gauge's median.
    pub majority_value: String,
    /// Peers with the majority value, or the other peers of a gauge.
    pub majority_count: usize,
    /// The peer group's tags, `k=v,k=v` (empty: untagged nodes).
    pub peer_tags: String,
    pub rule: DriftRule,
}

impl Drift {
    /// `vm.swappiness = 60 on 3 nodes, 0 on 9,997 others`, or
    /// `process-total = 5000 on 1 node, median 310 (±95) on 199 others`.
    pub fn title(&self) -> String {
        let n = self.nodes.len();
        let nodes = format!(
            "{} {}",
            crate::text::thousands(n as u64),
            if n == 1 { "node" } else { "nodes" }
        );
        let others = crate::text::thousands(self.majority_count as u64);
        match &self.rule {
            DriftRule::Majority => format!(
                "{} = {} on {nodes}, {} on {others} others",
                self.check, self.value, self.majority_value
            ),
            DriftRule::Outlier { threshold } => format!(
                "{} = {} on {nodes}, median {} (±{}) on {others} others",
                self.check,
                self.value,
                self.majority_value,
                Observed::Number(round_sig(*threshold))
            ),
        }
    }
}

/// Every drift in `doc`, ordered by check, peer group, then fewest nodes
/// first. Failing values are left to the anomaly groups.
pub fn find_drift(doc: &SweepDocument) -> Vec<Drift> {
    // (peer tags, check id) -> per node: (name, kind, observed, passing)
    type Row<'a> = (&'a str, &'a str, &'a Observed, bool);
    let mut table: BTreeMap<(String, &str), Vec<Row<'_>>> = BTreeMap::new();
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
            if c.status == Status::Error {
                continue; // nothing observed
            }
            table
                .entry((peer.clone(), c.id.as_str()))
                .or_default()
                .push((
                    node.name.as_str(),
                    c.kind.as_str(),
                    &c.observed,
                    c.status == Status::Pass,
                ));
        }
    }
    let mut out = Vec::new();
    for ((peer, check), rows) in table {
        let Some(&(_, kind, first, _)) = rows.first() else {
            continue;
        };
        match value_nature(kind, first) {
            ValueNature::Discrete => out.extend(majority_drift(&peer, check, &rows)),
            ValueNature::Gauge => out.extend(gauge_drift(&peer, check, &rows)),
            ValueNature::Ignored => {}
        }
    }
    out
}

fn majority_drift(peer: &str, check: &str, rows: &[(&str, &str, &Observed, bool)]) -> Vec<Drift> {
    // value -> (nodes, all passing)
    let mut values: HashMap<String, (Vec<&str>, bool)> = HashMap::new();
    for (name, _, observed, passing) in rows {
        let e = values
            .entry(observed.to_string())
            .or_insert_with(|| (Vec::new(), true));
        e.0.push(name);
        e.1 &= *passing;
    }
    let total = rows.len();
    if total < MIN_PEERS || values.len() < 2 {
        return Vec::new();
    }
    let Some((maj_value, (maj_nodes, _))) = values
        .iter()
        .max_by(|a, b| a.1 .0.len().cmp(&b.1 .0.len()).then(b.0.cmp(a.0)))
    else {
        return Vec::new();
    };
    if maj_nodes.len() * 100 < total * MAJORITY_PCT {
        return Vec::new();
    }
    let mut found: Vec<Drift> = values
        .iter()
        .filter(|(v, (_, passing))| *v != maj_value && *passing)
        .map(|(v, (nodes, _))| Drift {
            check: check.to_string(),
            value: v.clone(),
            nodes: sorted(nodes),
            majority_value: maj_value.clone(),
            majority_count: maj_nodes.len(),
            peer_tags: peer.to_string(),
            rule: DriftRule::Majority,
        })
        .collect();
    found.sort_by(|a, b| {
        a.nodes
            .len()
            .cmp(&b.nodes.len())
            .then_with(|| a.value.cmp(&b.value))
    });
    found
}

/// The numbers of a gauge observation, by component name ("" for a plain
/// number); None when it is not all numbers.
fn components(observed: &Observed) -> Option<Vec<(String, f64)>> {
    match observed {
        Observed::Number(n) => Some(vec![(String::new(), *n)]),
        Observed::Named(items) => items
            .iter()
            .map(|(k, v)| match v {
                Observed::Number(n) => Some((k.clone(), *n)),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn gauge_drift(peer: &str, check: &str, rows: &[(&str, &str, &Observed, bool)]) -> Vec<Drift> {
    // component -> (node, value, passing)
    let mut series: BTreeMap<String, Vec<(&str, f64, bool)>> = BTreeMap::new();
    for (name, _, observed, passing) in rows {
        for (component, value) in components(observed).unwrap_or_default() {
            if value.is_finite() {
                series
                    .entry(component)
                    .or_default()
                    .push((name, value, *passing));
            }
        }
    }
    let mut out = Vec::new();
    for (component, points) in series {
        if points.len() < MIN_GAUGE_PEERS {
            continue;
        }
        let values: Vec<f64> = points.iter().map(|p| p.1).collect();
        let Some(rule) = OutlierRule::fit(&values) else {
            continue;
        };
        let outliers: Vec<&(&str, f64, bool)> = points
            .iter()
            .filter(|(_, v, passing)| *passing && rule.is_outlier(*v))
            .collect();
        if outliers.is_empty() {
            continue;
        }
        let lo = outliers.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = outliers
            .iter()
            .map(|p| p.1)
            .fold(f64::NEG_INFINITY, f64::max);
        let value = if lo == hi {
            Observed::Number(lo).to_string()
        } else {
            format!("{} .. {}", Observed::Number(lo), Observed::Number(hi))
        };
        let names: Vec<&str> = outliers.iter().map(|p| p.0).collect();
        out.push(Drift {
            check: if component.is_empty() {
                check.to_string()
            } else {
                format!("{check}[{component}]")
            },
            value,
            nodes: sorted(&names),
            majority_value: Observed::Number(round_sig(rule.median)).to_string(),
            majority_count: points.len() - outliers.len(),
            peer_tags: peer.to_string(),
            rule: DriftRule::Outlier {
                threshold: rule.threshold,
            },
        });
    }
    out
}

/// Median ± threshold, fitted to a peer group's values of one gauge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierRule {
    pub median: f64,
    /// Median absolute deviation.
    pub mad: f64,
    /// How far from the median an outlier is: the largest of
    /// [`OUTLIER_SIGMAS`] × 1.4826 × MAD, [`RELATIVE_FLOOR`] × |median| and
    /// [`ABSOLUTE_FLOOR`].
    pub threshold: f64,
}

impl OutlierRule {
    /// None for an empty slice.
    pub fn fit(values: &[f64]) -> Option<OutlierRule> {
        let mid = median_of(values.to_vec())?;
        let mad = median_of(values.iter().map(|v| (v - mid).abs()).collect())?;
        let threshold = (OUTLIER_SIGMAS * 1.4826 * mad)
            .max(RELATIVE_FLOOR * mid.abs())
            .max(ABSOLUTE_FLOOR);
        Some(OutlierRule {
            median: mid,
            mad,
            threshold,
        })
    }

    pub fn is_outlier(&self, value: f64) -> bool {
        (value - self.median).abs() > self.threshold
    }
}

fn median_of(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

/// Three significant digits, for medians and thresholds in titles.
fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let digits = 3 - 1 - x.abs().log10().floor() as i32;
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn sorted(nodes: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = nodes.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}
