//! The trust bundle: the CA certificates a node or the CLI accepts, and
//! the deny list of revoked serials. Holding several CAs is how a CA is
//! rotated: issue from the new one while both are in every bundle, then
//! drop the old one.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::VerifyingKey;

use super::cert::{Certificate, KeyId, Role};
use super::TrustError;

/// Clock tolerance when checking `not_before`, seconds: a certificate
/// issued on a machine whose clock runs a little ahead is not refused for
/// its first minutes.
pub const NOT_BEFORE_TOLERANCE_S: u64 = 300;

/// A certificate the bundle accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub cert: Certificate,
    pub key: VerifyingKey,
}

impl Verified {
    pub fn name(&self) -> &str {
        &self.cert.body.name
    }

    pub fn serial(&self) -> u64 {
        self.cert.body.serial
    }

    pub fn role(&self) -> &Role {
        &self.cert.body.role
    }
}

/// The deny list: certificate serials refused everywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    serials: BTreeSet<u64>,
}

impl Revocations {
    pub fn new(serials: impl IntoIterator<Item = u64>) -> Revocations {
        Revocations {
            serials: serials.into_iter().collect(),
        }
    }

    /// The deny-list file: one serial per line in hex (as `patrol ca
    /// show` prints it), `#` comments and blank lines ignored.
    pub fn parse(text: &str) -> Result<Revocations, TrustError> {
        let mut serials = BTreeSet::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let hex = line.trim_start_matches("0x");
            let serial = u64::from_str_radix(hex, 16).map_err(|_| {
                TrustError::Malformed(format!(
                    "deny list line {}: `{line}` is not a certificate serial (16 hex digits)",
                    n + 1
                ))
            })?;
            serials.insert(serial);
        }
        Ok(Revocations { serials })
    }

    pub fn contains(&self, serial: u64) -> bool {
        self.serials.contains(&serial)
    }

    pub fn len(&self) -> usize {
        self.serials.len()
    }

    pub fn is_empty(&self) -> bool {
        self.serials.is_empty()
    }
}

/// Accepted CAs by key id, plus the deny list.
#[derive(Debug, Clone, Default)]
pub struct TrustBundle {
    cas: BTreeMap<KeyId, Verified>,
    revoked: Revocations,
}

impl TrustBundle {
    /// A bundle of `cas`, each a self-signed CA certificate.
    pub fn new(cas: Vec<Certificate>, revoked: Revocations) -> Result<TrustBundle, TrustError> {
        let mut map = BTreeMap::new();
        for cert in cas {
            if cert.body.role != Role::Ca {
                return Err(TrustError::WrongRole {
                    name: cert.body.name.clone(),
                    expected: "ca",
                    found: cert.body.role.word(),
                });
            }
            let key = cert.public_key()?;
            let id = KeyId::of(&key);
            if cert.body.issuer != id || !cert.signed_by(&key) {
                return Err(TrustError::BadSignature {
                    name: cert.body.name.clone(),
                });
            }
            map.insert(id, Verified { cert, key });
        }
        if map.is_empty() {
            return Err(TrustError::Malformed(
                "the trust bundle holds no CA certificate".into(),
            ));
        }
        Ok(TrustBundle { cas: map, revoked })
    }

    /// The same CAs with a new deny list (SIGHUP reload).
    pub fn with_revocations(&self, revoked: Revocations) -> TrustBundle {
        TrustBundle {
            cas: self.cas.clone(),
            revoked,
        }
    }

    pub fn revocations(&self) -> &Revocations {
        &self.revoked
    }

    pub fn cas(&self) -> impl Iterator<Item = &Verified> {
        self.cas.values()
    }

