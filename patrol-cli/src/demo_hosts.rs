//! The default demo's fleet: one fixture tree per agent (`[node]
//! host_root`), written into the demo's scratch folder, and the story the
//! two sweeps tell. Every check of the `k8s-node` profile reads these
//! files exactly as it reads a host mounted at `/host` in the DaemonSet:
//! `/proc/sys` values, `/proc/meminfo`, `/proc/<pid>` of a kubelet and a
//! kube-proxy, the kubelet's `config.yaml` and kubeconfig, the kubeadm
//! drop-in, the dpkg database, `/dev/kmsg`. The fixture's `/etc/passwd`
//! and `/etc/group` name the demo's own user and group `root`, so the
//! files this user wrote read as `root:root`, as on a kubeadm node.
//!
//! What a fixture tree cannot answer without root: a check that runs a
//! program (a tree is entered with `chroot`, which needs
//! `CAP_SYS_CHROOT`). The demo's agents replace those profile checks by
//! id ([`OWN_CHECKS`]): `kubelet-version` reads the package database
//! instead of running `kubelet --version`, and `kubelet-running` (which
//! asks `systemctl`) runs only on nodes tagged `host = live`, so not on
//! these (tagged `host = fixture`): it is left out, and the demo says so
//! ([`LEFT_OUT`]).
//!
//! The story ([`Story`]), on a fleet of at least [`MIN_NODES`]: the
//! control plane (nodes 0-2) runs with `vm.overcommit_memory = 0`, a
//! sysctl off on one role; two workers still run kubelet 1.27; one worker's
//! kubelet configuration was edited by hand (drift, the check only
//! observes); one worker has too few inotify instances. Between the two
//! sweeps the inotify limit is fixed (resolved), IP forwarding goes off on
//! another worker (new), and the last agent stops (a silent node). The rest
//! persists. Free memory differs on every node (a distribution with
//! spread).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The story needs this many nodes: three control-plane nodes, and
/// enough workers that each drifted value has a clear majority against it
/// in its peer group (see `patrol_report::drift`).
pub const MIN_NODES: u16 = 10;

/// The demo's own checks: they replace the profile checks of the same id
/// that a fixture tree cannot answer (see the module doc).
pub const OWN_CHECKS: &str = r#"
[[check]]
id = "kubelet-version"
type = "package"
name = "kubelet"
expect = { version = ">= 1.28" }
labels = ["kubelet"]
description = "kubelet is a supported Kubernetes version (read from the package database: a fixture tree cannot run `kubelet --version` without root)"
remediation = "upgrade the kubelet package to a supported minor version"

[[check]]
id = "kubelet-running"
type = "systemd_unit"
unit = "kubelet.service"
expect = "active"
tags = { host = "live" }
labels = ["kubelet"]
description = "the kubelet service is running (asks systemctl: not on the demo's fixture trees)"

[[check]]
id = "disk-root"
type = "disk"
mounts = ["/"]
measure = "used_percent"
expect = { max = 85 }
tags = { host = "live" }
labels = ["resources"]
description = "root filesystem space (measures a real filesystem: not on the demo's fixture trees, which all sit on the demo machine's)"

[[check]]
id = "disk-root-inodes"
type = "disk"
mounts = ["/"]
measure = "inodes_percent"
expect = { max = 85 }
tags = { host = "live" }
labels = ["resources"]
description = "root filesystem inodes (measures a real filesystem: not on the demo's fixture trees)"
"#;

/// Profile checks the demo's fixture trees leave out, and why.
pub const LEFT_OUT: &[(&str, &str)] = &[
    (
        "kubelet-running",
        "asks systemctl, a program; running one inside a fixture tree needs root (chroot)",
    ),
    (
        "disk-root",
        "measures the filesystem the trees sit on, the demo machine's own, not a node's",
    ),
    (
        "disk-root-inodes",
        "measures the filesystem the trees sit on, the demo machine's own, not a node's",
    ),
];

/// The tag every demo node carries (a check tagged `host = live` does not
/// run on it).
pub const HOST_TAG: (&str, &str) = ("host", "fixture");

/// Which of the two sweeps a tree is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Night {
    First,
    Second,
}

/// Who does what in the demo's story, by node index.
#[derive(Debug, Clone, Copy)]
pub struct Story {
    pub nodes: usize,
}

/// Nodes `0..CONTROL_PLANE` are the control plane.
pub const CONTROL_PLANE: usize = 3;
/// A worker whose kubelet configuration was edited by hand.
pub const HAND_EDITED: usize = 3;
/// A worker with too few inotify instances, fixed between the sweeps.
pub const FIXED: usize = 4;
/// Workers still on kubelet 1.27.
pub const OLD_KUBELET: [usize; 2] = [5, 8];
/// A worker whose IP forwarding goes off between the sweeps.
pub const BROKEN: usize = 7;
/// The kubelet package most nodes run, and the old one.
const KUBELET: &str = "1.30.4-1.1";
const KUBELET_OLD: &str = "1.27.9-1.1";

