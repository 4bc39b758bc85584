//! What a participant holds per sweep: each operator's share of its
//! participations (the smaller of its scope's and the node's).

use crate::trust::authorization::SweepAsk;
use crate::trust::testing::{bundle, ca, creds};
use crate::trust::{Authorization, Credentials, Role, Scope};

use super::*;
use crate::sweep::participant::Footprint;

/// Two certified cores with `settings`: core 0 coordinates, core 1 takes
/// part. The CA's credentials come too, to make operators.
fn certified(settings: SweepSettings) -> (Vec<SweepCore>, Credentials) {
    let ca = ca(1);
    let trust_bundle = bundle(&[&ca]);
    let cores = (0..2)
        .map(|i| {
            let mut c = SweepCore::new(peer(i), "t".into(), settings.clone(), i as u64);
            c.set_trust(
                creds(&ca, Role::Node, &peer(i).name, 10 + i as u8),
                trust_bundle.clone(),
            );
            c
        })
        .collect();
    (cores, ca)
}

/// An operator of `ca` named `name` with a full scope and `share`.
fn operator(ca: &Credentials, name: &str, share: Option<u16>, seed: u8) -> Credentials {
    let scope = Scope {
        share,
        ..Scope::full(600_000)
    };
    creds(ca, Role::Operator(scope), name, seed)
}

/// Sweep `id`, signed by `op`, started at core 0 at `now`: the request it
/// spreads.
fn signed_request(
    cores: &mut [SweepCore],
    op: &Credentials,
    id: u64,
    now: Now,
    deadline: Duration,
) -> SweepRequest {
    let selector = patrol_model::Selector::default();
    let filter = BTreeMap::new();
    let ask = SweepAsk {
        sweep_id: id,
        selector: &selector,
        node_filter: &filter,
        deadline_ms: deadline.as_millis() as u64,
        coordinator: &peer(0).name,
    };
    let spec = StartSweep {
        selector: selector.clone(),
        node_filter: BTreeMap::new(),
        deadline,
        id: Some(id),
        authorization: Some(Authorization::sign(op, &ask, now.unix_ms)),
    };
    let members = (0..2)
        .map(|i| MemberView {
            rostered: false,
            peer: peer(i),
            alive: true,
        })
        .collect();
    let mut out = Vec::new();
    cores[0].start(now, spec, members, &mut out).unwrap();
    out.into_iter()
        .find_map(|e| match e {
            Effect::Spread(r) => Some(r),
            _ => None,
        })
        .expect("the coordinator spreads its request")
}

/// The outcomes of the answers among `out`.
fn answered(out: &[Effect]) -> Vec<CheckOutcome> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Send {
                msg: SweepMessage::Answer(chunk),
                ..
            } => {
                let payload = AnswerPayload::decode(&chunk.payload).ok()?;
                AnswerBody::decode(&payload.body).ok()?.outcomes().ok()
            }
            _ => None,
        })
        .flatten()
        .collect()
}

/// Issue 22, item 5: a participant holds each operator to the smaller of
/// its scope's share and the node's `operator_share`; a scope never
/// widens the node's share.
#[test]
fn admission_applies_the_smaller_of_the_scopes_and_the_nodes_share() {
    let settings = SweepSettings {
        operator_share: 3,
        ..SweepSettings::default()
    };
    let (mut cores, ca) = certified(settings);
    let capped = operator(&ca, "capped", Some(2), 90);
    let generous = operator(&ca, "generous", Some(50), 91);
    let plain = operator(&ca, "plain", None, 92);
    let now = at(Duration::ZERO, UNIX0);
    let deadline = Duration::from_secs(5);
    let mut out = Vec::new();
    // Four sweeps each; core 1's checks never finish, so every sweep it
    // takes stays held.
    let mut id = 0x100;
    let mut third_of_capped = None;
    for (op, takes) in [(&capped, 2), (&generous, 3), (&plain, 3)] {
        let before = cores[1].counters().requests_over_quota;
        for k in 0..4 {
            id += 1;
            let req = signed_request(&mut cores, op, id, now, deadline);
            if k == 2 && op.name() == "capped" {
                third_of_capped = Some(req.clone());
            }
            assert!(
                cores[1].handle_gossiped(now, req, Some(addr(0)), &mut out),
                "a request refused over quota is still passed on"
            );
        }
        assert_eq!(
            cores[1].counters().requests_over_quota - before,
            4 - takes,
            "{}",
            op.name()
        );
    }
    assert_eq!(cores[1].held().participations, 2 + 3 + 3);
    // The coordinator asking directly is told which share was full.
    let mut out = Vec::new();
    cores[1].handle_message(
        now,
        addr(0),
        SweepMessage::Request(third_of_capped.unwrap()),
        &mut out,
    );
    let outcomes = answered(&out);
    assert_eq!(outcomes.len(), 1, "{out:?}");
    assert_eq!(outcomes[0].id, outcomes::OVER_QUOTA_CHECK_ID);
    assert!(
        outcomes[0]
            .message
            .contains("operator `capped` already holds 2 sweeps"),
        "{}",
        outcomes[0].message
    );
}

