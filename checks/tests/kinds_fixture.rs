//! Every check kind against a fixture machine (a directory standing in for
//! `/proc`, `/sys`, `/dev/kmsg`, mounts, and scripts standing in for
//! `systemctl`, `chronyc` and `kubelet`), plus loopback HTTP servers for
//! the metrics and etcd endpoints.

mod support;

use patrol_checks::{Observed, Status};
use support::{one, run, Fixture, HttpServer};

fn named(o: &Observed, key: &str) -> Observed {
    match o {
        Observed::Named(items) => items
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key} in {o:?}")),
        other => panic!("not named values: {other:?}"),
    }
}

// --- sysctl ------------------------------------------------------------------

#[tokio::test]
async fn sysctl_single_value_pass_miss_and_warn_severity() {
    let f = Fixture::new();
    f.file("/proc/sys/net/ipv4/ip_forward", "1\n")
        .file("/proc/sys/fs/inotify/max_user_watches", "8192\n");
    let out = run(
        f.host(),
        r#"
[[check]]
id = "fwd"
type = "sysctl"
key = "net.ipv4.ip_forward"
expect = 1
[[check]]
id = "watches"
type = "sysctl"
key = "fs.inotify.max_user_watches"
expect = { min = 524288 }
[[check]]
id = "watches-warn"
type = "sysctl"
key = "fs.inotify.max_user_watches"
expect = { min = 524288 }
severity = "warn"
"#,
    )
    .await;
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    assert_eq!(out[0].observed, Observed::Number(1.0));
    assert_eq!(out[1].status, Status::Fail);
    assert_eq!(out[1].message, "observed 8192, expected >= 524288");
    assert_eq!(out[1].expected, ">= 524288");
    assert_eq!(out[2].status, Status::Warn);
}

#[tokio::test]
async fn sysctl_multi_value_compares_word_by_word() {
    let f = Fixture::new();
    f.file("/proc/sys/net/ipv4/ip_local_port_range", "32768\t60999\n");
    let out = run(
        f.host(),
        r#"
[[check]]
id = "range-ok"
type = "sysctl"
key = "net.ipv4.ip_local_port_range"
expect = "32768 60999"
[[check]]
id = "range-list"
type = "sysctl"
key = "net.ipv4.ip_local_port_range"
expect = [1024, 65535]
"#,
    )
    .await;
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    assert_eq!(
        out[0].observed,
        Observed::List(vec![Observed::Number(32768.0), Observed::Number(60999.0)])
    );
    assert_eq!(out[1].status, Status::Fail);
    assert_eq!(out[1].message, "observed 32768 60999, expected 1024 65535");
}

