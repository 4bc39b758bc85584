//! Node and operator identities: who a node is, and who may ask.
//!
//! The cluster key (the envelope) keeps outsiders off the mesh; it says
//! nothing about which member sent what. This module adds identities on
//! top, all pure functions over bytes and times given as arguments:
//!
//! - [`cert`]: the certificate format (a small signed structure, not
//!   X.509) and the armored text form of certificates and private keys;
//! - [`bundle`]: the CAs a node accepts (several, for rotation) and the
//!   deny list of revoked serials;
//! - [`scope`]: what an operator's certificate lets it ask;
//! - [`authorization`]: an operator's signature over one sweep request,
//!   checked by the coordinator and again by every participant;
//! - [`pairwise`]: keys shared by two certified nodes (X25519 from their
//!   Ed25519 keys), cached, so a node's answer carries a proof only that
//!   node and its coordinator can make, checked with one HMAC.

pub mod authorization;
pub mod bundle;
pub mod cert;
pub mod pairwise;
pub mod scope;

pub use authorization::{AuthError, Authorization};
pub use bundle::{Revocations, TrustBundle, Verified};
pub use cert::{CertBody, Certificate, KeyId, Role, CERT_VERSION};
pub use pairwise::{cert_digest, CertDigest, PairKey, PeerKeys};
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

/// Sign `what` with the CA `ca` (its key and its own certificate).
pub fn issue(ca: &Credentials, what: Issue<'_>) -> Result<Certificate, TrustError> {
    if ca.cert.body.role != Role::Ca {
        return Err(TrustError::WrongRole {
            name: ca.cert.body.name.clone(),
            expected: "ca",
            found: ca.cert.body.role.word(),
        });
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
            version: CERT_VERSION,
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

#[cfg(test)]
pub(crate) mod testing {
    //! A throwaway CA for tests.
    use super::*;

    pub fn ca(seed: u8) -> Credentials {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let cert = Certificate::new_ca(&key, &format!("ca-{seed}"), seed as u64, 0, u64::MAX / 2);
        Credentials::new(key, cert).unwrap()
    }

    pub fn creds(ca: &Credentials, role: Role, name: &str, seed: u8) -> Credentials {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let cert = issue(
            ca,
            Issue {
                role,
                name,
                public_key: key.verifying_key(),
                serial: 10_000 + seed as u64,
                not_before: 0,
                not_after: u64::MAX,
            },
        )
        .unwrap();
        Credentials::new(key, cert).unwrap()
    }

    pub fn bundle(cas: &[&Credentials]) -> TrustBundle {
        TrustBundle::new(
            cas.iter().map(|c| c.cert.clone()).collect(),
            Revocations::default(),
        )
        .unwrap()
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
