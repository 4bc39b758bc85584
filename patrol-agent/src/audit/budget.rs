//! The budget of audit lines nobody proved: refusals written before a
//! peer showed an operator certificate (a refused control handshake, a
//! request that does not open). Anyone who reaches the control port can
//! cause them, so they must never be able to rotate an operator's records
//! off the node (issue 22: 220,000 refused handshakes in 40 s did).
//!
//! Three limits, all applied by [`AuditLog::append_unproven`](super::AuditLog::append_unproven):
//! - a token bucket per peer address ([`BudgetSettings::per_peer_burst`],
//!   refilled at [`BudgetSettings::per_peer_every`]) and one for all peers
//!   ([`BudgetSettings::global_burst`], [`BudgetSettings::global_every`]);
//! - a refusal over either bucket is not written but counted, per peer
//!   (at most [`BudgetSettings::max_peers_listed`] peers by name, the rest
//!   together), and once per [`BudgetSettings::summary_every`] one line per
//!   peer says how many were suppressed;
//! - unproven lines (refusals and summaries) take at most a quarter of the
//!   current file and never cause a rotation (see `UNPROVEN_SHARE` in the
//!   parent module): only proven records can rotate the log, so a flood
//!   without a key can never push an operator's record out.
//!
//! The budget is pure: time is the records' own `time_unix_ms`, so a test
//! drives it with any clock.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

/// The limits on unproven audit lines. `Default` gives the shipped values.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSettings {
    /// Lines one peer address may write at once. Default 10: a mistyped
    /// identity tried a few times is recorded in full.
    pub per_peer_burst: u32,
    /// One more line per peer each this often. Default 6 s (10 a minute).
    pub per_peer_every: Duration,
    /// Lines all peers together may write at once. Default 60.
    pub global_burst: u32,
    /// One more line for all peers each this often. Default 1 s.
    pub global_every: Duration,
    /// How often the suppressed refusals are summed up in the log (one
    /// line per peer). Default 60 s.
    pub summary_every: Duration,
    /// Peers whose buckets are kept (past it, full buckets are forgotten;
    /// a new peer beyond it has no own bucket and is suppressed). Default
    /// 4096, about 200 KiB.
    pub max_peers: usize,
    /// Peers named one by one in a summary; the others share one line.
    /// Default 32.
    pub max_peers_listed: usize,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            per_peer_burst: 10,
            per_peer_every: Duration::from_secs(6),
            global_burst: 60,
            global_every: Duration::from_secs(1),
            summary_every: Duration::from_secs(60),
            max_peers: 4096,
            max_peers_listed: 32,
        }
    }
}

/// A token bucket on a millisecond clock.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    fn full(burst: u32, now_ms: u64) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            at_ms: now_ms,
        }
    }

    fn refill(&mut self, burst: u32, every: Duration, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64;
        let per_ms = 1.0 / (every.as_millis().max(1) as f64);
        self.tokens = (self.tokens + elapsed * per_ms).min(f64::from(burst));
        self.at_ms = self.at_ms.max(now_ms);
    }

    fn is_full(&self, burst: u32) -> bool {
        self.tokens >= f64::from(burst)
    }
}

/// Who had refusals suppressed since the last summary.
#[derive(Debug, Default)]
struct Suppressed {
    by_peer: BTreeMap<IpAddr, u64>,
    others: u64,
}

/// One summary line to write: `count` refusals of `peer` (None: peers not
/// listed one by one) suppressed over the last `over`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub peer: Option<IpAddr>,
    pub count: u64,
    pub over: Duration,
}

impl Summary {
    /// The line's reason text, e.g. "412 refusals from 10.0.0.9
    /// suppressed in 60 s (over the audit budget for unproven peers)".
    pub fn reason(&self) -> String {
        let from = match self.peer {
            Some(ip) => ip.to_string(),
            None => "other peers".to_string(),
        };
        format!(
            "{} refusals from {from} suppressed in {} s (over the audit budget for peers that proved no operator)",
            self.count,
            self.over.as_secs()
        )
    }
}

/// The state of the budget (held under the audit log's lock).
#[derive(Debug)]
pub struct RefusalBudget {
    settings: BudgetSettings,
    peers: HashMap<IpAddr, Bucket>,
    global: Option<Bucket>,
    pending: Suppressed,
    /// When the current summary interval began (unix ms); None until the
    /// first refusal is suppressed.
    since_ms: Option<u64>,
}

impl RefusalBudget {
    pub fn new(settings: BudgetSettings) -> RefusalBudget {
        RefusalBudget {
            settings,
            peers: HashMap::new(),
            global: None,
            pending: Suppressed::default(),
            since_ms: None,
        }
    }

