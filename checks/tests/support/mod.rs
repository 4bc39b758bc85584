//! Shared test helpers: parse `[[check]]` TOML into specs, run them on a
//! host, build fixture directories with files and executable scripts, and
//! a tiny HTTP server on an ephemeral loopback port (stopped on drop).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use patrol_checks::{CheckOutcome, CheckSpec, FixtureHost, Host, Runner};

/// Parse every `[[check]]` of `text`; panics with the problems if one
/// does not parse (a test bug).
pub fn specs(text: &str) -> Vec<CheckSpec> {
    let table: toml::Table = toml::from_str(text).expect("test TOML parses");
    table["check"]
        .as_array()
        .expect("[[check]] tables")
        .iter()
        .map(|c| {
            CheckSpec::from_table(c.as_table().unwrap(), Duration::from_secs(5), None)
                .unwrap_or_else(|p| panic!("check does not parse: {p:?}"))
        })
        .collect()
}

/// Run every check of `text` on `host`.
pub async fn run(host: impl Host, text: &str) -> Vec<CheckOutcome> {
    Runner::new(Arc::new(host), 8).run(&specs(text)).await
}

/// Run the single check of `text` on `host`.
pub async fn one(host: impl Host, text: &str) -> CheckOutcome {
    let mut all = run(host, text).await;
    assert_eq!(all.len(), 1, "one check expected");
    all.remove(0)
}

/// A fixture machine in a temporary directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Write `text` at the absolute-looking `path` under the root.
    pub fn file(&self, path: &str, text: &str) -> &Fixture {
        let p = self.root().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        self
    }

    /// Write an executable `/bin/sh` script at `path` under the root.
    pub fn script(&self, path: &str, body: &str) -> PathBuf {
        let p = self.root().join(path.trim_start_matches('/'));
        write_script(&p, body);
        p
    }

    pub fn host(&self) -> FixtureHost {
        FixtureHost::new(self.root())
    }
}

/// Write an executable shell script (the file is closed before returning).
pub fn write_script(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A canned answer: (path, status, body).
pub type Route = (&'static str, u16, String);

/// A one-thread HTTP/1.1 server on `127.0.0.1:0` answering fixed routes
/// (404 otherwise), one request per connection. Stopped on drop.
pub struct HttpServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(routes: Vec<Route>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    let _ = answer(c, &routes);
                }
            }
        });
        HttpServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn answer(conn: TcpStream, routes: &[Route]) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = routes
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, s, b)| (*s, b.clone()))
        .unwrap_or((404, "not found".into()));
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
