//! Gossip datagrams: the node's plaintext sealed in the cluster envelope
//! (purpose `Gossip`), with a replay header inside the seal.
//!
//! ```text
//! sealed( session: u64 BE | counter: u64 BE | sent_at_unix_ms: u64 BE
//!         | to: 16-byte IPv6 (IPv4 mapped) | to port: u16 BE | node plaintext )
//! ```
//!
//! `session` is drawn at random when an agent starts, `counter` counts its
//! datagrams from 1, `sent_at_unix_ms` is its wall clock, `to` the address
//! the sender sent the datagram to. The receiver refuses a datagram not
//! addressed to one of its own addresses (a capture replayed to another
//! node: counted as `misdirected`); then its
//! [`ReplayGuard`] refuses a datagram sent further than
//! [`ReplaySettings::skew_tolerance`] from its own clock (a capture replayed
//! later, or a sender whose clock is wrong: counted apart, and logged, so
//! skew is reported rather than silently losing the node), and a datagram
//! whose (session, counter) it has seen or that is older than the last
//! [`WINDOW`] counters of its session. Memory is bounded: at most
//! `max_senders` sessions, idle ones forgotten once anything they sent is
//! past the skew tolerance anyway, and at most [`SESSIONS_PER_SOURCE`] per
//! source address: a new one from a source that has them all replaces its
//! oldest only once that one is past the time window, and is refused
//! before (so one key holder cannot fill the table from one address and
//! lock new senders out, nor get a session forgotten early to replay it).
//!
//! **Invariant:** a datagram reaches the node only if it opens under a key
//! of the keyring, for gossip, in this cluster, inside the time window, and
//! for the first time, addressed to this node.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::WallClock;
use crate::envelope::{Envelope, OpenError, Purpose, SealError};

/// Bytes of the replay header inside the seal.
pub const REPLAY_HEADER: usize = 42;
/// Sessions remembered per source address (an agent has one per run; a
/// restart starts another).
pub const SESSIONS_PER_SOURCE: usize = 4;
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
    #[error("addressed to {0}, not to this node (a datagram replayed to another node?)")]
    Misdirected(SocketAddr),
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
    /// Opened, but addressed to another node (a capture replayed here).
    pub misdirected: AtomicU64,
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
    pub misdirected: u64,
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
            misdirected: get(&self.misdirected),
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
            Refusal::Misdirected(_) => &self.misdirected,
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

    /// Seal `plain` (the node's bytes) for `to`, appending the packet to
    /// `out`.
    pub fn seal(
        &mut self,
        plain: &[u8],
        to: SocketAddr,
        out: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        self.counter += 1;
        let mut inner = Vec::with_capacity(REPLAY_HEADER + plain.len());
        inner.extend_from_slice(&self.session.to_be_bytes());
        inner.extend_from_slice(&self.counter.to_be_bytes());
        inner.extend_from_slice(&self.clock.unix_ms().to_be_bytes());
        inner.extend_from_slice(&address_bytes(to));
        inner.extend_from_slice(plain);
        self.envelope.seal(Purpose::Gossip, &inner, out)
    }
}

/// An address as the replay header carries it.
fn address_bytes(a: SocketAddr) -> [u8; 18] {
    let ip = match a.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let mut b = [0u8; 18];
    b[..16].copy_from_slice(&ip.octets());
    b[16..].copy_from_slice(&a.port().to_be_bytes());
    b
}

fn address_from(b: &[u8]) -> SocketAddr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[..16]);
    let v6 = Ipv6Addr::from(octets);
    let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
    SocketAddr::new(ip, u16::from_be_bytes([b[16], b[17]]))
}

/// Opens datagrams and refuses replays: the receiving half.
#[derive(Debug)]
pub struct Opener {
    envelope: Envelope,
    clock: WallClock,
    guard: ReplayGuard,
    /// The addresses datagrams for this node are sent to: its bound and
    /// its advertised address. An unspecified IP (`0.0.0.0`, `::`) takes
    /// any address with its port.
    own: Vec<SocketAddr>,
}

impl Opener {
    /// An opener for the node whose own addresses are `own`.
    pub fn new(
        envelope: Envelope,
        clock: WallClock,
        settings: ReplaySettings,
        own: Vec<SocketAddr>,
    ) -> Opener {
        Opener {
            envelope,
            clock,
            guard: ReplayGuard::new(settings),
            own,
        }
    }

    fn is_own(&self, to: SocketAddr) -> bool {
        self.own
            .iter()
            .any(|a| *a == to || (a.ip().is_unspecified() && a.port() == to.port()))
    }

    /// The node's bytes of a datagram from `from`, or why it was refused.
    pub fn open(&mut self, from: SocketAddr, packet: &[u8]) -> Result<Vec<u8>, Refusal> {
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
        let to = address_from(&inner[24..REPLAY_HEADER]);
        if !self.is_own(to) {
            return Err(Refusal::Misdirected(to));
        }
        self.guard
            .admit(from, word(0), word(1), word(2), self.clock.unix_ms())?;
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
    /// Each source address's sessions, oldest first.
    sources: HashMap<SocketAddr, VecDeque<u64>>,
}

impl ReplayGuard {
    pub fn new(settings: ReplaySettings) -> ReplayGuard {
        ReplayGuard {
            settings,
            sessions: HashMap::new(),
            sources: HashMap::new(),
        }
    }

