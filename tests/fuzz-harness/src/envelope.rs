//! Target `envelope`: [`Envelope::open`] and [`Envelope::precheck`] on any
//! bytes, and seal-then-open of any plaintext.
//!
//! Input: one control byte, then the bytes. The control byte picks the
//! purpose (low two bits) and which bit of the sealed packet to flip (the
//! rest). Checked:
//! - opening arbitrary bytes never panics; what opens passes the precheck
//!   and is exactly `OVERHEAD` bytes longer than its plaintext (only the
//!   seeds, sealed under the harness key, open: the fuzzer cannot forge a
//!   Poly1305 tag);
//! - when the key-free precheck refuses a packet, `open` refuses it for
//!   the same reason (the UDP reader relies on that);
//! - the bytes sealed as plaintext open to themselves under the same
//!   purpose, to nothing under another purpose, and to nothing with any one
//!   bit flipped.

use std::sync::OnceLock;

use patrol_agent::envelope::{Envelope, Purpose, OVERHEAD};
use patrol_agent::keyring::{Keyring, SECRET_LEN};

const PURPOSES: [Purpose; 3] = [
    Purpose::Gossip,
    Purpose::ControlRequest,
    Purpose::ControlReply,
];

/// Two keys installed (ids 1 and 3: one bit apart, so a flipped key id
/// can land on a known key), cluster `fuzz`.
pub fn envelope() -> &'static Envelope {
    static ENVELOPE: OnceLock<Envelope> = OnceLock::new();
    ENVELOPE.get_or_init(|| {
        let mut ring = Keyring::from_secret(1, [1; SECRET_LEN]);
        ring.install(3, [3; SECRET_LEN])
            .expect("a second key id installs");
        Envelope::new(ring, "fuzz")
    })
}

pub fn fuzz(data: &[u8]) {
    let Some((&control, bytes)) = data.split_first() else {
        return;
    };
    let env = envelope();
    let purpose = PURPOSES[usize::from(control & 3) % PURPOSES.len()];

    let pre = env.precheck(bytes);
    let opened = env.open(purpose, bytes);
    match (&opened, pre) {
        // Only a packet sealed under our key opens (the seeds have some):
        // it passes the precheck and carries exactly its plaintext.
        (Ok(plain), pre) => {
            assert_eq!(pre, Ok(()));
            assert_eq!(plain.len() + OVERHEAD, bytes.len());
        }
        (Err(_), Err(why)) => assert_eq!(opened, Err(why), "precheck and open disagree"),
        (Err(_), Ok(())) => {}
    }
    let mut out = b"keep".to_vec();
    if env.open_into(purpose, bytes, &mut out).is_err() {
        assert_eq!(out, b"keep", "a refused packet changed the buffer");
    }

    let packet = env
        .seal_to_vec(purpose, bytes)
        .expect("a fuzz input is far below MAX_PLAINTEXT");
    assert_eq!(env.precheck(&packet), Ok(()));
    assert_eq!(env.open(purpose, &packet).as_deref(), Ok(bytes));
    for other in PURPOSES.into_iter().filter(|p| *p != purpose) {
        assert!(env.open(other, &packet).is_err(), "opened as {other:?}");
    }
    // The upper six bits of the control byte pick one of 64 places spread
    // over the whole packet: header, ciphertext and tag.
    let bit = usize::from(control >> 2) * (packet.len() * 8) / 64;
    let mut flipped = packet;
    flipped[bit / 8] ^= 1 << (bit % 8);
    assert!(
        env.open(purpose, &flipped).is_err(),
        "bit {bit} flipped still opens"
    );
}
