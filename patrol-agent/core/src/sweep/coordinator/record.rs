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
//! check names ([`Shapes::intern_parts`]), matched by their encoded bytes
//! so that a direct answer's names are never copied into strings. With
//! certificates, the bytes a relayed node's proof covers are spliced from
//! the shape's parts, encoded once, and the node's diff
//! ([`Shape::encode_body`]): the same bytes as the node's own
//! [`AnswerBody::encode`], without rebuilding or serializing the body.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use patrol_model::compact::{Catalog, ChecksWriter, TagsId, TemplateId, TemplateRef};
use patrol_model::{CheckOutcome, ClockOffset, CompactNode, NodeState, Severity, Status};
use serde::Serialize;

use super::super::outcomes::{self, CLOCK_SKEW_CHECK_ID};
use super::super::wire::{
    AnswerBody, BodyParts, CheckName, CheckResult, GroupHeader, Likely, RelayedAnswer, WireError,
};

/// Most distinct check-name lists a sweep interns; answers with other
/// lists keep their own shape (correct, only larger).
const MAX_SHAPES: usize = 1024;

/// Tags, check names and base results shared by many answers.
#[derive(Debug)]
pub(crate) struct Shape {
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) catalog: Vec<CheckName>,
    pub(crate) base: Vec<CheckResult>,
    /// The shape's parts already encoded, made at the first
    /// [`Shape::encode_body`] (with certificates only).
    encoded: OnceLock<Encoded>,
}

/// A shape's parts as an [`AnswerBody`] encodes them, so that a relayed
/// node's body is spliced from bytes rather than serialized again: the
/// tags, the check names and each base result.
/// Bincode's standard layout writes a struct's fields one after the other
/// and a sequence as its length then its elements, so the pieces
/// concatenate to the whole.
#[derive(Debug)]
struct Encoded {
    tags: Vec<u8>,
    catalog: Vec<u8>,
    /// Every base result, back to back.
    results: Vec<u8>,
    /// Where base result `i` starts in `results` (and one past the last).
    starts: Vec<usize>,
}

fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Encoding our own plain data into a Vec cannot fail.
    let _ = bincode::serde::encode_into_std_write(value, out, bincode::config::standard());
}

impl Encoded {
    fn new(shape: &Shape) -> Encoded {
        let mut tags = Vec::new();
        encode_into(&shape.tags, &mut tags);
        let mut catalog = Vec::new();
        encode_into(&shape.catalog, &mut catalog);
        let mut results = Vec::new();
        let mut starts = Vec::with_capacity(shape.base.len() + 1);
        for r in &shape.base {
            starts.push(results.len());
            encode_into(r, &mut results);
        }
        starts.push(results.len());
        Encoded {
            tags,
            catalog,
            results,
            starts,
        }
    }

    /// Base result `i`, as encoded.
    fn result(&self, i: usize) -> &[u8] {
        &self.results[self.starts[i]..self.starts[i + 1]]
    }
}

impl Shape {
    pub(crate) fn new(
        tags: BTreeMap<String, String>,
        catalog: Vec<CheckName>,
        base: Vec<CheckResult>,
    ) -> Shape {
        Shape {
            tags,
            catalog,
            base,
            encoded: OnceLock::new(),
        }
    }

    pub(crate) fn from_header(h: GroupHeader) -> Shape {
        Shape::new(h.tags, h.catalog, h.base)
    }

    fn encoded(&self) -> &Encoded {
        self.encoded.get_or_init(|| Encoded::new(self))
    }

    /// The parts a direct answer of this shape likely shares, encoded.
    pub(crate) fn likely(&self) -> Likely<'_> {
        let enc = self.encoded();
        Likely {
            catalog: &enc.catalog,
            results: &enc.results,
            starts: &enc.starts,
        }
    }

    /// Whether the check names and results pair up.
    fn aligned(&self) -> bool {
        self.catalog.len() == self.base.len()
    }

    /// Whether answers with this shape's names and `results` results are
    /// kept against it: its names and results pair up, within a diff's
    /// index.
    fn serves(&self, results: usize) -> bool {
        self.aligned() && self.base.len() == results && self.catalog.len() <= usize::from(u16::MAX)
    }

    /// Whether `diff` only points at results this shape has.
    pub(crate) fn fits(&self, diff: &[(u16, CheckResult)]) -> bool {
        diff.iter().all(|(i, _)| usize::from(*i) < self.base.len())
    }

    /// The encoded [`AnswerBody`] of relayed answer `n` (which must
    /// [`Shape::fits`]): what the node's proof covers.
    #[cfg(test)]
    pub(crate) fn encode_body(&self, n: &RelayedAnswer) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_body_into(n, &mut out);
        out
    }

    /// [`Shape::encode_body`] into `out` (cleared first; its room is
    /// reused from one answer to the next).
    pub(crate) fn encode_body_into(&self, n: &RelayedAnswer, out: &mut Vec<u8>) {
        let enc = self.encoded();
        out.clear();
        out.reserve(
            enc.tags.len() + enc.catalog.len() + enc.results.len() + 20 + 64 * n.diff.len(),
        );
        out.extend_from_slice(&enc.tags);
        encode_into(&(n.received_unix_ms, n.checks_ms), out);
        out.extend_from_slice(&enc.catalog);
        encode_into(&(self.base.len() as u64), out);
        let patched = Patched {
            base: &self.base,
            diff: &n.diff,
        };
        for i in 0..self.base.len() {
            match patched.changed(i) {
                Some(r) => encode_into(r, out),
                None => out.extend_from_slice(enc.result(i)),
            }
        }
    }
}

