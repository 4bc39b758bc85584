//! The roster on disk: read once at start, written by the owner task when
//! it changed (every 10 s at most, and at stop).
//!
//! The file is JSON (`patrol_core::membership::roster`, format
//! `patrol-roster-v1`), written to a temporary file in the same folder
//! (mode 0640) and renamed over the old one, so a crash leaves the old or
//! the new roster, never half of one. At start it is checked whole: the
//! format tag, the cluster and node it belongs to, every entry's bounds and
//! the count. A file that fails any check is not used: the agent logs the
//! file and the problem, keeps it aside as `<file>.refused` for a person to
//! look at, and starts with an empty roster (which fills again as nodes
//! are seen).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use patrol_core::membership::roster::Roster;
use patrol_core::NodeSettings;

/// The roster in `path` for node `name`, or None (no file yet, or refused).
pub fn load(path: &Path, name: &str, settings: &NodeSettings) -> Option<Roster> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(path = %path.display(), "no roster yet: it fills as nodes are seen");
            return None;
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read the roster; starting with an empty one");
            return None;
        }
    };
    match Roster::from_text(
        &text,
        &settings.cluster,
        name,
        settings.roster_capacity,
        settings.roster_expiry,
    ) {
        Ok(roster) => {
            tracing::info!(path = %path.display(), nodes = roster.len(), "roster loaded");
            Some(roster)
        }
        Err(e) => {
            let aside = path.with_extension("json.refused");
            let kept = std::fs::rename(path, &aside).is_ok();
            tracing::error!(
                path = %path.display(),
                problem = %e,
                kept_as = %if kept { aside.display().to_string() } else { "-".into() },
                "roster file refused; starting with an empty roster"
            );
            None
        }
    }
}

/// Write `text` to `path` atomically, mode 0640 (its folder 0750 if made).
pub fn save(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))?;
        }
    }
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use patrol_core::membership::roster::Sighting;

    use super::*;

    #[test]
    fn a_saved_roster_loads_back_and_a_broken_one_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/roster.json");
        let settings = NodeSettings::default();
        let mut r = Roster::new(10, Duration::from_secs(3600));
        let id = patrol_core::identity::NodeId::new(
            "a",
            "127.0.0.1:1".parse().unwrap(),
            1,
            BTreeMap::new(),
        );
        r.seen(&id, 1, Sighting::Direct, 1);
        save(&path, &r.to_text(&settings.cluster, "me", 2)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let back = load(&path, "me", &settings).unwrap();
        assert_eq!(back.get("a"), r.get("a"));
        // Another node's roster is refused and kept aside.
        assert!(load(&path, "other", &settings).is_none());
        assert!(!path.exists());
        assert!(path.with_extension("json.refused").exists());
    }
}
