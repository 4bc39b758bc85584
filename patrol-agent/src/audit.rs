//! The audit trail: one JSON line per request a node receives (a sweep
//! request through the mesh, or a control request), appended to a
//! size-bounded file that rotates to `FILE.1`, `FILE.2`, ... (the oldest
//! beyond `keep` is deleted).
//!
//! A line says when, which sweep, which operator asked (from the
//! operator's certificate, so it cannot be claimed by a key holder), which
//! node coordinated, the selector and node filter, and what this node did:
//!
//! ```json
//! {"time_unix_ms":1796091320123,"source":"sweep","sweep_id":"6b3c…","operator":"alice",
//!  "coordinator":"host-1","selector":{"profile":"k8s-node"},"node_filter":{},
//!  "action":"ran","checks":14}
//! ```
//!
//! `action` is `ran` (with `checks`), `refused` (with `reason`),
//! `skipped` (with `reason`: the node filter does not match), or, for
//! control requests, `served`; `suppressed` (with `count` and `peer`) sums
//! up refusals that were over the budget below. The log never stops the
//! agent: a write that fails is logged as a warning and counted.
//!
//! **Architecture Invariant:** a line nobody proved (written with
//! [`AuditLog::append_unproven`]: a refusal before the peer showed an
//! operator certificate) never causes a rotation, and such lines take at
//! most a quarter of a file ([`budget`] says how they are limited and
//! counted). Only records of proven operators can rotate the log, so no
//! flood from the network can push an operator's record off the node.
//! Client-supplied text in a line is JSON-escaped (`serde_json`), so no
//! newline or control character in it can start a line of its own.

mod budget;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use budget::RefusalBudget;
pub use budget::{BudgetSettings, Summary};
use patrol_checks::Selector;
use serde::Serialize;

/// Unproven refusal lines take at most `max_bytes / REFUSALS_SHARE` of a
/// file; with the summaries of suppressed refusals, unproven lines take at
/// most `max_bytes / UNPROVEN_SHARE`. The rest is kept for the records of
/// proven operators (and their rotation).
const REFUSALS_SHARE: u64 = 8;
const UNPROVEN_SHARE: u64 = 4;

/// One audit line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub time_unix_ms: u64,
    /// `sweep` (a request through the mesh) or `control` (the CLI).
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep_id: Option<String>,
    /// The operator's certificate name; absent when nobody proved one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<String>,
    /// For control requests: `members`, `stats`, `sweep`, or `handshake`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_filter: BTreeMap<String, String>,
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For roster changes: the node concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// For `suppressed`: how many refusals the line stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl AuditRecord {
    /// A record with only the time, source and action set.
    pub fn new(time_unix_ms: u64, source: &'static str, action: &'static str) -> AuditRecord {
        AuditRecord {
            time_unix_ms,
            source,
            sweep_id: None,
            operator: None,
            coordinator: None,
            request: None,
            peer: None,
            selector: None,
            node_filter: BTreeMap::new(),
            action,
            checks: None,
            reason: None,
            node: None,
            count: None,
        }
    }
}

/// The audit file, shared by the tasks that write to it.
#[derive(Debug, Clone)]
pub struct AuditLog {
    inner: Arc<Mutex<Inner>>,
    failed: Arc<AtomicU64>,
    suppressed: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    /// Bytes of unproven lines in the current file.
    unproven: u64,
    max_bytes: u64,
    keep: usize,
    budget: RefusalBudget,
}

impl AuditLog {
    /// Open (create) the log at `path`, with its folder, and the default
    /// budget for unproven lines.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<AuditLog> {
        AuditLog::open_with(path, max_bytes, keep, BudgetSettings::default())
    }

    /// [`AuditLog::open`] with `budget` for unproven lines.
    pub fn open_with(
        path: &Path,
        max_bytes: u64,
        keep: usize,
        budget: BudgetSettings,
    ) -> std::io::Result<AuditLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        let unproven = unproven_bytes(path);
        Ok(AuditLog {
            inner: Arc::new(Mutex::new(Inner {
                path: path.to_path_buf(),
                file: Some(file),
                size,
                unproven,
                max_bytes,
                keep: keep.max(1),
                budget: RefusalBudget::new(budget),
            })),
            failed: Arc::new(AtomicU64::new(0)),
            suppressed: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Lines that could not be written.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Unproven refusals not written (over their budget); each is counted
    /// in a `suppressed` line when one fits.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }

    /// Append a refusal of `peer` that no operator proved, within the
    /// budget ([`budget`]); returns whether it was written (a caller logs
    /// a suppressed one quietly). Writes the summaries that are due first.
    pub fn append_unproven(&self, peer: IpAddr, record: &AuditRecord) -> bool {
        let now = record.time_unix_ms;
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.write_summaries(&mut inner, now);
        let written = inner.budget.admit(peer, now)
            && match serialize(record) {
                Some(line) => self.write_unproven(&mut inner, &line, REFUSALS_SHARE),
                None => false,
            };
        if !written {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            inner.budget.suppress(Some(peer), 1, now);
        }
        written
    }

    /// Write the summaries of suppressed refusals that are due at
    /// `now_unix_ms` (the control server calls this every second).
    pub fn flush_unproven(&self, now_unix_ms: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.write_summaries(&mut inner, now_unix_ms);
    }

    fn write_summaries(&self, inner: &mut Inner, now: u64) {
        for summary in inner.budget.due(now) {
            let mut r = AuditRecord::new(now, "control", "suppressed");
            r.peer = summary.peer.map(|ip| ip.to_string());
            r.count = Some(summary.count);
            r.reason = Some(summary.reason());
            let fits =
                serialize(&r).is_some_and(|line| self.write_unproven(inner, &line, UNPROVEN_SHARE));
            if !fits {
                inner.budget.restore(&summary, now);
            }
        }
    }

    /// Write an unproven line if it fits in `max_bytes / share` of the
    /// current file without a rotation.
    fn write_unproven(&self, inner: &mut Inner, line: &[u8], share: u64) -> bool {
        let len = line.len() as u64;
        if inner.size + len > inner.max_bytes || inner.unproven + len > inner.max_bytes / share {
            return false;
        }
        match inner.write(line) {
            Ok(()) => {
                inner.unproven += len;
                true
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, file = %inner.path.display(), "cannot write the audit log");
                false
            }
        }
    }

    /// Append one line (rotating first when it would pass `max_bytes`).
    pub fn append(&self, record: &AuditRecord) {
        let Some(line) = serialize(record) else {
            return;
        };
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = inner.write(&line) {
            self.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, file = %inner.path.display(), "cannot write the audit log");
        }
    }
}

