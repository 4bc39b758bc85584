//! The simulated world: every node's real foca and real sweep core, and the
//! glue between them and the simulated network.
//!
//! The glue mirrors `patrol_agent::agent` step by step: a datagram starts
//! with a channel byte (0 foca, 1 sweep); after foca handled a datagram the
//! gossip inbox is drained into the core and, when a new request arrived,
//! `foca.broadcast()` pushes it on at once (eager push); `Effect::Spread` is
//! `add_broadcast` then `broadcast`; every call into foca or the core is
//! followed by a flush that moves foca's sends, timers and notifications
//! and the core's effects to where they go until nothing is left.
//!
//! Two things differ on purpose: foca is configured once for the real
//! cluster size (a node here holds only a partial view, so the agent's
//! resize-on-growth would size it for the view), and datagrams are not
//! sealed but charged the envelope's size.

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;
use foca::{AccumulatingRuntime, Foca, Member, OwnedNotification};
use patrol_agent::agent::MAX_DATAGRAM;
use patrol_agent::codec::BincodeCodec;
use patrol_agent::envelope::OVERHEAD;
use patrol_agent::identity::NodeId;
use patrol_agent::membership::{foca_config, size_bucket};
use patrol_agent::sweep::{
    Effect, MemberView, Peer, RequestGossip, StartSweep, SweepCore, SweepMessage, SweepRequest,
    SweepTimer,
};
use patrol_checks::{CheckOutcome, Observed, Selector, Severity, Status, SweepDocument};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use super::network::{addr_of, index_of, EventQueue, LinkModel, RxQueue};
use super::report::{self, Kind, NodeFate, NodeMetrics, Tally};
use super::SimSettings;

const CH_FOCA: u8 = 0;
const CH_SWEEP: u8 = 1;

/// Unix time of virtual time zero (any fixed value; only differences count).
const BASE_UNIX_MS: u64 = 1_800_000_000_000;

/// How often the end of the request's gossip is checked for.
const DRAIN_CHECK: Duration = Duration::from_millis(50);

/// Index of the coordinating node.
pub(crate) const COORDINATOR: usize = 0;

type SimFoca = Foca<NodeId, BincodeCodec, SmallRng, RequestGossip>;

#[derive(Debug)]
enum Event {
    /// The node comes up with its initial view (warm-up).
    Join(usize),
    /// A datagram reaches a node's receive queue.
    Arrive(Datagram),
    /// A datagram leaves the receive queue and reaches the node's code.
    Deliver(Datagram),
    Foca(usize, foca::Timer<NodeId>),
    Sweep(usize, SweepTimer),
    ChecksDone(usize, u64),
    StartSweep,
    Die(usize),
    /// After completion: stop once no node has the request left to send.
    DrainCheck,
}

#[derive(Debug)]
struct Datagram {
    from: usize,
    to: usize,
    channel: u8,
    payload: Bytes,
    kind: Kind,
}

impl Datagram {
    /// Size on the wire: channel byte, payload, envelope.
    fn wire_len(&self) -> u64 {
        (self.payload.len() + 1 + OVERHEAD) as u64
    }
}

/// What made the core emit the effects being flushed; tells an answer's
/// first send from a retry and from a resend prompted by the backstop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Timer,
    BackstopRequest,
    Other,
}

struct SimNode {
    foca: SimFoca,
    core: SweepCore,
    inbox: mpsc::Receiver<SweepRequest>,
    alive: bool,
    slow: bool,
    failing: bool,
    rx: RxQueue,
    m: NodeMetrics,
}

