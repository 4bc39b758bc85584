//! Admission: whether a participant takes a new request, as
//! `Result<Admitted, Refusal>`, and what a refusal does (an audit line; to
//! a coordinator that asked directly, one `error` answer saying why).
//!
//! The order of the checks is part of the protocol:
//! 1. expired, or a deadline over `max_deadline`: ignored, nothing said;
//! 2. with certificates, the operator's signature and scope, the
//!    coordinator's certificate and the signing time (nothing, not even a
//!    refusal answer, goes out before these check, so a forged request
//!    cannot make a node a reflector);
//! 3. the node filter against this node's tags;
//! 4. a request issued too far in the future by this node's clock;
//! 5. with certificates, the operator already holds its share of them:
//!    the smaller of its scope's `share` and this node's
//!    `operator_share`;
//! 6. `max_participations` sweeps already held (checks running, or an
//!    answer not acked yet: a settled sweep no longer counts), or
//!    `MAX_SETTLED` settled ones remembered.

use core::net::SocketAddr;
use std::collections::HashMap;
use std::time::Duration;

use patrol_model::CheckOutcome;

use super::super::auth::AuthRefusal;
use super::super::ctx::Ctx;
use super::super::outcomes;
use super::super::wire::{AnswerBody, SweepMessage, SweepRequest};
use super::super::{AuditAction, AuditEntry, Effect};
use super::answer::stamped;
use super::{chunks, Participant, Proof, MAX_SETTLED};
use crate::trust::PairKey;

/// A request this node takes part in.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// The audit line written once the checks ran (or were refused as
    /// busy).
    pub(super) audit: AuditEntry,
    /// With certificates: the key our answer is proved with.
    pub(super) pair: Option<PairKey>,
    /// With certificates: the coordinator has our certificate.
    pub(super) cert_known: bool,
    /// Time left before the request expires.
    pub(super) remaining: Duration,
}

/// Why a participant did not take a request.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Expired, or a deadline over `max_deadline`; nothing is said.
    Stale,
    /// A copy of a request whose authorization was refused before.
    RefusedBefore,
    /// With certificates: no valid operator signature within its scope, or
    /// a coordinator certificate that does not check.
    Unauthorized {
        audit: Box<AuditEntry>,
        reason: String,
    },
    /// The node filter does not match our tags.
    NotForUs { audit: Box<AuditEntry> },
    /// Issued `ahead_ms` in the future by our clock.
    ClockSkew {
        audit: Box<AuditEntry>,
        pair: Option<PairKey>,
        ahead_ms: u64,
    },
    /// The request's operator already holds its `share` of sweeps here
    /// (the smaller of its scope's and `operator_share`).
    OverQuota {
        audit: Box<AuditEntry>,
        pair: Option<PairKey>,
        operator: String,
        share: usize,
    },
    /// `max` sweeps already remembered: `max_participations` held, or
    /// `MAX_SETTLED` settled.
    OverCapacity {
        audit: Box<AuditEntry>,
        pair: Option<PairKey>,
        max: usize,
    },
}

