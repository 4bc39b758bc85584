//! Test support: build sweep documents by hand ([`outcome`], [`node`],
//! [`document`]) or generate a large one ([`generate`], [`overflowing`])
//! for tests and the `render_bench` example. Deterministic for a given seed; no I/O.

use std::collections::BTreeMap;

use patrol_checks::document::{GoneNode, DOCUMENT_VERSION};
use patrol_checks::{
    CheckOutcome, ClockOffset, NodeEntry, NodeState, Observed, Selector, Severity, Silence, Status,
    SweepDocument, SweepTiming, SwimState,
};

/// One check outcome.
pub fn outcome(id: &str, status: Status, observed: Observed, expected: &str) -> CheckOutcome {
    let message = if status == Status::Pass {
        String::new()
    } else {
        format!("observed {observed}, expected {expected}")
    };
    CheckOutcome {
        id: id.to_string(),
        kind: id.split('.').next().unwrap_or(id).to_string(),
        status,
        severity: if status == Status::Warn {
            Severity::Warn
        } else {
            Severity::Fail
        },
        observed,
        expected: expected.to_string(),
        message,
        duration_us: 120,
        description: String::new(),
        remediation: String::new(),
    }
}

/// One node; its state follows from its checks unless it is unreachable.
pub fn node(
    name: &str,
    tags: &[(&str, &str)],
    state: NodeState,
    checks: Vec<CheckOutcome>,
) -> NodeEntry {
    let answered = matches!(state, NodeState::Ok | NodeState::Failing);
    let mut n = NodeEntry {
        name: name.to_string(),
        addr: format!(
            "10.0.{}.{}:7946",
            name.len() % 256,
            name.bytes().map(u32::from).sum::<u32>() % 256
        ),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        state,
        late_joiner: false,
        reached_ms: answered.then_some(4),
        answered_ms: answered.then_some(40),
        checks_ms: answered.then_some(12),
        checks,
        clock: answered.then_some(ClockOffset {
            offset_ms: 0,
            bound_ms: 1,
        }),
        // A node the mesh lost: suspect, last heard well before the end.
        silence: (state == NodeState::NoAnswer).then_some(Silence {
            last_heard_ago_ms: Some(12_000),
            swim: SwimState::Suspect,
            backstop_requests: 2,
        }),
        swim: None,
    };
    if answered {
        n.state = if n.worst() == Status::Pass {
            NodeState::Ok
        } else {
            NodeState::Failing
        };
    }
    n
}

/// A document of `cluster` started at `started_at_unix_ms` holding `nodes`
/// (sorted by name, counts recomputed).
pub fn document(
    cluster: &str,
    sweep_id: &str,
    started_at_unix_ms: u64,
    mut nodes: Vec<NodeEntry>,
) -> SweepDocument {
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut doc = SweepDocument {
        version: DOCUMENT_VERSION,
        sweep_id: sweep_id.to_string(),
        cluster: cluster.to_string(),
        coordinator: nodes.first().map(|n| n.name.clone()).unwrap_or_default(),
        operator: None,
        started_at_unix_ms,
        deadline_ms: 5000,
        selector: Selector {
            checks: Vec::new(),
            labels: Vec::new(),
            profile: Some("k8s-node".to_string()),
        },
        node_filter: BTreeMap::new(),
        counts: Default::default(),
        nodes,
        timing: SweepTiming {
            reached_p50_ms: Some(4),
            reached_p99_ms: Some(180),
            reached_max_ms: Some(420),
            last_answer_ms: Some(900),
            completed_ms: 1250,
        },
        gone: Vec::new(),
    };
    doc.recount();
    doc
}

