//! Gossip datagrams: the node's plaintext sealed in the cluster envelope
//! (purpose `Gossip`), with a replay header inside the seal.
//!
//! ```text
//! sealed( session: u64 BE | counter: u64 BE | sent_at_unix_ms: u64 BE | node plaintext )
//! ```
//!
//! `session` is drawn at random when an agent starts, `counter` counts its
//! datagrams from 1, `sent_at_unix_ms` is its wall clock. The receiver's
//! [`ReplayGuard`] refuses a datagram sent further than
//! [`ReplaySettings::skew_tolerance`] from its own clock (a capture replayed
//! later, or a sender whose clock is wrong: counted apart, and logged, so
//! skew is reported rather than silently losing the node), and a datagram
//! whose (session, counter) it has seen or that is older than the last
//! [`WINDOW`] counters of its session. Memory is bounded: at most
//! `max_senders` sessions, idle ones forgotten once anything they sent is
//! past the skew tolerance anyway.
//!
//! **Invariant:** a datagram reaches the node only if it opens under a key
//! of the keyring, for gossip, in this cluster, inside the time window, and
//! for the first time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::WallClock;
use crate::envelope::{Envelope, OpenError, Purpose, SealError};

/// Bytes of the replay header inside the seal.
pub const REPLAY_HEADER: usize = 24;
/// Counters of a session remembered behind the newest (a bitmap).
pub const WINDOW: u64 = 128;

/// The replay guard's limits. `Default` gives the shipped values.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplaySettings {
    /// A datagram sent further than this from the receiver's clock (either
    /// way) is refused. Default 60 s: wide enough that a node with a
    /// drifting clock still gossips (sweep requests have their own, tighter
    /// check that reports the skew), narrow enough that a capture is useless
    /// a minute later.
    pub skew_tolerance: Duration,
    /// Most sender sessions remembered. Default 65,536 (six times a
    /// 10,000-node cluster restarting every agent once within a minute).
    pub max_senders: usize,
}

impl Default for ReplaySettings {
    fn default() -> Self {
        ReplaySettings {
            skew_tolerance: Duration::from_secs(60),
            max_senders: 65_536,
        }
    }
}

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Unsealed(OpenError),
    #[error("no replay header")]
    NoHeader,
    #[error("sent {ms} ms away from this node's clock (tolerance {tolerance_ms} ms)")]
    ClockSkew { ms: i64, tolerance_ms: u64 },
    #[error("replayed (or older than the session's window)")]
    Replayed,
    #[error("too many sender sessions remembered")]
    TooManySenders,
}

/// What the opener refused, by reason (shared with the owner task, which
/// reports them in the agent's stats).
#[derive(Debug, Default)]
pub struct GateCounters {
    /// Did not open: too short, unknown version or key id, failed
    /// authentication, or sealed for another purpose or cluster.
    pub unsealed: AtomicU64,
    /// Opened, but seen before or older than the window.
    pub replayed: AtomicU64,
    /// Opened, but sent too far from our clock.
    pub clock_skew: AtomicU64,
    /// Opened, but no room for a new sender session, or no header.
    pub other: AtomicU64,
    /// Dropped by the UDP reader before queueing: larger than any
    /// datagram an agent sends, or failing the envelope's precheck.
    pub oversized_or_unknown: AtomicU64,
    /// Dropped by the UDP reader before queueing: the source was muted
    /// for sending datagrams that keep failing to open
    /// ([`crate::strikes`]).
    pub muted: AtomicU64,
}

/// A snapshot of [`GateCounters`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateStats {
    pub unsealed: u64,
    pub replayed: u64,
    pub clock_skew: u64,
    pub other: u64,
    pub oversized_or_unknown: u64,
    pub muted: u64,
}

