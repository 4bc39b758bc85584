//! What the coordinator keeps of an answer until the document is built:
//! a [`Recorded`] answer names a shared [`Shape`] (check names and the
//! results most nodes share) and keeps only where the node differs, its
//! times and its verdict. The document's compact entries are built once,
//! when the sweep completes ([`Recorded::compact`]): a passing check is
//! written against the catalog template of its shape's check name
//! ([`ShapeTemplates`]), without spelling the outcome out.
//!
//! Why: at 100,000 nodes, building a [`patrol_model::NodeEntry`] per answer as it came in
//! cost about 10 µs and 5 KiB per answer (20 outcomes, two strings each,
//! cloned from the answer); an answer recorded against a shape costs a
//! comparison per check and a few dozen bytes (issue 25).
//!
//! Relayed answers already come as a diff against their group's base:
//! their shape is the group header, kept once per (relay, group).
//! Direct answers are compared against the first answer with the same
//! check names ([`Shapes::intern`]). With certificates, the bytes a
//! relayed node's proof covers are encoded straight from the shape and the
//! diff ([`Shape::encode_body`]), the same bytes as the node's own
//! [`AnswerBody::encode`], without rebuilding the body.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use patrol_model::compact::{Catalog, ChecksWriter, TagsId, TemplateId, TemplateRef};
use patrol_model::{CheckOutcome, ClockOffset, CompactNode, NodeState, Severity, Status};
use serde::ser::SerializeSeq;
use serde::Serialize;

use super::super::outcomes::{self, CLOCK_SKEW_CHECK_ID};
use super::super::wire::{AnswerBody, CheckName, CheckResult, GroupHeader, RelayedAnswer};

/// Most distinct check-name lists a sweep interns; answers with other
/// lists keep their own shape (correct, only larger).
const MAX_SHAPES: usize = 1024;

/// Tags, check names and base results shared by many answers.
#[derive(Debug)]
pub(crate) struct Shape {
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) catalog: Vec<CheckName>,
    pub(crate) base: Vec<CheckResult>,
}

impl Shape {
    pub(crate) fn from_header(h: GroupHeader) -> Shape {
        Shape {
            tags: h.tags,
            catalog: h.catalog,
            base: h.base,
        }
    }

    /// Whether the check names and results pair up.
    fn aligned(&self) -> bool {
        self.catalog.len() == self.base.len()
    }

    /// Whether `diff` only points at results this shape has.
    pub(crate) fn fits(&self, diff: &[(u16, CheckResult)]) -> bool {
        diff.iter().all(|(i, _)| usize::from(*i) < self.base.len())
    }

    /// The encoded [`AnswerBody`] of relayed answer `n` (which must
    /// [`Shape::fits`]): what the node's proof covers.
    pub(crate) fn encode_body(&self, n: &RelayedAnswer) -> Vec<u8> {
        let body = BodyRef {
            tags: &self.tags,
            received_unix_ms: n.received_unix_ms,
            checks_ms: n.checks_ms,
            catalog: &self.catalog,
            results: Patched {
                base: &self.base,
                diff: &n.diff,
            },
        };
        bincode::serde::encode_to_vec(&body, bincode::config::standard()).unwrap_or_default()
    }
}

/// An [`AnswerBody`] by reference; encodes to the same bytes.
#[derive(Serialize)]
struct BodyRef<'a> {
    tags: &'a BTreeMap<String, String>,
    received_unix_ms: u64,
    checks_ms: u64,
    catalog: &'a [CheckName],
    results: Patched<'a>,
}

/// `base` with `diff` applied, as a sequence.
struct Patched<'a> {
    base: &'a [CheckResult],
    diff: &'a [(u16, CheckResult)],
}

impl Patched<'_> {
    fn get(&self, i: usize) -> &CheckResult {
        self.diff
            .iter()
            .rev()
            .find(|(k, _)| usize::from(*k) == i)
            .map_or(&self.base[i], |(_, r)| r)
    }
}

