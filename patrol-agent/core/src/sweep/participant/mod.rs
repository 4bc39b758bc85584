//! The participant side of a sweep: take a request once ([`admission`]),
//! run the checks, answer the coordinator in acked pieces ([`answer`]),
//! resend with backoff until every piece is acked or the request expires,
//! then keep only a compact record of the sweep ([`settled`]), and refuse
//! replays.
//!
//! A sweep is *held* (a [`Participation`], counted against
//! `max_participations` and its operator's share) while its checks run
//! and until the coordinator acks its whole answer; then it is *settled*
//! (a [`settled::Settled`] record, bounded by [`settled::MAX_SETTLED`]).
//! Both are forgotten 1 s after the request expires.

mod admission;
mod answer;
mod settled;

use core::net::SocketAddr;
use std::collections::HashMap;
use std::time::Duration;

use patrol_model::CheckOutcome;

use super::ctx::Ctx;
use super::outcomes;
use super::wire::{relay_index, AnswerChunk, PeerAddr, SweepRequest};
use super::{AuditAction, AuditEntry, Effect, SweepTimer, TimerKind};
use crate::trust::PairKey;

use admission::{Admitted, RefusalBudget};
use answer::{chunks, send_pieces, Proof};
#[cfg(test)]
use settled::footprint;
use settled::Settled;
pub(crate) use settled::MAX_SETTLED;

/// A request's bytes, digested (the first 16 bytes of their SHA-256): two
/// requests under one id with different contents differ here.
pub(crate) fn digest(req: &SweepRequest) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut d = [0u8; 16];
    d.copy_from_slice(&Sha256::digest(req.encode())[..16]);
    d
}

/// How long after expiry a sweep id is still remembered (clock drift between
/// the monotonic and wall clocks).
const FORGET_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(crate) struct Participant {
    /// Sweeps held: checks running, or an answer not yet acked by the
    /// coordinator.
    sweeps: HashMap<u64, Participation>,
    /// Sweeps whose answer the coordinator acked, as compact records.
    settled: HashMap<u64, Settled>,
    /// Audit lines of refused authorizations, per sender.
    refusals: RefusalBudget,
    /// Requests refused for this node's own reasons (its tags, its
    /// capacity, its operator's share): id -> (expiry, digest), so their
    /// other copies are counted and audited once.
    refused_here: HashMap<u64, (u64, [u8; 16])>,
}

/// Most requests remembered as refused here at once.
const MAX_REFUSED_HERE: usize = 4096;

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// This node takes part (new and admitted).
    pub(crate) taken: bool,
    /// This node checked the request and vouches for it: unexpired, not
    /// issued in the future, and with `[trust]` authorized. Only such a
    /// request is gossiped on.
    pub(crate) pass_on: bool,
}

/// What became of an ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckVerdict {
    Taken,
    /// For a sweep we no longer remember.
    Ignored,
    /// Not for us, not for this answer, or not from the coordinator (or
    /// our relay).
    Forged,
}

#[derive(Debug)]
struct Participation {
    coordinator: PeerAddr,
    /// Echoed by every ack of our answer.
    nonce: u64,
    received_unix_ms: u64,
    received_at: Duration,
    /// Monotonic time at which the request expires.
    expires_at: Duration,
    spread: Duration,
    phase: Phase,
    /// With certificates: the key our answer is proved with.
    pair: Option<PairKey>,
    /// The relay the request assigned us, while our answer still goes
    /// there: a one-datagram answer is sent to it first; a resend past
    /// `relay_attempts`, a backstop request, or a multi-piece answer goes
    /// to the coordinator instead.
    relay: Option<SocketAddr>,
    /// With certificates: the coordinator's peer epoch, and whether it has
    /// our certificate in it (the answer then names it by digest).
    epoch: u64,
    cert_known: bool,
    /// The pieces sent carry our whole certificate: once acked, the
    /// coordinator has it.
    tell_on_ack: bool,
    /// With certificates, when the answer names our certificate by digest:
    /// the same answer with the whole certificate, sent instead if the
    /// coordinator asks us directly (it did not have it after all).
    whole: Option<Vec<AnswerChunk>>,
    /// The audit line written when our checks are done.
    audit: AuditEntry,
    /// The request's bytes, digested: another request under the same id
    /// is not vouched for.
    digest: [u8; 16],
}

#[derive(Debug)]
enum Phase {
    /// The shell is running our checks.
    Running,
    /// The answer is built; `None` marks a piece the coordinator acked.
    Answering(Vec<Option<AnswerChunk>>),
    /// Our relay acked our (one-piece) answer. Kept until the sweep is
    /// forgotten (the coordinator acks the relay's batch, never us): a
    /// backstop request from the coordinator means the relay never
    /// delivered it, and the answer then goes to the coordinator directly.
    Relayed(AnswerChunk),
}

