//! Target `codec`: [`BincodeCodec`], foca's wire codec, on any bytes:
//! directly (`decode_header`, `decode_member`) and as foca uses it, as a
//! foca datagram to a node coordinating a sweep (see `node.rs`), where foca
//! decodes a header, member updates and custom broadcasts (sweep requests
//! in the mesh) from the same bytes.
//!
//! Checked: decoding never panics; a decoded header or member encodes and
//! decodes back to itself; the codec never consumes more bytes than it
//! was given; the node survives the datagram.

use bytes::Buf;
use foca::Codec;
use patrol_agent::codec::BincodeCodec;
use patrol_core::node::Channel;

pub fn fuzz(data: &[u8]) {
    let mut codec = BincodeCodec;
    let mut buf = data;
    if let Ok(header) = codec.decode_header(&mut buf) {
        assert!(buf.remaining() <= data.len());
        let mut bytes = Vec::new();
        codec
            .encode_header(&header, &mut bytes)
            .expect("a decoded header encodes");
        assert_eq!(codec.decode_header(&bytes[..]).ok(), Some(header));
        // What follows a header in a foca packet: members.
        while buf.has_remaining() {
            let Ok(member) = codec.decode_member(&mut buf) else {
                break;
            };
            let mut bytes = Vec::new();
            codec
                .encode_member(&member, &mut bytes)
                .expect("a decoded member encodes");
            assert_eq!(codec.decode_member(&bytes[..]).ok(), Some(member));
        }
    }
    if let Ok(member) = codec.decode_member(data) {
        let mut bytes = Vec::new();
        codec
            .encode_member(&member, &mut bytes)
            .expect("a decoded member encodes");
        assert_eq!(codec.decode_member(&bytes[..]).ok(), Some(member));
    }
    crate::node::deliver(Channel::Foca, data);
}
