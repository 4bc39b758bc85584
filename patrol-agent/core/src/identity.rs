//! `NodeId`: a node's identity in the SWIM mesh.
//!
//! The cluster-wide unique address of a node (foca's `Identity::Addr`) is
//! its gossip socket address: that is all a joining node knows of its
//! seeds, and foca accepts an announce addressed to any identity with our
//! address. Each start draws a fresh `bump` from the clock, so a node
//! restarted on the same address wins the conflict with its old identity,
//! and `renew` increments it so a node wrongly declared down rejoins at
//! once.
//!
//! The bump is 64 bits of milliseconds and compared plainly: it does not
//! wrap within the life of any cluster. (It was a `u32` compared with
//! serial arithmetic, which made an agent restarted 25-50 days after its
//! previous start lose to its own old identity.)
//!
//! With `[trust]` an identity carries a [`MemberProof`]: the node's own
//! signature over its name, address, bump and tags, and the digest of the
//! certificate whose key made it (`membership::proof` checks it). The
//! proof travels with the identity but is not part of it: two copies of
//! one identity compare equal whatever their proofs. A node's own identity
//! holds its [`IdentitySigner`], so that the renewed identity foca asks
//! for is signed at once; received copies never hold one.

use core::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::tags::Tags;
use crate::trust::{CertDigest, SigningKey};

/// A node's identity: name (unique in the cluster), gossip address, a bump
/// that orders incarnations of the same name, and the node's tags; with
/// `[trust]`, the node's proof of all four.
#[derive(Clone, Serialize, Deserialize)]
pub struct NodeId {
    pub name: String,
    pub addr: SocketAddr,
    pub bump: u64,
    /// Interned, and on the wire a `BTreeMap<String, String>` (see
    /// [`Tags`]).
    pub tags: Tags,
    /// The node's signature over the four fields above (with `[trust]`).
    /// Boxed: every member holds an identity, and without `[trust]` a
    /// pointer's width is all this costs it (on the wire the same bytes as
    /// an unboxed `Option<MemberProof>`).
    pub proof: Option<Box<MemberProof>>,
    /// Our own identity's key, to sign its renewals. Never sent.
    #[serde(skip)]
    pub signer: Option<Arc<IdentitySigner>>,
}

/// A node's proof of its identity: which certificate (by digest) and the
/// Ed25519 signature of that certificate's key over
/// `"patrol-member-v1\0" || len(cluster) || cluster || bincode(name, addr,
/// bump, tags)` (see [`NodeId::signed_bytes`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberProof {
    pub cert: CertDigest,
    /// 64 bytes from an honest node; on the wire a `Vec<u8>`'s bytes.
    pub sig: ProofSig,
}

/// A [`MemberProof`]'s signature bytes. Every member's identity holds
/// one, so the 64 bytes an honest node sends are kept inline (in the
/// proof's own allocation, not a second one); any other length is kept
/// as received, so the identity encodes again to the very bytes it came
/// in (and no check accepts it: it is not an Ed25519 signature).
#[derive(Clone, PartialEq, Eq)]
pub struct ProofSig(SigBytes);

#[derive(Clone, PartialEq, Eq)]
enum SigBytes {
    Ed25519([u8; 64]),
    /// Never 64 bytes (those are `Ed25519`), so equal bytes compare equal.
    Other(Box<[u8]>),
}

impl From<[u8; 64]> for ProofSig {
    fn from(bytes: [u8; 64]) -> ProofSig {
        ProofSig(SigBytes::Ed25519(bytes))
    }
}

impl From<Vec<u8>> for ProofSig {
    fn from(bytes: Vec<u8>) -> ProofSig {
        match <[u8; 64]>::try_from(bytes.as_slice()) {
            Ok(sig) => ProofSig(SigBytes::Ed25519(sig)),
            Err(_) => ProofSig(SigBytes::Other(bytes.into_boxed_slice())),
        }
    }
}

impl std::ops::Deref for ProofSig {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            SigBytes::Ed25519(sig) => sig,
            SigBytes::Other(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for ProofSig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProofSig({} bytes)", self.len())
    }
}

/// As a `Vec<u8>` (and the `Box<[u8]>` it was): a sequence of bytes.
impl Serialize for ProofSig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        <[u8]>::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for ProofSig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ProofSig, D::Error> {
        Vec::<u8>::deserialize(deserializer).map(ProofSig::from)
    }
}

/// Bytes a [`MemberProof`] adds to an identity on the wire: the option
/// tag, the 16-byte digest, the signature's length and its 64 bytes.
pub const PROOF_BYTES: usize = 1 + 16 + 1 + 64;

