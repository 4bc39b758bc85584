//! Enrollment: nodes get their certificates from a service holding an
//! issuing CA (`patrol ca issue issuer`), with a bootstrap token the
//! first time and their current certificate to renew. A node's private
//! key is made on the node and never leaves it: a request carries the
//! name, the public key and a proof of possession; the answer is the
//! certificate and the service's issuers.
//!
//! - [`wire`]: the messages and proofs, pure (PROTOCOL.md, "Enrollment");
//! - [`tokens`]: the token file (hashes, uses, expiry);
//! - [`service`]: `patrol enroll serve`, with its limits and audit log;
//! - [`client`]: one enrollment or renewal, for `patrol enroll request`
//!   and the agent ([`renewal`]);
//! - [`renewal`]: the agent's task that enrolls at start and renews.

pub mod client;
pub mod renewal;
pub mod service;
pub mod tokens;
pub mod wire;

use crate::control::ControlError;

/// Enrollment failures, as the CLI and the agent report them.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("cannot connect to the enrollment service {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("i/o with the enrollment service: {0}")]
    Io(#[from] std::io::Error),
    #[error("enrollment refused: {0}")]
    Refused(String),
    #[error("enrollment protocol error: {0}")]
    Protocol(String),
    #[error("timed out waiting for the enrollment service")]
    Timeout,
}

impl From<ControlError> for EnrollError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Io(e) => EnrollError::Io(e),
            ControlError::Refused(r) => EnrollError::Refused(r),
            ControlError::Timeout => EnrollError::Timeout,
            ControlError::Connect { addr, source } => EnrollError::Connect {
                addr: addr.to_string(),
                source,
            },
            other => EnrollError::Protocol(other.to_string()),
        }
    }
}
