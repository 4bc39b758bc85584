//! Node and operator identities: who a node is, and who may ask.
//!
//! The cluster key (the envelope) keeps outsiders off the mesh; it says
//! nothing about which member sent what. This module adds identities on
//! top, all pure functions over bytes and times given as arguments:
//!
//! - [`cert`]: the certificate format (a small signed structure, not
//!   X.509) and the armored text form of certificates and private keys;
//!   `cert_layout.rs` lays its body out in each version (1, and 2 with an
//!   operator scope's share);
//! - [`compact`]: a checked node certificate as a member book keeps it,
//!   compactly (one per member);
//! - [`bundle`]: the CAs a node accepts (several, for rotation), the
//!   issuing CAs below them, and the deny list of revoked serials;
//! - [`names`]: the name patterns an issuing CA (and an enrollment token)
//!   is limited to;
//! - [`scope`]: what an operator's certificate lets it ask;
//! - [`authorization`]: an operator's signature over one sweep request,
//!   checked by the coordinator and again by every participant;
//! - [`pairwise`]: keys shared by two certified nodes (X25519 from their
//!   Ed25519 keys), cached, so a node's answer carries a proof only that
//!   node and its coordinator can make, checked with one HMAC.

pub mod authorization;
pub mod bundle;
pub mod cert;
mod cert_layout;
pub mod compact;
pub mod forget;
pub mod names;
pub mod pairwise;
pub mod scope;

pub use authorization::{AuthError, Authorization};
pub use bundle::{Revocations, TrustBundle, Verified};
pub use cert::{CertBody, Certificate, KeyId, Role, CERT_VERSION};
pub use compact::CompactCert;
pub use forget::SignedForget;
pub use names::NamePatterns;
pub use pairwise::{cert_digest, CertDigest, PairKey, PeerKeys, PACKET_TAG_LEN};
pub use scope::{Scope, ScopeError};

pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// Why a certificate, key or bundle is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("certificate `{name}` is signed by CA {issuer}, which is not in the trust bundle")]
    UnknownIssuer { name: String, issuer: String },
    #[error("certificate `{name}` has a signature that does not verify")]
    BadSignature { name: String },
    #[error("certificate `{name}` expired at {not_after} (unix seconds)")]
    Expired { name: String, not_after: u64 },
    #[error("certificate `{name}` is not valid before {not_before} (unix seconds)")]
    NotYetValid { name: String, not_before: u64 },
    #[error("certificate `{name}` (serial {serial:016x}) is revoked")]
    Revoked { name: String, serial: u64 },
    #[error("certificate `{name}` is a {found} certificate, {expected} expected")]
    WrongRole {
        name: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("certificate `{cert}` is for another name than this node's `{node}`")]
    NameMismatch { cert: String, node: String },
    #[error("the private key does not belong to certificate `{name}`")]
    KeyMismatch { name: String },
    #[error(
        "issuer `{issuer}` signs node certificates only, not the {found} certificate `{name}`"
    )]
    IssuerRole {
        issuer: String,
        name: String,
        found: &'static str,
    },
    #[error("issuer `{issuer}` may sign only names matching {patterns}, not `{name}`")]
    NameOutsideIssuer {
        issuer: String,
        name: String,
        patterns: String,
    },
}

/// A node's or operator's own key and certificate, checked to match.
#[derive(Clone)]
pub struct Credentials {
    pub key: SigningKey,
    pub cert: Certificate,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("name", &self.cert.body.name)
            .field("serial", &format_args!("{:016x}", self.cert.body.serial))
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Pair `key` with `cert`, refusing a key that is not the one the
    /// certificate binds.
    pub fn new(key: SigningKey, cert: Certificate) -> Result<Credentials, TrustError> {
        if key.verifying_key().to_bytes() != cert.body.public_key {
            return Err(TrustError::KeyMismatch {
                name: cert.body.name.clone(),
            });
        }
        Ok(Credentials { key, cert })
    }

    pub fn name(&self) -> &str {
        &self.cert.body.name
    }
}

/// What a CA needs to issue a certificate.
#[derive(Debug, Clone)]
pub struct Issue<'a> {
    pub role: Role,
    pub name: &'a str,
    pub public_key: VerifyingKey,
    pub serial: u64,
    /// Unix seconds.
    pub not_before: u64,
    /// Unix seconds.
    pub not_after: u64,
}

