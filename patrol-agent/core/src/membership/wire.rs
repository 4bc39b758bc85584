//! What membership sends with `[trust]`, besides foca's own packets
//! (whose identities carry a [`MemberProof`](crate::identity::MemberProof)):
//! the certificate exchange (`CH_CERT`) and the signed leave notice
//! (`CH_LEAVE`). PROTOCOL.md ("Membership with identities", "Leave
//! notice") describes both; `tests/tests/tidy.rs` holds this file to it.

use serde::{Deserialize, Serialize};

use crate::trust::{CertDigest, Certificate};

/// Most certificate digests asked for in one message, and certificates
/// sent in one answer.
pub const MAX_WANT: usize = 16;
pub const MAX_HAVE: usize = 5;
/// Largest certificate message decoded.
const CERT_MESSAGE_LIMIT: usize = 8 * 1024;

/// The certificate exchange (`CH_CERT`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CertMessage {
    /// "Here is my certificate; send me these."
    Want {
        mine: Box<Certificate>,
        want: Vec<CertDigest>,
    },
    /// The sender's certificate, and certificates asked for (at most
    /// [`MAX_HAVE`]).
    Have {
        mine: Box<Certificate>,
        certs: Vec<Certificate>,
    },
}

impl CertMessage {
    pub fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard()).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<CertMessage> {
        let config = bincode::config::standard().with_limit::<CERT_MESSAGE_LIMIT>();
        let (msg, used): (CertMessage, usize) =
            bincode::serde::decode_from_slice(bytes, config).ok()?;
        let bounded = match &msg {
            CertMessage::Want { want, .. } => want.len() <= MAX_WANT,
            CertMessage::Have { certs, .. } => certs.len() <= MAX_HAVE,
        };
        (used == bytes.len() && bounded).then_some(msg)
    }
}

/// A leave notice with `[trust]`: the node's signature over
/// `"patrol-leave-v1\0" || len(cluster) || cluster || name || bump`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedLeave {
    pub name: String,
    pub bump: u64,
    pub sig: Vec<u8>,
}

impl SignedLeave {
    pub fn signed_bytes(cluster: &str, name: &str, bump: u64) -> Vec<u8> {
        let mut b = b"patrol-leave-v1\0".to_vec();
        b.extend_from_slice(&(cluster.len() as u64).to_le_bytes());
        b.extend_from_slice(cluster.as_bytes());
        b.extend_from_slice(&(name.len() as u64).to_le_bytes());
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(&bump.to_le_bytes());
        b
    }
}
