//! Certificates: a small signed structure binding a name and a role to an
//! Ed25519 public key, for a validity window, under a CA.
//!
//! ```text
//! certificate = bincode { body: CertBody, signature: [u8; 64] }
//! signature   = Ed25519(CA key, "patrol-cert-v1\0" || bincode(body))
//! CertBody    = { version: u8 = 1 | 2, serial: u64, role: Role,
//!                 name: String, public_key: [u8; 32], not_before: u64,
//!                 not_after: u64, issuer: [u8; 8] }
//! ```
//!
//! Times are unix seconds; `issuer` is the [`KeyId`] of the signing CA
//! (a CA certificate names itself). A certificate is about 130 bytes plus
//! its name (an operator's also carries its [`Scope`]). Version 2 adds an
//! operator scope's `share`; a body is written in the lowest version that
//! holds it, and both are read (`cert_layout.rs`). In files it is base64
//! between `-----BEGIN PATROL CERTIFICATE-----` lines, after `#` comment
//! lines a person can read; PROTOCOL.md documents the format.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::names::NamePatterns;
use super::scope::Scope;
use super::TrustError;

/// Newest layout of [`CertBody`] this build reads and writes (it reads
/// every version from 1). A body is written in the lowest version that
/// holds it ([`CertBody::version_for`]): 2 only for an operator scope with
/// a `share`, so every other certificate stays what version 1 readers
/// read.
pub const CERT_VERSION: u8 = 2;
/// Domain separation for certificate signatures.
const CERT_CONTEXT: &[u8] = b"patrol-cert-v1\0";
/// A certificate text or file larger than this is refused unread.
pub const MAX_CERT_BYTES: usize = 4096;
/// Longest name a certificate binds (a node name is far shorter; the
/// agent's own identity limit applies too).
pub const MAX_CERT_NAME: usize = 192;
const BEGIN_CERT: &str = "-----BEGIN PATROL CERTIFICATE-----";
const END_CERT: &str = "-----END PATROL CERTIFICATE-----";
const BEGIN_KEY: &str = "-----BEGIN PATROL PRIVATE KEY-----";
const END_KEY: &str = "-----END PATROL PRIVATE KEY-----";

/// First 8 bytes of SHA-256 of an Ed25519 public key: how a certificate
/// names its CA, and how a bundle finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> KeyId {
        let digest = Sha256::digest(key.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What a certificate lets its holder be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A cluster CA (self-signed): signs node and operator certificates.
    Ca,
    /// An agent: its answers are its own, and it may coordinate sweeps
    /// that operators ask for.
    Node,
    /// A person or a job that may ask what its scope allows.
    Operator(Scope),
    /// An issuing CA below a root [`Role::Ca`] (`patrol ca issue
    /// issuer`): signs node certificates only, for names its patterns
    /// match. Bundles verify node → issuer → root.
    Issuer(NamePatterns),
}

impl Role {
    pub fn word(&self) -> &'static str {
        match self {
            Role::Ca => "ca",
            Role::Node => "node",
            Role::Operator(_) => "operator",
            Role::Issuer(_) => "issuer",
        }
    }
}

/// The signed part of a certificate. Encoded in the layout of its
/// `version` (`cert_layout.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertBody {
    /// 1, or 2 for an operator scope with a share.
    pub version: u8,
    /// Random, chosen by the CA; what a deny list names.
    pub serial: u64,
    pub role: Role,
    pub name: String,
    pub public_key: [u8; 32],
    /// Unix seconds.
    pub not_before: u64,
    /// Unix seconds.
    pub not_after: u64,
    pub issuer: KeyId,
}

/// A certificate: its body and the CA's signature over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub body: CertBody,
    /// 64 bytes (serde has no arrays that long).
    pub signature: Vec<u8>,
}

fn signed_bytes(body: &CertBody) -> Vec<u8> {
    let mut out = CERT_CONTEXT.to_vec();
    out.extend(
        bincode::serde::encode_to_vec(body, bincode::config::standard()).unwrap_or_default(),
    );
    out
}

impl Certificate {
    /// Sign `body` with `ca` (whose key id `body.issuer` must be).
    pub fn sign(body: CertBody, ca: &SigningKey) -> Certificate {
        let signature = ca.sign(&signed_bytes(&body)).to_bytes().to_vec();
        Certificate { body, signature }
    }