impl Story {
    /// The agent stopped before the second sweep: the last one.
    pub fn stopped(&self) -> usize {
        self.nodes - 1
    }

    /// The agent that coordinates both sweeps (never the stopped one).
    pub fn coordinator(&self) -> usize {
        self.nodes / 2
    }

    pub fn name(i: usize) -> String {
        format!("demo-{i:02}")
    }

    pub fn role(i: usize) -> &'static str {
        if i < CONTROL_PLANE {
            "control-plane"
        } else {
            "worker"
        }
    }

    /// The story in a few lines, for the demo's output.
    pub fn legend(&self) -> Vec<String> {
        let n = Story::name;
        vec![
            format!(
                "every node: control-plane {}-{} run vm.overcommit_memory=0 (a sysctl off on one role); {} and {} run kubelet 1.27 (kubelet-version fails); {} has a hand-edited kubelet config.yaml (drift); free memory differs on every node",
                n(0),
                n(CONTROL_PLANE - 1),
                n(OLD_KUBELET[0]),
                n(OLD_KUBELET[1]),
                n(HAND_EDITED)
            ),
            format!(
                "first sweep: {} also has fs.inotify.max_user_instances=128 (a warning)",
                n(FIXED)
            ),
            format!(
                "between the sweeps: {} is fixed (resolved), {} loses net.ipv4.ip_forward (new), {}'s agent stops (silent)",
                n(FIXED),
                n(BROKEN),
                n(self.stopped())
            ),
        ]
    }

    /// Write every node's tree under `dir/<name>` as it is on `night`.
    pub fn write_fleet(&self, dir: &Path, night: Night) -> std::io::Result<()> {
        for i in 0..self.nodes {
            write_tree(&dir.join(Story::name(i)), &Values::of(i, night))?;
        }
        Ok(())
    }

    /// Node `i`'s tree under `dir`.
    pub fn tree(dir: &Path, i: usize) -> PathBuf {
        dir.join(Story::name(i))
    }
}

/// What differs from node to node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Values {
    overcommit: u8,
    ip_forward: u8,
    inotify_instances: u32,
    kubelet: &'static str,
    hand_edited: bool,
    /// MemAvailable in percent of MemTotal.
    mem_available_pct: u64,
}

impl Values {
    fn of(i: usize, night: Night) -> Values {
        Values {
            overcommit: if i < CONTROL_PLANE { 0 } else { 1 },
            ip_forward: if i == BROKEN && night == Night::Second {
                0
            } else {
                1
            },
            inotify_instances: if i == FIXED && night == Night::First {
                128
            } else {
                8192
            },
            kubelet: if OLD_KUBELET.contains(&i) {
                KUBELET_OLD
            } else {
                KUBELET
            },
            hand_edited: i == HAND_EDITED,
            // Spread over 35-74 %, no outlier (drift looks for those).
            mem_available_pct: 35 + (i as u64 * 17) % 40,
        }
    }
}

const PID_KUBELET: u32 = 4242;
const PID_PROXY: u32 = 4343;

/// `/proc/<pid>/stat` of a sleeping process.
fn stat(pid: u32, name: &str) -> String {
    format!("{pid} ({name}) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123 456 78\n")
}

fn kubelet_config(hand_edited: bool) -> String {
    let mut s = String::from(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  anonymous:\n    enabled: false\n  webhook:\n    enabled: true\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\nauthorization:\n  mode: Webhook\ncgroupDriver: systemd\nrotateCertificates: true\nreadOnlyPort: 0\n",
    );
    if hand_edited {
        s.push_str("maxPods: 250\n");
    }
    s
}

fn dpkg_status(kubelet: &str) -> String {
    format!(
        "Package: kubelet\nStatus: install ok installed\nArchitecture: amd64\nVersion: {kubelet}\n\nPackage: kubectl\nStatus: install ok installed\nArchitecture: amd64\nVersion: {KUBELET}\n"
    )
}

