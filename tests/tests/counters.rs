//! The agent's one counter list, read three ways from a real agent
//! process: `patrol members --stats --format json`, its `/metrics`
//! endpoint, and the textfile `patrol members --stats --prometheus FILE`
//! writes. Every counter of the list (`AgentStats::counts`) must be in
//! all three with the same value.
//!
//! The agent runs alone (no peers, so no gossip moves its counters by
//! itself); the test makes counters move with a sweep and with datagrams
//! it crafts with the cluster key: garbage that does not open, a
//! datagram replayed byte for byte, one sent from a clock ten minutes
//! ahead, one that opens but does not decode, an ack for the agent's own
//! answer from someone other than the coordinator, and an answer piece for
//! a sweep that does not exist. Relay, certificate and capacity counters
//! stay at 0 here (a lone agent without `[trust]` has none of that
//! traffic); they are compared all the same. Then it waits until
//! two stats reads agree (the barrier), and reads stats with the
//! textfile, scrapes, and reads stats again: both stats reads must still
//! agree, so all three were read at one moment.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use patrol_agent::agent::AgentStats;
use patrol_agent::clock::WallClock;
use patrol_agent::counter_list::FAMILIES;
use patrol_agent::datagram::Sealer;
use patrol_agent::envelope::Envelope;
use patrol_agent::keyring::Keyring;
use patrol_agent::sweep::{AnswerChunk, SweepMessage};
use patrol_tests::process::{cluster_key, patrol, start_with_metrics, AgentProcess};
use serde_json::Value;

/// (family, reason) -> value.
type Counts = BTreeMap<(String, Option<String>), u64>;

/// The channel byte in front of a sweep message's plaintext.
const CH_SWEEP: u8 = 1;

/// The classic text page of `GET /metrics`.
fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    body.to_string()
}

/// The samples of the counter list's families on a Prometheus text page
/// (other series, such as `patrol_members`, are left out).
fn parse_page(page: &str) -> Counts {
    let mut counts = Counts::new();
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, Some(labels)),
            None => (series, None),
        };
        let Some(family) = name
            .strip_prefix("patrol_")
            .and_then(|n| n.strip_suffix("_total"))
            .filter(|n| FAMILIES.iter().any(|f| f.name == *n))
        else {
            continue;
        };
        let reason = labels.map(|l| {
            l.strip_prefix("reason=\"")
                .and_then(|r| r.strip_suffix("\"}"))
                .unwrap_or_else(|| panic!("labels other than reason: {line}"))
                .to_string()
        });
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        let old = counts.insert((family.to_string(), reason), value as u64);
        assert!(old.is_none(), "{line} twice");
    }
    counts
}

/// The `counters` of `patrol members --stats --format json`.
fn parse_json(stdout: &[u8]) -> Counts {
    let doc: Value = serde_json::from_slice(stdout).expect("members --stats JSON");
    let mut counts = Counts::new();
    for c in doc["counters"].as_array().expect("a counters array") {
        let key = (
            c["name"].as_str().expect("name").to_string(),
            c["reason"].as_str().map(str::to_string),
        );
        let value = c["value"].as_u64().expect("value");
        assert!(counts.insert(key, value).is_none(), "{c} twice");
    }
    counts
}

struct Agent {
    process: AgentProcess,
    metrics: SocketAddr,
    textfile: std::path::PathBuf,
}

