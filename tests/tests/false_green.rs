//! No false green, on real agent processes: a sweep that inspected
//! nothing, or not what was named, exits 5 with a line saying why, never
//! "ok" with 0 (a `--checks` typo, a `--where` that matches no node, a
//! selector that runs no check, a coordinator alone although its config
//! lists seeds); an agent alone for a minute logs a warning, and `patrol
//! members` says so.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use patrol_tests::process::{cluster_key, patrol, write_config, AgentProcess};

const CHECKS: &str = "[[check]]\nid = \"pid-max\"\ntype = \"sysctl\"\nkey = \"kernel.pid_max\"\nexpect = { min = 1 }\nlabels = [\"kernel\"]\n";

fn key(dir: &Path) -> std::path::PathBuf {
    cluster_key(dir, "cluster.key")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sweep(agent: &AgentProcess, extra: &[&str]) -> Output {
    let control = agent.control.to_string();
    let mut args = vec![
        "sweep",
        "--seed",
        &control,
        "--config",
        agent.config.to_str().unwrap(),
        "--deadline",
        "2s",
    ];
    args.extend_from_slice(extra);
    patrol(&args)
}

/// Start two agents in one cluster and wait until the first sees both.
fn pair(dir: &Path) -> (AgentProcess, AgentProcess) {
    let key = key(dir);
    let a = AgentProcess::start(&write_config(dir, "fg0", &key, &[], 0, CHECKS));
    let b = AgentProcess::start(&write_config(dir, "fg1", &key, &[a.gossip], 0, CHECKS));
    let start = Instant::now();
    loop {
        let out = sweep(&a, &["--format", "json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if doc["counts"]["ok"] == 2 {
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the two agents did not both answer within 30 s: {}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (a, b)
}

#[test]
fn a_checks_typo_a_where_that_matches_nothing_and_an_empty_selector_exit_5() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _b) = pair(dir.path());

    // The right id passes, with 0 and nothing on stderr about coverage.
    let out = sweep(&a, &["--checks", "pid-max"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("2 expected: 2 ok"));

    // A typo: named, with the closest id, and exit 5, even though the
    // table alone would read "2 ok".
    let out = sweep(&a, &["--checks", "pid-max,pid-mx"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("--checks pid-mx: no node that answered (2) has a check with this id (closest known id: pid-max)"),
        "{stderr}"
    );
    assert!(!stderr.contains("--checks pid-max:"), "{stderr}");

    // A node filter that matches no node.
    let out = sweep(&a, &["--where", "role=nosuch"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("--where role=nosuch matched no node"),
        "{stderr}"
    );
    // The same filter on a tag the nodes carry is fine.
    let out = sweep(&a, &["--where", "role=worker"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // A selector that runs no check anywhere: a label no check carries,
    // and a profile that is not built in.
    let out = sweep(&a, &["--labels", "nosuch"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("no check ran on any of the 2 nodes that answered: the selector (labels nosuch) matches none of their checks"),
        "{stderr}"
    );
    let out = sweep(&a, &["--profile", "k8s-nod", "--format", "json"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("`k8s-nod` is not a built-in profile (k8s-node"),
        "{stderr}"
    );
    // stdout stays a JSON document.
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["counts"]["ok"], 2);
}

#[test]
fn nodes_whose_configs_define_no_check_exit_5() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path());
    let a = AgentProcess::start(&write_config(
        dir.path(),
        "empty0",
        &key,
        &[],
        0,
        "[checks]\nprofiles = []\n",
    ));
    let out = sweep(&a, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains(
            "no check ran on any of the 1 nodes that answered: their configs define no check"
        ),
        "{stderr}"
    );
}

#[test]
fn an_agent_whose_seeds_never_answer_warns_and_its_sweep_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(dir.path());
    // A bound socket that never answers: the seed's datagrams vanish.
    let deaf = UdpSocket::bind("127.0.0.1:0").unwrap();
    let seed: SocketAddr = deaf.local_addr().unwrap();
    let config = write_config(dir.path(), "lonely", &key, &[seed], 0, CHECKS);
    let log = dir.path().join("lonely.log");
    let started = Instant::now();
    let agent = AgentProcess::start_logging(&config, &log);

    let out = sweep(&agent, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(text(&out.stdout).contains("1 expected: 1 ok"));
    assert!(
        stderr.contains(&format!(
            "the coordinator lonely sees no other node, yet {} lists seeds {seed}",
            config.display()
        )),
        "{stderr}"
    );
    // The same agent asked with --where (expected set of one on purpose)
    // is not the lonely case.
    let out = sweep(&agent, &["--where", "role=worker"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let control = agent.control.to_string();
    let out = patrol(&[
        "members",
        "--seed",
        &control,
        "--config",
        config.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "this agent sees no other node: none of the seeds {seed} has joined it"
        )),
        "{stderr}"
    );

    // The agent's own warning, after a minute alone.
    let deadline = Duration::from_secs(90);
    loop {
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        if logged.contains("no seed has answered within 60s") {
            assert!(logged.contains(&seed.to_string()), "{logged}");
            assert!(
                started.elapsed() >= Duration::from_secs(59),
                "warned too early: {:?}",
                started.elapsed()
            );
            break;
        }
        assert!(
            started.elapsed() < deadline,
            "no warning within {deadline:?}; the log:\n{logged}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(deaf);
}
