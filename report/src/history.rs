//! Sweep documents as JSON files: reading one (with its version check),
//! writing files atomically, and importing the history format Patrol kept
//! before the database ([`crate::store`]): one folder per scope, one JSON
//! document per sweep, a `.seen.json` of first-seen times next to each.
//!
//! ```text
//! HISTORY_DIR/
//!   prod-3f2a9c01d4e5b6a7/          cluster + hash of the scope text
//!     scope.txt                     the scope in words
//!     20261122-030000-0123456789abcdef.json       the sweep document
//!     20261122-030000-0123456789abcdef.seen.json  first-seen time per anomaly group
//! ```

use std::fs;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use patrol_checks::CompactDocument;
use serde::Deserialize;

use crate::diff::FirstSeen;
use crate::error::ReportError;
use crate::store::{History, Stored, SweepSummary};

/// Write `bytes` to `path` through a temporary file and a rename, mode
/// 0640 ([`crate::permissions`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// What `write` writes (through a buffer), into `path` through a
/// temporary file and a rename, mode 0640 ([`crate::permissions`]).
pub(crate) fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), ReportError> {
    // `report.html` -> `report.html.tmp`: never shared by two files.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file =
        crate::permissions::create_file(&tmp).map_err(|e| ReportError::io("write", &tmp, e))?;
    let mut w = BufWriter::new(file);
    write(&mut w)
        .and_then(|()| w.flush())
        .map_err(|e| ReportError::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| ReportError::io("rename into place", path, e))
}

/// Read a sweep document from a JSON file, node by node into its compact
/// form: the file is never held whole, nor the expanded document (a
/// 100,000-node document is about 240 MB of JSON and 66 MiB compact).
/// A malformed file is an error naming the file, the line and the column.
pub fn read_document(path: &Path) -> Result<CompactDocument, ReportError> {
    let file = fs::File::open(path).map_err(|e| ReportError::io("read", path, e))?;
    let broken = |source| ReportError::Document {
        path: path.to_path_buf(),
        source,
    };
    let mut de = serde_json::Deserializer::from_reader(BufReader::new(file));
    let mut doc = CompactDocument::deserialize(&mut de).map_err(broken)?;
    // Only white space may follow, as `serde_json::from_slice` demands.
    de.end().map_err(broken)?;
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

/// What [`import_dir`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// Sweeps stored.
    pub stored: usize,
    /// Sweeps the database already had.
    pub already: usize,
    /// Sweeps older than the newest stored one of their scope (not stored).
    pub older: usize,
    /// Files that could not be read, each with the reason (skipped).
    pub warnings: Vec<String>,
}

/// The sweep documents in `dir` and in its sub-folders (one level: the
/// scope folders of a JSON history), without the `.seen.json` files.
fn documents_in(dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let mut out = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    for entry in fs::read_dir(dir).map_err(|e| ReportError::io("list", dir, e))? {
        let path = entry.map_err(|e| ReportError::io("list", dir, e))?.path();
        if path.is_dir() {
            folders.push(path);
        }
    }
    for folder in folders {
        for entry in fs::read_dir(&folder).map_err(|e| ReportError::io("list", &folder, e))? {
            let path = entry
                .map_err(|e| ReportError::io("list", &folder, e))?
                .path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".json") && !name.ends_with(".seen.json") && path.is_file() {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// What orders a sweep document among others, read from its file
/// without its nodes.
#[derive(Deserialize)]
struct Order {
    version: u32,
    sweep_id: String,
    started_at_unix_ms: u64,
}

/// The start and id of the sweep in the JSON file at `path`, for
/// ordering: the file is read as a stream and its nodes are parsed (a file
/// that is not JSON, or is cut short, is found here, with the same error
/// as [`read_document`] gives) but not kept.
fn read_order(path: &Path) -> Result<(u64, String), ReportError> {
    let file = fs::File::open(path).map_err(|e| ReportError::io("read", path, e))?;
    let broken = |source| ReportError::Document {
        path: path.to_path_buf(),
        source,
    };
    let mut de = serde_json::Deserializer::from_reader(BufReader::new(file));
    let order = Order::deserialize(&mut de).map_err(broken)?;
    de.end().map_err(broken)?;
    if order.version > patrol_checks::document::DOCUMENT_VERSION {
        return Err(ReportError::DocumentVersion {
            path: path.to_path_buf(),
            found: order.version,
            supported: patrol_checks::document::DOCUMENT_VERSION,
        });
    }
    Ok((order.started_at_unix_ms, order.sweep_id))
}

/// Import a JSON history (`patrol history import DIR`): every sweep
/// document under `dir`, oldest first, each compared with the previous
/// sweep of its scope in the database the way the nightly job would have,
/// with its `.seen.json` first-seen times when there is one. A file that
/// cannot be read is a warning naming it and the problem, and is skipped;
/// the others are imported.
///
/// Each file is read twice: once for its start and id alone (to order the
/// files), then whole when its turn comes. One document is held at a
/// time, so the import of a folder of 100,000-node sweeps takes the
/// memory of one (holding every document before sorting them did not).
pub fn import_dir(history: &mut History, dir: &Path, keep: usize) -> Result<Imported, ReportError> {
    let mut done = Imported::default();
    let mut order: Vec<(u64, String, PathBuf)> = Vec::new();
    for path in documents_in(dir)? {
        match read_order(&path) {
            Ok((started, id)) => order.push((started, id, path)),
            Err(e) => done.warnings.push(format!("skipped: {e}")),
        }
    }
    order.sort();
    for (_, _, path) in order {
        // A file whose head reads but whose nodes do not is found here.
        let doc = match read_document(&path) {
            Ok(doc) => doc,
            Err(e) => {
                done.warnings.push(format!("skipped: {e}"));
                continue;
            }
        };
        match import_one(history, &path, &doc, keep)? {
            Stored::Added { .. } => done.stored += 1,
            Stored::AlreadyStored => done.already += 1,
            Stored::Older => done.older += 1,
        }
    }
    Ok(done)
}

/// Store `doc`, read from `path`, compared with the previous sweep of its
/// scope, with the first-seen times of the `.seen.json` beside it when
/// there is one.
fn import_one(
    history: &mut History,
    path: &Path,
    doc: &CompactDocument,
    keep: usize,
) -> Result<Stored, ReportError> {
    let seen_path = path.with_extension("seen.json");
    let stored_seen: Option<FirstSeen> = fs::read(&seen_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let previous = history.previous(doc)?;
    let report = crate::summary::build(
        doc,
        previous.as_ref().map(|p| crate::summary::PreviousSweep {
            doc: &p.doc,
            first_seen: Some(&p.first_seen),
        }),
    );
    // Not held while this sweep is stored.
    drop(previous);
    let first_seen = stored_seen.unwrap_or_else(|| report.first_seen());
    history.store(doc, &first_seen, SweepSummary::of(&report), keep)
}
