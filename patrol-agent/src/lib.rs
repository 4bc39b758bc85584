//! The Patrol agent library: the foca mesh glue, the sealed UDP transport,
//! the sans-IO sweep core, the control channel and the check executor.

pub mod envelope;
pub mod keyring;
pub mod sweep;
pub mod codec;
pub mod identity;
pub mod membership;
pub mod transport;
pub mod timers;
pub mod agent;
pub mod control;
pub mod daemon;
pub mod inspector;
