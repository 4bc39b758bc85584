//! Sweep wire messages: the request that spreads through the mesh and the
//! direct messages between a participant and its coordinator (backstop
//! request, answer chunk, ack).
//!
//! Every encoded message starts with a protocol version (`u16`), then the
//! body, both bincode 2 (serde, standard config, size-limited). Decoding
//! never panics: garbage, truncated input, an oversize length prefix and an
//! unknown version are all [`WireError`]s the shell can count.

use core::net::SocketAddr;
use std::collections::BTreeMap;

use patrol_model::{CheckOutcome, Observed, Selector, Severity, Status};
use serde::{Deserialize, Serialize};

use crate::trust::{Authorization, Certificate};

/// Protocol version carried first in every sweep message. 3: answer
/// pieces carry their send time (`AnswerChunk::sent_unix_ms`), from which
/// the coordinator measures each node's clock offset. 4: requests carry
/// the operator's authorization and the coordinator's certificate
/// (`SweepRequest::auth`), answers reassemble to an `AnswerPayload` with
/// the node's proof. 5: compact answers (a check's name once, its
/// expectation and message text only when it did not pass), relays named
/// in the request (`SweepRequest::relays`), relay batches and their acks.
/// 6: with certificates, each copy of an answer piece carries a tag by
/// the node over its send time (`AnswerChunk::sent_tag`), and relays pass
/// it on (`RelayedAnswer::sent_tag`), so nobody on the way can change the
/// times a node's clock offset is measured from.
pub const PROTOCOL_VERSION: u16 = 6;

/// Hard limit on one decoded message (a datagram is far smaller; this bounds
/// what a forged length prefix can make the decoder allocate).
const DECODE_LIMIT: usize = 64 * 1024;

/// Hard limit on a reassembled answer body.
pub(crate) const ANSWER_DECODE_LIMIT: usize = 8 * 1024 * 1024;

/// What can go wrong turning bytes into a sweep message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(
        "sweep message has unknown protocol version {0} (this node speaks {PROTOCOL_VERSION})"
    )]
    UnknownVersion(u16),
    #[error("sweep message does not decode: {0}")]
    Decode(String),
    #[error("sweep message has {0} trailing bytes")]
    Trailing(usize),
    #[error("sweep message does not encode: {0}")]
    Encode(String),
}

/// Name and gossip address of a node, as a request names its coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerAddr {
    pub name: String,
    pub addr: SocketAddr,
}

/// The sweep request. Small on purpose (it rides in foca packets): it names
/// checks through a [`Selector`], never carries a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepRequest {
    /// Sweep id, random 64 bits drawn by the coordinator; the dedup key.
    pub id: u64,
    pub coordinator: PeerAddr,
    pub selector: Selector,
    /// Only nodes whose tags contain every pair answer.
    pub node_filter: BTreeMap<String, String>,
    /// Coordinator's wall clock at the start, unix milliseconds.
    pub issued_at_unix_ms: u64,
    /// Deadline, milliseconds after `issued_at_unix_ms`.
    pub deadline_ms: u64,
    /// Each participant delays its answer by a random time in
    /// `[0, answer_spread_ms)`, chosen by the coordinator from the size of
    /// the expected set, so that answers do not arrive all at once.
    pub answer_spread_ms: u32,
    /// Relays: members chosen by the coordinator (in large meshes only)
    /// that take the one-datagram answers of their share of the nodes,
    /// ack them, and forward them in grouped batches ([`RelayBatch`]). A
    /// node's relay is `relays[relay_index(id, name, len)]`. Empty: every
    /// node answers the coordinator directly.
    pub relays: Vec<SocketAddr>,
    /// With certificates: who asked and who coordinates, checked by every
    /// participant before it runs a check.
    pub auth: Option<Box<RequestAuth>>,
}