impl Participant {
    /// Whether to take `req`, a request for a sweep this node does not
    /// know yet.
    pub(super) fn admit(&self, cx: &mut Ctx, req: &SweepRequest) -> Result<Admitted, Refusal> {
        let settings = cx.settings;
        let unix_ms = cx.unix_ms();
        let expires = req.expires_at_unix_ms();
        if expires <= unix_ms || Duration::from_millis(req.deadline_ms) > settings.max_deadline {
            return Err(Refusal::Stale);
        }
        let mut audit = Box::new(AuditEntry {
            sweep_id: req.id,
            operator: req
                .auth
                .as_ref()
                .map(|a| a.authorization.operator.body.name.clone()),
            coordinator: req.coordinator.name.clone(),
            selector: req.selector.clone(),
            node_filter: req.node_filter.clone(),
            action: AuditAction::Ran { checks: 0 },
        });
        let mut pair = None;
        let mut cert_known = false;
        let mut scope_share = None;
        if let Some(trust) = cx.trust.as_deref_mut() {
            match trust.admit(req, unix_ms, settings) {
                Ok(authorized) => {
                    audit.operator = Some(authorized.operator);
                    pair = Some(authorized.pair);
                    cert_known = authorized.told;
                    scope_share = authorized.share;
                }
                Err(AuthRefusal::RefusedBefore) => return Err(Refusal::RefusedBefore),
                Err(AuthRefusal::Refused(reason)) => {
                    return Err(Refusal::Unauthorized { audit, reason })
                }
            }
        }
        if !cx.me.tags.matches(&req.node_filter) {
            return Err(Refusal::NotForUs { audit });
        }
        let ahead_ms = req.issued_at_unix_ms.saturating_sub(unix_ms);
        if ahead_ms > settings.clock_skew_tolerance.as_millis() as u64 {
            return Err(Refusal::ClockSkew {
                audit,
                pair,
                ahead_ms,
            });
        }
        if let Some(operator) = audit.operator.clone().filter(|_| pair.is_some()) {
            // A scope only narrows: its share, never more than the node's.
            let share = scope_share.map_or(settings.operator_share, |s| {
                usize::from(s).min(settings.operator_share)
            });
            if self.held_by(&operator) >= share {
                return Err(Refusal::OverQuota {
                    audit,
                    pair,
                    operator,
                    share,
                });
            }
        }
        if self.len() >= settings.max_participations {
            let max = settings.max_participations;
            return Err(Refusal::OverCapacity { audit, pair, max });
        }
        if self.settled() >= MAX_SETTLED {
            let max = MAX_SETTLED;
            return Err(Refusal::OverCapacity { audit, pair, max });
        }
        Ok(Admitted {
            audit: *audit,
            pair,
            cert_known,
            remaining: Duration::from_millis(expires - unix_ms),
        })
    }
}

/// How often a refused authorization from one sender is audited: the
/// first refusal in each period is written (with the number suppressed
/// since the last line), the rest only counted.
pub(crate) const REFUSAL_AUDIT_EVERY_MS: u64 = 60_000;

/// Senders whose refusals are budgeted at once; the others share one
/// budget.
pub(crate) const MAX_BUDGETED_SENDERS: usize = 1024;

/// Audit lines of refused authorizations, per sender: at most one per
/// [`REFUSAL_AUDIT_EVERY_MS`], so a flood of unsigned or badly signed
/// requests costs one line per sender and period, never a line each.
#[derive(Debug, Default)]
pub(crate) struct RefusalBudget {
    /// Sender (None: the shared budget) -> (start of its period, refusals
    /// suppressed since its last line).
    senders: HashMap<Option<SocketAddr>, (u64, u64)>,
}

impl RefusalBudget {
    /// Whether a refusal from `sender` at `now_ms` is written: `Some(n)`
    /// with the number suppressed before it, or None (suppressed now).
    pub(crate) fn allow(&mut self, sender: Option<SocketAddr>, now_ms: u64) -> Option<u64> {
        let mut key = sender;
        if !self.senders.contains_key(&key) && self.senders.len() >= MAX_BUDGETED_SENDERS {
            self.senders.retain(|_, (start, n)| {
                now_ms < start.saturating_add(REFUSAL_AUDIT_EVERY_MS) || *n > 0
            });
            if self.senders.len() >= MAX_BUDGETED_SENDERS {
                key = None;
            }
        }
        match self.senders.get_mut(&key) {
            Some((start, n)) if now_ms < start.saturating_add(REFUSAL_AUDIT_EVERY_MS) => {
                *n += 1;
                None
            }
            Some((start, n)) => {
                let before = std::mem::take(n);
                *start = now_ms;
                Some(before)
            }
            None => {
                self.senders.insert(key, (now_ms, 0));
                Some(0)
            }
        }
    }
}

impl Refusal {
    /// Whether the request is still passed on: this node checked it and
    /// only its own circumstances refused it (its tags, its capacity).
    pub(super) fn passes_on(&self) -> bool {
        matches!(
            self,
            Refusal::NotForUs { .. } | Refusal::OverQuota { .. } | Refusal::OverCapacity { .. }
        )
    }

