//! What a participant holds per sweep: each operator's share of its
//! participations (the smaller of its scope's and the node's).

use crate::trust::authorization::SweepAsk;
use crate::trust::testing::{bundle, ca, creds};
use crate::trust::{Authorization, Credentials, Role, Scope};

use super::*;

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
