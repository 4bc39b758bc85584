//! The coordinator side of a sweep: the expected set snapshot, answer
//! reassembly and dedup by (sweep, node), the backstop, the clock offset
//! of every answering node, and the accounting that puts every expected
//! node in exactly one state.
//!
//! Clock offset (PROTOCOL.md, "Clock offset"): each answer piece carries
//! the node's clock when that copy left; each arrival is paired with it,
//! and the copy with the shortest trip is kept, so a resend measures as
//! well as a first send. With the request's issue time and the node's
//! receive time that gives an NTP-style offset and bound; a node off by
//! more than `clock_skew_limit` for certain gets a `patrol.clock_skew`
//! outcome.
//!
//! Backstop timing: every `tick` the coordinator looks at the sweep. The
//! first backstop round runs once the sweep is older than the answer spread
//! window plus `backstop_min_delay` AND either answers have gone quiet (none
//! for `backstop_quiet`) or `backstop_deadline_percent` of the deadline has
//! passed. So a fast, healthy sweep backstops early (answers stop arriving
//! as soon as the reachable nodes are done) while a sweep whose answers are
//! still streaming in does not flood nodes that are merely slow. Later
//! rounds follow after `backstop_interval`, doubling, and never within the
//! last tick before the deadline.

use core::net::SocketAddr;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use patrol_model::document::DOCUMENT_VERSION;
use patrol_model::selector::tags_match;
use patrol_model::{
    CheckOutcome, ClockOffset, NodeEntry, NodeState, Observed, Severity, Silence, Status,
    SweepDocument, SweepTiming, SwimState,
};

use super::auth::{ProofRefusal, SweepTrust};
use super::participant::CLOCK_SKEW_CHECK_ID;
use super::wire::{
    AnswerBody, AnswerChunk, AnswerPayload, RelayBatch, RequestAuth, SweepMessage, SweepRequest,
    WireError,
};
use super::{Effect, MemberView, Peer, Prng, StartSweep, SweepSettings, SweepTimer, TimerKind};

/// Most relay group headers a coordinator keeps per sweep (a few per relay
/// in a real fleet: one per distinct set of tags and checks).
const MAX_RELAY_GROUPS: usize = 16_384;

/// Completed sweep ids remembered so late answer pieces still get acked.
const RECENT_COMPLETED: usize = 256;

/// Longest node name a coordinator accepts in an answer (a DNS name's
/// limit).
pub const MAX_NODE_NAME: usize = 253;

/// What became of an answer piece, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Taken,
    /// Malformed, over a bound, or for an unknown sweep: dropped, no ack.
    Refused,
    /// With certificates: a whole answer without a valid proof by the node
    /// it names. Not recorded; the node's own answer still is.
    Forged,
    /// With certificates: an answer naming its node's certificate by a
    /// digest this coordinator does not have. Not recorded; the backstop
    /// asks the node again.
    Unverified,
}

/// Check id of the `error` outcome listed for each of several alive
/// members claiming one name.
pub const NAME_CONFLICT_ID: &str = "patrol.name_conflict";

/// Names claimed by more than one alive member (at different addresses),
/// with every alive claimant.
fn name_conflicts(members: &[MemberView]) -> BTreeMap<String, Vec<Peer>> {
    let mut by_name: BTreeMap<&str, Vec<&Peer>> = BTreeMap::new();
    for m in members.iter().filter(|m| m.alive) {
        let claimants = by_name.entry(m.peer.name.as_str()).or_default();
        if !claimants.iter().any(|p| p.addr == m.peer.addr) {
            claimants.push(&m.peer);
        }
    }
    by_name
        .into_iter()
        .filter(|(_, c)| c.len() > 1)
        .map(|(name, c)| (name.to_string(), c.into_iter().cloned().collect()))
        .collect()
}

/// Check id of the `error` outcome recorded for a node whose answer
/// arrived whole but did not decode.
pub const UNREADABLE_ANSWER_ID: &str = "patrol.unreadable_answer";

#[derive(Debug, Default)]
pub(crate) struct Coordinator {
    sweeps: HashMap<u64, Sweep>,
    recent: VecDeque<u64>,
}

