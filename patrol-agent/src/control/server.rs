//! The control server: accept connections (at most
//! `ControlSettings::max_connections` at once), greet each with a fresh
//! challenge, read one sealed request in time, and serve it with one
//! function per request.
//!
//! Slowloris-proof: a connection that has not yet sent a request that
//! opens is *pending*. When every slot is taken, the oldest pending
//! connection is closed to make room (an honest client sends its request
//! within milliseconds of the hello, so it is rarely the oldest); one peer
//! address holds at most `max_pending_per_peer` pending connections; every
//! write has a deadline.
//!
//! With certificates, each operator may hold only a share of the sweeps
//! started here ([`quota`]), so one operator cannot lock out the others.
//!
//! Refusals before a client proved an operator certificate are audited
//! within a budget ([`AuditLog::append_unproven`]): a flood of refused
//! handshakes is summed up, never written line by line, and is logged
//! (quietly past the budget) with the client's text escaped
//! ([`Escaped`]).

mod quota;
mod slots;

pub use quota::{QuotaRefusal, QuotaSettings};

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use patrol_core::trust::authorization::SweepAsk;
use patrol_core::trust::{Credentials, TrustBundle, Verified};

use slots::{Slot, Slots};

use super::frame::{self, Challenge, CHALLENGE_LEN, MAX_REQUEST_FRAME};
use super::handshake::{self, Ephemeral};
use super::{read_frame, write_frame, ControlError, ControlRequest, ControlResponse, SignedSweep};
use crate::agent::{Commander, SweepEvent};
use crate::audit::{AuditLog, AuditRecord};
use crate::clock::WallClock;
use crate::envelope::{Envelope, Purpose};
use crate::escaped::Escaped;
use crate::sweep::{check_signed_sweep, StartSweep, SweepSettings};

/// How often the summaries of suppressed refusals are written when due
/// (the budget's own interval decides when they are due).
const AUDIT_SUMMARY_TICK: Duration = Duration::from_secs(1);

/// How the control channel authenticates clients.
#[derive(Debug, Clone)]
pub enum ControlAuth {
    /// Frames sealed with the cluster key.
    ClusterKey(Envelope),
    /// Operator certificates (see [`handshake`]).
    Certificates(Box<CertAuth>),
}

impl From<Envelope> for ControlAuth {
    fn from(e: Envelope) -> Self {
        ControlAuth::ClusterKey(e)
    }
}

/// What the agent needs to take operator certificates.
#[derive(Debug, Clone)]
pub struct CertAuth {
    /// The cluster name, bound into every sealed frame.
    pub cluster: String,
    /// This agent's own key and node certificate, replaced when the
    /// certificate is renewed (enrollment).
    pub node: tokio::sync::watch::Receiver<Credentials>,
    /// The CAs and deny list, replaced on SIGHUP.
    pub bundle: tokio::sync::watch::Receiver<TrustBundle>,
    /// Where every control request is recorded, refused ones included.
    pub audit: Option<AuditLog>,
    pub clock: WallClock,
    /// The node's configured sweep settings: a signed sweep is checked
    /// here with the one check the sweep core makes
    /// ([`patrol_core::sweep::check_signed_sweep`]), in the same window.
    pub sweep: SweepSettings,
}

/// The control channel's limits. `Default` gives the shipped values.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlSettings {
    /// Connections served at once; more are closed at once. Default 64
    /// (a handful of CLIs and cron jobs, with room to spare).
    pub max_connections: usize,
    /// How long a client may take to send its request after the hello.
    /// Default 5 s.
    pub request_timeout: Duration,
    /// Largest encoded selector and node filter a sweep request may carry:
    /// the request rides in one gossip packet with foca's header and the
    /// envelope. Default 900 bytes.
    pub max_selector_bytes: usize,
    /// A sweep's deadline is clamped to `deadline_min..=deadline_max` (with
    /// certificates, a signed deadline outside it is refused). Default
    /// 100 ms.
    pub deadline_min: Duration,
    /// Default 10 min: [`patrol_checks::document::MAX_DEADLINE`], the one
    /// deadline cap; the daemon sets the node's `sweep.max_deadline` here,
    /// so the channel never starts a sweep the node would cut short or its
    /// participants refuse. Must be at least `deadline_min` and at most
    /// the node's `sweep.max_deadline` (checked by the daemon's settings).
    pub deadline_max: Duration,
    /// Connections from one peer address that have not sent a request yet.
    /// Default 16. (All local users share 127.0.0.1: the eviction of the
    /// oldest pending connection is what keeps them from locking out the
    /// cron job.)
    pub max_pending_per_peer: usize,
    /// How long one frame may take to write before the connection is
    /// dropped (a client that stops reading). Default 10 s.
    pub write_timeout: Duration,
    /// With certificates: how many sweeps one operator may hold and start
    /// through this agent ([`quota`]). The daemon sets `max_sweeps` to a
    /// quarter of the node's `sweep.max_participations`.
    pub quota: QuotaSettings,
}

