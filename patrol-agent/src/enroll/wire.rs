//! The enrollment protocol's messages and proofs, as pure functions (the
//! control handshake's pattern, [`crate::control::handshake`]: ephemeral
//! X25519 keys, Ed25519 signatures over the transcript, an HKDF session
//! key sealing the rest with the envelope).
//!
//! ```text
//! server → hello    = "PTEN" version:u8 challenge[16] server_eph[32]      (53 bytes)
//! client → eph      = client_eph[32]
//! server → proof    = bincode { issuer cert, sig }                        (or DENY)
//!          sig      = Ed25519(issuer key, "patrol-enroll-v1 server\0" || hello || client_eph)
//! both:    session  = HKDF-SHA256(salt = SHA-256(hello || client_eph),
//!                                 ikm = X25519(eph_s, eph_c)), envelope cluster "patrol-enroll"
//! client → sealed { challenge, EnrollRequest { name, public_key, credential, possession } }
//!          possession = Ed25519(new key, "patrol-enroll-v1 possession\0" || hello || client_eph || name)
//!          Renew's sig = Ed25519(current key, "patrol-enroll-v1 renew\0" || hello || client_eph || name || public_key)
//! server → sealed { challenge, EnrollResponse::Issued { cert, chain } | Refused(reason) }
//! ```
//!
//! The client checks the issuer's certificate against the roots it pins
//! (its own bundle file, never the service's), so a service without an
//! issuer of that root is refused before the token leaves the client; the
//! token travels sealed under a key only the two ends hold. Each
//! signature covers the other side's fresh ephemeral key, so no proof and
//! no sealed request opens in another connection: a recorded enrollment
//! cannot be replayed.

use ed25519_dalek::{Signer, SigningKey};
use patrol_core::trust::{Certificate, Credentials, TrustBundle, Verified, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::EnrollError;
use crate::control::frame::{Challenge, CHALLENGE_LEN};
use crate::control::handshake::{self, Ephemeral, EPH_LEN};
use crate::envelope::Envelope;

/// The first bytes of an enrollment hello.
pub const ENROLL_MAGIC: &[u8; 4] = b"PTEN";
/// The enrollment protocol's version, byte 4 of the hello.
pub const ENROLL_VERSION: u8 = 1;
/// A hello: magic, version, challenge, the service's ephemeral key.
pub const HELLO_LEN: usize = ENROLL_MAGIC.len() + 1 + CHALLENGE_LEN + EPH_LEN;
/// Largest frame either side reads (a request or an answer carries a few
/// certificates of at most 4 KiB each).
pub const MAX_ENROLL_FRAME: usize = 64 * 1024;
/// The envelope's cluster label for enrollment sessions.
pub const SESSION_LABEL: &str = "patrol-enroll";
const SERVER_CONTEXT: &[u8] = b"patrol-enroll-v1 server\0";
const POSSESSION_CONTEXT: &[u8] = b"patrol-enroll-v1 possession\0";
const RENEW_CONTEXT: &[u8] = b"patrol-enroll-v1 renew\0";

/// The service's proof: its issuer certificate, signing this handshake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerProof {
    pub issuer: Certificate,
    pub signature: Vec<u8>,
}

/// How a client proves it may have a certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Credential {
    /// A bootstrap token (`patrol enroll token`).
    Token(String),
    /// Its current certificate, and a signature with its key.
    Renew {
        cert: Box<Certificate>,
        signature: Vec<u8>,
    },
}

/// What a client asks for: a certificate for `name` and `public_key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub name: String,
    pub public_key: [u8; 32],
    pub credential: Credential,
    /// The new key's signature: the client holds it.
    pub possession: Vec<u8>,
}

/// The service's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EnrollResponse {
    /// The certificate, and the issuers of the service's bundle (the
    /// client keeps those its pinned roots signed).
    Issued {
        cert: Box<Certificate>,
        chain: Vec<Certificate>,
    },
    Refused(String),
}

pub fn encode_hello(challenge: &Challenge, eph: &[u8; EPH_LEN]) -> Vec<u8> {
    let mut hello = Vec::with_capacity(HELLO_LEN);
    hello.extend_from_slice(ENROLL_MAGIC);
    hello.push(ENROLL_VERSION);
    hello.extend_from_slice(challenge);
    hello.extend_from_slice(eph);
    hello
}

