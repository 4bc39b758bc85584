//! Rendering: the subject line, and askama templates for the HTML body
//! (built for mail clients: table layout, inline styles, 640 px, no
//! scripts, colour plus words) and the plain-text body.
//!
//! Both bodies stay bounded for huge fleets: at most [`SAMPLE_NODES`] node
//! names per group, [`MAX_GROUPS`] anomaly groups, [`MAX_SECONDARY`]
//! drift and resolved groups and [`MAX_UNREACHABLE`] unreachable nodes;
//! the rest are counted, and the CSV attachment carries every node. With
//! every section full the HTML stays under 400 KB (tested).

use askama::Template;
use jiff::tz::TimeZone;
use patrol_checks::{NodeState, Status};

use crate::diff::{Change, MarkedGroup};
use crate::drift::Drift;
use crate::error::ReportError;
use crate::summary::Report;
use crate::text::{date, date_time, millis, opt_millis, thousands};

/// Node names shown per group; the rest are counted.
pub const SAMPLE_NODES: usize = 8;
/// Anomaly groups shown; the rest are counted.
pub const MAX_GROUPS: usize = 200;
/// Drift and resolved groups shown (each); the rest are counted.
pub const MAX_SECONDARY: usize = 50;
/// Characters of a group title shown (a kernel log line as the observed
/// value can be kilobytes); the CSV keeps the whole value.
pub const MAX_TITLE_CHARS: usize = 240;
/// Unreachable nodes listed by name.
pub const MAX_UNREACHABLE: usize = 50;
/// Checks whose value distribution is shown; the rest are counted.
pub const MAX_DISTRIBUTIONS: usize = 60;

/// One headline figure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    pub label: &'static str,
    pub value: String,
    /// Draw attention (red) in the HTML: a non-zero count of trouble.
    pub alert: bool,
}

/// One anomaly group as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub status: &'static str,
    pub status_colour: &'static str,
    pub change: String,
    pub change_colour: &'static str,
    pub title: String,
    pub count: String,
    pub sample: String,
    pub remediation: String,
}

/// One drift line as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftView {
    pub title: String,
    pub sample: String,
    pub peer: String,
}

/// One unreachable node as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub addr: String,
    pub state: &'static str,
    /// Why it is silent (empty when the document does not say).
    pub why: String,
}

/// What both templates read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Where the full per-node detail is (the report folder, or what the
    /// mail attaches), the footer's line.
    pub detail: String,
    pub subject: String,
    pub cluster: String,
    pub sweep_id: String,
    pub coordinator: String,
    pub started: String,
    pub scope: String,
    pub compared: String,
    /// History problems that did not stop the report.
    pub warnings: Vec<String>,
    /// Where the trend chart is (`trend.png`, or `cid:...` in the mail);
    /// None without a trend.
    pub chart: Option<String>,
    /// The chart in words (its `alt` text).
    pub chart_alt: String,
    pub figures: Vec<Figure>,
    /// Anomaly groups in all (families count each of their groups).
    pub groups_total: usize,
    /// Cards shown: single groups and families.
    pub groups: Vec<GroupView>,
    /// Groups in the cards left out.
    pub groups_more: usize,
    pub resolved_total: usize,
    pub resolved: Vec<GroupView>,
    pub resolved_more: usize,
    pub drift: Vec<DriftView>,
    pub drift_more: usize,
    pub unreachable: Vec<NodeView>,
    pub unreachable_total: String,
    pub unreachable_more: String,
    /// Nodes gone from the roster (at most [`crate::roster::MAX_GONE`]).
    pub gone: Vec<crate::roster::GoneView>,
    pub gone_total: usize,
    pub gone_more: usize,
    /// Nodes that answered although SWIM did not count them alive: name,
    /// address, note (`answered; SWIM said down`).
    pub swim_disagreed: Vec<NodeView>,
    /// Certified nodes by certificate expiry: (group, total, nodes).
    pub expiry: Vec<(String, usize, String)>,
    /// One line per check: how its values spread (see
    /// [`crate::distribution::Distribution::line`]).
    /// Checks whose values differ across the nodes (or that some node
    /// could not observe), one line each.
    pub distributions: Vec<String>,
    pub distributions_more: usize,
    /// "24 checks uniform across the fleet" (empty when none is).
    pub distributions_uniform: String,
}

#[derive(Template)]
#[template(path = "report.html")]
struct HtmlTemplate<'a> {
    v: &'a View,
}

