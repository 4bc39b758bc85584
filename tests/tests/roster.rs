//! `patrol roster` and `patrol roster forget` against real certified
//! `patrol-agent` processes, with identities made by `patrol ca`: the
//! roster keeps a stopped node (not alive in SWIM, still expected); a
//! read-only operator's forget is refused; a full operator's forget is
//! applied on every agent, which lists the node as gone (forgotten), and
//! audited with the operator's name; an agent without `[trust]` says it
//! has no roster.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use patrol_tests::process::{patrol, write_config, AgentProcess};
use patrol_tests::wait_blocking;

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run `patrol ARGS`, which must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    let out = patrol(args);
    assert!(out.status.success(), "{args:?}: {:?}", text(&out));
    text(&out).0
}

/// The certified test cluster on disk: a CA, node identities, operators.
struct Identities<'a> {
    dir: &'a Path,
}

impl Identities<'_> {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    fn node(&self, name: &str) -> String {
        let out = self.path(name);
        let ca = self.path("ca");
        ok(&[
            "ca", "issue", "node", "--ca", &ca, "--name", name, "--out", &out,
        ]);
        format!(
            "[trust]\nca_bundle = \"{0}/ca.crt\"\ncert = \"{0}/node.crt\"\nkey = \"{0}/node.key\"\naudit_log = \"{0}/audit.jsonl\"\nroster_file = \"{0}/roster.json\"\n",
            out
        )
    }

    fn operator(&self, name: &str, scope: &str) -> String {
        let out = self.path(name);
        let ca = self.path("ca");
        ok(&[
            "ca", "issue", "operator", "--ca", &ca, "--name", name, "--scope", scope, "--out", &out,
        ]);
        out
    }
}

/// `patrol roster` of the agent at `control` as the operator `identity`.
fn roster(control: &str, identity: &str, json: bool) -> Output {
    let mut args = vec![
        "roster",
        "--seed",
        control,
        "--cluster",
        "proc-test",
        "--identity",
        identity,
    ];
    if json {
        args.push("--json");
    }
    patrol(&args)
}

