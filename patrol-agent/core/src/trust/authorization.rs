//! An operator's signature over one sweep: the CLI signs what it asks
//! (sweep id, selector, node filter, deadline, its signing time) with the
//! operator key, the coordinator checks it against the operator's
//! certificate and scope, passes it on inside the request, and every
//! participant checks it again before running a check. Changing any signed
//! field breaks the signature, so a coordinator cannot widen the request;
//! the sweep id is signed too, so a replay is the same sweep and is
//! deduplicated.
//!
//! ```text
//! signature = Ed25519(operator key, "patrol-sweep-v1\0" || bincode(
//!     sweep_id: u64, profile: Option<String>, checks: [String],
//!     labels: [String], node_filter: {String: String},
//!     deadline_ms: u64, signed_at_unix_ms: u64))
//! ```

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer};
use patrol_model::Selector;
use serde::{Deserialize, Serialize};

use super::bundle::{TrustBundle, Verified};
use super::cert::Certificate;
use super::scope::ScopeError;
use super::{Credentials, TrustError};

const SWEEP_CONTEXT: &[u8] = b"patrol-sweep-v2\0";

/// The operator's proof that it asked for this sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    pub operator: Certificate,
    /// The CLI's wall clock when it signed, unix milliseconds.
    pub signed_at_unix_ms: u64,
    /// 64 bytes.
    pub signature: Vec<u8>,
}

/// Why a sweep request's authorization is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the request carries no operator signature")]
    Missing,
    #[error("operator certificate refused: {0}")]
    Certificate(#[from] TrustError),
    #[error("the operator signature of `{operator}` does not verify for this request")]
    BadSignature { operator: String },
    #[error("operator `{operator}` may not ask this: {reason}")]
    Scope {
        operator: String,
        reason: ScopeError,
    },
    #[error("the operator signed this request at {signed_at_unix_ms} ms, outside the window [{earliest}, {latest}] this node accepts")]
    Stale {
        signed_at_unix_ms: u64,
        earliest: u64,
        latest: u64,
    },
}

/// How far from a node's clock an operator's signing time may be: a
/// signed request is good from `skew_ms` before it was signed (the
/// operator's clock ahead of ours) until its deadline plus `slack_ms` after
/// (the time for the CLI to reach the coordinator and the request to
/// spread), never later. Every check of a signed sweep, by the control
/// server, the coordinator and each participant, uses the node's one
/// window: `SweepSettings::clock_skew_tolerance` and
/// `SweepSettings::signed_request_slack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningWindow {
    pub skew_ms: u64,
    pub slack_ms: u64,
}

/// What an operator signs: the sweep (id, selector, node filter,
/// deadline) and the coordinator it asks, by the name its certificate
/// proves (the CLI learns it from the control handshake), so a captured
/// request cannot be put into the mesh under another coordinator.
#[derive(Debug, Clone, Copy)]
pub struct SweepAsk<'a> {
    pub sweep_id: u64,
    pub selector: &'a Selector,
    pub node_filter: &'a BTreeMap<String, String>,
    pub deadline_ms: u64,
    pub coordinator: &'a str,
}

fn signed_bytes(ask: &SweepAsk<'_>, signed_at_unix_ms: u64) -> Vec<u8> {
    let fields = (
        ask.sweep_id,
        &ask.selector.profile,
        &ask.selector.checks,
        &ask.selector.labels,
        ask.node_filter,
        ask.deadline_ms,
        signed_at_unix_ms,
        ask.coordinator,
    );
    let mut out = SWEEP_CONTEXT.to_vec();
    out.extend(
        bincode::serde::encode_to_vec(fields, bincode::config::standard()).unwrap_or_default(),
    );
    out
}

impl Authorization {
    /// Sign `ask` as `operator` at `now_unix_ms`.
    pub fn sign(operator: &Credentials, ask: &SweepAsk<'_>, now_unix_ms: u64) -> Authorization {
        Authorization {
            operator: operator.cert.clone(),
            signed_at_unix_ms: now_unix_ms,
            signature: operator
                .key
                .sign(&signed_bytes(ask, now_unix_ms))
                .to_bytes()
                .to_vec(),
        }
    }

    /// Check the operator's certificate, its signature over `ask`, its
    /// scope, and that it was signed within
    /// `[now − deadline − slack, now + skew]` ([`SigningWindow`]).
    pub fn check(
        &self,
        bundle: &TrustBundle,
        ask: &SweepAsk<'_>,
        now_unix_ms: u64,
        window: SigningWindow,
    ) -> Result<Verified, AuthError> {
        let operator = self.verify(bundle, ask, now_unix_ms)?;
        self.fresh(ask.deadline_ms, now_unix_ms, window)?;
        Ok(operator)
    }

