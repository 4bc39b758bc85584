//! What coordinating one sweep of N nodes costs the coordinator, on this
//! machine (issue 25, "a coordinator that keeps up"):
//!
//! ```text
//! cargo run --release -p patrol-tests --example coordinator_cost -- --nodes 100000 [--identities]
//! ```
//!
//! The real sweep core ([`SweepCore`]) coordinates a sweep of `--nodes`
//! members, fed synthetic answers: the built-in `k8s-node` answer
//! (`tests/src/sim/k8s-node-answer.json`, 20 checks, some values varying
//! per node, `--failing-percent` of the nodes failing one check), about
//! `--direct-percent` of the nodes answering directly in pieces and the
//! others through the relays the coordinator names, in batches packed as a
//! relay packs them (a group per set of tags, its header in the group's
//! first batch, each node as a diff against the group's base, at most
//! `max_datagram` bytes). With `--identities` every node has a certificate
//! of a test CA, the sweep is signed by an operator, every answer and
//! every send time is proved with the node's pair key, and the coordinator
//! checks each (its peer cache warmed first, untimed, as after an earlier
//! sweep: answers name their certificate by digest).
//!
//! Every input is timed in thread CPU (`CLOCK_THREAD_CPUTIME_ID`, not the
//! wall clock, less the clock's own cost) as the node's shell would run
//! it: the message decoded from its bytes, handed to the core, and every
//! message the core sends encoded. Time is virtual: answers arrive over
//! the answer spread window, relays flush every `relay_flush`, and the
//! core's own timers (ticks, its own answer) fire when they are due.
//!
//! Heap: live bytes (a counting allocator) sampled after every input,
//! less what the benchmark held before the snapshot was built (the
//! snapshot counts: the node builds it for the core), the peak over the
//! sweep with the finished document still held. Then the document is
//! encoded into its control-channel pieces as the agent sends it (each
//! node dropped once encoded), sampling the heap after each piece.
//!
//! Measured on this machine (2 cores shared with other builds; one run
//! each, the heap figures do not vary between runs), before and after the
//! compact document (issue 25, "memory that fits the agent's own limits"):
//!
//! | command | measure | before | after | target |
//! |---|---|---|---|---|
//! | `--nodes 100000` | peak heap, document held | 659.5 MiB | 101.3 MiB | <= 128 MiB |
//! | `--nodes 100000` | the finished document alone | 637.2 MiB | 65.7 MiB | |
//! | `--nodes 100000` | peak heap while sending the document | not measured (document and its whole encoding held) | 88.7 MiB | |
//! | `--nodes 100000` | completing input (last answer + document build), thread CPU | 1194.7 ms | 298.6 ms | |

use std::alloc::System;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use patrol_core::sweep::{
    relay_index, AnswerBody, AnswerChunk, AnswerPayload, AnswerProof, Effect, GroupHeader,
    MemberView, Peer, RelayBatch, RelayGroup, RelayedAnswer, StartHead, StartSweep, SweepCore,
    SweepMessage, SweepSettings, SweepTimer,
};
use patrol_core::trust::authorization::SweepAsk;
use patrol_core::trust::testing::{bundle, ca_with, issued};
use patrol_core::trust::{
    cert_digest, Authorization, Certificate, Credentials, PairKey, Role, Scope, SigningKey,
};
use patrol_core::Now;
use patrol_model::{CheckOutcome, Observed, Selector, Status};
use patrol_tests::sim::thread_cpu;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Unix milliseconds at the benchmark's time zero.
const BASE_UNIX_MS: u64 = 1_800_000_000_000;
const SWEEP_ID: u64 = 0x5eed_0000_0000_0001;

