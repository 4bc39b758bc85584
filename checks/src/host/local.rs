//! What `RealHost` and `FixtureHost` do the same way once a path is
//! mapped: file metadata, raw bytes, and the network (name resolution,
//! TCP connects), plus glob expansion over any [`Host`].

use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{FileKind, FileStat, Host};

pub(super) fn stat(path: &Path, follow: bool) -> io::Result<FileStat> {
    let m = if follow {
        std::fs::metadata(path)?
    } else {
        std::fs::symlink_metadata(path)?
    };
    let t = m.file_type();
    Ok(FileStat {
        kind: if t.is_symlink() {
            FileKind::Symlink
        } else if t.is_dir() {
            FileKind::Dir
        } else if t.is_file() {
            FileKind::File
        } else {
            FileKind::Other
        },
        mode: m.permissions().mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        size: m.len(),
        modified_unix_s: m.mtime(),
    })
}

pub(super) fn read_bytes(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    File::open(path)?
        .take(limit as u64 + 1)
        .read_to_end(&mut buf)?;
    if buf.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(buf)
}

pub(super) fn resolve(name: &str) -> io::Result<Vec<IpAddr>> {
    let mut addrs: Vec<IpAddr> = (name, 0).to_socket_addrs()?.map(|a| a.ip()).collect();
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

pub(super) fn tcp_connect(addr: &str, timeout: Duration) -> io::Result<Duration> {
    let targets: Vec<_> = addr.to_socket_addrs()?.collect();
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{addr} resolves to nothing"),
    );
    let deadline = Instant::now() + timeout;
    for target in targets {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
        }
        let start = Instant::now();
        match TcpStream::connect_timeout(&target, left) {
            Ok(_) => return Ok(start.elapsed()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Most paths a glob may expand to.
pub const GLOB_LIMIT: usize = 10_000;

/// The paths matching `pattern` (absolute, `*`, `?`, `[...]` within one
/// path component), sorted; a pattern without wildcards gives itself when
/// it exists. Reads the machine only through `host.list_dir` and
/// `host.stat`.
pub fn expand_glob(host: &dyn Host, pattern: &str) -> Result<Vec<String>, String> {
    let wild = |c: &str| c.contains(['*', '?', '[']);
    if !pattern.starts_with('/') {
        return Err(format!("`{pattern}` is not an absolute path"));
    }
    let mut current: Vec<String> = vec![String::new()];
    for component in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        if wild(component) {
            let pat =
                glob::Pattern::new(component).map_err(|e| format!("bad glob `{pattern}`: {e}"))?;
            for base in &current {
                let dir = if base.is_empty() { "/" } else { base.as_str() };
                let Ok(mut names) = host.list_dir(dir) else {
                    continue;
                };
                names.sort();
                for n in names {
                    if pat.matches(&n) && !n.starts_with('.') {
                        next.push(format!("{base}/{n}"));
                    }
                }
            }
        } else {
            next = current.iter().map(|b| format!("{b}/{component}")).collect();
        }
        if next.len() > GLOB_LIMIT {
            return Err(format!("`{pattern}` matches more than {GLOB_LIMIT} paths"));
        }
        current = next;
    }
    let mut found: Vec<String> = current
        .into_iter()
        .filter(|p| !p.is_empty() && host.stat(p, false).is_ok())
        .collect();
    found.sort();
    Ok(found)
}