#[derive(Debug)]
struct Sweep {
    doc: SweepDocument,
    request: SweepRequest,
    me: String,
    started_at: Duration,
    deadline_at: Duration,
    spread: Duration,
    expected: BTreeMap<String, Slot>,
    late: BTreeMap<String, NodeEntry>,
    /// Names claimed by more than one alive member: not expected under the
    /// name, listed once per claimant as `failing`, their answers ignored.
    conflicts: BTreeMap<String, Vec<Peer>>,
    /// The group headers relays sent, by (relay, group number); bounded by
    /// `MAX_RELAY_GROUPS`.
    relay_groups: HashMap<(SocketAddr, u32), super::wire::GroupHeader>,
    /// Incomplete answers by (node, nonce): a forged answer in a node's
    /// name cannot mix its pieces into the node's own.
    partial: HashMap<(String, u64), Partial>,
    /// Bytes held in `partial` (payloads and a [`SLOT_BYTES`] slot per
    /// announced piece), bounded by `max_partial_bytes`.
    partial_bytes: usize,
    /// Of those, the bytes of nodes outside the expected set, bounded by
    /// `max_late_partial_bytes`.
    late_partial_bytes: usize,
    /// Expected nodes that answered.
    answered: u64,
    /// Expected nodes that answered or are down.
    settled: u64,
    last_answer_at: Option<Duration>,
    rounds: u32,
    next_round_at: Option<Duration>,
}

#[derive(Debug)]
struct Slot {
    peer: Peer,
    state: SlotState,
    /// Backstop rounds that sent this node the request.
    backstops: u32,
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

#[derive(Debug)]
enum SlotState {
    Pending,
    Down,
    Answered(NodeEntry),
}

impl Coordinator {
    pub(crate) fn active(&self) -> usize {
        self.sweeps.len()
    }

    /// Whether this node coordinates `id` right now.
    pub(crate) fn active_sweep(&self, id: u64) -> bool {
        self.sweeps.contains_key(&id)
    }

    /// Whether `id` is running or was completed recently.
    pub(crate) fn knows(&self, id: u64) -> bool {
        self.sweeps.contains_key(&id) || self.recent.contains(&id)
    }

