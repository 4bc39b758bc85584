//! What a simulation run measured, and the accounting check of the
//! finished sweep document against what the simulator knows really
//! happened. The human-readable rendering is in `render.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use patrol_agent::identity::NodeId;
use patrol_checks::{NodeState, StateCounts, SweepDocument};
use serde::Serialize;

use super::world::COORDINATOR;
use super::SimSettings;

/// Why a datagram was sent; counters are kept per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A foca packet (probes, acks, gossip, the request as a broadcast).
    Foca = 0,
    /// The request sent directly by the coordinator's backstop.
    Backstop = 1,
    /// An answer piece, first send.
    AnswerFirst = 2,
    /// An answer piece resent after the retry timer.
    AnswerRetry = 3,
    /// An answer piece resent because a backstop request came in.
    AnswerBackstop = 4,
    /// The coordinator's ack of an answer piece.
    Ack = 5,
    /// The request sent directly to every member of a small mesh, and to
    /// every relay.
    DirectSpread = 6,
    /// A relay's batch of answers to the coordinator (first send or
    /// resend).
    Batch = 7,
}

const KINDS: usize = 8;
const KIND_NAMES: [&str; KINDS] = [
    "foca",
    "backstop_request",
    "answer_first",
    "answer_retry",
    "answer_after_direct_request",
    "ack",
    "direct_spread",
    "relay_batch",
];

/// What the simulator made of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeFate {
    Live,
    DownBefore,
    CrashedBefore,
    DiesDuring,
}

/// Per node, counted from the sweep's start.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeMetrics {
    pub sent_packets: u64,
    pub sent_bytes: u64,
    pub recv_packets: u64,
    pub recv_bytes: u64,
    /// Copies of the request received (gossip and backstop).
    pub receptions: u64,
    pub reached_at: Option<Duration>,
    /// The first copy came from the backstop, not from gossip.
    pub reached_by_backstop: bool,
    /// Times the node sent (or resent) its answer.
    pub answer_rounds: u32,
    pub checks_started: bool,
    pub died_at: Option<Duration>,
    /// CPU of this node's calls from the start of the sweep to its
    /// completion: modelled with `--cpu model`, else measured thread CPU.
    pub cpu: Duration,
    /// Virtual time its CPU was busy over the same span: what was charged
    /// plus `rx_service` per datagram.
    pub busy: Duration,
    /// Most datagrams waiting in its receive queue over the same span.
    pub queue_max: usize,
    /// Datagrams its full receive queue dropped.
    pub rx_dropped: u64,
    /// Its answer body's encoded size before compact answers and now.
    pub answer_bytes: Option<(usize, usize)>,
    /// Datagrams of its answer's first send.
    pub first_pieces: u32,
}

#[derive(Debug, Clone, Default)]
struct AnswerArrival {
    pieces: Vec<bool>,
    complete: Option<(Kind, Duration)>,
}

/// Network-wide counters and the coordinator's view of answer arrivals.
#[derive(Debug)]
pub(crate) struct Tally {
    pub sent: [u64; KINDS],
    pub sent_bytes: [u64; KINDS],
    pub lost: [u64; KINDS],
    pub overflow: [u64; KINDS],
    pub to_dead: [u64; KINDS],
    pub malformed: u64,
    /// The coordinator's calls by kind ([`super::cpu::CallKind`] order):
    /// how many, and the CPU charged (or measured with `off`).
    pub coordinator_calls: [(u64, Duration); super::cpu::CALL_KINDS],
    /// Every other node's calls by kind, summed.
    pub other_calls: [(u64, Duration); super::cpu::CALL_KINDS],
    answers: Vec<AnswerArrival>,
}

impl Tally {
    pub(crate) fn new(n: usize) -> Self {
        Tally {
            sent: [0; KINDS],
            sent_bytes: [0; KINDS],
            lost: [0; KINDS],
            overflow: [0; KINDS],
            to_dead: [0; KINDS],
            malformed: 0,
            coordinator_calls: [(0, Duration::ZERO); super::cpu::CALL_KINDS],
            other_calls: [(0, Duration::ZERO); super::cpu::CALL_KINDS],
            answers: vec![AnswerArrival::default(); n],
        }
    }