/// Whether a direct copy of `req` from its coordinator can be the
/// backstop rather than one of its first direct copies (its direct spread
/// in a small mesh, its copy to each relay), which can arrive after a
/// gossip copy and after we answered: only a copy sent after the spread
/// window and half the backstop's delay (judged on our clock, so a clock
/// far off costs at most a needless resend or one backstop round).
fn backstop_time(cx: &Ctx, req: &SweepRequest) -> bool {
    let since_issue = cx.unix_ms().saturating_sub(req.issued_at_unix_ms);
    let backstop_from =
        u64::from(req.answer_spread_ms) + cx.settings.backstop_min_delay.as_millis() as u64 / 2;
    since_issue >= backstop_from
}

/// What is left of the request's answer spread window, which runs from
/// its issue time (judged on our clock, as [`backstop_time`] is): a node
/// reached late, by the backstop, is past it and answers at once rather
/// than waiting out a window the first wave has long used.
fn spread_left(cx: &Ctx, req: &SweepRequest) -> Duration {
    let since_issue = cx.unix_ms().saturating_sub(req.issued_at_unix_ms);
    Duration::from_millis(u64::from(req.answer_spread_ms).saturating_sub(since_issue))
}

impl Participant {
    /// Sweeps held (running or answering; not the settled ones).
    pub(crate) fn len(&self) -> usize {
        self.sweeps.len()
    }

    /// Settled sweeps remembered.
    pub(crate) fn settled(&self) -> usize {
        self.settled.len()
    }

    /// Settled sweeps remembered past their expiry (their forget timer is
    /// late) are dropped, once the records are full.
    fn drop_expired_settled(&mut self, now: Duration) {
        if self.settled.len() >= MAX_SETTLED {
            self.settled
                .retain(|_, s| s.expires_at + FORGET_GRACE > now);
        }
    }

    fn remember_refused(&mut self, id: u64, until: u64, d: [u8; 16], unix_ms: u64) {
        if self.refused_here.len() >= MAX_REFUSED_HERE {
            self.refused_here.retain(|_, (u, _)| *u > unix_ms);
        }
        if self.refused_here.len() >= MAX_REFUSED_HERE {
            let first = self
                .refused_here
                .iter()
                .min_by_key(|(_, (u, _))| *u)
                .map(|(id, _)| *id);
            if let Some(first) = first {
                self.refused_here.remove(&first);
            }
        }
        self.refused_here.insert(id, (until, d));
    }

    /// Sweeps of `operator` held here (settled ones do not count).
    pub(crate) fn held_by(&self, operator: &str) -> usize {
        self.sweeps
            .values()
            .filter(|p| p.audit.operator.as_deref() == Some(operator))
            .count()
    }

    pub(crate) fn running(&self) -> usize {
        self.sweeps
            .values()
            .filter(|p| matches!(p.phase, Phase::Running))
            .count()
    }

    /// A request, gossiped (`from` None; `sender` the member whose packet
    /// carried it) or direct (`from` and `sender` its source). A known
    /// sweep, held or settled, is not run again (a direct copy from its
    /// coordinator is the backstop); a new one is admitted and run, or
    /// refused (counted, audited under the sender's budget, and answered
    /// when its coordinator asked directly).
    pub(crate) fn request(
        &mut self,
        cx: &mut Ctx,
        req: SweepRequest,
        from: Option<SocketAddr>,
        sender: Option<SocketAddr>,
    ) -> Verdict {
        if let Some(p) = self.sweeps.get_mut(&req.id) {
            let same = p.digest == digest(&req);
            p.asked_again(cx, &req, from);
            return Verdict {
                taken: false,
                pass_on: same,
            };
        }
        if let Some(s) = self.settled.get_mut(&req.id) {
            let same = s.digest == digest(&req);
            s.asked_again(cx, &req, from);
            return Verdict {
                taken: false,
                pass_on: same,
            };
        }
        self.drop_expired_settled(cx.mono());
        let d = digest(&req);
        let unix_ms = cx.unix_ms();
        let repeat = self
            .refused_here
            .get(&req.id)
            .is_some_and(|(until, seen)| *seen == d && *until > unix_ms);
        if repeat && from != Some(req.coordinator.addr) {
            // Another copy of a request refused here: said once.
            return Verdict {
                taken: false,
                pass_on: true,
            };
        }
        match self.admit(cx, &req) {
            Ok(admitted) => {
                self.refused_here.remove(&req.id);
                self.run(cx, req, admitted);
                Verdict {
                    taken: true,
                    pass_on: true,
                }
            }
            Err(refusal) => {
                let pass_on = refusal.passes_on();
                if pass_on && !repeat {
                    self.remember_refused(req.id, req.expires_at_unix_ms(), d, unix_ms);
                }
                refusal.answer(cx, &req, from, sender, &mut self.refusals, repeat);
                Verdict {
                    taken: false,
                    pass_on,
                }
            }
        }
    }

