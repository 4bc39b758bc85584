//! What a certified sweep (with `[trust]`) says of the coordinator's
//! roster, in words: the nodes gone from it (left, revoked, forgotten or
//! expired, with when they were last seen) and the nodes that answered with
//! proof although SWIM did not count them alive ("SWIM disagreed"). Shared
//! by the report bodies and the CLI's sweep table. Pure.

use jiff::tz::TimeZone;
use patrol_checks::document::GoneNode;
use patrol_checks::{SweepView, SwimState};
use serde::{Deserialize, Serialize};

use crate::text::date_time;

/// Gone nodes listed by name in the report and the terminal line; the
/// rest are counted (all are in `sweep.json`).
pub const MAX_GONE: usize = 50;

/// A node that answered although SWIM did not count it alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwimDisagreed {
    pub name: String,
    pub addr: String,
    /// What SWIM said of it when the sweep ended.
    pub swim: SwimState,
}

impl SwimDisagreed {
    /// `answered; SWIM said down`.
    pub fn note(&self) -> String {
        swim_note(self.swim)
    }
}

/// The note for a node that answered although SWIM said `swim`.
pub fn swim_note(swim: SwimState) -> String {
    match swim {
        SwimState::Unknown => "answered; SWIM did not list it".to_string(),
        s => format!("answered; SWIM said {s}"),
    }
}

/// The nodes of `doc` whose answer SWIM disagreed with, by name.
pub fn swim_disagreed(doc: &dyn SweepView) -> Vec<SwimDisagreed> {
    let mut list: Vec<SwimDisagreed> = doc
        .nodes()
        .filter_map(|n| {
            n.swim.map(|swim| SwimDisagreed {
                name: n.name.clone(),
                addr: n.addr.clone(),
                swim,
            })
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

/// The gone nodes of `doc`, most recently gone first.
pub fn gone(doc: &dyn SweepView) -> Vec<GoneNode> {
    let mut list = doc.head().gone.to_vec();
    list.sort_by(|a, b| {
        b.gone_unix_ms
            .cmp(&a.gone_unix_ms)
            .then(a.name.cmp(&b.name))
    });
    list
}

/// What each reason means, for people.
pub fn reason_words(reason: &str) -> &'static str {
    match reason {
        "left" => "left the cluster (its own signed leave)",
        "revoked" => "its certificate was revoked",
        "forgotten" => "an operator forgot it (patrol roster forget)",
        "expired" => "not seen for the roster's expiry ([sweep] roster_expiry)",
        _ => "gone from the roster",
    }
}

/// One gone node as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoneView {
    pub name: String,
    pub addr: String,
    pub reason: String,
    /// [`reason_words`].
    pub why: String,
    pub last_seen: String,
    pub gone: String,
}

/// At most [`MAX_GONE`] gone nodes as shown, and how many more there are.
pub fn gone_views(gone: &[GoneNode], zone: &TimeZone) -> (Vec<GoneView>, usize) {
    let views = gone
        .iter()
        .take(MAX_GONE)
        .map(|g| GoneView {
            name: g.name.clone(),
            addr: g.addr.clone(),
            reason: g.reason.to_uppercase(),
            why: reason_words(&g.reason).to_string(),
            last_seen: when(g.last_seen_unix_ms, zone),
            gone: when(g.gone_unix_ms, zone),
        })
        .collect();
    (views, gone.len().saturating_sub(MAX_GONE))
}

fn when(unix_ms: u64, zone: &TimeZone) -> String {
    if unix_ms == 0 {
        "unknown".to_string()
    } else {
        date_time(unix_ms, zone)
    }
}

/// The terminal's one line: `2 gone: node-7 (expired, last seen
/// 2026-11-28 03:12 UTC), node-9 (left, last seen ...)`; empty when none.
/// Names come from nodes: the caller prints it through `one_line`.
pub fn gone_line(doc: &dyn SweepView, zone: &TimeZone) -> String {
    const NAMED: usize = 5;
    let list = gone(doc);
    if list.is_empty() {
        return String::new();
    }
    let named: Vec<String> = list
        .iter()
        .take(NAMED)
        .map(|g| {
            format!(
                "{} ({}, last seen {})",
                g.name,
                g.reason,
                when(g.last_seen_unix_ms, zone)
            )
        })
        .collect();
    let more = match list.len().saturating_sub(NAMED) {
        0 => String::new(),
        n => format!(", ... (+{n})"),
    };
    format!(
        "{} gone from the roster: {}{more}",
        list.len(),
        named.join(", ")
    )
}

/// The terminal's line for nodes SWIM disagreed with; empty when none.
pub fn swim_line(doc: &dyn SweepView) -> String {
    let list = swim_disagreed(doc);
    if list.is_empty() {
        return String::new();
    }
    let named: Vec<String> = list
        .iter()
        .map(|d| format!("{} ({})", d.name, d.note()))
        .collect();
    format!(
        "SWIM disagreed with {} answer{}: {}",
        list.len(),
        if list.len() == 1 { "" } else { "s" },
        named.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::with_roster;

    #[test]
    fn the_gone_line_names_each_node_with_its_reason_and_last_seen_most_recent_first() {
        let doc = with_roster();
        assert_eq!(
            gone_line(&doc, &TimeZone::UTC),
            "2 gone from the roster: node-9 (forgotten, last seen 2026-11-21 22:40 UTC), node-7 (expired, last seen 2026-11-15 03:12 UTC)"
        );
        assert_eq!(
            swim_line(&doc),
            "SWIM disagreed with 1 answer: node-03 (answered; SWIM said down)"
        );
        let mut plain = doc.clone();
        plain.gone.clear();
        plain.nodes.iter_mut().for_each(|n| n.swim = None);
        assert_eq!(gone_line(&plain, &TimeZone::UTC), "");
        assert_eq!(swim_line(&plain), "");
    }

    #[test]
    fn a_node_swim_did_not_list_reads_as_such() {
        assert_eq!(
            swim_note(SwimState::Unknown),
            "answered; SWIM did not list it"
        );
        assert_eq!(swim_note(SwimState::Suspect), "answered; SWIM said suspect");
    }
}
