//! `patrol config check` through the real binary: `ok` on the shipped
//! example, every problem named with file and key (exit 2) on a broken
//! file, key file problems reported at `node.key_file`, and `[trust]`
//! identities made by `patrol ca` checked as the agent checks them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use patrol_agent::keyring::Keyring;

const EXAMPLE: &str = include_str!("../../config/patrol.example.toml");

fn patrol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(args)
        .output()
        .expect("run the patrol binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The example config, with its key file pointed at `key_file` and its
/// `[trust]` files at an identity for `node_name` made with `patrol ca` in
/// `dir`.
fn example_with_key(dir: &Path, key_file: &Path) -> PathBuf {
    example_with_identity(dir, key_file, "node-a1")
}

fn example_with_identity(dir: &Path, key_file: &Path, node_name: &str) -> PathBuf {
    let ca = dir.join("ca");
    let node = dir.join("node");
    let run = |args: &[&str]| {
        let out = patrol(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    };
    if !ca.exists() {
        run(&["ca", "init", "--out", ca.to_str().unwrap()]);
        run(&[
            "ca",
            "issue",
            "node",
            "--ca",
            ca.to_str().unwrap(),
            "--name",
            node_name,
            "--out",
            node.to_str().unwrap(),
        ]);
    }
    let mut body = EXAMPLE.to_string();
    for (line, file) in [
        (
            "key_file = \"/etc/patrol/cluster.key\"",
            key_file.to_path_buf(),
        ),
        ("ca_bundle = \"/etc/patrol/ca.crt\"", node.join("ca.crt")),
        ("cert = \"/etc/patrol/node.crt\"", node.join("node.crt")),
        ("key = \"/etc/patrol/node.key\"", node.join("node.key")),
        (
            "deny_list = \"/etc/patrol/revoked.txt\"",
            dir.join("revoked.txt"),
        ),
    ] {
        assert!(EXAMPLE.contains(line), "the example no longer has {line}");
        let key = line.split(" = ").next().unwrap();
        body = body.replace(line, &format!("{key} = \"{}\"", file.display()));
    }
    if !dir.join("revoked.txt").exists() {
        fs::write(dir.join("revoked.txt"), "# none\n").unwrap();
    }
    let path = dir.join("patrol.toml");
    fs::write(&path, body).unwrap();
    path
}

#[test]
fn a_certificate_for_another_name_or_a_readable_node_key_is_a_problem_at_trust() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    Keyring::generate().write_new(&key).unwrap();
    let config = example_with_identity(dir.path(), &key, "node-b7");
    let out = patrol(&["config", "check", config.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.starts_with(&format!("{}: trust: ", config.display()))
            && stdout.contains("node-b7")
            && stdout.contains("node-a1"),
        "{stdout}"
    );
    fs::set_permissions(
        dir.path().join("node/node.key"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = patrol(&["config", "check", config.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("chmod 600"), "{stdout}");
    // Revoking the node's serial makes the same file a problem.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    Keyring::generate().write_new(&key).unwrap();
    let config = example_with_key(dir.path(), &key);
    let show = patrol(&[
        "ca",
        "show",
        dir.path().join("node/node.crt").to_str().unwrap(),
    ]);
    let shown = text(&show.stdout);
    let serial = shown
        .split("serial ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    let out = patrol(&[
        "ca",
        "revoke",
        serial,
        "--deny-list",
        dir.path().join("revoked.txt").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = patrol(&["config", "check", config.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("revoked"), "{stdout}");
}

#[test]
fn an_agent_that_enrolls_is_ok_before_its_first_certificate_if_it_has_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    Keyring::generate().write_new(&key).unwrap();
    let config = example_with_key(dir.path(), &key);
    // No certificate yet: the node enrolls at start.
    fs::remove_file(dir.path().join("node/node.crt")).unwrap();
    fs::remove_file(dir.path().join("node/node.key")).unwrap();
    let token = dir.path().join("enroll.token");
    let body = fs::read_to_string(&config).unwrap().replace(
        "# enroll = \"enroll.example.net:7947\"\n# enroll_token_file = \"/etc/patrol/enroll.token\"",
        &format!(
            "enroll = \"enroll.example.net:7947\"\nenroll_token_file = \"{}\"",
            token.display()
        ),
    );
    assert!(
        body.contains("\nenroll = "),
        "the example no longer shows enroll"
    );
    fs::write(&config, body).unwrap();
    let out = patrol(&["config", "check", config.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.starts_with(&format!("{}: trust: enroll_token_file", config.display())),
        "{stdout}"
    );
    fs::write(&token, "ptok1.0011223344556677.aa\n").unwrap();
    let out = patrol(&["config", "check", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stdout));
}

#[test]
fn the_example_is_ok() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    Keyring::generate().write_new(&key).unwrap();
    let config = example_with_key(dir.path(), &key);
    let out = patrol(&["config", "check", config.to_str().unwrap()]);
    assert_eq!(text(&out.stdout), "ok\n", "stderr: {}", text(&out.stderr));
    assert!(out.status.success());
}

#[test]
fn the_shipped_example_is_ok_without_its_key_file() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/patrol.example.toml");
    let out = patrol(&[
        "config",
        "check",
        "--no-key-file",
        example.to_str().unwrap(),
    ]);
    assert_eq!(text(&out.stdout), "ok\n", "stderr: {}", text(&out.stderr));
    assert!(out.status.success());
}

#[test]
fn a_broken_file_names_every_problem_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    let missing_key = dir.path().join("missing.key");
    fs::write(
        &config,
        format!(
            r#"
colour = "blue"
[node]
name = ""
bind = "127.0.0.1:0"
seeds = ["10.0.0.1:7946", "no-port"]
key_file = "{}"
[sweep]
max_concurrent = 0
[checks]
default_timeout = "5 parsecs"
"#,
            missing_key.display()
        ),
    )
    .unwrap();
    let out = patrol(&["config", "check", config.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{}", text(&out.stderr));
    let file = config.display().to_string();
    for key in [
        "colour",
        "node.name",
        "node.seeds[1]",
        "node.key_file",
        "sweep.max_concurrent",
        "checks.default_timeout",
    ] {
        let prefix = format!("{file}: {key}: ");
        assert!(
            stdout.lines().any(|l| l.starts_with(&prefix)),
            "no line starting {prefix:?} in:\n{stdout}"
        );
    }
    assert_eq!(stdout.lines().count(), 6, "{stdout}");
    assert!(stdout.contains("unknown unit"), "{stdout}");
    assert!(
        stdout.contains(&missing_key.display().to_string()),
        "{stdout}"
    );
    assert!(!stdout.contains("\nok"), "{stdout}");
    assert!(
        text(&out.stderr).contains("6 problems"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_key_file_others_can_read_is_a_problem_at_node_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    Keyring::generate().write_new(&key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    let config = example_with_key(dir.path(), &key);
    let out = patrol(&["config", "check", config.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let line = stdout.lines().next().unwrap_or_default();
    assert!(
        line.starts_with(&format!("{}: node.key_file: ", config.display())),
        "{stdout}"
    );
    assert!(line.contains("0640"), "{line}");
    assert!(
        line.contains(&format!("chmod 600 {}", key.display())),
        "{line}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}

#[test]
fn a_file_that_is_not_toml_or_missing_is_one_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("garbage.toml");
    fs::write(&config, "[node\nname = ").unwrap();
    let out = patrol(&["config", "check", config.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.starts_with(&format!("{}: not valid TOML", config.display())),
        "{stdout}"
    );

    let missing = dir.path().join("nope.toml");
    let out = patrol(&["config", "check", missing.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("cannot read the file"), "{stdout}");
}

#[test]
fn broken_checks_and_profiles_are_named_by_index_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("checks.toml");
    fs::write(
        &config,
        r#"
[checks]
profiles = ["k8s-node", "mainframe"]

[[check]]
id = "fine"
type = "sysctl"
key = "vm.swappiness"
expect = { max = 60 }

[[check]]
id = "bad"
type = "sysctl"
key = "vm.swappiness"
expect = { minimum = 1 }

[[check]]
id = "worse"
type = "teleport"
"#,
    )
    .unwrap();
    let out = patrol(&["config", "check", "--no-key-file", config.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{}", text(&out.stderr));
    let file = config.display().to_string();
    for (key, needle) in [
        ("check[1].expect.minimum", "unknown expectation"),
        ("check[2].type", "teleport"),
        ("checks.profiles[1]", "unknown profile `mainframe`"),
    ] {
        let prefix = format!("{file}: {key}: ");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(needle)),
            "no line starting {prefix:?} containing {needle:?} in:\n{stdout}"
        );
    }
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
}

/// Regression (issue 12, hardening): the keys added then are accepted, and
/// their mistakes are named with file and key.
#[test]
fn the_hardening_keys_are_accepted_and_their_mistakes_named() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        fs::write(&path, body).unwrap();
        path
    };
    let check = |path: &Path| {
        let out = patrol(&["config", "check", "--no-key-file", path.to_str().unwrap()]);
        (out.status.code(), text(&out.stdout))
    };
    let good = write(
        "good.toml",
        r#"
[checks]
blocking_per_kind = 8
command_user = "root"

[[check]]
id = "data"
type = "disk"
mounts = ["/srv/*"]
include_network = true
expect = { max = 90 }

[[check]]
id = "plugin"
type = "command"
program = "/usr/lib/nagios/plugins/check_load"
user = "0"
"#,
    );
    assert_eq!(check(&good), (Some(0), "ok\n".to_string()));

    let section = write(
        "section.toml",
        "[checks]\nblocking_per_kind = 0\ncommand_user = \"root:root\"\n",
    );
    let (code, stdout) = check(&section);
    assert_eq!(code, Some(2), "{stdout}");
    let file = section.display().to_string();
    for (key, needle) in [
        ("checks.blocking_per_kind", "must be 1-64 (got 0)"),
        ("checks.command_user", "is not a user name"),
    ] {
        let prefix = format!("{file}: {key}: ");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(needle)),
            "no line starting {prefix:?} containing {needle:?} in:\n{stdout}"
        );
    }

    let checks = write(
        "checks.toml",
        r#"
[checks]
command_user = "patrol-no-such-user"

[[check]]
id = "data"
type = "disk"
mounts = ["/srv/*"]
include_networks = true
expect = { max = 90 }

[[check]]
id = "plugin"
type = "command"
program = "/usr/lib/nagios/plugins/check_load"
user = "patrol-nor-this-one"
"#,
    );
    let (code, stdout) = check(&checks);
    assert_eq!(code, Some(2), "{stdout}");
    let file = checks.display().to_string();
    for (key, needle) in [
        (
            "checks.command_user",
            "no user `patrol-no-such-user` in /etc/passwd",
        ),
        ("check[0].include_networks", "unknown field"),
        (
            "check[1].user",
            "no user `patrol-nor-this-one` in /etc/passwd",
        ),
    ] {
        let prefix = format!("{file}: {key}: ");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(needle)),
            "no line starting {prefix:?} containing {needle:?} in:\n{stdout}"
        );
    }
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
}
