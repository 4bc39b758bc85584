//! The enrollment service (`patrol enroll serve`): accept connections (at
//! most [`ServiceSettings::max_connections`] at once,
//! [`ServiceSettings::max_per_peer`] from one address, each within
//! [`ServiceSettings::exchange_timeout`]), prove the issuer, and answer
//! one request per connection with a certificate or a refusal.
//!
//! Checks, in order, before anything is spent: the request opens in this
//! session, the client holds the new key, the name is one the issuer may
//! sign. Then the credential: a token is spent (the use written to the
//! token file before the certificate is made), or a current certificate
//! is verified against the service's bundle with the deny list read again
//! (so a revoked node, or a node of a revoked issuer, cannot renew) and
//! must be for the same name. Every outcome is counted by a stable word
//! and audited: issues in full, refusals within the audit log's budget
//! for lines nobody proved ([`AuditLog::append_unproven`]).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patrol_core::trust::{issue, Certificate, Credentials, Issue, Role, TrustBundle, TrustError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::tokens::{Refusal, TokenStore};
use super::wire::{self, Credential, EnrollRequest, EnrollResponse, MAX_ENROLL_FRAME};
use super::EnrollError;
use crate::audit::{AuditLog, AuditRecord};
use crate::control::frame::{self, CHALLENGE_LEN};
use crate::control::handshake::{Ephemeral, EPH_LEN};
use crate::control::{read_frame, write_frame};
use crate::envelope::Purpose;

/// The service's limits. `Default` gives the shipped values.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSettings {
    /// Connections served at once; more are closed at once (and counted
    /// as `busy`). Default 64: a request takes a few milliseconds, so 64
    /// serve thousands of enrollments a second, and a flood of idle
    /// connections holds at most 64 slots for `exchange_timeout`.
    pub max_connections: usize,
    /// Connections one peer address may hold at once; more are closed at
    /// once (`busy`). Default 8: an enrollment takes milliseconds, so a
    /// host (or a NAT of many) needs few at a time, and one address
    /// cannot hold every slot for `exchange_timeout`.
    pub max_per_peer: usize,
    /// How long one connection may take from hello to answer. Default
    /// 10 s. Must not be zero.
    pub exchange_timeout: Duration,
    /// Life of an issued certificate. Default 30 days (the node renews
    /// at two thirds). Must not be zero.
    pub cert_life: Duration,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            max_connections: 64,
            max_per_peer: 8,
            exchange_timeout: Duration::from_secs(10),
            cert_life: Duration::from_secs(30 * 86_400),
        }
    }
}

/// What the service holds.
#[derive(Debug)]
pub struct Service {
    pub issuer: Credentials,
    /// The bundle file (roots and issuers): renewals are checked with it,
    /// and its issuers go to every client.
    pub bundle_file: PathBuf,
    /// Revoked serials, read again at each renewal.
    pub deny_list: Option<PathBuf>,
    pub tokens: TokenStore,
    pub audit: AuditLog,
    pub settings: ServiceSettings,
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

/// One request's outcome.
struct Outcome {
    request: &'static str,
    name: String,
    result: Result<Certificate, Refusal>,
}

fn refused(reason: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        detail: detail.into(),
    }
}

fn now_s() -> u64 {
    crate::clock::unix_ms() / 1000
}