/// The challenge and the service's ephemeral key of a hello.
pub fn decode_hello(hello: &[u8]) -> Result<(Challenge, [u8; EPH_LEN]), EnrollError> {
    if hello.len() != HELLO_LEN || &hello[..ENROLL_MAGIC.len()] != ENROLL_MAGIC {
        return Err(EnrollError::Protocol(
            "not an enrollment service (no PTEN hello)".into(),
        ));
    }
    if hello[ENROLL_MAGIC.len()] != ENROLL_VERSION {
        return Err(EnrollError::Protocol(format!(
            "enrollment protocol version {} (this build speaks {ENROLL_VERSION})",
            hello[ENROLL_MAGIC.len()]
        )));
    }
    let at = ENROLL_MAGIC.len() + 1;
    let mut challenge = [0u8; CHALLENGE_LEN];
    challenge.copy_from_slice(&hello[at..at + CHALLENGE_LEN]);
    let mut eph = [0u8; EPH_LEN];
    eph.copy_from_slice(&hello[at + CHALLENGE_LEN..]);
    Ok((challenge, eph))
}

/// Bytes `hello || client_eph`: what every proof and the session bind.
pub fn transcript(hello: &[u8], client_eph: &[u8; EPH_LEN]) -> Vec<u8> {
    let mut t = hello.to_vec();
    t.extend_from_slice(client_eph);
    t
}

fn with_context(context: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = context.to_vec();
    for p in parts {
        m.extend_from_slice(p);
    }
    m
}

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, EnrollError> {
    bincode::serde::encode_to_vec(v, bincode::config::standard())
        .map_err(|e| EnrollError::Protocol(format!("cannot encode: {e}")))
}

/// Decode under [`MAX_ENROLL_FRAME`], refusing trailing bytes.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, EnrollError> {
    let cfg = bincode::config::standard().with_limit::<MAX_ENROLL_FRAME>();
    match bincode::serde::decode_from_slice(bytes, cfg) {
        Ok((v, used)) if used == bytes.len() => Ok(v),
        Ok(_) => Err(EnrollError::Protocol("trailing bytes in a frame".into())),
        Err(e) => Err(EnrollError::Protocol(format!("undecodable frame: {e}"))),
    }
}

/// Open a sealed frame of this session (sealed by
/// [`crate::control::frame::seal`]: the challenge, then the body),
/// decoding under [`MAX_ENROLL_FRAME`] so that a client of any session
/// cannot make the service allocate more than that with a forged length.
pub fn open_sealed<T: serde::de::DeserializeOwned>(
    envelope: &Envelope,
    purpose: crate::envelope::Purpose,
    challenge: Challenge,
    frame: &[u8],
) -> Result<T, EnrollError> {
    let plain = envelope
        .open(purpose, frame)
        .map_err(|e| EnrollError::Protocol(format!("the frame does not open: {e}")))?;
    let (theirs, body): (Challenge, T) = decode(&plain)?;
    if theirs != challenge {
        return Err(EnrollError::Refused("a frame of another session".into()));
    }
    Ok(body)
}

/// Service side: the proof frame for this transcript.
pub fn server_proof(issuer: &Credentials, transcript: &[u8]) -> Result<Vec<u8>, EnrollError> {
    let signature = issuer
        .key
        .sign(&with_context(SERVER_CONTEXT, &[transcript]))
        .to_bytes()
        .to_vec();
    encode(&ServerProof {
        issuer: issuer.cert.clone(),
        signature,
    })
}

/// Client side: the service's issuer, checked against the pinned `roots`
/// and against this transcript.
pub fn check_server(
    roots: &TrustBundle,
    transcript: &[u8],
    proof: &[u8],
    now_s: u64,
) -> Result<Verified, EnrollError> {
    let proof: ServerProof = decode(proof)?;
    let issuer = roots.verify(&proof.issuer, "issuer", now_s).map_err(|e| {
        EnrollError::Refused(format!(
            "the enrollment service is not an issuer of this node's CA: {e}"
        ))
    })?;
    let message = with_context(SERVER_CONTEXT, &[transcript]);
    if !handshake::verify_sig(&issuer, &message, &proof.signature) {
        return Err(EnrollError::Refused(format!(
            "the enrollment service did not prove it holds issuer `{}`'s key",
            issuer.name()
        )));
    }
    Ok(issuer)
}

