//! `patrol demo --netns` (root only): the drift story with real data. Each
//! agent runs as its own `patrol-agent` process in its own network
//! namespace, wired to the others through a bridge that lives in one more
//! namespace of the demo's own (nothing is added to the machine's own
//! network). Network sysctls are per namespace, so each "node" can really
//! differ:
//!
//! 1. every node gets `net.core.somaxconn = 4096` and `ip_forward = 1`,
//!    except node 2 (`somaxconn = 128`: drift, the check only observes),
//!    node 4 (`ip_forward = 0`: a failed check) and node 5
//!    (`tcp_syncookies = 0`: a warning);
//! 2. first sweep (through the `patrol` CLI run inside node 0's namespace),
//!    stored in the demo's history and rendered;
//! 3. the last node's agent is killed, node 4 is fixed, node 3's
//!    somaxconn is changed to 512 by hand;
//! 4. second sweep: the report shows node 5's warning persisting, node
//!    4's failure resolved, the killed node unreachable, node 2's drift still
//!    there and node 3's new.
//!
//! Addresses are 10.77.0.1-N inside the demo's namespaces only. Every
//! namespace and process is removed at the end, also on failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use patrol_agent::keyring::Keyring;
use patrol_checks::SweepDocument;

/// Nodes in the demo: node 0 is the control plane, the others workers;
/// enough workers that the majority value still holds 75 % of them when
/// two differ and one is dead (drift needs a clear majority).
const NODES: usize = 12;
/// The node whose agent is killed before the second sweep.
const KILLED: usize = NODES - 1;
const HUB: &str = "patrol-demo-hub";
const BRIDGE: &str = "pdbr0";
const GOSSIP_PORT: u16 = 7946;
const CONTROL_PORT: u16 = 7947;

fn ns(i: usize) -> String {
    format!("patrol-demo-{i}")
}

fn addr(i: usize) -> String {
    format!("10.77.0.{}", i + 1)
}

