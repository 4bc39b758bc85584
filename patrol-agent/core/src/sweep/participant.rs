//! The participant side of a sweep: take a request once, run the checks,
//! answer the coordinator in acked pieces, resend with backoff until every
//! piece is acked or the request expires, and refuse replays.

use core::net::SocketAddr;
use std::collections::HashMap;
use std::time::Duration;

use patrol_model::selector::tags_match;
use patrol_model::{CheckOutcome, Observed, Severity, Status};

use super::auth::{Refusal, SweepTrust};
use super::wire::{
    relay_index, AnswerBody, AnswerChunk, AnswerPayload, PeerAddr, SweepMessage, SweepRequest,
};
use super::{AuditAction, AuditEntry, Effect, Peer, Prng, SweepSettings, SweepTimer, TimerKind};
use crate::trust::PairKey;

/// Check id of the single `error` outcome a busy node answers with.
pub const BUSY_CHECK_ID: &str = "patrol.busy";
/// Check id of the single `error` outcome sent when an answer is too large.
pub const TOO_LARGE_CHECK_ID: &str = "patrol.answer_too_large";
/// Check id of the single `error` outcome a node sends (once, unretried)
/// for a request issued too far in the future by its clock.
pub const CLOCK_SKEW_CHECK_ID: &str = "patrol.clock_skew";
/// Check id of the single `error` outcome a node sends (once, unretried)
/// for a request that found `max_participations` sweeps remembered.
pub const OVER_CAPACITY_CHECK_ID: &str = "patrol.over_capacity";

/// What a relay's batch adds around an answer alone in it, at most: the
/// batch header, the node's times and hold time, less the piece header.
const RELAY_OVERHEAD: usize = 64;

/// How long after expiry a sweep id is still remembered (clock drift between
/// the monotonic and wall clocks).
const FORGET_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(crate) struct Participant {
    sweeps: HashMap<u64, Participation>,
}

/// What became of a request or an ack, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Taken,
    /// Known sweep, expired, over `max_deadline`, or not for our tags.
    Ignored,
    /// Issued too far in the future: refused, reported once.
    ClockSkew,
    /// `max_participations` sweeps already remembered.
    Full,
    /// An ack not for us, not for this answer, or not from the coordinator.
    Forged,
    /// With certificates: no valid operator signature within its scope, or
    /// a coordinator certificate that does not check (counted once per
    /// sweep id).
    Unauthorized,
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
}

#[derive(Debug)]
enum Phase {
    /// The shell is running our checks.
    Running,
    /// The answer is built; `None` marks a piece the coordinator acked.
    Answering(Vec<Option<AnswerChunk>>),
    /// Our relay acked our (one-piece) answer. Kept: a backstop request
    /// from the coordinator means the relay never delivered it, and the
    /// answer then goes to the coordinator directly.
    Relayed(AnswerChunk),
    /// Every piece acked.
    Done,
}

impl Participant {
    /// Sweeps remembered.
    pub(crate) fn len(&self) -> usize {
        self.sweeps.len()
    }

