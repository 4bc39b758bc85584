//! The agent's own certificate, with `[trust] enroll`: enrolled at start
//! when there is no valid one ([`enroll_if_needed`], with the token of
//! `enroll_token_file` and a key made on this node), renewed at two
//! thirds of its life with jitter ([`run`]) with the current certificate
//! and the same key, and put to use without a restart (the node's
//! identity, the control channel's proof and the bundle, as SIGHUP
//! replaces the bundle).
//!
//! An unreachable service is retried with backoff and logged; the
//! current certificate stays in use until it expires. A refused renewal
//! (a revoked node) is retried the same way, and logged as an error: the
//! node drops out of certified sweeps when its certificate expires, and
//! `patrol.cert_expiry` says so before. Once expired, a node with a token
//! file enrolls again with it.

use std::path::PathBuf;
use std::time::Duration;

use patrol_core::trust::{Certificate, Credentials, SigningKey, TrustBundle};

use super::client::{self, Enrolled, Proof};
use super::EnrollError;
use crate::trust_files::{self, TrustFileError};

/// The limits of enrolling and renewing. `Default` gives the shipped
/// values.
#[derive(Debug, Clone, PartialEq)]
pub struct RenewalSettings {
    /// How long one exchange with the service may take. Default 10 s.
    pub timeout: Duration,
    /// First wait after a failed attempt; doubled at each failure up to
    /// `backoff_max`. Default 1 s.
    pub backoff_min: Duration,
    /// Default 5 min: a fleet of 100,000 nodes whose service is down
    /// retries at about 330 connections a second, which one service
    /// answers.
    pub backoff_max: Duration,
}

impl Default for RenewalSettings {
    fn default() -> Self {
        RenewalSettings {
            timeout: Duration::from_secs(10),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// What enrollment needs from `[trust]` and `[node]`.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub service: String,
    pub token_file: Option<PathBuf>,
    /// The pinned roots (its issuers, if any, are not used to pin).
    pub ca_bundle: PathBuf,
    pub deny_list: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub name: String,
    pub settings: RenewalSettings,
}

fn now_s() -> u64 {
    crate::clock::unix_ms() / 1000
}

/// When to renew `cert`: at two thirds of its life, less a jitter of up
/// to a twelfth of its life (`jitter` in 0..1), so a fleet enrolled at
/// once does not renew at once.
pub fn renew_at(cert: &Certificate, jitter: f64) -> u64 {
    let b = &cert.body;
    let life = b.not_after.saturating_sub(b.not_before);
    let spread = (life as f64 / 12.0 * jitter.clamp(0.0, 1.0)) as u64;
    b.not_before + life * 2 / 3 - spread.min(life * 2 / 3)
}

impl Enrollment {
    /// From the config, when `[trust] enroll` is set.
    pub fn from_config(config: &patrol_config::Config) -> Option<Enrollment> {
        let t = config.trust.as_ref()?;
        Some(Enrollment {
            service: t.enroll.clone()?,
            token_file: t.enroll_token_file.clone(),
            ca_bundle: t.ca_bundle.clone(),
            deny_list: t.deny_list.clone(),
            cert: t.cert.clone(),
            key: t.key.clone(),
            name: config.node.name.clone(),
            settings: RenewalSettings::default(),
        })
    }

    /// The roots of the bundle file: what the service's issuer must
    /// chain to.
    fn roots(&self) -> Result<TrustBundle, TrustFileError> {
        let all = trust_files::load_bundle(&self.ca_bundle, None)?;
        let roots = all.cas().map(|v| v.cert.clone()).collect();
        Ok(TrustBundle::new(roots, Default::default()).unwrap_or(all))
    }

    /// The bundle the node uses: the bundle file, deny list, and the
    /// issuers the certificate file carries.
    pub fn bundle(&self) -> Result<TrustBundle, TrustFileError> {
        let certs = trust_files::load_certs(&self.cert)?;
        trust_files::load_bundle_with_chain(
            &self.ca_bundle,
            self.deny_list.as_deref(),
            &self.cert,
            certs.get(1..).unwrap_or_default(),
        )
    }

    /// The current certificate if it loads, is this node's, and the
    /// bundle accepts it now.
    pub fn current(&self) -> Option<Credentials> {
        let (creds, _) = trust_files::load_identity(&self.cert, &self.key).ok()?;
        let bundle = self.bundle().ok()?;
        (creds.name() == self.name && bundle.verify(&creds.cert, "node", now_s()).is_ok())
            .then_some(creds)
    }

    /// Whether this node can enroll at start (for `patrol config check`
    /// before the first start): the roots load and the token file reads.
    pub fn check_ready(&self) -> Result<(), String> {
        self.roots().map_err(|e| e.to_string())?;
        let Some(file) = &self.token_file else {
            return Err(
                "no valid certificate yet, and no enroll_token_file to enroll with".to_string(),
            );
        };
        match std::fs::read_to_string(file) {
            Ok(t) if !t.trim().is_empty() => Ok(()),
            Ok(_) => Err(format!("enroll_token_file {} is empty", file.display())),
            Err(e) => Err(format!("enroll_token_file {}: {e}", file.display())),
        }
    }

    /// This node's key: the key file, or a new key written to it.
    fn key(&self) -> Result<SigningKey, TrustFileError> {
        match trust_files::load_key(&self.key) {
            Ok(k) => Ok(k),
            Err(TrustFileError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
                if let Some(dir) = self.key.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| TrustFileError::Write {
                        path: dir.to_path_buf(),
                        source,
                    })?;
                }
                trust_files::write_key(&self.key, &key, &self.name)?;
                Ok(key)
            }
            Err(e) => Err(e),
        }
    }

