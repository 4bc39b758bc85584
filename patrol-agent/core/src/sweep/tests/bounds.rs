//! Bounds on what the network can make a node hold: piece sizes, late
//! joiners, buffered bytes, participations, and names claimed twice.

use super::*;

/// Regression (issue 12): pieces larger than the chunk size were accepted
/// and late joiners were unbounded, so a key holder could exhaust a
/// coordinator's memory.
#[test]
fn oversized_pieces_and_late_joiners_past_the_cap_are_refused() {
    let settings = SweepSettings {
        max_late_joiners: 3,
        ..SweepSettings::default()
    };
    let chunk_limit = settings.chunk_payload(7);
    let mut net = Net::new(2, settings);
    net.hung.insert(1);
    let members = net.members();
    let id = net.start(0, Duration::from_secs(2), members);
    let (now, unix) = (net.now, net.unix());
    let piece = |node: String, payload: Vec<u8>, count| {
        SweepMessage::Answer(AnswerChunk {
            sweep_id: id,
            node,
            nonce: 1,
            index: 0,
            count,
            sent_unix_ms: unix,
            sent_tag: None,
            payload,
        })
    };
    let mut out = Vec::new();
    net.cores[0].handle_message(
        at(now, unix),
        addr(1),
        piece(peer(1).name, vec![0; chunk_limit + 1], 2),
        &mut out,
    );
    assert!(out.is_empty(), "an oversized piece is not acked: {out:?}");
    assert_eq!(net.cores[0].counters().pieces_refused, 1);
    for k in 0..10 {
        net.cores[0].handle_message(
            at(now, unix),
            addr(5),
            piece(format!("ghost{k}"), vec![1; 10], 2),
            &mut out,
        );
    }
    assert_eq!(
        net.cores[0].counters().pieces_refused,
        8,
        "3 late joiners kept, 7 refused"
    );
    net.run_for(Duration::from_secs(3));
    assert_accounted(net.doc());
}

/// The bytes a coordinator buffers for incomplete answers are bounded,
/// a slot for every piece announced included.
#[test]
fn buffered_answer_bytes_are_bounded_per_sweep() {
    // 100 slots of 24 bytes, and five pieces of 1,000 bytes.
    let settings = SweepSettings {
        max_partial_bytes: 100 * 24 + 5_000,
        ..SweepSettings::default()
    };
    let mut net = Net::new(2, settings);
    net.hung.insert(1);
    let members = net.members();
    let id = net.start(0, Duration::from_secs(2), members);
    let (now, unix) = (net.now, net.unix());
    let mut out = Vec::new();
    for index in 0..20u16 {
        let m = SweepMessage::Answer(AnswerChunk {
            sweep_id: id,
            node: peer(1).name,
            nonce: 1,
            index,
            count: 100,
            sent_unix_ms: unix,
            sent_tag: None,
            payload: vec![7; 1000],
        });
        net.cores[0].handle_message(at(now, unix), addr(1), m, &mut out);
    }
    assert_eq!(
        net.cores[0].counters().pieces_refused,
        15,
        "5 pieces of 1,000 bytes fit"
    );
}

/// Incomplete answers under names nobody expected are held to their own,
/// smaller budget: the expected nodes' pieces still fit.
#[test]
fn late_partial_answers_cannot_take_the_expected_nodes_room() {
    let settings = SweepSettings {
        max_partial_bytes: 20_000,
        max_late_partial_bytes: 5_000,
        ..SweepSettings::default()
    };
    let mut net = Net::new(2, settings);
    net.hung.insert(1);
    let members = net.members();
    let id = net.start(0, Duration::from_secs(2), members);
    let (now, unix) = (net.now, net.unix());
    let mut out = Vec::new();
    let piece = |node: String, index| {
        SweepMessage::Answer(AnswerChunk {
            sweep_id: id,
            node,
            nonce: 1,
            index,
            count: 10,
            sent_unix_ms: unix,
            sent_tag: None,
            payload: vec![7; 1000],
        })
    };
    for k in 0..10u16 {
        net.cores[0].handle_message(
            at(now, unix),
            addr(5),
            piece(format!("ghost{k}"), 0),
            &mut out,
        );
    }
    // Ten slots (240 bytes) and 1,000 bytes each: four ghosts fit in 5,000.
    assert_eq!(net.cores[0].counters().pieces_refused, 6);
    assert!(net.cores[0].held().late_partial_bytes <= 5_000);
    for index in 0..9u16 {
        net.cores[0].handle_message(at(now, unix), addr(1), piece(peer(1).name, index), &mut out);
    }
    assert_eq!(
        net.cores[0].counters().pieces_refused,
        6,
        "the expected node's pieces all fit"
    );
    assert!(net.cores[0].held().partial_bytes <= 20_000);
}

