//! The participant side of a sweep: take a request once, run the checks,
//! answer the coordinator in acked pieces, resend with backoff until every
//! piece is acked or the request expires, and refuse replays.

use std::collections::HashMap;
use std::time::Duration;

use patrol_model::selector::tags_match;
use patrol_model::{CheckOutcome, Observed, Severity, Status};

use super::wire::{AnswerBody, AnswerChunk, PeerAddr, SweepMessage, SweepRequest};
use super::{Effect, Peer, Prng, SweepSettings, SweepTimer, TimerKind};

/// Check id of the single `error` outcome a busy node answers with.
pub const BUSY_CHECK_ID: &str = "patrol.busy";
/// Check id of the single `error` outcome sent when an answer is too large.
pub const TOO_LARGE_CHECK_ID: &str = "patrol.answer_too_large";

/// How long after expiry a sweep id is still remembered (clock drift between
/// the monotonic and wall clocks).
const FORGET_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(crate) struct Participant {
    sweeps: HashMap<u64, Participation>,
}

#[derive(Debug)]
struct Participation {
    coordinator: PeerAddr,
    received_unix_ms: u64,
    received_at: Duration,
    /// Monotonic time at which the request expires.
    expires_at: Duration,
    spread: Duration,
    phase: Phase,
}

#[derive(Debug)]
enum Phase {
    /// The shell is running our checks.
    Running,
    /// The answer is built; `None` marks a piece the coordinator acked.
    Answering(Vec<Option<AnswerChunk>>),
    /// Every piece acked.
    Done,
}

impl Participant {
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
        direct: bool,
        out: &mut Vec<Effect>,
    ) {
        if let Some(p) = self.sweeps.get_mut(&req.id) {
            // Known sweep. A direct request is the coordinator's backstop:
            // it has not got our answer, so resend what is unacked now.
            if direct {
                if let Phase::Answering(pieces) = &p.phase {
                    send_pieces(&p.coordinator, pieces, out);
                }
            }
            return;
        }
        let expires = req.expires_at_unix_ms();
        if expires <= unix_ms || Duration::from_millis(req.deadline_ms) > settings.max_deadline {
            return;
        }
        if !tags_match(&req.node_filter, &me.tags) {
            return;
        }
        let remaining = Duration::from_millis(expires - unix_ms);
        let busy = self.running() >= settings.max_concurrent;
        let mut p = Participation {
            coordinator: req.coordinator.clone(),
            received_unix_ms: unix_ms,
            received_at: now,
            expires_at: now + remaining,
            spread: Duration::from_millis(u64::from(req.answer_spread_ms)),
            phase: Phase::Running,
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
            p.answer(me, settings, rng, req.id, now, vec![outcome], out);
        } else {
            out.push(Effect::RunChecks {
                sweep_id: req.id,
                selector: req.selector,
                budget: settings.check_budget(remaining, p.spread),
            });
        }
        self.sweeps.insert(req.id, p);
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
        out: &mut Vec<Effect>,
    ) {
        let Some(p) = self.sweeps.get_mut(&sweep_id) else {
            return;
        };
        if !matches!(p.phase, Phase::Running) || now >= p.expires_at {
            return;
        }
        p.answer(me, settings, rng, sweep_id, now, outcomes, out);
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
        let Some(p) = self.sweeps.get(&sweep_id) else {
            return;
        };
        let Phase::Answering(pieces) = &p.phase else {
            return;
        };
        if now >= p.expires_at {
            return;
        }
        send_pieces(&p.coordinator, pieces, out);
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

    pub(crate) fn ack(&mut self, sweep_id: u64, index: u16) {
        let Some(p) = self.sweeps.get_mut(&sweep_id) else {
            return;
        };
        if let Phase::Answering(pieces) = &mut p.phase {
            if let Some(slot) = pieces.get_mut(usize::from(index)) {
                *slot = None;
            }
            if pieces.iter().all(Option::is_none) {
                p.phase = Phase::Done;
            }
        }
    }

    pub(crate) fn forget(&mut self, sweep_id: u64) {
        self.sweeps.remove(&sweep_id);
    }
}

impl Participation {
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &mut self,
        me: &Peer,
        settings: &SweepSettings,
        rng: &mut Prng,
        sweep_id: u64,
        now: Duration,
        outcomes: Vec<CheckOutcome>,
        out: &mut Vec<Effect>,
    ) {
        let mut body = AnswerBody {
            tags: me.tags.clone(),
            received_unix_ms: self.received_unix_ms,
            checks_ms: now.saturating_sub(self.received_at).as_millis() as u64,
            outcomes,
        };
        let mut bytes = body.encode();
        let payload = settings.chunk_payload(me.name.len());
        if bytes.len() > settings.max_answer_bytes
            || bytes.len().div_ceil(payload) > usize::from(u16::MAX)
        {
            let size = bytes.len();
            body.outcomes = vec![patrol_error(
                TOO_LARGE_CHECK_ID,
                format!("an answer of at most {} bytes", settings.max_answer_bytes),
                format!("answer of {size} bytes is too large to send; checks ran but results were dropped"),
            )];
            bytes = body.encode();
        }
        let pieces: Vec<&[u8]> = if bytes.is_empty() {
            vec![&[][..]]
        } else {
            bytes.chunks(payload).collect()
        };
        let count = pieces.len() as u16;
        let chunks = pieces
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                Some(AnswerChunk {
                    sweep_id,
                    node: me.name.clone(),
                    index: i as u16,
                    count,
                    payload: part.to_vec(),
                })
            })
            .collect();
        self.phase = Phase::Answering(chunks);
        out.push(Effect::Schedule {
            after: rng.below(self.spread),
            timer: SweepTimer(TimerKind::SendAnswer(sweep_id)),
        });
    }
}

fn send_pieces(coordinator: &PeerAddr, pieces: &[Option<AnswerChunk>], out: &mut Vec<Effect>) {
    for piece in pieces.iter().flatten() {
        out.push(Effect::Send {
            to: coordinator.addr,
            msg: SweepMessage::Answer(piece.clone()),
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
