//! Real processes: the `patrol-agent` and `patrol` binaries started as
//! separate processes on ephemeral loopback ports, each killed when its
//! handle drops.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A workspace binary (`patrol-agent`, `patrol`), built next to the test
/// executable. `cargo test --workspace` builds them; `.ci/run` does too.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins` (or run `cargo test --workspace`)",
        path.display()
    );
    path
}

/// A running `patrol-agent` process.
#[derive(Debug)]
pub struct AgentProcess {
    pub name: String,
    pub gossip: SocketAddr,
    pub control: SocketAddr,
    pub config: PathBuf,
    child: Option<Child>,
}

impl AgentProcess {
    /// Start `patrol-agent --config FILE` and wait for its ready line.
    pub fn start(config: &Path) -> AgentProcess {
        Self::start_in(None, config)
    }

    /// Start the agent inside network namespace `netns` (`ip netns exec`,
    /// which execs the agent: the pid is the agent's), or here.
    pub fn start_in(netns: Option<&str>, config: &Path) -> AgentProcess {
        Self::spawn(netns, config, Stdio::inherit())
    }

    /// Start `patrol-agent --config FILE` with its log (stderr, level
    /// `warn`) written to `log`, for tests that read what it warns about.
    pub fn start_logging(config: &Path, log: &Path) -> AgentProcess {
        let file = std::fs::File::create(log).expect("create the agent's log file");
        Self::spawn(None, config, Stdio::from(file))
    }

    fn spawn(netns: Option<&str>, config: &Path, stderr: Stdio) -> AgentProcess {
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(binary("patrol-agent"));
                c
            }
            None => Command::new(binary("patrol-agent")),
        };
        let mut child = command
            .arg("--config")
            .arg(config)
            .env("PATROL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start patrol-agent");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the agent never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "patrol-agent printed no ready line within 20 s ({})",
                    config.display()
                );
            }
        };
        let field = |key: &str| -> String {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_string))
                .unwrap_or_else(|| panic!("no {key}= in the ready line `{line}`"))
        };
        AgentProcess {
            name: field("name"),
            gossip: field("gossip").parse().expect("gossip address"),
            control: field("control").parse().expect("control address"),
            config: config.to_path_buf(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): freeze or thaw the process.
    pub fn freeze(&self, frozen: bool) {
        let _ = Command::new("kill")
            .arg(if frozen { "-STOP" } else { "-CONT" })
            .arg(self.pid().to_string())
            .status();
    }

    /// Resident memory now, bytes (from /proc; 0 when gone).
    pub fn rss_bytes(&self) -> u64 {
        rss_of(&self.pid().to_string())
    }

    /// SIGHUP: the agent reloads its key file.
    pub fn hangup(&self) {
        let _ = Command::new("kill")
            .arg("-HUP")
            .arg(self.pid().to_string())
            .status();
    }

    /// SIGKILL: the process vanishes without a word.
    pub fn kill_hard(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait (at most 10 s) for a clean exit; returns the
    /// exit status code.
    pub fn terminate(mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        for _ in 0..100 {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run the `patrol` CLI to completion (killed after 60 s).
pub fn patrol(args: &[&str]) -> Output {
    patrol_in(None, args)
}

/// Run the `patrol` CLI inside network namespace `netns`, or here.
pub fn patrol_in(netns: Option<&str>, args: &[&str]) -> Output {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(binary("patrol"));
            c
        }
        None => Command::new(binary("patrol")),
    };
    let mut child = command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start patrol");
    let start = std::time::Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("collect output");
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "patrol {args:?} ran over 60 s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A new cluster key at `DIR/NAME`, made by `patrol keys generate`.
pub fn cluster_key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let out = patrol(&[
        "keys",
        "generate",
        "--out",
        path.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "patrol keys generate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// An agent process in cluster `proc-test` with `[metrics] listen` on a
/// port of 127.0.0.1 that was free a moment ago; `extra` is added to its
/// config (e.g. `[[check]]` tables). Returns the agent and the endpoint.
pub fn start_with_metrics(
    dir: &Path,
    name: &str,
    key: &Path,
    extra: &str,
) -> (AgentProcess, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let metrics = SocketAddr::from(([127, 0, 0, 1], port));
    let extra = format!("{extra}\n[metrics]\nlisten = \"{metrics}\"\n");
    let agent = AgentProcess::start(&write_config(dir, name, key, &[], 0, &extra));
    (agent, metrics)
}

/// A config file for a test agent on loopback, in cluster `proc-test`.
pub fn write_config(
    dir: &Path,
    name: &str,
    key: &Path,
    seeds: &[SocketAddr],
    port: u16,
    extra: &str,
) -> PathBuf {
    write_cluster_config(dir, "proc-test", name, key, seeds, port, extra)
}

/// A config file for a test agent on loopback in `cluster`, written as
/// `DIR/NAME.toml` (so names must differ across clusters sharing `dir`).
pub fn write_cluster_config(
    dir: &Path,
    cluster: &str,
    name: &str,
    key: &Path,
    seeds: &[SocketAddr],
    port: u16,
    extra: &str,
) -> PathBuf {
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    let text = format!(
        "[node]\nname = \"{name}\"\ncluster = \"{cluster}\"\nbind = \"127.0.0.1:{port}\"\nseeds = [{}]\nkey_file = \"{}\"\ntags = {{ role = \"worker\" }}\n\n[control]\nlisten = \"127.0.0.1:0\"\n\n{extra}\n",
        seeds.join(", "),
        key.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write the config");
    path
}

/// The resident memory of process `pid` (`self` for this one), bytes, from
/// `/proc/PID/status`; 0 when it is gone.
pub fn rss_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