    /// An answer piece reached the coordinator's code; the piece that
    /// completes a node's answer decides how the answer got through.
    pub(crate) fn piece_arrived(
        &mut self,
        node: usize,
        index: u16,
        count: u16,
        kind: Kind,
        now: Duration,
    ) {
        let Some(a) = self.answers.get_mut(node) else {
            return;
        };
        if a.complete.is_some() || index >= count {
            return;
        }
        if a.pieces.len() != usize::from(count) {
            a.pieces = vec![false; usize::from(count)];
        }
        a.pieces[usize::from(index)] = true;
        if a.pieces.iter().all(|p| *p) {
            a.complete = Some((kind, now));
        }
    }
}

pub(crate) struct Inputs<'a> {
    pub settings: &'a SimSettings,
    pub ids: &'a [NodeId],
    pub fates: &'a [NodeFate],
    pub failing: &'a [bool],
    pub slow: &'a [bool],
    pub metrics: &'a [NodeMetrics],
    pub tally: &'a Tally,
    pub sweep_started: Option<Duration>,
    pub doc: Option<&'a SweepDocument>,
    pub completed_at: Option<Duration>,
    /// When the call that completed the sweep began.
    pub settled_at: Option<Duration>,
    pub events: u64,
    /// Pair keys the coordinator derived (certificate check plus X25519).
    pub pair_keys_derived: u64,
    /// Pair keys every other node derived during the sweep.
    pub others_keys_derived: u64,
    /// The relays the coordinator named (node indices).
    pub relays: &'a [usize],
    /// Batches the relays sent the coordinator: first sends, and sends
    /// again for want of an ack (their own counters).
    pub relay_batches: (u64, u64),
}

/// Answer sizes over the nodes that answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerSizes {
    /// Median encoded answer body before compact answers (sweep protocol 4:
    /// every outcome with its texts), bytes.
    pub before_median: usize,
    /// Median compact answer body (sweep protocol 5), bytes, without the
    /// node's proof.
    pub after_median: usize,
    /// Share of answers whose first send was one datagram (proof
    /// included).
    pub one_datagram: f64,
}

/// What the relays carried, from the sweep's start to its completion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelayFigures {
    pub relays: usize,
    /// Relays that died during the sweep.
    pub died: usize,
    pub received_packets_max: u64,
    pub received_packets_median: u64,
    pub received_bytes_max: u64,
    pub received_bytes_median: u64,
    pub sent_packets_max: u64,
    pub sent_packets_median: u64,
    pub sent_bytes_max: u64,
    pub sent_bytes_median: u64,
    /// Datagrams dropped by the relays' full receive queues.
    pub queue_overflow: u64,
    /// Answers that reached the coordinator in a relay's batch.
    pub answers_relayed: u64,
    /// Batches the relays sent, first sends.
    pub batches_sent: u64,
    /// Batches sent again for want of an ack.
    pub batches_resent: u64,
}

