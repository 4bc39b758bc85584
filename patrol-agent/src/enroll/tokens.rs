//! Bootstrap tokens: the file `patrol enroll token` adds to and the
//! enrollment service counts uses in. Only a SHA-256 of each secret is
//! stored, so the file does not let its reader enroll.
//!
//! ```toml
//! # Patrol enrollment tokens (hashes only)
//! [[token]]
//! id = "3f9a0c1d2e4b5a69"          # 8 random bytes, hex: names the token in logs
//! sha256 = "…"                      # of the secret, hex
//! names = ["node-*"]                # names it may enroll
//! uses = 20                         # enrollments it allows
//! used = 3                          # enrollments it made
//! expires_unix = 1796100000
//! ```
//!
//! A token's text is `ptok1.<id>.<secret>` (the secret 32 random bytes,
//! hex). A use is written (whole file to a temporary, then renamed) before
//! the certificate is issued, under an exclusive `flock` that `patrol
//! enroll token` takes too, so a crash never gives a use back and two
//! writers never lose each other's changes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use patrol_core::trust::NamePatterns;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Most tokens one file holds (used-up and long-expired ones are dropped
/// when a token is added).
pub const MAX_TOKENS: usize = 10_000;
/// Most uses one token allows.
pub const MAX_USES: u32 = 100_000;
/// Longest life of a token, seconds (30 days: a bootstrap secret, not a
/// standing credential).
pub const MAX_TOKEN_LIFE_S: u64 = 30 * 86_400;
/// A token file larger than this is refused unread.
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
const PREFIX: &str = "ptok1";

/// What went wrong with the token file or a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {problem}", path.display())]
    Malformed { path: PathBuf, problem: String },
    #[error("{0}")]
    Invalid(String),
}

/// One token's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    pub id: String,
    pub sha256: String,
    pub names: Vec<String>,
    pub uses: u32,
    pub used: u32,
    pub expires_unix: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenRecord>,
}

/// Why a token is refused: a stable word for the audit log and counters,
/// and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub detail: String,
}