    /// Count and audit the refusal and, where the coordinator asked us directly
    /// from its own address (its direct spread or backstop), tell it why.
    /// Never to an address a request merely names, so that no forged
    /// request can aim our answers at someone else. Nothing about the
    /// sweep is remembered (a forged future-dated request must not live
    /// for its deadline window). A refused authorization is audited under
    /// `sender`'s budget. A `repeat` (another copy of a request refused
    /// here before) is only answered, not counted or audited again.
    pub(super) fn answer(
        self,
        cx: &mut Ctx,
        req: &SweepRequest,
        from: Option<SocketAddr>,
        sender: Option<SocketAddr>,
        budget: &mut RefusalBudget,
        repeat: bool,
    ) {
        let asked_by_coordinator = from == Some(req.coordinator.addr);
        let settings = cx.settings;
        if repeat {
            if asked_by_coordinator {
                self.report_again(cx, req);
            }
            return;
        }
        match self {
            Refusal::Stale | Refusal::RefusedBefore => {}
            Refusal::Unauthorized { audit, reason } => {
                cx.counters.requests_unauthorized += 1;
                match budget.allow(sender, cx.unix_ms()) {
                    Some(0) => audit_line(cx, *audit, AuditAction::Refused(reason)),
                    Some(n) => {
                        let from =
                            sender.map_or("senders over the budget".into(), |s| s.to_string());
                        let why = format!(
                            "{reason} (and {n} more refused from {from} since the last line)"
                        );
                        audit_line(cx, *audit, AuditAction::Refused(why));
                    }
                    None => cx.counters.refusals_unaudited += 1,
                }
            }
            Refusal::NotForUs { audit } => {
                let why = "the node filter does not match this node's tags";
                audit_line(cx, *audit, AuditAction::Skipped(why.into()));
            }
            Refusal::ClockSkew {
                audit,
                pair,
                ahead_ms,
            } => {
                cx.counters.requests_clock_skew += 1;
                if asked_by_coordinator {
                    let tolerance_ms = settings.clock_skew_tolerance.as_millis();
                    let outcome = outcomes::issued_in_the_future(tolerance_ms, ahead_ms);
                    report(cx, req, outcome, pair.as_ref());
                }
                let why = format!("issued {ahead_ms} ms in the future by this node's clock");
                audit_line(cx, *audit, AuditAction::Refused(why));
            }
            Refusal::OverQuota {
                audit,
                pair,
                operator,
                share,
            } => {
                cx.counters.requests_over_quota += 1;
                let why =
                    format!("operator `{operator}` already holds {share} sweeps here, its share");
                audit_line(cx, *audit, AuditAction::Refused(why));
                if asked_by_coordinator {
                    report(
                        cx,
                        req,
                        outcomes::over_quota(&operator, share),
                        pair.as_ref(),
                    );
                }
            }
            Refusal::OverCapacity { audit, pair, max } => {
                cx.counters.requests_over_capacity += 1;
                let why = format!("{max} sweeps already remembered");
                audit_line(cx, *audit, AuditAction::Refused(why));
                if asked_by_coordinator {
                    report(cx, req, outcomes::over_capacity(max), pair.as_ref());
                }
            }
        }
    }
}

impl Refusal {
    /// To a coordinator asking again for a request refused here: the same
    /// answer, nothing counted or audited.
    fn report_again(self, cx: &mut Ctx, req: &SweepRequest) {
        match self {
            Refusal::OverQuota {
                pair,
                operator,
                share,
                ..
            } => {
                let outcome = outcomes::over_quota(&operator, share);
                report(cx, req, outcome, pair.as_ref());
            }
            Refusal::OverCapacity { pair, max, .. } => {
                let outcome = outcomes::over_capacity(max);
                report(cx, req, outcome, pair.as_ref());
            }
            _ => {}
        }
    }
}

fn audit_line(cx: &mut Ctx, audit: AuditEntry, action: AuditAction) {
    cx.push(Effect::Audit(AuditEntry { action, ..audit }));
}

/// A refusal as an answer of one `error` outcome, sent once and not
/// retried (nothing about the sweep is remembered); proved, with
/// certificates, with our whole certificate.
fn report(cx: &mut Ctx, req: &SweepRequest, outcome: CheckOutcome, pair: Option<&PairKey>) {
    let unix_ms = cx.unix_ms();
    let body = AnswerBody::compact(cx.me.tags.to_map(), unix_ms, 0, vec![outcome]);
    let nonce = cx.rng.next_u64();
    let proof = cx.trust.as_deref().zip(pair).map(|(trust, pair)| Proof {
        trust,
        pair,
        whole: true,
    });
    let pieces = chunks(cx.me, cx.settings, req.id, nonce, body, proof);
    for chunk in pieces {
        cx.push(Effect::Send {
            to: req.coordinator.addr,
            msg: SweepMessage::Answer(stamped(chunk, unix_ms, pair)),
        });
    }
}
