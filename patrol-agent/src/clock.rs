//! The wall clock, read in one place. The sans-IO core never reads it: the
//! shell passes the time in with every call (`patrol_core::Now`).

use std::time::{SystemTime, UNIX_EPOCH};

/// The system clock, optionally shifted: tests inject a node whose clock is
/// wrong (days ahead, seconds behind) without touching the machine's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WallClock {
    /// Added to the system clock, milliseconds (negative: behind).
    pub offset_ms: i64,
}

impl WallClock {
    /// A clock `offset_ms` ahead of the system's (behind when negative).
    pub fn shifted(offset_ms: i64) -> WallClock {
        WallClock { offset_ms }
    }

    /// Milliseconds since the Unix epoch, as this clock reads.
    pub fn unix_ms(&self) -> u64 {
        unix_ms().saturating_add_signed(self.offset_ms)
    }
}

/// Milliseconds since the Unix epoch by the system clock (0 before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