impl GateCounters {
    pub fn snapshot(&self) -> GateStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GateStats {
            unsealed: get(&self.unsealed),
            replayed: get(&self.replayed),
            clock_skew: get(&self.clock_skew),
            other: get(&self.other),
            oversized_or_unknown: get(&self.oversized_or_unknown),
            muted: get(&self.muted),
        }
    }

    pub fn count(&self, refusal: &Refusal) {
        let c = match refusal {
            Refusal::Unsealed(_) => &self.unsealed,
            Refusal::Replayed => &self.replayed,
            Refusal::ClockSkew { .. } => &self.clock_skew,
            Refusal::NoHeader | Refusal::TooManySenders => &self.other,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Seals the node's datagrams: one session, one counter.
#[derive(Debug)]
pub struct Sealer {
    envelope: Envelope,
    clock: WallClock,
    session: u64,
    counter: u64,
}

impl Sealer {
    pub fn new(envelope: Envelope, clock: WallClock) -> Sealer {
        Sealer {
            envelope,
            clock,
            session: rand::random(),
            counter: 0,
        }
    }

    /// Seal `plain` (the node's bytes), appending the packet to `out`.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        self.counter += 1;
        let mut inner = Vec::with_capacity(REPLAY_HEADER + plain.len());
        inner.extend_from_slice(&self.session.to_be_bytes());
        inner.extend_from_slice(&self.counter.to_be_bytes());
        inner.extend_from_slice(&self.clock.unix_ms().to_be_bytes());
        inner.extend_from_slice(plain);
        self.envelope.seal(Purpose::Gossip, &inner, out)
    }
}

/// Opens datagrams and refuses replays: the receiving half.
#[derive(Debug)]
pub struct Opener {
    envelope: Envelope,
    clock: WallClock,
    guard: ReplayGuard,
}

impl Opener {
    pub fn new(envelope: Envelope, clock: WallClock, settings: ReplaySettings) -> Opener {
        Opener {
            envelope,
            clock,
            guard: ReplayGuard::new(settings),
        }
    }

    /// The node's bytes of a datagram, or why it was refused.
    pub fn open(&mut self, packet: &[u8]) -> Result<Vec<u8>, Refusal> {
        let inner = self
            .envelope
            .open(Purpose::Gossip, packet)
            .map_err(Refusal::Unsealed)?;
        if inner.len() < REPLAY_HEADER {
            return Err(Refusal::NoHeader);
        }
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&inner[i * 8..i * 8 + 8]);
            u64::from_be_bytes(b)
        };
        self.guard
            .admit(word(0), word(1), word(2), self.clock.unix_ms())?;
        Ok(inner[REPLAY_HEADER..].to_vec())
    }

    /// The cheap checks the UDP reader makes before queueing.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }
}

/// Per sender session: the newest counter and which of the [`WINDOW`]
/// before it were seen.
#[derive(Debug, Clone, Copy)]
struct Window {
    top: u64,
    seen: u128,
    last_sent_ms: u64,
}

/// Remembers what each sender session sent recently.
#[derive(Debug)]
pub struct ReplayGuard {
    settings: ReplaySettings,
    sessions: HashMap<u64, Window>,
}

impl ReplayGuard {
    pub fn new(settings: ReplaySettings) -> ReplayGuard {
        ReplayGuard {
            settings,
            sessions: HashMap::new(),
        }
    }

    /// Take (session, counter) sent at `sent_ms`, received at `now_ms`, or
    /// refuse it.
    pub fn admit(
        &mut self,
        session: u64,
        counter: u64,
        sent_ms: u64,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let tolerance = u64::try_from(self.settings.skew_tolerance.as_millis()).unwrap_or(u64::MAX);
        // In i128: two u64 times (the send time is the sender's to choose)
        // always have a difference there.
        let skew = i128::from(sent_ms) - i128::from(now_ms);
        if skew.unsigned_abs() > u128::from(tolerance) {
            let ms = i64::try_from(skew).unwrap_or(if skew < 0 { i64::MIN } else { i64::MAX });
            return Err(Refusal::ClockSkew {
                ms,
                tolerance_ms: tolerance,
            });
        }
        if !self.sessions.contains_key(&session) && self.sessions.len() >= self.settings.max_senders
        {
            // Anything an idle session sent is refused by time once it is
            // older than the tolerance: forgetting it is safe.
            self.sessions.retain(|_, w| {
                now_ms.saturating_sub(w.last_sent_ms) <= tolerance.saturating_mul(2)
            });
            if self.sessions.len() >= self.settings.max_senders {
                return Err(Refusal::TooManySenders);
            }
        }
        let w = self.sessions.entry(session).or_insert(Window {
            top: 0,
            seen: 0,
            last_sent_ms: sent_ms,
        });
        if counter > w.top {
            let shift = counter - w.top;
            w.seen = if shift >= WINDOW { 0 } else { w.seen << shift };
            w.seen |= 1;
            w.top = counter;
        } else {
            let back = w.top - counter;
            if back >= WINDOW || w.seen & (1u128 << back) != 0 {
                return Err(Refusal::Replayed);
            }
            w.seen |= 1u128 << back;
        }
        w.last_sent_ms = w.last_sent_ms.max(sent_ms);
        Ok(())
    }

    pub fn senders(&self) -> usize {
        self.sessions.len()
    }
}

