//! `patrol history` through the real binary, over three sweeps stored the
//! way the nightly job stores them: a node's timeline names the sweep in
//! which a hand-changed sysctl first differed, a check's count over time,
//! and the import of a JSON history.

use std::path::Path;
use std::process::{Command, Output};

use patrol_checks::{NodeState, Observed, Status, SweepDocument};
use patrol_config::Config;
use patrol_report::sample::{document, node, outcome};

const T0: u64 = 1_795_316_400_000; // 2026-11-22 03:00 UTC
const DAY: u64 = 86_400_000;

fn patrol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(args)
        .output()
        .expect("run the patrol binary")
}

/// Day `day` of a three-node fleet; node-2's ip_forward was turned off by
/// hand before day 2 (the third sweep).
fn sweep(day: u64) -> SweepDocument {
    let nodes = (0..3)
        .map(|i| {
            let forward = if i == 2 && day >= 2 { 0.0 } else { 1.0 };
            let status = if forward == 1.0 {
                Status::Pass
            } else {
                Status::Fail
            };
            node(
                &format!("node-{i}"),
                &[],
                NodeState::Ok,
                vec![outcome(
                    "ip-forward",
                    status,
                    Observed::Number(forward),
                    "= 1",
                )],
            )
        })
        .collect();
    document(
        "prod",
        &format!("00000000000000d{day}"),
        T0 + day * DAY,
        nodes,
    )
}

fn store_three(history: &Path, out: &Path) {
    let mut cfg = Config::default();
    cfg.report.history_dir = history.to_path_buf();
    for day in 0..3 {
        patrol_report::write_report(&sweep(day), &cfg, &out.join(format!("r{day}"))).unwrap();
    }
}

#[test]
fn history_node_names_the_sweep_in_which_a_changed_sysctl_first_differed() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    store_three(&history, dir.path());
    let h = history.to_str().unwrap();
    let out = patrol(&[
        "history",
        "node",
        "node-2",
        "--check",
        "ip-forward",
        "--history-dir",
        h,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "node-2 in scope: profile k8s-node");
    assert_eq!(lines[1], "  ip-forward");
    assert!(
        lines[2].contains("pass 1")
            && lines[2].contains("first recorded in sweep 00000000000000d0 (2026-11-22 03:00 UTC)"),
        "{stdout}"
    );
    assert!(
        lines[3].contains("fail 0")
            && lines[3].contains(
                "changed between sweep 00000000000000d1 (2026-11-23 03:00 UTC) and sweep 00000000000000d2 (2026-11-24 03:00 UTC)"
            ),
        "{stdout}"
    );
    assert_eq!(lines.len(), 5, "the value changed once: {stdout}");

    let out = patrol(&["history", "check", "ip-forward", "--history-dir", h]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let counts: Vec<&str> = stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(4).unwrap())
        .collect();
    assert_eq!(counts, ["0", "0", "1"], "{stdout}");

    let out = patrol(&["history", "node", "node-9", "--history-dir", h]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn history_import_takes_a_json_history_and_skips_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old/prod-0011223344556677");
    std::fs::create_dir_all(&old).unwrap();
    for day in 0..3 {
        let doc = sweep(day);
        std::fs::write(
            old.join(format!("2026112{}-030000-{}.json", 2 + day, doc.sweep_id)),
            serde_json::to_vec(&doc).unwrap(),
        )
        .unwrap();
    }
    std::fs::write(old.join("20261121-030000-00000000000000ff.json"), "{").unwrap();
    let db = dir.path().join("db");
    let out = patrol(&[
        "history",
        "import",
        dir.path().join("old").to_str().unwrap(),
        "--history-dir",
        db.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("imported 3 sweeps"), "{stdout}");
    assert!(stdout.contains("1 files skipped"), "{stdout}");
    assert!(stderr.contains("00000000000000ff"), "{stderr}");
    let out = patrol(&[
        "history",
        "node",
        "node-2",
        "--history-dir",
        db.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("and sweep 00000000000000d2"), "{stdout}");
}

#[test]
fn queries_and_rendering_never_create_the_history_they_only_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history");
    let file = db.join("history.sqlite");
    for args in [
        vec!["history", "node", "node-2"],
        vec!["history", "check", "ip-forward"],
    ] {
        let mut args = args;
        args.extend(["--history-dir", db.to_str().unwrap()]);
        let out = patrol(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}");
        assert!(
            stdout.contains(&format!(
                "nothing stored (no history database at {})",
                file.display()
            )),
            "{stdout}"
        );
        assert!(!db.exists(), "{args:?} created {}", db.display());
    }
    // `patrol report FILE` compares with the history, and reads only.
    let doc = dir.path().join("sweep.json");
    std::fs::write(&doc, serde_json::to_vec(&sweep(0)).unwrap()).unwrap();
    let config = dir.path().join("patrol.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nbind = \"127.0.0.1:7946\"\nkey_file = \"{}\"\n[report]\nhistory_dir = \"{}\"\n",
            dir.path().join("cluster.key").display(),
            db.display()
        ),
    )
    .unwrap();
    let out = patrol(&[
        "report",
        doc.to_str().unwrap(),
        "--text",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!db.exists(), "patrol report created {}", db.display());
}
