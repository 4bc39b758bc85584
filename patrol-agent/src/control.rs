//! The control channel: a TCP listener where the CLI talks to an agent.
//!
//! Framing: every frame is a 4-byte big-endian length and that many bytes
//! (at most [`MAX_FRAME`]). The server speaks first with a hello carrying a
//! fresh random challenge. The client's one request and every server reply
//! are sealed with the cluster envelope and carry that challenge, so a
//! client without the key is refused, and a recorded session cannot be
//! replayed (the challenge differs each time). A refused client gets a
//! plain-text `DENY` frame saying why, then the connection closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use patrol_checks::{Selector, SweepDocument};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::agent::{AgentStats, Commander, SweepEvent};
use crate::envelope::Envelope;
use crate::membership::MemberInfo;
use crate::sweep::StartSweep;

/// Largest frame either side accepts. Sweep documents travel in pieces of
/// [`DOC_PIECE`] bytes, so a document of any size fits.
pub const MAX_FRAME: usize = 8 * 1024 * 1024;
/// Size of one piece of a sweep document on the control channel.
const DOC_PIECE: usize = 4 * 1024 * 1024;
/// Largest reassembled sweep document a client accepts.
const MAX_DOCUMENT: usize = 1024 * 1024 * 1024;
const HELLO_MAGIC: &[u8; 4] = b"PTRL";
const DENY_MAGIC: &[u8; 4] = b"DENY";
const PROTOCOL_VERSION: u8 = 1;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;

/// What a client asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlRequest {
    Members,
    Stats,
    StartSweep {
        selector: Selector,
        node_filter: BTreeMap<String, String>,
        deadline_ms: u64,
    },
}

/// What the agent answers (a sweep streams progress, then `SweepDone`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlResponse {
    Members(Vec<MemberInfo>),
    Stats(AgentStats),
    Progress {
        answered: u64,
        expected: u64,
    },
    /// A piece of the bincode-encoded sweep document; `last` ends it.
    /// [`ControlClient::recv`] reassembles pieces into `SweepDone`.
    SweepPiece {
        last: bool,
        bytes: Vec<u8>,
    },
    SweepDone(Box<SweepDocument>),
    Error(String),
}

#[derive(Serialize, Deserialize)]
struct Sealed<T> {
    challenge: [u8; 16],
    body: T,
}

/// Control channel failures, as the CLI reports them.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("i/o with the agent: {0}")]
    Io(#[from] std::io::Error),
    #[error("the agent refused the request: {0}")]
    Refused(String),
    #[error("the agent's reply does not open with our key (wrong key file or cluster name?)")]
    BadSeal,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("timed out waiting for the agent")]
    Timeout,
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME>()
}

async fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    stream.flush().await
}

async fn read_frame(stream: &mut TcpStream) -> Result<Vec<u8>, ControlError> {
    read_frame_limited(stream, MAX_FRAME).await
}

/// Largest encoded selector + node filter a sweep request may carry.
const MAX_SELECTOR_BYTES: usize = 900;

/// A request is small (a selector and a filter); the server reads it under
/// this limit, so an unauthenticated client cannot make it allocate more.
const MAX_REQUEST_FRAME: usize = 64 * 1024;

async fn read_frame_limited(stream: &mut TcpStream, limit: usize) -> Result<Vec<u8>, ControlError> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(ControlError::Protocol(format!(
            "frame of {len} bytes is over the limit"
        )));
    }
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

fn seal<T: Serialize>(
    envelope: &Envelope,
    challenge: [u8; 16],
    body: T,
) -> Result<Vec<u8>, ControlError> {
    let plain = bincode::serde::encode_to_vec(Sealed { challenge, body }, bincode_config())
        .map_err(|e| ControlError::Protocol(format!("cannot encode a frame: {e}")))?;
    envelope
        .seal_to_vec(&plain)
        .map_err(|e| ControlError::Protocol(format!("cannot seal a frame: {e}")))
}

