//! HTTP(S) GET with ureq (rustls on the `ring` provider), optional CA file
//! and client certificate for mutual TLS (etcd).

use std::io::Read;
use std::time::Instant;

use ureq::tls::{parse_pem, Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use super::{HttpError, HttpRequest, HttpResponse};

fn read_pem(path: &std::path::Path, what: &str) -> Result<Vec<u8>, HttpError> {
    std::fs::read(path)
        .map_err(|e| HttpError::Setup(format!("cannot read {what} {}: {e}", path.display())))
}

fn certs(pem: &[u8]) -> Vec<Certificate<'static>> {
    parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// Perform the request (blocking).
pub(super) fn get(req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    let mut tls = TlsConfig::builder();
    if let Some(ca) = &req.ca_file {
        let found = certs(&read_pem(ca, "CA file")?);
        if found.is_empty() {
            return Err(HttpError::Setup(format!(
                "CA file {} holds no PEM certificate",
                ca.display()
            )));
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&found));
    }
    match (&req.cert_file, &req.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certs(&read_pem(cert, "client certificate")?);
            if chain.is_empty() {
                return Err(HttpError::Setup(format!(
                    "client certificate {} holds no PEM certificate",
                    cert.display()
                )));
            }
            let key = PrivateKey::from_pem(&read_pem(key, "client key")?)
                .map_err(|e| HttpError::Setup(format!("client key {}: {e}", key.display())))?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        (None, None) => {}
        _ => {
            return Err(HttpError::Setup(
                "cert_file and key_file go together".into(),
            ))
        }
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(req.timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .tls_config(tls.build())
        .build()
        .into();
    let start = Instant::now();
    let mut resp = agent.get(&req.url).call().map_err(|e| match e {
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => HttpError::Setup(describe(&e)),
        _ => HttpError::Transport(describe(&e)),
    })?;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(req.max_body as u64)
        .read_to_end(&mut body)
        .map_err(|e| HttpError::Transport(format!("reading the body failed: {e}")))?;
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        elapsed: start.elapsed(),
    })
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (nothing listening)".to_string()
        }
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        other => other.to_string(),
    }
}