/// Sweep `id` started at core 0 without certificates: the request.
fn plain_request(cores: &mut [SweepCore], id: u64, now: Now, deadline: Duration) -> SweepRequest {
    let spec = StartSweep {
        selector: Default::default(),
        node_filter: BTreeMap::new(),
        deadline,
        id: Some(id),
        authorization: None,
    };
    let members = (0..2)
        .map(|i| MemberView {
            rostered: false,
            peer: peer(i),
            alive: true,
        })
        .collect();
    let mut out = Vec::new();
    cores[0].start(now, spec, members, &mut out).unwrap();
    out.into_iter()
        .find_map(|e| match e {
            Effect::Spread(r) => Some(r),
            _ => None,
        })
        .expect("the coordinator spreads its request")
}

/// Core `i` takes `req` by gossip, its checks end with `outcomes`, and
/// its answer goes out: the pieces it sent.
fn answer(
    core: &mut SweepCore,
    req: SweepRequest,
    outcomes: Vec<CheckOutcome>,
    now: Now,
) -> Vec<AnswerChunk> {
    let id = req.id;
    let mut out = Vec::new();
    assert!(core.handle_gossiped(now, req, Some(addr(0)), &mut out));
    assert!(
        out.iter().any(|e| matches!(e, Effect::RunChecks { .. })),
        "taken: {out:?}"
    );
    core.checks_done(now, id, outcomes, &mut out);
    let mut out = Vec::new();
    core.handle_timer(now, SweepTimer(TimerKind::SendAnswer(id)), &mut out);
    out.into_iter()
        .filter_map(|e| match e {
            Effect::Send {
                msg: SweepMessage::Answer(c),
                ..
            } => Some(c),
            _ => None,
        })
        .collect()
}

/// The coordinator (core 0's address) acks every piece of `pieces`.
fn ack_all(core: &mut SweepCore, pieces: &[AnswerChunk], now: Now) {
    for p in pieces {
        let mut out = Vec::new();
        let ack = SweepMessage::Ack {
            sweep_id: p.sweep_id,
            node: p.node.clone(),
            nonce: p.nonce,
            index: p.index,
        };
        core.handle_message(now, addr(0), ack, &mut out);
    }
}

fn ran_checks(out: &[Effect]) -> bool {
    out.iter().any(|e| matches!(e, Effect::RunChecks { .. }))
}

