//! TLS file options shared by the HTTP kinds (`ca_file`, `cert_file`,
//! `key_file`).

use std::path::PathBuf;
use std::time::Duration;

use crate::host::HttpRequest;

/// PEM files for HTTPS endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err((
                "cert_file".into(),
                "cert_file and key_file go together: give both or neither".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn request(&self, url: String, timeout: Duration, max_body: usize) -> HttpRequest {
        HttpRequest {
            url,
            timeout,
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            max_body,
        }
    }
}
