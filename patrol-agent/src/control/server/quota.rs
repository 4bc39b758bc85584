//! Per-operator quotas on the sweeps started through this agent's control
//! channel, so one operator (however narrow its scope) cannot fill the
//! mesh's participations and lock the others out (issue 22: 64 in-scope
//! sweeps in a second made every node answer `patrol.over_capacity` to a
//! full operator for a whole deadline).
//!
//! Two limits per operator (by certificate name):
//! - **concurrent**: at most [`QuotaSettings::max_sweeps`] of its sweeps
//!   held at once. A sweep is held from its start until its deadline plus
//!   [`QuotaSettings::hold_after_deadline`], the time participants
//!   remember it. Participants now free a sweep's participation once its
//!   answer is acked (keeping a compact record), so for a sweep that
//!   completes early this count is conservative: it also bounds the
//!   sweeps whose answers are slow or never acked;
//! - **rate**: at most [`QuotaSettings::per_minute`] starts in any minute.
//!
//! Pure: the caller passes the clock. An operator's entry is dropped when
//! it holds nothing, so the table holds only operators active in the last
//! minute (and only operators the CA certified reach it).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The quotas. `Default` gives the shipped values.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaSettings {
    /// Sweeps one operator may hold at once through this agent. Default
    /// 16: a quarter of a node's default `max_participations` (64), so the
    /// operators of four coordinators, or three others and this one, still
    /// find room. Must not be zero (the daemon sets it from the node's
    /// `max_participations`).
    pub max_sweeps: usize,
    /// Sweeps one operator may start through this agent in any minute.
    /// Default 30: a person or a cron job sweeps far less often.
    pub per_minute: usize,
    /// How long after its deadline a sweep still counts: participants
    /// remember a sweep one second past its expiry. Default 1 s.
    pub hold_after_deadline: Duration,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        QuotaSettings {
            max_sweeps: 16,
            per_minute: 30,
            hold_after_deadline: Duration::from_secs(1),
        }
    }
}

/// Why a sweep was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaRefusal {
    #[error("operator `{operator}` already holds {held} sweeps on this agent, its share (at most {max} at once, each held until its deadline passes); try again when one ends")]
    Concurrent {
        operator: String,
        held: usize,
        max: usize,
    },
    #[error("operator `{operator}` started {started} sweeps through this agent in the last minute, its share (at most {max}); try again later")]
    Rate {
        operator: String,
        started: usize,
        max: usize,
    },
}

#[derive(Debug, Default)]
struct Use {
    /// When each held sweep stops counting.
    held_until: Vec<Instant>,
    /// When each sweep of the last minute started.
    started: VecDeque<Instant>,
}

/// The quotas' state, shared by the connections of one control listener.
#[derive(Debug, Default)]
pub struct OperatorQuotas {
    settings: QuotaSettings,
    by_operator: HashMap<String, Use>,
}

const MINUTE: Duration = Duration::from_secs(60);

impl OperatorQuotas {
    pub fn new(settings: QuotaSettings) -> OperatorQuotas {
        OperatorQuotas {
            settings,
            by_operator: HashMap::new(),
        }
    }

    /// Take a slot for a sweep of `operator` with `deadline`, starting
    /// `now`, or say why not (nothing is taken then).
    pub fn admit(
        &mut self,
        operator: &str,
        deadline: Duration,
        now: Instant,
    ) -> Result<(), QuotaRefusal> {
        self.forget_past(now);
        let s = &self.settings;
        let u = self.by_operator.entry(operator.to_string()).or_default();
        if u.held_until.len() >= s.max_sweeps {
            return Err(QuotaRefusal::Concurrent {
                operator: operator.to_string(),
                held: u.held_until.len(),
                max: s.max_sweeps,
            });
        }
        if u.started.len() >= s.per_minute {
            return Err(QuotaRefusal::Rate {
                operator: operator.to_string(),
                started: u.started.len(),
                max: s.per_minute,
            });
        }
        u.held_until.push(now + deadline + s.hold_after_deadline);
        u.started.push_back(now);
        Ok(())
    }

    /// Drop the sweeps past their hold and the starts over a minute old.
    fn forget_past(&mut self, now: Instant) {
        self.by_operator.retain(|_, u| {
            u.held_until.retain(|t| *t > now);
            while u
                .started
                .front()
                .is_some_and(|t| now.duration_since(*t) >= MINUTE)
            {
                u.started.pop_front();
            }
            !(u.held_until.is_empty() && u.started.is_empty())
        });
    }

    /// Operators with an entry (for tests of the bound).
    #[cfg(test)]
    fn operators(&self) -> usize {
        self.by_operator.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_operator_holds_its_share_and_another_still_sweeps() {
        let mut q = OperatorQuotas::new(QuotaSettings::default());
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let admitted = (0..64)
            .filter(|_| q.admit("cron", minute, t0).is_ok())
            .count();
        assert_eq!(admitted, 16);
        let e = q.admit("cron", minute, t0).unwrap_err();
        assert!(
            matches!(e, QuotaRefusal::Concurrent { held: 16, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("`cron`"), "{e}");
        q.admit("alice", minute, t0)
            .expect("another operator has its own share");
        // The sweeps count until their deadline and a second more.
        assert!(q
            .admit("cron", minute, t0 + Duration::from_secs(60))
            .is_err());
        q.admit("cron", minute, t0 + Duration::from_millis(61_001))
            .expect("held sweeps have passed");
    }

    #[test]
    fn short_sweeps_are_limited_by_the_rate() {
        let mut q = OperatorQuotas::new(QuotaSettings::default());
        let t0 = Instant::now();
        let short = Duration::from_millis(100);
        let mut t = t0;
        let mut admitted = 0;
        while t < t0 + Duration::from_secs(59) {
            admitted += usize::from(q.admit("cron", short, t).is_ok());
            t += Duration::from_secs(1);
        }
        assert_eq!(admitted, 30);
        assert!(matches!(
            q.admit("cron", short, t),
            Err(QuotaRefusal::Rate { started: 30, .. })
        ));
        assert!(q.admit("cron", short, t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn idle_operators_are_forgotten() {
        let mut q = OperatorQuotas::new(QuotaSettings::default());
        let t0 = Instant::now();
        for i in 0..100 {
            q.admit(&format!("op-{i}"), Duration::from_secs(1), t0)
                .unwrap();
        }
        assert_eq!(q.operators(), 100);
        q.admit("late", Duration::from_secs(1), t0 + Duration::from_secs(61))
            .unwrap();
        assert_eq!(q.operators(), 1);
    }
}
