//! The history database: values stored only when they change, a node's
//! timeline over three sweeps, the previous sweep rebuilt for the diff,
//! sweeps stored in order, the JSON history imported, and a broken history
//! that costs the comparison but never the report.

use patrol_checks::{Observed, Status};
use patrol_config::Config;
use patrol_report::diff::FirstSeen;
use patrol_report::store::{History, Stored, SweepSummary};
use patrol_report::write_report;

mod common;
use common::{day_one, day_two, swappiness, DAY, T0};

/// Day three: node-e's swappiness was changed by hand to 60.
fn day_three() -> patrol_checks::SweepDocument {
    let mut doc = day_two();
    doc.sweep_id = "00000000000000a3".into();
    doc.started_at_unix_ms = T0 + 2 * DAY;
    let e = doc.nodes.iter_mut().find(|n| n.name == "node-e").unwrap();
    *e.checks
        .iter_mut()
        .find(|c| c.id == "vm.swappiness")
        .unwrap() = swappiness(60.0);
    doc
}

fn store(h: &mut History, doc: &patrol_checks::SweepDocument) -> Stored {
    h.store(doc, &FirstSeen::new(), SweepSummary::default(), 400)
        .unwrap()
}

#[test]
fn a_node_timeline_shows_the_sweep_in_which_a_changed_sysctl_first_differed() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(dir.path()).unwrap();
    for doc in [day_one(), day_two(), day_three()] {
        assert!(matches!(store(&mut h, &doc), Stored::Added { .. }));
    }
    let t = h.node_timeline("node-e", Some("vm.swappiness")).unwrap();
    assert_eq!(t.len(), 2, "stored only when it changed: {t:#?}");
    assert_eq!(t[0].value, "0");
    assert_eq!(t[0].sweep.as_ref().unwrap().0, "00000000000000a1");
    assert_eq!(t[0].previous_sweep, None);
    assert_eq!(t[1].value, "60");
    assert_eq!(t[1].status, "pass");
    assert_eq!(
        t[1].sweep,
        Some(("00000000000000a3".to_string(), T0 + 2 * DAY))
    );
    assert_eq!(
        t[1].previous_sweep,
        Some(("00000000000000a2".to_string(), T0 + DAY))
    );

    // Without --check: node state too, and every check.
    let all = h.node_timeline("node-e", None).unwrap();
    assert!(all.iter().any(|c| c.check == "(node)" && c.status == "ok"));
    assert!(all.iter().any(|c| c.check == "fs.file-max"));
    // A node that stopped answering and left: its last state is "gone".
    let f = h.node_timeline("node-f", None).unwrap();
    let states: Vec<&str> = f.iter().map(|c| c.status.as_str()).collect();
    assert_eq!(states, ["no_answer", "gone"]);
}

#[test]
fn the_previous_sweep_is_rebuilt_with_every_value_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(dir.path()).unwrap();
    store(&mut h, &day_one());
    store(&mut h, &day_two());
    // As of day two (the newest): day two itself, compared from day three.
    let prev = h.previous(&day_three()).unwrap().unwrap();
    let prev_doc = prev.doc.to_document();
    assert_eq!(prev.doc.sweep_id, "00000000000000a2");
    let want = day_two();
    assert_eq!(prev_doc.nodes.len(), want.nodes.len());
    for (got, want) in prev_doc.nodes.iter().zip(&want.nodes) {
        assert_eq!(got.name, want.name);
        assert_eq!(got.state, want.state);
        let mut want_checks = want.checks.clone();
        want_checks.sort_by(|a, b| a.id.cmp(&b.id));
        for (g, w) in got.checks.iter().zip(&want_checks) {
            assert_eq!(
                (&g.id, g.status, &g.observed),
                (&w.id, w.status, &w.observed)
            );
            assert_eq!(g.expected, w.expected);
            if w.status != Status::Pass {
                assert_eq!(g.message, w.message);
            }
        }
    }
    // As of day one (not the newest): rebuilt from the change rows.
    let prev = h.previous(&day_two()).unwrap().unwrap();
    let prev_doc = prev.doc.to_document();
    assert_eq!(prev.doc.sweep_id, "00000000000000a1");
    let b = prev_doc.nodes.iter().find(|n| n.name == "node-b").unwrap();
    let s = b
        .checks
        .iter()
        .find(|c| c.id == "net.core.somaxconn")
        .unwrap();
    assert_eq!(s.observed, Observed::Number(128.0));
    assert_eq!(s.status, Status::Warn);
    assert!(prev_doc.nodes.iter().any(|n| n.name == "node-g"));
}

