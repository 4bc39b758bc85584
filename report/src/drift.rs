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
use patrol_checks::{NodeState, Observed, Status, SweepView};
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

/// What one (peer group, check) pair of [`find_drift`] keeps while the
/// nodes go by: never the rows themselves, which would hold every node's
/// every check (2,000,000 at 100,000 nodes), but what each rule needs.
/// The nature is the first row's, as the rule is chosen by it.
enum Series {
    /// Per value: the nodes holding it (by index into the names) and
    /// whether every one of them passed; and how many rows there were.
    Discrete {
        rows: usize,
        values: HashMap<String, (Vec<u32>, bool)>,
    },
    /// Per component: (node, value, passing) of every finite number.
    Gauge(BTreeMap<String, Vec<(u32, f64, bool)>>),
    Ignored,
}

impl Series {
    fn new(kind: &str, first: &Observed) -> Series {
        match value_nature(kind, first) {
            ValueNature::Discrete => Series::Discrete {
                rows: 0,
                values: HashMap::new(),
            },
            ValueNature::Gauge => Series::Gauge(BTreeMap::new()),
            ValueNature::Ignored => Series::Ignored,
        }
    }

    fn add(&mut self, node: u32, observed: &Observed, passing: bool) {
        match self {
            Series::Discrete { rows, values } => {
                *rows += 1;
                let e = values
                    .entry(observed.to_string())
                    .or_insert_with(|| (Vec::new(), true));
                e.0.push(node);
                e.1 &= passing;
            }
            Series::Gauge(series) => {
                for (component, value) in components(observed).unwrap_or_default() {
                    if value.is_finite() {
                        series
                            .entry(component)
                            .or_default()
                            .push((node, value, passing));
                    }
                }
            }
            Series::Ignored => {}
        }
    }
}

/// Every drift in `doc`, ordered by check, peer group, then fewest nodes
/// first. Failing values are left to the anomaly groups.
pub fn find_drift(doc: &dyn SweepView) -> Vec<Drift> {
    // The names of the nodes that answered; the series name them by index.
    let mut names: Vec<String> = Vec::new();
    // peer tags -> check id -> series
    let mut table: BTreeMap<String, BTreeMap<String, Series>> = BTreeMap::new();
    for node in doc.nodes() {
        if !matches!(node.state, NodeState::Ok | NodeState::Failing) {
            continue;
        }
        let peer = node
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let at = names.len() as u32;
        names.push(node.name.clone());
        let checks = table.entry(peer).or_default();
        for c in &node.checks {
            if c.status == Status::Error {
                continue; // nothing observed
            }
            if !checks.contains_key(&c.id) {
                checks.insert(c.id.clone(), Series::new(&c.kind, &c.observed));
            }
            if let Some(series) = checks.get_mut(&c.id) {
                series.add(at, &c.observed, c.status == Status::Pass);
            }
        }
    }
    let mut out = Vec::new();
    for (peer, checks) in table {
        for (check, series) in checks {
            match series {
                Series::Discrete { rows, values } => {
                    out.extend(majority_drift(&peer, &check, rows, values, &names))
                }
                Series::Gauge(series) => out.extend(gauge_drift(&peer, &check, series, &names)),
                Series::Ignored => {}
            }
        }
    }
    out
}

fn majority_drift(
    peer: &str,
    check: &str,
    total: usize,
    values: HashMap<String, (Vec<u32>, bool)>,
    names: &[String],
) -> Vec<Drift> {
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
            nodes: sorted(nodes.iter().map(|&i| names[i as usize].as_str())),
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

fn gauge_drift(
    peer: &str,
    check: &str,
    series: BTreeMap<String, Vec<(u32, f64, bool)>>,
    names: &[String],
) -> Vec<Drift> {
    let mut out = Vec::new();
    for (component, points) in series {
        if points.len() < MIN_GAUGE_PEERS {
            continue;
        }
        let values: Vec<f64> = points.iter().map(|p| p.1).collect();
        let Some(rule) = OutlierRule::fit(&values) else {
            continue;
        };
        let outliers: Vec<&(u32, f64, bool)> = points
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
        let outlier_names = outliers.iter().map(|p| names[p.0 as usize].as_str());
        out.push(Drift {
            check: if component.is_empty() {
                check.to_string()
            } else {
                format!("{check}[{component}]")
            },
            value,
            nodes: sorted(outlier_names),
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

fn sorted<'a>(nodes: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = nodes.map(str::to_string).collect();
    v.sort();
    v
}
