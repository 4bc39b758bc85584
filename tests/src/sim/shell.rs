//! The agent's shell around foca and the sweep core, replayed in virtual
//! time: what `patrol_agent::agent`'s owner task does with a datagram, a
//! timer, finished checks and each effect, step by step.
//!
//! - A datagram starts with a channel byte (0 foca, 1 sweep).
//! - After foca handled a datagram the gossip inbox is drained into the
//!   core and, when a new request arrived, `foca.broadcast()` is called
//!   [`SimShell::eager_push_rounds`] times (eager push).
//! - `Effect::Spread` is `add_broadcast`, the same eager push, and (when
//!   the coordinator knows at most [`SimShell::direct_spread_limit`]
//!   members) a direct copy to each member.
//! - Checks get the agent's budget: the time left before the request
//!   expires, less the answer spread and a margin; a check cut by it ends
//!   as `error`, so the node reports failing.
//! - Every call into foca or the core is followed by a flush that moves
//!   foca's sends, timers and notifications and the core's effects to
//!   where they go, until nothing is left.
//!
//! Two things differ on purpose: foca is configured once for the real
//! cluster size (a node here holds a partial view, so the agent's
//! resize-on-growth would size it for the view), and [`know_mentioned`]
//! stands in for the full member list a real node holds.

use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;
use foca::{AccumulatingRuntime, Foca, Member, OwnedNotification};
use patrol_agent::codec::BincodeCodec;
use patrol_agent::identity::NodeId;
use patrol_agent::sweep::{
    Effect, RequestGossip, StartSweep, SweepCore, SweepMessage, SweepRequest, SweepTimer,
};
use patrol_checks::{CheckOutcome, SweepDocument};
use rand::rngs::SmallRng;
use rand::RngExt;

use super::network::{addr_of, index_of, EventQueue, LinkModel, RxQueue};
use super::report::{Kind, NodeFate, NodeMetrics, Tally};
use super::world::{Datagram, Event, BASE_UNIX_MS, COORDINATOR};

pub(super) const CH_FOCA: u8 = 0;
pub(super) const CH_SWEEP: u8 = 1;

/// Of the time left before a request expires, what checks may not use (the
/// agent's own constant).
use patrol_agent::agent::BUDGET_MARGIN_MS;

pub(super) type SimFoca = Foca<NodeId, BincodeCodec, SmallRng, RequestGossip>;

/// The parts of the agent's glue that are constants in `agent.rs`, mirrored
/// here (and tunable for experiments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimShell {
    /// `foca.broadcast()` calls per fresh request (agent: `EAGER_PUSH_ROUNDS`).
    pub eager_push_rounds: usize,
    /// Up to this many members, the coordinator also sends the request to
    /// each directly (agent: `DIRECT_SPREAD_LIMIT`).
    pub direct_spread_limit: usize,
}

impl Default for SimShell {
    fn default() -> Self {
        SimShell {
            eager_push_rounds: patrol_agent::agent::EAGER_PUSH_ROUNDS,
            direct_spread_limit: patrol_agent::agent::DIRECT_SPREAD_LIMIT,
        }
    }
}

/// What made the core emit the effects being flushed; tells an answer's
/// first send from a retry and from a resend prompted by the backstop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    Timer,
    DirectRequest,
    Other,
}

pub(super) struct SimNode {
    pub foca: SimFoca,
    pub core: SweepCore,
    pub inbox: mpsc::Receiver<SweepRequest>,
    pub alive: bool,
    pub slow: bool,
    /// Reports a failing check (configured, or a check cut by the budget).
    pub failing: bool,
    /// The request's expiry (unix ms) and answer spread (ms), once seen.
    pub expiry: Option<(u64, u32)>,
    pub rx: RxQueue,
    pub m: NodeMetrics,
}

/// Everything but the nodes, so a node and the world can be borrowed at once.
pub(super) struct Shared {
    pub n: usize,
    pub now: Duration,
    pub clock: Arc<AtomicU64>,
    pub queue: EventQueue<Event>,
    pub link: LinkModel,
    pub shell: SimShell,
    pub net_rng: SmallRng,
    pub check_rng: SmallRng,
    pub check_min: Duration,
    pub check_max: Duration,
    pub slow_check: Duration,
    pub ok_outcomes: Vec<CheckOutcome>,
    pub failing_outcomes: Vec<CheckOutcome>,
    pub rt: AccumulatingRuntime<NodeId>,
    pub effects: Vec<Effect>,
    pub cause: Cause,
    /// The answer kind chosen for the current core call, once it sent one.
    pub round: Option<Kind>,
    pub sweep_started: Option<Duration>,
    /// Traffic is counted from the start of the sweep to its completion.
    pub counting: bool,
    /// The request has died out (or the horizon passed): stop.
    pub finished: bool,
    pub request_bytes: Option<Vec<u8>>,
    pub done: Option<Box<SweepDocument>>,
    pub done_at: Option<Duration>,
    pub tally: Tally,
}