/// Which of `relays` relays node `name`'s answer to sweep `sweep_id`: a
/// hash (FNV-1a) of both, so every node finds its own without talking to
/// anyone, and the coordinator knows each node's relay too.
pub fn relay_index(sweep_id: u64, name: &str, relays: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sweep_id.to_le_bytes().iter().chain(name.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % relays.max(1) as u64) as usize
}

/// The proofs a request carries when the cluster runs with certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestAuth {
    /// The operator's signature over (id, selector, node filter, deadline).
    pub authorization: Authorization,
    /// The coordinator's node certificate: its name must be the request's
    /// coordinator, and its key gives the pair key answers are proved with.
    pub coordinator: Certificate,
    /// The coordinator's peer cache generation, drawn anew whenever the
    /// cache starts empty (a start, a reload). A node whose certificate
    /// reached this coordinator in this generation names it by digest
    /// only ([`CertRef::Known`]). Not signed: a forged value only makes
    /// nodes send their whole certificate, or be asked again.
    pub peer_epoch: u64,
}

/// What a participant's answer pieces reassemble to: the encoded
/// [`AnswerBody`] and, with certificates, the node's certificate and its
/// proof (`PairKey::answer_proof` over sweep id, node name, nonce, body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerPayload {
    #[serde(with = "byte_string")]
    pub body: Vec<u8>,
    pub proof: Option<AnswerProof>,
}

/// A node's proof that an answer is its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerProof {
    pub cert: CertRef,
    /// 32 bytes.
    pub mac: Vec<u8>,
}

/// How an answer names its node's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CertRef {
    /// The whole certificate (about 150 bytes), for a coordinator that
    /// may not have it.
    Whole(Box<Certificate>),
    /// Its digest ([`crate::trust::cert_digest`]), for a coordinator that
    /// has it: this node's certificate reached it in the current
    /// `peer_epoch`. A coordinator without it asks the node again
    /// directly, and the node then sends it whole.
    Known(crate::trust::CertDigest),
}

impl AnswerPayload {
    pub fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard()).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let cfg = bincode::config::standard().with_limit::<ANSWER_DECODE_LIMIT>();
        let (p, used): (Self, usize) = bincode::serde::decode_from_slice(bytes, cfg)
            .map_err(|e| WireError::Decode(e.to_string()))?;
        if used != bytes.len() {
            return Err(WireError::Trailing(bytes.len() - used));
        }
        Ok(p)
    }
}

impl SweepRequest {
    /// Unix milliseconds after which the request is expired.
    pub fn expires_at_unix_ms(&self) -> u64 {
        self.issued_at_unix_ms.saturating_add(self.deadline_ms)
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode_versioned(bytes)
    }
}

/// One piece of a participant's answer. The answer body ([`AnswerBody`],
/// bincode) is cut into pieces that each fit one datagram; the coordinator
/// acks every piece and reassembles by (sweep, node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerChunk {
    pub sweep_id: u64,
    /// The answering node's name.
    pub node: String,
    /// Random, drawn once per answer: the coordinator's acks must echo it,
    /// so an ack captured for one answer cannot silence another.
    pub nonce: u64,
    /// Index of this piece, `0..count`.
    pub index: u16,
    /// Number of pieces of the whole body.
    pub count: u16,
    /// The node's wall clock when it sent this copy of the piece, unix
    /// milliseconds (its clock at the request's arrival plus the monotonic
    /// time since, so a clock stepped meanwhile does not tear the pair
    /// apart). Set anew on every resend: the coordinator pairs each copy
    /// with its own arrival time, so a retry measures as well as a first
    /// send.
    pub sent_unix_ms: u64,
    /// With certificates: the node's tag over `sent_unix_ms`
    /// ([`crate::trust::PairKey::sent_tag`]), set anew with it.
    pub sent_tag: Option<[u8; 16]>,
    #[serde(with = "byte_string")]
    pub payload: Vec<u8>,
}

