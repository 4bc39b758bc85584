//! Relays: answers taken, grouped and rebuilt; relays that lose or never
//! forward answers; batches from non-relays; with certificates, each
//! node's proof carried through a relay.

use super::*;

/// Relays from two nodes on, two relays at most.
fn relayed_settings() -> SweepSettings {
    SweepSettings {
        relay_min_nodes: 2,
        nodes_per_relay: 4,
        max_relays: 2,
        ..SweepSettings::default()
    }
}

/// Node `i` passes check `a` and observes `i` on check `b`: one group,
/// a difference per node.
fn per_node_values(i: usize) -> Vec<CheckOutcome> {
    vec![
        outcome("a", Status::Pass),
        CheckOutcome {
            observed: Observed::Number(i as f64),
            ..outcome("b", Status::Pass)
        },
    ]
}

fn relays_of(net: &Net, id: u64) -> Vec<usize> {
    net.cores[0]
        .relays(id)
        .iter()
        .map(|a| usize::from(a.port() - 10_000))
        .collect()
}

fn observed_b(doc: &SweepDocument, i: usize) -> Observed {
    entry(doc, i)
        .checks
        .iter()
        .find(|c| c.id == "b")
        .map(|c| c.observed.clone())
        .unwrap_or_default()
}

#[test]
fn relays_take_the_answers_and_the_coordinator_rebuilds_each_one() {
    let mut net = Net::new(9, relayed_settings());
    net.outcomes = Box::new(per_node_values);
    let members = net.members();
    let id = net.start(0, Duration::from_secs(5), members);
    let relays = relays_of(&net, id);
    assert_eq!(relays.len(), 2, "9 nodes, 4 per relay, at most 2");
    assert!(!relays.contains(&0), "the coordinator is no relay");
    net.run_for(Duration::from_secs(2));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.ok, 9);
    for i in 0..9 {
        assert_eq!(observed_b(doc, i), Observed::Number(i as f64), "node {i}");
    }
    // Every other node's answer went to its relay, and only relays'
    // batches (no answer piece) reached the coordinator.
    let batches: Vec<&RelayBatch> = net
        .sent
        .iter()
        .filter_map(|(_, m)| match m {
            SweepMessage::Batch(b) => Some(b),
            _ => None,
        })
        .collect();
    let relayed: usize = batches
        .iter()
        .flat_map(|b| &b.groups)
        .map(|g| g.nodes.len())
        .sum();
    assert_eq!(relayed, 8, "{batches:?}");
    let with_header = batches
        .iter()
        .flat_map(|b| &b.groups)
        .filter(|g| g.header.is_some())
        .count();
    assert!(with_header <= 2 * batches.len());
    let direct = net
        .sent
        .iter()
        .filter(|(from, m)| *from != 0 && matches!(m, SweepMessage::Answer(_)))
        .count();
    assert_eq!(direct, 8, "one piece per node, each to its relay");
    assert_eq!(net.cores[0].counters().pieces_refused, 0);
}

#[test]
fn a_relay_that_acks_but_never_forwards_costs_no_node_its_answer() {
    let mut net = Net::new(9, relayed_settings());
    net.outcomes = Box::new(per_node_values);
    net.drop = Box::new(|ev| matches!(ev, Ev::Msg(_, _, SweepMessage::Batch(_))));
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    net.run_for(Duration::from_secs(5));
    let doc = net.doc();
    assert_accounted(doc);
    // The backstop asked each node directly; each sent the answer it kept.
    assert_eq!(doc.counts.ok, 9);
    for i in 0..9 {
        assert_eq!(observed_b(doc, i), Observed::Number(i as f64), "node {i}");
    }
    assert!(doc.timing.completed_ms < 5000, "{:?}", doc.timing);
}

#[test]
fn a_dead_relay_is_passed_over_at_the_first_resend() {
    let mut net = Net::new(9, relayed_settings());
    let members = net.members();
    let id = net.start(0, Duration::from_secs(3), members);
    let dead = relays_of(&net, id)[0];
    net.dead.insert(dead);
    net.run_for(Duration::from_secs(4));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.ok, 8, "every live node answered");
    assert_eq!(state_of(doc, dead), NodeState::NoAnswer);
    // The dead relay's nodes went straight to the coordinator on their
    // first resend, long before the backstop.
    for i in (1..9).filter(|i| *i != dead) {
        let answered = entry(doc, i).answered_ms.unwrap();
        assert!(answered < 400, "node {i} answered at {answered} ms");
    }
}

