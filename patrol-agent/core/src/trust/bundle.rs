//! The trust bundle: the CA certificates a node or the CLI accepts, the
//! issuing CAs below them, and the deny list of revoked serials. Holding
//! several CAs is how a CA is rotated: issue from the new one while both
//! are in every bundle, then drop the old one.
//!
//! A root CA (self-signed, [`Role::Ca`]) signs node, operator and issuer
//! certificates. An issuer ([`Role::Issuer`], signed by a root of the
//! bundle) signs node certificates only, for the names its patterns
//! match; a certificate it signed is checked along its chain, node →
//! issuer → root, and each link must be within its validity and off the
//! deny list, so revoking an issuer revokes everything it signed.

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

/// Accepted CAs and issuers by key id, plus the deny list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustBundle {
    cas: BTreeMap<KeyId, Verified>,
    /// Issuers whose signature by a root in `cas` was checked (their
    /// validity and revocation are checked at each use).
    issuers: BTreeMap<KeyId, Verified>,
    revoked: Revocations,
}

impl TrustBundle {
    /// A bundle of `certs`: self-signed CA certificates and issuer
    /// certificates signed by one of them, in any order. Anything else,
    /// or an issuer whose root is not among them, is refused.
    pub fn new(certs: Vec<Certificate>, revoked: Revocations) -> Result<TrustBundle, TrustError> {
        let (roots, rest): (Vec<_>, Vec<_>) =
            certs.into_iter().partition(|c| c.body.role == Role::Ca);
        let mut cas = BTreeMap::new();
        for cert in roots {
            let key = cert.public_key()?;
            let id = KeyId::of(&key);
            if cert.body.issuer != id || !cert.signed_by(&key) {
                return Err(TrustError::BadSignature {
                    name: cert.body.name.clone(),
                });
            }
            cas.insert(id, Verified { cert, key });
        }
        if cas.is_empty() {
            return Err(TrustError::Malformed(
                "the trust bundle holds no CA certificate".into(),
            ));
        }
        let mut bundle = TrustBundle {
            cas,
            issuers: BTreeMap::new(),
            revoked,
        };
        for cert in rest {
            bundle.add_issuer(cert)?;
        }
        Ok(bundle)
    }

    /// Add an issuer certificate signed by a root of this bundle (an
    /// issuer already held is kept once).
    pub fn add_issuer(&mut self, cert: Certificate) -> Result<(), TrustError> {
        if !matches!(cert.body.role, Role::Issuer(_)) {
            return Err(TrustError::WrongRole {
                name: cert.body.name.clone(),
                expected: "ca or issuer",
                found: cert.body.role.word(),
            });
        }
        let root = self
            .cas
            .get(&cert.body.issuer)
            .ok_or_else(|| TrustError::UnknownIssuer {
                name: cert.body.name.clone(),
                issuer: cert.body.issuer.to_string(),
            })?;
        if !cert.signed_by(&root.key) {
            return Err(TrustError::BadSignature {
                name: cert.body.name.clone(),
            });
        }
        let key = cert.public_key()?;
        self.issuers.insert(KeyId::of(&key), Verified { cert, key });
        Ok(())
    }

    /// The same CAs with a new deny list (SIGHUP reload).
    pub fn with_revocations(&self, revoked: Revocations) -> TrustBundle {
        TrustBundle {
            cas: self.cas.clone(),
            issuers: self.issuers.clone(),
            revoked,
        }
    }

    pub fn revocations(&self) -> &Revocations {
        &self.revoked
    }

    /// The root CAs.
    pub fn cas(&self) -> impl Iterator<Item = &Verified> {
        self.cas.values()
    }

    /// The issuing CAs (each signed by a root of this bundle).
    pub fn issuers(&self) -> impl Iterator<Item = &Verified> {
        self.issuers.values()
    }

    /// Every certificate of the bundle, roots first: what a bundle file
    /// holds.
    pub fn certificates(&self) -> Vec<&Certificate> {
        self.cas
            .values()
            .chain(self.issuers.values())
            .map(|v| &v.cert)
            .collect()
    }

