//! What foca's membership costs one node at N members, on this machine,
//! with Patrol's codec, identity and settings (issue 25):
//!
//! ```text
//! cargo run --release -p patrol-tests --example membership_cost -- --nodes 100000
//! ```
//!
//! One foca is built as `patrol-core` builds it (`membership::foca_config`
//! sized for N, `NodeSettings::default()`, `BincodeCodec`, `NodeId`s with
//! `--tags` tags each, the sweep-request broadcast handler) and given N
//! members. Costs are thread CPU (`CLOCK_THREAD_CPUTIME_ID`, not the wall
//! clock), the mean over `--rounds` calls timed in batches:
//! - **update**: `apply_many` of one member's new incarnation, broadcast on
//!   (as a received update is); the backlog is drained untimed between
//!   batches;
//! - **datagram**: `handle_data` of a `Ping` from a known member (decode,
//!   sender lookup, the `Ack`);
//! - **gossip round**: `gossip()` (3 targets chosen and sent to);
//! - **announce**: `handle_data` of an `Announce` from a new node (it is
//!   added, and answered with a feed of members);
//! - **probe cycle**: the probe timer, the probed member's `Ack`, the
//!   indirect-probe timer;
//! - **memory per member**: live heap bytes (a counting allocator) of the
//!   foca holding N members, over N.
//!
//! With `--identities` every member's identity carries its proof (signed
//! with its own key, of a certificate of a test CA), and a
//! `MemberBook` as the agent's gate keeps one certificate and one proven
//! identity per member. Then also: **learning a member** (its
//! certificate checked against the bundle, then its identity's proof,
//! then the pair key derived, as the node does for a member it has never
//! seen) and **memory per member** of the book and the pair keys.
//!
//! **1% churn**: 1% of the members restart (same address, a new identity
//! that wins the conflict). Each node sends every update on
//! `max_transmissions` times, so each node receives about that many copies
//! of each. The node is run tick by tick (foca's gossip period): per tick
//! it receives as many gossip packets as it sends (the gossip fan-out),
//! and a `Ping` per probe period, each filled with update copies; and it
//! runs its own periodic gossip, which sends its backlog on. The run ends
//! when every copy is delivered and its backlog is empty; the share is its
//! thread CPU over the ticks' span.

use std::alloc::System;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::BufMut;
use clap::Parser;
use foca::{AccumulatingRuntime, Codec, Foca, Header, Member, Message, State, Timer};
use patrol_core::codec::BincodeCodec;
use patrol_core::identity::{IdentitySigner, NodeId};
use patrol_core::membership::proof::{BookSettings, Check, MemberBook};
use patrol_core::membership::{foca_config, size_bucket};
use patrol_core::sweep::{GossipShared, RequestGossip};
use patrol_core::trust::testing::{bundle, ca_with, issued};
use patrol_core::trust::{cert_digest, Credentials, PeerKeys, Role, SigningKey, TrustBundle};
use patrol_core::NodeSettings;
use patrol_tests::sim::thread_cpu;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

type NodeFoca = Foca<NodeId, BincodeCodec, SmallRng, RequestGossip>;
type Rt = AccumulatingRuntime<NodeId>;

/// Calls timed per clock reading.
const BATCH: usize = 64;

#[derive(Parser)]
struct Args {
    /// Members the node holds.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Tags on each identity (`tag-K = value-K`).
    #[arg(long, default_value_t = 1)]
    tags: usize,
    /// Calls per measured operation.
    #[arg(long, default_value_t = 2048)]
    rounds: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Proven identities and a member book (certificates), as with
    /// `[trust]`.
    #[arg(long)]
    identities: bool,
}