/// The session envelope both ends derive (the control handshake's
/// derivation, over this protocol's transcript).
pub fn session(
    mine: &Ephemeral,
    theirs: &[u8; EPH_LEN],
    transcript: &[u8],
) -> Result<Envelope, EnrollError> {
    handshake::session(mine, theirs, transcript, &[], SESSION_LABEL)
        .map_err(|e| EnrollError::Protocol(e.to_string()))
}

fn sign_possession(key: &SigningKey, transcript: &[u8], name: &str) -> Vec<u8> {
    key.sign(&with_context(
        POSSESSION_CONTEXT,
        &[transcript, name.as_bytes()],
    ))
    .to_bytes()
    .to_vec()
}

fn renew_message(transcript: &[u8], name: &str, public_key: &[u8; 32]) -> Vec<u8> {
    with_context(RENEW_CONTEXT, &[transcript, name.as_bytes(), public_key])
}

/// Client side: a request with a token.
pub fn token_request(
    key: &SigningKey,
    transcript: &[u8],
    name: &str,
    token: &str,
) -> EnrollRequest {
    EnrollRequest {
        name: name.to_string(),
        public_key: key.verifying_key().to_bytes(),
        credential: Credential::Token(token.to_string()),
        possession: sign_possession(key, transcript, name),
    }
}

/// Client side: a renewal by `current` for `key` (the same key or a new
/// one).
pub fn renew_request(current: &Credentials, key: &SigningKey, transcript: &[u8]) -> EnrollRequest {
    let name = current.name();
    let public_key = key.verifying_key().to_bytes();
    let signature = current
        .key
        .sign(&renew_message(transcript, name, &public_key))
        .to_bytes()
        .to_vec();
    EnrollRequest {
        name: name.to_string(),
        public_key,
        credential: Credential::Renew {
            cert: Box::new(current.cert.clone()),
            signature,
        },
        possession: sign_possession(key, transcript, name),
    }
}

/// Service side: the request's key, if its possession proof holds.
pub fn check_possession(req: &EnrollRequest, transcript: &[u8]) -> Result<VerifyingKey, String> {
    let key = VerifyingKey::from_bytes(&req.public_key)
        .map_err(|_| "the public key is not a valid Ed25519 point".to_string())?;
    let message = with_context(POSSESSION_CONTEXT, &[transcript, req.name.as_bytes()]);
    if !signature_holds(&key, &message, &req.possession) {
        return Err("no proof of possession of the new key".into());
    }
    Ok(key)
}

/// Service side: whether the renewal signature of `current` (already
/// verified by the bundle) covers this request.
pub fn renewal_signed(
    current: &Verified,
    req: &EnrollRequest,
    transcript: &[u8],
    signature: &[u8],
) -> bool {
    let message = renew_message(transcript, &req.name, &req.public_key);
    signature_holds(&current.key, &message, signature)
}