#[derive(Template)]
#[template(path = "report.txt")]
struct TextTemplate<'a> {
    v: &'a View,
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!(
        "{} {}",
        thousands(n as u64),
        if n == 1 { one } else { many }
    )
}

/// `[patrol] prod: 3 anomalies (1 new), 2 unreachable - 2026-11-22`, one
/// line with no control character.
pub fn subject(report: &Report, prefix: &str) -> String {
    let h = &report.aggregate.headline;
    let unreachable = (h.no_answer + h.down) as usize;
    let mut s = format!(
        "{prefix} {}: {} ({} new)",
        // The cluster name comes from the coordinator's config: a mail
        // header must not carry its control characters.
        patrol_checks::printable::one_line(&report.cluster),
        plural(report.groups.len(), "anomaly", "anomalies"),
        thousands(report.new_groups() as u64)
    );
    if unreachable > 0 {
        s.push_str(&format!(", {} unreachable", thousands(unreachable as u64)));
    }
    if !report.drift.is_empty() {
        s.push_str(&format!(", {} drift", thousands(report.drift.len() as u64)));
    }
    s.push_str(&format!(
        " - {}",
        date(report.started_at_unix_ms, &report.time_zone)
    ));
    s
}

/// `text` cut to [`MAX_TITLE_CHARS`] characters, marked with `...`.
fn clip(text: String) -> String {
    match text.char_indices().nth(MAX_TITLE_CHARS) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

fn sample(nodes: &[String]) -> String {
    let mut s = nodes
        .iter()
        .take(SAMPLE_NODES)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if nodes.len() > SAMPLE_NODES {
        s.push_str(&format!(
            ", ... (+{})",
            thousands((nodes.len() - SAMPLE_NODES) as u64)
        ));
    }
    s
}

fn status_colour(s: Status) -> &'static str {
    match s {
        Status::Fail => "#b91c1c",
        Status::Error => "#7c2d12",
        Status::Warn => "#a16207",
        Status::Pass => "#15803d",
    }
}

fn group_view(m: &MarkedGroup, zone: &TimeZone) -> GroupView {
    let (change, change_colour) = match m.change {
        Change::New => ("NEW".to_string(), "#b91c1c"),
        Change::Persisting { since_unix_ms } => (
            format!("persisting since {}", date_time(since_unix_ms, zone)),
            "#57534e",
        ),
        Change::Resolved => ("RESOLVED".to_string(), "#15803d"),
    };
    let n = m.group.nodes.len();
    GroupView {
        status: match m.group.key.status {
            Status::Fail => "FAIL",
            Status::Error => "ERROR",
            Status::Warn => "WARN",
            Status::Pass => "PASS",
        },
        status_colour: status_colour(m.group.key.status),
        change,
        change_colour,
        title: clip(m.group.title()),
        count: plural(n, "node", "nodes"),
        sample: seen_by(&m.group.key.check, sample(&m.group.nodes)),
        remediation: match m.group.key.status {
            // The check's remediation is for a value that missed its
            // expectation; an error observed no value.
            Status::Error => format!(
                "make the check able to observe (the node says: {}), then sweep again",
                m.group.message.lines().next().unwrap_or("")
            ),
            _ => m.group.remediation.clone(),
        },
    }
}

/// One card for a family of groups (see [`crate::family`]).
fn family_view(members: &[&MarkedGroup], zone: &TimeZone) -> GroupView {
    let first = members[0];
    let mut view = group_view(first, zone);
    let n_values = members.len();
    let new = members.iter().filter(|m| m.change == Change::New).count();
    let earliest = members
        .iter()
        .filter_map(|m| match m.change {
            Change::Persisting { since_unix_ms } => Some(since_unix_ms),
            _ => None,
        })
        .min();
    (view.change, view.change_colour) = match (new, earliest) {
        (_, None) if members.iter().all(|m| m.change == Change::Resolved) => {
            ("RESOLVED".to_string(), "#15803d")
        }
        (0, Some(since)) => (
            format!("persisting since {}", date_time(since, zone)),
            "#57534e",
        ),
        (_, None) => ("NEW".to_string(), "#b91c1c"),
        (new, Some(_)) => (format!("NEW for {new} of {n_values} values"), "#b91c1c"),
    };
    let values: Vec<&str> = members
        .iter()
        .map(|m| m.group.key.observed.as_str())
        .collect();
    let range = crate::family::value_range(&values);
    view.title = clip(if first.group.expected.is_empty() {
        format!("{} = {range} ({n_values} values)", first.group.key.check)
    } else {
        format!(
            "{} = {range} ({n_values} values), expected {}",
            first.group.key.check, first.group.expected
        )
    });
    let total: usize = members.iter().map(|m| m.group.nodes.len()).sum();
    view.count = plural(total, "node", "nodes");
    let named: Vec<String> = members
        .iter()
        .flat_map(|m| {
            m.group
                .nodes
                .iter()
                .take(SAMPLE_NODES)
                .map(move |n| format!("{n} ({})", m.group.key.observed))
        })
        .take(SAMPLE_NODES)
        .collect();
    view.sample = named.join(", ");
    if total > named.len() {
        view.sample.push_str(&format!(
            ", ... (+{})",
            thousands((total - named.len()) as u64)
        ));
    }
    view.sample = seen_by(&first.group.key.check, view.sample);
    // A remediation that names its value (an intruder's address) is the
    // first value's only.
    if members
        .iter()
        .any(|m| m.group.remediation != first.group.remediation)
    {
        view.remediation = format!(
            "for {}: {}",
            first.group.key.observed, first.group.remediation
        );
    }
    view
}

