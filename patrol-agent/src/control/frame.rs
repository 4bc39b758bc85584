//! The control channel's frames, as pure functions on bytes (the
//! mini-redis `frame.rs` habit): no socket here, so every rule is tested
//! directly and by property tests.
//!
//! ```text
//! frame  = len:u32be  body[len]                 (len <= the reader's limit)
//! hello  = "PTRL"  version:u8  challenge[16]     (HELLO_LEN = 21 bytes)
//! deny   = "DENY"  reason (UTF-8)
//! sealed = envelope( bincode { challenge[16], body } )
//! ```
//!
//! A sweep document travels as sealed `SweepPiece`s of at most
//! [`DOC_PIECE`] bytes; [`DocumentAssembler`] puts them back together under
//! [`MAX_DOCUMENT`].

use patrol_checks::compact::EncodedPieces;
use patrol_checks::CompactDocument;
use serde::{Deserialize, Serialize};

use super::ControlError;
use crate::envelope::{Envelope, Purpose};

/// Bytes of the big-endian length in front of every frame.
pub const LEN_PREFIX: usize = 4;
/// Bytes of the per-connection challenge.
pub const CHALLENGE_LEN: usize = 16;
/// The first bytes of a hello and of a refusal.
pub const HELLO_MAGIC: &[u8; 4] = b"PTRL";
pub const DENY_MAGIC: &[u8; 4] = b"DENY";
/// A hello: magic, protocol version, challenge.
pub const HELLO_LEN: usize = HELLO_MAGIC.len() + 1 + CHALLENGE_LEN;
/// The control protocol's version, byte 4 of every hello, with the cluster
/// key or with certificates (the two hellos differ in length, not in
/// version). The one number for the whole control channel; PROTOCOL.md
/// ("Versions and rolling upgrades") quotes it and says what each version
/// changed. 6: one version for both handshakes, stats as the counter list.
/// 8: the sweep document travels compact ([`CompactDocument`]).
pub const CONTROL_VERSION: u8 = 8;
/// Largest frame either side accepts. Sweep documents travel in pieces of
/// [`DOC_PIECE`] bytes, so a document of any size fits.
pub const MAX_FRAME: usize = 8 * 1024 * 1024;
/// Size of one piece of a sweep document.
pub const DOC_PIECE: usize = 4 * 1024 * 1024;
/// Largest reassembled sweep document a client accepts.
pub const MAX_DOCUMENT: usize = 1024 * 1024 * 1024;
/// A request is small (a selector and a filter); the server reads it under
/// this limit, so an unauthenticated client cannot make it allocate more.
pub const MAX_REQUEST_FRAME: usize = 64 * 1024;

/// The per-connection challenge every sealed frame must carry.
pub type Challenge = [u8; CHALLENGE_LEN];

#[derive(Serialize, Deserialize)]
struct Sealed<T> {
    challenge: Challenge,
    body: T,
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME>()
}

/// The length a frame header announces, refused above `limit`.
pub fn frame_len(header: [u8; LEN_PREFIX], limit: usize) -> Result<usize, ControlError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > limit {
        return Err(ControlError::Protocol(format!(
            "frame of {len} bytes is over the limit of {limit}"
        )));
    }
    Ok(len)
}

/// The length header for a frame of `len` bytes.
pub fn len_header(len: usize) -> Result<[u8; LEN_PREFIX], ControlError> {
    u32::try_from(len)
        .map(u32::to_be_bytes)
        .map_err(|_| ControlError::Protocol(format!("a frame of {len} bytes is too large")))
}

pub fn encode_hello(challenge: &Challenge) -> Vec<u8> {
    let mut hello = Vec::with_capacity(HELLO_LEN);
    hello.extend_from_slice(HELLO_MAGIC);
    hello.push(CONTROL_VERSION);
    hello.extend_from_slice(challenge);
    hello
}