    pub(crate) fn running(&self) -> usize {
        self.sweeps
            .values()
            .filter(|p| matches!(p.phase, Phase::Running))
            .count()
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn request(
        &mut self,
        me: &Peer,
        settings: &SweepSettings,
        rng: &mut Prng,
        now: Duration,
        unix_ms: u64,
        req: SweepRequest,
        from: Option<SocketAddr>,
        mut trust: Option<&mut SweepTrust>,
        out: &mut Vec<Effect>,
    ) -> Verdict {
        // A refusal is reported only to a coordinator that asked us
        // directly from its own address (its direct spread or backstop),
        // never to an address a request merely names, so that no forged
        // request can aim our answers at someone else.
        let asked_by_coordinator = from == Some(req.coordinator.addr);
        if let Some(p) = self.sweeps.get_mut(&req.id) {
            // Known sweep. A direct request from its coordinator is the
            // backstop: it has not got our answer, so resend what is
            // unacked now.
            // The coordinator's first direct copies (its direct spread in
            // a small mesh, its copy to each relay) can arrive after a
            // gossip copy and after we answered: only a copy sent after
            // the spread window and half the backstop's delay can be the
            // backstop (judged on our clock, so a clock far off costs at
            // most a needless resend or one backstop round).
            let since_issue = unix_ms.saturating_sub(req.issued_at_unix_ms);
            let backstop_from = u64::from(req.answer_spread_ms)
                + settings.backstop_min_delay.as_millis() as u64 / 2;
            if from == Some(p.coordinator.addr) && since_issue >= backstop_from {
                p.relay = None;
                if let Some(whole) = p.whole.take() {
                    // The coordinator asks again although our answer may
                    // be in: it did not have our certificate. The whole
                    // one goes straight to it now, resent until acked.
                    let pieces: Vec<_> = whole.into_iter().map(Some).collect();
                    send_pieces(p.coordinator.addr, &pieces, p.node_clock(now), out);
                    if !matches!(p.phase, Phase::Answering(_)) {
                        out.push(Effect::Schedule {
                            after: settings.retry_initial,
                            timer: SweepTimer(TimerKind::Resend(req.id, 1)),
                        });
                    }
                    p.phase = Phase::Answering(pieces);
                    p.tell_on_ack = true;
                    return Verdict::Ignored;
                }
                match std::mem::replace(&mut p.phase, Phase::Done) {
                    Phase::Answering(pieces) => {
                        send_pieces(p.coordinator.addr, &pieces, p.node_clock(now), out);
                        p.phase = Phase::Answering(pieces);
                    }
                    Phase::Relayed(piece) => {
                        // The relay acked but the coordinator never got it:
                        // straight to the coordinator, resent until acked.
                        let pieces = vec![Some(piece)];
                        send_pieces(p.coordinator.addr, &pieces, p.node_clock(now), out);
                        p.phase = Phase::Answering(pieces);
                        out.push(Effect::Schedule {
                            after: settings.retry_initial,
                            timer: SweepTimer(TimerKind::Resend(req.id, 1)),
                        });
                    }
                    other => p.phase = other,
                }
            }
            return Verdict::Ignored;
        }
        let expires = req.expires_at_unix_ms();
        if expires <= unix_ms || Duration::from_millis(req.deadline_ms) > settings.max_deadline {
            return Verdict::Ignored;
        }
        let mut audit = AuditEntry {
            sweep_id: req.id,
            operator: req
                .auth
                .as_ref()
                .map(|a| a.authorization.operator.body.name.clone()),
            coordinator: req.coordinator.name.clone(),
            selector: req.selector.clone(),
            node_filter: req.node_filter.clone(),
            action: AuditAction::Ran { checks: 0 },
        };
        // With certificates nothing is done for a request (not even the
        // clock-skew answer, which would make us a reflector) before its
        // operator signature and coordinator certificate check out.
        let mut pair = None;
        let mut cert_known = false;
        if let Some(trust) = trust.as_deref_mut() {
            match trust.admit(&req, unix_ms, settings) {
                Ok(admitted) => {
                    audit.operator = Some(admitted.operator);
                    pair = Some(admitted.pair);
                    cert_known = admitted.told;
                }
                Err(Refusal::Again) => return Verdict::Ignored,
                Err(Refusal::New(reason)) => {
                    out.push(Effect::Audit(AuditEntry {
                        action: AuditAction::Refused(reason),
                        ..audit
                    }));
                    return Verdict::Unauthorized;
                }
            }
        }
        if !tags_match(&req.node_filter, &me.tags) {
            out.push(Effect::Audit(AuditEntry {
                action: AuditAction::Skipped(
                    "the node filter does not match this node's tags".into(),
                ),
                ..audit
            }));
            return Verdict::Ignored;
        }
        let ahead = req.issued_at_unix_ms.saturating_sub(unix_ms);
        if ahead > settings.clock_skew_tolerance.as_millis() as u64 {
            // Nothing is remembered (a forged future-dated request must not
            // live for its deadline window); a coordinator that asked
            // directly hears why, once per asking.
            if asked_by_coordinator {
                let outcome = patrol_error(
                    CLOCK_SKEW_CHECK_ID,
                    format!(
                        "clocks within {} ms of the coordinator's",
                        settings.clock_skew_tolerance.as_millis()
                    ),
                    format!(
                        "request refused: issued {ahead} ms in the future by this node's clock; this node's clock is behind the coordinator's (or the request is forged)"
                    ),
                );
                let proof = trust
                    .as_deref()
                    .zip(pair.as_ref())
                    .map(|(t, k)| (t, k, true));
                report(me, settings, rng, &req, unix_ms, outcome, proof, out);
            }
            out.push(Effect::Audit(AuditEntry {
                action: AuditAction::Refused(format!(
                    "issued {ahead} ms in the future by this node's clock"
                )),
                ..audit
            }));
            return Verdict::ClockSkew;
        }
        if self.sweeps.len() >= settings.max_participations {
            out.push(Effect::Audit(AuditEntry {
                action: AuditAction::Refused(format!(
                    "{} sweeps already remembered",
                    settings.max_participations
                )),
                ..audit
            }));
            if asked_by_coordinator {
                let outcome = patrol_error(
                    OVER_CAPACITY_CHECK_ID,
                    format!("at most {} sweeps remembered", settings.max_participations),
                    format!(
                        "request refused: this node already takes part in {} sweeps (the most it remembers); its checks were not run",
                        settings.max_participations
                    ),
                );
                let proof = trust
                    .as_deref()
                    .zip(pair.as_ref())
                    .map(|(t, k)| (t, k, true));
                report(me, settings, rng, &req, unix_ms, outcome, proof, out);
            }
            return Verdict::Full;
        }
        let remaining = Duration::from_millis(expires - unix_ms);
        let busy = self.running() >= settings.max_concurrent;
        let relay = (!req.relays.is_empty() && req.coordinator.addr != me.addr)
            .then(|| req.relays[relay_index(req.id, &me.name, req.relays.len())]);
        let mut p = Participation {
            coordinator: req.coordinator.clone(),
            nonce: 0,
            received_unix_ms: unix_ms,
            received_at: now,
            expires_at: now + remaining,
            spread: Duration::from_millis(u64::from(req.answer_spread_ms)),
            phase: Phase::Running,
            pair,
            relay,
            epoch: req.auth.as_ref().map_or(0, |a| a.peer_epoch),
            cert_known,
            tell_on_ack: false,
            whole: None,
            audit,
        };
        out.push(Effect::Schedule {
            after: remaining + FORGET_GRACE,
            timer: SweepTimer(TimerKind::Forget(req.id)),
        });
        if busy {
            let outcome = patrol_error(
                BUSY_CHECK_ID,
                format!("at most {} sweeps at once", settings.max_concurrent),
                format!(
                    "node busy: {} sweeps already running, this sweep's checks were not run",
                    settings.max_concurrent
                ),
            );
            p.audit.action = AuditAction::Refused(format!(
                "busy: {} sweeps already running",
                settings.max_concurrent
            ));
            out.push(Effect::Audit(p.audit.clone()));
            p.answer(
                me,
                settings,
                rng,
                trust.as_deref(),
                req.id,
                now,
                vec![outcome],
                out,
            );
        } else {
            out.push(Effect::RunChecks {
                sweep_id: req.id,
                selector: req.selector,
                budget: settings.check_budget(remaining, p.spread),
            });
        }
        self.sweeps.insert(req.id, p);
        Verdict::Taken
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn checks_done(
        &mut self,
        me: &Peer,
        settings: &SweepSettings,
        rng: &mut Prng,
        now: Duration,
        sweep_id: u64,
        outcomes: Vec<CheckOutcome>,
        trust: Option<&SweepTrust>,
        out: &mut Vec<Effect>,
    ) {
        let Some(p) = self.sweeps.get_mut(&sweep_id) else {
            return;
        };
        if !matches!(p.phase, Phase::Running) || now >= p.expires_at {
            return;
        }
        p.audit.action = AuditAction::Ran {
            checks: outcomes.len(),
        };
        out.push(Effect::Audit(p.audit.clone()));
        p.answer(me, settings, rng, trust, sweep_id, now, outcomes, out);
    }

    /// Send the unacked pieces (attempt 0 is the first send) and schedule
    /// the next resend, until acked or expired.
    pub(crate) fn send_answer(
        &mut self,
        settings: &SweepSettings,
        rng: &mut Prng,
        sweep_id: u64,
        attempt: u32,
        now: Duration,
        out: &mut Vec<Effect>,
    ) {
        let Some(p) = self.sweeps.get_mut(&sweep_id) else {
            return;
        };
        let Phase::Answering(pieces) = &p.phase else {
            return;
        };
        if now >= p.expires_at {
            return;
        }
        if attempt >= settings.relay_attempts {
            // The relay did not ack in time (dead, or its queue full):
            // the coordinator directly from now on.
            p.relay = None;
        }
        let to = p.relay.unwrap_or(p.coordinator.addr);
        send_pieces(to, pieces, p.node_clock(now), out);
        let base = settings
            .retry_initial
            .saturating_mul(1u32 << attempt.min(16))
            .min(settings.retry_max);
        // ±25% jitter so that retries from many nodes do not line up.
        let after = base * 3 / 4 + rng.below(base / 2);
        out.push(Effect::Schedule {
            after,
            timer: SweepTimer(TimerKind::Resend(sweep_id, attempt + 1)),
        });
    }

    /// An ack from `from`. Taken only when it names us and our answer's
    /// nonce and comes from the coordinator's address, or from our relay's
    /// while the answer goes there; an ack for a sweep we no longer
    /// remember is ignored.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn ack(
        &mut self,
        me: &Peer,
        from: SocketAddr,
        sweep_id: u64,
        node: &str,
        nonce: u64,
        index: u16,
        trust: Option<&mut SweepTrust>,
    ) -> Verdict {
        let Some(p) = self.sweeps.get_mut(&sweep_id) else {
            return Verdict::Ignored;
        };
        let by_relay = p.relay == Some(from) && from != p.coordinator.addr;
        if node != me.name
            || (from != p.coordinator.addr && !by_relay)
            || !matches!(
                p.phase,
                Phase::Answering(_) | Phase::Relayed(_) | Phase::Done
            )
            || nonce != p.nonce
        {
            return Verdict::Forged;
        }
        if std::mem::take(&mut p.tell_on_ack) {
            if let Some(trust) = trust {
                trust.told(&p.coordinator.name, p.epoch);
            }
        }
        if by_relay {
            if let Phase::Answering(pieces) = &mut p.phase {
                if let [Some(piece)] = pieces.as_mut_slice() {
                    p.phase = Phase::Relayed(piece.clone());
                }
            }
            return Verdict::Taken;
        }
        if let Phase::Answering(pieces) = &mut p.phase {
            if let Some(slot) = pieces.get_mut(usize::from(index)) {
                *slot = None;
            }
            if pieces.iter().all(Option::is_none) {
                p.phase = Phase::Done;
            }
        }
        Verdict::Taken
    }

    pub(crate) fn forget(&mut self, sweep_id: u64) {
        self.sweeps.remove(&sweep_id);
    }
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

    #[allow(clippy::too_many_arguments)]
    fn answer(
        &mut self,
        me: &Peer,
        settings: &SweepSettings,
        rng: &mut Prng,
        trust: Option<&SweepTrust>,
        sweep_id: u64,
        now: Duration,
        outcomes: Vec<CheckOutcome>,
        out: &mut Vec<Effect>,
    ) {
        let body = AnswerBody::compact(
            me.tags.clone(),
            self.received_unix_ms,
            now.saturating_sub(self.received_at).as_millis() as u64,
            outcomes,
        );
        self.nonce = rng.next_u64();
        let proof = trust.zip(self.pair.as_ref());
        if let Some((trust, pair)) = proof.filter(|_| self.cert_known) {
            let whole = Some((trust, pair, true));
            self.whole = Some(chunks(
                me,
                settings,
                sweep_id,
                self.nonce,
                body.clone(),
                whole,
            ));
        }
        self.tell_on_ack = proof.is_some() && !self.cert_known;
        let proof = proof.map(|(t, k)| (t, k, !self.cert_known));
        let chunks: Vec<_> = chunks(me, settings, sweep_id, self.nonce, body, proof)
            .into_iter()
            .map(Some)
            .collect();
        let relayable = match chunks.as_slice() {
            [Some(only)] => {
                only.payload.len() + RELAY_OVERHEAD <= settings.chunk_payload(me.name.len())
            }
            _ => false,
        };
        if !relayable {
            // Relays take answers that fit one datagram, with room for
            // what a relay's batch adds around them.
            self.relay = None;
        }
        self.phase = Phase::Answering(chunks);
        out.push(Effect::Schedule {
            after: rng.below(self.spread),
            timer: SweepTimer(TimerKind::SendAnswer(sweep_id)),
        });
    }
}

/// `body` (with this node's proof, when `proof` gives the trust and the
/// pair key) cut into pieces that each fit a datagram; an answer too large
/// to send becomes one `patrol.answer_too_large` error.
fn chunks(
    me: &Peer,
    settings: &SweepSettings,
    sweep_id: u64,
    nonce: u64,
    mut body: AnswerBody,
    proof: Option<(&SweepTrust, &PairKey, bool)>,
) -> Vec<AnswerChunk> {
    let too_large = |size: usize| {
        AnswerBody::compact(
            body.tags.clone(),
            body.received_unix_ms,
            body.checks_ms,
            vec![patrol_error(
                TOO_LARGE_CHECK_ID,
                format!("an answer of at most {} bytes", settings.max_answer_bytes),
                format!(
                    "answer of {size} bytes is too large to send; checks ran but results were dropped"
                ),
            )],
        )
    };
    let wrap = |body: Vec<u8>| match proof {
        Some((trust, pair, whole)) => trust
            .prove(pair, sweep_id, &me.name, nonce, body, whole)
            .encode(),
        None => AnswerPayload { body, proof: None }.encode(),
    };
    let mut bytes = wrap(body.encode());
    let payload = settings.chunk_payload(me.name.len());
    if bytes.len() > settings.max_answer_bytes
        || bytes.len().div_ceil(payload) > usize::from(u16::MAX)
    {
        body = too_large(bytes.len());
        bytes = wrap(body.encode());
    }
    let pieces: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[][..]]
    } else {
        bytes.chunks(payload).collect()
    };
    let count = pieces.len() as u16;
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, part)| AnswerChunk {
            sweep_id,
            node: me.name.clone(),
            nonce,
            index: i as u16,
            count,
            // Stamped when sent.
            sent_unix_ms: 0,
            payload: part.to_vec(),
        })
        .collect()
}