#[test]
fn sweeps_are_stored_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(dir.path()).unwrap();
    let Stored::Added { changes } = store(&mut h, &day_one()) else {
        panic!("day one not added")
    };
    let Stored::Added { changes: two } = store(&mut h, &day_two()) else {
        panic!("day two not added")
    };
    // Day two changed: node-b somaxconn, node-d file-max and with it
    // node-d's state (ok -> failing), node-f and node-g gone. Everything
    // else is not written again.
    assert!(changes > 20, "{changes}");
    assert_eq!(two, 5);
    assert_eq!(store(&mut h, &day_two()), Stored::AlreadyStored);
    assert_eq!(store(&mut h, &day_one()), Stored::AlreadyStored);
    let mut late = day_one();
    late.sweep_id = "00000000000000a0".into();
    assert_eq!(store(&mut h, &late), Stored::Older);
}

#[test]
fn a_broken_history_gives_a_warning_and_no_previous_sweep_never_a_failed_report() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.report.history_dir = tmp.path().join("history");
    cfg.report.time_zone = Some("UTC".to_string());
    std::fs::create_dir_all(&cfg.report.history_dir).unwrap();
    std::fs::write(
        cfg.report.history_dir.join(patrol_report::store::DB_FILE),
        b"this is not an SQLite database, it was overwritten by accident",
    )
    .unwrap();
    let files = write_report(&day_two(), &cfg, &tmp.path().join("out")).expect("the report");
    assert_eq!(files.warnings.len(), 1, "{:?}", files.warnings);
    assert!(
        files.warnings[0].contains("history"),
        "{:?}",
        files.warnings
    );
    let text = std::fs::read_to_string(&files.text).unwrap();
    assert!(text.contains("no earlier sweep of this scope"), "{text}");
    assert!(
        text.contains("Warning: the history cannot be opened"),
        "{text}"
    );
}

#[test]
fn a_stored_value_that_no_longer_decodes_is_a_warning_and_no_previous_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.report.history_dir = tmp.path().join("history");
    cfg.report.time_zone = Some("UTC".to_string());
    write_report(&day_one(), &cfg, &tmp.path().join("one")).unwrap();
    {
        let db =
            rusqlite::Connection::open(cfg.report.history_dir.join(patrol_report::store::DB_FILE))
                .unwrap();
        db.execute("UPDATE obs SET observed = '{not json'", [])
            .unwrap();
    }
    let files = write_report(&day_two(), &cfg, &tmp.path().join("two")).expect("the report");
    assert_eq!(files.warnings.len(), 1, "{:?}", files.warnings);
    assert!(
        files.warnings[0].contains("previous sweep cannot be read"),
        "{:?}",
        files.warnings
    );
    let text = std::fs::read_to_string(&files.text).unwrap();
    assert!(text.contains("no earlier sweep of this scope"), "{text}");
}

#[test]
fn a_json_history_is_imported_oldest_first_and_broken_files_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old-history/prod-0123456789abcdef");
    std::fs::create_dir_all(&old).unwrap();
    for (name, doc) in [
        ("20261123-030000-00000000000000a2.json", day_two()),
        ("20261122-030000-00000000000000a1.json", day_one()),
    ] {
        std::fs::write(old.join(name), serde_json::to_vec(&doc).unwrap()).unwrap();
    }
    let mut seen = FirstSeen::new();
    seen.insert("fs.file-max\u{1f}fail\u{1f}65536".into(), T0 - DAY);
    std::fs::write(
        old.join("20261123-030000-00000000000000a2.seen.json"),
        serde_json::to_vec(&seen).unwrap(),
    )
    .unwrap();
    std::fs::write(
        old.join("20261121-030000-0000000000000099.json"),
        b"{ truncated",
    )
    .unwrap();

    let mut h = History::open(&tmp.path().join("db")).unwrap();
    let done =
        patrol_report::history::import_dir(&mut h, &tmp.path().join("old-history"), 400).unwrap();
    assert_eq!((done.stored, done.already, done.older), (2, 0, 0));
    assert_eq!(done.warnings.len(), 1, "{:?}", done.warnings);
    assert!(
        done.warnings[0].contains("0000000000000099"),
        "{:?}",
        done.warnings
    );
    let prev = h.previous(&day_three()).unwrap().unwrap();
    assert_eq!(prev.doc.sweep_id, "00000000000000a2");
    assert_eq!(
        prev.first_seen, seen,
        "the stored first-seen times came along"
    );
    // The trend has both sweeps, oldest first, with their group counts.
    let trend = h.trend(&day_three(), 30).unwrap();
    let ids: Vec<&str> = trend.iter().map(|p| p.sweep_id.as_str()).collect();
    assert_eq!(ids, ["00000000000000a1", "00000000000000a2"]);
    assert_eq!(trend[0].groups, 2);
    assert_eq!(trend[0].unreachable, 2);
    // Importing again stores nothing twice.
    let again =
        patrol_report::history::import_dir(&mut h, &tmp.path().join("old-history"), 400).unwrap();
    assert_eq!((again.stored, again.already), (0, 2));
}

