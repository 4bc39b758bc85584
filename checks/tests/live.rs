//! The kinds on this very machine through `RealHost`: sysctl, process
//! counts, disk, memory, file descriptors, the kernel log, systemd and
//! chrony (which say clearly when they cannot tell), and `command` with
//! real Nagios-style plugin scripts, including one that hangs and one that
//! floods its output while the others still finish.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use patrol_checks::{Observed, RealHost, Runner, Status};
use support::{one, run, specs, write_script};

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test]
async fn sysctl_reads_the_live_kernel() {
    let pid_max: f64 = read("/proc/sys/kernel/pid_max").trim().parse().unwrap();
    let range: Vec<f64> = read("/proc/sys/net/ipv4/ip_local_port_range")
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let text = format!(
        r#"
[[check]]
id = "pid-max"
type = "sysctl"
key = "kernel.pid_max"
expect = {pid_max}
[[check]]
id = "pid-max-wrong"
type = "sysctl"
key = "kernel.pid_max"
expect = {{ max = {} }}
[[check]]
id = "port-range"
type = "sysctl"
key = "net.ipv4.ip_local_port_range"
expect = "{} {}"
[[check]]
id = "ostype"
type = "sysctl"
key = "kernel.ostype"
expect = "Linux"
[[check]]
id = "missing"
type = "sysctl"
key = "net.patrol.no_such_key"
expect = 1
"#,
        pid_max - 1.0,
        range[0],
        range[1]
    );
    let out = run(RealHost, &text).await;
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    assert_eq!(out[0].observed, Observed::Number(pid_max));
    assert_eq!(out[1].status, Status::Fail, "{:?}", out[1]);
    assert_eq!(out[2].status, Status::Pass, "{:?}", out[2]);
    assert_eq!(
        out[2].observed,
        Observed::List(range.iter().map(|n| Observed::Number(*n)).collect())
    );
    assert_eq!(out[3].status, Status::Pass, "{:?}", out[3]);
    assert_eq!(out[4].status, Status::Error);
    assert_eq!(
        out[4].message,
        "sysctl net.patrol.no_such_key does not exist (/proc/sys/net/patrol/no_such_key is missing: kernel module not loaded, or not in this kernel)"
    );
}

/// Kills and reaps a child on drop.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn process_counts_see_a_child_and_a_zombie_of_this_test() {
    let marker = format!("{}.{}", std::process::id(), 424242);
    let sleeper = Reap(
        Command::new("sleep")
            .arg(&marker)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // A zombie that is not this process's own child (the agent's own
    // children, briefly unreaped, are not the node's problem and are not
    // counted): `sh` starts `true` in the background and execs into
    // `sleep`, which never reaps it.
    let parent = Reap(
        Command::new("sh")
            .arg("-c")
            .arg("true & exec sleep 30")
            .spawn()
            .unwrap(),
    );
    let parent_pid = parent.0.id().to_string();
    let foreign_zombie = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            // Processes come and go while we look.
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let mut f = rest.split_whitespace();
            f.next() == Some("Z") && f.next() == Some(parent_pid.as_str())
        })
    };
    for _ in 0..300 {
        if foreign_zombie() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(foreign_zombie(), "no zombie child of {parent_pid} appeared");
    // And one of our own, which must not be counted on its own.
    let mut zombie = Reap(Command::new("true").spawn().unwrap());

    let text = format!(
        r#"
[[check]]
id = "total"
type = "process_count"
expect = {{ min = 3 }}
[[check]]
id = "threads"
type = "process_count"
count = "threads"
expect = {{ min = 3 }}
[[check]]
id = "zombies"
type = "process_count"
count = "zombies"
expect = {{ max = 0 }}
[[check]]
id = "marker"
type = "process_count"
count = "matching"
pattern = "^sleep {} ?$"
expect = 1
[[check]]
id = "by-name"
type = "process_count"
count = "matching"
name = "sleep"
expect = {{ min = 1 }}
[[check]]
id = "pid-max"
type = "process_count"
count = "pid_max_percent"
expect = {{ max = 100 }}
"#,
        marker.replace('.', "\\\\.")
    );
    let out = run(RealHost, &text).await;
    for o in &out {
        assert_ne!(o.status, Status::Error, "{o:?}");
    }
    assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
    assert_eq!(out[1].status, Status::Pass, "{:?}", out[1]);
    assert_eq!(out[2].status, Status::Fail, "zombie not seen: {:?}", out[2]);
    assert_eq!(out[3].status, Status::Pass, "{:?}", out[3]);
    assert_eq!(out[4].status, Status::Pass, "{:?}", out[4]);
    assert_eq!(out[5].status, Status::Pass, "{:?}", out[5]);
    assert!(out[5].message.contains("of pid_max"), "{}", out[5].message);
    let _ = zombie.0.wait();
    drop(parent);
    drop(sleeper);
}

