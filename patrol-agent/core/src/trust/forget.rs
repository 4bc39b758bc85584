//! [`SignedForget`]: an operator's `patrol roster forget NODE`, signed.
//!
//! A node leaves a roster (the nodes sweeps expect) by its own signed
//! leave, by revocation, by age, or by this: an operator whose scope may
//! sweep every node (`sweep` allowed and no node filter) signs
//! `"patrol-forget-v1\0" || bincode(cluster, node, signed_at_unix_ms)`. The
//! agent the CLI talks to checks it and sends it on to every member it
//! knows; each checks it again (operator certificate, scope, signature,
//! and a signing time within `window_ms` of its clock), forgets the node
//! and writes an audit line. Copies of one forget are recognised by
//! (node, signing time) and applied once.

use ed25519_dalek::{Signature, Signer};
use serde::{Deserialize, Serialize};

use super::authorization::AuthError;
use super::bundle::TrustBundle;
use super::cert::{Certificate, Role};
use super::scope::ScopeError;
use super::Credentials;

const FORGET_CONTEXT: &[u8] = b"patrol-forget-v1\0";

/// An operator's signed instruction to forget `node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedForget {
    pub node: String,
    pub operator: Certificate,
    pub signed_at_unix_ms: u64,
    pub signature: Vec<u8>,
}

fn signed_bytes(cluster: &str, node: &str, signed_at_unix_ms: u64) -> Vec<u8> {
    let mut out = FORGET_CONTEXT.to_vec();
    out.extend(
        bincode::serde::encode_to_vec(
            (cluster, node, signed_at_unix_ms),
            bincode::config::standard(),
        )
        .unwrap_or_default(),
    );
    out
}

impl SignedForget {
    pub fn sign(operator: &Credentials, cluster: &str, node: &str, now_unix_ms: u64) -> Self {
        SignedForget {
            node: node.to_string(),
            operator: operator.cert.clone(),
            signed_at_unix_ms: now_unix_ms,
            signature: operator
                .key
                .sign(&signed_bytes(cluster, node, now_unix_ms))
                .to_bytes()
                .to_vec(),
        }
    }

    /// Check it for `cluster` at `now_unix_ms`: returns the operator's name.
    pub fn check(
        &self,
        bundle: &TrustBundle,
        cluster: &str,
        now_unix_ms: u64,
        window_ms: u64,
    ) -> Result<String, AuthError> {
        let operator = bundle.verify(&self.operator, "operator", now_unix_ms / 1000)?;
        let name = operator.name().to_string();
        let Role::Operator(scope) = operator.role() else {
            return Err(AuthError::BadSignature { operator: name });
        };
        if !scope.sweep || !scope.node_filter.is_empty() {
            return Err(AuthError::Scope {
                operator: name,
                reason: ScopeError::NotFleetWide(scope.name.clone()),
            });
        }
        let Ok(sig) = <[u8; 64]>::try_from(self.signature.as_slice()) else {
            return Err(AuthError::BadSignature { operator: name });
        };
        let bytes = signed_bytes(cluster, &self.node, self.signed_at_unix_ms);
        if operator
            .key
            .verify_strict(&bytes, &Signature::from_bytes(&sig))
            .is_err()
        {
            return Err(AuthError::BadSignature { operator: name });
        }
        let earliest = now_unix_ms.saturating_sub(window_ms);
        let latest = now_unix_ms.saturating_add(window_ms);
        if self.signed_at_unix_ms < earliest || self.signed_at_unix_ms > latest {
            return Err(AuthError::Stale {
                signed_at_unix_ms: self.signed_at_unix_ms,
                earliest,
                latest,
            });
        }
        Ok(name)
    }

    pub fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard()).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<SignedForget> {
        let config = bincode::config::standard().with_limit::<8192>();
        let (f, used): (SignedForget, usize) =
            bincode::serde::decode_from_slice(bytes, config).ok()?;
        (used == bytes.len() && f.node.len() <= 253).then_some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::Scope;
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn a_full_operator_forgets_and_nobody_else_does() {
        let ca = ca(1);
        let b = bundle(&[&ca]);
        let full = creds(&ca, Role::Operator(Scope::full(60_000)), "alice", 2);
        let f = SignedForget::sign(&full, "c", "node-9", NOW);
        assert_eq!(f.check(&b, "c", NOW, 60_000).unwrap(), "alice");
        // Another cluster, another node, a later time, a replay too late.
        assert!(f.check(&b, "other", NOW, 60_000).is_err());
        let mut renamed = f.clone();
        renamed.node = "node-1".into();
        assert!(renamed.check(&b, "c", NOW, 60_000).is_err());
        assert!(matches!(
            f.check(&b, "c", NOW + 61_000, 60_000),
            Err(AuthError::Stale { .. })
        ));
        // A read-only operator, a node certificate.
        let ro = creds(&ca, Role::Operator(Scope::read_only()), "bob", 3);
        assert!(matches!(
            SignedForget::sign(&ro, "c", "node-9", NOW).check(&b, "c", NOW, 60_000),
            Err(AuthError::Scope { .. })
        ));
        let node = creds(&ca, Role::Node, "node-2", 4);
        assert!(SignedForget::sign(&node, "c", "node-9", NOW)
            .check(&b, "c", NOW, 60_000)
            .is_err());
    }
}
