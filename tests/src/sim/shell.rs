//! The simulator's shell around each node: what the agent's owner task does
//! with sockets and tokio, done with the virtual-time event queue. It hands
//! the shipped [`Node`] its datagrams, timers and finished checks, carries
//! out the node's outputs, and counts. Every decision is the node's.
//!
//! Every call into the node is charged (`cpu.rs`): it returns the CPU it
//! costs, and its outputs leave when that time has passed.
//!
//! Two things are the simulator's own: `view::know_mentioned` stands in for
//! the full member list a real node holds (never charged), and check
//! durations are drawn here (a check cut by the node's budget ends as
//! `error`, so the node reports failing, as the agent's inspector would).

use bytes::Bytes;
use foca::Member;
use patrol_checks::{CheckOutcome, SweepDocument};
use patrol_core::identity::NodeId;
use patrol_core::node::{Channel, DatagramKind, NodeTimer};
use patrol_core::sweep::{StartSweep, SweepMessage};
use patrol_core::{Node, Now, Output};
use rand::rngs::SmallRng;
use rand::RngExt;
use std::time::Duration;

use super::cpu::{thread_cpu, CallKind, CallSample, CpuMode, Units};
use super::network::{addr_of, index_of, EventQueue, LinkModel, Server};
use super::report::{Kind, NodeFate, NodeMetrics, Tally};
use super::view;
use super::world::{Datagram, Event, BASE_UNIX_MS, COORDINATOR};

/// What made the node emit the outputs being carried out; tells a direct
/// spread from a backstop request, and an answer's first send from a retry
/// and from a resend prompted by the backstop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    Start,
    Timer,
    DirectRequest,
    Other,
}

pub(super) struct SimNode {
    pub node: Node,
    pub alive: bool,
    pub slow: bool,
    /// Reports a failing check (configured, or a check cut by the budget).
    pub failing: bool,
    /// A relay of the sweep (set when the coordinator names them).
    pub relay: bool,
    /// The node's CPU and its receive queue.
    pub cpu: Server<super::world::Work>,
    pub m: NodeMetrics,
}

/// Everything but the nodes, so a node and the world can be borrowed at once.
pub(super) struct Shared {
    pub n: usize,
    pub now: Duration,
    pub queue: EventQueue<Event>,
    pub link: LinkModel,
    pub net_rng: SmallRng,
    pub check_rng: SmallRng,
    pub check_min: Duration,
    pub check_max: Duration,
    pub slow_check: Duration,
    pub answers: super::world::AnswerModel,
    /// The relays the coordinator named (node indices).
    pub relays: Vec<usize>,
    pub cause: Cause,
    /// The answer kind chosen for the current call, once it sent one.
    pub round: Option<Kind>,
    pub sweep_started: Option<Duration>,
    /// Traffic is counted from the start of the sweep to its completion.
    pub counting: bool,
    /// The request has died out (or the horizon passed): stop.
    pub finished: bool,
    pub done: Option<Box<SweepDocument>>,
    pub done_at: Option<Duration>,
    /// When the call that completed the sweep began: every node was
    /// accounted for then; `done_at` adds the document's build.
    pub settled_at: Option<Duration>,
    pub tally: Tally,
    /// How node calls are charged.
    pub cpu: CpuMode,
    /// The thread CPU clock's own cost, taken off every measured call.
    pub clock_overhead: Duration,
    /// With `measured`, for calibration: every call measured.
    pub samples: Option<Vec<CallSample>>,
}

impl Shared {
    pub fn at(&self) -> Now {
        Now {
            mono: self.now,
            unix_ms: BASE_UNIX_MS + self.now.as_millis() as u64,
        }
    }

