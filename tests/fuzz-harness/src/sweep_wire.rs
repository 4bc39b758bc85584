//! Target `sweep_wire`: the sweep wire decoders
//! ([`SweepMessage::decode`], [`SweepRequest::decode`],
//! [`AnswerBody::decode`]) on any bytes, then the same bytes as a sweep
//! datagram to a node coordinating a sweep (see `node.rs`).
//!
//! Checked: decoding never panics; whatever decodes encodes to bytes that
//! decode to the same value (for an answer body, whose observed numbers
//! may be NaN, to the same bytes again); a coordinator's in-place read of
//! an answer body ([`BodyParts::decode`]) takes exactly the bytes the
//! whole decode takes, to the same names and results; the node survives
//! the datagram and every sweep it finishes passes the accounting
//! invariant.

use patrol_agent::sweep::{AnswerBody, BodyParts, SweepMessage, SweepRequest};
use patrol_core::node::Channel;

pub fn fuzz(data: &[u8]) {
    if let Ok(msg) = SweepMessage::decode(data) {
        let again = SweepMessage::decode(&msg.encode()).expect("an encoded message decodes");
        assert_eq!(again, msg);
    }
    if let Ok(req) = SweepRequest::decode(data) {
        let again = SweepRequest::decode(&req.encode()).expect("an encoded request decodes");
        assert_eq!(again, req);
        assert!(req.expires_at_unix_ms() >= req.issued_at_unix_ms);
    }
    let parts = BodyParts::decode(data);
    assert_eq!(
        parts.is_ok(),
        AnswerBody::decode(data).is_ok(),
        "the in-place read and the whole decode disagree"
    );
    if let Ok(body) = AnswerBody::decode(data) {
        let bytes = body.encode();
        let again = AnswerBody::decode(&bytes).expect("an encoded answer body decodes");
        assert_eq!(again.encode(), bytes);
        let parts = parts.expect("read in place");
        let catalog = parts.catalog().expect("names read in place decode");
        let results = parts
            .decoded_results()
            .expect("results read in place decode");
        let whole = AnswerBody {
            catalog,
            results,
            ..body
        };
        assert_eq!(whole.encode(), bytes);
    }
    crate::node::deliver(Channel::Sweep, data);
}
