//! A real SMTP server on loopback for the mail tests: `smtp_sink.py`
//! (Debian `python3-aiosmtpd`, run by `/usr/bin/python3`) on a free
//! ephemeral port, killed when the [`SmtpSink`] is dropped. Shared by
//! `report/tests/mail.rs` and `patrol-cli/tests/report.rs`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";
const INSTALL: &str = "the mail tests need a real SMTP server: apt-get install python3-aiosmtpd \
                       (for Debian's /usr/bin/python3)";

/// One message as the server received it.
#[derive(Debug)]
pub struct Received {
    /// The raw message text.
    pub raw: String,
    /// MAIL FROM, then every RCPT TO.
    pub envelope: Vec<String>,
    /// Python's MIME parser's view: `headers` and `parts`.
    pub parsed: serde_json::Value,
}

impl Received {
    /// Decoded header `name` (Subject, From, To, Date, Message-ID).
    pub fn header(&self, name: &str) -> String {
        self.parsed["headers"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} header in {}", self.parsed))
            .to_string()
    }

    /// Content types of every part, in order (containers included).
    pub fn part_types(&self) -> Vec<String> {
        self.parts()
            .iter()
            .map(|p| p["content_type"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// The decoded body of the first part of `content_type`, with line
    /// endings normalized to `\n`.
    pub fn body(&self, content_type: &str) -> String {
        let part = self
            .parts()
            .iter()
            .find(|p| p["content_type"] == content_type)
            .unwrap_or_else(|| panic!("no {content_type} part in {:?}", self.part_types()));
        part["body"].as_str().unwrap_or("").replace("\r\n", "\n")
    }

    /// The part of `content_type` (panics when missing).
    pub fn part(&self, content_type: &str) -> &serde_json::Value {
        self.parts()
            .iter()
            .find(|p| p["content_type"] == content_type)
            .unwrap_or_else(|| panic!("no {content_type} part in {:?}", self.part_types()))
    }

    fn parts(&self) -> &Vec<serde_json::Value> {
        self.parsed["parts"].as_array().expect("parts array")
    }
}

/// The running server; killed and reaped on drop.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../report/tests/smtp_sink.py")
}

fn check_installed() {
    let ok = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "{INSTALL}");
}

impl SmtpSink {
    /// Start the server on a free port of 127.0.0.1 and wait until it
    /// accepts connections. Panics (saying how to install it) when
    /// aiosmtpd is missing.
    pub fn start() -> SmtpSink {
        SmtpSink::start_with(None, None)
    }

    /// Like [`SmtpSink::start`], refusing messages over `bytes` (552), as
    /// a relay with `message_size_limit` does.
    pub fn start_with_limit(bytes: u64) -> SmtpSink {
        SmtpSink::start_with(None, Some(bytes))
    }

    /// Like [`SmtpSink::start`], requiring SMTP AUTH as `user:password`.
    pub fn start_with_auth(user: &str, password: &str) -> SmtpSink {
        SmtpSink::start_with(Some(format!("{user}:{password}")), None)
    }

    fn start_with(auth: Option<String>, limit: Option<u64>) -> SmtpSink {
        check_installed();
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = closed_port();
            let dir = tempfile::tempdir().expect("temp dir");
            let mut child = Command::new(PYTHON)
                .arg(script())
                .arg("127.0.0.1")
                .arg(port.to_string())
                .arg(dir.path())
                .args(auth.as_deref())
                .envs(limit.map(|l| ("SMTP_SINK_DATA_SIZE_LIMIT", l.to_string())))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {PYTHON}: {e}; {INSTALL}"));
            let stdout = child.stdout.take().expect("piped stdout");
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
            let sink = SmtpSink { child, port, dir };
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.trim() == "ready" => return sink,
                _ => {
                    let mut sink = sink;
                    let _ = sink.child.kill();
                    let _ = sink.child.wait();
                    let mut err = String::new();
                    if let Some(mut e) = sink.child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    last_err = err;
                }
            }
        }
        panic!("the SMTP sink did not start: {last_err}");
    }

    /// Wait (up to 20 s) until `n` messages arrived; returns them in order.
    pub fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut emls: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
                .expect("read the mailbox")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect();
            if emls.len() >= n {
                emls.sort();
                return emls.iter().map(|p| read_received(p)).collect();
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} messages arrived",
                emls.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Number of messages received so far.
    pub fn count(&self) -> usize {
        std::fs::read_dir(self.dir.path())
            .expect("read the mailbox")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .count()
    }
}

fn read_received(eml: &Path) -> Received {
    let raw = std::fs::read_to_string(eml).expect("read .eml");
    let envelope = std::fs::read_to_string(eml.with_extension("envelope"))
        .expect("read .envelope")
        .lines()
        .map(str::to_string)
        .collect();
    let json = std::fs::read_to_string(eml.with_extension("json")).expect("read .json");
    Received {
        raw,
        envelope,
        parsed: serde_json::from_str(&json).expect("parse the sink's JSON"),
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
