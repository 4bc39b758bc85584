//! Commands run hardened, on this machine through `RealHost`: with a
//! cleared environment and a fixed `PATH`, in a process group of their own
//! that is killed whenever the command ends, so nothing a plugin starts in
//! the background outlives its check, and as `[checks] command_user` (or
//! a check's `user`) with that user's groups; a child that left the group
//! with `setsid` is found by the run's marker and killed too, and no
//! command inherits the agent's ambient capabilities.
//!
//! Switching users needs root: CI runs the tests as root. Run as another
//! user, the tests that switch fail and say so; they never skip.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use patrol_checks::host::{resolve_account, CommandRequest};
use patrol_checks::{Catalog, Host, RealHost, Runner, Selector, Status};
use patrol_config::Config;
use support::{one, Fixture};

fn request(program: &str, args: &[&str]) -> CommandRequest {
    CommandRequest {
        program: program.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        timeout: Duration::from_secs(20),
        max_output: 64 * 1024,
        run_as: None,
    }
}

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    assert!(
        root,
        "this test runs commands as other users, and only root can switch users: run the tests as root (CI does: bash .ci/run)"
    );
}

/// The checks of `text` (a whole config file) as the agent would run them,
/// with users looked up on `accounts`; the outcomes by id.
async fn run_config(text: &str, accounts: &dyn Host) -> Vec<patrol_checks::CheckOutcome> {
    let config = Config::parse(text, Path::new("patrol.toml")).unwrap();
    let catalog = Catalog::from_config_on(&config, accounts).unwrap();
    catalog.check_user_switch().unwrap();
    let checks = catalog.select(&Selector::default(), &config.node.tags);
    Runner::for_checks(Arc::new(RealHost), &config.checks)
        .run(&checks)
        .await
}

const NODE: &str = "[node]\nname = \"n1\"\nbind = \"127.0.0.1:7946\"\n";

/// True while `pid` is a live process (a zombie waiting for init to reap
/// it is dead).
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, Some(s) if s != "Z" && s != "X")
}