fn refusal(reason: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        detail: detail.into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// The token file at one path.
#[derive(Debug, Clone)]
pub struct TokenStore {
    path: PathBuf,
}

impl TokenStore {
    pub fn new(path: &Path) -> TokenStore {
        TokenStore {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Make a token for `names`, `uses` times, until `expires_unix`;
    /// returns its text (shown once, never stored).
    pub fn create(
        &self,
        names: &NamePatterns,
        uses: u32,
        expires_unix: u64,
        now_s: u64,
    ) -> Result<String, TokenError> {
        if uses == 0 || uses > MAX_USES {
            return Err(TokenError::Invalid(format!(
                "--uses must be 1 to {MAX_USES} (got {uses})"
            )));
        }
        if expires_unix <= now_s || expires_unix - now_s > MAX_TOKEN_LIFE_S {
            return Err(TokenError::Invalid(format!(
                "a token lives at most {} days",
                MAX_TOKEN_LIFE_S / 86_400
            )));
        }
        let id = hex(&rand::random::<[u8; 8]>());
        let secret = hex(&rand::random::<[u8; 32]>());
        self.update(|file| {
            // Forget tokens used up or expired over a day ago.
            file.token
                .retain(|t| t.used < t.uses && t.expires_unix + 86_400 > now_s);
            if file.token.len() >= MAX_TOKENS {
                return Err(TokenError::Invalid(format!(
                    "the token file already holds {MAX_TOKENS} live tokens"
                )));
            }
            file.token.push(TokenRecord {
                id: id.clone(),
                sha256: hash(&secret),
                names: names.patterns().to_vec(),
                uses,
                used: 0,
                expires_unix,
            });
            Ok(())
        })?;
        Ok(format!("{PREFIX}.{id}.{secret}"))
    }

    /// Spend one use of `token` for `name` at `now_s`: the id of the
    /// token on success (written to the file before this returns), the
    /// refusal otherwise (nothing written).
    pub fn spend(&self, token: &str, name: &str, now_s: u64) -> Result<String, Refusal> {
        let mut parts = token.trim().splitn(3, '.');
        let (Some(PREFIX), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(refusal(
                "token_malformed",
                "the token is not a Patrol enrollment token",
            ));
        };
        let id = id.to_string();
        let digest = hash(secret);
        let mut outcome = Err(refusal("token_unknown", "unknown token"));
        let written = self.update(|file| {
            let Some(t) = file.token.iter_mut().find(|t| t.id == id) else {
                return Ok(());
            };
            // Both sides are hashes of fixed length; the comparison's
            // timing tells nothing about the secret.
            if t.sha256 != digest {
                return Ok(());
            }
            outcome = if now_s > t.expires_unix {
                Err(refusal("token_expired", format!("token {id} has expired")))
            } else if t.used >= t.uses {
                Err(refusal(
                    "token_used_up",
                    format!("token {id} has been used {} times, all it allows", t.used),
                ))
            } else if !NamePatterns::new(t.names.clone()).is_ok_and(|p| p.matches(name)) {
                Err(refusal(
                    "token_name",
                    format!(
                        "token {id} is for names {}, not `{name}`",
                        t.names.join(", ")
                    ),
                ))
            } else {
                t.used += 1;
                Ok(id.clone())
            };
            Ok(())
        });
        match written {
            Ok(()) => outcome,
            Err(e) => Err(refusal("token_store", format!("the token file: {e}"))),
        }
    }

    /// Every record (for `patrol enroll token --list` and tests).
    pub fn records(&self) -> Result<Vec<TokenRecord>, TokenError> {
        let _lock = self.lock()?;
        Ok(self.read()?.token)
    }

    /// Read, change and write the file under its lock; a change that
    /// returns an error writes nothing.
    fn update(
        &self,
        change: impl FnOnce(&mut TokenFile) -> Result<(), TokenError>,
    ) -> Result<(), TokenError> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        let before = toml::to_string(&file).unwrap_or_default();
        change(&mut file)?;
        let text = toml::to_string(&file).map_err(|e| self.malformed(e.to_string()))?;
        if text != before {
            self.write(&text)?;
        }
        Ok(())
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> TokenError {
        let path = path.to_path_buf();
        move |source| TokenError::Io {
            path: path.clone(),
            source,
        }
    }

    fn malformed(&self, problem: String) -> TokenError {
        TokenError::Malformed {
            path: self.path.clone(),
            problem,
        }
    }

    /// The lock file next to the tokens (the tokens file itself is
    /// replaced by rename, so it cannot hold the lock).
    fn lock(&self) -> Result<File, TokenError> {
        let path = self.path.with_extension("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(self.io(&path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| self.io(&path)(e.into()))?;
        Ok(file)
    }

    fn read(&self) -> Result<TokenFile, TokenError> {
        let text = match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TokenFile::default()),
            Err(e) => return Err(self.io(&self.path)(e)),
            Ok(m) if m.len() > MAX_FILE_BYTES => {
                return Err(self.malformed(format!("{} bytes, over {MAX_FILE_BYTES}", m.len())))
            }
            Ok(_) => std::fs::read_to_string(&self.path).map_err(self.io(&self.path))?,
        };
        let file: TokenFile = toml::from_str(&text).map_err(|e| self.malformed(e.to_string()))?;
        if file.token.len() > MAX_TOKENS {
            return Err(self.malformed(format!("over {MAX_TOKENS} tokens")));
        }
        Ok(file)
    }

    fn write(&self, text: &str) -> Result<(), TokenError> {
        let tmp = self.path.with_extension("tmp");
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(self.io(&tmp))?;
        f.write_all(b"# Patrol enrollment tokens (hashes only): `patrol enroll token` adds one\n")
            .and_then(|_| f.write_all(text.as_bytes()))
            .and_then(|_| f.write_all(if text.ends_with('\n') { b"" } else { b"\n" }))
            .and_then(|_| f.sync_all())
            .map_err(self.io(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(self.io(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(&dir.path().join("tokens.toml"));
        (dir, store)
    }

    #[test]
    fn a_token_is_spent_once_per_use_and_then_refused() {
        let (_d, s) = store();
        let tok = s
            .create(&NamePatterns::parse("node-*").unwrap(), 2, 1000, 10)
            .unwrap();
        assert!(s.spend(&tok, "node-1", 20).is_ok());
        assert!(s.spend(&tok, "node-2", 20).is_ok());
        assert_eq!(
            s.spend(&tok, "node-3", 20).unwrap_err().reason,
            "token_used_up"
        );
        assert_eq!(s.records().unwrap()[0].used, 2);
        // The file holds the hash, never the secret.
        let text = std::fs::read_to_string(s.path()).unwrap();
        let secret = tok.rsplit('.').next().unwrap();
        assert!(!text.contains(secret) && text.contains(&hash(secret)));
    }

    #[test]
    fn expired_wrong_name_wrong_secret_and_garbage_are_refused_without_spending() {
        let (_d, s) = store();
        let tok = s
            .create(&NamePatterns::parse("node-*").unwrap(), 5, 1000, 10)
            .unwrap();
        assert_eq!(s.spend(&tok, "db-1", 20).unwrap_err().reason, "token_name");
        assert_eq!(
            s.spend(&tok, "node-1", 1001).unwrap_err().reason,
            "token_expired"
        );
        // The last character changed (to one it is not, so the forgery
        // never equals the token by chance).
        let last = if tok.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{last}", &tok[..tok.len() - 1]);
        assert_eq!(
            s.spend(&forged, "node-1", 20).unwrap_err().reason,
            "token_unknown"
        );
        assert_eq!(
            s.spend("hello", "node-1", 20).unwrap_err().reason,
            "token_malformed"
        );
        assert_eq!(s.records().unwrap()[0].used, 0);
    }

    #[test]
    fn token_limits_are_enforced_when_made() {
        let (_d, s) = store();
        let any = NamePatterns::any();
        assert!(s.create(&any, 0, 1000, 10).is_err());
        assert!(s.create(&any, MAX_USES + 1, 1000, 10).is_err());
        assert!(s.create(&any, 1, 10 + MAX_TOKEN_LIFE_S + 1, 10).is_err());
        assert!(s.create(&any, 1, 5, 10).is_err());
    }
}