impl Shared {
    pub fn unix_ms(&self) -> u64 {
        BASE_UNIX_MS + self.now.as_millis() as u64
    }

    fn set_cause(&mut self, cause: Cause) {
        self.cause = cause;
        self.round = None;
    }

    fn send(
        &mut self,
        from: usize,
        node: &mut SimNode,
        to: std::net::SocketAddr,
        channel: u8,
        payload: Bytes,
        kind: Kind,
    ) {
        let Some(to) = index_of(to, self.n) else {
            self.tally.malformed += 1;
            return;
        };
        let d = Datagram {
            from,
            to,
            channel,
            payload,
            kind,
        };
        if self.counting {
            node.m.sent_packets += 1;
            node.m.sent_bytes += d.wire_len();
            self.tally.sent[kind as usize] += 1;
            self.tally.sent_bytes[kind as usize] += d.wire_len();
        }
        if self.link.lost(&mut self.net_rng) {
            self.tally.lost[kind as usize] += 1;
            return;
        }
        let at = self.now + self.link.latency(&mut self.net_rng);
        self.queue.push(at, Event::Arrive(d));
    }

    fn check_time(&mut self, slow: bool) -> Duration {
        if slow {
            return self.slow_check;
        }
        if self.check_max <= self.check_min {
            return self.check_min;
        }
        let span = (self.check_max - self.check_min).as_nanos() as u64;
        self.check_min + Duration::from_nanos(self.check_rng.random_range(0..=span))
    }

    /// The agent's `check_budget`.
    fn check_budget(&self, expiry: Option<(u64, u32)>) -> Duration {
        match expiry {
            Some((expires, spread)) => {
                let left = expires.saturating_sub(self.unix_ms());
                let reserve = u64::from(spread) + BUDGET_MARGIN_MS;
                Duration::from_millis(left.saturating_sub(reserve).max(100))
            }
            None => Duration::MAX,
        }
    }
}

/// The node comes up knowing `members` (no broadcast: the mesh knows).
pub(super) fn join(
    i: usize,
    node: &mut SimNode,
    sh: &mut Shared,
    members: impl Iterator<Item = Member<NodeId>>,
) {
    node.alive = true;
    let _ = node.foca.apply_many(members, false, &mut sh.rt);
    flush(i, node, sh);
}

/// The coordinator starts the sweep from a snapshot of its member list,
/// taken exactly as the agent takes it.
pub(super) fn start_sweep(node: &mut SimNode, sh: &mut Shared, spec: StartSweep) {
    let (now, unix) = (sh.now, sh.unix_ms());
    let members = patrol_agent::agent::membership_snapshot(node.foca.iter_membership_state());
    node.m.reached_at = Some(now);
    node.core.start(now, unix, spec, members, &mut sh.effects);
    flush(COORDINATOR, node, sh);
}

pub(super) fn foca_timer(i: usize, node: &mut SimNode, sh: &mut Shared, t: foca::Timer<NodeId>) {
    let _ = node.foca.handle_timer(t, &mut sh.rt);
    flush(i, node, sh);
}

pub(super) fn sweep_timer(i: usize, node: &mut SimNode, sh: &mut Shared, t: SweepTimer) {
    sh.set_cause(Cause::Timer);
    let (now, unix) = (sh.now, sh.unix_ms());
    node.core.handle_timer(now, unix, t, &mut sh.effects);
    flush(i, node, sh);
    sh.set_cause(Cause::Other);
}

pub(super) fn checks_done(i: usize, node: &mut SimNode, sh: &mut Shared, sweep_id: u64) {
    let outcomes = if node.failing {
        sh.failing_outcomes.clone()
    } else {
        sh.ok_outcomes.clone()
    };
    let (now, unix) = (sh.now, sh.unix_ms());
    node.core
        .checks_done(now, unix, sweep_id, outcomes, &mut sh.effects);
    flush(i, node, sh);
}