/// A small certified sweep started 2026-11-22 03:00 UTC: four nodes,
/// `node-03` answered although SWIM said it was down, `node-02` and
/// `node-04` each saw an agent claim `node-01` without its certificate
/// (`patrol.intruder`), and two nodes are gone from the roster (`node-7`
/// expired, `node-9` forgotten).
pub fn with_roster() -> SweepDocument {
    const T0: u64 = 1_795_316_400_000;
    let pass = || {
        outcome(
            "kernel.pid_max",
            Status::Pass,
            Observed::Number(4e6),
            ">= 4194304",
        )
    };
    let intruder = || {
        CheckOutcome {
        id: "patrol.intruder".to_string(),
        kind: "patrol".to_string(),
        status: Status::Fail,
        severity: Severity::Fail,
        observed: Observed::Text("node-01 at 10.9.9.9:7946".to_string()),
        expected: "only certified nodes in the mesh".to_string(),
        message: "an agent at 10.9.9.9:7946 claims the name `node-01` without its certificate (no proof; 42 packets refused, last 3 s ago)".to_string(),
        duration_us: 0,
        description: "raised by the membership gate: an identity without a valid proof".to_string(),
        remediation: "find the process at 10.9.9.9:7946 and stop it; if it is a real node, give it a certificate (patrol ca issue node)".to_string(),
    }
    };
    let mut doc = document(
        "prod",
        "a1b2c3d4e5f60718",
        T0,
        vec![
            node("node-01", &[], NodeState::Ok, vec![pass()]),
            node("node-02", &[], NodeState::Ok, vec![pass(), intruder()]),
            node("node-03", &[], NodeState::Ok, vec![pass()]),
            node("node-04", &[], NodeState::Ok, vec![pass(), intruder()]),
        ],
    );
    doc.operator = Some("alice".to_string());
    doc.nodes[2].swim = Some(SwimState::Down);
    doc.gone = vec![
        GoneNode {
            name: "node-7".to_string(),
            addr: "10.0.0.7:7946".to_string(),
            reason: "expired".to_string(),
            last_seen_unix_ms: 1_794_712_320_000,
            gone_unix_ms: 1_795_313_400_000,
        },
        GoneNode {
            name: "node-9".to_string(),
            addr: "10.0.0.9:7946".to_string(),
            reason: "forgotten".to_string(),
            last_seen_unix_ms: 1_795_300_800_000,
            gone_unix_ms: 1_795_315_260_000,
        },
    ];
    doc
}

/// SplitMix64: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// The healthy outcomes of a generated node.
fn healthy(rng: &mut Rng, control: bool) -> Vec<CheckOutcome> {
    let mut v = vec![
        outcome(
            "sysctl.fs.file-max",
            Status::Pass,
            Observed::Number(2_097_152.0),
            ">= 1048576",
        ),
        outcome(
            "sysctl.vm.swappiness",
            Status::Pass,
            Observed::Number(0.0),
            "any",
        ),
        outcome(
            "sysctl.net.core.somaxconn",
            Status::Pass,
            Observed::Number(4096.0),
            ">= 4096",
        ),
        outcome(
            "sysctl.kernel.pid_max",
            Status::Pass,
            Observed::Number(4_194_304.0),
            ">= 4194304",
        ),
        outcome(
            "kubelet.version",
            Status::Pass,
            Observed::Version("1.31.4".into()),
            "1.31.x",
        ),
        outcome(
            "process.zombies",
            Status::Pass,
            Observed::Number(0.0),
            "<= 10",
        ),
        outcome(
            "memory.used_pct",
            Status::Pass,
            Observed::Number((20 + rng.below(60)) as f64),
            "< 90",
        ),
        outcome(
            "clock.offset_ms",
            Status::Pass,
            Observed::Number(rng.below(8) as f64),
            "< 100",
        ),
        outcome(
            "disk.root_used_pct",
            Status::Pass,
            Observed::Number((10 + rng.below(60)) as f64),
            "< 85",
        ),
    ];
    if control {
        v.push(outcome(
            "etcd.health",
            Status::Pass,
            Observed::Text("true".into()),
            "true",
        ));
    }
    v
}

/// Turn one outcome of `checks` into an anomaly.
fn spoil(rng: &mut Rng, checks: &mut [CheckOutcome]) {
    let which = rng.below(8);
    let (id, status, observed) = match which {
        0 => (
            "sysctl.fs.file-max",
            Status::Fail,
            Observed::Number(65_536.0),
        ),
        1 => (
            "sysctl.net.core.somaxconn",
            Status::Warn,
            Observed::Number(128.0),
        ),
        2 => (
            "sysctl.kernel.pid_max",
            Status::Fail,
            Observed::Number(32_768.0),
        ),
        3 => (
            "kubelet.version",
            Status::Fail,
            Observed::Version(format!("1.29.{}", rng.below(3))),
        ),
        4 => (
            "process.zombies",
            Status::Warn,
            Observed::Number((11 + rng.below(300)) as f64),
        ),
        5 => (
            "memory.used_pct",
            Status::Warn,
            Observed::Number((90 + rng.below(10)) as f64),
        ),
        6 => ("clock.offset_ms", Status::Error, Observed::None),
        _ => (
            "disk.root_used_pct",
            Status::Fail,
            Observed::Number((85 + rng.below(15)) as f64),
        ),
    };
    if let Some(c) = checks.iter_mut().find(|c| c.id == id) {
        c.status = status;
        c.severity = if status == Status::Warn {
            Severity::Warn
        } else {
            Severity::Fail
        };
        c.message = format!("observed {observed}, expected {}", c.expected);
        c.remediation = match id {
            "sysctl.fs.file-max" => {
                "sysctl -w fs.file-max=2097152 and persist it in /etc/sysctl.d".into()
            }
            "kubelet.version" => "upgrade the kubelet to the control plane's minor version".into(),
            _ => String::new(),
        };
        c.observed = observed;
    }
}

