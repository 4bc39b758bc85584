//! The compact sweep document: the same content as a [`SweepDocument`],
//! held the way a 100,000-node sweep fits in the agent's memory limit
//! (issue 25).
//!
//! What repeats across nodes is kept once: a passing check's id, kind,
//! severity, expectation, description and remediation are a
//! [`CheckTemplate`] in the document's [`Catalog`], and the node keeps
//! only the template's index, the status, the observed value, the
//! duration and the message. A check that did not pass is kept whole.
//! Nodes with the same tags share one tag set of the catalog.
//! Each node's checks are packed into one byte string ([`PackedChecks`],
//! bincode of [`Packed`] items, about 14 bytes for a passing check with a
//! number), so a node costs one allocation for its checks instead of a
//! `CheckOutcome` (10 fields, up to six strings) per check: the document
//! of a 100,000-node sweep with 20 checks a node went from 637 MiB to
//! 66 MiB (`coordinator_cost`).
//!
//! Lossless: [`CompactDocument::to_document`] and
//! [`CompactDocument::expand_node`] give back exactly the document it was
//! made from ([`CompactDocument::from_document`]). Its JSON is the v2 JSON
//! of that document, written node by node without expanding the whole
//! ([`Serialize`] in a human-readable format), and read back from v2 (or
//! v1, then [`CompactDocument::upgrade_from_v1`]) JSON node by node
//! ([`Deserialize`]). On the control channel
//! (bincode) it travels in its compact form; a decoded one is checked
//! (catalog size, every node's checks decode against the catalog) before
//! anyone can read it, so expanding a node cannot fail.
//!
//! **Architecture Invariant:** every [`PackedChecks`] of a document
//! decodes, and every template index in it names an entry of that
//! document's catalog: the builder writes only indices its catalog gave,
//! and the decoder refuses a document where this does not hold.

use std::collections::{BTreeMap, HashMap};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use crate::document::{
    AccountingError, ClockOffset, GoneNode, NodeEntry, NodeState, Silence, StateCounts,
    SweepDocument, SweepTiming, SwimState,
};
use crate::{CheckOutcome, Observed, Selector, Severity, Status};

/// Most templates a catalog holds. A passing check whose template does not
/// fit is kept whole (correct, only larger); a decoded document with more
/// is refused. A real fleet has a few hundred distinct checks.
pub const MAX_CATALOG: usize = 1 << 16;

/// What passing outcomes of one check share across nodes: every field of a
/// [`CheckOutcome`] but the status, the observed value, the message and the
/// duration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckTemplate {
    pub id: String,
    pub kind: String,
    pub severity: Severity,
    pub expected: String,
    pub description: String,
    pub remediation: String,
}

/// A template by reference, to look one up without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateRef<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub severity: Severity,
    pub expected: &'a str,
    pub description: &'a str,
    pub remediation: &'a str,
}

impl<'a> TemplateRef<'a> {
    /// The template part of `o`.
    pub fn of(o: &'a CheckOutcome) -> TemplateRef<'a> {
        TemplateRef {
            id: &o.id,
            kind: &o.kind,
            severity: o.severity,
            expected: &o.expected,
            description: &o.description,
            remediation: &o.remediation,
        }
    }

    fn matches(&self, t: &CheckTemplate) -> bool {
        self.id == t.id
            && self.kind == t.kind
            && self.severity == t.severity
            && self.expected == t.expected
            && self.description == t.description
            && self.remediation == t.remediation
    }
}

/// The index of a template in the [`Catalog`] that gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TemplateId(u32);

/// The index of a tag set in the [`Catalog`] that gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TagsId(u32);

/// What repeats across the nodes of a document, each once: check templates
/// and tag sets.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    templates: Vec<CheckTemplate>,
    /// Indices of the templates of each check id.
    by_id: HashMap<String, Vec<u32>>,
    tag_sets: Vec<BTreeMap<String, String>>,
    tags_index: HashMap<BTreeMap<String, String>, u32>,
}

impl PartialEq for Catalog {
    fn eq(&self, other: &Self) -> bool {
        self.templates == other.templates && self.tag_sets == other.tag_sets
    }
}

