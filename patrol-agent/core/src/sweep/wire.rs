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

use patrol_model::{CheckOutcome, Selector};
use serde::{Deserialize, Serialize};

use crate::trust::{Authorization, Certificate};

/// Protocol version carried first in every sweep message. 3: answer
/// pieces carry their send time (`AnswerChunk::sent_unix_ms`), from which
/// the coordinator measures each node's clock offset. 4: requests carry
/// the operator's authorization and the coordinator's certificate
/// (`SweepRequest::auth`), answers reassemble to an `AnswerPayload` with
/// the node's proof.
pub const PROTOCOL_VERSION: u16 = 4;

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
    /// With certificates: who asked and who coordinates, checked by every
    /// participant before it runs a check.
    pub auth: Option<Box<RequestAuth>>,
}

/// The proofs a request carries when the cluster runs with certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestAuth {
    /// The operator's signature over (id, selector, node filter, deadline).
    pub authorization: Authorization,
    /// The coordinator's node certificate: its name must be the request's
    /// coordinator, and its key gives the pair key answers are proved with.
    pub coordinator: Certificate,
}

/// What a participant's answer pieces reassemble to: the encoded
/// [`AnswerBody`] and, with certificates, the node's certificate and its
/// proof (`PairKey::answer_proof` over sweep id, node name, nonce, body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerPayload {
    pub body: Vec<u8>,
    pub proof: Option<AnswerProof>,
}

/// A node's proof that an answer is its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerProof {
    pub cert: Certificate,
    /// 32 bytes.
    pub mac: Vec<u8>,
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
    pub payload: Vec<u8>,
}

/// What a participant reports (reassembled from [`AnswerChunk`]s).
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
    pub outcomes: Vec<CheckOutcome>,
}

impl AnswerBody {
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
}

impl SweepMessage {
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode_versioned(bytes)
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
            let m = SweepMessage::Answer(AnswerChunk { sweep_id: id, node, nonce, index, count, sent_unix_ms: 1_800_000_000_000, payload });
            prop_assert_eq!(SweepMessage::decode(&m.encode()).unwrap(), m);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = SweepMessage::decode(&bytes);
            let _ = SweepRequest::decode(&bytes);
            let _ = AnswerBody::decode(&bytes);
        }

        #[test]
        fn truncation_never_panics(cut in 0usize..200) {
            let bytes = SweepMessage::Request(request(7, "n".into(), vec!["a".into()])).encode();
            let cut = cut.min(bytes.len());
            let _ = SweepMessage::decode(&bytes[..cut]);
        }
    }
}