/// A refusal as an answer of one `error` outcome, sent once and not
/// retried (nothing about the sweep is remembered).
#[allow(clippy::too_many_arguments)]
fn report(
    me: &Peer,
    settings: &SweepSettings,
    rng: &mut Prng,
    req: &SweepRequest,
    unix_ms: u64,
    outcome: CheckOutcome,
    proof: Option<(&SweepTrust, &PairKey, bool)>,
    out: &mut Vec<Effect>,
) {
    let body = AnswerBody::compact(me.tags.clone(), unix_ms, 0, vec![outcome]);
    let nonce = rng.next_u64();
    for mut chunk in chunks(me, settings, req.id, nonce, body, proof) {
        chunk.sent_unix_ms = unix_ms;
        out.push(Effect::Send {
            to: req.coordinator.addr,
            msg: SweepMessage::Answer(chunk),
        });
    }
}

/// Send every unacked piece, each stamped with `sent_unix_ms` (our clock
/// now: a resent piece carries its resend time, not the first send's).
fn send_pieces(
    to: SocketAddr,
    pieces: &[Option<AnswerChunk>],
    sent_unix_ms: u64,
    out: &mut Vec<Effect>,
) {
    for piece in pieces.iter().flatten() {
        out.push(Effect::Send {
            to,
            msg: SweepMessage::Answer(AnswerChunk {
                sent_unix_ms,
                ..piece.clone()
            }),
        });
    }
}

pub(crate) fn patrol_error(id: &str, expected: String, message: String) -> CheckOutcome {
    CheckOutcome {
        id: id.to_string(),
        kind: "patrol".to_string(),
        status: Status::Error,
        severity: Severity::Fail,
        observed: Observed::None,
        expected,
        message,
        duration_us: 0,
        description: "raised by the sweep itself, not by a configured check".to_string(),
        remediation: String::new(),
    }
}