impl Catalog {
    /// The index of `t`, added if new; `None` when the catalog is full.
    pub fn intern(&mut self, t: TemplateRef<'_>) -> Option<TemplateId> {
        if let Some(found) = self.by_id.get(t.id).and_then(|candidates| {
            candidates
                .iter()
                .copied()
                .find(|&i| t.matches(&self.templates[i as usize]))
        }) {
            return Some(TemplateId(found));
        }
        if self.templates.len() >= MAX_CATALOG {
            return None;
        }
        let i = self.templates.len() as u32;
        self.templates.push(CheckTemplate {
            id: t.id.to_string(),
            kind: t.kind.to_string(),
            severity: t.severity,
            expected: t.expected.to_string(),
            description: t.description.to_string(),
            remediation: t.remediation.to_string(),
        });
        self.by_id.entry(t.id.to_string()).or_default().push(i);
        Some(TemplateId(i))
    }

    /// The templates, in index order.
    pub fn templates(&self) -> &[CheckTemplate] {
        &self.templates
    }

    /// The index of tag set `tags`, added if new. Not bounded: a document
    /// has at most one tag set per node.
    pub fn intern_tags(&mut self, tags: &BTreeMap<String, String>) -> TagsId {
        if let Some(&i) = self.tags_index.get(tags) {
            return TagsId(i);
        }
        let i = self.tag_sets.len() as u32;
        self.tag_sets.push(tags.clone());
        self.tags_index.insert(tags.clone(), i);
        TagsId(i)
    }

    /// Tag set `id` (empty for an id of another catalog).
    pub fn tags(&self, id: TagsId) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.tag_sets.get(id.0 as usize).unwrap_or(&EMPTY)
    }

    /// The tag sets, in index order.
    pub fn tag_sets(&self) -> &[BTreeMap<String, String>] {
        &self.tag_sets
    }

    fn from_parts(
        templates: Vec<CheckTemplate>,
        tag_sets: Vec<BTreeMap<String, String>>,
    ) -> Catalog {
        let mut by_id: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, t) in templates.iter().enumerate() {
            by_id.entry(t.id.clone()).or_default().push(i as u32);
        }
        let tags_index = tag_sets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Catalog {
            templates,
            by_id,
            tag_sets,
            tags_index,
        }
    }

    /// `checks` packed: passing ones against this catalog's templates.
    pub fn pack(&mut self, checks: &[CheckOutcome]) -> PackedChecks {
        let mut w = ChecksWriter::default();
        for c in checks {
            w.push(self, c);
        }
        w.finish()
    }
}

/// One packed check, as bincode writes it in [`PackedChecks`].
#[derive(Serialize)]
enum PackedRef<'a> {
    Shared {
        template: u32,
        status: Status,
        observed: &'a Observed,
        duration_us: u64,
        message: &'a str,
    },
    Full(&'a CheckOutcome),
}

/// [`PackedRef`] as read back.
#[derive(Deserialize)]
enum Packed {
    Shared {
        template: u32,
        status: Status,
        observed: Observed,
        duration_us: u64,
        message: String,
    },
    Full(CheckOutcome),
}

fn packing() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// A node's checks, in order, packed into one byte string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedChecks(Box<[u8]>);

/// Writes a node's checks into [`PackedChecks`].
#[derive(Debug, Default)]
pub struct ChecksWriter {
    buf: Vec<u8>,
}

impl ChecksWriter {
    /// A passing check of template `template`.
    pub fn shared(
        &mut self,
        template: TemplateId,
        status: Status,
        observed: &Observed,
        duration_us: u64,
        message: &str,
    ) {
        self.put(&PackedRef::Shared {
            template: template.0,
            status,
            observed,
            duration_us,
            message,
        });
    }

    /// A check kept whole.
    pub fn full(&mut self, outcome: &CheckOutcome) {
        self.put(&PackedRef::Full(outcome));
    }

    /// `outcome`, shared when it passed and its template fits `catalog`.
    pub fn push(&mut self, catalog: &mut Catalog, outcome: &CheckOutcome) {
        let template = (outcome.status == Status::Pass)
            .then(|| catalog.intern(TemplateRef::of(outcome)))
            .flatten();
        match template {
            Some(t) => self.shared(
                t,
                outcome.status,
                &outcome.observed,
                outcome.duration_us,
                &outcome.message,
            ),
            None => self.full(outcome),
        }
    }

    fn put(&mut self, item: &PackedRef<'_>) {
        // Writing to a Vec fails only on a type serde cannot encode, and
        // these are all encodable.
        bincode::serde::encode_into_std_write(item, &mut self.buf, packing())
            .expect("a packed check encodes into a Vec");
    }

