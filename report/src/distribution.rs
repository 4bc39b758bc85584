//! Value distributions: how each check's observed values spread across
//! the fleet, top values first, bounded, with sample node names. This is
//! how an operator tracks a rollout (`kubelet-version: 1.28.3 on 9,812
//! nodes, 1.27.9 on 188`). Pure functions.
//!
//! Discrete values are counted as they are. A gauge (see
//! [`patrol_checks::kinds::value_nature`]) has as many values as nodes, so
//! its distribution also carries quantiles (min, p50, p90, p99, max).
//!
//! Values with a unit (a gauge's `%`, `MiB`, `ms`, `processes`: see
//! [`patrol_checks::CheckKind::unit`]) print it: after every plain
//! number, and after the check id when the values are named
//! (`disk-space (values in %): ...`). The unit comes from the check as the
//! built-in profiles define it ([`distributions`]), or as the report's
//! config does ([`label_units`]).
//!
//! Values and node names come from nodes: [`Distribution::line`] and
//! [`Distribution::table`] print them through
//! [`patrol_checks::printable::one_line`], so they are safe on a terminal
//! and in the plain-text report. The fields keep the exact text.

use std::collections::{BTreeMap, HashMap};

use patrol_checks::kinds::{value_nature, ValueNature};
use patrol_checks::printable::one_line;
use patrol_checks::{NodeState, Observed, Status, SweepView};
use serde::{Deserialize, Serialize};

use crate::text::thousands;

/// Values listed per check; the others are counted in `other_nodes`.
pub const TOP_VALUES: usize = 5;
/// Node names given per value.
pub const SAMPLE_NAMES: usize = 3;
/// Characters of a value shown (a kernel log line can be kilobytes).
pub const MAX_VALUE_CHARS: usize = 80;

/// One value and the nodes that have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueCount {
    pub value: String,
    pub nodes: usize,
    /// Up to [`SAMPLE_NAMES`] node names, sorted.
    pub samples: Vec<String>,
}

/// Quantiles of a numeric gauge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    /// The node with the largest value.
    pub max_node: String,
}

impl Quantiles {
    /// `min A{sep}p50 B{sep}p90 C{sep}p99 D{sep}max E (node)`, each
    /// number with `unit`.
    fn words(&self, sep: &str, unit: Option<&str>) -> String {
        let n = |x: f64| with_unit(num(x), unit);
        format!(
            "min {}{sep}p50 {}{sep}p90 {}{sep}p99 {}{sep}max {} ({})",
            n(self.min),
            n(self.p50),
            n(self.p90),
            n(self.p99),
            n(self.max),
            one_line(&self.max_node)
        )
    }
}

/// `text` followed by `unit` (`42%`, `512 MiB`) when it has one.
fn with_unit(text: String, unit: Option<&str>) -> String {
    match unit {
        Some("%") => format!("{text}%"),
        Some(u) => format!("{text} {u}"),
        None => text,
    }
}

/// How one check's values spread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub check: String,
    /// Nodes that observed a value.
    pub observed: usize,
    /// Nodes where the check could not observe (`error`).
    pub errors: usize,
    /// Distinct values in all.
    pub distinct: usize,
    /// The most common values, most nodes first (ties by value).
    pub top: Vec<ValueCount>,
    /// Nodes holding a value not in `top`.
    pub other_nodes: usize,
    /// For plain-number gauges.
    pub quantiles: Option<Quantiles>,
    /// The unit of the values (`%`, `MiB`, `ms`...), when they have one.
    #[serde(default)]
    pub unit: Option<String>,
}