/// Log a refusal worth an operator's attention (clock skew), at most once
/// per sender address per call site's choosing.
pub fn log_refusal(from: SocketAddr, refusal: &Refusal) {
    match refusal {
        Refusal::ClockSkew { ms, tolerance_ms } => tracing::warn!(
            %from,
            skew_ms = ms,
            tolerance_ms,
            "dropped a datagram sent too far from this node's clock: is one of the clocks wrong?"
        ),
        other => tracing::debug!(%from, reason = %other, "dropped a datagram"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::Keyring;

    const NOW: u64 = 1_800_000_000_000;

    fn guard() -> ReplayGuard {
        ReplayGuard::new(ReplaySettings::default())
    }

    #[test]
    fn a_datagram_is_taken_once() {
        let mut g = guard();
        assert_eq!(g.admit(7, 1, NOW, NOW), Ok(()));
        assert_eq!(g.admit(7, 1, NOW, NOW), Err(Refusal::Replayed));
        assert_eq!(g.admit(8, 1, NOW, NOW), Ok(()), "another session");
    }

    #[test]
    fn reordering_within_the_window_is_taken_and_older_is_refused() {
        let mut g = guard();
        assert_eq!(g.admit(7, 200, NOW, NOW), Ok(()));
        assert_eq!(g.admit(7, 199, NOW, NOW), Ok(()));
        assert_eq!(g.admit(7, 200 - WINDOW + 1, NOW, NOW), Ok(()));
        assert_eq!(g.admit(7, 200 - WINDOW, NOW, NOW), Err(Refusal::Replayed));
        assert_eq!(g.admit(7, 199, NOW, NOW), Err(Refusal::Replayed));
        assert_eq!(
            g.admit(7, 1000, NOW, NOW),
            Ok(()),
            "a jump clears the window"
        );
        assert_eq!(g.admit(7, 999, NOW, NOW), Ok(()));
    }

    #[test]
    fn a_datagram_from_outside_the_time_window_is_refused_either_way() {
        let mut g = guard();
        let t = ReplaySettings::default().skew_tolerance.as_millis() as u64;
        assert_eq!(g.admit(1, 1, NOW - t, NOW), Ok(()));
        assert!(matches!(
            g.admit(1, 2, NOW - t - 1, NOW),
            Err(Refusal::ClockSkew { .. })
        ));
        assert!(matches!(
            g.admit(1, 3, NOW + t + 1, NOW),
            Err(Refusal::ClockSkew { .. })
        ));
    }

    /// Regression (fuzz target `replay`): `sent as i64 - now as i64`
    /// overflowed (a panic in debug builds) or reported a wrong skew when
    /// either time was past `i64::MAX` ms; the send time is the sender's
    /// to write.
    #[test]
    fn a_send_time_past_i64_max_is_refused_with_a_saturated_skew() {
        let mut g = guard();
        assert_eq!(
            g.admit(1, 1, 1 << 63, NOW),
            Err(Refusal::ClockSkew {
                ms: i64::MAX - (NOW as i64 - 1),
                tolerance_ms: 60_000
            })
        );
        assert_eq!(
            g.admit(1, 2, u64::MAX, 0),
            Err(Refusal::ClockSkew {
                ms: i64::MAX,
                tolerance_ms: 60_000
            })
        );
        assert_eq!(
            g.admit(1, 3, 0, u64::MAX),
            Err(Refusal::ClockSkew {
                ms: i64::MIN,
                tolerance_ms: 60_000
            })
        );
        assert_eq!(
            g.admit(1, 4, NOW, NOW + (1 << 63)),
            Err(Refusal::ClockSkew {
                ms: i64::MIN,
                tolerance_ms: 60_000
            })
        );
        assert_eq!(g.admit(1, 5, u64::MAX - 5, u64::MAX), Ok(()));
    }

    #[test]
    fn sessions_are_bounded_and_idle_ones_make_room() {
        let mut g = ReplayGuard::new(ReplaySettings {
            max_senders: 10,
            ..ReplaySettings::default()
        });
        for s in 0..10 {
            g.admit(s, 1, NOW, NOW).unwrap();
        }
        assert_eq!(g.admit(99, 1, NOW, NOW), Err(Refusal::TooManySenders));
        assert_eq!(g.senders(), 10);
        // Three minutes later every old session is idle.
        let later = NOW + 180_000;
        assert_eq!(g.admit(99, 1, later, later), Ok(()));
        assert_eq!(g.senders(), 1);
    }

    #[test]
    fn a_captured_datagram_replayed_byte_for_byte_is_refused() {
        let env = Envelope::new(Keyring::generate(), "prod");
        let mut sealer = Sealer::new(env.clone(), WallClock::default());
        let mut opener = Opener::new(env.clone(), WallClock::default(), ReplaySettings::default());
        let mut packet = Vec::new();
        sealer.seal(b"\x00announce", &mut packet).unwrap();
        assert_eq!(opener.open(&packet).unwrap(), b"\x00announce");
        assert_eq!(opener.open(&packet), Err(Refusal::Replayed));
        // The same capture at a receiver whose clock reads two minutes
        // later (as the replay would arrive then) is refused by time.
        let mut later = Opener::new(env, WallClock::shifted(120_000), ReplaySettings::default());
        assert!(matches!(
            later.open(&packet),
            Err(Refusal::ClockSkew { .. })
        ));
    }

    #[test]
    fn gossip_does_not_open_as_a_control_frame_or_without_a_header() {
        let env = Envelope::new(Keyring::generate(), "prod");
        let mut opener = Opener::new(env.clone(), WallClock::default(), ReplaySettings::default());
        let control = env.seal_to_vec(Purpose::ControlReply, &[0; 40]).unwrap();
        assert!(matches!(opener.open(&control), Err(Refusal::Unsealed(_))));
        let short = env.seal_to_vec(Purpose::Gossip, b"hi").unwrap();
        assert_eq!(opener.open(&short), Err(Refusal::NoHeader));
    }
}
