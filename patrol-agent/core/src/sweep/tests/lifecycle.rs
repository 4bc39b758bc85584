//! The sweep's lifecycle: a healthy sweep, lost requests, answers and
//! acks recovered, duplicates and replays, expiry, the node filter, a busy
//! node, members going down, late joiners and late answers.

use super::*;
use crate::sweep::coordinator::MAX_DEFERRED as MAX_DEFERRED_TICKS;

#[test]
fn healthy_sweep_completes_early_with_everyone_ok() {
    let mut net = Net::new(5, SweepSettings::default());
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    net.run_for(Duration::from_secs(1));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.expected, 5);
    assert_eq!(doc.counts.ok, 5);
    assert!(
        doc.timing.completed_ms < 1000,
        "completed at {} ms",
        doc.timing.completed_ms
    );
    assert_eq!(doc.version, patrol_model::document::DOCUMENT_VERSION);
    assert_eq!(net.run_checks.len(), 5, "each node ran its checks once");
    let reached = doc
        .nodes
        .iter()
        .find(|n| n.name == peer(3).name)
        .unwrap()
        .reached_ms;
    assert_eq!(reached, Some(1), "reached one hop after the start");
}

#[test]
fn a_warning_makes_the_node_failing() {
    let mut net = Net::new(3, SweepSettings::default());
    net.outcomes = Box::new(|i| {
        vec![
            outcome("a", Status::Pass),
            outcome("b", if i == 2 { Status::Warn } else { Status::Pass }),
        ]
    });
    let members = net.members();
    net.start(1, Duration::from_secs(5), members);
    net.run_for(Duration::from_secs(1));
    let doc = net.doc();
    assert_eq!(state_of(doc, 2), NodeState::Failing);
    assert_eq!(state_of(doc, 0), NodeState::Ok);
    assert_eq!(doc.counts.failing, 1);
}

#[test]
fn coordinator_that_hears_nothing_lists_everyone_else_as_no_answer() {
    let mut net = Net::new(4, SweepSettings::default());
    net.drop = Box::new(|_| true);
    let members = net.members();
    net.start(0, Duration::from_secs(2), members);
    net.run_for(Duration::from_secs(1));
    assert!(net.completed.is_empty(), "not complete before the deadline");
    net.run_for(Duration::from_secs(2));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(
        state_of(doc, 0),
        NodeState::Ok,
        "the coordinator answers itself"
    );
    assert_eq!(doc.counts.no_answer, 3);
    assert_eq!(doc.timing.completed_ms, 2000);
    // The backstop tried the silent nodes directly.
    let backstops = net
        .sent
        .iter()
        .filter(|(_, m)| matches!(m, SweepMessage::Request(_)))
        .count();
    assert!(backstops >= 3, "backstop sent {backstops} direct requests");
}

#[test]
fn lost_answer_is_recovered_by_retry() {
    let mut net = Net::new(3, SweepSettings::default());
    let mut dropped = 0;
    net.drop = Box::new(move |ev| {
        if matches!(ev, Ev::Msg(0, _, SweepMessage::Answer(_))) && dropped < 2 {
            dropped += 1;
            return true;
        }
        false
    });
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    net.run_for(Duration::from_secs(5));
    let doc = net.doc();
    assert_eq!(doc.counts.ok, 3);
    assert!(doc.timing.completed_ms < 5000);
}

#[test]
fn lost_ack_leads_to_a_duplicate_answer_that_is_deduplicated() {
    let mut net = Net::new(2, SweepSettings::default());
    let mut dropped = false;
    net.drop = Box::new(move |ev| {
        if matches!(ev, Ev::Msg(1, _, SweepMessage::Ack { .. })) && !dropped {
            dropped = true;
            return true;
        }
        false
    });
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    net.run_for(Duration::from_secs(3));
    let answers = net
        .sent
        .iter()
        .filter(|(from, m)| *from == 1 && matches!(m, SweepMessage::Answer(_)))
        .count();
    assert_eq!(
        answers, 2,
        "the answer was resent once after its ack was lost"
    );
    let doc = net.doc();
    assert_eq!(doc.nodes.len(), 2);
    assert_eq!(doc.counts.ok, 2);
}

