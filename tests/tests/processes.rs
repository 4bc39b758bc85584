//! The real binaries as separate processes: `patrol keys generate`,
//! `patrol-agent` daemons on loopback, `patrol members` and `patrol sweep`
//! against them; SIGKILL, restart and SIGTERM.

use std::time::Duration;

use patrol_tests::process::{cluster_key, patrol, write_config, AgentProcess};
use patrol_tests::wait_blocking;

fn members_json(
    control: std::net::SocketAddr,
    config: &std::path::Path,
) -> Result<Vec<serde_json::Value>, String> {
    let out = patrol(&[
        "members",
        "--seed",
        &control.to_string(),
        "--config",
        config.to_str().unwrap(),
        "--format",
        "json",
    ]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

fn state(members: &[serde_json::Value], name: &str) -> Option<String> {
    members
        .iter()
        .find(|m| m["name"] == name)
        .map(|m| m["state"].as_str().unwrap_or_default().to_string())
}

#[test]
fn agents_as_processes_members_sweep_kill_restart_and_terminate() {
    let dir = tempfile::tempdir().unwrap();
    let key = cluster_key(dir.path(), "cluster.key");

    let checks = "[[check]]\nid = \"forwarding\"\ntype = \"sysctl\"\nkey = \"kernel.pid_max\"\nexpect = { min = 1 }\n";
    let first = AgentProcess::start(&write_config(dir.path(), "p0", &key, &[], 0, checks));
    let mut agents = vec![first];
    for i in 1..4 {
        let cfg = write_config(
            dir.path(),
            &format!("p{i}"),
            &key,
            &[agents[0].gossip],
            0,
            checks,
        );
        agents.push(AgentProcess::start(&cfg));
    }
    let (ctl, cfg) = (agents[0].control, agents[0].config.clone());
    let controls: Vec<_> = agents.iter().map(|a| a.control).collect();
    wait_blocking(
        Duration::from_secs(30),
        "every agent to list 4 alive members",
        || {
            for c in &controls {
                let m = members_json(*c, &cfg)?;
                let alive = m.iter().filter(|m| m["state"] == "alive").count();
                if alive != 4 {
                    return Err(format!("{c}: {alive} alive: {m:?}"));
                }
            }
            Ok(())
        },
    );

    // The human table too, with its summary line.
    let out = patrol(&[
        "members",
        "--seed",
        &ctl.to_string(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("4 members: 4 alive"), "{table}");
    assert!(table.contains("role=worker"), "{table}");
    let out = patrol(&[
        "members",
        "--seed",
        &ctl.to_string(),
        "--config",
        cfg.to_str().unwrap(),
        "--stats",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    // No datagram failed to open: the counter list's row says 0.
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["datagrams_dropped", "unsealed", "0"]),
        "{text}"
    );

    // A sweep through another agent, as JSON. The first --seed is dead:
    // the next one serves.
    let out = patrol(&[
        "sweep",
        "--seed",
        "127.0.0.1:1",
        "--seed",
        &agents[2].control.to_string(),
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        "--deadline",
        "5s",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["coordinator"], "p2");
    assert_eq!(doc["counts"]["expected"], 4);
    assert_eq!(doc["counts"]["ok"], 4);
    let nodes = doc["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    for n in nodes {
        assert_eq!(n["state"], "ok", "{n}");
        assert_eq!(n["checks"][0]["id"], "forwarding");
        assert_eq!(n["checks"][0]["status"], "pass");
        assert!(
            n["checks"][0]["observed"].is_object() || n["checks"][0]["observed"].is_number(),
            "{n}"
        );
    }

    // The nightly job: sweep, store, render, mail. The SMTP server is
    // unreachable: non-zero exit, and the report stays on disk.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let reports = dir.path().join("reports");
    let mail_cfg = dir.path().join("mail.toml");
    let text = std::fs::read_to_string(&cfg).unwrap()
        + &format!(
            "\n[report]\nhistory_dir = \"{}\"\nout_dir = \"{}\"\n\n[mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {closed}\nsecurity = \"plain\"\nfrom = \"patrol@example.org\"\nto = [\"ops@example.org\"]\n",
            dir.path().join("history").display(),
            reports.display()
        );
    std::fs::write(&mail_cfg, text).unwrap();
    let out = patrol(&[
        "sweep",
        "--seed",
        &ctl.to_string(),
        "--config",
        mail_cfg.to_str().unwrap(),
        "--email",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("not sent") && err.contains(reports.to_str().unwrap()),
        "{err}"
    );
    let kept: Vec<_> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    for f in ["report.html", "report.txt", "sweep.json", "message.eml"] {
        assert!(
            kept[0].join(f).exists(),
            "{f} missing in {}",
            kept[0].display()
        );
    }

    // SIGKILL p3: seen down; restarted with the same name and port: alive.
    let p3 = agents.pop().unwrap();
    let (p3_port, p3_cfg) = (p3.gossip.port(), p3.config.clone());
    p3.kill_hard();
    wait_blocking(Duration::from_secs(60), "p3 down", || {
        let m = members_json(ctl, &cfg)?;
        (state(&m, "p3").as_deref() == Some("down"))
            .then_some(())
            .ok_or(format!("{:?}", state(&m, "p3")))
    });
    // The sweep lists it, and exits 2.
    let out = patrol(&[
        "sweep",
        "--seed",
        &ctl.to_string(),
        "--config",
        cfg.to_str().unwrap(),
        "--deadline",
        "2s",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("p3") && l.contains("down")),
        "{table}"
    );
    assert!(
        table.contains("4 expected: 3 ok, 0 failing, 0 no answer, 1 down"),
        "{table}"
    );

    let text = std::fs::read_to_string(&p3_cfg).unwrap().replace(
        "127.0.0.1:0\"\nseeds",
        &format!("127.0.0.1:{p3_port}\"\nseeds"),
    );
    std::fs::write(&p3_cfg, text).unwrap();
    let p3 = AgentProcess::start(&p3_cfg);
    assert_eq!(p3.gossip.port(), p3_port);
    wait_blocking(Duration::from_secs(60), "p3 alive again", || {
        let m = members_json(ctl, &cfg)?;
        let rows = m.iter().filter(|x| x["name"] == "p3").count();
        (state(&m, "p3").as_deref() == Some("alive") && rows == 1)
            .then_some(())
            .ok_or(format!("{:?} ({rows} rows)", state(&m, "p3")))
    });

    // SIGTERM p1: it leaves, exits 0, and is seen as left (not after a
    // failure-detection timeout).
    let p1 = agents.remove(1);
    assert_eq!(p1.terminate(), Some(0));
    wait_blocking(Duration::from_secs(5), "p1 left", || {
        let m = members_json(ctl, &cfg)?;
        (state(&m, "p1").as_deref() == Some("left"))
            .then_some(())
            .ok_or(format!("{:?}", state(&m, "p1")))
    });
    drop(p3);
}

#[test]
fn the_agent_refuses_a_key_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    let out = patrol(&["keys", "generate", "--out", key.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = write_config(dir.path(), "loose", &key, &[], 0, "");
    let out = std::process::Command::new(patrol_tests::process::binary("patrol-agent"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cluster.key") && err.contains("644"), "{err}");
}

#[test]
fn keys_rotate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    let key_arg = key.to_str().unwrap();
    assert!(patrol(&["keys", "generate", "--out", key_arg])
        .status
        .success());
    let old_copy = dir.path().join("old.key");
    std::fs::copy(&key, &old_copy).unwrap();
    let list =
        |file: &str| String::from_utf8_lossy(&patrol(&["keys", "list", file]).stdout).into_owned();
    let old_id: u32 = list(key_arg)
        .lines()
        .find(|l| l.ends_with("primary"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .expect("a primary key id");

    let a = AgentProcess::start(&write_config(dir.path(), "ka", &key, &[], 0, ""));
    let b = AgentProcess::start(&write_config(dir.path(), "kb", &key, &[a.gossip], 0, ""));
    let both_alive = |what: &str| {
        wait_blocking(Duration::from_secs(30), what, || {
            for ag in [&a, &b] {
                let m = members_json(ag.control, &ag.config)?;
                let alive = m.iter().filter(|m| m["state"] == "alive").count();
                if alive != 2 {
                    return Err(format!("{}: {alive} alive", ag.name));
                }
            }
            Ok(())
        })
    };
    both_alive("the mesh under the first key");

    // 1. Install a new key on every node; the old one still seals.
    let out = patrol(&["keys", "install", key_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let new_id: u32 = text
        .split_whitespace()
        .nth(3)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no key id in `{text}`"));
    a.hangup();
    b.hangup();
    // 2. Seal with the new key.
    assert!(patrol(&["keys", "use", key_arg, &new_id.to_string()])
        .status
        .success());
    a.hangup();
    b.hangup();
    // 3. Remove the old key.
    assert!(patrol(&["keys", "remove", key_arg, &old_id.to_string()])
        .status
        .success());
    a.hangup();
    b.hangup();
    assert!(
        list(key_arg).contains(&format!("{new_id}\tprimary")),
        "{}",
        list(key_arg)
    );
    std::thread::sleep(Duration::from_secs(1));
    // The agents kept talking (the CLI now holds only the new key).
    both_alive("the mesh under the new key");

    // A client and an agent holding only the old key are shut out.
    let out = patrol(&[
        "members",
        "--seed",
        &a.control.to_string(),
        "--key-file",
        old_copy.to_str().unwrap(),
        "--cluster",
        "proc-test",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("authentication"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stale = AgentProcess::start(&write_config(
        dir.path(),
        "stale",
        &old_copy,
        &[a.gossip],
        0,
        "",
    ));
    std::thread::sleep(Duration::from_secs(3));
    let m = members_json(a.control, &a.config).unwrap();
    assert!(m.iter().all(|m| m["name"] != "stale"), "{m:?}");
    drop(stale);
}

/// Regression (issue 12): 64 control slots, each held for 5 s before
/// authentication and none per peer, so a local user holding idle
/// connections made the nightly `patrol sweep` exit 3. Now the oldest
/// pending connection makes room.
#[test]
fn two_hundred_idle_control_connections_do_not_stop_a_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let key = cluster_key(dir.path(), "cluster.key");
    // A check to run: a sweep that ran none exits 5, not 0.
    let check = "[[check]]\nid = \"pid-max\"\ntype = \"sysctl\"\nkey = \"kernel.pid_max\"\nexpect = { min = 1 }\n";
    let first = AgentProcess::start(&write_config(dir.path(), "q0", &key, &[], 0, check));
    let second = AgentProcess::start(&write_config(
        dir.path(),
        "q1",
        &key,
        &[first.gossip],
        0,
        check,
    ));
    let (ctl, cfg) = (first.control, first.config.clone());
    wait_blocking(Duration::from_secs(30), "2 alive members", || {
        let m = members_json(ctl, &cfg)?;
        match m.iter().filter(|m| m["state"] == "alive").count() {
            2 => Ok(()),
            n => Err(format!("{n} alive")),
        }
    });
    // 200 connections that read the hello and never send a request.
    let idle: Vec<std::net::TcpStream> = (0..200)
        .map(|_| std::net::TcpStream::connect(ctl).expect("connect"))
        .collect();
    let out = patrol(&[
        "sweep",
        "--seed",
        &ctl.to_string(),
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        "--deadline",
        "3s",
    ]);
    assert!(
        out.status.code() == Some(0),
        "sweep exited {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["counts"]["ok"], 2, "{doc}");
    drop(idle);
    drop(second);
    drop(first);
}

/// `patrol ca` end to end with real processes: identities made by the CLI,
/// an agent refusing a certificate for another name, a sweep with
/// `--identity` and no cluster key on the client, the audit trail, and a
/// revocation that takes effect on SIGHUP without a restart.
#[test]
fn identities_from_patrol_ca_sweep_and_a_revocation_applies_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let p = |args: &[&str]| {
        let out = patrol(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let path = |name: &str| dir.path().join(name);
    let s = |name: &str| path(name).to_str().unwrap().to_string();
    let key = path("cluster.key");
    p(&["keys", "generate", "--out", &s("cluster.key")]);
    p(&["ca", "init", "--out", &s("ca")]);
    std::fs::write(path("revoked.txt"), "# none yet\n").unwrap();
    let trust = |name: &str| {
        format!(
            "[trust]\nca_bundle = \"{0}/ca.crt\"\ncert = \"{0}/node.crt\"\nkey = \"{0}/node.key\"\ndeny_list = \"{1}\"\naudit_log = \"{0}/audit.jsonl\"\n",
            s(name),
            s("revoked.txt")
        )
    };
    for name in ["ia", "ib", "wrong"] {
        let cert_name = if name == "wrong" {
            "someone-else"
        } else {
            name
        };
        p(&[
            "ca",
            "issue",
            "node",
            "--ca",
            &s("ca"),
            "--name",
            cert_name,
            "--out",
            &s(name),
        ]);
    }
    // A certificate for another name: the agent refuses to start.
    let wrong = write_config(dir.path(), "wrong", &key, &[], 0, &trust("wrong"));
    let out = std::process::Command::new(patrol_tests::process::binary("patrol-agent"))
        .arg("--config")
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("someone-else") && stderr.contains("wrong"),
        "{stderr}"
    );

    let a = AgentProcess::start(&write_config(dir.path(), "ia", &key, &[], 0, &trust("ia")));
    let b = AgentProcess::start(&write_config(
        dir.path(),
        "ib",
        &key,
        &[a.gossip],
        0,
        &trust("ib"),
    ));
    let alice = p(&[
        "ca",
        "issue",
        "operator",
        "--ca",
        &s("ca"),
        "--name",
        "alice",
        "--scope",
        "full",
        "--out",
        &s("alice"),
    ]);
    let serial = alice
        .split("serial ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .unwrap()
        .to_string();
    // A share in the scope: a version 2 certificate, and `ca show` says
    // both; a read-only scope takes none.
    let capped = p(&[
        "ca",
        "issue",
        "operator",
        "--ca",
        &s("ca"),
        "--name",
        "capped",
        "--scope",
        "full",
        "--share",
        "2",
        "--out",
        &s("capped"),
    ]);
    assert!(
        capped.contains("at most 2 sweeps at once per node"),
        "{capped}"
    );
    let shown = p(&["ca", "show", &s("capped/operator.crt")]);
    assert!(
        shown.contains("version 2") && shown.contains("at most 2 sweeps at once per node"),
        "{shown}"
    );
    assert!(p(&["ca", "show", &s("alice/operator.crt")]).contains("version 1"));
    let out = patrol(&[
        "ca",
        "issue",
        "operator",
        "--ca",
        &s("ca"),
        "--name",
        "ro",
        "--scope",
        "read-only",
        "--share",
        "2",
        "--out",
        &s("ro"),
    ]);
    assert!(!out.status.success(), "a read-only scope took a share");
    let control = a.control.to_string();
    let sweep = || {
        patrol(&[
            "sweep",
            "--seed",
            &control,
            "--cluster",
            "proc-test",
            "--identity",
            &s("alice"),
            "--format",
            "json",
            "--deadline",
            "3s",
        ])
    };
    // The mesh forms; then alice sweeps both nodes without the cluster key.
    wait_blocking(Duration::from_secs(30), "a sweep of both nodes", || {
        let out = sweep();
        let doc: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {out:?}"))?;
        match doc["counts"]["expected"].as_u64() {
            Some(2) => Ok(()),
            other => Err(format!("expected {other:?}")),
        }
    });
    let audit = std::fs::read_to_string(path("ib").join("audit.jsonl")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"operator\":\"alice\"") && l.contains("\"ran\"")),
        "{audit}"
    );
    // Revoke alice, SIGHUP: refused without a restart.
    p(&["ca", "revoke", &serial, "--deny-list", &s("revoked.txt")]);
    a.hangup();
    b.hangup();
    wait_blocking(
        Duration::from_secs(10),
        "alice refused after SIGHUP",
        || {
            let out = sweep();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            if !out.status.success() && err.contains("revoked") {
                Ok(())
            } else {
                Err(format!("{:?}: {err}", out.status))
            }
        },
    );
    a.terminate();
    b.terminate();
}
