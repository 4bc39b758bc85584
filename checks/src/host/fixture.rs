//! A fixture machine rooted at a directory, for tests.
//!
//! - `read_file("/proc/sys/x")` reads `<root>/proc/sys/x`; `list_dir` likewise.
//! - `fs_usage` reads `<root>/fs_usage`, one line per mount:
//!   `MOUNT BYTES_TOTAL BYTES_FREE BYTES_AVAIL INODES_TOTAL INODES_FREE`
//!   (a blank in MOUNT written `\040`, as in `/proc/self/mounts`).
//! - `kernel_log` reads `<root>/dev/kmsg` (records as `/dev/kmsg` gives them).
//! - Commands really run: an absolute program `/usr/bin/kubelet` runs
//!   `<root>/usr/bin/kubelet` when that exists, a bare name `chronyc` runs
//!   `<root>/bin/chronyc` when that exists, otherwise the program itself.
//! - HTTP requests really go out (tests serve them on loopback).
//! - `stat` and `read_bytes` map paths like `read_file` (owners are the
//!   fixture files' real owners).
//! - `resolve` looks names up in `<root>/etc/hosts` only (`IP NAME...`
//!   lines), so a test decides what resolves; TCP connects really go out.

use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::real::read_limited;
use super::{BoxFuture, CommandError, CommandOutput, CommandRequest, FileStat, FsUsage, Host};
use super::{HttpError, HttpRequest, HttpResponse};

/// A machine made of files under `root`.
#[derive(Debug, Clone)]
pub struct FixtureHost {
    root: PathBuf,
}

impl FixtureHost {
    pub fn new(root: impl Into<PathBuf>) -> FixtureHost {
        FixtureHost { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn map(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

impl Host for FixtureHost {
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
        let text = std::fs::read_to_string(self.root.join("fs_usage"))?;
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() == 6 && f[0].replace("\\040", " ") == mount {
                let n = |i: usize| {
                    f[i].parse::<u64>()
                        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, line.to_string()))
                };
                return Ok(FsUsage {
                    bytes_total: n(1)?,
                    bytes_free: n(2)?,
                    bytes_avail: n(3)?,
                    inodes_total: n(4)?,
                    inodes_free: n(5)?,
                });
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no fixture usage for {mount}"),
        ))
    }

    fn kernel_log(&self) -> io::Result<String> {
        std::fs::read_to_string(self.map("/dev/kmsg"))
    }

    fn run_command(&self, req: CommandRequest) -> BoxFuture<Result<CommandOutput, CommandError>> {
        let candidate = if req.program.starts_with('/') {
            self.map(&req.program)
        } else {
            self.root.join("bin").join(&req.program)
        };
        let path = if candidate.is_file() {
            candidate.to_string_lossy().into_owned()
        } else {
            req.program.clone()
        };
        Box::pin(super::process::run(path, None, req))
    }

    fn http_get(&self, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
        super::http::get(req)
    }

    fn stat(&self, path: &str, follow: bool) -> io::Result<FileStat> {
        super::local::stat(&self.map(path), follow)
    }

    fn read_bytes(&self, path: &str, limit: usize) -> io::Result<Vec<u8>> {
        super::local::read_bytes(&self.map(path), limit)
    }

    fn resolve(&self, name: &str) -> io::Result<Vec<IpAddr>> {
        let hosts = std::fs::read_to_string(self.map("/etc/hosts")).unwrap_or_default();
        let mut found: Vec<IpAddr> = hosts
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                let ip: IpAddr = words.next()?.parse().ok()?;
                words.any(|w| w.eq_ignore_ascii_case(name)).then_some(ip)
            })
            .collect();
        found.sort();
        found.dedup();
        if found.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{name}: name does not resolve (fixture /etc/hosts)"),
            ));
        }
        Ok(found)
    }

    fn tcp_connect(&self, addr: &str, timeout: Duration) -> io::Result<Duration> {
        super::local::tcp_connect(addr, timeout)
    }
}
