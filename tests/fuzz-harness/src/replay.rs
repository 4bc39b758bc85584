//! Target `replay`: the gossip replay window, [`ReplayGuard::admit`], fed
//! a sequence of (session, counter, sent, now) chosen by the fuzzer.
//!
//! The datagram layer around it (`Opener::open`) is the envelope (target
//! `envelope`), a length check and three big-endian words; what decides is
//! the guard, so the guard is what this target drives, with a clock it
//! controls (the real `Opener` reads the system clock, which would make
//! runs irreproducible).
//!
//! Input: a start time (8 bytes), then operations of one control byte and
//! a few bytes each (see [`fuzz`]). The receiver's clock only moves
//! forward, as a real one does. Checked against a model:
//! - a datagram is refused for clock skew exactly when it was sent more
//!   than the tolerance away from the receiver's clock, whatever the two
//!   times are;
//! - a datagram taken once is never taken again when replayed byte for
//!   byte (same session, counter and send time), even after its session
//!   was forgotten to make room;
//! - the guard never remembers more sessions than `max_senders`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use patrol_agent::datagram::{Refusal, ReplayGuard, ReplaySettings, WINDOW};

/// Bytes of the input, read front to back; zeros once it runs out.
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl Bytes<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub(crate) fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8();
        }
        u64::from_le_bytes(b)
    }
}

const SESSIONS: u64 = 8;
const MAX_SENDERS: usize = 4;
const TOLERANCE_MS: u64 = 60_000;

pub fn fuzz(data: &[u8]) {
    let mut input = Bytes(data);
    let mut guard = ReplayGuard::new(ReplaySettings {
        skew_tolerance: Duration::from_millis(TOLERANCE_MS),
        max_senders: MAX_SENDERS,
    });
    let mut now = input.u64();
    // What each session sent last, and every (session, counter) taken with
    // its send time.
    let mut top: HashMap<u64, u64> = HashMap::new();
    let mut taken: Vec<(u64, u64, u64)> = Vec::new();
    let mut taken_set: HashSet<(u64, u64, u64)> = HashSet::new();
    let mut ops = 0;
    while !input.is_empty() && ops < 1_000 {
        ops += 1;
        let control = input.u8();
        let session = u64::from(control & 7) % SESSIONS;
        // Bits 3-4: the counter; bits 5-6: the send time; bit 7: the clock
        // moves on first.
        if control & 0x80 != 0 {
            now = now.saturating_add(u64::from(input.u16()) * 100);
        }
        let last = top.get(&session).copied().unwrap_or(0);
        let (session, counter, sent) = match (control >> 3) & 3 {
            // A replay of something taken before, byte for byte.
            3 if !taken.is_empty() => taken[usize::from(input.u8()) % taken.len()],
            mode => {
                let counter = match mode {
                    0 => last.saturating_add(u64::from(input.u8())),
                    1 => last.saturating_sub(u64::from(input.u8())),
                    2 => last.saturating_add(WINDOW - 2 + u64::from(input.u8() % 4)),
                    _ => input.u64(),
                };
                let sent = match (control >> 5) & 3 {
                    0 => now,
                    1 => now.saturating_add(u64::from(input.u16()) * 4),
                    2 => now.saturating_sub(u64::from(input.u16()) * 4),
                    _ => input.u64(),
                };
                (session, counter, sent)
            }
        };
        let replay = taken_set.contains(&(session, counter, sent));
        // Two sources, so a source's own session cap is exercised too.
        let from = std::net::SocketAddr::from(([10, 0, 0, 1], 7000 + (session % 2) as u16));
        let result = guard.admit(from, session, counter, sent, now);
        let skewed = sent.abs_diff(now) > TOLERANCE_MS;
        assert_eq!(
            matches!(result, Err(Refusal::ClockSkew { .. })),
            skewed,
            "sent {sent}, now {now}: {result:?}"
        );
        if let Err(Refusal::ClockSkew { ms, .. }) = result {
            let exact = i128::from(sent) - i128::from(now);
            assert_eq!(
                i128::from(ms),
                exact.clamp(i128::from(i64::MIN), i128::from(i64::MAX)),
                "the reported skew is wrong"
            );
        }
        if replay {
            assert!(
                result.is_err(),
                "a replay of ({session}, {counter}, {sent}) was taken again at {now}"
            );
        }
        if result.is_ok() {
            taken.push((session, counter, sent));
            taken_set.insert((session, counter, sent));
            top.insert(session, counter.max(last));
        }
        assert!(guard.senders() <= MAX_SENDERS);
    }
}