/// `base` with `diff` applied, as a sequence.
struct Patched<'a> {
    base: &'a [CheckResult],
    diff: &'a [(u16, CheckResult)],
}

impl Patched<'_> {
    /// The node's own result `i` where it differs from the base (the
    /// last of the diff's entries for `i`, as the node's body has it).
    fn changed(&self, i: usize) -> Option<&CheckResult> {
        self.diff
            .iter()
            .rev()
            .find(|(k, _)| usize::from(*k) == i)
            .map(|(_, r)| r)
    }

    fn get(&self, i: usize) -> &CheckResult {
        self.changed(i).unwrap_or(&self.base[i])
    }
}

/// An answer's shape, and where its results differ from the shape's base.
pub(crate) type Interned = (Arc<Shape>, Vec<(u16, CheckResult)>);

/// The shapes of a sweep's direct answers, by check names (as encoded:
/// a direct answer's names are matched without decoding them into
/// strings).
#[derive(Debug, Default)]
pub(crate) struct Shapes {
    by_catalog: HashMap<Box<[u8]>, Arc<Shape>>,
    last: Option<Arc<Shape>>,
}

impl Shapes {
    /// `body` as a shape shared with earlier answers of the same check
    /// names, and where its results differ from that shape's base.
    pub(crate) fn intern(&mut self, body: AnswerBody) -> Interned {
        let mut names = Vec::new();
        encode_into(&body.catalog, &mut names);
        if let Some(shape) = self.known(&names, body.results.len()) {
            let diff = body
                .results
                .into_iter()
                .enumerate()
                .filter(|(i, r)| shape.base[*i] != *r)
                .map(|(i, r)| (i as u16, r))
                .collect();
            return (shape, diff);
        }
        self.add(&names, body.catalog, body.results)
    }

    /// A direct answer read in place, as [`Shapes::intern`]: its check
    /// names matched by their bytes, and only the results whose bytes
    /// differ from the shape's base decoded.
    pub(crate) fn intern_parts(&mut self, body: &BodyParts<'_>) -> Result<Interned, WireError> {
        // Most answers have the last one's names: compared in place, no
        // hashing of the catalog's bytes.
        let last = self.last.as_ref().filter(|last| {
            last.encoded().catalog == body.catalog_bytes && last.serves(body.results.len())
        });
        if let Some(shape) = last
            .cloned()
            .or_else(|| self.known(body.catalog_bytes, body.results.len()))
        {
            let enc = shape.encoded();
            let mut diff = Vec::new();
            for (i, bytes) in body.results.iter().enumerate() {
                if *bytes != enc.result(i) {
                    diff.push((i as u16, BodyParts::result(bytes)?));
                }
            }
            self.last = Some(shape.clone());
            return Ok((shape, diff));
        }
        let interned = self.add(body.catalog_bytes, body.catalog()?, body.decoded_results()?);
        self.last = Some(interned.0.clone());
        Ok(interned)
    }

    /// The shape the last direct answer had: the next one most likely
    /// shares its parts ([`BodyParts::decode_likely`]).
    pub(crate) fn last(&self) -> Option<Arc<Shape>> {
        self.last.clone()
    }

    /// The shape of check names `names` (encoded), if it has `results`
    /// results.
    fn known(&self, names: &[u8], results: usize) -> Option<Arc<Shape>> {
        self.by_catalog
            .get(names)
            .filter(|shape| shape.base.len() == results)
            .cloned()
    }

    /// A new shape, kept for later answers while there is room.
    fn add(
        &mut self,
        names: &[u8],
        catalog: Vec<CheckName>,
        results: Vec<CheckResult>,
    ) -> Interned {
        let shape = Arc::new(Shape::new(BTreeMap::new(), catalog, results));
        if shape.serves(shape.base.len()) && self.by_catalog.len() < MAX_SHAPES {
            self.by_catalog.insert(names.into(), shape.clone());
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
        let shape = Shape::new(
            tags.clone(),
            names.to_vec(),
            vec![result(1.0, Status::Pass); 3],
        );
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
        // Again from the shape's cached encoding, for another node whose
        // diff names a result twice (the last counts, as in its body), a
        // large clock and no change at all.
        let twice = RelayedAnswer {
            received_unix_ms: u64::MAX,
            checks_ms: 70_000,
            diff: vec![
                (0, result(9.0, Status::Fail)),
                (0, result(3.0, Status::Pass)),
            ],
            ..n.clone()
        };
        let theirs = AnswerBody {
            received_unix_ms: u64::MAX,
            checks_ms: 70_000,
            results: vec![
                result(3.0, Status::Pass),
                result(1.0, Status::Pass),
                result(1.0, Status::Pass),
            ],
            ..own.clone()
        };
        assert_eq!(shape.encode_body(&twice), theirs.encode());
        let same = RelayedAnswer {
            diff: Vec::new(),
            ..n.clone()
        };
        let base = AnswerBody {
            results: vec![result(1.0, Status::Pass); 3],
            ..own.clone()
        };
        assert_eq!(shape.encode_body(&same), base.encode());
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
        let shape = Arc::new(Shape::new(
            BTreeMap::new(),
            names.clone(),
            vec![result(1.0, Status::Pass); 3],
        ));
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