    /// One attempt: renew with `current`, or enroll with the token.
    async fn attempt(&self, current: Option<&Credentials>) -> Result<Enrolled, EnrollError> {
        let roots = self
            .roots()
            .map_err(|e| EnrollError::Protocol(e.to_string()))?;
        let key = self
            .key()
            .map_err(|e| EnrollError::Protocol(e.to_string()))?;
        let token;
        let proof = match current {
            Some(c) => Proof::Renew(c),
            None => {
                let Some(file) = &self.token_file else {
                    return Err(EnrollError::Refused(
                        "no valid certificate and no [trust] enroll_token_file to enroll with"
                            .into(),
                    ));
                };
                token = std::fs::read_to_string(file).map_err(|e| {
                    EnrollError::Refused(format!(
                        "[trust] enroll_token_file {}: {e}",
                        file.display()
                    ))
                })?;
                Proof::Token {
                    name: &self.name,
                    token: token.trim(),
                }
            }
        };
        client::enroll(&self.service, &roots, &key, proof, self.settings.timeout).await
    }

    /// Write what was issued: the certificate file (certificate and
    /// chain), replaced whole.
    fn store(&self, enrolled: &Enrolled) -> Result<(), TrustFileError> {
        trust_files::replace(&self.cert, &enrolled.cert_file_text(), 0o644)
    }
}

/// At start, with `[trust] enroll`: enroll unless the node has a valid
/// certificate. An unreachable service is retried with backoff (the agent
/// cannot start certified without one); a refusal ends the start.
pub async fn enroll_if_needed(e: &Enrollment) -> Result<(), EnrollError> {
    if e.current().is_some() {
        return Ok(());
    }
    let mut wait = e.settings.backoff_min;
    loop {
        match e.attempt(None).await {
            Ok(enrolled) => {
                e.store(&enrolled)
                    .map_err(|err| EnrollError::Protocol(err.to_string()))?;
                tracing::info!(
                    service = %e.service,
                    issuer = %enrolled.issuer,
                    serial = %format_args!("{:016x}", enrolled.creds.cert.body.serial),
                    "enrolled: certificate written to {}",
                    e.cert.display()
                );
                return Ok(());
            }
            Err(err @ EnrollError::Refused(_)) => return Err(err),
            Err(err) => {
                tracing::warn!(service = %e.service, error = %err, "cannot enroll yet; retrying in {}", patrol_config::format_duration(wait));
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(e.settings.backoff_max);
            }
        }
    }
}

/// Where a renewed certificate goes, besides the files.
#[derive(Debug)]
pub struct Targets {
    pub commander: crate::agent::Commander,
    pub node: tokio::sync::watch::Sender<Credentials>,
    pub bundle: std::sync::Arc<tokio::sync::watch::Sender<TrustBundle>>,
}