    /// [`Authorization::check`] without the signing-time window: the
    /// certificate (at `now_unix_ms`), the signature and the scope.
    pub fn verify(
        &self,
        bundle: &TrustBundle,
        ask: &SweepAsk<'_>,
        now_unix_ms: u64,
    ) -> Result<Verified, AuthError> {
        let operator = bundle.verify(&self.operator, "operator", now_unix_ms / 1000)?;
        let name = || operator.name().to_string();
        let sig = <[u8; 64]>::try_from(self.signature.as_slice())
            .map_err(|_| AuthError::BadSignature { operator: name() })?;
        operator
            .key
            .verify_strict(
                &signed_bytes(ask, self.signed_at_unix_ms),
                &Signature::from_bytes(&sig),
            )
            .map_err(|_| AuthError::BadSignature { operator: name() })?;
        if let super::Role::Operator(scope) = operator.role() {
            scope
                .permits(ask.selector, ask.node_filter, ask.deadline_ms)
                .map_err(|reason| AuthError::Scope {
                    operator: name(),
                    reason,
                })?;
        }
        Ok(operator)
    }

    /// The signing-time window of [`Authorization::check`].
    pub fn fresh(
        &self,
        deadline_ms: u64,
        now_unix_ms: u64,
        window: SigningWindow,
    ) -> Result<(), AuthError> {
        let earliest = now_unix_ms
            .saturating_sub(deadline_ms)
            .saturating_sub(window.slack_ms);
        let latest = now_unix_ms.saturating_add(window.skew_ms);
        if self.signed_at_unix_ms < earliest || self.signed_at_unix_ms > latest {
            return Err(AuthError::Stale {
                signed_at_unix_ms: self.signed_at_unix_ms,
                earliest,
                latest,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{Role, Scope};
    use super::*;

    const WINDOW: SigningWindow = SigningWindow {
        skew_ms: 5000,
        slack_ms: 60_000,
    };

    fn ask<'a>(sel: &'a Selector, filter: &'a BTreeMap<String, String>) -> SweepAsk<'a> {
        SweepAsk {
            sweep_id: 42,
            selector: sel,
            node_filter: filter,
            deadline_ms: 5000,
            coordinator: "node-00",
        }
    }

    #[test]
    fn a_signed_sweep_checks_out_and_any_changed_field_does_not() {
        let ca = ca(1);
        let op = creds(&ca, Role::Operator(Scope::full(60_000)), "alice", 2);
        let b = bundle(&[&ca]);
        let sel = Selector::default();
        let filter = BTreeMap::new();
        let auth = Authorization::sign(&op, &ask(&sel, &filter), 1_000_000);
        let ok = auth
            .check(&b, &ask(&sel, &filter), 1_000_100, WINDOW)
            .unwrap();
        assert_eq!(ok.name(), "alice");

        let wider = Selector {
            profile: None,
            checks: vec!["x".into()],
            labels: vec![],
        };
        assert!(matches!(
            auth.check(&b, &ask(&wider, &filter), 1_000_100, WINDOW),
            Err(AuthError::BadSignature { .. })
        ));
        let mut other_id = ask(&sel, &filter);
        other_id.sweep_id = 43;
        assert!(auth.check(&b, &other_id, 1_000_100, WINDOW).is_err());
        let mut longer = ask(&sel, &filter);
        longer.deadline_ms = 6000;
        assert!(auth.check(&b, &longer, 1_000_100, WINDOW).is_err());
    }

    #[test]
    fn an_old_or_future_signature_is_stale() {
        let ca = ca(1);
        let op = creds(&ca, Role::Operator(Scope::full(60_000)), "alice", 2);
        let b = bundle(&[&ca]);
        let sel = Selector::default();
        let filter = BTreeMap::new();
        let auth = Authorization::sign(&op, &ask(&sel, &filter), 1_000_000);
        // Deadline 5 s + slack 60 s after signing: still good; a ms later not.
        assert!(auth
            .check(&b, &ask(&sel, &filter), 1_065_000, WINDOW)
            .is_ok());
        assert!(matches!(
            auth.check(&b, &ask(&sel, &filter), 1_065_001, WINDOW),
            Err(AuthError::Stale { .. })
        ));
        assert!(matches!(
            auth.check(&b, &ask(&sel, &filter), 994_999, WINDOW),
            Err(AuthError::Stale { .. })
        ));
    }

    #[test]
    fn a_node_certificate_cannot_authorize_a_sweep_and_scope_is_enforced() {
        let ca = ca(1);
        let node = creds(&ca, Role::Node, "host-1", 2);
        let b = bundle(&[&ca]);
        let sel = Selector::default();
        let filter = BTreeMap::new();
        let auth = Authorization::sign(&node, &ask(&sel, &filter), 1_000_000);
        assert!(matches!(
            auth.check(&b, &ask(&sel, &filter), 1_000_000, WINDOW),
            Err(AuthError::Certificate(TrustError::WrongRole { .. }))
        ));
        let nightly = Scope {
            name: "nightly".into(),
            profiles: vec!["k8s-node".into()],
            ..Scope::full(60_000)
        };
        let op = creds(&ca, Role::Operator(nightly), "cron", 3);
        let auth = Authorization::sign(&op, &ask(&sel, &filter), 1_000_000);
        assert!(matches!(
            auth.check(&b, &ask(&sel, &filter), 1_000_000, WINDOW),
            Err(AuthError::Scope { .. })
        ));
    }
}