/// Whether `hello` is a patrol hello of this control version (either
/// handshake); `peer` names the server in errors.
pub fn check_hello(hello: &[u8], peer: &str) -> Result<(), ControlError> {
    if hello.len() <= HELLO_MAGIC.len() || &hello[..HELLO_MAGIC.len()] != HELLO_MAGIC {
        return Err(ControlError::Protocol(format!(
            "{peer} is not a patrol control port"
        )));
    }
    let version = hello[HELLO_MAGIC.len()];
    if version != CONTROL_VERSION {
        return Err(ControlError::Protocol(format!(
            "agent speaks control protocol {version}, this client {CONTROL_VERSION}"
        )));
    }
    Ok(())
}

/// The challenge of a server's cluster-key hello; `peer` names the server
/// in errors.
pub fn decode_hello(hello: &[u8], peer: &str) -> Result<Challenge, ControlError> {
    check_hello(hello, peer)?;
    if hello.len() != HELLO_LEN {
        return Err(ControlError::Protocol(format!(
            "{peer} is not a patrol control port"
        )));
    }
    let mut challenge = [0u8; CHALLENGE_LEN];
    challenge.copy_from_slice(&hello[HELLO_MAGIC.len() + 1..]);
    Ok(challenge)
}

pub fn encode_deny(reason: &str) -> Vec<u8> {
    let mut deny = DENY_MAGIC.to_vec();
    deny.extend_from_slice(reason.as_bytes());
    deny
}

/// Characters of a refusal's reason kept; an agent's own reasons are a
/// line long.
pub const MAX_DENY_REASON: usize = 200;

/// The reason of a refusal frame, or `None` for any other frame. A
/// refusal is not sealed (anything listening on the port can send one),
/// so the reason is cut to [`MAX_DENY_REASON`] characters and made safe
/// to print ([`patrol_checks::printable::one_line`]) before anyone shows it.
pub fn decode_deny(frame: &[u8]) -> Option<String> {
    frame.strip_prefix(DENY_MAGIC).map(|reason| {
        let text = String::from_utf8_lossy(reason);
        let cut: String = text.chars().take(MAX_DENY_REASON).collect();
        patrol_checks::printable::one_line(&cut).into_owned()
    })
}

/// Seal `body` for this connection (`purpose`: a request from the client
/// or a reply from the agent; one does not open as the other).
pub fn seal<T: Serialize>(
    envelope: &Envelope,
    purpose: Purpose,
    challenge: Challenge,
    body: T,
) -> Result<Vec<u8>, ControlError> {
    let plain = bincode::serde::encode_to_vec(Sealed { challenge, body }, bincode_config())
        .map_err(|e| ControlError::Protocol(format!("cannot encode a frame: {e}")))?;
    envelope
        .seal_to_vec(purpose, &plain)
        .map_err(|e| ControlError::Protocol(format!("cannot seal a frame: {e}")))
}

/// Open a sealed frame of this connection: refused if it does not open,
/// does not decode, or carries another connection's challenge.
pub fn open<T: serde::de::DeserializeOwned>(
    envelope: &Envelope,
    purpose: Purpose,
    challenge: Challenge,
    frame: &[u8],
) -> Result<T, ControlError> {
    let plain = envelope
        .open(purpose, frame)
        .map_err(|_| ControlError::BadSeal)?;
    let (sealed, _): (Sealed<T>, usize) =
        bincode::serde::decode_from_slice(&plain, bincode_config())
            .map_err(|e| ControlError::Protocol(format!("undecodable frame: {e}")))?;
    if sealed.challenge != challenge {
        return Err(ControlError::Refused("stale or replayed frame".into()));
    }
    Ok(sealed.body)
}

/// A document, bincode-encoded in its compact form, in pieces of
/// [`DOC_PIECE`] bytes (the last one shorter; at least one), encoded as
/// they are taken: the sender holds one piece at a time, and each node of
/// the document is dropped once encoded.
pub fn document_pieces(doc: CompactDocument) -> EncodedPieces {
    doc.into_pieces(DOC_PIECE)
}