#[tokio::test]
async fn disk_memory_and_file_handles_are_observed() {
    let out = run(
        RealHost,
        r#"
[[check]]
id = "root"
type = "disk"
expect = { range = [0, 100] }
[[check]]
id = "root-inodes"
type = "disk"
measure = "inodes_percent"
expect = { range = [0, 100] }
[[check]]
id = "root-full"
type = "disk"
expect = { max = -1 }
[[check]]
id = "mem"
type = "memory"
expect = { range = [0, 100] }
[[check]]
id = "fds"
type = "file_descriptors"
expect = { range = [0, 100] }
[[check]]
id = "fd-max"
type = "file_descriptors"
measure = "max"
expect = { min = 1 }
"#,
    )
    .await;
    for o in &out[..2] {
        assert_eq!(o.status, Status::Pass, "{o:?}");
        assert!(
            matches!(&o.observed, Observed::Named(v) if v[0].0 == "/"),
            "{o:?}"
        );
    }
    assert_eq!(out[2].status, Status::Fail, "{:?}", out[2]);
    assert!(
        out[2].message.starts_with("space used %: /: observed "),
        "{}",
        out[2].message
    );
    for o in &out[3..] {
        assert_eq!(o.status, Status::Pass, "{o:?}");
    }
}

#[tokio::test]
async fn kernel_log_systemd_and_clock_tell_or_say_why_not() {
    let out = run(
        RealHost,
        r#"
[[check]]
id = "kmsg"
type = "kernel_log"
since = "24h"
expect = { min = 0 }
[[check]]
id = "unit"
type = "systemd_unit"
unit = "patrol-no-such-unit.service"
[[check]]
id = "clock"
type = "clock"
"#,
    )
    .await;
    let kmsg_readable = std::fs::File::open("/dev/kmsg").is_ok();
    if kmsg_readable {
        assert_eq!(out[0].status, Status::Pass, "{:?}", out[0]);
        assert!(out[0].message.contains("in the last 24h"), "{:?}", out[0]);
    } else {
        assert_eq!(out[0].status, Status::Error, "{:?}", out[0]);
        assert!(
            out[0].message.contains("cannot read the kernel log"),
            "{:?}",
            out[0]
        );
    }
    if Path::new("/run/systemd/system").is_dir() {
        assert_eq!(out[1].status, Status::Fail, "{:?}", out[1]);
        assert!(out[1].message.contains("not installed"), "{:?}", out[1]);
    } else {
        // No systemd here: an error that says so, not a guess.
        assert_eq!(out[1].status, Status::Error, "{:?}", out[1]);
        assert!(
            out[1].message.contains("systemd") || out[1].message.contains("systemctl"),
            "{:?}",
            out[1]
        );
    }
    let chrony = Command::new("chronyc").arg("-c").arg("tracking").output();
    match chrony {
        Err(_) => {
            assert_eq!(out[2].status, Status::Error, "{:?}", out[2]);
            assert!(
                out[2].message.contains("chrony is not installed"),
                "{:?}",
                out[2]
            );
        }
        Ok(o) if !o.status.success() => {
            assert_eq!(out[2].status, Status::Error, "{:?}", out[2]);
            assert!(
                out[2].message.contains("cannot tell the clock offset"),
                "{:?}",
                out[2]
            );
        }
        Ok(_) => assert_ne!(out[2].observed, Observed::None, "{:?}", out[2]),
    }
}

