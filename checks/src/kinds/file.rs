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
//!
//! The path can come from a setting of the running kubelet or kube-proxy
//! (`kubelet_path = "authentication.x509.clientCAFile"`, `"--kubeconfig"`,
//! `"--config"`: the configuration file it read), with `path` as the
//! fallback when the setting is unset or the daemon is not running; and
//! `alternatives` lists further places (a unit file under `/etc` or
//! `/usr/lib`): the first of `path` and them that exists is observed.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{kube, Context, Finding};
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
    /// Take the path from this setting of the running kubelet (a key
    /// path or `--flag`, as the `kubelet` kind reads them).
    pub kubelet_path: Option<String>,
    /// The same for kube-proxy.
    pub kube_proxy_path: Option<String>,
    /// Further candidate paths after `path`; the first that exists counts.
    #[serde(default)]
    pub alternatives: Vec<String>,
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
        if self.kubelet_path.is_some() && self.kube_proxy_path.is_some() {
            return Err((
                "kubelet_path".into(),
                "give at most one of `kubelet_path` and `kube_proxy_path`".into(),
            ));
        }
        let chosen = self.kubelet_path.is_some() || self.kube_proxy_path.is_some();
        if (chosen || !self.alternatives.is_empty()) && is_glob(&self.path) {
            return Err((
                "path".into(),
                "a glob takes no `alternatives` nor a path from a setting".into(),
            ));
        }
        for a in &self.alternatives {
            if !a.starts_with('/') || a.contains("/../") || is_glob(a) {
                return Err((
                    "alternatives".into(),
                    format!("`{a}` is not an absolute path"),
                ));
            }
        }
        Ok(())
    }

    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let me = self.clone();
        let observed = cx
            .blocking(move |h| {
                let (path, note) = me.choose_path(h);
                let me = FileCheck { path, ..me };
                me.observe(h).map(|o| (o, note))
            })
            .await;
        match observed {
            Ok(Ok((observed, note))) => {
                let mut f = self.judge(observed, expect);
                if let Some(note) = note {
                    f.message = format!("{} ({note})", f.message);
                }
                f
            }
            Ok(Err(e)) | Err(e) => Finding::error(expect.describe(), e),
        }
    }

    /// The path to observe, and where it came from when not `path`.
    fn choose_path(&self, h: &dyn Host) -> (String, Option<String>) {
        let from_setting = match (&self.kubelet_path, &self.kube_proxy_path) {
            (Some(key), _) => Some((&kube::KUBELET, key)),
            (None, Some(key)) => Some((&kube::KUBE_PROXY, key)),
            (None, None) => None,
        };
        let mut why_not = None;
        if let Some((component, key)) = from_setting {
            match kube::settings::read(h, component) {
                Ok(e) => match e.get(key) {
                    Some(serde_json::Value::String(p)) if p.starts_with('/') => {
                        let note = format!("{} {key} = {p}", component.process);
                        return (p, Some(note));
                    }
                    Some(other) => {
                        why_not = Some(format!("{} {key} is {other}", component.process));
                    }
                    None => why_not = Some(format!("{} {key} is unset", component.process)),
                },
                Err(e) => why_not = Some(e),
            }
        }
        let found = std::iter::once(&self.path)
            .chain(&self.alternatives)
            .find(|p| h.stat(p, true).is_ok());
        let path = found.unwrap_or(&self.path).clone();
        let note = match (why_not, path != self.path) {
            (Some(w), _) => Some(format!("{w}; read {path}")),
            (None, true) => Some(path.clone()),
            (None, false) => None,
        };
        (path, note)
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