#[test]
fn a_batch_from_a_node_that_is_no_relay_is_refused() {
    let mut net = Net::new(9, relayed_settings());
    let members = net.members();
    let id = net.start(0, Duration::from_secs(3), members);
    let relays = relays_of(&net, id);
    let intruder = (1..9).find(|i| !relays.contains(i)).unwrap();
    let forged = RelayBatch {
        sweep_id: id,
        batch: 0,
        groups: vec![RelayGroup {
            key: 0,
            header: Some(GroupHeader {
                tags: BTreeMap::new(),
                catalog: vec![CheckName {
                    id: "b".into(),
                    kind: "sysctl".into(),
                }],
                base: vec![CheckResult {
                    status: Status::Pass,
                    observed: Observed::Number(666.0),
                    detail: None,
                }],
            }),
            nodes: vec![RelayedAnswer {
                node: peer(3).name,
                nonce: 1,
                received_unix_ms: UNIX0,
                checks_ms: 1,
                sent_after_ms: 1,
                sent_tag: None,
                held_ms: 0,
                diff: Vec::new(),
                proof: None,
            }],
        }],
    };
    let mut out = Vec::new();
    let (now, unix) = (net.now, net.unix());
    net.cores[0].handle_message(
        at(now, unix),
        addr(intruder),
        SweepMessage::Batch(forged),
        &mut out,
    );
    assert!(
        !out.iter().any(|e| matches!(e, Effect::Send { .. })),
        "no ack for a refused batch: {out:?}"
    );
    assert_eq!(net.cores[0].counters().pieces_refused, 1);
    net.effects(0, out);
    net.run_for(Duration::from_secs(3));
    let doc = net.doc();
    assert_eq!(doc.counts.ok, 9);
    assert_ne!(observed_b(doc, 3), Observed::Number(666.0));
}

/// Nine certified nodes with relays; with `told`, every node believes the
/// coordinator has its certificate (as after an earlier sweep) though it
/// does not. Starts a signed sweep.
fn certified_relayed_sweep(told: bool, tamper: Option<fn(&mut RelayBatch)>) -> Net {
    use crate::trust::authorization::SweepAsk;
    use crate::trust::testing::{bundle, ca, creds};
    use crate::trust::{Authorization, Role, Scope};

    let ca = ca(1);
    let trust_bundle = bundle(&[&ca]);
    let mut net = Net::new(9, relayed_settings());
    net.outcomes = Box::new(per_node_values);
    net.tamper = tamper;
    for (i, core) in net.cores.iter_mut().enumerate() {
        core.set_trust(
            creds(&ca, Role::Node, &peer(i).name, 10 + i as u8),
            trust_bundle.clone(),
        );
    }
    if told {
        let epoch = net.cores[0].peer_epoch().unwrap();
        for core in net.cores.iter_mut() {
            core.mark_told(&peer(0).name, epoch);
        }
    }
    let operator = creds(&ca, Role::Operator(Scope::full(600_000)), "alice", 99);
    let selector = patrol_model::Selector::default();
    let filter = BTreeMap::new();
    let id = 0xfeed;
    let ask = SweepAsk {
        sweep_id: id,
        selector: &selector,
        node_filter: &filter,
        deadline_ms: 5000,
        coordinator: &peer(0).name,
    };
    let spec = StartSweep {
        selector: selector.clone(),
        node_filter: filter.clone(),
        deadline: Duration::from_secs(5),
        id: Some(id),
        authorization: Some(Authorization::sign(&operator, &ask, net.unix())),
    };
    let mut out = Vec::new();
    let members = net.members();
    let (now, unix) = (net.now, net.unix());
    net.cores[0]
        .start(at(now, unix), spec, members, &mut out)
        .unwrap();
    net.effects(0, out);
    net
}

#[test]
fn with_certificates_answers_a_relay_changed_are_forged_and_the_nodes_asked_again() {
    let mut net = certified_relayed_sweep(false, Some(tamper_values));
    net.run_for(Duration::from_secs(5));
    let doc = net.doc();
    assert_accounted(doc);
    let counters = net.cores[0].counters().clone();
    // Nothing the relays changed was recorded; every node then answered
    // the coordinator directly, after its backstop asked.
    assert_eq!(counters.answers_forged, 8, "{counters:?}");
    assert_eq!(doc.counts.ok, 9, "{counters:?}");
    for i in 0..9 {
        assert_eq!(observed_b(doc, i), Observed::Number(i as f64), "node {i}");
    }
}

#[test]
fn with_certificates_relayed_answers_carry_each_nodes_proof() {
    let mut net = certified_relayed_sweep(false, None);
    net.run_for(Duration::from_secs(2));
    let doc = net.doc();
    assert_accounted(doc);
    let counters = net.cores[0].counters().clone();
    assert_eq!(doc.counts.ok, 9, "{counters:?}");
    assert_eq!(counters.answers_forged + counters.answers_unverified, 0);
    // The first answers carried whole certificates: the nodes now know the
    // coordinator has them, and name them by digest next time.
    let epoch = net.cores[0].peer_epoch().unwrap();
    let trust = net.cores[3].env.trust.as_ref().unwrap();
    assert!(trust.knows_us(&peer(0).name, epoch));
}

