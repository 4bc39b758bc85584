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
//! control requests, `served`. The log never stops the agent: a write
//! that fails is logged as a warning and counted.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use patrol_checks::Selector;
use serde::Serialize;

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
        }
    }
}

/// The audit file, shared by the tasks that write to it.
#[derive(Debug, Clone)]
pub struct AuditLog {
    inner: Arc<Mutex<Inner>>,
    failed: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: u64,
    keep: usize,
}

impl AuditLog {
    /// Open (create) the log at `path`, with its folder.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<AuditLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(AuditLog {
            inner: Arc::new(Mutex::new(Inner {
                path: path.to_path_buf(),
                file: Some(file),
                size,
                max_bytes,
                keep: keep.max(1),
            })),
            failed: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Lines that could not be written.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Append one line (rotating first when it would pass `max_bytes`).
    pub fn append(&self, record: &AuditRecord) {
        let mut line = match serde_json::to_vec(record) {
            Ok(l) => l,
            Err(_) => return,
        };
        line.push(b'\n');
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = inner.write(&line) {
            self.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, file = %inner.path.display(), "cannot write the audit log");
        }
    }
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
}
