//! What the CLI writes is private to its owner and group whatever the
//! umask (issue 22, item 7): through the real binary under `umask 022`,
//! the sweep JSON, the history database, the report folder with its
//! `report.html`, `nodes.csv` and `message.eml`, and the files of
//! `patrol report` are mode 0640 in folders of mode 0750.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use patrol_checks::{NodeState, Observed, Status};
use patrol_report::sample::{document, node, outcome};

/// Run `patrol ARGS` under `umask 022` (through `sh`: setting a child's
/// umask needs no unsafe code there).
fn patrol_umask_022(args: &[&str]) {
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_patrol"))
        .args(args)
        .env("PATROL_LOG", "error")
        .env("TZ", "UTC")
        .output()
        .expect("run sh and the patrol binary");
    // 0, 1 and 2 say what the sweep found; 3 and up that Patrol failed.
    assert!(
        matches!(out.status.code(), Some(0..=2)),
        "patrol {args:?}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every file and folder under `root` with a mode other than 0640/0750.
fn too_open(root: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if mode(&path) != 0o750 {
                found.push(format!("{} {:o}", path.display(), mode(&path)));
            }
            too_open(&path, found);
        } else if mode(&path) != 0o640 {
            found.push(format!("{} {:o}", path.display(), mode(&path)));
        }
    }
}

#[test]
fn sweep_results_history_reports_and_mail_are_0640_in_0750_folders_under_umask_022() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let doc = document(
        "prod",
        "0123456789abcdef",
        1_795_316_400_000,
        vec![node(
            "node-a",
            &[("role", "worker")],
            NodeState::Failing,
            vec![outcome(
                "fs.file-max",
                Status::Fail,
                Observed::Number(65_536.0),
                ">= 1048576",
            )],
        )],
    );
    std::fs::write(d("in.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
    let state = dir.path().join("state");
    std::fs::write(
        d("patrol.toml"),
        format!(
            "[report]\nhistory_dir = \"{0}/history\"\nout_dir = \"{0}/reports\"\n\n[mail]\nfrom = \"patrol@example.test\"\nto = [\"ops@example.test\"]\n",
            state.display()
        ),
    )
    .unwrap();
    patrol_umask_022(&[
        "sweep",
        "--from",
        &d("in.json"),
        "--out",
        &d("sweep.json"),
        "--config",
        &d("patrol.toml"),
        "--email",
    ]);
    patrol_umask_022(&[
        "report",
        &d("sweep.json"),
        "--html",
        &d("report.html"),
        "--csv",
        &d("nodes.csv"),
    ]);
    for f in ["sweep.json", "report.html", "nodes.csv"] {
        assert_eq!(mode(&dir.path().join(f)), 0o640, "{f}");
    }
    let reports: Vec<_> = std::fs::read_dir(state.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    for f in ["report.html", "nodes.csv", "sweep.json", "message.eml"] {
        assert!(reports[0].join(f).exists(), "{f} missing in {reports:?}");
    }
    assert!(state.join("history/history.sqlite").exists());
    assert_eq!(mode(&state), 0o750);
    let mut found = Vec::new();
    too_open(&state, &mut found);
    assert!(found.is_empty(), "readable by others: {found:#?}");
}
