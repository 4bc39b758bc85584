//! A relay that rewrites the times a node's clock offset is measured from
//! (issue 22, item 2): real certified agents on the in-memory network, with
//! relays from two nodes on, and a man in the middle with the cluster key
//! on the relays' way to the coordinator (what a dishonest relay, or anyone
//! with the key on its path, can do): it opens every relay batch, changes
//! the nodes' send times or the relay's hold times, and seals it again.
//!
//! Before the fix, the node's proof did not cover its send time: the
//! coordinator reported both relayed nodes `patrol.clock_skew`, an hour
//! ahead. Now the node's tag over its send time no longer checks, the
//! relayed answers are dropped and counted, the backstop asks those nodes
//! directly, and nobody looks skewed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patrol_agent::clock::WallClock;
use patrol_agent::datagram::{Sealer, REPLAY_HEADER};
use patrol_agent::envelope::Purpose;
use patrol_agent::sweep::{RelayBatch, SweepMessage, SweepSettings};
use patrol_checks::SweepDocument;
use patrol_core::node::Channel;
use patrol_tests::lab::Lab;

const NAMES: [&str; 8] = ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"];

/// Relays from two nodes on, one per four nodes, as a 2,000-node mesh has
/// them; no direct copy of the request to every member.
fn relayed() -> patrol_core::NodeSettings {
    let mut s = patrol_tests::lab::node_settings(SweepSettings {
        relay_min_nodes: 2,
        nodes_per_relay: 4,
        relay_spread_per_node: Duration::from_millis(1),
        // Every answer goes through a relay, however loaded the machine:
        // a node keeps to its relay, and the backstop (which asks nodes
        // directly) waits 500 ms, so no direct answer takes a node's place
        // before its relay's (rewritten) batch is looked at (a relay
        // flushes every 10 ms). Not longer: the answers the first test
        // makes the coordinator drop come back by the backstop, and their
        // clock bound grows with the wait.
        relay_attempts: 20,
        backstop_min_delay: Duration::from_millis(500),
        ..SweepSettings::default()
    });
    s.direct_spread_limit = 0;
    s
}

/// Put a man in the middle that applies `change` to every relay batch, and
/// counts the batches it changed.
fn rewrite_batches(lab: &Lab, change: fn(&mut RelayBatch)) -> Arc<AtomicU64> {
    let changed = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&changed);
    let env = lab.env.clone();
    let sealer = Mutex::new(Sealer::new(env.clone(), WallClock::default()));
    lab.net
        .rewrite(Some(Arc::new(move |_from, to, bytes: Vec<u8>| {
            let Ok(inner) = env.open(Purpose::Gossip, &bytes) else {
                return bytes;
            };
            let Some(plain) = inner.get(REPLAY_HEADER..) else {
                return bytes;
            };
            if plain.first() != Some(&(Channel::Sweep as u8)) {
                return bytes;
            }
            let Ok(SweepMessage::Batch(mut batch)) = SweepMessage::decode(&plain[1..]) else {
                return bytes;
            };
            change(&mut batch);
            count.fetch_add(1, Ordering::Relaxed);
            let mut out = vec![Channel::Sweep as u8];
            out.extend(SweepMessage::Batch(batch).encode());
            let mut sealed = Vec::new();
            sealer
                .lock()
                .unwrap()
                .seal(&out, to, &mut sealed)
                .expect("seal");
            sealed
        })));
    changed
}

fn assert_nobody_skewed(doc: &SweepDocument) {
    assert_eq!(doc.counts.ok, NAMES.len() as u64, "{:?}", doc.counts);
    for n in &doc.nodes {
        assert!(
            n.checks.iter().all(|c| c.id != "patrol.clock_skew"),
            "{} reported skewed: {:?}",
            n.name,
            n.clock
        );
        if let Some(clock) = n.clock {
            assert!(clock.offset_ms.abs() < 1_000, "{}: {clock:?}", n.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_times_a_relay_moved_an_hour_are_refused_and_nobody_looks_skewed() {
    let lab = Lab::start_certified(&NAMES, relayed()).await;
    let changed = rewrite_batches(&lab, |batch| {
        for n in batch.groups.iter_mut().flat_map(|g| g.nodes.iter_mut()) {
            n.sent_after_ms = n.sent_after_ms.saturating_add(3_600_000);
        }
    });
    let doc = lab.sweep("n0", Duration::from_secs(4)).await;
    assert!(
        changed.load(Ordering::Relaxed) >= 1,
        "no relay batch went by: the test did not attack anything"
    );
    assert_nobody_skewed(&doc);
    let s = lab.stats("n0").await;
    assert!(s.node.sweep.times_forged >= 1, "{:?}", s.node.sweep);
    println!(
        "{} batches rewritten; {} answers refused for their send time",
        changed.load(Ordering::Relaxed),
        s.node.sweep.times_forged
    );
    lab.net.rewrite(None);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_claiming_long_holds_is_not_believed_and_nobody_looks_skewed() {
    let lab = Lab::start_certified(&NAMES, relayed()).await;
    let changed = rewrite_batches(&lab, |batch| {
        for n in batch.groups.iter_mut().flat_map(|g| g.nodes.iter_mut()) {
            n.held_ms = 3_000;
        }
    });
    let doc = lab.sweep("n0", Duration::from_secs(4)).await;
    assert!(
        changed.load(Ordering::Relaxed) >= 1,
        "no relay batch went by"
    );
    assert_nobody_skewed(&doc);
    let s = lab.stats("n0").await;
    assert!(s.node.sweep.relay_holds_refused >= 1, "{:?}", s.node.sweep);
    lab.net.rewrite(None);
    lab.stop().await;
}