/// Nagios-style plugins: real scripts in a temporary directory.
fn plugins(dir: &Path) {
    let p = |name: &str, body: &str| write_script(&dir.join(name), body);
    p(
        "check_ok",
        "echo \"DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968 'inode use'=12%;80;90\"\nexit 0",
    );
    p(
        "check_warn",
        "echo 'LOAD WARNING - load average: 5.01 | load1=5.01;5;10;0 load5=3.2;4;8;0'\nexit 1",
    );
    p(
        "check_crit",
        "echo 'PROCS CRITICAL: 3 processes with name etcd | procs=3;1:1;1:1;0'\nexit 2",
    );
    p(
        "check_unknown",
        "echo 'UNKNOWN - cannot reach the socket'\nexit 3",
    );
    p("check_odd", "echo 'strange'\nexit 5");
    p("check_stderr", "echo 'only on stderr' >&2\nexit 2");
    p("check_signal", "kill -9 $$");
    p(
        "check_args",
        "echo \"args: $1|$2\"\n[ \"$1\" = 'a b' ] && [ \"$2\" = '$HOME' ]",
    );
}

#[tokio::test]
async fn command_follows_the_nagios_plugin_convention() {
    let dir = tempfile::tempdir().unwrap();
    plugins(dir.path());
    let d = dir.path().display();
    let text = format!(
        r#"
[[check]]
id = "ok"
type = "command"
program = "{d}/check_ok"
[[check]]
id = "warn"
type = "command"
program = "{d}/check_warn"
[[check]]
id = "crit"
type = "command"
program = "{d}/check_crit"
[[check]]
id = "crit-as-warn"
type = "command"
program = "{d}/check_crit"
severity = "warn"
[[check]]
id = "unknown"
type = "command"
program = "{d}/check_unknown"
[[check]]
id = "odd"
type = "command"
program = "{d}/check_odd"
[[check]]
id = "stderr"
type = "command"
program = "{d}/check_stderr"
[[check]]
id = "signal"
type = "command"
program = "{d}/check_signal"
[[check]]
id = "missing"
type = "command"
program = "{d}/check_nothing"
[[check]]
id = "args-no-shell"
type = "command"
program = "{d}/check_args"
args = ["a b", "$HOME"]
[[check]]
id = "shell"
type = "command"
program = "test \"$(echo hi)\" = hi && echo 'shell OK | n=1'"
shell = true
[[check]]
id = "perf-expect"
type = "command"
program = "{d}/check_ok"
perf_label = "inode use"
expect = {{ max = 10 }}
[[check]]
id = "perf-missing"
type = "command"
program = "{d}/check_ok"
perf_label = "nope"
expect = {{ max = 10 }}
[[check]]
id = "text-expect"
type = "command"
program = "{d}/check_ok"
expect = {{ regex = "^DISK OK" }}
"#
    );
    let out = run(RealHost, &text).await;
    let by = |id: &str| out.iter().find(|o| o.id == id).unwrap();

    let ok = by("ok");
    assert_eq!(ok.status, Status::Pass, "{ok:?}");
    assert_eq!(ok.message, "DISK OK - free space: / 3326 MB (56%);");
    assert_eq!(
        ok.observed,
        Observed::Named(vec![
            ("/".into(), Observed::Number(2643.0)),
            ("inode use".into(), Observed::Number(12.0)),
        ])
    );
    assert_eq!(by("warn").status, Status::Warn);
    assert_eq!(by("warn").message, "LOAD WARNING - load average: 5.01");
    assert_eq!(by("crit").status, Status::Fail);
    assert_eq!(by("crit-as-warn").status, Status::Warn);
    assert_eq!(by("unknown").status, Status::Error);
    assert_eq!(by("unknown").message, "UNKNOWN - cannot reach the socket");
    assert_eq!(by("odd").status, Status::Error);
    assert!(by("odd")
        .message
        .contains("exit 5 is outside the plugin convention"));
    assert_eq!(by("stderr").status, Status::Fail);
    assert_eq!(by("stderr").message, "only on stderr");
    assert_eq!(by("signal").status, Status::Error);
    assert!(
        by("signal").message.contains("killed by a signal"),
        "{:?}",
        by("signal")
    );
    assert_eq!(by("missing").status, Status::Error);
    assert!(
        by("missing").message.contains("not found"),
        "{:?}",
        by("missing")
    );
    let args = by("args-no-shell");
    assert_eq!(args.status, Status::Pass, "{args:?}");
    assert_eq!(args.message, "args: a b");
    // The `|` starts perfdata; `$HOME` is no perfdata item and was not expanded.
    assert_eq!(args.observed, Observed::Text("args: a b".into()));
    assert_eq!(by("shell").status, Status::Pass, "{:?}", by("shell"));
    assert_eq!(
        by("perf-expect").status,
        Status::Fail,
        "{:?}",
        by("perf-expect")
    );
    assert!(
        by("perf-expect")
            .message
            .contains("observed 12, expected <= 10"),
        "{:?}",
        by("perf-expect")
    );
    assert_eq!(by("perf-missing").status, Status::Error);
    assert_eq!(
        by("perf-missing").message,
        "no perfdata labelled `nope` in the output"
    );
    assert_eq!(
        by("text-expect").status,
        Status::Pass,
        "{:?}",
        by("text-expect")
    );
}