/// What the nodes' own code cost during the sweep (its start to its
/// completion), and how busy it kept them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuFigures {
    /// How calls were charged: `model`, `measured` or `off` (see `cpu.rs`).
    pub mode: String,
    pub identities: bool,
    /// CPU of the coordinator's node calls: modelled with `model`,
    /// measured thread CPU otherwise (with `off`, measured but not
    /// charged).
    pub coordinator_ms: f64,
    /// The coordinator's calls by kind, the costliest first: kind, calls,
    /// milliseconds (as `coordinator_ms`).
    pub coordinator_by_kind: Vec<(String, u64, f64)>,
    /// Every other node's calls by kind, summed, the costliest first (as
    /// `coordinator_by_kind`).
    pub others_by_kind: Vec<(String, u64, f64)>,
    /// Mean over every other node.
    pub node_mean_us: f64,
    /// Virtual time the coordinator was busy (its calls' charges plus
    /// `rx_service` per datagram).
    pub coordinator_busy_ms: f64,
    /// That over the sweep's time (start to completion).
    pub coordinator_busy_share: f64,
    /// Most datagrams waiting in the coordinator's receive queue.
    pub coordinator_queue_max: usize,
    /// The busiest relay's busy share, and its largest queue.
    pub relay_busy_share_max: f64,
    pub relay_queue_max: usize,
    /// Peer certificates the coordinator checked and pair keys it derived.
    pub pair_keys_derived: u64,
    /// Pair keys the other nodes derived during the sweep (a node of a
    /// converged mesh derived its members' keys before: see
    /// `--converged-keys`).
    pub others_keys_derived: u64,
}

/// The run's settings, as plain numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingsEcho {
    pub nodes: usize,
    pub view: usize,
    pub latency_min_ms: f64,
    pub latency_max_ms: f64,
    pub loss: f64,
    pub rx_service_us: f64,
    pub rx_queue: usize,
    pub down_before: f64,
    pub crashed_before: f64,
    pub die_during: f64,
    pub die_within_ms: f64,
    pub slow: f64,
    pub slow_check_ms: f64,
    pub check_min_ms: f64,
    pub check_max_ms: f64,
    pub failing: f64,
    pub result_bytes: Option<usize>,
    pub relays_die: f64,
    pub deadline_ms: f64,
    pub seed: u64,
    /// foca settings actually used (after overrides).
    pub max_transmissions: u8,
    pub fanout: usize,
    pub gossip_every_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Population {
    pub nodes: usize,
    /// Up for the whole sweep.
    pub live: usize,
    pub down_before: usize,
    pub crashed_before: usize,
    pub died_during: usize,
    pub slow: usize,
    pub failing: usize,
}