/// The check a node lists for each agent it saw claim a name without its
/// certificate: its nodes are the witnesses, not the culprits.
const INTRUDER_CHECK: &str = "patrol.intruder";

/// A group's node list, said as witnesses for [`INTRUDER_CHECK`].
fn seen_by(check: &str, sample: String) -> String {
    if check == INTRUDER_CHECK {
        format!("seen by {sample}")
    } else {
        sample
    }
}

/// Views of `groups`, families folded, at most `max` cards; and how many
/// groups the cards left out hold.
fn card_views(groups: &[MarkedGroup], max: usize, zone: &TimeZone) -> (Vec<GroupView>, usize) {
    let mut cards = crate::family::fold(groups);
    // Worst status first, then most nodes first (a family counts all of
    // its nodes); the sort is stable, so ties keep the groups' order.
    let nodes =
        |card: &Vec<usize>| -> usize { card.iter().map(|&i| groups[i].group.nodes.len()).sum() };
    cards.sort_by(|a, b| {
        let status = |c: &Vec<usize>| groups[c[0]].group.key.status.badness();
        status(b).cmp(&status(a)).then(nodes(b).cmp(&nodes(a)))
    });
    let more = cards.iter().skip(max).map(Vec::len).sum();
    let views = cards
        .iter()
        .take(max)
        .map(|idx| match idx.as_slice() {
            [one] => group_view(&groups[*one], zone),
            many => family_view(&many.iter().map(|&i| &groups[i]).collect::<Vec<_>>(), zone),
        })
        .collect();
    (views, more)
}

fn drift_view(d: &Drift) -> DriftView {
    DriftView {
        title: clip(d.title()),
        sample: sample(&d.nodes),
        peer: if d.peer_tags.is_empty() {
            "untagged nodes".to_string()
        } else {
            format!("peers: {}", d.peer_tags)
        },
    }
}

/// The trend in words: first and last sweep of the chart.
fn chart_alt(report: &Report) -> String {
    match (report.trend.first(), report.trend.last()) {
        (Some(a), Some(b)) => format!(
            "Trend over the last {} sweeps: failing nodes {} to {}, unreachable nodes {} to {}, anomaly groups {} to {}",
            report.trend.len(),
            a.failing,
            b.failing,
            a.unreachable,
            b.unreachable,
            a.groups,
            b.groups
        ),
        _ => String::new(),
    }
}

/// The footer's line in the files written to a report folder.
pub const FILES_DETAIL: &str =
    "Full per-node detail: nodes.csv and sweep.json in this report's folder; anomalies.csv holds only the rows worth reading.";