/// Issue 22, item 5: once the coordinator acks its whole answer, a node
/// keeps only a compact record of the sweep, and the record still
/// recognises every copy of the request: a gossip copy runs nothing and is
/// passed on, another request under the id runs nothing and is not, the
/// coordinator asking again is counted once and answered nothing, a late
/// ack is taken and a forged one refused. The record goes with the sweep.
#[test]
fn an_acked_answer_leaves_a_record_that_still_knows_every_copy_of_its_request() {
    let mut cores: Vec<SweepCore> = (0..2)
        .map(|i| SweepCore::new(peer(i), "t".into(), SweepSettings::default(), i as u64))
        .collect();
    let t0 = Duration::from_secs(100);
    let now = at(t0, UNIX0);
    let req = plain_request(&mut cores, 0x700, now, Duration::from_secs(5));
    let pieces = answer(
        &mut cores[1],
        req.clone(),
        vec![outcome("a", Status::Pass)],
        now,
    );
    assert_eq!(pieces.len(), 1);
    assert!(matches!(
        cores[1].participant.footprint(req.id),
        Some(Footprint::Held { .. })
    ));
    assert_eq!(cores[1].held().participations, 1);
    ack_all(&mut cores[1], &pieces, now);
    let held = cores[1].held();
    assert_eq!((held.participations, held.settled), (0, 1), "{held:?}");
    assert!(matches!(
        cores[1].participant.footprint(req.id),
        Some(Footprint::Settled(_))
    ));

    let later = at(t0 + Duration::from_secs(1), UNIX0 + 1000);
    let mut out = Vec::new();
    assert!(
        cores[1].handle_gossiped(later, req.clone(), Some(addr(0)), &mut out),
        "a gossip copy is still vouched for"
    );
    let mut other = req.clone();
    other.issued_at_unix_ms += 1;
    assert!(
        !cores[1].handle_gossiped(later, other, Some(addr(0)), &mut out),
        "another request under the id is not"
    );
    assert!(!ran_checks(&out) && out.is_empty(), "{out:?}");

    // The coordinator asks again, directly, at backstop time: it did not
    // record what it acked. Counted once; nothing sent, nothing run.
    for _ in 0..2 {
        let msg = SweepMessage::Request(req.clone());
        cores[1].handle_message(later, addr(0), msg, &mut out);
    }
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(cores[1].counters().requests_answered_before, 1);

    // A late copy of the coordinator's ack is taken; one from elsewhere or
    // for another answer is refused.
    let ack = |nonce| SweepMessage::Ack {
        sweep_id: req.id,
        node: peer(1).name,
        nonce,
        index: 0,
    };
    cores[1].handle_message(later, addr(0), ack(pieces[0].nonce), &mut out);
    assert_eq!(cores[1].counters().acks_refused, 0);
    cores[1].handle_message(later, addr(5), ack(pieces[0].nonce), &mut out);
    cores[1].handle_message(later, addr(0), ack(pieces[0].nonce ^ 1), &mut out);
    assert_eq!(cores[1].counters().acks_refused, 2);

    // Forgotten with the sweep.
    cores[1].handle_timer(later, SweepTimer(TimerKind::Forget(req.id)), &mut out);
    assert_eq!(cores[1].held().settled, 0);
    assert_eq!(cores[1].participant.footprint(req.id), None);
}

/// Issue 22, item 5: an answered sweep no longer takes a participation,
/// so an operator at its share (or a node at `max_participations`) takes
/// a new sweep once the coordinator acked the last one. Before, the
/// answered sweep counted until its deadline + 1 s.
#[test]
fn a_settled_sweep_counts_neither_against_the_share_nor_the_capacity() {
    let settings = SweepSettings {
        max_participations: 1,
        operator_share: 1,
        ..SweepSettings::default()
    };
    let (mut cores, ca) = certified(settings);
    let alice = operator(&ca, "alice", None, 90);
    let now = at(Duration::ZERO, UNIX0);
    let deadline = Duration::from_secs(60);
    let first = signed_request(&mut cores, &alice, 0x801, now, deadline);
    let pieces = answer(&mut cores[1], first, vec![outcome("a", Status::Pass)], now);
    // While the first is held, the second is refused.
    let second = signed_request(&mut cores, &alice, 0x802, now, deadline);
    let mut out = Vec::new();
    cores[1].handle_gossiped(now, second, Some(addr(0)), &mut out);
    assert!(!ran_checks(&out));
    assert_eq!(cores[1].counters().requests_over_quota, 1);
    // Acked: settled, and the third is taken.
    ack_all(&mut cores[1], &pieces, now);
    let third = signed_request(&mut cores, &alice, 0x803, now, deadline);
    let mut out = Vec::new();
    cores[1].handle_gossiped(now, third, Some(addr(0)), &mut out);
    assert!(ran_checks(&out), "{out:?}");
    let counters = cores[1].counters();
    assert_eq!(counters.requests_over_quota, 1, "{counters:?}");
    assert_eq!(counters.requests_over_capacity, 0, "{counters:?}");
    let held = cores[1].held();
    assert_eq!((held.participations, held.settled), (1, 1), "{held:?}");
}