/// What a participant reports (reassembled from [`AnswerChunk`]s): the
/// compact form of its check outcomes. Per check, its name once
/// (`catalog`) and what varies (`results`: status, observed value, and
/// the text only for a check that did not pass). The encoding of this
/// struct is what a node's proof covers, so a relay that regroups answers
/// cannot change one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerBody {
    /// The node's tags (the coordinator uses them for late joiners).
    pub tags: BTreeMap<String, String>,
    /// The node's wall clock when the request first reached it, unix
    /// milliseconds (with the pieces' `sent_unix_ms` and the request's
    /// `issued_at_unix_ms`, what the coordinator measures the node's clock
    /// offset from).
    pub received_unix_ms: u64,
    /// Time spent running checks, milliseconds.
    pub checks_ms: u64,
    /// The checks that ran, in order: what identifies each.
    pub catalog: Vec<CheckName>,
    /// One per `catalog` entry, same order.
    pub results: Vec<CheckResult>,
}

/// What identifies a check in an answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckName {
    pub id: String,
    pub kind: String,
}

/// A [`CheckName`] read in place, to find where a catalog's bytes end.
#[derive(Deserialize)]
#[allow(dead_code)]
struct CheckNameRef<'a> {
    id: &'a str,
    kind: &'a str,
}

/// An encoded [`AnswerBody`] read in place: its tags borrowed from the
/// bytes, its check names and each result left as bytes, checked to
/// decode. How a coordinator takes a direct answer (issue 25): most share
/// their check names with an earlier answer, and most of their results
/// with that answer's; those are matched by their bytes
/// ([`BodyParts::catalog_bytes`], [`BodyParts::results`]) instead of being
/// copied into strings, compared and freed. Only a result that differs is
/// decoded ([`BodyParts::result`]). Accepts and refuses exactly what
/// [`AnswerBody::decode`] does.
#[derive(Debug)]
pub struct BodyParts<'a> {
    pub tags: BTreeMap<&'a str, &'a str>,
    pub received_unix_ms: u64,
    pub checks_ms: u64,
    /// The catalog as encoded (its length, then each name).
    pub catalog_bytes: &'a [u8],
    /// Each result as encoded.
    pub results: Vec<&'a [u8]>,
}

/// What a body is likely to share with an earlier one, as encoded: its
/// check names (without the results' count) and its results. Bincode's
/// encodings delimit themselves, so where a body's bytes begin with the
/// encoding of a value, reading that value would take exactly those
/// bytes: matched parts are taken without reading them again.
#[derive(Debug, Clone, Copy)]
pub struct Likely<'s> {
    pub catalog: &'s [u8],
    /// The results back to back, and where each starts (and one past the
    /// last).
    pub results: &'s [u8],
    pub starts: &'s [usize],
}

impl<'s> Likely<'s> {
    fn result(&self, i: usize) -> Option<&'s [u8]> {
        let (start, end) = (*self.starts.get(i)?, *self.starts.get(i + 1)?);
        self.results.get(start..end)
    }
}

/// The fields of an [`AnswerBody`] before its catalog, borrowed.
type BodyHead<'a> = (BTreeMap<&'a str, &'a str>, u64, u64);

/// A [`CheckResult`] read in place, to find where its bytes end: the same
/// fields, types and variants, so that it accepts exactly the bytes
/// [`CheckResult`] does (the property test below holds them together).
#[derive(Deserialize)]
#[allow(dead_code)]
struct CheckResultRef<'a> {
    status: Status,
    #[serde(borrow)]
    observed: ObservedRef<'a>,
    #[serde(borrow)]
    detail: Option<CheckDetailRef<'a>>,
}

