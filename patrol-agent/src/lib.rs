//! The Patrol agent library: the foca mesh glue, the sealed UDP transport,
//! the sans-IO sweep core, the control channel and the check executor.

pub mod agent;
pub mod codec;
pub mod control;
pub mod daemon;
pub mod envelope;
pub mod identity;
pub mod inspector;
pub mod keyring;
pub mod membership;
pub mod sweep;
pub mod timers;
pub mod transport;