/// Puts a document's pieces back together, refusing more than
/// [`MAX_DOCUMENT`] bytes in all.
#[derive(Debug, Default)]
pub struct DocumentAssembler {
    buf: Vec<u8>,
}

impl DocumentAssembler {
    /// Add a piece; the document once `last` arrives.
    pub fn push(
        &mut self,
        piece: &[u8],
        last: bool,
    ) -> Result<Option<CompactDocument>, ControlError> {
        if self.buf.len() + piece.len() > MAX_DOCUMENT {
            return Err(ControlError::Protocol("sweep document over 1 GiB".into()));
        }
        self.buf.extend_from_slice(piece);
        if !last {
            return Ok(None);
        }
        let doc = decode_document(&std::mem::take(&mut self.buf))
            .map_err(|e| ControlError::Protocol(format!("undecodable sweep document: {e}")))?;
        Ok(Some(doc))
    }
}

/// Most bytes bincode's limit counts per encoded byte of an honest
/// document, with room to spare: a one-byte varint decodes to a `u64`,
/// which counts 8.
const CLAIM_PER_BYTE: usize = 16;

/// The decode limit for `len` bytes of document: `len * CLAIM_PER_BYTE`
/// rounded up to a power of four (at least 64 KiB, at most
/// [`MAX_DOCUMENT`]).
///
/// bincode allocates what a string's length prefix claims, up to its
/// limit, before it reads the string; a fixed 1 GiB limit let a few forged
/// bytes allocate up to 1 GiB (found by the `control` fuzz target). With
/// this limit a forged prefix claims at most 64 times the bytes received.
fn document_limit(len: usize) -> usize {
    len.saturating_mul(CLAIM_PER_BYTE)
        .max(1 << 16)
        .checked_next_power_of_two()
        .map(|p| {
            if p.trailing_zeros() % 2 == 1 {
                p << 1
            } else {
                p
            }
        })
        .unwrap_or(MAX_DOCUMENT)
        .min(MAX_DOCUMENT)
}