impl Default for ControlSettings {
    fn default() -> Self {
        ControlSettings {
            max_connections: 64,
            request_timeout: Duration::from_secs(5),
            max_selector_bytes: 900,
            deadline_min: Duration::from_millis(100),
            deadline_max: patrol_checks::document::MAX_DEADLINE,
            max_pending_per_peer: 16,
            write_timeout: Duration::from_secs(10),
            quota: QuotaSettings::default(),
        }
    }
}

/// Serve the control channel on `listener` with the default limits; runs
/// until dropped (the agent's [`Tasks`](crate::shutdown::Tasks) cancel
/// it), and the connections in flight end with it.
pub async fn serve(listener: TcpListener, auth: impl Into<ControlAuth>, commander: Commander) {
    serve_with(ControlSettings::default(), listener, auth, commander).await
}

pub async fn serve_with(
    settings: ControlSettings,
    listener: TcpListener,
    auth: impl Into<ControlAuth>,
    commander: Commander,
) {
    let auth = auth.into();
    let settings = Arc::new(settings);
    let slots = Arc::new(Mutex::new(Slots::default()));
    let quotas = Arc::new(Mutex::new(quota::OperatorQuotas::new(
        settings.quota.clone(),
    )));
    let mut conns = tokio::task::JoinSet::new();
    let mut summaries = tokio::time::interval(AUDIT_SUMMARY_TICK);
    loop {
        tokio::select! {
            _ = summaries.tick() => {
                if let ControlAuth::Certificates(cert) = &auth {
                    if let Some(log) = &cert.audit {
                        log.flush_unproven(cert.clock.unix_ms());
                    }
                }
            }
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let Some(slot) = Slots::take(&slots, &settings, peer.ip()) else {
                    tracing::warn!(%peer, "every control slot is serving a request; refusing");
                    continue;
                };
                let conn = Connection {
                    stream,
                    auth: auth.clone(),
                    envelope: None,
                    operator: None,
                    peer: peer.to_string(),
                    peer_ip: peer.ip(),
                    challenge: rand::random::<[u8; CHALLENGE_LEN]>(),
                    settings: Arc::clone(&settings),
                    quotas: Arc::clone(&quotas),
                    slot,
                };
                let commander = commander.clone();
                conns.spawn(async move {
                    let closed = conn.slot.closed.clone();
                    tokio::select! {
                        _ = closed.cancelled() => {
                            tracing::debug!(%peer, "pending control connection closed to make room");
                        }
                        served = conn.serve(&commander) => {
                            if let Err(e) = served {
                                tracing::debug!(%peer, error = %e, "control connection ended");
                            }
                        }
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

struct Connection {
    stream: TcpStream,
    auth: ControlAuth,
    /// What seals this connection's frames: the cluster key, or the
    /// session key once the handshake is done.
    envelope: Option<Envelope>,
    /// The operator who proved its certificate (with certificates).
    operator: Option<Verified>,
    peer: String,
    peer_ip: IpAddr,
    challenge: Challenge,
    settings: Arc<ControlSettings>,
    quotas: Arc<Mutex<quota::OperatorQuotas>>,
    slot: Slot,
}

impl Connection {
    async fn serve(mut self, commander: &Commander) -> Result<(), ControlError> {
        match self.auth.clone() {
            ControlAuth::ClusterKey(envelope) => {
                let hello = frame::encode_hello(&self.challenge);
                self.write(&hello).await?;
                self.envelope = Some(envelope);
            }
            ControlAuth::Certificates(cert) => self.handshake(&cert).await?,
        }
        let request = self.read_request().await?;
        self.slot.serving();
        match request {
            ControlRequest::Members => {
                self.audit("members", None, "served", None);
                self.members(commander).await
            }
            ControlRequest::Stats => {
                self.audit("stats", None, "served", None);
                self.stats(commander).await
            }
            ControlRequest::StartSweep {
                selector,
                node_filter,
                deadline_ms,
                signed,
            } => {
                let mut spec = StartSweep {
                    selector,
                    node_filter,
                    deadline: Duration::from_millis(deadline_ms)
                        .clamp(self.settings.deadline_min, self.settings.deadline_max),
                    id: None,
                    authorization: None,
                };
                if let Err(reason) = self.authorize(&mut spec, deadline_ms, signed) {
                    self.audit("sweep", Some(&spec), "refused", Some(reason.clone()));
                    return self.send(ControlResponse::Error(reason)).await;
                }
                if let Err(refusal) = self.within_quota(&spec, commander) {
                    let reason = refusal.to_string();
                    self.audit("sweep", Some(&spec), "refused", Some(reason.clone()));
                    return self.send(ControlResponse::Error(reason)).await;
                }
                self.audit("sweep", Some(&spec), "served", None);
                self.start_sweep(commander, spec).await
            }
            ControlRequest::Roster => {
                self.audit("roster", None, "served", None);
                let reply = match commander.roster().await {
                    Ok(Some(view)) => ControlResponse::Roster(Box::new(view)),
                    Ok(None) => ControlResponse::Error(
                        "this agent runs without [trust]: membership is SWIM's view only (patrol members)".into(),
                    ),
                    Err(e) => ControlResponse::Error(e.to_string()),
                };
                self.send(reply).await
            }
            ControlRequest::Forget(forget) => {
                let reply = match self.forget_allowed(&forget) {
                    Err(reason) => {
                        self.audit("forget", None, "refused", Some(reason.clone()));
                        ControlResponse::Error(reason)
                    }
                    Ok(()) => match commander.forget(*forget).await {
                        Ok(Ok(was_on_roster)) => {
                            self.audit("forget", None, "served", None);
                            ControlResponse::Forgot { was_on_roster }
                        }
                        Ok(Err(reason)) => {
                            self.audit("forget", None, "refused", Some(reason.clone()));
                            ControlResponse::Error(reason)
                        }
                        Err(e) => ControlResponse::Error(e.to_string()),
                    },
                };
                self.send(reply).await
            }
        }
    }

    /// A roster forget needs certificates and the signature of this
    /// connection's operator (the node checks the rest).
    fn forget_allowed(&self, forget: &patrol_core::trust::SignedForget) -> Result<(), String> {
        if !matches!(self.auth, ControlAuth::Certificates(_)) {
            return Err("this agent runs without [trust]: it has no roster to forget from".into());
        }
        match &self.operator {
            Some(op) if op.cert == forget.operator => Ok(()),
            Some(op) => Err(format!(
                "the forget is signed by `{}`, not by `{}` who opened this connection",
                forget.operator.body.name,
                op.name()
            )),
            None => Err("no operator proved a certificate on this connection".into()),
        }
    }

    /// The certificate handshake: the hello with our ephemeral key, the operator's proof
    /// (refused with a DENY saying why), our proof, the session key.
    async fn handshake(&mut self, cert: &CertAuth) -> Result<(), ControlError> {
        let eph = Ephemeral::new();
        let hello = handshake::encode_hello3(&self.challenge, &eph.public);
        self.write(&hello).await?;
        let auth = tokio::time::timeout(
            self.settings.request_timeout,
            read_frame(&mut self.stream, MAX_REQUEST_FRAME),
        )
        .await
        .map_err(|_| ControlError::Timeout)??;
        let bundle = cert.bundle.borrow().clone();
        let node = cert.node.borrow().clone();
        let now_s = cert.clock.unix_ms() / 1000;
        match handshake::server_accept(&node, &bundle, &eph, &hello, &auth, &cert.cluster, now_s) {
            Ok((operator, proof, session)) => {
                self.write(&proof).await?;
                self.envelope = Some(session);
                self.operator = Some(operator);
                Ok(())
            }
            Err(reason) => {
                if self.audit("handshake", None, "refused", Some(reason.clone())) {
                    tracing::warn!(peer = %self.peer, reason = %Escaped(&reason), "refused a control client");
                } else {
                    tracing::debug!(peer = %self.peer, reason = %Escaped(&reason), "refused a control client (over the audit budget)");
                }
                let _ = self.write(&frame::encode_deny(&reason)).await;
                Err(ControlError::Refused(reason))
            }
        }
    }

    /// With certificates: take a slot of this operator's quota for the
    /// sweep (counted when refused). Without, no quota: every key holder
    /// is the cluster's administrator.
    fn within_quota(&self, spec: &StartSweep, commander: &Commander) -> Result<(), QuotaRefusal> {
        let Some(operator) = &self.operator else {
            return Ok(());
        };
        let mut quotas = self.quotas.lock().unwrap_or_else(|p| p.into_inner());
        let admitted = quotas.admit(operator.name(), spec.deadline, std::time::Instant::now());
        let counters = commander.control_counters();
        match &admitted {
            Err(QuotaRefusal::Concurrent { .. }) => &counters.refused_operator_concurrent,
            Err(QuotaRefusal::Rate { .. }) => &counters.refused_operator_rate,
            Ok(()) => return Ok(()),
        }
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        admitted
    }

    /// With certificates, a sweep must carry the operator's signature (by
    /// the operator of this connection) within its scope; the signed id
    /// becomes the sweep id. Without, any key holder may sweep.
    fn authorize(
        &self,
        spec: &mut StartSweep,
        deadline_ms: u64,
        signed: Option<Box<SignedSweep>>,
    ) -> Result<(), String> {
        let ControlAuth::Certificates(cert) = &self.auth else {
            return Ok(());
        };
        let Some(signed) = signed else {
            return Err("this cluster requires sweeps signed by an operator certificate".into());
        };
        let Some(operator) = &self.operator else {
            return Err("no operator proved a certificate on this connection".into());
        };
        if signed.authorization.operator != operator.cert {
            return Err(format!(
                "the sweep is signed by `{}`, not by `{}` who opened this connection",
                signed.authorization.operator.body.name,
                operator.name()
            ));
        }
        if Duration::from_millis(deadline_ms) != spec.deadline {
            return Err(format!(
                "the deadline of {deadline_ms} ms is outside what this agent allows ({} ms to {} ms)",
                self.settings.deadline_min.as_millis(),
                self.settings.deadline_max.as_millis()
            ));
        }
        let bundle = cert.bundle.borrow().clone();
        let node = cert.node.borrow().name().to_string();
        let ask = SweepAsk {
            sweep_id: signed.sweep_id,
            selector: &spec.selector,
            node_filter: &spec.node_filter,
            deadline_ms,
            coordinator: &node,
        };
        check_signed_sweep(
            &signed.authorization,
            &bundle,
            &ask,
            &cert.sweep,
            cert.clock.unix_ms(),
        )
        .map_err(|e| e.to_string())?;
        spec.id = Some(signed.sweep_id);
        spec.authorization = Some(signed.authorization);
        Ok(())
    }

    /// One audit line for this control request (with certificates only);
    /// before an operator proved a certificate, within the budget for
    /// unproven lines. Whether a line was written (or there is no log).
    fn audit(
        &self,
        request: &'static str,
        spec: Option<&StartSweep>,
        action: &'static str,
        reason: Option<String>,
    ) -> bool {
        let ControlAuth::Certificates(cert) = &self.auth else {
            return true;
        };
        let Some(log) = &cert.audit else {
            return true;
        };
        let mut r = AuditRecord::new(cert.clock.unix_ms(), "control", action);
        r.request = Some(request);
        r.peer = Some(self.peer.clone());
        r.operator = self.operator.as_ref().map(|o| o.name().to_string());
        r.coordinator = Some(cert.node.borrow().name().to_string());
        if let Some(spec) = spec {
            r.selector = Some(spec.selector.clone());
            r.node_filter = spec.node_filter.clone();
            r.sweep_id = spec.id.map(|id| format!("{id:016x}"));
        }
        r.reason = reason;
        if self.operator.is_none() {
            return log.append_unproven(self.peer_ip, &r);
        }
        log.append(&r);
        true
    }

    /// The one request, in time and sealed for this connection; a client
    /// that fails gets a refusal saying why.
    async fn read_request(&mut self) -> Result<ControlRequest, ControlError> {
        let bytes = tokio::time::timeout(
            self.settings.request_timeout,
            read_frame(&mut self.stream, MAX_REQUEST_FRAME),
        )
        .await
        .map_err(|_| ControlError::Timeout)??;
        let Some(envelope) = self.envelope.clone() else {
            return Err(ControlError::Protocol("no session".into()));
        };
        match frame::open(&envelope, Purpose::ControlRequest, self.challenge, &bytes) {
            Ok(r) => Ok(r),
            Err(e) => {
                let reason = match e {
                    ControlError::BadSeal if self.operator.is_none() => {
                        "authentication failed: the request is not sealed with this cluster's key"
                            .to_string()
                    }
                    ControlError::BadSeal => {
                        "the request is not sealed with this connection's session key".to_string()
                    }
                    other => other.to_string(),
                };
                tracing::warn!(peer = %self.peer, reason = %Escaped(&reason), "refused a control client");
                let _ = self.write(&frame::encode_deny(&reason)).await;
                Err(ControlError::Refused(reason))
            }
        }
    }

    async fn send(&mut self, body: ControlResponse) -> Result<(), ControlError> {
        let Some(envelope) = self.envelope.as_ref() else {
            return Err(ControlError::Protocol("no session".into()));
        };
        let sealed = frame::seal(envelope, Purpose::ControlReply, self.challenge, body)?;
        self.write(&sealed).await
    }

    /// Write one frame within `write_timeout`.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), ControlError> {
        tokio::time::timeout(
            self.settings.write_timeout,
            write_frame(&mut self.stream, bytes),
        )
        .await
        .map_err(|_| ControlError::Timeout)?
    }

    async fn members(mut self, commander: &Commander) -> Result<(), ControlError> {
        let body = match commander.members().await {
            Ok(m) => ControlResponse::Members(m),
            Err(e) => ControlResponse::Error(e.to_string()),
        };
        self.send(body).await
    }

    async fn stats(mut self, commander: &Commander) -> Result<(), ControlError> {
        let body = match commander.stats().await {
            Ok(s) => ControlResponse::Stats(Box::new(s)),
            Err(e) => ControlResponse::Error(e.to_string()),
        };
        self.send(body).await
    }

    /// Start the sweep, stream its progress, then the document in pieces.
    async fn start_sweep(
        mut self,
        commander: &Commander,
        spec: StartSweep,
    ) -> Result<(), ControlError> {
        let size = bincode::serde::encode_to_vec(
            (&spec.selector, &spec.node_filter),
            bincode::config::standard(),
        )
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
        let limit = self.settings.max_selector_bytes;
        if size > limit {
            let why = format!(
                "the selector and node filter take {size} bytes; at most {limit} fit in a sweep request (name fewer checks, or use a label or profile)"
            );
            return self.send(ControlResponse::Error(why)).await;
        }
        let mut events = match commander.start_sweep(spec).await {
            Ok(rx) => rx,
            Err(e) => return self.send(ControlResponse::Error(e.to_string())).await,
        };
        while let Some(event) = events.recv().await {
            match event {
                SweepEvent::Progress { answered, expected } => {
                    self.send(ControlResponse::Progress { answered, expected })
                        .await?;
                }
                SweepEvent::Refused(reason) => {
                    return self.send(ControlResponse::Error(reason)).await;
                }
                SweepEvent::Done(doc) => {
                    let mut pieces = frame::document_pieces(*doc).peekable();
                    while let Some(bytes) = pieces.next() {
                        let last = pieces.peek().is_none();
                        self.send(ControlResponse::SweepPiece { last, bytes })
                            .await?;
                    }
                    return Ok(());
                }
            }
        }
        self.send(ControlResponse::Error(
            "the agent stopped during the sweep".into(),
        ))
        .await
    }
}
