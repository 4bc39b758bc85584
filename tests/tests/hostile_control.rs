//! A hostile client on the control port of certified agents (issue 22,
//! items 4 and 5), on real sockets: a flood of refused handshakes that
//! would rotate an operator's audit record off the node, a certificate
//! name with a newline that would forge a line in the agent's log, and a
//! scoped operator's 64 sweeps that would lock a full operator out.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use patrol_agent::audit::{AuditLog, BudgetSettings};
use patrol_agent::control::client::{ClientAuth, OperatorIdentity};
use patrol_agent::control::frame::{self, LEN_PREFIX};
use patrol_agent::control::ControlClient;
use patrol_agent::daemon::NodeTrust;
use patrol_checks::Selector;
use patrol_core::trust::{Role, Scope};
use patrol_tests::identities::{sweep_as, sweep_request, trusted_agent, TestCa};
use patrol_tests::process::{cluster_key, patrol, write_config, AgentProcess};
use patrol_tests::{new_envelope, wait_converged, wait_for, CountingInspector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One refused handshake, as cheap as it gets: read the hello, send a
/// frame that is no handshake, read the DENY.
async fn refused_handshake(addr: SocketAddr) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the control port");
    let mut len = [0u8; LEN_PREFIX];
    stream.read_exact(&mut len).await.expect("a hello");
    let mut hello = vec![0u8; frame::frame_len(len, frame::MAX_FRAME).unwrap()];
    stream.read_exact(&mut hello).await.expect("a hello");
    stream
        .write_all(&frame::len_header(4).unwrap())
        .await
        .unwrap();
    stream.write_all(b"junk").await.unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
    assert!(
        rest.windows(4).any(|w| w == frame::DENY_MAGIC),
        "the handshake was not refused"
    );
}

/// An audit log of 16 KiB, one rotated file, summing up suppressed
/// refusals every 2 s (the summaries of a flood of a few seconds fit in
/// the file's share for unproven lines).
fn small_audit(ca: &TestCa, name: &str) -> AuditLog {
    let budget = BudgetSettings {
        summary_every: Duration::from_secs(2),
        ..BudgetSettings::default()
    };
    AuditLog::open_with(&ca.audit_path(name), 16 * 1024, 1, budget).expect("audit log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_handshakes_is_summed_up_and_never_rotates_away_an_operators_record() {
    let ca = TestCa::new("ca");
    let trust = NodeTrust {
        creds: ca.creds_for(Role::Node, "node-00", Duration::from_secs(3600)),
        bundle: ca.bundle(),
        audit: Some(small_audit(&ca, "node-00")),
        roster_file: Some(ca.roster_path("node-00")),
    };
    let env = new_envelope();
    let inspector = Arc::new(CountingInspector::default());
    let (agent, control, _) = trusted_agent("node-00", vec![], &env, inspector, Some(trust)).await;
    let alice = ca.operator("alice", Scope::full(600_000), ca.bundle());
    let doc = sweep_as(control, alice, &sweep_request(Selector::default(), 2000))
        .await
        .expect("alice sweeps");
    let alice_line = |lines: &[serde_json::Value]| {
        lines.iter().any(|l| {
            l["operator"] == "alice" && l["action"] == "served" && l["sweep_id"] == doc.sweep_id
        })
    };
    assert!(
        alice_line(&ca.audit_lines("node-00")),
        "no record of alice's sweep"
    );

    // 3,000 refusals, about 750 KB of audit lines if each were written:
    // without a budget, the 16 KiB log rotates alice's record away.
    const FLOOD: u64 = 3000;
    for _ in 0..FLOOD {
        refused_handshake(control).await;
    }
    let lines = ca.audit_lines("node-00");
    assert!(
        alice_line(&lines),
        "the flood rotated alice's record away: {} lines left",
        lines.len()
    );
    let refused = lines.iter().filter(|l| l["action"] == "refused").count() as u64;
    assert!(refused <= 10, "{refused} refusals written one by one");
    let stats = agent.stats().await.unwrap();
    assert_eq!(
        stats.audit_suppressed,
        FLOOD - refused,
        "every refusal not written is counted"
    );
    let row = stats
        .counts()
        .into_iter()
        .find(|c| c.name == "audit_lines_suppressed")
        .expect("a row in the counter list");
    assert_eq!(row.value, FLOOD - refused);
    // Every 2 s, one line per peer sums them up.
    let summaries = wait_for(Duration::from_secs(10), "suppressed lines", || async {
        let lines: Vec<_> = ca
            .audit_lines("node-00")
            .into_iter()
            .filter(|l| l["action"] == "suppressed")
            .collect();
        let total: u64 = lines.iter().filter_map(|l| l["count"].as_u64()).sum();
        (total == FLOOD - refused)
            .then_some(lines.clone())
            .ok_or(format!("{total} summed up so far: {lines:?}"))
    })
    .await;
    for s in &summaries {
        assert_eq!(s["peer"], "127.0.0.1", "{s}");
        let reason = s["reason"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!(
                "{} refusals from 127.0.0.1 suppressed",
                s["count"]
            )),
            "{s}"
        );
    }
    assert!(
        !ca.audit_path("node-00").with_extension("jsonl.1").exists(),
        "refusals alone rotated the log"
    );
    agent.stop(patrol_agent::agent::StopMode::Leave).await;
}