/// A participant remembers at most `max_participations` sweeps.
#[test]
fn participations_are_capped() {
    let settings = SweepSettings {
        max_participations: 3,
        ..SweepSettings::default()
    };
    let mut net = Net::new(2, settings);
    net.hung.insert(1);
    let (now, unix) = (net.now, net.unix());
    let mut out = Vec::new();
    for k in 0..5u64 {
        let req = SweepRequest {
            id: 1000 + k,
            coordinator: peer(0).peer_addr(),
            selector: Default::default(),
            node_filter: BTreeMap::new(),
            issued_at_unix_ms: unix,
            deadline_ms: 5000,
            answer_spread_ms: 0,
            relays: vec![],
            auth: None,
        };
        net.cores[1].handle_request(at(now, unix), req, &mut out);
    }
    assert_eq!(net.cores[1].counters().requests_over_capacity, 2);
    assert_eq!(net.cores[1].held().participations, 3);
    // A full node tells a coordinator that asks it directly, once; the
    // coordinator lists it failing with the reason instead of silent.
    let req = SweepRequest {
        id: 2000,
        coordinator: peer(0).peer_addr(),
        selector: Default::default(),
        node_filter: BTreeMap::new(),
        issued_at_unix_ms: unix,
        deadline_ms: 5000,
        answer_spread_ms: 0,
        relays: vec![],
        auth: None,
    };
    let mut out = Vec::new();
    net.cores[1].handle_message(
        at(now, unix),
        addr(9),
        SweepMessage::Request(req.clone()),
        &mut out,
    );
    out.retain(|e| !matches!(e, Effect::Audit(_)));
    assert!(out.is_empty(), "answered a stranger: {out:?}");
    net.cores[1].handle_message(at(now, unix), addr(0), SweepMessage::Request(req), &mut out);
    out.retain(|e| !matches!(e, Effect::Audit(_)));
    // Counted once for its two copies; the coordinator's copy answered.
    assert_eq!(net.cores[1].counters().requests_over_capacity, 3);
    let [Effect::Send {
        to,
        msg: SweepMessage::Answer(chunk),
    }] = out.as_slice()
    else {
        panic!("one report: {out:?}");
    };
    assert_eq!(*to, addr(0));
    let payload = AnswerPayload::decode(&chunk.payload).unwrap();
    let body = AnswerBody::decode(&payload.body).unwrap();
    assert_eq!(
        body.outcomes().unwrap()[0].id,
        outcomes::OVER_CAPACITY_CHECK_ID
    );
}

/// Regression (issue 12): two nodes with the same name hid each other; the
/// failing twin's answer was dropped as a duplicate and the report said ok.
#[test]
fn two_alive_members_with_one_name_are_both_listed_as_a_conflict() {
    let mut net = Net::new(4, SweepSettings::default());
    net.outcomes = Box::new(|i| {
        if i == 3 {
            vec![outcome("a", Status::Fail)]
        } else {
            vec![outcome("a", Status::Pass)]
        }
    });
    // Node 3 claims node 2's name.
    let mut members = net.members();
    members[3].peer.name = peer(2).name;
    let mut twin = net.cores.pop().unwrap();
    twin = SweepCore::new(
        Peer {
            name: peer(2).name,
            ..twin.me().clone()
        },
        "test".into(),
        SweepSettings::default(),
        9,
    );
    net.cores.push(twin);
    net.start(0, Duration::from_secs(2), members);
    net.run_for(Duration::from_secs(3));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.expected, 4);
    let twins: Vec<_> = doc
        .nodes
        .iter()
        .filter(|n| n.name.starts_with(&peer(2).name))
        .collect();
    assert_eq!(twins.len(), 2, "{:?}", doc.nodes);
    for t in twins {
        assert_eq!(t.state, NodeState::Failing);
        assert_eq!(t.checks[0].id, outcomes::NAME_CONFLICT_ID);
        assert!(
            t.checks[0]
                .message
                .contains("2 nodes claim the name node-02"),
            "{}",
            t.checks[0].message
        );
    }
    assert_eq!(doc.counts.ok, 2);
}

/// A name held by a down identity and an alive one (a node that came back
/// at another address) is no conflict: the alive one is expected.
#[test]
fn a_down_identity_and_an_alive_one_with_one_name_are_no_conflict() {
    let mut net = Net::new(3, SweepSettings::default());
    let mut members = net.members();
    members.push(MemberView {
        rostered: false,
        peer: Peer {
            addr: addr(7),
            ..peer(2)
        },
        alive: false,
    });
    members.swap(2, 3);
    net.start(0, Duration::from_secs(2), members);
    net.run_for(Duration::from_secs(3));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.ok, 3, "{:?}", doc.nodes);
}

/// Regression: the send-time tag (17 bytes) made full pieces 17 bytes
/// larger than `max_datagram`, so a certified node's multi-piece answer
/// was dropped as oversized at the coordinator. A full piece with every
/// field at its largest still fits.
#[test]
fn a_full_piece_at_its_largest_fits_the_datagram() {
    let settings = SweepSettings::default();
    let name = "n".repeat(253);
    let chunk = AnswerChunk {
        sweep_id: u64::MAX,
        node: name.clone(),
        nonce: u64::MAX,
        index: u16::MAX,
        count: u16::MAX,
        sent_unix_ms: u64::MAX,
        sent_tag: Some([0xff; 16]),
        payload: vec![0xff; settings.chunk_payload(name.len())],
    };
    let len = SweepMessage::Answer(chunk).encode().len();
    assert!(
        len <= settings.max_datagram,
        "{len} > {}",
        settings.max_datagram
    );
}
