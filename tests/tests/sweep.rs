//! Sweeps with real agents: on real loopback UDP sockets, and on the
//! in-memory network where packets can be dropped. Every test checks the
//! accounting: every member of the expected set in exactly one state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use patrol_agent::agent::{AgentHandle, StopMode};
use patrol_agent::clock::WallClock;
use patrol_agent::control::{ControlClient, ControlError, ControlRequest};
use patrol_agent::datagram::Sealer;
use patrol_agent::envelope::Envelope;
use patrol_agent::keyring::Keyring;
use patrol_agent::membership::MemberState;
use patrol_agent::sweep::{PeerAddr, SweepMessage, SweepRequest};
use patrol_agent::transport::MemoryNetwork;
use patrol_checks::{NodeState, Observed, Selector, Status, SweepDocument, SwimState};
use patrol_report::silence::{self, Cause};
use patrol_tests::{
    assert_no_sweep_started, catalog_inspector, finish, marker, memory_agent, new_envelope,
    settings, state_of, sweep_spec, udp_agent, udp_agent_with, wait_converged, wait_for,
    wait_stats, CountingInspector, HungInspector,
};

const CONVERGE: Duration = Duration::from_secs(90);

/// Run a sweep through `agent` and return the finished document (its
/// accounting checked), checking that progress events came first.
async fn sweep(agent: &AgentHandle, deadline: Duration) -> SweepDocument {
    let events = agent
        .start_sweep(sweep_spec(deadline))
        .await
        .expect("agent is running");
    let done = finish(events, deadline + Duration::from_secs(10)).await;
    assert!(!done.progress.is_empty(), "no progress was reported");
    done.doc
}

fn answered(doc: &SweepDocument) -> BTreeSet<String> {
    doc.nodes
        .iter()
        .filter(|n| matches!(n.state, NodeState::Ok | NodeState::Failing))
        .map(|n| n.name.clone())
        .collect()
}

async fn udp_mesh(n: usize, env: &Envelope, inspector: Arc<CountingInspector>) -> Vec<AgentHandle> {
    udp_mesh_with(n, env, inspector, |name, seeds| {
        settings(name, seeds, BTreeMap::new())
    })
    .await
}

/// `n` agents on real loopback sockets, node-00 the seed of the others,
/// each with the settings `make` gives for its name and seeds.
async fn udp_mesh_with(
    n: usize,
    env: &Envelope,
    inspector: Arc<CountingInspector>,
    make: impl Fn(&str, Vec<std::net::SocketAddr>) -> patrol_agent::agent::AgentSettings,
) -> Vec<AgentHandle> {
    let first = udp_agent_with(make("node-00", vec![]), 0, env, inspector.clone()).await;
    let mut agents = vec![first];
    for i in 1..n {
        let settings = make(&format!("node-{i:02}"), vec![agents[0].addr]);
        agents.push(udp_agent_with(settings, 0, env, inspector.clone()).await);
    }
    wait_converged(&agents, n, CONVERGE).await;
    agents
}

/// Stop the agents `node-NN` for each NN of `which` hard (no leave
/// notice: nobody notices at once) and return their names.
async fn crash(agents: &mut Vec<AgentHandle>, which: &[usize]) -> BTreeSet<String> {
    let killed: BTreeSet<String> = which.iter().map(|i| format!("node-{i:02}")).collect();
    for name in &killed {
        let idx = agents.iter().position(|a| &a.name == name).unwrap();
        agents.remove(idx).stop(StopMode::Crash).await;
    }
    killed
}