#[test]
fn with_certificates_a_digest_the_coordinator_lacks_is_asked_again_whole() {
    let mut net = certified_relayed_sweep(true, None);
    net.run_for(Duration::from_secs(5));
    let doc = net.doc();
    assert_accounted(doc);
    let counters = net.cores[0].counters().clone();
    assert_eq!(counters.answers_unverified, 8, "{counters:?}");
    assert_eq!(counters.answers_forged, 0, "{counters:?}");
    assert_eq!(doc.counts.ok, 9, "{counters:?}");
    for i in 0..9 {
        assert_eq!(observed_b(doc, i), Observed::Number(i as f64), "node {i}");
    }
}

/// Issue 22, item 2: a relay that moves the nodes' send times an hour
/// later. The node's tag over its send time no longer checks: the answers
/// are dropped, the nodes asked directly, and nobody is reported skewed.
#[test]
fn with_certificates_send_times_a_relay_changed_are_refused_and_nobody_looks_skewed() {
    let mut net = certified_relayed_sweep(false, Some(tamper_send_times));
    net.run_for(Duration::from_secs(5));
    let doc = net.doc();
    assert_accounted(doc);
    let counters = net.cores[0].counters().clone();
    assert_eq!(counters.times_forged, 8, "{counters:?}");
    assert_eq!(doc.counts.ok, 9, "{counters:?}");
    for n in &doc.nodes {
        assert!(
            n.checks
                .iter()
                .all(|c| c.id != outcomes::CLOCK_SKEW_CHECK_ID),
            "{} reported skewed: {:?}",
            n.name,
            n.clock
        );
        let clock = n.clock.expect("measured directly");
        assert!(clock.offset_ms.abs() < 1_000, "{}: {clock:?}", n.name);
    }
}

/// A relay that claims it held every answer 900 ms (it held them
/// 10 ms): the claim is over what an honest relay holds, so it is not
/// taken off the trip, and nobody looks skewed.
#[test]
fn a_hold_time_over_what_a_relay_holds_is_not_taken_off_the_trip() {
    let mut net = certified_relayed_sweep(false, Some(tamper_hold_times));
    net.run_for(Duration::from_secs(5));
    let doc = net.doc();
    assert_accounted(doc);
    let counters = net.cores[0].counters().clone();
    assert_eq!(counters.relay_holds_refused, 8, "{counters:?}");
    assert_eq!(doc.counts.ok, 9, "{counters:?}");
    for n in &doc.nodes {
        assert!(
            n.checks
                .iter()
                .all(|c| c.id != outcomes::CLOCK_SKEW_CHECK_ID),
            "{} reported skewed",
            n.name
        );
    }
}

/// Two relays for `nodes` nodes, batches of a few answers each (a small
/// `max_datagram`), and `relay_window` batches in flight per relay.
fn windowed_settings(window: usize) -> SweepSettings {
    SweepSettings {
        relay_min_nodes: 2,
        nodes_per_relay: 100_000,
        max_relays: 2,
        max_datagram: 400,
        relay_window: window,
        ..SweepSettings::default()
    }
}

/// The batch numbers each relay sent the coordinator (first sends and
/// resends alike).
fn batch_numbers(net: &Net, relay: usize) -> BTreeSet<u32> {
    net.sent
        .iter()
        .filter(|(from, _)| *from == relay)
        .filter_map(|(_, m)| match m {
            SweepMessage::Batch(b) => Some(b.batch),
            _ => None,
        })
        .collect()
}

#[test]
fn a_relay_keeps_at_most_its_window_of_batches_in_flight() {
    let mut net = Net::new(100, windowed_settings(2));
    net.outcomes = Box::new(per_node_values);
    // The coordinator's acks never arrive: a coordinator far behind.
    net.drop = Box::new(|ev| matches!(ev, Ev::Msg(_, _, SweepMessage::BatchAck { .. })));
    let members = net.members();
    let id = net.start(0, Duration::from_secs(3), members);
    let relays = relays_of(&net, id);
    net.run_for(Duration::from_secs(4));
    for &r in &relays {
        // About 50 answers each, several batches' worth: only the first
        // two went out (and were resent), the rest waited at the relay.
        assert_eq!(
            batch_numbers(&net, r),
            BTreeSet::from([0, 1]),
            "relay {r} sent batches beyond its window"
        );
        assert!(net.cores[r].counters().relay.batches_resent > 0);
    }
    // Nobody is lost: the coordinator took what the batches carried, and
    // the backstop asked the others, who answered directly.
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.ok, 100);
}

