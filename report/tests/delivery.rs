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
        text.contains("[persisting since 2026-11-22] fs.file-max = 65536"),
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

    // Both sweeps are in one scope folder of the history.
    let scopes: Vec<_> = std::fs::read_dir(&cfg.report.history_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(scopes.len(), 1);
    let sweeps = std::fs::read_dir(&scopes[0])
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            let n = n.to_string_lossy();
            n.ends_with(".json") && !n.ends_with(".seen.json")
        })
        .count();
    assert_eq!(sweeps, 2);

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
    assert_eq!(patrol_report::history::read_document(&path).unwrap(), doc);
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
    cfg.report.keep_sweeps = 3;
    let mut ids = Vec::new();
    for day in 0..5u64 {
        let mut doc = day_one();
        doc.started_at_unix_ms += day * 86_400_000;
        doc.sweep_id = format!("{:016x}", 0xd00 + day);
        ids.push(doc.sweep_id.clone());
        write_report(&doc, &cfg, &tmp.path().join(format!("out{day}"))).unwrap();
    }
    let scopes: Vec<_> = std::fs::read_dir(&cfg.report.history_dir)
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(scopes.len(), 1);
    let mut names: Vec<String> = std::fs::read_dir(scopes[0].path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json") && !n.ends_with(".seen.json"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    for (name, id) in names.iter().zip(&ids[2..]) {
        assert!(name.contains(id.as_str()), "{name} should be sweep {id}");
    }
}
