//! `BincodeCodec`: foca's wire codec over bincode 2 (foca 2.0 ships none).
//!
//! Decoding is bounded (no allocation beyond the datagram's own size) and
//! never panics: bad bytes become a [`CodecError`] that foca wraps and the
//! runtime counts. An identity larger than [`MAX_IDENTITY_BYTES`] (no
//! agent starts with one) is refused the same way, wherever it appears in
//! a header or a member update, so a key holder cannot make the mesh carry
//! identities that do not fit its packets.

use bytes::{Buf, BufMut};
use foca::{Header, Member, Message};

use crate::identity::{NodeId, MAX_IDENTITY_BYTES};

/// Largest item the codec decodes (headers and members are far smaller).
const DECODE_LIMIT: usize = 64 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Encoding or decoding failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("an identity of {0} bytes, over the {MAX_IDENTITY_BYTES} a node may have")]
    OversizedIdentity(usize),
}

/// Refuse `id` when it is larger than any agent may be.
fn check_identity(id: &NodeId) -> Result<(), CodecError> {
    match id.encoded_len() {
        n if n > MAX_IDENTITY_BYTES => Err(CodecError::OversizedIdentity(n)),
        _ => Ok(()),
    }
}

/// An identity inside a probe message carries a proof.
fn message_has_proof(message: &Message<NodeId>) -> bool {
    match message {
        Message::PingReq { target: id, .. }
        | Message::IndirectPing { origin: id, .. }
        | Message::IndirectAck { target: id, .. }
        | Message::ForwardedAck { origin: id, .. } => id.proof.is_some(),
        _ => false,
    }
}

/// foca codec over bincode 2 with serde.
#[derive(Debug, Clone, Copy, Default)]
pub struct BincodeCodec;

impl BincodeCodec {
    fn encode<T: serde::Serialize>(value: &T, mut buf: impl BufMut) -> Result<(), CodecError> {
        let bytes = bincode::serde::encode_to_vec(value, config())?;
        if buf.remaining_mut() < bytes.len() {
            return Err(CodecError::Encode(
                bincode::error::EncodeError::UnexpectedEnd,
            ));
        }
        buf.put_slice(&bytes);
        Ok(())
    }

    fn decode<T: serde::de::DeserializeOwned>(mut buf: impl Buf) -> Result<T, CodecError> {
        let (value, used) = bincode::serde::decode_from_slice(buf.chunk(), config())?;
        buf.advance(used);
        Ok(value)
    }
}

impl foca::Codec<NodeId> for BincodeCodec {
    type Error = CodecError;

    /// The header goes out with the sender's proof only: the destination
    /// and the identities inside probe messages never enter anyone's
    /// membership (foca compares the destination with its own identity,
    /// and identities compare without their proofs), so their proofs
    /// (81 bytes each) stay home.
    fn encode_header(
        &mut self,
        header: &Header<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        if header.dst.proof.is_none() && !message_has_proof(&header.message) {
            return Self::encode(header, buf);
        }
        let mut lean = header.clone();
        lean.dst.proof = None;
        lean.dst.signer = None;
        match &mut lean.message {
            Message::PingReq { target: id, .. }
            | Message::IndirectPing { origin: id, .. }
            | Message::IndirectAck { target: id, .. }
            | Message::ForwardedAck { origin: id, .. } => {
                id.proof = None;
                id.signer = None;
            }
            _ => {}
        }
        Self::encode(&lean, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<NodeId>, CodecError> {
        let header: Header<NodeId> = Self::decode(buf)?;
        check_identity(&header.src)?;
        check_identity(&header.dst)?;
        match &header.message {
            Message::PingReq { target: id, .. }
            | Message::IndirectPing { origin: id, .. }
            | Message::IndirectAck { target: id, .. }
            | Message::ForwardedAck { origin: id, .. } => check_identity(id)?,
            Message::Ping(_)
            | Message::Ack(_)
            | Message::Announce
            | Message::Feed
            | Message::Gossip
            | Message::Broadcast
            | Message::TurnUndead => {}
        }
        Ok(header)
    }

    fn encode_member(
        &mut self,
        member: &Member<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        Self::encode(member, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<NodeId>, CodecError> {
        let member: Member<NodeId> = Self::decode(buf)?;
        check_identity(member.id())?;
        Ok(member)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use foca::Codec;
    use proptest::prelude::*;

    use super::*;

    fn node() -> NodeId {
        let mut tags = BTreeMap::new();
        tags.insert("role".to_string(), "etcd".to_string());
        NodeId::new("node-a", "127.0.0.1:7946".parse().unwrap(), 7, tags)
    }

    #[test]
    fn member_round_trip() {
        let m = Member::alive(node());
        let mut buf = Vec::new();
        BincodeCodec.encode_member(&m, &mut buf).unwrap();
        let back = BincodeCodec.decode_member(&buf[..]).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn an_identity_over_the_limit_is_refused_in_a_header_and_in_a_member() {
        let addr = "127.0.0.1:7946".parse().unwrap();
        let big = NodeId::new("n".repeat(MAX_IDENTITY_BYTES), addr, 1, BTreeMap::new());
        let header = |src: NodeId, message| Header {
            src,
            src_incarnation: 0,
            dst: node(),
            message,
        };
        let encoded = |h: &Header<NodeId>| {
            let mut buf = Vec::new();
            BincodeCodec.encode_header(h, &mut buf).unwrap();
            buf
        };
        let fine = encoded(&header(node(), Message::Announce));
        assert!(BincodeCodec.decode_header(&fine[..]).is_ok());
        for h in [
            header(big.clone(), Message::Announce),
            header(
                node(),
                Message::PingReq {
                    target: big.clone(),
                    probe_number: 1,
                },
            ),
        ] {
            assert!(matches!(
                BincodeCodec.decode_header(&encoded(&h)[..]),
                Err(CodecError::OversizedIdentity(_))
            ));
        }
        let mut buf = Vec::new();
        BincodeCodec
            .encode_member(&Member::alive(big), &mut buf)
            .unwrap();
        assert!(matches!(
            BincodeCodec.decode_member(&buf[..]),
            Err(CodecError::OversizedIdentity(_))
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = BincodeCodec.decode_header(&bytes[..]);
            let _ = BincodeCodec.decode_member(&bytes[..]);
        }
    }
}