/// The nodes a sweep lists as `no_answer` or `down`.
fn silent(doc: &SweepDocument) -> BTreeSet<String> {
    doc.nodes
        .iter()
        .filter(|n| matches!(n.state, NodeState::NoAnswer | NodeState::Down))
        .map(|n| n.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_agents_all_answer_whoever_coordinates_and_five_killed_are_listed() {
    let env = new_envelope();
    let inspector = Arc::new(CountingInspector::default());
    let mut agents = udp_mesh(40, &env, inspector.clone()).await;

    let first = sweep(&agents[7], Duration::from_secs(5)).await;
    assert_eq!(first.counts.expected, 40, "{:?}", first.counts);
    assert_eq!(first.counts.ok, 40, "{:?}", first.counts);
    assert_eq!(first.coordinator, "node-07");
    assert!(first
        .nodes
        .iter()
        .all(|n| n.checks.len() == 1 && n.checks[0].status == Status::Pass));
    assert!(first
        .nodes
        .iter()
        .all(|n| n.reached_ms.is_some() && n.answered_ms.is_some()));
    assert!(first.timing.last_answer_ms.is_some());
    // Complete before the deadline: every node answered, nothing to wait for.
    assert!(
        first.timing.completed_ms < first.deadline_ms,
        "{:?}",
        first.timing
    );
    assert_eq!(inspector.runs(), 40);

    let second = sweep(&agents[23], Duration::from_secs(5)).await;
    assert_eq!(second.coordinator, "node-23");
    assert_ne!(first.sweep_id, second.sweep_id);
    assert_eq!(answered(&first), answered(&second));
    assert_eq!(second.counts.ok, 40);

    // Five killed hard, just before the sweep: nobody has noticed yet.
    let killed = crash(&mut agents, &[3, 11, 19, 27, 35]).await;
    let third = sweep(&agents[0], Duration::from_secs(4)).await;
    assert_eq!(silent(&third), killed, "{:?}", third.counts);
    assert_eq!(third.counts.expected, 40);
    assert_eq!(third.counts.ok, 35);
    for a in agents {
        a.stop(StopMode::Crash).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_live_node_answers_through_twenty_percent_loss() {
    let net = MemoryNetwork::new(0.0, 7);
    let env = new_envelope();
    let inspector = Arc::new(CountingInspector::default());
    let seed = memory_agent(&net, "node-00", vec![], &env, inspector.clone());
    let mut agents = vec![seed];
    for i in 1..20 {
        let seeds = vec![agents[0].addr];
        agents.push(memory_agent(
            &net,
            &format!("node-{i:02}"),
            seeds,
            &env,
            inspector.clone(),
        ));
    }
    wait_converged(&agents, 20, CONVERGE).await;
    net.set_loss(0.2);
    let doc = sweep(&agents[5], Duration::from_secs(5)).await;
    net.set_loss(0.0);
    let (dropped, delivered) = net.stats();
    assert!(
        dropped > 0,
        "the network dropped nothing ({delivered} delivered)"
    );
    assert_eq!(doc.counts.expected, 20);
    assert_eq!(
        doc.counts.ok,
        20,
        "{:?}",
        doc.nodes
            .iter()
            .filter(|n| n.state != NodeState::Ok)
            .collect::<Vec<_>>()
    );
    for a in agents {
        a.stop(StopMode::Crash).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_check_is_cut_off_and_the_node_still_answers() {
    let env = new_envelope();
    let checks = r#"
[[check]]
id = "hangs"
type = "command"
program = "sleep"
args = ["60"]
timeout = "60s"

[[check]]
id = "true"
type = "command"
program = "true"
"#;
    let hanging = Arc::new(catalog_inspector(checks));
    let a = udp_agent("a", 0, vec![], &env, Arc::new(CountingInspector::default())).await;
    let b = udp_agent("b", 0, vec![a.addr], &env, hanging).await;
    let agents = [a, b];
    wait_converged(&agents, 2, CONVERGE).await;
    // The check's own timeout (60 s) is far past the deadline (3 s): the
    // agent cuts it to the time left, so the node still answers in time.
    let doc = sweep(&agents[0], Duration::from_secs(3)).await;
    let b = doc.nodes.iter().find(|n| n.name == "b").unwrap();
    assert_eq!(b.state, NodeState::Failing);
    let hangs = b.checks.iter().find(|c| c.id == "hangs").unwrap();
    assert_eq!(hangs.status, Status::Error, "{hangs:?}");
    // Cut off by the command runner ("did not finish within 2.6s") or by
    // the check runner ("no result within the 2.6s timeout"), whichever
    // fires first; either way within the budget, not the 60 s.
    assert!(hangs.message.contains("within"), "{}", hangs.message);
    assert!(!hangs.message.contains("60s"), "{}", hangs.message);
    let ok = b.checks.iter().find(|c| c.id == "true").unwrap();
    assert_eq!(ok.status, Status::Pass, "{ok:?}");
    let [a, b] = agents;
    a.stop(StopMode::Crash).await;
    b.stop(StopMode::Crash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_or_stale_request_runs_no_checks() {
    let env = new_envelope();
    let inspector = Arc::new(CountingInspector::default());
    let agents = udp_mesh(3, &env, inspector.clone()).await;
    let doc = sweep(&agents[0], Duration::from_secs(3)).await;
    assert_eq!(doc.counts.ok, 3);
    assert_eq!(inspector.runs(), 3);

    // The same request, sent again straight to every node, sealed with the
    // right key: a replay of what went over the wire.
    let replay = SweepRequest {
        id: u64::from_str_radix(&doc.sweep_id, 16).unwrap(),
        coordinator: PeerAddr {
            name: "node-00".into(),
            addr: agents[0].addr,
        },
        selector: Selector::default(),
        node_filter: BTreeMap::new(),
        issued_at_unix_ms: doc.started_at_unix_ms,
        deadline_ms: doc.deadline_ms,
        answer_spread_ms: 0,
        relays: vec![],
        auth: None,
    };
    // A fresh id but issued an hour ago: expired.
    let stale = SweepRequest {
        id: 0x5eed,
        issued_at_unix_ms: doc.started_at_unix_ms - 3_600_000,
        ..replay.clone()
    };
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut malformed = Vec::new();
    for a in &agents {
        malformed.push(a.stats().await.unwrap().node.dropped_malformed);
    }
    // A key holder crafting requests: properly sealed datagrams.
    let mut sealer = Sealer::new(env.clone(), WallClock::default());
    for req in [replay, stale] {
        let mut plain = vec![1u8]; // the sweep channel
        plain.extend(SweepMessage::Request(req).encode());
        for a in &agents {
            let mut sealed = Vec::new();
            sealer.seal(&plain, a.addr, &mut sealed).unwrap();
            sock.send_to(&sealed, a.addr).await.unwrap();
        }
    }
    // Barrier: a marker after them from the same socket; once each node
    // counted it, each has handled both requests.
    for (a, before) in agents.iter().zip(malformed) {
        sock.send_to(&marker(&env, a.addr), a.addr).await.unwrap();
        wait_stats(a, CONVERGE, "the marker after the requests", |s| {
            s.node.dropped_malformed > before
        })
        .await;
    }
    assert_eq!(
        inspector.runs(),
        3,
        "a replayed or stale request ran checks"
    );
    for a in agents {
        a.stop(StopMode::Crash).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_over_the_control_channel_needs_the_key() {
    let env = new_envelope();
    let inspector = Arc::new(CountingInspector::default());
    let mut agents = udp_mesh(3, &env, inspector.clone()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let commander = agents[1].commander();
    agents[1].tasks().spawn(patrol_agent::control::serve(
        listener,
        env.clone(),
        commander,
    ));
    let request = ControlRequest::StartSweep {
        selector: Selector::default(),
        node_filter: BTreeMap::new(),
        deadline_ms: 3000,
        signed: None,
    };

    let wrong = Envelope::new(Keyring::generate(), "test");
    let client = ControlClient::connect(addr, wrong, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(matches!(
        client.call(&request).await,
        Err(ControlError::Refused(_))
    ));
    assert_no_sweep_started(&agents).await;
    assert_eq!(inspector.runs(), 0, "a refused sweep ran checks");

    // A selector too large for one gossip packet: refused, with the reason.
    let huge = ControlRequest::StartSweep {
        selector: Selector {
            checks: (0..200)
                .map(|i| format!("some-long-check-name-{i:03}"))
                .collect(),
            ..Selector::default()
        },
        node_filter: BTreeMap::new(),
        deadline_ms: 3000,
        signed: None,
    };
    let client = ControlClient::connect(addr, env.clone(), Duration::from_secs(3))
        .await
        .unwrap();
    match client.call(&huge).await {
        Ok(patrol_agent::control::Reply::Error(why)) => {
            assert!(why.contains("fit"), "{why}")
        }
        other => panic!("expected an error, got {other:?}"),
    }

    // With the key: progress, then the whole document.
    let mut client = ControlClient::connect(addr, env.clone(), Duration::from_secs(3))
        .await
        .unwrap();
    client.send(&request).await.unwrap();
    let mut progress = 0;
    let doc = loop {
        match client.recv().await.unwrap() {
            patrol_agent::control::Reply::Progress { .. } => progress += 1,
            patrol_agent::control::Reply::SweepDone(doc) => break doc.to_document(),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(progress > 0);
    assert_eq!(doc.coordinator, "node-01");
    assert_eq!(doc.counts.ok, 3);
    for a in agents {
        a.stop(StopMode::Crash).await;
    }
}

/// Regression (issue 12): two agents with the same name (a cloned image)
/// hid each other: one twin's answer was dropped as a duplicate and the
/// sweep said `ok`. Now both are listed, as a conflict, and `members` says
/// so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_with_one_name_are_both_listed_as_a_conflict() {
    let env = new_envelope();
    let inspector = Arc::new(CountingInspector::default());
    let seed = udp_agent("node-00", 0, vec![], &env, inspector.clone()).await;
    let mut agents = vec![seed];
    for name in ["node-01", "twin", "twin"] {
        let a = udp_agent(name, 0, vec![agents[0].addr], &env, inspector.clone()).await;
        agents.push(a);
    }
    wait_converged(&agents, 4, CONVERGE).await;
    let members = agents[1].members().await.unwrap();
    let twins: Vec<_> = members.iter().filter(|m| m.name == "twin").collect();
    assert_eq!(twins.len(), 2, "{members:?}");
    assert!(twins.iter().all(|m| m.name_conflict), "{members:?}");
    assert!(members
        .iter()
        .filter(|m| m.name != "twin")
        .all(|m| !m.name_conflict));

    let doc = sweep(&agents[1], Duration::from_secs(3)).await;
    let listed: Vec<_> = doc
        .nodes
        .iter()
        .filter(|n| n.name.starts_with("twin@"))
        .collect();
    assert_eq!(listed.len(), 2, "{:?}", doc.nodes);
    for t in &listed {
        assert_eq!(t.state, NodeState::Failing);
        assert_eq!(t.checks[0].id, "patrol.name_conflict");
    }
    assert_eq!(doc.counts.ok, 2);
    for a in agents {
        a.stop(StopMode::Crash).await;
    }
}

/// Issue 14: every sweep measures each node's clock against the
/// coordinator's; a node 3 s ahead is reported, and only that node, with
/// an offset near 3 s within its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_clock_is_three_seconds_ahead_is_the_only_one_reported_skewed() {
    let env = new_envelope();
    let inspector = Arc::new(CountingInspector::default());
    let mut agents = vec![udp_agent("node-00", 0, vec![], &env, inspector.clone()).await];
    for i in 1..4 {
        let mut s = settings(
            &format!("node-{i:02}"),
            vec![agents[0].addr],
            BTreeMap::new(),
        );
        if i == 2 {
            s.clock = WallClock::shifted(3000);
        }
        agents.push(udp_agent_with(s, 0, &env, inspector.clone()).await);
    }
    wait_converged(&agents, 4, CONVERGE).await;
    let doc = sweep(&agents[0], Duration::from_secs(5)).await;
    assert_eq!(answered(&doc).len(), 4, "{:?}", doc.counts);
    for n in &doc.nodes {
        let clock = n
            .clock
            .unwrap_or_else(|| panic!("{} has no clock offset", n.name));
        let truth: i64 = if n.name == "node-02" { 3000 } else { 0 };
        // Loopback: the bound is the round trip's half, a few ms; each
        // reading is whole milliseconds, hence the 2 ms of slack.
        assert!(clock.bound_ms < 250, "{}: {clock:?}", n.name);
        assert!(
            (clock.offset_ms - truth).unsigned_abs() <= clock.bound_ms + 2,
            "{}: {clock:?}",
            n.name
        );
        let skew: Vec<_> = n
            .checks
            .iter()
            .filter(|c| c.id == "patrol.clock_skew")
            .collect();
        if n.name == "node-02" {
            assert_eq!(n.state, NodeState::Failing);
            assert_eq!(skew.len(), 1, "{:?}", n.checks);
            assert_eq!(skew[0].observed, Observed::Text("ahead".into()));
        } else {
            assert_eq!(n.state, NodeState::Ok, "{}: {:?}", n.name, n.checks);
            assert!(skew.is_empty());
        }
    }
    for a in agents {
        a.stop(StopMode::Crash).await;
    }
}

/// Issue 14: two silent nodes, told apart. One agent runs but its checks
/// hang past the deadline (a check its timeout cannot cut): heard during
/// the sweep, alive, asked again by the backstop. The other is cut off by
/// a partition: not heard since, suspect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_checks_hang_and_a_partitioned_node_are_silent_for_different_reasons() {
    let net = MemoryNetwork::new(0.0, 11);
    let env = new_envelope();
    let counting = Arc::new(CountingInspector::default());
    let coordinator = memory_agent(&net, "node-00", vec![], &env, counting.clone());
    let seeds = vec![coordinator.addr];
    let agents = vec![
        coordinator,
        memory_agent(&net, "node-01", seeds.clone(), &env, counting.clone()),
        memory_agent(
            &net,
            "node-02",
            seeds.clone(),
            &env,
            Arc::new(HungInspector),
        ),
        memory_agent(&net, "node-03", seeds, &env, counting.clone()),
    ];
    wait_converged(&agents, 4, CONVERGE).await;
    net.isolate(agents[3].addr, true);
    // Sweep as soon as the mesh suspects the partitioned node (it declares
    // it down some 5 s later; the sweep is over by then).
    wait_for(Duration::from_secs(20), "node-03 suspect", || async {
        match state_of(&agents[0], "node-03").await {
            Some(MemberState::Suspect) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let doc = sweep(&agents[0], Duration::from_secs(2)).await;
    let entry = |name: &str| doc.nodes.iter().find(|n| n.name == name).unwrap();
    assert_eq!(entry("node-01").state, NodeState::Ok);
    assert_eq!(entry("node-01").silence, None);

    let hung = entry("node-02");
    assert_eq!(hung.state, NodeState::NoAnswer);
    let why = hung.silence.clone().expect("a silent node says why");
    assert_eq!(why.swim, SwimState::Alive, "{why:?}");
    let ago = why.last_heard_ago_ms.expect("heard from");
    assert!(
        ago <= doc.timing.completed_ms,
        "heard during the sweep: {why:?}"
    );
    assert!(why.backstop_requests >= 1, "{why:?}");
    assert_eq!(
        silence::cause(&why, doc.timing.completed_ms),
        Cause::AgentUp
    );

    let cut = entry("node-03");
    assert_eq!(cut.state, NodeState::NoAnswer);
    let why = cut.silence.clone().expect("a silent node says why");
    assert_eq!(why.swim, SwimState::Suspect, "{why:?}");
    if let Some(ago) = why.last_heard_ago_ms {
        assert!(
            ago > doc.timing.completed_ms,
            "not heard since the partition: {why:?}"
        );
    }
    assert!(why.backstop_requests >= 1, "{why:?}");
    assert_eq!(
        silence::cause(&why, doc.timing.completed_ms),
        Cause::Unreachable
    );
    let texts = [
        silence::explain(hung.silence.as_ref().unwrap(), doc.timing.completed_ms),
        silence::explain(cut.silence.as_ref().unwrap(), doc.timing.completed_ms),
    ];
    assert!(
        texts[0].starts_with("agent up, no answer: alive"),
        "{texts:?}"
    );
    assert!(texts[1].starts_with("unreachable: suspect"), "{texts:?}");
    for a in agents {
        a.stop(StopMode::Crash).await;
    }
}

/// Agents on real loopback sockets whose sweeps use relays from two nodes
/// on (one relay per four nodes), as a 2,000-node mesh would.
async fn relayed_udp_mesh(
    n: usize,
    env: &Envelope,
    inspector: Arc<CountingInspector>,
) -> Vec<AgentHandle> {
    udp_mesh_with(n, env, inspector, |name, seeds| {
        let mut s = settings(name, seeds, BTreeMap::new());
        s.node.sweep.relay_min_nodes = 2;
        s.node.sweep.nodes_per_relay = 4;
        // A 20 ms spread window, as a large mesh has (100 ms at 100,000
        // nodes): answers do not overtake the request to their relay.
        s.node.sweep.relay_spread_per_node = Duration::from_millis(1);
        // And no direct copy of the request to every member, which a mesh
        // that large does not get either.
        s.node.direct_spread_limit = 0;
        s
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_on_real_sockets_carry_the_answers_and_dead_relays_lose_no_node() {
    let env = new_envelope();
    let inspector = Arc::new(CountingInspector::default());
    let mut agents = relayed_udp_mesh(20, &env, inspector.clone()).await;

    let first = sweep(&agents[0], Duration::from_secs(5)).await;
    assert_eq!(first.counts.ok, 20, "{:?}", first.counts);
    let mut relayed = 0;
    let mut batches = 0;
    let mut all = Vec::new();
    for a in &agents {
        let stats = a.stats().await.expect("agent is running");
        relayed += stats.node.sweep.relay.answers_relayed;
        batches += stats.node.sweep.relay.batches_sent;
        all.push((a.name.clone(), stats.node.sweep));
    }
    // Five relays (20 nodes, 4 each) took most answers: every one but the
    // coordinator's own when all goes to plan; on a loaded machine (20
    // agents on two threads) a relay's own answer sometimes goes to the
    // coordinator directly.
    assert!(relayed >= 10, "{relayed} answers relayed: {all:#?}");
    assert!(batches >= 1 && batches <= relayed, "{batches} batches");

    // Five nodes killed hard just before the next sweep, unnoticed: the
    // coordinator may name some of them relays. Their nodes pass them over
    // and every live node is still accounted for.
    let killed = crash(&mut agents, &[2, 5, 9, 13, 17]).await;
    for coordinator in [0, 7] {
        let doc = sweep(&agents[coordinator], Duration::from_secs(4)).await;
        assert_eq!(silent(&doc), killed, "{:?}", doc.counts);
        assert_eq!(doc.counts.ok, 15, "{:?}", doc.counts);
    }
    for a in agents {
        a.stop(StopMode::Crash).await;
    }
}
