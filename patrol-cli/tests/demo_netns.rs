//! `patrol demo --netns` end to end (root, iproute2): twelve real agent
//! processes in their own network namespaces with their own sysctls; the
//! second report shows a persisting and a resolved failure, the killed
//! node unreachable, and the namespaces whose somaxconn differs as drift.

use std::process::Command;

#[test]
#[ignore = "full tier: needs root and iproute2 (network namespaces)"]
fn namespaced_agents_that_differ_are_reported_as_drift() {
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    assert!(
        root,
        "this test creates network namespaces: run it as root (CI does)"
    );
    assert!(
        Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success()),
        "this test needs the ip command: apt-get install iproute2"
    );
    let agent = std::path::Path::new(env!("CARGO_BIN_EXE_patrol")).with_file_name("patrol-agent");
    assert!(
        agent.is_file(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        agent.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(["demo", "--netns", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let first = std::fs::read_to_string(dir.path().join("report-1/report.txt")).unwrap();
    assert!(
        first.contains("[FAIL] [NEW] ip-forward = 0, expected = 1 - 1 node"),
        "{first}"
    );
    assert!(
        first.contains("[DRIFT] somaxconn = 128 on 1 node, 4096 on 10 others (peers: role=worker)"),
        "{first}"
    );

    let second = std::fs::read_to_string(dir.path().join("report-2/report.txt")).unwrap();
    assert!(
        second.contains("] syncookies = 0, expected = 1 - 1 node"),
        "{second}"
    );
    assert!(second.contains("[WARN] [persisting since "), "{second}");
    assert!(second.contains("[RESOLVED] ip-forward = 0"), "{second}");
    assert!(second.contains("ns-node-11 (10.77.0.12:7946)"), "{second}");
    assert!(
        second.contains("[DRIFT] somaxconn = 128 on 1 node, 4096 on 8 others"),
        "{second}"
    );
    assert!(
        second.contains("[DRIFT] somaxconn = 512 on 1 node, 4096 on 8 others"),
        "{second}"
    );
    // Every namespace is gone again.
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains("patrol-demo"),
        "namespaces left behind"
    );
}
