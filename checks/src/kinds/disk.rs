//! `type = "disk"`: used space or used inodes in percent, per mount point.
//! `mounts` takes globs (`/var/lib/*`); pseudo filesystems are skipped
//! when a glob matches them, and so are network filesystems ([`NETWORK`]:
//! NFS, SMB, Ceph, ...) unless `include_network = true`, because a
//! `statvfs` on a hung server blocks until it answers. A mount named
//! exactly is always read. Observed is one value per mount; the worst
//! mount decides.

use serde::Deserialize;

use super::{round2, Context, Finding, Verdict};
use crate::expect::{show, Expect};
use crate::host::Host;
use crate::Observed;

/// What to measure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskMeasure {
    /// Used space in percent (as `df` shows it).
    #[default]
    UsedPercent,
    /// Used inodes in percent (as `df -i` shows it).
    InodesPercent,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Mount points or globs, e.g. `["/", "/var/lib/*"]`.
    #[serde(default = "default_mounts")]
    pub mounts: Vec<String>,
    #[serde(default)]
    pub measure: DiskMeasure,
    /// Let globs match network filesystems too (default: skipped). A
    /// mount named exactly is read either way.
    #[serde(default)]
    pub include_network: bool,
}

/// A mount point and its usage in percent (or why it could not be read).
type MountUsage = (String, Result<f64, String>);

fn default_mounts() -> Vec<String> {
    vec!["/".into()]
}

const PSEUDO: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "securityfs",
    "pstore",
    "bpf",
    "debugfs",
    "tracefs",
    "mqueue",
    "hugetlbfs",
    "configfs",
    "fusectl",
    "autofs",
    "binfmt_misc",
    "nsfs",
    "rpc_pipefs",
    "squashfs",
    "overlay",
    "tmpfs",
    "ramfs",
    "efivarfs",
    "selinuxfs",
];

/// Filesystem types served over the network, as `/proc/self/mounts` names
/// them: a glob skips them unless the check sets `include_network = true`.
pub const NETWORK: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ncpfs",
    "ceph",
    "fuse.ceph",
    "fuse.ceph-fuse",
    "glusterfs",
    "fuse.glusterfs",
    "fuse.sshfs",
    "sshfs",
    "9p",
    "afs",
    "lustre",
    "davfs",
    "fuse.davfs",
    "fuse.s3fs",
    "fuse.rclone",
    "fuse.gcsfuse",
    "fuse.juicefs",
    "beegfs",
    "gpfs",
    "orangefs",
];

/// Mount points and types from `/proc/self/mounts` (octal escapes undone).
pub fn parse_mounts(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _dev = f.next()?;
            let point = f.next()?;
            let fstype = f.next()?;
            Some((unescape(point), fstype.to_string()))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

impl Disk {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if self.mounts.is_empty() {
            return Err(("mounts".into(), "list at least one mount point".into()));
        }
        for m in &self.mounts {
            glob::Pattern::new(m)
                .map_err(|e| ("mounts".to_string(), format!("bad glob `{m}`: {e}")))?;
        }
        Ok(())
    }

    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let me = self.clone();
        let got = cx.blocking(move |h| me.observe(h)).await;
        let values = match got {
            Ok(Ok(v)) => v,
            Ok(Err(e)) | Err(e) => return Finding::error(expect.describe(), e),
        };
        let mut misses = Vec::new();
        let mut named = Vec::new();
        for (mount, result) in values {
            match result {
                Ok(pct) => {
                    let obs = Observed::Number(round2(pct));
                    if let Err(why) = expect.check(&obs) {
                        misses.push(format!("{mount}: {why}"));
                    }
                    named.push((mount, obs));
                }
                Err(e) => return Finding::error(expect.describe(), format!("{mount}: {e}")),
            }
        }
        let observed = Observed::Named(named);
        let unit = match self.measure {
            DiskMeasure::UsedPercent => "space used %",
            DiskMeasure::InodesPercent => "inodes used %",
        };
        Finding {
            verdict: if misses.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Miss
            },
            message: if misses.is_empty() {
                format!("{unit}: {}", show(&observed))
            } else {
                format!("{unit}: {}", misses.join("; "))
            },
            observed,
            expected: expect.describe(),
        }
    }

    fn observe(&self, h: &dyn Host) -> Result<Vec<MountUsage>, String> {
        let text = h
            .read_file("/proc/self/mounts", 4 << 20)
            .map_err(|e| format!("cannot read /proc/self/mounts: {e}"))?;
        let mounts = parse_mounts(&text);
        let mut out: Vec<MountUsage> = Vec::new();
        for pattern in &self.mounts {
            let is_glob = pattern.contains(['*', '?', '[']);
            let pat = glob::Pattern::new(pattern).map_err(|e| e.to_string())?;
            let mut any = false;
            let mut skipped_network = Vec::new();
            for (point, fstype) in &mounts {
                let hit = if is_glob {
                    let network = NETWORK.contains(&fstype.as_str());
                    if network && !self.include_network && pat.matches(point) {
                        skipped_network.push(format!("{point} ({fstype})"));
                    }
                    pat.matches(point)
                        && !PSEUDO.contains(&fstype.as_str())
                        && (self.include_network || !network)
                } else {
                    point == pattern
                };
                if hit && !out.iter().any(|(p, _)| p == point) {
                    any = true;
                    let usage = h
                        .fs_usage(point)
                        .map(|u| match self.measure {
                            DiskMeasure::UsedPercent => u.used_percent(),
                            DiskMeasure::InodesPercent => u.inodes_percent(),
                        })
                        .map_err(|e| format!("cannot stat: {e}"));
                    out.push((point.clone(), usage));
                } else if hit {
                    any = true;
                }
            }
            if !any && skipped_network.is_empty() {
                return Err(format!("no mount point matches `{pattern}`"));
            }
            if !any {
                return Err(format!(
                    "no mount point matches `{pattern}` but network filesystems, which globs skip: {} (set include_network = true to read them)",
                    skipped_network.join(", ")
                ));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_unescaped() {
        let m = parse_mounts("/dev/sda1 / ext4 rw 0 0\n/dev/sdb1 /mnt/my\\040disk xfs rw 0 0\n");
        assert_eq!(m[1], ("/mnt/my disk".to_string(), "xfs".to_string()));
    }
}