#[test]
fn acks_open_the_window_and_every_answer_comes_through_the_relays() {
    let mut net = Net::new(100, windowed_settings(1));
    net.outcomes = Box::new(per_node_values);
    let members = net.members();
    let id = net.start(0, Duration::from_secs(3), members);
    let relays = relays_of(&net, id);
    net.run_for(Duration::from_secs(4));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.ok, 100);
    for i in 0..100 {
        assert_eq!(observed_b(doc, i), Observed::Number(i as f64), "node {i}");
    }
    for &r in &relays {
        let relay = &net.cores[r].counters().relay;
        assert!(relay.batches_sent >= 3, "{relay:?}");
        assert_eq!(relay.batches_resent, 0, "{relay:?}");
    }
    // Every other node sent its one piece once (to its relay): none had
    // to resend it or go to the coordinator.
    let pieces = net
        .sent
        .iter()
        .filter(|(from, m)| {
            !relays.contains(from) && *from != 0 && matches!(m, SweepMessage::Answer(_))
        })
        .count();
    assert_eq!(pieces, 97, "one piece per node");
}

#[test]
fn the_first_backstop_waits_while_the_relays_still_bring_answers() {
    // 3,000 nodes, two relays, one batch of a few answers in flight each:
    // draining their queues takes a round trip (2 ms) per batch, several
    // hundred ms, well past the spread window and `backstop_min_delay`,
    // when about 2,000 answers still wait at the relays.
    let n = 3000;
    let mut net = Net::new(n, windowed_settings(1));
    net.outcomes = Box::new(per_node_values);
    let members = net.members();
    let id = net.start(0, Duration::from_secs(5), members);
    let relays = relays_of(&net, id);
    net.run_for(Duration::from_secs(6));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.ok as usize, n);
    // The first round waited until at most 1,024 nodes were missing (it
    // then asks them, a few milliseconds of work): it asked no more.
    let asked = net
        .sent
        .iter()
        .filter(|(from, m)| *from == 0 && matches!(m, SweepMessage::Request(r) if r.id == id))
        .count()
        - relays.len();
    assert!(
        asked <= 1024,
        "the backstop asked {asked} nodes whose answers waited at their relays"
    );
    // And the relays did take longer than the backstop's first chance.
    let last = (1..n)
        .filter_map(|i| entry(doc, i).answered_ms)
        .max()
        .unwrap_or(0);
    assert!(
        last > 100 + 100,
        "the relays drained within the backstop's delay ({last} ms): the test shows nothing"
    );
}

#[test]
fn a_node_reached_after_the_spread_window_answers_at_once() {
    // A 300 ms spread window (100 ms a node).
    let settings = SweepSettings {
        answer_spread_per_node: Duration::from_millis(100),
        ..SweepSettings::default()
    };
    let mut net = Net::new(3, settings);
    let members = net.members();
    // Node 2 hears nothing of the first copies; the backstop reaches it.
    net.drop = Box::new(|ev| matches!(ev, Ev::Req(2, _)));
    net.start(0, Duration::from_secs(3), members);
    net.run_for(Duration::from_secs(4));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.ok, 3);
    let reached = entry(doc, 2).reached_ms.unwrap();
    let answered = entry(doc, 2).answered_ms.unwrap();
    assert!(reached >= 300, "reached by the backstop at {reached} ms");
    // Its checks (5 ms) and two hops, no spread on top.
    assert!(
        answered <= reached + 5 + 2 + 1,
        "reached at {reached} ms, answered at {answered} ms"
    );
}

#[test]
fn relays_that_keep_forwarding_delay_the_backstop_only_until_half_the_deadline() {
    // As above, but with a 500 ms deadline: the relays are still
    // forwarding at 250 ms, half of it, and the first round goes then.
    let n = 3000;
    let mut net = Net::new(n, windowed_settings(1));
    net.outcomes = Box::new(per_node_values);
    let members = net.members();
    let id = net.start(0, Duration::from_millis(500), members);
    let relays = relays_of(&net, id);
    net.run_for(Duration::from_millis(240));
    let asked_before = |net: &Net| {
        net.sent
            .iter()
            .filter(|(from, m)| *from == 0 && matches!(m, SweepMessage::Request(r) if r.id == id))
            .count()
            - relays.len()
    };
    assert_eq!(asked_before(&net), 0, "no round before half the deadline");
    net.run_for(Duration::from_millis(60));
    let asked = asked_before(&net);
    assert!(
        asked > 1024,
        "by 300 ms the backstop asked {asked} nodes: no round at half the deadline while more than 1,024 were missing"
    );
}
