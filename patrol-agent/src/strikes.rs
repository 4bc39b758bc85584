//! Strikes per source: a sender whose datagrams keep failing to open is
//! muted for a while, so one flooding address cannot spend the opener's
//! CPU and fill its queue at everyone else's expense.
//!
//! The opener task strikes a source (its address and port) for every
//! datagram it refuses: not sealed under our key, replayed, or sent too far
//! from our clock. A source with `mute_after` strikes within one second is
//! muted for the rest of that second and the next: the UDP reader drops its
//! datagrams before copying or queueing them, and counts them. Then it is
//! heard again; if it still floods, it is muted again within `mute_after`
//! datagrams. An agent that sends sealed datagrams never collects strikes,
//! so it is never muted.
//!
//! What this does not stop: a flood from many source addresses (or one
//! that changes its source port per datagram) is spread below the limit,
//! and the kernel still drops datagrams when the reader cannot keep up. A
//! network-level rate limit is the defence there (see PROTOCOL.md's threat
//! model). An attacker who can forge a victim's source address can get the
//! victim muted at this node while the attacker keeps sending at over
//! `mute_after` a second: without strikes the same flood would have cost
//! every sender its datagrams.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Sources tracked at once. When full, records from earlier seconds are
/// forgotten first; a source that finds no room is not tracked (so never
/// muted), and the opener goes on refusing its datagrams one by one.
pub const MAX_SOURCES: usize = 4096;

/// Strikes per source, shared by the opener (which strikes) and the reader
/// (which asks whether a source is muted).
#[derive(Debug)]
pub struct Strikes {
    mute_after: u32,
    epoch: Instant,
    /// The latest second any source is muted until (exclusive), so the
    /// reader's common case, nobody muted, takes no lock.
    muted_until_any: AtomicU64,
    sources: Mutex<HashMap<SocketAddr, Record>>,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    /// The second the strikes were counted in.
    second: u64,
    strikes: u32,
    /// Muted while the current second is below this.
    muted_until: u64,
}

impl Strikes {
    /// Mute a source after `mute_after` strikes within a second (at least 1).
    pub fn new(mute_after: u32) -> Strikes {
        Strikes {
            mute_after: mute_after.max(1),
            epoch: Instant::now(),
            muted_until_any: AtomicU64::new(0),
            sources: Mutex::new(HashMap::new()),
        }
    }

    fn second(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    /// Strike `from` once, at the current second. Returns true when this
    /// strike mutes it.
    pub fn strike(&self, from: SocketAddr) -> bool {
        self.strike_at(from, self.second())
    }

    fn strike_at(&self, from: SocketAddr, now: u64) -> bool {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if !sources.contains_key(&from) && sources.len() >= MAX_SOURCES {
            sources.retain(|_, r| r.second >= now || r.muted_until > now);
            if sources.len() >= MAX_SOURCES {
                return false;
            }
        }
        let record = sources.entry(from).or_insert(Record {
            second: now,
            strikes: 0,
            muted_until: 0,
        });
        if record.second != now {
            record.second = now;
            record.strikes = 0;
        }
        record.strikes = record.strikes.saturating_add(1);
        if record.strikes < self.mute_after || record.muted_until > now {
            return false;
        }
        record.muted_until = now + 2;
        self.muted_until_any
            .fetch_max(record.muted_until, Ordering::Relaxed);
        true
    }

    /// Whether `from` is muted now.
    pub fn muted(&self, from: SocketAddr) -> bool {
        let now = self.second();
        if self.muted_until_any.load(Ordering::Relaxed) <= now {
            return false;
        }
        let sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.get(&from).is_some_and(|r| r.muted_until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 9], port))
    }

    #[test]
    fn a_source_is_muted_at_the_limit_within_a_second_and_heard_again_later() {
        let s = Strikes::new(3);
        assert!(!s.strike_at(addr(1), 5));
        assert!(!s.strike_at(addr(1), 5));
        assert!(s.strike_at(addr(1), 5), "the third strike mutes");
        let r = s.sources.lock().unwrap()[&addr(1)];
        assert_eq!(r.muted_until, 7, "the rest of second 5 and second 6");
        assert!(!s.strike_at(addr(1), 5), "already muted: no second mute");
    }

    #[test]
    fn strikes_in_different_seconds_do_not_add_up() {
        let s = Strikes::new(2);
        assert!(!s.strike_at(addr(1), 1));
        assert!(!s.strike_at(addr(1), 2));
        assert!(!s.strike_at(addr(1), 3));
        assert!(s.strike_at(addr(1), 3));
    }

    #[test]
    fn another_source_is_not_muted_with_the_flooder() {
        let s = Strikes::new(1);
        let now = s.second();
        assert!(s.strike_at(addr(1), now));
        assert!(s.muted(addr(1)));
        assert!(!s.muted(addr(2)));
    }

    #[test]
    fn nobody_is_muted_without_strikes() {
        let s = Strikes::new(1);
        assert!(!s.muted(addr(1)));
    }

    #[test]
    fn the_table_is_bounded_and_old_records_make_room() {
        let s = Strikes::new(1_000);
        for port in 0..MAX_SOURCES as u16 {
            s.strike_at(addr(port), 1);
        }
        // Second 1's records are kept during second 1: no room.
        s.strike_at(addr(u16::MAX), 1);
        assert_eq!(s.sources.lock().unwrap().len(), MAX_SOURCES);
        assert!(!s.sources.lock().unwrap().contains_key(&addr(u16::MAX)));
        // In second 2 they are old and make room.
        s.strike_at(addr(u16::MAX), 2);
        assert_eq!(s.sources.lock().unwrap().len(), 1);
    }
}
