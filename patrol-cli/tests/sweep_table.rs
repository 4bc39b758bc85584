//! `patrol sweep --from FILE` through the real binary: nodes with the same
//! problems share a row whenever that is shorter; a 10,000-node sweep groups failing nodes with the
//! same problems into one row (bounded, a screenful), `--all` lists every
//! node, and `--distribution` shows how a check's values spread.

use std::path::Path;
use std::process::{Command, Output};

fn patrol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(args)
        .output()
        .expect("run the patrol binary")
}

fn write(dir: &Path, nodes: usize, anomalies: usize) -> String {
    let doc = patrol_report::sample::generate(nodes, anomalies, 42);
    let path = dir.join(format!("sweep-{nodes}.json"));
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

/// Nodes share a row exactly when that makes the table shorter: in this
/// 30-node sample node-00009 and node-00029 have the same problem; without
/// node-00029 every failing node has its own problems and its own row.
#[test]
fn a_small_sweep_shares_rows_only_where_nodes_share_their_problems() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), 30, 6);
    let out = patrol(&["sweep", "--from", &file]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("share a row"), "{stdout}");
    let shared = stdout
        .lines()
        .find(|l| l.contains("node-00009, node-00029"))
        .unwrap_or_else(|| panic!("no shared row:\n{stdout}"));
    assert!(shared.starts_with("2 "), "{shared}");
    assert_eq!(out.status.code(), Some(2), "{stdout}");

    let mut doc = patrol_report::sample::generate(30, 6, 42);
    doc.nodes.retain(|n| n.name != "node-00029");
    doc.recount();
    let path = dir.path().join("distinct.json");
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = patrol(&["sweep", "--from", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("NODE  "), "{stdout}");
    assert!(!stdout.contains("share a row"), "{stdout}");
    assert!(stdout.contains("node-00009"), "{stdout}");
    assert_eq!(out.status.code(), Some(2), "{stdout}");
}

#[test]
fn ten_thousand_nodes_fit_a_screen_grouped_by_problem_set_and_all_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), 10_000, 400);
    let out = patrol(&["sweep", "--from", &file]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = stdout.lines().count();
    assert!(lines < 70, "{lines} lines:\n{stdout}");
    assert!(stdout.contains("nodes with the same problems share a row"));
    let first = stdout
        .lines()
        .find(|l| l.starts_with("NODES"))
        .expect("a grouped table");
    assert!(first.contains("NOT PASSING"), "{first}");
    // Silent and down nodes come first, each state as one row with a count.
    let rows: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("NODES"))
        .skip(1)
        .take(2)
        .collect();
    assert!(rows[0].contains("down"), "{rows:?}");
    assert!(rows[1].contains("no_answer"), "{rows:?}");
    // Counts in the rows add up to every node not ok (when nothing is cut).
    let counted: u64 = stdout
        .lines()
        .skip_while(|l| !l.starts_with("NODES"))
        .skip(1)
        .take_while(|l| !l.starts_with('('))
        .map(|l| l.split_whitespace().next().unwrap().parse::<u64>().unwrap())
        .sum();
    let doc = patrol_report::sample::generate(10_000, 400, 42);
    assert_eq!(counted, doc.counts.expected - doc.counts.ok);

    let all = patrol(&["sweep", "--from", &file, "--all"]);
    let all = String::from_utf8_lossy(&all.stdout);
    assert!(all.lines().count() > 10_000, "--all lists every node");
    assert!(all.contains("node-09999"));
}

#[test]
fn distribution_shows_top_values_with_sample_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), 2_000, 50);
    let out = patrol(&[
        "sweep",
        "--from",
        &file,
        "--distribution",
        "sysctl.vm.swappiness",
        "--distribution",
        "no.such.check",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let at = stdout
        .find("sysctl.vm.swappiness: ")
        .expect("a distribution");
    let section = &stdout[at..];
    let mut lines = section.lines().skip(1);
    assert!(
        lines.next().unwrap().trim_start().starts_with("0 "),
        "{section}"
    );
    assert!(
        lines.next().unwrap().trim_start().starts_with("60 "),
        "{section}"
    );
    assert!(stdout.contains("no.such.check: no node that answered ran this check"));
}

#[test]
fn without_from_a_sweep_needs_a_seed() {
    let out = patrol(&["sweep"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seed"));
}

/// Issue 14: a silent node's row says why (its agent runs but did not
/// answer, or the mesh cannot reach it), and a clock the sweep measured
/// off is a problem in the table like any other.
#[test]
fn silent_nodes_say_why_and_a_skewed_clock_is_listed() {
    use patrol_checks::{NodeState, Observed, Silence, Status, SwimState};
    use patrol_report::sample::{document, node, outcome};
    let mut hung = node("hung", &[], NodeState::NoAnswer, vec![]);
    hung.silence = Some(Silence {
        last_heard_ago_ms: Some(180),
        swim: SwimState::Alive,
        backstop_requests: 2,
    });
    let mut lost = node("lost", &[], NodeState::NoAnswer, vec![]);
    lost.silence = Some(Silence {
        last_heard_ago_ms: Some(9_000),
        swim: SwimState::Suspect,
        backstop_requests: 2,
    });
    let mut skew = outcome(
        "patrol.clock_skew",
        Status::Fail,
        Observed::Text("ahead".into()),
        "within 1000 ms of the coordinator's clock",
    );
    skew.message =
        "clock 3004 ms ahead of the coordinator's (± 2 ms), measured by the sweep".into();
    let skewed = node("skewed", &[], NodeState::Failing, vec![skew]);
    let fine = node("fine", &[], NodeState::Ok, vec![]);
    let mut doc = document("prod", "01", 0, vec![fine, hung, lost, skewed]);
    doc.timing.completed_ms = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sweep.json");
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = patrol(&["sweep", "--from", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"))
            .to_string()
    };
    assert!(
        row("hung").contains("agent up, no answer: alive, last heard 180 ms before the end"),
        "{stdout}"
    );
    assert!(
        row("lost").contains("unreachable: suspect, last heard 9.00 s before the end"),
        "{stdout}"
    );
    assert!(row("skewed").contains("fail patrol.clock_skew"), "{stdout}");
    assert!(
        stdout.contains("patrol.clock_skew: clock 3004 ms ahead of the coordinator's"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(2));
}

/// A certified sweep: the row of a node that answered although SWIM said
/// it was down says so, and the summary names the nodes gone from the
/// coordinator's roster with when they were last seen.
#[test]
fn swim_disagreement_and_gone_nodes_are_said_in_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roster.json");
    let doc = patrol_report::sample::with_roster();
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = patrol(&["sweep", "--from", path.to_str().unwrap(), "--all"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("node-03 (answered; SWIM said down)  ok ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nSWIM disagreed with 1 answer: node-03 (answered; SWIM said down)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n2 gone from the roster: node-9 (forgotten, last seen 2026-11-2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("node-7 (expired, last seen 2026-11-15 "),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(2), "{stdout}");
}