/// A datagram reached the node's code.
pub(super) fn datagram(
    i: usize,
    node: &mut SimNode,
    sh: &mut Shared,
    d: Datagram,
    fates: &[NodeFate],
) {
    if sh.counting {
        node.m.recv_packets += 1;
        node.m.recv_bytes += d.wire_len();
    }
    match d.channel {
        CH_FOCA => {
            if let Some(req) = &sh.request_bytes {
                if contains(&d.payload, req) {
                    node.m.receptions += 1;
                }
            }
            know_mentioned(node, &d.payload, fates, &mut sh.rt);
            let _ = node.foca.handle_data(&d.payload, &mut sh.rt);
            drain_gossip(node, sh);
            flush(i, node, sh);
        }
        CH_SWEEP => {
            let Ok(msg) = SweepMessage::decode(&d.payload) else {
                sh.tally.malformed += 1;
                return;
            };
            match &msg {
                SweepMessage::Request(req) => {
                    node.m.receptions += 1;
                    note_request(node, sh, req);
                    if d.kind == Kind::Backstop && node.m.reached_at == Some(sh.now) {
                        node.m.reached_by_backstop = true;
                    }
                    sh.set_cause(Cause::DirectRequest);
                }
                SweepMessage::Answer(chunk) if i == COORDINATOR => {
                    if let Some(from) = node_index(&chunk.node, sh.n) {
                        sh.tally
                            .piece_arrived(from, chunk.index, chunk.count, d.kind, sh.now);
                    }
                }
                _ => {}
            }
            let (now, unix) = (sh.now, sh.unix_ms());
            node.core
                .handle_message(now, unix, addr_of(d.from), msg, &mut sh.effects);
            flush(i, node, sh);
            sh.set_cause(Cause::Other);
        }
        _ => sh.tally.malformed += 1,
    }
}

/// First sight of the request: when it reached the node, and its expiry
/// for the check budget (the agent's `note_expiry`).
fn note_request(node: &mut SimNode, sh: &Shared, req: &SweepRequest) {
    if node.m.reached_at.is_none() {
        node.m.reached_at = Some(sh.now);
    }
    if node.expiry.is_none() {
        node.expiry = Some((req.expires_at_unix_ms(), req.answer_spread_ms));
    }
}

/// Emulate a full member list lazily: before foca reads a packet, every
/// member the packet mentions (its sender, and the subject of each
/// membership update) that this node does not know yet is added silently
/// (`apply_many` without broadcasting) in the state a node knowing every
/// member would already hold: alive at the previous incarnation, or down
/// for nodes that were down before the sweep.
///
/// Without it, a node hearing from a member outside its partial view
/// would treat it as a newcomer and gossip "X is alive" to the whole mesh,
/// which makes others meet strangers and gossip about them in turn: a
/// cascade of O(N²) membership updates that a real, fully-meshed cluster
/// never sees. With it, foca's own handling of the packet sees exactly the
/// changes a fully informed node would see, and broadcasts only those.
fn know_mentioned(
    node: &mut SimNode,
    payload: &[u8],
    fates: &[NodeFate],
    rt: &mut AccumulatingRuntime<NodeId>,
) {
    use bytes::Buf;
    use foca::{Codec, Message, State};

    let mut buf = payload;
    let mut codec = BincodeCodec;
    let Ok(header) = codec.decode_header(&mut buf) else {
        return;
    };
    let me = node.foca.identity().addr;
    let mut known: Vec<Member<NodeId>> = Vec::new();
    let baseline = |id: NodeId, incarnation: u16, state: State| {
        let down = index_of(id.addr, fates.len()).is_some_and(|j| fates[j] == NodeFate::DownBefore);
        if down {
            Member::down(id)
        } else {
            let previous = match state {
                State::Alive => incarnation.saturating_sub(1),
                State::Suspect | State::Down => incarnation,
            };
            Member::new(id, previous, State::Alive)
        }
    };
    if header.src.addr != me {
        known.push(Member::new(
            header.src,
            header.src_incarnation,
            State::Alive,
        ));
    }
    if header.message != Message::Broadcast && buf.remaining() >= 2 {
        let count = buf.get_u16();
        for _ in 0..count {
            let Ok(update) = codec.decode_member(&mut buf) else {
                break;
            };
            if update.id().addr != me {
                let (inc, state) = (update.incarnation(), update.state());
                known.push(baseline(update.id().clone(), inc, state));
            }
        }
    }
    // Already known members are left as they are: the baseline is never
    // newer than what the node holds.
    let _ = node.foca.apply_many(known.into_iter(), false, rt);
}