/// A node's key and certificate digest, held by its own identity.
pub struct IdentitySigner {
    key: SigningKey,
    cert: CertDigest,
    cluster: String,
}

impl std::fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySigner").finish_non_exhaustive()
    }
}

impl IdentitySigner {
    pub fn new(key: SigningKey, cert: CertDigest, cluster: &str) -> IdentitySigner {
        IdentitySigner {
            key,
            cert,
            cluster: cluster.to_string(),
        }
    }

    /// The proof of `id` by this key.
    pub fn prove(&self, id: &NodeId) -> Box<MemberProof> {
        use ed25519_dalek::Signer;
        let sig = self.key.sign(&id.signed_bytes(&self.cluster));
        Box::new(MemberProof {
            cert: self.cert,
            sig: ProofSig::from(sig.to_bytes()),
        })
    }
}

impl std::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeId")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("bump", &self.bump)
            .field("tags", &self.tags)
            .field("proven", &self.proof.is_some())
            .finish()
    }
}

impl PartialEq for NodeId {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.addr == other.addr
            && self.bump == other.bump
            && self.tags == other.tags
    }
}

impl Eq for NodeId {}

impl std::hash::Hash for NodeId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.addr.hash(state);
        self.bump.hash(state);
        self.tags.hash(state);
    }
}

/// Largest encoded identity a node starts with, and the largest the codec
/// takes from anyone else (`codec.rs` refuses a packet carrying a larger
/// one). foca puts the sender's identity in every packet's header and up
/// to three identities in an indirect probe, all within one 1,296-byte
/// packet; about 400 bytes of tags silently broke indirect probes and
/// about 620 all gossip. The config keeps a name and its tags within 192
/// bytes of text, which encodes to at most ~260.
///
/// With `[trust]` every identity also carries its proof
/// ([`PROOF_BYTES`]); the limit is the config's bound plus that.
pub const MAX_IDENTITY_BYTES: usize = 300 + PROOF_BYTES;

impl NodeId {
    /// The identity's size in foca's packets (bincode, as the codec writes);
    /// counted, not written.
    pub fn encoded_len(&self) -> usize {
        let mut size = bincode::enc::write::SizeWriter::default();
        match bincode::serde::encode_into_writer(self, &mut size, bincode::config::standard()) {
            Ok(()) => size.bytes_written,
            Err(_) => usize::MAX,
        }
    }

    /// A new identity. The shell draws `bump` from the wall clock at start
    /// ([`NodeId::bump_from_unix_ms`]) so that a restart beats the previous
    /// incarnation.
    pub fn new(
        name: impl Into<String>,
        addr: SocketAddr,
        bump: u64,
        tags: impl Into<Tags>,
    ) -> Self {
        NodeId {
            name: name.into(),
            addr,
            bump,
            tags: tags.into(),
            proof: None,
            signer: None,
        }
    }

    /// This identity signed by `signer`, which it keeps to sign its
    /// renewals.
    pub fn signed(mut self, signer: Arc<IdentitySigner>) -> NodeId {
        self.proof = Some(signer.prove(&self));
        self.signer = Some(signer);
        self
    }