#[derive(Parser)]
struct Args {
    /// Members of the mesh (the coordinator is one more).
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Node certificates, a signed sweep, proved answers.
    #[arg(long)]
    identities: bool,
    /// Share of nodes answering directly, in percent (the others through
    /// their relay, when the sweep has relays).
    #[arg(long, default_value_t = 5)]
    direct_percent: u64,
    /// Share of nodes failing one check, in percent.
    #[arg(long, default_value_t = 1)]
    failing_percent: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn live_heap() -> usize {
    let s = GLOBAL.stats();
    s.bytes_allocated.saturating_sub(s.bytes_deallocated)
}

fn addr(i: usize) -> SocketAddr {
    let i = i as u32 + 1;
    let ip = Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
    SocketAddr::new(ip.into(), 7946)
}

fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn tags(i: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("role".to_string(), "worker".to_string()),
        ("zone".to_string(), format!("zone-{}", i % 3)),
    ])
}

#[derive(serde::Deserialize)]
struct Fixture {
    healthy: Vec<CheckOutcome>,
    failing: CheckOutcome,
}

/// The nodes' answers, identities and the coordinator's key.
struct Fleet {
    names: Vec<String>,
    healthy: Vec<CheckOutcome>,
    failing: CheckOutcome,
    failing_percent: u64,
    seed: u64,
    /// With identities: each node's certificate digest and the pair key
    /// every node shares with the coordinator (one node key for all, so
    /// the benchmark derives it once; the coordinator still checks each
    /// certificate and derives per certificate).
    certs: Vec<Certificate>,
    pair: Option<PairKey>,
}

impl Fleet {
    fn outcomes(&self, i: usize) -> Vec<CheckOutcome> {
        let mut outcomes = self.healthy.clone();
        let h = mix(self.seed, i as u64);
        if h % 100 < self.failing_percent {
            if let Some(slot) = outcomes.iter_mut().find(|o| o.id == self.failing.id) {
                *slot = self.failing.clone();
            }
        }
        // The values that differ between machines.
        for (k, o) in outcomes.iter_mut().enumerate().take(6) {
            if o.status == Status::Pass && matches!(o.observed, Observed::Number(_)) && k % 2 == 0 {
                o.observed = Observed::Number((h >> (8 * k) & 0x3ff) as f64);
            }
        }
        outcomes
    }

    fn body(&self, i: usize) -> AnswerBody {
        let received = BASE_UNIX_MS + 2;
        AnswerBody::compact(tags(i), received, 40, self.outcomes(i))
    }

    fn proof(&self, i: usize, nonce: u64, body: &[u8]) -> Option<AnswerProof> {
        let pair = self.pair.as_ref()?;
        Some(AnswerProof {
            cert: patrol_core::sweep::wire::CertRef::Known(cert_digest(&self.certs[i])),
            mac: pair
                .answer_proof(SWEEP_ID, &self.names[i], nonce, body)
                .to_vec(),
        })
    }

    fn sent_tag(&self, i: usize, nonce: u64, sent: u64) -> Option<[u8; 16]> {
        let pair = self.pair.as_ref()?;
        Some(pair.sent_tag(SWEEP_ID, &self.names[i], nonce, sent))
    }

    /// Node `i`'s answer as the pieces it sends, encoded.
    fn pieces(&self, i: usize, settings: &SweepSettings, sent: u64) -> Vec<Vec<u8>> {
        let nonce = mix(self.seed ^ 1, i as u64);
        let body = self.body(i).encode();
        let proof = self.proof(i, nonce, &body);
        let payload = AnswerPayload { body, proof }.encode();
        let name = &self.names[i];
        let size = settings.chunk_payload(name.len());
        let count = payload.len().div_ceil(size) as u16;
        payload
            .chunks(size)
            .enumerate()
            .map(|(index, piece)| {
                SweepMessage::Answer(AnswerChunk {
                    sweep_id: SWEEP_ID,
                    node: name.clone(),
                    nonce,
                    index: index as u16,
                    count,
                    sent_unix_ms: sent,
                    sent_tag: self.sent_tag(i, nonce, sent),
                    payload: piece.to_vec(),
                })
                .encode()
            })
            .collect()
    }

