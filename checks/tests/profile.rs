//! The built-in `k8s-node` profile and the catalog: the profile parses,
//! carries the well-known Kubernetes node values with a one-line
//! remediation each, passes on a fixture of a well-configured node and
//! names every deviation on a badly configured one; the catalog merges a
//! node's own checks with profiles and selects by id, label, profile and
//! node tags.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use patrol_checks::{Catalog, CheckKind, Selector, Status};
use patrol_config::Config;
use support::Fixture;

const PROFILE: &str = include_str!("../../config/profiles/k8s-node.toml");
const CIS: &str = include_str!("../../config/profiles/cis-node.toml");

/// The scored CIS checks (severity `fail` in `cis-node`), which `k8s-node`
/// includes.
fn scored_cis() -> usize {
    CIS.split("[[check]]")
        .skip(1)
        .filter(|c| c.contains("severity = \"fail\""))
        .count()
}

#[test]
fn the_profile_parses_and_every_check_says_what_and_how_to_fix() {
    let catalog = Catalog::builtin_profile("k8s-node").expect("k8s-node parses");
    assert_eq!(Catalog::builtin_profile_names(), ["k8s-node", "cis-node"]);
    assert!(Catalog::builtin_profile("mainframe").is_none());
    // Every [[check]] of the file made it (none silently dropped), and
    // the scored CIS worker-node checks.
    assert_eq!(scored_cis(), 12);
    assert_eq!(
        catalog.len(),
        PROFILE.lines().filter(|l| l.trim() == "[[check]]").count() + scored_cis()
    );
    assert!(catalog.checks().iter().any(|c| c.id == "cis-4.2.1"));
    assert!(!catalog.checks().iter().any(|c| c.id == "cis-4.2.4"));
    let mut ids = std::collections::BTreeSet::new();
    for c in catalog.checks() {
        assert!(ids.insert(c.id.clone()), "duplicate id {}", c.id);
        assert_eq!(c.profiles, ["k8s-node"]);
        for (what, text) in [
            ("description", &c.description),
            ("remediation", &c.remediation),
        ] {
            assert!(!text.trim().is_empty(), "{} has no {what}", c.id);
            assert!(!text.contains('\n'), "{}'s {what} is not one line", c.id);
        }
        // Observe-only checks say so in their description.
        assert!(
            !c.expect.is_empty() || (c.observe_only && c.description.contains("observe only")),
            "{} has no expectation",
            c.id
        );
    }
}

#[test]
fn the_profile_carries_the_well_known_values() {
    let catalog = Catalog::builtin_profile("k8s-node").unwrap();
    let sysctl = |key: &str| {
        catalog
            .checks()
            .iter()
            .find(|c| matches!(&c.kind, CheckKind::Sysctl(s) if s.key == key))
            .unwrap_or_else(|| panic!("no sysctl check for {key}"))
    };
    for (key, want) in [
        ("net.ipv4.ip_forward", "= 1"),
        ("net.bridge.bridge-nf-call-iptables", "= 1"),
        ("vm.overcommit_memory", "= 1"),
        ("vm.panic_on_oom", "= 0"),
        ("kernel.panic", "= 10"),
        ("kernel.panic_on_oops", "= 1"),
        ("fs.inotify.max_user_watches", ">= 524288"),
    ] {
        assert_eq!(sysctl(key).expect.describe(), want, "{key}");
    }
    match &sysctl("net.netfilter.nf_conntrack_max").kind {
        CheckKind::Sysctl(s) => assert_eq!(s.min_per_cpu, Some(32768.0)),
        _ => unreachable!(),
    }
    let kinds: Vec<&str> = catalog.checks().iter().map(|c| c.kind.name()).collect();
    for kind in [
        "process_count",
        "file_descriptors",
        "disk",
        "memory",
        "kernel_log",
        "kubelet_version",
        "systemd_unit",
        "file",
        "package",
        "log_volume",
    ] {
        assert!(kinds.contains(&kind), "no {kind} check in the profile");
    }
    let total = catalog
        .checks()
        .iter()
        .find(|c| c.id == "process-total")
        .unwrap();
    assert_eq!(total.expect.describe(), "<= 10000");
}

