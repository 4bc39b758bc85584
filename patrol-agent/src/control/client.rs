//! The control client: connect, read the hello (and, with an operator
//! certificate, do the handshake), send one sealed request, then read
//! [`Reply`]s. Document pieces are reassembled here, so callers see one
//! `SweepDone`. With an operator identity, a sweep request is signed here
//! (a fresh sweep id and the operator's signature), so every caller gets
//! it right.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use patrol_core::trust::authorization::SweepAsk;
use patrol_core::trust::{Authorization, Credentials, TrustBundle, Verified};
use tokio::net::TcpStream;

use super::frame::{self, Challenge, DocumentAssembler, MAX_FRAME, MAX_REQUEST_FRAME};
use super::handshake;
use super::{
    read_frame, write_frame, ControlError, ControlRequest, ControlResponse, Reply, SignedSweep,
};
use crate::envelope::{Envelope, Purpose};

/// How the client proves who it is.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// The cluster key.
    ClusterKey(Envelope),
    /// With certificates: an operator certificate and the CAs to check the agent
    /// against.
    Operator(Arc<OperatorIdentity>),
}

impl From<Envelope> for ClientAuth {
    fn from(e: Envelope) -> Self {
        ClientAuth::ClusterKey(e)
    }
}

/// An operator's key and certificate, the CA bundle, and the cluster name.
#[derive(Debug, Clone)]
pub struct OperatorIdentity {
    pub creds: Credentials,
    pub bundle: TrustBundle,
    pub cluster: String,
}

/// A control-channel client for one request.
#[derive(Debug)]
pub struct ControlClient {
    stream: TcpStream,
    envelope: Envelope,
    challenge: Challenge,
    document: DocumentAssembler,
    operator: Option<Arc<OperatorIdentity>>,
    /// The agent's certificate, when it proved one.
    pub agent: Option<Verified>,
}

fn unix_ms() -> u64 {
    crate::clock::unix_ms()
}

impl ControlClient {
    /// Connect and read the agent's hello; with an operator identity, run
    /// the certificate handshake.
    pub async fn connect(
        addr: SocketAddr,
        auth: impl Into<ClientAuth>,
        timeout: Duration,
    ) -> Result<Self, ControlError> {
        let auth = auth.into();
        let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ControlError::Timeout)?
            .map_err(|source| ControlError::Connect { addr, source })?;
        let hello = tokio::time::timeout(timeout, read_frame(&mut stream, MAX_FRAME))
            .await
            .map_err(|_| ControlError::Timeout)??;
        frame::check_hello(&hello, &addr.to_string())?;
        if let Some((challenge, server_eph)) = handshake::decode_hello3(&hello) {
            let ClientAuth::Operator(op) = auth else {
                return Err(ControlError::Refused(format!(
                    "the agent at {addr} takes operator certificates, not the cluster key: pass --identity DIR (made by `patrol ca issue operator`)"
                )));
            };
            let (auth_frame, envelope) =
                handshake::client_auth(&op.creds, &hello, &server_eph, &op.cluster)?;
            write_frame(&mut stream, &auth_frame).await?;
            let proof = tokio::time::timeout(timeout, read_frame(&mut stream, MAX_REQUEST_FRAME))
                .await
                .map_err(|_| ControlError::Timeout)??;
            if let Some(reason) = frame::decode_deny(&proof) {
                return Err(ControlError::Refused(reason));
            }
            let agent =
                handshake::check_server(&op.bundle, &hello, &auth_frame, &proof, unix_ms() / 1000)?;
            return Ok(ControlClient {
                stream,
                envelope,
                challenge,
                document: DocumentAssembler::default(),
                operator: Some(op),
                agent: Some(agent),
            });
        }
        let challenge = frame::decode_hello(&hello, &addr.to_string())?;
        let ClientAuth::ClusterKey(envelope) = auth else {
            return Err(ControlError::Refused(format!(
                "the agent at {addr} runs without [trust] and takes the cluster key, not an operator certificate: pass --key-file (or --config)"
            )));
        };
        Ok(ControlClient {
            stream,
            envelope,
            challenge,
            document: DocumentAssembler::default(),
            operator: None,
            agent: None,
        })
    }

    /// Send the request (once per connection). With an operator identity,
    /// an unsigned sweep request is signed first.
    pub async fn send(&mut self, request: &ControlRequest) -> Result<(), ControlError> {
        let signed;
        let request = match (&self.operator, request) {
            (
                Some(op),
                ControlRequest::StartSweep {
                    selector,
                    node_filter,
                    deadline_ms,
                    signed: None,
                },
            ) => {
                let sweep_id = rand::random::<u64>();
                // The coordinator is the agent whose certificate the
                // handshake proved: a replay cannot name another.
                let coordinator = self.agent.as_ref().map(|a| a.name()).unwrap_or_default();
                let ask = SweepAsk {
                    sweep_id,
                    selector,
                    node_filter,
                    deadline_ms: *deadline_ms,
                    coordinator,
                };
                signed = ControlRequest::StartSweep {
                    selector: selector.clone(),
                    node_filter: node_filter.clone(),
                    deadline_ms: *deadline_ms,
                    signed: Some(Box::new(SignedSweep {
                        sweep_id,
                        authorization: Authorization::sign(&op.creds, &ask, unix_ms()),
                    })),
                };
                &signed
            }
            _ => request,
        };
        let sealed = frame::seal(
            &self.envelope,
            Purpose::ControlRequest,
            self.challenge,
            request,
        )?;
        write_frame(&mut self.stream, &sealed).await
    }

    /// `patrol roster forget NODE`: the request, signed by this
    /// connection's operator (a forget needs certificates).
    pub fn forget_request(&self, node: &str) -> Result<ControlRequest, ControlError> {
        let Some(op) = &self.operator else {
            return Err(ControlError::Refused(
                "forgetting a node needs an operator certificate: pass --identity DIR".into(),
            ));
        };
        Ok(ControlRequest::Forget(Box::new(
            patrol_core::trust::SignedForget::sign(&op.creds, &op.cluster, node, unix_ms()),
        )))
    }

    /// The next reply from the agent.
    pub async fn recv(&mut self) -> Result<Reply, ControlError> {
        loop {
            let reply = match self.recv_frame().await? {
                ControlResponse::SweepPiece { last, bytes } => {
                    match self.document.push(&bytes, last)? {
                        Some(doc) => Reply::SweepDone(Box::new(doc)),
                        None => continue,
                    }
                }
                ControlResponse::Members(m) => Reply::Members(m),
                ControlResponse::Stats(s) => Reply::Stats(s),
                ControlResponse::Progress { answered, expected } => {
                    Reply::Progress { answered, expected }
                }
                ControlResponse::Error(e) => Reply::Error(e),
                ControlResponse::Roster(r) => Reply::Roster(r),
                ControlResponse::Forgot { was_on_roster } => Reply::Forgot { was_on_roster },
            };
            return Ok(reply);
        }
    }

    async fn recv_frame(&mut self) -> Result<ControlResponse, ControlError> {
        let bytes = read_frame(&mut self.stream, MAX_FRAME).await?;
        if let Some(reason) = frame::decode_deny(&bytes) {
            return Err(ControlError::Refused(reason));
        }
        frame::open(
            &self.envelope,
            Purpose::ControlReply,
            self.challenge,
            &bytes,
        )
    }

    /// One request, one reply.
    pub async fn call(mut self, request: &ControlRequest) -> Result<Reply, ControlError> {
        self.send(request).await?;
        self.recv().await
    }
}
