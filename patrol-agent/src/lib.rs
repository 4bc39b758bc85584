//! The Patrol agent library: the foca mesh glue, the sealed UDP transport,
//! the sans-IO sweep core, the control channel and the check executor.

pub mod agent;
pub mod audit;
pub mod clock;
pub mod command_line;
pub mod control;
pub mod daemon;
pub mod datagram;
pub mod envelope;
pub mod inspector;
pub mod keyring;
pub mod metrics;
pub mod node_trust;
pub mod shutdown;
pub mod timers;
pub mod transport;
pub mod trust_files;

pub use patrol_core::{codec, counter_list, identity, membership, sweep, trust};