impl Serialize for Patched<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.base.len()))?;
        for i in 0..self.base.len() {
            seq.serialize_element(self.get(i))?;
        }
        seq.end()
    }
}

/// The shapes of a sweep's direct answers, by check names.
#[derive(Debug, Default)]
pub(crate) struct Shapes {
    by_catalog: HashMap<Vec<CheckName>, Arc<Shape>>,
}

impl Shapes {
    /// `body` as a shape shared with earlier answers of the same check
    /// names, and where its results differ from that shape's base.
    pub(crate) fn intern(&mut self, body: AnswerBody) -> (Arc<Shape>, Vec<(u16, CheckResult)>) {
        if let Some(shape) = self.by_catalog.get(body.catalog.as_slice()) {
            if shape.base.len() == body.results.len() {
                let diff = body
                    .results
                    .into_iter()
                    .enumerate()
                    .filter(|(i, r)| shape.base[*i] != *r)
                    .map(|(i, r)| (i as u16, r))
                    .collect();
                return (shape.clone(), diff);
            }
        }
        let shape = Arc::new(Shape {
            tags: BTreeMap::new(),
            catalog: body.catalog,
            base: body.results,
        });
        if shape.aligned()
            && shape.catalog.len() <= usize::from(u16::MAX)
            && self.by_catalog.len() < MAX_SHAPES
        {
            self.by_catalog.insert(shape.catalog.clone(), shape.clone());
        }
        (shape, Vec::new())
    }
}

/// An answer as the coordinator keeps it until the document.
#[derive(Debug)]
pub(crate) struct Recorded {
    shape: Arc<Shape>,
    diff: Vec<(u16, CheckResult)>,
    /// An outcome the sweep adds (`patrol.clock_skew`).
    extra: Option<Box<CheckOutcome>>,
    failing: bool,
    pub(crate) reached_ms: u64,
    answered_ms: u64,
    checks_ms: u64,
    clock: Option<ClockOffset>,
}

/// What [`Recorded::new`] needs besides the shape.
pub(crate) struct Times {
    pub(crate) reached_ms: u64,
    pub(crate) answered_ms: u64,
    pub(crate) checks_ms: u64,
    pub(crate) clock: Option<ClockOffset>,
    /// The clock-skew verdict, when the node is certainly off.
    pub(crate) skew: Option<CheckOutcome>,
}

impl Recorded {
    pub(crate) fn new(shape: Arc<Shape>, diff: Vec<(u16, CheckResult)>, times: Times) -> Self {
        let patched = Patched {
            base: &shape.base,
            diff: &diff,
        };
        let aligned = shape.aligned();
        // A node that refused the request for its clock already says so.
        let extra = times
            .skew
            .filter(|_| !(aligned && shape.catalog.iter().any(|n| n.id == CLOCK_SKEW_CHECK_ID)));
        let failing = !aligned
            || extra.is_some()
            || (0..shape.base.len()).any(|i| patched.get(i).status != Status::Pass);
        Recorded {
            extra: extra.map(Box::new),
            failing,
            reached_ms: times.reached_ms,
            answered_ms: times.answered_ms,
            checks_ms: times.checks_ms,
            clock: times.clock,
            shape,
            diff,
        }
    }