#[test]
fn lost_request_is_recovered_by_the_backstop() {
    let mut net = Net::new(4, SweepSettings::default());
    net.drop = Box::new(|ev| matches!(ev, Ev::Req(3, _)));
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    net.run_for(Duration::from_secs(5));
    let doc = net.doc();
    assert_eq!(doc.counts.ok, 4);
    assert!(net
        .sent
        .iter()
        .any(|(from, m)| *from == 0 && matches!(m, SweepMessage::Request(_))));
    assert!(
        doc.timing.completed_ms < 2500,
        "backstop came at {} ms",
        doc.timing.completed_ms
    );
}

#[test]
fn duplicate_requests_run_checks_once() {
    let mut net = Net::new(3, SweepSettings::default());
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    let req = match net.queue.values().find_map(|e| {
        if let Ev::Req(_, r) = e {
            Some(r.clone())
        } else {
            None
        }
    }) {
        Some(r) => r,
        None => panic!("no request spread"),
    };
    net.push(HOP, Ev::Req(1, req.clone()));
    net.push(HOP * 2, Ev::Msg(1, addr(0), SweepMessage::Request(req)));
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.run_checks.iter().filter(|(n, _)| *n == 1).count(), 1);
    assert_eq!(net.doc().counts.ok, 3);
}

#[test]
fn replayed_request_after_completion_runs_no_checks() {
    let mut net = Net::new(3, SweepSettings::default());
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    let req = net
        .queue
        .values()
        .find_map(|e| {
            if let Ev::Req(_, r) = e {
                Some(r.clone())
            } else {
                None
            }
        })
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.completed.len(), 1);
    let before = net.run_checks.len();
    // Replay while the request is still valid, then after it expired.
    net.push(HOP, Ev::Req(2, req.clone()));
    net.push(HOP, Ev::Msg(2, addr(1), SweepMessage::Request(req.clone())));
    net.run_for(Duration::from_secs(10));
    net.push(HOP, Ev::Req(2, req.clone()));
    net.push(HOP, Ev::Req(1, req));
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.run_checks.len(), before, "a replay ran checks");
    assert_eq!(net.completed.len(), 1, "completed once");
}

#[test]
fn expired_request_is_refused() {
    let mut core = SweepCore::new(peer(1), "t".into(), SweepSettings::default(), 1);
    let req = SweepRequest {
        id: 9,
        coordinator: peer(0).peer_addr(),
        selector: Default::default(),
        node_filter: BTreeMap::new(),
        issued_at_unix_ms: UNIX0,
        deadline_ms: 1000,
        answer_spread_ms: 0,
        relays: vec![],
        auth: None,
    };
    let mut out = Vec::new();
    core.handle_request(at(Duration::ZERO, UNIX0 + 1000), req.clone(), &mut out);
    assert!(out.is_empty(), "expired request produced {out:?}");
    core.handle_request(at(Duration::ZERO, UNIX0 + 999), req, &mut out);
    assert!(out
        .iter()
        .any(|e| matches!(e, Effect::RunChecks { sweep_id: 9, .. })));
}

#[test]
fn node_filter_excludes_nodes_on_both_sides() {
    let mut net = Net::new(5, SweepSettings::default());
    let members = net.members();
    let mut out = Vec::new();
    let spec = StartSweep {
        selector: Default::default(),
        node_filter: BTreeMap::from([("role".to_string(), "odd".to_string())]),
        deadline: Duration::from_secs(5),
        id: None,
        authorization: None,
    };
    let (now, unix) = (net.now, net.unix());
    net.cores[1]
        .start(at(now, unix), spec, members, &mut out)
        .unwrap();
    net.effects(1, out);
    net.run_for(Duration::from_secs(2));
    let doc = net.doc();
    assert_eq!(doc.counts.expected, 2);
    assert_eq!(doc.counts.ok, 2);
    let ran: BTreeSet<usize> = net.run_checks.iter().map(|(n, _)| *n).collect();
    assert_eq!(ran, BTreeSet::from([1, 3]));
}