    /// A new `session` from `from`. When the source has
    /// [`SESSIONS_PER_SOURCE`] already, its oldest goes if nothing it sent
    /// can still pass the time window (so forgetting it lets no replay
    /// through); otherwise the new session is refused.
    fn add_session(
        &mut self,
        from: SocketAddr,
        session: u64,
        now_ms: u64,
        tolerance: u64,
    ) -> Result<(), Refusal> {
        let list = self.sources.entry(from).or_default();
        if list.len() >= SESSIONS_PER_SOURCE {
            let oldest = list.front().copied();
            let idle = oldest.is_none_or(|old| {
                self.sessions
                    .get(&old)
                    .is_none_or(|w| w.last_sent_ms.saturating_add(tolerance) < now_ms)
            });
            if !idle {
                return Err(Refusal::TooManySenders);
            }
            if let Some(old) = list.pop_front() {
                self.sessions.remove(&old);
            }
        }
        list.push_back(session);
        Ok(())
    }

    /// Take (session, counter) from `from`, sent at `sent_ms`, received at
    /// `now_ms`, or refuse it.
    pub fn admit(
        &mut self,
        from: SocketAddr,
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
            let sessions = &self.sessions;
            self.sources.retain(|_, list| {
                list.retain(|s| sessions.contains_key(s));
                !list.is_empty()
            });
            if self.sessions.len() >= self.settings.max_senders {
                return Err(Refusal::TooManySenders);
            }
        }
        if !self.sessions.contains_key(&session) {
            self.add_session(from, session, now_ms, tolerance)?;
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
    /// The receiving node's address in these tests.
    const ME: SocketAddr = SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
        7946,
    );

