//! The certificate handshake of the control channel (agents with
//! `[trust]`), as pure
//! functions: the operator proves who it is with its certificate, the
//! agent proves it is a node of the same CA, and both derive a session
//! key from ephemeral X25519 keys. No cluster key is involved, so an
//! operator's laptop or a cron job never holds one.
//!
//! ```text
//! server → hello3  = "PTRL" CONTROL_VERSION challenge[16] server_eph[32]
//! client → auth    = bincode { eph[32], operator cert, sig }
//!          sig     = Ed25519(operator key, "patrol-control-v2 client\0" || hello3 || eph || cert)
//! server → proof   = bincode { node cert, sig }        (or a DENY frame)
//!          sig     = Ed25519(node key, "patrol-control-v2 server\0" || hello3 || auth)
//! both:    session = HKDF-SHA256(salt = SHA-256(hello3 || auth),
//!                                ikm = X25519(eph_s, eph_c), info = "patrol-control-v2")
//! ```
//!
//! After the proof every frame is sealed exactly as with the cluster key (the
//! envelope, bound to the connection's challenge), with the session key
//! in place of the cluster key. Each signature covers the other side's
//! fresh ephemeral key, so neither proof can be replayed into another
//! connection, and only the two ends can compute the session key.

use ed25519_dalek::{Signature, Signer};
use patrol_core::trust::{Certificate, Credentials, TrustBundle, Verified};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::frame::{Challenge, CHALLENGE_LEN, CONTROL_VERSION, HELLO_MAGIC};
use super::ControlError;
use crate::envelope::Envelope;
use crate::keyring::Keyring;

/// Bytes of an X25519 public key.
pub const EPH_LEN: usize = 32;
/// The certificate handshake's hello: magic, version, challenge, the
/// agent's ephemeral key.
pub const HELLO3_LEN: usize = HELLO_MAGIC.len() + 1 + CHALLENGE_LEN + EPH_LEN;
const CLIENT_CONTEXT: &[u8] = b"patrol-control-v2 client\0";
const SERVER_CONTEXT: &[u8] = b"patrol-control-v2 server\0";
const SESSION_INFO: &[u8] = b"patrol-control-v2";
/// The key id the session envelope uses (one key, never on the wire as a
/// choice: both ends hold only it).
const SESSION_KEY_ID: u32 = 2;

/// One side's ephemeral X25519 key pair, used for one connection.
pub struct Ephemeral {
    secret: x25519_dalek::StaticSecret,
    pub public: [u8; EPH_LEN],
}

impl Ephemeral {
    pub fn new() -> Ephemeral {
        let secret = x25519_dalek::StaticSecret::from(rand::random::<[u8; 32]>());
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        Ephemeral { secret, public }
    }
}

impl Default for Ephemeral {
    fn default() -> Self {
        Ephemeral::new()
    }
}

pub fn encode_hello3(challenge: &Challenge, eph: &[u8; EPH_LEN]) -> Vec<u8> {
    let mut hello = Vec::with_capacity(HELLO3_LEN);
    hello.extend_from_slice(HELLO_MAGIC);
    hello.push(CONTROL_VERSION);
    hello.extend_from_slice(challenge);
    hello.extend_from_slice(eph);
    hello
}

/// The challenge and the agent's ephemeral key of a certificate hello.
pub fn decode_hello3(hello: &[u8]) -> Option<(Challenge, [u8; EPH_LEN])> {
    if hello.len() != HELLO3_LEN
        || &hello[..HELLO_MAGIC.len()] != HELLO_MAGIC
        || hello[HELLO_MAGIC.len()] != CONTROL_VERSION
    {
        return None;
    }
    let mut challenge = [0u8; CHALLENGE_LEN];
    let at = HELLO_MAGIC.len() + 1;
    challenge.copy_from_slice(&hello[at..at + CHALLENGE_LEN]);
    let mut eph = [0u8; EPH_LEN];
    eph.copy_from_slice(&hello[at + CHALLENGE_LEN..]);
    Some((challenge, eph))
}

/// The client's proof: its ephemeral key and certificate, signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientAuth {
    pub eph: [u8; EPH_LEN],
    pub cert: Certificate,
    pub signature: Vec<u8>,
}