#[test]
fn busy_node_answers_with_a_busy_error() {
    let settings = SweepSettings {
        max_concurrent: 1,
        ..SweepSettings::default()
    };
    let mut net = Net::new(3, settings);
    net.hung.insert(2);
    let members = net.members();
    net.start(0, Duration::from_secs(3), members.clone());
    net.run_for(Duration::from_millis(20));
    net.start(1, Duration::from_secs(3), members);
    net.run_for(Duration::from_secs(4));
    assert_eq!(net.completed.len(), 2);
    let second = net
        .completed
        .iter()
        .find(|d| d.coordinator == peer(1).name)
        .unwrap();
    assert_eq!(state_of(second, 2), NodeState::Failing);
    let node = second
        .nodes
        .iter()
        .find(|n| n.name == peer(2).name)
        .unwrap();
    assert_eq!(node.checks.len(), 1);
    assert_eq!(node.checks[0].id, outcomes::BUSY_CHECK_ID);
    assert_eq!(node.checks[0].status, Status::Error);
    let first = net
        .completed
        .iter()
        .find(|d| d.coordinator == peer(0).name)
        .unwrap();
    assert_eq!(
        state_of(first, 2),
        NodeState::NoAnswer,
        "hung checks: no answer at the deadline"
    );
}

#[test]
fn member_down_mid_sweep_completes_the_sweep_early() {
    let mut net = Net::new(4, SweepSettings::default());
    net.dead.insert(3);
    let members = net.members();
    let id = net.start(0, Duration::from_secs(10), members);
    net.run_for(Duration::from_millis(500));
    assert!(net.completed.is_empty());
    let mut out = Vec::new();
    net.cores[0].member_down(at(net.now, UNIX0), &peer(3).name, &mut out);
    assert!(out
        .iter()
        .any(|e| matches!(e, Effect::Progress { sweep_id, .. } if *sweep_id == id)));
    net.effects(0, out);
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(state_of(doc, 3), NodeState::Down);
    assert_eq!(doc.counts.ok, 3);
    assert!(doc.timing.completed_ms < 1000);
}

#[test]
fn member_down_at_start_is_down_and_not_waited_for() {
    let mut net = Net::new(4, SweepSettings::default());
    net.dead.insert(2);
    let mut members = net.members();
    members[2].alive = false;
    net.start(0, Duration::from_secs(10), members);
    net.run_for(Duration::from_secs(1));
    let doc = net.doc();
    assert_eq!(state_of(doc, 2), NodeState::Down);
    assert_eq!(doc.counts.down, 1);
    assert_eq!(doc.counts.ok, 3);
    let backstops = net
        .sent
        .iter()
        .filter(|(_, m)| matches!(m, SweepMessage::Request(_)))
        .count();
    assert_eq!(backstops, 0, "a down node is not backstopped");
}

#[test]
fn member_down_after_answering_stays_answered() {
    let mut net = Net::new(3, SweepSettings::default());
    net.hung.insert(2);
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    net.run_for(Duration::from_millis(500));
    let mut out = Vec::new();
    net.cores[0].member_down(at(net.now, UNIX0), &peer(1).name, &mut out);
    net.cores[0].member_down(at(net.now, UNIX0), &peer(2).name, &mut out);
    net.effects(0, out);
    let doc = net.doc();
    assert_eq!(state_of(doc, 1), NodeState::Ok);
    assert_eq!(state_of(doc, 2), NodeState::Down);
}

#[test]
fn late_joiner_is_listed_as_such() {
    let mut net = Net::new(4, SweepSettings::default());
    let members: Vec<MemberView> = net.members().into_iter().take(3).collect();
    net.hung.insert(1);
    net.start(0, Duration::from_secs(2), members);
    net.run_for(Duration::from_secs(3));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.expected, 3);
    assert_eq!(doc.counts.late_joiners, 1);
    let late = doc.nodes.iter().find(|n| n.name == peer(3).name).unwrap();
    assert!(late.late_joiner);
    assert_eq!(late.state, NodeState::Ok);
    assert_eq!(state_of(doc, 1), NodeState::NoAnswer);
}

