//! Honest drift: discrete values against the peer group's majority,
//! gauges against a robust outlier rule (median ± k·MAD). Realistic noisy
//! gauges give no drift; one real outlier is found, and only it.

use patrol_checks::{CheckOutcome, NodeState, Observed, Status, SweepDocument};
use patrol_report::drift::{find_drift, DriftRule};
use patrol_report::sample::{document, node, outcome};

const T0: u64 = 1_795_316_400_000;

/// SplitMix64 and Box-Muller: reproducible normal noise.
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let u1 = self.uniform().max(1e-12);
        let u2 = self.uniform();
        mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

fn gauge(id: &str, kind: &str, value: Observed) -> CheckOutcome {
    let mut o = outcome(id, Status::Pass, value, "any");
    o.kind = kind.to_string();
    o
}

/// A fleet of `n` workers whose gauges vary the way real ones do.
fn noisy_fleet(n: usize, seed: u64) -> Vec<patrol_checks::NodeEntry> {
    let mut noise = Noise(seed);
    (0..n)
        .map(|i| {
            let mem = noise.normal(62.0, 9.0).clamp(5.0, 99.0);
            let procs = noise.normal(310.0, 35.0).round();
            let zombies = if noise.uniform() < 0.02 { 1.0 } else { 0.0 };
            let root = noise.normal(41.0, 6.0);
            let var = noise.normal(55.0, 8.0);
            let fds = noise.normal(2.4, 0.4);
            // The demo's near-identical gauge: 97.98 on some, 97.99 on others.
            let avail = if i % 5 == 0 { 97.98 } else { 97.99 };
            node(
                &format!("w{i:05}"),
                &[("role", "worker")],
                NodeState::Ok,
                vec![
                    gauge("memory-used", "memory", Observed::Number(mem)),
                    gauge("memory-available", "memory", Observed::Number(avail)),
                    gauge("process-total", "process_count", Observed::Number(procs)),
                    gauge("zombies", "process_count", Observed::Number(zombies)),
                    gauge(
                        "disk-space",
                        "disk",
                        Observed::Named(vec![
                            ("/".into(), Observed::Number(root)),
                            ("/var".into(), Observed::Number(var)),
                        ]),
                    ),
                    gauge("fd-used", "file_descriptors", Observed::Number(fds)),
                    gauge(
                        "api-connect",
                        "network",
                        Observed::Number(noise.normal(0.3, 0.1).abs() * 20.0),
                    ),
                ],
            )
        })
        .collect()
}

fn doc(nodes: Vec<patrol_checks::NodeEntry>) -> SweepDocument {
    document("prod", "01", T0, nodes)
}

#[test]
fn realistic_noisy_gauges_are_not_drift() {
    for (n, seed) in [(12, 1), (200, 2), (10_000, 3)] {
        let drift = find_drift(&doc(noisy_fleet(n, seed)));
        assert!(drift.is_empty(), "{n} nodes: {drift:#?}");
    }
}

#[test]
fn one_real_gauge_outlier_is_found_and_only_it() {
    let mut nodes = noisy_fleet(200, 4);
    // Someone left a fork bomb test running on one node.
    nodes[137].checks[2] = gauge("process-total", "process_count", Observed::Number(4800.0));
    // And filled /var on another (still under its expectation, so it passes).
    nodes[42].checks[4] = gauge(
        "disk-space",
        "disk",
        Observed::Named(vec![
            ("/".into(), Observed::Number(40.0)),
            ("/var".into(), Observed::Number(99.0)),
        ]),
    );
    let drift = find_drift(&doc(nodes));
    assert_eq!(drift.len(), 2, "{drift:#?}");
    let disk = &drift[0];
    assert_eq!(disk.check, "disk-space[/var]");
    assert_eq!(disk.nodes, vec!["w00042"]);
    assert_eq!(disk.value, "99");
    let procs = &drift[1];
    assert_eq!(procs.check, "process-total");
    assert_eq!(procs.nodes, vec!["w00137"]);
    assert_eq!(procs.value, "4800");
    assert_eq!(procs.majority_count, 199);
    assert!(matches!(procs.rule, DriftRule::Outlier { .. }));
    assert!(
        procs
            .title()
            .starts_with("process-total = 4800 on 1 node, median 3"),
        "{}",
        procs.title()
    );
}

#[test]
fn a_discrete_setting_still_drifts_from_the_majority_among_noisy_gauges() {
    let mut nodes = noisy_fleet(50, 5);
    for (i, n) in nodes.iter_mut().enumerate() {
        let v = if i == 7 { "0" } else { "1" };
        n.checks.push(gauge(
            "ip-forward",
            "sysctl",
            Observed::Number(v.parse().unwrap()),
        ));
    }
    let drift = find_drift(&doc(nodes));
    assert_eq!(drift.len(), 1, "{drift:#?}");
    assert_eq!(drift[0].title(), "ip-forward = 0 on 1 node, 1 on 49 others");
    assert_eq!(drift[0].rule, DriftRule::Majority);
}

#[test]
fn latencies_are_left_out_as_the_kind_declares() {
    let mut nodes = noisy_fleet(50, 6);
    nodes[3].checks[6] = gauge("api-connect", "network", Observed::Number(900.0));
    let mut etcd = noisy_fleet(50, 7);
    for (i, n) in etcd.iter_mut().enumerate() {
        let ms = if i == 0 { 900.0 } else { 2.0 };
        n.checks = vec![gauge(
            "etcd",
            "etcd_health",
            Observed::Named(vec![("latency_ms".into(), Observed::Number(ms))]),
        )];
    }
    assert!(find_drift(&doc(etcd)).is_empty());
    // The network kind's TCP latency is not compared either.
    assert!(find_drift(&doc(nodes)).is_empty());
}
