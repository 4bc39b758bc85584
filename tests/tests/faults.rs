//! The real-network fault suite: 20 real `patrol-agent` processes, each in
//! its own network namespace on a bridge (`patrol_tests::netns::Hosts`), and
//! the real `patrol` CLI sweeping them while the network and the
//! processes misbehave: packet loss and a partition made with nftables
//! inside the namespaces, agents frozen with SIGSTOP, killed with SIGKILL
//! and restarted under the same name, a garbage flood from a neighbouring
//! namespace, and two agents started with the same name. After every sweep
//! every expected node must be in exactly one correct state.
//!
//! Needs root, iproute2 and nftables (`bash .ci/run` installs them); fails
//! saying so without them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use patrol_tests::netns::Hosts;
use patrol_tests::process::{binary, cluster_key, patrol_in, AgentProcess};

const AGENTS: usize = 20;
const GOSSIP: u16 = 7946;
const CONTROL: u16 = 7947;
/// Host index of the flooder (and, later, of the twin).
const SPARE: usize = AGENTS;

/// Fields drop in order: the agents stop before their namespaces go.
struct Fleet {
    agents: Vec<Option<AgentProcess>>,
    hosts: Hosts,
    dir: tempfile::TempDir,
    key: PathBuf,
}

impl Fleet {
    fn config(&self, host: usize, name: &str) -> PathBuf {
        let seed = format!("{}:{GOSSIP}", self.hosts.ip(0));
        let ip = self.hosts.ip(host);
        let text = format!(
            "[node]\nname = \"{name}\"\ncluster = \"faults\"\nbind = \"{ip}:{GOSSIP}\"\nseeds = [\"{seed}\"]\nkey_file = \"{}\"\n\n[control]\nlisten = \"{ip}:{CONTROL}\"\n\n[[check]]\nid = \"pid-max\"\ntype = \"sysctl\"\nkey = \"kernel.pid_max\"\nexpect = {{ min = 1 }}\n",
            self.key.display()
        );
        let path = self.dir.path().join(format!("{name}-{host}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn start(&mut self, host: usize, name: &str) -> AgentProcess {
        let cfg = self.config(host, name);
        AgentProcess::start_in(Some(self.hosts.ns(host)), &cfg)
    }

    fn name(i: usize) -> String {
        format!("h{i:02}")
    }

    /// `patrol COMMAND --seed <host 0> --config <host 0's> --format json
    /// EXTRA...`, run inside host 0's namespace.
    fn cli(&self, command: &str, extra: &[&str]) -> std::process::Output {
        let cfg = self.dir.path().join(format!("{}-0.toml", Self::name(0)));
        let ctl = format!("{}:{CONTROL}", self.hosts.ip(0));
        let mut args = vec![
            command,
            "--seed",
            &ctl,
            "--config",
            cfg.to_str().unwrap(),
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        patrol_in(Some(self.hosts.ns(0)), &args)
    }

    /// `patrol members` from host 0, as JSON.
    fn members(&self) -> Result<Vec<serde_json::Value>, String> {
        let out = self.cli("members", &[]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        v.as_array()
            .cloned()
            .or_else(|| v["members"].as_array().cloned())
            .ok_or_else(|| format!("not a member list: {v}"))
    }

    /// Wait until host 0 lists exactly `alive` as alive.
    fn wait_alive(&self, alive: &BTreeSet<String>, limit: Duration) {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < limit {
            match self.members() {
                Ok(m) => {
                    let now: BTreeSet<String> = m
                        .iter()
                        .filter(|m| m["state"] == "alive")
                        .map(|m| m["name"].as_str().unwrap_or_default().to_string())
                        .collect();
                    if &now == alive {
                        return;
                    }
                    last = format!("alive: {now:?}");
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("timed out after {limit:?} waiting for {alive:?} alive; last: {last}");
    }

    /// A sweep from host 0: the document's node states by name.
    fn sweep(&self, deadline: &str) -> (BTreeMap<String, String>, serde_json::Value) {
        let out = self.cli("sweep", &["--deadline", deadline]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "sweep printed no document ({e}; exit {:?}): {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let states = doc["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| {
                (
                    n["name"].as_str().unwrap_or_default().to_string(),
                    n["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        (states, doc)
    }
}

/// Every expected node in exactly one state, and each in one it may be in.
fn assert_states(
    phase: &str,
    states: &BTreeMap<String, String>,
    doc: &serde_json::Value,
    expected: &BTreeMap<String, &[&str]>,
) {
    let names: BTreeSet<&String> = states.keys().collect();
    let want: BTreeSet<&String> = expected.keys().collect();
    assert_eq!(names, want, "{phase}: the document lists other nodes");
    assert_eq!(
        doc["nodes"].as_array().map(Vec::len),
        Some(expected.len()),
        "{phase}: a node is listed twice"
    );
    for (name, allowed) in expected {
        let got = states[name].as_str();
        assert!(
            allowed.contains(&got),
            "{phase}: {name} is {got}, expected one of {allowed:?}\n{doc}"
        );
    }
}

fn all(
    names: impl Iterator<Item = String>,
    state: &'static [&'static str],
) -> BTreeMap<String, &'static [&'static str]> {
    names.map(|n| (n, state)).collect()
}

const OK: &[&str] = &["ok"];
const SILENT: &[&str] = &["no_answer", "down"];

#[test]
#[ignore = "full tier: needs root, iproute2 and nftables (network namespaces)"]
fn a_namespaced_fleet_is_accounted_for_through_loss_partitions_freezes_kills_floods_and_twins() {
    let hosts = Hosts::new(AGENTS + 1).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let key = cluster_key(dir.path(), "cluster.key");
    let mut fleet = Fleet {
        hosts,
        dir,
        key,
        agents: Vec::new(),
    };
    for i in 0..AGENTS {
        let a = fleet.start(i, &Fleet::name(i));
        fleet.agents.push(Some(a));
    }
    let everyone: BTreeSet<String> = (0..AGENTS).map(Fleet::name).collect();
    fleet.wait_alive(&everyone, Duration::from_secs(60));

    // 1. Baseline.
    let (s, doc) = fleet.sweep("3s");
    assert_states("baseline", &s, &doc, &all(everyone.iter().cloned(), OK));

    // 2. 20% loss into five agents: retries and the backstop still get
    // every answer in.
    for i in 5..10 {
        fleet.hosts.loss(i, 20).unwrap();
    }
    let (s, doc) = fleet.sweep("4s");
    assert_states("20% loss", &s, &doc, &all(everyone.iter().cloned(), OK));
    for i in 5..10 {
        fleet.hosts.heal(i).unwrap();
    }

    // 3. A partition: three agents cut off from everyone.
    for i in 17..20 {
        fleet.hosts.isolate(i).unwrap();
    }
    let (s, doc) = fleet.sweep("3s");
    let mut want = all(everyone.iter().cloned(), OK);
    for i in 17..20 {
        want.insert(Fleet::name(i), SILENT);
    }
    assert_states("partition", &s, &doc, &want);
    for i in 17..20 {
        fleet.hosts.heal(i).unwrap();
    }
    fleet.wait_alive(&everyone, Duration::from_secs(60));

    // 4. Two agents frozen (SIGSTOP): alive to the kernel, silent to us.
    for i in [14, 15] {
        fleet.agents[i].as_ref().unwrap().freeze(true);
    }
    let (s, doc) = fleet.sweep("3s");
    let mut want = all(everyone.iter().cloned(), OK);
    for i in [14, 15] {
        want.insert(Fleet::name(i), SILENT);
    }
    assert_states("frozen", &s, &doc, &want);
    for i in [14, 15] {
        fleet.agents[i].as_ref().unwrap().freeze(false);
    }
    fleet.wait_alive(&everyone, Duration::from_secs(60));

    // 5. One agent killed hard, then restarted under the same name.
    fleet.agents[12].take().unwrap().kill_hard();
    let (s, doc) = fleet.sweep("3s");
    let mut want = all(everyone.iter().cloned(), OK);
    want.insert(Fleet::name(12), SILENT);
    assert_states("killed", &s, &doc, &want);
    let again = fleet.start(12, &Fleet::name(12));
    fleet.agents[12] = Some(again);
    fleet.wait_alive(&everyone, Duration::from_secs(60));
    let (s, doc) = fleet.sweep("3s");
    assert_states("restarted", &s, &doc, &all(everyone.iter().cloned(), OK));

    // 6. A garbage flood at host 1 from the spare host, with a sweep in
    // the middle of it; the flooded agent's memory is sampled throughout.
    let key_id = patrol_agent::keyring::Keyring::load(&fleet.key)
        .unwrap()
        .primary_id();
    let target = format!("{}:{GOSSIP}", fleet.hosts.ip(1));
    let flooder = std::process::Command::new("ip")
        .args(["netns", "exec", fleet.hosts.ns(SPARE)])
        .arg(binary("patrol-flood"))
        .args([
            "--to", &target, "--rate", "100000", "--secs", "10", "--key-id",
        ])
        .arg(key_id.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start patrol-flood");
    let flooded = fleet.agents[1].as_ref().unwrap();
    let mut peak_rss = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        peak_rss = peak_rss.max(flooded.rss_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (s, doc) = fleet.sweep("4s");
    let flood_out = flooder.wait_with_output().expect("flooder ends");
    peak_rss = peak_rss.max(flooded.rss_bytes());
    let stats_before = String::from_utf8_lossy(&flood_out.stdout).into_owned();
    assert_states("flood", &s, &doc, &all(everyone.iter().cloned(), OK));
    println!(
        "flood: {}; flooded agent peak RSS {} KiB",
        stats_before.trim(),
        peak_rss / 1024
    );
    assert!(
        peak_rss < 64 * 1024 * 1024,
        "the flooded agent grew to {} MiB",
        peak_rss / (1024 * 1024)
    );
    // SWIM may have called the flooded agent down meanwhile (its probes
    // queue behind 100,000 datagrams a second): wait until it is back, as
    // after the freezes and the kill.
    fleet.wait_alive(&everyone, Duration::from_secs(60));

    // 7. Twins: a second agent called h03 starts on the spare host. Both
    // are listed, as a conflict; neither is silently `ok`.
    let twin = fleet.start(SPARE, &Fleet::name(3));
    fleet.agents.push(Some(twin));
    let start = Instant::now();
    loop {
        let m = fleet.members().unwrap_or_default();
        let twins = m
            .iter()
            .filter(|m| m["name"] == Fleet::name(3) && m["state"] == "alive")
            .count();
        if twins == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the twin never joined: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (s, doc) = fleet.sweep("3s");
    let mut want = all(
        everyone.iter().filter(|n| **n != Fleet::name(3)).cloned(),
        OK,
    );
    for host in [3, SPARE] {
        want.insert(
            format!("{}@{}:{GOSSIP}", Fleet::name(3), fleet.hosts.ip(host)),
            &["failing"],
        );
    }
    assert_states("twins", &s, &doc, &want);
}
