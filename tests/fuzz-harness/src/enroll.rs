//! Target `enroll`: the enrollment protocol's frames
//! (`patrol-agent/src/enroll/wire.rs`) as the service and the client read
//! them.
//!
//! Input: one control byte, then the bytes. The low two bits pick what the
//! bytes are:
//! - 0: a raw frame: a hello (`decode_hello`), and each message decoded
//!   as itself (`ServerProof`, `EnrollRequest`, `EnrollResponse`);
//! - 1: the plaintext of a sealed request as the service opens it
//!   (`open_sealed`, under the protocol's frame limit),
//!   sealed here with a session key so the fuzzer reaches the decoder
//!   behind the envelope; an opened request goes through the possession
//!   check;
//! - 2: the same for an answer as the client opens it;
//! - 3: a service proof as the client checks it against a pinned root.
//!
//! Checked: nothing panics or allocates without bound; a decoded message
//! encodes and decodes to the same bytes; no proof the fuzzer makes is
//! accepted (it holds no issuer key), and no possession proof either.

use std::sync::OnceLock;

use patrol_agent::control::frame::{self, Challenge, CHALLENGE_LEN};
use patrol_agent::enroll::wire::{self, EnrollRequest, EnrollResponse, ServerProof};
use patrol_agent::envelope::{Envelope, Purpose};
use patrol_agent::keyring::Keyring;
use patrol_core::trust::{Certificate, Revocations, SigningKey, TrustBundle};
use serde::de::DeserializeOwned;
use serde::Serialize;

const CHALLENGE: Challenge = [9; CHALLENGE_LEN];
const TRANSCRIPT: &[u8] = b"fuzz transcript";

fn session() -> &'static Envelope {
    static SESSION: OnceLock<Envelope> = OnceLock::new();
    SESSION.get_or_init(|| Envelope::new(Keyring::from_secret(2, [5; 32]), wire::SESSION_LABEL))
}

fn roots() -> &'static TrustBundle {
    static ROOTS: OnceLock<TrustBundle> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let key = SigningKey::from_bytes(&[11; 32]);
        let root = Certificate::new_ca(&key, "fuzz-root", 1, 0, u64::MAX / 2);
        TrustBundle::new(vec![root], Revocations::default()).expect("a bundle of one root")
    })
}

pub fn fuzz(data: &[u8]) {
    let Some((&control, bytes)) = data.split_first() else {
        return;
    };
    match control & 3 {
        0 => raw(bytes),
        1 => {
            if let Some(req) = sealed::<EnrollRequest>(Purpose::ControlRequest, bytes) {
                assert!(wire::check_possession(&req, TRANSCRIPT).is_err());
            }
        }
        2 => {
            let _ = sealed::<EnrollResponse>(Purpose::ControlReply, bytes);
        }
        _ => assert!(wire::check_server(roots(), TRANSCRIPT, bytes, 1000).is_err()),
    }
}

fn raw(bytes: &[u8]) {
    if let Ok((challenge, eph)) = wire::decode_hello(bytes) {
        assert_eq!(wire::encode_hello(&challenge, &eph), bytes);
    }
    round_trip::<ServerProof>(bytes);
    round_trip::<EnrollRequest>(bytes);
    round_trip::<EnrollResponse>(bytes);
}

fn round_trip<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    if let Ok(v) = wire::decode::<T>(bytes) {
        let again = wire::encode(&v).expect("a decoded message encodes");
        let back: T = wire::decode(&again).expect("an encoded message decodes");
        assert_eq!(wire::encode(&back).expect("encodes"), again);
    }
}

fn sealed<T: Serialize + DeserializeOwned>(purpose: Purpose, plain: &[u8]) -> Option<T> {
    let env = session();
    let packet = env
        .seal_to_vec(purpose, plain)
        .expect("a fuzz input is far below MAX_PLAINTEXT");
    let body = wire::open_sealed::<T>(env, purpose, CHALLENGE, &packet).ok()?;
    let again = frame::seal(env, purpose, CHALLENGE, &body).expect("an opened body seals");
    let other = [CHALLENGE[0] ^ 1; CHALLENGE_LEN];
    assert!(wire::open_sealed::<T>(env, purpose, other, &again).is_err());
    let back: T = wire::open_sealed(env, purpose, CHALLENGE, &again).expect("reopens");
    assert_eq!(wire::encode(&back).ok(), wire::encode(&body).ok());
    Some(body)
}