/// Run a command; an error names it and says what it printed.
fn run(cmd: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .with_context(|| format!("running `{}`", cmd.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Write a sysctl inside node `i`'s namespace.
fn sysctl(i: usize, key: &str, value: &str) -> anyhow::Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    run(&[
        "ip",
        "netns",
        "exec",
        &ns(i),
        "sh",
        "-c",
        &format!("echo {value} > {path}"),
    ])
    .map(|_| ())
}

/// The namespaces and processes of one demo; removed on drop.
struct Lab {
    agents: Vec<Option<Child>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.agents.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for i in 0..NODES {
            let _ = run(&["ip", "netns", "del", &ns(i)]);
        }
        let _ = run(&["ip", "netns", "del", HUB]);
    }
}

fn check_prerequisites() -> anyhow::Result<()> {
    // /proc/self belongs to the effective user.
    let euid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self")?);
    if euid != 0 {
        bail!("patrol demo --netns creates network namespaces: run it as root (sudo patrol demo --netns)");
    }
    if run(&["ip", "-V"]).is_err() {
        bail!("patrol demo --netns needs the `ip` command: apt-get install iproute2");
    }
    Ok(())
}

fn build_network() -> anyhow::Result<()> {
    // Left over from an interrupted run.
    for i in 0..NODES {
        let _ = run(&["ip", "netns", "del", &ns(i)]);
    }
    let _ = run(&["ip", "netns", "del", HUB]);
    run(&["ip", "netns", "add", HUB])?;
    run(&["ip", "-n", HUB, "link", "add", BRIDGE, "type", "bridge"])?;
    run(&["ip", "-n", HUB, "link", "set", BRIDGE, "up"])?;
    for i in 0..NODES {
        let n = ns(i);
        run(&["ip", "netns", "add", &n])?;
        let hub_end = format!("pdh{i}");
        run(&[
            "ip", "-n", HUB, "link", "add", &hub_end, "type", "veth", "peer", "name", "eth0",
            "netns", &n,
        ])?;
        run(&["ip", "-n", HUB, "link", "set", &hub_end, "master", BRIDGE])?;
        run(&["ip", "-n", HUB, "link", "set", &hub_end, "up"])?;
        run(&[
            "ip",
            "-n",
            &n,
            "addr",
            "add",
            &format!("{}/24", addr(i)),
            "dev",
            "eth0",
        ])?;
        run(&["ip", "-n", &n, "link", "set", "eth0", "up"])?;
        run(&["ip", "-n", &n, "link", "set", "lo", "up"])?;
    }
    Ok(())
}

fn agent_config(i: usize, key: &Path) -> String {
    let role = if i == 0 { "control-plane" } else { "worker" };
    format!(
        r#"[node]
name = "ns-node-{i}"
cluster = "demo-netns"
bind = "{a}:{GOSSIP_PORT}"
seeds = ["{seed}:{GOSSIP_PORT}"]
key_file = "{key}"
tags = {{ role = "{role}" }}

[control]
listen = "{a}:{CONTROL_PORT}"

[[check]]
id = "somaxconn"
type = "sysctl"
key = "net.core.somaxconn"
description = "listen backlog (observe only: the report shows who differs)"

[[check]]
id = "ip-forward"
type = "sysctl"
key = "net.ipv4.ip_forward"
expect = 1
description = "IPv4 forwarding, needed for pod traffic"
remediation = "sysctl -w net.ipv4.ip_forward=1 and persist it in /etc/sysctl.d/"

[[check]]
id = "syncookies"
type = "sysctl"
key = "net.ipv4.tcp_syncookies"
expect = 1
severity = "warn"
description = "SYN cookies against SYN floods"
remediation = "sysctl -w net.ipv4.tcp_syncookies=1 and persist it in /etc/sysctl.d/"

[[check]]
id = "eth0-state"
type = "network"
interface = "eth0"
expect = "up"

[[check]]
id = "eth0-mtu"
type = "network"
interface = "eth0"
measure = "mtu"
"#,
        a = addr(i),
        seed = addr(0),
        key = key.display(),
    )
}

/// A sweep through node 0's agent, by this very `patrol` binary run
/// inside node 0's namespace; the document is written to `out`.
fn sweep(exe: &Path, key: &Path, out: &Path) -> anyhow::Result<SweepDocument> {
    let status = Command::new("ip")
        .args(["netns", "exec", &ns(0)])
        .arg(exe)
        .args(["sweep", "--seed", &format!("{}:{CONTROL_PORT}", addr(0))])
        .arg("--key-file")
        .arg(key)
        .args(["--cluster", "demo-netns", "--deadline", "4s", "--out"])
        .arg(out)
        .stdout(Stdio::null())
        .status()
        .context("running patrol sweep inside the namespace")?;
    // Exit 1 and 2 mean "the fleet has problems": that is the point here.
    if !matches!(status.code(), Some(0..=2)) {
        bail!("patrol sweep inside {} failed ({status})", ns(0));
    }
    Ok(patrol_report::history::read_document(out)?.to_document())
}

fn wait_for_mesh(exe: &Path, key: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns(0)])
            .arg(exe)
            .args(["members", "--seed", &format!("{}:{CONTROL_PORT}", addr(0))])
            .arg("--key-file")
            .arg(key)
            .args(["--cluster", "demo-netns"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // The summary line: `6 members: 6 alive, 0 suspect, ...`.
        let alive = text
            .lines()
            .find_map(|l| l.split_once(" members: "))
            .and_then(|(_, rest)| rest.split(' ').next()?.parse::<usize>().ok());
        if alive.is_some_and(|a| a >= NODES) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the {NODES} namespaced agents did not see each other within 30 s:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub fn run_demo(out: &Path) -> anyhow::Result<ExitCode> {
    check_prerequisites()?;
    let exe = std::env::current_exe().context("locating the patrol binary")?;
    let agent_exe: PathBuf = exe.with_file_name("patrol-agent");
    if !agent_exe.is_file() {
        bail!(
            "{} not found: patrol demo --netns runs the agent binary that sits next to patrol (cargo build --bins)",
            agent_exe.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;
    let key = out.join("cluster.key");
    let _ = std::fs::remove_file(&key);
    Keyring::generate()
        .write_new(&key)
        .context("writing the demo key")?;

    let mut lab = Lab { agents: Vec::new() };
    build_network()?;
    for i in 0..NODES {
        sysctl(i, "net.core.somaxconn", if i == 2 { "128" } else { "4096" })?;
        sysctl(i, "net.ipv4.ip_forward", if i == 4 { "0" } else { "1" })?;
        sysctl(i, "net.ipv4.tcp_syncookies", if i == 5 { "0" } else { "1" })?;
        let cfg = out.join(format!("node-{i}.toml"));
        std::fs::write(&cfg, agent_config(i, &key))?;
        let log = std::fs::File::create(out.join(format!("node-{i}.log")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &ns(i)])
            .arg(&agent_exe)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting the agent in {}", ns(i)))?;
        lab.agents.push(Some(child));
    }
    eprintln!("started {NODES} agents, each in its own network namespace (10.77.0.1-{NODES})");
    wait_for_mesh(&exe, &key)?;

    let mut config = patrol_config::Config::default();
    config.report.history_dir = out.join("history");
    let _ = std::fs::remove_dir_all(&config.report.history_dir);

    let first = sweep(&exe, &key, &out.join("sweep-1.json"))?;
    let one = patrol_report::write_report(&first, &config, &out.join("report-1"))?;
    crate::stdout::outln!("first sweep:");
    crate::stdout::out!(
        "{}",
        crate::sweep::table(&first, false, &jiff::tz::TimeZone::system())
    );

    // Overnight: one node dies, node 4 is fixed, node 3 is changed by hand.
    if let Some(mut c) = lab.agents[KILLED].take() {
        c.kill().context("killing an agent")?;
        let _ = c.wait();
    }
    sysctl(4, "net.ipv4.ip_forward", "1")?;
    sysctl(3, "net.core.somaxconn", "512")?;
    eprintln!(
        "killed ns-node-{KILLED}'s agent, fixed ip_forward on ns-node-4, set somaxconn 512 on ns-node-3"
    );
    std::thread::sleep(Duration::from_secs(1));

    let mut second = sweep(&exe, &key, &out.join("sweep-2.json"))?;
    // The demo's two sweeps run seconds apart; the report reads as nights.
    second.started_at_unix_ms = second.started_at_unix_ms.max(first.started_at_unix_ms + 1);
    let two = patrol_report::write_report(&second, &config, &out.join("report-2"))?;
    crate::stdout::outln!("\nsecond sweep:");
    crate::stdout::out!(
        "{}",
        crate::sweep::table(&second, false, &jiff::tz::TimeZone::system())
    );
    crate::stdout::outln!("\nfirst report:  {}", one.text.display());
    crate::stdout::outln!(
        "second report: {} (HTML: {})",
        two.text.display(),
        two.html.display()
    );
    drop(lab);
    Ok(ExitCode::SUCCESS)
}
