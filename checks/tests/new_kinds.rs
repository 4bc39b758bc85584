//! The `file`, `package`, `network` and `log_volume` kinds against real
//! things where this machine has them (files in a temporary directory,
//! the loopback interface, its own dpkg database, /etc/hosts, a TCP
//! listener on loopback) and against fixtures where nothing real is
//! possible (an RPM machine, a chosen /etc/hosts, multiarch stanzas).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;

use patrol_checks::{Observed, RealHost, Runner, Status};
use support::{one, specs, Fixture};

fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .env("LC_ALL", "C")
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "`{cmd}` failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn text(o: &Observed) -> String {
    o.to_string()
}

// --- file ------------------------------------------------------------------------------

#[tokio::test]
async fn file_mode_owner_and_hash_match_what_stat_and_sha256sum_say() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::create_dir(dir.path().join("sysctl.d")).unwrap();
    std::fs::write(dir.path().join("sysctl.d/10-a.conf"), "vm.swappiness = 0\n").unwrap();
    std::fs::write(
        dir.path().join("sysctl.d/20-b.conf"),
        "fs.file-max = 2097152\n",
    )
    .unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "kind: KubeletConfiguration\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();

    let checks = format!(
        r#"
[[check]]
id = "mode"
type = "file"
path = "{d}/config.yaml"
measure = "mode"
expect = "0640"
[[check]]
id = "owner"
type = "file"
path = "{d}/config.yaml"
measure = "owner"
[[check]]
id = "hash"
type = "file"
path = "{d}/config.yaml"
[[check]]
id = "dir-hash"
type = "file"
path = "{d}/sysctl.d/*"
[[check]]
id = "dir-modes"
type = "file"
path = "{d}/sysctl.d/*.conf"
measure = "mode"
expect = "0600"
[[check]]
id = "missing"
type = "file"
path = "{d}/kubelet.conf"
measure = "mode"
expect = "0600"
[[check]]
id = "exists"
type = "file"
path = "{d}/sysctl.d/*"
measure = "exists"
expect = "present"
"#
    );
    let out = Runner::new(Arc::new(RealHost), 4)
        .run(&specs(&checks))
        .await;
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    assert_eq!(text(&out[0].observed), "0640");

    assert_eq!(out[1].status, Status::Pass, "observe only: {:?}", out[1]);
    assert_eq!(text(&out[1].observed), sh("echo $(id -un):$(id -gn)"));

    let sum = sh(&format!("sha256sum {d}/config.yaml | cut -d' ' -f1"));
    assert_eq!(text(&out[2].observed), sum);
    // A glob: one hash over `sha256sum` lines of every file, in order.
    let all = sh(&format!(
        "sha256sum {d}/sysctl.d/* | sha256sum | cut -d' ' -f1"
    ));
    assert_eq!(text(&out[3].observed), all);

    assert_eq!(out[4].status, Status::Fail, "{:?}", out[4]);
    assert!(
        out[4]
            .message
            .contains("10-a.conf: observed 0644, expected 0600"),
        "{}",
        out[4].message
    );

    assert_eq!(out[5].status, Status::Fail);
    assert_eq!(text(&out[5].observed), "absent");
    assert_eq!(out[6].status, Status::Pass);
    assert_eq!(text(&out[6].observed), "present");
}

#[tokio::test]
async fn file_owner_names_come_from_the_machine_passwd_and_group() {
    let f = Fixture::new();
    let uid = sh("id -u");
    let gid = sh("id -g");
    f.file(
        "/etc/passwd",
        &format!("kubelet:x:{uid}:{gid}::/:/bin/false\n"),
    );
    f.file("/etc/group", &format!("kube:x:{gid}:\n"));
    f.file("/var/lib/kubelet/config.yaml", "x\n");
    let o = one(
        f.host(),
        "[[check]]\nid = \"o\"\ntype = \"file\"\npath = \"/var/lib/kubelet/config.yaml\"\nmeasure = \"owner\"\nexpect = \"kubelet:kube\"\n",
    )
    .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
}

// --- package ---------------------------------------------------------------------------