/// A sweep of `nodes` nodes with about `anomalies` anomalous outcomes, a
/// few unreachable nodes (0.1% no answer, 0.05% down), and drift
/// (`vm.swappiness = 60` on 3 nodes). Node names are `node-00001`, ...;
/// the first three are tagged `role=control`, the rest `role=worker`.
pub fn generate(nodes: usize, anomalies: usize, seed: u64) -> SweepDocument {
    let mut rng = Rng(seed);
    let width = nodes.to_string().len().max(5);
    let mut entries: Vec<NodeEntry> = (0..nodes)
        .map(|i| {
            let control = i < 3;
            let name = format!("node-{:0width$}", i + 1);
            let role = if control { "control" } else { "worker" };
            let mut n = node(
                &name,
                &[("role", role)],
                NodeState::Ok,
                healthy(&mut rng, control),
            );
            n.addr = format!("10.{}.{}.{}:7946", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            n.reached_ms = Some(1 + rng.below(400));
            n
        })
        .collect();
    if nodes == 0 {
        return document("prod", "00000000000000ff", 1_795_316_400_000, entries);
    }
    for _ in 0..anomalies {
        let i = rng.below(nodes as u64) as usize;
        spoil(&mut rng, &mut entries[i].checks);
    }
    for _ in 0..3.min(nodes) {
        let i = 3 + rng.below(nodes.saturating_sub(3).max(1) as u64) as usize;
        if let Some(c) = entries
            .get_mut(i.min(nodes - 1))
            .and_then(|n| n.checks.iter_mut().find(|c| c.id == "sysctl.vm.swappiness"))
        {
            c.observed = Observed::Number(60.0);
        }
    }
    for (k, state) in [(1000, NodeState::NoAnswer), (2000, NodeState::Down)] {
        for _ in 0..(nodes / k).max(1) {
            let n = &mut entries[rng.below(nodes as u64) as usize];
            n.state = state;
            n.checks.clear();
            n.reached_ms = None;
            n.answered_ms = None;
            n.checks_ms = None;
        }
    }
    for n in &mut entries {
        if matches!(n.state, NodeState::Ok | NodeState::Failing) {
            n.state = if n.worst() == Status::Pass {
                NodeState::Ok
            } else {
                NodeState::Failing
            };
        }
    }
    document(
        "prod",
        &format!("{:016x}", seed),
        1_795_316_400_000,
        entries,
    )
}

/// The worst case for the report's size: two sweeps of `nodes` nodes (the
/// previous one and the current one, a day later) where every section
/// overflows. Every node fails a check of its own (distinct checks are
/// never folded into families) with a 300-character remediation, every
/// node fixed another check of its own since the previous sweep, one node
/// in ten has a drifting value and another one in ten is down; node names
/// are long.
pub fn overflowing(nodes: usize, started_at_unix_ms: u64) -> (SweepDocument, SweepDocument) {
    let name = |i: usize| format!("worker-node-in-a-long-rack-name-{i:05}.dc1.example.test");
    let remediation = "x".repeat(300);
    let fleet = |previous: bool| -> Vec<NodeEntry> {
        (0..nodes)
            .map(|i| {
                if !previous && i % 10 == 9 {
                    return node(&name(i), &[("role", "worker")], NodeState::Down, vec![]);
                }
                let mut fail = outcome(
                    &format!("sysctl.some.long.parameter.name-{i}"),
                    Status::Fail,
                    Observed::Number(i as f64),
                    ">= 1048576",
                );
                fail.remediation = remediation.clone();
                let drift = if i % 10 == 0 { i as f64 } else { 0.0 };
                let (status, value) = if previous {
                    (Status::Fail, i as f64)
                } else {
                    (Status::Pass, 0.0)
                };
                let fixed = outcome(
                    &format!("resolved.check-{i}"),
                    status,
                    Observed::Number(value),
                    "< 1",
                );
                node(
                    &name(i),
                    &[("role", "worker")],
                    NodeState::Ok,
                    vec![
                        fail,
                        outcome("vm.drifting", Status::Pass, Observed::Number(drift), "any"),
                        fixed,
                    ],
                )
            })
            .collect()
    };
    const DAY_MS: u64 = 86_400_000;
    (
        document("prod", "00000000000000b1", started_at_unix_ms, fleet(true)),
        document(
            "prod",
            "00000000000000b2",
            started_at_unix_ms + DAY_MS,
            fleet(false),
        ),
    )
}
