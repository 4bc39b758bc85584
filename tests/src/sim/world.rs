//! The simulated world: node set-up (faults, partial views, timers out of
//! phase), the event loop in virtual time, and delivery of datagrams
//! through the link model and each node's CPU (`network::Server`) to its
//! shell (`shell.rs`).

use patrol_core::trust::authorization::SweepAsk;
use patrol_core::trust::testing::{bundle, ca_with, issued};
use patrol_core::trust::{Authorization, CompactCert, Credentials, Role, Scope, SigningKey};
use std::time::Duration;

use bytes::Bytes;
use foca::Member;
use patrol_agent::envelope::OVERHEAD;
use patrol_checks::{CheckOutcome, Observed, Selector, Severity, Status};
use patrol_core::identity::NodeId;
use patrol_core::node::NodeTimer;
use patrol_core::sweep::StartSweep;
use patrol_core::Now;
use patrol_core::{Node, NodeSettings};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use super::cpu::{self, CallSample, CpuMode};
use super::network::{addr_of, index_of, Admission, EventQueue, Server};
use super::report::{self, Kind, NodeFate, NodeMetrics, Tally};
use super::shell::{self, Cause, Shared, SimNode};
use super::SimSettings;

/// Unix time of virtual time zero (any fixed value; only differences count).
pub(super) const BASE_UNIX_MS: u64 = 1_800_000_000_000;

/// How often the end of the request's gossip is checked for.
const DRAIN_CHECK: Duration = Duration::from_millis(50);

/// Index of the coordinating node.
pub(crate) const COORDINATOR: usize = 0;

#[derive(Debug)]
pub(super) enum Event {
    /// The node comes up with its initial view (warm-up).
    Join(usize),
    /// A datagram reaches a node's receive queue.
    Arrive(Datagram),
    Timer(usize, NodeTimer),
    ChecksDone(usize, u64),
    StartSweep,
    /// Node `i` is done with what it was serving: the next work in.
    Free(usize),
    Die(usize),
    /// After completion: stop once no node has the request left to send.
    DrainCheck,
}

/// Work for a node's CPU.
#[derive(Debug)]
pub(super) enum Work {
    Datagram(Datagram),
    Timer(NodeTimer),
    ChecksDone(u64),
    StartSweep,
}

#[derive(Debug)]
pub(super) struct Datagram {
    pub from: usize,
    pub to: usize,
    /// The node's plaintext: channel byte, then the payload.
    pub bytes: Bytes,
    pub kind: Kind,
}

impl Datagram {
    /// Size on the wire: the plaintext plus the envelope (sealing is not
    /// performed, only counted).
    pub fn wire_len(&self) -> u64 {
        (self.bytes.len() + OVERHEAD) as u64
    }
}

pub(crate) struct World {
    settings: SimSettings,
    nodes: Vec<SimNode>,
    views: Vec<Vec<u32>>,
    ids: Vec<NodeId>,
    fates: Vec<NodeFate>,
    sh: Shared,
    /// With identities: the operator who signs the sweep.
    operator: Option<Credentials>,
    /// With `converged_keys`: every node's certificate, by index, which a
    /// node takes (with its pair key) for each member a packet mentions.
    certs: Option<Vec<CompactCert>>,
    /// Pair keys the coordinator had derived when the sweep started.
    keys_before: u64,
    /// Pair keys every other node had derived then.
    others_keys_before: u64,
}

