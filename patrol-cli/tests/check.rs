//! `patrol check` through the real binary: what runs (config, profile,
//! `--only`), table and JSON output, and the exit codes (0 pass, 1 warn,
//! 2 fail or error, 3 could not run). The k8s-node profile runs on this
//! machine, which is not a Kubernetes node: it must give a truthful
//! verdict, not a crash.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use patrol_checks::{Catalog, CheckOutcome, Status};

fn patrol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run the patrol binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(out: &Output) -> Vec<CheckOutcome> {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON outcomes ({e}):\n{}", text(&out.stdout)))
}

/// A config file with these `[[check]]` tables (plus `extra` at the top).
fn config(dir: &Path, extra: &str, checks: &str) -> PathBuf {
    let path = dir.join("patrol.toml");
    fs::write(&path, format!("{extra}\n{checks}")).unwrap();
    path
}

fn command_check(id: &str, script: &str, extra: &str) -> String {
    format!(
        "[[check]]\nid = \"{id}\"\ntype = \"command\"\nprogram = {script:?}\nshell = true\nremediation = \"fix {id}\"\n{extra}\n"
    )
}

const PASS: &str = "echo 'OK - fine | v=1'";
const WARN: &str = "echo 'WARNING - hmm'; exit 1";
const FAIL: &str = "echo 'CRITICAL - broken'; exit 2";
const UNKNOWN: &str = "echo 'UNKNOWN - cannot tell'; exit 3";

fn run_config(checks: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "", checks);
    let mut all = vec!["check", "--config", path.to_str().unwrap()];
    all.extend_from_slice(args);
    patrol(&all)
}

#[test]
fn exit_0_when_everything_passes_with_json_in_definition_order() {
    let checks = format!(
        "{}{}",
        command_check("a", PASS, ""),
        "[[check]]\nid = \"b\"\ntype = \"sysctl\"\nkey = \"kernel.ostype\"\nexpect = \"Linux\"\n"
    );
    let out = run_config(&checks, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let outcomes = json(&out);
    let ids: Vec<&str> = outcomes.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(
        outcomes.iter().all(|o| o.status == Status::Pass),
        "{outcomes:#?}"
    );
    assert_eq!(outcomes[0].message, "OK - fine");
    assert_eq!(outcomes[1].kind, "sysctl");
}

#[test]
fn exit_1_on_warnings_only_and_2_on_any_fail_or_error() {
    let warn = format!(
        "{}{}",
        command_check("ok", PASS, ""),
        command_check("w", WARN, "")
    );
    assert_eq!(run_config(&warn, &[]).status.code(), Some(1));

    let severity_warn = command_check("f", FAIL, "severity = \"warn\"");
    assert_eq!(run_config(&severity_warn, &[]).status.code(), Some(1));

    let fail = format!("{warn}{}", command_check("f", FAIL, ""));
    assert_eq!(run_config(&fail, &[]).status.code(), Some(2));

    let error = format!("{warn}{}", command_check("u", UNKNOWN, ""));
    assert_eq!(run_config(&error, &[]).status.code(), Some(2));
}

#[test]
fn the_table_puts_failures_first_with_their_fix_and_a_summary() {
    let checks = format!(
        "{}{}{}{}",
        command_check("pass-check", PASS, ""),
        command_check("warn-check", WARN, ""),
        command_check("fail-check", FAIL, ""),
        command_check("error-check", UNKNOWN, ""),
    );
    let out = run_config(&checks, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    // Not a terminal: no colour codes.
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("STATUS  CHECK"), "{stdout}");
    let rows: Vec<(&str, &str)> = lines[1..]
        .iter()
        .filter(|l| !l.starts_with(' ') && l.contains("-check"))
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap(), w.next().unwrap())
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("FAIL", "fail-check"),
            ("ERROR", "error-check"),
            ("WARN", "warn-check"),
            ("PASS", "pass-check"),
        ],
        "{stdout}"
    );
    // The fix line follows its failing row; passing rows get none.
    let fail_at = lines.iter().position(|l| l.starts_with("FAIL")).unwrap();
    assert_eq!(lines[fail_at + 1].trim(), "fix: fix fail-check");
    assert!(!stdout.contains("fix: fix pass-check"), "{stdout}");
    assert!(lines[fail_at].contains("CRITICAL - broken"), "{stdout}");
    let summary = lines.last().unwrap();
    assert!(
        summary.starts_with("4 checks: 1 pass, 1 warn, 1 fail, 1 error ("),
        "{summary}"
    );
}