/// Sign `what` with the CA `ca` (its key and its own certificate): a
/// root CA signs any role but another root; an issuer signs node
/// certificates for the names its patterns match.
pub fn issue(ca: &Credentials, what: Issue<'_>) -> Result<Certificate, TrustError> {
    let signer = &ca.cert.body;
    match (&signer.role, &what.role) {
        (Role::Ca, Role::Ca) => {
            return Err(TrustError::WrongRole {
                name: what.name.to_string(),
                expected: "node, operator or issuer",
                found: "ca",
            })
        }
        (Role::Ca, _) => {}
        (Role::Issuer(names), Role::Node) => {
            if !names.matches(what.name) {
                return Err(TrustError::NameOutsideIssuer {
                    issuer: signer.name.clone(),
                    name: what.name.to_string(),
                    patterns: names.describe(),
                });
            }
        }
        (Role::Issuer(_), other) => {
            return Err(TrustError::IssuerRole {
                issuer: signer.name.clone(),
                name: what.name.to_string(),
                found: other.word(),
            })
        }
        (other, _) => {
            return Err(TrustError::WrongRole {
                name: signer.name.clone(),
                expected: "ca or issuer",
                found: other.word(),
            })
        }
    }
    if what.name.is_empty() || what.name.len() > cert::MAX_CERT_NAME {
        return Err(TrustError::Malformed(format!(
            "a certificate name must be 1 to {} bytes",
            cert::MAX_CERT_NAME
        )));
    }
    // A certificate never outlives its CA.
    let not_after = what.not_after.min(ca.cert.body.not_after);
    Ok(Certificate::sign(
        CertBody {
            version: CertBody::version_for(&what.role),
            serial: what.serial,
            role: what.role,
            name: what.name.to_string(),
            public_key: what.public_key.to_bytes(),
            not_before: what.not_before,
            not_after,
            issuer: KeyId::of(&ca.key.verifying_key()),
        },
        &ca.key,
    ))
}

#[cfg(any(test, feature = "test-support"))]
pub mod testing {
    //! A throwaway CA for tests: this crate's, and (with the feature
    //! `test-support`, which only dev-dependencies and the test harness
    //! turn on) every other crate's. Keys come from a seed byte, so a test
    //! repeats; [`ca_with`] and [`issued`] take any key, name and validity.
    use std::ops::Range;

    use super::*;

    /// CA `ca-SEED` (serial SEED), its key from `seed`, valid from the
    /// epoch to far in the future.
    pub fn ca(seed: u8) -> Credentials {
        let key = SigningKey::from_bytes(&[seed; 32]);
        ca_with(key, &format!("ca-{seed}"), seed as u64, 0..u64::MAX / 2)
    }

    /// CA `name` holding `key`, valid over `valid` (Unix seconds).
    pub fn ca_with(key: SigningKey, name: &str, serial: u64, valid: Range<u64>) -> Credentials {
        let cert = Certificate::new_ca(&key, name, serial, valid.start, valid.end);
        Credentials::new(key, cert).expect("a CA's own key")
    }

    /// A certificate of `ca` for `role` and `name` (serial 10,000 + SEED),
    /// its key from `seed`, valid forever (as long as its CA).
    pub fn creds(ca: &Credentials, role: Role, name: &str, seed: u8) -> Credentials {
        let key = SigningKey::from_bytes(&[seed; 32]);
        issued(ca, key, role, name, 10_000 + seed as u64, 0..u64::MAX)
    }

    /// A certificate of `ca` for `key`, `role` and `name`, valid over
    /// `valid` (Unix seconds).
    pub fn issued(
        ca: &Credentials,
        key: SigningKey,
        role: Role,
        name: &str,
        serial: u64,
        valid: Range<u64>,
    ) -> Credentials {
        let cert = issue(
            ca,
            Issue {
                role,
                name,
                public_key: key.verifying_key(),
                serial,
                not_before: valid.start,
                not_after: valid.end,
            },
        )
        .expect("issue a certificate");
        Credentials::new(key, cert).expect("the key of the certificate")
    }

    /// A bundle of `cas`, nothing revoked.
    pub fn bundle(cas: &[&Credentials]) -> TrustBundle {
        bundle_revoking(cas, &[])
    }

    /// A bundle of `cas` with `revoked` serials.
    pub fn bundle_revoking(cas: &[&Credentials], revoked: &[u64]) -> TrustBundle {
        TrustBundle::new(
            cas.iter().map(|c| c.cert.clone()).collect(),
            Revocations::new(revoked.iter().copied()),
        )
        .expect("a bundle")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn credentials_refuse_a_key_that_is_not_the_certificates() {
        let ca = ca(1);
        let node = creds(&ca, Role::Node, "host-1", 2);
        let other = SigningKey::from_bytes(&[3; 32]);
        assert!(matches!(
            Credentials::new(other, node.cert),
            Err(TrustError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn an_issued_certificate_never_outlives_its_ca() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let ca =
            Credentials::new(key.clone(), Certificate::new_ca(&key, "ca", 1, 0, 5000)).unwrap();
        let node = creds(&ca, Role::Node, "n", 2);
        assert_eq!(node.cert.body.not_after, 5000);
    }
}
