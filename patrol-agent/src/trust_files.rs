//! Identity files on disk: private keys (mode 0600, refused when others
//! may read them), certificates, CA bundles and the deny list. The
//! formats are `patrol_core::trust::cert`'s; this module only reads and
//! writes them, naming the file in every error.
//!
//! `patrol ca` writes one folder per identity:
//!
//! | file | what |
//! |---|---|
//! | `ca.key`, `ca.crt` | the CA (`patrol ca init`; keep `ca.key` offline) |
//! | `node.key`, `node.crt`, `ca.crt` | a node (`patrol ca issue node`) |
//! | `operator.key`, `operator.crt`, `ca.crt` | an operator (`patrol ca issue operator`) |
//! | `issuer.key`, `issuer.crt`, `ca.crt`, `bundle.crt` | an issuing CA (`patrol ca issue issuer`) |
//!
//! A certificate file may carry its chain: the holder's certificate
//! first, then the issuers it was signed by (what enrollment writes as
//! `node.crt`). The issuers join the node's bundle when its root is there.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use patrol_core::trust::cert::{key_from_text, key_to_text};
use patrol_core::trust::{
    Certificate, Credentials, Revocations, SigningKey, TrustBundle, TrustError,
};
use zeroize::Zeroizing;

/// Identity files are small; anything larger is refused unread.
const MAX_FILE_LEN: u64 = 256 * 1024;

/// What went wrong with an identity file.
#[derive(Debug, thiserror::Error)]
pub enum TrustFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{} already exists (refusing to overwrite it)", path.display())]
    Exists { path: PathBuf },
    #[error("private key {} has mode {mode:04o}, which lets others read it: run `chmod 600 {}`", path.display(), path.display())]
    InsecureMode { path: PathBuf, mode: u32 },
    #[error("{}: {source}", path.display())]
    Trust { path: PathBuf, source: TrustError },
}

fn read_text(path: &Path, secret: bool) -> Result<Zeroizing<String>, TrustFileError> {
    let read_err = |source| TrustFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    let mode = meta.permissions().mode() & 0o7777;
    if secret && mode & 0o077 != 0 {
        return Err(TrustFileError::InsecureMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(TrustFileError::Trust {
            path: path.to_path_buf(),
            source: TrustError::Malformed(format!(
                "{} bytes; an identity file is at most {MAX_FILE_LEN}",
                meta.len()
            )),
        });
    }
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    Ok(text)
}

fn in_file<T>(path: &Path, r: Result<T, TrustError>) -> Result<T, TrustFileError> {
    r.map_err(|source| TrustFileError::Trust {
        path: path.to_path_buf(),
        source,
    })
}

/// A private key file (refused if its group or others may read it).
pub fn load_key(path: &Path) -> Result<SigningKey, TrustFileError> {
    let text = read_text(path, true)?;
    in_file(path, key_from_text(&text))
}

/// Every certificate in a file.
pub fn load_certs(path: &Path) -> Result<Vec<Certificate>, TrustFileError> {
    let text = read_text(path, false)?;
    in_file(path, Certificate::parse_all(&text))
}

/// Exactly one certificate in a file.
pub fn load_cert(path: &Path) -> Result<Certificate, TrustFileError> {
    let text = read_text(path, false)?;
    in_file(path, Certificate::parse_one(&text))
}

/// A key and its certificate, checked to belong together (the first
/// certificate of the file; see [`load_identity`] for its chain).
pub fn load_credentials(cert: &Path, key: &Path) -> Result<Credentials, TrustFileError> {
    load_identity(cert, key).map(|(creds, _)| creds)
}

/// A key and its certificate, checked to belong together, and the chain
/// that follows the certificate in its file (issuer certificates).
pub fn load_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Credentials, Vec<Certificate>), TrustFileError> {
    let mut certs = load_certs(cert)?;
    if certs.is_empty() {
        return in_file(
            cert,
            Err(TrustError::Malformed("no certificate in the file".into())),
        );
    }
    let own = certs.remove(0);
    let k = load_key(key)?;
    Ok((in_file(key, Credentials::new(k, own))?, certs))
}

/// The deny list (an absent path: none).
pub fn load_revocations(path: Option<&Path>) -> Result<Revocations, TrustFileError> {
    match path {
        None => Ok(Revocations::default()),
        Some(p) => {
            let text = read_text(p, false)?;
            in_file(p, Revocations::parse(&text))
        }
    }
}

/// The CA bundle plus the deny list.
pub fn load_bundle(
    ca_bundle: &Path,
    deny_list: Option<&Path>,
) -> Result<TrustBundle, TrustFileError> {
    let cas = load_certs(ca_bundle)?;
    let revoked = load_revocations(deny_list)?;
    in_file(ca_bundle, TrustBundle::new(cas, revoked))
}

/// The CA bundle and deny list, with the issuers of `chain` (from the
/// certificate file `chain_file`) added: each must be signed by a root
/// the bundle file holds, so a chain never brings a root of its own.
pub fn load_bundle_with_chain(
    ca_bundle: &Path,
    deny_list: Option<&Path>,
    chain_file: &Path,
    chain: &[Certificate],
) -> Result<TrustBundle, TrustFileError> {
    let mut bundle = load_bundle(ca_bundle, deny_list)?;
    for c in chain {
        let held = bundle.issuers().any(|i| i.cert == *c) || bundle.cas().any(|r| r.cert == *c);
        if !held {
            in_file(chain_file, bundle.add_issuer(c.clone()))?;
        }
    }
    Ok(bundle)
}

/// Write `text` to a new file `path` with `mode`; refuses to overwrite.
/// The file appears complete or not at all.
pub fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), TrustFileError> {
    let write_err = |source| TrustFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    if fs::symlink_metadata(path).is_ok() {
        return Err(TrustFileError::Exists {
            path: path.to_path_buf(),
        });
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("identity"),
        std::process::id()
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(write_err)?;
    let result = f
        .write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .and_then(|_| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    result.map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            TrustFileError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            write_err(e)
        }
    })
}

/// Replace `path` with `text` (mode `mode`): written whole to a
/// temporary next to it, then renamed over it, so a reader sees the old
/// file or the new one, never a part.
pub fn replace(path: &Path, text: &str, mode: u32) -> Result<(), TrustFileError> {
    let write_err = |source| TrustFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.new{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("identity"),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|_| f.sync_all()))
        .and_then(|_| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

/// Write a private key (mode 0600).
pub fn write_key(path: &Path, key: &SigningKey, what: &str) -> Result<(), TrustFileError> {
    write_new(path, &key_to_text(key, what), 0o600)
}

/// Write certificates (mode 0644), one after the other.
pub fn write_certs(path: &Path, certs: &[&Certificate]) -> Result<(), TrustFileError> {
    let text: String = certs.iter().map(|c| c.to_text()).collect();
    write_new(path, &text, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_others_may_read_is_refused_and_a_written_one_is_0600() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[5; 32]);
        let path = dir.path().join("node.key");
        write_key(&path, &key, "node").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_key(&path).unwrap().to_bytes(), key.to_bytes());
        assert!(matches!(
            write_key(&path, &key, "node"),
            Err(TrustFileError::Exists { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let e = load_key(&path).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn a_broken_certificate_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.crt");
        fs::write(&path, "not a certificate\n").unwrap();
        let e = load_cert(&path).unwrap_err().to_string();
        assert!(e.contains("node.crt") && e.contains("line 1"), "{e}");
    }
}
