//! Sweep history: a directory of JSON files, one folder per scope.
//!
//! ```text
//! HISTORY_DIR/
//!   prod-3f2a9c01d4e5b6a7/          cluster + hash of the scope text
//!     scope.txt                     the scope in words
//!     20261122-030000-0123456789abcdef.json       the sweep document
//!     20261122-030000-0123456789abcdef.seen.json  first-seen time per anomaly group
//! ```
//!
//! File names sort by start time, so "the previous sweep of the same
//! scope" is the greatest name below the current one. Files are written to
//! a temporary name and renamed, so a crash never leaves half a document.

use std::fs;
use std::path::{Path, PathBuf};

use patrol_checks::SweepDocument;

use crate::diff::FirstSeen;
use crate::error::ReportError;
use crate::summary::scope_text;
use crate::text::stamp;

/// A sweep read back from the history.
#[derive(Debug, Clone)]
pub struct StoredSweep {
    pub path: PathBuf,
    pub doc: SweepDocument,
    /// Its first-seen file, when there is one.
    pub first_seen: Option<FirstSeen>,
}

/// 64-bit FNV-1a: a stable short name for a scope (not security relevant).
fn fnv64(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The folder of `doc`'s scope (cluster, selector and node filter).
pub fn scope_dir(history_dir: &Path, doc: &SweepDocument) -> PathBuf {
    let cluster: String = doc
        .cluster
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let scope = format!("{}\n{}", doc.cluster, scope_text(doc));
    history_dir.join(format!("{cluster}-{:016x}", fnv64(&scope)))
}

/// File stem of a sweep in its scope folder.
fn stem(doc: &SweepDocument) -> String {
    let id: String = doc
        .sweep_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(32)
        .collect();
    format!("{}-{id}", stamp(doc.started_at_unix_ms))
}

/// Write `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    // `report.html` -> `report.html.tmp`: never shared by two files.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, bytes).map_err(|e| ReportError::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| ReportError::io("rename into place", path, e))
}

/// Read a sweep document from a JSON file.
pub fn read_document(path: &Path) -> Result<SweepDocument, ReportError> {
    let bytes = fs::read(path).map_err(|e| ReportError::io("read", path, e))?;
    let mut doc: SweepDocument =
        serde_json::from_slice(&bytes).map_err(|source| ReportError::Document {
            path: path.to_path_buf(),
            source,
        })?;
    // Fields may be added within a version (serde ignores what it does not
    // know); a newer version may mean something else by the same fields.
    if doc.version > patrol_checks::document::DOCUMENT_VERSION {
        return Err(ReportError::DocumentVersion {
            path: path.to_path_buf(),
            found: doc.version,
            supported: patrol_checks::document::DOCUMENT_VERSION,
        });
    }
    // Version 1 wrote observed values tagged (`{"number": 0.31}`).
    doc.upgrade_from_v1();
    Ok(doc)
}

/// The latest stored sweep of `doc`'s scope that started before it.
pub fn previous(
    history_dir: &Path,
    doc: &SweepDocument,
) -> Result<Option<StoredSweep>, ReportError> {
    let dir = scope_dir(history_dir, doc);
    let current = stem(doc);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReportError::io("list", &dir, e)),
    };
    let mut best: Option<String> = None;
    for entry in entries {
        let entry = entry.map_err(|e| ReportError::io("list", &dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(s) = name.strip_suffix(".json") else {
            continue;
        };
        if s.ends_with(".seen") || s >= current.as_str() {
            continue;
        }
        if best.as_deref().is_none_or(|b| s > b) {
            best = Some(s.to_string());
        }
    }
    let Some(best) = best else { return Ok(None) };
    let path = dir.join(format!("{best}.json"));
    let doc = read_document(&path)?;
    let seen_path = dir.join(format!("{best}.seen.json"));
    // A missing or unreadable first-seen file only loses "since" dates.
    let first_seen = fs::read(&seen_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    Ok(Some(StoredSweep {
        path,
        doc,
        first_seen,
    }))
}

/// Store `doc` (and its first-seen times) in its scope folder, then keep
/// only the newest `keep` sweeps of that scope; returns the document's
/// path. Storing the same sweep again replaces it.
pub fn store(
    history_dir: &Path,
    doc: &SweepDocument,
    first_seen: &FirstSeen,
    keep: usize,
) -> Result<PathBuf, ReportError> {
    let dir = scope_dir(history_dir, doc);
    fs::create_dir_all(&dir).map_err(|e| ReportError::io("create", &dir, e))?;
    let scope_file = dir.join("scope.txt");
    if !scope_file.exists() {
        let text = format!("cluster {}\n{}\n", doc.cluster, scope_text(doc));
        write_atomic(&scope_file, text.as_bytes())?;
    }
    let s = stem(doc);
    let path = dir.join(format!("{s}.json"));
    let json = serde_json::to_vec(doc).map_err(|source| ReportError::Encode {
        what: "the sweep document",
        source,
    })?;
    write_atomic(&path, &json)?;
    let seen = serde_json::to_vec_pretty(first_seen).map_err(|source| ReportError::Encode {
        what: "first-seen times",
        source,
    })?;
    write_atomic(&dir.join(format!("{s}.seen.json")), &seen)?;
    prune(&dir, keep.max(2))?;
    Ok(path)
}

/// Delete the oldest sweeps of a scope folder beyond `keep` (names sort by
/// start time).
fn prune(dir: &Path, keep: usize) -> Result<(), ReportError> {
    let mut stems: Vec<String> = fs::read_dir(dir)
        .map_err(|e| ReportError::io("list", dir, e))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json") && !n.ends_with(".seen.json"))
        .map(|n| n.trim_end_matches(".json").to_string())
        .collect();
    if stems.len() <= keep {
        return Ok(());
    }
    stems.sort();
    for s in &stems[..stems.len() - keep] {
        for name in [format!("{s}.json"), format!("{s}.seen.json")] {
            let path = dir.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ReportError::io("delete", &path, e)),
            }
        }
    }
    Ok(())
}
