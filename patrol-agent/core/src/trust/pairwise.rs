//! Keys two certified nodes share without ever sending one: X25519 of one
//! node's Ed25519 secret (as a Montgomery scalar) and the other's Ed25519
//! public key (as a Montgomery point), through HKDF-SHA256. Both ends
//! compute the same key; nobody else can, the cluster key holders
//! included.
//!
//! A participant proves its answer with `HMAC-SHA256(pair key, sweep id,
//! node name, nonce, body)`; the coordinator checks it with one HMAC once
//! it knows the pair key. Deriving that key costs a certificate signature
//! check (about 50 µs) and one X25519 (about 40 µs), so [`PeerKeys`]
//! caches it by certificate, bounded, and the cost is paid once per peer,
//! not once per answer.

use std::collections::{HashMap, VecDeque};

use ed25519_dalek::{SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::bundle::{TrustBundle, Verified};
use super::cert::Certificate;
use super::compact::CompactCert;
use super::TrustError;

const PAIR_SALT: &[u8] = b"patrol-pair-v1";
const ANSWER_CONTEXT: &[u8] = b"patrol-answer-v1\0";
const PACKET_CONTEXT: &[u8] = b"patrol-foca-v1\0";
const SENT_CONTEXT: &[u8] = b"patrol-answer-sent-v1\0";
/// Bytes of the tag over an answer piece's send time.
pub const SENT_TAG_LEN: usize = 16;
/// Bytes of a foca packet's tag (with `[trust]`).
pub const PACKET_TAG_LEN: usize = 16;
/// Bytes of an answer proof.
pub const PROOF_LEN: usize = 32;

/// A key shared by two nodes. Wiped on drop; `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct PairKey([u8; 32]);

impl std::fmt::Debug for PairKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairKey(..)")
    }
}

impl PairKey {
    /// The key `mine` shares with the holder of `theirs`, or an error when
    /// `theirs` is a small-order point (the result would be predictable).
    pub fn derive(mine: &SigningKey, theirs: &VerifyingKey) -> Result<PairKey, TrustError> {
        let secret = x25519_dalek::StaticSecret::from(mine.to_scalar_bytes());
        let public = x25519_dalek::PublicKey::from(theirs.to_montgomery().to_bytes());
        let shared = secret.diffie_hellman(&public);
        if !shared.was_contributory() {
            return Err(TrustError::Malformed(
                "the peer's public key is of small order".into(),
            ));
        }
        // Both ends feed the two public keys in the same (sorted) order.
        let a = mine.verifying_key().to_bytes();
        let b = theirs.to_bytes();
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut info = Vec::with_capacity(64);
        info.extend_from_slice(&lo);
        info.extend_from_slice(&hi);
        let hk = hkdf::Hkdf::<Sha256>::new(Some(PAIR_SALT), shared.as_bytes());
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's output limit.
        let _ = hk.expand(&info, &mut key);
        Ok(PairKey(key))
    }

    /// The proof that `node` sent `body` as its answer `nonce` to `sweep_id`.
    pub fn answer_proof(
        &self,
        sweep_id: u64,
        node: &str,
        nonce: u64,
        body: &[u8],
    ) -> [u8; PROOF_LEN] {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("hmac takes any key");
        mac.update(ANSWER_CONTEXT);
        mac.update(&sweep_id.to_le_bytes());
        mac.update(&(node.len() as u64).to_le_bytes());
        mac.update(node.as_bytes());
        mac.update(&nonce.to_le_bytes());
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// The tag over the send time of one copy of an answer's piece:
    /// HMAC-SHA256 over sweep id, node, nonce and `sent_unix_ms`, first 16
    /// bytes. A relay or anyone on the path who changes the time (to make
    /// the node's clock look off) breaks it.
    pub fn sent_tag(
        &self,
        sweep_id: u64,
        node: &str,
        nonce: u64,
        sent_unix_ms: u64,
    ) -> [u8; SENT_TAG_LEN] {
        let full: [u8; 32] = self
            .sent_mac(sweep_id, node, nonce, sent_unix_ms)
            .finalize()
            .into_bytes()
            .into();
        let mut tag = [0u8; SENT_TAG_LEN];
        tag.copy_from_slice(&full[..SENT_TAG_LEN]);
        tag
    }

    /// Whether `tag` is this key's [`PairKey::sent_tag`] (constant time).
    pub fn check_sent_tag(
        &self,
        sweep_id: u64,
        node: &str,
        nonce: u64,
        sent_unix_ms: u64,
        tag: &[u8; SENT_TAG_LEN],
    ) -> bool {
        self.sent_mac(sweep_id, node, nonce, sent_unix_ms)
            .verify_truncated_left(tag)
            .is_ok()
    }

    fn sent_mac(&self, sweep_id: u64, node: &str, nonce: u64, sent_unix_ms: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("hmac takes any key");
        mac.update(SENT_CONTEXT);
        mac.update(&sweep_id.to_le_bytes());
        mac.update(&(node.len() as u64).to_le_bytes());
        mac.update(node.as_bytes());
        mac.update(&nonce.to_le_bytes());
        mac.update(&sent_unix_ms.to_le_bytes());
        mac
    }

    /// Whether `proof` is this key's proof for the answer (constant time).
    /// The tag that proves a foca packet came from the other holder of
    /// this key: HMAC-SHA256 over the packet, first 16 bytes.
    pub fn packet_tag(&self, packet: &[u8]) -> [u8; PACKET_TAG_LEN] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("hmac takes any key");
        mac.update(PACKET_CONTEXT);
        mac.update(packet);
        let full: [u8; 32] = mac.finalize().into_bytes().into();
        let mut tag = [0u8; PACKET_TAG_LEN];
        tag.copy_from_slice(&full[..PACKET_TAG_LEN]);
        tag
    }

