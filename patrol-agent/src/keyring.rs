//! The cluster keyring: the 32-byte secrets that seal every packet, each
//! under a numeric key id, one of them primary.
//!
//! Rotation works the way Serf does it: `install` a new key on every node
//! (it opens packets from then on), `use_primary` it everywhere (it seals
//! from then on), and finally `remove` the old one. Packets carry the key id
//! in the clear, so a node only ever tries the one key a packet names.
//!
//! The key file is TOML a human can inspect (the secrets are hex):
//!
//! ```toml
//! # Patrol cluster keyring: keep it secret (mode 0600).
//! primary = 2864434397
//!
//! [[key]]
//! id = 2864434397
//! secret = "…64 hex digits…"
//! ```
//!
//! **Invariant:** [`Keyring::load`] refuses a file that its group or others
//! may read, and every file this module writes is created with mode 0600
//! and appears atomically: a reader sees the old file or the new one, never
//! half of either.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::Rng;
use serde::Deserialize;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of one secret key in bytes (XChaCha20-Poly1305 key size).
pub const SECRET_LEN: usize = 32;

/// Key files larger than this are refused unread: a keyring holds a few
/// keys, never megabytes.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// What can go wrong with a keyring or its file.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot read key file {}: {source} (create one with `patrol keys generate --out {}`)", path.display(), path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("key file {} has mode {mode:04o}, which lets others read it: run `chmod 600 {}`", path.display(), path.display())]
    InsecureMode { path: PathBuf, mode: u32 },
    #[error("key file {} is malformed: {message}", path.display())]
    Malformed { path: PathBuf, message: String },
    #[error("key file {} already exists (refusing to overwrite it)", path.display())]
    Exists { path: PathBuf },
    #[error("cannot write key file {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("key id {0} is already in the keyring")]
    DuplicateKey(u32),
    #[error("key id {0} is not in the keyring")]
    UnknownKey(u32),
    #[error("key id {0} is the primary key: make another key primary before removing it")]
    RemovePrimary(u32),
}

/// One secret. Its `Debug` never shows the bytes; its memory is wiped when
/// it is dropped.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
struct Secret([u8; SECRET_LEN]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A set of keys by id, one of them primary. Always holds at least the
/// primary key. `Debug` shows ids only, never secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    /// The key that seals; held apart so that it cannot go missing.
    primary: (u32, Secret),
    /// The other keys, which only open.
    others: BTreeMap<u32, Secret>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary.0)
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

/// The on-disk form (read with serde, written by [`Keyring::to_text`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    primary: u32,
    #[serde(default)]
    key: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: u32,
    /// Wiped when dropped, like the text it was read from.
    secret: Zeroizing<String>,
}

impl Keyring {
    /// A keyring holding one fresh random key (random id), primary.
    pub fn generate() -> Keyring {
        let (id, secret) = fresh_key();
        Keyring::from_secret(id, secret)
    }

    /// A keyring holding exactly this key, primary. Tests use it to build
    /// a known or deliberately wrong key.
    pub fn from_secret(id: u32, secret: [u8; SECRET_LEN]) -> Keyring {
        Keyring {
            primary: (id, Secret(secret)),
            others: BTreeMap::new(),
        }
    }

    /// The id of the key that seals.
    pub fn primary_id(&self) -> u32 {
        self.primary.0
    }