/// [`Observed`] as bincode carries it (`patrol_model`'s `Wire`), borrowed.
#[derive(Deserialize)]
#[allow(dead_code)]
enum ObservedRef<'a> {
    None,
    Number(f64),
    Text(&'a str),
    Version(&'a str),
    List(#[serde(borrow)] Vec<ObservedRef<'a>>),
    Named(#[serde(borrow)] Vec<(&'a str, ObservedRef<'a>)>),
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct CheckDetailRef<'a> {
    severity: Severity,
    expected: &'a str,
    message: &'a str,
    duration_us: u64,
    description: &'a str,
    remediation: &'a str,
}

impl<'a> BodyParts<'a> {
    pub fn decode(bytes: &'a [u8]) -> Result<BodyParts<'a>, WireError> {
        BodyParts::decode_likely(bytes, None)
    }

    /// [`BodyParts::decode`], taking the parts that match `likely` as they
    /// are.
    pub fn decode_likely(
        bytes: &'a [u8],
        likely: Option<Likely<'_>>,
    ) -> Result<BodyParts<'a>, WireError> {
        let cfg = bincode::config::standard().with_limit::<ANSWER_DECODE_LIMIT>();
        let bad = |e: bincode::error::DecodeError| WireError::Decode(e.to_string());
        let ((tags, received_unix_ms, checks_ms), head): (BodyHead<'a>, usize) =
            bincode::serde::borrow_decode_from_slice(bytes, cfg).map_err(bad)?;
        let rest = &bytes[head..];
        let names = match likely {
            Some(l) if rest.starts_with(l.catalog) => l.catalog.len(),
            _ => {
                let (_, names): (Vec<CheckNameRef<'a>>, usize) =
                    bincode::serde::borrow_decode_from_slice(rest, cfg).map_err(bad)?;
                names
            }
        };
        let (catalog_bytes, rest) = rest.split_at(names);
        let (count, mut at): (u64, usize) =
            bincode::serde::decode_from_slice(rest, cfg).map_err(bad)?;
        // Every result takes at least a byte: a count past the bytes left
        // is refused before anything is reserved for it.
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if count > rest.len() - at {
            return Err(WireError::Decode(format!(
                "{count} results in {} bytes",
                rest.len() - at
            )));
        }
        let mut results = Vec::with_capacity(count);
        for i in 0..count {
            let left = &rest[at..];
            let used = match likely.and_then(|l| l.result(i)) {
                Some(same) if left.starts_with(same) => same.len(),
                _ => {
                    let (_, used): (CheckResultRef<'a>, usize) =
                        bincode::serde::borrow_decode_from_slice(left, cfg).map_err(bad)?;
                    used
                }
            };
            results.push(&left[..used]);
            at += used;
        }
        if at != rest.len() {
            return Err(WireError::Trailing(rest.len() - at));
        }
        Ok(BodyParts {
            tags,
            received_unix_ms,
            checks_ms,
            catalog_bytes,
            results,
        })
    }

    /// The check names, decoded.
    pub fn catalog(&self) -> Result<Vec<CheckName>, WireError> {
        let cfg = bincode::config::standard().with_limit::<ANSWER_DECODE_LIMIT>();
        let (catalog, _): (Vec<CheckName>, usize) =
            bincode::serde::decode_from_slice(self.catalog_bytes, cfg)
                .map_err(|e| WireError::Decode(e.to_string()))?;
        Ok(catalog)
    }

    /// One of [`BodyParts::results`], decoded.
    pub fn result(bytes: &[u8]) -> Result<CheckResult, WireError> {
        let cfg = bincode::config::standard().with_limit::<ANSWER_DECODE_LIMIT>();
        let (result, used): (CheckResult, usize) = bincode::serde::decode_from_slice(bytes, cfg)
            .map_err(|e| WireError::Decode(e.to_string()))?;
        if used != bytes.len() {
            return Err(WireError::Trailing(bytes.len() - used));
        }
        Ok(result)
    }

    /// Every result, decoded.
    pub fn decoded_results(&self) -> Result<Vec<CheckResult>, WireError> {
        self.results.iter().map(|r| BodyParts::result(r)).collect()
    }
}

/// What a check found, as an answer carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub status: Status,
    pub observed: Observed,
    /// Only for a check that did not pass: the words around the value.
    pub detail: Option<Box<CheckDetail>>,
}

/// The text of a check that did not pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckDetail {
    pub severity: Severity,
    pub expected: String,
    pub message: String,
    pub duration_us: u64,
    pub description: String,
    pub remediation: String,
}

/// Why a reassembled answer cannot be turned back into outcomes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the answer names {names} checks but carries {results} results")]
pub struct Misaligned {
    pub names: usize,
    pub results: usize,
}

impl AnswerBody {
    /// The compact answer for `outcomes`: a passing check keeps its id,
    /// kind, status and observed value; the others keep everything.
    pub fn compact(
        tags: BTreeMap<String, String>,
        received_unix_ms: u64,
        checks_ms: u64,
        outcomes: Vec<CheckOutcome>,
    ) -> Self {
        let mut catalog = Vec::with_capacity(outcomes.len());
        let mut results = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            catalog.push(CheckName {
                id: o.id,
                kind: o.kind,
            });
            let detail = (o.status != Status::Pass).then(|| {
                Box::new(CheckDetail {
                    severity: o.severity,
                    expected: o.expected,
                    message: o.message,
                    duration_us: o.duration_us,
                    description: o.description,
                    remediation: o.remediation,
                })
            });
            results.push(CheckResult {
                status: o.status,
                observed: o.observed,
                detail,
            });
        }
        AnswerBody {
            tags,
            received_unix_ms,
            checks_ms,
            catalog,
            results,
        }
    }

    /// The outcomes back, as the document lists them (a passing check has
    /// no expectation or message text, and severity `fail`).
    pub fn outcomes(&self) -> Result<Vec<CheckOutcome>, Misaligned> {
        if self.catalog.len() != self.results.len() {
            return Err(Misaligned {
                names: self.catalog.len(),
                results: self.results.len(),
            });
        }
        Ok(self
            .catalog
            .iter()
            .zip(&self.results)
            .map(|(name, r)| {
                let d = r.detail.as_deref();
                CheckOutcome {
                    id: name.id.clone(),
                    kind: name.kind.clone(),
                    status: r.status,
                    severity: d.map_or(Severity::Fail, |d| d.severity),
                    observed: r.observed.clone(),
                    expected: d.map(|d| d.expected.clone()).unwrap_or_default(),
                    message: d.map(|d| d.message.clone()).unwrap_or_default(),
                    duration_us: d.map_or(0, |d| d.duration_us),
                    description: d.map(|d| d.description.clone()).unwrap_or_default(),
                    remediation: d.map(|d| d.remediation.clone()).unwrap_or_default(),
                }
            })
            .collect())
    }

    /// The body's bytes, before they are cut into [`AnswerChunk`]s.
    pub fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard()).unwrap_or_default()
    }

    /// A reassembled body, refused above `ANSWER_DECODE_LIMIT` bytes or
    /// with trailing bytes. Public for the fuzz harness.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let cfg = bincode::config::standard().with_limit::<ANSWER_DECODE_LIMIT>();
        let (body, used): (Self, usize) = bincode::serde::decode_from_slice(bytes, cfg)
            .map_err(|e| WireError::Decode(e.to_string()))?;
        if used != bytes.len() {
            return Err(WireError::Trailing(bytes.len() - used));
        }
        Ok(body)
    }
}