/// Everything but the nodes, so a node and the world can be borrowed at once.
struct Shared {
    n: usize,
    now: Duration,
    clock: Arc<AtomicU64>,
    queue: EventQueue<Event>,
    link: LinkModel,
    net_rng: SmallRng,
    check_rng: SmallRng,
    check_min: Duration,
    check_max: Duration,
    slow_check: Duration,
    ok_outcomes: Vec<CheckOutcome>,
    failing_outcomes: Vec<CheckOutcome>,
    rt: AccumulatingRuntime<NodeId>,
    effects: Vec<Effect>,
    cause: Cause,
    /// The answer kind chosen for the current core call, once it sent one.
    round: Option<Kind>,
    sweep_started: Option<Duration>,
    /// Traffic is counted from the start of the sweep to its completion.
    counting: bool,
    /// The request has died out (or the horizon passed): stop.
    finished: bool,
    request_bytes: Option<Vec<u8>>,
    done: Option<Box<SweepDocument>>,
    done_at: Option<Duration>,
    tally: Tally,
}

pub(crate) struct World {
    settings: SimSettings,
    nodes: Vec<SimNode>,
    views: Vec<Vec<u32>>,
    ids: Vec<NodeId>,
    fates: Vec<NodeFate>,
    sh: Shared,
}

impl World {
    pub(crate) fn new(settings: &SimSettings) -> World {
        let n = settings.nodes;
        let mut rng = SmallRng::seed_from_u64(settings.seed);
        let clock = Arc::new(AtomicU64::new(BASE_UNIX_MS));
        let payload_limit = MAX_DATAGRAM - OVERHEAD - 1;
        let mut config = foca_config(size_bucket(n), payload_limit);
        if let Some(tx) = settings
            .foca
            .max_transmissions
            .and_then(std::num::NonZeroU8::new)
        {
            config.max_transmissions = tx;
        }
        if let Some(f) = settings.foca.fanout.and_then(std::num::NonZeroUsize::new) {
            config.num_indirect_probes = f;
        }
        if let (Some(every), Some(g)) =
            (settings.foca.gossip_every, config.periodic_gossip.as_mut())
        {
            g.frequency = every;
        }

        let ids: Vec<NodeId> = (0..n)
            .map(|i| NodeId {
                name: node_name(i),
                addr: addr_of(i),
                bump: 0,
                tags: Default::default(),
            })
            .collect();

        // Faults: distinct nodes, never the coordinator.
        let mut order: Vec<usize> = (1..n).collect();
        order.shuffle(&mut rng);
        let share = |s: f64| ((s * n as f64).round() as usize).min(n - 1);
        let (down, crashed, dying) = (
            share(settings.down_before),
            share(settings.crashed_before),
            share(settings.die_during),
        );
        let mut fates = vec![NodeFate::Live; n];
        let mut it = order.iter().copied();
        for i in it.by_ref().take(down) {
            fates[i] = NodeFate::DownBefore;
        }
        for i in it.by_ref().take(crashed) {
            fates[i] = NodeFate::CrashedBefore;
        }
        let die_at: Vec<(usize, Duration)> = it
            .by_ref()
            .take(dying)
            .map(|i| {
                let at = if settings.die_within.is_zero() {
                    Duration::ZERO
                } else {
                    Duration::from_nanos(rng.random_range(0..settings.die_within.as_nanos() as u64))
                };
                fates[i] = NodeFate::DiesDuring;
                (i, at)
            })
            .collect();
        let mut pick = |share: f64| {
            let mut all: Vec<usize> = (0..n).collect();
            all.shuffle(&mut rng);
            let mut flags = vec![false; n];
            for i in all.into_iter().take((share * n as f64).round() as usize) {
                flags[i] = true;
            }
            flags
        };
        let slow = pick(settings.slow);
        let failing = pick(settings.failing);

        // A symmetric random graph: every node links `view / 2` others;
        // the coordinator knows everyone.
        let mut views: Vec<Vec<u32>> = vec![Vec::new(); n];
        let links = (settings.view / 2).max(1).min(n - 1);
        for i in 1..n {
            for _ in 0..links {
                let mut j = rng.random_range(0..n - 1);
                if j >= i {
                    j += 1;
                }
                views[i].push(j as u32);
                views[j].push(i as u32);
            }
        }
        for v in views.iter_mut() {
            v.sort_unstable();
            v.dedup();
        }
        views[COORDINATOR] = (1..n as u32).collect();

        let nodes = (0..n)
            .map(|i| {
                let (tx, inbox) = mpsc::channel();
                let c = Arc::clone(&clock);
                let gossip = RequestGossip::with_clock(
                    tx,
                    Box::new(move || c.load(AtomicOrdering::Relaxed)),
                );
                let foca = Foca::with_custom_broadcast(
                    ids[i].clone(),
                    config.clone(),
                    SmallRng::seed_from_u64(mix(settings.seed, i as u64, 1)),
                    BincodeCodec,
                    gossip,
                );
                let me = Peer {
                    name: ids[i].name.clone(),
                    addr: ids[i].addr,
                    tags: ids[i].tags.clone(),
                };
                let core = SweepCore::new(
                    me,
                    "sim".to_string(),
                    settings.sweep.clone(),
                    mix(settings.seed, i as u64, 2),
                );
                SimNode {
                    foca,
                    core,
                    inbox,
                    alive: false,
                    slow: slow[i],
                    failing: failing[i],
                    rx: RxQueue::default(),
                    m: NodeMetrics::default(),
                }
            })
            .collect();

        let mut queue = EventQueue::default();
        for (i, fate) in fates.iter().enumerate() {
            if matches!(fate, NodeFate::Live | NodeFate::DiesDuring) {
                let at = if i == COORDINATOR || settings.warmup.is_zero() {
                    Duration::ZERO
                } else {
                    Duration::from_nanos(rng.random_range(0..settings.warmup.as_nanos() as u64))
                };
                queue.push(at, Event::Join(i));
            }
        }
        queue.push(settings.warmup, Event::StartSweep);
        for (i, at) in die_at {
            queue.push(settings.warmup + at, Event::Die(i));
        }

        let (ok_outcomes, failing_outcomes) = outcomes(settings.result_bytes);
        World {
            settings: settings.clone(),
            nodes,
            views,
            ids,
            fates,
            sh: Shared {
                n,
                now: Duration::ZERO,
                clock,
                queue,
                link: settings.link.clone(),
                net_rng: SmallRng::seed_from_u64(mix(settings.seed, 0, 3)),
                check_rng: SmallRng::seed_from_u64(mix(settings.seed, 0, 4)),
                check_min: settings.check_min,
                check_max: settings.check_max,
                slow_check: settings.slow_check,
                ok_outcomes,
                failing_outcomes,
                rt: AccumulatingRuntime::new(),
                effects: Vec::new(),
                cause: Cause::Other,
                round: None,
                sweep_started: None,
                counting: false,
                finished: false,
                request_bytes: None,
                done: None,
                done_at: None,
                tally: Tally::new(n),
            },
        }
    }