impl Distribution {
    /// `kubelet-version: 1.28.3 on 9,812 nodes, 1.27.9 on 188 (node-00017,
    /// node-00230, node-00311)`, one line. A gauge whose every value is
    /// on one node only gives its quantiles.
    pub fn line(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let all_differ = self.quantiles.is_some() && self.top.iter().all(|v| v.nodes == 1);
        if all_differ {
            parts.push(format!(
                "{} different values",
                thousands(self.distinct as u64)
            ));
        }
        for (i, v) in self.top.iter().enumerate().filter(|_| !all_differ) {
            let mut p = format!("{} on {}", self.show(&v.value), thousands(v.nodes as u64));
            if i == 0 {
                p.push_str(if v.nodes == 1 { " node" } else { " nodes" });
            }
            // The leader's names say little; a minority's say where to look.
            if i > 0 || self.top.len() == 1 {
                p.push_str(&format!(" ({})", self.sample_text(v)));
            }
            parts.push(p);
        }
        if self.other_nodes > 0 && !all_differ {
            parts.push(format!(
                "{} other values on {}",
                thousands((self.distinct - self.top.len()) as u64),
                thousands(self.other_nodes as u64)
            ));
        }
        if self.errors > 0 {
            parts.push(format!("not observed on {}", thousands(self.errors as u64)));
        }
        let mut s = format!(
            "{}{}: {}",
            one_line(&self.check),
            self.unit_note(),
            parts.join(", ")
        );
        if let Some(q) = &self.quantiles {
            s.push_str(&format!("; {}", q.words(", ", self.unit.as_deref())));
        }
        s
    }

    /// A value as shown: clipped, with the unit after a plain number.
    fn show(&self, value: &str) -> String {
        let unit = self
            .unit
            .as_deref()
            .filter(|_| value.parse::<f64>().is_ok());
        with_unit(clip(value), unit)
    }

    /// ` (values in %)` when the values have a unit that is not printed
    /// after them (named values, such as one per mount point).
    fn unit_note(&self) -> String {
        match &self.unit {
            Some(u) if self.top.iter().any(|v| v.value.parse::<f64>().is_err()) => {
                format!(" (values in {u})")
            }
            _ => String::new(),
        }
    }

    fn sample_text(&self, v: &ValueCount) -> String {
        let more = v.nodes.saturating_sub(v.samples.len());
        let names = one_line(&v.samples.join(", ")).into_owned();
        if more > 0 {
            format!("{names}, ...")
        } else {
            names
        }
    }

    /// Several lines for `patrol sweep --distribution`: one per top value.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{}{}: {} nodes observed, {} distinct values{}\n",
            one_line(&self.check),
            self.unit_note(),
            thousands(self.observed as u64),
            thousands(self.distinct as u64),
            if self.errors > 0 {
                format!(", not observed on {}", thousands(self.errors as u64))
            } else {
                String::new()
            }
        );
        let width = self
            .top
            .iter()
            .map(|v| self.show(&v.value).chars().count())
            .max()
            .unwrap_or(0);
        for v in &self.top {
            let pct = 100.0 * v.nodes as f64 / self.observed.max(1) as f64;
            let pct = if pct > 0.0 && pct < 0.1 {
                "<0.1%".to_string()
            } else {
                format!("{pct:.1}%")
            };
            out.push_str(&format!(
                "  {:<width$}  {:>7} nodes {:>6}  {}\n",
                self.show(&v.value),
                thousands(v.nodes as u64),
                pct,
                self.sample_text(v)
            ));
        }
        if self.other_nodes > 0 {
            out.push_str(&format!(
                "  ({} other values on {} nodes)\n",
                thousands((self.distinct - self.top.len()) as u64),
                thousands(self.other_nodes as u64)
            ));
        }
        if let Some(q) = &self.quantiles {
            out.push_str(&format!("  {}\n", q.words("  ", self.unit.as_deref())));
        }
        out
    }
}

fn num(x: f64) -> String {
    Observed::Number((x * 100.0).round() / 100.0).to_string()
}

/// `value` safe to print ([`one_line`]) and cut to [`MAX_VALUE_CHARS`].
fn clip(value: &str) -> String {
    let value = one_line(value);
    if value.chars().count() <= MAX_VALUE_CHARS {
        value.into_owned()
    } else {
        let cut: String = value.chars().take(MAX_VALUE_CHARS - 3).collect();
        format!("{cut}...")
    }
}

/// The distribution of every check in `doc`, ordered by check id, with
/// the units of the built-in profiles' checks.
pub fn distributions(doc: &dyn SweepView) -> Vec<Distribution> {
    let mut all = unlabelled(doc);
    label_units(&mut all, &patrol_checks::check_units(None));
    all
}

/// Set each distribution's unit from `units` (check id to unit, as
/// [`patrol_checks::check_units`] gives them for a config).
pub fn label_units(distributions: &mut [Distribution], units: &BTreeMap<String, &str>) {
    for d in distributions {
        d.unit = units.get(&d.check).map(|u| u.to_string());
    }
}

