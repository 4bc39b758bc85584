//! The committed fuzz corpus as an ordinary test: every file under
//! `tests/fuzz/corpus/<target>/` and every fixed crash reproducer under
//! `tests/fuzz/regressions/<target>/` goes through the same harness the
//! fuzz target runs (`patrol-fuzz`), on stable, and must not panic.
//! Also checks that the harness list, the cargo-fuzz targets and the
//! corpus folders name the same targets.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.is_file());
    out.sort();
    out
}

fn subfolders(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Run every file of `folder/<target>/` through its harness; the failures,
/// each with its file and panic message.
fn replay(folder: &str) -> (Vec<(&'static str, usize)>, Vec<String>) {
    let mut ran = Vec::new();
    let mut failures = Vec::new();
    for (name, harness) in patrol_fuzz::TARGETS {
        let files = files(&fuzz_dir().join(folder).join(name));
        ran.push((*name, files.len()));
        for file in files {
            let data = std::fs::read(&file).unwrap();
            if let Err(panic) = std::panic::catch_unwind(|| harness(&data)) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: {message}", file.display()));
            }
        }
    }
    (ran, failures)
}

#[test]
fn every_committed_corpus_file_passes_its_harness() {
    let (ran, failures) = replay("corpus");
    assert!(
        failures.is_empty(),
        "{} corpus files fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let empty: Vec<&str> = ran
        .iter()
        .filter(|(_, n)| *n == 0)
        .map(|(t, _)| *t)
        .collect();
    assert!(empty.is_empty(), "targets without a corpus: {empty:?}");
}

#[test]
fn every_fixed_crash_reproducer_passes_its_harness() {
    let (_, failures) = replay("regressions");
    assert!(
        failures.is_empty(),
        "{} reproducers fail again:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_harnesses_the_targets_and_the_corpus_name_the_same_targets() {
    let harnesses: BTreeSet<String> = patrol_fuzz::TARGETS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let bins: BTreeSet<String> = manifest
        .split("[[bin]]")
        .skip(1)
        .filter_map(|bin| {
            let line = bin.lines().find(|l| l.trim_start().starts_with("name"))?;
            Some(line.split('"').nth(1)?.to_string())
        })
        .collect();
    let sources: BTreeSet<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .collect();
    assert_eq!(bins, harnesses, "[[bin]] targets in tests/fuzz/Cargo.toml");
    assert_eq!(sources, harnesses, "files in tests/fuzz/fuzz_targets/");
    assert_eq!(
        subfolders(&fuzz_dir().join("corpus")),
        harnesses,
        "folders in tests/fuzz/corpus/"
    );
    let regressions = subfolders(&fuzz_dir().join("regressions"));
    assert!(
        regressions.is_subset(&harnesses),
        "tests/fuzz/regressions/ has a folder for an unknown target: {regressions:?}"
    );
    for name in &harnesses {
        assert!(patrol_fuzz::harness(name).is_some());
    }
}
