//! `patrol.cert_expiry`: a built-in outcome in every answer of a node
//! with `[trust]`, so a sweep warns about certificates that will not
//! renew before they expire. It covers the node's own certificate and
//! every CA and issuer of its bundle: `warn` when one has under
//! [`WARN_BELOW_S`] left, `fail` once one has expired.
//!
//! The observed value names each certificate's days left: `node`,
//! `ca:NAME`, `issuer:NAME` (the report groups nodes by `node`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use patrol_checks::{CheckOutcome, Observed, Selector, Severity, Status};
use patrol_core::trust::{Certificate, Credentials, TrustBundle};
use tokio::sync::watch;

use crate::agent::Inspector;

/// The outcome's check id, and how it words spans and days (shared with
/// the coordinator's outcome for an answer proven by an expired
/// certificate).
pub use patrol_core::sweep::outcomes::{days, span, CERT_EXPIRY_ID};
/// Under this much life left a certificate warns: 7 days, a week for a
/// person to see it in a nightly report and act.
pub const WARN_BELOW_S: u64 = 7 * 86_400;

/// The outcome for `node` and `bundle` at `now_s`.
pub fn outcome(node: &Certificate, bundle: &TrustBundle, now_s: u64) -> CheckOutcome {
    let mut certs: Vec<(String, &Certificate)> = vec![("node".to_string(), node)];
    certs.extend(bundle.cas().map(|c| (format!("ca:{}", c.name()), &c.cert)));
    certs.extend(
        bundle
            .issuers()
            .map(|c| (format!("issuer:{}", c.name()), &c.cert)),
    );
    let left = |c: &Certificate| c.body.not_after as i64 - now_s as i64;
    let observed = certs
        .iter()
        .map(|(k, c)| (k.clone(), Observed::Number(days(left(c)))))
        .collect();
    let soonest = certs
        .iter()
        .min_by_key(|(_, c)| left(c))
        .map(|(k, c)| (k.as_str(), left(c), c.body.name.as_str()));
    let (status, severity, message) = match soonest {
        Some((what, l, name)) if l < 0 => (
            Status::Fail,
            Severity::Fail,
            format!(
                "{what} certificate `{name}` expired {} ago",
                span(l.unsigned_abs())
            ),
        ),
        Some((what, l, name)) if (l as u64) < WARN_BELOW_S => (
            Status::Warn,
            Severity::Warn,
            format!("{what} certificate `{name}` expires in {}", span(l as u64)),
        ),
        Some((what, l, name)) => (
            Status::Pass,
            Severity::Warn,
            format!("soonest: {what} certificate `{name}` in {}", span(l as u64)),
        ),
        None => (Status::Pass, Severity::Warn, String::new()),
    };
    CheckOutcome {
        id: CERT_EXPIRY_ID.to_string(),
        kind: "patrol".to_string(),
        status,
        severity,
        observed: Observed::Named(observed),
        expected: format!(
            "every certificate valid for at least {}",
            span(WARN_BELOW_S)
        ),
        message,
        duration_us: 0,
        description: "the node's certificate and its bundle's CAs and issuers, by days left"
            .to_string(),
        remediation: "renew the certificate (`[trust] enroll` renews a node's by itself; a CA or issuer with `patrol ca`), then SIGHUP the agent".to_string(),
    }
}

/// An [`Inspector`] that adds [`outcome`] to every answer, for the node's
/// current certificate and bundle (renewals and SIGHUP replace them).
pub struct ExpiryInspector {
    inner: Arc<dyn Inspector>,
    node: watch::Receiver<Credentials>,
    bundle: watch::Receiver<TrustBundle>,
}

impl ExpiryInspector {
    pub fn new(
        inner: Arc<dyn Inspector>,
        node: watch::Receiver<Credentials>,
        bundle: watch::Receiver<TrustBundle>,
    ) -> Self {
        ExpiryInspector {
            inner,
            node,
            bundle,
        }
    }
}

impl Inspector for ExpiryInspector {
    fn inspect(
        &self,
        selector: &Selector,
        budget: Duration,
    ) -> Pin<Box<dyn Future<Output = Vec<CheckOutcome>> + Send>> {
        let run = self.inner.inspect(selector, budget);
        let node = self.node.borrow().cert.clone();
        let bundle = self.bundle.clone();
        Box::pin(async move {
            let mut outcomes = run.await;
            let now_s = crate::clock::unix_ms() / 1000;
            outcomes.push(outcome(&node, &bundle.borrow(), now_s));
            outcomes
        })
    }
}

#[cfg(test)]
mod tests {
    use patrol_core::trust::testing::{bundle, ca_with, issued};
    use patrol_core::trust::{Role, SigningKey};

    use super::*;

    fn node(not_after: u64) -> (Certificate, TrustBundle) {
        let root = ca_with(SigningKey::from_bytes(&[1; 32]), "root", 1, 0..100 * 86_400);
        let n = issued(
            &root,
            SigningKey::from_bytes(&[2; 32]),
            Role::Node,
            "n",
            2,
            0..not_after,
        );
        (n.cert, bundle(&[&root]))
    }

    #[test]
    fn a_certificate_warns_under_seven_days_and_fails_once_expired() {
        let (cert, b) = node(30 * 86_400);
        let now = 10 * 86_400;
        let o = outcome(&cert, &b, now);
        assert_eq!(o.status, Status::Pass, "{o:?}");
        assert!(o.message.contains("node certificate `n`"), "{}", o.message);
        let o = outcome(&cert, &b, 30 * 86_400 - 3600);
        assert_eq!(
            (o.status, o.severity),
            (Status::Warn, Severity::Warn),
            "{o:?}"
        );
        assert!(o.message.contains("expires in 1h"), "{}", o.message);
        let o = outcome(&cert, &b, 30 * 86_400 + 60);
        assert_eq!(
            (o.status, o.severity),
            (Status::Fail, Severity::Fail),
            "{o:?}"
        );
        assert!(o.message.contains("expired 1m ago"), "{}", o.message);
        // A minute past its end is below zero days, so the report groups
        // it as expired (rounded to the nearest it was `-0.0`).
        let Observed::Named(named) = &o.observed else {
            panic!("{o:?}")
        };
        assert_eq!(named[0].1, Observed::Number(-0.01));
    }

    #[test]
    fn the_bundles_cas_are_covered_and_named_in_the_observation() {
        let (cert, b) = node(200 * 86_400);
        // The node's certificate is clamped to its CA's life: both end
        // at 100 days; at day 95 both warn.
        let o = outcome(&cert, &b, 95 * 86_400);
        assert_eq!(o.status, Status::Warn);
        let Observed::Named(named) = &o.observed else {
            panic!("{o:?}")
        };
        let keys: Vec<&str> = named.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["node", "ca:root"]);
        assert_eq!(named[0].1, Observed::Number(5.0));
    }
}
