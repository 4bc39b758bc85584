//! One enrollment or renewal, client side: connect, check the service's
//! issuer against the pinned roots, send the sealed request, and check
//! the certificate that comes back (signed by that issuer, for this name
//! and this key) before anyone uses it.

use std::time::Duration;

use patrol_core::trust::{Certificate, Credentials, SigningKey, TrustBundle};
use tokio::net::TcpStream;

use super::wire::{self, EnrollResponse, MAX_ENROLL_FRAME};
use super::EnrollError;
use crate::control::frame;
use crate::control::handshake::Ephemeral;
use crate::control::{read_frame, write_frame};
use crate::envelope::Purpose;

/// How the client proves it may have a certificate.
#[derive(Debug, Clone)]
pub enum Proof<'a> {
    /// A bootstrap token, for `name`.
    Token { name: &'a str, token: &'a str },
    /// The current certificate (and its key).
    Renew(&'a Credentials),
}

/// A certificate the service issued, checked.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub creds: Credentials,
    /// The issuers the answer carried that the pinned roots signed (the
    /// node's certificate file carries them after its own).
    pub chain: Vec<Certificate>,
    /// The service's issuer name.
    pub issuer: String,
}

impl Enrolled {
    /// The certificate file's text: the certificate, then its chain.
    pub fn cert_file_text(&self) -> String {
        std::iter::once(&self.creds.cert)
            .chain(&self.chain)
            .map(|c| c.to_text())
            .collect()
    }
}

/// Enroll (or renew) with the service at `addr` (`host:port`), whose
/// issuer must be signed by a root of `roots`, for `key`.
pub async fn enroll(
    addr: &str,
    roots: &TrustBundle,
    key: &SigningKey,
    proof: Proof<'_>,
    timeout: Duration,
) -> Result<Enrolled, EnrollError> {
    tokio::time::timeout(timeout, exchange(addr, roots, key, proof))
        .await
        .map_err(|_| EnrollError::Timeout)?
}

async fn exchange(
    addr: &str,
    roots: &TrustBundle,
    key: &SigningKey,
    proof: Proof<'_>,
) -> Result<Enrolled, EnrollError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| EnrollError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let hello = read_frame(&mut stream, wire::HELLO_LEN).await?;
    let (challenge, server_eph) = wire::decode_hello(&hello)?;
    let mine = Ephemeral::new();
    write_frame(&mut stream, &mine.public).await?;
    let transcript = wire::transcript(&hello, &mine.public);
    let server = read_frame(&mut stream, MAX_ENROLL_FRAME).await?;
    if let Some(reason) = frame::decode_deny(&server) {
        return Err(EnrollError::Refused(reason));
    }
    let now_s = crate::clock::unix_ms() / 1000;
    let issuer = wire::check_server(roots, &transcript, &server, now_s)?;
    let envelope = wire::session(&mine, &server_eph, &transcript)?;
    let (request, name) = match proof {
        Proof::Token { name, token } => (wire::token_request(key, &transcript, name, token), name),
        Proof::Renew(current) => (
            wire::renew_request(current, key, &transcript),
            current.name(),
        ),
    };
    let sealed = frame::seal(&envelope, Purpose::ControlRequest, challenge, &request)?;
    write_frame(&mut stream, &sealed).await?;
    let reply = read_frame(&mut stream, MAX_ENROLL_FRAME).await?;
    let answer: EnrollResponse =
        wire::open_sealed(&envelope, Purpose::ControlReply, challenge, &reply)?;
    let (cert, chain) = match answer {
        EnrollResponse::Refused(reason) => return Err(EnrollError::Refused(reason)),
        EnrollResponse::Issued { cert, chain } => (*cert, chain),
    };
    accept(roots, &issuer.cert, cert, chain, key, name, now_s)
}

/// Check an issued certificate: signed by the issuer that proved itself,
/// for this name and key; keep the issuers of the chain the roots signed.
fn accept(
    roots: &TrustBundle,
    issuer: &Certificate,
    cert: Certificate,
    chain: Vec<Certificate>,
    key: &SigningKey,
    name: &str,
    now_s: u64,
) -> Result<Enrolled, EnrollError> {
    let mut bundle = roots.clone();
    let mut kept = Vec::new();
    for c in std::iter::once(issuer.clone()).chain(chain) {
        if kept.contains(&c) {
            continue;
        }
        if bundle.add_issuer(c.clone()).is_ok() {
            kept.push(c);
        }
    }
    let issuer_name = issuer.body.name.clone();
    let bad = |what: String| EnrollError::Protocol(format!("the issued certificate {what}"));
    bundle
        .verify(&cert, "node", now_s)
        .map_err(|e| bad(format!("does not verify: {e}")))?;
    if cert.body.name != name {
        return Err(bad(format!("is for `{}`, not `{name}`", cert.body.name)));
    }
    let creds =
        Credentials::new(key.clone(), cert).map_err(|_| bad("is for another key".to_string()))?;
    Ok(Enrolled {
        creds,
        chain: kept,
        issuer: issuer_name,
    })
}

#[cfg(test)]
mod tests {
    use patrol_core::trust::testing::{bundle, ca, issued};
    use patrol_core::trust::{NamePatterns, Role};

    use super::*;

    /// A compromised enrollment host holds the issuer key: it can sign a
    /// certificate for the enrolling node's name, but to a key of its own
    /// (which it would then hold), or for another name. The client keeps
    /// neither: it takes only a certificate for its own name and the key it
    /// made.
    #[test]
    fn a_certificate_for_another_key_or_another_name_is_refused_by_the_client() {
        let root = ca(1);
        let issuer = issued(
            &root,
            SigningKey::from_bytes(&[2; 32]),
            Role::Issuer(NamePatterns::any()),
            "enroll-1",
            2,
            0..u64::MAX / 4,
        );
        let roots = bundle(&[&root]);
        let mine = SigningKey::from_bytes(&[3; 32]);
        let theirs = SigningKey::from_bytes(&[4; 32]);
        let cert = |key: &SigningKey, name: &str| {
            issued(&issuer, key.clone(), Role::Node, name, 9, 0..u64::MAX / 8).cert
        };
        let chain = vec![issuer.cert.clone()];
        let now = 1_000;
        let took = accept(
            &roots,
            &issuer.cert,
            cert(&mine, "web-1"),
            chain.clone(),
            &mine,
            "web-1",
            now,
        )
        .expect("its own certificate");
        assert_eq!(took.creds.name(), "web-1");
        let e = accept(
            &roots,
            &issuer.cert,
            cert(&theirs, "web-1"),
            chain.clone(),
            &mine,
            "web-1",
            now,
        )
        .unwrap_err();
        assert!(e.to_string().contains("is for another key"), "{e}");
        let e = accept(
            &roots,
            &issuer.cert,
            cert(&mine, "web-2"),
            chain,
            &mine,
            "web-1",
            now,
        )
        .unwrap_err();
        assert!(e.to_string().contains("is for `web-2`"), "{e}");
    }
}