/// The view both templates read; `prefix` starts the subject.
pub fn view(report: &Report, prefix: &str) -> View {
    let h = &report.aggregate.headline;
    // Two per row: node states on the left, checks and timing on the right.
    let figures = vec![
        Figure {
            label: "Nodes expected",
            value: thousands(h.expected),
            alert: false,
        },
        Figure {
            label: "Checks run",
            value: thousands(h.checks_run),
            alert: false,
        },
        Figure {
            label: "OK",
            value: thousands(h.ok),
            alert: false,
        },
        Figure {
            label: "Checks passed",
            value: format!(
                "{} of {}",
                thousands(h.checks_passed),
                thousands(h.checks_run)
            ),
            alert: false,
        },
        Figure {
            label: "Failing",
            value: thousands(h.failing),
            alert: h.failing > 0,
        },
        Figure {
            label: "Sweep duration",
            value: millis(h.duration_ms),
            alert: false,
        },
        Figure {
            label: "No answer",
            value: thousands(h.no_answer),
            alert: h.no_answer > 0,
        },
        Figure {
            label: "Reached 99% of nodes",
            value: opt_millis(h.reached_p99_ms),
            alert: false,
        },
        Figure {
            label: "Down",
            value: thousands(h.down),
            alert: h.down > 0,
        },
        Figure {
            label: "Reached 100% of nodes",
            value: opt_millis(h.reached_max_ms),
            alert: false,
        },
    ];
    let unreachable = &report.aggregate.unreachable;
    // A check with one value everywhere says nothing a line per check
    // would: it is counted, not listed.
    let spread: Vec<_> = report
        .distributions
        .iter()
        .filter(|d| d.distinct > 1 || d.errors > 0)
        .collect();
    let (shown_groups, groups_more) = card_views(&report.groups, MAX_GROUPS, &report.time_zone);
    let (gone, gone_more) = crate::roster::gone_views(&report.gone, &report.time_zone);
    let (shown_resolved, resolved_more) =
        card_views(&report.resolved, MAX_SECONDARY, &report.time_zone);
    View {
        subject: subject(report, prefix),
        detail: FILES_DETAIL.to_string(),
        cluster: report.cluster.clone(),
        sweep_id: report.sweep_id.clone(),
        // "node-07 for operator alice" when identities are on.
        coordinator: match &report.operator {
            Some(op) => format!("{} for operator {op}", report.coordinator),
            None => report.coordinator.clone(),
        },
        started: date_time(report.started_at_unix_ms, &report.time_zone),
        scope: report.scope.clone(),
        compared: match &report.previous {
            Some((id, at)) => format!(
                "compared with sweep {id} of {}",
                date_time(*at, &report.time_zone)
            ),
            None => "no earlier sweep of this scope: every anomaly is new".to_string(),
        },
        warnings: report.warnings.clone(),
        chart: None,
        chart_alt: chart_alt(report),
        figures,
        groups_total: report.groups.len(),
        groups: shown_groups,
        groups_more,
        resolved_total: report.resolved.len(),
        resolved: shown_resolved,
        resolved_more,
        drift: report
            .drift
            .iter()
            .take(MAX_SECONDARY)
            .map(drift_view)
            .collect(),
        drift_more: report.drift.len().saturating_sub(MAX_SECONDARY),
        unreachable: unreachable
            .iter()
            .take(MAX_UNREACHABLE)
            .map(|u| NodeView {
                name: u.name.clone(),
                addr: u.addr.clone(),
                state: match u.state {
                    NodeState::NoAnswer => "NO ANSWER",
                    NodeState::Down => "DOWN",
                    NodeState::Ok => "OK",
                    NodeState::Failing => "FAILING",
                },
                why: u.why.clone(),
            })
            .collect(),
        gone,
        gone_total: report.gone.len(),
        gone_more,
        swim_disagreed: report
            .swim_disagreed
            .iter()
            .take(MAX_UNREACHABLE)
            .map(|d| NodeView {
                name: d.name.clone(),
                addr: d.addr.clone(),
                state: "SWIM DISAGREED",
                why: d.note(),
            })
            .collect(),
        expiry: report
            .expiry
            .iter()
            .map(|g| (g.label.clone(), g.total, g.line()))
            .collect(),
        distributions: spread
            .iter()
            .take(MAX_DISTRIBUTIONS)
            .map(|d| clip(d.line()))
            .collect(),
        distributions_more: spread.len().saturating_sub(MAX_DISTRIBUTIONS),
        distributions_uniform: match report.distributions.len() - spread.len() {
            0 => String::new(),
            1 => "1 check uniform across the fleet".to_string(),
            n => format!("{} checks uniform across the fleet", thousands(n as u64)),
        },
        unreachable_total: thousands(unreachable.len() as u64),
        unreachable_more: if unreachable.len() > MAX_UNREACHABLE {
            thousands((unreachable.len() - MAX_UNREACHABLE) as u64)
        } else {
            String::new()
        },
    }
}

/// The HTML body.
pub fn html(view: &View) -> Result<String, ReportError> {
    HtmlTemplate { v: view }
        .render()
        .map_err(|source| ReportError::Render {
            what: "HTML",
            source,
        })
}

/// The plain-text body.
pub fn text(view: &View) -> Result<String, ReportError> {
    TextTemplate { v: view }
        .render()
        .map_err(|source| ReportError::Render {
            what: "text",
            source,
        })
}