    pub fn finish(self) -> PackedChecks {
        PackedChecks(self.buf.into_boxed_slice())
    }
}

/// Why packed checks or a compact document do not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactError(String);

impl std::fmt::Display for CompactError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CompactError {}

impl PackedChecks {
    /// Bytes held.
    pub fn len_bytes(&self) -> usize {
        self.0.len()
    }

    /// Each check in order, given to `each`.
    fn decode_each(
        &self,
        catalog: &Catalog,
        mut each: impl FnMut(CheckOutcome),
    ) -> Result<(), CompactError> {
        let mut rest: &[u8] = &self.0;
        while !rest.is_empty() {
            let (item, used) = decode_packed(rest)
                .map_err(|e| CompactError(format!("undecodable packed check: {e}")))?;
            rest = &rest[used..];
            each(match item {
                Packed::Full(o) => o,
                Packed::Shared {
                    template,
                    status,
                    observed,
                    duration_us,
                    message,
                } => {
                    let t = catalog.templates.get(template as usize).ok_or_else(|| {
                        CompactError(format!(
                            "template {template} is not in the catalog of {}",
                            catalog.templates.len()
                        ))
                    })?;
                    CheckOutcome {
                        id: t.id.clone(),
                        kind: t.kind.clone(),
                        status,
                        severity: t.severity,
                        observed,
                        expected: t.expected.clone(),
                        message,
                        duration_us,
                        description: t.description.clone(),
                        remediation: t.remediation.clone(),
                    }
                }
            });
        }
        Ok(())
    }

    /// The checks, in order.
    pub fn expand(&self, catalog: &Catalog) -> Vec<CheckOutcome> {
        let mut out = Vec::new();
        self.decode_each(catalog, |c| out.push(c))
            .expect("packed checks decode against their catalog (the module's invariant)");
        out
    }
}

/// One packed check from the front of `bytes`, under a decode limit that
/// grows with `bytes` (16 times, rounded up to a power of 16): bincode
/// allocates what a length prefix claims, up to its limit, before it reads,
/// so a forged prefix in bytes from the network claims little, while the
/// longest honest check (a message as long as the bytes) still decodes.
fn decode_packed(bytes: &[u8]) -> Result<(Packed, usize), bincode::error::DecodeError> {
    fn under<const LIMIT: usize>(
        bytes: &[u8],
    ) -> Result<(Packed, usize), bincode::error::DecodeError> {
        bincode::serde::decode_from_slice(bytes, packing().with_limit::<LIMIT>())
    }
    let claim = bytes.len().saturating_mul(16);
    if claim <= 0x1_0000 {
        under::<0x1_0000>(bytes)
    } else if claim <= 0x10_0000 {
        under::<0x10_0000>(bytes)
    } else if claim <= 0x100_0000 {
        under::<0x100_0000>(bytes)
    } else if claim <= 0x1000_0000 {
        under::<0x1000_0000>(bytes)
    } else {
        // Over 16 MiB of packed checks: only a document this process
        // packed itself or one that passed the control channel's own
        // limit (which scales with the bytes received) gets here.
        under::<{ 1 << 34 }>(bytes)
    }
}

impl Serialize for PackedChecks {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for PackedChecks {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = PackedChecks;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("packed checks")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<PackedChecks, E> {
                Ok(PackedChecks(v.into()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<PackedChecks, E> {
                Ok(PackedChecks(v.into_boxed_slice()))
            }
        }
        deserializer.deserialize_byte_buf(Bytes)
    }
}

/// A node's line of a [`CompactDocument`]: a [`NodeEntry`] whose checks
/// are packed and whose tags are a tag set of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactNode {
    pub name: String,
    pub addr: String,
    pub tags: TagsId,
    pub state: NodeState,
    pub late_joiner: bool,
    pub reached_ms: Option<u64>,
    pub answered_ms: Option<u64>,
    pub checks_ms: Option<u64>,
    pub checks: PackedChecks,
    pub clock: Option<ClockOffset>,
    pub silence: Option<Silence>,
    pub swim: Option<SwimState>,
}

impl CompactNode {
    /// `n` with its checks packed against `catalog`.
    pub fn pack(n: &NodeEntry, catalog: &mut Catalog) -> CompactNode {
        CompactNode {
            name: n.name.clone(),
            addr: n.addr.clone(),
            tags: catalog.intern_tags(&n.tags),
            state: n.state,
            late_joiner: n.late_joiner,
            reached_ms: n.reached_ms,
            answered_ms: n.answered_ms,
            checks_ms: n.checks_ms,
            checks: catalog.pack(&n.checks),
            clock: n.clock,
            silence: n.silence.clone(),
            swim: n.swim,
        }
    }