fn decode_document(bytes: &[u8]) -> Result<CompactDocument, bincode::error::DecodeError> {
    fn under<const LIMIT: usize>(
        bytes: &[u8],
    ) -> Result<CompactDocument, bincode::error::DecodeError> {
        let cfg = bincode::config::standard().with_limit::<LIMIT>();
        bincode::serde::decode_from_slice(bytes, cfg).map(|(doc, _)| doc)
    }
    // bincode takes its limit as a constant: one instance per power of four.
    match document_limit(bytes.len()) {
        0x1_0000 => under::<0x1_0000>(bytes),
        0x4_0000 => under::<0x4_0000>(bytes),
        0x10_0000 => under::<0x10_0000>(bytes),
        0x40_0000 => under::<0x40_0000>(bytes),
        0x100_0000 => under::<0x100_0000>(bytes),
        0x400_0000 => under::<0x400_0000>(bytes),
        0x1000_0000 => under::<0x1000_0000>(bytes),
        _ => under::<MAX_DOCUMENT>(bytes),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::keyring::Keyring;

    #[test]
    fn the_hello_is_magic_version_and_challenge() {
        assert_eq!(HELLO_LEN, 21);
        let hello = encode_hello(&[9; CHALLENGE_LEN]);
        assert_eq!(hello.len(), HELLO_LEN);
        assert_eq!(decode_hello(&hello, "x").unwrap(), [9; CHALLENGE_LEN]);
        let mut newer = hello.clone();
        newer[4] = CONTROL_VERSION + 1;
        assert!(decode_hello(&newer, "x")
            .unwrap_err()
            .to_string()
            .contains("protocol"));
    }

    #[test]
    fn a_frame_from_another_connection_is_refused() {
        let env = Envelope::new(Keyring::generate(), "test");
        let r = Purpose::ControlRequest;
        let frame = seal(&env, r, [1; CHALLENGE_LEN], "hi").unwrap();
        assert_eq!(
            open::<String>(&env, r, [1; CHALLENGE_LEN], &frame).unwrap(),
            "hi"
        );
        assert!(matches!(
            open::<String>(&env, r, [2; CHALLENGE_LEN], &frame),
            Err(ControlError::Refused(_))
        ));
        let other = Envelope::new(Keyring::generate(), "test");
        assert!(matches!(
            open::<String>(&other, r, [1; CHALLENGE_LEN], &frame),
            Err(ControlError::BadSeal)
        ));
        // A request does not open as a reply (a client's own frame
        // reflected back at it).
        assert!(matches!(
            open::<String>(&env, Purpose::ControlReply, [1; CHALLENGE_LEN], &frame),
            Err(ControlError::BadSeal)
        ));
    }

    #[test]
    fn frames_over_the_limit_are_refused() {
        assert_eq!(frame_len(len_header(10).unwrap(), 10).unwrap(), 10);
        assert!(frame_len(len_header(11).unwrap(), 10).is_err());
    }

    #[test]
    fn a_refusal_carries_its_reason() {
        assert_eq!(decode_deny(&encode_deny("no")).as_deref(), Some("no"));
        assert_eq!(decode_deny(b"PTRL..."), None);
        let hostile = [&b"DENY\x1b]0;pwned\x07"[..], &[b'x'; 5000]].concat();
        let reason = decode_deny(&hostile).unwrap();
        assert!(reason.starts_with("\\x1b]0;pwned\\x07xx"), "{reason}");
        assert_eq!(reason.chars().count(), MAX_DENY_REASON + 6);
    }

    fn doc(nodes: usize) -> CompactDocument {
        let mut d = patrol_report_free_sample(nodes);
        d.recount();
        CompactDocument::from_document(d)
    }

    /// A document with `nodes` entries (no dependency on the report crate).
    fn patrol_report_free_sample(nodes: usize) -> patrol_checks::SweepDocument {
        patrol_checks::SweepDocument {
            version: 1,
            sweep_id: "00000000000000aa".into(),
            cluster: "c".into(),
            coordinator: "n0".into(),
            operator: None,
            started_at_unix_ms: 1,
            deadline_ms: 5000,
            selector: Default::default(),
            node_filter: Default::default(),
            counts: Default::default(),
            nodes: (0..nodes)
                .map(|i| patrol_checks::NodeEntry {
                    name: format!("n{i}"),
                    addr: "127.0.0.1:1".into(),
                    tags: Default::default(),
                    state: patrol_checks::NodeState::Ok,
                    late_joiner: false,
                    reached_ms: Some(1),
                    answered_ms: Some(2),
                    checks_ms: Some(i as u64),
                    checks: vec![patrol_checks::CheckOutcome {
                        id: "c".into(),
                        kind: "k".into(),
                        status: patrol_checks::Status::Pass,
                        severity: patrol_checks::Severity::Fail,
                        observed: patrol_checks::Observed::Number(i as f64),
                        expected: String::new(),
                        message: String::new(),
                        duration_us: 0,
                        description: String::new(),
                        remediation: String::new(),
                    }],
                    clock: Some(patrol_checks::ClockOffset {
                        offset_ms: -(i as i64),
                        bound_ms: 1,
                    }),
                    silence: None,
                    swim: None,
                })
                .collect(),
            timing: Default::default(),
            gone: Vec::new(),
        }
    }

    proptest! {
        #[test]
        fn garbage_hellos_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_hello(&bytes, "x");
            let _ = decode_deny(&bytes);
        }

        #[test]
        fn garbage_frames_do_not_open(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let env = Envelope::new(Keyring::generate(), "test");
            prop_assert!(open::<String>(&env, Purpose::ControlRequest, [0; CHALLENGE_LEN], &bytes).is_err());
        }

        #[test]
        fn a_document_survives_any_cut_into_pieces(nodes in 0usize..40, cuts in proptest::collection::vec(1usize..200, 1..8)) {
            let d = doc(nodes);
            let bytes = bincode::serde::encode_to_vec(&d, bincode::config::standard()).unwrap();
            let mut asm = DocumentAssembler::default();
            let mut rest = &bytes[..];
            let mut got = None;
            for (k, cut) in cuts.iter().cycle().enumerate() {
                let n = (*cut).min(rest.len());
                let last = n == rest.len();
                got = asm.push(&rest[..n], last).unwrap();
                rest = &rest[n..];
                if last || k > 10_000 { break; }
            }
            prop_assert_eq!(got, Some(d));
        }
    }

    /// Regression (fuzz target `control`): a document whose string length
    /// prefix claimed 592 MB made the assembler allocate 592 MB before
    /// finding that the 46 bytes it had did not hold the string. Now the
    /// limit, which bincode checks before allocating, scales with the bytes
    /// received.
    #[test]
    fn a_forged_string_length_in_a_document_allocates_nothing_big() {
        let mut forged = bincode::serde::encode_to_vec(1u16, bincode::config::standard()).unwrap();
        // The sweep id: a string claiming 592,332,228 bytes.
        forged.push(0xfc);
        forged.extend_from_slice(&592_332_228u32.to_le_bytes());
        forged.extend_from_slice(b"short");
        let err = DocumentAssembler::default()
            .push(&forged, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("LimitExceeded"), "{err}");
    }

    #[test]
    fn the_document_limit_scales_with_the_bytes_in_powers_of_four() {
        assert_eq!(document_limit(0), 1 << 16);
        assert_eq!(document_limit(4096), 1 << 16);
        assert_eq!(document_limit(4097), 1 << 18);
        assert_eq!(document_limit(1 << 20), 1 << 24);
        assert_eq!(document_limit((1 << 20) + 1), 1 << 26);
        assert_eq!(document_limit(MAX_DOCUMENT), MAX_DOCUMENT);
        assert_eq!(document_limit(usize::MAX), MAX_DOCUMENT);
        for len in [1, 100, 5000, 70_000, 1 << 22, 50 << 20] {
            let limit = document_limit(len);
            assert!(
                limit.trailing_zeros().is_multiple_of(2),
                "{limit} is a power of four"
            );
            assert!(limit >= len * CLAIM_PER_BYTE);
            assert!(limit <= (len * CLAIM_PER_BYTE * 4).max(1 << 16));
        }
    }

    #[test]
    fn a_document_past_the_smallest_limit_still_reassembles() {
        let d = doc(20_000);
        let pieces: Vec<Vec<u8>> = document_pieces(d.clone()).collect();
        assert!(pieces[0].len() * CLAIM_PER_BYTE > 1 << 16);
        let mut asm = DocumentAssembler::default();
        assert_eq!(asm.push(&pieces[0], true).unwrap(), Some(d));
    }

    #[test]
    fn a_big_document_is_cut_into_full_pieces_that_reassemble() {
        let d = doc(300_000);
        let whole = bincode::serde::encode_to_vec(&d, bincode::config::standard()).unwrap();
        let pieces: Vec<Vec<u8>> = document_pieces(d.clone()).collect();
        assert_eq!(pieces.concat(), whole);
        assert!(pieces.len() > 1);
        assert!(pieces[..pieces.len() - 1]
            .iter()
            .all(|p| p.len() == DOC_PIECE));
        let mut asm = DocumentAssembler::default();
        let mut got = None;
        for (i, p) in pieces.iter().enumerate() {
            got = asm.push(p, i + 1 == pieces.len()).unwrap();
        }
        assert_eq!(got, Some(d));
    }

    #[test]
    fn document_pieces_reassemble() {
        let d = doc(3);
        let pieces: Vec<Vec<u8>> = document_pieces(d.clone()).collect();
        assert_eq!(pieces.len(), 1);
        let mut asm = DocumentAssembler::default();
        assert_eq!(asm.push(&pieces[0], true).unwrap(), Some(d));
    }
}
