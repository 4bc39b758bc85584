//! `patrol keys` through the real binary: `generate` writes a 0600 key file
//! the agent's keyring loads, names the key id but never the secret, and
//! refuses to overwrite without `--force`; `list` shows ids only.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use patrol_agent::keyring::Keyring;

fn patrol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(args)
        .output()
        .expect("run the patrol binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The hex secrets stored in a key file.
fn secrets_in(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("secret = \""))
        .map(|s| s.trim_end_matches('"').to_string())
        .collect()
}

#[test]
fn generate_writes_a_private_key_file_and_prints_the_id_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.key");
    let out = patrol(&["keys", "generate", "--out", path.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));

    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key file mode {mode:o}");
    let ring = Keyring::load(&path).unwrap();
    assert_eq!(ring.len(), 1);
    assert!(stdout.contains(&path.display().to_string()), "{stdout}");
    assert!(
        stdout.contains(&format!("key id {}", ring.primary_id())),
        "{stdout}"
    );
    let secrets = secrets_in(&path);
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].len(), 64);
    assert!(!stdout.contains(&secrets[0]), "the secret was printed");
}

#[test]
fn generate_refuses_to_overwrite_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.key");
    let p = path.to_str().unwrap();
    assert!(patrol(&["keys", "generate", "--out", p]).status.success());
    let first = secrets_in(&path);

    let again = patrol(&["keys", "generate", "--out", p]);
    let stderr = text(&again.stderr);
    assert!(!again.status.success(), "overwrote an existing key file");
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(secrets_in(&path), first, "the key file changed");

    let forced = patrol(&["keys", "generate", "--out", p, "--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    let second = secrets_in(&path);
    assert_eq!(second.len(), 1);
    assert_ne!(second, first, "--force kept the old key");
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Nothing but the key file is left in the directory.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn generate_into_a_missing_directory_fails_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/cluster.key");
    let out = patrol(&["keys", "generate", "--out", path.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
}

#[test]
fn list_shows_ids_and_primary_never_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.key");
    let mut ring = Keyring::from_secret(11, [0x11; 32]);
    ring.install(22, [0x22; 32]).unwrap();
    ring.use_primary(22).unwrap();
    ring.write_new(&path).unwrap();

    let out = patrol(&["keys", "list", path.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("2 key(s)"), "{stdout}");
    assert!(stdout.lines().any(|l| l == "11"), "{stdout}");
    assert!(stdout.lines().any(|l| l == "22\tprimary"), "{stdout}");
    assert!(!stdout.contains("1111"), "a secret was printed: {stdout}");
}

#[test]
fn list_refuses_a_key_file_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.key");
    Keyring::generate().write_new(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let out = patrol(&["keys", "list", path.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("chmod 600 {}", path.display())),
        "{stderr}"
    );
}
