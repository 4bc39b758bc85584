//! `patrol demo` end to end, without root: 25 agents on loopback, each
//! reading its own fixture tree, two sweeps with a change between them.
//! The second report tells the whole story: a new, a persisting and a
//! resolved anomaly, drift, a silent node, a distribution with spread and
//! units, and a trend chart; and nothing the story did not put there.

use std::path::{Path, PathBuf};
use std::process::Command;

use patrol_checks::{NodeState, Status, SweepDocument};

/// The report folders the demo wrote, oldest first (their names start
/// with the sweep's date and time).
fn report_folders(out: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("sweep.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn document(dir: &Path) -> SweepDocument {
    serde_json::from_slice(&std::fs::read(dir.join("sweep.json")).unwrap()).unwrap()
}

#[test]
fn the_default_demo_tells_new_persisting_resolved_drift_and_a_silent_node() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(["demo", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // What the fixture trees cannot answer is said, not hidden.
    assert!(
        stderr.contains("left out on the fixture trees: kubelet-running"),
        "{stderr}"
    );

    let folders = report_folders(dir.path());
    assert_eq!(folders.len(), 2, "{folders:?}");
    let (first, second) = (document(&folders[0]), document(&folders[1]));
    assert!(first.started_at_unix_ms < second.started_at_unix_ms);
    assert_eq!((first.counts.expected, first.counts.ok), (25, 19));
    // Every check that ran observed something from its tree: the only
    // anomalies are the story's.
    for node in first.nodes.iter().chain(&second.nodes) {
        for c in &node.checks {
            assert_ne!(c.status, Status::Error, "{}: {c:?}", node.name);
            assert_ne!(c.id, "kubelet-running", "{}: left out", node.name);
        }
    }
    let silent: Vec<&str> = second
        .nodes
        .iter()
        .filter(|n| matches!(n.state, NodeState::NoAnswer | NodeState::Down))
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(silent, ["demo-24"]);

    let text = std::fs::read_to_string(folders[1].join("report.txt")).unwrap();
    for part in [
        "[FAIL] [NEW] ip-forward = 0, expected = 1 - 1 node",
        "] vm-overcommit-memory = 0, expected = 1 - 3 nodes",
        "] kubelet-version = 1.27.9-1.1, expected version >= 1.28 - 2 nodes",
        "[RESOLVED] inotify-max-user-instances = 128",
        "UNREACHABLE (1)",
        "demo-24 (127.0.0.1:",
        "[DRIFT] kubelet-config-hash = ",
        "kubelet-package: 1.30.4-1.1 on 22 nodes, 1.27.9-1.1 on 2 (demo-05, demo-08)",
        "memory-available: 24 different values; min 35%, p50 ",
    ] {
        assert!(text.contains(part), "no `{part}` in:\n{text}");
    }
    // Both persisting groups are persisting, not new.
    assert_eq!(text.matches("[persisting since ").count(), 2, "{text}");
    assert!(text.contains("compared with sweep "), "{text}");
    // The trend chart of the two sweeps sits next to the report.
    assert!(folders[1].join("trend.png").is_file());
    let html = std::fs::read_to_string(folders[1].join("report.html")).unwrap();
    assert!(html.contains("trend.png"), "no chart in the HTML report");
}
