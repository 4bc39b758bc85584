//! `type = "file"`: a path or glob (`/etc/sysctl.d/*`,
//! `/var/lib/kubelet/config.yaml`) and one of its properties:
//! `measure = "exists" | "mode" | "owner" | "sha256"` (default `sha256`).
//!
//! - `exists`: `present` or `absent` (a glob is present when it matches).
//! - `mode`: the permission bits in octal, `0644`.
//! - `owner`: `user:group`, names from `/etc/passwd` and `/etc/group`
//!   (numbers when a name is unknown).
//! - `sha256`: the hex SHA-256 of the content (files up to 16 MiB); for a
//!   glob, one hash over every matched file's path and hash, so
//!   "`/etc/sysctl.d/*` differs on 3 nodes" is one value to compare.
//!
//! A path that does not exist (a glob that matches nothing) is observed as
//! `absent`, which is data: it misses `expect = "0600"` like any other
//! value. Mode and owner of a glob are named per path. Without `expect`
//! the check is observe-only (the value feeds drift and distributions).

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Context, Finding};
use crate::expect::Expect;
use crate::host::{expand_glob, FileKind, Host};
use crate::Observed;

/// Largest file hashed.
pub const MAX_HASHED_BYTES: usize = 16 << 20;
/// Most files a glob may match for `sha256` (each is read whole).
pub const MAX_HASHED_FILES: usize = 1_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCheck {
    /// Absolute path or glob.
    pub path: String,
    #[serde(default)]
    pub measure: FileMeasure,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileMeasure {
    Exists,
    Mode,
    Owner,
    #[default]
    Sha256,
}

fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

impl FileCheck {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if !self.path.starts_with('/') || self.path.contains("/../") {
            return Err((
                "path".into(),
                format!("`{}` is not an absolute path or glob", self.path),
            ));
        }
        if is_glob(&self.path) {
            glob::Pattern::new(&self.path)
                .map_err(|e| ("path".to_string(), format!("bad glob `{}`: {e}", self.path)))?;
        }
        Ok(())
    }

    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let me = self.clone();
        match cx.blocking(move |h| me.observe(h)).await {
            Ok(Ok(observed)) => self.judge(observed, expect),
            Ok(Err(e)) | Err(e) => Finding::error(expect.describe(), e),
        }
    }

    fn judge(&self, observed: Observed, expect: &Expect) -> Finding {
        // Per-path values are judged one by one, like disk mounts.
        Finding::judge_each(observed, expect)
    }

    fn observe(&self, h: &dyn Host) -> Result<Observed, String> {
        let glob = is_glob(&self.path);
        let paths = if glob {
            expand_glob(h, &self.path)?
        } else {
            match h.stat(&self.path, true) {
                Ok(_) => vec![self.path.clone()],
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(format!("cannot stat {}: {e}", self.path)),
            }
        };
        if paths.is_empty() {
            return Ok(Observed::Text("absent".into()));
        }
        match self.measure {
            FileMeasure::Exists => Ok(Observed::Text("present".into())),
            FileMeasure::Mode | FileMeasure::Owner => {
                let names = (self.measure == FileMeasure::Owner).then(|| Names::read(h));
                let mut values = Vec::new();
                for p in &paths {
                    let st = h
                        .stat(p, true)
                        .map_err(|e| format!("cannot stat {p}: {e}"))?;
                    let v = match &names {
                        None => format!("{:04o}", st.mode),
                        Some(n) => format!("{}:{}", n.user(st.uid), n.group(st.gid)),
                    };
                    values.push((p.clone(), Observed::Text(v)));
                }
                if glob {
                    Ok(Observed::Named(values))
                } else {
                    Ok(values.remove(0).1)
                }
            }
            FileMeasure::Sha256 => {
                let files: Vec<&String> = paths
                    .iter()
                    .filter(|p| h.stat(p, true).is_ok_and(|s| s.kind == FileKind::File))
                    .collect();
                if files.len() > MAX_HASHED_FILES {
                    return Err(format!(
                        "`{}` matches {} files; at most {MAX_HASHED_FILES} are hashed",
                        self.path,
                        files.len()
                    ));
                }
                let hash_one = |p: &str| -> Result<String, String> {
                    let bytes = h
                        .read_bytes(p, MAX_HASHED_BYTES)
                        .map_err(|e| format!("cannot read {p}: {e}"))?;
                    Ok(hex(&Sha256::digest(&bytes)))
                };
                if !glob {
                    if files.is_empty() {
                        return Err(format!("{} is not a regular file", self.path));
                    }
                    return Ok(Observed::Text(hash_one(&self.path)?));
                }
                // One hash over "path  hash" lines, as sha256sum prints them.
                let mut all = Sha256::new();
                for p in files {
                    all.update(format!("{}  {p}\n", hash_one(p)?).as_bytes());
                }
                Ok(Observed::Text(hex(&all.finalize())))
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// User and group names from the machine's own files.
struct Names {
    users: Vec<(u32, String)>,
    groups: Vec<(u32, String)>,
}

impl Names {
    fn read(h: &dyn Host) -> Names {
        let parse = |path: &str| -> Vec<(u32, String)> {
            h.read_file(path, 4 << 20)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let name = f.next()?.to_string();
                    let id = f.nth(1)?.parse().ok()?;
                    Some((id, name))
                })
                .collect()
        };
        Names {
            users: parse("/etc/passwd"),
            groups: parse("/etc/group"),
        }
    }

    fn find(list: &[(u32, String)], id: u32) -> String {
        list.iter()
            .find(|(i, _)| *i == id)
            .map_or_else(|| id.to_string(), |(_, n)| n.clone())
    }

    fn user(&self, uid: u32) -> String {
        Names::find(&self.users, uid)
    }

    fn group(&self, gid: u32) -> String {
        Names::find(&self.groups, gid)
    }
}