/// How the request spread, over the live nodes, in ms from the start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reach {
    pub live_reached: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// `None` when some live node was never reached.
    pub p100_ms: Option<f64>,
    /// Live nodes the request first reached through the backstop.
    pub by_backstop: usize,
    /// Copies of the request each live node received, gossip and direct,
    /// until the gossip died out.
    pub receptions_mean: f64,
    pub receptions_max: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completion {
    /// The coordinator completed the sweep (every node accounted for, or
    /// the deadline), ms from the start; `None` if it never did.
    pub completed_ms: Option<f64>,
    /// The document of the completed sweep was built, ms from the start:
    /// `completed_ms` plus the completing call's CPU.
    pub document_ms: Option<f64>,
    /// The coordinator completed before the deadline: every expected node
    /// answered or was known down.
    pub before_deadline: bool,
    /// Last answer piece in at the coordinator, ms from the start.
    pub last_answer_ms: Option<f64>,
    pub deadline_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerFigures {
    /// Nodes listed `ok` or `failing`.
    pub answered: u64,
    /// Answers that got through on their first send.
    pub first_send: u64,
    /// Answers whose first send was lost and that got through on a resend
    /// after the retry timer.
    pub recovered_by_retry: u64,
    /// ... on a resend prompted by the coordinator's backstop request.
    pub recovered_by_backstop: u64,
    pub answer_packets_sent: u64,
    /// Answer pieces lost on the way (loss, full receive queue).
    pub answer_packets_lost: u64,
    pub acks_sent: u64,
    pub acks_lost: u64,
    pub backstop_requests_sent: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrafficFigures {
    /// Per node (up at the start, coordinator excluded), from the start of
    /// the sweep to its completion; wire size incl. channel byte and
    /// envelope.
    pub packets_sent_mean: f64,
    pub packets_sent_max: u64,
    pub bytes_sent_mean: f64,
    pub bytes_sent_max: u64,
    pub coordinator_received_packets: u64,
    pub coordinator_received_bytes: u64,
    pub coordinator_sent_packets: u64,
    pub coordinator_sent_bytes: u64,
    pub total_packets: u64,
    pub total_bytes: u64,
    /// Datagrams lost at random, dropped by a full receive queue, or sent
    /// to a dead node.
    pub lost: u64,
    /// Datagrams dropped by a full receive queue, at any node.
    pub queue_overflow: u64,
    /// ... at the coordinator.
    pub coordinator_queue_overflow: u64,
    pub to_dead_nodes: u64,
    /// Packets sent, by kind.
    pub packets_by_kind: BTreeMap<String, u64>,
}

/// The finished document checked against what really happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accounting {
    /// Every expected node listed exactly once, in a state that matches
    /// its fate, every live node answered, and the counts add up.
    pub ok: bool,
    pub problem_count: usize,
    /// The first problems found (at most 20).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    pub settings: SettingsEcho,
    pub population: Population,
    pub reach: Reach,
    pub completion: Completion,
    pub answers: AnswerFigures,
    pub traffic: TrafficFigures,
    pub states: StateCounts,
    pub accounting: Accounting,
    pub cpu: CpuFigures,
    pub sizes: AnswerSizes,
    pub relays: RelayFigures,
    /// Events the simulator handled.
    pub events: u64,
}

fn ms(d: Duration) -> f64 {
    (d.as_nanos() as f64 / 1e4).round() / 100.0
}

pub(crate) fn build(inp: Inputs<'_>) -> SimReport {
    let s = inp.settings;
    let n = s.nodes;
    let start = inp.sweep_started.unwrap_or_default();
    let since = |t: Duration| ms(t.saturating_sub(start));
    let t = inp.tally;

    let count_fate = |f: NodeFate| inp.fates.iter().filter(|x| **x == f).count();
    let live: Vec<usize> = (0..n).filter(|&i| inp.fates[i] == NodeFate::Live).collect();
    let population = Population {
        nodes: n,
        live: live.len(),
        down_before: count_fate(NodeFate::DownBefore),
        crashed_before: count_fate(NodeFate::CrashedBefore),
        died_during: inp.metrics.iter().filter(|m| m.died_at.is_some()).count(),
        slow: inp.slow.iter().filter(|x| **x).count(),
        failing: inp.failing.iter().filter(|x| **x).count(),
    };

    let mut reached: Vec<Duration> = live
        .iter()
        .filter_map(|&i| inp.metrics[i].reached_at)
        .map(|at| at.saturating_sub(start))
        .collect();
    reached.sort_unstable();
    let rank = |p: usize| -> Option<f64> {
        let r = (live.len() * p).div_ceil(100).max(1);
        reached.get(r - 1).map(|d| ms(*d))
    };
    let receptions: Vec<u64> = live.iter().map(|&i| inp.metrics[i].receptions).collect();
    let reach = Reach {
        live_reached: reached.len(),
        p50_ms: rank(50),
        p99_ms: rank(99),
        p100_ms: if reached.len() == live.len() {
            rank(100)
        } else {
            None
        },
        by_backstop: live
            .iter()
            .filter(|&&i| inp.metrics[i].reached_by_backstop)
            .count(),
        receptions_mean: mean(&receptions),
        receptions_max: receptions.iter().copied().max().unwrap_or(0),
    };

    let deadline_ms = ms(s.deadline);
    let completed_ms = inp.settled_at.or(inp.completed_at).map(since);
    let document_ms = inp.completed_at.map(since);
    let last_answer = t
        .answers
        .iter()
        .filter_map(|a| a.complete.map(|(_, at)| at))
        .max();
    let completion = Completion {
        completed_ms,
        document_ms,
        before_deadline: completed_ms.is_some_and(|c| c + 0.5 < deadline_ms),
        last_answer_ms: last_answer.map(since),
        deadline_ms,
    };

    let by = |k: Kind| {
        t.answers
            .iter()
            .filter(|a| a.complete.is_some_and(|(kind, _)| kind == k))
            .count() as u64
    };
    let answer_kinds = [Kind::AnswerFirst, Kind::AnswerRetry, Kind::AnswerBackstop];
    let sum =
        |arr: &[u64; KINDS], kinds: &[Kind]| kinds.iter().map(|k| arr[*k as usize]).sum::<u64>();
    let dropped =
        |kinds: &[Kind]| sum(&t.lost, kinds) + sum(&t.overflow, kinds) + sum(&t.to_dead, kinds);
    let doc_answered = inp.doc.map(|d| d.counts.ok + d.counts.failing).unwrap_or(0);
    let answers = AnswerFigures {
        answered: doc_answered,
        // The coordinator's own answer never crosses the network.
        first_send: by(Kind::AnswerFirst) + u64::from(inp.doc.is_some()),
        recovered_by_retry: by(Kind::AnswerRetry),
        recovered_by_backstop: by(Kind::AnswerBackstop),
        answer_packets_sent: sum(&t.sent, &answer_kinds),
        answer_packets_lost: dropped(&answer_kinds),
        acks_sent: t.sent[Kind::Ack as usize],
        acks_lost: dropped(&[Kind::Ack]),
        backstop_requests_sent: t.sent[Kind::Backstop as usize],
    };

    let senders: Vec<&NodeMetrics> = (0..n)
        .filter(|&i| {
            i != COORDINATOR && matches!(inp.fates[i], NodeFate::Live | NodeFate::DiesDuring)
        })
        .map(|i| &inp.metrics[i])
        .collect();
    let packets: Vec<u64> = senders.iter().map(|m| m.sent_packets).collect();
    let bytes: Vec<u64> = senders.iter().map(|m| m.sent_bytes).collect();
    let c = &inp.metrics[COORDINATOR];
    let all = |arr: &[u64; KINDS]| arr.iter().sum::<u64>();
    let traffic = TrafficFigures {
        packets_sent_mean: mean(&packets),
        packets_sent_max: packets.iter().copied().max().unwrap_or(0),
        bytes_sent_mean: mean(&bytes),
        bytes_sent_max: bytes.iter().copied().max().unwrap_or(0),
        coordinator_received_packets: c.recv_packets,
        coordinator_received_bytes: c.recv_bytes,
        coordinator_sent_packets: c.sent_packets,
        coordinator_sent_bytes: c.sent_bytes,
        total_packets: all(&t.sent),
        total_bytes: all(&t.sent_bytes),
        lost: all(&t.lost),
        queue_overflow: all(&t.overflow),
        coordinator_queue_overflow: c.rx_dropped,
        to_dead_nodes: all(&t.to_dead),
        packets_by_kind: KIND_NAMES
            .iter()
            .zip(t.sent.iter())
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
    };

    // Busy time over the sweep's time, to three places.
    let span = inp.completed_at.map(|c| c.saturating_sub(start));
    let share = |busy: Duration| match span {
        Some(span) if !span.is_zero() => {
            (busy.as_secs_f64() / span.as_secs_f64() * 1000.0).round() / 1000.0
        }
        _ => 0.0,
    };
    let accounting = check(&inp);
    let states = inp.doc.map(|d| d.counts.clone()).unwrap_or_default();
    let config = patrol_core::membership::foca_config(
        patrol_core::membership::size_bucket(n),
        s.node.foca_payload(),
        &s.node.foca,
    );
    let gossip_every = config
        .periodic_gossip
        .as_ref()
        .map(|g| g.frequency)
        .unwrap_or_default();
    SimReport {
        settings: SettingsEcho {
            nodes: n,
            view: s.view,
            latency_min_ms: ms(s.link.latency_min),
            latency_max_ms: ms(s.link.latency_max),
            loss: s.link.loss,
            rx_service_us: s.link.rx_service.as_nanos() as f64 / 1000.0,
            rx_queue: s.link.rx_queue,
            down_before: s.down_before,
            crashed_before: s.crashed_before,
            die_during: s.die_during,
            die_within_ms: ms(s.die_within),
            slow: s.slow,
            slow_check_ms: ms(s.slow_check),
            check_min_ms: ms(s.check_min),
            check_max_ms: ms(s.check_max),
            failing: s.failing,
            result_bytes: s.result_bytes,
            relays_die: s.relays_die,
            deadline_ms,
            seed: s.seed,
            max_transmissions: config.max_transmissions.get(),
            fanout: config.num_indirect_probes.get(),
            gossip_every_ms: ms(gossip_every),
        },
        population,
        reach,
        completion,
        answers,
        traffic,
        states,
        accounting,
        cpu: CpuFigures {
            mode: s.cpu.name().to_string(),
            coordinator_busy_ms: inp.metrics[COORDINATOR].busy.as_secs_f64() * 1e3,
            coordinator_busy_share: share(inp.metrics[COORDINATOR].busy),
            coordinator_queue_max: inp.metrics[COORDINATOR].queue_max,
            relay_busy_share_max: inp
                .relays
                .iter()
                .map(|&r| share(inp.metrics[r].busy))
                .fold(0.0, f64::max),
            relay_queue_max: inp
                .relays
                .iter()
                .map(|&r| inp.metrics[r].queue_max)
                .max()
                .unwrap_or(0),
            identities: s.identities,
            coordinator_ms: inp.metrics[0].cpu.as_secs_f64() * 1e3,
            coordinator_by_kind: by_kind(&inp.tally.coordinator_calls),
            others_by_kind: by_kind(&inp.tally.other_calls),
            node_mean_us: if n > 1 {
                inp.metrics[1..]
                    .iter()
                    .map(|m| m.cpu.as_secs_f64())
                    .sum::<f64>()
                    / (n - 1) as f64
                    * 1e6
            } else {
                0.0
            },
            pair_keys_derived: inp.pair_keys_derived,
            others_keys_derived: inp.others_keys_derived,
        },
        sizes: sizes(&inp),
        relays: relay_figures(&inp),
        events: inp.events,
    }
}

fn sizes(inp: &Inputs<'_>) -> AnswerSizes {
    let answered: Vec<&NodeMetrics> = inp
        .metrics
        .iter()
        .filter(|m| m.answer_bytes.is_some())
        .collect();
    let mut before: Vec<u64> = answered
        .iter()
        .filter_map(|m| m.answer_bytes.map(|b| b.0 as u64))
        .collect();
    let mut after: Vec<u64> = answered
        .iter()
        .filter_map(|m| m.answer_bytes.map(|b| b.1 as u64))
        .collect();
    let sent: Vec<u32> = answered
        .iter()
        .map(|m| m.first_pieces)
        .filter(|p| *p > 0)
        .collect();
    AnswerSizes {
        before_median: median(&mut before) as usize,
        after_median: median(&mut after) as usize,
        one_datagram: if sent.is_empty() {
            0.0
        } else {
            sent.iter().filter(|p| **p == 1).count() as f64 / sent.len() as f64
        },
    }
}

fn relay_figures(inp: &Inputs<'_>) -> RelayFigures {
    let ms: Vec<&NodeMetrics> = inp.relays.iter().map(|&i| &inp.metrics[i]).collect();
    let pick = |f: &dyn Fn(&NodeMetrics) -> u64| {
        let mut v: Vec<u64> = ms.iter().map(|m| f(m)).collect();
        (v.iter().copied().max().unwrap_or(0), median(&mut v))
    };
    let (received_packets_max, received_packets_median) = pick(&|m| m.recv_packets);
    let (received_bytes_max, received_bytes_median) = pick(&|m| m.recv_bytes);
    let (sent_packets_max, sent_packets_median) = pick(&|m| m.sent_packets);
    let (sent_bytes_max, sent_bytes_median) = pick(&|m| m.sent_bytes);
    RelayFigures {
        relays: ms.len(),
        died: ms.iter().filter(|m| m.died_at.is_some()).count(),
        received_packets_max,
        received_packets_median,
        received_bytes_max,
        received_bytes_median,
        sent_packets_max,
        sent_packets_median,
        sent_bytes_max,
        sent_bytes_median,
        queue_overflow: ms.iter().map(|m| m.rx_dropped).sum(),
        answers_relayed: inp
            .tally
            .answers
            .iter()
            .filter(|a| a.complete.is_some_and(|(k, _)| k == Kind::Batch))
            .count() as u64,
        batches_sent: inp.relay_batches.0,
        batches_resent: inp.relay_batches.1,
    }
}

/// The median (lower middle) of `v`, 0 when empty; sorts `v`.
fn median(v: &mut [u64]) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[(v.len() - 1) / 2]
}

