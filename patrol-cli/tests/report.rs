//! `patrol report` through the real binary: the text and HTML of a stored
//! sweep compared with an older one; a send to an SMTP server that is not
//! there keeps the report on disk with exit code 4, and `--send` of the
//! kept `.eml` delivers it once a real server (aiosmtpd) is up.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use patrol_checks::{NodeState, Observed, Status, SweepDocument};
use patrol_report::sample::{document, node, outcome};

#[path = "../../report/tests/common/smtp.rs"]
mod smtp;
use smtp::{closed_port, SmtpSink};

const T0: u64 = 1_795_316_400_000; // 2026-11-22 03:00 UTC
const DAY: u64 = 86_400_000;

fn patrol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(args)
        .env("PATROL_LOG", "error")
        // Times follow the system zone unless the config names one.
        .env("TZ", "UTC")
        .output()
        .expect("run the patrol binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn file_max(v: f64) -> patrol_checks::CheckOutcome {
    let status = if v >= 1_048_576.0 {
        Status::Pass
    } else {
        Status::Fail
    };
    outcome("fs.file-max", status, Observed::Number(v), ">= 1048576")
}

/// Three workers; `low` of them have a low fs.file-max; node-z is down.
fn sweep(id: &str, at: u64, low: &[&str]) -> SweepDocument {
    let w = [("role", "worker")];
    let mut nodes: Vec<_> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|n| {
            let v = if low.contains(n) {
                65_536.0
            } else {
                2_097_152.0
            };
            node(n, &w, NodeState::Ok, vec![file_max(v)])
        })
        .collect();
    nodes.push(node("node-z", &w, NodeState::Down, vec![]));
    document("prod", id, at, nodes)
}

fn write_json(dir: &Path, name: &str, doc: &SweepDocument) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    p
}

fn write_config(dir: &Path, port: u16) -> PathBuf {
    let p = dir.join("patrol.toml");
    let body = format!(
        r#"[mail]
smtp_host = "127.0.0.1"
smtp_port = {port}
security = "plain"
from = "Patrol <patrol@fleet.example.test>"
to = ["ops-a@example.test", "ops-b@example.test"]

[report]
history_dir = "{h}"
out_dir = "{o}"
"#,
        h = dir.join("history").display(),
        o = dir.join("reports").display(),
    );
    fs::write(&p, body).unwrap();
    p
}