fn rss() -> usize {
    patrol_tests::process::rss_of("self") as usize
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
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

fn identity(i: usize, tags: usize, creds: Option<&Credentials>) -> NodeId {
    let tags: BTreeMap<String, String> = (0..tags)
        .map(|k| (format!("tag-{k}"), format!("value-{k}")))
        .collect();
    let mut id = NodeId::new(format!("node-{i:06}"), addr(i), BUMP, tags);
    if let Some(c) = creds {
        let signer = IdentitySigner::new(c.key.clone(), cert_digest(&c.cert), CLUSTER);
        id.proof = Some(signer.prove(&id));
    }
    id
}

/// The members' bump (start time, Unix ms) and the clock they are checked
/// at.
const BUMP: u64 = 1_800_000_000_000;
const CLUSTER: &str = "bench";

/// The test CA and every member's certificate and key (`--identities`).
struct Certs {
    bundle: TrustBundle,
    members: Vec<Credentials>,
    /// The node under test's own key.
    mine: SigningKey,
}

fn certs(n: usize, seed: u64) -> Certs {
    let key = |i: u64| {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&i.to_le_bytes());
        bytes[8..16].copy_from_slice(&seed.to_le_bytes());
        bytes[16] = 1;
        SigningKey::from_bytes(&bytes)
    };
    let ca = ca_with(key(u64::MAX), "bench-ca", 1, 0..u64::MAX / 2);
    let members = (0..n)
        .map(|i| {
            let name = format!("node-{i:06}");
            issued(
                &ca,
                key(i as u64),
                Role::Node,
                &name,
                i as u64 + 10,
                0..u64::MAX / 2,
            )
        })
        .collect();
    Certs {
        bundle: bundle(&[&ca]),
        members,
        mine: key(u64::MAX - 1),
    }
}

/// A member book learning every member (certificate, then identity, then
/// the pair key with it), as the node does for members it has never
/// seen: the thread CPU per member, and the live heap of the book and the
/// pair keys, bytes.
fn learn(certs: &Certs, ids: &[NodeId]) -> (MemberBook, Duration, usize) {
    let settings = BookSettings {
        capacity: ids.len().max(BookSettings::default().capacity),
        ..BookSettings::default()
    };
    let before = live_heap();
    let mut book = MemberBook::new(CLUSTER, certs.bundle.clone(), settings);
    let mut keys = PeerKeys::new(certs.mine.clone(), ids.len());
    let start = thread_cpu();
    for (c, id) in certs.members.iter().zip(ids) {
        let digest = book
            .learn_cert(&c.cert, BUMP / 1000)
            .expect("a certificate of the bench's CA");
        let shared = book.held(&digest).expect("just learned").clone();
        keys.adopt(digest, shared).expect("a pair key");
        let check = book.check(id, BUMP, Duration::ZERO);
        assert!(
            matches!(check, Check::Proven { new: true, .. }),
            "{}: {check:?}",
            id.name
        );
        book.heard_from(id, Duration::ZERO);
    }
    let cpu = thread_cpu().saturating_sub(start) / ids.len().max(1) as u32;
    assert_eq!(keys.len(), ids.len());
    let bytes = live_heap().saturating_sub(before);
    drop(keys);
    (book, cpu, bytes)
}

/// The node under test, its runtime and what it knows of the others.
struct Bench {
    foca: NodeFoca,
    rt: Rt,
    ids: Vec<NodeId>,
    incarnations: Vec<u16>,
    gossip_token: Option<Timer<NodeId>>,
    probe_token: Option<foca::TimerToken>,
    config: foca::Config,
    rng: SmallRng,
    tags: usize,
    max_packet: usize,
}