fn signature_holds(key: &VerifyingKey, message: &[u8], sig: &[u8]) -> bool {
    let Ok(sig) = <[u8; 64]>::try_from(sig) else {
        return false;
    };
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use patrol_core::trust::testing::{bundle, ca, creds, issued};
    use patrol_core::trust::{NamePatterns, Role};

    use super::*;
    use crate::envelope::Purpose;

    fn issuer(root: &Credentials) -> Credentials {
        let key = SigningKey::from_bytes(&[30; 32]);
        issued(
            root,
            key,
            Role::Issuer(NamePatterns::any()),
            "enroll-1",
            300,
            0..u64::MAX,
        )
    }

    #[test]
    fn both_ends_agree_on_a_session_and_the_client_knows_the_issuer() {
        let root = ca(1);
        let iss = issuer(&root);
        let server_eph = Ephemeral::new();
        let hello = encode_hello(&[7; CHALLENGE_LEN], &server_eph.public);
        let (_, eph_s) = decode_hello(&hello).unwrap();
        let client_eph = Ephemeral::new();
        let t = transcript(&hello, &client_eph.public);
        let proof = server_proof(&iss, &t).unwrap();
        let who = check_server(&bundle(&[&root]), &t, &proof, 100).unwrap();
        assert_eq!(who.name(), "enroll-1");
        let client = session(&client_eph, &eph_s, &t).unwrap();
        let server = session(&server_eph, &client_eph.public, &t).unwrap();
        let sealed = client
            .seal_to_vec(Purpose::ControlRequest, b"token")
            .unwrap();
        assert_eq!(
            server.open(Purpose::ControlRequest, &sealed).unwrap(),
            b"token"
        );
    }

    #[test]
    fn a_proof_for_another_transcript_or_another_root_is_refused() {
        let root = ca(1);
        let iss = issuer(&root);
        let hello = encode_hello(&[7; CHALLENGE_LEN], &[9; EPH_LEN]);
        let t = transcript(&hello, &[1; EPH_LEN]);
        let proof = server_proof(&iss, &t).unwrap();
        let other = transcript(&hello, &[2; EPH_LEN]);
        assert!(check_server(&bundle(&[&root]), &other, &proof, 100).is_err());
        let e = check_server(&bundle(&[&ca(2)]), &t, &proof, 100).unwrap_err();
        assert!(
            e.to_string().contains("not an issuer of this node's CA"),
            "{e}"
        );
        // A root CA or a node is not an issuer.
        let node = creds(&root, Role::Node, "n", 4);
        let proof = server_proof(&node, &t).unwrap();
        assert!(check_server(&bundle(&[&root]), &t, &proof, 100).is_err());
    }

    #[test]
    fn possession_and_renewal_signatures_bind_the_transcript() {
        let root = ca(1);
        let node = creds(&root, Role::Node, "n", 4);
        let t = transcript(
            &encode_hello(&[7; CHALLENGE_LEN], &[9; EPH_LEN]),
            &[1; EPH_LEN],
        );
        let fresh = SigningKey::from_bytes(&[5; 32]);
        let req = renew_request(&node, &fresh, &t);
        assert!(check_possession(&req, &t).is_ok());
        let other = transcript(
            &encode_hello(&[8; CHALLENGE_LEN], &[9; EPH_LEN]),
            &[1; EPH_LEN],
        );
        assert!(check_possession(&req, &other).is_err());
        let Credential::Renew { signature, .. } = &req.credential else {
            panic!()
        };
        let current = bundle(&[&root]).verify(&node.cert, "node", 100).unwrap();
        assert!(renewal_signed(&current, &req, &t, signature));
        assert!(!renewal_signed(&current, &req, &other, signature));
    }

    #[test]
    fn a_sealed_frame_opens_in_its_session_only_and_a_forged_length_allocates_nothing_big() {
        let env = Envelope::new(
            crate::keyring::Keyring::from_secret(2, [5; 32]),
            SESSION_LABEL,
        );
        let req = token_request(&SigningKey::from_bytes(&[5; 32]), b"t", "n", "tok");
        let sealed =
            crate::control::frame::seal(&env, Purpose::ControlRequest, [1; CHALLENGE_LEN], &req)
                .unwrap();
        let back: EnrollRequest =
            open_sealed(&env, Purpose::ControlRequest, [1; CHALLENGE_LEN], &sealed).unwrap();
        assert_eq!(back.name, "n");
        assert!(open_sealed::<EnrollRequest>(
            &env,
            Purpose::ControlRequest,
            [2; CHALLENGE_LEN],
            &sealed
        )
        .is_err());
        assert!(open_sealed::<EnrollRequest>(
            &env,
            Purpose::ControlReply,
            [1; CHALLENGE_LEN],
            &sealed
        )
        .is_err());
        // A name claiming 8 MiB in a frame of a few bytes: refused by the
        // limit before any allocation of that size.
        let mut forged = vec![1u8; CHALLENGE_LEN];
        forged.extend([253, 0, 0, 128, 0, 0, 0, 0, 0]);
        let sealed = env.seal_to_vec(Purpose::ControlRequest, &forged).unwrap();
        let e = open_sealed::<EnrollRequest>(
            &env,
            Purpose::ControlRequest,
            [1; CHALLENGE_LEN],
            &sealed,
        )
        .unwrap_err();
        assert!(e.to_string().contains("undecodable"), "{e}");
    }

    #[test]
    fn a_truncated_or_padded_frame_does_not_decode() {
        let req = token_request(&SigningKey::from_bytes(&[5; 32]), b"t", "n", "tok");
        let bytes = encode(&req).unwrap();
        assert!(decode::<EnrollRequest>(&bytes).is_ok());
        assert!(decode::<EnrollRequest>(&bytes[..bytes.len() - 1]).is_err());
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(decode::<EnrollRequest>(&padded).is_err());
        assert!(decode_hello(b"PTRL").is_err());
    }
}