    /// Node `i`'s answer as a relay forwards it, against `base`.
    fn relayed(&self, i: usize, base: &AnswerBody, sent: u64) -> RelayedAnswer {
        let nonce = mix(self.seed ^ 1, i as u64);
        let body = self.body(i);
        let bytes = body.encode();
        let diff = body
            .results
            .iter()
            .enumerate()
            .filter(|(k, r)| base.results.get(*k) != Some(r))
            .map(|(k, r)| (k as u16, r.clone()))
            .collect();
        RelayedAnswer {
            node: self.names[i].clone(),
            nonce,
            received_unix_ms: body.received_unix_ms,
            checks_ms: body.checks_ms,
            sent_after_ms: (sent - body.received_unix_ms) as u32,
            sent_tag: self.sent_tag(i, nonce, sent),
            held_ms: 3,
            diff,
            proof: self.proof(i, nonce, &bytes),
        }
    }
}

/// What the benchmark delivers to the coordinator, in virtual time.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Node `i`'s answer pieces arrive.
    Direct(usize),
    /// A relay's batch (relay index, batch number) arrives.
    Batch(usize, usize),
    /// The coordinator's own checks finished.
    OwnChecks,
    Timer(SweepTimer),
}

/// Thread CPU and calls of one kind of input.
#[derive(Default)]
struct Cost {
    calls: u64,
    answers: u64,
    cpu: Duration,
}

impl Cost {
    fn per_call(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.calls.max(1) as f64
    }
    fn per_answer(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.answers.max(1) as f64
    }
}

struct Bench {
    core: SweepCore,
    out: Vec<Effect>,
    queue: BinaryHeap<Reverse<(Duration, u64, Event)>>,
    seq: u64,
    clock_cost: Duration,
    base_heap: usize,
    peak_heap: usize,
    sent_bytes: u64,
    progress: u64,
    spread_ms: u32,
    document: Option<Box<patrol_model::CompactDocument>>,
}

impl Bench {
    fn at(&self, t: Duration) -> Now {
        Now {
            mono: t,
            unix_ms: BASE_UNIX_MS + t.as_millis() as u64,
        }
    }

    fn push(&mut self, at: Duration, e: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, e)));
    }

    /// Run `f` on the core timed, encode what it sends (timed), then take
    /// its timers and its document (untimed).
    fn timed(
        &mut self,
        now: Duration,
        f: impl FnOnce(&mut SweepCore, &mut Vec<Effect>),
    ) -> Duration {
        let t0 = thread_cpu();
        f(&mut self.core, &mut self.out);
        for e in &self.out {
            if let Effect::Send { msg, .. } = e {
                self.sent_bytes += msg.encode().len() as u64;
            }
        }
        let cpu = thread_cpu()
            .saturating_sub(t0)
            .saturating_sub(self.clock_cost);
        for e in std::mem::take(&mut self.out) {
            match e {
                Effect::Schedule { after, timer } => self.push(now + after, Event::Timer(timer)),
                Effect::RunChecks { .. } => {
                    self.push(now + Duration::from_millis(5), Event::OwnChecks)
                }
                Effect::Progress { .. } => self.progress += 1,
                Effect::Spread(req) => self.spread_ms = req.answer_spread_ms,
                Effect::Completed { document, .. } => self.document = Some(document),
                _ => {}
            }
        }
        self.peak_heap = self
            .peak_heap
            .max(live_heap().saturating_sub(self.base_heap));
        cpu
    }
}

/// The clock's own cost per reading pair, taken off every timing.
fn clock_cost() -> Duration {
    let t0 = thread_cpu();
    for _ in 0..10_000 {
        std::hint::black_box(thread_cpu());
    }
    thread_cpu().saturating_sub(t0) / 10_000
}