impl Bench {
    /// A foca built as `Node::new` builds one, holding `n` members (proven
    /// by `certs`' keys when given); returns it with the live heap bytes
    /// the members took.
    fn new(args: &Args, certs: Option<&Certs>) -> (Bench, usize, (usize, usize)) {
        let settings = NodeSettings::default();
        let n = args.nodes;
        let config = foca_config(size_bucket(n), settings.foca_payload(), &settings.foca);
        let max_packet = config.max_packet_size.get();
        let gossip = RequestGossip::new(Arc::new(GossipShared::default()));
        let me = NodeId::new("me", addr(usize::from(u16::MAX) << 8), 1, BTreeMap::new());
        let rng = SmallRng::seed_from_u64(args.seed);
        let foca = Foca::with_custom_broadcast(me, config.clone(), rng, BincodeCodec, gossip);
        let mut bench = Bench {
            foca,
            rt: Rt::new(),
            ids: Vec::new(),
            incarnations: vec![0; n],
            gossip_token: None,
            probe_token: None,
            config,
            rng: SmallRng::seed_from_u64(args.seed ^ 0x5eed),
            tags: args.tags,
            max_packet,
        };
        // Made before the measure: a node receives its members' identities.
        let ids: Vec<NodeId> = (0..n)
            .map(|i| identity(i, args.tags, certs.map(|c| &c.members[i])))
            .collect();
        let before = live_heap();
        let rss_before = rss();
        let members = ids.iter().cloned().map(Member::alive);
        bench
            .foca
            .apply_many(members, false, &mut bench.rt)
            .expect("members apply");
        bench.drain();
        // The runtime's queues grew to hold N notifications: not foca's.
        bench.rt = Rt::new();
        let bytes = live_heap().saturating_sub(before);
        let rss_after = rss();
        bench.ids = ids;
        (bench, bytes, (rss_before, rss_after))
    }

    /// Empty the runtime: sends dropped, the periodic gossip timer and
    /// the probe timer's token kept.
    fn drain(&mut self) {
        while self.rt.to_send().is_some() {}
        while self.rt.to_notify().is_some() {}
        while let Some((_, timer)) = self.rt.to_schedule() {
            match timer {
                Timer::PeriodicGossip(_) => self.gossip_token = Some(timer),
                Timer::ProbeRandomMember(token) => self.probe_token = Some(token),
                _ => {}
            }
        }
    }

    fn random_member(&mut self) -> usize {
        self.rng.random_range(0..self.ids.len())
    }

    /// A datagram from `src` to us, with as many of `updates` as fit (they
    /// are taken from its end).
    fn packet(
        &self,
        src: &NodeId,
        message: Message<NodeId>,
        updates: &mut Vec<Member<NodeId>>,
    ) -> Vec<u8> {
        let header = Header {
            src: src.clone(),
            src_incarnation: 0,
            dst: self.foca.identity().clone(),
            message,
        };
        let mut buf = Vec::with_capacity(self.max_packet);
        BincodeCodec
            .encode_header(&header, &mut buf)
            .expect("header encodes");
        if header.message == Message::Announce {
            return buf;
        }
        let count_at = buf.len();
        buf.put_u16(0);
        let mut count = 0u16;
        while let Some(update) = updates.last() {
            let mut one = Vec::new();
            BincodeCodec
                .encode_member(update, &mut one)
                .expect("member encodes");
            if buf.len() + one.len() > self.max_packet {
                break;
            }
            buf.extend_from_slice(&one);
            updates.pop();
            count += 1;
        }
        buf[count_at..count_at + 2].copy_from_slice(&count.to_be_bytes());
        buf
    }

    /// Run `f` `rounds` times (with `prepare`'s untimed output), clock read
    /// once per [`BATCH`]; the mean thread CPU per call.
    fn time<P>(
        &mut self,
        rounds: usize,
        mut prepare: impl FnMut(&mut Bench, usize) -> P,
        mut f: impl FnMut(&mut Bench, P),
    ) -> Duration {
        let mut total = Duration::ZERO;
        let mut done = 0;
        while done < rounds {
            let batch: Vec<P> = (done..(done + BATCH).min(rounds))
                .map(|i| prepare(self, i))
                .collect();
            let len = batch.len();
            let start = thread_cpu();
            for p in batch {
                f(self, p);
            }
            total += thread_cpu().saturating_sub(start);
            done += len;
            self.settle();
        }
        total / rounds.max(1) as u32
    }

