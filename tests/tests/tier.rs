//! The two test tiers. `cargo test --workspace` runs the fast tier: every
//! test that needs root, etcd, prometheus or a real SMTP server is marked
//! `#[ignore = "full tier: needs ..."]`, so libtest leaves it out and
//! counts it as ignored. `cargo test --workspace -- --include-ignored` (what
//! `bash .ci/run` runs, after installing what those tests need) runs
//! everything; there a missing prerequisite fails the test and says how to
//! get it.
//!
//! This file says once, in a fast-tier run, which tests were left out and
//! how to run them, and keeps the mark honest: every `#[ignore]` in the
//! workspace is a full-tier one with its reason.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What every ignore reason starts with.
const PREFIX: &str = "full tier: ";
/// The command that runs both tiers.
const FULL: &str = "cargo test --workspace -- --include-ignored";

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if p.is_dir() && name != "target" && name != ".git" {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// One `#[ignore]`d test: where, which, why.
#[derive(Debug)]
struct LeftOut {
    file: String,
    test: String,
    /// The reason after `full tier: `, or the whole attribute when it does
    /// not follow the form.
    reason: Result<String, String>,
}

/// Every `#[ignore]` attribute of the workspace and the test it marks.
fn left_out() -> Vec<LeftOut> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    rust_files(root, &mut files);
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let attr = line.trim();
            if !attr.starts_with("#[ignore") {
                continue;
            }
            let reason = attr
                .strip_prefix("#[ignore = \"")
                .and_then(|r| r.strip_suffix("\"]"))
                .and_then(|r| r.strip_prefix(PREFIX))
                .map(str::to_string)
                .ok_or_else(|| attr.to_string());
            let test = lines[i + 1..]
                .iter()
                .find_map(|l| {
                    let after = l.split_once("fn ")?.1;
                    Some(after.split('(').next()?.to_string())
                })
                .unwrap_or_default();
            out.push(LeftOut {
                file: path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string(),
                test,
                reason,
            });
        }
    }
    out
}

/// Did libtest get asked to run the ignored tests too?
fn full_tier() -> bool {
    std::env::args().any(|a| a == "--include-ignored" || a == "--ignored")
}

#[test]
fn every_ignored_test_is_a_full_tier_test_with_its_reason() {
    let all = left_out();
    // The tests this file knows need root, etcd, prometheus or aiosmtpd.
    assert!(all.len() >= 15, "found only {all:#?}");
    let malformed: Vec<&LeftOut> = all
        .iter()
        .filter(|l| l.reason.is_err() || l.test.is_empty())
        .collect();
    assert!(
        malformed.is_empty(),
        "every #[ignore] reads `#[ignore = \"{PREFIX}needs ...\"]` just above its test, \
         so that the fast tier's note lists it: {malformed:#?}"
    );
}

/// Writes straight to the process's stderr: libtest captures `eprintln!`
/// of a passing test, not the stream itself, so this appears once per
/// `cargo test` run of this file, whatever the other tests print.
#[test]
fn the_fast_tier_says_once_what_it_left_out_and_how_to_run_it() {
    if full_tier() {
        return;
    }
    let mut by_reason: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let all = left_out();
    for l in &all {
        let reason = l.reason.clone().unwrap_or_else(|a| a);
        *by_reason
            .entry(reason)
            .or_default()
            .entry(l.file.clone())
            .or_default() += 1;
    }
    let mut note = format!(
        "\nnote: fast tier: {} tests were left out (listed as ignored):\n",
        all.len()
    );
    for (reason, files) in &by_reason {
        let files: Vec<String> = files.iter().map(|(f, n)| format!("{f} ({n})")).collect();
        note.push_str(&format!("  {reason}: {}\n", files.join(", ")));
    }
    note.push_str(&format!(
        "run them too with `{FULL}`, or `bash .ci/run`, which installs what they need first\n\n"
    ));
    std::io::stderr()
        .write_all(note.as_bytes())
        .expect("write to stderr");
}