    /// What a [`MemberProof`] signs, for cluster `cluster`.
    pub fn signed_bytes(&self, cluster: &str) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(b"patrol-member-v1\0");
        bytes.extend_from_slice(&(cluster.len() as u64).to_le_bytes());
        bytes.extend_from_slice(cluster.as_bytes());
        let fields = (&self.name, &self.addr, self.bump, &self.tags);
        // Encoding into a Vec cannot fail.
        let _ =
            bincode::serde::encode_into_std_write(fields, &mut bytes, bincode::config::standard());
        bytes
    }

    /// The bump for an identity started at `unix_ms`: the milliseconds
    /// themselves, so a later start beats every earlier incarnation.
    pub fn bump_from_unix_ms(unix_ms: u64) -> u64 {
        unix_ms
    }

    /// A stand-in for a seed we know only by address: used as the
    /// destination of an announce. It never enters the member list: foca
    /// accepts an announce whose destination has the receiver's address,
    /// and learns the seed's real identity from its reply.
    pub fn seed_placeholder(addr: SocketAddr) -> Self {
        NodeId::new(format!("seed@{addr}"), addr, 0, Tags::default())
    }
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        let mut next = self.clone();
        next.bump = self.bump.saturating_add(1);
        next.proof = self.signer.as_ref().map(|s| s.prove(&next));
        Some(next)
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use foca::Identity;

    use super::*;

    #[test]
    fn renewed_identity_wins_and_keeps_the_name() {
        let a = NodeId::new("a", "127.0.0.1:1".parse().unwrap(), 7, BTreeMap::new());
        let b = a.renew().unwrap();
        assert_eq!(a.addr(), b.addr());
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
    }

    #[test]
    fn a_restart_any_time_later_wins() {
        let day = 24 * 3600 * 1000;
        let addr = "127.0.0.1:1".parse().unwrap();
        let old = NodeId::new(
            "a",
            addr,
            NodeId::bump_from_unix_ms(1_800_000_000_000),
            BTreeMap::new(),
        );
        for days in [1, 25, 30, 49, 50, 365, 3650] {
            let new = NodeId::new("a", addr, old.bump + days * day, BTreeMap::new());
            assert!(new.win_addr_conflict(&old), "{days} days later");
            assert!(!old.win_addr_conflict(&new));
        }
    }

    /// `NodeId` as it was before its tags were interned and its proof
    /// boxed: what older agents send and sign.
    #[derive(Serialize, Deserialize)]
    struct OldNodeId {
        name: String,
        addr: SocketAddr,
        bump: u64,
        tags: BTreeMap<String, String>,
        proof: Option<OldMemberProof>,
    }

    #[derive(Serialize, Deserialize)]
    struct OldMemberProof {
        cert: CertDigest,
        sig: Vec<u8>,
    }

    fn bincode_of<T: Serialize>(value: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
    }

    fn old_signed_bytes(old: &OldNodeId, cluster: &str) -> Vec<u8> {
        let mut bytes = b"patrol-member-v1\0".to_vec();
        bytes.extend_from_slice(&(cluster.len() as u64).to_le_bytes());
        bytes.extend_from_slice(cluster.as_bytes());
        bytes.extend(bincode_of(&(&old.name, &old.addr, old.bump, &old.tags)));
        bytes
    }

    #[test]
    fn a_proof_of_any_signature_length_encodes_as_it_came() {
        let addr: SocketAddr = "10.1.2.3:7946".parse().unwrap();
        for len in [0, 1, 63, 64, 65, 200] {
            let sig: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let old = OldNodeId {
                name: "host-7".into(),
                addr,
                bump: 5,
                tags: BTreeMap::new(),
                proof: Some(OldMemberProof {
                    cert: [3; 16],
                    sig: sig.clone(),
                }),
            };
            let (back, _): (NodeId, usize) =
                bincode::serde::decode_from_slice(&bincode_of(&old), bincode::config::standard())
                    .unwrap();
            let proof = back.proof.as_ref().unwrap();
            assert_eq!(&*proof.sig, &sig[..]);
            assert_eq!(proof.sig, ProofSig::from(sig.clone()));
            assert_eq!(bincode_of(&back), bincode_of(&old), "{len} bytes");
        }
    }

    #[test]
    fn identities_and_the_bytes_they_sign_are_what_they_were_before_tags_were_interned() {
        let addr: SocketAddr = "10.1.2.3:7946".parse().unwrap();
        let signer = Arc::new(IdentitySigner::new(
            SigningKey::from_bytes(&[7; 32]),
            [9; 16],
            "c1",
        ));
        let tag_sets: [&[(&str, &str)]; 3] = [
            &[],
            &[("role", "worker")],
            &[("zone", "b"), ("role", "db"), ("rack", "r7")],
        ];
        for pairs in tag_sets {
            let tags: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let id = NodeId::new("host-7", addr, 1_800_000_000_000, tags.clone())
                .signed(Arc::clone(&signer));
            let proof = id.proof.as_ref().unwrap();
            let old = OldNodeId {
                name: "host-7".into(),
                addr,
                bump: 1_800_000_000_000,
                tags,
                proof: Some(OldMemberProof {
                    cert: proof.cert,
                    sig: proof.sig.to_vec(),
                }),
            };
            assert_eq!(id.signed_bytes("c1"), old_signed_bytes(&old, "c1"));
            assert_eq!(bincode_of(&id), bincode_of(&old));
            assert_eq!(id.encoded_len(), bincode_of(&old).len());
            let (back, _): (NodeId, usize) =
                bincode::serde::decode_from_slice(&bincode_of(&old), bincode::config::standard())
                    .unwrap();
            assert_eq!(back, id);
            assert_eq!(back.proof, id.proof);
        }
        let unproven = NodeId::new("host-7", addr, 1, BTreeMap::new());
        let old_unproven = OldNodeId {
            name: "host-7".into(),
            addr,
            bump: 1,
            tags: BTreeMap::new(),
            proof: None,
        };
        assert_eq!(bincode_of(&unproven), bincode_of(&old_unproven));
    }
}