    /// Every key id, ascending.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        let mut ids: Vec<u32> = self.others.keys().copied().collect();
        let at = ids.partition_point(|&id| id < self.primary.0);
        ids.insert(at, self.primary.0);
        ids.into_iter()
    }

    /// Whether a key with this id is installed.
    pub fn contains(&self, id: u32) -> bool {
        id == self.primary.0 || self.others.contains_key(&id)
    }

    /// Number of keys (at least 1).
    pub fn len(&self) -> usize {
        1 + self.others.len()
    }

    /// Always false: a keyring holds at least its primary key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The primary key's secret, for the envelope.
    pub(crate) fn primary_secret(&self) -> &[u8; SECRET_LEN] {
        &self.primary.1 .0
    }

    /// The secret of one key, for the envelope.
    pub(crate) fn secret(&self, id: u32) -> Option<&[u8; SECRET_LEN]> {
        if id == self.primary.0 {
            Some(self.primary_secret())
        } else {
            self.others.get(&id).map(|s| &s.0)
        }
    }

    /// Add a key that opens packets; it does not seal until made primary.
    pub fn install(&mut self, id: u32, secret: [u8; SECRET_LEN]) -> Result<(), KeyringError> {
        if self.contains(id) {
            return Err(KeyringError::DuplicateKey(id));
        }
        self.others.insert(id, Secret(secret));
        Ok(())
    }

    /// Add a fresh random key with an id not yet in use; returns the id.
    pub fn install_generated(&mut self) -> u32 {
        loop {
            let (id, secret) = fresh_key();
            if self.install(id, secret).is_ok() {
                return id;
            }
        }
    }

    /// Make an installed key the one that seals.
    pub fn use_primary(&mut self, id: u32) -> Result<(), KeyringError> {
        if id == self.primary.0 {
            return Ok(());
        }
        let secret = self
            .others
            .remove(&id)
            .ok_or(KeyringError::UnknownKey(id))?;
        let old = std::mem::replace(&mut self.primary, (id, secret));
        self.others.insert(old.0, old.1);
        Ok(())
    }

    /// Remove a key that is not primary.
    pub fn remove(&mut self, id: u32) -> Result<(), KeyringError> {
        if id == self.primary.0 {
            return Err(KeyringError::RemovePrimary(id));
        }
        self.others
            .remove(&id)
            .map(|_| ())
            .ok_or(KeyringError::UnknownKey(id))
    }

    /// Read a key file, refusing one its group or others may read.
    pub fn load(path: &Path) -> Result<Keyring, KeyringError> {
        let read_err = |source| KeyringError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(KeyringError::Malformed {
                path: path.to_path_buf(),
                message: "not a regular file".into(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyringError::InsecureMode {
                path: path.to_path_buf(),
                mode,
            });
        }
        if meta.len() > MAX_FILE_LEN {
            return Err(KeyringError::Malformed {
                path: path.to_path_buf(),
                message: format!("{} bytes; a key file is at most {MAX_FILE_LEN}", meta.len()),
            });
        }
        let mut text = Zeroizing::new(String::new());
        file.take(MAX_FILE_LEN + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        Keyring::parse(&text).map_err(|message| KeyringError::Malformed {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parse key file text; the error says what is wrong (no path).
    fn parse(text: &str) -> Result<Keyring, String> {
        // Only the message and line: a snippet of the file could show a secret.
        let file: KeyFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(n) => format!("line {n}: {}", e.message().trim_end()),
                None => e.message().trim_end().to_string(),
            }
        })?;
        let mut keys = BTreeMap::new();
        for (i, entry) in file.key.iter().enumerate() {
            let secret = Zeroizing::new(
                decode_hex_secret(&entry.secret)
                    .map_err(|m| format!("key[{i}] (id {}): secret {m}", entry.id))?,
            );
            let secret = *secret;
            if keys.insert(entry.id, Secret(secret)).is_some() {
                return Err(format!("key[{i}]: id {} appears twice", entry.id));
            }
        }
        if keys.is_empty() {
            return Err("no [[key]] entries".into());
        }
        let Some(primary) = keys.remove(&file.primary) else {
            return Err(format!(
                "primary = {} names no [[key]] in the file",
                file.primary
            ));
        };
        Ok(Keyring {
            primary: (file.primary, primary),
            others: keys,
        })
    }

    /// The key file text (holds the secrets; wiped when dropped).
    fn to_text(&self) -> Zeroizing<String> {
        // Sized up front so that no reallocation leaves a copy behind.
        let mut text = Zeroizing::new(String::with_capacity(256 + 128 * (self.others.len() + 1)));
        text.push_str(&format!(
            "# Patrol cluster keyring: keep it secret (mode 0600).\n\
             # `primary` names the key that seals; every [[key]] opens.\n\
             primary = {}\n",
            self.primary.0
        ));
        for id in self.ids() {
            if let Some(secret) = self.secret(id) {
                let hex = Zeroizing::new(encode_hex(secret));
                text.push_str(&format!("\n[[key]]\nid = {id}\nsecret = \""));
                text.push_str(&hex);
                text.push_str("\"\n");
            }
        }
        text
    }

    /// Write a new key file with mode 0600; refuses if `path` exists.
    /// The file appears complete or not at all.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyringError> {
        self.write(path, false)
    }

    /// Write the key file with mode 0600, atomically replacing any file at
    /// `path` (how rotation persists, and `patrol keys generate --force`).
    pub fn save(&self, path: &Path) -> Result<(), KeyringError> {
        self.write(path, true)
    }

    fn write(&self, path: &Path, replace: bool) -> Result<(), KeyringError> {
        let write_err = |source| KeyringError::Write {
            path: path.to_path_buf(),
            source,
        };
        if !replace && fs::symlink_metadata(path).is_ok() {
            return Err(KeyringError::Exists {
                path: path.to_path_buf(),
            });
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| write_err(io::Error::other("the path names no file")))?;
        // A temporary file next to the target, so that rename and link stay
        // on one filesystem.
        let (tmp_path, mut tmp) = create_temp(dir, name).map_err(write_err)?;
        let result = (|| {
            tmp.set_permissions(fs::Permissions::from_mode(0o600))?;
            tmp.write_all(self.to_text().as_bytes())?;
            tmp.sync_all()?;
            drop(tmp);
            if replace {
                fs::rename(&tmp_path, path)
            } else {
                // link(2) never replaces an existing file: no-clobber, atomic.
                fs::hard_link(&tmp_path, path)?;
                fs::remove_file(&tmp_path)
            }
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp_path);
        }
        match result {
            Ok(()) => {
                // Make the new directory entry durable; failing that is not fatal.
                if let Ok(d) = File::open(dir) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(KeyringError::Exists {
                path: path.to_path_buf(),
            }),
            Err(e) => Err(write_err(e)),
        }
    }
}

/// Create `.NAME.tmp-RANDOM` in `dir` with mode 0600 (never following or
/// reusing an existing file).
fn create_temp(dir: &Path, name: &std::ffi::OsStr) -> io::Result<(PathBuf, File)> {
    let mut rng = rand::rng();
    loop {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{:016x}", rng.next_u64()));
        let tmp_path = dir.join(tmp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp_path)
        {
            Ok(f) => return Ok((tmp_path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A random non-zero id and a random secret, from the OS-seeded CSPRNG.
fn fresh_key() -> (u32, [u8; SECRET_LEN]) {
    let mut rng = rand::rng();
    let mut secret = [0u8; SECRET_LEN];
    rng.fill_bytes(&mut secret);
    let id = loop {
        let id = rng.next_u32();
        if id != 0 {
            break id;
        }
    };
    (id, secret)
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

fn decode_hex_secret(text: &str) -> Result<[u8; SECRET_LEN], String> {
    let digits = text.as_bytes();
    if digits.len() != SECRET_LEN * 2 {
        return Err(format!(
            "has {} characters; expected {} hex digits ({SECRET_LEN} bytes)",
            digits.len(),
            SECRET_LEN * 2
        ));
    }
    let mut out = [0u8; SECRET_LEN];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let hi = hex_value(pair[0]);
        let lo = hex_value(pair[1]);
        match (hi, lo) {
            (Some(h), Some(l)) => out[i] = (h << 4) | l,
            _ => return Err("is not hexadecimal".into()),
        }
    }
    Ok(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn generated_keys_differ_and_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let a = Keyring::generate();
        let b = Keyring::generate();
        assert_ne!(a.secret(a.primary_id()), b.secret(b.primary_id()));
        a.write_new(&path).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(Keyring::load(&path).unwrap(), a);
    }

    #[test]
    fn write_new_refuses_to_overwrite_and_save_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let first = Keyring::generate();
        first.write_new(&path).unwrap();
        let second = Keyring::generate();
        let err = second.write_new(&path).unwrap_err();
        assert!(matches!(err, KeyringError::Exists { .. }), "{err}");
        assert_eq!(Keyring::load(&path).unwrap(), first);
        second.save(&path).unwrap();
        assert_eq!(Keyring::load(&path).unwrap(), second);
        assert_eq!(mode_of(&path), 0o600);
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn refuses_a_file_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        Keyring::generate().write_new(&path).unwrap();
        for mode in [0o640, 0o604, 0o644, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = Keyring::load(&path).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, KeyringError::InsecureMode { mode: m, .. } if m == mode),
                "{text}"
            );
            assert!(text.contains(&format!("{mode:04o}")), "{text}");
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        Keyring::load(&path).unwrap();
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = Keyring::load(Path::new("/nonexistent/patrol/cluster.key")).unwrap_err();
        assert!(matches!(err, KeyringError::Read { .. }));
        assert!(
            err.to_string().contains("/nonexistent/patrol/cluster.key"),
            "{err}"
        );
    }

    #[test]
    fn malformed_files_say_what_is_wrong() {
        let good = "a".repeat(64);
        let cases = [
            ("not toml at all [".to_string(), ""),
            ("primary = 1\n".to_string(), "no [[key]]"),
            (
                format!("primary = 2\n[[key]]\nid = 1\nsecret = \"{good}\"\n"),
                "primary = 2",
            ),
            (
                "primary = 1\n[[key]]\nid = 1\nsecret = \"abcd\"\n".to_string(),
                "expected 64 hex digits",
            ),
            (
                format!("primary = 1\n[[key]]\nid = 1\nsecret = \"{}\"\n", "g".repeat(64)),
                "not hexadecimal",
            ),
            (
                format!(
                    "primary = 1\n[[key]]\nid = 1\nsecret = \"{good}\"\n[[key]]\nid = 1\nsecret = \"{good}\"\n"
                ),
                "appears twice",
            ),
            (
                format!("primary = 1\ncolour = 3\n[[key]]\nid = 1\nsecret = \"{good}\"\n"),
                "colour",
            ),
            (
                format!("primary = -1\n[[key]]\nid = 1\nsecret = \"{good}\"\n"),
                "",
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (i, (text, needle)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("k{i}"));
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .unwrap();
            f.write_all(text.as_bytes()).unwrap();
            let err = Keyring::load(&path).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, KeyringError::Malformed { .. }), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(needle), "case {i}: {needle:?} not in {msg}");
            assert!(!msg.contains(&good), "case {i} shows a secret: {msg}");
        }
    }

    #[test]
    fn rotation_install_use_remove_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let mut ring = Keyring::from_secret(7, [7; SECRET_LEN]);
        ring.install(9, [9; SECRET_LEN]).unwrap();
        assert!(matches!(
            ring.install(9, [1; SECRET_LEN]),
            Err(KeyringError::DuplicateKey(9))
        ));
        assert_eq!(ring.primary_id(), 7);
        assert!(matches!(
            ring.use_primary(8),
            Err(KeyringError::UnknownKey(8))
        ));
        ring.use_primary(9).unwrap();
        assert!(matches!(
            ring.remove(9),
            Err(KeyringError::RemovePrimary(9))
        ));
        ring.save(&path).unwrap();
        let loaded = Keyring::load(&path).unwrap();
        assert_eq!(loaded.primary_id(), 9);
        assert_eq!(loaded.ids().collect::<Vec<_>>(), vec![7, 9]);
        ring.remove(7).unwrap();
        assert!(matches!(ring.remove(7), Err(KeyringError::UnknownKey(7))));
        ring.save(&path).unwrap();
        let loaded = Keyring::load(&path).unwrap();
        assert_eq!(loaded.ids().collect::<Vec<_>>(), vec![9]);
        assert_eq!(loaded.secret(9), Some(&[9; SECRET_LEN]));
        let id = ring.install_generated();
        assert!(ring.contains(id) && id != 9);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let ring = Keyring::from_secret(5, [0xab; SECRET_LEN]);
        let shown = format!("{ring:?}");
        assert!(
            !shown.contains("ab, ") && !shown.contains("abab"),
            "{shown}"
        );
        assert!(shown.contains('5'), "{shown}");
    }

    #[test]
    fn hex_round_trips() {
        let bytes: [u8; SECRET_LEN] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(decode_hex_secret(&encode_hex(&bytes)).unwrap(), bytes);
        assert_eq!(
            decode_hex_secret(&encode_hex(&bytes).to_uppercase()).unwrap(),
            bytes
        );
    }
}