fn mean(v: &[u64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let m = v.iter().sum::<u64>() as f64 / v.len() as f64;
    (m * 100.0).round() / 100.0
}

/// Check the document against the truth.
fn check(inp: &Inputs<'_>) -> Accounting {
    let mut problems = Vec::new();
    let Some(doc) = inp.doc else {
        return Accounting {
            ok: false,
            problem_count: 1,
            problems: vec!["the sweep never completed".to_string()],
        };
    };
    let n = inp.ids.len();
    let mut seen = vec![0u32; n];
    for entry in &doc.nodes {
        let Some(i) = entry
            .name
            .strip_prefix("node-")
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|i| *i < n && inp.ids[*i].name == entry.name)
        else {
            problems.push(format!("unknown node {} listed", entry.name));
            continue;
        };
        seen[i] += 1;
        if entry.late_joiner {
            problems.push(format!("{} listed as a late joiner", entry.name));
        }
        let answered = matches!(entry.state, NodeState::Ok | NodeState::Failing);
        if answered {
            let want = if inp.failing[i] {
                NodeState::Failing
            } else {
                NodeState::Ok
            };
            if entry.state != want {
                problems.push(format!(
                    "{} listed {} but reported {}",
                    entry.name,
                    entry.state.as_str(),
                    want.as_str()
                ));
            }
        }
        match inp.fates[i] {
            NodeFate::Live if !answered => problems.push(format!(
                "{} was up the whole sweep but is listed {}",
                entry.name,
                entry.state.as_str()
            )),
            NodeFate::DownBefore if entry.state != NodeState::Down => problems.push(format!(
                "{} was known down before the sweep but is listed {}",
                entry.name,
                entry.state.as_str()
            )),
            NodeFate::CrashedBefore if answered => problems.push(format!(
                "{} crashed before the sweep but is listed {}",
                entry.name,
                entry.state.as_str()
            )),
            _ => {}
        }
    }
    for (i, count) in seen.iter().enumerate() {
        match count {
            1 => {}
            0 => problems.push(format!("{} is missing from the result", inp.ids[i].name)),
            k => problems.push(format!("{} is listed {k} times", inp.ids[i].name)),
        }
    }
    if let Err(e) = doc.check_accounting() {
        problems.push(e.to_string());
    }
    let c = &doc.counts;
    if c.expected != n as u64 {
        problems.push(format!(
            "counts do not add up: expected {} (of {n}), ok {} + failing {} + no_answer {} + down {}",
            c.expected, c.ok, c.failing, c.no_answer, c.down
        ));
    }
    let problem_count = problems.len();
    problems.truncate(20);
    Accounting {
        ok: problem_count == 0,
        problem_count,
        problems,
    }
}

/// Calls by kind, the costliest first, kinds never called left out.
fn by_kind(calls: &[(u64, Duration); super::cpu::CALL_KINDS]) -> Vec<(String, u64, f64)> {
    let mut rows: Vec<(String, u64, f64)> = super::cpu::CallKind::ALL
        .iter()
        .zip(calls)
        .filter(|(_, (n, _))| *n > 0)
        .map(|(k, (n, d))| (k.name().to_string(), *n, d.as_secs_f64() * 1e3))
        .collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    rows
}