    /// The node's entry with every check spelled out.
    pub fn expand(&self, catalog: &Catalog) -> NodeEntry {
        NodeEntry {
            name: self.name.clone(),
            addr: self.addr.clone(),
            tags: catalog.tags(self.tags).clone(),
            state: self.state,
            late_joiner: self.late_joiner,
            reached_ms: self.reached_ms,
            answered_ms: self.answered_ms,
            checks_ms: self.checks_ms,
            checks: self.checks.expand(catalog),
            clock: self.clock,
            silence: self.silence.clone(),
            swim: self.swim,
        }
    }
}

/// A whole sweep, compact. The fields are those of [`SweepDocument`];
/// `catalog` holds what the nodes' passing checks share.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactDocument {
    pub version: u32,
    pub sweep_id: String,
    pub cluster: String,
    pub coordinator: String,
    pub operator: Option<String>,
    pub started_at_unix_ms: u64,
    pub deadline_ms: u64,
    pub selector: Selector,
    pub node_filter: BTreeMap<String, String>,
    pub counts: StateCounts,
    pub catalog: Catalog,
    /// Sorted by name, as in [`SweepDocument::nodes`].
    pub nodes: Vec<CompactNode>,
    pub timing: SweepTiming,
    pub gone: Vec<GoneNode>,
}

impl CompactDocument {
    /// `doc`, compact (node by node: `doc`'s nodes are dropped as they are
    /// packed).
    pub fn from_document(doc: SweepDocument) -> CompactDocument {
        let SweepDocument {
            version,
            sweep_id,
            cluster,
            coordinator,
            operator,
            started_at_unix_ms,
            deadline_ms,
            selector,
            node_filter,
            counts,
            nodes,
            timing,
            gone,
        } = doc;
        let mut catalog = Catalog::default();
        let nodes = nodes
            .into_iter()
            .map(|n| CompactNode::pack(&n, &mut catalog))
            .collect();
        CompactDocument {
            version,
            sweep_id,
            cluster,
            coordinator,
            operator,
            started_at_unix_ms,
            deadline_ms,
            selector,
            node_filter,
            counts,
            catalog,
            nodes,
            timing,
            gone,
        }
    }

    /// Node `i` with every check spelled out (`None` past the end).
    pub fn expand_node(&self, i: usize) -> Option<NodeEntry> {
        self.nodes.get(i).map(|n| n.expand(&self.catalog))
    }

