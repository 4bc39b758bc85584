//! The mesh with real agents on real loopback UDP sockets: joining,
//! failure detection, graceful leave, keys, and garbage on the wire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use patrol_agent::agent::StopMode;
use patrol_agent::clock::WallClock;
use patrol_agent::control::{ControlClient, ControlError, ControlRequest};
use patrol_agent::datagram::Sealer;
use patrol_agent::envelope::Envelope;
use patrol_agent::keyring::Keyring;
use patrol_agent::membership::MemberState;
use patrol_agent::transport::{MemoryNetwork, Transport};
use patrol_tests::{
    count, memory_agent, new_envelope, settings, state_of, udp_agent, wait_converged, wait_for,
    wait_stats, NoChecks,
};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_agents_join_through_one_seed() {
    let env = new_envelope();
    let seed = udp_agent("node-00", 0, vec![], &env, Arc::new(NoChecks)).await;
    let mut agents = vec![];
    for i in 1..30 {
        agents.push(
            udp_agent(
                &format!("node-{i:02}"),
                0,
                vec![seed.addr],
                &env,
                Arc::new(NoChecks),
            )
            .await,
        );
    }
    agents.insert(0, seed);
    wait_converged(&agents, 30, LIMIT).await;
    let members = agents[17].members().await.unwrap();
    assert_eq!(members.len(), 30);
    assert!(members.iter().all(|m| m.state == MemberState::Alive));
    for a in agents {
        a.stop(StopMode::Crash).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_agent_is_seen_down_then_alive_after_restart() {
    let env = new_envelope();
    let a = udp_agent("a", 0, vec![], &env, Arc::new(NoChecks)).await;
    let b = udp_agent("b", 0, vec![a.addr], &env, Arc::new(NoChecks)).await;
    let c = udp_agent("c", 0, vec![a.addr], &env, Arc::new(NoChecks)).await;
    let agents = [a, b, c];
    wait_converged(&agents, 3, LIMIT).await;
    let [a, b, c] = agents;
    let port = c.addr.port();
    c.stop(StopMode::Crash).await;
    wait_for(LIMIT, "a and b to see c down", || async {
        match (state_of(&a, "c").await, state_of(&b, "c").await) {
            (Some(MemberState::Down), Some(MemberState::Down)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // Same name, same port, new process incarnation.
    let c2 = udp_agent("c", port, vec![a.addr], &env, Arc::new(NoChecks)).await;
    wait_for(LIMIT, "a and b to see c alive again", || async {
        match (state_of(&a, "c").await, state_of(&b, "c").await) {
            (Some(MemberState::Alive), Some(MemberState::Alive)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let members = a.members().await.unwrap();
    assert_eq!(
        members.iter().filter(|m| m.name == "c").count(),
        1,
        "{members:?}"
    );
    for x in [a, b, c2] {
        x.stop(StopMode::Crash).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_is_seen_as_left_quickly() {
    let env = new_envelope();
    let a = udp_agent("a", 0, vec![], &env, Arc::new(NoChecks)).await;
    let b = udp_agent("b", 0, vec![a.addr], &env, Arc::new(NoChecks)).await;
    let c = udp_agent("c", 0, vec![a.addr], &env, Arc::new(NoChecks)).await;
    let agents = [a, b, c];
    wait_converged(&agents, 3, LIMIT).await;
    let [a, b, c] = agents;
    c.stop(StopMode::Leave).await;
    // Left is announced, not detected: well under the failure-detection time.
    wait_for(Duration::from_secs(5), "a and b to see c left", || async {
        match (state_of(&a, "c").await, state_of(&b, "c").await) {
            (Some(MemberState::Left), Some(MemberState::Left)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    a.stop(StopMode::Crash).await;
    b.stop(StopMode::Crash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_with_wrong_key_never_appears() {
    let env = new_envelope();
    let a = udp_agent("a", 0, vec![], &env, Arc::new(NoChecks)).await;
    let b = udp_agent("b", 0, vec![a.addr], &env, Arc::new(NoChecks)).await;
    // Same cluster name, same key id, different secret.
    let wrong = Envelope::new(Keyring::generate(), "test");
    let intruder = udp_agent(
        "intruder",
        0,
        vec![a.addr, b.addr],
        &wrong,
        Arc::new(NoChecks),
    )
    .await;
    let agents = [a, b];
    wait_converged(&agents, 2, LIMIT).await;
    // Several of the intruder's announce rounds (200 ms, then doubling)
    // reached both and were refused before we look.
    for ag in &agents {
        wait_stats(
            ag,
            LIMIT,
            "three of the intruder's announces refused",
            |s| s.dropped_unsealed >= 3,
        )
        .await;
    }
    for ag in &agents {
        let members = ag.members().await.unwrap();
        assert!(members.iter().all(|m| m.name != "intruder"), "{members:?}");
        assert_eq!(members.len(), 2);
    }
    let stats = agents[0].stats().await.unwrap();
    assert!(
        stats.dropped_unsealed > 0,
        "the intruder's announces were not counted: {stats:?}"
    );
    let seen = intruder.members().await.unwrap();
    assert_eq!(seen.len(), 1, "the intruder learned members: {seen:?}");
    intruder.stop(StopMode::Crash).await;
    let [a, b] = agents;
    a.stop(StopMode::Crash).await;
    b.stop(StopMode::Crash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_and_truncated_packets_are_dropped_and_counted() {
    let env = new_envelope();
    let a = udp_agent("a", 0, vec![], &env, Arc::new(NoChecks)).await;
    let b = udp_agent("b", 0, vec![a.addr], &env, Arc::new(NoChecks)).await;
    let agents = [a, b];
    wait_converged(&agents, 2, LIMIT).await;
    let [a, b] = agents;
    let before = a.stats().await.unwrap();

    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sealed = Vec::new();
    let mut sealer = Sealer::new(env.clone(), WallClock::default());
    sealer
        .seal(b"\x00not a foca packet", a.addr, &mut sealed)
        .unwrap();
    let mut flipped = sealed.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![1],
        vec![0xff; 3],
        vec![0x01; 2000],
        sealed[..sealed.len() - 1].to_vec(),
        sealed[..10].to_vec(),
        flipped,
    ];
    for g in &garbage {
        sock.send_to(g, a.addr).await.unwrap();
    }
    // A well-sealed packet whose content is not valid foca data.
    sock.send_to(&sealed, a.addr).await.unwrap();

    let after = wait_for(Duration::from_secs(10), "drops to be counted", || async {
        let s = a.stats().await.map_err(|e| e.to_string())?;
        if s.dropped_unsealed >= before.dropped_unsealed + 6
            && s.node.dropped_malformed > before.node.dropped_malformed
        {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    // The empty datagram may or may not be delivered by the kernel; the
    // other six unsealed ones must all be counted.
    assert!(after.dropped_unsealed - before.dropped_unsealed <= 7);
    // And the agent still works.
    assert_eq!(count(&a.members().await.unwrap(), MemberState::Alive), 2);
    a.stop(StopMode::Crash).await;
    b.stop(StopMode::Crash).await;
}

/// A source flooding an agent with datagrams that carry the cluster's key id
/// but do not open is muted: the reader drops the rest of its datagrams
/// unread (counted), while the agent goes on hearing its peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_source_is_muted_and_its_peers_are_still_heard() {
    let env = new_envelope();
    let a = udp_agent("a", 0, vec![], &env, Arc::new(NoChecks)).await;
    let b = udp_agent("b", 0, vec![a.addr], &env, Arc::new(NoChecks)).await;
    let agents = [a, b];
    wait_converged(&agents, 2, LIMIT).await;
    let [a, b] = agents;
    let mut forged = Vec::new();
    Sealer::new(env.clone(), WallClock::default())
        .seal(b"\x00forged", a.addr, &mut forged)
        .unwrap();
    let last = forged.len() - 1;
    forged[last] ^= 0x01;
    let target = a.addr;
    // 4,000 forged datagrams as fast as one socket sends them, repeated
    // for three seconds: well over the default 1,000 a second.
    let flood = tokio::spawn(async move {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let end = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::time::Instant::now() < end {
            for _ in 0..4_000 {
                let _ = sock.send_to(&forged, target).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    wait_stats(&a, LIMIT, "the flooder muted", |s| s.dropped_muted > 0).await;
    // While the flooder is muted, b's datagrams still open at a.
    let heard = a.stats().await.unwrap().node.datagrams_in;
    wait_stats(&a, LIMIT, "b heard while the flooder is muted", |s| {
        s.node.datagrams_in > heard
    })
    .await;
    flood.await.unwrap();
    let after = a.stats().await.unwrap();
    assert!(
        after.dropped_unsealed >= 1_000,
        "the strikes before each mute are counted as unsealed: {after:?}"
    );
    assert_eq!(b.stats().await.unwrap().dropped_muted, 0);
    assert_eq!(count(&a.members().await.unwrap(), MemberState::Alive), 2);
    a.stop(StopMode::Crash).await;
    b.stop(StopMode::Crash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_client_without_the_key_is_refused() {
    let env = new_envelope();
    let mut a = udp_agent("a", 0, vec![], &env, Arc::new(NoChecks)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let commander = a.commander();
    a.tasks().spawn(patrol_agent::control::serve(
        listener,
        env.clone(),
        commander,
    ));

    // With the key: served.
    let client = ControlClient::connect(addr, env.clone(), Duration::from_secs(3))
        .await
        .unwrap();
    let reply = client.call(&ControlRequest::Members).await.unwrap();
    assert!(matches!(reply, patrol_agent::control::Reply::Members(m) if m.len() == 1));

    // Without: refused, and told why.
    let wrong = Envelope::new(Keyring::generate(), "test");
    let client = ControlClient::connect(addr, wrong, Duration::from_secs(3))
        .await
        .unwrap();
    match client.call(&ControlRequest::Members).await {
        Err(ControlError::Refused(why)) => assert!(why.contains("authentication"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Right key, other cluster name: refused too.
    let other_cluster = Envelope::new(Keyring::generate(), "prod");
    let client = ControlClient::connect(addr, other_cluster, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(matches!(
        client.call(&ControlRequest::Members).await,
        Err(ControlError::Refused(_))
    ));

    a.stop(StopMode::Crash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_through_a_later_seed_and_keeps_retrying_until_one_answers() {
    let env = new_envelope();
    // Two seeds: one nobody will ever listen on, one that starts late.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let late = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let joiner = udp_agent("joiner", 0, vec![dead, late], &env, Arc::new(NoChecks)).await;
    // Three announce rounds to both seeds (200 ms, then doubling), all
    // unanswered, before the late seed starts.
    wait_stats(&joiner, LIMIT, "three announce rounds", |s| {
        s.node.datagrams_out >= 6
    })
    .await;
    assert_eq!(
        joiner.members().await.unwrap().len(),
        1,
        "joined nobody yet"
    );
    let seed = udp_agent("seed", late.port(), vec![], &env, Arc::new(NoChecks)).await;
    let agents = [joiner, seed];
    wait_converged(&agents, 2, LIMIT).await;
    for a in agents {
        a.stop(StopMode::Crash).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_given_later_are_joined_through() {
    // What the daemon does when a seed name resolves only after boot.
    let env = new_envelope();
    let seed = udp_agent("seed", 0, vec![], &env, Arc::new(NoChecks)).await;
    let late = udp_agent("late", 0, vec![], &env, Arc::new(NoChecks)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(late.members().await.unwrap().len(), 1);
    late.commander().set_seeds(vec![seed.addr]).await.unwrap();
    let agents = [seed, late];
    wait_converged(&agents, 2, LIMIT).await;
    for a in agents {
        a.stop(StopMode::Crash).await;
    }
}

/// Regression (issue 12): the identity's bump was milliseconds in a `u32`
/// compared with serial arithmetic, so an agent restarted 25-50 days after
/// its previous start lost the address conflict to its own old identity
/// (still listed alive during a rolling restart) and stayed invisible until
/// that was reaped (5 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_thirty_days_after_its_previous_start_rejoins_at_once() {
    const THIRTY_DAYS_MS: u64 = 30 * 24 * 3600 * 1000;
    let env = new_envelope();
    let a = udp_agent("a", 0, vec![], &env, Arc::new(NoChecks)).await;
    let seed = a.addr;
    let start_b = |port: u16, started: Option<u64>, incarnation: &str| {
        let mut s = settings(
            "b",
            vec![seed],
            [("incarnation".to_string(), incarnation.to_string())].into(),
        );
        s.started_at_unix_ms = started;
        let env = env.clone();
        async move {
            let t = Transport::udp(SocketAddr::from(([127, 0, 0, 1], port)))
                .await
                .expect("bind");
            patrol_agent::agent::start(s, t, env, Arc::new(NoChecks))
        }
    };
    // b has been running for 30 days.
    let long_ago = WallClock::default().unix_ms() - THIRTY_DAYS_MS;
    let b = start_b(0, Some(long_ago), "1").await;
    let port = b.addr.port();
    let agents = [a, b];
    wait_converged(&agents, 2, LIMIT).await;
    let [a, b] = agents;
    // A crash, and at once a restart on the same address.
    b.stop(StopMode::Crash).await;
    let b = start_b(port, None, "2").await;
    wait_for(
        Duration::from_secs(15),
        "a to list the restarted b as alive",
        || async {
            let members = a.members().await.map_err(|e| e.to_string())?;
            let b = members.iter().find(|m| m.name == "b");
            match b {
                Some(m)
                    if m.state == MemberState::Alive
                        && m.tags.get("incarnation").map(String::as_str) == Some("2") =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    a.stop(StopMode::Crash).await;
    b.stop(StopMode::Crash).await;
}

/// Regression (issue 12): the envelope had no replay window, so a captured
/// datagram opened again forever; a replayed announce could evict a live
/// node or bring back one that had left. An eavesdropper without the key
/// replays everything it captured, byte for byte: every copy is refused
/// and counted, and the mesh does not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eavesdropper_replaying_captured_datagrams_changes_nothing() {
    let env = new_envelope();
    let net = MemoryNetwork::new(0.0, 7);
    let a = memory_agent(&net, "a", vec![], &env, Arc::new(NoChecks));
    let b = memory_agent(&net, "b", vec![a.addr], &env, Arc::new(NoChecks));
    let c = memory_agent(&net, "c", vec![a.addr], &env, Arc::new(NoChecks));
    net.capture(true);
    let agents = [a, b, c];
    wait_converged(&agents, 3, LIMIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let [a, b, c] = agents;
    // c leaves; everything it and the others said while it was alive was
    // captured.
    c.stop(StopMode::Leave).await;
    let captured = net.capture(false);
    assert!(captured.len() > 20, "captured only {}", captured.len());
    wait_for(LIMIT, "a and b to see c leave", || async {
        match (state_of(&a, "c").await, state_of(&b, "c").await) {
            (Some(MemberState::Left), Some(MemberState::Left)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let before = [a.stats().await.unwrap(), b.stats().await.unwrap()];
    let mut replayed = [0u64; 2];
    for (from, to, bytes) in captured {
        for (k, agent) in [&a, &b].into_iter().enumerate() {
            if to == agent.addr && net.inject(from, to, bytes.clone()) {
                replayed[k] += 1;
            }
        }
    }
    for (k, agent) in [&a, &b].into_iter().enumerate() {
        let refused = wait_for(
            Duration::from_secs(10),
            "the replays to be counted",
            || async {
                let s = agent.stats().await.map_err(|e| e.to_string())?;
                let refused = s.dropped_replayed - before[k].dropped_replayed;
                if refused >= replayed[k] {
                    Ok(refused)
                } else {
                    Err(format!("{refused} of {} refused: {s:?}", replayed[k]))
                }
            },
        )
        .await;
        assert_eq!(refused, replayed[k]);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(state_of(&a, "c").await, Some(MemberState::Left));
    assert_eq!(state_of(&b, "c").await, Some(MemberState::Left));
    assert_eq!(state_of(&a, "b").await, Some(MemberState::Alive));
    a.stop(StopMode::Crash).await;
    b.stop(StopMode::Crash).await;
}
