//! What a node keeps of a sweep once the coordinator acked its whole
//! answer: a compact record ([`Settled`]: the request's digest, its
//! expiry, the coordinator's address, the answer's nonce, the operator,
//! a state), nothing of the answer, the audit line or the keys. The record
//! lets every later copy of the request be recognised and refused as a
//! duplicate until the sweep is forgotten (its deadline + 1 s; with
//! certificates `SweepTrust` then refuses a replay for the rest of the
//! signing window), and a late ack be told from a forged one.
//!
//! Which ack settles a sweep: the coordinator acks each piece when it has
//! taken it, so once every piece is acked by the coordinator itself the
//! answer is in its hands; nothing this node could resend would change
//! what it does with it. A relay's ack does not settle: the coordinator
//! acks the relay's batch, never the node, so the node keeps its one-piece
//! answer (`Phase::Relayed`) in case the backstop asks for it directly.
//!
//! One thing is given up. An answer that names our certificate by digest
//! is acked on receipt, and its proof is checked after: a coordinator that
//! lost our certificate meanwhile (it reloaded its bundle mid-sweep, or
//! evicted us from a full cache) cannot record it, and its backstop asks
//! again. Before, the node kept a copy with the whole certificate for
//! that; now the answer is gone. The request is counted
//! (`requests_answered_before`) and nothing is sent (the node's checks
//! never run twice for one sweep), so that node is listed `no_answer` in
//! that sweep, with its backstop requests.

use core::net::SocketAddr;
use std::time::Duration;

use super::super::ctx::Ctx;
use super::super::wire::SweepRequest;
use super::Participation;

/// Most settled sweeps a participant remembers at once. When full of
/// records still within their deadline, a new request is refused
/// (`over_capacity`) rather than a record forgotten early, so that a copy
/// of an answered sweep never runs again. 65,536 records are about 8 MiB
/// ([`Settled`] and its map slot, about 120 bytes, plus the operator's
/// name), and take more than 100 sweeps a second for the longest deadline
/// (10 minutes) to fill.
pub(crate) const MAX_SETTLED: usize = 65_536;

/// A sweep whose answer the coordinator acked.
#[derive(Debug)]
pub(super) struct Settled {
    /// The request's bytes, digested: a copy with other bytes under this
    /// id is not vouched for.
    pub(super) digest: [u8; 16],
    /// Monotonic time at which the request expires (the record is
    /// forgotten 1 s later, with the sweep).
    pub(super) expires_at: Duration,
    /// Where acks come from (a late duplicate is taken, any other
    /// refused), and the only sender whose copy can be the backstop.
    pub(super) coordinator: SocketAddr,
    /// Echoed by every ack of our answer.
    pub(super) nonce: u64,
    /// Who asked (with certificates, as its certificate proves it).
    pub(super) operator: Option<Box<str>>,
    pub(super) state: SettledState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SettledState {
    /// The coordinator acked every piece.
    Acked,
    /// ... and then asked again, directly (counted once).
    AskedAgain,
}

impl Settled {
    /// The compact record of `p`, whose answer was just acked.
    pub(super) fn of(p: Participation) -> Settled {
        Settled {
            digest: p.digest,
            expires_at: p.expires_at,
            coordinator: p.coordinator.addr,
            nonce: p.nonce,
            operator: p.audit.operator.map(String::into_boxed_str),
            state: SettledState::Acked,
        }
    }

    /// A copy of the request. One sent directly by the coordinator at
    /// backstop time says it did not record our answer although it acked
    /// it (see the module doc): counted once, and nothing is sent.
    pub(super) fn asked_again(
        &mut self,
        cx: &mut Ctx,
        req: &SweepRequest,
        from: Option<SocketAddr>,
    ) {
        if from != Some(self.coordinator)
            || !super::backstop_time(cx, req)
            || self.state == SettledState::AskedAgain
        {
            return;
        }
        self.state = SettledState::AskedAgain;
        cx.counters.requests_answered_before += 1;
        tracing::warn!(
            sweep = %format!("{:016x}", req.id),
            coordinator = %self.coordinator,
            operator = self.operator.as_deref().unwrap_or("-"),
            "the coordinator asks again for an answer it acked and this node forgot; nothing sent"
        );
    }
}

/// What a participant keeps per sweep, in bytes, about: the map slot and
/// what it owns on the heap. For tests that measure it.
#[cfg(test)]
pub(super) mod footprint {
    use std::mem::size_of;

    use patrol_model::Selector;

    use super::super::super::wire::AnswerChunk;
    use super::super::super::AuditEntry;
    use super::super::{Participation, Phase};
    use super::Settled;

    /// A hash map's slot for `(u64, V)`: the pair and one control byte.
    fn slot<V>() -> usize {
        size_of::<(u64, V)>() + 1
    }

    fn chunk(c: &AnswerChunk) -> usize {
        c.node.capacity() + c.payload.capacity()
    }

    fn strings(v: &[String]) -> usize {
        v.iter().map(String::capacity).sum()
    }

    fn selector(s: &Selector) -> usize {
        s.checks.capacity() * size_of::<String>()
            + strings(&s.checks)
            + s.labels.capacity() * size_of::<String>()
            + strings(&s.labels)
            + s.profile.as_ref().map_or(0, String::capacity)
    }

    fn audit(a: &AuditEntry) -> usize {
        let action = match &a.action {
            super::super::super::AuditAction::Ran { .. } => 0,
            super::super::super::AuditAction::Refused(s)
            | super::super::super::AuditAction::Skipped(s) => s.capacity(),
        };
        // A B-tree entry: its key and value, and about as much again of
        // node overhead.
        let filter: usize = a
            .node_filter
            .iter()
            .map(|(k, v)| 2 * size_of::<(String, String)>() + k.capacity() + v.capacity())
            .sum();
        a.operator.as_ref().map_or(0, String::capacity)
            + a.coordinator.capacity()
            + selector(&a.selector)
            + filter
            + action
    }

    /// A participation: (everything but its answer, its answer's pieces).
    pub(in super::super) fn participation(p: &Participation) -> (usize, usize) {
        let whole = p.whole.as_ref().map_or(0, |w| {
            w.capacity() * size_of::<AnswerChunk>() + w.iter().map(chunk).sum::<usize>()
        });
        let kept = slot::<Participation>() + p.coordinator.name.capacity() + audit(&p.audit);
        let pieces = match &p.phase {
            Phase::Running => 0,
            Phase::Answering(v) => {
                v.capacity() * size_of::<Option<AnswerChunk>>()
                    + v.iter().flatten().map(chunk).sum::<usize>()
            }
            Phase::Relayed(c) => chunk(c),
        };
        (kept + whole, pieces)
    }

    pub(in super::super) fn settled(s: &Settled) -> usize {
        slot::<Settled>() + s.operator.as_ref().map_or(0, |o| o.len())
    }
}