#[test]
fn persisting_groups_say_since_when_from_the_database() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.report.history_dir = tmp.path().join("history");
    cfg.report.time_zone = Some("UTC".to_string());
    for (i, doc) in [day_one(), day_two(), day_three()].iter().enumerate() {
        let f = write_report(doc, &cfg, &tmp.path().join(format!("d{i}"))).unwrap();
        assert!(f.warnings.is_empty(), "{:?}", f.warnings);
    }
    let text = std::fs::read_to_string(tmp.path().join("d2/report.txt")).unwrap();
    assert!(
        text.contains("[persisting since 2026-11-22 03:00 UTC] fs.file-max = 65536"),
        "{text}"
    );
    assert!(
        text.contains("[persisting since 2026-11-23 03:00 UTC] fs.file-max = 8192"),
        "{text}"
    );
    assert!(
        text.contains("vm.swappiness: 0 on 3 nodes, 60 on 2 (node-c, node-e)"),
        "{text}"
    );
}

#[test]
fn a_check_a_node_stopped_reporting_is_gone_and_a_silent_node_keeps_its_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(dir.path()).unwrap();
    store(&mut h, &day_one());
    // Day two: node-a no longer reports vm.swappiness; node-c is silent.
    let mut two = day_one();
    two.sweep_id = "00000000000000b2".into();
    two.started_at_unix_ms = T0 + DAY;
    let a = two.nodes.iter_mut().find(|n| n.name == "node-a").unwrap();
    a.checks.retain(|c| c.id != "vm.swappiness");
    let c = two.nodes.iter_mut().find(|n| n.name == "node-c").unwrap();
    c.state = patrol_checks::NodeState::NoAnswer;
    c.checks.clear();
    // node-a's check gone, node-c's state: nothing else changed.
    assert_eq!(store(&mut h, &two), Stored::Added { changes: 2 });
    let swappiness_of = |h: &History, node: &str| -> Vec<String> {
        h.node_timeline(node, Some("vm.swappiness"))
            .unwrap()
            .into_iter()
            .map(|c| format!("{} {}", c.status, c.value))
            .collect()
    };
    assert_eq!(swappiness_of(&h, "node-a"), ["pass 0", "gone (nothing)"]);
    // A silent node observed nothing: its last values stand.
    assert_eq!(swappiness_of(&h, "node-c"), ["pass 60"]);
    let mut three = day_one();
    three.sweep_id = "00000000000000b3".into();
    three.started_at_unix_ms = T0 + 2 * DAY;
    let prev = h.previous(&three).unwrap().unwrap().doc.to_document();
    let a = prev.nodes.iter().find(|n| n.name == "node-a").unwrap();
    assert!(a.checks.iter().all(|c| c.id != "vm.swappiness"), "{a:?}");
    assert_eq!(a.checks.len(), 2);
    let c = prev.nodes.iter().find(|n| n.name == "node-c").unwrap();
    assert_eq!(c.state, patrol_checks::NodeState::NoAnswer);
    // Reported again, the check is current again; node-c answers again.
    assert_eq!(store(&mut h, &three), Stored::Added { changes: 2 });
    assert_eq!(
        swappiness_of(&h, "node-a"),
        ["pass 0", "gone (nothing)", "pass 0"]
    );
    let prev = h.previous(&day_three_after(&three)).unwrap().unwrap();
    assert_eq!(prev.doc.to_document().nodes, {
        let mut want = three.clone();
        for n in &mut want.nodes {
            strip_to_stored(n);
        }
        want.nodes
    });
}

