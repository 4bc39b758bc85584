//! The control server: accept connections (at most
//! `ControlSettings::max_connections` at once), greet each with a fresh
//! challenge, read one sealed request in time, and serve it with one
//! function per request.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::frame::{self, Challenge, CHALLENGE_LEN, MAX_REQUEST_FRAME};
use super::{read_frame, write_frame, ControlError, ControlRequest, ControlResponse};
use crate::agent::{Commander, SweepEvent};
use crate::envelope::Envelope;
use crate::sweep::StartSweep;

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
    /// A sweep's deadline is clamped to this range. Default 100 ms to 1 h.
    pub deadline_min: Duration,
    pub deadline_max: Duration,
}

impl Default for ControlSettings {
    fn default() -> Self {
        ControlSettings {
            max_connections: 64,
            request_timeout: Duration::from_secs(5),
            max_selector_bytes: 900,
            deadline_min: Duration::from_millis(100),
            deadline_max: Duration::from_secs(3600),
        }
    }
}

/// Serve the control channel on `listener` with the default limits; runs
/// until dropped (the agent's [`Tasks`](crate::shutdown::Tasks) cancel
/// it), and the connections in flight end with it.
pub async fn serve(listener: TcpListener, envelope: Envelope, commander: Commander) {
    serve_with(ControlSettings::default(), listener, envelope, commander).await
}

pub async fn serve_with(
    settings: ControlSettings,
    listener: TcpListener,
    envelope: Envelope,
    commander: Commander,
) {
    let settings = Arc::new(settings);
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "too many control connections; refusing");
                    continue;
                };
                let conn = Connection {
                    stream,
                    envelope: envelope.clone(),
                    challenge: rand::random::<[u8; CHALLENGE_LEN]>(),
                    settings: Arc::clone(&settings),
                };
                let commander = commander.clone();
                conns.spawn(async move {
                    if let Err(e) = conn.serve(&commander).await {
                        tracing::debug!(%peer, error = %e, "control connection ended");
                    }
                    drop(permit);
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

struct Connection {
    stream: TcpStream,
    envelope: Envelope,
    challenge: Challenge,
    settings: Arc<ControlSettings>,
}

impl Connection {
    async fn serve(mut self, commander: &Commander) -> Result<(), ControlError> {
        write_frame(&mut self.stream, &frame::encode_hello(&self.challenge)).await?;
        let request = self.read_request().await?;
        match request {
            ControlRequest::Members => self.members(commander).await,
            ControlRequest::Stats => self.stats(commander).await,
            ControlRequest::StartSweep {
                selector,
                node_filter,
                deadline_ms,
            } => {
                let spec = StartSweep {
                    selector,
                    node_filter,
                    deadline: Duration::from_millis(deadline_ms)
                        .clamp(self.settings.deadline_min, self.settings.deadline_max),
                };
                self.start_sweep(commander, spec).await
            }
        }
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
        match frame::open(&self.envelope, self.challenge, &bytes) {
            Ok(r) => Ok(r),
            Err(e) => {
                let reason = match e {
                    ControlError::BadSeal => {
                        "authentication failed: the request is not sealed with this cluster's key"
                            .to_string()
                    }
                    other => other.to_string(),
                };
                tracing::warn!(reason = %reason, "refused a control client");
                let _ = write_frame(&mut self.stream, &frame::encode_deny(&reason)).await;
                Err(ControlError::Refused(reason))
            }
        }
    }

    async fn send(&mut self, body: ControlResponse) -> Result<(), ControlError> {
        let sealed = frame::seal(&self.envelope, self.challenge, body)?;
        write_frame(&mut self.stream, &sealed).await
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
            Ok(s) => ControlResponse::Stats(s),
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
                SweepEvent::Done(doc) => {
                    let pieces = frame::document_pieces(&doc)?;
                    let count = pieces.len();
                    for (i, bytes) in pieces.into_iter().enumerate() {
                        let last = i + 1 == count;
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
