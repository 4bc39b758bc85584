//! Membership no single node can rewrite (issue 21): real certified agents
//! on the in-memory network ([`Lab::start_certified`]), attacked by a key
//! holder without a certificate ([`Forge`]) that crafts foca packets and
//! leave notices with the real codec and envelope, and reads identities
//! (proofs included) off the wire.
//!
//! One test per attack the issue lists, each written against the agent
//! before the membership gate (where each worked), and the restart and
//! forget paths of the roster. Each checks that the attack is refused and
//! counted, and that every real node is in its true state in the next
//! sweep, which is what an operator's exit code comes from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use foca::{Header, Member, Message, State};
use patrol_agent::agent::StopMode;
use patrol_agent::clock::WallClock;
use patrol_agent::identity::NodeId;
use patrol_agent::membership::MemberState;
use patrol_agent::sweep::SweepSettings;
use patrol_checks::{NodeState, Status, SweepDocument};
use patrol_core::node::{Channel, SignedLeave};
use patrol_core::trust::{Role, Scope, SignedForget};
use patrol_tests::forge::{sniff_identity, Forge};
use patrol_tests::lab::{node_settings, Lab, LIMIT};
use patrol_tests::{wait_converged, wait_for};

const REAL: [&str; 3] = ["node-a", "node-b", "node-c"];

fn settings() -> patrol_core::NodeSettings {
    node_settings(SweepSettings::default())
}

/// A gossip header from `src` to node `to` of the lab.
fn header(src: NodeId, lab: &Lab, to: usize) -> Header<NodeId> {
    Header {
        src,
        src_incarnation: 0,
        dst: lab.ids[to].clone(),
        message: Message::Gossip,
    }
}

/// A direct probe (`Ping`) to `target` in a datagram captured on the
/// lab's network: who probes, and the probe number.
struct Probe {
    src: NodeId,
    number: u8,
}

fn probe_of(lab: &Lab, to: SocketAddr, sealed: &[u8], target: SocketAddr) -> Option<Probe> {
    use foca::Codec;
    if to != target {
        return None;
    }
    let inner = lab
        .env
        .open(patrol_agent::envelope::Purpose::Gossip, sealed)
        .ok()?;
    let plain = inner.get(patrol_agent::datagram::REPLAY_HEADER..)?;
    if plain.first() != Some(&(Channel::Foca as u8)) {
        return None;
    }
    let mut buf = &plain[1..];
    let header = patrol_agent::codec::BincodeCodec
        .decode_header(&mut buf)
        .ok()?;
    match header.message {
        Message::Ping(number) => Some(Probe {
            src: header.src,
            number,
        }),
        _ => None,
    }
}

/// The state of `name` in `doc`.
fn state(doc: &SweepDocument, name: &str) -> Option<NodeState> {
    doc.nodes.iter().find(|n| n.name == name).map(|n| n.state)
}

/// Every real node `names` answered `doc`, and nothing but the membership
/// gate's intruder reports failed.
fn all_answered(doc: &SweepDocument, names: &[&str]) {
    assert_eq!(doc.counts.expected, names.len() as u64, "{:?}", doc.counts);
    for name in names {
        let node = doc.nodes.iter().find(|n| n.name == *name);
        let node = node.unwrap_or_else(|| panic!("{name} is not listed: {doc:?}"));
        assert!(
            matches!(node.state, NodeState::Ok | NodeState::Failing),
            "{name}: {:?}",
            node.state
        );
        for c in &node.checks {
            assert!(
                c.status == Status::Pass || c.id == "patrol.intruder",
                "{name}: {c:?}"
            );
        }
    }
}

/// The `patrol.intruder` messages of `doc`, over every node.
fn intruder_reports(doc: &SweepDocument) -> Vec<String> {
    doc.nodes
        .iter()
        .flat_map(|n| n.checks.iter())
        .filter(|c| c.id == "patrol.intruder")
        .map(|c| c.message.clone())
        .collect()
}