    /// Every node spelled out, one at a time.
    pub fn expanded_nodes(&self) -> impl ExactSizeIterator<Item = NodeEntry> + '_ {
        self.nodes.iter().map(|n| n.expand(&self.catalog))
    }

    /// The whole document spelled out (holds every node at once: for
    /// tests and small sweeps).
    pub fn to_document(&self) -> SweepDocument {
        SweepDocument {
            version: self.version,
            sweep_id: self.sweep_id.clone(),
            cluster: self.cluster.clone(),
            coordinator: self.coordinator.clone(),
            operator: self.operator.clone(),
            started_at_unix_ms: self.started_at_unix_ms,
            deadline_ms: self.deadline_ms,
            selector: self.selector.clone(),
            node_filter: self.node_filter.clone(),
            counts: self.counts.clone(),
            nodes: self.expanded_nodes().collect(),
            timing: self.timing.clone(),
            gone: self.gone.clone(),
        }
    }

    /// Recompute `counts` from `nodes`, as [`SweepDocument::recount`].
    pub fn recount(&mut self) {
        let mut c = StateCounts::default();
        for n in &self.nodes {
            crate::document::count(&mut c, n.late_joiner, n.state);
        }
        self.counts = c;
    }

    /// The accounting invariant, as [`SweepDocument::check_accounting`].
    pub fn check_accounting(&self) -> Result<(), AccountingError> {
        let mut seen = std::collections::BTreeSet::new();
        for n in &self.nodes {
            if !seen.insert(n.name.as_str()) {
                return Err(AccountingError::ListedTwice(n.name.clone()));
            }
        }
        let mut recounted = StateCounts::default();
        for n in &self.nodes {
            crate::document::count(&mut recounted, n.late_joiner, n.state);
        }
        if recounted != self.counts {
            return Err(AccountingError::CountsDisagree {
                stated: self.counts.clone(),
                recounted,
            });
        }
        Ok(())
    }

    /// Bring a document read from version-1 JSON to the current version
    /// (see [`SweepDocument::upgrade_from_v1`]); nothing for a newer one.
    pub fn upgrade_from_v1(&mut self) {
        if self.version != 1 {
            return;
        }
        for n in &mut self.nodes {
            let mut checks = n.checks.expand(&self.catalog);
            for c in &mut checks {
                c.observed = std::mem::take(&mut c.observed).read_as_v1();
            }
            n.checks = self.catalog.pack(&checks);
        }
        self.version = crate::document::DOCUMENT_VERSION;
    }

    /// The module's invariant, for a document that came from outside.
    fn validate(&self) -> Result<(), CompactError> {
        if self.catalog.templates.len() > MAX_CATALOG {
            return Err(CompactError(format!(
                "catalog of {} templates (at most {MAX_CATALOG})",
                self.catalog.templates.len()
            )));
        }
        for n in &self.nodes {
            if n.tags.0 as usize >= self.catalog.tag_sets.len() {
                return Err(CompactError(format!(
                    "tag set {} is not in the catalog of {}",
                    n.tags.0,
                    self.catalog.tag_sets.len()
                )));
            }
            n.checks.decode_each(&self.catalog, drop)?;
        }
        Ok(())
    }
}

impl From<SweepDocument> for CompactDocument {
    fn from(doc: SweepDocument) -> CompactDocument {
        CompactDocument::from_document(doc)
    }
}

/// The document's fields as the wire carries them (compact formats):
/// bincode writes a struct as its fields one after the other, so this is
/// the head, the nodes (their count, then each) and the tail, which
/// [`EncodedPieces`] writes apart.
#[derive(Serialize)]
struct WireRef<'a> {
    head: WireHead<'a>,
    nodes: &'a [CompactNode],
    tail: WireTail<'a>,
}

/// [`WireRef`] as read back.
#[derive(Deserialize)]
struct Wire {
    version: u32,
    sweep_id: String,
    cluster: String,
    coordinator: String,
    operator: Option<String>,
    started_at_unix_ms: u64,
    deadline_ms: u64,
    selector: Selector,
    node_filter: BTreeMap<String, String>,
    counts: StateCounts,
    catalog: Vec<CheckTemplate>,
    tag_sets: Vec<BTreeMap<String, String>>,
    nodes: Vec<CompactNode>,
    timing: SweepTiming,
    gone: Vec<GoneNode>,
}

/// What comes before the nodes in [`WireRef`].
#[derive(Serialize)]
struct WireHead<'a> {
    version: u32,
    sweep_id: &'a str,
    cluster: &'a str,
    coordinator: &'a str,
    operator: &'a Option<String>,
    started_at_unix_ms: u64,
    deadline_ms: u64,
    selector: &'a Selector,
    node_filter: &'a BTreeMap<String, String>,
    counts: &'a StateCounts,
    catalog: &'a [CheckTemplate],
    tag_sets: &'a [BTreeMap<String, String>],
}

/// What comes after the nodes in [`WireRef`].
#[derive(Serialize)]
struct WireTail<'a> {
    timing: &'a SweepTiming,
    gone: &'a [GoneNode],
}

/// A document's compact encoding (bincode 2 standard) in pieces of `piece`
/// bytes (the last one shorter; at least one), encoded as they are taken:
/// each node is encoded and dropped when its turn comes, so the encoded
/// document is never held whole. Concatenated, the pieces are exactly
/// what `bincode::serde::encode_to_vec` writes for the document.
#[derive(Debug)]
pub struct EncodedPieces {
    piece: usize,
    buf: Vec<u8>,
    nodes: std::vec::IntoIter<CompactNode>,
    /// The rest of the document, until its tail is encoded.
    tail: Option<(SweepTiming, Vec<GoneNode>)>,
    done: bool,
}