    /// The document's compact entry for this answer of `name`: each check
    /// as [`outcome`] spells it, packed against `catalog` (a passing one
    /// without spelling it out).
    pub(crate) fn compact(
        &self,
        who: Who,
        catalog: &mut Catalog,
        templates: &mut ShapeTemplates,
    ) -> CompactNode {
        let shape = &*self.shape;
        let mut checks = ChecksWriter::default();
        if shape.aligned() {
            let passing = templates.of(&self.shape, catalog);
            let patched = Patched {
                base: &shape.base,
                diff: &self.diff,
            };
            for (i, name) in shape.catalog.iter().enumerate() {
                let r = patched.get(i);
                match (r.status, &r.detail, passing[i]) {
                    (Status::Pass, None, Some(t)) => checks.shared(t, r.status, &r.observed, 0, ""),
                    _ => checks.push(catalog, &outcome(name, r)),
                }
            }
        } else {
            let e = super::super::wire::Misaligned {
                names: shape.catalog.len(),
                results: shape.base.len(),
            };
            checks.push(catalog, &outcomes::malformed(&e));
        }
        if let Some(extra) = self.extra.as_deref() {
            checks.push(catalog, extra);
        }
        CompactNode {
            name: who.name,
            addr: who.addr,
            tags: who.tags,
            state: if self.failing {
                NodeState::Failing
            } else {
                NodeState::Ok
            },
            late_joiner: who.late_joiner,
            reached_ms: Some(self.reached_ms),
            answered_ms: Some(self.answered_ms),
            checks_ms: Some(self.checks_ms),
            checks: checks.finish(),
            clock: self.clock,
            silence: None,
            // An answer from a node SWIM called down proves it alive; the
            // document says SWIM disagreed.
            swim: who.swim_down.then_some(patrol_model::SwimState::Down),
        }
    }
}

/// Whose answer a [`Recorded::compact`] entry is.
pub(crate) struct Who {
    pub(crate) name: String,
    pub(crate) addr: String,
    pub(crate) tags: TagsId,
    pub(crate) late_joiner: bool,
    pub(crate) swim_down: bool,
}

/// The catalog template of a passing check of each name of a shape (what
/// [`outcome`] gives for a passing result without detail: no text,
/// severity `fail`), looked up once per shape rather than once per check.
#[derive(Debug, Default)]
pub(crate) struct ShapeTemplates {
    /// By the shape's address; the shape is held so the address stays its.
    by_shape: HashMap<usize, (Arc<Shape>, Vec<Option<TemplateId>>)>,
}

impl ShapeTemplates {
    fn of(&mut self, shape: &Arc<Shape>, catalog: &mut Catalog) -> &[Option<TemplateId>] {
        let key = Arc::as_ptr(shape) as usize;
        &self
            .by_shape
            .entry(key)
            .or_insert_with(|| {
                let ids = shape
                    .catalog
                    .iter()
                    .map(|n| {
                        catalog.intern(TemplateRef {
                            id: &n.id,
                            kind: &n.kind,
                            severity: Severity::Fail,
                            expected: "",
                            description: "",
                            remediation: "",
                        })
                    })
                    .collect();
                (shape.clone(), ids)
            })
            .1
    }
}

