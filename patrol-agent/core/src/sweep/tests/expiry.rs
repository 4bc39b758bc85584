//! Certificates that expired: a node whose answer is its own but proven
//! by a certificate past its end is listed `failing` with
//! `patrol.cert_expiry` (its checks not recorded), not as silent; an
//! expired certificate the coordinator has revoked, or a proof that is
//! not the node's, is still refused as forged.

use crate::trust::testing::{bundle, bundle_revoking, ca, creds, issued};
use crate::trust::{Authorization, Credentials, Role, Scope, SigningKey, TrustBundle};

use super::super::outcomes::CERT_EXPIRY_ID;
use super::super::wire::{AnswerPayload, AnswerProof, CertRef};
use super::*;

/// The expired node of [`certified`].
const EXPIRED: usize = 2;
/// Its certificate's serial.
const EXPIRED_SERIAL: u64 = 0x2222;
/// Its certificate ended 100 s before the sweep (the net starts at
/// `UNIX0` + 100 s).
const EXPIRED_AT_S: u64 = UNIX0 / 1000;

/// Four certified nodes; node [`EXPIRED`]'s certificate has expired. The
/// coordinator (node 0) trusts `coordinator_bundle` (the CA's, unless a
/// test revokes). Starts a signed sweep with a 5 s deadline.
fn certified(coordinator_bundle: impl Fn(&Credentials) -> TrustBundle) -> (Net, u64, Credentials) {
    let ca = ca(1);
    let mut net = Net::new(4, SweepSettings::default());
    let expired = issued(
        &ca,
        SigningKey::from_bytes(&[40; 32]),
        Role::Node,
        &peer(EXPIRED).name,
        EXPIRED_SERIAL,
        0..EXPIRED_AT_S,
    );
    for (i, core) in net.cores.iter_mut().enumerate() {
        let own = if i == EXPIRED {
            expired.clone()
        } else {
            creds(&ca, Role::Node, &peer(i).name, 10 + i as u8)
        };
        let b = if i == 0 {
            coordinator_bundle(&ca)
        } else {
            bundle(&[&ca])
        };
        core.set_trust(own, b);
    }
    let operator = creds(&ca, Role::Operator(Scope::full(600_000)), "alice", 99);
    let selector = patrol_model::Selector::default();
    let filter = BTreeMap::new();
    let id = 0xe1;
    let ask = crate::trust::authorization::SweepAsk {
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
    (net, id, expired)
}

#[test]
fn with_certificates_a_node_whose_certificate_expired_is_listed_failing_as_expired_not_silent() {
    let (mut net, _, _) = certified(|ca| bundle(&[ca]));
    net.run_for(Duration::from_secs(2));
    // Every node accounted for well before the deadline: the expired
    // node's answer settles its slot.
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(
        (doc.counts.ok, doc.counts.failing),
        (3, 1),
        "{:?}",
        doc.counts
    );
    assert_eq!(doc.counts.no_answer, 0);
    let node = entry(doc, EXPIRED);
    assert_eq!(node.state, NodeState::Failing);
    assert!(node.silence.is_none());
    // Only the coordinator's verdict: the node's own checks (proven by a
    // certificate past its end) are not recorded.
    assert_eq!(node.checks.len(), 1, "{:?}", node.checks);
    let o = &node.checks[0];
    assert_eq!((o.id.as_str(), o.status), (CERT_EXPIRY_ID, Status::Fail));
    assert!(
        o.message.contains(&format!(
            "node certificate `{}` (serial {EXPIRED_SERIAL:016x}) expired 1m 40s ago",
            peer(EXPIRED).name
        )),
        "{}",
        o.message
    );
    // Observed as the node's own outcome is, so the report groups the
    // node as expired.
    assert_eq!(
        o.observed,
        Observed::Named(vec![("node".into(), Observed::Number(-0.01))])
    );
    let counters = net.cores[0].counters();
    assert!(counters.answers_expired >= 1, "{counters:?}");
    assert_eq!(counters.answers_forged, 0, "{counters:?}");
}

#[test]
fn with_certificates_an_expired_certificate_the_coordinator_revoked_is_refused_as_forged() {
    let (mut net, _, _) = certified(|ca| bundle_revoking(&[ca], &[EXPIRED_SERIAL]));
    net.run_for(Duration::from_secs(6));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(state_of(doc, EXPIRED), NodeState::NoAnswer);
    let counters = net.cores[0].counters();
    assert_eq!(counters.answers_expired, 0, "{counters:?}");
    assert!(counters.answers_forged >= 1, "{counters:?}");
}

#[test]
fn with_certificates_an_expired_certificate_without_its_nodes_proof_is_refused_as_forged() {
    let (mut net, id, expired) = certified(|ca| bundle(&[ca]));
    // The expired node is gone; someone with the cluster key answers in
    // its name with its (public) certificate, but not its key.
    net.dead.insert(EXPIRED);
    let body = AnswerBody::compact(BTreeMap::new(), net.unix(), 1, vec![]).encode();
    let payload = AnswerPayload {
        body,
        proof: Some(AnswerProof {
            cert: CertRef::Whole(Box::new(expired.cert.clone())),
            mac: vec![7; 32],
        }),
    }
    .encode();
    let chunk = AnswerChunk {
        sweep_id: id,
        node: peer(EXPIRED).name,
        nonce: 1,
        index: 0,
        count: 1,
        sent_unix_ms: net.unix(),
        sent_tag: None,
        payload,
    };
    let mut out = Vec::new();
    let (now, unix) = (net.now, net.unix());
    net.cores[0].handle_message(
        at(now, unix),
        addr(3),
        SweepMessage::Answer(chunk),
        &mut out,
    );
    net.effects(0, out);
    net.run_for(Duration::from_secs(6));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(state_of(doc, EXPIRED), NodeState::NoAnswer);
    let counters = net.cores[0].counters();
    assert_eq!(counters.answers_expired, 0, "{counters:?}");
    assert_eq!(counters.answers_forged, 1, "{counters:?}");
}