#[test]
fn late_answer_after_the_deadline_is_acked_but_changes_nothing() {
    let mut net = Net::new(2, SweepSettings::default());
    net.check_time = Duration::from_secs(3);
    let members = net.members();
    net.start(0, Duration::from_secs(2), members);
    net.run_for(Duration::from_millis(2500));
    assert_eq!(state_of(net.doc(), 1), NodeState::NoAnswer);
    // Node 1's checks finish after the deadline: it no longer answers.
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.completed.len(), 1);
    // A piece arriving after completion is still acked (stops retries).
    let id = u64::from_str_radix(&net.doc().sweep_id, 16).unwrap();
    let chunk = AnswerChunk {
        sweep_id: id,
        node: peer(1).name,
        nonce: 1,
        index: 0,
        count: 1,
        sent_unix_ms: net.unix(),
        sent_tag: None,
        payload: vec![],
    };
    let mut out = Vec::new();
    let (now, unix) = (net.now, net.unix());
    net.cores[0].handle_message(
        at(now, unix),
        addr(1),
        SweepMessage::Answer(chunk),
        &mut out,
    );
    assert!(
        matches!(
            &out[..],
            [Effect::Send {
                msg: SweepMessage::Ack { .. },
                ..
            }]
        ),
        "{out:?}"
    );
}

/// Two certified cores and a request signed for a sweep core 0
/// coordinates, with `filter` as its node filter.
fn certified_pair(filter: BTreeMap<String, String>) -> (Vec<SweepCore>, SweepRequest) {
    use crate::trust::authorization::SweepAsk;
    use crate::trust::testing::{bundle, ca, creds};
    use crate::trust::{Authorization, Role, Scope};

    let ca = ca(1);
    let trust_bundle = bundle(&[&ca]);
    let mut cores: Vec<SweepCore> = (0..2)
        .map(|i| {
            let mut c = SweepCore::new(peer(i), "t".into(), SweepSettings::default(), i as u64);
            c.set_trust(
                creds(&ca, Role::Node, &peer(i).name, 10 + i as u8),
                trust_bundle.clone(),
            );
            c
        })
        .collect();
    let operator = creds(&ca, Role::Operator(Scope::full(600_000)), "alice", 99);
    let selector = patrol_model::Selector::default();
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
        authorization: Some(Authorization::sign(&operator, &ask, UNIX0)),
    };
    let members = (0..2)
        .map(|i| MemberView {
            rostered: false,
            peer: peer(i),
            alive: true,
        })
        .collect();
    let mut out = Vec::new();
    cores[0]
        .start(at(Duration::ZERO, UNIX0), spec, members, &mut out)
        .unwrap();
    let real = out
        .iter()
        .find_map(|e| match e {
            Effect::Spread(r) => Some(r.clone()),
            _ => None,
        })
        .expect("the coordinator spreads its request");
    (cores, real)
}

/// With certificates, a participant vouches only for what it checked: an
/// unsigned copy under a real sweep's id is refused and not passed on, and
/// does not keep the real request (same id, other bytes) out.
#[test]
fn a_forged_copy_under_a_real_id_is_not_passed_on_nor_keeps_the_real_request_out() {
    let (mut cores, real) = certified_pair(BTreeMap::new());
    let id = real.id;
    let now = at(Duration::ZERO, UNIX0);
    let mut forged = real.clone();
    forged.auth = None;
    let sender = Some(addr(7));
    let mut out = Vec::new();
    assert!(
        !cores[1].handle_gossiped(now, forged.clone(), sender, &mut out),
        "an unsigned copy is not passed on"
    );
    assert!(!out.iter().any(|e| matches!(e, Effect::RunChecks { .. })));
    assert!(
        !cores[1].handle_gossiped(now, forged, sender, &mut out),
        "nor its second copy"
    );
    assert!(
        cores[1].handle_gossiped(now, real, sender, &mut out),
        "the real request is checked, taken and passed on"
    );
    assert!(out
        .iter()
        .any(|e| matches!(e, Effect::RunChecks { sweep_id, .. } if *sweep_id == id)));
    let audits = out
        .iter()
        .filter(|e| matches!(e, Effect::Audit(a) if matches!(a.action, AuditAction::Refused(_))))
        .count();
    assert_eq!(audits, 1, "one refusal line for two forged copies: {out:?}");
}

