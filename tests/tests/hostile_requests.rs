//! Sweep requests are checked before they are passed on (issue 22, item
//! 3): real certified agents on the in-memory network
//! ([`Lab::start_certified`]), attacked by a [`Forge`] with the cluster key,
//! alone or with a node certificate of its own (a compromised node).
//!
//! Before the fix, a node gossiped every new request before checking it, so
//! each forged request reached every node, and every node wrote an audit
//! line for each. Now an unsigned or badly signed request stops at the
//! first node, and costs at most one audit line per sender a minute.

use std::time::Duration;

use foca::{Header, Message};
use patrol_agent::clock::WallClock;
use patrol_agent::sweep::{PeerAddr, SweepMessage, SweepRequest, SweepSettings};
use patrol_core::node::Channel;
use patrol_core::trust::Role;
use patrol_tests::forge::Forge;
use patrol_tests::lab::{node_settings, Lab};

const REAL: [&str; 3] = ["node-a", "node-b", "node-c"];
const FORGED: u64 = 300;

/// An unsigned request for sweep `id`, coordinated (it says) by node-b.
fn unsigned(lab: &Lab, id: u64) -> SweepRequest {
    SweepRequest {
        id,
        coordinator: PeerAddr {
            name: "node-b".into(),
            addr: lab.nodes[1].addr,
        },
        selector: Default::default(),
        node_filter: Default::default(),
        issued_at_unix_ms: WallClock::default().unix_ms(),
        deadline_ms: 5_000,
        answer_spread_ms: 0,
        relays: vec![],
        auth: None,
    }
}

/// Audit lines of `name` refusing a sweep.
fn refused_lines(lab: &Lab, name: &str) -> Vec<String> {
    let path = lab.ca.as_ref().unwrap().audit_path(name);
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"action\":\"refused\"") && l.contains("\"source\":\"sweep\""))
        .map(str::to_string)
        .collect()
}

async fn sent(lab: &Lab) -> u64 {
    let mut n = 0;
    for name in REAL {
        n += lab.stats(name).await.node.datagrams_out;
    }
    n
}