fn roster_json(control: &str, identity: &str) -> Result<serde_json::Value, String> {
    let out = roster(control, identity, true);
    if !out.status.success() {
        return Err(text(&out).1);
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {:?}", text(&out)))
}

fn swim_of(view: &serde_json::Value, name: &str) -> Option<String> {
    view["members"]
        .as_array()?
        .iter()
        .find(|m| m["entry"]["name"] == name)
        .map(|m| m["swim"].as_str().unwrap_or_default().to_string())
}

fn forget(control: &str, identity: &str, node: &str) -> Output {
    patrol(&[
        "roster",
        "forget",
        node,
        "--seed",
        control,
        "--cluster",
        "proc-test",
        "--identity",
        identity,
    ])
}

#[test]
fn patrol_roster_lists_a_stopped_node_and_forget_is_signed_applied_everywhere_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let ids = Identities { dir: dir.path() };
    let key = dir.path().join("cluster.key");
    ok(&["keys", "generate", "--out", &ids.path("cluster.key")]);
    ok(&["ca", "init", "--out", &ids.path("ca")]);
    let alice = ids.operator("alice", "full");
    let viewer = ids.operator("viewer", "read-only");
    let a = AgentProcess::start(&write_config(
        dir.path(),
        "ra",
        &key,
        &[],
        0,
        &ids.node("ra"),
    ));
    let b = AgentProcess::start(&write_config(
        dir.path(),
        "rb",
        &key,
        &[a.gossip],
        0,
        &ids.node("rb"),
    ));
    let c = AgentProcess::start(&write_config(
        dir.path(),
        "rc",
        &key,
        &[a.gossip],
        0,
        &ids.node("rc"),
    ));
    let (ca, cb) = (a.control.to_string(), b.control.to_string());
    // Each agent's roster holds the others (it expects itself anyway).
    wait_blocking(Duration::from_secs(30), "all three on both rosters", || {
        for (control, me) in [(&ca, "ra"), (&cb, "rb")] {
            let view = roster_json(control, &alice)?;
            if view["node"] != me || swim_of(&view, me).is_some() {
                return Err(format!("{me} answers for itself only: {view}"));
            }
            for name in ["ra", "rb", "rc"].into_iter().filter(|n| *n != me) {
                if swim_of(&view, name).as_deref() != Some("alive") {
                    return Err(format!("{name} not alive on {control}'s roster: {view}"));
                }
            }
        }
        Ok(())
    });

    // rc stops: still on the roster, not alive in SWIM.
    c.kill_hard();
    wait_blocking(
        Duration::from_secs(60),
        "rc not alive on ra's roster",
        || {
            let view = roster_json(&ca, &alice)?;
            match swim_of(&view, "rc").as_deref() {
                Some("alive") | None => Err(format!("{view}")),
                Some(_) => Ok(()),
            }
        },
    );
    let table = ok(&[
        "roster",
        "--seed",
        &ca,
        "--cluster",
        "proc-test",
        "--identity",
        &alice,
    ]);
    let row = |name: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}: {table}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert!(
        table.starts_with(&format!(
            "roster of ra (the agent at {ca}): 2 certified nodes besides ra\n"
        )),
        "{table}"
    );
    assert_eq!(row("rb")[2], "alive", "{table}");
    assert_ne!(row("rc")[2], "alive", "{table}");
    assert!(
        table.contains("1 not alive in SWIM (still expected"),
        "{table}"
    );

    // A read-only operator may not forget.
    let out = forget(&ca, &viewer, "rc");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(
        stderr.contains("forget refused") && stderr.contains("viewer"),
        "{stderr}"
    );
    let view = roster_json(&ca, &alice).unwrap();
    assert!(
        swim_of(&view, "rc").is_some(),
        "still on the roster: {view}"
    );

    // alice may: on ra's roster, passed on to rb.
    let out = forget(&ca, &alice, "rc");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("rc forgotten: it was on the roster of the agent at "),
        "{stdout}"
    );
    wait_blocking(
        Duration::from_secs(30),
        "rb to list rc as forgotten",
        || {
            let view = roster_json(&cb, &alice)?;
            let gone = view["gone"]
                .as_array()
                .and_then(|g| g.iter().find(|g| g["entry"]["name"] == "rc"))
                .map(|g| g["reason"].clone());
            match (swim_of(&view, "rc"), gone) {
                (None, Some(reason)) if reason == "forgotten" => Ok(()),
                other => Err(format!("{other:?}: {view}")),
            }
        },
    );
    let table = ok(&[
        "roster",
        "--seed",
        &cb,
        "--cluster",
        "proc-test",
        "--identity",
        &alice,
    ]);
    let gone_part = table
        .split("gone from the roster")
        .nth(1)
        .unwrap_or_else(|| panic!("no gone section: {table}"));
    assert!(
        gone_part
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["rc", "forgotten"])),
        "{table}"
    );
    // Forgetting it again: not on the roster any more, exit 1.
    let out = forget(&ca, &alice, "rc");
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(
        text(&out).0.contains("rc was not on the roster"),
        "{:?}",
        text(&out)
    );

    for name in ["ra", "rb"] {
        let audit = std::fs::read_to_string(dir.path().join(name).join("audit.jsonl")).unwrap();
        let forgot: Vec<&str> = audit
            .lines()
            .filter(|l| l.contains("\"source\":\"roster\"") && l.contains("\"action\":\"forgot\""))
            .collect();
        assert!(
            forgot
                .iter()
                .any(|l| l.contains("\"operator\":\"alice\"") && l.contains("\"node\":\"rc\"")),
            "{name}: no forget line by alice for rc in {audit}"
        );
    }
    let audit_a = std::fs::read_to_string(dir.path().join("ra").join("audit.jsonl")).unwrap();
    assert!(
        audit_a.lines().any(|l| l.contains("\"request\":\"forget\"")
            && l.contains("\"action\":\"refused\"")
            && l.contains("\"operator\":\"viewer\"")),
        "the refused forget is audited: {audit_a}"
    );
    a.terminate();
    b.terminate();
}

#[test]
fn an_agent_without_trust_says_it_has_no_roster() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    ok(&["keys", "generate", "--out", key.to_str().unwrap()]);
    let agent = AgentProcess::start(&write_config(dir.path(), "plain", &key, &[], 0, ""));
    let control = agent.control.to_string();
    let args = [
        "--seed",
        &control,
        "--key-file",
        key.to_str().unwrap(),
        "--cluster",
        "proc-test",
    ];
    let list = patrol(&[&["roster"][..], &args].concat());
    let (stdout, stderr) = text(&list);
    assert_eq!(list.status.code(), Some(3), "{stdout}{stderr}");
    assert!(
        stderr.contains("no roster") && stderr.contains("without [trust]"),
        "{stderr}"
    );
    let forget = patrol(&[&["roster", "forget", "someone"][..], &args].concat());
    let (stdout, stderr) = text(&forget);
    assert_eq!(forget.status.code(), Some(3), "{stdout}{stderr}");
    assert!(
        stderr.contains("without [trust]") && stderr.contains("nothing to forget"),
        "{stderr}"
    );
    agent.terminate();
}