    /// Take part in an admitted request: run our checks, or, when
    /// `max_concurrent` sweeps already run, answer at once with a single
    /// `patrol.busy` error, so the coordinator lists us as `failing`, not
    /// silent.
    fn run(&mut self, cx: &mut Ctx, req: SweepRequest, admitted: Admitted) {
        let settings = cx.settings;
        let now = cx.mono();
        let busy = self.running() >= settings.max_concurrent;
        let relay = (!req.relays.is_empty() && req.coordinator.addr != cx.me.addr)
            .then(|| req.relays[relay_index(req.id, &cx.me.name, req.relays.len())]);
        let remaining = admitted.remaining;
        let mut p = Participation {
            coordinator: req.coordinator.clone(),
            nonce: 0,
            received_unix_ms: cx.unix_ms(),
            received_at: now,
            expires_at: now + remaining,
            spread: spread_left(cx, &req),
            phase: Phase::Running,
            pair: admitted.pair,
            relay,
            epoch: req.auth.as_ref().map_or(0, |a| a.peer_epoch),
            cert_known: admitted.cert_known,
            tell_on_ack: false,
            whole: None,
            audit: admitted.audit,
            digest: digest(&req),
        };
        cx.push(Effect::Schedule {
            after: remaining + FORGET_GRACE,
            timer: SweepTimer(TimerKind::Forget(req.id)),
        });
        if busy {
            let max = settings.max_concurrent;
            p.audit.action = AuditAction::Refused(format!("busy: {max} sweeps already running"));
            cx.push(Effect::Audit(p.audit.clone()));
            p.answer(cx, req.id, vec![outcomes::busy(max)]);
        } else {
            cx.push(Effect::RunChecks {
                sweep_id: req.id,
                selector: req.selector,
                budget: settings.check_budget(remaining, p.spread),
            });
        }
        self.sweeps.insert(req.id, p);
    }

    pub(crate) fn checks_done(&mut self, cx: &mut Ctx, sweep_id: u64, outcomes: Vec<CheckOutcome>) {
        let Some(p) = self.sweeps.get_mut(&sweep_id) else {
            return;
        };
        // Expiry is judged on the monotonic clock from the receive time on.
        if !matches!(p.phase, Phase::Running) || cx.mono() >= p.expires_at {
            return;
        }
        p.audit.action = AuditAction::Ran {
            checks: outcomes.len(),
        };
        cx.push(Effect::Audit(p.audit.clone()));
        p.answer(cx, sweep_id, outcomes);
    }

    /// Send the unacked pieces (attempt 0 is the first send) and schedule
    /// the next resend, until acked or expired.
    pub(crate) fn send_answer(&mut self, cx: &mut Ctx, sweep_id: u64, attempt: u32) {
        let Some(p) = self.sweeps.get_mut(&sweep_id) else {
            return;
        };
        let Phase::Answering(pieces) = &p.phase else {
            return;
        };
        if cx.mono() >= p.expires_at {
            return;
        }
        if attempt >= cx.settings.relay_attempts {
            // The relay did not ack in time (dead, or its queue full):
            // the coordinator directly from now on.
            p.relay = None;
        }
        let to = p.relay.unwrap_or(p.coordinator.addr);
        send_pieces(cx, to, pieces, p.node_clock(cx.mono()), p.pair.as_ref());
        let after = cx.retry_delay(attempt);
        cx.push(Effect::Schedule {
            after,
            timer: SweepTimer(TimerKind::Resend(sweep_id, attempt + 1)),
        });
    }