/// A signed sweep from node-c, run to its end: every node handles what
/// reached it before, so what did not happen by then did not happen.
async fn barrier(lab: &Lab) {
    let doc = lab.sweep("node-c", Duration::from_secs(2)).await;
    assert_eq!(doc.counts.ok + doc.counts.failing, 3, "{doc:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_requests_gossiped_by_a_compromised_member_stop_at_the_first_node() {
    let lab = Lab::start_certified(&REAL, node_settings(SweepSettings::default())).await;
    let ca = lab.ca.clone().unwrap();
    let evil = ca.creds_for(Role::Node, "node-evil", Duration::from_secs(3600));
    let mut forge = Forge::new(&lab);
    let (me, key) = forge.compromised(&lab, &evil, 0).await;
    let header = Header {
        src: me,
        src_incarnation: 0,
        dst: lab.ids[0].clone(),
        message: Message::Broadcast,
    };
    let before = sent(&lab).await;
    for i in 0..FORGED {
        let req = unsigned(&lab, 0xbad0_0000 + i);
        forge
            .tagged_broadcast(lab.nodes[0].addr, &header, &[req.encode()], &key)
            .await;
        tokio::task::yield_now().await;
    }
    lab.wait_stats("node-a", "every forged request refused", |s| {
        s.node.sweep.requests_unauthorized >= FORGED
    })
    .await;
    let during = sent(&lab).await - before;
    barrier(&lab).await;
    // Nothing was passed on: the other nodes never heard of them.
    for name in ["node-b", "node-c"] {
        let s = lab.stats(name).await;
        assert_eq!(s.node.sweep.requests_unauthorized, 0, "{name}: {s:?}");
        assert!(
            refused_lines(&lab, name).is_empty(),
            "{name} audited a refusal"
        );
    }
    // One audit line at node-a for the whole flood, the rest counted.
    let lines = refused_lines(&lab, "node-a");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let a = lab.stats("node-a").await;
    assert!(a.node.sweep.refusals_unaudited >= FORGED - 1, "{a:?}");
    // Before the fix every forged request cost about 12 datagrams across
    // the mesh; what the three nodes sent meanwhile is their own traffic.
    assert!(
        during < FORGED / 3,
        "{during} datagrams sent for {FORGED} forged requests"
    );
    println!("{FORGED} forged requests gossiped: {during} datagrams sent by the mesh meanwhile");
    forge.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_requests_sent_directly_cost_one_audit_line_and_no_answer() {
    let lab = Lab::start_certified(&REAL, node_settings(SweepSettings::default())).await;
    let mut forge = Forge::new(&lab);
    for i in 0..FORGED {
        // In node-a's name: node-b must not answer anyone (the forge's own
        // address as the coordinator's is refused sooner, as misaddressed).
        let mut req = unsigned(&lab, 0xd1ec_0000 + i);
        req.coordinator = PeerAddr {
            name: "node-a".into(),
            addr: lab.nodes[0].addr,
        };
        forge
            .sweep(lab.nodes[1].addr, &SweepMessage::Request(req))
            .await;
    }
    lab.wait_stats("node-b", "every unsigned request refused", |s| {
        s.node.sweep.requests_unauthorized >= FORGED
    })
    .await;
    barrier(&lab).await;
    let lines = refused_lines(&lab, "node-b");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("no operator signature"),
        "the line says why: {}",
        lines[0]
    );
    for name in ["node-a", "node-c"] {
        let s = lab.stats(name).await;
        assert_eq!(s.node.sweep.requests_unauthorized, 0, "{name}: {s:?}");
    }
    let heard = forge.heard(Duration::from_millis(300)).await;
    assert!(
        heard
            .iter()
            .all(|(_, p)| p.first() != Some(&(Channel::Sweep as u8))),
        "a node answered the forge"
    );
    forge.stop().await;
    lab.stop().await;
}

/// Issue 22, item 5, at the participants: an operator allowed a narrow
/// scope starts 64 long sweeps through four coordinators (so no one
/// coordinator's quota stops it) and would fill every node's
/// `max_participations` (64). Its checks are slow, so every sweep a node
/// takes stays held (an answered one would be settled and free its slot).
/// Each node takes at most `operator_share` (16) of them and refuses the
/// rest as `patrol.over_quota`; a full operator's sweep straight
/// afterwards runs everywhere. Once their answers are acked, the narrow
/// sweeps hold nothing but their records, well inside their deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operator_through_many_coordinators_cannot_lock_another_out() {
    use patrol_core::trust::Scope;
    let settings = SweepSettings {
        // Every sweep a node takes runs at once: none is answered `busy`.
        max_concurrent: 64,
        ..SweepSettings::default()
    };
    let lab = Lab::start_certified(&REAL, node_settings(settings)).await;
    for p in &lab.probes {
        p.set_delay(Duration::from_secs(4));
    }
    let ca = lab.ca.clone().unwrap();
    let narrow = ca.creds_for(
        Role::Operator(Scope::full(60_000)),
        "narrow",
        Duration::from_secs(3600),
    );
    let coordinators = ["node-a", "node-b", "node-c", "node-a"];
    let mut held = Vec::new();
    for i in 0..64 {
        let name = coordinators[i % coordinators.len()];
        held.push(
            lab.start_sweep_as(name, Duration::from_secs(20), Some(&narrow))
                .await,
        );
    }
    for name in REAL {
        lab.wait_stats(name, "the narrow operator held to its share", |s| {
            s.node.sweep.requests_over_quota >= 48
        })
        .await;
    }
    for p in &lab.probes {
        p.set_delay(Duration::ZERO);
    }
    let doc = lab.sweep("node-b", Duration::from_secs(3)).await;
    assert_eq!(doc.counts.ok, 3, "{:?}", doc.nodes);
    for name in REAL {
        let s = lab.stats(name).await;
        assert_eq!(s.node.sweep.requests_over_capacity, 0, "{name}");
        assert_eq!(s.node.sweep.requests_over_quota, 48, "{name}");
    }
    // Answered and acked: each node holds none of them any more, and
    // remembers the narrow 16 as records (and the full one until it is
    // forgotten, 1 s past its deadline).
    for name in REAL {
        patrol_tests::wait_for(
            Duration::from_secs(10),
            "the narrow sweeps settled",
            || async {
                let held = lab.node(name).held().await.map_err(|e| e.to_string())?;
                (held.participations == 0 && held.settled >= 16)
                    .then_some(())
                    .ok_or(format!("{name}: {held:?}"))
            },
        )
        .await;
    }
    drop(held);
    lab.stop().await;
}