#[test]
fn report_times_follow_the_configured_time_zone() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), 25);
    let body = fs::read_to_string(&cfg).unwrap();
    fs::write(&cfg, format!("{body}time_zone = \"Asia/Tokyo\"\n")).unwrap();
    // 2026-11-21 23:00 UTC is 2026-11-22 08:00 in Tokyo.
    let at = T0 - 4 * 3_600_000;
    let old = write_json(tmp.path(), "old.json", &sweep("t1", at - DAY, &["node-a"]));
    let new = write_json(tmp.path(), "new.json", &sweep("t2", at, &["node-a"]));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let html = tmp.path().join("r.html");
    let out = patrol(&[
        "report",
        &s(&new),
        "--against",
        &s(&old),
        "--config",
        &s(&cfg),
        "--text",
        "--html",
        &s(&html),
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(
        t.starts_with("[patrol] prod: 1 anomaly (0 new), 1 unreachable - 2026-11-22"),
        "{t}"
    );
    assert!(t.contains("2026-11-22 08:00 JST"), "{t}");
    assert!(
        t.contains("compared with sweep t1 of 2026-11-21 08:00 JST"),
        "{t}"
    );
    assert!(t.contains("persisting since 2026-11-21 08:00 JST]"), "{t}");
    assert!(!t.contains("UTC"), "{t}");
    let h = fs::read_to_string(&html).unwrap();
    assert!(h.contains("2026-11-22 08:00 JST"), "{h}");

    // A zone that does not exist is a config problem, named with its key.
    fs::write(&cfg, format!("{body}time_zone = \"Mars/Olympus\"\n")).unwrap();
    let out = patrol(&["report", &s(&new), "--config", &s(&cfg)]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("report.time_zone"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn renders_text_and_html_against_an_older_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), 25);
    // The times the report shows, whatever this machine's zone.
    let body = fs::read_to_string(&cfg).unwrap();
    fs::write(&cfg, format!("{body}time_zone = \"UTC\"\n")).unwrap();
    let old = write_json(
        tmp.path(),
        "old.json",
        &sweep("a1", T0, &["node-a", "node-b"]),
    );
    let new = write_json(tmp.path(), "new.json", &sweep("a2", T0 + DAY, &["node-a"]));
    let s = |p: &Path| p.to_str().unwrap().to_string();

    let out = patrol(&[
        "report",
        &s(&new),
        "--against",
        &s(&old),
        "--config",
        &s(&cfg),
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(
        t.starts_with("[patrol] prod: 1 anomaly (0 new), 1 unreachable - 2026-11-23"),
        "{t}"
    );
    assert!(
        t.contains("[FAIL] [persisting since 2026-11-22 03:00 UTC] fs.file-max = 65536, expected >= 1048576 - 1 node"),
        "{t}"
    );
    assert!(t.contains("[DOWN] node-z"), "{t}");
    // node-b fixed its value; node-a did not.
    assert!(t.contains("RESOLVED SINCE THE LAST SWEEP (0)"), "{t}");

    // Without --against nor history: everything is new.
    let html = tmp.path().join("r.html");
    let out = patrol(&[
        "report",
        &s(&new),
        "--html",
        &s(&html),
        "--config",
        &s(&cfg),
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "no text unless --text");
    let h = fs::read_to_string(&html).unwrap();
    assert!(h.starts_with("<!DOCTYPE html>"));
    assert!(
        h.contains("fs.file-max = 65536, expected &#62;= 1048576"),
        "{h}"
    );
    assert!(h.contains(">NEW<"));
    assert!(!h.contains("<script"));
}

#[test]
fn a_missing_sweep_file_is_named_with_exit_code_3() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.json");
    let out = patrol(&[
        "report",
        missing.to_str().unwrap(),
        "--config",
        write_config(tmp.path(), 25).to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("nope.json"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
#[ignore = "full tier: needs python3-aiosmtpd (a real SMTP server)"]
fn an_unreachable_smtp_server_keeps_the_report_then_send_delivers_it() {
    let tmp = tempfile::tempdir().unwrap();
    let doc = write_json(tmp.path(), "sweep.json", &sweep("a1", T0, &["node-a"]));
    let cfg = write_config(tmp.path(), closed_port());
    let out = patrol(&[
        "report",
        "--send",
        doc.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "stderr: {err}");
    let dir = tmp.path().join("reports/20261122-030000-a1");
    let eml = dir.join("message.eml");
    assert!(err.contains(&format!("kept in {}", dir.display())), "{err}");
    // The command to send it later names the config its [mail] is in,
    // and is said once.
    let later = format!(
        "patrol report --send {} --config {}",
        eml.display(),
        cfg.display()
    );
    assert_eq!(err.matches(&later).count(), 1, "{err}");
    for f in [
        "report.html",
        "report.txt",
        "nodes.csv",
        "sweep.json",
        "message.eml",
    ] {
        assert!(dir.join(f).is_file(), "{f} not kept");
    }

    // The server is back: send the kept message.
    let sink = SmtpSink::start();
    let cfg = write_config(tmp.path(), sink.port);
    let out = patrol(&[
        "report",
        "--send",
        eml.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ops-a@example.test, ops-b@example.test"));
    assert!(dir.join("message.sent.eml").is_file() && !eml.exists());
    let mail = &sink.wait_for(1)[0];
    assert_eq!(
        mail.header("Subject"),
        "[patrol] prod: 1 anomaly (1 new), 1 unreachable - 2026-11-22"
    );
    assert_eq!(
        &mail.envelope[1..],
        ["ops-a@example.test", "ops-b@example.test"]
    );
    assert!(mail.body("text/html").contains("node-a"));
    assert!(mail.body("text/csv").contains("node-z,"));
}
