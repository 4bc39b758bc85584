//! `BincodeCodec`: foca's wire codec over bincode 2 (foca 2.0 ships none).
//!
//! Decoding is bounded (no allocation beyond the datagram's own size) and
//! never panics: bad bytes become a [`CodecError`] that foca wraps and the
//! runtime counts.

use bytes::{Buf, BufMut};
use foca::{Header, Member};

use crate::identity::NodeId;

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

    fn encode_header(
        &mut self,
        header: &Header<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        Self::encode(header, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<NodeId>, CodecError> {
        Self::decode(buf)
    }

    fn encode_member(
        &mut self,
        member: &Member<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        Self::encode(member, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<NodeId>, CodecError> {
        Self::decode(buf)
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

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = BincodeCodec.decode_header(&bytes[..]);
            let _ = BincodeCodec.decode_member(&bytes[..]);
        }
    }
}
