//! [`MemberBook`]: which member identities are proven (with `[trust]`).
//!
//! A member identity (name, gossip address, bump, tags) is admitted to
//! membership only with a [`MemberProof`] by the key of a node certificate
//! the bundle accepts, for that same name. The book checks it once and
//! remembers the latest proven identity of every name, so a packet that
//! repeats it costs one hash of the identity's signed bytes and a compare;
//! a new identity costs one Ed25519 verification (and, for a certificate
//! not seen before, the certificate's own check).
//!
//! What the book refuses, and why:
//! - no proof, a certificate that is not a node certificate for the name,
//!   or a signature that does not verify: only the node can create, rename
//!   or re-address its identity;
//! - a bump more than `bump_slack` ahead of the wall clock: bumps are
//!   milliseconds of the start time, so nobody (the node included) can
//!   claim a maximal one that no later restart could beat;
//! - an older bump than the name's latest proven one (a stale copy);
//! - the same bump signed twice with different contents (only a
//!   compromised node can do that);
//! - an address that another name was heard from directly within
//!   `address_hold`: a compromised node cannot sign its own name onto a
//!   live victim's address and displace it (foca keys members by address).
//!
//! Certificates arrive separately (`membership::gate`, the `CH_CERT`
//! exchange) and are kept by digest, bounded, as [`CompactCert`]s (the
//! book holds one per member: its encoding and the few fields read often,
//! the Edwards point decompressed only for a new identity's proof); an
//! identity whose certificate is not known yet is [`Check::UnknownCert`],
//! and the gate asks the sender.

use core::net::SocketAddr;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::Signature;
use sha2::{Digest, Sha256};

use crate::identity::NodeId;
use crate::trust::{cert_digest, CertDigest, Certificate, CompactCert, TrustBundle, TrustError};

/// Bounds and tolerances of the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookSettings {
    /// Most node certificates and proven names held (each).
    pub capacity: usize,
    /// How far ahead of the wall clock a bump (start time, ms) may be.
    pub bump_slack: Duration,
    /// How long an address stays with the name last heard from it.
    pub address_hold: Duration,
}

impl Default for BookSettings {
    fn default() -> Self {
        BookSettings {
            capacity: 131_072,
            bump_slack: Duration::from_secs(600),
            address_hold: Duration::from_secs(60),
        }
    }
}

/// What the book says of one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Proven: its node signed it. `new` when this is the first time the
    /// book sees this exact identity.
    Proven { serial: u64, new: bool },
    /// A proof by a certificate the book does not have yet.
    UnknownCert(CertDigest),
    /// An older identity of a name the book has a newer proof for.
    Stale,
    /// Not proven, with the reason.
    Refused(Refusal),
}

/// Why an identity is not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Unproven,
    WrongCertificate,
    BadSignature,
    FutureBump,
    TwoContents,
    AddressTaken,
}

impl Refusal {
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::Unproven => "no proof",
            Refusal::WrongCertificate => "the certificate is for another name",
            Refusal::BadSignature => "the signature does not verify",
            Refusal::FutureBump => "a bump too far ahead of the clock",
            Refusal::TwoContents => "one bump signed with two contents",
            Refusal::AddressTaken => "an address another live node holds",
        }
    }
}

/// The latest proven identity of a name.
#[derive(Debug, Clone)]
struct Proven {
    bump: u64,
    /// SHA-256 (first 16 bytes) of the identity's signed bytes.
    content: [u8; 16],
    serial: u64,
    cert: CertDigest,
}

/// Proven identities and the node certificates they are proven by.
#[derive(Debug)]
pub struct MemberBook {
    cluster: String,
    bundle: TrustBundle,
    settings: BookSettings,
    /// Shared: a certificate is kept once however many books (and pair-key
    /// caches) hold it (the simulator's nodes vouch for the same ones).
    certs: HashMap<CertDigest, CompactCert>,
    cert_order: VecDeque<CertDigest>,
    /// By name; the name is shared with `heard` (one allocation per
    /// member, not two).
    proven: HashMap<Arc<str>, Proven>,
    /// Which name was last heard from an address, and when.
    heard: HashMap<SocketAddr, Heard>,
}

/// The name last heard from an address.
#[derive(Debug, Clone)]
struct Heard {
    name: Arc<str>,
    /// When, in nanoseconds of the monotonic clock (a `Duration` takes 16
    /// bytes; 64 bits of nanoseconds last 584 years).
    at_ns: u64,
}

/// `mono` in nanoseconds (saturating, centuries away).
fn nanos(mono: Duration) -> u64 {
    u64::try_from(mono.as_nanos()).unwrap_or(u64::MAX)
}