#[tokio::test]
async fn package_reads_this_machines_dpkg_database() {
    assert!(
        std::path::Path::new("/var/lib/dpkg/status").exists(),
        "this test reads the machine's own dpkg database: run it on Debian or Ubuntu"
    );
    let want = sh("dpkg-query -W -f '${Version}' dpkg");
    let o = one(
        RealHost,
        "[[check]]\nid = \"p\"\ntype = \"package\"\nname = \"dpkg\"\n",
    )
    .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(o.observed, Observed::Version(want.clone()));
    assert_eq!(o.expected, "(observe only)");

    let newer = one(
        RealHost,
        "[[check]]\nid = \"p\"\ntype = \"package\"\nname = \"dpkg\"\nexpect = { version = \">= 999\" }\n",
    )
    .await;
    assert_eq!(newer.status, Status::Fail, "{newer:?}");

    let absent = one(
        RealHost,
        "[[check]]\nid = \"p\"\ntype = \"package\"\nname = \"patrol-no-such-package\"\nexpect = { version = \">= 1\" }\n",
    )
    .await;
    assert_eq!(absent.status, Status::Fail);
    assert_eq!(text(&absent.observed), "not-installed");
}

#[tokio::test]
async fn package_stanzas_multiarch_and_removed_packages() {
    let f = Fixture::new();
    f.file(
        "/var/lib/dpkg/status",
        "Package: libc6\nStatus: install ok installed\nArchitecture: i386\nVersion: 2.36-9\n\n\
         Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9+deb12u4\n\n\
         Package: kubelet\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.30.1-1.1\n",
    );
    let out = support::run(
        f.host(),
        "[[check]]\nid = \"a\"\ntype = \"package\"\nname = \"libc6:amd64\"\n\
         [[check]]\nid = \"b\"\ntype = \"package\"\nname = \"libc6\"\n\
         [[check]]\nid = \"c\"\ntype = \"package\"\nname = \"kubelet\"\n",
    )
    .await;
    assert_eq!(text(&out[0].observed), "2.36-9+deb12u4");
    assert_eq!(text(&out[1].observed), "2.36-9");
    assert_eq!(text(&out[2].observed), "not-installed", "config files only");
}

#[tokio::test]
async fn package_falls_back_to_rpm_and_says_when_there_is_no_database() {
    let f = Fixture::new();
    f.script(
        "/bin/rpm",
        r#"case "$4" in kubelet) printf '1.31.2-150500.1.1' ;; *) echo "package $4 is not installed"; exit 1 ;; esac"#,
    );
    let out = support::run(
        f.host(),
        "[[check]]\nid = \"a\"\ntype = \"package\"\nname = \"kubelet\"\nexpect = { version = \">= 1.31\" }\n\
         [[check]]\nid = \"b\"\ntype = \"package\"\nname = \"kubeadm\"\n",
    )
    .await;
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    assert_eq!(text(&out[0].observed), "1.31.2-150500.1.1");
    assert_eq!(text(&out[1].observed), "not-installed");

    let bare = Fixture::new();
    // No dpkg database, and an rpm that cannot be found.
    let o = one(
        bare.host(),
        "[[check]]\nid = \"p\"\ntype = \"package\"\nname = \"patrol-test-nothing\"\n",
    )
    .await;
    assert_eq!(o.status, Status::Error, "{o:?}");
    assert!(
        o.message.contains("no package database"),
        "{} (a machine with a real rpm binary answers here instead)",
        o.message
    );
}

// --- network ---------------------------------------------------------------------------