/// What a relay forwards to the coordinator in one datagram: the answers
/// it took, grouped. Every node of a group shares its tags and check names
/// and differs from the group's `base` results only where its `diff` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayBatch {
    pub sweep_id: u64,
    /// The relay's number for this batch within the sweep; the
    /// coordinator's [`SweepMessage::BatchAck`] echoes it.
    pub batch: u32,
    pub groups: Vec<RelayGroup>,
}

/// Answers with the same tags and check names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayGroup {
    /// The relay's number for the group within the sweep.
    pub key: u32,
    /// What the group's answers share. Carried until a batch with it was
    /// acked, then left out: the coordinator keeps it by (relay, key).
    pub header: Option<GroupHeader>,
    pub nodes: Vec<RelayedAnswer>,
}

/// Tags, check names and base results of a [`RelayGroup`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupHeader {
    pub tags: BTreeMap<String, String>,
    pub catalog: Vec<CheckName>,
    /// The results most of the group share (its first node's).
    pub base: Vec<CheckResult>,
}

/// One node's answer inside a [`RelayGroup`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayedAnswer {
    pub node: String,
    pub nonce: u64,
    pub received_unix_ms: u64,
    pub checks_ms: u64,
    /// The node's clock when it sent the copy the relay took, less
    /// `received_unix_ms`.
    pub sent_after_ms: u32,
    /// With certificates: the node's tag over its send time
    /// (`received_unix_ms + sent_after_ms`), from the piece the relay took.
    pub sent_tag: Option<[u8; 16]>,
    /// Milliseconds the relay held the answer before this batch left
    /// (its monotonic clock): the coordinator takes it off the trip, when
    /// it is within `relay_flush` + 100 ms and the coordinator's own times
    /// allow it (otherwise it is ignored and counted).
    pub held_ms: u32,
    /// `(index, result)` where this node's results differ from the base.
    pub diff: Vec<(u16, CheckResult)>,
    /// With certificates: the node's own proof over its whole answer.
    pub proof: Option<AnswerProof>,
}

