//! [`Hosts`]: a network of our own for real processes. N hosts, each a
//! network namespace with one veth into a bridge that lives in a namespace
//! of its own, so the test touches no interface or address of the
//! machine. Hosts are `10.201.0.1`, `10.201.0.2`, ... on `10.201.0.0/24`,
//! reachable only inside it. Loss and partitions are `nftables` rules
//! inside a host's namespace (this kernel has no netem). Everything is
//! removed when the value drops. (Agents in this process on an in-memory
//! network are [`crate::lab::Lab`].)
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables); without them
//! [`Hosts::new`] fails saying how to get them, never skips.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Numbers the networks made by this process apart.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// The hosts; their namespaces and the bridge are deleted on drop.
#[derive(Debug)]
pub struct Hosts {
    prefix: String,
    switch: String,
    hosts: Vec<String>,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Hosts {
    /// `n` hosts on one bridge.
    pub fn new(n: usize) -> Result<Hosts, String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        if uid != "0" {
            return Err(format!(
                "the network-namespace fault suite needs root (running as uid {uid}): run it as root, as `bash .ci/run` does"
            ));
        }
        for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
            if Command::new(tool).arg("-V").output().is_err() {
                return Err(format!(
                    "`{tool}` is missing: install the Debian package {package} (`apt-get install {package}`; `bash .ci/run` does)"
                ));
            }
        }
        let prefix = format!(
            "pt{}x{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        let switch = format!("{prefix}-sw");
        let mut hosts = Hosts {
            prefix: prefix.clone(),
            switch: switch.clone(),
            hosts: Vec::new(),
        };
        run(&["ip", "netns", "add", &switch])?;
        hosts.in_switch(&["ip", "link", "add", "br0", "type", "bridge"])?;
        hosts.in_switch(&["ip", "link", "set", "br0", "up"])?;
        for i in 0..n {
            hosts.add_host(i)?;
        }
        Ok(hosts)
    }

    fn in_switch(&self, args: &[&str]) -> Result<(), String> {
        let mut full = vec!["ip", "netns", "exec", &self.switch];
        full.extend_from_slice(args);
        run(&full)
    }

    fn add_host(&mut self, i: usize) -> Result<(), String> {
        let ns = format!("{}-h{i}", self.prefix);
        run(&["ip", "netns", "add", &ns])?;
        self.hosts.push(ns.clone());
        let port = format!("p{i}");
        self.in_switch(&[
            "ip", "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        self.in_switch(&["ip", "link", "set", &port, "master", "br0"])?;
        self.in_switch(&["ip", "link", "set", &port, "up"])?;
        let addr = format!("{}/24", self.ip(i));
        self.exec(i, &["ip", "addr", "add", &addr, "dev", "eth0"])?;
        self.exec(i, &["ip", "link", "set", "eth0", "up"])?;
        self.exec(i, &["ip", "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Host `i`'s namespace name.
    pub fn ns(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, 0, (i + 1) as u8)
    }

    /// Run a command inside host `i`'s namespace.
    pub fn exec(&self, i: usize, args: &[&str]) -> Result<(), String> {
        let mut full = vec!["ip", "netns", "exec", &self.hosts[i]];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Replace host `i`'s firewall with `rules` (nft syntax, inside
    /// `table inet patrol_lab { ... }`); empty rules remove it.
    pub fn firewall(&self, i: usize, rules: &str) -> Result<(), String> {
        let _ = self.exec(i, &["nft", "delete", "table", "inet", "patrol_lab"]);
        if rules.is_empty() {
            return Ok(());
        }
        let script = format!("table inet patrol_lab {{\n{rules}\n}}\n");
        let path = std::env::temp_dir().join(format!("{}-{i}.nft", self.prefix));
        std::fs::write(&path, script).map_err(|e| e.to_string())?;
        let r = self.exec(i, &["nft", "-f", &path.to_string_lossy()]);
        let _ = std::fs::remove_file(&path);
        r
    }

    /// Drop `percent` % of the datagrams host `i` receives, at random.
    pub fn loss(&self, i: usize, percent: u32) -> Result<(), String> {
        self.firewall(
            i,
            &format!(
                "chain input {{ type filter hook input priority 0; policy accept;\n  iifname \"eth0\" numgen random mod 100 < {percent} drop\n}}"
            ),
        )
    }

    /// Cut host `i` off: nothing in or out on its link.
    pub fn isolate(&self, i: usize) -> Result<(), String> {
        self.firewall(
            i,
            "chain input { type filter hook input priority 0; policy accept;\n  iifname \"eth0\" drop\n}\nchain output { type filter hook output priority 0; policy accept;\n  oifname \"eth0\" drop\n}",
        )
    }

    /// Remove host `i`'s rules.
    pub fn heal(&self, i: usize) -> Result<(), String> {
        self.firewall(i, "")
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Killing what runs inside is the caller's (processes drop first);
        // deleting a namespace takes its interfaces with it.
        for ns in &self.hosts {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.switch])
            .status();
    }
}