/// One check of an answer as the document lists it: what
/// [`AnswerBody::outcomes`] gives (a passing check has no expectation or
/// message text, and severity `fail`; a test holds the two together, the
/// wire file being hashed in PROTOCOL.md).
fn outcome(name: &CheckName, r: &CheckResult) -> CheckOutcome {
    let d = r.detail.as_deref();
    CheckOutcome {
        id: name.id.clone(),
        kind: name.kind.clone(),
        status: r.status,
        severity: d.map_or(patrol_model::Severity::Fail, |d| d.severity),
        observed: r.observed.clone(),
        expected: d.map(|d| d.expected.clone()).unwrap_or_default(),
        message: d.map(|d| d.message.clone()).unwrap_or_default(),
        duration_us: d.map_or(0, |d| d.duration_us),
        description: d.map(|d| d.description.clone()).unwrap_or_default(),
        remediation: d.map(|d| d.remediation.clone()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patrol_model::{Observed, Severity};

    fn result(v: f64, status: Status) -> CheckResult {
        CheckResult {
            status,
            observed: Observed::Number(v),
            detail: (status != Status::Pass).then(|| {
                Box::new(super::super::super::wire::CheckDetail {
                    severity: Severity::Warn,
                    expected: "< 1".into(),
                    message: "too high".into(),
                    duration_us: 3,
                    description: String::new(),
                    remediation: "lower it".into(),
                })
            }),
        }
    }

    #[test]
    fn a_relayed_body_encodes_to_the_nodes_own_bytes() {
        let names = ["a", "b", "c"].map(|id| CheckName {
            id: id.into(),
            kind: "k".into(),
        });
        let tags = BTreeMap::from([("zone".to_string(), "z1".to_string())]);
        let shape = Shape {
            tags: tags.clone(),
            catalog: names.to_vec(),
            base: vec![result(1.0, Status::Pass); 3],
        };
        let mine = vec![
            result(1.0, Status::Pass),
            result(7.0, Status::Fail),
            result(2.0, Status::Pass),
        ];
        let n = RelayedAnswer {
            node: "n".into(),
            nonce: 1,
            received_unix_ms: 1_800_000_000_000,
            checks_ms: 12,
            sent_after_ms: 3,
            sent_tag: None,
            held_ms: 0,
            diff: vec![(1, mine[1].clone()), (2, mine[2].clone())],
            proof: None,
        };
        let own = AnswerBody {
            tags,
            received_unix_ms: n.received_unix_ms,
            checks_ms: 12,
            catalog: names.to_vec(),
            results: mine,
        };
        assert_eq!(shape.encode_body(&n), own.encode());
        let listed: Vec<CheckOutcome> = own
            .catalog
            .iter()
            .zip(&own.results)
            .map(|(n, r)| outcome(n, r))
            .collect();
        assert_eq!(listed, own.outcomes().unwrap());
    }

    #[test]
    fn a_compact_entry_spells_out_the_nodes_own_outcomes_and_shares_its_passing_checks() {
        let names: Vec<CheckName> = ["a", "b", "c"]
            .map(|id| CheckName {
                id: id.into(),
                kind: "k".into(),
            })
            .to_vec();
        let shape = Arc::new(Shape {
            tags: BTreeMap::new(),
            catalog: names.clone(),
            base: vec![result(1.0, Status::Pass); 3],
        });
        let mine = vec![
            result(1.0, Status::Pass),
            result(7.0, Status::Fail),
            result(2.0, Status::Pass),
        ];
        let own = AnswerBody {
            tags: BTreeMap::new(),
            received_unix_ms: 0,
            checks_ms: 5,
            catalog: names,
            results: mine.clone(),
        };
        let times = || Times {
            reached_ms: 1,
            answered_ms: 2,
            checks_ms: 5,
            clock: None,
            skew: None,
        };
        let diff = vec![(1, mine[1].clone()), (2, mine[2].clone())];
        let recorded = Recorded::new(shape.clone(), diff, times());
        let same = Recorded::new(shape, Vec::new(), times());
        let mut catalog = Catalog::default();
        let mut templates = ShapeTemplates::default();
        let no_tags = catalog.intern_tags(&BTreeMap::new());
        let who = |name: &str| Who {
            name: name.into(),
            addr: "10.0.0.1:7946".into(),
            tags: no_tags,
            late_joiner: false,
            swim_down: true,
        };
        let node = recorded.compact(who("n1"), &mut catalog, &mut templates);
        let other = same.compact(who("n2"), &mut catalog, &mut templates);
        let entry = node.expand(&catalog);
        assert_eq!(entry.checks, own.outcomes().unwrap());
        assert_eq!(entry.state, NodeState::Failing);
        assert_eq!(entry.swim, Some(patrol_model::SwimState::Down));
        assert_eq!(other.expand(&catalog).state, NodeState::Ok);
        // One template per check name, shared by both nodes.
        assert_eq!(catalog.templates().len(), 3);
    }

    #[test]
    fn answers_with_the_same_checks_share_a_shape_and_keep_their_differences() {
        let names = vec![CheckName {
            id: "a".into(),
            kind: "k".into(),
        }];
        let body = |v: f64| AnswerBody {
            tags: BTreeMap::new(),
            received_unix_ms: 0,
            checks_ms: 0,
            catalog: names.clone(),
            results: vec![result(v, Status::Pass)],
        };
        let mut shapes = Shapes::default();
        let (first, d1) = shapes.intern(body(1.0));
        let (second, d2) = shapes.intern(body(2.0));
        assert!(Arc::ptr_eq(&first, &second));
        assert!(d1.is_empty());
        assert_eq!(d2, vec![(0, result(2.0, Status::Pass))]);
    }
}