impl GroupHeader {
    /// Node `n`'s answer body, rebuilt from the group; None when its diff
    /// points past the results.
    pub fn body(&self, n: &RelayedAnswer) -> Option<AnswerBody> {
        let mut results = self.base.clone();
        for (i, r) in &n.diff {
            *results.get_mut(usize::from(*i))? = r.clone();
        }
        Some(AnswerBody {
            tags: self.tags.clone(),
            received_unix_ms: n.received_unix_ms,
            checks_ms: n.checks_ms,
            catalog: self.catalog.clone(),
            results,
        })
    }
}

/// A direct (not gossiped) sweep message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SweepMessage {
    /// The request sent straight to a node by the coordinator's backstop.
    Request(SweepRequest),
    /// A piece of an answer, participant to coordinator.
    Answer(AnswerChunk),
    /// Coordinator to participant: piece `index` of `node`'s answer
    /// `nonce` to `sweep_id` arrived. Accepted only by that node, for that
    /// answer, from the coordinator's address.
    Ack {
        sweep_id: u64,
        node: String,
        nonce: u64,
        index: u16,
    },
    /// Relay to coordinator: answers it took, grouped.
    Batch(RelayBatch),
    /// Coordinator to relay: batch `batch` arrived. Accepted only from the
    /// sweep's coordinator.
    BatchAck { sweep_id: u64, batch: u32 },
}

impl SweepMessage {
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode_versioned(bytes)
    }
}

/// A `Vec<u8>` field as serde bytes, not a sequence of `u8`s: the same
/// bytes in bincode (a length, then the bytes), but decoded in one copy
/// instead of one call per byte (a 1 KiB answer piece took about 5 µs to
/// decode byte by byte; issue 25).
mod byte_string {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(Bytes)
    }

    struct Bytes;

    impl<'de> serde::de::Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

fn encode_versioned<T: Serialize>(value: &T) -> Vec<u8> {
    let cfg = bincode::config::standard();
    let mut out = bincode::serde::encode_to_vec(PROTOCOL_VERSION, cfg).unwrap_or_default();
    // Encoding our own plain-data types into a Vec cannot fail; an empty
    // tail would be caught by the receiver's decoder.
    out.extend(bincode::serde::encode_to_vec(value, cfg).unwrap_or_default());
    out
}