    /// What the sweeps being coordinated hold (the largest of each).
    pub(crate) fn held(&self) -> super::Held {
        let mut held = super::Held {
            coordinating: self.sweeps.len(),
            ..super::Held::default()
        };
        for sweep in self.sweeps.values() {
            let late = sweep.late.len() + sweep.late_partial();
            held.late_joiners = held.late_joiners.max(late);
            let (all, late) = sweep.partial_held();
            held.partial_bytes = held.partial_bytes.max(all);
            held.late_partial_bytes = held.late_partial_bytes.max(late);
        }
        held
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        &mut self,
        me: &Peer,
        cluster: &str,
        settings: &SweepSettings,
        id: u64,
        now: Duration,
        unix_ms: u64,
        spec: StartSweep,
        auth: Option<Box<RequestAuth>>,
        members: Vec<MemberView>,
        cached_peers: Option<usize>,
        out: &mut Vec<Effect>,
    ) -> SweepRequest {
        let matches = |tags: &BTreeMap<String, String>| tags_match(&spec.node_filter, tags);
        let mut members: Vec<MemberView> = members
            .into_iter()
            .filter(|m| matches(&m.peer.tags))
            .collect();
        if matches(&me.tags) {
            members.push(MemberView {
                peer: me.clone(),
                alive: true,
            });
        }
        let conflicts = name_conflicts(&members);
        // Alive members first, so that a name held by a down identity (a
        // node that came back at another address) and an alive one is
        // expected at the alive one.
        members.sort_by_key(|m| !m.alive);
        let mut expected = BTreeMap::new();
        for m in members {
            if conflicts.contains_key(&m.peer.name) {
                continue;
            }
            if !expected.contains_key(&m.peer.name) {
                let state = if m.alive {
                    SlotState::Pending
                } else {
                    SlotState::Down
                };
                expected.insert(
                    m.peer.name.clone(),
                    Slot {
                        peer: m.peer,
                        state,
                        backstops: 0,
                    },
                );
            }
        }
        let deadline = spec.deadline.min(settings.max_deadline);
        let relays = choose_relays(settings, id, &me.name, &expected);
        // With certificates, a node whose key we have not cached sends its
        // whole certificate (about 150 bytes more, three times the room in
        // a relay's batch): count it four times when sizing the window.
        let cold = cached_peers.map_or(0, |c| expected.len().saturating_sub(c));
        let spread = settings.spread_for(expected.len() + 3 * cold, !relays.is_empty());
        let request = SweepRequest {
            id,
            coordinator: me.peer_addr(),
            selector: spec.selector.clone(),
            node_filter: spec.node_filter.clone(),
            issued_at_unix_ms: unix_ms,
            deadline_ms: deadline.as_millis() as u64,
            answer_spread_ms: spread.as_micros().div_ceil(1000).min(u128::from(u32::MAX)) as u32,
            relays,
            auth,
        };
        // The relays hear first, straight from us: each must know it
        // relays before its nodes' answers come in.
        for to in &request.relays {
            out.push(Effect::Send {
                to: *to,
                msg: SweepMessage::Request(request.clone()),
            });
        }
        let doc = SweepDocument {
            version: DOCUMENT_VERSION,
            sweep_id: format!("{id:016x}"),
            cluster: cluster.to_string(),
            coordinator: me.name.clone(),
            started_at_unix_ms: unix_ms,
            deadline_ms: request.deadline_ms,
            selector: spec.selector,
            node_filter: spec.node_filter,
            counts: Default::default(),
            nodes: Vec::new(),
            timing: SweepTiming::default(),
            operator: request
                .auth
                .as_ref()
                .map(|a| a.authorization.operator.body.name.clone()),
        };
        let settled = expected
            .values()
            .filter(|s| matches!(s.state, SlotState::Down))
            .count() as u64;
        let sweep = Sweep {
            doc,
            request: request.clone(),
            me: me.name.clone(),
            started_at: now,
            deadline_at: now + deadline,
            spread,
            expected,
            late: BTreeMap::new(),
            conflicts,
            relay_groups: HashMap::new(),
            partial: HashMap::new(),
            partial_bytes: 0,
            late_partial_bytes: 0,
            answered: 0,
            settled,
            last_answer_at: None,
            rounds: 0,
            next_round_at: None,
        };
        out.push(Effect::Progress {
            sweep_id: id,
            answered: 0,
            expected: sweep.expected.len() as u64,
        });
        out.push(Effect::Schedule {
            after: deadline,
            timer: SweepTimer(TimerKind::Deadline(id)),
        });
        out.push(Effect::Schedule {
            after: settings.tick,
            timer: SweepTimer(TimerKind::Tick(id)),
        });
        self.sweeps.insert(id, sweep);
        self.complete_if_settled(id, now, out);
        request
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn answer_chunk(
        &mut self,
        settings: &SweepSettings,
        now: Duration,
        unix_ms: u64,
        from: SocketAddr,
        chunk: AnswerChunk,
        trust: Option<&mut SweepTrust>,
        out: &mut Vec<Effect>,
    ) -> Verdict {
        let id = chunk.sweep_id;
        let Some(sweep) = self.sweeps.get_mut(&id) else {
            if self.recent.contains(&id) {
                out.push(ack(from, &chunk));
                return Verdict::Taken;
            }
            return Verdict::Refused;
        };
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
            return Verdict::Refused;
        }
        if sweep.has_answer(&chunk.node) || sweep.conflicts.contains_key(&chunk.node) {
            // Acked so the node stops resending; a claimant of a name in
            // conflict cannot be told apart from its twin, so its answer
            // is not recorded.
            out.push(ack(from, &chunk));
            return Verdict::Taken;
        }
        let expected = sweep.expected.contains_key(&chunk.node);
        if !expected
            && !sweep
                .partial
                .contains_key(&(chunk.node.clone(), chunk.nonce))
            && sweep.late.len() + sweep.late_partial() >= settings.max_late_joiners
        {
            return Verdict::Refused;
        }
        // What the node's incomplete answer holds now and would hold with
        // this piece: a piece with another `count` starts it again, with a
        // slot for every piece it announces (counted, so that pieces
        // claiming thousands of empty siblings cannot hold more than the
        // bound).
        let key = (chunk.node.clone(), chunk.nonce);
        let held_now = sweep.partial.get(&key).map_or(0, |p| held_by(&p.pieces));
        let held_then = match sweep.partial.get(&key) {
            Some(p) if p.pieces.len() == count => {
                held_now - p.pieces[index].as_ref().map_or(0, Vec::len) + chunk.payload.len()
            }
            _ => count * SLOT_BYTES + chunk.payload.len(),
        };
        let grows = held_then.saturating_sub(held_now);
        if sweep.partial_bytes + grows > settings.max_partial_bytes
            || (!expected && sweep.late_partial_bytes + grows > settings.max_late_partial_bytes)
        {
            return Verdict::Refused;
        }
        out.push(ack(from, &chunk));
        sweep.partial_bytes = sweep.partial_bytes - held_now + held_then;
        if !expected {
            sweep.late_partial_bytes = sweep.late_partial_bytes - held_now + held_then;
        }
        let arrived = sweep.coordinator_clock(now);
        let partial = sweep.partial.entry(key.clone()).or_default();
        if partial.pieces.len() != count {
            *partial = Partial {
                pieces: vec![None; count],
                trip: None,
            };
        }
        let trip = Trip {
            sent: chunk.sent_unix_ms,
            arrived,
        };
        if partial.trip.is_none_or(|best| trip.span() < best.span()) {
            partial.trip = Some(trip);
        }
        partial.pieces[index] = Some(chunk.payload);
        if partial.pieces.iter().any(Option::is_none) {
            return Verdict::Taken;
        }
        let bytes: Vec<u8> = partial.pieces.iter().flatten().flatten().copied().collect();
        let trip = partial.trip;
        sweep.partial.remove(&key);
        sweep.partial_bytes -= held_then;
        if !expected {
            sweep.late_partial_bytes -= held_then;
        }
        let trip = trip.map(|t| (t.sent, t.arrived));
        let payload = match AnswerPayload::decode(&bytes) {
            Ok(payload) => payload,
            Err(e) => {
                // The node answered (every piece arrived and was acked),
                // but its answer does not decode: list it as failing with
                // the reason, not as silent (and with no clock offset: its
                // receive time is unknown).
                let body = sweep.unreadable(now, &e);
                sweep.record(settings, now, from, chunk.node, body, None, out);
                self.complete_if_settled(id, now, out);
                return Verdict::Taken;
            }
        };
        let verdict = sweep.accept(
            settings,
            now,
            unix_ms,
            from,
            &chunk.node,
            chunk.nonce,
            Answer::Received(payload),
            trip,
            trust,
            out,
        );
        self.complete_if_settled(id, now, out);
        verdict
    }

