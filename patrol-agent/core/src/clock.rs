//! The current time as the core sees it: handed in by the shell with every
//! input (virtual in the simulator), never read from a clock here.

use std::time::Duration;

/// The current time, as both clocks see it. `mono` is monotonic from any
/// epoch (virtual in the simulator) and drives timers and expiry on this
/// node; `unix_ms` is wall-clock milliseconds, used where nodes compare
/// times (request issue and expiry, the sweep document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: Duration,
    pub unix_ms: u64,
}