/// What [`unlabelled`] keeps of one check while the nodes go by: counts
/// and a bounded sample per value, never the rows (2,000,000 at 100,000
/// nodes with 20 checks each).
struct Tally {
    /// The first node's kind of the check.
    kind: String,
    rows: usize,
    errors: usize,
    /// value -> (nodes, the [`SAMPLE_NAMES`] smallest names)
    counts: HashMap<String, (usize, Vec<String>)>,
    /// Every plain number observed, with its node (an index into the
    /// names), for the quantiles.
    numbers: Vec<(f64, u32)>,
    gauge: bool,
}

impl Tally {
    fn new(kind: &str) -> Tally {
        Tally {
            kind: kind.to_string(),
            rows: 0,
            errors: 0,
            counts: HashMap::new(),
            numbers: Vec::new(),
            gauge: false,
        }
    }

    fn add(&mut self, name: &str, node: u32, observed: Option<&Observed>) {
        self.rows += 1;
        let Some(o) = observed else {
            self.errors += 1;
            return;
        };
        self.gauge |= value_nature(&self.kind, o) != ValueNature::Discrete;
        if let Observed::Number(n) = o {
            self.numbers.push((*n, node));
        }
        let e = self.counts.entry(o.to_string()).or_default();
        e.0 += 1;
        // The smallest names, as sorting them all and taking the first
        // would give.
        let at = e.1.partition_point(|s| s.as_str() <= name);
        if at < SAMPLE_NAMES {
            e.1.insert(at, name.to_string());
            e.1.truncate(SAMPLE_NAMES);
        }
    }
}

fn unlabelled(doc: &dyn SweepView) -> Vec<Distribution> {
    // The names of the nodes that answered; numbers name them by index.
    let mut names: Vec<String> = Vec::new();
    let mut by_check: BTreeMap<String, Tally> = BTreeMap::new();
    for node in doc.nodes() {
        if !matches!(node.state, NodeState::Ok | NodeState::Failing) {
            continue;
        }
        let at = names.len() as u32;
        names.push(node.name.clone());
        for c in &node.checks {
            if !by_check.contains_key(&c.id) {
                by_check.insert(c.id.clone(), Tally::new(&c.kind));
            }
            let observed = (c.status != Status::Error).then_some(&c.observed);
            if let Some(t) = by_check.get_mut(&c.id) {
                t.add(&node.name, at, observed);
            }
        }
    }
    by_check
        .into_iter()
        .map(|(check, tally)| build(&check, tally, &names))
        .collect()
}

/// The distribution of one check, or None when no node ran it.
pub fn distribution(doc: &dyn SweepView, check: &str) -> Option<Distribution> {
    distributions(doc).into_iter().find(|d| d.check == check)
}

fn build(check: &str, tally: Tally, names: &[String]) -> Distribution {
    let Tally {
        rows,
        errors,
        counts,
        mut numbers,
        gauge,
        ..
    } = tally;
    let observed = rows - errors;
    let distinct = counts.len();
    let mut values: Vec<(String, (usize, Vec<String>))> = counts.into_iter().collect();
    values.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(&b.0)));
    let top: Vec<ValueCount> = values
        .into_iter()
        .take(TOP_VALUES)
        .map(|(value, (nodes, samples))| ValueCount {
            value,
            nodes,
            samples,
        })
        .collect();
    let other_nodes = observed - top.iter().map(|v| v.nodes).sum::<usize>();
    let name = |i: u32| names[i as usize].as_str();
    let quantiles = (gauge && !numbers.is_empty() && numbers.len() == observed).then(|| {
        numbers.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| name(a.1).cmp(name(b.1))));
        let at = |q: f64| numbers[((numbers.len() - 1) as f64 * q).round() as usize].0;
        let last = numbers[numbers.len() - 1];
        Quantiles {
            min: numbers[0].0,
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: last.0,
            max_node: name(last.1).to_string(),
        }
    });
    Distribution {
        check: check.to_string(),
        observed,
        errors,
        distinct,
        top,
        other_nodes,
        quantiles,
        unit: None,
    }
}
