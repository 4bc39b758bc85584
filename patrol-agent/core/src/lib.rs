//! Patrol's sans-IO core: everything about a node that is logic rather
//! than I/O. The sweep state machine ([`sweep`]), foca's identity
//! ([`identity`]), its wire codec ([`codec`]) and settings
//! ([`membership`]), and the one list of an agent's counters
//! ([`counter_list`]).
//!
//! **Architecture Invariant:** this crate does no I/O. It depends on no
//! runtime (no tokio), opens no socket, reads no clock and touches no file:
//! time comes in as arguments, bytes go out as effects. The compiler keeps
//! it so: the crate depends on no runtime, takes `rand` without its
//! OS-random features, and its `clippy.toml` bans the clock, filesystem,
//! socket, process and OS-randomness calls and types (`cargo clippy -p
//! patrol-core` fails on one).

pub mod clock;
pub mod codec;
pub mod constraint;
pub mod counter_list;
pub mod identity;
pub mod membership;
pub mod node;
pub mod settings;
pub mod sweep;
pub mod tags;
pub mod trust;

pub use constraint::SettingsError;
pub use node::{Node, Now, Output};
pub use settings::{FocaTuning, NodeSettings};