#[tokio::test]
async fn network_reads_the_loopback_interface() {
    let out = Runner::new(Arc::new(RealHost), 4)
        .run(&specs(
            r#"
[[check]]
id = "lo-state"
type = "network"
interface = "lo"
expect = "up"
[[check]]
id = "lo-mtu"
type = "network"
interface = "lo"
measure = "mtu"
[[check]]
id = "lo-errors"
type = "network"
interface = "lo"
measure = "errors"
expect = { max = 1000000 }
[[check]]
id = "nope"
type = "network"
interface = "patrol-no-such0"
"#,
        ))
        .await;
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    let mtu = sh("cat /sys/class/net/lo/mtu");
    assert_eq!(text(&out[1].observed), mtu);
    assert_eq!(out[2].status, Status::Pass, "{:?}", out[2]);
    match &out[2].observed {
        Observed::Named(items) => {
            assert_eq!(
                items.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
                ["rx", "tx"]
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(out[3].status, Status::Error);
    assert!(
        out[3].message.contains("this node has: "),
        "{}",
        out[3].message
    );
    assert!(out[3].message.contains("lo"), "{}", out[3].message);
}

#[tokio::test]
async fn network_resolves_names_and_connects_over_loopback() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let out = Runner::new(Arc::new(RealHost), 4)
        .run(&specs(&format!(
            r#"
[[check]]
id = "localhost"
type = "network"
resolve = "localhost"
expect = {{ contains = "127.0.0.1" }}
[[check]]
id = "unknown"
type = "network"
resolve = "patrol-no-such-host.invalid"
[[check]]
id = "open"
type = "network"
connect = "{open}"
expect = {{ max = 1000 }}
[[check]]
id = "closed"
type = "network"
connect = "{closed}"
timeout = "2s"
"#
        )))
        .await;
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    assert_eq!(out[1].status, Status::Fail, "{:?}", out[1]);
    assert!(
        out[1].message.contains("does not resolve"),
        "{}",
        out[1].message
    );
    assert_eq!(out[2].status, Status::Pass, "{:?}", out[2]);
    assert!(
        text(&out[2].observed).starts_with("latency_ms="),
        "{:?}",
        out[2]
    );
    assert_eq!(out[3].status, Status::Fail, "{:?}", out[3]);
    assert!(
        out[3].message.contains("cannot connect"),
        "{}",
        out[3].message
    );
    drop(listener);
}

#[tokio::test]
async fn network_resolution_on_a_fixture_uses_its_hosts_file() {
    let f = Fixture::new();
    f.file(
        "/etc/hosts",
        "10.96.0.1 kubernetes.default.svc kubernetes\n10.96.0.2 other\n",
    );
    let o = one(
        f.host(),
        "[[check]]\nid = \"k\"\ntype = \"network\"\nresolve = \"kubernetes\"\nexpect = \"10.96.0.1\"\n",
    )
    .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
}

#[test]
fn network_settings_name_the_wrong_key() {
    let bad = [
        ("interface = \"lo\"\nresolve = \"x\"", ""),
        ("connect = \"nohost\"", "connect"),
        ("resolve = \"x\"\nmeasure = \"mtu\"", "measure"),
    ];
    for (body, key) in bad {
        let table: toml::Table =
            toml::from_str(&format!("id = \"n\"\ntype = \"network\"\n{body}\n")).unwrap();
        let err =
            patrol_checks::CheckSpec::from_table(&table, std::time::Duration::from_secs(1), None)
                .expect_err(body);
        assert_eq!(err[0].0, key, "{body}: {err:?}");
    }
}

// --- log_volume ------------------------------------------------------------------------

#[tokio::test]
async fn log_volume_sums_real_files_and_measures_growth_between_runs() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    std::fs::create_dir_all(logs.join("pods/a")).unwrap();
    std::fs::write(logs.join("syslog"), vec![b'x'; 1 << 20]).unwrap();
    std::fs::write(logs.join("pods/a/0.log"), vec![b'y'; 1 << 20]).unwrap();
    let d = logs.display();
    let checks = specs(&format!(
        r#"
[[check]]
id = "size"
type = "log_volume"
paths = ["{d}", "{d}/pods/*"]
expect = {{ max = 1.5 }}
[[check]]
id = "growth"
type = "log_volume"
paths = ["{d}"]
measure = "growth_mb_per_hour"
observe = true
"#
    ));
    let runner = Runner::new(Arc::new(RealHost), 2);
    let first = runner.run(&checks).await;
    assert_eq!(first[0].status, Status::Fail, "{:?}", first[0]);
    assert_eq!(text(&first[0].observed), format!("{d}=2, {d}/pods/a=1"));
    assert!(first[0]
        .message
        .contains(&format!("{d}: observed 2, expected <= 1.5")));
    assert_eq!(first[1].status, Status::Pass);
    assert_eq!(first[1].observed, Observed::None);
    assert!(
        first[1].message.contains("first measurement (2 MB)"),
        "{}",
        first[1].message
    );

    std::fs::write(logs.join("pods/a/1.log"), vec![b'z'; 1 << 20]).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = runner.run(&checks).await;
    match &second[1].observed {
        Observed::Named(items) => match items[0].1 {
            Observed::Number(rate) => assert!(rate > 1.0, "{rate} MB/hour"),
            ref other => panic!("{other:?}"),
        },
        other => panic!("no rate on the second run: {other:?}"),
    }
}

#[tokio::test]
async fn log_volume_of_a_missing_path_is_an_error_naming_it() {
    let o = one(
        RealHost,
        "[[check]]\nid = \"l\"\ntype = \"log_volume\"\npaths = [\"/patrol/no/such/log\"]\nobserve = true\n",
    )
    .await;
    assert_eq!(o.status, Status::Error);
    assert!(o.message.contains("/patrol/no/such/log"), "{}", o.message);
}