    /// Accept `cert` at `now_s` (unix seconds) if a CA of this bundle
    /// signed it (a root, or an issuer a root signed), no link of its
    /// chain is expired or revoked, and its role is `expected` (by word:
    /// `node`, `operator`, `issuer`). An issuer's certificate must be a
    /// node's, for a name its patterns match.
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
        let (signer, root) = match (self.cas.get(&b.issuer), self.issuers.get(&b.issuer)) {
            (Some(ca), _) => (ca, None),
            (None, Some(issuer)) => {
                // `add_issuer` holds issuer certificates only.
                let Role::Issuer(names) = &issuer.cert.body.role else {
                    return Err(TrustError::Malformed("an issuer without patterns".into()));
                };
                if b.role != Role::Node {
                    return Err(TrustError::IssuerRole {
                        issuer: issuer.cert.body.name.clone(),
                        name: b.name.clone(),
                        found: b.role.word(),
                    });
                }
                if !names.matches(&b.name) {
                    return Err(TrustError::NameOutsideIssuer {
                        issuer: issuer.cert.body.name.clone(),
                        name: b.name.clone(),
                        patterns: names.describe(),
                    });
                }
                (issuer, self.cas.get(&issuer.cert.body.issuer))
            }
            (None, None) => {
                return Err(TrustError::UnknownIssuer {
                    name: b.name.clone(),
                    issuer: b.issuer.to_string(),
                })
            }
        };
        if !cert.signed_by(&signer.key) {
            return Err(TrustError::BadSignature {
                name: b.name.clone(),
            });
        }
        let chain = root
            .map(|r| &r.cert)
            .into_iter()
            .chain([&signer.cert, cert]);
        for c in chain {
            self.check_link(c, now_s)?;
        }
        Ok(Verified {
            cert: cert.clone(),
            key: cert.public_key()?,
        })
    }

    /// One link of a chain: not revoked, within its validity.
    fn check_link(&self, c: &Certificate, now_s: u64) -> Result<(), TrustError> {
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
        Ok(())
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

    mod chains {
        //! Node → issuer → root.
        use super::super::super::testing::{ca, creds, issued};
        use super::super::super::{issue, Issue, NamePatterns, Role, TrustError};
        use super::*;

        fn issuer(root: &crate::trust::Credentials, patterns: &str) -> crate::trust::Credentials {
            let key = SigningKey::from_bytes(&[40; 32]);
            let names = NamePatterns::parse(patterns).unwrap();
            issued(root, key, Role::Issuer(names), "enroll-1", 4000, 0..9_000)
        }

        fn bundle_of(certs: &[&Certificate], revoked: &[u64]) -> TrustBundle {
            TrustBundle::new(
                certs.iter().map(|c| (*c).clone()).collect(),
                Revocations::new(revoked.iter().copied()),
            )
            .unwrap()
        }

        #[test]
        fn a_node_signed_by_an_issuer_verifies_through_it_to_the_root() {
            let root = ca(1);
            let iss = issuer(&root, "node-*");
            let node = issued(
                &iss,
                SigningKey::from_bytes(&[41; 32]),
                Role::Node,
                "node-7",
                77,
                0..u64::MAX,
            );
            // A certificate never outlives the issuer that signed it.
            assert_eq!(node.cert.body.not_after, 9_000);
            let b = bundle_of(&[&iss.cert, &root.cert], &[]);
            assert_eq!(b.verify(&node.cert, "node", 500).unwrap().name(), "node-7");
            assert_eq!(
                b.verify(&iss.cert, "issuer", 500).unwrap().name(),
                "enroll-1"
            );
            assert_eq!(b.issuers().count(), 1);
            assert_eq!(b.certificates().len(), 2);
            // Without the issuer in the bundle, the node's CA is unknown.
            let roots_only = bundle_of(&[&root.cert], &[]);
            assert!(matches!(
                roots_only.verify(&node.cert, "node", 500),
                Err(TrustError::UnknownIssuer { .. })
            ));
            // The issuer expired: the node it signed is refused with it.
            assert!(matches!(
                b.verify(&node.cert, "node", 9_001),
                Err(TrustError::Expired { name, .. }) if name == "enroll-1"
            ));
        }

        #[test]
        fn an_issuer_signs_only_nodes_named_by_its_patterns() {
            let root = ca(1);
            let iss = issuer(&root, "node-*");
            let key = SigningKey::from_bytes(&[42; 32]).verifying_key();
            let ask = |role: Role, name: &'static str| {
                issue(
                    &iss,
                    Issue {
                        role,
                        name,
                        public_key: key,
                        serial: 5,
                        not_before: 0,
                        not_after: 100,
                    },
                )
            };
            assert!(ask(Role::Node, "node-1").is_ok());
            assert!(matches!(
                ask(Role::Node, "db-1"),
                Err(TrustError::NameOutsideIssuer { .. })
            ));
            assert!(matches!(
                ask(Role::Operator(crate::trust::Scope::full(1000)), "node-op"),
                Err(TrustError::IssuerRole {
                    found: "operator",
                    ..
                })
            ));
            assert!(matches!(
                ask(Role::Ca, "node-ca"),
                Err(TrustError::IssuerRole { found: "ca", .. })
            ));
            assert!(matches!(
                ask(Role::Issuer(NamePatterns::any()), "node-i"),
                Err(TrustError::IssuerRole {
                    found: "issuer",
                    ..
                })
            ));
        }

        #[test]
        fn a_forged_issuer_certificate_is_refused_by_the_bundle_even_when_signed_by_the_issuer_key()
        {
            // An issuer key holder signs, by hand, what `issue` would refuse:
            // an operator, and a node outside its patterns. The bundle
            // refuses both.
            let root = ca(1);
            let iss = issuer(&root, "node-*");
            let b = bundle_of(&[&root.cert, &iss.cert], &[]);
            let sign = |role: Role, name: &str| {
                Certificate::sign(
                    CertBody {
                        version: CERT_VERSION,
                        serial: 9,
                        role,
                        name: name.into(),
                        public_key: SigningKey::from_bytes(&[43; 32]).verifying_key().to_bytes(),
                        not_before: 0,
                        not_after: 5000,
                        issuer: KeyId::of(&iss.key.verifying_key()),
                    },
                    &iss.key,
                )
            };
            let op = sign(Role::Operator(crate::trust::Scope::full(1000)), "node-op");
            assert!(matches!(
                b.verify(&op, "operator", 500),
                Err(TrustError::IssuerRole { .. })
            ));
            let outside = sign(Role::Node, "db-1");
            assert!(matches!(
                b.verify(&outside, "node", 500),
                Err(TrustError::NameOutsideIssuer { .. })
            ));
            // An issuer cannot vouch for another issuer either.
            let sub = sign(Role::Issuer(NamePatterns::any()), "sub");
            let mut with_sub = b.clone();
            assert!(matches!(
                with_sub.add_issuer(sub),
                Err(TrustError::UnknownIssuer { .. })
            ));
        }

        #[test]
        fn revoking_an_issuer_revokes_every_node_it_signed_and_no_other() {
            let root = ca(1);
            let iss = issuer(&root, "*");
            let by_issuer = issued(
                &iss,
                SigningKey::from_bytes(&[44; 32]),
                Role::Node,
                "a",
                70,
                0..5000,
            );
            let by_root = creds(&root, Role::Node, "b", 45);
            let b = bundle_of(&[&root.cert, &iss.cert], &[iss.cert.body.serial]);
            assert!(matches!(
                b.verify(&by_issuer.cert, "node", 500),
                Err(TrustError::Revoked { serial: 4000, .. })
            ));
            assert!(b.verify(&by_root.cert, "node", 500).is_ok());
            // The same bundle, deny list reloaded empty: accepted again.
            let reloaded = b.with_revocations(Revocations::default());
            assert!(reloaded.verify(&by_issuer.cert, "node", 500).is_ok());
        }

        #[test]
        fn a_bundle_refuses_an_issuer_of_a_root_it_does_not_hold_and_node_certificates() {
            let root = ca(1);
            let other = ca(2);
            let iss = issuer(&other, "*");
            let e = TrustBundle::new(
                vec![root.cert.clone(), iss.cert.clone()],
                Revocations::default(),
            );
            assert!(matches!(e, Err(TrustError::UnknownIssuer { .. })));
            let node = creds(&root, Role::Node, "n", 46);
            let e = TrustBundle::new(vec![root.cert.clone(), node.cert], Revocations::default());
            assert!(matches!(e, Err(TrustError::WrongRole { .. })));
        }
    }
}
