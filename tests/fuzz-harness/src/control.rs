//! Target `control`: the control channel's frames
//! (`patrol-agent/src/control/frame.rs`) as the server and the client
//! read them.
//!
//! Input: one control byte, then the bytes. The low two bits pick what the
//! bytes are:
//! - 0: a raw frame: a hello (`decode_hello`), a refusal (`decode_deny`:
//!   its reason one safe line, the text itself where it already was one),
//!   a length header (`frame_len`), and a sealed frame that must not open;
//! - 1: the plaintext of a sealed request as the server opens it
//!   (`frame::open::<ControlRequest>`), sealed here with the cluster key so
//!   the fuzzer reaches the decoder behind the envelope;
//! - 2: the same for a reply as the client opens it (`ControlResponse`);
//! - 3: a sweep document's bytes, cut into pieces of `1 + (control >> 2)`
//!   bytes and fed to a [`DocumentAssembler`].
//!
//! Checked: nothing panics or allocates without bound; what opens or
//! reassembles seals (or cuts) and opens again to the same bytes.

use patrol_agent::control::frame::{self, Challenge, DocumentAssembler, CHALLENGE_LEN};
use patrol_agent::control::{ControlRequest, ControlResponse};
use patrol_agent::envelope::Purpose;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::envelope::envelope;

const CHALLENGE: Challenge = [7; CHALLENGE_LEN];

pub fn fuzz(data: &[u8]) {
    let Some((&control, bytes)) = data.split_first() else {
        return;
    };
    match control & 3 {
        0 => raw(bytes),
        1 => sealed::<ControlRequest>(Purpose::ControlRequest, bytes),
        2 => sealed::<ControlResponse>(Purpose::ControlReply, bytes),
        _ => document(usize::from(control >> 2) + 1, bytes),
    }
}

fn raw(bytes: &[u8]) {
    if let Ok(challenge) = frame::decode_hello(bytes, "fuzz") {
        assert_eq!(frame::encode_hello(&challenge), bytes);
    }
    if let Some(reason) = frame::decode_deny(bytes) {
        assert!(bytes.starts_with(frame::DENY_MAGIC));
        // The agent's reason is shown to a person: cut and made one safe
        // line (control characters escaped), equal to the text only where
        // the text already was one.
        use patrol_checks::printable::is_unsafe;
        assert!(!reason.chars().any(|c| is_unsafe(c, false)), "{reason:?}");
        if let Ok(text) = std::str::from_utf8(&bytes[frame::DENY_MAGIC.len()..]) {
            if text.chars().count() <= frame::MAX_DENY_REASON
                && !text.chars().any(|c| is_unsafe(c, false))
            {
                assert_eq!(reason, text);
            }
        }
    }
    if let Some(header) = bytes.first_chunk::<{ frame::LEN_PREFIX }>() {
        if let Ok(len) = frame::frame_len(*header, frame::MAX_REQUEST_FRAME) {
            assert!(len <= frame::MAX_REQUEST_FRAME);
            assert_eq!(frame::len_header(len).ok(), Some(*header));
        }
    }
    for purpose in [Purpose::ControlRequest, Purpose::ControlReply] {
        assert!(frame::open::<ControlRequest>(envelope(), purpose, CHALLENGE, bytes).is_err());
    }
}

fn sealed<T: Serialize + DeserializeOwned>(purpose: Purpose, plain: &[u8]) {
    let env = envelope();
    let packet = env
        .seal_to_vec(purpose, plain)
        .expect("a fuzz input is far below MAX_PLAINTEXT");
    let Ok(body) = frame::open::<T>(env, purpose, CHALLENGE, &packet) else {
        return;
    };
    let again = frame::seal(env, purpose, CHALLENGE, &body).expect("an opened body seals");
    let back: T = frame::open(env, purpose, CHALLENGE, &again).expect("a sealed body opens");
    assert_eq!(encode(&back), encode(&body));
    let other = [CHALLENGE[0] ^ 1; CHALLENGE_LEN];
    assert!(frame::open::<T>(env, purpose, other, &again).is_err());
}

fn document(piece: usize, bytes: &[u8]) {
    let mut asm = DocumentAssembler::default();
    let mut pieces = bytes.chunks(piece).peekable();
    let mut doc = None;
    if bytes.is_empty() {
        doc = asm.push(&[], true).ok().flatten();
    }
    while let Some(p) = pieces.next() {
        match asm.push(p, pieces.peek().is_none()) {
            Ok(Some(d)) => doc = Some(d),
            Ok(None) => {}
            Err(_) => return,
        }
    }
    let Some(doc) = doc else { return };
    let again: Vec<Vec<u8>> = frame::document_pieces(doc.clone()).collect();
    let mut asm = DocumentAssembler::default();
    let last = again.len() - 1;
    let mut back = None;
    for (i, p) in again.iter().enumerate() {
        back = asm
            .push(p, i == last)
            .expect("an encoded document reassembles");
    }
    let back = back.expect("the last piece gives the document");
    assert_eq!(encode(&back), encode(&doc));
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("a decoded value encodes")
}
