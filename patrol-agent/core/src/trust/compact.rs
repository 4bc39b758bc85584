//! [`CompactCert`]: a node certificate as a member book and the pair-key
//! cache keep it, one per member.
//!
//! A node holds the certificate of every member (to prove their identities,
//! to answer a peer that asks for one, to derive the pair key): at 100,000
//! members the decoded form ([`Verified`]: the body with its role, name and
//! signature, and the decompressed Ed25519 point, about 450 bytes inline
//! plus two allocations) cost more than everything else a member costs.
//! This keeps the certificate's encoding (what a peer is sent, about 130
//! bytes) and, in a small header before it, the fields the hot paths read:
//! serial, `not_after` and where the name is in the encoding. One shared
//! allocation: the book and [`super::PeerKeys`] hold the same one.
//!
//! What is rare is decoded on demand: the whole [`Certificate`] (to send
//! it, or to check an answer under an expired one) and the public key's
//! Edwards point (an identity's proof, a pair key's derivation, a leave
//! notice: each about a microsecond's decompression next to a signature
//! check or an X25519).

use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use super::cert::Certificate;
use super::pairwise::CertDigest;
use super::TrustError;

/// Header bytes before the encoding: serial (8, little-endian), not_after
/// (8), the name's offset in the encoding (1) and its length (1).
const HEADER: usize = 18;

/// A certificate kept compactly: its encoding plus a header of the fields
/// read often (module doc). Cloning shares it.
#[derive(Clone, PartialEq, Eq)]
pub struct CompactCert(Arc<[u8]>);

impl std::fmt::Debug for CompactCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactCert")
            .field("name", &self.name())
            .field("serial", &self.serial())
            .field("not_after", &self.not_after())
            .finish_non_exhaustive()
    }
}

impl CompactCert {
    /// `cert` kept compactly. This checks nothing about who signed it: the
    /// caller keeps only a certificate it checked (or vouches for).
    pub fn new(cert: &Certificate) -> Result<CompactCert, TrustError> {
        let encoded = cert.encode();
        let body = &cert.body;
        // The name is followed by the public key, the two times, the
        // issuer and the signature: its end is the encoding's length less
        // theirs.
        let after = (
            &body.public_key,
            body.not_before,
            body.not_after,
            &body.issuer,
            &cert.signature,
        );
        let mut size = bincode::enc::write::SizeWriter::default();
        bincode::serde::encode_into_writer(after, &mut size, bincode::config::standard())
            .map_err(|e| TrustError::Malformed(format!("does not encode: {e}")))?;
        let name = body.name.as_bytes();
        let misplaced = || {
            TrustError::Malformed(
                "the certificate's name is not where its layout puts it, or too long".into(),
            )
        };
        let at = encoded
            .len()
            .checked_sub(size.bytes_written + name.len())
            .filter(|&at| {
                encoded.get(at..at + name.len()) == Some(name)
                    && encoded.get(at + name.len()..at + name.len() + 32)
                        == Some(&body.public_key[..])
            })
            .ok_or_else(misplaced)?;
        let at_u8 = u8::try_from(at).map_err(|_| misplaced())?;
        let len_u8 = u8::try_from(name.len()).map_err(|_| misplaced())?;
        let mut bytes = Vec::with_capacity(HEADER + encoded.len());
        bytes.extend_from_slice(&body.serial.to_le_bytes());
        bytes.extend_from_slice(&body.not_after.to_le_bytes());
        bytes.push(at_u8);
        bytes.push(len_u8);
        bytes.extend_from_slice(&encoded);
        Ok(CompactCert(Arc::from(bytes)))
    }

    /// The certificate's encoding (what [`Certificate::encode`] gives).
    pub fn encoded(&self) -> &[u8] {
        &self.0[HEADER..]
    }

    /// The certificate, decoded (to send it, or check it again).
    pub fn certificate(&self) -> Result<Certificate, TrustError> {
        Certificate::decode(self.encoded())
    }

    /// Its digest ([`super::cert_digest`] of the certificate).
    pub fn digest(&self) -> CertDigest {
        let full: [u8; 32] = Sha256::digest(self.encoded()).into();
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&full[..16]);
        digest
    }

    pub fn serial(&self) -> u64 {
        u64::from_le_bytes(self.header_u64(0))
    }

    /// Unix seconds.
    pub fn not_after(&self) -> u64 {
        u64::from_le_bytes(self.header_u64(8))
    }

    pub fn name(&self) -> &str {
        let (at, len) = self.name_range();
        // `new` took these bytes from a `String`.
        std::str::from_utf8(&self.encoded()[at..at + len]).unwrap_or("")
    }

    /// The subject's public key, decompressed now.
    pub fn verifying_key(&self) -> Result<VerifyingKey, TrustError> {
        let (at, len) = self.name_range();
        let bytes: [u8; 32] = self.encoded()[at + len..at + len + 32]
            .try_into()
            .map_err(|_| TrustError::Malformed("a truncated public key".into()))?;
        VerifyingKey::from_bytes(&bytes).map_err(|_| {
            TrustError::Malformed("the public key is not a valid Ed25519 point".into())
        })
    }

    fn header_u64(&self, at: usize) -> [u8; 8] {
        let mut out = [0u8; 8];
        out.copy_from_slice(&self.0[at..at + 8]);
        out
    }

    fn name_range(&self) -> (usize, usize) {
        (usize::from(self.0[16]), usize::from(self.0[17]))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{cert_digest, Role, Scope};
    use super::*;

    #[test]
    fn a_compact_certificate_gives_back_what_the_certificate_holds() {
        let ca = ca(1);
        let names = ["a", "node-000123", &"n".repeat(180)];
        for (i, name) in names.iter().enumerate() {
            let c = creds(&ca, Role::Node, name, 2 + i as u8);
            let compact = CompactCert::new(&c.cert).unwrap();
            assert_eq!(compact.name(), *name);
            assert_eq!(compact.serial(), c.cert.body.serial);
            assert_eq!(compact.not_after(), c.cert.body.not_after);
            assert_eq!(compact.encoded(), &c.cert.encode()[..]);
            assert_eq!(compact.certificate().unwrap(), c.cert);
            assert_eq!(compact.digest(), cert_digest(&c.cert));
            assert_eq!(compact.verifying_key().unwrap(), c.key.verifying_key());
        }
        // Another role's body puts more before the name: still found.
        let op = creds(&ca, Role::Operator(Scope::full(1)), "op", 9);
        let compact = CompactCert::new(&op.cert).unwrap();
        assert_eq!(compact.name(), "op");
        assert_eq!(compact.verifying_key().unwrap(), op.key.verifying_key());
    }
}
