//! The Patrol agent: the I/O shell around the sans-IO [`patrol_core::Node`]
//! and the `patrol-agent` daemon built on it.
//!
//! - [`agent`]: the owner task, the only code that touches the `Node` (it
//!   hands it datagrams, timers and finished checks with the real clock and
//!   carries out its outputs), and the [`agent::Commander`] other tasks
//!   reach it through;
//! - the sealed UDP path: [`transport`] (UDP, or an in-memory network for
//!   tests), [`envelope`] (the seal), [`datagram`] (the replay header and
//!   the opener task), [`keyring`] (the cluster keys);
//! - [`timers`], [`shutdown`] (every task in one set, one cancellation
//!   token) and [`clock`] (the one read of the wall clock);
//! - [`inspector`]: runs the node's own configured checks a sweep selects;
//! - [`control`]: the control channel, server and client;
//! - identities on disk and in use: [`node_trust`], [`trust_files`],
//!   [`audit`] (with its budget for refusals nobody proved), and
//!   [`escaped`] (client text made safe for the agent's log), and
//!   [`enroll`] (certificates from an issuing CA: the service, the client
//!   and the agent's renewal);
//! - [`metrics`]: the OpenMetrics endpoint; [`cert_expiry`]: the
//!   `patrol.cert_expiry` outcome every certified answer carries;
//! - [`daemon`]: config in, running tasks out, with [`daemon::DaemonSettings`]
//!   (`hangup`: what SIGHUP reloads);
//!   [`command_line`]: the binary's arguments.
//!
//! The protocol logic (foca's glue, the sweep, trust, the counter list) is
//! `patrol-core`'s; its modules are re-exported here under their own names
//! so callers need one crate. ARCHITECTURE.md at the repository root has
//! the map.

pub mod agent;
pub mod audit;
pub mod cert_expiry;
pub mod clock;
pub mod command_line;
pub mod control;
pub mod daemon;
pub mod datagram;
pub mod enroll;
pub mod envelope;
pub mod escaped;
mod hangup;
pub mod inspector;
pub mod keyring;
pub mod metrics;
pub mod node_trust;
pub mod roster_file;
pub mod shutdown;
pub mod strikes;
pub mod timers;
pub mod transport;
pub mod trust_files;

pub use patrol_core::{codec, counter_list, identity, membership, sweep, trust};