/// A sweep a day after `doc`, of the same scope.
fn day_three_after(doc: &patrol_checks::SweepDocument) -> patrol_checks::SweepDocument {
    let mut next = doc.clone();
    next.sweep_id = format!("{}f", doc.sweep_id);
    next.started_at_unix_ms += DAY;
    next
}

/// `n` as the history rebuilds it: no timings, checks by id, no message
/// for a passing check, no checks for a node that did not answer.
fn strip_to_stored(n: &mut patrol_checks::NodeEntry) {
    n.reached_ms = None;
    n.answered_ms = None;
    n.checks_ms = None;
    n.clock = None;
    n.silence = None;
    n.swim = None;
    n.checks.sort_by(|a, b| a.id.cmp(&b.id));
    for c in &mut n.checks {
        c.duration_us = 0;
        if c.status == Status::Pass {
            c.message.clear();
        }
    }
}

/// `patrol history import` orders the files by the start of their sweep,
/// read from each file (wherever the field is in it), never by name or
/// listing order; a file that is cut short, and one whose head reads but
/// whose nodes do not, are each named with the problem, and the others
/// are still imported.
#[test]
fn an_import_goes_by_each_documents_start_and_names_every_broken_file() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old-history");
    std::fs::create_dir_all(old.join("prod-0123456789abcdef")).unwrap();
    // File names in the opposite order of the sweeps' starts.
    let write = |name: &str, doc: &patrol_checks::SweepDocument| {
        // Through a `Value`: its keys come out sorted, so `nodes` comes
        // before `started_at_unix_ms` and `sweep_id`.
        let value = serde_json::to_value(doc).unwrap();
        std::fs::write(old.join(name), serde_json::to_vec(&value).unwrap()).unwrap();
    };
    write("a.json", &day_three());
    write("prod-0123456789abcdef/b.json", &day_two());
    write("c.json", &day_one());
    let text = serde_json::to_string(&day_one()).unwrap();
    // A sweep of its own (its id is new), whose first node's state no
    // Patrol knows.
    let mut head_ok = serde_json::from_str::<serde_json::Value>(&text).unwrap();
    head_ok["sweep_id"] = "00000000000000c1".into();
    let head_ok = serde_json::to_string(&head_ok).unwrap();
    let bad_node = head_ok.replacen("\"state\":\"ok\"", "\"state\":\"sideways\"", 1);
    assert_ne!(bad_node, head_ok);
    std::fs::write(old.join("0-head-ok.json"), bad_node).unwrap();
    std::fs::write(old.join("0-cut-short.json"), &text[..text.len() / 2]).unwrap();

    let mut h = History::open(&tmp.path().join("db")).unwrap();
    let done = patrol_report::history::import_dir(&mut h, &old, 400).unwrap();
    assert_eq!(
        (done.stored, done.already, done.older),
        (3, 0, 0),
        "{done:?}"
    );
    assert_eq!(done.warnings.len(), 2, "{:?}", done.warnings);
    let warned = |file: &str, problem: &str| {
        done.warnings
            .iter()
            .any(|w| w.starts_with("skipped: ") && w.contains(file) && w.contains(problem))
    };
    assert!(warned("0-cut-short.json", "EOF"), "{:?}", done.warnings);
    assert!(
        warned("0-head-ok.json", "unknown variant `sideways`"),
        "{:?}",
        done.warnings
    );
    let trend = h.trend(&day_three(), 30).unwrap();
    let ids: Vec<&str> = trend.iter().map(|p| p.sweep_id.as_str()).collect();
    assert_eq!(
        ids,
        ["00000000000000a1", "00000000000000a2", "00000000000000a3"]
    );
    // Each compared with the one before: node-e's swappiness changed on
    // day three, and the timeline says between which sweeps.
    let t = h.node_timeline("node-e", Some("vm.swappiness")).unwrap();
    assert_eq!(t.len(), 2, "{t:#?}");
    assert_eq!(
        t[1].previous_sweep,
        Some(("00000000000000a2".to_string(), T0 + DAY))
    );
}