/// `n` checks that did not pass, each with a message of about 60 bytes:
/// an answer of several pieces, as a node with problems sends.
fn failing_outcomes(n: usize) -> Vec<CheckOutcome> {
    (0..n)
        .map(|i| CheckOutcome {
            message: format!("check-{i:03} observed 1, expected at least 2 on this node's kernel"),
            ..outcome(&format!("check-{i:03}"), Status::Warn)
        })
        .collect()
}

/// What a participant keeps per sweep, before and after its answer is
/// acked, measured on the structures themselves
/// (`participant::footprint`). Run with `--nocapture` for the figures.
/// Before settled records existed, an answered sweep kept the `kept` part
/// (its audit line, the coordinator, the key, and with certificates the
/// answer again with the whole certificate) until its deadline + 1 s.
#[test]
fn an_acked_sweep_keeps_a_small_fraction_of_what_it_held() {
    let now = at(Duration::ZERO, UNIX0);
    let deadline = Duration::from_secs(60);
    let mut cases = Vec::new();
    // Without certificates, a healthy node: one datagram.
    let mut cores: Vec<SweepCore> = (0..2)
        .map(|i| SweepCore::new(peer(i), "t".into(), SweepSettings::default(), i as u64))
        .collect();
    let req = plain_request(&mut cores, 0x901, now, deadline);
    let pieces = answer(&mut cores[1], req, vec![outcome("a", Status::Pass)], now);
    cases.push(("no certificates, one passing check", cores, pieces));
    // With certificates (the answer carries the whole certificate: the
    // coordinator has not had it yet), and 40 checks that did not pass:
    // several pieces.
    let (mut cores, ca) = certified(SweepSettings::default());
    let alice = operator(&ca, "alice", None, 90);
    let req = signed_request(&mut cores, &alice, 0x902, now, deadline);
    let pieces = answer(&mut cores[1], req, failing_outcomes(40), now);
    cases.push(("certificates, 40 checks failing", cores, pieces));

    // An answer that names the certificate by digest is held to its
    // deadline even once acked: the coordinator acks pieces before it
    // checks the proof, and one that lacks the certificate asks again for
    // the whole copy (a node that had forgot it would stay no_answer).
    let (mut cores, ca) = certified(SweepSettings::default());
    let epoch = cores[0].peer_epoch().unwrap();
    cores[1].mark_told(&peer(0).name, epoch);
    let alice = operator(&ca, "alice", None, 90);
    let req = signed_request(&mut cores, &alice, 0x903, now, deadline);
    let pieces = answer(&mut cores[1], req, failing_outcomes(40), now);
    ack_all(&mut cores[1], &pieces, now);
    assert!(
        matches!(
            cores[1].participant.footprint(pieces[0].sweep_id),
            Some(Footprint::Held { .. })
        ),
        "an answer by digest settled before its deadline"
    );

    for (what, mut cores, pieces) in cases {
        let id = pieces[0].sweep_id;
        let Some(Footprint::Held {
            kept,
            pieces: answer,
        }) = cores[1].participant.footprint(id)
        else {
            panic!("{what}: not held");
        };
        ack_all(&mut cores[1], &pieces, now);
        let Some(Footprint::Settled(settled)) = cores[1].participant.footprint(id) else {
            panic!("{what}: not settled");
        };
        println!(
            "{what}: {} piece(s); held {} bytes while answering ({answer} of pieces), \
             {kept} bytes once acked before settled records, {settled} bytes settled",
            pieces.len(),
            kept + answer,
        );
        assert!(settled <= 160, "{what}: {settled} bytes settled");
        assert!(settled * 4 < kept, "{what}: {settled} settled, {kept} kept");
    }
}