impl Service {
    pub fn new(
        issuer: Credentials,
        bundle_file: PathBuf,
        deny_list: Option<PathBuf>,
        tokens: TokenStore,
        audit: AuditLog,
        settings: ServiceSettings,
    ) -> Service {
        Service {
            issuer,
            bundle_file,
            deny_list,
            tokens,
            audit,
            settings,
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    /// The bundle file and deny list as they are now; the service's own
    /// issuer must pass them (a revoked or expired issuer issues nothing).
    pub fn bundle(&self) -> Result<TrustBundle, String> {
        let b = crate::trust_files::load_bundle(&self.bundle_file, self.deny_list.as_deref())
            .map_err(|e| e.to_string())?;
        b.verify(&self.issuer.cert, "issuer", now_s())
            .map_err(|e| format!("this service's issuer: {e}"))?;
        Ok(b)
    }

    /// Outcomes so far by word (`issued`, `renewed`, and each refusal's).
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn count(&self, word: &'static str) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(word)
            .or_default() += 1;
    }

    /// Decide one opened request (everything but the socket).
    fn decide(&self, req: &EnrollRequest, transcript: &[u8]) -> Outcome {
        let request = match req.credential {
            Credential::Token(_) => "token",
            Credential::Renew { .. } => "renew",
        };
        let result = self.check_and_issue(req, transcript);
        Outcome {
            request,
            name: req.name.clone(),
            result,
        }
    }

    fn check_and_issue(
        &self,
        req: &EnrollRequest,
        transcript: &[u8],
    ) -> Result<Certificate, Refusal> {
        let key = wire::check_possession(req, transcript).map_err(|e| refused("possession", e))?;
        let name = &req.name;
        if name.is_empty()
            || name.len() > patrol_core::trust::cert::MAX_CERT_NAME
            || name.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(refused(
                "name_invalid",
                "the name is empty, too long or has spaces",
            ));
        }
        if let Role::Issuer(names) = &self.issuer.cert.body.role {
            if !names.matches(name) {
                return Err(refused(
                    "name_outside_issuer",
                    format!("this issuer signs names {}, not `{name}`", names.describe()),
                ));
            }
        }
        let bundle = self.bundle().map_err(|e| refused("service", e))?;
        match &req.credential {
            Credential::Token(token) => {
                self.tokens.spend(token, name, now_s())?;
            }
            Credential::Renew { cert, signature } => {
                let current = bundle.verify(cert, "node", now_s()).map_err(|e| {
                    let reason = match e {
                        TrustError::Revoked { .. } => "renew_revoked",
                        TrustError::Expired { .. } => "renew_expired",
                        _ => "renew_refused",
                    };
                    refused(reason, format!("the current certificate: {e}"))
                })?;
                if current.name() != name {
                    return Err(refused(
                        "renew_name",
                        format!("the current certificate is for `{}`", current.name()),
                    ));
                }
                if !wire::renewal_signed(&current, req, transcript, signature) {
                    return Err(refused(
                        "renew_signature",
                        "the renewal is not signed by the current certificate's key",
                    ));
                }
            }
        }
        let now = now_s();
        let life = self.settings.cert_life.as_secs();
        // Valid a little before now, for nodes whose clock runs behind:
        // a minute, or a tenth of a short life (renewal is planned from
        // `not_before`).
        let backdate = (life / 10).min(60);
        issue(
            &self.issuer,
            Issue {
                role: Role::Node,
                name,
                public_key: key,
                serial: rand::random(),
                not_before: now.saturating_sub(backdate),
                not_after: now.saturating_add(self.settings.cert_life.as_secs()),
            },
        )
        .map_err(|e| refused("issue", e.to_string()))
    }

    /// Count and audit one outcome.
    fn record(&self, peer: &SocketAddr, outcome: &Outcome) {
        let action = match (&outcome.result, outcome.request) {
            (Ok(_), "renew") => "renewed",
            (Ok(_), _) => "issued",
            (Err(r), _) => r.reason,
        };
        self.count(action);
        let mut r = AuditRecord::new(
            crate::clock::unix_ms(),
            "enroll",
            if outcome.result.is_ok() {
                action
            } else {
                "refused"
            },
        );
        r.request = Some(outcome.request);
        r.peer = Some(peer.to_string());
        r.node = Some(outcome.name.clone());
        match &outcome.result {
            Ok(cert) => {
                r.reason = Some(format!("serial {:016x}", cert.body.serial));
                tracing::info!(node = %outcome.name, %peer, action, serial = %format_args!("{:016x}", cert.body.serial), "certificate issued");
                self.audit.append(&r);
            }
            Err(refusal) => {
                r.reason = Some(format!("{}: {}", refusal.reason, refusal.detail));
                tracing::warn!(node = %crate::escaped::Escaped(&outcome.name), %peer, reason = refusal.reason, detail = %refusal.detail, "enrollment refused");
                self.audit.append_unproven(peer.ip(), &r);
            }
        }
    }

    /// Count and audit a connection that ended before a request opened.
    fn record_early(&self, peer: &SocketAddr, reason: &'static str, detail: &str) {
        self.count(reason);
        let mut r = AuditRecord::new(crate::clock::unix_ms(), "enroll", "refused");
        r.peer = Some(peer.to_string());
        r.reason = Some(format!("{reason}: {detail}"));
        if self.audit.append_unproven(peer.ip(), &r) {
            tracing::warn!(%peer, reason, detail, "enrollment connection refused");
        }
    }
}

/// Serve on `listener` until dropped.
/// Connections held per peer address.
#[derive(Debug, Default)]
struct PeerSlots {
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One peer's connection slot, given back on drop.
struct PeerSlot {
    slots: Arc<PeerSlots>,
    ip: IpAddr,
}

impl PeerSlots {
    /// A slot for `ip`, unless it already holds `max`.
    fn take(slots: &Arc<PeerSlots>, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let mut held = slots.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            slots: Arc::clone(slots),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

pub async fn serve(listener: TcpListener, service: Arc<Service>) {
    let slots = Arc::new(Semaphore::new(service.settings.max_connections));
    let peers = Arc::new(PeerSlots::default());
    let mut conns = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => service.audit.flush_unproven(crate::clock::unix_ms()),
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let Some(mine) = PeerSlots::take(&peers, peer.ip(), service.settings.max_per_peer) else {
                    service.record_early(&peer, "busy", "this address holds its share of connections");
                    continue;
                };
                let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                    service.record_early(&peer, "busy", "every connection slot is taken");
                    continue;
                };
                let service = Arc::clone(&service);
                conns.spawn(async move {
                    let _slots = (permit, mine);
                    let limit = service.settings.exchange_timeout;
                    let served = tokio::time::timeout(limit, exchange(stream, &service, peer)).await;
                    match served {
                        Err(_) => service.record_early(&peer, "timeout", "no request in time"),
                        Ok(Err(e)) => service.record_early(&peer, "protocol", &e.to_string()),
                        Ok(Ok(())) => {}
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One connection: hello, proof, request, answer.
async fn exchange(
    mut stream: TcpStream,
    service: &Service,
    peer: SocketAddr,
) -> Result<(), EnrollError> {
    let challenge = rand::random::<[u8; CHALLENGE_LEN]>();
    let mine = Ephemeral::new();
    let hello = wire::encode_hello(&challenge, &mine.public);
    write_frame(&mut stream, &hello).await?;
    let eph = read_frame(&mut stream, EPH_LEN).await?;
    let client_eph: [u8; EPH_LEN] = eph
        .as_slice()
        .try_into()
        .map_err(|_| EnrollError::Protocol(format!("a key frame of {} bytes", eph.len())))?;
    let transcript = wire::transcript(&hello, &client_eph);
    write_frame(
        &mut stream,
        &wire::server_proof(&service.issuer, &transcript)?,
    )
    .await?;
    let envelope = wire::session(&mine, &client_eph, &transcript)?;
    let sealed = read_frame(&mut stream, MAX_ENROLL_FRAME).await?;
    let req: EnrollRequest =
        match wire::open_sealed(&envelope, Purpose::ControlRequest, challenge, &sealed) {
            Ok(r) => r,
            Err(e) => {
                // Not this session's: a replay, or another key.
                let answer =
                    EnrollResponse::Refused("the request does not open in this session".into());
                let _ = send(&mut stream, &envelope, challenge, &answer).await;
                service.record_early(&peer, "bad_request", &e.to_string());
                return Ok(());
            }
        };
    let outcome = service.decide(&req, &transcript);
    service.record(&peer, &outcome);
    let answer = match outcome.result {
        Ok(cert) => EnrollResponse::Issued {
            cert: Box::new(cert),
            chain: service
                .bundle()
                .map(|b| b.issuers().map(|i| i.cert.clone()).collect())
                .unwrap_or_default(),
        },
        Err(r) => EnrollResponse::Refused(format!("{}: {}", r.reason, r.detail)),
    };
    send(&mut stream, &envelope, challenge, &answer).await
}

async fn send(
    stream: &mut TcpStream,
    envelope: &crate::envelope::Envelope,
    challenge: [u8; CHALLENGE_LEN],
    answer: &EnrollResponse,
) -> Result<(), EnrollError> {
    let bytes = frame::seal(envelope, Purpose::ControlReply, challenge, answer)?;
    write_frame(stream, &bytes).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_holds_at_most_its_share_and_gets_it_back_when_done() {
        let slots = Arc::new(PeerSlots::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let held: Vec<_> = (0..3)
            .map(|_| PeerSlots::take(&slots, a, 3).unwrap())
            .collect();
        assert!(PeerSlots::take(&slots, a, 3).is_none());
        assert!(PeerSlots::take(&slots, b, 3).is_some());
        drop(held);
        assert!(PeerSlots::take(&slots, a, 3).is_some());
        assert!(
            slots.held.lock().unwrap().is_empty(),
            "nothing held after every slot dropped"
        );
    }
}