impl CompactDocument {
    fn head(&self) -> WireHead<'_> {
        WireHead {
            version: self.version,
            sweep_id: &self.sweep_id,
            cluster: &self.cluster,
            coordinator: &self.coordinator,
            operator: &self.operator,
            started_at_unix_ms: self.started_at_unix_ms,
            deadline_ms: self.deadline_ms,
            selector: &self.selector,
            node_filter: &self.node_filter,
            counts: &self.counts,
            catalog: &self.catalog.templates,
            tag_sets: &self.catalog.tag_sets,
        }
    }

    /// This document's encoding, piece by piece (`piece` at least 1).
    pub fn into_pieces(self, piece: usize) -> EncodedPieces {
        let mut buf = Vec::new();
        // The head, then the nodes' count as a sequence's length prefix.
        encode_into(&(self.head(), self.nodes.len()), &mut buf);
        EncodedPieces {
            piece: piece.max(1),
            buf,
            nodes: self.nodes.into_iter(),
            tail: Some((self.timing, self.gone)),
            done: false,
        }
    }
}

fn encode_into<T: Serialize>(value: &T, buf: &mut Vec<u8>) {
    // Writing to a Vec fails only on a type serde cannot encode, and the
    // document's types are all encodable.
    bincode::serde::encode_into_std_write(value, buf, packing())
        .expect("a document part encodes into a Vec");
}

impl Iterator for EncodedPieces {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        while self.buf.len() < self.piece {
            if let Some(n) = self.nodes.next() {
                encode_into(&n, &mut self.buf);
            } else if let Some((timing, gone)) = self.tail.take() {
                encode_into(
                    &WireTail {
                        timing: &timing,
                        gone: &gone,
                    },
                    &mut self.buf,
                );
            } else {
                break;
            }
        }
        let finished = self.tail.is_none() && self.nodes.len() == 0;
        if finished && self.buf.len() <= self.piece {
            self.done = true;
            return Some(std::mem::take(&mut self.buf));
        }
        let rest = self.buf.split_off(self.piece);
        Some(std::mem::replace(&mut self.buf, rest))
    }
}

/// The nodes of a document, expanded one at a time as they are written.
struct ExpandedNodes<'a>(&'a CompactDocument);

impl Serialize for ExpandedNodes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.nodes.len()))?;
        for n in self.0.expanded_nodes() {
            seq.serialize_element(&n)?;
        }
        seq.end()
    }
}

impl Serialize for CompactDocument {
    /// In a human-readable format (JSON): exactly what the expanded
    /// [`SweepDocument`] writes. Otherwise the compact form.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable() {
            return WireRef {
                head: self.head(),
                nodes: &self.nodes,
                tail: WireTail {
                    timing: &self.timing,
                    gone: &self.gone,
                },
            }
            .serialize(serializer);
        }
        // The field order and presence of SweepDocument's derived impl.
        let mut s = serializer.serialize_struct("SweepDocument", 13)?;
        s.serialize_field("version", &self.version)?;
        s.serialize_field("sweep_id", &self.sweep_id)?;
        s.serialize_field("cluster", &self.cluster)?;
        s.serialize_field("coordinator", &self.coordinator)?;
        s.serialize_field("operator", &self.operator)?;
        s.serialize_field("started_at_unix_ms", &self.started_at_unix_ms)?;
        s.serialize_field("deadline_ms", &self.deadline_ms)?;
        s.serialize_field("selector", &self.selector)?;
        s.serialize_field("node_filter", &self.node_filter)?;
        s.serialize_field("counts", &self.counts)?;
        s.serialize_field("nodes", &ExpandedNodes(self))?;
        s.serialize_field("timing", &self.timing)?;
        s.serialize_field("gone", &self.gone)?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for CompactDocument {
    /// From a human-readable format (JSON): a v2 (or v1) sweep document,
    /// packed node by node as it is read. Otherwise the compact form,
    /// refused unless every node's checks decode against the catalog.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            let w = Wire::deserialize(deserializer)?;
            if w.catalog.len() > MAX_CATALOG {
                return Err(de::Error::custom(format!(
                    "catalog of {} templates (at most {MAX_CATALOG})",
                    w.catalog.len()
                )));
            }
            let doc = CompactDocument {
                version: w.version,
                sweep_id: w.sweep_id,
                cluster: w.cluster,
                coordinator: w.coordinator,
                operator: w.operator,
                started_at_unix_ms: w.started_at_unix_ms,
                deadline_ms: w.deadline_ms,
                selector: w.selector,
                node_filter: w.node_filter,
                counts: w.counts,
                catalog: Catalog::from_parts(w.catalog, w.tag_sets),
                nodes: w.nodes,
                timing: w.timing,
                gone: w.gone,
            };
            doc.validate().map_err(de::Error::custom)?;
            return Ok(doc);
        }
        deserializer.deserialize_struct("SweepDocument", FIELDS, DocumentVisitor)
    }
}

