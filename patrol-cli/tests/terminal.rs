//! What a person sees at a terminal, through the real binary: a reader
//! that closes the pipe early (`| head`) ends the command quietly with
//! 141, never a panic; an error is printed once, its causes not repeated,
//! and an error over several lines is printed as lines, never with a
//! literal `\n`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn patrol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(args)
        .output()
        .expect("run the patrol binary")
}

/// Run patrol with stdout on a real pipe closed before it writes a byte.
fn cut_off_at_once(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start patrol");
    drop(child.stdout.take());
    child.wait_with_output().expect("collect the exit")
}

/// Run patrol with stdout on a real pipe, read its first bytes, then
/// close the pipe (what `| head -1` does).
fn cut_off_after_one_line(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start patrol");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut first = [0u8; 64];
    let n = stdout.read(&mut first).expect("read the first bytes");
    assert!(n > 0, "patrol {args:?} printed nothing");
    drop(stdout);
    child.wait_with_output().expect("collect the exit")
}

fn sample(dir: &Path) -> String {
    // 10,000 nodes: the text far outgrows a pipe's buffer (64 KiB).
    let doc = patrol_report::sample::generate(10_000, 400, 7);
    let path = dir.join("sweep.json");
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_pipe_closed_early_ends_report_and_sweep_quietly_with_141() {
    let dir = tempfile::tempdir().unwrap();
    let file = sample(dir.path());
    let config = dir.path().join("patrol.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nbind = \"127.0.0.1:7946\"\nkey_file = \"{}\"\n[report]\nhistory_dir = \"{}\"\n",
            dir.path().join("cluster.key").display(),
            dir.path().join("history").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let report = vec!["report", &file, "--text", "--config", config];
    let table = vec!["sweep", "--from", &file, "--all"];
    let ndjson = vec!["sweep", "--from", &file, "--format", "ndjson"];
    for args in [&report, &table, &ndjson] {
        let out = cut_off_at_once(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
    // `| head -1`: a race by nature (the rest may already sit in the
    // pipe's buffer when it closes), so several runs; the sweeps' output
    // (over 1 MB) cannot fit, the report's text may, then it exits 0.
    for (args, codes) in [
        (&report, &[0, 141][..]),
        (&table, &[141][..]),
        (&ndjson, &[141][..]),
    ] {
        for _ in 0..4 {
            let out = cut_off_after_one_line(args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let code = out.status.code().unwrap_or(-1);
            assert!(codes.contains(&code), "{args:?}: exit {code}: {stderr}");
            assert!(stderr.is_empty(), "{args:?}: {stderr}");
        }
    }
}

#[test]
fn an_error_and_its_cause_are_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("missing/dir/cluster.key");
    let out = patrol(&["keys", "generate", "--out", key.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr.matches("(os error 2)").count(), 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_cluster_that_could_not_be_swept_says_why_in_lines_not_a_literal_newline() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("a.key");
    let out = patrol(&["keys", "generate", "--out", key.to_str().unwrap()]);
    assert!(out.status.success());
    let contexts = dir.path().join("contexts.toml");
    std::fs::write(
        &contexts,
        format!(
            "[context.a]\nseeds = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\ncluster = \"a\"\nkey_file = \"{k}\"\n\n[context.b]\nseeds = [\"127.0.0.1:3\"]\ncluster = \"b\"\nkey_file = \"{k}\"\n",
            k = key.display()
        ),
    )
    .unwrap();
    let out = patrol(&[
        "sweep",
        "--contexts-file",
        contexts.to_str().unwrap(),
        "--all-contexts",
        "--connect-timeout",
        "1s",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .contains("patrol: cluster a could not be swept: no agent answered:\n  127.0.0.1:1: "),
        "{stderr}"
    );
    assert!(stderr.contains("\n  127.0.0.1:2: "), "{stderr}");
    assert!(!stderr.contains("\\n"), "{stderr}");
}