impl Agent {
    /// `members --stats --format json`, writing the textfile too when
    /// `textfile` is set.
    fn stats(&self, textfile: bool) -> Counts {
        let seed = self.process.control.to_string();
        let cfg = self.process.config.to_str().unwrap().to_string();
        let mut args = vec![
            "members", "--seed", &seed, "--config", &cfg, "--stats", "--format", "json",
        ];
        let path = self.textfile.to_str().unwrap().to_string();
        if textfile {
            args.extend(["--prometheus", &path]);
        }
        let out = patrol(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse_json(&out.stdout)
    }
}

fn value(counts: &Counts, name: &str, reason: Option<&str>) -> u64 {
    counts
        .get(&(name.to_string(), reason.map(str::to_string)))
        .copied()
        .unwrap_or_else(|| panic!("no {name} {reason:?} in {counts:?}"))
}

/// Datagrams a key holder crafts, and one that does not open.
/// `sweep_id` is the sweep the agent just ran (and took part in): an ack
/// for it from anyone but its coordinator is refused.
fn send_hostile_traffic(key: &std::path::Path, to: SocketAddr, sweep_id: u64) {
    let envelope = Envelope::new(Keyring::load(key).unwrap(), "proc-test");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sealer = Sealer::new(envelope.clone(), WallClock::default());
    let seal = |sealer: &mut Sealer, plain: &[u8]| {
        let mut out = Vec::new();
        sealer.seal(plain, to, &mut out).unwrap();
        out
    };
    let sweep = |msg: SweepMessage| {
        let mut plain = vec![CH_SWEEP];
        plain.extend(msg.encode());
        plain
    };
    let ack = sweep(SweepMessage::Ack {
        sweep_id,
        node: "m0".into(),
        nonce: 1,
        index: 0,
    });
    let sealed_ack = seal(&mut sealer, &ack);
    let piece = seal(
        &mut sealer,
        &sweep(SweepMessage::Answer(AnswerChunk {
            sweep_id: 77,
            node: "nobody".into(),
            nonce: 3,
            index: 0,
            count: 1,
            sent_unix_ms: patrol_agent::clock::unix_ms(),
            sent_tag: None,
            payload: vec![1, 2, 3],
        })),
    );
    let undecodable = seal(&mut sealer, &[CH_SWEEP, 0xff, 0xff, 0xff]);
    let mut ahead = Sealer::new(envelope, WallClock::shifted(10 * 60 * 1000));
    let skewed = seal(&mut ahead, &ack);
    let garbage = vec![0x5a; 64];
    for packet in [
        &sealed_ack,
        &sealed_ack, // replayed
        &piece,
        &undecodable,
        &skewed,
        &garbage,
    ] {
        socket.send_to(packet, to).unwrap();
        // Nothing here is a flood: let the agent keep up.
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn members_stats_the_metrics_endpoint_and_the_textfile_show_the_same_counters() {
    let dir = tempfile::tempdir().unwrap();
    let key = cluster_key(dir.path(), "cluster.key");
    let checks = "[[check]]\nid = \"pid-max\"\ntype = \"sysctl\"\nkey = \"kernel.pid_max\"\nexpect = { min = 1 }\n";
    let (process, metrics) = start_with_metrics(dir.path(), "m0", &key, checks);
    let agent = Agent {
        metrics,
        textfile: dir.path().join("agent.prom"),
        process,
    };

    // A sweep, so that the sweep counters move too.
    let out = patrol(&[
        "sweep",
        "--seed",
        &agent.process.control.to_string(),
        "--config",
        agent.process.config.to_str().unwrap(),
        "--format",
        "json",
        "--deadline",
        "2s",
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("a sweep document");
    assert_eq!(doc["counts"]["ok"], 1, "{doc}");
    let sweep_id = doc["sweep_id"].as_str().expect("a sweep id");
    let sweep_id = u64::from_str_radix(sweep_id, 16).expect("a hex sweep id");
    send_hostile_traffic(&key, agent.process.gossip, sweep_id);

    // The barrier: every crafted datagram counted, and two reads agree.
    let start = Instant::now();
    let mut last = agent.stats(false);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = agent.stats(false);
        let counted = value(&now, "sweep_messages_refused", Some("answer_piece")) >= 1
            && value(&now, "sweep_messages_refused", Some("ack")) >= 1
            && value(&now, "datagrams_dropped", Some("unsealed")) >= 1;
        if counted && now == last {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the counters never settled: {now:?}"
        );
        last = now;
    }

    let listed = agent.stats(true);
    let page = parse_page(&scrape(agent.metrics));
    let file = parse_page(&std::fs::read_to_string(&agent.textfile).unwrap());
    let after = agent.stats(false);
    assert_eq!(listed, after, "the counters moved while being read");

    // Every counter of the list, in all three, with one value.
    let expected: Vec<(String, Option<String>)> = AgentStats::default()
        .counts()
        .iter()
        .map(|c| (c.name.to_string(), c.reason.map(str::to_string)))
        .collect();
    assert_eq!(
        listed.keys().cloned().collect::<Vec<_>>(),
        {
            let mut e = expected.clone();
            e.sort();
            e
        },
        "members --stats does not list every counter"
    );
    assert_eq!(page, listed, "/metrics differs from members --stats");
    assert_eq!(file, listed, "the textfile differs from members --stats");

    // And the traffic was counted where it belongs.
    for (name, reason, at_least) in [
        ("datagrams_dropped", Some("unsealed"), 1),
        ("datagrams_dropped", Some("replayed"), 1),
        ("datagrams_dropped", Some("clock_skew"), 1),
        ("datagrams_dropped", Some("malformed"), 1),
        ("sweep_messages_refused", Some("ack"), 1),
        ("sweep_messages_refused", Some("answer_piece"), 1),
        // The ack, the piece and the undecodable one opened.
        ("datagrams_received", None, 3),
        ("sweeps_coordinated", None, 1),
        ("check_runs", None, 1),
    ] {
        assert!(
            value(&listed, name, reason) >= at_least,
            "{name} {reason:?} below {at_least}: {listed:?}"
        );
    }
}
