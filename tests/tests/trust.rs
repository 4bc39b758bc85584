//! Node and operator identities with real agents on loopback: operator
//! certificates on the control channel, signed sweeps checked by the
//! coordinator and by every participant, answers a node cannot forge for
//! another, expiry, revocation, CA rotation and the audit trail.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use patrol_agent::agent::{AgentHandle, Inspector, SweepEvent};
use patrol_agent::clock::WallClock;
use patrol_agent::control::client::ClientAuth;
use patrol_agent::control::{ControlClient, ControlRequest, Reply};
use patrol_agent::datagram::Sealer;
use patrol_agent::envelope::Envelope;
use patrol_agent::sweep::{
    AnswerBody, AnswerChunk, AnswerPayload, AnswerProof, PeerAddr, RequestAuth, StartSweep,
    SweepMessage, SweepRequest,
};
use patrol_checks::{CheckOutcome, NodeState, Observed, Selector, Severity, Status};
use patrol_core::node::Channel;
use patrol_core::sweep::wire::CertRef;
use patrol_core::trust::authorization::SweepAsk;
use patrol_core::trust::{cert_digest, Authorization, Credentials, PairKey, Role, Scope};
use patrol_tests::identities::{sweep_as, sweep_request, trusted_agent, TestCa};
use patrol_tests::{
    assert_no_sweep_started, finish, new_envelope, wait_converged, wait_for, CountingInspector,
};

const CONVERGE: Duration = Duration::from_secs(15);

/// A probe check that passes after `delay`, saying `message`.
struct SlowProbe {
    delay: Duration,
}

impl Inspector for SlowProbe {
    fn inspect(
        &self,
        _selector: &Selector,
        _budget: Duration,
    ) -> Pin<Box<dyn Future<Output = Vec<CheckOutcome>> + Send>> {
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            vec![outcome("probe", "measured by the node itself")]
        })
    }
}

/// A passing outcome observing `value` (a passing check's value travels in
/// a compact answer; its message does not).
fn outcome(id: &str, value: &str) -> CheckOutcome {
    CheckOutcome {
        id: id.into(),
        kind: "test".into(),
        status: Status::Pass,
        severity: Severity::Fail,
        observed: Observed::Text(value.into()),
        expected: "1".into(),
        message: String::new(),
        duration_us: 1,
        description: String::new(),
        remediation: String::new(),
    }
}

struct Mesh {
    agents: Vec<AgentHandle>,
    controls: Vec<SocketAddr>,
    bundles: Vec<Option<tokio::sync::watch::Sender<patrol_core::trust::TrustBundle>>>,
    env: Envelope,
}

impl Mesh {
    /// Give every agent a new CA bundle and deny list, as SIGHUP does: the
    /// control listener's and the node's.
    async fn reload(&self, bundle: &patrol_core::trust::TrustBundle) {
        for (a, tx) in self.agents.iter().zip(&self.bundles) {
            if let Some(tx) = tx {
                tx.send_replace(bundle.clone());
            }
            a.commander().set_bundle(bundle.clone()).await.unwrap();
        }
    }

    async fn stop(self) {
        for a in self.agents {
            a.stop(patrol_agent::agent::StopMode::Leave).await;
        }
    }
}

/// `names.len()` agents; agent `i` has identity `trust(i)` (None: the
/// cluster key only) and inspector `inspector(i)`.
async fn mesh(
    names: &[&str],
    mut trust: impl FnMut(usize) -> Option<patrol_agent::daemon::NodeTrust>,
    mut inspector: impl FnMut(usize) -> Arc<dyn Inspector>,
) -> Mesh {
    let env = new_envelope();
    let mut m = Mesh {
        agents: Vec::new(),
        controls: Vec::new(),
        bundles: Vec::new(),
        env: env.clone(),
    };
    for (i, name) in names.iter().enumerate() {
        let seeds = m.agents.first().map(|a| vec![a.addr]).unwrap_or_default();
        let (agent, control, tx) = trusted_agent(name, seeds, &env, inspector(i), trust(i)).await;
        m.agents.push(agent);
        m.controls.push(control);
        m.bundles.push(tx);
    }
    wait_converged(&m.agents, names.len(), CONVERGE).await;
    m
}