    /// Whether `tag` is this key's tag of `packet` (in constant time).
    pub fn check_packet_tag(&self, packet: &[u8], tag: &[u8]) -> bool {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("hmac takes any key");
        mac.update(PACKET_CONTEXT);
        mac.update(packet);
        mac.verify_truncated_left(tag).is_ok() && tag.len() == PACKET_TAG_LEN
    }

    pub fn check_answer(
        &self,
        sweep_id: u64,
        node: &str,
        nonce: u64,
        body: &[u8],
        proof: &[u8],
    ) -> bool {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("hmac takes any key");
        mac.update(ANSWER_CONTEXT);
        mac.update(&sweep_id.to_le_bytes());
        mac.update(&(node.len() as u64).to_le_bytes());
        mac.update(node.as_bytes());
        mac.update(&nonce.to_le_bytes());
        mac.update(body);
        mac.verify_slice(proof).is_ok()
    }
}

/// What the cache holds per peer certificate. The certificate is shared
/// with the member book that checked it (see [`PeerKeys::adopt`]), and
/// kept compactly: its name and expiry are read per answer, the whole
/// certificate only for an answer under an expired one.
#[derive(Debug, Clone)]
pub struct Peer {
    pub cert: CompactCert,
    pub key: PairKey,
    /// An answer proven with this certificate was taken: its node names
    /// the certificate by digest from then on, rather than sending it
    /// whole.
    pub answered: bool,
}

/// A certificate's digest: the first 16 bytes of the SHA-256 of its
/// encoding. What an answer names its node's certificate by once the
/// coordinator has it.
pub type CertDigest = [u8; 16];

/// The digest of `cert`.
pub fn cert_digest(cert: &Certificate) -> CertDigest {
    let full: [u8; 32] = Sha256::digest(cert.encode()).into();
    let mut digest = [0u8; 16];
    digest.copy_from_slice(&full[..16]);
    digest
}

/// Verified peer certificates and their pair keys, by certificate digest,
/// bounded: the oldest entry goes first when full. Clear it when the
/// bundle or deny list changes.
#[derive(Debug)]
pub struct PeerKeys {
    mine: SigningKey,
    capacity: usize,
    peers: HashMap<CertDigest, Peer>,
    order: VecDeque<CertDigest>,
    /// Derivations done (each an X25519, after a certificate check).
    pub derived: u64,
    /// Entries whose `answered` is set.
    answered: usize,
}