    /// A relay's batch: every answer in it is rebuilt, checked (with
    /// certificates, against its own node's proof) and recorded like a
    /// direct one; the batch is acked once it has been read. Returns the
    /// answers refused (malformed or over a bound), forged and unverified.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn batch(
        &mut self,
        settings: &SweepSettings,
        now: Duration,
        unix_ms: u64,
        from: SocketAddr,
        batch: RelayBatch,
        mut trust: Option<&mut SweepTrust>,
        out: &mut Vec<Effect>,
    ) -> (u64, u64, u64) {
        let id = batch.sweep_id;
        let batch_ack = Effect::Send {
            to: from,
            msg: SweepMessage::BatchAck {
                sweep_id: id,
                batch: batch.batch,
            },
        };
        let Some(sweep) = self.sweeps.get_mut(&id) else {
            if self.recent.contains(&id) {
                out.push(batch_ack);
                return (0, 0, 0);
            }
            let answers = batch.groups.iter().map(|g| g.nodes.len() as u64).sum();
            return (answers, 0, 0);
        };
        let answers = |b: &RelayBatch| b.groups.iter().map(|g| g.nodes.len() as u64).sum();
        if !sweep.request.relays.contains(&from) {
            // Only the relays the request named forward answers.
            return (answers(&batch), 0, 0);
        }
        let (mut refused, mut forged, mut unverified) = (0, 0, 0);
        let arrived = sweep.coordinator_clock(now);
        for group in batch.groups {
            let slot = (from, group.key);
            if let Some(header) = group.header {
                if sweep.relay_groups.len() >= MAX_RELAY_GROUPS
                    && !sweep.relay_groups.contains_key(&slot)
                {
                    refused += group.nodes.len() as u64;
                    continue;
                }
                sweep.relay_groups.insert(slot, header);
            }
            let Some(header) = sweep.relay_groups.get(&slot).cloned() else {
                // A header this coordinator never had: the relay thinks
                // it was acked (a restart in between). The backstop asks
                // these nodes directly.
                refused += group.nodes.len() as u64;
                continue;
            };
            for node in &group.nodes {
                if node.node.len() > MAX_NODE_NAME {
                    refused += 1;
                    continue;
                }
                if sweep.has_answer(&node.node) || sweep.conflicts.contains_key(&node.node) {
                    continue;
                }
                if !sweep.expected.contains_key(&node.node)
                    && sweep.late.len() + sweep.late_partial() >= settings.max_late_joiners
                {
                    refused += 1;
                    continue;
                }
                let Some(body) = header.body(node) else {
                    refused += 1;
                    continue;
                };
                let trip = (
                    node.received_unix_ms + u64::from(node.sent_after_ms),
                    arrived.saturating_sub(u64::from(node.held_ms)),
                );
                let verdict = sweep.accept(
                    settings,
                    now,
                    unix_ms,
                    from,
                    &node.node,
                    node.nonce,
                    Answer::Rebuilt(body, node.proof.clone()),
                    Some(trip),
                    trust.as_deref_mut(),
                    out,
                );
                match verdict {
                    Verdict::Forged => forged += 1,
                    Verdict::Unverified => unverified += 1,
                    Verdict::Refused => refused += 1,
                    Verdict::Taken => {}
                }
            }
        }
        out.push(batch_ack);
        self.complete_if_settled(id, now, out);
        (refused, forged, unverified)
    }

