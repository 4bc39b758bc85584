//! The coordinator's intake: answers coming in and recorded, each node
//! once.
//! - **Direct answers** come in acked pieces, reassembled by (node, nonce)
//!   so that a forged answer in a node's name cannot mix its pieces into
//!   the node's own; what incomplete answers hold is bounded
//!   (`max_partial_bytes`, of which `max_late_partial_bytes` for nodes
//!   outside the expected set).
//! - **Relay batches** carry grouped answers; each is rebuilt from its
//!   group's header and checked against its own node's proof.
//! - **Recording** measures the node's clock offset (PROTOCOL.md, "Clock
//!   offset"): each answer piece carries the node's clock when that copy
//!   left; each arrival is paired with it, and the copy with the shortest
//!   trip is kept, so a resend measures as well as a first send. With the
//!   request's issue time and the node's receive time that gives an
//!   NTP-style offset and bound; a node off by more than
//!   `clock_skew_limit` for certain gets a `patrol.clock_skew` outcome.
//!
//! Every refusal is counted in the context's counters.

use core::net::SocketAddr;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use std::sync::Arc;

use patrol_model::{CheckOutcome, ClockOffset};

use super::super::ctx::Ctx;
use super::super::outcomes;
use super::super::wire::{
    AnswerBody, AnswerChunk, AnswerPayload, BodyParts, CheckResult, RelayBatch, RelayedAnswer,
    SweepMessage,
};
use super::super::{auth::ProofRefusal, Effect};
use super::record::{Recorded, Shape, Times};
use super::{Coordinator, SlotState, Sweep, MAX_NODE_NAME};

/// Most relay group headers a coordinator keeps per sweep (a few per relay
/// in a real fleet: one per distinct set of tags and checks).
const MAX_RELAY_GROUPS: usize = 16_384;

/// What one slot of an incomplete answer costs besides its payload.
const SLOT_BYTES: usize = std::mem::size_of::<Option<Vec<u8>>>();

/// A sweep's answers on their way in.
#[derive(Debug, Default)]
pub(super) struct Intake {
    /// The group headers relays sent, by (relay, group number); bounded by
    /// `MAX_RELAY_GROUPS`.
    relay_groups: HashMap<(SocketAddr, u32), Arc<Shape>>,
    /// Incomplete answers by (node, nonce).
    partial: HashMap<(String, u64), Partial>,
    /// Bytes held in `partial` (payloads and a [`SLOT_BYTES`] slot per
    /// announced piece), bounded by `max_partial_bytes`.
    partial_bytes: usize,
    /// Of those, the bytes of nodes outside the expected set, bounded by
    /// `max_late_partial_bytes`.
    late_partial_bytes: usize,
    /// Room for a relayed body's bytes, reused from one answer to the next.
    body: Vec<u8>,
}

/// An answer whose pieces are still coming in.
#[derive(Debug, Default)]
struct Partial {
    pieces: Vec<Option<Vec<u8>>>,
    /// Of the copies of its pieces that arrived, the one with the shortest
    /// trip: the pair the node's clock offset is measured from.
    trip: Option<Trip>,
}

/// One piece's trip: the node's send time (its clock) and the arrival
/// (ours), unix milliseconds.
#[derive(Debug, Clone, Copy)]
struct Trip {
    sent: u64,
    arrived: u64,
    /// With certificates: the node's tag over `sent`.
    tag: Option<[u8; 16]>,
    /// Came through a relay.
    relayed: bool,
}

impl Trip {
    /// Arrival less departure: the one-way delay plus the clock offset.
    /// The offset is the same for every copy, so the smallest value is the
    /// copy that spent the least time on the way (NTP's minimum-delay
    /// filter).
    fn span(&self) -> i128 {
        i128::from(self.arrived) - i128::from(self.sent)
    }
}

/// What [`Sweep::verify`] made of an answer's proof.
enum Proof {
    /// The node's own answer: record it, measuring the node's clock with
    /// the trip (None: its send time was changed on the way, so no
    /// measurement).
    Taken(Option<Trip>),
    /// The node's own answer, proven by a certificate that has expired:
    /// record this `patrol.cert_expiry` failure in place of its checks.
    Expired(CheckOutcome),
    /// Not recorded (counted): forged, or named by a certificate digest
    /// this coordinator does not have.
    Dropped,
}