    /// Source address `port` of one test sender host.
    fn src(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    fn guard() -> ReplayGuard {
        ReplayGuard::new(ReplaySettings::default())
    }

    #[test]
    fn a_datagram_is_taken_once() {
        let mut g = guard();
        assert_eq!(g.admit(src(1), 7, 1, NOW, NOW), Ok(()));
        assert_eq!(g.admit(src(1), 7, 1, NOW, NOW), Err(Refusal::Replayed));
        assert_eq!(g.admit(src(1), 8, 1, NOW, NOW), Ok(()), "another session");
    }

    #[test]
    fn reordering_within_the_window_is_taken_and_older_is_refused() {
        let mut g = guard();
        assert_eq!(g.admit(src(1), 7, 200, NOW, NOW), Ok(()));
        assert_eq!(g.admit(src(1), 7, 199, NOW, NOW), Ok(()));
        assert_eq!(g.admit(src(1), 7, 200 - WINDOW + 1, NOW, NOW), Ok(()));
        assert_eq!(
            g.admit(src(1), 7, 200 - WINDOW, NOW, NOW),
            Err(Refusal::Replayed)
        );
        assert_eq!(g.admit(src(1), 7, 199, NOW, NOW), Err(Refusal::Replayed));
        assert_eq!(
            g.admit(src(1), 7, 1000, NOW, NOW),
            Ok(()),
            "a jump clears the window"
        );
        assert_eq!(g.admit(src(1), 7, 999, NOW, NOW), Ok(()));
    }

    #[test]
    fn a_datagram_from_outside_the_time_window_is_refused_either_way() {
        let mut g = guard();
        let t = ReplaySettings::default().skew_tolerance.as_millis() as u64;
        assert_eq!(g.admit(src(1), 1, 1, NOW - t, NOW), Ok(()));
        assert!(matches!(
            g.admit(src(1), 1, 2, NOW - t - 1, NOW),
            Err(Refusal::ClockSkew { .. })
        ));
        assert!(matches!(
            g.admit(src(1), 1, 3, NOW + t + 1, NOW),
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
            g.admit(src(1), 1, 1, 1 << 63, NOW),
            Err(Refusal::ClockSkew {
                ms: i64::MAX - (NOW as i64 - 1),
                tolerance_ms: 60_000
            })
        );
        assert_eq!(
            g.admit(src(1), 1, 2, u64::MAX, 0),
            Err(Refusal::ClockSkew {
                ms: i64::MAX,
                tolerance_ms: 60_000
            })
        );
        assert_eq!(
            g.admit(src(1), 1, 3, 0, u64::MAX),
            Err(Refusal::ClockSkew {
                ms: i64::MIN,
                tolerance_ms: 60_000
            })
        );
        assert_eq!(
            g.admit(src(1), 1, 4, NOW, NOW + (1 << 63)),
            Err(Refusal::ClockSkew {
                ms: i64::MIN,
                tolerance_ms: 60_000
            })
        );
        assert_eq!(g.admit(src(1), 1, 5, u64::MAX - 5, u64::MAX), Ok(()));
    }

    #[test]
    fn sessions_are_bounded_and_idle_ones_make_room() {
        let mut g = ReplayGuard::new(ReplaySettings {
            max_senders: 10,
            ..ReplaySettings::default()
        });
        for s in 0..10 {
            g.admit(src(s as u16), s, 1, NOW, NOW).unwrap();
        }
        assert_eq!(
            g.admit(src(99), 99, 1, NOW, NOW),
            Err(Refusal::TooManySenders)
        );
        assert_eq!(g.senders(), 10);
        // Three minutes later every old session is idle.
        let later = NOW + 180_000;
        assert_eq!(g.admit(src(1), 99, 1, later, later), Ok(()));
        assert_eq!(g.senders(), 1);
    }

    #[test]
    fn a_captured_datagram_replayed_byte_for_byte_is_refused() {
        let env = Envelope::new(Keyring::generate(), "prod");
        let mut sealer = Sealer::new(env.clone(), WallClock::default());
        let mut opener = Opener::new(
            env.clone(),
            WallClock::default(),
            ReplaySettings::default(),
            vec![ME],
        );
        let mut packet = Vec::new();
        sealer.seal(b"\x00announce", ME, &mut packet).unwrap();
        assert_eq!(opener.open(src(1), &packet).unwrap(), b"\x00announce");
        assert_eq!(opener.open(src(1), &packet), Err(Refusal::Replayed));
        // The same capture at a receiver whose clock reads two minutes
        // later (as the replay would arrive then) is refused by time.
        let mut later = Opener::new(
            env,
            WallClock::shifted(120_000),
            ReplaySettings::default(),
            vec![ME],
        );
        assert!(matches!(
            later.open(src(1), &packet),
            Err(Refusal::ClockSkew { .. })
        ));
    }

    #[test]
    fn gossip_does_not_open_as_a_control_frame_or_without_a_header() {
        let env = Envelope::new(Keyring::generate(), "prod");
        let mut opener = Opener::new(
            env.clone(),
            WallClock::default(),
            ReplaySettings::default(),
            vec![ME],
        );
        let control = env.seal_to_vec(Purpose::ControlReply, &[0; 40]).unwrap();
        assert!(matches!(
            opener.open(src(1), &control),
            Err(Refusal::Unsealed(_))
        ));
        let short = env.seal_to_vec(Purpose::Gossip, b"hi").unwrap();
        assert_eq!(opener.open(src(1), &short), Err(Refusal::NoHeader));
    }

    #[test]
    fn a_datagram_replayed_to_another_node_is_refused_as_misdirected() {
        let env = Envelope::new(Keyring::generate(), "prod");
        let mut sealer = Sealer::new(env.clone(), WallClock::default());
        let other: SocketAddr = "127.0.0.2:7946".parse().unwrap();
        let mut to_other = Vec::new();
        sealer.seal(b"\x00gossip", other, &mut to_other).unwrap();
        let mut opener = Opener::new(
            env.clone(),
            WallClock::default(),
            ReplaySettings::default(),
            vec![ME],
        );
        assert_eq!(
            opener.open(src(1), &to_other),
            Err(Refusal::Misdirected(other))
        );
        // Nor does it use up the sender's counter here: the next datagram
        // addressed to us opens.
        let mut to_me = Vec::new();
        sealer.seal(b"\x00gossip", ME, &mut to_me).unwrap();
        assert!(opener.open(src(1), &to_me).is_ok());
        // A node bound to every address takes any address with its port.
        let mut any = Opener::new(
            env,
            WallClock::default(),
            ReplaySettings::default(),
            vec!["0.0.0.0:7946".parse().unwrap()],
        );
        assert!(any.open(src(1), &to_other).is_ok());
    }

    #[test]
    fn one_source_holds_a_few_sessions_and_cannot_fill_the_table() {
        let mut g = ReplayGuard::new(ReplaySettings {
            max_senders: 100,
            ..ReplaySettings::default()
        });
        for s in 0..1_000 {
            let r = g.admit(src(1), s, 1, NOW, NOW);
            let want = if s < SESSIONS_PER_SOURCE as u64 {
                Ok(())
            } else {
                Err(Refusal::TooManySenders)
            };
            assert_eq!(r, want, "session {s}");
        }
        assert_eq!(g.senders(), SESSIONS_PER_SOURCE);
        for s in 0..(10 - SESSIONS_PER_SOURCE) {
            g.admit(src(2 + s as u16), 5_000 + s as u64, 1, NOW, NOW)
                .unwrap();
        }
        assert_eq!(g.senders(), 10, "other senders still find room");
        // A minute and more later the flooder's oldest session can go: all
        // it sent is refused by time by then.
        let later = NOW + 61_000;
        assert_eq!(g.admit(src(1), 7_000, 1, later, later), Ok(()));
        assert_eq!(
            g.admit(src(1), 0, 1, NOW, later),
            Err(Refusal::ClockSkew {
                ms: -61_000,
                tolerance_ms: 60_000
            })
        );
    }
}