/// Start a sweep on `agent` directly with an authorization signed by
/// `operator` (so the test knows the id); the event stream.
async fn start_signed(
    agent: &AgentHandle,
    operator: &Credentials,
    id: u64,
    deadline: Duration,
) -> tokio::sync::mpsc::Receiver<SweepEvent> {
    let selector = Selector::default();
    let filter = BTreeMap::new();
    let ask = SweepAsk {
        sweep_id: id,
        selector: &selector,
        node_filter: &filter,
        deadline_ms: deadline.as_millis() as u64,
        coordinator: &agent.name,
    };
    let authorization = Authorization::sign(operator, &ask, WallClock::default().unix_ms());
    agent
        .start_sweep(StartSweep {
            selector,
            node_filter: filter,
            deadline,
            id: Some(id),
            authorization: Some(authorization),
        })
        .await
        .unwrap()
}

/// Seal `msg` as a key holder would and send it to `to`.
async fn send_sealed(env: &Envelope, to: SocketAddr, msg: &SweepMessage) {
    let mut plain = vec![Channel::Sweep as u8];
    plain.extend(msg.encode());
    let mut sealed = Vec::new();
    Sealer::new(env.clone(), WallClock::default())
        .seal(&plain, to, &mut sealed)
        .unwrap();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&sealed, to).await.unwrap();
}