#[tokio::test]
async fn sysctl_missing_key_is_an_error_naming_the_path() {
    let f = Fixture::new();
    f.file("/proc/sys/vm/swappiness", "60\n");
    let o = one(
        f.host(),
        r#"
[[check]]
id = "bridge"
type = "sysctl"
key = "net.bridge.bridge-nf-call-iptables"
expect = 1
"#,
    )
    .await;
    assert_eq!(o.status, Status::Error);
    assert_eq!(o.observed, Observed::None);
    assert!(
        o.message.contains("does not exist")
            && o.message
                .contains("/proc/sys/net/bridge/bridge-nf-call-iptables"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn sysctl_min_per_cpu_scales_with_online_cpus() {
    let f = Fixture::new();
    f.file("/proc/sys/net/netfilter/nf_conntrack_max", "131072\n")
        .file("/sys/devices/system/cpu/online", "0-7\n");
    let o = one(
        f.host(),
        r#"
[[check]]
id = "conntrack"
type = "sysctl"
key = "net.netfilter.nf_conntrack_max"
min_per_cpu = 32768
expect = { min = 131072 }
"#,
    )
    .await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert!(o.expected.contains(">= 262144"), "{}", o.expected);
    assert!(o.expected.contains("x 8 CPUs"), "{}", o.expected);
    f.file("/sys/devices/system/cpu/online", "0-1,3\n");
    let o = one(
        f.host(),
        r#"
[[check]]
id = "conntrack"
type = "sysctl"
key = "net.netfilter.nf_conntrack_max"
min_per_cpu = 32768
expect = { min = 131072 }
"#,
    )
    .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
}

// --- process_count -------------------------------------------------------------

fn stat(pid: u32, name: &str, state: char, threads: u32) -> String {
    format!("{pid} ({name}) {state} 1 {pid} {pid} 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 {threads} 0 123 456 78\n")
}

fn processes() -> Fixture {
    let f = Fixture::new();
    f.file("/proc/1/stat", &stat(1, "systemd", 'S', 1))
        .file("/proc/1/cmdline", "/sbin/init\0splash\0")
        .file("/proc/20/stat", &stat(20, "etcd", 'S', 12))
        .file("/proc/20/cmdline", "/usr/bin/etcd\0--name\0n1\0")
        .file("/proc/31/stat", &stat(31, "kube apiserver", 'R', 30))
        .file("/proc/31/cmdline", "kube-apiserver\0--etcd-servers=x\0")
        .file("/proc/40/stat", &stat(40, "defunct", 'Z', 1))
        .file("/proc/41/stat", &stat(41, "defunct", 'Z', 1))
        .file("/proc/sys/kernel/pid_max", "100\n")
        .file("/proc/meminfo", "MemTotal: 1 kB\n"); // not a pid dir: ignored
    f
}

#[tokio::test]
async fn process_count_every_measure() {
    let f = processes();
    let out = run(
        f.host(),
        r#"
[[check]]
id = "total"
type = "process_count"
expect = 5
[[check]]
id = "threads"
type = "process_count"
count = "threads"
expect = 45
[[check]]
id = "zombies"
type = "process_count"
count = "zombies"
expect = { max = 1 }
[[check]]
id = "etcd-by-name"
type = "process_count"
count = "matching"
name = "etcd"
expect = 1
[[check]]
id = "by-pattern"
type = "process_count"
count = "matching"
pattern = "--etcd-servers|--name"
expect = 2
[[check]]
id = "pid-max"
type = "process_count"
count = "pid_max_percent"
expect = { max = 4 }
"#,
    )
    .await;
    let got: Vec<(Status, String)> = out
        .iter()
        .map(|o| (o.status, o.observed.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            (Status::Pass, "5".to_string()),
            (Status::Pass, "45".to_string()),
            (Status::Fail, "2".to_string()),
            (Status::Pass, "1".to_string()),
            (Status::Pass, "2".to_string()),
            (Status::Fail, "5".to_string()),
        ],
        "{out:#?}"
    );
    assert!(
        out[5].message.contains("5 processes of pid_max 100"),
        "{}",
        out[5].message
    );
}

#[test]
fn process_count_settings_are_validated() {
    let t: toml::Table = toml::from_str(
        "[a]\nid = \"m\"\ntype = \"process_count\"\ncount = \"matching\"\nexpect = 1\n",
    )
    .unwrap();
    let err = patrol_checks::CheckSpec::from_table(
        t["a"].as_table().unwrap(),
        std::time::Duration::from_secs(1),
        None,
    )
    .unwrap_err();
    assert_eq!(err[0].0, "count", "{err:?}");
}

// --- memory, file descriptors ----------------------------------------------------

#[tokio::test]
async fn memory_measures() {
    let f = Fixture::new();
    f.file(
        "/proc/meminfo",
        "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    1600000 kB\nSwapTotal:       2097152 kB\nSwapFree:        1048576 kB\n",
    );
    let out = run(
        f.host(),
        r#"
[[check]]
id = "avail"
type = "memory"
expect = { min = 10 }
[[check]]
id = "avail-mb"
type = "memory"
measure = "available_mb"
expect = { min = 2000 }
[[check]]
id = "swap-used"
type = "memory"
measure = "swap_used_percent"
expect = { max = 50 }
[[check]]
id = "swap-off"
type = "memory"
measure = "swap_total_mb"
expect = 0
"#,
    )
    .await;
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    assert_eq!(out[0].observed, Observed::Number(10.0));
    assert_eq!(out[1].status, Status::Fail);
    assert_eq!(out[1].observed, Observed::Number(1562.5));
    assert_eq!(out[2].status, Status::Pass);
    assert_eq!(out[2].observed, Observed::Number(50.0));
    assert_eq!(out[3].status, Status::Fail);
    assert_eq!(out[3].message, "observed 2048, expected 0");

    let broken = Fixture::new();
    broken.file("/proc/meminfo", "MemTotal: 100 kB\n");
    let o = one(
        broken.host(),
        "[[check]]\nid = \"a\"\ntype = \"memory\"\nexpect = { min = 1 }\n",
    )
    .await;
    assert_eq!(o.status, Status::Error);
    assert!(o.message.contains("no MemAvailable"), "{}", o.message);
}

#[tokio::test]
async fn file_descriptors_measures() {
    let f = Fixture::new();
    f.file("/proc/sys/fs/file-nr", "9000\t0\t10000\n")
        .file("/proc/sys/fs/file-max", "10000\n");
    let out = run(
        f.host(),
        r#"
[[check]]
id = "pct"
type = "file_descriptors"
expect = { max = 80 }
[[check]]
id = "allocated"
type = "file_descriptors"
measure = "allocated"
expect = 9000
[[check]]
id = "max"
type = "file_descriptors"
measure = "max"
expect = { min = 1048576 }
"#,
    )
    .await;
    assert_eq!(out[0].status, Status::Fail);
    assert_eq!(out[0].observed, Observed::Number(90.0));
    assert!(
        out[0].message.contains("9000 allocated of 10000"),
        "{}",
        out[0].message
    );
    assert_eq!(out[1].status, Status::Pass);
    assert_eq!(out[2].status, Status::Fail);

    let empty = Fixture::new();
    let o = one(
        empty.host(),
        "[[check]]\nid = \"a\"\ntype = \"file_descriptors\"\nexpect = { max = 80 }\n",
    )
    .await;
    assert_eq!(o.status, Status::Error);
    assert!(o.message.contains("fs/file-nr"), "{}", o.message);
}

// --- disk ---------------------------------------------------------------------------

#[tokio::test]
async fn disk_space_inodes_globs_and_missing_mounts() {
    let f = Fixture::new();
    f.file(
        "/proc/self/mounts",
        "/dev/sda1 / ext4 rw 0 0\nproc /proc proc rw 0 0\n/dev/sdb1 /var/lib/docker xfs rw 0 0\ntmpfs /var/lib/kubelet/pods/x tmpfs rw 0 0\n/dev/sdc1 /var/lib/my\\040data ext4 rw 0 0\n",
    )
    // MOUNT BYTES_TOTAL BYTES_FREE BYTES_AVAIL INODES_TOTAL INODES_FREE
    .file(
        "/fs_usage",
        "/ 1000 500 450 100 90\n/var/lib/docker 1000 50 50 100 5\n/var/lib/my\\040data 1000 1000 1000 0 0\n",
    );
    let out = run(
        f.host(),
        r#"
[[check]]
id = "root"
type = "disk"
expect = { max = 85 }
[[check]]
id = "var-lib"
type = "disk"
mounts = ["/var/lib/*"]
expect = { max = 85 }
[[check]]
id = "inodes"
type = "disk"
mounts = ["/", "/var/lib/docker"]
measure = "inodes_percent"
expect = { max = 85 }
[[check]]
id = "nothing"
type = "disk"
mounts = ["/data/*"]
expect = { max = 85 }
"#,
    )
    .await;
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    assert_eq!(named(&out[0].observed, "/"), Observed::Number(52.63));
    assert_eq!(out[1].status, Status::Fail, "{:?}", out[1]);
    // The tmpfs under /var/lib is skipped; the escaped mount point is read.
    assert_eq!(
        named(&out[1].observed, "/var/lib/docker"),
        Observed::Number(95.0)
    );
    assert_eq!(
        named(&out[1].observed, "/var/lib/my data"),
        Observed::Number(0.0)
    );
    assert!(
        !out[1].observed.to_string().contains("pods"),
        "{:?}",
        out[1].observed
    );
    assert!(
        out[1].message.contains("/var/lib/docker: observed 95"),
        "{}",
        out[1].message
    );
    assert_eq!(out[2].status, Status::Fail);
    assert_eq!(named(&out[2].observed, "/"), Observed::Number(10.0));
    assert_eq!(out[3].status, Status::Error);
    assert!(
        out[3].message.contains("no mount point matches `/data/*`"),
        "{}",
        out[3].message
    );
}

/// Regression (issue 12): a glob over mounts reached NFS mounts, and a
/// `statvfs` on a hung server blocks until it answers.
#[tokio::test]
async fn disk_globs_skip_network_filesystems_unless_included_but_named_mounts_are_read() {
    let f = Fixture::new();
    // One mount of every network type under /net, plus a local disk.
    let mut mounts = String::from("/dev/sda1 / ext4 rw 0 0\n/dev/sdb1 /net/local xfs rw 0 0\n");
    let mut usage = String::from("/ 1000 500 450 100 90\n/net/local 1000 500 500 100 90\n");
    for (i, fstype) in patrol_checks::kinds::disk::NETWORK.iter().enumerate() {
        mounts.push_str(&format!(
            "server:/export{i} /net/remote{i:02} {fstype} rw 0 0\n"
        ));
        usage.push_str(&format!("/net/remote{i:02} 1000 100 100 100 90\n"));
    }
    mounts.push_str("filer:/home /home nfs4 rw 0 0\n");
    usage.push_str("/home 1000 0 0 100 90\n");
    f.file("/proc/self/mounts", &mounts)
        .file("/fs_usage", &usage);
    let out = run(
        f.host(),
        r#"
[[check]]
id = "glob"
type = "disk"
mounts = ["/net/*"]
expect = { max = 85 }
[[check]]
id = "glob-with-network"
type = "disk"
mounts = ["/net/*"]
include_network = true
expect = { max = 85 }
[[check]]
id = "named-nfs"
type = "disk"
mounts = ["/home"]
expect = { max = 85 }
[[check]]
id = "only-network"
type = "disk"
mounts = ["/h*"]
expect = { max = 85 }
"#,
    )
    .await;
    // The glob reads the local disk only.
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    assert_eq!(
        out[0].observed,
        Observed::Named(vec![("/net/local".into(), Observed::Number(50.0))])
    );
    // Opted in: every network mount is read (and is 90% full).
    assert_eq!(out[1].status, Status::Fail, "{:?}", out[1]);
    let Observed::Named(read) = &out[1].observed else {
        panic!("{:?}", out[1]);
    };
    assert_eq!(read.len(), 1 + patrol_checks::kinds::disk::NETWORK.len());
    assert_eq!(
        named(&out[1].observed, "/net/remote00"),
        Observed::Number(90.0)
    );
    // A network mount named exactly is read without opting in.
    assert_eq!(out[2].status, Status::Fail, "{:?}", out[2]);
    assert_eq!(named(&out[2].observed, "/home"), Observed::Number(100.0));
    // A glob that matches network mounts only says so.
    assert_eq!(out[3].status, Status::Error, "{:?}", out[3]);
    assert_eq!(
        out[3].message,
        "no mount point matches `/h*` but network filesystems, which globs skip: /home (nfs4) (set include_network = true to read them)"
    );
}

#[test]
fn disk_include_network_takes_a_boolean_and_a_misspelt_key_is_refused() {
    let problems = |text: &str| {
        let table: toml::Table = toml::from_str(text).unwrap();
        patrol_checks::CheckSpec::from_table(&table, std::time::Duration::from_secs(5), None)
            .err()
            .unwrap_or_default()
    };
    let base = "id = \"d\"\ntype = \"disk\"\nmounts = [\"/*\"]\nexpect = { max = 85 }\n";
    assert!(problems(&format!("{base}include_network = true\n")).is_empty());
    assert!(problems(&format!("{base}include_network = false\n")).is_empty());
    let wrong = problems(&format!("{base}include_network = \"yes\"\n"));
    assert_eq!(wrong.len(), 1, "{wrong:?}");
    assert!(wrong[0].1.contains("expected a boolean"), "{wrong:?}");
    let typo = problems(&format!("{base}include_networks = true\n"));
    assert_eq!(typo.len(), 1, "{typo:?}");
    assert_eq!(typo[0].0, "include_networks", "{typo:?}");
    assert!(typo[0].1.starts_with("unknown field"), "{typo:?}");
}

// --- kernel log ------------------------------------------------------------------------

#[tokio::test]
async fn kernel_log_patterns_and_time_window() {
    let f = Fixture::new();
    // Uptime 100000 s; one OOM kill long ago, one hung task 10 minutes ago.
    f.file("/proc/uptime", "100000.00 1.00\n").file(
        "/dev/kmsg",
        "6,1,0,-;Linux version 6.1.0\n\
         3,2,1000000,-;Out of memory: Killed process 4242 (java) total-vm:1kB\n\
         \u{20}SUBSYSTEM=memory\n\
         4,3,99400000000,-;INFO: task kworker/0:1:77 blocked for more than 120 seconds.\n\
         6,4,99500000000,-;eth0: link up\n",
    );
    let out = run(
        f.host(),
        r#"
[[check]]
id = "since-boot"
type = "kernel_log"
[[check]]
id = "last-hour"
type = "kernel_log"
since = "1h"
[[check]]
id = "custom"
type = "kernel_log"
patterns = ["link up"]
since = "1h"
expect = 1
[[check]]
id = "last-minute"
type = "kernel_log"
since = "1m"
"#,
    )
    .await;
    assert_eq!(out[0].status, Status::Fail, "{:?}", out[0]);
    assert_eq!(out[0].observed, Observed::Number(2.0));
    assert!(out[0].message.contains("since boot"), "{}", out[0].message);
    assert!(
        out[0].message.contains("blocked for more than"),
        "{}",
        out[0].message
    );
    assert_eq!(out[1].observed, Observed::Number(1.0));
    assert!(
        out[1].message.contains("in the last 1h"),
        "{}",
        out[1].message
    );
    assert_eq!(out[2].status, Status::Pass, "{:?}", out[2]);
    assert_eq!(out[3].status, Status::Pass, "{:?}", out[3]);
    assert_eq!(out[3].message, "no matching kernel messages in the last 1m");

    let empty = Fixture::new();
    let o = one(
        empty.host(),
        "[[check]]\nid = \"k\"\ntype = \"kernel_log\"\n",
    )
    .await;
    assert_eq!(o.status, Status::Error);
    assert!(
        o.message.contains("cannot read the kernel log"),
        "{}",
        o.message
    );
}

// --- systemd_unit -----------------------------------------------------------------------

#[tokio::test]
async fn systemd_unit_states() {
    let f = Fixture::new();
    f.script(
        "/bin/systemctl",
        r#"unit="$4"
case "$unit" in
  kubelet.service) printf 'LoadState=loaded\nActiveState=active\n' ;;
  containerd.service) printf 'LoadState=loaded\nActiveState=failed\n' ;;
  *) printf 'LoadState=not-found\nActiveState=inactive\n' ;;
esac"#,
    );
    let out = run(
        f.host(),
        r#"
[[check]]
id = "kubelet"
type = "systemd_unit"
unit = "kubelet.service"
[[check]]
id = "containerd"
type = "systemd_unit"
unit = "containerd.service"
[[check]]
id = "missing"
type = "systemd_unit"
unit = "nope.service"
"#,
    )
    .await;
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    assert_eq!(out[0].expected, "= active");
    assert_eq!(out[1].status, Status::Fail);
    assert_eq!(
        out[1].message,
        "containerd.service: observed failed, expected active"
    );
    assert_eq!(out[2].status, Status::Fail);
    assert!(
        out[2].message.contains("not installed"),
        "{}",
        out[2].message
    );

    let no_systemd = Fixture::new();
    no_systemd.script(
        "/bin/systemctl",
        "echo 'System has not been booted with systemd as init system (PID 1). Can'\"'\"'t operate.' >&2; exit 1",
    );
    let o = one(
        no_systemd.host(),
        "[[check]]\nid = \"u\"\ntype = \"systemd_unit\"\nunit = \"kubelet.service\"\n",
    )
    .await;
    assert_eq!(o.status, Status::Error);
    assert!(
        o.message.contains("not been booted with systemd"),
        "{}",
        o.message
    );
}

