//! A sans-IO [`Node`] that coordinates a sweep, for the targets whose bytes
//! arrive as a datagram (`codec`: foca's channel, `sweep_wire`: the sweep
//! channel).
//!
//! Everything is fixed (identity, seed, time), so a run is reproducible:
//! the node starts a sweep of its own (its sweep id comes from the seed,
//! so the fuzzer can learn it), takes the datagram, runs its own checks
//! and every sweep it joined with none, and fires the timers it asks for
//! in time order on a virtual clock (at most [`MAX_TIMERS`]), which
//! usually finishes its sweep. Every finished document must pass the
//! accounting invariant.

use std::collections::BTreeMap;
use std::time::Duration;

use patrol_agent::identity::NodeId;
use patrol_agent::sweep::StartSweep;
use patrol_core::node::{Channel, NodeTimer};
use patrol_core::{Node, NodeSettings, Now, Output};

const NOW: Now = Now {
    mono: Duration::from_secs(1_000),
    unix_ms: 1_800_000_000_000,
};

/// At most this many timers fired (a node always has timers pending, so
/// this is what ends a run).
const MAX_TIMERS: usize = 200;

/// Hand `body` to a coordinating node as one datagram on `channel`.
pub(crate) fn deliver(channel: Channel, body: &[u8]) {
    let me = NodeId::new(
        "fuzz-0",
        "127.0.0.1:7000".parse().expect("an address"),
        1,
        BTreeMap::from([("role".to_string(), "fuzz".to_string())]),
    );
    let mut node = Node::new(me, NodeSettings::default(), 7, NOW);
    let own = node
        .start_sweep(
            NOW,
            StartSweep {
                selector: Default::default(),
                node_filter: BTreeMap::new(),
                deadline: Duration::from_secs(5),
                id: None,
                authorization: None,
            },
        )
        .expect("a node without certificates starts any sweep");
    let mut timers = Vec::new();
    drain(&mut node, own, NOW, &mut timers);
    let mut bytes = Vec::with_capacity(body.len() + 1);
    bytes.push(channel as u8);
    bytes.extend_from_slice(body);
    let from = "127.0.0.1:7001".parse().expect("an address");
    node.datagram(NOW, from, &bytes);
    assert_eq!(node.stats().datagrams_in, 1);
    // Our own answer: delivered in-process once its spread delay is over,
    // so the sweep can finish (with whatever the datagram added) below.
    node.checks_done(NOW, own, Vec::new());
    // Only the timers the datagram led to, in time order, on a virtual
    // clock that moves to each one as it fires.
    timers.clear();
    let mut now = NOW;
    drain(&mut node, own, now, &mut timers);
    for _ in 0..MAX_TIMERS {
        let Some(first) = (0..timers.len()).min_by_key(|&i| timers[i].0) else {
            break;
        };
        let (due, timer) = timers.swap_remove(first);
        if due > now.mono {
            let ms = (due - now.mono).as_millis() as u64;
            now = Now {
                mono: due,
                unix_ms: now.unix_ms + ms,
            };
        }
        node.timer(now, timer);
        drain(&mut node, own, now, &mut timers);
    }
}

/// Take every output: answer other sweeps' check runs at once with no
/// checks, keep the timers (with the time they are due), check every
/// finished document.
fn drain(node: &mut Node, own: u64, now: Now, timers: &mut Vec<(Duration, NodeTimer)>) {
    while let Some(out) = node.next_output() {
        match out {
            Output::RunChecks { sweep_id, .. } if sweep_id != own => {
                node.checks_done(now, sweep_id, Vec::new());
            }
            Output::Timer { after, timer } => timers.push((now.mono + after, timer)),
            Output::Completed { document, .. } => {
                if let Err(e) = document.check_accounting() {
                    panic!("a finished sweep breaks the accounting invariant: {e}");
                }
            }
            _ => {}
        }
    }
}