impl MemberBook {
    pub fn new(cluster: &str, bundle: TrustBundle, settings: BookSettings) -> MemberBook {
        MemberBook {
            cluster: cluster.to_string(),
            bundle,
            settings,
            certs: HashMap::new(),
            cert_order: VecDeque::new(),
            proven: HashMap::new(),
            heard: HashMap::new(),
        }
    }

    /// A reloaded bundle or deny list: every certificate and proof is
    /// checked again as it is next seen.
    pub fn set_bundle(&mut self, bundle: TrustBundle) {
        self.bundle = bundle;
        self.certs.clear();
        self.cert_order.clear();
        self.proven.clear();
    }

    pub fn bundle(&self) -> &TrustBundle {
        &self.bundle
    }

    /// Check and keep a node certificate (from the certificate exchange, or
    /// our own). Returns its digest.
    pub fn learn_cert(&mut self, cert: &Certificate, now_s: u64) -> Result<CertDigest, TrustError> {
        let digest = cert_digest(cert);
        if self.certs.contains_key(&digest) {
            return Ok(digest);
        }
        self.bundle.verify(cert, "node", now_s)?;
        let compact = CompactCert::new(cert)?;
        if self.certs.len() >= self.settings.capacity {
            if let Some(old) = self.cert_order.pop_front() {
                self.certs.remove(&old);
            }
        }
        self.certs.insert(digest, compact);
        self.cert_order.push_back(digest);
        Ok(digest)
    }

    /// A certificate the book holds, decoded, to answer a peer that wants
    /// it.
    pub fn cert(&self, digest: &CertDigest) -> Option<Certificate> {
        self.certs.get(digest)?.certificate().ok()
    }

    /// Whether the book holds certificate `digest`.
    pub fn has_cert(&self, digest: &CertDigest) -> bool {
        self.certs.contains_key(digest)
    }

    /// Node certificates held.
    pub fn certs_held(&self) -> usize {
        self.certs.len()
    }

    /// Names with a proven identity.
    pub fn names_held(&self) -> usize {
        self.proven.len()
    }

    /// The certificate serial of `name`'s latest proven identity.
    pub fn serial_of(&self, name: &str) -> Option<u64> {
        self.proven.get(name).map(|p| p.serial)
    }

    /// The bump of `name`'s latest proven identity.
    pub fn bump_of(&self, name: &str) -> Option<u64> {
        self.proven.get(name).map(|p| p.bump)
    }

    /// Take `id` as proven without checking it: members the caller vouches
    /// for (the simulator's converged start, whose identities it made).
    pub fn vouch(&mut self, id: &NodeId, serial: u64) {
        let content = self.content(id);
        let cert = id.proof.as_ref().map(|p| p.cert).unwrap_or_default();
        self.keep_proven(
            id,
            Proven {
                bump: id.bump,
                content,
                serial,
                cert,
            },
        );
    }

    /// Keep a certificate without checking it: one the caller vouches for
    /// (the simulator's, which made it), shared with the caller.
    pub fn vouch_cert(&mut self, cert: &CompactCert) {
        let digest = cert.digest();
        if self.certs.insert(digest, cert.clone()).is_none() {
            self.cert_order.push_back(digest);
        }
    }

    /// The checked certificate `digest` names; clone it to share it (the
    /// sweep's pair keys keep the same one).
    pub fn held(&self, digest: &CertDigest) -> Option<&CompactCert> {
        self.certs.get(digest)
    }

    /// The certificate digest of `name`'s latest proven identity.
    pub fn cert_of(&self, name: &str) -> Option<CertDigest> {
        self.proven.get(name).map(|p| p.cert)
    }