// --- clock ----------------------------------------------------------------------------------

fn tracking(offset_s: &str, leap: &str) -> String {
    format!(
        "printf '%s\\n' 'A9FEA97B,169.254.169.123,4,1700000000.1,{offset_s},0.000001,0.000003,-11.5,0.001,0.05,0.0003,0.01,64.2,{leap}'"
    )
}

#[tokio::test]
async fn clock_offset_from_chrony() {
    let f = Fixture::new();
    f.script("/bin/chronyc", &tracking("-0.000250", "Normal"));
    f.script("/opt/far/chronyc", &tracking("0.250000", "Normal"));
    f.script("/opt/unsync/chronyc", &tracking("0.0", "Not synchronised"));
    f.script(
        "/opt/down/chronyc",
        "echo '506 Cannot talk to daemon'; exit 1",
    );
    let out = run(
        f.host(),
        r#"
[[check]]
id = "near"
type = "clock"
[[check]]
id = "far"
type = "clock"
chronyc = "/opt/far/chronyc"
[[check]]
id = "unsync"
type = "clock"
chronyc = "/opt/unsync/chronyc"
[[check]]
id = "down"
type = "clock"
chronyc = "/opt/down/chronyc"
[[check]]
id = "absent"
type = "clock"
chronyc = "/opt/none/chronyc"
"#,
    )
    .await;
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    assert_eq!(out[0].observed, Observed::Number(0.25));
    assert_eq!(out[0].expected, "<= 100");
    assert_eq!(out[1].status, Status::Fail);
    assert!(
        out[1].message.contains("250 ms offset"),
        "{}",
        out[1].message
    );
    for (o, needle) in [
        (&out[2], "not synchronised"),
        (&out[3], "Cannot talk to daemon"),
        (&out[4], "chrony is not installed"),
    ] {
        assert_eq!(o.status, Status::Error, "{o:?}");
        assert!(o.message.contains(needle), "{}", o.message);
    }
}