    /// A self-signed CA certificate for `key`.
    pub fn new_ca(
        key: &SigningKey,
        name: &str,
        serial: u64,
        not_before: u64,
        not_after: u64,
    ) -> Self {
        let public = key.verifying_key();
        let body = CertBody {
            version: CertBody::version_for(&Role::Ca),
            serial,
            role: Role::Ca,
            name: name.to_string(),
            public_key: public.to_bytes(),
            not_before,
            not_after,
            issuer: KeyId::of(&public),
        };
        Certificate::sign(body, key)
    }

    pub fn public_key(&self) -> Result<VerifyingKey, TrustError> {
        VerifyingKey::from_bytes(&self.body.public_key).map_err(|_| {
            TrustError::Malformed("the public key is not a valid Ed25519 point".into())
        })
    }

    /// Whether `issuer` signed this certificate (signature only: the
    /// bundle checks names, roles, times and revocation).
    pub fn signed_by(&self, issuer: &VerifyingKey) -> bool {
        let Ok(sig) = <[u8; 64]>::try_from(self.signature.as_slice()) else {
            return false;
        };
        issuer
            .verify_strict(&signed_bytes(&self.body), &Signature::from_bytes(&sig))
            .is_ok()
    }

    pub fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard()).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Certificate, TrustError> {
        if bytes.len() > MAX_CERT_BYTES {
            return Err(TrustError::Malformed(format!(
                "a certificate of {} bytes is over the limit of {MAX_CERT_BYTES}",
                bytes.len()
            )));
        }
        let cfg = bincode::config::standard().with_limit::<MAX_CERT_BYTES>();
        let (cert, used): (Certificate, usize) = bincode::serde::decode_from_slice(bytes, cfg)
            .map_err(|e| TrustError::Malformed(format!("does not decode: {e}")))?;
        if used != bytes.len() {
            return Err(TrustError::Malformed(format!(
                "{} trailing bytes",
                bytes.len() - used
            )));
        }
        if !(1..=CERT_VERSION).contains(&cert.body.version) {
            return Err(TrustError::Malformed(format!(
                "certificate version {} (this build reads 1 to {CERT_VERSION})",
                cert.body.version
            )));
        }
        if cert.signature.len() != 64 {
            return Err(TrustError::Malformed(
                "the signature is not 64 bytes".into(),
            ));
        }
        if cert.body.name.len() > MAX_CERT_NAME {
            return Err(TrustError::Malformed(format!(
                "the name is over {MAX_CERT_NAME} bytes"
            )));
        }
        Ok(cert)
    }

    /// The file form: `#` lines saying what it is, then the armored bytes.
    pub fn to_text(&self) -> String {
        let b = &self.body;
        let mut out = format!(
            "# Patrol {} certificate: {}\n# serial {:016x}, valid from {} to {} (unix seconds), issuer {}\n",
            b.role.word(),
            b.name,
            b.serial,
            b.not_before,
            b.not_after,
            b.issuer
        );
        if let Role::Operator(scope) = &b.role {
            out.push_str(&format!("# scope: {}\n", scope.describe()));
        }
        if let Role::Issuer(names) = &b.role {
            out.push_str(&format!("# signs nodes named: {}\n", names.describe()));
        }
        out.push_str(&armor(BEGIN_CERT, END_CERT, &self.encode()));
        out
    }

    /// Every certificate in `text` (a file may hold several: a bundle).
    pub fn parse_all(text: &str) -> Result<Vec<Certificate>, TrustError> {
        if text.len() > MAX_CERT_BYTES * 64 {
            return Err(TrustError::Malformed(
                "the certificate file is too large".into(),
            ));
        }
        unarmor_all(text, BEGIN_CERT, END_CERT)?
            .iter()
            .map(|b| Certificate::decode(b))
            .collect()
    }

    /// Exactly one certificate in `text`.
    pub fn parse_one(text: &str) -> Result<Certificate, TrustError> {
        let mut all = Certificate::parse_all(text)?;
        match all.len() {
            1 => Ok(all.remove(0)),
            0 => Err(TrustError::Malformed("no certificate in the text".into())),
            n => Err(TrustError::Malformed(format!(
                "{n} certificates where one was expected"
            ))),
        }
    }
}

