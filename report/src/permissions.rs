//! Who may read what Patrol writes on the ops host: sweep documents,
//! the history database, reports, CSV and mail carry every node's check
//! results, so they are created mode [`FILE_MODE`] (0640) in folders of
//! mode [`DIR_MODE`] (0750), whatever the umask (issue 22: with umask 022
//! they were 0644 in 0755 folders, readable by any local user). The
//! group may read them (a mail relay, a web server); others may not.
//!
//! A file is set to exactly 0640 after it is opened; a folder Patrol
//! creates is set to exactly 0750; a folder that already existed keeps
//! its mode (it may be the operator's home, or `/tmp`).

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every result file Patrol writes.
pub const FILE_MODE: u32 = 0o640;
/// Mode of every folder Patrol creates for results.
pub const DIR_MODE: u32 = 0o750;

/// Create `dir` and its missing parents, each mode [`DIR_MODE`].
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    for d in missing.iter().rev() {
        match fs::DirBuilder::new().mode(DIR_MODE).create(d) {
            Ok(()) => fs::set_permissions(d, Permissions::from_mode(DIR_MODE))?,
            // Made by someone else meanwhile: theirs, with their mode.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Open `path` for writing (created or truncated), mode [`FILE_MODE`].
/// Only a regular file's mode is set (`/dev/stdout` keeps its own).
pub fn create_file(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    if file.metadata()?.is_file() {
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    }
    Ok(file)
}

/// Write `bytes` to `path`, mode [`FILE_MODE`].
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = create_file(path)?;
    file.write_all(bytes)
}

/// Create the file at `path` mode [`FILE_MODE`] if it does not exist
/// yet (SQLite then opens it; its journal files take the database's
/// mode).
pub fn touch_file(path: &Path) -> std::io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(file) => file.set_permissions(Permissions::from_mode(FILE_MODE)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_and_folders_are_private_even_where_an_old_file_was_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_dir(&nested).unwrap();
        assert_eq!(mode(&dir.path().join("a")), DIR_MODE);
        assert_eq!(mode(&nested), DIR_MODE);
        let old = nested.join("old.json");
        fs::write(&old, "x").unwrap();
        fs::set_permissions(&old, Permissions::from_mode(0o666)).unwrap();
        write_file(&old, b"y").unwrap();
        assert_eq!(mode(&old), FILE_MODE);
        let db = nested.join("history.sqlite");
        touch_file(&db).unwrap();
        assert_eq!(mode(&db), FILE_MODE);
        // A folder that existed keeps its mode.
        fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).unwrap();
        create_dir(dir.path()).unwrap();
        assert_eq!(mode(dir.path()), 0o755);
    }
}