// --- kubelet_version ---------------------------------------------------------------------------

const BUILD_INFO: &str = "# HELP kubernetes_build_info [ALPHA] A metric with a constant '1' value labeled by major, minor, git version, git commit, git tree state, build date, Go version, and compiler from which Kubernetes was built, and platform on which it is running.\n# TYPE kubernetes_build_info gauge\nkubernetes_build_info{build_date=\"2024-10-22T20:28:14Z\",compiler=\"gc\",git_commit=\"5864a4677267e6adeae276ad85882a8714d69d9d\",git_tree_state=\"clean\",git_version=\"VERSION\",go_version=\"go1.22.8\",major=\"1\",minor=\"31\",platform=\"linux/amd64\"} 1\n";

fn metrics(version: &str) -> String {
    format!(
        "# HELP up x\nup 1\n{}",
        BUILD_INFO.replace("VERSION", version)
    )
}

#[tokio::test]
async fn kubelet_version_from_binary_and_skew_rule() {
    let f = Fixture::new();
    f.script("/usr/bin/kubelet", "echo 'Kubernetes v1.31.2'");
    let out = run(
        f.host(),
        r#"
[[check]]
id = "supported"
type = "kubelet_version"
binary = "/usr/bin/kubelet"
expect = { version = ">= 1.28, < 1.32" }
apiserver_version = "1.31.0"
[[check]]
id = "too-new"
type = "kubelet_version"
binary = "/usr/bin/kubelet"
apiserver_version = "v1.30.4"
[[check]]
id = "too-old"
type = "kubelet_version"
binary = "/usr/bin/kubelet"
apiserver_version = "1.35.1"
[[check]]
id = "three-older-ok"
type = "kubelet_version"
binary = "/usr/bin/kubelet"
apiserver_version = "1.34.0"
[[check]]
id = "constraint-miss"
type = "kubelet_version"
binary = "/usr/bin/kubelet"
expect = { version = "< 1.31" }
[[check]]
id = "absent"
type = "kubelet_version"
binary = "/opt/none/kubelet"
"#,
    )
    .await;
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    assert_eq!(out[0].observed, Observed::Version("1.31.2".into()));
    assert_eq!(out[0].message, "kubelet 1.31.2");
    assert_eq!(out[1].status, Status::Fail);
    assert!(
        out[1].message.contains("newer than the apiserver 1.30.4"),
        "{}",
        out[1].message
    );
    assert_eq!(out[2].status, Status::Fail);
    assert!(
        out[2]
            .message
            .contains("more than three minor versions older"),
        "{}",
        out[2].message
    );
    assert_eq!(out[3].status, Status::Pass, "{:?}", out[3]);
    assert_eq!(out[4].status, Status::Fail);
    assert_eq!(out[4].message, "observed 1.31.2, expected version < 1.31");
    assert_eq!(out[5].status, Status::Error);
    assert!(out[5].message.contains("not found"), "{}", out[5].message);
}