    /// The relays sweep `id` named (empty when it has none or is over).
    pub(crate) fn relays(&self, id: u64) -> &[SocketAddr] {
        self.sweeps
            .get(&id)
            .map_or(&[][..], |s| s.request.relays.as_slice())
    }

    pub(crate) fn member_down(&mut self, now: Duration, name: &str, out: &mut Vec<Effect>) {
        let ids: Vec<u64> = self.sweeps.keys().copied().collect();
        for id in ids {
            let Some(sweep) = self.sweeps.get_mut(&id) else {
                continue;
            };
            if let Some(slot) = sweep.expected.get_mut(name) {
                if matches!(slot.state, SlotState::Pending) {
                    slot.state = SlotState::Down;
                    sweep.settled += 1;
                    out.push(sweep.progress(id));
                }
            }
            self.complete_if_settled(id, now, out);
        }
    }

    pub(crate) fn tick(
        &mut self,
        settings: &SweepSettings,
        id: u64,
        now: Duration,
        out: &mut Vec<Effect>,
    ) {
        let Some(sweep) = self.sweeps.get_mut(&id) else {
            return;
        };
        let elapsed = now.saturating_sub(sweep.started_at);
        let deadline = sweep.deadline_at.saturating_sub(sweep.started_at);
        let quiet = now.saturating_sub(sweep.last_answer_at.unwrap_or(sweep.started_at))
            >= settings.backstop_quiet;
        let late = elapsed * 100 >= deadline * settings.backstop_deadline_percent;
        let ready = match sweep.next_round_at {
            None => elapsed >= sweep.spread + settings.backstop_min_delay,
            Some(at) => now >= at,
        };
        let room = sweep.deadline_at.saturating_sub(now) > settings.tick;
        if ready && (quiet || late) && room {
            for slot in sweep.expected.values_mut() {
                if matches!(slot.state, SlotState::Pending) && slot.peer.name != sweep.me {
                    slot.backstops += 1;
                    out.push(Effect::Send {
                        to: slot.peer.addr,
                        msg: SweepMessage::Request(sweep.request.clone()),
                    });
                }
            }
            let wait = settings
                .backstop_interval
                .saturating_mul(1u32 << sweep.rounds.min(16));
            sweep.rounds += 1;
            sweep.next_round_at = Some(now + wait);
        }
        if sweep.deadline_at > now + settings.tick {
            out.push(Effect::Schedule {
                after: settings.tick,
                timer: SweepTimer(TimerKind::Tick(id)),
            });
        }
    }

    pub(crate) fn deadline(&mut self, id: u64, now: Duration, out: &mut Vec<Effect>) {
        self.complete(id, now, out);
    }