#[test]
fn only_runs_the_named_checks() {
    let checks = format!(
        "{}{}{}",
        command_check("a", PASS, ""),
        command_check("b", FAIL, ""),
        command_check("c", WARN, "")
    );
    let out = run_config(&checks, &["--only", "a", "c", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let ids: Vec<String> = json(&out).into_iter().map(|o| o.id).collect();
    assert_eq!(ids, ["a", "c"]);

    let out = run_config(&checks, &["--only", "zzz"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("--only zzz: no check has that id"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn checks_for_other_node_tags_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let checks = format!(
        "{}{}",
        command_check("everywhere", PASS, ""),
        command_check("etcd-only", FAIL, "tags = { role = \"etcd\" }")
    );
    let worker = config(
        dir.path(),
        "[node]\nbind = \"127.0.0.1:7946\"\ntags = { role = \"worker\" }",
        &checks,
    );
    let out = patrol(&[
        "check",
        "--config",
        worker.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json(&out).len(), 1);
    let etcd = config(
        dir.path(),
        "[node]\nbind = \"127.0.0.1:7946\"\ntags = { role = \"etcd\" }",
        &checks,
    );
    let out = patrol(&[
        "check",
        "--config",
        etcd.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&out).len(), 2);
}

#[test]
fn exit_3_when_it_cannot_run_with_file_and_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let broken = config(
        dir.path(),
        "[checks]\ndefault_timeout = \"soon\"",
        "[[check]]\nid = \"x\"\ntype = \"sysctl\"\nkey = \"vm.swappiness\"\nexpect = { minimum = 1 }\n",
    );
    let out = patrol(&["check", "--config", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}: checks.default_timeout: ", broken.display())),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));

    let bad_check = config(
        dir.path(),
        "",
        "[[check]]\nid = \"x\"\ntype = \"sysctl\"\nkey = \"vm.swappiness\"\nexpect = { minimum = 1 }\n",
    );
    let out = patrol(&["check", "--config", bad_check.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: check[0].expect.minimum: unknown expectation",
            bad_check.display()
        )),
        "{stderr}"
    );

    let missing = dir.path().join("nope.toml");
    let out = patrol(&["check", "--config", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("cannot read the file"),
        "{}",
        text(&out.stderr)
    );

    let out = patrol(&["check", "--profile", "mainframe"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr)
            .contains("unknown profile `mainframe` (built-in profiles: k8s-node, cis-node)"),
        "{}",
        text(&out.stderr)
    );

    let empty = config(dir.path(), "", "");
    let out = patrol(&["check", "--config", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("nothing to run"),
        "{}",
        text(&out.stderr)
    );
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

#[test]
fn the_k8s_node_profile_runs_here_and_tells_the_truth() {
    let out = patrol(&["check", "--profile", "k8s-node", "--format", "json"]);
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let outcomes = json(&out);
    let profile = Catalog::builtin_profile("k8s-node").unwrap();
    let ids: Vec<&str> = outcomes.iter().map(|o| o.id.as_str()).collect();
    let want: Vec<&str> = profile.checks().iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, want);
    // The exit code follows the worst status.
    let worst = outcomes
        .iter()
        .map(|o| o.status)
        .max_by_key(|s| s.badness())
        .unwrap();
    let code = match worst {
        Status::Pass => 0,
        Status::Warn => 1,
        Status::Fail | Status::Error => 2,
    };
    assert_eq!(out.status.code(), Some(code));
    // Each outcome agrees with the machine where the test can look itself.
    let by = |id: &str| outcomes.iter().find(|o| o.id == id).unwrap();
    let ip_forward = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let want = if ip_forward.trim() == "1" {
        Status::Pass
    } else {
        Status::Fail
    };
    assert_eq!(by("ip-forward").status, want, "{:?}", by("ip-forward"));
    if !on_path("kubelet") {
        let k = by("kubelet-version");
        assert_eq!(k.status, Status::Error, "{k:?}");
        assert!(k.message.contains("`kubelet` not found"), "{k:?}");
    }
    if !Path::new("/run/systemd/system").is_dir() {
        let k = by("kubelet-running");
        assert_eq!(k.status, Status::Error, "{k:?}");
        assert!(k.message.contains("systemd"), "{k:?}");
    }
    for o in &outcomes {
        assert!(!o.message.is_empty(), "{o:?}");
        if o.status == Status::Error {
            assert_eq!(o.observed, patrol_checks::Observed::None, "{o:?}");
        }
    }

    // The same run as a table, worst first.
    let out = patrol(&["check", "--profile", "k8s-node"]);
    assert_eq!(out.status.code(), Some(code));
    let stdout = text(&out.stdout);
    let first = stdout.lines().nth(1).unwrap_or_default();
    assert!(
        first.starts_with(&worst.as_str().to_uppercase()),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with(&format!("{} checks: ", profile.len())),
        "{stdout}"
    );
}

#[test]
fn a_profile_with_a_config_runs_only_the_profile_and_honours_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        "",
        &format!(
            "{}[[check]]\nid = \"kernel-panic\"\ntype = \"sysctl\"\nkey = \"kernel.panic\"\nexpect = {{ min = 0 }}\n",
            command_check("own", FAIL, "")
        ),
    );
    let out = patrol(&[
        "check",
        "--config",
        path.to_str().unwrap(),
        "--profile",
        "k8s-node",
        "--only",
        "kernel-panic",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let outcomes = json(&out);
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].expected, ">= 0");

    let out = patrol(&[
        "check",
        "--config",
        path.to_str().unwrap(),
        "--profile",
        "k8s-node",
        "--format",
        "json",
    ]);
    let ids: Vec<String> = json(&out).into_iter().map(|o| o.id).collect();
    assert!(!ids.contains(&"own".to_string()), "{ids:?}");
    assert_eq!(
        ids.len(),
        Catalog::builtin_profile("k8s-node").unwrap().len()
    );
}