fn fixture() -> (Vec<CheckOutcome>, CheckOutcome) {
    let f: Fixture = serde_json::from_str(include_str!("../src/sim/k8s-node-answer.json"))
        .expect("the k8s-node answer fixture parses");
    (f.healthy, f.failing)
}

/// Node keys, certificates and the signed sweep, with identities.
struct Identities {
    coordinator: Credentials,
    operator: Credentials,
    bundle: patrol_core::trust::TrustBundle,
    certs: Vec<Certificate>,
    pair: PairKey,
}

fn identities(names: &[String]) -> Identities {
    let key = |n: u8| SigningKey::from_bytes(&[n; 32]);
    let ca = ca_with(key(1), "bench-ca", 1, 0..u64::MAX / 2);
    let node_key = key(3);
    let certs: Vec<Certificate> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            issued(
                &ca,
                node_key.clone(),
                Role::Node,
                n,
                100 + i as u64,
                0..u64::MAX / 2,
            )
            .cert
        })
        .collect();
    let coordinator = issued(&ca, key(2), Role::Node, "coordinator", 2, 0..u64::MAX / 2);
    let operator = issued(
        &ca,
        key(4),
        Role::Operator(Scope::full(600_000)),
        "bench-operator",
        3,
        0..u64::MAX / 2,
    );
    let pair = PairKey::derive(&node_key, &coordinator.key.verifying_key()).expect("a pair key");
    Identities {
        bundle: bundle(&[&ca]),
        coordinator,
        operator,
        certs,
        pair,
    }
}