/// A node outside a sweep's node filter gets the request twice (gossip and
/// the coordinator's direct copy): the second copy is the same request,
/// skipped again and passed on, never refused as a replay.
#[test]
fn a_second_copy_of_a_request_skipped_for_its_filter_is_no_replay() {
    let filter = BTreeMap::from([("role".to_string(), "nosuch".to_string())]);
    let (mut cores, real) = certified_pair(filter);
    let now = at(Duration::ZERO, UNIX0);
    let mut out = Vec::new();
    for _ in 0..2 {
        assert!(cores[1].handle_gossiped(now, real.clone(), Some(addr(0)), &mut out));
    }
    assert_eq!(cores[1].counters().requests_unauthorized, 0, "{out:?}");
    assert!(!out.iter().any(|e| matches!(e, Effect::RunChecks { .. })));
}

/// The tick timer among `out`.
fn tick_timer(out: &[Effect]) -> SweepTimer {
    out.iter()
        .find_map(|e| match e {
            Effect::Schedule {
                timer: t @ SweepTimer(TimerKind::Tick(_)),
                ..
            } => Some(t.clone()),
            _ => None,
        })
        .expect("a tick scheduled")
}

fn requests_sent(out: &[Effect]) -> usize {
    out.iter()
        .filter(|e| {
            matches!(
                e,
                Effect::Send {
                    msg: SweepMessage::Request(_),
                    ..
                }
            )
        })
        .count()
}

#[test]
fn a_coordinator_that_is_behind_puts_the_backstop_off_and_runs_it_once_it_keeps_up() {
    let settings = SweepSettings::default();
    let tick = settings.tick;
    let mut core = SweepCore::new(peer(0), "test".into(), settings, 7);
    let spec = StartSweep {
        selector: Default::default(),
        node_filter: BTreeMap::new(),
        deadline: Duration::from_secs(10),
        id: None,
        authorization: None,
    };
    let mut out = Vec::new();
    let members = vec![MemberView {
        peer: peer(1),
        alive: true,
        rostered: false,
    }];
    core.start(at(Duration::ZERO, UNIX0), spec, members, &mut out)
        .unwrap();
    let mut timer = tick_timer(&out);
    // The first tick, due at one tick, comes a second late: behind. The
    // backstop would be due (node 1 never answered), but is put off.
    let mut now = Duration::from_secs(1);
    for _ in 0..MAX_DEFERRED_TICKS {
        out.clear();
        core.handle_timer(at(now, UNIX0 + now.as_millis() as u64), timer, &mut out);
        assert_eq!(requests_sent(&out), 0, "a backstop round while behind");
        timer = tick_timer(&out);
        now += tick * 3;
    }
    // On time again: the round runs.
    now -= tick * 2;
    out.clear();
    core.handle_timer(at(now, UNIX0 + now.as_millis() as u64), timer, &mut out);
    assert_eq!(requests_sent(&out), 1);
}

#[test]
fn a_coordinator_behind_for_long_still_runs_the_backstop() {
    let settings = SweepSettings::default();
    let tick = settings.tick;
    let mut core = SweepCore::new(peer(0), "test".into(), settings, 7);
    let spec = StartSweep {
        selector: Default::default(),
        node_filter: BTreeMap::new(),
        deadline: Duration::from_secs(10),
        id: None,
        authorization: None,
    };
    let mut out = Vec::new();
    let members = vec![MemberView {
        peer: peer(1),
        alive: true,
        rostered: false,
    }];
    core.start(at(Duration::ZERO, UNIX0), spec, members, &mut out)
        .unwrap();
    let mut timer = tick_timer(&out);
    let mut now = Duration::from_secs(1);
    let mut sent = 0;
    for _ in 0..=MAX_DEFERRED_TICKS {
        out.clear();
        core.handle_timer(at(now, UNIX0 + now.as_millis() as u64), timer, &mut out);
        sent += requests_sent(&out);
        timer = tick_timer(&out);
        now += tick * 3;
    }
    assert_eq!(sent, 1, "put off at most {MAX_DEFERRED_TICKS} ticks");
}