/// Wait up to two seconds for `pid` to die.
fn gone(pid: u32) -> bool {
    for _ in 0..200 {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// The pid a plugin printed as the last word of its first line.
fn printed_pid(message: &str) -> u32 {
    message
        .split_whitespace()
        .last()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {message:?}"))
}

#[tokio::test]
async fn a_background_child_holding_stdout_neither_delays_the_check_nor_survives_it() {
    let started = Instant::now();
    let o = one(
        RealHost,
        r#"
[[check]]
id = "leaves-a-child"
type = "command"
program = "sleep 300 & echo \"OK - started $!\""
shell = true
timeout = "20s"
"#,
    )
    .await;
    // The plugin itself exited at once: its verdict counts, the child
    // holding its stdout is not waited for.
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert!(o.message.starts_with("OK - started "), "{o:?}");
    // Not a timing target: proof that the 20 s timeout did not run out.
    assert!(started.elapsed() < Duration::from_secs(10), "{o:?}");
    let pid = printed_pid(&o.message);
    assert!(gone(pid), "the background sleep {pid} survived its check");
}

#[tokio::test]
async fn a_background_child_that_closed_its_output_is_killed_when_the_plugin_exits() {
    let o = one(
        RealHost,
        r#"
[[check]]
id = "detached-child"
type = "command"
program = "sleep 300 >/dev/null 2>&1 </dev/null & echo \"OK - started $!\""
shell = true
"#,
    )
    .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    let pid = printed_pid(&o.message);
    assert!(gone(pid), "the background sleep {pid} survived its check");
}

#[tokio::test]
async fn a_child_that_left_the_group_with_setsid_is_killed_when_the_plugin_exits() {
    let o = one(
        RealHost,
        r#"
[[check]]
id = "setsid-child"
type = "command"
program = "setsid sleep 300 >/dev/null 2>&1 </dev/null & p=$!; while [ \"$(cut -d' ' -f6 /proc/$p/stat)\" != $p ]; do sleep 0.01; done; echo \"OK - started $p\""
shell = true
"#,
    )
    .await;
    // The plugin printed the pid once the sleeper led a session of its
    // own (field 6 of its stat): it had left the plugin's group.
    assert_eq!(o.status, Status::Pass, "{o:?}");
    let pid = printed_pid(&o.message);
    assert!(gone(pid), "the setsid sleep {pid} survived its check");
}

#[tokio::test]
async fn a_setsid_child_of_a_plugin_that_times_out_is_killed_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!(
        "setsid sleep 300 >/dev/null 2>&1 </dev/null & echo $! > {}; sleep 300",
        pid_file.display()
    );
    let mut req = request("sh", &["-c", &script]);
    req.timeout = Duration::from_secs(2);
    let e = RealHost.run_command(req).await.unwrap_err();
    assert!(e.to_string().contains("did not finish"), "{e}");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The sleeper left the plugin's group and session.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let session = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(3));
    assert!(
        session.is_none() || session == Some(pid.to_string().as_str()),
        "the sleeper did not lead a session of its own: {stat}"
    );
    assert!(
        gone(pid),
        "the setsid sleep {pid} survived its check's timeout"
    );
}

#[test]
fn a_plugin_does_not_inherit_the_agents_ambient_capabilities() {
    require_root();
    // Capabilities are per thread: give one thread an ambient capability,
    // as systemd's AmbientCapabilities= gives a whole agent, and run a
    // command from it.
    let cap_amb = std::thread::spawn(|| {
        use rustix::thread::{
            capabilities, configure_capability_in_ambient_set, set_capabilities, CapabilitySet,
        };
        let mut sets = capabilities(None).unwrap();
        sets.inheritable |= CapabilitySet::NET_RAW;
        set_capabilities(None, sets).unwrap();
        configure_capability_in_ambient_set(CapabilitySet::NET_RAW, true).unwrap();
        let own = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        assert!(
            own.lines()
                .any(|l| l.starts_with("CapAmb:") && !l.ends_with("0000000000000000")),
            "the test thread has no ambient capability to pass on: {own}"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let out = rt
            .block_on(RealHost.run_command(request("grep", &["CapAmb", "/proc/self/status"])))
            .unwrap();
        out.stdout
    })
    .join()
    .unwrap();
    assert_eq!(
        cap_amb.split_whitespace().collect::<Vec<_>>(),
        ["CapAmb:", "0000000000000000"]
    );
}

#[tokio::test]
async fn commands_see_only_a_cleared_environment_with_a_fixed_path() {
    let out = RealHost.run_command(request("env", &[])).await.unwrap();
    // Besides the run's marker (see the setsid tests below).
    let marker = format!("{}=", patrol_checks::host::MARKER_VAR);
    let mut vars: Vec<&str> = out
        .stdout
        .lines()
        .filter(|v| !v.starts_with(&marker))
        .collect();
    assert_eq!(vars.len() + 1, out.stdout.lines().count(), "{}", out.stdout);
    vars.sort();
    assert_eq!(
        vars,
        [
            "HOME=/",
            "LANG=C",
            "LC_ALL=C",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ],
        "{}",
        out.stdout
    );
    // A bare name is looked up in that PATH, and commands start in `/`.
    let out = RealHost
        .run_command(request("sh", &["-c", "command -v sh; pwd"]))
        .await
        .unwrap();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines.len() == 2 && (lines[0] == "/usr/bin/sh" || lines[0] == "/bin/sh"),
        "{lines:?}"
    );
    assert_eq!(lines[1], "/");
}

#[tokio::test]
#[ignore = "full tier: needs root (switches users)"]
async fn commands_run_as_the_command_user_unless_a_check_names_its_own() {
    require_root();
    let text = format!(
        r#"{NODE}
[checks]
command_user = "nobody"

[[check]]
id = "uid"
type = "command"
program = "id"
args = ["-u"]

[[check]]
id = "as-root"
type = "command"
program = "id"
args = ["-u"]
user = "root"

[[check]]
id = "home-and-path"
type = "command"
program = "echo \"$HOME $PATH\""
shell = true

[[check]]
id = "leaves-a-child"
type = "command"
program = "sleep 300 & echo \"OK - started $!\""
shell = true
"#
    );
    let out = run_config(&text, &RealHost).await;
    let by = |id: &str| out.iter().find(|o| o.id == id).unwrap();
    assert_eq!(by("uid").status, Status::Pass, "{:?}", by("uid"));
    assert_eq!(by("uid").message, "65534");
    assert_eq!(by("as-root").message, "0", "{:?}", by("as-root"));
    assert_eq!(
        by("home-and-path").message,
        "/nonexistent /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    let child = by("leaves-a-child");
    assert_eq!(child.status, Status::Pass, "{child:?}");
    let pid = printed_pid(&child.message);
    assert!(
        gone(pid),
        "nobody's background sleep {pid} survived its check"
    );
}

#[tokio::test]
#[ignore = "full tier: needs root (switches users)"]
async fn a_user_gets_its_supplementary_groups_and_only_the_fixed_environment() {
    require_root();
    // A user this machine does not have: the ids come from these files.
    let accounts = Fixture::new();
    accounts
        .file(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/bash\nchecker:x:4242:4242::/home/checker:/bin/sh\n",
        )
        .file(
            "/etc/group",
            "checker:x:4242:\nextra:x:4243:someone,checker\nother:x:4244:someone\n",
        );
    let account = resolve_account(&accounts.host(), "checker").unwrap();
    assert_eq!(account.groups, [4242, 4243]);
    let mut req = request("sh", &["-c", "id -u; id -g; id -G"]);
    req.run_as = Some(account.clone());
    let out = RealHost.run_command(req).await.unwrap();
    assert_eq!(out.stdout, "4242\n4242\n4242 4243\n", "{out:?}");
    let mut req = request("env", &[]);
    req.run_as = Some(account);
    let out = RealHost.run_command(req).await.unwrap();
    // The run's marker (how strays of the run are found) is the one
    // variable besides the fixed environment.
    let mut vars: Vec<&str> = out
        .stdout
        .lines()
        .filter(|v| !v.starts_with("PATROL_CHECK_RUN="))
        .collect();
    assert!(out
        .stdout
        .lines()
        .any(|v| v.starts_with("PATROL_CHECK_RUN=")));
    vars.sort();
    assert_eq!(
        vars,
        [
            "HOME=/home/checker",
            "LANG=C",
            "LC_ALL=C",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]
    );
}

#[tokio::test]
#[ignore = "full tier: needs root (switches users)"]
async fn a_program_the_user_may_not_run_is_an_error_naming_it() {
    require_root();
    // A private directory of root's: nobody cannot reach the plugin.
    let dir = tempfile::tempdir().unwrap();
    support::write_script(&dir.path().join("check_private"), "echo OK");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let text = format!(
        "{NODE}[checks]\ncommand_user = \"nobody\"\n[[check]]\nid = \"p\"\ntype = \"command\"\nprogram = \"{}/check_private\"\n",
        dir.path().display()
    );
    let out = run_config(&text, &RealHost).await;
    assert_eq!(out[0].status, Status::Error, "{:?}", out[0]);
    assert!(
        out[0].message.starts_with("cannot start `")
            && out[0].message.contains("Permission denied"),
        "{:?}",
        out[0]
    );
}

#[test]
fn an_unknown_user_is_a_config_problem_with_file_and_key() {
    let accounts = Fixture::new();
    accounts.file("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    let text = format!(
        "{NODE}[checks]\ncommand_user = \"patrol-checks\"\n[[check]]\nid = \"a\"\ntype = \"command\"\nprogram = \"true\"\n[[check]]\nid = \"b\"\ntype = \"command\"\nprogram = \"true\"\nuser = \"nagios\"\n"
    );
    let config = Config::parse(&text, Path::new("/etc/patrol/patrol.toml")).unwrap();
    let err = Catalog::from_config_on(&config, &accounts.host()).unwrap_err();
    let lines: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        lines,
        [
            "/etc/patrol/patrol.toml: checks.command_user: no user `patrol-checks` in /etc/passwd (users are looked up in the local files only, not in LDAP or other NSS sources)",
            "/etc/patrol/patrol.toml: check[1].user: no user `nagios` in /etc/passwd (users are looked up in the local files only, not in LDAP or other NSS sources)",
        ]
    );
}

#[test]
fn an_agent_that_is_not_root_refuses_a_command_user_at_start() {
    let accounts = Fixture::new();
    accounts.file(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\npatrol:x:990:990::/var/lib/patrol:/bin/false\nnobody:x:65534:65534::/nonexistent:/bin/false\n",
    );
    let text = format!("{NODE}[checks]\ncommand_user = \"nobody\"\n[[check]]\nid = \"a\"\ntype = \"command\"\nprogram = \"true\"\n");
    let config = Config::parse(&text, Path::new("/etc/patrol/patrol.toml")).unwrap();
    let catalog = Catalog::from_config_on(&config, &accounts.host()).unwrap();
    assert!(catalog.check_user_switch_as(0).is_ok());
    // Already running as that user: nothing to switch.
    assert!(catalog.check_user_switch_as(65534).is_ok());
    let err = catalog.check_user_switch_as(990).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/patrol/patrol.toml: checks.command_user: cannot run as user `nobody` (uid 65534): only root can switch users and the agent runs as uid 990 (run the agent as root, or remove [checks] command_user and the check's `user`)"
    );
    // Without a command user nothing is switched, whoever runs.
    let plain = Config::parse(
        &format!("{NODE}[[check]]\nid = \"a\"\ntype = \"command\"\nprogram = \"true\"\n"),
        Path::new("p.toml"),
    )
    .unwrap();
    let catalog = Catalog::from_config_on(&plain, &accounts.host()).unwrap();
    assert!(catalog.check_user_switch_as(990).is_ok());
}