const FIELDS: &[&str] = &[
    "version",
    "sweep_id",
    "cluster",
    "coordinator",
    "operator",
    "started_at_unix_ms",
    "deadline_ms",
    "selector",
    "node_filter",
    "counts",
    "nodes",
    "timing",
    "gone",
];

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Version,
    SweepId,
    Cluster,
    Coordinator,
    Operator,
    StartedAtUnixMs,
    DeadlineMs,
    Selector,
    NodeFilter,
    Counts,
    Nodes,
    Timing,
    Gone,
    #[serde(other)]
    Other,
}

/// Reads a JSON sweep document, packing its nodes as they come.
struct DocumentVisitor;

/// Reads the `nodes` array into the catalog and node list.
struct NodesSeed<'a> {
    catalog: &'a mut Catalog,
    nodes: &'a mut Vec<CompactNode>,
}

impl<'de> DeserializeSeed<'de> for NodesSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for NodesSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of nodes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(n) = seq.next_element::<NodeEntry>()? {
            self.nodes.push(CompactNode::pack(&n, self.catalog));
        }
        Ok(())
    }
}

fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    slot: &mut Option<T>,
    name: &'static str,
    map: &mut A,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = CompactDocument;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sweep document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CompactDocument, A::Error> {
        let mut version = None;
        let mut sweep_id = None;
        let mut cluster = None;
        let mut coordinator = None;
        let mut operator: Option<Option<String>> = None;
        let mut started_at_unix_ms = None;
        let mut deadline_ms = None;
        let mut selector = None;
        let mut node_filter = None;
        let mut counts = None;
        let mut timing = None;
        let mut gone = None;
        let mut catalog = Catalog::default();
        let mut nodes = Vec::new();
        let mut nodes_seen = false;
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Version => once(&mut version, "version", &mut map)?,
                Field::SweepId => once(&mut sweep_id, "sweep_id", &mut map)?,
                Field::Cluster => once(&mut cluster, "cluster", &mut map)?,
                Field::Coordinator => once(&mut coordinator, "coordinator", &mut map)?,
                Field::Operator => once(&mut operator, "operator", &mut map)?,
                Field::StartedAtUnixMs => {
                    once(&mut started_at_unix_ms, "started_at_unix_ms", &mut map)?
                }
                Field::DeadlineMs => once(&mut deadline_ms, "deadline_ms", &mut map)?,
                Field::Selector => once(&mut selector, "selector", &mut map)?,
                Field::NodeFilter => once(&mut node_filter, "node_filter", &mut map)?,
                Field::Counts => once(&mut counts, "counts", &mut map)?,
                Field::Timing => once(&mut timing, "timing", &mut map)?,
                Field::Gone => once(&mut gone, "gone", &mut map)?,
                Field::Nodes => {
                    if nodes_seen {
                        return Err(de::Error::duplicate_field("nodes"));
                    }
                    nodes_seen = true;
                    map.next_value_seed(NodesSeed {
                        catalog: &mut catalog,
                        nodes: &mut nodes,
                    })?;
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !nodes_seen {
            return Err(de::Error::missing_field("nodes"));
        }
        fn need<T, E: de::Error>(v: Option<T>, name: &'static str) -> Result<T, E> {
            v.ok_or_else(|| de::Error::missing_field(name))
        }
        Ok(CompactDocument {
            version: need(version, "version")?,
            sweep_id: need(sweep_id, "sweep_id")?,
            cluster: need(cluster, "cluster")?,
            coordinator: need(coordinator, "coordinator")?,
            operator: operator.flatten(),
            started_at_unix_ms: need(started_at_unix_ms, "started_at_unix_ms")?,
            deadline_ms: need(deadline_ms, "deadline_ms")?,
            selector: need(selector, "selector")?,
            node_filter: need(node_filter, "node_filter")?,
            counts: need(counts, "counts")?,
            catalog,
            nodes,
            timing: need(timing, "timing")?,
            gone: gone.unwrap_or_default(),
        })
    }
}
