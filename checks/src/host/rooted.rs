//! The live machine seen from a container that mounts the host's root
//! filesystem at `[node] host_root` (for example `/host` in the
//! Kubernetes DaemonSet): every read goes under that directory, and
//! commands run chrooted into it.
//!
//! - Files, directory listings, `statvfs` of mounts and `/dev/kmsg` are
//!   read at `<root>/<path>`. `/proc/self/...` becomes `/proc/1/...`:
//!   "self" under the host's `/proc` would be this agent (in the
//!   container's mount namespace), PID 1 is the host's init (the pod runs
//!   with `hostPID`), so the mount table is the host's.
//! - `/proc/sys/net/*` is the network namespace of the reader, whichever
//!   `/proc` it is read through; with `hostNetwork` that is the host's.
//! - Commands run as `chroot <root> PROGRAM ARGS...` (coreutils `chroot`):
//!   the host's own binaries with the host's libraries and config, and a
//!   bare name is looked up in the fixed `PATH` inside the host's tree.
//!   With `[checks] command_user` the same `chroot` call switches to that
//!   user of the host's `/etc/passwd` after changing root
//!   (`--userspec`, `--groups`), which needs `CAP_SETUID` and
//!   `CAP_SETGID` as well. Why chroot
//!   and not `nsenter --target 1 --mount`: chroot needs only
//!   `CAP_SYS_CHROOT`, which container runtimes grant by default, while
//!   entering PID 1's mount namespace needs `CAP_SYS_ADMIN` and
//!   `CAP_SYS_PTRACE` (close to a privileged pod); and chroot can be
//!   tested against a fake tree. What chroot does not give: the command
//!   stays in the container's mount namespace, so it sees the host's
//!   mounts only as far as they are mounted under `<root>` (the DaemonSet
//!   mounts the host's `/` recursively, so `/proc`, `/sys`, `/run` and
//!   `/dev` come along); `systemctl` reaches systemd through
//!   `<root>/run/systemd`.
//! - HTTP requests go out from the agent itself (with `hostNetwork`,
//!   `127.0.0.1` is the host's loopback).

use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::real::{read_limited, statvfs_usage};
use super::{BoxFuture, CommandError, CommandOutput, CommandRequest, FileStat, FsUsage, Host};
use super::{HttpError, HttpRequest, HttpResponse};

/// The host's filesystem mounted at `root`.
#[derive(Debug, Clone)]
pub struct RootedHost {
    root: PathBuf,
}

impl RootedHost {
    pub fn new(root: impl Into<PathBuf>) -> RootedHost {
        RootedHost { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the host's `path` is in this container.
    pub fn map(&self, path: &str) -> PathBuf {
        let rel = path.trim_start_matches('/');
        let rel = match rel.strip_prefix("proc/self/") {
            Some(rest) => format!("proc/1/{rest}"),
            None => rel.to_string(),
        };
        self.root.join(rel)
    }
}

impl Host for RootedHost {
    fn read_file(&self, path: &str, limit: usize) -> io::Result<String> {
        read_limited(File::open(self.map(path))?, limit)
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.map(path))? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn fs_usage(&self, mount: &str) -> io::Result<FsUsage> {
        statvfs_usage(&self.map(mount))
    }

    fn kernel_log(&self) -> io::Result<String> {
        super::real::read_kmsg(&self.map("/dev/kmsg"))
    }

    /// `chroot <root> PROGRAM ARGS...`, with the user switch, if any, in
    /// the same `chroot` call (after changing root: see `process.rs`).
    fn run_command(&self, req: CommandRequest) -> BoxFuture<Result<CommandOutput, CommandError>> {
        let path = req.program.clone();
        Box::pin(super::process::run(path, Some(self.root.clone()), req))
    }

    fn http_get(&self, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
        super::http::get(req)
    }

    /// A symbolic link that `follow` resolves is resolved by the kernel
    /// in this container's root: an absolute link target inside the
    /// host's tree points outside `<root>` (the `file` kind's
    /// `follow = false` default sidesteps it).
    fn stat(&self, path: &str, follow: bool) -> io::Result<FileStat> {
        super::local::stat(&self.map(path), follow)
    }

    fn read_bytes(&self, path: &str, limit: usize) -> io::Result<Vec<u8>> {
        super::local::read_bytes(&self.map(path), limit)
    }

    /// Names are resolved by the agent itself: with `hostNetwork` its
    /// resolver talks to the host's DNS servers, but reads the
    /// container's `/etc/resolv.conf`.
    fn resolve(&self, name: &str) -> io::Result<Vec<IpAddr>> {
        super::local::resolve(name)
    }

    fn tcp_connect(&self, addr: &str, timeout: Duration) -> io::Result<Duration> {
        super::local::tcp_connect(addr, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_go_under_the_root_and_self_is_the_hosts_init() {
        let h = RootedHost::new("/host");
        assert_eq!(
            h.map("/proc/sys/vm/swappiness"),
            Path::new("/host/proc/sys/vm/swappiness")
        );
        assert_eq!(h.map("/proc/self/mounts"), Path::new("/host/proc/1/mounts"));
        assert_eq!(h.map("/"), Path::new("/host/"));
        assert_eq!(h.map("/dev/kmsg"), Path::new("/host/dev/kmsg"));
    }
}