fn open<T: serde::de::DeserializeOwned>(
    envelope: &Envelope,
    challenge: [u8; 16],
    frame: &[u8],
) -> Result<T, ControlError> {
    let plain = envelope.open(frame).map_err(|_| ControlError::BadSeal)?;
    let (sealed, _): (Sealed<T>, usize) =
        bincode::serde::decode_from_slice(&plain, bincode_config())
            .map_err(|e| ControlError::Protocol(format!("undecodable frame: {e}")))?;
    if sealed.challenge != challenge {
        return Err(ControlError::Refused("stale or replayed frame".into()));
    }
    Ok(sealed.body)
}

/// Serve the control channel on `listener`; runs until dropped (the
/// agent's [`Tasks`](crate::shutdown::Tasks) cancel it), and the
/// connections in flight end with it.
pub async fn serve(listener: TcpListener, envelope: Envelope, commander: Commander) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "too many control connections; refusing");
                    continue;
                };
                let envelope = envelope.clone();
                let commander = commander.clone();
                conns.spawn(async move {
                    if let Err(e) = handle(stream, &envelope, &commander).await {
                        tracing::debug!(%peer, error = %e, "control connection ended");
                    }
                    drop(permit);
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn handle(
    mut stream: TcpStream,
    envelope: &Envelope,
    commander: &Commander,
) -> Result<(), ControlError> {
    let challenge: [u8; 16] = rand::random();
    let mut hello = Vec::with_capacity(21);
    hello.extend_from_slice(HELLO_MAGIC);
    hello.push(PROTOCOL_VERSION);
    hello.extend_from_slice(&challenge);
    write_frame(&mut stream, &hello).await?;

    let frame = tokio::time::timeout(
        REQUEST_TIMEOUT,
        read_frame_limited(&mut stream, MAX_REQUEST_FRAME),
    )
    .await
    .map_err(|_| ControlError::Timeout)??;
    let request: ControlRequest = match open(envelope, challenge, &frame) {
        Ok(r) => r,
        Err(e) => {
            let reason = match e {
                ControlError::BadSeal => {
                    "authentication failed: the request is not sealed with this cluster's key"
                        .to_string()
                }
                other => other.to_string(),
            };
            tracing::warn!(reason = %reason, "refused a control client");
            let mut deny = DENY_MAGIC.to_vec();
            deny.extend_from_slice(reason.as_bytes());
            let _ = write_frame(&mut stream, &deny).await;
            return Err(ControlError::Refused(reason));
        }
    };
    let reply = |body: ControlResponse| seal(envelope, challenge, body);
    let send = async |stream: &mut TcpStream, body: ControlResponse| -> Result<(), ControlError> {
        let frame = reply(body)?;
        write_frame(stream, &frame).await?;
        Ok(())
    };
    match request {
        ControlRequest::Members => {
            let body = match commander.members().await {
                Ok(m) => ControlResponse::Members(m),
                Err(e) => ControlResponse::Error(e.to_string()),
            };
            send(&mut stream, body).await?;
        }
        ControlRequest::Stats => {
            let body = match commander.stats().await {
                Ok(s) => ControlResponse::Stats(s),
                Err(e) => ControlResponse::Error(e.to_string()),
            };
            send(&mut stream, body).await?;
        }
        ControlRequest::StartSweep {
            selector,
            node_filter,
            deadline_ms,
        } => {
            // The request rides in one gossip packet with foca's header
            // and the envelope: refuse a selector that cannot fit.
            let size = bincode::serde::encode_to_vec(
                (&selector, &node_filter),
                bincode::config::standard(),
            )
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
            if size > MAX_SELECTOR_BYTES {
                let why = format!(
                    "the selector and node filter take {size} bytes; at most {MAX_SELECTOR_BYTES} fit in a sweep request (name fewer checks, or use a label or profile)"
                );
                send(&mut stream, ControlResponse::Error(why)).await?;
                return Ok(());
            }
            let spec = StartSweep {
                selector,
                node_filter,
                deadline: Duration::from_millis(deadline_ms.clamp(100, 3_600_000)),
            };
            let mut events = match commander.start_sweep(spec).await {
                Ok(rx) => rx,
                Err(e) => {
                    send(&mut stream, ControlResponse::Error(e.to_string())).await?;
                    return Ok(());
                }
            };
            while let Some(event) = events.recv().await {
                match event {
                    SweepEvent::Progress { answered, expected } => {
                        send(
                            &mut stream,
                            ControlResponse::Progress { answered, expected },
                        )
                        .await?;
                    }
                    SweepEvent::Done(doc) => {
                        let bytes =
                            bincode::serde::encode_to_vec(&*doc, bincode::config::standard())
                                .map_err(|e| {
                                    ControlError::Protocol(format!("cannot encode the sweep: {e}"))
                                })?;
                        let mut pieces = bytes.chunks(DOC_PIECE).peekable();
                        while let Some(piece) = pieces.next() {
                            let last = pieces.peek().is_none();
                            send(
                                &mut stream,
                                ControlResponse::SweepPiece {
                                    last,
                                    bytes: piece.to_vec(),
                                },
                            )
                            .await?;
                        }
                        return Ok(());
                    }
                }
            }
            send(
                &mut stream,
                ControlResponse::Error("the agent stopped during the sweep".into()),
            )
            .await?;
        }
    }
    Ok(())
}

/// A control-channel client for one request.
#[derive(Debug)]
pub struct ControlClient {
    stream: TcpStream,
    envelope: Envelope,
    challenge: [u8; 16],
}

impl ControlClient {
    /// Connect and read the agent's hello.
    pub async fn connect(
        addr: SocketAddr,
        envelope: Envelope,
        timeout: Duration,
    ) -> Result<Self, ControlError> {
        let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ControlError::Timeout)?
            .map_err(|source| ControlError::Connect { addr, source })?;
        let hello = tokio::time::timeout(timeout, read_frame(&mut stream))
            .await
            .map_err(|_| ControlError::Timeout)??;
        if hello.len() != 21 || &hello[..4] != HELLO_MAGIC {
            return Err(ControlError::Protocol(format!(
                "{addr} is not a patrol control port"
            )));
        }
        if hello[4] != PROTOCOL_VERSION {
            return Err(ControlError::Protocol(format!(
                "agent speaks control protocol {}, this client {PROTOCOL_VERSION}",
                hello[4]
            )));
        }
        let mut challenge = [0u8; 16];
        challenge.copy_from_slice(&hello[5..]);
        Ok(ControlClient {
            stream,
            envelope,
            challenge,
        })
    }

    /// Send the request (once per connection).
    pub async fn send(&mut self, request: &ControlRequest) -> Result<(), ControlError> {
        let frame = seal(&self.envelope, self.challenge, request)?;
        write_frame(&mut self.stream, &frame).await?;
        Ok(())
    }

    /// Next reply from the agent (document pieces come back reassembled as
    /// `SweepDone`).
    pub async fn recv(&mut self) -> Result<ControlResponse, ControlError> {
        let mut doc = Vec::new();
        loop {
            match self.recv_frame().await? {
                ControlResponse::SweepPiece { last, bytes } => {
                    if doc.len() + bytes.len() > MAX_DOCUMENT {
                        return Err(ControlError::Protocol("sweep document over 1 GiB".into()));
                    }
                    doc.extend_from_slice(&bytes);
                    if last {
                        let cfg = bincode::config::standard().with_limit::<MAX_DOCUMENT>();
                        let (d, _): (SweepDocument, usize) =
                            bincode::serde::decode_from_slice(&doc, cfg).map_err(|e| {
                                ControlError::Protocol(format!("undecodable sweep document: {e}"))
                            })?;
                        return Ok(ControlResponse::SweepDone(Box::new(d)));
                    }
                }
                other => return Ok(other),
            }
        }
    }

    async fn recv_frame(&mut self) -> Result<ControlResponse, ControlError> {
        let frame = read_frame(&mut self.stream).await?;
        if frame.starts_with(DENY_MAGIC) {
            return Err(ControlError::Refused(
                String::from_utf8_lossy(&frame[4..]).into_owned(),
            ));
        }
        open(&self.envelope, self.challenge, &frame)
    }

    /// One request, one reply.
    pub async fn call(mut self, request: &ControlRequest) -> Result<ControlResponse, ControlError> {
        self.send(request).await?;
        self.recv().await
    }
}