/// The agent's proof: its node certificate, signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerAuth {
    pub cert: Certificate,
    pub signature: Vec<u8>,
}

fn client_signed(hello: &[u8], eph: &[u8; EPH_LEN], cert: &Certificate) -> Vec<u8> {
    let mut m = CLIENT_CONTEXT.to_vec();
    m.extend_from_slice(hello);
    m.extend_from_slice(eph);
    m.extend(cert.encode());
    m
}

fn server_signed(hello: &[u8], auth: &[u8]) -> Vec<u8> {
    let mut m = SERVER_CONTEXT.to_vec();
    m.extend_from_slice(hello);
    m.extend_from_slice(auth);
    m
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, ControlError> {
    bincode::serde::encode_to_vec(v, bincode::config::standard())
        .map_err(|e| ControlError::Protocol(format!("cannot encode the handshake: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ControlError> {
    let cfg = bincode::config::standard().with_limit::<{ 16 * 1024 }>();
    bincode::serde::decode_from_slice(bytes, cfg)
        .map(|(v, _)| v)
        .map_err(|e| ControlError::Protocol(format!("undecodable handshake: {e}")))
}

pub(crate) fn verify_sig(v: &Verified, message: &[u8], sig: &[u8]) -> bool {
    let Ok(sig) = <[u8; 64]>::try_from(sig) else {
        return false;
    };
    v.key
        .verify_strict(message, &Signature::from_bytes(&sig))
        .is_ok()
}

/// The session envelope both ends derive.
pub(crate) fn session(
    mine: &Ephemeral,
    theirs: &[u8; EPH_LEN],
    hello: &[u8],
    auth: &[u8],
    cluster: &str,
) -> Result<Envelope, ControlError> {
    let shared = mine
        .secret
        .diffie_hellman(&x25519_dalek::PublicKey::from(*theirs));
    if !shared.was_contributory() {
        return Err(ControlError::Refused(
            "the peer's ephemeral key is of small order".into(),
        ));
    }
    let mut transcript = Sha256::new();
    transcript.update(hello);
    transcript.update(auth);
    let salt = transcript.finalize();
    let hk = hkdf::Hkdf::<Sha256>::new(Some(&salt), shared.as_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    let _ = hk.expand(SESSION_INFO, key.as_mut_slice());
    Ok(Envelope::new(
        Keyring::from_secret(SESSION_KEY_ID, *key),
        cluster,
    ))
}

/// Client side: the auth frame for `hello`, and the session envelope to
/// use once the agent's proof checks out.
pub fn client_auth(
    operator: &Credentials,
    hello: &[u8],
    server_eph: &[u8; EPH_LEN],
    cluster: &str,
) -> Result<(Vec<u8>, Envelope), ControlError> {
    let mine = Ephemeral::new();
    let signature = operator
        .key
        .sign(&client_signed(hello, &mine.public, &operator.cert))
        .to_bytes()
        .to_vec();
    let auth = encode(&ClientAuth {
        eph: mine.public,
        cert: operator.cert.clone(),
        signature,
    })?;
    let envelope = session(&mine, server_eph, hello, &auth, cluster)?;
    Ok((auth, envelope))
}

/// Client side: check the agent's proof (a node certificate of a CA in
/// `bundle`, signing this handshake). Returns the agent's certificate.
pub fn check_server(
    bundle: &TrustBundle,
    hello: &[u8],
    auth: &[u8],
    proof: &[u8],
    now_s: u64,
) -> Result<Verified, ControlError> {
    let proof: ServerAuth = decode(proof)?;
    let node = bundle
        .verify(&proof.cert, "node", now_s)
        .map_err(|e| ControlError::Refused(format!("the agent's certificate: {e}")))?;
    if !verify_sig(&node, &server_signed(hello, auth), &proof.signature) {
        return Err(ControlError::Refused(format!(
            "the agent `{}` did not prove it holds its certificate's key",
            node.name()
        )));
    }
    Ok(node)
}

/// Server side: check the client's auth frame; on success the operator's
/// certificate, this agent's proof frame and the session envelope.
pub fn server_accept(
    node: &Credentials,
    bundle: &TrustBundle,
    mine: &Ephemeral,
    hello: &[u8],
    auth: &[u8],
    cluster: &str,
    now_s: u64,
) -> Result<(Verified, Vec<u8>, Envelope), String> {
    let parsed: ClientAuth = decode(auth).map_err(|e| e.to_string())?;
    let operator = bundle
        .verify(&parsed.cert, "operator", now_s)
        .map_err(|e| format!("operator certificate refused: {e}"))?;
    if !verify_sig(
        &operator,
        &client_signed(hello, &parsed.eph, &parsed.cert),
        &parsed.signature,
    ) {
        return Err(format!(
            "operator `{}` did not prove it holds its certificate's key",
            operator.name()
        ));
    }
    let signature = node
        .key
        .sign(&server_signed(hello, auth))
        .to_bytes()
        .to_vec();
    let proof = encode(&ServerAuth {
        cert: node.cert.clone(),
        signature,
    })
    .map_err(|e| e.to_string())?;
    let envelope = session(mine, &parsed.eph, hello, auth, cluster).map_err(|e| e.to_string())?;
    Ok((operator, proof, envelope))
}

#[cfg(test)]
mod tests {
    use patrol_core::trust::testing::{bundle, ca, creds};
    use patrol_core::trust::{Role, Scope};

    use super::*;
    use crate::envelope::Purpose;

    fn setup() -> (Credentials, Credentials, Credentials, TrustBundle) {
        let ca = ca(1);
        let node = creds(&ca, Role::Node, "host-1", 2);
        let op = creds(&ca, Role::Operator(Scope::full(60_000)), "alice", 3);
        let bundle = bundle(&[&ca]);
        (ca, node, op, bundle)
    }

    #[test]
    fn both_ends_agree_on_a_session_and_know_who_the_other_is() {
        let (_, node, op, bundle) = setup();
        let server_eph = Ephemeral::new();
        let hello = encode_hello3(&[5; CHALLENGE_LEN], &server_eph.public);
        let (challenge, eph) = decode_hello3(&hello).unwrap();
        assert_eq!(challenge, [5; CHALLENGE_LEN]);
        let (auth, client_env) = client_auth(&op, &hello, &eph, "c").unwrap();
        let (operator, proof, server_env) =
            server_accept(&node, &bundle, &server_eph, &hello, &auth, "c", 100).unwrap();
        assert_eq!(operator.name(), "alice");
        let agent = check_server(&bundle, &hello, &auth, &proof, 100).unwrap();
        assert_eq!(agent.name(), "host-1");
        let sealed = client_env
            .seal_to_vec(Purpose::ControlRequest, b"hi")
            .unwrap();
        assert_eq!(
            server_env.open(Purpose::ControlRequest, &sealed).unwrap(),
            b"hi"
        );
    }

    #[test]
    fn a_node_certificate_cannot_act_as_an_operator_and_an_auth_cannot_be_replayed() {
        let (_, node, op, bundle) = setup();
        let server_eph = Ephemeral::new();
        let hello = encode_hello3(&[5; CHALLENGE_LEN], &server_eph.public);
        let (auth, _) = client_auth(&node, &hello, &server_eph.public, "c").unwrap();
        let e = server_accept(&node, &bundle, &server_eph, &hello, &auth, "c", 100).unwrap_err();
        assert!(e.contains("operator"), "{e}");
        // A recorded auth for one hello does not open another connection.
        let (auth, _) = client_auth(&op, &hello, &server_eph.public, "c").unwrap();
        let other_eph = Ephemeral::new();
        let other = encode_hello3(&[6; CHALLENGE_LEN], &other_eph.public);
        let e = server_accept(&node, &bundle, &other_eph, &other, &auth, "c", 100).unwrap_err();
        assert!(e.contains("did not prove"), "{e}");
    }

    #[test]
    fn a_client_refuses_an_agent_proof_made_for_another_handshake() {
        let (_, node, op, bundle) = setup();
        let server_eph = Ephemeral::new();
        let hello = encode_hello3(&[5; CHALLENGE_LEN], &server_eph.public);
        let (auth, _) = client_auth(&op, &hello, &server_eph.public, "c").unwrap();
        let (_, proof, _) =
            server_accept(&node, &bundle, &server_eph, &hello, &auth, "c", 100).unwrap();
        let (auth2, _) = client_auth(&op, &hello, &server_eph.public, "c").unwrap();
        assert!(check_server(&bundle, &hello, &auth2, &proof, 100).is_err());
    }
}