#[tokio::test]
async fn kubelet_version_from_the_metrics_endpoint() {
    let server = HttpServer::start(vec![
        ("/metrics", 200, metrics("v1.31.2")),
        ("/old/metrics", 200, metrics("v1.30.6")),
        ("/empty/metrics", 200, "up 1\n".into()),
        ("/denied/metrics", 403, "Forbidden".into()),
    ]);
    let f = Fixture::new();
    f.script("/usr/bin/kubelet", "echo 'Kubernetes v1.31.2'");
    let text = format!(
        r#"
[[check]]
id = "metrics-only"
type = "kubelet_version"
binary = ""
metrics_url = "{ok}"
apiserver_version = "1.31.1"
[[check]]
id = "both-agree"
type = "kubelet_version"
binary = "/usr/bin/kubelet"
metrics_url = "{ok}"
[[check]]
id = "restart-pending"
type = "kubelet_version"
binary = "/usr/bin/kubelet"
metrics_url = "{old}"
[[check]]
id = "no-build-info"
type = "kubelet_version"
binary = ""
metrics_url = "{empty}"
[[check]]
id = "denied"
type = "kubelet_version"
binary = ""
metrics_url = "{denied}"
[[check]]
id = "down"
type = "kubelet_version"
binary = ""
metrics_url = "http://127.0.0.1:1/metrics"
"#,
        ok = server.url("/metrics"),
        old = server.url("/old/metrics"),
        empty = server.url("/empty/metrics"),
        denied = server.url("/denied/metrics"),
    );
    let out = run(f.host(), &text).await;
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    assert_eq!(out[0].observed, Observed::Version("1.31.2".into()));
    assert_eq!(out[1].status, Status::Pass, "{:?}", out[1]);
    assert_eq!(out[2].status, Status::Fail);
    assert!(
        out[2]
            .message
            .contains("binary says 1.31.2 but the running kubelet reports 1.30.6"),
        "{}",
        out[2].message
    );
    assert_eq!(out[3].status, Status::Error);
    assert!(
        out[3].message.contains("no kubernetes_build_info"),
        "{}",
        out[3].message
    );
    assert_eq!(out[4].status, Status::Error);
    assert!(out[4].message.contains("HTTP 403"), "{}", out[4].message);
    assert_eq!(out[5].status, Status::Error);
    assert!(out[5].message.contains("cannot read"), "{}", out[5].message);
}

