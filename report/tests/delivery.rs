//! `write_report`: the files of a report, and the history it keeps so
//! that the next sweep of the same scope is compared with this one.

use patrol_config::Config;
use patrol_report::write_report;

mod common;
use common::{day_one, day_two};

#[test]
fn write_report_stores_history_and_the_next_report_is_compared_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.report.history_dir = tmp.path().join("history");
    cfg.report.time_zone = Some("UTC".to_string());

    let one = write_report(&day_one(), &cfg, &tmp.path().join("one")).expect("day one");
    for p in [&one.html, &one.text, &one.csv, &one.json] {
        assert!(p.is_file(), "{} missing", p.display());
    }
    assert_eq!(
        one.subject,
        "[patrol] prod: 2 anomalies (2 new), 2 unreachable, 1 drift - 2026-11-22"
    );
    let back: patrol_checks::SweepDocument =
        serde_json::from_slice(&std::fs::read(&one.json).unwrap()).unwrap();
    assert_eq!(back, day_one());

    let two = write_report(&day_two(), &cfg, &tmp.path().join("two")).expect("day two");
    let text = std::fs::read_to_string(&two.text).unwrap();
    assert!(
        text.contains("[persisting since 2026-11-22 03:00 UTC] fs.file-max = 65536"),
        "{text}"
    );
    assert!(
        text.contains("[RESOLVED] net.core.somaxconn = 128"),
        "{text}"
    );
    assert!(
        text.contains("compared with sweep 00000000000000a1"),
        "{text}"
    );

    // Both sweeps are in the history database, in one scope.
    let h = patrol_report::store::History::open(&cfg.report.history_dir).unwrap();
    let scopes = h.scopes().unwrap();
    assert_eq!(scopes.len(), 1, "{scopes:?}");
    assert_eq!(scopes[0].1, 2);
    assert!(two.warnings.is_empty(), "{:?}", two.warnings);

    // Rendering day two again (a re-run) still compares with day one.
    let again = write_report(&day_two(), &cfg, &tmp.path().join("again")).unwrap();
    assert_eq!(
        std::fs::read_to_string(&again.text).unwrap(),
        text,
        "a re-run must not compare a sweep with itself"
    );
}

#[test]
fn a_document_from_a_newer_patrol_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = day_one();
    let path = dir.path().join("sweep.json");
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    assert_eq!(
        patrol_report::history::read_document(&path)
            .unwrap()
            .to_document(),
        doc
    );
    doc.version = patrol_checks::document::DOCUMENT_VERSION + 1;
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    let err = patrol_report::history::read_document(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("version") && err.contains("upgrade"), "{err}");
}

#[test]
fn history_keeps_the_newest_sweeps_of_a_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.report.history_dir = tmp.path().join("history");
    cfg.report.time_zone = Some("UTC".to_string());
    cfg.report.keep_sweeps = 3;
    let mut ids = Vec::new();
    for day in 0..5u64 {
        let mut doc = day_one();
        doc.started_at_unix_ms += day * 86_400_000;
        doc.sweep_id = format!("{:016x}", 0xd00 + day);
        ids.push(doc.sweep_id.clone());
        write_report(&doc, &cfg, &tmp.path().join(format!("out{day}"))).unwrap();
    }
    let h = patrol_report::store::History::open(&cfg.report.history_dir).unwrap();
    assert_eq!(h.scopes().unwrap()[0].1, 3);
    let kept: Vec<String> = h
        .check_history("fs.file-max")
        .unwrap()
        .into_iter()
        .map(|p| p.sweep_id)
        .collect();
    assert_eq!(kept, ids[2..].to_vec());
    // Values first seen in a pruned sweep are still the value at the
    // oldest kept one: the next sweep is compared with complete data.
    let mut next = day_one();
    next.started_at_unix_ms += 5 * 86_400_000;
    next.sweep_id = "0000000000000d05".into();
    let prev = h.previous(&next).unwrap().unwrap();
    let prev_doc = prev.doc.to_document();
    assert_eq!(prev.doc.sweep_id, ids[4]);
    let node_a = prev_doc.nodes.iter().find(|n| n.name == "node-a").unwrap();
    assert_eq!(node_a.checks.len(), 3, "{node_a:?}");
}