/// An Ed25519 private key in its file form (the 32-byte seed, armored).
pub fn key_to_text(key: &SigningKey, what: &str) -> Zeroizing<String> {
    let seed = Zeroizing::new(key.to_bytes());
    Zeroizing::new(format!(
        "# Patrol private key ({what}): keep it secret (mode 0600)\n{}",
        armor(BEGIN_KEY, END_KEY, seed.as_slice())
    ))
}

/// The private key in `text`.
pub fn key_from_text(text: &str) -> Result<SigningKey, TrustError> {
    let blocks = unarmor_all(text, BEGIN_KEY, END_KEY)?;
    let [bytes] = blocks.as_slice() else {
        return Err(TrustError::Malformed(format!(
            "expected one private key, found {}",
            blocks.len()
        )));
    };
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        bytes
            .as_slice()
            .try_into()
            .map_err(|_| TrustError::Malformed("the private key is not 32 bytes".into()))?,
    );
    Ok(SigningKey::from_bytes(&seed))
}

fn armor(begin: &str, end: &str, bytes: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = format!("{begin}\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(end);
    out.push('\n');
    out
}

fn unarmor_all(text: &str, begin: &str, end: &str) -> Result<Vec<Vec<u8>>, TrustError> {
    use base64::Engine;
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        match (&mut current, line) {
            (None, l) if l == begin => current = Some(String::new()),
            (None, l) if l.is_empty() || l.starts_with('#') => {}
            (None, l) => {
                return Err(TrustError::Malformed(format!(
                    "line {}: expected `{begin}` or a `#` comment, found `{}`",
                    n + 1,
                    l.chars().take(40).collect::<String>()
                )))
            }
            (Some(b64), l) if l == end => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| {
                        TrustError::Malformed(format!("line {}: bad base64: {e}", n + 1))
                    })?;
                blocks.push(bytes);
                current = None;
            }
            (Some(b64), l) => b64.push_str(l),
        }
    }
    if current.is_some() {
        return Err(TrustError::Malformed(format!("`{end}` is missing")));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (SigningKey, Certificate) {
        let key = SigningKey::from_bytes(&[7; 32]);
        let cert = Certificate::new_ca(&key, "test-ca", 1, 0, u64::MAX);
        (key, cert)
    }

    #[test]
    fn a_certificate_survives_its_text_form_and_its_signature_holds() {
        let (key, cert) = ca();
        let text = cert.to_text();
        assert!(text.starts_with("# Patrol ca certificate: test-ca"));
        let back = Certificate::parse_one(&text).unwrap();
        assert_eq!(back, cert);
        assert!(back.signed_by(&key.verifying_key()));
    }

    #[test]
    fn a_changed_byte_of_the_body_breaks_the_signature() {
        let (key, cert) = ca();
        let mut forged = cert.clone();
        forged.body.name = "test-cb".into();
        assert!(!forged.signed_by(&key.verifying_key()));
        let mut forged = cert;
        forged.body.not_after -= 1;
        assert!(!forged.signed_by(&key.verifying_key()));
    }

    /// An operator certificate of scope `nightly` (profile `k8s-node`,
    /// nodes `env=prod`, deadline up to 60 s) for `cron`, issued by
    /// `testing::ca(7)` with the code before version 2 existed.
    const V1_OPERATOR: &str = "\
-----BEGIN PATROL CERTIFICATE-----
AfsZJwIHbmlnaHRseQEBCGs4cy1ub2RlAAABA2VudgRwcm9k+2DqBGNyb279FyQ4
WqDHW2T7eM1gL6HZkf3r92sTxY7XAurINen2GAD9/////////3/+gSwS86tM5kCl
pzQ1NpmLLkYhD80nuXgeJ4afhl623+toq2VRsUNtKKZNKVJoKA6uyfx2hMKU2aNo
Kbl2npOnM1Z1rpecvHkI
-----END PATROL CERTIFICATE-----
";

    #[test]
    fn a_version_1_certificate_still_decodes_and_verifies() {
        use super::super::testing::{bundle, ca};
        let ca = ca(7);
        let cert = Certificate::parse_one(V1_OPERATOR).unwrap();
        assert_eq!(cert.body.version, 1);
        let Role::Operator(scope) = &cert.body.role else {
            panic!("{:?}", cert.body.role);
        };
        assert_eq!(scope.name, "nightly");
        assert_eq!(scope.max_deadline_ms, 60_000);
        assert_eq!(scope.share, None);
        assert!(cert.signed_by(&ca.key.verifying_key()));
        let verified = bundle(&[&ca]).verify(&cert, "operator", 1_000).unwrap();
        assert_eq!(verified.name(), "cron");
        // Encoded again, it is the very bytes the CA signed.
        let again = Certificate::parse_one(&cert.to_text()).unwrap();
        assert_eq!(again, cert);
        assert!(cert.to_text().ends_with(V1_OPERATOR));
    }

    #[test]
    fn a_scope_with_a_share_is_version_2_and_its_share_round_trips() {
        use super::super::testing::{bundle, ca, creds};
        let ca = ca(7);
        let capped = Scope {
            share: Some(2),
            ..Scope::full(60_000)
        };
        let op = creds(&ca, Role::Operator(capped.clone()), "capped", 9);
        assert_eq!(op.cert.body.version, 2);
        let text = op.cert.to_text();
        assert!(text.contains("at most 2 sweeps at once per node"), "{text}");
        let back = Certificate::parse_one(&text).unwrap();
        assert_eq!(back.body.role, Role::Operator(capped));
        assert!(back.signed_by(&ca.key.verifying_key()));
        assert!(bundle(&[&ca]).verify(&back, "operator", 1_000).is_ok());
        // Without a share, and every other role: still version 1.
        let plain = creds(&ca, Role::Operator(Scope::full(60_000)), "alice", 10);
        assert_eq!(plain.cert.body.version, 1);
        assert_eq!(creds(&ca, Role::Node, "n", 11).cert.body.version, 1);
        // The share is signed: changing it breaks the signature.
        let mut forged = back;
        if let Role::Operator(scope) = &mut forged.body.role {
            scope.share = Some(64);
        }
        assert!(!forged.signed_by(&ca.key.verifying_key()));
    }

    #[test]
    fn a_share_cannot_hide_in_a_version_1_body_and_other_versions_are_refused() {
        use super::super::testing::{ca, creds};
        let ca = ca(7);
        let capped = Scope {
            share: Some(2),
            ..Scope::full(60_000)
        };
        let mut op = creds(&ca, Role::Operator(capped), "capped", 9).cert;
        op.body.version = 1;
        assert!(
            op.encode().is_empty(),
            "a version 1 body with a share encodes"
        );
        assert!(!op.signed_by(&ca.key.verifying_key()));
        let mut bytes = creds(&ca, Role::Node, "n", 11).cert.encode();
        bytes[0] = 3;
        let e = Certificate::decode(&bytes).unwrap_err();
        assert!(e.to_string().contains("certificate version 3"), "{e}");
    }

    /// Every single bit flipped in a version 1 and a version 2
    /// certificate: decoding never panics, and whatever still decodes no
    /// longer carries the CA's signature (or is the same certificate: a
    /// flip in the version byte that lands on the other layout must fail
    /// to decode, never read the rest in the wrong layout and verify).
    #[test]
    fn a_flipped_bit_in_either_version_never_decodes_into_a_signed_certificate() {
        use super::super::testing::{ca, creds};
        let ca = ca(7);
        let v1 = Certificate::parse_one(V1_OPERATOR).unwrap();
        let capped = Scope {
            share: Some(2),
            ..Scope::full(60_000)
        };
        let v2 = creds(&ca, Role::Operator(capped), "capped", 9).cert;
        for cert in [v1, v2] {
            let bytes = cert.encode();
            for bit in 0..bytes.len() * 8 {
                let mut b = bytes.clone();
                b[bit / 8] ^= 1 << (bit % 8);
                if let Ok(back) = Certificate::decode(&b) {
                    assert!(
                        back == cert || !back.signed_by(&ca.key.verifying_key()),
                        "bit {bit} of a version {} certificate",
                        cert.body.version
                    );
                }
            }
        }
    }

    #[test]
    fn a_private_key_survives_its_text_form() {
        let (key, _) = ca();
        let text = key_to_text(&key, "test");
        assert_eq!(key_from_text(&text).unwrap().to_bytes(), key.to_bytes());
    }

    #[test]
    fn garbage_text_is_an_error_naming_the_line() {
        let e = Certificate::parse_all("hello\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = Certificate::parse_all("-----BEGIN PATROL CERTIFICATE-----\nAAAA\n").unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        let e = Certificate::parse_one(
            "-----BEGIN PATROL CERTIFICATE-----\nAAAA\n-----END PATROL CERTIFICATE-----\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("decode"), "{e}");
    }
}