    fn send(
        &mut self,
        from: usize,
        node: &mut SimNode,
        to: std::net::SocketAddr,
        bytes: Vec<u8>,
        kind: Kind,
    ) {
        let Some(to) = index_of(to, self.n) else {
            self.tally.malformed += 1;
            return;
        };
        let d = Datagram {
            from,
            to,
            bytes: Bytes::from(bytes),
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

/// The node comes up knowing `members` (no broadcast: the mesh knows).
pub(super) fn join(
    i: usize,
    node: &mut SimNode,
    sh: &mut Shared,
    members: impl Iterator<Item = Member<NodeId>>,
) {
    node.alive = true;
    learn(i, node, sh, members);
}

/// The node learns of `members` without telling anyone (set-up: never
/// charged).
pub(super) fn learn(
    i: usize,
    node: &mut SimNode,
    sh: &mut Shared,
    members: impl Iterator<Item = Member<NodeId>>,
) {
    node.node.learn_members(sh.at(), members);
    let outputs = std::iter::from_fn(|| node.node.next_output()).collect();
    carry_out(i, node, sh, outputs);
}

/// The coordinator starts the sweep; returns its id and the CPU charged.
pub(super) fn start_sweep(
    node: &mut SimNode,
    sh: &mut Shared,
    spec: StartSweep,
) -> (u64, Duration) {
    node.m.reached_at = Some(sh.now);
    sh.cause = Cause::Start;
    let mut id = Err(None);
    let cost = charged(
        COORDINATOR,
        node,
        sh,
        CallKind::StartSweep,
        Units::default(),
        |n, at| id = n.start_sweep(at, spec).map_err(Some),
    );
    match id {
        Ok(id) => (id, cost),
        Err(e) => panic!("the simulated coordinator refused its sweep: {e:?}"),
    }
}

/// The coordinator snapshots the expected set of the sweep it just
/// started (its request already sent); returns the CPU charged.
pub(super) fn snapshot(node: &mut SimNode, sh: &mut Shared) -> Duration {
    sh.cause = Cause::Start;
    charged(
        COORDINATOR,
        node,
        sh,
        CallKind::SweepSnapshot,
        Units::default(),
        |n, at| n.snapshot_sweeps(at),
    )
}

/// A timer is due; returns the CPU charged.
pub(super) fn timer(i: usize, node: &mut SimNode, sh: &mut Shared, t: NodeTimer) -> Duration {
    use foca::Timer;
    sh.cause = Cause::Timer;
    let kind = match &t {
        NodeTimer::Foca(Timer::ProbeRandomMember(_) | Timer::SendIndirectProbe { .. }) => {
            CallKind::ProbeTimer
        }
        NodeTimer::Foca(Timer::PeriodicGossip(_)) => CallKind::GossipTimer,
        NodeTimer::Foca(_) | NodeTimer::Rejoin => CallKind::OtherTimer,
        NodeTimer::Sweep(_) if i == COORDINATOR => CallKind::CoordinatorTimer,
        NodeTimer::Sweep(_) if node.relay => CallKind::RelayTimer,
        NodeTimer::Sweep(_) => CallKind::SweepTimer,
    };
    charged(i, node, sh, kind, Units::default(), |n, at| n.timer(at, t))
}

/// The node's checks finished; returns the CPU charged.
pub(super) fn checks_done(
    i: usize,
    node: &mut SimNode,
    sh: &mut Shared,
    sweep_id: u64,
) -> Duration {
    let outcomes = sh.answers.draw(node.failing, &mut sh.check_rng);
    node.m.answer_bytes = Some(answer_sizes(&outcomes));
    sh.cause = Cause::Other;
    let units = Units {
        answers: outcomes.len() as u32,
        ..Units::default()
    };
    charged(i, node, sh, CallKind::ChecksDone, units, |n, at| {
        n.checks_done(at, sweep_id, outcomes)
    })
}

/// Make one call into node `i`, charge it (`cpu.rs`), and carry out its
/// outputs once the charge has passed. Returns the charge.
fn charged(
    i: usize,
    node: &mut SimNode,
    sh: &mut Shared,
    kind: CallKind,
    mut units: Units,
    call: impl FnOnce(&mut Node, Now),
) -> Duration {
    let at = sh.at();
    let measure = !matches!(sh.cpu, CpuMode::Model(_));
    let before = if measure {
        thread_cpu()
    } else {
        Duration::ZERO
    };
    call(&mut node.node, at);
    let measured = if measure {
        thread_cpu()
            .saturating_sub(before)
            .saturating_sub(sh.clock_overhead)
    } else {
        Duration::ZERO
    };
    let outputs: Vec<Output> = std::iter::from_fn(|| node.node.next_output()).collect();
    let mut kind = kind;
    for o in &outputs {
        match o {
            Output::Datagram { bytes, .. } => {
                units.out_datagrams += 1;
                units.out_bytes += bytes.len() as u32;
            }
            Output::Completed { document, .. } => {
                kind = CallKind::SweepDocument;
                units.answers = document.nodes.len() as u32;
                sh.settled_at = Some(sh.now);
            }
            _ => {}
        }
    }
    units.members = node.node.num_members() as u32;
    let (cost, spent) = match &sh.cpu {
        CpuMode::Model(model) => {
            let cost = model.cost(kind, &units);
            (cost, cost)
        }
        CpuMode::Measured => (measured, measured),
        CpuMode::Off => (Duration::ZERO, measured),
    };
    if let Some(samples) = sh.samples.as_mut() {
        samples.push(CallSample {
            kind,
            units,
            nanos: measured.as_nanos() as u64,
            coordinator: i == COORDINATOR,
        });
    }
    if sh.counting {
        node.m.cpu += spent;
        let calls = if i == COORDINATOR {
            &mut sh.tally.coordinator_calls
        } else {
            &mut sh.tally.other_calls
        };
        let kind = &mut calls[kind as usize];
        kind.0 += 1;
        kind.1 += spent;
    }
    let start = sh.now;
    sh.now = start + cost;
    carry_out(i, node, sh, outputs);
    sh.now = start;
    cost
}

/// A datagram reached the node's code; returns the CPU charged.
pub(super) fn datagram(
    i: usize,
    node: &mut SimNode,
    sh: &mut Shared,
    d: Datagram,
    fates: &[NodeFate],
    certs: Option<&[patrol_core::trust::CompactCert]>,
) -> Duration {
    if sh.counting {
        node.m.recv_packets += 1;
        node.m.recv_bytes += d.wire_len();
    }
    sh.cause = Cause::Other;
    let body = &d.bytes[1..];
    let mut kind = CallKind::OtherDatagram;
    let mut answers = 0;
    match Channel::from_byte(d.bytes[0]) {
        Some(Channel::Foca) => {
            kind = CallKind::FocaDatagram;
            view::know_mentioned(&mut node.node, sh.at(), body, fates, certs);
        }
        Some(Channel::Sweep) => match SweepMessage::decode(body) {
            Ok(SweepMessage::Request(_)) => {
                kind = CallKind::RequestDatagram;
                sh.cause = Cause::DirectRequest;
            }
            Ok(SweepMessage::Answer(chunk)) => {
                answers = 1;
                kind = CallKind::RelayAnswer;
                if i == COORDINATOR {
                    kind = CallKind::CoordinatorAnswer;
                    if let Some(from) = node_index(&chunk.node, sh.n) {
                        sh.tally
                            .piece_arrived(from, chunk.index, chunk.count, d.kind, sh.now);
                    }
                }
            }
            Ok(SweepMessage::Batch(batch)) => {
                kind = CallKind::BatchDatagram;
                for node in batch.groups.iter().flat_map(|g| &g.nodes) {
                    answers += 1;
                    if i != COORDINATOR {
                        continue;
                    }
                    if let Some(from) = node_index(&node.node, sh.n) {
                        sh.tally.piece_arrived(from, 0, 1, Kind::Batch, sh.now);
                    }
                }
            }
            Ok(SweepMessage::Ack { .. }) => kind = CallKind::AnswerAck,
            Ok(SweepMessage::BatchAck { .. }) => kind = CallKind::BatchAck,
            Err(_) => sh.tally.malformed += 1,
        },
        _ => sh.tally.malformed += 1,
    }
    let units = Units {
        in_bytes: d.bytes.len() as u32,
        answers,
        ..Units::default()
    };
    let from = addr_of(d.from);
    let by_backstop = d.kind == Kind::Backstop;
    let cost = charged(i, node, sh, kind, units, |n, at| {
        n.datagram(at, from, &d.bytes)
    });
    if node.m.reached_at.is_none() && node.node.stats().request_copies > 0 {
        node.m.reached_at = Some(sh.now);
        node.m.reached_by_backstop = by_backstop;
    }
    cost
}

/// Do what the node asked for, until it asks for nothing more.
fn carry_out(i: usize, node: &mut SimNode, sh: &mut Shared, outputs: Vec<Output>) {
    sh.round = None;
    for output in outputs {
        match output {
            Output::Datagram { to, bytes, kind } => {
                let kind = classify(node, sh, kind);
                sh.send(i, node, to, bytes, kind);
            }
            Output::Timer { after, timer } => sh.queue.push(sh.now + after, Event::Timer(i, timer)),
            Output::RunChecks {
                sweep_id, budget, ..
            } => {
                node.m.checks_started = true;
                let mut after = sh.check_time(node.slow);
                if after > budget {
                    // The agent cuts every check's timeout to the budget;
                    // the cut check ends as `error`.
                    after = budget;
                    node.failing = true;
                }
                sh.queue
                    .push(sh.now + after, Event::ChecksDone(i, sweep_id));
            }
            Output::Completed { document, .. } => {
                sh.done = Some(Box::new(document.to_document()));
                sh.done_at = Some(sh.now);
                sh.counting = false;
                // Keep going until the request dies out, to count every copy.
                sh.queue.push(sh.now, Event::DrainCheck);
            }
            Output::Progress { .. }
            | Output::Member(_)
            | Output::Audit(_)
            | Output::RosterAudit { .. } => {}
        }
    }
}

/// The simulator's finer kind of a datagram, from the node's kind and the
/// call that produced it.
fn classify(node: &mut SimNode, sh: &mut Shared, kind: DatagramKind) -> Kind {
    let kind = match kind {
        DatagramKind::Foca | DatagramKind::Leave | DatagramKind::Cert => Kind::Foca,
        DatagramKind::Ack => Kind::Ack,
        DatagramKind::Batch => Kind::Batch,
        DatagramKind::Request if sh.cause == Cause::Start => Kind::DirectSpread,
        DatagramKind::Request => Kind::Backstop,
        DatagramKind::Answer => match sh.round {
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
    if kind == Kind::AnswerFirst {
        node.m.first_pieces += 1;
    }
    kind
}

/// Encoded size of an answer body with `outcomes`, before compact answers
/// (sweep protocol 4: every outcome whole) and now, without the node's proof.
fn answer_sizes(outcomes: &[CheckOutcome]) -> (usize, usize) {
    let cfg = bincode::config::standard();
    let tags = std::collections::BTreeMap::<String, String>::new();
    let now = BASE_UNIX_MS;
    let before =
        bincode::serde::encode_to_vec((&tags, now, 50u64, outcomes), cfg).map_or(0, |v| v.len());
    let after = patrol_core::sweep::AnswerBody::compact(tags, now, 50, outcomes.to_vec())
        .encode()
        .len();
    (before, after)
}

fn node_index(name: &str, n: usize) -> Option<usize> {
    let i: usize = name.strip_prefix("node-")?.parse().ok()?;
    (i < n).then_some(i)
}
