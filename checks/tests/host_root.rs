//! `[node] host_root`: the agent in a container reading its host. A fake
//! host tree in a temporary directory stands in for the host's `/` mounted
//! at `/host`; every check kind runs through `RootedHost` on it and must
//! see the fake tree, never the machine the test runs on. Commands run
//! chrooted into the tree, so it carries its own `/bin/sh` (this
//! machine's, with the libraries it links).
//!
//! chroot needs root (CAP_SYS_CHROOT), and so does switching to
//! `[checks] command_user`: CI runs as root. Run as another user, the
//! tests fail and say so.

mod support;

use std::path::Path;

use patrol_checks::{Host, Observed, RootedHost, Status};
use support::{run, Fixture, HttpServer};

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

/// Copy `/bin/sh` and the shared libraries it needs into `root`, so that
/// scripts run chrooted there.
fn install_shell(root: &Path) {
    install_programs(root, &["/bin/sh"]);
}

/// Copy `programs` (absolute paths of this machine) and the shared
/// libraries they need into `root`, at the same paths.
fn install_programs(root: &Path, programs: &[&str]) {
    let mut files = Vec::new();
    for program in programs {
        let real = std::fs::canonicalize(program).expect("the program exists");
        files.push((program.to_string(), real.clone()));
        let ldd = std::process::Command::new("ldd")
            .arg(&real)
            .output()
            .expect("ldd (libc-bin) runs");
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = line
                .split("=>")
                .last()
                .and_then(|p| p.split_whitespace().next())
                .filter(|p| p.starts_with('/'));
            if let Some(p) = path {
                files.push((p.to_string(), std::fs::canonicalize(p).unwrap()));
            }
        }
    }
    for (dest, src) in files {
        let to = root.join(dest.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&src, &to).unwrap();
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
}

fn stat(pid: u32, name: &str, state: char, threads: u32) -> String {
    format!("{pid} ({name}) {state} 1 {pid} {pid} 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 {threads} 0 123 456 78\n")
}

/// A fake host: files for every file-reading kind, scripts for every
/// command-running one.
fn host_tree() -> Fixture {
    let f = Fixture::new();
    install_shell(f.root());
    f.file("/proc/sys/vm/swappiness", "7\n")
        .file("/proc/sys/net/core/somaxconn", "4242\n")
        .file("/proc/sys/kernel/pid_max", "100\n")
        .file("/proc/1/stat", &stat(1, "systemd", 'S', 1))
        .file("/proc/1/cmdline", "/sbin/init\0")
        .file("/proc/20/stat", &stat(20, "kubelet", 'S', 12))
        .file("/proc/20/cmdline", "/usr/bin/kubelet\0")
        .file("/proc/40/stat", &stat(40, "defunct", 'Z', 1))
        .file(
            "/proc/meminfo",
            "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    1600000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
        )
        .file("/proc/sys/fs/file-nr", "9000\t0\t10000\n")
        .file("/proc/sys/fs/file-max", "10000\n")
        // The host's mount table, as its init sees it: /srv/fake-data
        // exists only in the fake tree.
        .file("/proc/1/mounts", "/dev/sda1 / ext4 rw 0 0\n/dev/sdb1 /srv/fake-data ext4 rw 0 0\n")
        .file("/srv/fake-data/.keep", "")
        .file("/proc/uptime", "100000.00 1.00\n")
        .file(
            "/dev/kmsg",
            "3,2,99400000000,-;Out of memory: Killed process 4242 (java) total-vm:1kB\n",
        );
    f.script(
        "/usr/bin/systemctl",
        r#"case "$4" in
  kubelet.service) printf 'LoadState=loaded\nActiveState=active\n' ;;
  *) printf 'LoadState=not-found\nActiveState=inactive\n' ;;
esac"#,
    );
    f.script(
        "/usr/bin/chronyc",
        "printf '%s\\n' 'A9FEA97B,169.254.169.123,4,1700000000.1,-0.000250,0.000001,0.000003,-11.5,0.001,0.05,0.0003,0.01,64.2,Normal'",
    );
    f.script("/usr/bin/kubelet", "echo 'Kubernetes v1.29.7'");
    f.script(
        "/usr/lib/nagios/plugins/check_fake",
        "echo 'WARNING - seen from inside the host tree | load1=0.31'; exit 1",
    );
    f
}