// --- etcd_health against canned answers (the real etcd is in tests/etcd.rs) ----------------------

#[tokio::test]
async fn etcd_health_verdicts_from_canned_answers() {
    let server = HttpServer::start(vec![
        ("/ok/health", 200, r#"{"health":"true","reason":""}"#.into()),
        (
            "/ok/version",
            200,
            r#"{"etcdserver":"3.5.16","etcdcluster":"3.5.0"}"#.into(),
        ),
        (
            "/sick/health",
            503,
            r#"{"health":"false","reason":"RAFT NO LEADER"}"#.into(),
        ),
        (
            "/sick/version",
            200,
            r#"{"etcdserver":"3.5.16","etcdcluster":"3.5.0"}"#.into(),
        ),
        ("/odd/health", 200, "<html>proxy error</html>".into()),
    ]);
    let text = format!(
        r#"
[[check]]
id = "ok"
type = "etcd_health"
endpoint = "{ok}"
expect = {{ version = ">= 3.5" }}
[[check]]
id = "old"
type = "etcd_health"
endpoint = "{ok}"
expect = {{ version = ">= 3.6" }}
[[check]]
id = "slow"
type = "etcd_health"
endpoint = "{ok}"
max_latency = "0.001ms"
[[check]]
id = "sick"
type = "etcd_health"
endpoint = "{sick}"
[[check]]
id = "odd"
type = "etcd_health"
endpoint = "{odd}"
"#,
        ok = server.url("/ok"),
        sick = server.url("/sick"),
        odd = server.url("/odd"),
    );
    let out = run(Fixture::new().host(), &text).await;
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    assert_eq!(
        named(&out[0].observed, "version"),
        Observed::Version("3.5.16".into())
    );
    assert!(
        out[0].message.starts_with("healthy, version 3.5.16"),
        "{}",
        out[0].message
    );
    assert_eq!(out[1].status, Status::Fail);
    assert!(
        out[1].message.contains("expected version >= 3.6"),
        "{}",
        out[1].message
    );
    assert_eq!(out[2].status, Status::Fail);
    assert!(
        out[2].message.contains("/health took"),
        "{}",
        out[2].message
    );
    assert_eq!(out[3].status, Status::Fail);
    assert_eq!(out[3].message, "etcd reports health false (RAFT NO LEADER)");
    assert_eq!(out[4].status, Status::Error);
    assert!(
        out[4].message.contains("not etcd's health JSON"),
        "{}",
        out[4].message
    );
}

#[test]
fn etcd_settings_are_validated() {
    for (body, key) in [
        ("endpoint = \"127.0.0.1:2379\"", "endpoint"),
        (
            "endpoint = \"https://e:2379\"\ncert_file = \"/c.pem\"",
            "cert_file",
        ),
        (
            "endpoint = \"https://e:2379\"\nmax_latency = \"fast\"",
            "max_latency",
        ),
        ("endpoint = \"https://e:2379\"\nhealthy = true", "healthy"),
    ] {
        let t: toml::Table = toml::from_str(&format!(
            "[a]\nid = \"e\"\ntype = \"etcd_health\"\n{body}\n"
        ))
        .unwrap();
        let err = patrol_checks::CheckSpec::from_table(
            t["a"].as_table().unwrap(),
            std::time::Duration::from_secs(1),
            None,
        )
        .unwrap_err();
        assert_eq!(err[0].0, key, "{body}: {err:?}");
    }
}

#[tokio::test]
async fn sysctl_keys_with_dots_in_names_use_the_sysctl8_forms() {
    let f = Fixture::new();
    f.file("/proc/sys/net/ipv4/conf/eth0.100/rp_filter", "2\n");
    let out = run(
        f.host(),
        r#"
[[check]]
id = "swapped"
type = "sysctl"
key = "net.ipv4.conf.eth0/100.rp_filter"
expect = 2
[[check]]
id = "slashes"
type = "sysctl"
key = "net/ipv4/conf/eth0.100/rp_filter"
expect = 2
"#,
    )
    .await;
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    assert_eq!(out[1].status, Status::Pass, "{:?}", out[1]);
    let t: toml::Table = toml::from_str(
        "[a]\nid = \"s\"\ntype = \"sysctl\"\nkey = \"net/../../etc/x\"\nexpect = 1\n",
    )
    .unwrap();
    let err = patrol_checks::CheckSpec::from_table(
        t["a"].as_table().unwrap(),
        std::time::Duration::from_secs(1),
        None,
    )
    .unwrap_err();
    assert_eq!(err[0].0, "key", "{err:?}");
}

#[tokio::test]
async fn a_hung_etcd_fails_as_unreachable_within_the_timeout() {
    // Accepts connections (the kernel does, from the backlog) and never
    // answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let text = format!(
        "[[check]]\nid = \"hung\"\ntype = \"etcd_health\"\nendpoint = \"http://{}\"\ntimeout = \"1s\"\n",
        silent.local_addr().unwrap()
    );
    let o = one(Fixture::new().host(), &text).await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert!(
        o.message.contains("is unreachable: timed out"),
        "{}",
        o.message
    );
    drop(silent);
}

#[tokio::test]
async fn a_hung_kubelet_binary_is_reported_by_the_check_itself() {
    let f = Fixture::new();
    f.script("/usr/bin/kubelet", "exec sleep 30");
    let o = one(
        f.host(),
        "[[check]]\nid = \"k\"\ntype = \"kubelet_version\"\nbinary = \"/usr/bin/kubelet\"\ntimeout = \"1s\"\n",
    )
    .await;
    assert_eq!(o.status, Status::Error, "{o:?}");
    assert!(
        o.message
            .contains("did not finish within 0.9s and was killed"),
        "{}",
        o.message
    );
}