fn main() {
    let args = Args::parse();
    let n = args.nodes;
    let settings = SweepSettings::default();
    let (healthy, failing) = fixture();
    let names: Vec<String> = (0..n).map(|i| format!("node-{i:06}")).collect();
    let me = Peer {
        name: "coordinator".to_string(),
        addr: SocketAddr::new(Ipv4Addr::new(10, 255, 255, 254).into(), 7946),
        tags: tags(0).into(),
    };
    let mut core = SweepCore::new(me.clone(), "bench".to_string(), settings.clone(), args.seed);
    let ids = args.identities.then(|| identities(&names));
    let mut spec = StartSweep {
        selector: Selector {
            profile: Some("k8s-node".to_string()),
            ..Selector::default()
        },
        node_filter: BTreeMap::new(),
        deadline: Duration::from_secs(10),
        id: Some(SWEEP_ID),
        authorization: None,
    };
    if let Some(ids) = &ids {
        core.set_trust(ids.coordinator.clone(), ids.bundle.clone());
        let warm = thread_cpu();
        for cert in &ids.certs {
            core.learn_peer(cert, BASE_UNIX_MS)
                .expect("a certificate of the bench's CA");
        }
        eprintln!(
            "warmed the peer cache: {} certificates in {:.1} s (untimed; {:.0} µs each)",
            ids.certs.len(),
            thread_cpu().saturating_sub(warm).as_secs_f64(),
            thread_cpu().saturating_sub(warm).as_secs_f64() * 1e6 / n.max(1) as f64
        );
        let ask = SweepAsk {
            sweep_id: SWEEP_ID,
            selector: &spec.selector,
            node_filter: &spec.node_filter,
            deadline_ms: spec.deadline.as_millis() as u64,
            coordinator: "coordinator",
        };
        spec.authorization = Some(Authorization::sign(&ids.operator, &ask, BASE_UNIX_MS));
    }
    let fleet = Fleet {
        names,
        healthy,
        failing,
        failing_percent: args.failing_percent,
        seed: args.seed,
        certs: ids.as_ref().map(|i| i.certs.clone()).unwrap_or_default(),
        pair: ids.as_ref().map(|i| i.pair.clone()),
    };
    let mut bench = Bench {
        core,
        out: Vec::new(),
        queue: BinaryHeap::new(),
        seq: 0,
        clock_cost: clock_cost(),
        base_heap: 0,
        peak_heap: 0,
        sent_bytes: 0,
        progress: 0,
        spread_ms: 0,
        document: None,
    };
    bench.queue.reserve(n + 4096);
    bench.base_heap = live_heap();

    // The snapshot, as `Node::start_sweep` builds it from foca.
    let t0 = thread_cpu();
    let members: Vec<MemberView> = (0..n)
        .map(|i| MemberView {
            peer: Peer {
                name: fleet.names[i].clone(),
                addr: addr(i),
                tags: tags(i).into(),
            },
            alive: true,
            rostered: false,
        })
        .collect();
    let snapshot_cpu = thread_cpu().saturating_sub(t0);
    let now = bench.at(Duration::ZERO);
    // The request goes out first, built from a count of the members and
    // the ones that may relay (`Node::start_sweep`); the expected set is
    // snapshot after (`Node::snapshot_sweeps`).
    let start_cpu = bench.timed(Duration::ZERO, |core, out| {
        let head = StartHead::of(&me, &spec.node_filter, &members);
        core.open(now, spec, head, out).expect("the sweep starts");
    });
    let expected_cpu = bench.timed(Duration::ZERO, |core, out| {
        core.snapshot(now, SWEEP_ID, members, out);
    });
    let start_heap = live_heap().saturating_sub(bench.base_heap);
    let relays: Vec<SocketAddr> = bench.core.relays(SWEEP_ID).to_vec();
    let batches = plan(&mut bench, &fleet, &settings, &args, &relays);
    let mut costs: [Cost; 3] = Default::default();
    let mut completion = Duration::ZERO;
    while let Some(Reverse((t, _, event))) = bench.queue.pop() {
        let now = bench.at(t);
        let (kind, cpu, answers) = match event {
            Event::Direct(i) => {
                let pieces = fleet.pieces(i, &settings, now.unix_ms.saturating_sub(1));
                let mut cpu = Duration::ZERO;
                let from = addr(i);
                for bytes in pieces {
                    cpu += bench.timed(t, |core, out| {
                        if let Ok(msg) = SweepMessage::decode(&bytes) {
                            core.handle_message(now, from, msg, out);
                        }
                    });
                }
                (DIRECT, cpu, 1)
            }
            Event::Batch(r, b) => {
                let bytes = SweepMessage::Batch(batches[r][b].clone()).encode();
                let answers = batches[r][b]
                    .groups
                    .iter()
                    .map(|g| g.nodes.len() as u64)
                    .sum();
                let from = relays[r];
                let cpu = bench.timed(t, |core, out| {
                    if let Ok(msg) = SweepMessage::decode(&bytes) {
                        core.handle_message(now, from, msg, out);
                    }
                });
                (BATCH, cpu, answers)
            }
            Event::OwnChecks => {
                let outcomes = fleet.healthy.clone();
                let cpu = bench.timed(t, |core, out| {
                    core.checks_done(now, SWEEP_ID, outcomes, out)
                });
                (TIMER, cpu, 0)
            }
            Event::Timer(timer) => {
                let cpu = bench.timed(t, |core, out| core.handle_timer(now, timer, out));
                (TIMER, cpu, 0)
            }
        };
        if bench.document.is_some() {
            // The input that settled the last node also built the document.
            completion = cpu;
            break;
        }
        costs[kind].calls += 1;
        costs[kind].answers += answers;
        costs[kind].cpu += cpu;
    }
    let document = bench.document.take();
    let Some(document) = document else {
        eprintln!("the sweep did not complete");
        std::process::exit(1);
    };
    let c = &document.counts;
    println!(
        "coordinator_cost: {n} nodes, identities {}, {} relays, {} batches; document: {} nodes ({:?})",
        args.identities,
        relays.len(),
        costs[BATCH].calls,
        document.nodes.len(),
        c
    );
    println!(
        "clock reading pair (subtracted): {} ns",
        bench.clock_cost.as_nanos()
    );
    println!(
        "snapshot (MemberView vec, the shape Node::membership_snapshot builds): {:.1} ms",
        ms(snapshot_cpu)
    );
    println!(
        "start_sweep, request out (StartHead + SweepCore::open + encoding its sends): {:.1} ms",
        ms(start_cpu)
    );
    println!(
        "expected set after the request (SweepCore::snapshot): {:.1} ms",
        ms(expected_cpu)
    );
    println!(
        "per direct answer: {:.2} µs ({} answers)",
        costs[DIRECT].per_answer(),
        costs[DIRECT].answers
    );
    println!(
        "per relayed answer: {:.2} µs ({} answers)",
        costs[BATCH].per_answer(),
        costs[BATCH].answers
    );
    println!("per batch: {:.1} µs", costs[BATCH].per_call());
    println!(
        "per timer (tick, own answer): {:.1} µs ({} calls)",
        costs[TIMER].per_call(),
        costs[TIMER].calls
    );
    println!(
        "completing input (last answer + document build): {:.1} ms",
        ms(completion)
    );
    println!(
        "sweep total: {:.1} ms of thread CPU",
        ms(start_cpu + completion + costs.iter().map(|c| c.cpu).sum::<Duration>())
    );
    println!("progress effects: {}", bench.progress);
    println!("heap after start_sweep: {:.1} MiB", mib(start_heap));
    println!(
        "peak heap (sampled after each input, document held): {:.1} MiB",
        mib(bench.peak_heap)
    );
    let held = live_heap();
    // What the agent then sends the CLI: the document's control-channel
    // pieces, encoded one at a time as they are sent, each node dropped
    // once encoded.
    let encode_start = thread_cpu();
    let mut piece_bytes = 0;
    let mut peak = live_heap();
    for piece in patrol_agent::control::frame::document_pieces(*document) {
        piece_bytes += piece.len();
        peak = peak.max(live_heap());
    }
    let encode_cpu = thread_cpu().saturating_sub(encode_start);
    println!(
        "document alone: {:.1} MiB",
        mib(held.saturating_sub(live_heap()))
    );
    println!(
        "control-channel pieces: {:.1} MiB, encoded in {:.1} ms; peak heap while sending: {:.1} MiB",
        mib(piece_bytes),
        ms(encode_cpu),
        mib(peak.saturating_sub(bench.base_heap))
    );
}