    pub(crate) fn run(mut self) -> super::SimReport {
        // Stop well after the deadline even if the sweep never completes
        // (that would be a bug the report then shows).
        let horizon = self.settings.warmup + self.settings.deadline + Duration::from_secs(5);
        while let Some((at, event)) = self.sh.queue.pop() {
            if at > horizon {
                break;
            }
            self.sh.now = at;
            self.sh.clock.store(
                BASE_UNIX_MS + at.as_millis() as u64,
                AtomicOrdering::Relaxed,
            );
            self.handle(event);
            if self.sh.finished {
                break;
            }
        }
        let metrics: Vec<NodeMetrics> = self.nodes.iter().map(|n| n.m.clone()).collect();
        let failing: Vec<bool> = self.nodes.iter().map(|n| n.failing).collect();
        let slow: Vec<bool> = self.nodes.iter().map(|n| n.slow).collect();
        report::build(report::Inputs {
            settings: &self.settings,
            ids: &self.ids,
            fates: &self.fates,
            failing: &failing,
            slow: &slow,
            metrics: &metrics,
            tally: &self.sh.tally,
            sweep_started: self.sh.sweep_started,
            doc: self.sh.done.as_deref(),
            completed_at: self.sh.done_at,
            events: self.sh.queue.popped(),
        })
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Join(i) => self.join(i),
            Event::Arrive(d) => self.arrive(d),
            Event::Deliver(d) => self.deliver(d),
            Event::Foca(i, timer) => {
                let node = &mut self.nodes[i];
                if node.alive {
                    let _ = node.foca.handle_timer(timer, &mut self.sh.rt);
                    flush(i, node, &mut self.sh);
                }
            }
            Event::Sweep(i, timer) => {
                let node = &mut self.nodes[i];
                if node.alive {
                    self.sh.set_cause(Cause::Timer);
                    let (now, unix) = (self.sh.now, self.sh.unix_ms());
                    node.core
                        .handle_timer(now, unix, timer, &mut self.sh.effects);
                    flush(i, node, &mut self.sh);
                    self.sh.set_cause(Cause::Other);
                }
            }
            Event::ChecksDone(i, sweep_id) => {
                let node = &mut self.nodes[i];
                if node.alive {
                    let outcomes = if node.failing {
                        self.sh.failing_outcomes.clone()
                    } else {
                        self.sh.ok_outcomes.clone()
                    };
                    let (now, unix) = (self.sh.now, self.sh.unix_ms());
                    node.core
                        .checks_done(now, unix, sweep_id, outcomes, &mut self.sh.effects);
                    flush(i, node, &mut self.sh);
                }
            }
            Event::StartSweep => self.start_sweep(),
            Event::DrainCheck => {
                let busy = self
                    .nodes
                    .iter()
                    .any(|n| n.alive && n.foca.custom_broadcast_backlog() > 0);
                if busy {
                    self.sh
                        .queue
                        .push(self.sh.now + DRAIN_CHECK, Event::DrainCheck);
                } else {
                    self.sh.finished = true;
                }
            }
            Event::Die(i) => {
                let node = &mut self.nodes[i];
                node.alive = false;
                node.m.died_at = Some(self.sh.now);
            }
        }
    }

    fn join(&mut self, i: usize) {
        let view = std::mem::take(&mut self.views[i]);
        let ids = &self.ids;
        let fates = &self.fates;
        let members = view.into_iter().map(|j| {
            let id = ids[j as usize].clone();
            if fates[j as usize] == NodeFate::DownBefore {
                Member::down(id)
            } else {
                Member::alive(id)
            }
        });
        let node = &mut self.nodes[i];
        node.alive = true;
        let _ = node.foca.apply_many(members, false, &mut self.sh.rt);
        flush(i, node, &mut self.sh);
    }

    fn start_sweep(&mut self) {
        let now = self.sh.now;
        self.sh.sweep_started = Some(now);
        self.sh.counting = true;
        let unix = self.sh.unix_ms();
        let node = &mut self.nodes[COORDINATOR];
        // The snapshot, exactly as the agent takes it.
        let members: Vec<MemberView> = node
            .foca
            .iter_membership_state()
            .map(|m| MemberView {
                peer: Peer {
                    name: m.id().name.clone(),
                    addr: m.id().addr,
                    tags: m.id().tags.clone(),
                },
                alive: m.state() != foca::State::Down,
            })
            .collect();
        let spec = StartSweep {
            selector: Selector {
                checks: Vec::new(),
                labels: Vec::new(),
                profile: Some("k8s-node".to_string()),
            },
            node_filter: Default::default(),
            deadline: self.settings.deadline,
        };
        node.m.reached_at = Some(now);
        node.core
            .start(now, unix, spec, members, &mut self.sh.effects);
        flush(COORDINATOR, node, &mut self.sh);
    }

    fn arrive(&mut self, d: Datagram) {
        let node = &mut self.nodes[d.to];
        if !node.alive {
            self.sh.tally.to_dead[d.kind as usize] += 1;
            return;
        }
        match node.rx.admit(self.sh.now, &self.sh.link) {
            None => self.sh.tally.overflow[d.kind as usize] += 1,
            Some(at) if at <= self.sh.now => self.deliver(d),
            Some(at) => self.sh.queue.push(at, Event::Deliver(d)),
        }
    }

    fn deliver(&mut self, d: Datagram) {
        let i = d.to;
        let node = &mut self.nodes[i];
        if !node.alive {
            self.sh.tally.to_dead[d.kind as usize] += 1;
            return;
        }
        let sh = &mut self.sh;
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
                know_mentioned(node, &d.payload, &self.fates, &mut sh.rt);
                let _ = node.foca.handle_data(&d.payload, &mut sh.rt);
                drain_gossip(i, node, sh);
                flush(i, node, sh);
            }
            CH_SWEEP => {
                let Ok(msg) = SweepMessage::decode(&d.payload) else {
                    sh.tally.malformed += 1;
                    return;
                };
                match &msg {
                    SweepMessage::Request(_) => {
                        node.m.receptions += 1;
                        if node.m.reached_at.is_none() {
                            node.m.reached_at = Some(sh.now);
                            node.m.reached_by_backstop = true;
                        }
                        sh.set_cause(Cause::BackstopRequest);
                    }
                    SweepMessage::Answer(chunk) => {
                        if i == COORDINATOR {
                            if let Some(from) = node_index(&chunk.node, sh.n) {
                                sh.tally.piece_arrived(
                                    from,
                                    chunk.index,
                                    chunk.count,
                                    d.kind,
                                    sh.now,
                                );
                            }
                        }
                    }
                    SweepMessage::Ack { .. } => {}
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
}

impl Shared {
    fn unix_ms(&self) -> u64 {
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
fn drain_gossip(i: usize, node: &mut SimNode, sh: &mut Shared) {
    let mut fresh = false;
    while let Ok(req) = node.inbox.try_recv() {
        fresh = true;
        if node.m.reached_at.is_none() {
            node.m.reached_at = Some(sh.now);
        }
        let (now, unix) = (sh.now, sh.unix_ms());
        node.core.handle_request(now, unix, req, &mut sh.effects);
    }
    if fresh {
        let _ = node.foca.broadcast(&mut sh.rt);
    }
    let _ = i;
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
                let _ = node.foca.broadcast(&mut sh.rt);
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
                            Cause::BackstopRequest => Kind::AnswerBackstop,
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
            let after = sh.check_time(node.slow);
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

/// `node-00042` for index 42.
pub(crate) fn node_name(i: usize) -> String {
    format!("node-{i:05}")
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

/// A seed for stream `stream` of node `i`.
fn mix(seed: u64, i: u64, stream: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream.rotate_left(48);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Check outcomes adding up to about `bytes` encoded bytes: all passing,
/// and the same with the first one failing.
fn outcomes(bytes: usize) -> (Vec<CheckOutcome>, Vec<CheckOutcome>) {
    // One outcome below encodes to about 40 bytes plus its message.
    const PER_OUTCOME: usize = 100;
    let count = bytes.div_ceil(PER_OUTCOME).max(1);
    let ok: Vec<CheckOutcome> = (0..count)
        .map(|k| CheckOutcome {
            id: format!("sim-check-{k:03}"),
            kind: "sim".to_string(),
            status: Status::Pass,
            severity: Severity::Fail,
            observed: Observed::Number(k as f64),
            expected: ">= 0".to_string(),
            message: "m".repeat(PER_OUTCOME - 40),
            duration_us: 1234,
            description: String::new(),
            remediation: String::new(),
        })
        .collect();
    let mut failing = ok.clone();
    if let Some(first) = failing.first_mut() {
        first.status = Status::Fail;
        first.observed = Observed::Number(-1.0);
    }
    (ok, failing)
}