/// Run `patrol` with `args`, which must succeed.
fn cli(args: &[&str]) {
    let out = patrol(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An agent process with `[trust]` (identity from `patrol ca`) logging to
/// `DIR/agent.log`.
fn certified_agent_process(dir: &Path) -> AgentProcess {
    let s = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let key = cluster_key(dir, "cluster.key");
    cli(&["ca", "init", "--out", &s("ca")]);
    cli(&[
        "ca",
        "issue",
        "node",
        "--ca",
        &s("ca"),
        "--name",
        "n0",
        "--out",
        &s("n0"),
    ]);
    let trust = format!(
        "[trust]\nca_bundle = \"{0}/ca.crt\"\ncert = \"{0}/node.crt\"\nkey = \"{0}/node.key\"\naudit_log = \"{0}/audit.jsonl\"\nroster_file = \"{0}/roster.json\"\n",
        s("n0")
    );
    let config = write_config(dir, "n0", &key, &[], 0, &trust);
    AgentProcess::start_logging(&config, &dir.join("agent.log"))
}

#[test]
fn a_certificate_name_with_a_newline_forges_no_line_in_the_agents_log_nor_its_audit_file() {
    let dir = tempfile::tempdir().unwrap();
    let agent = certified_agent_process(dir.path());
    // A CA the agent does not trust, naming its operator with a line of
    // its own: refused, and the name is in the reason the agent logs.
    let evil = TestCa::new("evil");
    let forged = "mallory\nWARN patrol_agent::control::server: served operator=alice\r\u{1b}[2K";
    let mallory = ClientAuth::Operator(Arc::new(OperatorIdentity {
        creds: evil.creds_for(
            Role::Operator(Scope::full(60_000)),
            forged,
            Duration::from_secs(600),
        ),
        bundle: evil.bundle(),
        cluster: "proc-test".into(),
    }));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let connected = rt.block_on(ControlClient::connect(
        agent.control,
        mallory,
        Duration::from_secs(5),
    ));
    let Err(e) = connected else {
        panic!("a certificate of an unknown CA was taken");
    };
    assert!(e.to_string().contains("not in the trust bundle"), "{e}");
    drop(agent); // killed: its log is complete

    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert!(log.contains("refused a control client"), "{log}");
    assert!(log.contains("mallory\\nWARN"), "the name escaped: {log}");
    for line in log.lines() {
        assert!(
            !line.contains("served operator=alice") || line.contains("refused a control client"),
            "a forged line in the agent's log: {line:?}\n{log}"
        );
        assert!(!line.contains('\u{1b}'), "a raw escape character: {line:?}");
    }
    let audit = std::fs::read_to_string(dir.path().join("n0/audit.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
        .collect();
    assert_eq!(lines.len(), 1, "{audit}");
    assert_eq!(lines[0]["action"], "refused");
    assert!(lines[0].get("operator").is_none(), "{audit}");
    assert!(
        lines[0]["reason"].as_str().unwrap().contains(forged),
        "the reason keeps the name as sent: {audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_operators_64_sweeps_leave_room_for_a_full_operators_sweep() {
    let ca = TestCa::new("ca");
    let names = ["node-00", "node-01"];
    let env = new_envelope();
    let inspector = Arc::new(CountingInspector::default());
    let mut agents = Vec::new();
    let mut controls = Vec::new();
    for name in names {
        let seeds = agents
            .first()
            .map(|a: &patrol_agent::agent::AgentHandle| vec![a.addr])
            .unwrap_or_default();
        let trust = Some(ca.node_trust(name, ca.bundle()));
        let (agent, control, _) = trusted_agent(name, seeds, &env, inspector.clone(), trust).await;
        agents.push(agent);
        controls.push(control);
    }
    wait_converged(&agents, names.len(), Duration::from_secs(15)).await;

    // An operator allowed one check, with a 60 s deadline: 64 sweeps in
    // its scope, one after the other (each ends as soon as both nodes
    // answered; this agent's quota counts it for its whole deadline).
    let probe = Scope {
        name: "probe-only".into(),
        checks: vec!["probe".into()],
        ..Scope::full(60_000)
    };
    let cron = ca.operator("cron", probe, ca.bundle());
    let selector = Selector {
        checks: vec!["probe".into()],
        ..Selector::default()
    };
    let mut refusals = Vec::new();
    for _ in 0..64 {
        if let Err(e) = sweep_as(
            controls[0],
            cron.clone(),
            &sweep_request(selector.clone(), 60_000),
        )
        .await
        {
            refusals.push(e);
        }
    }
    // A full operator straight afterwards: every node runs its checks.
    let runs = inspector.runs();
    let alice = ca.operator("alice", Scope::full(600_000), ca.bundle());
    let doc = sweep_as(
        controls[0],
        alice,
        &sweep_request(Selector::default(), 5000),
    )
    .await
    .expect("alice sweeps");
    let over_capacity: Vec<_> = doc
        .nodes
        .iter()
        .flat_map(|n| n.checks.iter())
        .filter(|o| o.id.starts_with("patrol."))
        .map(|o| o.id.clone())
        .collect();
    assert!(over_capacity.is_empty(), "{over_capacity:?}");
    assert_eq!(doc.counts.ok, 2, "{:?}", doc.counts);
    assert_eq!(inspector.runs(), runs + 2, "each node ran alice's checks");
    // It was the scoped operator's quota that left room.
    assert_eq!(refusals.len(), 64 - 16, "{refusals:?}");
    assert!(
        refusals[0].contains("`cron` already holds 16 sweeps"),
        "{}",
        refusals[0]
    );
    let stats = agents[0].stats().await.unwrap();
    assert_eq!(stats.refused_operator_concurrent, 48);

    for a in agents {
        a.stop(patrol_agent::agent::StopMode::Leave).await;
    }
}