    fn complete_if_settled(&mut self, id: u64, now: Duration, out: &mut Vec<Effect>) {
        if self
            .sweeps
            .get(&id)
            .is_some_and(|s| s.settled == s.expected.len() as u64)
        {
            self.complete(id, now, out);
        }
    }

    fn complete(&mut self, id: u64, now: Duration, out: &mut Vec<Effect>) {
        let Some(sweep) = self.sweeps.remove(&id) else {
            return;
        };
        if self.recent.len() >= RECENT_COMPLETED {
            self.recent.pop_front();
        }
        self.recent.push_back(id);
        out.push(Effect::Completed {
            sweep_id: id,
            document: Box::new(sweep.finish(now)),
        });
    }
}

/// The ack of `chunk`, to `to` (from a coordinator or a relay).
pub(super) fn ack(to: SocketAddr, chunk: &AnswerChunk) -> Effect {
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

/// A whole answer as the coordinator got it.
enum Answer {
    /// Reassembled from the node's own pieces.
    Received(AnswerPayload),
    /// Rebuilt from a relay's batch, with the node's proof.
    Rebuilt(AnswerBody, Option<super::wire::AnswerProof>),
}

/// What one slot of an incomplete answer costs besides its payload.
const SLOT_BYTES: usize = std::mem::size_of::<Option<Vec<u8>>>();

/// Bytes an incomplete answer holds: its slots and its payloads.
fn held_by(parts: &[Option<Vec<u8>>]) -> usize {
    parts.len() * SLOT_BYTES + parts.iter().flatten().map(Vec::len).sum::<usize>()
}

impl Sweep {
    /// Bytes held for incomplete answers, counted from the pieces
    /// themselves (payloads and slots): all of them, and those of nodes
    /// outside the expected set.
    fn partial_held(&self) -> (usize, usize) {
        let mut all = 0;
        let mut late = 0;
        for ((node, _), partial) in &self.partial {
            let bytes = held_by(&partial.pieces);
            all += bytes;
            if !self.expected.contains_key(node) {
                late += bytes;
            }
        }
        (all, late)
    }

    /// Incomplete answers from nodes outside the expected set.
    fn late_partial(&self) -> usize {
        let mut names: Vec<&str> = self
            .partial
            .keys()
            .map(|(n, _)| n.as_str())
            .filter(|n| !self.expected.contains_key(*n))
            .collect();
        names.sort_unstable();
        names.dedup();
        names.len()
    }

    fn has_answer(&self, node: &str) -> bool {
        self.late.contains_key(node)
            || self
                .expected
                .get(node)
                .is_some_and(|s| matches!(s.state, SlotState::Answered(_)))
    }

    fn progress(&self, id: u64) -> Effect {
        Effect::Progress {
            sweep_id: id,
            answered: self.answered,
            expected: self.expected.len() as u64,
        }
    }

    /// The body recorded for an answer that arrived whole but does not
    /// decode: one `patrol.unreadable_answer` error saying why.
    fn unreadable(&self, now: Duration, e: &WireError) -> AnswerBody {
        AnswerBody::compact(
            BTreeMap::new(),
            // Unknown; the answer's arrival is an upper bound.
            self.coordinator_clock(now),
            0,
            vec![super::participant::patrol_error(
                UNREADABLE_ANSWER_ID,
                "an answer this coordinator can decode".to_string(),
                format!(
                    "the node's answer did not decode ({e}); is it running another Patrol version?"
                ),
            )],
        )
    }

    /// Our wall clock at monotonic time `now`, unix milliseconds: the
    /// request's issue time plus the time since, so the issue and arrival
    /// times of the clock measurement stay on one timeline.
    fn coordinator_clock(&self, now: Duration) -> u64 {
        self.request
            .issued_at_unix_ms
            .saturating_add(now.saturating_sub(self.started_at).as_millis() as u64)
    }

    /// A whole answer of `node`: checked against the node's proof (with
    /// certificates), then recorded. `trip` is the node's send time and our
    /// arrival time (less what a relay held it).
    #[allow(clippy::too_many_arguments)]
    fn accept(
        &mut self,
        settings: &SweepSettings,
        now: Duration,
        unix_ms: u64,
        from: SocketAddr,
        node: &str,
        nonce: u64,
        answer: Answer,
        trip: Option<(u64, u64)>,
        trust: Option<&mut SweepTrust>,
        out: &mut Vec<Effect>,
    ) -> Verdict {
        let id = self.request.id;
        // A relayed answer is rebuilt as a struct; its bytes (what the
        // node's proof covers) are only needed with certificates.
        let (payload, body) = match answer {
            Answer::Received(payload) => (payload, None),
            Answer::Rebuilt(body, proof) => {
                let payload = trust.as_ref().map(|_| AnswerPayload {
                    body: body.encode(),
                    proof,
                });
                (
                    payload.unwrap_or(AnswerPayload {
                        body: Vec::new(),
                        proof: None,
                    }),
                    Some(body),
                )
            }
        };
        if let Some(trust) = trust {
            match trust.check_answer(id, node, nonce, &payload, unix_ms) {
                Ok(()) => {}
                Err(ProofRefusal::Forged(reason)) => {
                    tracing::warn!(sweep = %format!("{id:016x}"), %from, reason = %reason, "dropped a forged answer");
                    return Verdict::Forged;
                }
                Err(ProofRefusal::Unknown) => return Verdict::Unverified,
            }
        }
        let body = match body {
            Some(body) => Ok(body),
            None => AnswerBody::decode(&payload.body),
        };
        let (body, trip) = match body {
            Ok(body) => (body, trip.map(|(sent, arrived)| Trip { sent, arrived })),
            Err(e) => (self.unreadable(now, &e), None),
        };
        self.record(settings, now, from, node.to_string(), body, trip, out);
        Verdict::Taken
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        settings: &SweepSettings,
        now: Duration,
        from: SocketAddr,
        node: String,
        body: AnswerBody,
        trip: Option<Trip>,
        out: &mut Vec<Effect>,
    ) {
        let clock = trip.map(|t| {
            ClockOffset::from_times(
                self.request.issued_at_unix_ms,
                body.received_unix_ms,
                t.sent,
                t.arrived,
            )
        });
        let skew = clock.and_then(|c| clock_skew(settings, c));
        let mut outcomes = match body.outcomes() {
            Ok(outcomes) => outcomes,
            Err(e) => vec![super::participant::patrol_error(
                UNREADABLE_ANSWER_ID,
                "an answer this coordinator can decode".to_string(),
                format!("the node's answer is malformed ({e})"),
            )],
        };
        if let Some(skew) = skew {
            // A node that refused the request for its clock already says so.
            if !outcomes.iter().any(|o| o.id == CLOCK_SKEW_CHECK_ID) {
                outcomes.push(skew);
            }
        }
        let failing = outcomes.iter().any(|o| o.status != Status::Pass);
        let mut entry = NodeEntry {
            name: node.clone(),
            addr: from.to_string(),
            tags: body.tags,
            state: if failing {
                NodeState::Failing
            } else {
                NodeState::Ok
            },
            late_joiner: false,
            reached_ms: Some(
                body.received_unix_ms
                    .saturating_sub(self.request.issued_at_unix_ms),
            ),
            answered_ms: Some(now.saturating_sub(self.started_at).as_millis() as u64),
            checks_ms: Some(body.checks_ms),
            checks: outcomes,
            clock,
            silence: None,
        };
        self.last_answer_at = Some(now);
        match self.expected.get_mut(&node) {
            Some(slot) => {
                // The snapshot's view of the node (address, tags) is what
                // the filter was applied to; keep it.
                entry.addr = slot.peer.addr.to_string();
                entry.tags = slot.peer.tags.clone();
                if matches!(slot.state, SlotState::Pending) {
                    self.settled += 1;
                }
                // An answer from a node SWIM called down proves it alive.
                slot.state = SlotState::Answered(entry);
                self.answered += 1;
            }
            None => {
                entry.late_joiner = true;
                self.late.insert(node, entry);
            }
        }
        out.push(self.progress(self.request.id));
    }

    fn finish(self, now: Duration) -> SweepDocument {
        let mut doc = self.doc;
        let mut nodes: Vec<NodeEntry> = self
            .expected
            .into_values()
            .map(|slot| match slot.state {
                SlotState::Answered(entry) => entry,
                other => NodeEntry {
                    name: slot.peer.name,
                    addr: slot.peer.addr.to_string(),
                    tags: slot.peer.tags,
                    state: if matches!(other, SlotState::Down) {
                        NodeState::Down
                    } else {
                        NodeState::NoAnswer
                    },
                    late_joiner: false,
                    reached_ms: None,
                    answered_ms: None,
                    checks_ms: None,
                    checks: Vec::new(),
                    clock: None,
                    // What the sweep knows; the node adds what the mesh
                    // knows (when it last heard from it, its SWIM state).
                    silence: matches!(other, SlotState::Pending).then_some(Silence {
                        last_heard_ago_ms: None,
                        swim: SwimState::Unknown,
                        backstop_requests: slot.backstops,
                    }),
                },
            })
            .collect();
        nodes.extend(self.late.into_values());
        for (name, claimants) in &self.conflicts {
            let addrs: Vec<String> = claimants.iter().map(|p| p.addr.to_string()).collect();
            for peer in claimants {
                nodes.push(NodeEntry {
                    name: format!("{name}@{}", peer.addr),
                    addr: peer.addr.to_string(),
                    tags: peer.tags.clone(),
                    state: NodeState::Failing,
                    late_joiner: false,
                    reached_ms: None,
                    answered_ms: None,
                    checks_ms: None,
                    checks: vec![super::participant::patrol_error(
                        NAME_CONFLICT_ID,
                        "one node per name".to_string(),
                        format!(
                            "{} nodes claim the name {name} ({}); their answers cannot be told apart and were not recorded: give each its own [node] name",
                            claimants.len(),
                            addrs.join(", ")
                        ),
                    )],
                    clock: None,
                    silence: None,
                });
            }
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut reached: Vec<u64> = nodes.iter().filter_map(|n| n.reached_ms).collect();
        reached.sort_unstable();
        doc.timing = SweepTiming {
            reached_p50_ms: percentile(&reached, 50),
            reached_p99_ms: percentile(&reached, 99),
            reached_max_ms: reached.last().copied(),
            last_answer_ms: self
                .last_answer_at
                .map(|t| t.saturating_sub(self.started_at).as_millis() as u64),
            completed_ms: now.saturating_sub(self.started_at).as_millis() as u64,
        };
        doc.nodes = nodes;
        doc.recount();
        doc
    }
}

/// The `patrol.clock_skew` outcome for a node whose clock is certainly
/// further from ours than `clock_skew_limit` (its offset less the
/// measurement's bound), or None.
fn clock_skew(settings: &SweepSettings, clock: ClockOffset) -> Option<CheckOutcome> {
    let limit = settings.clock_skew_limit.as_millis() as u64;
    if clock.least_skew_ms() <= limit {
        return None;
    }
    let way = if clock.offset_ms > 0 {
        "ahead"
    } else {
        "behind"
    };
    Some(CheckOutcome {
        id: CLOCK_SKEW_CHECK_ID.to_string(),
        kind: "patrol".to_string(),
        status: Status::Fail,
        severity: Severity::Fail,
        observed: Observed::Text(way.to_string()),
        expected: format!("within {limit} ms of the coordinator's clock"),
        message: format!(
            "clock {} ms {way} of the coordinator's (± {} ms), measured by the sweep",
            clock.offset_ms.unsigned_abs(),
            clock.bound_ms
        ),
        duration_us: 0,
        description: "the node's clock offset from the coordinator's, measured by the sweep itself"
            .to_string(),
        remediation: "check time synchronisation on the node (chronyc tracking, timedatectl); if most nodes are off the same way, on the coordinator".to_string(),
    })
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// The relays of sweep `id`: none below `relay_min_nodes`, else
/// `relays_for` alive expected members other than the coordinator, drawn
/// at random (seeded by the sweep id).
fn choose_relays(
    settings: &SweepSettings,
    id: u64,
    me: &str,
    expected: &BTreeMap<String, Slot>,
) -> Vec<SocketAddr> {
    let mut alive: Vec<SocketAddr> = expected
        .values()
        .filter(|s| matches!(s.state, SlotState::Pending) && s.peer.name != me)
        .map(|s| s.peer.addr)
        .collect();
    let count = settings.relays_for(expected.len(), alive.len());
    let mut rng = Prng::new(id ^ 0x7265_6c61_7973);
    for i in 0..count {
        let j = i + (rng.next_u64() % (alive.len() - i) as u64) as usize;
        alive.swap(i, j);
    }
    alive.truncate(count);
    alive
}