fn am_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

#[tokio::test]
#[ignore = "full tier: needs root (chroot)"]
async fn every_kind_reads_the_host_tree_under_host_root() {
    assert!(
        am_root(),
        "host_root runs commands through chroot, which needs root (CAP_SYS_CHROOT): run the tests as root (CI does)"
    );
    let f = host_tree();
    let etcd = HttpServer::start(vec![
        ("/health", 200, r#"{"health":"true","reason":""}"#.into()),
        (
            "/version",
            200,
            r#"{"etcdserver":"3.5.16","etcdcluster":"3.5.0"}"#.into(),
        ),
    ]);
    let text = format!(
        r#"
[[check]]
id = "sysctl"
type = "sysctl"
key = "vm.swappiness"
expect = 7
[[check]]
id = "net-sysctl"
type = "sysctl"
key = "net.core.somaxconn"
expect = 4242
[[check]]
id = "processes"
type = "process_count"
expect = 3
[[check]]
id = "zombies"
type = "process_count"
count = "zombies"
expect = 1
[[check]]
id = "memory"
type = "memory"
expect = {{ min = 10 }}
[[check]]
id = "fds"
type = "file_descriptors"
measure = "allocated"
expect = 9000
[[check]]
id = "disk"
type = "disk"
mounts = ["/srv/fake-data"]
expect = {{ max = 100 }}
[[check]]
id = "kmsg"
type = "kernel_log"
[[check]]
id = "unit"
type = "systemd_unit"
unit = "kubelet.service"
[[check]]
id = "clock"
type = "clock"
[[check]]
id = "kubelet"
type = "kubelet_version"
binary = "/usr/bin/kubelet"
expect = {{ version = "= 1.29.7" }}
[[check]]
id = "plugin"
type = "command"
program = "/usr/lib/nagios/plugins/check_fake"
[[check]]
id = "not-on-host"
type = "command"
program = "/usr/lib/nagios/plugins/check_missing"
[[check]]
id = "etcd"
type = "etcd_health"
endpoint = "{etcd}"
"#,
        etcd = etcd.url("")
    );
    let out = run(RootedHost::new(f.root()), &text).await;
    let by_id = |id: &str| out.iter().find(|o| o.id == id).unwrap();
    for id in [
        "sysctl",
        "net-sysctl",
        "processes",
        "zombies",
        "memory",
        "fds",
        "disk",
        "unit",
        "clock",
        "kubelet",
        "etcd",
    ] {
        assert_eq!(by_id(id).status, Status::Pass, "{:#?}", by_id(id));
    }
    assert_eq!(by_id("sysctl").observed, Observed::Number(7.0));
    assert_eq!(
        by_id("kubelet").observed,
        Observed::Version("1.29.7".into())
    );
    // The OOM kill in the fake /dev/kmsg is found.
    assert_eq!(by_id("kmsg").status, Status::Fail, "{:#?}", by_id("kmsg"));
    assert!(
        by_id("kmsg").message.contains("Out of memory"),
        "{:#?}",
        by_id("kmsg")
    );
    // The plugin ran inside the tree (Nagios exit 1 = warn, perfdata kept).
    let plugin = by_id("plugin");
    assert_eq!(plugin.status, Status::Warn, "{plugin:#?}");
    assert!(
        plugin.message.contains("seen from inside the host tree"),
        "{plugin:#?}"
    );
    assert_eq!(named(&plugin.observed, "load1"), Observed::Number(0.31));
    // A program missing from the host tree is an error naming it, even if
    // this machine had one at that path.
    let missing = by_id("not-on-host");
    assert_eq!(missing.status, Status::Error, "{missing:#?}");
    assert!(missing.message.contains("check_missing"), "{missing:#?}");
}

#[tokio::test]
#[ignore = "full tier: needs root (chroot)"]
async fn a_command_present_on_this_machine_but_not_in_the_host_tree_is_not_found() {
    assert!(
        am_root(),
        "needs root for chroot (CAP_SYS_CHROOT); CI runs as root"
    );
    let f = Fixture::new();
    install_shell(f.root());
    let host = RootedHost::new(f.root());
    // `ls` exists here, not in the tree.
    let err = host
        .run_command(patrol_checks::host::CommandRequest {
            program: "/usr/bin/ls".into(),
            args: vec![],
            timeout: std::time::Duration::from_secs(5),
            max_output: 1024,
            run_as: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        patrol_checks::host::CommandError::NotFound("/usr/bin/ls".into())
    );
    // The shell of the tree runs, with its own view of /.
    let out = host
        .run_command(patrol_checks::host::CommandRequest {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "test -e /srv/x || echo not-there; test -e /bin/sh && echo sh-here".into(),
            ],
            timeout: std::time::Duration::from_secs(5),
            max_output: 1024,
            run_as: None,
        })
        .await
        .unwrap();
    assert_eq!(out.stdout, "not-there\nsh-here\n");
}

#[tokio::test]
#[ignore = "full tier: needs root (chroot)"]
async fn under_host_root_commands_run_as_a_user_of_the_hosts_passwd_after_the_chroot() {
    assert!(
        am_root(),
        "needs root for chroot and for switching users; run the tests as root (CI does: bash .ci/run)"
    );
    let f = Fixture::new();
    install_programs(f.root(), &["/bin/sh", "/usr/bin/id", "/usr/bin/env"]);
    // A user only the host's tree knows: this machine has no `hostonly`.
    f.file(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nhostonly:x:4321:4321::/home/hostonly:/bin/sh\n",
    )
    .file("/etc/group", "hostonly:x:4321:\nwheel:x:4322:hostonly\n");
    let text = format!(
        "[node]\nname = \"n1\"\nbind = \"127.0.0.1:7946\"\nhost_root = \"{}\"\n[checks]\ncommand_user = \"hostonly\"\n[[check]]\nid = \"c\"\ntype = \"command\"\nprogram = \"true\"\n",
        f.root().display()
    );
    let config = patrol_config::Config::parse(&text, Path::new("patrol.toml")).unwrap();
    let catalog = patrol_checks::Catalog::from_config(&config).unwrap();
    let run_as = catalog.checks()[0].run_as.clone();
    assert_eq!(
        run_as.as_ref().map(|a| a.groups.clone()),
        Some(vec![4321, 4322])
    );
    let host = RootedHost::new(f.root());
    let ask = |program: &str, args: &[&str]| patrol_checks::host::CommandRequest {
        program: program.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        timeout: std::time::Duration::from_secs(10),
        max_output: 4096,
        run_as: run_as.clone(),
    };
    let out = host.run_command(ask("/usr/bin/id", &["-G"])).await.unwrap();
    assert_eq!(out.stdout, "4321 4322\n", "{out:?}");
    let out = host.run_command(ask("id", &["-u"])).await.unwrap();
    assert_eq!(out.stdout, "4321\n", "{out:?}");
    let out = host.run_command(ask("env", &[])).await.unwrap();
    // Besides the fixed environment, only the run's marker (how strays of
    // the run are found).
    let mut vars: Vec<&str> = out
        .stdout
        .lines()
        .filter(|v| !v.starts_with("PATROL_CHECK_RUN="))
        .collect();
    vars.sort();
    assert_eq!(
        vars,
        [
            "HOME=/home/hostonly",
            "LANG=C",
            "LC_ALL=C",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]
    );
    // A program missing from the tree is still "not found" through the
    // user switch.
    let err = host.run_command(ask("/usr/bin/ls", &[])).await.unwrap_err();
    assert_eq!(
        err,
        patrol_checks::host::CommandError::NotFound("/usr/bin/ls".into())
    );
}

#[test]
fn reads_never_reach_the_real_machine() {
    let f = Fixture::new();
    let host = RootedHost::new(f.root());
    // This machine has /proc/sys/kernel/ostype; the empty tree does not.
    assert!(Path::new("/proc/sys/kernel/ostype").exists());
    assert!(host.read_file("/proc/sys/kernel/ostype", 64).is_err());
    assert!(host.list_dir("/proc").is_err());
    assert!(host.kernel_log().is_err());
    assert!(host.fs_usage("/no-such-mount").is_err());
}
