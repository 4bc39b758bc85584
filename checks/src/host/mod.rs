//! The `Host` gateway: everything a check reads from the machine goes
//! through this trait, so that tests can point the checks at a fixture
//! directory instead of the live system.
//!
//! Blocking methods (file reads, HTTP) are called on the blocking pool by
//! the check kinds (`kinds::Context::blocking`); running a command is
//! async, and hardened the same way on every host (`process.rs`).

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

mod account;
mod fixture;
mod http;
mod local;
mod process;
mod real;
mod rooted;
mod stray;

pub use account::{resolve_account, Account, AccountError};
pub use fixture::FixtureHost;
pub use local::{expand_glob, GLOB_LIMIT};
pub(crate) use process::switch_refused;
pub use process::{CHROOT, COMMAND_PATH};
pub use real::RealHost;
pub use rooted::RootedHost;
pub use stray::MARKER_VAR;

/// The host a node's checks read: the live machine, or, with `[node]
/// host_root` set, the host's filesystem mounted there ([`RootedHost`]).
pub fn host_for(node: &patrol_config::NodeSection) -> std::sync::Arc<dyn Host> {
    match &node.host_root {
        Some(root) => std::sync::Arc::new(RootedHost::new(root)),
        None => std::sync::Arc::new(RealHost),
    }
}

/// A boxed, sendable future (what [`Host::run_command`] returns).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A program to run: never through a shell unless the program is one.
/// Every host runs it the same way: cleared environment, fixed `PATH`, a
/// process group of its own that is killed when the program ends (see
/// `process.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    pub program: String,
    pub args: Vec<String>,
    /// The child (and its process group) is killed when this runs out.
    pub timeout: Duration,
    /// Most bytes accepted on stdout and on stderr; more is a flood and the
    /// child is killed.
    pub max_output: usize,
    /// The user it runs as; None: the agent's own user.
    pub run_as: Option<Account>,
}

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit code; None when killed by a signal.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Why a command produced no [`CommandOutput`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("`{0}` not found")]
    NotFound(String),
    #[error("cannot start `{program}`: {reason}")]
    Spawn { program: String, reason: String },
    #[error("`{program}` did not finish within {secs:.1}s and was killed")]
    TimedOut { program: String, secs: f64 },
    #[error("`{program}` wrote more than {limit} bytes of output and was killed")]
    OutputFlood { program: String, limit: usize },
    #[error("reading the output of `{program}` failed: {reason}")]
    Io { program: String, reason: String },
}

/// An HTTP(S) GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub url: String,
    pub timeout: Duration,
    /// PEM file of the CA certificates that verify the server (default:
    /// the built-in web roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and key, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Most body bytes read.
    pub max_body: usize,
}

/// An HTTP answer (any status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
    /// From sending the request until the whole body was read.
    pub elapsed: Duration,
}

/// Why an HTTP request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The request could not be prepared on this side (unreadable CA or
    /// client certificate, bad URL): nothing was asked of the server.
    #[error("{0}")]
    Setup(String),
    /// The request went out and got no answer (refused, timed out, TLS
    /// handshake refused, connection dropped).
    #[error("{0}")]
    Transport(String),
}

/// Space and inode figures of one mounted filesystem (as `statvfs` gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    pub bytes_total: u64,
    pub bytes_free: u64,
    /// Free to unprivileged users (what `df` counts as available).
    pub bytes_avail: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

impl FsUsage {
    /// Used space in percent, the way `df` computes it.
    pub fn used_percent(&self) -> f64 {
        let used = self.bytes_total.saturating_sub(self.bytes_free);
        let denom = used + self.bytes_avail;
        if denom == 0 {
            0.0
        } else {
            used as f64 * 100.0 / denom as f64
        }
    }

    /// Used inodes in percent (0 for filesystems without inode limits).
    pub fn inodes_percent(&self) -> f64 {
        if self.inodes_total == 0 {
            0.0
        } else {
            (self.inodes_total - self.inodes_free.min(self.inodes_total)) as f64 * 100.0
                / self.inodes_total as f64
        }
    }
}

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// File metadata, as `stat` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub kind: FileKind,
    /// Permission bits with setuid, setgid and sticky (`0o4755`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub modified_unix_s: i64,
}

/// Everything a check may read from a machine.
pub trait Host: Send + Sync + 'static {
    /// Read a text file by its absolute path (`/proc/sys/vm/swappiness`),
    /// at most `limit` bytes. Blocking.
    fn read_file(&self, path: &str, limit: usize) -> io::Result<String>;
    /// Names in a directory (`/proc`). Blocking.
    fn list_dir(&self, path: &str) -> io::Result<Vec<String>>;
    /// Space and inode usage of a mount point. Blocking.
    fn fs_usage(&self, mount: &str) -> io::Result<FsUsage>;
    /// The kernel ring buffer in `/dev/kmsg` record form
    /// (`prio,seq,usec,flags;text` per line). Blocking.
    fn kernel_log(&self) -> io::Result<String>;
    /// Run a program with a timeout and an output limit.
    fn run_command(&self, req: CommandRequest) -> BoxFuture<Result<CommandOutput, CommandError>>;
    /// An HTTP(S) GET. Blocking.
    fn http_get(&self, req: &HttpRequest) -> Result<HttpResponse, HttpError>;
    /// Metadata of a path; `follow` follows a final symlink. Blocking.
    fn stat(&self, path: &str, follow: bool) -> io::Result<FileStat>;
    /// A file's bytes; an error when it has more than `limit`. Blocking.
    fn read_bytes(&self, path: &str, limit: usize) -> io::Result<Vec<u8>>;
    /// The addresses a host name resolves to, sorted. Blocking.
    fn resolve(&self, name: &str) -> io::Result<Vec<IpAddr>>;
    /// Open (and close) a TCP connection to `host:port`; how long the
    /// connect took. Blocking.
    fn tcp_connect(&self, addr: &str, timeout: Duration) -> io::Result<Duration>;
}

/// The file of a sysctl key, as sysctl(8) reads keys: when the first
/// separator in the key is a `.`, dots separate and a `/` stands for a
/// literal dot (`net.ipv4.conf.eth0/100.rp_filter`); when it is a `/`,
/// slashes separate and dots are literal (`net/ipv4/conf/eth0.100/rp_filter`).
pub fn sysctl_path(key: &str) -> String {
    let key = key.trim();
    let path: String = match key.find(['.', '/']).map(|i| &key[i..i + 1]) {
        Some("/") => key.to_string(),
        _ => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                other => other,
            })
            .collect(),
    };
    format!("/proc/sys/{path}")
}

/// Number of online CPUs from `/sys/devices/system/cpu/online` (`0-3,6`).
pub fn online_cpus(host: &dyn Host) -> io::Result<u64> {
    let text = host.read_file("/sys/devices/system/cpu/online", 4096)?;
    let mut n = 0u64;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("bad cpu list `{text}`"));
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u64 = a.parse().map_err(|_| bad())?;
                let b: u64 = b.parse().map_err(|_| bad())?;
                n += b.saturating_sub(a) + 1;
            }
            None => {
                part.parse::<u64>().map_err(|_| bad())?;
                n += 1;
            }
        }
    }
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no cpu online"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::sysctl_path;

    #[test]
    fn sysctl_keys_to_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward"),
            "/proc/sys/net/ipv4/ip_forward"
        );
        assert_eq!(sysctl_path(" vm.swappiness "), "/proc/sys/vm/swappiness");
        assert_eq!(
            sysctl_path("net.ipv4.conf.eth0/100.rp_filter"),
            "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.100/rp_filter"),
            "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"
        );
    }
}