    /// May a refusal from `peer` be written now? Takes a token from the
    /// peer's bucket and the global one when both have one.
    pub fn admit(&mut self, peer: IpAddr, now_ms: u64) -> bool {
        let s = &self.settings;
        let global = self
            .global
            .get_or_insert_with(|| Bucket::full(s.global_burst, now_ms));
        global.refill(s.global_burst, s.global_every, now_ms);
        if !self.peers.contains_key(&peer) && self.peers.len() >= s.max_peers {
            let (burst, every) = (s.per_peer_burst, s.per_peer_every);
            self.peers.retain(|_, b| {
                b.refill(burst, every, now_ms);
                !b.is_full(burst)
            });
            if self.peers.len() >= s.max_peers {
                return false;
            }
        }
        let bucket = self
            .peers
            .entry(peer)
            .or_insert_with(|| Bucket::full(s.per_peer_burst, now_ms));
        bucket.refill(s.per_peer_burst, s.per_peer_every, now_ms);
        if bucket.tokens >= 1.0 && global.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            global.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Count a refusal of `peer` that was not written.
    pub fn suppress(&mut self, peer: Option<IpAddr>, count: u64, now_ms: u64) {
        self.since_ms.get_or_insert(now_ms);
        let listed = self.pending.by_peer.len() < self.settings.max_peers_listed;
        match peer {
            Some(ip) if listed || self.pending.by_peer.contains_key(&ip) => {
                *self.pending.by_peer.entry(ip).or_default() += count;
            }
            _ => self.pending.others += count,
        }
    }

    /// The summaries due at `now_ms` (an interval has passed since the
    /// first suppressed refusal), taken out of the budget.
    pub fn due(&mut self, now_ms: u64) -> Vec<Summary> {
        let Some(since) = self.since_ms else {
            return Vec::new();
        };
        let over = Duration::from_millis(now_ms.saturating_sub(since));
        if over < self.settings.summary_every {
            return Vec::new();
        }
        self.since_ms = None;
        let pending = std::mem::take(&mut self.pending);
        let mut out: Vec<Summary> = pending
            .by_peer
            .into_iter()
            .map(|(ip, count)| Summary {
                peer: Some(ip),
                count,
                over,
            })
            .collect();
        if pending.others > 0 {
            out.push(Summary {
                peer: None,
                count: pending.others,
                over,
            });
        }
        out
    }

    /// Put back a summary that could not be written (the file's share for
    /// unproven lines is used up): it is written after the next rotation.
    pub fn restore(&mut self, summary: &Summary, now_ms: u64) {
        self.suppress(summary.peer, summary.count, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_peer_writes_its_burst_then_one_line_per_refill_period() {
        let mut b = RefusalBudget::new(BudgetSettings::default());
        let written = (0..1000).filter(|_| b.admit(ip(9), 0)).count();
        assert_eq!(written, 10);
        assert!(!b.admit(ip(9), 5_999));
        assert!(b.admit(ip(9), 6_000));
        // Another peer has its own bucket.
        assert!(b.admit(ip(8), 6_000));
    }

    #[test]
    fn many_peers_share_the_global_bucket() {
        let mut b = RefusalBudget::new(BudgetSettings::default());
        let written = (0..=255u8)
            .flat_map(|last| (0..10).map(move |_| last))
            .filter(|last| b.admit(ip(*last), 0))
            .count();
        assert_eq!(written, 60);
    }

    #[test]
    fn suppressed_refusals_are_summed_up_once_per_interval_per_peer() {
        let mut b = RefusalBudget::new(BudgetSettings {
            max_peers_listed: 2,
            ..BudgetSettings::default()
        });
        for (last, n) in [(1, 412), (2, 3), (3, 5), (4, 7)] {
            b.suppress(Some(ip(last)), n, 1_000);
        }
        assert!(b.due(60_999).is_empty());
        let due = b.due(61_000);
        assert_eq!(due.len(), 3, "{due:?}");
        assert_eq!(due[0].peer, Some(ip(1)));
        assert_eq!(due[0].count, 412);
        assert_eq!(due[2].peer, None);
        assert_eq!(due[2].count, 12);
        assert_eq!(
            due[0].reason(),
            "412 refusals from 10.0.0.1 suppressed in 60 s (over the audit budget for peers that proved no operator)"
        );
        assert!(b.due(200_000).is_empty(), "each refusal is summed up once");
    }

    #[test]
    fn the_peer_table_is_bounded_and_forgets_full_buckets_first() {
        let mut b = RefusalBudget::new(BudgetSettings {
            max_peers: 2,
            global_burst: 1000,
            ..BudgetSettings::default()
        });
        assert!(b.admit(ip(1), 0));
        assert!(b.admit(ip(2), 0));
        assert!(!b.admit(ip(3), 0), "no room for a third peer yet");
        // Once the first two have refilled, they make room.
        assert!(b.admit(ip(3), 60_000));
        assert!(b.peers.len() <= 2);
    }
}