fn full() -> Scope {
    Scope::full(600_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sweeps_a_certified_mesh_and_every_node_audits_it() {
    let ca = TestCa::new("ca");
    let names = ["node-00", "node-01", "node-02"];
    let m = mesh(
        &names,
        |i| Some(ca.node_trust(names[i], ca.bundle())),
        |_| Arc::new(CountingInspector::default()),
    )
    .await;
    let alice = ca.operator("alice", full(), ca.bundle());
    let doc = sweep_as(
        m.controls[1],
        alice,
        &sweep_request(Selector::default(), 3000),
    )
    .await
    .expect("a certified operator sweeps");
    assert_eq!(doc.counts.expected, 3, "{:?}", doc.counts);
    assert_eq!(doc.counts.ok, 3, "{:?}", doc.counts);
    assert_eq!(
        doc.operator.as_deref(),
        Some("alice"),
        "the document names who asked"
    );
    for name in names {
        let lines = ca.audit_lines(name);
        let ran: Vec<_> = lines
            .iter()
            .filter(|l| l["source"] == "sweep" && l["sweep_id"] == doc.sweep_id.as_str())
            .collect();
        assert_eq!(ran.len(), 1, "{name}: {lines:?}");
        assert_eq!(ran[0]["operator"], "alice", "{name}: {lines:?}");
        assert_eq!(ran[0]["action"], "ran", "{name}: {lines:?}");
        assert_eq!(ran[0]["checks"], 1, "{name}: {lines:?}");
        assert_eq!(ran[0]["coordinator"], "node-01", "{name}: {lines:?}");
    }
    // The coordinator also logged the control request.
    let control: Vec<_> = ca
        .audit_lines("node-01")
        .into_iter()
        .filter(|l| l["source"] == "control")
        .collect();
    assert!(
        control.iter().any(|l| l["request"] == "sweep"
            && l["action"] == "served"
            && l["operator"] == "alice"),
        "{control:?}"
    );
    for a in m.agents {
        let stats = a.stats().await.unwrap();
        assert_eq!(stats.node.sweep.answers_forged, 0);
        assert_eq!(stats.node.sweep.requests_unauthorized, 0);
        a.stop(patrol_agent::agent::StopMode::Leave).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_only_the_cluster_key_is_refused_and_a_refusal_is_audited() {
    let ca = TestCa::new("ca");
    let names = ["node-00", "node-01"];
    let inspector = Arc::new(CountingInspector::default());
    let m = mesh(
        &names,
        |i| Some(ca.node_trust(names[i], ca.bundle())),
        |_| inspector.clone(),
    )
    .await;
    let e = sweep_as(
        m.controls[0],
        ClientAuth::ClusterKey(m.env.clone()),
        &sweep_request(Selector::default(), 3000),
    )
    .await
    .unwrap_err();
    assert!(e.contains("operator certificate"), "{e}");

    // A node certificate is not an operator's: refused in the handshake,
    // and the refusal is in the audit log with its reason.
    let node_as_operator =
        ClientAuth::Operator(Arc::new(patrol_agent::control::client::OperatorIdentity {
            creds: ca.creds_for(Role::Node, "node-09", Duration::from_secs(60)),
            bundle: ca.bundle(),
            cluster: "test".into(),
        }));
    let e = sweep_as(
        m.controls[0],
        node_as_operator,
        &sweep_request(Selector::default(), 3000),
    )
    .await
    .unwrap_err();
    assert!(e.contains("operator"), "{e}");
    let refused: Vec<_> = ca
        .audit_lines("node-00")
        .into_iter()
        .filter(|l| l["action"] == "refused")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0]["reason"].as_str().unwrap().contains("node"),
        "{refused:?}"
    );
    assert_no_sweep_started(&m.agents).await;
    assert_eq!(inspector.runs(), 0, "a refused client ran checks");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_forged_in_another_nodes_name_is_dropped_counted_and_the_real_one_recorded() {
    let ca = TestCa::new("ca");
    let names = ["node-00", "node-01", "node-02"];
    let trusts: Vec<_> = names
        .iter()
        .map(|n| ca.node_trust(n, ca.bundle()))
        .collect();
    // node-03 is a real member of the CA (it holds the cluster key and
    // its own certificate) but not running: the attacker.
    let evil = ca.creds_for(Role::Node, "node-03", Duration::from_secs(600));
    let coordinator_key = trusts[0].creds.cert.public_key().unwrap();
    let m = mesh(
        &names,
        |i| Some(trusts[i].clone()),
        // node-02 answers late, so the forgeries arrive first.
        |i| -> Arc<dyn Inspector> {
            Arc::new(SlowProbe {
                delay: Duration::from_millis(if i == 2 { 1200 } else { 10 }),
            })
        },
    )
    .await;
    let operator = ca.creds_for(Role::Operator(full()), "alice", Duration::from_secs(600));
    let id = rand::random::<u64>();
    let events = start_signed(&m.agents[0], &operator, id, Duration::from_secs(4)).await;

    let body = AnswerBody::compact(
        BTreeMap::new(),
        WallClock::default().unix_ms(),
        1,
        vec![outcome("probe", "FORGED")],
    )
    .encode();
    // 1. A complete answer for node-02 proved with the attacker's own
    //    certificate and its own pair key with the coordinator.
    let pair = PairKey::derive(&evil.key, &coordinator_key).unwrap();
    let nonce = 77;
    let own_proof = AnswerPayload {
        body: body.clone(),
        proof: Some(AnswerProof {
            cert: CertRef::Whole(Box::new(evil.cert.clone())),
            mac: pair.answer_proof(id, "node-02", nonce, &body).to_vec(),
        }),
    };
    // 2. node-02's certificate (public: it travels in every answer) with
    //    a proof the attacker cannot compute.
    let stolen_cert = AnswerPayload {
        body: body.clone(),
        proof: Some(AnswerProof {
            cert: CertRef::Whole(Box::new(trusts[2].creds.cert.clone())),
            mac: vec![0; 32],
        }),
    };
    // 3. No proof at all.
    let bare = AnswerPayload {
        body: body.clone(),
        proof: None,
    };
    // 4. node-02's certificate named by its digest, as a node the
    //    coordinator knows names it, with a proof the attacker cannot
    //    compute: forged once the coordinator has node-02's certificate,
    //    unverified (not recorded, the node asked again) before.
    let by_digest = AnswerPayload {
        body: body.clone(),
        proof: Some(AnswerProof {
            cert: CertRef::Known(cert_digest(&trusts[2].creds.cert)),
            mac: vec![0; 32],
        }),
    };
    for (n, payload) in [own_proof, stolen_cert, bare, by_digest]
        .into_iter()
        .enumerate()
    {
        let chunk = AnswerChunk {
            sweep_id: id,
            node: "node-02".into(),
            nonce: nonce + n as u64,
            index: 0,
            count: 1,
            payload: payload.encode(),
            sent_unix_ms: patrol_agent::clock::unix_ms(),
            sent_tag: None,
        };
        send_sealed(&m.env, m.agents[0].addr, &SweepMessage::Answer(chunk)).await;
    }
    let doc = finish(events, Duration::from_secs(20)).await.doc;
    let n2 = doc.nodes.iter().find(|n| n.name == "node-02").unwrap();
    assert_eq!(n2.state, NodeState::Ok, "{n2:?}");
    assert_eq!(
        n2.checks[0].observed,
        Observed::Text("measured by the node itself".into()),
        "{n2:?}"
    );
    assert_eq!(doc.counts.ok, 3, "{:?}", doc.counts);
    let stats = m.agents[0].stats().await.unwrap();
    let sweep = &stats.node.sweep;
    assert!(sweep.answers_forged >= 3, "{sweep:?}");
    assert_eq!(
        sweep.answers_forged + sweep.answers_unverified,
        4,
        "{sweep:?}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_operator_is_refused_by_the_coordinator_and_by_a_participant_it_reaches_anyway() {
    let ca = TestCa::new("ca");
    let names = ["node-00", "node-01"];
    let trusts: Vec<_> = names
        .iter()
        .map(|n| ca.node_trust(n, ca.bundle()))
        .collect();
    let inspector = Arc::new(CountingInspector::default());
    let m = mesh(&names, |i| Some(trusts[i].clone()), |_| inspector.clone()).await;
    let nightly = Scope {
        name: "nightly".into(),
        profiles: vec!["k8s-node".into()],
        ..full()
    };
    let cron = ca.operator("cron", nightly.clone(), ca.bundle());
    // Within the scope: the coordinator takes it.
    let within = Selector {
        profile: Some("k8s-node".into()),
        ..Selector::default()
    };
    sweep_as(m.controls[0], cron.clone(), &sweep_request(within, 3000))
        .await
        .expect("a sweep within the scope");
    // Other checks: refused by the coordinator, with the reason.
    let wider = Selector {
        checks: vec!["etcd".into()],
        ..Selector::default()
    };
    let e = sweep_as(m.controls[0], cron, &sweep_request(wider.clone(), 3000))
        .await
        .unwrap_err();
    assert!(e.contains("may not ask") && e.contains("k8s-node"), "{e}");

    // A coordinator that passes the wider request on anyway (here: a
    // request sent straight to node-01, with a valid signature by the
    // scoped operator and node-00's certificate): node-01 refuses it.
    let runs_before = inspector.runs();
    let cron_creds = ca.creds_for(Role::Operator(nightly), "cron", Duration::from_secs(600));
    let id = rand::random::<u64>();
    let filter = BTreeMap::new();
    let ask = SweepAsk {
        sweep_id: id,
        selector: &wider,
        node_filter: &filter,
        deadline_ms: 3000,
        coordinator: "node-00",
    };
    let now = WallClock::default().unix_ms();
    let req = SweepRequest {
        id,
        coordinator: PeerAddr {
            name: "node-00".into(),
            addr: m.agents[0].addr,
        },
        selector: wider.clone(),
        node_filter: filter.clone(),
        issued_at_unix_ms: now,
        deadline_ms: 3000,
        answer_spread_ms: 0,
        relays: vec![],
        auth: Some(Box::new(RequestAuth {
            authorization: Authorization::sign(&cron_creds, &ask, now),
            coordinator: trusts[0].creds.cert.clone(),
            peer_epoch: 0,
        })),
    };
    send_sealed(&m.env, m.agents[1].addr, &SweepMessage::Request(req)).await;
    wait_for(Duration::from_secs(5), "node-01 to refuse", || async {
        let s = m.agents[1].stats().await.map_err(|e| e.to_string())?;
        (s.node.sweep.requests_unauthorized == 1)
            .then_some(())
            .ok_or(format!("{:?}", s.node.sweep))
    })
    .await;
    assert_eq!(
        inspector.runs(),
        runs_before,
        "a refused request ran checks"
    );
    let refused: Vec<_> = ca
        .audit_lines("node-01")
        .into_iter()
        .filter(|l| l["action"] == "refused" && l["sweep_id"] == format!("{id:016x}"))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0]["reason"].as_str().unwrap().contains("k8s-node"),
        "{refused:?}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_only_the_cluster_key_cannot_join_certified_nodes_nor_sweep_them() {
    let ca = TestCa::new("ca");
    let names = ["node-00", "node-01"];
    let inspector = Arc::new(CountingInspector::default());
    // node-00 and node-01 have identities; node-02 holds the cluster key
    // only. It hears its seed node-00 (it checks nothing); the certified
    // nodes never admit it, so it learns nobody else.
    let m = mesh(
        &names,
        |i| Some(ca.node_trust(names[i], ca.bundle())),
        |_| inspector.clone(),
    )
    .await;
    let (keyed, keyed_control, _) = trusted_agent(
        "node-02",
        vec![m.agents[0].addr],
        &m.env,
        inspector.clone(),
        None,
    )
    .await;
    // Give it time to announce (and be refused) a few times.
    wait_for(
        CONVERGE,
        "node-00 to refuse node-02's announces",
        || async {
            let r = m.agents[0].roster().await.map_err(|e| e.to_string())?;
            let seen = r.is_some_and(|r| r.intruders.iter().any(|i| i.name == "node-02"));
            if seen {
                Ok(())
            } else {
                Err("no intruder yet".to_string())
            }
        },
    )
    .await;
    let doc = sweep_as(
        keyed_control,
        ClientAuth::ClusterKey(m.env.clone()),
        &sweep_request(Selector::default(), 2000),
    )
    .await
    .expect("node-02 coordinates with the key");
    // Nobody answered its announces: its sweep covers itself alone, and no
    // certified node ran anything for it.
    assert_eq!(doc.counts.expected, 1, "{:?}", doc.counts);
    assert_eq!(doc.counts.ok, 1, "{:?}", doc.counts);
    let s = m.agents[0].stats().await.unwrap();
    assert!(
        s.node.gate.as_ref().is_some_and(|g| g.packets_unproven > 0),
        "the seed counted the announces it refused: {:?}",
        s.node.gate
    );
    for a in &m.agents {
        // It never became a member of a certified node, and node-00 (its
        // seed) lists it as an intruder.
        let alive = a
            .members()
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.state == patrol_agent::membership::MemberState::Alive)
            .count();
        assert_eq!(alive, 2, "{}: only the certified nodes", a.name);
    }
    let roster = m.agents[0].roster().await.unwrap().expect("a roster");
    assert!(
        roster
            .intruders
            .iter()
            .any(|i| i.name == "node-02" && i.addr == keyed.addr),
        "{:?}",
        roster.intruders
    );
    assert_eq!(inspector.runs(), 1);
    keyed.stop(patrol_agent::agent::StopMode::Crash).await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_revoked_operators_are_refused_and_a_revocation_applies_on_reload() {
    let ca = TestCa::new("ca");
    let names = ["node-00", "node-01"];
    let m = mesh(
        &names,
        |i| Some(ca.node_trust(names[i], ca.bundle())),
        |_| Arc::new(CountingInspector::default()),
    )
    .await;
    let expired = ClientAuth::Operator(Arc::new(patrol_agent::control::client::OperatorIdentity {
        creds: ca.creds_for(Role::Operator(full()), "old", Duration::ZERO),
        bundle: ca.bundle(),
        cluster: "test".into(),
    }));
    // Valid until now + 0 s: expired a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = sweep_as(
        m.controls[0],
        expired,
        &sweep_request(Selector::default(), 2000),
    )
    .await
    .unwrap_err();
    assert!(e.contains("expired"), "{e}");

    let bob = ca.creds_for(Role::Operator(full()), "bob", Duration::from_secs(600));
    let bob_auth =
        ClientAuth::Operator(Arc::new(patrol_agent::control::client::OperatorIdentity {
            creds: bob.clone(),
            bundle: ca.bundle(),
            cluster: "test".into(),
        }));
    sweep_as(
        m.controls[0],
        bob_auth.clone(),
        &sweep_request(Selector::default(), 2000),
    )
    .await
    .expect("bob sweeps before the revocation");
    // Revoke bob's serial; reload as SIGHUP does, without a restart.
    let revoked = ca.bundle_with(&[], &[bob.cert.body.serial]);
    m.reload(&revoked).await;
    let e = sweep_as(
        m.controls[0],
        bob_auth,
        &sweep_request(Selector::default(), 2000),
    )
    .await
    .unwrap_err();
    assert!(e.contains("revoked"), "{e}");
    // A sweep bob signed, handed to another node's core directly: refused
    // there too.
    let id = rand::random::<u64>();
    let events = start_signed(&m.agents[1], &bob, id, Duration::from_secs(2)).await;
    let mut events = events;
    match events.recv().await {
        Some(SweepEvent::Refused(r)) => assert!(r.contains("revoked"), "{r}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_an_old_and_a_new_ca_sweep_together_until_the_old_ca_is_dropped() {
    let old = TestCa::new("old-ca");
    let new = TestCa::new("new-ca");
    let both = new.bundle_with(&[&old], &[]);
    let names = ["node-00", "node-01", "node-02"];
    // node-02 still has a certificate of the old CA.
    let m = mesh(
        &names,
        |i| {
            Some(if i == 2 {
                old.node_trust(names[i], both.clone())
            } else {
                new.node_trust(names[i], both.clone())
            })
        },
        |_| Arc::new(CountingInspector::default()),
    )
    .await;
    let alice = new.operator("alice", full(), both.clone());
    let doc = sweep_as(
        m.controls[0],
        alice.clone(),
        &sweep_request(Selector::default(), 3000),
    )
    .await
    .unwrap();
    assert_eq!(doc.counts.ok, 3, "both CAs in the bundle: {:?}", doc.counts);

    // The old CA leaves every bundle: node-02's answers no longer count.
    let only_new = new.bundle();
    m.reload(&only_new).await;
    let doc = sweep_as(
        m.controls[0],
        alice,
        &sweep_request(Selector::default(), 2000),
    )
    .await
    .unwrap();
    let n2 = doc.nodes.iter().find(|n| n.name == "node-02").unwrap();
    assert_eq!(n2.state, NodeState::NoAnswer, "{doc:?}");
    assert_eq!(doc.counts.ok, 2, "{:?}", doc.counts);
    // node-02 still took the request (the coordinator's certificate is
    // from the new CA) and answered; the coordinator dropped the answer,
    // proved by a certificate of a CA it no longer trusts.
    let s = m.agents[0].stats().await.unwrap();
    assert!(s.node.sweep.answers_forged >= 1, "{:?}", s.node.sweep);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_operator_lists_members_but_cannot_sweep() {
    let ca = TestCa::new("ca");
    let names = ["node-00", "node-01"];
    let inspector = Arc::new(CountingInspector::default());
    let m = mesh(
        &names,
        |i| Some(ca.node_trust(names[i], ca.bundle())),
        |_| inspector.clone(),
    )
    .await;
    let viewer = ca.operator("viewer", Scope::read_only(), ca.bundle());
    let client = ControlClient::connect(m.controls[0], viewer.clone(), Duration::from_secs(3))
        .await
        .unwrap();
    match client.call(&ControlRequest::Members).await.unwrap() {
        Reply::Members(members) => assert_eq!(members.len(), 2, "{members:?}"),
        other => panic!("expected members, got {other:?}"),
    }
    let e = sweep_as(
        m.controls[0],
        viewer,
        &sweep_request(Selector::default(), 2000),
    )
    .await
    .unwrap_err();
    assert!(e.contains("read-only"), "{e}");
    assert_no_sweep_started(&m.agents).await;
    assert_eq!(inspector.runs(), 0, "a read-only operator ran checks");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_node_is_not_recorded_once_the_deny_list_is_reloaded() {
    let ca = TestCa::new("ca");
    let names = ["node-00", "node-01", "node-02"];
    let trusts: Vec<_> = names
        .iter()
        .map(|n| ca.node_trust(n, ca.bundle()))
        .collect();
    let m = mesh(
        &names,
        |i| Some(trusts[i].clone()),
        |_| Arc::new(CountingInspector::default()),
    )
    .await;
    let alice = ca.operator("alice", full(), ca.bundle());
    let doc = sweep_as(
        m.controls[0],
        alice.clone(),
        &sweep_request(Selector::default(), 2000),
    )
    .await
    .unwrap();
    assert_eq!(doc.counts.ok, 3, "{:?}", doc.counts);
    // Revoke node-02's certificate and reload everywhere (as SIGHUP does).
    let revoked = ca.bundle_with(&[], &[trusts[2].creds.cert.body.serial]);
    m.reload(&revoked).await;
    let doc = sweep_as(
        m.controls[0],
        alice,
        &sweep_request(Selector::default(), 2000),
    )
    .await
    .unwrap();
    // Revoked: off the roster (listed as gone), never recorded.
    assert!(
        doc.nodes
            .iter()
            .all(|n| n.name != "node-02" || n.state != NodeState::Ok),
        "{doc:?}"
    );
    let gone = doc.gone.iter().find(|g| g.name == "node-02");
    assert_eq!(gone.map(|g| g.reason.as_str()), Some("revoked"), "{doc:?}");
    assert_eq!(doc.counts.ok, 2, "{:?}", doc.counts);
    m.stop().await;
}