/// One JSON line (serde_json escapes every control character in strings).
fn serialize(record: &AuditRecord) -> Option<Vec<u8>> {
    let mut line = serde_json::to_vec(record).ok()?;
    line.push(b'\n');
    Some(line)
}

/// Bytes of the lines in the file at `path` that name no operator (an
/// agent restarted keeps counting the unproven lines already there).
fn unproven_bytes(path: &Path) -> u64 {
    let Ok(file) = File::open(path) else {
        return 0;
    };
    std::io::BufReader::new(file)
        .split(b'\n')
        .map_while(Result::ok)
        .filter(|l| !l.windows(11).any(|w| w == b"\"operator\":"))
        .map(|l| l.len() as u64 + 1)
        .sum()
}

/// Create `dir` (and its parents) mode 0750 whatever the umask.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o750))
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

impl Inner {
    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            self.file = Some(open_append(&self.path)?);
            self.size = 0;
            self.unproven = 0;
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(line)?;
            self.size += line.len() as u64;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = std::fs::remove_file(numbered(self.keep));
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.file = Some(open_append(&self.path)?);
        self.size = 0;
        self.unproven = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_and_the_file_rotates_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, 1000, 2).unwrap();
        for i in 0..100 {
            let mut r = AuditRecord::new(i, "sweep", "ran");
            r.sweep_id = Some(format!("{i:016x}"));
            r.checks = Some(3);
            log.append(&r);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["sweep_id"], "0000000000000063");
        assert_eq!(last["action"], "ran");
        assert!(std::fs::metadata(&path).unwrap().len() <= 1000);
        assert!(dir.path().join("audit.jsonl.1").exists());
        assert!(dir.path().join("audit.jsonl.2").exists());
        assert!(!dir.path().join("audit.jsonl.3").exists());
        assert_eq!(log.failed(), 0);
    }

    #[test]
    fn a_flood_of_unproven_refusals_never_rotates_away_an_operators_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, 8192, 1).unwrap();
        let mut served = AuditRecord::new(0, "control", "served");
        served.operator = Some("alice".into());
        log.append(&served);
        let peer = IpAddr::from([10, 0, 0, 9]);
        let mut written = 0;
        for i in 0..220_000u64 {
            let mut r = AuditRecord::new(i / 5, "control", "refused");
            r.peer = Some("10.0.0.9:4000".into());
            r.reason = Some("undecodable handshake".into());
            written += u64::from(log.append_unproven(peer, &r));
        }
        log.flush_unproven(220_000);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().next().unwrap().contains("\"alice\""), "{text}");
        assert!(!dir.path().join("audit.jsonl.1").exists(), "rotated");
        assert!(written > 0 && written <= 10, "{written}");
        assert_eq!(log.suppressed(), 220_000 - written);
        let summary: serde_json::Value =
            serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(summary["action"], "suppressed", "{text}");
        assert_eq!(summary["peer"], "10.0.0.9");
        assert_eq!(summary["count"], 220_000 - written);
        // Proven records still rotate the log, and the budget starts over.
        for _ in 0..100 {
            log.append(&served);
        }
        assert!(dir.path().join("audit.jsonl.1").exists());
    }

    #[test]
    fn an_agent_restarted_counts_the_unproven_lines_already_in_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let peer = IpAddr::from([10, 0, 0, 9]);
        let mut r = AuditRecord::new(0, "control", "refused");
        r.reason = Some("x".repeat(100));
        let mut written = 0;
        for round in 0..5u64 {
            let log = AuditLog::open(&path, 8192, 1).unwrap();
            for i in 0..10 {
                r.time_unix_ms = round * 1_000_000 + i;
                written += u64::from(log.append_unproven(peer, &r));
            }
        }
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(
            len <= 8192 / REFUSALS_SHARE,
            "{len} bytes in {written} lines"
        );
    }
}