fn running_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .count()
}

#[tokio::test]
async fn a_hanging_and_a_flooding_command_are_cut_off_while_others_finish() {
    let dir = tempfile::tempdir().unwrap();
    plugins(dir.path());
    // The hanging plugin leaves a grandchild behind: the whole process
    // group must die with it.
    let marker = format!("31.{}", std::process::id());
    write_script(
        &dir.path().join("check_hang"),
        &format!("sleep {marker} &\nsleep {marker}\necho never"),
    );
    let d = dir.path().display();
    let text = format!(
        r#"
[[check]]
id = "hang"
type = "command"
program = "{d}/check_hang"
timeout = "500ms"
[[check]]
id = "flood"
type = "command"
program = "yes"
max_output = 65536
timeout = "10s"
[[check]]
id = "ok"
type = "command"
program = "{d}/check_ok"
[[check]]
id = "sysctl"
type = "sysctl"
key = "kernel.ostype"
expect = "Linux"
"#
    );
    let checks = specs(&text);
    // Two at a time: the hang holds one slot, the rest share the other.
    let out = Runner::new(Arc::new(RealHost), 2).run(&checks).await;
    let ids: Vec<&str> = out.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["hang", "flood", "ok", "sysctl"]);
    assert_eq!(out[0].status, Status::Error, "{:?}", out[0]);
    assert!(
        out[0]
            .message
            .contains("did not finish within 0.5s and was killed")
            || out[0]
                .message
                .contains("no result within the 500ms timeout"),
        "{}",
        out[0].message
    );
    assert_eq!(out[1].status, Status::Error, "{:?}", out[1]);
    assert_eq!(
        out[1].message,
        "`yes` wrote more than 65536 bytes of output and was killed"
    );
    assert_eq!(out[2].status, Status::Pass, "{:?}", out[2]);
    assert_eq!(out[3].status, Status::Pass, "{:?}", out[3]);
    // The plugin and its background sleep are gone.
    let mut left = running_with(&marker);
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        left = running_with(&marker);
    }
    assert_eq!(left, 0, "processes with {marker} survived the timeout");
}

#[tokio::test]
async fn a_single_check_reports_its_duration() {
    let o = one(
        RealHost,
        "[[check]]\nid = \"s\"\ntype = \"command\"\nprogram = \"sleep\"\nargs = [\"0.2\"]\n",
    )
    .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert!(o.duration_us >= 200_000, "{o:?}");
}

#[tokio::test]
async fn run_within_a_budget_cuts_timeouts_and_reports_checks_it_could_not_start() {
    let checks = specs(
        r#"
[[check]]
id = "slow"
type = "command"
program = "sleep"
args = ["5"]
timeout = "10s"
[[check]]
id = "queued"
type = "command"
program = "true"
[[check]]
id = "also-queued"
type = "sysctl"
key = "kernel.ostype"
expect = "Linux"
"#,
    );
    // One slot: `slow` holds it past the budget, the others never start.
    let runner = Runner::new(Arc::new(RealHost), 1);
    let start = std::time::Instant::now();
    let out = runner.run_within(&checks, Duration::from_millis(400)).await;
    let took = start.elapsed();
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].status, Status::Error, "{:?}", out[0]);
    // The 10 s timeout was cut to what was left of the 400 ms budget.
    assert!(
        !out[0].message.contains("10s")
            && (out[0].message.contains("ms timeout") || out[0].message.contains("within 0.")),
        "{}",
        out[0].message
    );
    for o in &out[1..] {
        assert_eq!(o.status, Status::Error, "{o:?}");
        assert_eq!(
            o.message,
            "not started: the 400ms budget ran out while other checks held every slot"
        );
    }
    // Not a timing target: only proof that the 10 s timeout did not apply.
    assert!(took < Duration::from_secs(5), "{took:?}");

    // With room to spare, everything runs normally.
    let out = runner
        .run_within(&checks[1..], Duration::from_secs(10))
        .await;
    assert!(out.iter().all(|o| o.status == Status::Pass), "{out:#?}");
}