    /// Untimed: send the update backlog on until it is empty, drain.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            if self.foca.updates_backlog() == 0 {
                break;
            }
            let _ = self.foca.gossip(&mut self.rt);
            self.drain();
        }
        self.drain();
    }
}

fn update_cost(b: &mut Bench, rounds: usize) -> Duration {
    b.time(
        rounds,
        |b, _| {
            let j = b.random_member();
            b.incarnations[j] = b.incarnations[j].wrapping_add(1);
            Member::new(b.ids[j].clone(), b.incarnations[j], State::Alive)
        },
        |b, update| {
            b.foca
                .apply_many(std::iter::once(update), true, &mut b.rt)
                .expect("update applies");
        },
    )
}

fn datagram_cost(b: &mut Bench, rounds: usize) -> Duration {
    b.time(
        rounds,
        |b, i| {
            let j = b.random_member();
            let src = b.ids[j].clone();
            b.packet(&src, Message::Ping(i as u8), &mut Vec::new())
        },
        |b, data| {
            b.foca.handle_data(&data, &mut b.rt).expect("ping accepted");
        },
    )
}

fn gossip_cost(b: &mut Bench, rounds: usize) -> Duration {
    b.time(
        rounds,
        |_, _| (),
        |b, ()| b.foca.gossip(&mut b.rt).expect("gossip"),
    )
}

fn announce_cost(b: &mut Bench, rounds: usize) -> Duration {
    let first = b.ids.len() + 1;
    b.time(
        rounds,
        |b, i| {
            let joiner = identity(first + i, b.tags, None);
            b.packet(&joiner, Message::Announce, &mut Vec::new())
        },
        |b, data| {
            b.foca
                .handle_data(&data, &mut b.rt)
                .expect("announce accepted");
        },
    )
}

/// One probe cycle: the probe timer (the member chosen, the `Ping`), its
/// `Ack`, and the indirect-probe timer that finds the probe done.
fn probe_cost(b: &mut Bench, rounds: usize) -> Duration {
    let mut total = Duration::ZERO;
    let token = b.probe_token.expect("probe timer scheduled on connecting");
    for _ in 0..rounds {
        let start = thread_cpu();
        let _ = b
            .foca
            .handle_timer(Timer::ProbeRandomMember(token), &mut b.rt);
        let mut ping = None;
        while let Some((to, data)) = b.rt.to_send() {
            ping = Some((to, data));
        }
        total += thread_cpu().saturating_sub(start);
        let Some((to, data)) = ping else { continue };
        let header = BincodeCodec.decode_header(&data[..]).expect("ping decodes");
        let Message::Ping(n) = header.message else {
            continue;
        };
        let ack = b.packet(&to, Message::Ack(n), &mut Vec::new());
        let start = thread_cpu();
        b.foca.handle_data(&ack, &mut b.rt).expect("ack accepted");
        let indirect = Timer::SendIndirectProbe {
            probed_id: to,
            token,
        };
        b.foca.handle_timer(indirect, &mut b.rt).expect("timer");
        total += thread_cpu().saturating_sub(start);
        b.drain();
    }
    total / rounds.max(1) as u32
}