/// A node configured the way the profile wants.
fn good_node() -> Fixture {
    let f = Fixture::new();
    for (key, value) in [
        ("net/ipv4/ip_forward", "1"),
        ("net/bridge/bridge-nf-call-iptables", "1"),
        ("net/netfilter/nf_conntrack_max", "262144"),
        ("vm/overcommit_memory", "1"),
        ("vm/panic_on_oom", "0"),
        ("kernel/panic", "10"),
        ("kernel/panic_on_oops", "1"),
        ("fs/inotify/max_user_watches", "1048576"),
        ("fs/inotify/max_user_instances", "8192"),
        ("kernel/pid_max", "4194304"),
        ("fs/file-nr", "3000\t0\t9223372036854775807"),
        ("fs/file-max", "9223372036854775807"),
    ] {
        f.file(&format!("/proc/sys/{key}"), &format!("{value}\n"));
    }
    f.file("/sys/devices/system/cpu/online", "0-7\n");
    for pid in 1..=20 {
        f.file(
            &format!("/proc/{pid}/stat"),
            &format!("{pid} (p{pid}) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 2 0 1 1 1\n"),
        );
    }
    f.file("/proc/self/mounts", "/dev/vda1 / ext4 rw 0 0\n")
        .file("/fs_usage", "/ 1000 600 600 1000 900\n")
        .file(
            "/proc/meminfo",
            "MemTotal: 8000000 kB\nMemAvailable: 6000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
        )
        .file("/proc/uptime", "5000.0 1.0\n")
        .file("/dev/kmsg", "6,1,0,-;Linux version 6.1.0\n");
    f.script("/bin/kubelet", "echo 'Kubernetes v1.31.2'");
    f.script(
        "/bin/systemctl",
        "printf 'LoadState=loaded\\nActiveState=active\\n'",
    );
    // The fixture's files belong to whoever runs the test: name that user
    // root in the fixture's passwd and group.
    let (uid, gid) = (rustix::process::getuid(), rustix::process::getgid());
    f.file(
        "/etc/passwd",
        &format!("root:x:{}:{}::/root:/bin/sh\n", uid.as_raw(), gid.as_raw()),
    )
    .file("/etc/group", &format!("root:x:{}:\n", gid.as_raw()))
    .file(
        "/etc/kubernetes/kubelet.conf",
        "apiVersion: v1\nkind: Config\n",
    )
    .file(
        "/var/lib/kubelet/config.yaml",
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  anonymous:\n    enabled: false\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\nauthorization:\n  mode: Webhook\nrotateCertificates: true\n",
    )
    .file("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", "[Service]\n")
    .file("/etc/kubernetes/pki/ca.crt", "CA\n")
    .file(
        "/var/lib/kube-proxy/config.conf",
        "kind: KubeProxyConfiguration\nmetricsBindAddress: 127.0.0.1:10249\n",
    )
    .file(
        "/var/lib/dpkg/status",
        "Package: kubelet\nStatus: install ok installed\nVersion: 1.31.2-1.1\n",
    )
    .file("/var/log/syslog", "started\n");
    // The running kubelet and kube-proxy, as /proc shows them.
    for (pid, comm, argv) in [
        (
            21,
            "kubelet",
            "/usr/bin/kubelet\0--kubeconfig=/etc/kubernetes/kubelet.conf\0--config=/var/lib/kubelet/config.yaml\0",
        ),
        (
            22,
            "kube-proxy",
            "/usr/local/bin/kube-proxy\0--config=/var/lib/kube-proxy/config.conf\0",
        ),
    ] {
        f.file(&format!("/proc/{pid}/cmdline"), argv)
            .file(&format!("/proc/{pid}/comm"), &format!("{comm}\n"))
            .file(
                &format!("/proc/{pid}/stat"),
                &format!("{pid} ({comm}) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 2 0 1 1 1\n"),
            );
    }
    for path in [
        "etc/kubernetes/kubelet.conf",
        "var/lib/kubelet/config.yaml",
        "etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
    ] {
        std::fs::set_permissions(
            f.root().join(path),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    }
    f
}

async fn run_profile(f: &Fixture) -> Vec<patrol_checks::CheckOutcome> {
    let catalog = Catalog::builtin_profile("k8s-node").unwrap();
    patrol_checks::Runner::new(std::sync::Arc::new(f.host()), 8)
        .run(catalog.checks())
        .await
}

#[tokio::test]
async fn a_well_configured_node_passes_the_whole_profile() {
    let f = good_node();
    let out = run_profile(&f).await;
    let bad: Vec<_> = out.iter().filter(|o| o.status != Status::Pass).collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

#[tokio::test]
async fn a_drifted_node_fails_exactly_the_drifted_checks() {
    let f = good_node();
    f.file("/proc/sys/net/ipv4/ip_forward", "0\n")
        .file("/proc/sys/net/netfilter/nf_conntrack_max", "65536\n")
        .file("/proc/sys/fs/inotify/max_user_watches", "8192\n")
        .file("/proc/sys/fs/inotify/max_user_instances", "128\n")
        .file(
            "/dev/kmsg",
            "6,1,0,-;Linux version 6.1.0\n3,2,4000000000,-;Memory cgroup out of memory: Killed process 77 (java)\n",
        );
    // br_netfilter not loaded: the key is missing.
    std::fs::remove_file(f.root().join("proc/sys/net/bridge/bridge-nf-call-iptables")).unwrap();
    f.script("/bin/kubelet", "echo 'Kubernetes v1.27.4'");
    let out = run_profile(&f).await;
    let not_pass: BTreeMap<&str, Status> = out
        .iter()
        .filter(|o| o.status != Status::Pass)
        .map(|o| (o.id.as_str(), o.status))
        .collect();
    let want: BTreeMap<&str, Status> = [
        ("ip-forward", Status::Fail),
        ("bridge-nf-call-iptables", Status::Error),
        ("nf-conntrack-max", Status::Fail),
        ("inotify-max-user-watches", Status::Fail),
        ("inotify-max-user-instances", Status::Warn),
        ("kernel-log-errors", Status::Fail),
        ("kubelet-version", Status::Fail),
    ]
    .into_iter()
    .collect();
    assert_eq!(not_pass, want, "{out:#?}");
    let conntrack = out.iter().find(|o| o.id == "nf-conntrack-max").unwrap();
    assert!(
        conntrack
            .expected
            .contains(">= 262144 (32768 per CPU x 8 CPUs)"),
        "{conntrack:?}"
    );
    let bridge = out
        .iter()
        .find(|o| o.id == "bridge-nf-call-iptables")
        .unwrap();
    assert!(bridge.message.contains("does not exist"), "{bridge:?}");
    assert!(
        bridge.remediation.contains("modprobe br_netfilter"),
        "{bridge:?}"
    );
}

fn config(text: &str) -> Config {
    Config::parse(text, Path::new("node.toml")).unwrap()
}

#[test]
fn own_checks_override_profile_checks_and_duplicates_are_problems() {
    let c = config(
        r#"
[checks]
profiles = ["k8s-node"]
[[check]]
id = "zombies"
type = "process_count"
count = "zombies"
expect = { max = 50 }
labels = ["mine"]
[[check]]
id = "etcd"
type = "etcd_health"
endpoint = "https://127.0.0.1:2379"
tags = { role = "etcd" }
"#,
    );
    let catalog = Catalog::from_config(&c).unwrap();
    let profile_len = Catalog::builtin_profile("k8s-node").unwrap().len();
    assert_eq!(catalog.len(), profile_len + 1);
    let zombies: Vec<_> = catalog
        .checks()
        .iter()
        .filter(|c| c.id == "zombies")
        .collect();
    assert_eq!(zombies.len(), 1);
    assert_eq!(zombies[0].expect.describe(), "<= 50");
    // The override still counts as the profile's check when selecting it.
    assert_eq!(zombies[0].profiles, ["k8s-node"]);

    let none = BTreeMap::new();
    let etcd_node: BTreeMap<String, String> = [("role".to_string(), "etcd".to_string())].into();
    let all = Selector::default();
    assert_eq!(catalog.select(&all, &none).len(), profile_len);
    assert_eq!(catalog.select(&all, &etcd_node).len(), profile_len + 1);
    let by_profile = Selector {
        profile: Some("k8s-node".into()),
        ..Selector::default()
    };
    assert_eq!(catalog.select(&by_profile, &etcd_node).len(), profile_len);
    let by_label = Selector {
        labels: vec!["mine".into(), "kubelet".into()],
        ..Selector::default()
    };
    let ids: Vec<String> = catalog
        .select(&by_label, &none)
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        ids,
        [
            "zombies",
            "kubelet-version",
            "kubelet-running",
            "kubelet-kubeconfig-mode",
            "kubelet-kubeconfig-owner",
            "kubelet-config-hash",
            "kubelet-package",
            "cis-4.2.1",
            "cis-4.2.2",
            "cis-4.2.3",
            "cis-4.2.6",
            "cis-4.2.10"
        ]
    );
    let by_id = Selector {
        checks: vec!["etcd".into(), "ip-forward".into()],
        ..Selector::default()
    };
    assert_eq!(catalog.select(&by_id, &none).len(), 1);
    assert_eq!(catalog.select(&by_id, &etcd_node).len(), 2);

    let dup = config(
        r#"
[checks]
profiles = ["k8s-node", "k8s-node"]
[[check]]
id = "a"
type = "memory"
expect = { min = 1 }
[[check]]
id = "a"
type = "memory"
expect = { min = 2 }
"#,
    );
    let err = Catalog::from_config(&dup).unwrap_err();
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"check[1].id"), "{err}");
    assert!(keys.contains(&"checks.profiles[1].id"), "{err}");
    assert!(
        err.to_string()
            .contains("duplicate check id `a` (first defined at check[0])"),
        "{err}"
    );
}

