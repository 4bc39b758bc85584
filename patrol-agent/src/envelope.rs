//! The sealed envelope around every UDP packet (and control frame):
//! XChaCha20-Poly1305 under a key from the cluster [`Keyring`].
//!
//! ```text
//! offset  0        1          5                 29                 len-16   len
//!         | version | key id  | nonce (24 bytes) | ciphertext ...   | tag (16) |
//!         |   0x01  | u32 BE  |  random          |                  |          |
//! ```
//!
//! The associated data is `version byte ++ key id (4 bytes, big-endian) ++
//! purpose byte ++ cluster name`: the header cannot be altered, two
//! clusters that happen to share a key still cannot read each other's
//! packets, and a packet sealed for one use (a gossip datagram, a control
//! request, a control reply) does not open as another. Nonces are
//! 24 random bytes from the OS-seeded CSPRNG, so random nonces never repeat
//! in practice (2^96 packets before a collision becomes likely).
//!
//! **Invariant:** [`Envelope::open`] never panics, whatever the bytes, and
//! returns plaintext only when the tag verifies under the key the packet
//! names; anything else is an [`OpenError`] the caller counts and drops.
//!
//! Replay protection is one layer up: gossip datagrams carry a sender
//! session, counter and timestamp inside the seal (`datagram.rs`), control
//! frames a per-connection challenge (`control/frame.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};
use rand::Rng;

use crate::keyring::{Keyring, SECRET_LEN};

/// The envelope format this code writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of the key id (big-endian `u32`).
pub const KEY_ID_LEN: usize = 4;
/// Bytes of the XChaCha20 nonce.
pub const NONCE_LEN: usize = 24;
/// Bytes of the Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Bytes before the ciphertext: version, key id, nonce.
pub const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// How many bytes sealing adds to a plaintext (header + tag): a payload of
/// `mtu - OVERHEAD` bytes seals into exactly `mtu` bytes.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Longest plaintext [`Envelope::seal`] accepts (16 MiB: far above any UDP
/// packet or control frame, far below the AEAD's own limit).
pub const MAX_PLAINTEXT: usize = 16 * 1024 * 1024;

/// What a packet is for; bound into its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Purpose {
    /// A gossip datagram (foca, sweep messages, leave notices).
    Gossip = 1,
    /// A control-channel frame from the client.
    ControlRequest = 2,
    /// A control-channel frame from the agent.
    ControlReply = 3,
}

const PURPOSES: usize = 3;

/// Why a packet did not open. Every variant means "drop and count".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("packet too short ({len} bytes; a sealed packet has at least {OVERHEAD})")]
    TooShort { len: usize },
    #[error("unknown envelope version {0} (this node speaks version {VERSION})")]
    UnknownVersion(u8),
    #[error("packet sealed with key id {0}, which is not in the keyring")]
    UnknownKeyId(u32),
    #[error("packet failed authentication (wrong key, corrupted, or another cluster)")]
    AuthenticationFailed,
}

impl OpenError {
    /// A short stable label for drop counters and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::TooShort { .. } => "too_short",
            OpenError::UnknownVersion(_) => "unknown_version",
            OpenError::UnknownKeyId(_) => "unknown_key_id",
            OpenError::AuthenticationFailed => "authentication_failed",
        }
    }
}

/// Why a plaintext could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "plaintext of {len} bytes is longer than the {MAX_PLAINTEXT} bytes an envelope carries"
    )]
    TooLong { len: usize },
}

/// One key ready to use: its cipher and its associated data.
#[derive(Clone)]
struct SealingKey {
    cipher: XChaCha20Poly1305,
    /// `VERSION ++ key id ++ purpose ++ cluster`, one per purpose, computed
    /// once.
    aad: [Box<[u8]>; PURPOSES],
}

impl SealingKey {
    fn aad(&self, purpose: Purpose) -> &[u8] {
        &self.aad[purpose as usize - 1]
    }
}

struct Inner {
    primary: u32,
    /// The key that seals (also in `keys`, which open).
    sealing: SealingKey,
    keys: BTreeMap<u32, SealingKey>,
    cluster: String,
}