/// CPU share of the node during a 1% restart churn (module doc); returns
/// the share, the span and the update copies received.
fn churn(b: &mut Bench) -> (f64, Duration, usize) {
    let config = b.config.clone();
    let copies = usize::from(config.max_transmissions.get());
    let tick = config
        .periodic_gossip
        .as_ref()
        .map_or(Duration::from_millis(200), |p| p.frequency);
    let fanout = config
        .periodic_gossip
        .as_ref()
        .map_or(3, |p| p.num_members.get());
    let pings_every = (config.probe_period.as_millis() / tick.as_millis().max(1)).max(1) as usize;
    let restarted = (b.ids.len() / 100).max(1);
    let mut chosen: Vec<usize> = (0..b.ids.len()).collect();
    chosen.shuffle(&mut b.rng);
    let mut stream = Vec::with_capacity(restarted * copies);
    for &j in &chosen[..restarted] {
        let mut renewed = b.ids[j].clone();
        renewed.bump += 1;
        b.ids[j] = renewed.clone();
        b.incarnations[j] = 0;
        for _ in 0..copies {
            stream.push(Member::alive(renewed.clone()));
        }
    }
    stream.shuffle(&mut b.rng);
    let delivered = stream.len();
    let gossip_timer = b.gossip_token.clone().expect("periodic gossip scheduled");
    let (mut cpu, mut ticks) = (Duration::ZERO, 0u32);
    while !stream.is_empty() || b.foca.updates_backlog() > 0 {
        let mut inbound = Vec::new();
        for k in 0..fanout + usize::from((ticks as usize).is_multiple_of(pings_every)) {
            let j = b.random_member();
            let src = b.ids[j].clone();
            let message = if k < fanout {
                Message::Gossip
            } else {
                Message::Ping(ticks as u8)
            };
            inbound.push(b.packet(&src, message, &mut stream));
        }
        let start = thread_cpu();
        for data in &inbound {
            let _ = b.foca.handle_data(data, &mut b.rt);
        }
        b.foca
            .handle_timer(gossip_timer.clone(), &mut b.rt)
            .expect("periodic gossip");
        cpu += thread_cpu().saturating_sub(start);
        b.drain();
        ticks += 1;
    }
    let span = tick * ticks;
    (cpu.as_secs_f64() / span.as_secs_f64(), span, delivered)
}

fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let args = Args::parse();
    let start = thread_cpu();
    let certs = args.identities.then(|| certs(args.nodes, args.seed));
    let (mut b, bytes, (rss_before, rss_after)) = Bench::new(&args, certs.as_ref());
    let n = args.nodes;
    println!(
        "members {n}, {} tag(s) each, built in {:.1} s of thread CPU",
        args.tags,
        thread_cpu().saturating_sub(start).as_secs_f64()
    );
    println!(
        "memory per member      {:.0} B ({bytes} B live heap in all)",
        bytes as f64 / n as f64
    );
    println!(
        "process RSS            {:.1} MiB before the members, {:.1} MiB holding them (+{:.1} MiB)",
        mib(rss_before),
        mib(rss_after),
        mib(rss_after.saturating_sub(rss_before))
    );
    if let Some(certs) = &certs {
        let rss_before = rss();
        let (book, cpu, book_bytes) = learn(certs, &b.ids);
        let rss_after = rss();
        println!(
            "with identities        proofs in the members above; the member book ({} certificates, {} names) and the pair keys: {:.0} B per member ({book_bytes} B live heap), RSS +{:.1} MiB",
            book.certs_held(),
            book.names_held(),
            book_bytes as f64 / n as f64,
            mib(rss_after.saturating_sub(rss_before)),
        );
        println!(
            "learning a member      {} (its certificate, its identity's proof, the pair key)",
            us(cpu)
        );
    }
    let r = args.rounds;
    println!("update                 {}", us(update_cost(&mut b, r)));
    println!("datagram (ping)        {}", us(datagram_cost(&mut b, r)));
    println!("gossip round           {}", us(gossip_cost(&mut b, r)));
    println!("probe cycle            {}", us(probe_cost(&mut b, r)));
    let (share, span, copies) = churn(&mut b);
    println!(
        "1% churn               {:.3}% of a core over {:.1} s ({} restarts, {copies} update copies received)",
        share * 100.0,
        span.as_secs_f64(),
        (n / 100).max(1),
    );
    println!("announce (new node)    {}", us(announce_cost(&mut b, r)));
}
