//! Answers: pieces reassembled out of order, malformed and undecodable
//! answers, the spread window, acks that must come from the coordinator
//! and echo the nonce, a future-dated request refused and reported once.

use super::*;

#[test]
fn big_answers_are_chunked_and_reassembled_out_of_order() {
    let mut net = Net::new(2, SweepSettings::default());
    net.outcomes = Box::new(|_| {
        (0..60)
            .map(|k| outcome(&format!("check-{k:03}-with-a-long-name"), Status::Pass))
            .collect()
    });
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    // Deliver node 1's answer pieces in reverse order: hold them back.
    net.drop =
        Box::new(|ev| matches!(ev, Ev::Msg(0, _, SweepMessage::Answer(c)) if c.node == "node-01"));
    net.run_for(Duration::from_millis(100));
    let pieces: Vec<AnswerChunk> = net
        .sent
        .iter()
        .filter_map(|(from, m)| match m {
            SweepMessage::Answer(c) if *from == 1 => Some(c.clone()),
            _ => None,
        })
        .collect();
    assert!(pieces.len() >= 3, "answer in {} pieces", pieces.len());
    net.drop = Box::new(|_| false);
    for (k, c) in pieces.into_iter().rev().enumerate() {
        net.push(
            HOP * (k as u32 + 1),
            Ev::Msg(0, addr(1), SweepMessage::Answer(c)),
        );
    }
    net.run_for(Duration::from_millis(50));
    let doc = net.doc();
    let node = doc.nodes.iter().find(|n| n.name == "node-01").unwrap();
    assert_eq!(node.checks.len(), 60);
    assert_eq!(node.checks[59].id, "check-059-with-a-long-name");
}

#[test]
fn malformed_piece_is_ignored_and_an_undecodable_answer_is_listed_failing() {
    let mut net = Net::new(2, SweepSettings::default());
    net.hung.insert(1);
    let members = net.members();
    let id = net.start(0, Duration::from_secs(2), members);
    let (now, unix) = (net.now, net.unix());
    // A piece that cannot be one (index past count): not even acked.
    let mut out = Vec::new();
    let bad = AnswerChunk {
        sweep_id: id,
        node: peer(1).name,
        nonce: 1,
        index: 5,
        count: 2,
        sent_unix_ms: unix,
        sent_tag: None,
        payload: vec![],
    };
    net.cores[0].handle_message(at(now, unix), addr(1), SweepMessage::Answer(bad), &mut out);
    assert!(out.is_empty(), "{out:?}");
    // A whole answer that does not decode: acked, and the node is listed
    // as failing with the reason, not as silent.
    let garbage = AnswerChunk {
        sweep_id: id,
        node: peer(1).name,
        nonce: 1,
        index: 0,
        count: 1,
        sent_unix_ms: unix,
        sent_tag: None,
        payload: vec![0xff; 40],
    };
    net.cores[0].handle_message(
        at(now, unix),
        addr(1),
        SweepMessage::Answer(garbage),
        &mut out,
    );
    net.effects(0, out);
    net.run_for(Duration::from_secs(3));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(state_of(doc, 1), NodeState::Failing);
    let node = doc.nodes.iter().find(|n| n.name == peer(1).name).unwrap();
    assert_eq!(node.checks.len(), 1);
    assert_eq!(node.checks[0].id, outcomes::UNREADABLE_ANSWER_ID);
    assert_eq!(node.checks[0].status, Status::Error);
    assert!(
        node.checks[0].message.contains("did not decode"),
        "{}",
        node.checks[0].message
    );
}

#[test]
fn answers_are_spread_over_the_window() {
    let settings = SweepSettings {
        answer_spread_per_node: Duration::from_millis(10),
        ..SweepSettings::default()
    };
    let mut net = Net::new(20, settings);
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    net.run_for(Duration::from_secs(2));
    let doc = net.doc();
    let answered: BTreeSet<u64> = doc.nodes.iter().filter_map(|n| n.answered_ms).collect();
    assert!(answered.len() > 5, "answers bunched at {answered:?}");
    assert!(doc.timing.last_answer_ms.unwrap() <= 250);
}

/// Regression (issue 12): `Ack { sweep_id, index }` named no node and its
/// source was never checked, so acks captured from other nodes, replayed to
/// a node still waiting out its answer delay, silenced it (`no_answer`).
#[test]
fn acks_captured_from_other_nodes_do_not_silence_a_waiting_node() {
    let settings = SweepSettings {
        answer_spread_per_node: Duration::from_millis(100),
        ..SweepSettings::default()
    };
    let mut net = Net::new(4, settings);
    let members = net.members();
    let id = net.start(0, Duration::from_secs(3), members);
    net.run_for(Duration::from_millis(30));
    // Every ack the coordinator would send for node 1's answer, as an
    // eavesdropper could capture it, replayed to nodes 2 and 3 from the
    // coordinator's own address and from elsewhere, before they answer.
    let captured: Vec<SweepMessage> = (0..4)
        .map(|index| SweepMessage::Ack {
            sweep_id: id,
            node: peer(1).name,
            nonce: 42,
            index,
        })
        .collect();
    for victim in [2, 3] {
        for ack in &captured {
            for from in [addr(0), addr(9)] {
                let (now, unix) = (net.now, net.unix());
                let mut out = Vec::new();
                net.cores[victim].handle_message(at(now, unix), from, ack.clone(), &mut out);
                net.effects(victim, out);
            }
        }
        assert_eq!(net.cores[victim].counters().acks_refused, 8);
    }
    net.run_for(Duration::from_secs(4));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.ok, 4, "{:?}", doc.counts);
}

