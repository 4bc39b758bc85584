//! What one real node holds for N members, in memory (issue 25, "agent
//! RSS holding 100k members"):
//!
//! ```text
//! cargo run --release -p patrol-tests --example node_memory -- --nodes 100000 [--identities]
//! ```
//!
//! `membership_cost` measures foca, the member book and the pair keys each
//! on its own; this builds the whole [`Node`] as the agent does
//! (`NodeSettings::default()` with the mesh's size as its hint, every
//! bound at its default) and gives it N members the way a converged mesh
//! has them: `Node::learn_members` (foca's list; with `--identities` also
//! each member's proven identity in the member book and its roster entry)
//! and, with `--identities`, `Node::vouch_certs` with the pair keys
//! derived (each certificate in the book, its key in the sweep's cache
//! and the gate's), 32 members a call with the node's outputs taken in
//! between, as members reach a node a packet at a time. The same calls as
//! the simulator's converged start: nothing is checked, only held.
//!
//! Printed: the node's live heap (a counting allocator) and the process's
//! RSS before and after the members, per member. The process is this
//! example, not the agent: the agent adds its runtime, sockets and config
//! (an idle agent with a handful of members has an RSS of about 9 MiB).

use std::alloc::System;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use foca::Member;
use patrol_core::identity::{IdentitySigner, NodeId};
use patrol_core::trust::testing::{bundle, ca_with, issued};
use patrol_core::trust::{cert_digest, CompactCert, Credentials, Role, SigningKey};
use patrol_core::{Node, NodeSettings, Now};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CLUSTER: &str = "bench";
/// The members' bump (start time, Unix ms) and the clock.
const NOW_MS: u64 = 1_800_000_000_000;
/// Members learned per call: about what a packet's updates carry.
const BATCH: usize = 32;

#[derive(Parser)]
struct Args {
    /// Members the node holds.
    #[arg(long, default_value_t = 100_000)]
    nodes: usize,
    /// Tags on each identity (`tag-K = value-K`).
    #[arg(long, default_value_t = 1)]
    tags: usize,
    /// A certified mesh: proven identities, certificates, pair keys, the
    /// roster.
    #[arg(long)]
    identities: bool,
    /// Seed of the keys.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn rss() -> usize {
    patrol_tests::process::rss_of("self") as usize
}

fn live_heap() -> usize {
    let s = GLOBAL.stats();
    s.bytes_allocated.saturating_sub(s.bytes_deallocated)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn addr(i: usize) -> SocketAddr {
    let i = i as u32 + 1;
    let ip = Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
    SocketAddr::new(ip.into(), 7946)
}

fn key(seed: u64, i: u64) -> SigningKey {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&i.to_le_bytes());
    bytes[8..16].copy_from_slice(&seed.to_le_bytes());
    bytes[16] = 2;
    SigningKey::from_bytes(&bytes)
}

fn main() {
    let args = Args::parse();
    let now = Now {
        mono: Duration::ZERO,
        unix_ms: NOW_MS,
    };
    let tags: BTreeMap<String, String> = (0..args.tags)
        .map(|k| (format!("tag-{k}"), format!("value-{k}")))
        .collect();
    let n = args.nodes;
    let ca = ca_with(key(args.seed, u64::MAX), "bench-ca", 1, 0..u64::MAX / 2);
    let cert_of = |i: usize, name: &str| -> Credentials {
        issued(
            &ca,
            key(args.seed, i as u64),
            Role::Node,
            name,
            i as u64 + 10,
            0..u64::MAX / 2,
        )
    };
    // The members, made before the measure (a node receives them).
    let mut ids = Vec::with_capacity(n);
    let mut certs = Vec::new();
    for i in 0..n {
        let name = format!("node-{i:06}");
        let mut id = NodeId::new(name.clone(), addr(i), NOW_MS, tags.clone());
        if args.identities {
            let c = cert_of(i, &name);
            let signer = IdentitySigner::new(c.key.clone(), cert_digest(&c.cert), CLUSTER);
            id.proof = Some(signer.prove(&id));
            certs.push(CompactCert::new(&c.cert).expect("a certificate the bench made"));
        }
        ids.push(id);
    }
    let settings = NodeSettings {
        cluster: CLUSTER.to_string(),
        cluster_size_hint: Some(n + 1),
        ..NodeSettings::default()
    };
    let me = NodeId::new("me", addr(n + 7), NOW_MS, tags.clone());
    let bare = live_heap();
    let mut node = Node::new(me, settings, args.seed, now);
    if args.identities {
        let mine = cert_of(n + 7, "me");
        node.set_trust(mine, bundle(&[&ca]), now);
    }
    while node.next_output().is_some() {}
    let (heap0, rss0) = (live_heap(), rss());
    // A few dozen at a time, its outputs taken between: as members reach
    // a node, a packet's worth at a time (one call with every member
    // would leave the node's output queues as long as the membership).
    for (k, batch) in ids.chunks(BATCH).enumerate() {
        node.learn_members(now, batch.iter().cloned().map(Member::alive));
        if args.identities {
            node.vouch_certs(certs[k * BATCH..][..batch.len()].iter(), true);
        }
        while node.next_output().is_some() {}
    }
    let (heap1, rss1) = (live_heap(), rss());
    drop(ids);
    drop(certs);
    let per = |b: usize| b as f64 / n.max(1) as f64;
    println!(
        "members {n}, {} tag(s) each, identities {}; the node holds {} members",
        args.tags,
        if args.identities { "on" } else { "off" },
        node.num_members()
    );
    println!(
        "node alone           {:.1} KiB of live heap (made, trust set, no member)",
        heap0.saturating_sub(bare) as f64 / 1024.0
    );
    let held = heap1.saturating_sub(heap0);
    println!(
        "node's live heap     +{:.1} MiB for the members, {:.0} B per member",
        mib(held),
        per(held)
    );
    println!(
        "process RSS          {:.1} MiB before the members, {:.1} MiB holding them (+{:.1} MiB, {:.0} B per member)",
        mib(rss0),
        mib(rss1),
        mib(rss1.saturating_sub(rss0)),
        per(rss1.saturating_sub(rss0))
    );
}