    /// An ack from `from`. Taken only when it names us and our answer's
    /// nonce and comes from the coordinator's address, or from our relay's
    /// while the answer goes there; an ack for a sweep we no longer
    /// remember is ignored. The coordinator's ack of the last unacked
    /// piece settles the sweep, unless the answer named our certificate by
    /// digest (then it is held to its deadline, as the coordinator may
    /// still ask for the certificate).
    pub(crate) fn ack(
        &mut self,
        cx: &mut Ctx,
        from: SocketAddr,
        sweep_id: u64,
        node: &str,
        nonce: u64,
        index: u16,
    ) -> AckVerdict {
        if let Some(s) = self.settled.get(&sweep_id) {
            // A late copy of the coordinator's ack, or a forged one.
            return if node == cx.me.name && from == s.coordinator && nonce == s.nonce {
                AckVerdict::Taken
            } else {
                AckVerdict::Forged
            };
        }
        let Some(p) = self.sweeps.get_mut(&sweep_id) else {
            return AckVerdict::Ignored;
        };
        let by_relay = p.relay == Some(from) && from != p.coordinator.addr;
        if node != cx.me.name
            || (from != p.coordinator.addr && !by_relay)
            || !matches!(p.phase, Phase::Answering(_) | Phase::Relayed(_))
            || nonce != p.nonce
        {
            return AckVerdict::Forged;
        }
        if std::mem::take(&mut p.tell_on_ack) {
            if let Some(trust) = cx.trust.as_deref_mut() {
                trust.told(&p.coordinator.name, p.epoch);
            }
        }
        if by_relay {
            if let Phase::Answering(pieces) = &mut p.phase {
                if let [Some(piece)] = pieces.as_mut_slice() {
                    p.phase = Phase::Relayed(piece.clone());
                }
            }
            return AckVerdict::Taken;
        }
        if let Phase::Answering(pieces) = &mut p.phase {
            if let Some(slot) = pieces.get_mut(usize::from(index)) {
                *slot = None;
            }
            // The whole answer is in the coordinator's hands: keep only
            // the record. Not while the answer named our certificate by
            // digest (`whole` kept): the coordinator acks pieces on
            // receipt, before it checks the proof, and one that lacks the
            // certificate asks again and needs the whole copy.
            if pieces.iter().all(Option::is_none) && p.whole.is_none() {
                if let Some(p) = self.sweeps.remove(&sweep_id) {
                    self.settled.insert(sweep_id, Settled::of(p));
                }
            }
        }
        AckVerdict::Taken
    }

    pub(crate) fn forget(&mut self, sweep_id: u64) {
        self.sweeps.remove(&sweep_id);
        self.settled.remove(&sweep_id);
    }

    /// What the participant keeps for `sweep_id`, in bytes, about: held
    /// (everything but the answer's pieces, the pieces) or settled.
    #[cfg(test)]
    pub(crate) fn footprint(&self, sweep_id: u64) -> Option<Footprint> {
        if let Some(p) = self.sweeps.get(&sweep_id) {
            let (kept, pieces) = footprint::participation(p);
            return Some(Footprint::Held { kept, pieces });
        }
        self.settled
            .get(&sweep_id)
            .map(|s| Footprint::Settled(footprint::settled(s)))
    }
}

/// What a participant keeps for one sweep, in bytes.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Footprint {
    /// Held: what stays once the pieces are acked (before this record
    /// existed, what an answered sweep kept until forgotten), and the
    /// answer's pieces.
    Held {
        kept: usize,
        pieces: usize,
    },
    Settled(usize),
}

impl Participation {
    /// Our wall clock at monotonic time `now`, unix milliseconds: the clock
    /// when the request arrived plus the time since, so the arrival and
    /// the send times of one answer stay on one timeline even if the wall
    /// clock is stepped in between.
    fn node_clock(&self, now: Duration) -> u64 {
        self.received_unix_ms
            .saturating_add(now.saturating_sub(self.received_at).as_millis() as u64)
    }

    /// A request for a sweep we hold. A direct copy from its coordinator
    /// at backstop time ([`backstop_time`]) is the backstop: it has not
    /// got our answer, so what is unacked goes to it again, directly.
    fn asked_again(&mut self, cx: &mut Ctx, req: &SweepRequest, from: Option<SocketAddr>) {
        if from != Some(self.coordinator.addr) || !backstop_time(cx, req) {
            return;
        }
        self.relay = None;
        let to = self.coordinator.addr;
        let clock = self.node_clock(cx.mono());
        if let Some(whole) = self.whole.take() {
            // The coordinator asks again although our answer may be in: it
            // did not have our certificate. The whole one goes straight to
            // it now, resent until acked.
            let pieces: Vec<_> = whole.into_iter().map(Some).collect();
            send_pieces(cx, to, &pieces, clock, self.pair.as_ref());
            if !matches!(self.phase, Phase::Answering(_)) {
                self.schedule_first_resend(cx, req.id);
            }
            self.phase = Phase::Answering(pieces);
            self.tell_on_ack = true;
            return;
        }
        let pieces = match &self.phase {
            Phase::Running => return,
            Phase::Answering(pieces) => {
                send_pieces(cx, to, pieces, clock, self.pair.as_ref());
                return;
            }
            // The relay acked but the coordinator never got it: straight
            // to the coordinator, resent until acked.
            Phase::Relayed(piece) => vec![Some(piece.clone())],
        };
        send_pieces(cx, to, &pieces, clock, self.pair.as_ref());
        self.phase = Phase::Answering(pieces);
        self.schedule_first_resend(cx, req.id);
    }

    fn schedule_first_resend(&self, cx: &mut Ctx, sweep_id: u64) {
        cx.push(Effect::Schedule {
            after: cx.settings.retry_initial,
            timer: SweepTimer(TimerKind::Resend(sweep_id, 1)),
        });
    }
}
