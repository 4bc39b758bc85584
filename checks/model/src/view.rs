//! [`SweepView`]: a finished sweep as its readers (the CLI's table, JSON
//! and JUnit, the report, the history) see it: the document's own fields
//! ([`Head`]) and its nodes one at a time.
//!
//! Both forms of a document are views: a [`SweepDocument`] lends its
//! nodes, a [`CompactDocument`] spells out one node at a time as it is
//! read. So a reader written against the view holds at most one expanded
//! node of a compact document, never the whole expanded document, and
//! the 100,000-node document of issue 25 stays at its compact size in the
//! CLI too.
//!
//! **Architecture Invariant:** a reader that keeps something of every
//! node keeps an aggregate (a count, a bounded sample), never the nodes.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::compact::CompactDocument;
use crate::document::{GoneNode, NodeEntry, StateCounts, SweepDocument, SweepTiming};
use crate::Selector;

/// A document's fields other than its nodes, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub version: u32,
    pub sweep_id: &'a str,
    pub cluster: &'a str,
    pub coordinator: &'a str,
    pub operator: Option<&'a str>,
    pub started_at_unix_ms: u64,
    pub deadline_ms: u64,
    pub selector: &'a Selector,
    pub node_filter: &'a BTreeMap<String, String>,
    pub counts: &'a StateCounts,
    pub timing: &'a SweepTiming,
    pub gone: &'a [GoneNode],
}

/// The nodes of a view, in the document's order (sorted by name).
pub type Nodes<'a> = Box<dyn ExactSizeIterator<Item = Cow<'a, NodeEntry>> + 'a>;

/// A finished sweep, read node by node (see the module doc).
pub trait SweepView {
    /// The document's fields other than its nodes.
    fn head(&self) -> Head<'_>;

    /// Every node in order, each spelled out (borrowed when the document
    /// holds it so, made as it is reached otherwise).
    fn nodes(&self) -> Nodes<'_>;

    /// How many nodes [`SweepView::nodes`] gives.
    fn node_count(&self) -> usize {
        self.nodes().len()
    }
}

impl SweepView for SweepDocument {
    fn head(&self) -> Head<'_> {
        Head {
            version: self.version,
            sweep_id: &self.sweep_id,
            cluster: &self.cluster,
            coordinator: &self.coordinator,
            operator: self.operator.as_deref(),
            started_at_unix_ms: self.started_at_unix_ms,
            deadline_ms: self.deadline_ms,
            selector: &self.selector,
            node_filter: &self.node_filter,
            counts: &self.counts,
            timing: &self.timing,
            gone: &self.gone,
        }
    }

    fn nodes(&self) -> Nodes<'_> {
        Box::new(self.nodes.iter().map(Cow::Borrowed))
    }

    fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

impl SweepView for CompactDocument {
    fn head(&self) -> Head<'_> {
        Head {
            version: self.version,
            sweep_id: &self.sweep_id,
            cluster: &self.cluster,
            coordinator: &self.coordinator,
            operator: self.operator.as_deref(),
            started_at_unix_ms: self.started_at_unix_ms,
            deadline_ms: self.deadline_ms,
            selector: &self.selector,
            node_filter: &self.node_filter,
            counts: &self.counts,
            timing: &self.timing,
            gone: &self.gone,
        }
    }

    fn nodes(&self) -> Nodes<'_> {
        Box::new(self.expanded_nodes().map(Cow::Owned))
    }

    fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

/// The nodes of `view` as a JSON array, written one at a time.
struct NodesJson<'a>(&'a dyn SweepView);

impl serde::Serialize for NodesJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let nodes = self.0.nodes();
        let mut seq = serializer.serialize_seq(Some(nodes.len()))?;
        for n in nodes {
            seq.serialize_element(n.as_ref())?;
        }
        seq.end()
    }
}

/// Writes a view as the JSON of the [`SweepDocument`] it stands for
/// (exactly what `serde_json` writes for that document), one node at a
/// time.
pub struct DocumentJson<'a>(pub &'a dyn SweepView);

impl serde::Serialize for DocumentJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let h = self.0.head();
        // The field order and presence of SweepDocument's derived impl.
        let mut s = serializer.serialize_struct("SweepDocument", 13)?;
        s.serialize_field("version", &h.version)?;
        s.serialize_field("sweep_id", h.sweep_id)?;
        s.serialize_field("cluster", h.cluster)?;
        s.serialize_field("coordinator", h.coordinator)?;
        s.serialize_field("operator", &h.operator)?;
        s.serialize_field("started_at_unix_ms", &h.started_at_unix_ms)?;
        s.serialize_field("deadline_ms", &h.deadline_ms)?;
        s.serialize_field("selector", h.selector)?;
        s.serialize_field("node_filter", h.node_filter)?;
        s.serialize_field("counts", h.counts)?;
        s.serialize_field("nodes", &NodesJson(self.0))?;
        s.serialize_field("timing", h.timing)?;
        s.serialize_field("gone", h.gone)?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{NodeState, SweepTiming};
    use crate::{CheckOutcome, Observed, Severity, Status};

    fn document() -> SweepDocument {
        let check = |id: &str, status| CheckOutcome {
            id: id.into(),
            kind: "sysctl".into(),
            status,
            severity: Severity::Fail,
            observed: Observed::Number(3.0),
            expected: ">= 2".into(),
            message: String::new(),
            duration_us: 7,
            description: "d".into(),
            remediation: "r".into(),
        };
        let node = |name: &str, state, checks| NodeEntry {
            name: name.into(),
            addr: "10.0.0.1:7946".into(),
            tags: BTreeMap::from([("rack".into(), "r1".into())]),
            state,
            late_joiner: false,
            reached_ms: Some(3),
            answered_ms: None,
            checks_ms: Some(1),
            checks,
            clock: None,
            silence: None,
            swim: None,
        };
        let mut doc = SweepDocument {
            version: 2,
            sweep_id: "00000000000000ab".into(),
            cluster: "prod".into(),
            coordinator: "n0".into(),
            operator: Some("ops".into()),
            started_at_unix_ms: 1_000,
            deadline_ms: 5_000,
            selector: Selector::default(),
            node_filter: BTreeMap::new(),
            counts: StateCounts::default(),
            nodes: vec![
                node("n0", NodeState::Ok, vec![check("a", Status::Pass)]),
                node(
                    "n1",
                    NodeState::Failing,
                    vec![check("a", Status::Pass), check("b", Status::Fail)],
                ),
                node("n2", NodeState::Down, vec![]),
            ],
            timing: SweepTiming {
                completed_ms: 9,
                ..SweepTiming::default()
            },
            gone: Vec::new(),
        };
        doc.recount();
        doc
    }

    #[test]
    fn both_forms_show_the_same_head_and_nodes_and_write_the_same_json() {
        let doc = document();
        let compact = CompactDocument::from_document(doc.clone());
        let views: [&dyn SweepView; 2] = [&doc, &compact];
        for v in views {
            assert_eq!(v.node_count(), 3);
            assert_eq!(v.head().operator, Some("ops"));
            assert_eq!(v.head().counts, &doc.counts);
            let nodes: Vec<NodeEntry> = v.nodes().map(Cow::into_owned).collect();
            assert_eq!(nodes, doc.nodes);
            assert_eq!(
                serde_json::to_string_pretty(&DocumentJson(v)).unwrap(),
                serde_json::to_string_pretty(&doc).unwrap()
            );
        }
    }
}