/// Seals and opens packets for one cluster under one keyring. Cheap to
/// clone and safe to use from many tasks at once; clones share the keyring,
/// so [`Envelope::reload`] on one changes them all (key rotation without a
/// restart).
#[derive(Clone)]
pub struct Envelope {
    cluster: Arc<str>,
    inner: Arc<RwLock<Arc<Inner>>>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.current();
        f.debug_struct("Envelope")
            .field("cluster", &inner.cluster)
            .field("primary", &inner.primary)
            .field("key_ids", &inner.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Envelope {
    /// An envelope sealing with the keyring's primary key and opening with
    /// any of its keys, bound to the cluster name.
    pub fn new(keyring: Keyring, cluster: &str) -> Envelope {
        Envelope {
            cluster: Arc::from(cluster),
            inner: Arc::new(RwLock::new(Arc::new(Self::prepare(keyring, cluster)))),
        }
    }

    /// Replace the keyring (same cluster) for this envelope and all its
    /// clones: new packets seal with the new primary key, and only the new
    /// keyring's keys open. Packets in flight under a key that stayed
    /// installed still open. Returns the new primary key id.
    pub fn reload(&self, keyring: Keyring) -> u32 {
        let next = Arc::new(Self::prepare(keyring, &self.cluster));
        let primary = next.primary;
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = next;
        primary
    }

    /// Ids of the keys that open packets, primary first.
    pub fn key_ids(&self) -> Vec<u32> {
        let inner = self.current();
        let mut ids = vec![inner.primary];
        ids.extend(inner.keys.keys().copied().filter(|id| *id != inner.primary));
        ids
    }

    fn current(&self) -> Arc<Inner> {
        Arc::clone(&self.inner.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn prepare(keyring: Keyring, cluster: &str) -> Inner {
        let prepare = |id: u32, secret: &[u8; SECRET_LEN]| {
            let aad = |purpose: Purpose| {
                let mut aad = Vec::with_capacity(2 + KEY_ID_LEN + cluster.len());
                aad.push(VERSION);
                aad.extend_from_slice(&id.to_be_bytes());
                aad.push(purpose as u8);
                aad.extend_from_slice(cluster.as_bytes());
                aad.into_boxed_slice()
            };
            SealingKey {
                cipher: XChaCha20Poly1305::new(&(*secret).into()),
                aad: [
                    aad(Purpose::Gossip),
                    aad(Purpose::ControlRequest),
                    aad(Purpose::ControlReply),
                ],
            }
        };
        let keys = keyring
            .ids()
            .filter_map(|id| Some((id, prepare(id, keyring.secret(id)?))))
            .collect();
        let primary = keyring.primary_id();
        Inner {
            primary,
            sealing: prepare(primary, keyring.primary_secret()),
            keys,
            cluster: cluster.to_string(),
        }
    }

    /// The cluster name bound into every packet.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The key id new packets are sealed with.
    pub fn primary_id(&self) -> u32 {
        self.current().primary
    }

    /// Seal `plaintext` with the primary key, **appending** the packet
    /// (`plaintext.len() + OVERHEAD` bytes) to `out`. Clear `out` first to
    /// reuse a buffer.
    pub fn seal(
        &self,
        purpose: Purpose,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(SealError::TooLong {
                len: plaintext.len(),
            });
        }
        let inner = self.current();
        let id = inner.primary;
        let key = &inner.sealing;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let start = out.len();
        out.reserve(plaintext.len() + OVERHEAD);
        out.push(VERSION);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let body = &mut out[start + HEADER_LEN..];
        match key
            .cipher
            .encrypt_in_place_detached(&XNonce::from(nonce), key.aad(purpose), body)
        {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                Ok(())
            }
            Err(_) => {
                // Only reachable past the AEAD's length limit, which
                // MAX_PLAINTEXT keeps us far below.
                out.truncate(start);
                Err(SealError::TooLong {
                    len: plaintext.len(),
                })
            }
        }
    }

    /// Seal into a new buffer.
    pub fn seal_to_vec(&self, purpose: Purpose, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        self.seal(purpose, plaintext, &mut out)?;
        Ok(out)
    }

    /// Open a packet with the key its key id names; the plaintext, or why
    /// not. Never panics.
    pub fn open(&self, purpose: Purpose, packet: &[u8]) -> Result<Vec<u8>, OpenError> {
        let mut out = Vec::new();
        self.open_into(purpose, packet, &mut out)?;
        Ok(out)
    }

    /// The checks that need no key: length, version, a known key id. The
    /// UDP reader drops what fails them before queueing anything.
    pub fn precheck(&self, packet: &[u8]) -> Result<(), OpenError> {
        let (&version, _) = packet.split_first().ok_or(OpenError::TooShort { len: 0 })?;
        if version != VERSION {
            return Err(OpenError::UnknownVersion(version));
        }
        if packet.len() < OVERHEAD {
            return Err(OpenError::TooShort { len: packet.len() });
        }
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&packet[1..1 + KEY_ID_LEN]);
        let id = u32::from_be_bytes(id);
        if !self.current().keys.contains_key(&id) {
            return Err(OpenError::UnknownKeyId(id));
        }
        Ok(())
    }

    /// Like [`Envelope::open`], but **appends** the plaintext to `out` (left
    /// as it was on error), so a receive loop can reuse one buffer.
    pub fn open_into(
        &self,
        purpose: Purpose,
        packet: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), OpenError> {
        let (&version, rest) = packet.split_first().ok_or(OpenError::TooShort { len: 0 })?;
        if version != VERSION {
            return Err(OpenError::UnknownVersion(version));
        }
        if packet.len() < OVERHEAD {
            return Err(OpenError::TooShort { len: packet.len() });
        }
        let (id_bytes, rest) = rest.split_at(KEY_ID_LEN);
        let (nonce, rest) = rest.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let id = u32::from_be_bytes(
            id_bytes
                .try_into()
                .map_err(|_| OpenError::TooShort { len: packet.len() })?,
        );
        let inner = self.current();
        let key = inner.keys.get(&id).ok_or(OpenError::UnknownKeyId(id))?;
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| OpenError::TooShort { len: packet.len() })?;
        let tag: [u8; TAG_LEN] = tag
            .try_into()
            .map_err(|_| OpenError::TooShort { len: packet.len() })?;
        let start = out.len();
        out.extend_from_slice(ciphertext);
        match key.cipher.decrypt_in_place_detached(
            &XNonce::from(nonce),
            key.aad(purpose),
            &mut out[start..],
            &Tag::from(tag),
        ) {
            Ok(()) => Ok(()),
            Err(_) => {
                out.truncate(start);
                Err(OpenError::AuthenticationFailed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const G: Purpose = Purpose::Gossip;

    fn envelope() -> Envelope {
        Envelope::new(Keyring::from_secret(42, [3; SECRET_LEN]), "prod")
    }

    #[test]
    fn rotation_install_use_remove_without_a_restart() {
        let old = Keyring::from_secret(1, [1; SECRET_LEN]);
        let a = Envelope::new(old.clone(), "prod");
        let a_clone = a.clone();
        let b = Envelope::new(old.clone(), "prod");
        let from_old = a.seal_to_vec(G, b"before").unwrap();

        // 1. Install the new key everywhere: still sealing with the old one.
        let mut ring = old.clone();
        ring.install(2, [2; SECRET_LEN]).unwrap();
        assert_eq!(a.reload(ring.clone()), 1);
        b.reload(ring.clone());
        assert_eq!(a_clone.key_ids(), vec![1, 2], "clones share the reload");

        // 2. Make it primary on `a` first: `b` (not yet switched) opens it.
        ring.use_primary(2).unwrap();
        a.reload(ring.clone());
        let from_new = a_clone.seal_to_vec(G, b"after").unwrap();
        assert_eq!(&from_new[1..5], &2u32.to_be_bytes());
        assert_eq!(b.open(G, &from_new).unwrap(), b"after");
        assert_eq!(a.open(G, &from_old).unwrap(), b"before");

        // 3. Remove the old key: its packets no longer open.
        ring.remove(1).unwrap();
        a.reload(ring);
        assert_eq!(a.open(G, &from_old), Err(OpenError::UnknownKeyId(1)));
        assert_eq!(a.open(G, &from_new).unwrap(), b"after");
    }

    #[test]
    fn layout_is_as_documented() {
        let env = envelope();
        let packet = env.seal_to_vec(G, b"hello").unwrap();
        assert_eq!(packet.len(), 5 + OVERHEAD);
        assert_eq!(OVERHEAD, 45);
        assert_eq!(packet[0], VERSION);
        assert_eq!(&packet[1..5], &42u32.to_be_bytes());
        assert_ne!(&packet[HEADER_LEN..HEADER_LEN + 5], b"hello");
        assert_eq!(env.open(G, &packet).unwrap(), b"hello");
    }

    #[test]
    fn seal_appends_and_nonces_differ() {
        let env = envelope();
        let mut out = b"prefix".to_vec();
        env.seal(G, b"x", &mut out).unwrap();
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(env.open(G, &out[6..]).unwrap(), b"x");
        let a = env.seal_to_vec(G, b"same").unwrap();
        let b = env.seal_to_vec(G, b"same").unwrap();
        assert_ne!(a[5..HEADER_LEN], b[5..HEADER_LEN], "nonces repeat");
        assert_ne!(a, b);
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let env = envelope();
        let packet = env.seal_to_vec(G, b"").unwrap();
        assert_eq!(packet.len(), OVERHEAD);
        assert_eq!(env.open(G, &packet).unwrap(), b"");
    }

    #[test]
    fn wrong_key_same_id_fails_authentication() {
        let ours = envelope();
        let theirs = Envelope::new(Keyring::from_secret(42, [4; SECRET_LEN]), "prod");
        let packet = theirs.seal_to_vec(G, b"join me").unwrap();
        assert_eq!(ours.open(G, &packet), Err(OpenError::AuthenticationFailed));
    }

    #[test]
    fn other_key_id_is_unknown() {
        let ours = envelope();
        let theirs = Envelope::new(Keyring::generate(), "prod");
        let packet = theirs.seal_to_vec(G, b"join me").unwrap();
        assert_eq!(
            ours.open(G, &packet),
            Err(OpenError::UnknownKeyId(theirs.primary_id()))
        );
    }

    #[test]
    fn other_cluster_with_same_key_fails_authentication() {
        let ours = envelope();
        let theirs = Envelope::new(Keyring::from_secret(42, [3; SECRET_LEN]), "staging");
        let packet = theirs.seal_to_vec(G, b"join me").unwrap();
        assert_eq!(ours.open(G, &packet), Err(OpenError::AuthenticationFailed));
    }

    #[test]
    fn rejects_other_versions_and_short_packets() {
        let env = envelope();
        assert_eq!(env.open(G, b""), Err(OpenError::TooShort { len: 0 }));
        assert_eq!(env.open(G, &[2; 100]), Err(OpenError::UnknownVersion(2)));
        assert_eq!(env.open(G, &[1; 10]), Err(OpenError::TooShort { len: 10 }));
        let mut packet = env.seal_to_vec(G, b"abc").unwrap();
        packet[0] = 0;
        assert_eq!(env.open(G, &packet), Err(OpenError::UnknownVersion(0)));
    }

    #[test]
    fn rotation_old_packets_open_until_the_old_key_is_removed() {
        let mut ring = Keyring::from_secret(1, [1; SECRET_LEN]);
        let old = Envelope::new(ring.clone(), "c");
        let packet_old = old.seal_to_vec(G, b"old").unwrap();

        ring.install(2, [2; SECRET_LEN]).unwrap();
        let installed = Envelope::new(ring.clone(), "c");
        // Installed but not primary: still seals with 1, opens both.
        assert_eq!(installed.primary_id(), 1);
        ring.use_primary(2).unwrap();
        let rotated = Envelope::new(ring.clone(), "c");
        let packet_new = rotated.seal_to_vec(G, b"new").unwrap();
        assert_eq!(&packet_new[1..5], &2u32.to_be_bytes());
        assert_eq!(installed.open(G, &packet_new).unwrap(), b"new");
        assert_eq!(rotated.open(G, &packet_old).unwrap(), b"old");
        assert_eq!(old.open(G, &packet_new), Err(OpenError::UnknownKeyId(2)));

        ring.remove(1).unwrap();
        let finished = Envelope::new(ring, "c");
        assert_eq!(
            finished.open(G, &packet_old),
            Err(OpenError::UnknownKeyId(1))
        );
        assert_eq!(finished.open(G, &packet_new).unwrap(), b"new");
    }

    #[test]
    fn open_into_leaves_the_buffer_alone_on_error() {
        let env = envelope();
        let mut packet = env.seal_to_vec(G, b"payload").unwrap();
        let mut out = b"keep".to_vec();
        env.open_into(G, &packet, &mut out).unwrap();
        assert_eq!(out, b"keeppayload");
        let last = packet.len() - 1;
        packet[last] ^= 1;
        assert_eq!(
            env.open_into(G, &packet, &mut out),
            Err(OpenError::AuthenticationFailed)
        );
        assert_eq!(out, b"keeppayload");
    }

    #[test]
    fn too_long_plaintext_is_refused() {
        let env = envelope();
        let big = vec![0u8; MAX_PLAINTEXT + 1];
        let mut out = Vec::new();
        assert_eq!(
            env.seal(G, &big, &mut out),
            Err(SealError::TooLong { len: big.len() })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn usable_from_many_threads() {
        let env = envelope();
        let handles: Vec<_> = (0..4u8)
            .map(|t| {
                let env = env.clone();
                std::thread::spawn(move || {
                    for i in 0..100u8 {
                        let msg = [t, i];
                        let p = env.seal_to_vec(G, &msg).unwrap();
                        assert_eq!(env.open(G, &p).unwrap(), msg);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..2048),
                      cluster in ".{0,40}") {
            let env = Envelope::new(Keyring::generate(), &cluster);
            let packet = env.seal_to_vec(G, &data).unwrap();
            prop_assert_eq!(packet.len(), data.len() + OVERHEAD);
            prop_assert_eq!(env.open(G, &packet).unwrap(), data);
        }

        #[test]
        fn every_single_bit_flip_is_rejected(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            // Two keys installed, so a flipped key id can also land on a
            // known key (3 vs 2 differ by one bit).
            let mut ring = Keyring::from_secret(2, [2; SECRET_LEN]);
            ring.install(3, [3; SECRET_LEN]).unwrap();
            let env = Envelope::new(ring, "prod");
            let packet = env.seal_to_vec(G, &data).unwrap();
            for bit in 0..packet.len() * 8 {
                let mut bad = packet.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                prop_assert!(env.open(G, &bad).is_err(), "bit {} flipped still opens", bit);
            }
        }

        #[test]
        fn every_truncation_and_extension_is_rejected(data in proptest::collection::vec(any::<u8>(), 0..64),
                                                      extra in proptest::collection::vec(any::<u8>(), 1..8)) {
            let env = envelope();
            let packet = env.seal_to_vec(G, &data).unwrap();
            for len in 0..packet.len() {
                prop_assert!(env.open(G, &packet[..len]).is_err(), "prefix of {} bytes opens", len);
            }
            let mut longer = packet.clone();
            longer.extend_from_slice(&extra);
            prop_assert!(env.open(G, &longer).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic_nor_open(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let env = envelope();
            prop_assert!(env.open(G, &bytes).is_err());
        }

        #[test]
        fn arbitrary_bodies_under_a_valid_header_never_open(
            body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let env = envelope();
            let mut packet = vec![VERSION];
            packet.extend_from_slice(&42u32.to_be_bytes());
            packet.extend_from_slice(&body);
            prop_assert!(env.open(G, &packet).is_err());
        }
    }
}

#[cfg(test)]
mod purpose_tests {
    use super::*;

    #[test]
    fn a_packet_sealed_for_one_use_does_not_open_as_another() {
        let env = Envelope::new(Keyring::from_secret(42, [3; SECRET_LEN]), "prod");
        let request = env
            .seal_to_vec(Purpose::ControlRequest, b"members")
            .unwrap();
        assert_eq!(
            env.open(Purpose::ControlRequest, &request).unwrap(),
            b"members"
        );
        for other in [Purpose::Gossip, Purpose::ControlReply] {
            assert_eq!(
                env.open(other, &request),
                Err(OpenError::AuthenticationFailed)
            );
        }
    }

    #[test]
    fn precheck_refuses_what_needs_no_key_to_refuse() {
        let env = Envelope::new(Keyring::from_secret(42, [3; SECRET_LEN]), "prod");
        let packet = env.seal_to_vec(Purpose::Gossip, b"x").unwrap();
        assert_eq!(env.precheck(&packet), Ok(()));
        assert_eq!(env.precheck(&[]), Err(OpenError::TooShort { len: 0 }));
        assert_eq!(env.precheck(&[9; 64]), Err(OpenError::UnknownVersion(9)));
        let mut other = packet.clone();
        other[1..5].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(env.precheck(&other), Err(OpenError::UnknownKeyId(7)));
    }
}