/// New requests that arrived by gossip go to the core and are pushed on at
/// once (the agent's `drain_gossip`).
fn drain_gossip(node: &mut SimNode, sh: &mut Shared) {
    let mut fresh = false;
    while let Ok(req) = node.inbox.try_recv() {
        fresh = true;
        note_request(node, sh, &req);
        let (now, unix) = (sh.now, sh.unix_ms());
        node.core.handle_request(now, unix, req, &mut sh.effects);
    }
    if fresh {
        for _ in 0..sh.shell.eager_push_rounds {
            let _ = node.foca.broadcast(&mut sh.rt);
        }
    }
}

/// Move everything foca and the core produced to where it goes, until
/// neither has anything left (the agent's `flush`).
fn flush(i: usize, node: &mut SimNode, sh: &mut Shared) {
    loop {
        let mut progressed = false;
        while let Some((to, data)) = sh.rt.to_send() {
            progressed = true;
            sh.send(i, node, to.addr, CH_FOCA, data, Kind::Foca);
        }
        while let Some((after, timer)) = sh.rt.to_schedule() {
            progressed = true;
            sh.queue.push(sh.now + after, Event::Foca(i, timer));
        }
        while let Some(n) = sh.rt.to_notify() {
            progressed = true;
            if let OwnedNotification::MemberDown(id) = n {
                node.core.member_down(sh.now, &id.name, &mut sh.effects);
            }
        }
        let effects = std::mem::take(&mut sh.effects);
        for effect in effects {
            progressed = true;
            on_effect(i, node, sh, effect);
        }
        if !progressed {
            break;
        }
    }
}

fn on_effect(i: usize, node: &mut SimNode, sh: &mut Shared, effect: Effect) {
    match effect {
        Effect::Spread(req) => {
            let bytes = req.encode();
            sh.request_bytes = Some(bytes.clone());
            if node.foca.add_broadcast(&bytes).is_ok() {
                for _ in 0..sh.shell.eager_push_rounds {
                    let _ = node.foca.broadcast(&mut sh.rt);
                }
            }
            if node.foca.num_members() <= sh.shell.direct_spread_limit {
                let direct = Bytes::from(SweepMessage::Request(req).encode());
                let members: Vec<_> = node.foca.iter_members().map(|m| m.id().addr).collect();
                for to in members {
                    sh.send(i, node, to, CH_SWEEP, direct.clone(), Kind::DirectSpread);
                }
            }
            while node.inbox.try_recv().is_ok() {}
        }
        Effect::Send { to, msg } => {
            let kind = match &msg {
                SweepMessage::Request(_) => Kind::Backstop,
                SweepMessage::Ack { .. } => Kind::Ack,
                SweepMessage::Answer(_) => match sh.round {
                    Some(kind) => kind,
                    None => {
                        let kind = match sh.cause {
                            Cause::DirectRequest => Kind::AnswerBackstop,
                            _ if node.m.answer_rounds == 0 => Kind::AnswerFirst,
                            _ => Kind::AnswerRetry,
                        };
                        node.m.answer_rounds += 1;
                        sh.round = Some(kind);
                        kind
                    }
                },
            };
            let bytes = Bytes::from(msg.encode());
            sh.send(i, node, to, CH_SWEEP, bytes, kind);
        }
        Effect::Schedule { after, timer } => sh.queue.push(sh.now + after, Event::Sweep(i, timer)),
        Effect::RunChecks { sweep_id, .. } => {
            node.m.checks_started = true;
            let budget = sh.check_budget(node.expiry);
            let mut after = sh.check_time(node.slow);
            if after > budget {
                // The agent cuts every check's timeout to the budget; the
                // cut check ends as `error`.
                after = budget;
                node.failing = true;
            }
            sh.queue
                .push(sh.now + after, Event::ChecksDone(i, sweep_id));
        }
        Effect::Progress { .. } => {}
        Effect::Completed(doc) => {
            sh.done = Some(doc);
            sh.done_at = Some(sh.now);
            sh.counting = false;
            // Keep going until the request dies out, to count every copy.
            sh.queue.push(sh.now, Event::DrainCheck);
        }
    }
}

fn node_index(name: &str, n: usize) -> Option<usize> {
    let i: usize = name.strip_prefix("node-")?.parse().ok()?;
    (i < n).then_some(i)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack.len() >= needle.len()
        && haystack.windows(needle.len()).any(|w| w == needle)
}