/// `k8s-node` carries the scored CIS checks and `cis-node` all 25: with
/// both enabled each shared check is one check that belongs to both, and
/// selecting either profile gives all of its checks.
#[test]
fn k8s_node_and_cis_node_share_the_scored_cis_checks() {
    let c = config("[checks]\nprofiles = [\"k8s-node\", \"cis-node\"]\n");
    let catalog = Catalog::from_config(&c).expect("no duplicate ids");
    let k8s = Catalog::builtin_profile("k8s-node").unwrap().len();
    let cis = Catalog::builtin_profile("cis-node").unwrap().len();
    assert_eq!(cis, 25);
    assert_eq!(catalog.len(), k8s + cis - scored_cis());
    let none = BTreeMap::new();
    let of = |profile: &str| {
        let selector = Selector {
            profile: Some(profile.into()),
            ..Selector::default()
        };
        catalog.select(&selector, &none).len()
    };
    assert_eq!(of("k8s-node"), k8s);
    assert_eq!(of("cis-node"), cis);
    let shared = catalog
        .checks()
        .iter()
        .find(|c| c.id == "cis-4.2.1")
        .unwrap();
    assert_eq!(shared.profiles, ["k8s-node", "cis-node"]);
}

#[test]
fn gauges_have_units_and_an_own_check_sets_its_own() {
    let builtin = patrol_checks::check_units(None);
    assert_eq!(builtin.get("memory-available"), Some(&"%"));
    assert_eq!(builtin.get("swap-off"), Some(&"MiB"));
    assert_eq!(builtin.get("process-total"), Some(&"processes"));
    assert_eq!(builtin.get("var-log-growth"), Some(&"MiB/hour"));
    assert_eq!(builtin.get("kernel-log-errors"), Some(&"messages"));
    // Settings, versions and file hashes have none.
    for id in ["ip-forward", "kubelet-version", "kubelet-config-hash"] {
        assert_eq!(builtin.get(id), None, "{id}");
    }
    // An own check of the same id is what the node runs: its unit wins.
    let own = config(
        "[checks]\nprofiles = [\"k8s-node\"]\n[[check]]\nid = \"memory-available\"\ntype = \"memory\"\nmeasure = \"available_mb\"\nexpect = { min = 512 }\n[[check]]\nid = \"rtt\"\ntype = \"network\"\nconnect = \"127.0.0.1:22\"\nobserve = true\n",
    );
    let units = patrol_checks::check_units(Some(&own));
    assert_eq!(units.get("memory-available"), Some(&"MiB"));
    assert_eq!(units.get("rtt"), Some(&"ms"));
    assert_eq!(units.get("process-total"), Some(&"processes"));
}