/// An ack that names the right node but not this answer's nonce, or comes
/// from another address than the coordinator's, is refused.
#[test]
fn an_ack_must_echo_the_nonce_and_come_from_the_coordinator() {
    let mut net = Net::new(2, SweepSettings::default());
    let members = net.members();
    let id = net.start(0, Duration::from_secs(2), members);
    // Hold back node 1's answer so it stays unacked.
    net.drop = Box::new(|ev| matches!(ev, Ev::Msg(0, _, SweepMessage::Answer(_))));
    net.run_for(Duration::from_millis(20));
    let nonce = net
        .sent
        .iter()
        .find_map(|(from, m)| match m {
            SweepMessage::Answer(c) if *from == 1 => Some(c.nonce),
            _ => None,
        })
        .expect("node 1 answered");
    let ack = |nonce| SweepMessage::Ack {
        sweep_id: id,
        node: peer(1).name,
        nonce,
        index: 0,
    };
    let (now, unix) = (net.now, net.unix());
    let mut out = Vec::new();
    net.cores[1].handle_message(at(now, unix), addr(0), ack(nonce ^ 1), &mut out);
    net.cores[1].handle_message(at(now, unix), addr(7), ack(nonce), &mut out);
    assert_eq!(net.cores[1].counters().acks_refused, 2);
    net.cores[1].handle_message(at(now, unix), addr(0), ack(nonce), &mut out);
    assert_eq!(
        net.cores[1].counters().acks_refused,
        2,
        "the real ack is taken"
    );
}

/// Regression (issue 12): `issued_at` was never checked, so a forged
/// future-dated request lived for its whole deadline window. Now it is
/// refused and nothing is remembered. The coordinator hears why when it
/// asked directly from its own address; a copy that came by gossip, or
/// from anyone else, is answered nowhere (an answer to the address a
/// forged request names would make every node a reflector).
#[test]
fn a_future_dated_request_is_refused_and_reported_once() {
    let mut net = Net::new(2, SweepSettings::default());
    let members = net.members();
    let id = net.start(0, Duration::from_secs(2), members);
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.doc().counts.ok, 2);
    // The same request, issued an hour from now.
    let req = SweepRequest {
        id: id ^ 0xdead,
        coordinator: peer(0).peer_addr(),
        selector: Default::default(),
        node_filter: BTreeMap::new(),
        issued_at_unix_ms: net.unix() + 3_600_000,
        deadline_ms: 5000,
        answer_spread_ms: 0,
        relays: vec![],
        auth: None,
    };
    let (now, unix) = (net.now, net.unix());
    let answers = |out: &[Effect]| -> Vec<AnswerChunk> {
        out.iter()
            .filter_map(|e| match e {
                Effect::Send {
                    msg: SweepMessage::Answer(c),
                    to,
                } if *to == addr(0) => Some(c.clone()),
                _ => None,
            })
            .collect()
    };
    let mut out = Vec::new();
    net.cores[1].handle_request(at(now, unix), req.clone(), &mut out);
    let stranger = addr(9);
    net.cores[1].handle_message(
        at(now, unix),
        stranger,
        SweepMessage::Request(req.clone()),
        &mut out,
    );
    assert_eq!(net.cores[1].counters().requests_clock_skew, 2);
    assert!(answers(&out).is_empty(), "answered a copy: {out:?}");
    net.cores[1].handle_message(at(now, unix), addr(0), SweepMessage::Request(req), &mut out);
    assert_eq!(net.cores[1].counters().requests_clock_skew, 3);
    assert!(
        !out.iter().any(|e| matches!(e, Effect::RunChecks { .. })),
        "{out:?}"
    );
    assert!(
        !out.iter().any(|e| matches!(e, Effect::Schedule { .. })),
        "nothing remembered: {out:?}"
    );
    let answers = answers(&out);
    assert_eq!(answers.len(), 1, "one unretried report: {out:?}");
    let payload = AnswerPayload::decode(&answers[0].payload).unwrap();
    let body = AnswerBody::decode(&payload.body).unwrap();
    assert_eq!(
        body.outcomes().unwrap()[0].id,
        outcomes::CLOCK_SKEW_CHECK_ID
    );
    assert!(
        body.outcomes().unwrap()[0]
            .message
            .contains("in the future"),
        "{}",
        body.outcomes().unwrap()[0].message
    );
}