impl PeerKeys {
    pub fn new(mine: SigningKey, capacity: usize) -> PeerKeys {
        PeerKeys {
            mine,
            capacity: capacity.max(1),
            peers: HashMap::new(),
            order: VecDeque::new(),
            derived: 0,
            answered: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub fn clear(&mut self) {
        self.peers.clear();
        self.order.clear();
        self.answered = 0;
    }

    /// No peer counts as having answered (a new peer epoch: every node
    /// sends its whole certificate again); keys are kept.
    pub fn forget_answers(&mut self) {
        for p in self.peers.values_mut() {
            p.answered = false;
        }
        self.answered = 0;
    }

    /// An answer proven with certificate `digest` was taken.
    pub fn mark_answered(&mut self, digest: &CertDigest) {
        if let Some(p) = self.peers.get_mut(digest) {
            if !p.answered {
                p.answered = true;
                self.answered += 1;
            }
        }
    }

    /// Cached peers whose answer was taken: those that name their
    /// certificate by digest (a coordinator's estimate of how many answers
    /// come without their whole certificate).
    pub fn answered(&self) -> usize {
        self.answered
    }

    /// The verified node certificate `cert` and the key this node shares
    /// with it, from the cache or verified against `bundle` at `now_s`.
    /// A cached entry past its certificate's expiry is verified again
    /// (and so refused).
    pub fn peer(
        &mut self,
        bundle: &TrustBundle,
        cert: &Certificate,
        now_s: u64,
    ) -> Result<(CertDigest, &Peer), TrustError> {
        let digest = cert_digest(cert);
        let fresh = self
            .peers
            .get(&digest)
            .is_some_and(|p| now_s <= p.cert.not_after());
        if !fresh {
            let verified = bundle.verify(cert, "node", now_s)?;
            let key = PairKey::derive(&self.mine, &verified.key)?;
            self.insert(digest, CompactCert::new(cert)?, key);
        }
        self.peers
            .get(&digest)
            .map(|p| (digest, p))
            .ok_or_else(|| TrustError::Malformed("peer cache lost an entry".into()))
    }

    /// Take a node certificate the member book checked (against the same
    /// bundle) when it learned the member, and derive the pair key with
    /// it now: a member's key is ready before its first answer, so a
    /// coordinator's first sweep after it learned the mesh costs an HMAC
    /// per answer, not a certificate check and an X25519. Returns the key
    /// (the gate tags membership packets with the same one). A
    /// certificate already cached is not derived again.
    pub fn adopt(&mut self, digest: CertDigest, cert: CompactCert) -> Result<PairKey, TrustError> {
        if let Some(p) = self.peers.get(&digest) {
            return Ok(p.key.clone());
        }
        let key = PairKey::derive(&self.mine, &cert.verifying_key()?)?;
        self.insert(digest, cert, key.clone());
        Ok(key)
    }

    /// Cache `cert` and the key derived with it.
    fn insert(&mut self, digest: CertDigest, cert: CompactCert, key: PairKey) {
        self.derived += 1;
        if self.peers.len() >= self.capacity && !self.peers.contains_key(&digest) {
            if let Some(old) = self.order.pop_front() {
                if self.peers.remove(&old).is_some_and(|p| p.answered) {
                    self.answered -= 1;
                }
            }
        }
        let peer = Peer {
            cert,
            key,
            answered: false,
        };
        match self.peers.insert(digest, peer) {
            None => self.order.push_back(digest),
            Some(old) if old.answered => self.answered -= 1,
            Some(_) => {}
        }
    }

    /// The cached peer whose certificate has digest `digest`, unless its
    /// certificate expired by `now_s`; None when not cached.
    pub fn known(&self, digest: &CertDigest, now_s: u64) -> Option<&Peer> {
        self.peers
            .get(digest)
            .filter(|p| now_s <= p.cert.not_after())
    }

    /// The cached peer whose certificate has digest `digest` and expired
    /// by `now_s` (what [`PeerKeys::known`] no longer gives).
    pub fn lapsed(&self, digest: &CertDigest, now_s: u64) -> Option<&Peer> {
        self.peers
            .get(digest)
            .filter(|p| now_s > p.cert.not_after())
    }

    /// The key this node shares with `peer`, derived now and not cached
    /// (for a certificate the cache does not take: an expired one).
    pub fn derive(&self, peer: &Verified) -> Result<PairKey, TrustError> {
        PairKey::derive(&self.mine, &peer.key)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::Role;
    use super::*;

    #[test]
    fn both_ends_derive_the_same_key_and_a_third_node_does_not() {
        let ca = ca(1);
        let a = creds(&ca, Role::Node, "a", 2);
        let b = creds(&ca, Role::Node, "b", 3);
        let c = creds(&ca, Role::Node, "c", 4);
        let ab = PairKey::derive(&a.key, &b.key.verifying_key()).unwrap();
        let ba = PairKey::derive(&b.key, &a.key.verifying_key()).unwrap();
        let cb = PairKey::derive(&c.key, &b.key.verifying_key()).unwrap();
        assert_eq!(ab, ba);
        assert_ne!(ab, cb);
        let proof = ab.answer_proof(7, "a", 9, b"body");
        assert!(ba.check_answer(7, "a", 9, b"body", &proof));
        assert!(!ba.check_answer(7, "b", 9, b"body", &proof));
        assert!(!ba.check_answer(7, "a", 9, b"bodY", &proof));
        assert!(!ba.check_answer(8, "a", 9, b"body", &proof));
        assert!(!cb.check_answer(7, "a", 9, b"body", &proof));
    }

    #[test]
    fn the_cache_derives_once_per_certificate_and_stays_bounded() {
        let ca = ca(1);
        let bundle = bundle(&[&ca]);
        let me = creds(&ca, Role::Node, "me", 2);
        let mut keys = PeerKeys::new(me.key.clone(), 2);
        let peers: Vec<_> = (0..3)
            .map(|i| creds(&ca, Role::Node, &format!("p{i}"), 10 + i))
            .collect();
        keys.peer(&bundle, &peers[0].cert, 100).unwrap();
        keys.peer(&bundle, &peers[0].cert, 100).unwrap();
        assert_eq!(keys.derived, 1);
        keys.peer(&bundle, &peers[1].cert, 100).unwrap();
        keys.peer(&bundle, &peers[2].cert, 100).unwrap();
        assert_eq!(keys.len(), 2);
        // p0 was evicted: asking again derives again.
        keys.peer(&bundle, &peers[0].cert, 100).unwrap();
        assert_eq!(keys.derived, 4);
    }

    #[test]
    fn an_operator_certificate_is_not_a_peer() {
        let ca = ca(1);
        let bundle = bundle(&[&ca]);
        let me = creds(&ca, Role::Node, "me", 2);
        let op = creds(&ca, Role::Operator(super::super::Scope::full(1)), "op", 3);
        let mut keys = PeerKeys::new(me.key.clone(), 8);
        assert!(keys.peer(&bundle, &op.cert, 100).is_err());
    }
}