/// Issue 22, item 5: the share is also the operator's, in its
/// certificate's scope. An operator whose scope allows 2 sweeps at once
/// per node starts two long sweeps; its third, started while they run, is
/// answered `patrol.over_quota` by the nodes it reaches (and refused by its
/// coordinator's own participant), while another operator's sweep started
/// at the same time runs everywhere. Before scopes carried a share, the
/// node's own share (16) let the third run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_holds_at_most_the_share_its_scope_allows() {
    use patrol_checks::NodeState;
    use patrol_core::trust::Scope;
    use patrol_tests::{finish, lab::LIMIT};
    let settings = SweepSettings {
        // Room for the capped operator's two and another's sweep at once.
        max_concurrent: 4,
        ..SweepSettings::default()
    };
    let lab = Lab::start_certified(&REAL, node_settings(settings)).await;
    let ca = lab.ca.clone().unwrap();
    let capped = ca.creds_for(
        Role::Operator(Scope {
            share: Some(2),
            ..Scope::full(60_000)
        }),
        "capped",
        Duration::from_secs(3600),
    );
    for p in &lab.probes {
        p.set_delay(Duration::from_secs(4));
    }
    let long = Duration::from_secs(10);
    let first = lab.start_sweep_as("node-a", long, Some(&capped)).await;
    let second = lab.start_sweep_as("node-b", long, Some(&capped)).await;
    for name in REAL {
        patrol_tests::wait_for(LIMIT, "both capped sweeps running", || async {
            let held = lab.node(name).held().await.map_err(|e| e.to_string())?;
            (held.participations == 2)
                .then_some(())
                .ok_or(format!("{name}: {held:?}"))
        })
        .await;
    }
    let third = lab
        .start_sweep_as("node-c", Duration::from_secs(2), Some(&capped))
        .await;
    let other = lab.start_sweep("node-a", Duration::from_secs(8)).await;
    let third = finish(third, LIMIT).await.doc;
    for name in ["node-a", "node-b"] {
        let n = third.nodes.iter().find(|n| n.name == name).unwrap();
        assert_eq!(n.state, NodeState::Failing, "{n:?}");
        assert_eq!(n.checks[0].id, "patrol.over_quota", "{n:?}");
        assert!(n.checks[0].message.contains("holds 2 sweeps"), "{n:?}");
    }
    let other = finish(other, LIMIT).await.doc;
    assert_eq!(other.counts.ok, 3, "{:?}", other.nodes);
    for doc in [
        finish(first, LIMIT).await.doc,
        finish(second, LIMIT).await.doc,
    ] {
        assert_eq!(doc.counts.ok, 3, "{:?}", doc.nodes);
    }
    for (i, name) in REAL.iter().enumerate() {
        let s = lab.stats(name).await;
        assert_eq!(s.node.sweep.requests_over_quota, 1, "{name}");
        assert_eq!(s.node.sweep.requests_over_capacity, 0, "{name}");
        // The capped operator's two and the other operator's one ran.
        assert_eq!(lab.probes[i].runs(), 3, "{name}");
    }
    lab.stop().await;
}