fn decode_versioned<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let cfg = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    let (version, used): (u16, usize) = bincode::serde::decode_from_slice(bytes, cfg)
        .map_err(|e| WireError::Decode(e.to_string()))?;
    if version != PROTOCOL_VERSION {
        return Err(WireError::UnknownVersion(version));
    }
    let rest = &bytes[used..];
    let (value, used): (T, usize) = bincode::serde::decode_from_slice(rest, cfg)
        .map_err(|e| WireError::Decode(e.to_string()))?;
    if used != rest.len() {
        return Err(WireError::Trailing(rest.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
    }

    fn request(id: u64, name: String, checks: Vec<String>) -> SweepRequest {
        SweepRequest {
            id,
            coordinator: PeerAddr {
                name,
                addr: "127.0.0.1:7946".parse().unwrap(),
            },
            selector: Selector {
                checks,
                labels: vec![],
                profile: Some("k8s-node".into()),
            },
            node_filter: BTreeMap::from([("role".to_string(), "worker".to_string())]),
            issued_at_unix_ms: 1_700_000_000_000,
            deadline_ms: 5000,
            answer_spread_ms: 20,
            relays: vec![],
            auth: None,
        }
    }

    #[test]
    fn request_is_small() {
        let r = request(
            u64::MAX,
            "node-0123456789".into(),
            vec!["sysctl-file-max".into()],
        );
        assert!(
            r.encode().len() < 200,
            "request is {} bytes",
            r.encode().len()
        );
    }

    #[test]
    fn unknown_version_is_an_error() {
        let mut bytes = SweepMessage::Ack {
            sweep_id: 1,
            node: "n".into(),
            nonce: 2,
            index: 0,
        }
        .encode();
        bytes[0] = 9;
        assert!(matches!(
            SweepMessage::decode(&bytes),
            Err(WireError::UnknownVersion(9))
        ));
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = SweepMessage::Ack {
            sweep_id: 1,
            node: "n".into(),
            nonce: 2,
            index: 0,
        }
        .encode();
        bytes.push(0);
        assert!(matches!(
            SweepMessage::decode(&bytes),
            Err(WireError::Trailing(1))
        ));
    }

    /// The bytes fields encode as they did as sequences of `u8`: no wire
    /// change.
    #[test]
    fn byte_fields_encode_as_a_sequence_of_bytes_did() {
        #[derive(Serialize)]
        struct AsSeq {
            body: Vec<u8>,
            proof: Option<AnswerProof>,
        }
        let body: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        let cfg = bincode::config::standard();
        let seq = bincode::serde::encode_to_vec(
            AsSeq {
                body: body.clone(),
                proof: None,
            },
            cfg,
        )
        .unwrap();
        let payload = AnswerPayload { body, proof: None };
        assert_eq!(payload.encode(), seq);
        assert_eq!(AnswerPayload::decode(&seq).unwrap(), payload);
    }

    proptest! {
        #[test]
        fn request_round_trips(id in any::<u64>(), name in "[a-z0-9-]{0,40}",
                               checks in proptest::collection::vec("[a-z-]{1,20}", 0..5)) {
            let r = request(id, name, checks);
            prop_assert_eq!(SweepRequest::decode(&r.encode()).unwrap(), r.clone());
            let m = SweepMessage::Request(r);
            prop_assert_eq!(SweepMessage::decode(&m.encode()).unwrap(), m);
        }

        #[test]
        fn answer_round_trips(id in any::<u64>(), node in "[a-z0-9-]{0,40}", nonce in any::<u64>(), index in any::<u16>(),
                              count in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let m = SweepMessage::Answer(AnswerChunk { sweep_id: id, node, nonce, index, count, sent_unix_ms: 1_800_000_000_000, sent_tag: None, payload });
            prop_assert_eq!(SweepMessage::decode(&m.encode()).unwrap(), m);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = SweepMessage::decode(&bytes);
            let _ = SweepRequest::decode(&bytes);
            let _ = AnswerBody::decode(&bytes);
        }

        #[test]
        fn a_body_read_in_place_is_the_body_decoded_whole(
            tags in proptest::collection::btree_map("[a-z]{1,6}", "[a-z0-9é]{0,8}", 0..4),
            received in any::<u64>(),
            checks_ms in any::<u64>(),
            names in proptest::collection::vec(("[a-z-]{1,12}", "[a-z]{1,6}"), 0..6),
            failing in any::<u8>(),
            others_failing in any::<u8>(),
            renamed in any::<bool>(),
            cut in any::<proptest::sample::Index>(),
            flip in any::<proptest::sample::Index>(),
            xor in 1u8..,
        ) {
            let body_of = |names: &[(String, String)], failing: u8| {
                let outcomes: Vec<CheckOutcome> = names
                    .iter()
                    .enumerate()
                    .map(|(i, (id, kind))| CheckOutcome {
                        id: id.clone(),
                        kind: kind.clone(),
                        status: if failing >> (i % 8) & 1 == 1 { Status::Fail } else { Status::Pass },
                        severity: Severity::Fail,
                        observed: match i % 6 {
                            0 => Observed::Number(i as f64 - 0.5),
                            1 => Observed::Text(id.clone()),
                            2 => Observed::Version(kind.clone()),
                            3 => Observed::List(vec![Observed::Number(1.0), Observed::Text(kind.clone())]),
                            4 => Observed::Named(vec![(id.clone(), Observed::List(vec![Observed::None]))]),
                            _ => Observed::None,
                        },
                        expected: "= 1".into(),
                        message: format!("observed {i}"),
                        duration_us: 5,
                        description: String::new(),
                        remediation: "fix it".into(),
                    })
                    .collect();
                AnswerBody::compact(tags.clone(), received, checks_ms, outcomes)
            };
            let body = body_of(&names, failing);
            let bytes = body.encode();
            // An earlier answer's parts, as a coordinator's shape keeps
            // them: the same names (or one renamed) and other statuses.
            let mut other_names = names.clone();
            if renamed {
                if let Some(first) = other_names.first_mut() {
                    first.0.push('x');
                }
            }
            let other = body_of(&other_names, others_failing);
            let catalog = enc(&other.catalog);
            let mut results = Vec::new();
            let mut starts = vec![0];
            for r in &other.results {
                results.extend(enc(r));
                starts.push(results.len());
            }
            let likely = Likely { catalog: &catalog, results: &results, starts: &starts };
            for likely in [None, Some(likely)] {
                let parts = BodyParts::decode_likely(&bytes, likely).unwrap();
                let owned: BTreeMap<String, String> =
                    parts.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                prop_assert_eq!(&owned, &body.tags);
                prop_assert_eq!(parts.received_unix_ms, body.received_unix_ms);
                prop_assert_eq!(parts.checks_ms, body.checks_ms);
                prop_assert_eq!(&parts.catalog().unwrap(), &body.catalog);
                prop_assert_eq!(parts.catalog_bytes, &enc(&body.catalog)[..]);
                prop_assert_eq!(&parts.decoded_results().unwrap(), &body.results);
                // Cut, lengthened or with a byte changed, both refuse the
                // same bytes or read the same body.
                let mut long = bytes.clone();
                long.push(0);
                let mut flipped = bytes.clone();
                if !flipped.is_empty() {
                    let i = flip.index(flipped.len());
                    flipped[i] ^= xor;
                }
                let short = &bytes[..cut.index(bytes.len())];
                for b in [short, &long[..], &flipped[..]] {
                    match (AnswerBody::decode(b), BodyParts::decode_likely(b, likely)) {
                        (Ok(whole), Ok(parts)) => {
                            prop_assert_eq!(parts.tags.len(), whole.tags.len());
                            prop_assert_eq!(parts.catalog().unwrap(), whole.catalog);
                            prop_assert_eq!(parts.decoded_results().unwrap(), whole.results);
                        }
                        (Err(_), Err(_)) => {}
                        (whole, parts) => prop_assert!(false, "whole {:?}, in place {:?}", whole.is_ok(), parts.is_ok()),
                    }
                }
            }
        }

        #[test]
        fn truncation_never_panics(cut in 0usize..200) {
            let bytes = SweepMessage::Request(request(7, "n".into(), vec!["a".into()])).encode();
            let cut = cut.min(bytes.len());
            let _ = SweepMessage::decode(&bytes[..cut]);
        }
    }
}