/// Node `name`'s member list sees `who` in `state`.
async fn sees(lab: &Lab, name: &str, who: &str) -> Option<MemberState> {
    let members = lab.node(name).members().await.ok()?;
    // The liveliest identity of the name (a renewed one next to a down one).
    members
        .iter()
        .filter(|m| m.name == who)
        .map(|m| m.state)
        .max_by_key(|s| match s {
            MemberState::Alive => 3,
            MemberState::Suspect => 2,
            MemberState::Left => 1,
            MemberState::Down => 0,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ghost_identity_at_a_live_nodes_address_is_refused_and_the_node_stays_expected() {
    let lab = Lab::start_certified(&REAL, settings()).await;
    let real_a = sniff_identity(&lab, "node-a").await;
    let real_b = sniff_identity(&lab, "node-b").await;
    let victim = lab.ids[lab.index("node-c")].addr;
    let mut forge = Forge::new(&lab);
    // The attack that hid a node: a down identity at the victim's address
    // with the largest incarnation and bump, under another live node's
    // name. Once without a proof, once with node-a's real proof copied.
    let mut ghost = NodeId::new("node-a", victim, u64::MAX, BTreeMap::new());
    let mut copied = ghost.clone();
    copied.proof = real_a.proof.clone();
    for g in [&mut ghost, &mut copied] {
        for to in 0..REAL.len() {
            let update = Member::new(g.clone(), u16::MAX, State::Down);
            forge
                .foca_updates(
                    lab.nodes[to].addr,
                    &header(g.clone(), &lab, to),
                    std::slice::from_ref(&update),
                )
                .await;
            // And in a packet from a sender that looks legitimate (a real
            // node's identity, not the receiver's own).
            let sender = if to == 1 { &real_a } else { &real_b };
            forge
                .foca_updates(
                    lab.nodes[to].addr,
                    &header(sender.clone(), &lab, to),
                    &[update],
                )
                .await;
        }
    }
    // Each ghost header dropped its packet (unproven); each packet naming
    // a real node as its sender was dropped too: its tag is not that
    // node's (forged).
    for name in REAL {
        lab.wait_stats(name, "the ghost refused", |s| {
            s.node
                .gate
                .as_ref()
                .is_some_and(|g| g.packets_unproven >= 2 && g.packets_forged >= 2)
        })
        .await;
    }
    // The victim stays alive everywhere and answers the next sweep.
    for name in REAL {
        assert_eq!(
            sees(&lab, name, "node-c").await,
            Some(MemberState::Alive),
            "{name}"
        );
    }
    let doc = lab.sweep("node-a", Duration::from_secs(3)).await;
    all_answered(&doc, &REAL);
    // Every node that got the ghost lists it as an intruder, at the
    // address it really came from.
    for node in &doc.nodes {
        assert!(
            node.checks.iter().any(|c| c.id == "patrol.intruder"),
            "{} saw the forger: {:?}",
            node.name,
            node.checks
        );
    }
    let reports = intruder_reports(&doc);
    assert!(
        reports.iter().all(|r| r.contains(&forge.addr.to_string())),
        "{reports:?}"
    );
    forge.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncertified_twin_is_listed_as_an_intruder_and_the_real_node_is_recorded() {
    let mut lab = Lab::start_certified(&REAL, settings()).await;
    // A stock agent with the cluster key only, under node-b's name.
    let twin = lab.add_with("node-b", settings(), false);
    let twin_addr = lab.nodes[twin].addr;
    wait_for(LIMIT, "node-a to refuse the twin", || async {
        let r = lab.nodes[0].roster().await.map_err(|e| e.to_string())?;
        let seen = r.is_some_and(|r| r.intruders.iter().any(|i| i.addr == twin_addr));
        if seen {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    let doc = lab.sweep("node-c", Duration::from_secs(3)).await;
    // The certified node-b is recorded (no name conflict), the twin is an
    // intruder with its address.
    let b = doc.nodes.iter().find(|n| n.name == "node-b").unwrap();
    assert_eq!(b.addr, lab.ids[1].addr.to_string());
    assert!(
        b.checks.iter().all(|c| c.id != "patrol.name_conflict"),
        "{b:?}"
    );
    all_answered(&doc, &REAL);
    let reports = intruder_reports(&doc);
    assert!(
        reports
            .iter()
            .any(|r| r.contains("`node-b`") && r.contains(&twin_addr.to_string())),
        "{reports:?}"
    );
    assert_eq!(
        doc.counts.failing, 1,
        "only node-a saw the twin: {:?}",
        doc.counts
    );
    for name in ["node-a", "node-c"] {
        let members = lab.node(name).members().await.unwrap();
        assert!(
            members.iter().all(|m| m.addr != twin_addr.to_string()),
            "{name} admitted the twin: {members:?}"
        );
    }
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_invented_members_never_count_nor_relay() {
    let lab = Lab::start_certified(&REAL, settings()).await;
    let real_b = sniff_identity(&lab, "node-b").await;
    let mut forge = Forge::new(&lab);
    let fake = |i: u32| {
        NodeId::new(
            format!("fake-{i:04}"),
            SocketAddr::from(([127, 1, (i / 250) as u8, (i % 250) as u8 + 1], 7946)),
            WallClock::default().unix_ms(),
            BTreeMap::new(),
        )
    };
    // 2,000 members, 20 to a packet, sent as if node-b gossiped them.
    let mut sent = 0;
    for chunk in (0..2000).collect::<Vec<u32>>().chunks(20) {
        let members: Vec<Member<NodeId>> = chunk.iter().map(|i| Member::alive(fake(*i))).collect();
        forge
            .foca_updates(
                lab.nodes[0].addr,
                &header(real_b.clone(), &lab, 0),
                &members,
            )
            .await;
        sent += members.len() as u64;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Every packet named node-b as its sender without node-b's tag: each
    // is dropped whole, its 20 invented members with it.
    let packets = sent / 20;
    lab.wait_stats("node-a", "every invented member refused", |s| {
        s.node
            .gate
            .as_ref()
            .is_some_and(|g| g.packets_forged >= packets)
    })
    .await;
    let members = lab.node("node-a").members().await.unwrap();
    assert_eq!(members.len(), 3, "{members:?}");
    let roster = lab.node("node-a").roster().await.unwrap().unwrap();
    assert_eq!(roster.members.len(), 2, "node-b and node-c only");
    // What the attack fills is bounded: intruders are kept for 256 claims.
    assert!(roster.intruders.len() <= 256, "{}", roster.intruders.len());
    let doc = lab.sweep("node-a", Duration::from_secs(3)).await;
    all_answered(&doc, &REAL);
    assert_eq!(doc.counts.late_joiners, 0);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_declared_down_despite_forged_alive_updates_and_acks() {
    let mut lab = Lab::start_certified(&REAL, settings()).await;
    let real_c = sniff_identity(&lab, "node-c").await;
    let real_b = sniff_identity(&lab, "node-b").await;
    let c = lab.index("node-c");
    lab.nodes.remove(c).stop(StopMode::Crash).await;
    let mut forge = Forge::new(&lab);
    // Keep node-c alive: alive updates at ever higher incarnations, as
    // node-b's gossip, to both live nodes, every 100 ms; and every probe
    // of node-c seen on the wire answered with an ack in node-c's name
    // (its proven identity is public, the probe number readable by any
    // key holder).
    let mut incarnation = 1u16;
    let mut acks = 0u64;
    let declared = tokio::time::Instant::now() + LIMIT;
    loop {
        for (from, to, bytes) in lab.net.capture(true) {
            let Some(ping) = probe_of(&lab, to, &bytes, real_c.addr) else {
                continue;
            };
            let ack = Header {
                src: real_c.clone(),
                src_incarnation: 0,
                dst: ping.src,
                message: Message::Ack(ping.number),
            };
            forge.foca_updates(from, &ack, &[]).await;
            acks += 1;
        }
        for to in 0..2 {
            let update = Member::new(real_c.clone(), incarnation, State::Alive);
            forge
                .foca_updates(
                    lab.nodes[to].addr,
                    &header(real_b.clone(), &lab, to),
                    &[update],
                )
                .await;
        }
        incarnation = incarnation.saturating_add(1);
        if sees(&lab, "node-a", "node-c").await == Some(MemberState::Down) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < declared,
            "node-c was kept alive by forged updates"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(acks > 0, "no probe of node-c was seen to answer");
    let s = lab.stats("node-a").await;
    assert!(s.node.gate.unwrap().packets_forged > acks / 2);
    let doc = lab.sweep("node-a", Duration::from_secs(3)).await;
    assert_eq!(state(&doc, "node-c"), Some(NodeState::Down), "{doc:?}");
    // The live nodes answer (failing only with the intruder they saw).
    for name in ["node-a", "node-b"] {
        let node = doc.nodes.iter().find(|n| n.name == name).unwrap();
        assert!(
            node.checks
                .iter()
                .all(|c| c.status == Status::Pass || c.id == "patrol.intruder"),
            "{node:?}"
        );
    }
    forge.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximal_incarnation_declarations_are_refused_from_a_key_holder() {
    let lab = Lab::start_certified(&REAL, settings()).await;
    let real_a = sniff_identity(&lab, "node-a").await;
    let real_c = sniff_identity(&lab, "node-c").await;
    let target = sniff_identity(&lab, "node-b").await;
    let mut forge = Forge::new(&lab);
    for _ in 0..10 {
        for to in 0..REAL.len() {
            let updates = [
                Member::new(target.clone(), u16::MAX, State::Down),
                Member::new(target.clone(), u16::MAX, State::Suspect),
            ];
            let sender = if to == 0 { &real_c } else { &real_a };
            forge
                .foca_updates(
                    lab.nodes[to].addr,
                    &header(sender.clone(), &lab, to),
                    &updates,
                )
                .await;
        }
    }
    for name in REAL {
        lab.wait_stats(name, "the declarations refused", |s| {
            s.node.gate.as_ref().is_some_and(|g| g.packets_forged >= 10)
        })
        .await;
    }
    // Nothing reached node-b's foca: it never had to renew.
    let g = lab.stats("node-b").await.node.gate.unwrap();
    assert_eq!(g.declared_against_self, 0, "{g:?}");
    let doc = lab.sweep("node-a", Duration::from_secs(3)).await;
    all_answered(&doc, &REAL);
    forge.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compromised_node_can_make_another_flap_never_vanish_nor_invent_members() {
    let lab = Lab::start_certified(&REAL, settings()).await;
    let ca = lab.ca.clone().unwrap();
    let evil = ca.creds_for(Role::Node, "node-evil", Duration::from_secs(3600));
    let mut forge = Forge::new(&lab);
    let mut keys = Vec::new();
    let mut me = None;
    for to in 0..REAL.len() {
        let (id, key) = forge.compromised(&lab, &evil, to).await;
        me = Some(id);
        keys.push(key);
    }
    let me = me.unwrap();
    let fake = |i: u32| {
        NodeId::new(
            format!("fake-{i:03}"),
            SocketAddr::from(([127, 2, 0, (i % 250) as u8 + 1], 7946)),
            WallClock::default().unix_ms(),
            BTreeMap::new(),
        )
    };
    // A continuous attacker with a certificate of its own: every 100 ms
    // for 4 s, node-b declared down and suspect at the largest
    // incarnation, under each identity of node-b seen on the wire, plus
    // invented members, in packets it tags as itself.
    let attack = tokio::time::Instant::now() + Duration::from_secs(4);
    let mut sweep = None;
    let (mut sent, mut invented) = (0u64, 0u32);
    let mut alive_samples = (0u32, 0u32);
    let mut target = sniff_identity(&lab, "node-b").await;
    while tokio::time::Instant::now() < attack {
        // node-b's latest identity, as far as the wire shows it.
        if let Ok(id) =
            tokio::time::timeout(Duration::from_millis(300), sniff_identity(&lab, "node-b")).await
        {
            target = id;
        }
        for (to, key) in keys.iter().enumerate() {
            let mut updates = vec![
                Member::new(target.clone(), u16::MAX, State::Down),
                Member::new(target.clone(), u16::MAX, State::Suspect),
            ];
            updates.extend((0..4).map(|k| Member::alive(fake(invented + k))));
            forge
                .tagged_updates(
                    lab.nodes[to].addr,
                    &header(me.clone(), &lab, to),
                    &updates,
                    key,
                )
                .await;
            sent += 2;
        }
        invented += 4;
        alive_samples.1 += 1;
        if sees(&lab, "node-c", "node-b").await == Some(MemberState::Alive) {
            alive_samples.0 += 1;
        }
        if sweep.is_none() && attack - tokio::time::Instant::now() < Duration::from_secs(3) {
            sweep = Some(lab.start_sweep("node-c", Duration::from_secs(3)).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = patrol_tests::finish(sweep.unwrap(), LIMIT).await.doc;
    let renewals = lab
        .stats("node-b")
        .await
        .node
        .gate
        .unwrap()
        .declared_against_self;
    // The flapping, for the record: how often node-b renewed, and how
    // often node-c saw it alive while it was attacked.
    eprintln!(
        "flapping: {sent} declarations from a compromised node, node-b renewed on {renewals} \
         of them, node-c saw node-b alive in {} of {} samples",
        alive_samples.0, alive_samples.1
    );
    assert!(renewals >= 1, "the attack reached node-b");
    assert!(
        matches!(
            state(&during, "node-b"),
            Some(NodeState::Ok | NodeState::Failing)
        ),
        "node-b vanished from a sweep during the attack: {during:?}"
    );
    // The invented members never became members, nor expected.
    for name in REAL {
        let g = lab.stats(name).await.node.gate.unwrap();
        assert!(
            g.updates_unproven >= u64::from(invented) / 2,
            "{name}: {g:?}"
        );
        assert!(g.incarnations_cleared > 0, "{name}: {g:?}");
        let members = lab.node(name).members().await.unwrap();
        assert!(
            members.iter().all(|m| !m.name.starts_with("fake-")),
            "{members:?}"
        );
    }
    assert!(during.nodes.iter().all(|n| !n.name.starts_with("fake-")));
    // After it, node-b is alive everywhere and answers.
    let doc = lab.sweep("node-a", Duration::from_secs(3)).await;
    for name in REAL {
        assert!(
            matches!(state(&doc, name), Some(NodeState::Ok | NodeState::Failing)),
            "{name}: {doc:?}"
        );
    }
    forge.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_leave_for_a_live_node_is_refused_and_a_real_one_is_listed_gone() {
    let mut lab = Lab::start_certified(&REAL, settings()).await;
    let real_b = sniff_identity(&lab, "node-b").await;
    let mut forge = Forge::new(&lab);
    let plain_leave = {
        let mut p = vec![Channel::Leave as u8];
        p.extend(b"node-b");
        p
    };
    let forged_sig = {
        let leave = SignedLeave {
            name: "node-b".into(),
            bump: real_b.bump,
            sig: vec![7; 64],
        };
        let mut p = vec![Channel::Leave as u8];
        p.extend(bincode::serde::encode_to_vec(&leave, bincode::config::standard()).unwrap());
        p
    };
    for n in &lab.nodes {
        forge.send(n.addr, &plain_leave).await;
        forge.send(n.addr, &forged_sig).await;
    }
    for name in ["node-a", "node-c"] {
        lab.wait_stats(name, "both leaves refused", |s| {
            s.node.gate.as_ref().is_some_and(|g| g.leaves_refused >= 1)
                && s.node.dropped_malformed >= 1
        })
        .await;
    }
    // Now node-b goes down for real: it shows down, not left, and stays on
    // the roster (its leave was forged).
    let b = lab.index("node-b");
    lab.nodes.remove(b).stop(StopMode::Crash).await;
    wait_for(LIMIT, "node-b down at node-a", || async {
        match sees(&lab, "node-a", "node-b").await {
            Some(MemberState::Down) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let doc = lab.sweep("node-a", Duration::from_secs(3)).await;
    assert_eq!(state(&doc, "node-b"), Some(NodeState::Down), "{doc:?}");
    assert!(doc.gone.is_empty(), "{:?}", doc.gone);
    // node-c leaves with its own signed notice: it is listed gone, with
    // when it was last seen, and no longer expected.
    let c = lab.index("node-c");
    lab.nodes.remove(c).stop(StopMode::Leave).await;
    wait_for(LIMIT, "node-c off node-a's roster", || async {
        let r = lab
            .node("node-a")
            .roster()
            .await
            .map_err(|e| e.to_string())?
            .unwrap();
        match r.gone.iter().find(|g| g.entry.name == "node-c") {
            Some(g) if g.reason == patrol_core::membership::roster::GoneReason::Left => Ok(()),
            other => Err(format!(
                "{other:?}; node-a {:?}; roster {:?}",
                lab.stats("node-a").await.node.gate,
                r.members.iter().map(|m| &m.entry.name).collect::<Vec<_>>()
            )),
        }
    })
    .await;
    let doc = lab.sweep("node-a", Duration::from_secs(3)).await;
    assert_eq!(state(&doc, "node-c"), None, "{doc:?}");
    let gone = doc
        .gone
        .iter()
        .find(|g| g.name == "node-c")
        .expect("node-c gone");
    assert_eq!(gone.reason, "left");
    assert!(gone.last_seen_unix_ms > 0);
    forge.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_still_expects_every_node_on_its_roster() {
    let mut lab = Lab::start_certified(&REAL, settings()).await;
    let c = lab.index("node-c");
    lab.nodes.remove(c).stop(StopMode::Crash).await;
    // node-a restarts (its roster saved on the way down, as on SIGTERM),
    // and comes back knowing only node-b: node-c is dead.
    let a = lab.index("node-a");
    lab.nodes.remove(a).stop(StopMode::Crash).await;
    lab.probes.remove(a);
    lab.ids.remove(a);
    let ca = lab.ca.clone().unwrap();
    let roster = std::fs::read_to_string(ca.roster_path("node-a")).expect("node-a's roster file");
    assert!(roster.contains("\"node-c\""), "{roster}");
    lab.add("node-a", settings());
    wait_converged(&lab.nodes, 2, LIMIT).await;
    let doc = lab.sweep("node-a", Duration::from_secs(3)).await;
    assert_eq!(doc.counts.expected, 3, "{doc:?}");
    // Down once SWIM agrees; no answer while node-b still suspects it.
    assert!(
        matches!(
            state(&doc, "node-c"),
            Some(NodeState::Down | NodeState::NoAnswer)
        ),
        "{doc:?}"
    );
    assert_eq!(state(&doc, "node-b"), Some(NodeState::Ok));
    assert_eq!(state(&doc, "node-a"), Some(NodeState::Ok));
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_forget_is_signed_applied_everywhere_and_audited() {
    let mut lab = Lab::start_certified(&REAL, settings()).await;
    let c = lab.index("node-c");
    lab.nodes.remove(c).stop(StopMode::Crash).await;
    let ca = lab.ca.clone().unwrap();
    let now = WallClock::default().unix_ms();
    // A read-only operator may not forget; a node certificate neither.
    let ro = ca.creds_for(
        Role::Operator(Scope::read_only()),
        "viewer",
        Duration::from_secs(60),
    );
    let refused = lab
        .node("node-a")
        .forget(SignedForget::sign(&ro, "test", "node-c", now))
        .await
        .unwrap();
    assert!(
        refused.unwrap_err().contains("may not"),
        "read-only refused"
    );
    // The lab operator may.
    let op = lab.operator.clone().unwrap();
    let was = lab
        .node("node-a")
        .forget(SignedForget::sign(&op, "test", "node-c", now))
        .await
        .unwrap();
    assert_eq!(was, Ok(true));
    wait_for(LIMIT, "node-b to forget node-c too", || async {
        let r = lab
            .node("node-b")
            .roster()
            .await
            .map_err(|e| e.to_string())?
            .unwrap();
        if r.members.iter().any(|m| m.entry.name == "node-c") {
            Err("still on node-b's roster".into())
        } else {
            Ok(())
        }
    })
    .await;
    for name in ["node-a", "node-b"] {
        let audit = std::fs::read_to_string(ca.audit_path(name)).unwrap();
        let line = audit
            .lines()
            .find(|l| l.contains("\"source\":\"roster\"") && l.contains("\"action\":\"forgot\""))
            .unwrap_or_else(|| panic!("{name}: no forget line in {audit}"));
        assert!(
            line.contains("\"operator\":\"lab-operator\"") && line.contains("\"node\":\"node-c\""),
            "{line}"
        );
    }
    let audit_a = std::fs::read_to_string(ca.audit_path("node-a")).unwrap();
    assert!(
        audit_a.contains("\"action\":\"refused\""),
        "the refused forget is audited"
    );
    let doc = lab.sweep("node-b", Duration::from_secs(3)).await;
    assert_eq!(doc.counts.expected, 2, "{doc:?}");
    let gone = doc
        .gone
        .iter()
        .find(|g| g.name == "node-c")
        .expect("listed gone");
    assert_eq!(gone.reason, "forgotten");
    lab.stop().await;
}

/// A sweep request read off the lab's network (the coordinator sends it
/// straight to each member of a small mesh).
fn captured_request(lab: &Lab) -> Option<patrol_agent::sweep::SweepRequest> {
    use patrol_agent::sweep::SweepMessage;
    for (_, _, bytes) in lab.net.capture(true) {
        let Ok(inner) = lab
            .env
            .open(patrol_agent::envelope::Purpose::Gossip, &bytes)
        else {
            continue;
        };
        let Some(plain) = inner.get(patrol_agent::datagram::REPLAY_HEADER..) else {
            continue;
        };
        if plain.first() == Some(&(Channel::Sweep as u8)) {
            if let Ok(SweepMessage::Request(req)) = SweepMessage::decode(&plain[1..]) {
                if req.auth.is_some() {
                    return Some(req);
                }
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_sweep_replayed_after_it_ended_runs_nothing_and_sends_nothing() {
    use patrol_agent::sweep::{PeerAddr, SweepMessage};
    let lab = Lab::start_certified(&REAL, settings()).await;
    lab.net.capture(true);
    let doc = lab.sweep("node-a", Duration::from_secs(1)).await;
    all_answered(&doc, &REAL);
    let req = captured_request(&lab).expect("the signed request on the wire");
    let runs: Vec<u64> = lab.probes.iter().map(|p| p.runs()).collect();
    // Wait until the participants forgot the sweep (1 s after its
    // deadline), then replay it three ways to node-b and node-c.
    let forgot = req.issued_at_unix_ms + req.deadline_ms + 1_500;
    while WallClock::default().unix_ms() < forgot {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut forge = Forge::new(&lab);
    let now = WallClock::default().unix_ms();
    // 1. A fresh issue time, so it is current again.
    let mut fresh = req.clone();
    fresh.issued_at_unix_ms = now;
    // 2. An issue time moved just enough to be current, within the clock
    //    skew allowed: only the memory of admitted ids refuses it.
    let mut shifted = req.clone();
    shifted.issued_at_unix_ms = now + 1_000 - req.deadline_ms;
    // 3. The same, with the forge's address as the coordinator's, so that
    //    the answers would come to it.
    let mut aimed = shifted.clone();
    aimed.coordinator = PeerAddr {
        name: req.coordinator.name.clone(),
        addr: forge.addr,
    };
    for r in [&fresh, &shifted, &aimed] {
        for to in 1..3 {
            forge
                .sweep(lab.nodes[to].addr, &SweepMessage::Request(r.clone()))
                .await;
        }
    }
    for name in ["node-b", "node-c"] {
        lab.wait_stats(name, "the replays refused", |s| {
            s.node.sweep.requests_unauthorized >= 1
                && s.node
                    .gate
                    .as_ref()
                    .is_some_and(|g| g.requests_misaddressed >= 1)
        })
        .await;
    }
    let heard = forge.heard(Duration::from_millis(500)).await;
    assert!(
        heard
            .iter()
            .all(|(_, p)| p.first() != Some(&(Channel::Sweep as u8))),
        "a node answered the forge"
    );
    let after: Vec<u64> = lab.probes.iter().map(|p| p.runs()).collect();
    assert_eq!(after, runs, "a replay ran checks");
    // Each node audited the operator's one sweep as run once.
    let ca = lab.ca.clone().unwrap();
    let id = format!("{:016x}", req.id);
    for name in REAL {
        let audit = std::fs::read_to_string(ca.audit_path(name)).unwrap();
        let ran = audit
            .lines()
            .filter(|l| l.contains(&id) && l.contains("\"action\":\"ran\""))
            .count();
        assert_eq!(ran, 1, "{name}: {audit}");
    }
    forge.stop().await;
    lab.stop().await;
}
