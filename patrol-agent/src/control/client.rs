//! The control client: connect, read the hello, send one sealed request,
//! then read [`Reply`]s. Document pieces are reassembled here, so callers
//! see one `SweepDone`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::frame::{self, Challenge, DocumentAssembler, MAX_FRAME};
use super::{read_frame, write_frame, ControlError, ControlRequest, ControlResponse, Reply};
use crate::envelope::Envelope;

/// A control-channel client for one request.
#[derive(Debug)]
pub struct ControlClient {
    stream: TcpStream,
    envelope: Envelope,
    challenge: Challenge,
    document: DocumentAssembler,
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
        let hello = tokio::time::timeout(timeout, read_frame(&mut stream, MAX_FRAME))
            .await
            .map_err(|_| ControlError::Timeout)??;
        let challenge = frame::decode_hello(&hello, &addr.to_string())?;
        Ok(ControlClient {
            stream,
            envelope,
            challenge,
            document: DocumentAssembler::default(),
        })
    }

    /// Send the request (once per connection).
    pub async fn send(&mut self, request: &ControlRequest) -> Result<(), ControlError> {
        let sealed = frame::seal(&self.envelope, self.challenge, request)?;
        write_frame(&mut self.stream, &sealed).await
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
            };
            return Ok(reply);
        }
    }

    async fn recv_frame(&mut self) -> Result<ControlResponse, ControlError> {
        let bytes = read_frame(&mut self.stream, MAX_FRAME).await?;
        if let Some(reason) = frame::decode_deny(&bytes) {
            return Err(ControlError::Refused(reason));
        }
        frame::open(&self.envelope, self.challenge, &bytes)
    }

    /// One request, one reply.
    pub async fn call(mut self, request: &ControlRequest) -> Result<Reply, ControlError> {
        self.send(request).await?;
        self.recv().await
    }
}
