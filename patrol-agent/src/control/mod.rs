//! The control channel: a TCP listener where the CLI talks to an agent.
//!
//! Split the mini-redis way: [`frame`] holds the byte formats as pure
//! functions (hello, refusal, sealed frames, document pieces), [`server`]
//! serves one request per connection with one function per request, and
//! [`client`] sends a request and hands back [`Reply`]s, reassembling a
//! sweep document from its pieces itself.
//!
//! The server speaks first with a hello carrying a fresh random challenge.
//! The client's one request and every server reply are sealed and carry
//! that challenge, so a recorded session cannot be replayed (the challenge
//! differs each time). A refused client gets a plain-text `DENY` frame
//! saying why, then the connection closes.
//!
//! What seals them depends on the agent. Without `[trust]` it is the cluster key, so a client without the key is refused. With
//! `[trust]` ([`handshake`]) the client proves an operator
//! certificate, the agent proves its node certificate, and a session key
//! from ephemeral X25519 keys seals the rest: the CLI holds no cluster
//! key, and what it may ask is its certificate's scope.

pub mod client;
pub mod frame;
pub mod handshake;
pub mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use patrol_checks::{CompactDocument, Selector};
use serde::{Deserialize, Serialize};

use crate::agent::AgentStats;
use crate::membership::MemberInfo;

pub use client::ControlClient;
pub use frame::MAX_FRAME;
pub use server::serve;

/// What a client asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlRequest {
    Members,
    Stats,
    StartSweep {
        selector: Selector,
        node_filter: BTreeMap<String, String>,
        deadline_ms: u64,
        /// With certificates: the sweep id and the operator's signature
        /// over the request (`patrol_core::trust::authorization`).
        signed: Option<Box<SignedSweep>>,
    },
    /// With certificates: the roster (any operator, like `Members`).
    Roster,
    /// With certificates: forget a node from the roster, signed by the
    /// operator of this connection (`patrol roster forget`).
    Forget(Box<patrol_core::trust::SignedForget>),
}

/// An operator-signed sweep: the id the operator chose and its signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedSweep {
    pub sweep_id: u64,
    pub authorization: patrol_core::trust::Authorization,
}

/// What the agent sends, frame by frame (a sweep streams progress, then
/// the document in pieces).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlResponse {
    Members(Vec<MemberInfo>),
    Stats(Box<AgentStats>),
    Progress {
        answered: u64,
        expected: u64,
    },
    /// A piece of the bincode-encoded sweep document (its compact form,
    /// [`CompactDocument`]); `last` ends it.
    SweepPiece {
        last: bool,
        bytes: Vec<u8>,
    },
    Error(String),
    Roster(Box<patrol_core::membership::roster::RosterView>),
    /// The forget was applied; whether the node was on this agent's roster.
    Forgot {
        was_on_roster: bool,
    },
}

/// What a client hears: the frames, with a sweep document already
/// reassembled (compact: [`CompactDocument::expanded_nodes`] spells its
/// nodes out one at a time).
#[derive(Debug, Clone)]
pub enum Reply {
    Members(Vec<MemberInfo>),
    Stats(Box<AgentStats>),
    Progress { answered: u64, expected: u64 },
    SweepDone(Box<CompactDocument>),
    Error(String),
    Roster(Box<patrol_core::membership::roster::RosterView>),
    Forgot { was_on_roster: bool },
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

/// Read one length-prefixed frame of at most `limit` bytes.
pub(crate) async fn read_frame(
    stream: &mut tokio::net::TcpStream,
    limit: usize,
) -> Result<Vec<u8>, ControlError> {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; frame::LEN_PREFIX];
    stream.read_exact(&mut header).await?;
    let len = frame::frame_len(header, limit)?;
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Write one length-prefixed frame.
pub(crate) async fn write_frame(
    stream: &mut tokio::net::TcpStream,
    bytes: &[u8],
) -> Result<(), ControlError> {
    use tokio::io::AsyncWriteExt;
    stream.write_all(&frame::len_header(bytes.len())?).await?;
    stream.write_all(bytes).await?;
    stream.flush().await?;
    Ok(())
}