/// What [`Sweep::record`] takes from an answer besides its checks.
struct Parts<'a> {
    received_unix_ms: u64,
    checks_ms: u64,
    /// The node's tags (kept for a late joiner).
    tags: TagsOf<'a>,
}

/// An answer's tags, copied only for a late joiner.
enum TagsOf<'a> {
    None,
    Owned(&'a BTreeMap<String, String>),
    /// Borrowed from a direct answer's bytes.
    Borrowed(&'a BTreeMap<&'a str, &'a str>),
}

impl TagsOf<'_> {
    fn to_map(&self) -> BTreeMap<String, String> {
        match self {
            TagsOf::None => BTreeMap::new(),
            TagsOf::Owned(tags) => (*tags).clone(),
            TagsOf::Borrowed(tags) => tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// The ack of `chunk`, to `to` (from a coordinator or a relay).
pub(crate) fn ack(to: SocketAddr, chunk: &AnswerChunk) -> Effect {
    Effect::Send {
        to,
        msg: SweepMessage::Ack {
            sweep_id: chunk.sweep_id,
            node: chunk.node.clone(),
            nonce: chunk.nonce,
            index: chunk.index,
        },
    }
}

/// Bytes an incomplete answer holds: its slots and its payloads.
fn held_by(parts: &[Option<Vec<u8>>]) -> usize {
    parts.len() * SLOT_BYTES + parts.iter().flatten().map(Vec::len).sum::<usize>()
}

impl Coordinator {
    /// An answer piece from `from`. Acked when taken (or taken before);
    /// malformed pieces, pieces over a bound and pieces for an unknown
    /// sweep are refused and counted.
    pub(crate) fn answer_chunk(&mut self, cx: &mut Ctx, from: SocketAddr, mut chunk: AnswerChunk) {
        let id = chunk.sweep_id;
        let Some(sweep) = self.sweeps.get_mut(&id) else {
            if self.recent.contains(&id) {
                cx.push(ack(from, &chunk));
            } else {
                cx.counters.pieces_refused += 1;
            }
            return;
        };
        if let Some((bytes, trip)) = sweep.take_piece(cx, from, &mut chunk) {
            sweep.whole_answer(cx, from, &chunk, &bytes, trip);
            self.complete_if_settled(cx, id);
        }
    }

    /// A relay's batch: every answer in it is rebuilt, checked (with
    /// certificates, against its own node's proof) and recorded like a
    /// direct one; the batch is acked on receipt, from a relay the
    /// request named.
    pub(crate) fn batch(&mut self, cx: &mut Ctx, from: SocketAddr, batch: RelayBatch) {
        let id = batch.sweep_id;
        let batch_ack = Effect::Send {
            to: from,
            msg: SweepMessage::BatchAck {
                sweep_id: id,
                batch: batch.batch,
            },
        };
        let answers: u64 = batch.groups.iter().map(|g| g.nodes.len() as u64).sum();
        let Some(sweep) = self.sweeps.get_mut(&id) else {
            if self.recent.contains(&id) {
                cx.push(batch_ack);
            } else {
                cx.counters.pieces_refused += answers;
            }
            return;
        };
        if !sweep.request.relays.contains(&from) {
            // Only the relays the request named forward answers.
            cx.counters.pieces_refused += answers;
            return;
        }
        // Acked on receipt, before its answers are checked: the relay
        // stops resending at once, whatever the checking costs.
        cx.push(batch_ack);
        // A relay numbers its batches in order: one numbered above all
        // its earlier ones is new, not the resend of a batch whose ack
        // was lost (no sign that answers still wait at the relay).
        let newest = sweep
            .relay_newest
            .get(&from)
            .is_none_or(|&newest| batch.batch > newest);
        if newest {
            sweep.relay_newest.insert(from, batch.batch);
        }
        let taken = sweep.answered + sweep.late.len() as u64;
        sweep.take_batch(cx, from, batch);
        if newest && sweep.answered + sweep.late.len() as u64 > taken {
            sweep.last_batch_at = Some(cx.mono());
        }
        self.complete_if_settled(cx, id);
    }
}

impl Sweep {
    /// Take one piece into its node's incomplete answer (acking it); the
    /// whole answer's bytes, and the trip its clock is measured with, once
    /// its last piece is in. The piece's payload is taken out of `chunk`.
    fn take_piece(
        &mut self,
        cx: &mut Ctx,
        from: SocketAddr,
        chunk: &mut AnswerChunk,
    ) -> Option<(Vec<u8>, Option<Trip>)> {
        let settings = cx.settings;
        let count = usize::from(chunk.count);
        let index = usize::from(chunk.index);
        let payload = settings.chunk_payload(chunk.node.len());
        let max_pieces = settings.max_answer_bytes / payload.max(1) + 1;
        if count == 0
            || index >= count
            || count > max_pieces
            || chunk.payload.len() > payload
            || chunk.node.len() > MAX_NODE_NAME
        {
            cx.counters.pieces_refused += 1;
            return None;
        }
        let (expected, answered) = self.standing(&chunk.node);
        if answered || self.conflicts.contains_key(&chunk.node) {
            // Acked so the node stops resending; a claimant of a name in
            // conflict cannot be told apart from its twin, so its answer
            // is not recorded.
            cx.push(ack(from, chunk));
            return None;
        }
        let partial = &self.intake.partial;
        let started =
            !partial.is_empty() && partial.contains_key(&(chunk.node.clone(), chunk.nonce));
        if !expected && !started && self.late_is_full(cx) {
            cx.counters.pieces_refused += 1;
            return None;
        }
        let arrived = self.coordinator_clock(cx.mono());
        let trip = Trip {
            sent: chunk.sent_unix_ms,
            arrived,
            tag: chunk.sent_tag,
            relayed: false,
        };
        if count == 1 && !started {
            // The whole answer in one piece (most are): nothing to hold.
            cx.push(ack(from, chunk));
            return Some((std::mem::take(&mut chunk.payload), Some(trip)));
        }
        let key = (chunk.node.clone(), chunk.nonce);
        // What the node's incomplete answer holds now and would hold with
        // this piece: a piece with another `count` starts it again, with a
        // slot for every piece it announces (counted, so that pieces
        // claiming thousands of empty siblings cannot hold more than the
        // bound).
        let intake = &mut self.intake;
        let held_now = intake.partial.get(&key).map_or(0, |p| held_by(&p.pieces));
        let held_then = match intake.partial.get(&key) {
            Some(p) if p.pieces.len() == count => {
                held_now - p.pieces[index].as_ref().map_or(0, Vec::len) + chunk.payload.len()
            }
            _ => count * SLOT_BYTES + chunk.payload.len(),
        };
        let grows = held_then.saturating_sub(held_now);
        if intake.partial_bytes + grows > settings.max_partial_bytes
            || (!expected && intake.late_partial_bytes + grows > settings.max_late_partial_bytes)
        {
            cx.counters.pieces_refused += 1;
            return None;
        }
        cx.push(ack(from, chunk));
        intake.partial_bytes = intake.partial_bytes - held_now + held_then;
        if !expected {
            intake.late_partial_bytes = intake.late_partial_bytes - held_now + held_then;
        }
        let intake = &mut self.intake;
        let partial = intake.partial.entry(key.clone()).or_default();
        if partial.pieces.len() != count {
            *partial = Partial {
                pieces: vec![None; count],
                trip: None,
            };
        }
        if partial.trip.is_none_or(|best| trip.span() < best.span()) {
            partial.trip = Some(trip);
        }
        partial.pieces[index] = Some(std::mem::take(&mut chunk.payload));
        if partial.pieces.iter().any(Option::is_none) {
            return None;
        }
        intake.partial_bytes -= held_then;
        if !expected {
            intake.late_partial_bytes -= held_then;
        }
        let partial = intake.partial.remove(&key)?;
        let bytes: Vec<u8> = partial.pieces.into_iter().flatten().flatten().collect();
        Some((bytes, partial.trip))
    }

    /// Record the answer whose last piece was `chunk`.
    fn whole_answer(
        &mut self,
        cx: &mut Ctx,
        from: SocketAddr,
        chunk: &AnswerChunk,
        bytes: &[u8],
        trip: Option<Trip>,
    ) {
        // An answer that arrived whole (every piece acked) but does not
        // decode is listed as failing with the reason, not as silent (and
        // with no clock offset: its receive time is unknown).
        let payload = match AnswerPayload::decode(bytes) {
            Ok(payload) => payload,
            Err(e) => return self.record_undecodable(cx, from, &chunk.node, &e),
        };
        let trip = match self.verify(cx, from, &chunk.node, chunk.nonce, &payload, trip) {
            Proof::Dropped => return,
            Proof::Expired(outcome) => {
                return self.record_stand_in(cx, from, &chunk.node, outcome, TagsOf::None)
            }
            Proof::Taken(trip) => trip,
        };
        let likely = self.shapes.last();
        let read = BodyParts::decode_likely(&payload.body, likely.as_deref().map(Shape::likely))
            .and_then(|body| {
                let interned = self.shapes.intern_parts(&body)?;
                Ok((body, interned))
            });
        let (body, (shape, diff)) = match read {
            Ok(read) => read,
            Err(e) => return self.record_undecodable(cx, from, &chunk.node, &e),
        };
        let parts = Parts {
            received_unix_ms: body.received_unix_ms,
            checks_ms: body.checks_ms,
            tags: TagsOf::Borrowed(&body.tags),
        };
        self.record(cx, from, &chunk.node, shape, diff, parts, trip);
    }

    /// An answer that arrived whole but does not decode, recorded as
    /// failing with the reason `e`.
    fn record_undecodable(
        &mut self,
        cx: &mut Ctx,
        from: SocketAddr,
        node: &str,
        e: &dyn std::fmt::Display,
    ) {
        self.record_stand_in(cx, from, node, outcomes::undecodable(e), TagsOf::None);
    }

    /// `outcome` alone recorded as `node`'s answer, with `tags` and no
    /// clock offset (see [`Sweep::stand_in`]).
    fn record_stand_in(
        &mut self,
        cx: &mut Ctx,
        from: SocketAddr,
        node: &str,
        outcome: CheckOutcome,
        tags: TagsOf<'_>,
    ) {
        let body = self.stand_in(cx.mono(), outcome);
        let parts = Parts {
            received_unix_ms: body.received_unix_ms,
            checks_ms: 0,
            tags,
        };
        let (shape, diff) = self.shapes.intern(body);
        self.record(cx, from, node, shape, diff, parts, None);
    }

    /// Every answer of a relay's batch, rebuilt and accepted.
    fn take_batch(&mut self, cx: &mut Ctx, from: SocketAddr, batch: RelayBatch) {
        let arrived = self.coordinator_clock(cx.mono());
        for group in batch.groups {
            let slot = (from, group.key);
            if let Some(header) = group.header {
                let groups = &mut self.intake.relay_groups;
                if groups.len() >= MAX_RELAY_GROUPS && !groups.contains_key(&slot) {
                    cx.counters.pieces_refused += group.nodes.len() as u64;
                    continue;
                }
                groups.insert(slot, Arc::new(Shape::from_header(header)));
            }
            let Some(shape) = self.intake.relay_groups.get(&slot).cloned() else {
                // A header this coordinator never had: the relay thinks
                // it was acked (a restart in between). The backstop asks
                // these nodes directly.
                cx.counters.pieces_refused += group.nodes.len() as u64;
                continue;
            };
            for node in group.nodes {
                self.take_relayed(cx, from, &shape, node, arrived);
            }
        }
    }

    /// One answer of a relay's group `shape`, checked and recorded.
    fn take_relayed(
        &mut self,
        cx: &mut Ctx,
        from: SocketAddr,
        shape: &Arc<Shape>,
        node: RelayedAnswer,
        arrived: u64,
    ) {
        if node.node.len() > MAX_NODE_NAME {
            cx.counters.pieces_refused += 1;
            return;
        }
        let (expected, answered) = self.standing(&node.node);
        if answered || self.conflicts.contains_key(&node.node) {
            return;
        }
        if !expected && self.late_is_full(cx) {
            cx.counters.pieces_refused += 1;
            return;
        }
        if !shape.fits(&node.diff) {
            cx.counters.pieces_refused += 1;
            return;
        }
        let held = self.relay_hold(cx, &node, arrived);
        let trip = Trip {
            sent: node.received_unix_ms + u64::from(node.sent_after_ms),
            arrived: arrived.saturating_sub(held),
            tag: node.sent_tag,
            relayed: true,
        };
        let mut trip = Some(trip);
        if cx.trust.is_some() {
            // What the node's proof covers: its body's bytes, encoded
            // from the group and its diff.
            let mut body = std::mem::take(&mut self.intake.body);
            shape.encode_body_into(&node, &mut body);
            let payload = AnswerPayload {
                body,
                proof: node.proof,
            };
            let proof = self.verify(cx, from, &node.node, node.nonce, &payload, trip);
            self.intake.body = payload.body;
            match proof {
                Proof::Taken(t) => trip = t,
                Proof::Dropped => return,
                Proof::Expired(outcome) => {
                    let tags = TagsOf::Owned(&shape.tags);
                    return self.record_stand_in(cx, from, &node.node, outcome, tags);
                }
            }
        }
        let parts = Parts {
            received_unix_ms: node.received_unix_ms,
            checks_ms: node.checks_ms,
            tags: TagsOf::Owned(&shape.tags),
        };
        self.record(cx, from, &node.node, shape.clone(), node.diff, parts, trip);
    }

    /// What a relay says it held `node`'s answer, in ms, if it can be
    /// true: at most `relay_flush` + 100 ms (an honest relay forwards
    /// within `relay_flush`), and no more than our own times leave for it
    /// (`arrived` less the request's issue time, less the node's own time
    /// between receiving the request and sending the answer, 2 ms
    /// rounding). Otherwise 0, counted: the trip then includes the hold,
    /// which widens the offset's bound rather than moving it.
    fn relay_hold(&self, cx: &mut Ctx, node: &RelayedAnswer, arrived: u64) -> u64 {
        let held = u64::from(node.held_ms);
        let most = cx.settings.relay_flush.as_millis() as u64 + 100;
        let room = arrived
            .saturating_sub(self.request.issued_at_unix_ms)
            .saturating_sub(u64::from(node.sent_after_ms))
            + 2;
        if held > most || held > room {
            cx.counters.relay_holds_refused += 1;
            return 0;
        }
        held
    }

    /// Whether the late joiners (answered or partly answered) are at
    /// `max_late_joiners`.
    fn late_is_full(&self, cx: &Ctx) -> bool {
        self.late.len() + self.late_partial() >= cx.settings.max_late_joiners
    }

    /// With certificates, whether `payload` is `node`'s own answer, and
    /// its send time (`trip`) its own (see [`Proof`]). Without
    /// certificates, taken with `trip`.
    fn verify(
        &mut self,
        cx: &mut Ctx,
        from: SocketAddr,
        node: &str,
        nonce: u64,
        payload: &AnswerPayload,
        trip: Option<Trip>,
    ) -> Proof {
        let id = self.request.id;
        let Some(trust) = cx.trust.as_deref_mut() else {
            return Proof::Taken(trip);
        };
        match trust.check_answer(id, node, nonce, payload, cx.now.unix_ms) {
            Ok(pair) => {
                let forged = trip.filter(|t| {
                    !t.tag
                        .is_some_and(|tag| pair.check_sent_tag(id, node, nonce, t.sent, &tag))
                });
                if let Some(t) = forged {
                    cx.counters.times_forged += 1;
                    tracing::warn!(sweep = %format!("{id:016x}"), %from, node, relayed = t.relayed, "an answer's send time was changed on the way");
                    if t.relayed {
                        // Dropped: the backstop asks the node directly.
                        return Proof::Dropped;
                    }
                    return Proof::Taken(None);
                }
                Proof::Taken(trip)
            }
            Err(ProofRefusal::Forged(reason)) => {
                tracing::warn!(sweep = %format!("{id:016x}"), %from, reason = %reason, "dropped a forged answer");
                cx.counters.answers_forged += 1;
                Proof::Dropped
            }
            Err(ProofRefusal::Unknown) => {
                cx.counters.answers_unverified += 1;
                Proof::Dropped
            }
            Err(ProofRefusal::Expired { serial, not_after }) => {
                // Debug, not warn: a fleet whose enrollment service is
                // down would log one line per node and sweep; the
                // document lists every one, and the counter sums them.
                tracing::debug!(sweep = %format!("{id:016x}"), %from, node, serial = %format!("{serial:016x}"), not_after, "an answer proven by an expired certificate");
                cx.counters.answers_expired += 1;
                let now_s = cx.now.unix_ms / 1000;
                Proof::Expired(outcomes::cert_expired(node, serial, not_after, now_s))
            }
        }
    }

    /// The body recorded in place of an answer's own: `outcome` alone,
    /// saying why (an answer that arrived whole but does not decode, or
    /// one proven by an expired certificate).
    fn stand_in(&self, now: Duration, outcome: CheckOutcome) -> AnswerBody {
        AnswerBody::compact(
            BTreeMap::new(),
            // Unknown; the answer's arrival is an upper bound.
            self.coordinator_clock(now),
            0,
            vec![outcome],
        )
    }

    /// The node's answer (`diff` against `shape`), with the clock-skew
    /// verdict and its times, under the expected slot or as a late joiner.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        cx: &mut Ctx,
        from: SocketAddr,
        node: &str,
        shape: Arc<Shape>,
        diff: Vec<(u16, CheckResult)>,
        parts: Parts<'_>,
        trip: Option<Trip>,
    ) {
        let now = cx.mono();
        let clock = trip.map(|t| {
            ClockOffset::from_times(
                self.request.issued_at_unix_ms,
                parts.received_unix_ms,
                t.sent,
                t.arrived,
            )
        });
        let limit_ms = cx.settings.clock_skew_limit.as_millis() as u64;
        let times = Times {
            reached_ms: parts
                .received_unix_ms
                .saturating_sub(self.request.issued_at_unix_ms),
            answered_ms: now.saturating_sub(self.started_at).as_millis() as u64,
            checks_ms: parts.checks_ms,
            clock,
            skew: clock.and_then(|c| outcomes::clock_skew(limit_ms, c)),
        };
        let recorded = Recorded::new(shape, diff, times);
        self.last_answer_at = Some(now);
        match self.expected.get_mut(node) {
            Some(slot) => {
                match slot.state {
                    SlotState::Pending => self.settled += 1,
                    SlotState::Unreached => {
                        self.settled += 1;
                        self.unreached -= 1;
                    }
                    SlotState::Down | SlotState::Answered(_) => {}
                }
                slot.state = SlotState::Answered(Box::new(recorded));
                self.answered += 1;
            }
            None => {
                let late = super::Late {
                    addr: from.to_string(),
                    tags: parts.tags.to_map(),
                    recorded,
                };
                self.late.insert(node.to_string(), late);
            }
        }
    }

    /// Bytes held for incomplete answers, counted from the pieces
    /// themselves (payloads and slots): all of them, and those of nodes
    /// outside the expected set.
    pub(super) fn partial_held(&self) -> (usize, usize) {
        let mut all = 0;
        let mut late = 0;
        for ((node, _), partial) in &self.intake.partial {
            let bytes = held_by(&partial.pieces);
            all += bytes;
            if !self.expected.contains_key(node) {
                late += bytes;
            }
        }
        (all, late)
    }

    /// Incomplete answers from nodes outside the expected set.
    pub(super) fn late_partial(&self) -> usize {
        let mut names: Vec<&str> = self
            .intake
            .partial
            .keys()
            .map(|(n, _)| n.as_str())
            .filter(|n| !self.expected.contains_key(n))
            .collect();
        names.sort_unstable();
        names.dedup();
        names.len()
    }

    /// Whether `node` is in the expected set, and whether its answer is
    /// already in (expected or late): one lookup of the expected set, the
    /// costliest map an answer meets at 100,000 nodes.
    fn standing(&self, node: &str) -> (bool, bool) {
        match self.expected.get(node) {
            Some(slot) => (
                true,
                matches!(slot.state, SlotState::Answered(_)) || self.late.contains_key(node),
            ),
            None => (false, self.late.contains_key(node)),
        }
    }
}