impl World {
    pub(crate) fn new(settings: &SimSettings) -> World {
        let n = settings.nodes;
        let mut rng = SmallRng::seed_from_u64(settings.seed);
        let node_settings = NodeSettings {
            cluster: "sim".to_string(),
            cluster_size_hint: Some(n),
            ..settings.node.clone()
        };
        let start = Now {
            mono: Duration::ZERO,
            unix_ms: BASE_UNIX_MS,
        };

        let ids: Vec<NodeId> = (0..n)
            .map(|i| {
                NodeId::new(
                    node_name(i),
                    addr_of(i),
                    0,
                    patrol_core::tags::Tags::default(),
                )
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

        let mut nodes: Vec<SimNode> = (0..n)
            .map(|i| SimNode {
                node: Node::new(
                    ids[i].clone(),
                    node_settings.clone(),
                    mix(settings.seed, i as u64, 1),
                    start,
                ),
                alive: false,
                slow: slow[i],
                failing: failing[i],
                relay: false,
                cpu: Server::default(),
                m: NodeMetrics::default(),
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

        let answers = match settings.result_bytes {
            Some(bytes) => AnswerModel::synthetic(bytes),
            None => AnswerModel::k8s_node(),
        };

        let mut ids = ids;
        let made = settings.identities.then(|| {
            identities(
                &mut nodes,
                &mut ids,
                &views,
                settings.seed,
                settings.warm_keys,
                !settings.cold_keys,
                settings.converged_keys,
            )
        });
        let (operator, certs) = match made {
            Some((operator, certs)) => (Some(operator), settings.converged_keys.then_some(certs)),
            None => (None, None),
        };
        World {
            operator,
            certs,
            keys_before: 0,
            others_keys_before: 0,
            settings: settings.clone(),
            nodes,
            views,
            ids,
            fates,
            sh: Shared {
                n,
                now: Duration::ZERO,
                queue,
                link: settings.link.clone(),
                net_rng: SmallRng::seed_from_u64(mix(settings.seed, 0, 3)),
                check_rng: SmallRng::seed_from_u64(mix(settings.seed, 0, 4)),
                check_min: settings.check_min,
                check_max: settings.check_max,
                slow_check: settings.slow_check,
                answers,
                relays: Vec::new(),
                cause: Cause::Other,
                round: None,
                sweep_started: None,
                counting: false,
                finished: false,
                done: None,
                done_at: None,
                settled_at: None,
                tally: Tally::new(n),
                clock_overhead: match settings.cpu {
                    CpuMode::Model(_) => Duration::ZERO,
                    _ => cpu::clock_overhead(),
                },
                cpu: settings.cpu.clone(),
                samples: None,
            },
        }
    }

    /// Keep every measured call (with `--cpu measured`), for calibration.
    pub(crate) fn recording(mut self) -> World {
        self.sh.samples = Some(Vec::new());
        self
    }

    pub(crate) fn run(mut self) -> (super::SimReport, Vec<CallSample>) {
        // Stop well after the deadline even if the sweep never completes
        // (that would be a bug the report then shows).
        let horizon = self.settings.warmup + self.settings.deadline + Duration::from_secs(5);
        while let Some((at, event)) = self.sh.queue.pop() {
            if at > horizon {
                break;
            }
            self.sh.now = at;
            self.handle(event);
            if self.sh.finished {
                break;
            }
        }
        let metrics: Vec<NodeMetrics> = self
            .nodes
            .iter()
            .map(|n| NodeMetrics {
                receptions: n.node.stats().request_copies,
                ..n.m.clone()
            })
            .collect();
        let failing: Vec<bool> = self.nodes.iter().map(|n| n.failing).collect();
        let slow: Vec<bool> = self.nodes.iter().map(|n| n.slow).collect();
        let report = report::build(report::Inputs {
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
            settled_at: self.sh.settled_at,
            events: self.sh.queue.popped(),
            pair_keys_derived: self.nodes[COORDINATOR].node.pair_keys_derived() - self.keys_before,
            others_keys_derived: self.others_keys_derived() - self.others_keys_before,
            relays: &self.sh.relays,
            relay_batches: self.sh.relays.iter().fold((0, 0), |(sent, resent), &i| {
                let relay = self.nodes[i].node.stats().sweep.relay;
                (sent + relay.batches_sent, resent + relay.batches_resent)
            }),
        });
        (report, self.sh.samples.take().unwrap_or_default())
    }

    fn handle(&mut self, event: Event) {
        let sh = &mut self.sh;
        match event {
            Event::Join(i) => {
                let view = std::mem::take(&mut self.views[i]);
                let (ids, fates) = (&self.ids, &self.fates);
                let members = view.into_iter().map(|j| {
                    let id = ids[j as usize].clone();
                    if fates[j as usize] == NodeFate::DownBefore {
                        Member::down(id)
                    } else {
                        Member::alive(id)
                    }
                });
                shell::join(i, &mut self.nodes[i], sh, members);
            }
            Event::Arrive(d) => {
                let (to, kind) = (d.to, d.kind);
                if !self.nodes[to].alive {
                    sh.tally.to_dead[kind as usize] += 1;
                    return;
                }
                self.offer(to, Work::Datagram(d));
            }
            Event::Timer(i, timer) => self.offer(i, Work::Timer(timer)),
            Event::ChecksDone(i, sweep_id) => self.offer(i, Work::ChecksDone(sweep_id)),
            Event::StartSweep => self.offer(COORDINATOR, Work::StartSweep),
            Event::Free(i) => {
                let mut next = self.nodes[i].cpu.free();
                while let Some(work) = next {
                    self.serve(i, work);
                    next = if self.nodes[i].cpu.is_busy() {
                        None
                    } else {
                        self.nodes[i].cpu.take()
                    };
                }
            }
            Event::DrainCheck => {
                let busy = self
                    .nodes
                    .iter()
                    .any(|n| n.alive && n.node.gossip_backlog() > 0);
                if busy {
                    sh.queue.push(sh.now + DRAIN_CHECK, Event::DrainCheck);
                } else {
                    sh.finished = true;
                }
            }
            Event::Die(i) => {
                let node = &mut self.nodes[i];
                node.alive = false;
                node.m.died_at = Some(sh.now);
            }
        }
    }

    /// Work reaches node `i`: served now if the node is idle, else queued
    /// (or dropped: a datagram on a full receive queue). With `--cpu off`
    /// only datagrams wait for the node, as before CPU was charged.
    fn offer(&mut self, i: usize, work: Work) {
        let datagram = matches!(work, Work::Datagram(_));
        if !datagram && !self.sh.cpu.queues_every_call() {
            return self.serve(i, work);
        }
        let node = &mut self.nodes[i];
        match node.cpu.offer(work, datagram, self.sh.link.rx_queue) {
            Admission::Now(work) => self.serve(i, work),
            Admission::Queued => {
                if self.sh.counting {
                    node.m.queue_max = node.m.queue_max.max(node.cpu.queued());
                }
            }
            Admission::Full(work) => {
                if let Work::Datagram(d) = work {
                    self.sh.tally.overflow[d.kind as usize] += 1;
                }
                if self.sh.counting {
                    node.m.rx_dropped += 1;
                }
            }
        }
    }

    /// Node `i` takes up `work`: it is busy for the charge (plus
    /// `rx_service` for a datagram), and `Free` is due when that ends.
    fn serve(&mut self, i: usize, work: Work) {
        let counting = self.sh.counting;
        let sh = &mut self.sh;
        let node = &mut self.nodes[i];
        if !node.alive {
            if let Work::Datagram(d) = work {
                sh.tally.to_dead[d.kind as usize] += 1;
            }
            return;
        }
        let busy = match work {
            Work::Datagram(d) => {
                let certs = self.certs.as_deref();
                shell::datagram(i, node, sh, d, &self.fates, certs) + sh.link.rx_service
            }
            Work::Timer(t) => shell::timer(i, node, sh, t),
            Work::ChecksDone(id) => shell::checks_done(i, node, sh, id),
            Work::StartSweep => self.start_sweep(),
        };
        let node = &mut self.nodes[i];
        if counting || self.sh.counting {
            node.m.busy += busy;
        }
        if !busy.is_zero() {
            node.cpu.occupy();
            self.sh.queue.push(self.sh.now + busy, Event::Free(i));
        }
    }

    /// The coordinator starts the sweep; the relays it names get the full
    /// membership (set-up, not charged). Returns the CPU charged.
    fn start_sweep(&mut self) -> Duration {
        self.others_keys_before = self.others_keys_derived();
        let sh = &mut self.sh;
        self.keys_before = self.nodes[COORDINATOR].node.pair_keys_derived();
        sh.sweep_started = Some(sh.now);
        sh.counting = true;
        let spec = StartSweep {
            selector: Selector {
                checks: Vec::new(),
                labels: Vec::new(),
                profile: Some("k8s-node".to_string()),
            },
            node_filter: Default::default(),
            deadline: self.settings.deadline,
            id: None,
            authorization: None,
        };
        let spec = match &self.operator {
            Some(op) => sign(
                op,
                spec,
                mix(self.settings.seed, 0, 9),
                sh.at().unix_ms,
                &self.ids[COORDINATOR].name,
            ),
            None => spec,
        };
        let (id, cost) = shell::start_sweep(&mut self.nodes[COORDINATOR], sh, spec);
        // The request is out; the expected set is snapshot next, the
        // coordinator busy all along.
        let start = sh.now;
        sh.now = start + cost;
        let cost = cost + shell::snapshot(&mut self.nodes[COORDINATOR], sh);
        sh.now = start;
        sh.relays = self.nodes[COORDINATOR]
            .node
            .relays(id)
            .iter()
            .filter_map(|a| index_of(*a, sh.n))
            .collect();
        for &r in &self.sh.relays {
            self.nodes[r].relay = true;
        }
        self.relays_know_everyone();
        self.relay_deaths();
        cost
    }
}

impl World {
    /// Pair keys derived by every node but the coordinator, so far.
    fn others_keys_derived(&self) -> u64 {
        self.nodes
            .iter()
            .skip(1)
            .map(|n| n.node.pair_keys_derived())
            .sum()
    }

    /// The relays hold every member, as in a real mesh (the other nodes
    /// keep their partial views): what foca costs them per datagram and
    /// per timer then is what it costs a real relay. Set-up: not charged.
    fn relays_know_everyone(&mut self) {
        let (ids, fates) = (&self.ids, &self.fates);
        for r in self.sh.relays.clone() {
            let members = (0..ids.len()).filter(|&j| j != r).map(|j| {
                let id = ids[j].clone();
                if fates[j] == NodeFate::DownBefore {
                    Member::down(id)
                } else {
                    Member::alive(id)
                }
            });
            shell::learn(r, &mut self.nodes[r], &mut self.sh, members);
        }
    }

    /// Kill `relays_die` of the relays (at least one when the share is
    /// above zero) at uniform times within `die_within` of the start.
    fn relay_deaths(&mut self) {
        let share = self.settings.relays_die;
        let relays = &self.sh.relays;
        if share <= 0.0 || relays.is_empty() {
            return;
        }
        let count = ((share * relays.len() as f64).round() as usize).clamp(1, relays.len());
        let mut rng = SmallRng::seed_from_u64(mix(self.settings.seed, 0, 11));
        let mut chosen = relays.clone();
        chosen.shuffle(&mut rng);
        for i in chosen.into_iter().take(count) {
            if self.fates[i] != NodeFate::Live {
                continue;
            }
            self.fates[i] = NodeFate::DiesDuring;
            let within = self.settings.die_within.as_nanos().max(1) as u64;
            let at = self.sh.now + Duration::from_nanos(rng.random_range(0..within));
            self.sh.queue.push(at, Event::Die(i));
        }
    }
}

/// `node-00042` for index 42.
pub(crate) fn node_name(i: usize) -> String {
    format!("node-{i:05}")
}

/// A seed for stream `stream` of node `i`.
fn mix(seed: u64, i: u64, stream: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream.rotate_left(48);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What the simulated nodes answer: a healthy and a failing outcome
/// list, and which of their values differ from node to node.
pub(super) struct AnswerModel {
    ok: Vec<CheckOutcome>,
    failing: Vec<CheckOutcome>,
    /// Index of each value drawn per node, and how.
    vary: Vec<(usize, Vary)>,
}

#[derive(Debug, Clone, Copy)]
enum Vary {
    /// A whole number in the range.
    Count(u32, u32),
    /// A percentage with two decimals in the range.
    Percent(u32, u32),
    /// The same, as the one mount of a `named` value.
    MountPercent(u32, u32),
}

/// `patrol check --profile k8s-node --format json` on a real host, made
/// healthy (see the file's `source`).
const K8S_NODE_ANSWER: &str = include_str!("k8s-node-answer.json");

#[derive(serde::Deserialize)]
struct Fixture {
    healthy: Vec<CheckOutcome>,
    failing: CheckOutcome,
}

impl AnswerModel {
    /// The built-in `k8s-node` profile's answer as a real host gives it.
    fn k8s_node() -> Self {
        let fixture: Fixture =
            serde_json::from_str(K8S_NODE_ANSWER).expect("the k8s-node answer fixture parses");
        let ok = fixture.healthy;
        let mut failing = ok.clone();
        if let Some(slot) = failing.iter_mut().find(|o| o.id == fixture.failing.id) {
            *slot = fixture.failing;
        }
        let how = |id: &str| match id {
            "process-total" => Some(Vary::Count(120, 600)),
            "pid-max-usage" => Some(Vary::Percent(0, 3)),
            "file-handles" => Some(Vary::Percent(0, 2)),
            "memory-available" => Some(Vary::Percent(15, 90)),
            "disk-root" => Some(Vary::MountPercent(20, 80)),
            "disk-root-inodes" => Some(Vary::MountPercent(1, 20)),
            _ => None,
        };
        let vary = ok
            .iter()
            .enumerate()
            .filter_map(|(i, o)| how(&o.id).map(|v| (i, v)))
            .collect();
        AnswerModel { ok, failing, vary }
    }

    /// Outcomes adding up to about `bytes` encoded bytes, the same on
    /// every node: all passing, or the first one failing.
    fn synthetic(bytes: usize) -> Self {
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
        AnswerModel {
            ok,
            failing,
            vary: Vec::new(),
        }
    }

    /// One node's outcomes, its varying values drawn from `rng`.
    pub(super) fn draw(&self, failing: bool, rng: &mut SmallRng) -> Vec<CheckOutcome> {
        let mut outcomes = if failing {
            self.failing.clone()
        } else {
            self.ok.clone()
        };
        for (i, how) in &self.vary {
            let Some(o) = outcomes.get_mut(*i) else {
                continue;
            };
            let percent = |rng: &mut SmallRng, lo: u32, hi: u32| {
                f64::from(rng.random_range(lo * 100..=hi * 100)) / 100.0
            };
            o.observed = match *how {
                Vary::Count(lo, hi) => Observed::Number(f64::from(rng.random_range(lo..=hi))),
                Vary::Percent(lo, hi) => Observed::Number(percent(rng, lo, hi)),
                Vary::MountPercent(lo, hi) => Observed::Named(vec![(
                    "/".to_string(),
                    Observed::Number(percent(rng, lo, hi)),
                )]),
            };
        }
        outcomes
    }
}

/// A CA for the run: every node gets a certificate (seeded, so runs
/// repeat) and trusts the CA; returns the operator who signs the sweep.
///
/// Each node's identity is then signed by its key; `ids` become the
/// signed identities, which is what the nodes learn of each other.
///
/// Each node also holds the certificates of the members it knows at the
/// start (its view), as a node of a converged mesh does, and the
/// coordinator (with `derive`) the pair keys it derived on learning them.
fn identities(
    nodes: &mut [SimNode],
    ids: &mut [NodeId],
    views: &[Vec<u32>],
    seed: u64,
    warm: bool,
    derive: bool,
    converged: bool,
) -> (Credentials, Vec<CompactCert>) {
    let key = |i: u64, salt: u64| {
        let mut bytes = [0u8; 32];
        for (k, chunk) in bytes.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&mix(seed, i, salt + k as u64).to_le_bytes());
        }
        SigningKey::from_bytes(&bytes)
    };
    let ca = ca_with(key(u64::MAX, 100), "sim-ca", 1, 0..u64::MAX / 2);
    let bundle = bundle(&[&ca]);
    let make = |role: Role, name: &str, k: SigningKey, serial: u64| {
        issued(&ca, k, role, name, serial, 0..u64::MAX / 2)
    };
    let mut certs = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter_mut().enumerate() {
        let creds = make(Role::Node, &ids[i].name, key(i as u64, 200), i as u64 + 10);
        certs.push(creds.cert.clone());
        let start = Now {
            mono: Duration::ZERO,
            unix_ms: BASE_UNIX_MS,
        };
        node.node.set_trust(creds, bundle.clone(), start);
        let mut signed = node.node.identity().clone();
        signed.signer = None;
        ids[i] = signed;
    }
    // Each certificate once, shared by every node that holds it.
    let verified: Vec<CompactCert> = certs
        .iter()
        .map(|cert| CompactCert::new(cert).expect("a certificate the run made"))
        .collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        // Its view and the coordinator (whom every node of a converged
        // mesh has heard from).
        let known = views[i].iter().map(|j| *j as usize).chain([COORDINATOR]);
        // Its pair keys too with `converged` (every node of a converged
        // mesh derived them on learning); otherwise the coordinator's only,
        // so that the set-up of 100,000 nodes does not derive millions.
        node.node.vouch_certs(
            known.map(|j| &verified[j]),
            derive && (i == COORDINATOR || converged),
        );
    }
    if warm {
        let now = Now {
            mono: Duration::ZERO,
            unix_ms: BASE_UNIX_MS,
        };
        for cert in &certs {
            nodes[COORDINATOR]
                .node
                .learn_peer(now, cert)
                .expect("a certificate of the run's CA");
        }
        // And every node knows the coordinator has its certificate, as
        // after answering it once: answers name it by digest.
        let epoch = nodes[COORDINATOR]
            .node
            .peer_epoch()
            .expect("the coordinator runs with certificates");
        let coordinator = ids[COORDINATOR].name.clone();
        for node in nodes.iter_mut() {
            node.node.mark_told(&coordinator, epoch);
        }
    }
    let operator = make(
        Role::Operator(Scope::full(600_000)),
        "sim-operator",
        key(u64::MAX - 1, 300),
        2,
    );
    (operator, verified)
}

/// `spec` signed by `operator` under sweep id `id`.
fn sign(
    operator: &Credentials,
    mut spec: StartSweep,
    id: u64,
    now_unix_ms: u64,
    coordinator: &str,
) -> StartSweep {
    let ask = SweepAsk {
        sweep_id: id,
        selector: &spec.selector,
        node_filter: &spec.node_filter,
        deadline_ms: spec.deadline.as_millis() as u64,
        coordinator,
    };
    spec.authorization = Some(Authorization::sign(operator, &ask, now_unix_ms));
    spec.id = Some(id);
    spec
}