/// With `[trust] enroll`: start renewing for a started daemon, with the
/// watches its control channel and `patrol.cert_expiry` read.
pub fn spawn(config: &patrol_config::Config, daemon: &mut crate::daemon::Daemon) {
    let enrollment = Enrollment::from_config(config);
    if let (Some(e), Some(bundle), Some(node)) =
        (enrollment, daemon.bundle.clone(), daemon.node.take())
    {
        let current = node.borrow().clone();
        let targets = Targets {
            commander: daemon.agent.commander(),
            node,
            bundle,
        };
        daemon.agent.tasks().spawn(run(e, current, targets));
    }
}

/// Renew for as long as the agent runs.
pub async fn run(e: Enrollment, mut current: Credentials, targets: Targets) {
    loop {
        let at = renew_at(&current.cert, rand::random::<f64>());
        let wait = at.saturating_sub(now_s());
        tracing::debug!(in_s = wait, "next certificate renewal");
        tokio::time::sleep(Duration::from_secs(wait)).await;
        let renewed = renew(&e, &current).await;
        match apply(&e, &renewed, &targets).await {
            Ok(()) => current = renewed.creds,
            Err(err) => {
                tracing::error!(error = %err, "the renewed certificate cannot be used; keeping the current one");
                tokio::time::sleep(e.settings.backoff_max).await;
            }
        }
    }
}

/// Renew `current` until the service issues: with backoff, and once
/// `current` has expired, with the token (if any).
async fn renew(e: &Enrollment, current: &Credentials) -> Enrolled {
    let mut wait = e.settings.backoff_min;
    loop {
        let expired = now_s() > current.cert.body.not_after;
        let proof = if expired && e.token_file.is_some() {
            None
        } else {
            Some(current)
        };
        match e.attempt(proof).await {
            Ok(enrolled) => return enrolled,
            Err(err) => {
                let left = current.cert.body.not_after.saturating_sub(now_s());
                if matches!(err, EnrollError::Refused(_)) {
                    tracing::error!(service = %e.service, error = %err, left_s = left, "certificate renewal refused; the current certificate stays in use until it expires");
                } else {
                    tracing::warn!(service = %e.service, error = %err, left_s = left, "cannot renew the certificate yet; retrying in {}", patrol_config::format_duration(wait));
                }
                // Never sleep past the expiry by more than one attempt.
                let cap = Duration::from_secs(left.max(1));
                tokio::time::sleep(wait.min(cap.max(e.settings.backoff_min))).await;
                wait = (wait * 2).min(e.settings.backoff_max);
            }
        }
    }
}

/// Write and use a renewed certificate: the files, then the node, the
/// control channel and the bundle.
async fn apply(e: &Enrollment, renewed: &Enrolled, targets: &Targets) -> Result<(), String> {
    e.store(renewed).map_err(|err| err.to_string())?;
    let bundle = e.bundle().map_err(|err| err.to_string())?;
    bundle
        .verify(&renewed.creds.cert, "node", now_s())
        .map_err(|err| err.to_string())?;
    targets
        .commander
        .renew_credentials(renewed.creds.clone(), bundle.clone())
        .await
        .map_err(|_| "the agent has stopped".to_string())?;
    targets.node.send_replace(renewed.creds.clone());
    targets.bundle.send_replace(bundle);
    tracing::info!(
        serial = %format_args!("{:016x}", renewed.creds.cert.body.serial),
        not_after = renewed.creds.cert.body.not_after,
        "certificate renewed and in use"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use patrol_core::trust::testing::{ca, issued};
    use patrol_core::trust::Role;

    use super::*;

    #[test]
    fn renewal_falls_at_two_thirds_of_the_life_less_at_most_a_twelfth() {
        let root = ca(1);
        let c = issued(
            &root,
            SigningKey::from_bytes(&[2; 32]),
            Role::Node,
            "n",
            5,
            1200..2400,
        );
        assert_eq!(renew_at(&c.cert, 0.0), 2000);
        assert_eq!(renew_at(&c.cert, 1.0), 1900);
        let mid = renew_at(&c.cert, 0.5);
        assert!((1900..=2000).contains(&mid), "{mid}");
    }
}