const DIRECT: usize = 0;
const BATCH: usize = 1;
const TIMER: usize = 2;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Bytes of a batch besides its groups (as `relay.rs` counts them).
const BATCH_HEADER: usize = 24;
/// Bytes of a group besides its header and nodes.
const GROUP_OVERHEAD: usize = 9;

fn encoded_len<T: serde::Serialize>(value: &T) -> usize {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_or(0, |v| v.len())
}

/// Each node's arrival: uniform over the answer spread window. A node
/// answers directly, or its answer reaches its relay, which forwards it
/// in the batch it flushes next (every `relay_flush`, or once full).
/// Returns every relay's batches; queues the events.
fn plan(
    bench: &mut Bench,
    fleet: &Fleet,
    settings: &SweepSettings,
    args: &Args,
    relays: &[SocketAddr],
) -> Vec<Vec<RelayBatch>> {
    let spread = Duration::from_millis(u64::from(bench.spread_ms.max(1)));
    let mut arrivals: Vec<(Duration, usize)> = (0..fleet.names.len())
        .map(|i| {
            let h = mix(args.seed ^ 2, i as u64);
            let at = Duration::from_micros(1000 + h % spread.as_micros().max(1) as u64);
            (at, i)
        })
        .collect();
    arrivals.sort_unstable();
    let flush = settings.relay_flush;
    // Per relay: its groups (zone -> key, base, header sent) and the batch
    // being filled, with the flush time it leaves at.
    let mut groups: Vec<BTreeMap<usize, (u32, AnswerBody, bool)>> =
        vec![BTreeMap::new(); relays.len()];
    let mut filling: Vec<Option<(Duration, RelayBatch, usize)>> = vec![None; relays.len()];
    let mut batches: Vec<Vec<RelayBatch>> = vec![Vec::new(); relays.len()];
    let mut out: Vec<(Duration, Event)> = Vec::new();
    for (at, i) in arrivals {
        let direct = relays.is_empty() || mix(args.seed ^ 3, i as u64) % 100 < args.direct_percent;
        if direct {
            out.push((at, Event::Direct(i)));
            continue;
        }
        let r = relay_index(SWEEP_ID, &fleet.names[i], relays.len());
        if let Some((leaves, _, _)) = &filling[r] {
            if *leaves <= at {
                let (leaves, b, _) = filling[r].take().expect("a batch");
                out.push((leaves, Event::Batch(r, batches[r].len())));
                batches[r].push(b);
            }
        }
        let zone = i % 3;
        let next_key = groups[r].len() as u32;
        let (key, base, _) = groups[r]
            .entry(zone)
            .or_insert_with(|| (next_key, fleet.body(i), false))
            .clone();
        let sent = BASE_UNIX_MS + at.as_millis() as u64;
        let answer = fleet.relayed(i, &base, sent.max(BASE_UNIX_MS + 3));
        let len = encoded_len(&answer);
        let header_len = encoded_len(&GroupHeader {
            tags: base.tags.clone(),
            catalog: base.catalog.clone(),
            base: base.results.clone(),
        });
        let (_, b, bytes) = filling[r].get_or_insert_with(|| {
            let leaves = at + flush;
            let b = RelayBatch {
                sweep_id: SWEEP_ID,
                batch: 0,
                groups: Vec::new(),
            };
            (leaves, b, BATCH_HEADER)
        });
        let has_group = b.groups.iter().any(|g| g.key == key);
        let header_sent = groups[r][&zone].2;
        let need = len
            + if has_group {
                0
            } else {
                GROUP_OVERHEAD + if header_sent { 0 } else { header_len }
            };
        if *bytes + need > settings.max_datagram && !b.groups.is_empty() {
            // Full: it leaves now.
            let (_, full, _) = filling[r].take().expect("a batch");
            out.push((at, Event::Batch(r, batches[r].len())));
            batches[r].push(full);
            filling[r] = Some((
                at + flush,
                RelayBatch {
                    sweep_id: SWEEP_ID,
                    batch: 0,
                    groups: Vec::new(),
                },
                BATCH_HEADER,
            ));
        }
        let (_, b, bytes) = filling[r].as_mut().expect("a batch");
        let pos = match b.groups.iter().position(|g| g.key == key) {
            Some(p) => p,
            None => {
                let header_sent = &mut groups[r].get_mut(&zone).expect("the group").2;
                let header = (!*header_sent).then(|| GroupHeader {
                    tags: base.tags.clone(),
                    catalog: base.catalog.clone(),
                    base: base.results.clone(),
                });
                *bytes += GROUP_OVERHEAD + if *header_sent { 0 } else { header_len };
                *header_sent = true;
                b.groups.push(RelayGroup {
                    key,
                    header,
                    nodes: Vec::new(),
                });
                b.groups.len() - 1
            }
        };
        b.groups[pos].nodes.push(answer);
        *bytes += len;
    }
    for (r, f) in filling.into_iter().enumerate() {
        if let Some((leaves, b, _)) = f {
            out.push((leaves, Event::Batch(r, batches[r].len())));
            batches[r].push(b);
        }
    }
    for list in batches.iter_mut() {
        for (k, b) in list.iter_mut().enumerate() {
            b.batch = k as u32;
        }
    }
    for (at, e) in out {
        bench.push(at, e);
    }
    batches
}
