//! The live machine: the real `/proc`, `/sys`, `statvfs`, `/dev/kmsg`,
//! child processes and network.

use std::fs::File;
use std::io::{self, Read};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use super::{BoxFuture, CommandError, CommandOutput, CommandRequest, FileStat, FsUsage, Host};
use super::{HttpError, HttpRequest, HttpResponse};

/// The machine Patrol runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealHost;

/// Most bytes read from `/dev/kmsg` (the ring buffer is usually 256 KiB
/// to a few MiB).
const KMSG_LIMIT: usize = 16 << 20;

impl Host for RealHost {
    fn read_file(&self, path: &str, limit: usize) -> io::Result<String> {
        read_limited(File::open(path)?, limit)
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn fs_usage(&self, mount: &str) -> io::Result<FsUsage> {
        statvfs_usage(std::path::Path::new(mount))
    }

    fn kernel_log(&self) -> io::Result<String> {
        read_kmsg(std::path::Path::new("/dev/kmsg"))
    }

    fn run_command(&self, req: CommandRequest) -> BoxFuture<Result<CommandOutput, CommandError>> {
        let path = req.program.clone();
        Box::pin(super::process::run(path, None, req))
    }

    fn http_get(&self, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
        super::http::get(req)
    }

    fn stat(&self, path: &str, follow: bool) -> io::Result<FileStat> {
        super::local::stat(Path::new(path), follow)
    }

    fn read_bytes(&self, path: &str, limit: usize) -> io::Result<Vec<u8>> {
        super::local::read_bytes(Path::new(path), limit)
    }

    fn resolve(&self, name: &str) -> io::Result<Vec<IpAddr>> {
        super::local::resolve(name)
    }

    fn tcp_connect(&self, addr: &str, timeout: Duration) -> io::Result<Duration> {
        super::local::tcp_connect(addr, timeout)
    }
}

/// Space and inodes of the filesystem holding `path`.
pub(super) fn statvfs_usage(path: &std::path::Path) -> io::Result<FsUsage> {
    let s = rustix::fs::statvfs(path)?;
    let frag = if s.f_frsize > 0 {
        s.f_frsize
    } else {
        s.f_bsize
    };
    Ok(FsUsage {
        bytes_total: s.f_blocks.saturating_mul(frag),
        bytes_free: s.f_bfree.saturating_mul(frag),
        bytes_avail: s.f_bavail.saturating_mul(frag),
        inodes_total: s.f_files,
        inodes_free: s.f_ffree,
    })
}

/// Every record `/dev/kmsg` (at `path`) holds now, without waiting for
/// more.
pub(super) fn read_kmsg(path: &std::path::Path) -> io::Result<String> {
    {
        // Non-blocking: a read at the end gives EAGAIN instead of waiting.
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)?;
        let mut out = String::new();
        // Each read returns one record.
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    out.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if !out.ends_with('\n') {
                        out.push('\n');
                    }
                    if out.len() > KMSG_LIMIT {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // EPIPE: records were overwritten while reading; go on.
                Err(e) if e.raw_os_error() == Some(32) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// Read at most `limit` bytes of a file as text (lossy UTF-8).
pub(super) fn read_limited(f: File, limit: usize) -> io::Result<String> {
    let mut buf = Vec::new();
    f.take(limit as u64).read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