    /// A datagram whose header names `id` as its sender arrived from `id`'s
    /// address: the address is held by that name for `address_hold`.
    pub fn heard_from(&mut self, id: &NodeId, mono: Duration) {
        let now = nanos(mono);
        if let Some(heard) = self.heard.get_mut(&id.addr) {
            if *heard.name == *id.name {
                heard.at_ns = now;
                return;
            }
        }
        if self.heard.len() >= self.settings.capacity {
            let hold = nanos(self.settings.address_hold);
            self.heard
                .retain(|_, heard| now.saturating_sub(heard.at_ns) < hold);
            if self.heard.len() >= self.settings.capacity {
                return;
            }
        }
        let name = match self.proven.get_key_value(id.name.as_str()) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(id.name.as_str()),
        };
        self.heard.insert(id.addr, Heard { name, at_ns: now });
    }

    /// `proven` is the latest proven identity of `id`'s name. A name held
    /// keeps its key; a new one shares the name `heard` holds for its
    /// address, if that is the same (a name proven again after `forget`).
    fn keep_proven(&mut self, id: &NodeId, proven: Proven) {
        if let Some(p) = self.proven.get_mut(id.name.as_str()) {
            *p = proven;
            return;
        }
        let name = match self.heard.get(&id.addr) {
            Some(heard) if *heard.name == *id.name => Arc::clone(&heard.name),
            _ => Arc::from(id.name.as_str()),
        };
        self.proven.insert(name, proven);
    }

    /// Is `id` proven? `unix_ms` bounds its bump; `mono` dates address
    /// holds.
    pub fn check(&mut self, id: &NodeId, unix_ms: u64, mono: Duration) -> Check {
        let Some(proof) = id.proof.as_ref() else {
            return Check::Refused(Refusal::Unproven);
        };
        let content = self.content(id);
        if let Some(p) = self.proven.get(id.name.as_str()) {
            if p.bump == id.bump && p.content == content {
                return Check::Proven {
                    serial: p.serial,
                    new: false,
                };
            }
            if id.bump < p.bump {
                return Check::Stale;
            }
        }
        let Some(cert) = self.certs.get(&proof.cert) else {
            return Check::UnknownCert(proof.cert);
        };
        if cert.name() != id.name {
            return Check::Refused(Refusal::WrongCertificate);
        }
        let serial = cert.serial();
        let Ok(sig) = <[u8; 64]>::try_from(&*proof.sig) else {
            return Check::Refused(Refusal::BadSignature);
        };
        // Decompressed now: once per new identity, next to the signature
        // check it serves.
        let Ok(key) = cert.verifying_key() else {
            return Check::Refused(Refusal::BadSignature);
        };
        if key
            .verify_strict(
                &id.signed_bytes(&self.cluster),
                &Signature::from_bytes(&sig),
            )
            .is_err()
        {
            return Check::Refused(Refusal::BadSignature);
        }
        if id.bump > unix_ms.saturating_add(self.settings.bump_slack.as_millis() as u64) {
            return Check::Refused(Refusal::FutureBump);
        }
        if self
            .proven
            .get(id.name.as_str())
            .is_some_and(|p| p.bump == id.bump)
        {
            return Check::Refused(Refusal::TwoContents);
        }
        if let Some(heard) = self.heard.get(&id.addr) {
            if *heard.name != *id.name
                && nanos(mono).saturating_sub(heard.at_ns) < nanos(self.settings.address_hold)
            {
                return Check::Refused(Refusal::AddressTaken);
            }
        }
        if self.proven.len() >= self.settings.capacity
            && !self.proven.contains_key(id.name.as_str())
        {
            // Full of names: make room from names whose certificate is gone.
            let certs = &self.certs;
            let serials: std::collections::HashSet<u64> =
                certs.values().map(|v| v.serial()).collect();
            self.proven.retain(|_, p| serials.contains(&p.serial));
        }
        self.keep_proven(
            id,
            Proven {
                bump: id.bump,
                content,
                serial,
                cert: proof.cert,
            },
        );
        Check::Proven { serial, new: true }
    }

    /// Forget `name` (it left, was revoked or forgotten): its identity is
    /// checked again if it comes back.
    pub fn forget(&mut self, name: &str) {
        self.proven.remove(name);
    }

    fn content(&self, id: &NodeId) -> [u8; 16] {
        let full: [u8; 32] = Sha256::digest(id.signed_bytes(&self.cluster)).into();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// Verify a signature by `name`'s proven certificate key over `bytes`
    /// (a signed leave notice): the certificate its latest proven
    /// identity names, found by digest (not by a scan of every
    /// certificate held).
    pub fn verify_by(&self, name: &str, bytes: &[u8], sig: &[u8]) -> bool {
        let Some(proven) = self.proven.get(name) else {
            return false;
        };
        let Some(v) = self.certs.get(&proven.cert) else {
            return false;
        };
        let Ok(sig) = <[u8; 64]>::try_from(sig) else {
            return false;
        };
        v.serial() == proven.serial
            && v.name() == name
            && v.verifying_key().is_ok_and(|key| {
                key.verify_strict(bytes, &Signature::from_bytes(&sig))
                    .is_ok()
            })
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::identity::IdentitySigner;
    use crate::trust::testing::*;
    use crate::trust::{Credentials, Role};

    const NOW: u64 = 1_800_000_000_000;

    fn signer(creds: &Credentials) -> Arc<IdentitySigner> {
        Arc::new(IdentitySigner::new(
            creds.key.clone(),
            cert_digest(&creds.cert),
            "c",
        ))
    }

    fn id(name: &str, port: u16, bump: u64) -> NodeId {
        NodeId::new(
            name,
            SocketAddr::from(([127, 0, 0, 1], port)),
            bump,
            BTreeMap::new(),
        )
    }

    fn book(cas: &[&Credentials], nodes: &[&Credentials]) -> MemberBook {
        let mut b = MemberBook::new("c", bundle(cas), BookSettings::default());
        for n in nodes {
            b.learn_cert(&n.cert, NOW / 1000).unwrap();
        }
        b
    }

    #[test]
    fn a_node_proves_its_own_identity_and_a_repeat_is_cached() {
        let ca = ca(1);
        let a = creds(&ca, Role::Node, "a", 2);
        let mut book = book(&[&ca], &[&a]);
        let me = id("a", 1, NOW).signed(signer(&a));
        assert!(matches!(
            book.check(&me, NOW, Duration::ZERO),
            Check::Proven { new: true, .. }
        ));
        assert!(matches!(
            book.check(&me, NOW, Duration::ZERO),
            Check::Proven { new: false, .. }
        ));
    }

    #[test]
    fn nobody_else_can_create_rename_or_advance_an_identity() {
        let ca = ca(1);
        let a = creds(&ca, Role::Node, "a", 2);
        let b = creds(&ca, Role::Node, "b", 3);
        let mut book = book(&[&ca], &[&a, &b]);
        // No proof.
        assert_eq!(
            book.check(&id("a", 1, NOW), NOW, Duration::ZERO),
            Check::Refused(Refusal::Unproven)
        );
        // b signs an identity named a.
        let forged = id("a", 1, NOW).signed(signer(&b));
        assert_eq!(
            book.check(&forged, NOW, Duration::ZERO),
            Check::Refused(Refusal::WrongCertificate)
        );
        // a's proof copied onto an advanced bump, a new address, new tags.
        let real = id("a", 1, NOW).signed(signer(&a));
        assert!(matches!(
            book.check(&real, NOW, Duration::ZERO),
            Check::Proven { .. }
        ));
        let mut advanced = real.clone();
        advanced.bump += 1;
        let mut moved = real.clone();
        moved.addr = SocketAddr::from(([127, 0, 0, 1], 9));
        let mut retagged = real.clone();
        let mut tags = retagged.tags.to_map();
        tags.insert("role".into(), "x".into());
        retagged.tags = tags.into();
        for bad in [advanced, moved, retagged] {
            assert_eq!(
                book.check(&bad, NOW, Duration::ZERO),
                Check::Refused(Refusal::BadSignature)
            );
        }
    }

    #[test]
    fn bumps_are_bounded_by_the_clock_and_old_ones_are_stale() {
        let ca = ca(1);
        let a = creds(&ca, Role::Node, "a", 2);
        let mut book = book(&[&ca], &[&a]);
        let max = id("a", 1, u64::MAX).signed(signer(&a));
        assert_eq!(
            book.check(&max, NOW, Duration::ZERO),
            Check::Refused(Refusal::FutureBump)
        );
        let now = id("a", 1, NOW).signed(signer(&a));
        let old = id("a", 1, NOW - 5).signed(signer(&a));
        assert!(matches!(
            book.check(&now, NOW, Duration::ZERO),
            Check::Proven { .. }
        ));
        assert_eq!(book.check(&old, NOW, Duration::ZERO), Check::Stale);
    }

    #[test]
    fn a_live_nodes_address_cannot_be_taken_by_another_name() {
        let ca = ca(1);
        let v = creds(&ca, Role::Node, "victim", 2);
        let c = creds(&ca, Role::Node, "compromised", 3);
        let mut book = book(&[&ca], &[&v, &c]);
        let victim = id("victim", 1, NOW).signed(signer(&v));
        assert!(matches!(
            book.check(&victim, NOW, Duration::ZERO),
            Check::Proven { .. }
        ));
        book.heard_from(&victim, Duration::from_secs(10));
        let ghost = id("compromised", 1, NOW + 1000).signed(signer(&c));
        assert_eq!(
            book.check(&ghost, NOW, Duration::from_secs(20)),
            Check::Refused(Refusal::AddressTaken)
        );
        // Once the victim has been silent for the hold, the address is free.
        assert!(matches!(
            book.check(&ghost, NOW, Duration::from_secs(71)),
            Check::Proven { .. }
        ));
    }

    #[test]
    fn an_unknown_certificate_is_asked_for_and_a_foreign_one_refused() {
        let other_ca = ca(9);
        let ca = ca(1);
        let a = creds(&ca, Role::Node, "a", 2);
        let stranger = creds(&other_ca, Role::Node, "s", 3);
        let mut book = book(&[&ca], &[]);
        let me = id("a", 1, NOW).signed(signer(&a));
        assert_eq!(
            book.check(&me, NOW, Duration::ZERO),
            Check::UnknownCert(cert_digest(&a.cert))
        );
        assert!(book.learn_cert(&stranger.cert, NOW / 1000).is_err());
        book.learn_cert(&a.cert, NOW / 1000).unwrap();
        assert!(matches!(
            book.check(&me, NOW, Duration::ZERO),
            Check::Proven { .. }
        ));
    }
}