    /// Accept `cert` at `now_s` (unix seconds) if a CA of this bundle
    /// signed it, neither it nor that CA is expired or revoked, and its
    /// role is `expected` (by word: `node`, `operator`).
    pub fn verify(
        &self,
        cert: &Certificate,
        expected: &'static str,
        now_s: u64,
    ) -> Result<Verified, TrustError> {
        let b = &cert.body;
        if b.role.word() != expected {
            return Err(TrustError::WrongRole {
                name: b.name.clone(),
                expected,
                found: b.role.word(),
            });
        }
        let ca = self
            .cas
            .get(&b.issuer)
            .ok_or_else(|| TrustError::UnknownIssuer {
                name: b.name.clone(),
                issuer: b.issuer.to_string(),
            })?;
        if !cert.signed_by(&ca.key) {
            return Err(TrustError::BadSignature {
                name: b.name.clone(),
            });
        }
        for c in [&ca.cert, cert] {
            if self.revoked.contains(c.body.serial) {
                return Err(TrustError::Revoked {
                    name: c.body.name.clone(),
                    serial: c.body.serial,
                });
            }
            if now_s > c.body.not_after {
                return Err(TrustError::Expired {
                    name: c.body.name.clone(),
                    not_after: c.body.not_after,
                });
            }
            if now_s.saturating_add(NOT_BEFORE_TOLERANCE_S) < c.body.not_before {
                return Err(TrustError::NotYetValid {
                    name: c.body.name.clone(),
                    not_before: c.body.not_before,
                });
            }
        }
        Ok(Verified {
            cert: cert.clone(),
            key: cert.public_key()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::super::cert::{CertBody, CERT_VERSION};
    use super::*;

    fn node_cert(ca: &SigningKey, name: &str, serial: u64, not_after: u64) -> Certificate {
        let key = SigningKey::from_bytes(&[serial as u8; 32]);
        Certificate::sign(
            CertBody {
                version: CERT_VERSION,
                serial,
                role: Role::Node,
                name: name.into(),
                public_key: key.verifying_key().to_bytes(),
                not_before: 100,
                not_after,
                issuer: KeyId::of(&ca.verifying_key()),
            },
            ca,
        )
    }

    fn bundle(cas: &[&SigningKey], revoked: &[u64]) -> TrustBundle {
        let certs = cas
            .iter()
            .enumerate()
            .map(|(i, k)| Certificate::new_ca(k, &format!("ca{i}"), 1000 + i as u64, 0, 10_000))
            .collect();
        TrustBundle::new(certs, Revocations::new(revoked.iter().copied())).unwrap()
    }

    #[test]
    fn a_node_certificate_from_a_bundled_ca_is_accepted_within_its_window() {
        let ca = SigningKey::from_bytes(&[1; 32]);
        let b = bundle(&[&ca], &[]);
        let cert = node_cert(&ca, "host-7", 7, 5000);
        assert_eq!(b.verify(&cert, "node", 200).unwrap().name(), "host-7");
        assert!(matches!(
            b.verify(&cert, "node", 5001),
            Err(TrustError::Expired { .. })
        ));
        assert!(matches!(
            b.verify(&cert, "operator", 200),
            Err(TrustError::WrongRole { .. })
        ));
    }

    #[test]
    fn an_unknown_ca_a_forged_body_and_a_revoked_serial_are_refused() {
        let ca = SigningKey::from_bytes(&[1; 32]);
        let other = SigningKey::from_bytes(&[2; 32]);
        let b = bundle(&[&ca], &[9]);
        assert!(matches!(
            b.verify(&node_cert(&other, "host-7", 7, 5000), "node", 200),
            Err(TrustError::UnknownIssuer { .. })
        ));
        let mut forged = node_cert(&ca, "host-7", 7, 5000);
        forged.body.name = "host-8".into();
        assert!(matches!(
            b.verify(&forged, "node", 200),
            Err(TrustError::BadSignature { .. })
        ));
        assert!(matches!(
            b.verify(&node_cert(&ca, "host-9", 9, 5000), "node", 200),
            Err(TrustError::Revoked { serial: 9, .. })
        ));
    }

    #[test]
    fn a_bundle_with_two_cas_accepts_both_until_one_is_dropped() {
        let old = SigningKey::from_bytes(&[1; 32]);
        let new = SigningKey::from_bytes(&[2; 32]);
        let both = bundle(&[&old, &new], &[]);
        let a = node_cert(&old, "a", 3, 5000);
        let b = node_cert(&new, "b", 4, 5000);
        assert!(both.verify(&a, "node", 200).is_ok());
        assert!(both.verify(&b, "node", 200).is_ok());
        let only_new = bundle(&[&new], &[]);
        assert!(only_new.verify(&a, "node", 200).is_err());
        assert!(only_new.verify(&b, "node", 200).is_ok());
    }

    #[test]
    fn the_deny_list_file_reads_hex_serials_and_names_a_bad_line() {
        let r = Revocations::parse("# revoked\n00000000000000ff\n0x10 # lost laptop\n\n").unwrap();
        assert!(r.contains(255) && r.contains(16) && r.len() == 2);
        let e = Revocations::parse("ff\nnope\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}