/// Every file of one tree: (path, text, mode).
/// `owner` is the (uid, gid) the demo writes files as.
fn files(v: &Values, (uid, gid): (u32, u32)) -> Vec<(String, String, u32)> {
    let sysctl = |key: &str, value: String| {
        (
            format!("proc/sys/{}", key.replace('.', "/")),
            format!("{value}\n"),
            0o644,
        )
    };
    let file = |path: &str, text: String, mode: u32| (path.to_string(), text, mode);
    let mem_total_kb = 16_384_000u64;
    let mut out = vec![
        sysctl("net.ipv4.ip_forward", v.ip_forward.to_string()),
        sysctl("net.bridge.bridge-nf-call-iptables", "1".into()),
        sysctl("net.netfilter.nf_conntrack_max", "262144".into()),
        sysctl("vm.overcommit_memory", v.overcommit.to_string()),
        sysctl("vm.panic_on_oom", "0".into()),
        sysctl("kernel.panic", "10".into()),
        sysctl("kernel.panic_on_oops", "1".into()),
        sysctl("kernel.pid_max", "4194304".into()),
        sysctl("fs.inotify.max_user_watches", "524288".into()),
        sysctl("fs.inotify.max_user_instances", v.inotify_instances.to_string()),
        sysctl("fs.file-max", "9223372036854775807".into()),
        file("proc/sys/fs/file-nr", "4128\t0\t9223372036854775807\n".into(), 0o644),
        file("sys/devices/system/cpu/online", "0-3\n".into(), 0o644),
        file(
            "proc/meminfo",
            format!(
                "MemTotal:       {mem_total_kb} kB\nMemFree:         1024000 kB\nMemAvailable:   {} kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n",
                mem_total_kb * v.mem_available_pct / 100
            ),
            0o644,
        ),
        file("proc/uptime", "864000.00 1.00\n".into(), 0o644),
        file("dev/kmsg", String::new(), 0o644),
        file("proc/1/mounts", "/dev/vda1 / ext4 rw,relatime 0 0\n".into(), 0o644),
        file("proc/1/stat", stat(1, "systemd"), 0o644),
        file("proc/1/comm", "systemd\n".into(), 0o644),
        file("proc/1/cmdline", "/sbin/init\0".into(), 0o644),
        file(&format!("proc/{PID_KUBELET}/stat"), stat(PID_KUBELET, "kubelet"), 0o644),
        file(&format!("proc/{PID_KUBELET}/comm"), "kubelet\n".into(), 0o644),
        file(
            &format!("proc/{PID_KUBELET}/cmdline"),
            "/usr/bin/kubelet\0--kubeconfig=/etc/kubernetes/kubelet.conf\0--config=/var/lib/kubelet/config.yaml\0".into(),
            0o644,
        ),
        file(&format!("proc/{PID_PROXY}/stat"), stat(PID_PROXY, "kube-proxy"), 0o644),
        file(&format!("proc/{PID_PROXY}/comm"), "kube-proxy\n".into(), 0o644),
        file(
            &format!("proc/{PID_PROXY}/cmdline"),
            "/usr/local/bin/kube-proxy\0--config=/var/lib/kube-proxy/config.conf\0".into(),
            0o644,
        ),
        file(
            "var/lib/kube-proxy/config.conf",
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nclientConnection:\n  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf\nmetricsBindAddress: 127.0.0.1:10249\nmode: iptables\n".into(),
            0o600,
        ),
        file("var/lib/kube-proxy/kubeconfig.conf", "apiVersion: v1\nkind: Config\n".into(), 0o600),
        file("var/lib/kubelet/config.yaml", kubelet_config(v.hand_edited), 0o600),
        file("etc/kubernetes/kubelet.conf", "apiVersion: v1\nkind: Config\n".into(), 0o600),
        file("etc/kubernetes/pki/ca.crt", "demo CA\n".into(), 0o600),
        file(
            "etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
            "[Service]\nExecStart=\nExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS\n".into(),
            0o600,
        ),
        file("var/lib/dpkg/status", dpkg_status(v.kubelet), 0o644),
        file("var/log/syslog", "demo\n".into(), 0o644),
        // The fixture host's accounts: the demo's own user is its root.
        file("etc/passwd", format!("root:x:{uid}:{gid}:root:/root:/bin/sh\n"), 0o644),
        file("etc/group", format!("root:x:{gid}:\n"), 0o644),
    ];
    out.sort();
    out
}

/// Write one tree; files already there are rewritten.
fn write_tree(root: &Path, v: &Values) -> std::io::Result<()> {
    fs::create_dir_all(root)?;
    // Whoever runs the demo owns what it writes.
    let me = fs::metadata(root)?;
    let owner = (
        std::os::unix::fs::MetadataExt::uid(&me),
        std::os::unix::fs::MetadataExt::gid(&me),
    );
    for (path, text, mode) in files(v, owner) {
        let p = root.join(&path);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&p, text)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn between_the_sweeps_two_trees_change_and_the_coordinator_is_not_the_stopped_agent() {
        let story = Story { nodes: 25 };
        let changed: Vec<usize> = (0..story.nodes)
            .filter(|&i| Values::of(i, Night::First) != Values::of(i, Night::Second))
            .collect();
        assert_eq!(changed, vec![FIXED, BROKEN]);
        assert_ne!(story.coordinator(), story.stopped());
    }

    #[test]
    fn story_nodes_are_distinct_workers_of_the_smallest_fleet() {
        let story = Story {
            nodes: MIN_NODES as usize,
        };
        let mut roles = vec![HAND_EDITED, FIXED, BROKEN, story.stopped()];
        roles.extend(OLD_KUBELET);
        let mut unique = roles.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), roles.len(), "{roles:?}");
        assert!(roles
            .iter()
            .all(|&i| i < story.nodes && Story::role(i) == "worker"));
    }

    #[test]
    fn free_memory_differs_from_node_to_node() {
        let values: std::collections::BTreeSet<u64> = (0..25)
            .map(|i| Values::of(i, Night::First).mem_available_pct)
            .collect();
        assert!(values.len() > 10, "{values:?}");
        assert!(values.iter().all(|v| (35..75).contains(v)));
    }
}
