//! The simulator as a regular test: 1,000 nodes running the real foca and
//! the real sweep core over a lossy simulated network with dead, dying and
//! slow nodes. Asserts completeness and correct accounting (never timing),
//! that a seed fully determines the outcome, and that the cost model
//! charges the nodes' CPU.

use std::time::Duration;

use patrol_tests::sim::{self, CpuMode, SimReport, SimSettings};

fn faulty(seed: u64) -> SimSettings {
    SimSettings {
        nodes: 1000,
        down_before: 0.05,
        crashed_before: 0.01,
        die_during: 0.01,
        slow: 0.02,
        slow_check: Duration::from_millis(400),
        deadline: Duration::from_secs(3),
        seed,
        link: sim::LinkModel {
            loss: 0.03,
            ..SimSettings::default().link
        },
        ..SimSettings::default()
    }
}

fn run(settings: &SimSettings) -> SimReport {
    let report = sim::run(settings).expect("valid settings");
    assert!(
        report.accounting.ok,
        "accounting problems ({}):\n{}",
        report.accounting.problem_count,
        report.render()
    );
    report
}

#[test]
fn thousand_nodes_with_loss_and_dead_nodes_are_all_accounted_for() {
    for seed in [1, 2, 3] {
        let r = run(&faulty(seed));
        let p = &r.population;
        let text = r.render();
        assert_eq!(p.nodes, 1000);
        assert_eq!(p.down_before, 50, "{text}");
        assert_eq!(p.crashed_before, 10, "{text}");
        assert_eq!(p.died_during, 10, "{text}");
        // Every node listed exactly once (also checked by the accounting).
        assert_eq!(r.states.expected, 1000, "{text}");
        assert_eq!(
            r.states.ok + r.states.failing + r.states.no_answer + r.states.down,
            1000,
            "{text}"
        );
        assert_eq!(r.states.late_joiners, 0, "{text}");
        // The request reached every live node and every live node answered.
        assert_eq!(r.reach.live_reached, p.live, "{text}");
        assert!(r.reach.p100_ms.is_some(), "{text}");
        // Known-down nodes are down; the crashed ones cannot have answered,
        // and the dying ones may or may not have.
        assert!(r.states.down >= 50, "{text}");
        let answered = r.states.ok + r.states.failing;
        assert!(answered >= p.live as u64, "{text}");
        assert!(answered <= (p.live + p.died_during) as u64, "{text}");
        assert_eq!(
            r.states.no_answer + r.states.down + answered,
            1000,
            "{text}"
        );
        // Silent nodes hold the sweep until its deadline.
        assert!(r.completion.completed_ms.is_some(), "{text}");
        assert!(!r.completion.before_deadline, "{text}");
        // With 3% loss some answers must have needed a second send.
        assert!(r.answers.answer_packets_lost > 0, "{text}");
        assert_eq!(
            r.answers.first_send + r.answers.recovered_by_retry + r.answers.recovered_by_backstop,
            answered,
            "{text}"
        );
        // A mesh this small answers the coordinator directly.
        assert_eq!(r.relays.relays, 0, "{text}");
    }
}

#[test]
fn without_faults_every_node_answers_before_the_deadline() {
    let r = run(&SimSettings {
        nodes: 1000,
        seed: 7,
        ..SimSettings::default()
    });
    let text = r.render();
    assert_eq!(r.states.ok + r.states.failing, 1000, "{text}");
    assert_eq!(r.states.failing, 20, "{text}");
    assert!(r.completion.before_deadline, "{text}");
}

#[test]
fn a_seed_determines_the_whole_report() {
    // The default charges CPU from the cost model: the CPU figures repeat
    // with everything else.
    let settings = faulty(11);
    let a = run(&settings);
    let b = run(&settings);
    assert_eq!(a.cpu.mode, "model");
    assert_eq!(a, b);
    let json = |r: &SimReport| serde_json::to_string(r).expect("report encodes");
    assert_eq!(json(&a), json(&b));
    let c = run(&faulty(12));
    assert_ne!(json(&a), json(&c), "another seed should give another run");
}

fn healthy(nodes: usize, cpu: CpuMode) -> SimSettings {
    SimSettings {
        nodes,
        seed: 5,
        cpu,
        ..SimSettings::default()
    }
}

#[test]
fn the_cost_model_keeps_the_coordinator_busier_in_a_larger_mesh() {
    let small = run(&healthy(500, CpuMode::model()));
    let large = run(&healthy(1500, CpuMode::model()));
    let text = format!("{}\n{}", small.render(), large.render());
    for r in [&small, &large] {
        assert!(r.cpu.coordinator_ms > 0.0, "{text}");
        // Busy: the calls' charges plus 10 µs per datagram received.
        let rx_only = r.traffic.coordinator_received_packets as f64 * 0.01;
        assert!(r.cpu.coordinator_busy_ms > rx_only, "{text}");
        assert!(r.cpu.coordinator_busy_share > 0.0, "{text}");
    }
    assert!(
        large.cpu.coordinator_busy_ms > small.cpu.coordinator_busy_ms,
        "{text}"
    );
    assert!(
        large.cpu.coordinator_ms > small.cpu.coordinator_ms,
        "{text}"
    );
}

#[test]
fn with_cpu_off_a_node_is_busy_only_receiving_datagrams() {
    let r = run(&healthy(500, CpuMode::Off));
    let text = r.render();
    assert_eq!(r.cpu.mode, "off");
    // 10 µs per datagram the coordinator took in, nothing for its calls.
    let rx_only = r.traffic.coordinator_received_packets as f64 * 0.01;
    assert!((r.cpu.coordinator_busy_ms - rx_only).abs() < 1e-6, "{text}");
}

/// A mesh large enough for relays, with the faults of `faulty`.
fn relayed(nodes: usize, seed: u64) -> SimSettings {
    SimSettings {
        nodes,
        down_before: 0.05,
        die_during: 0.01,
        deadline: Duration::from_secs(3),
        seed,
        ..SimSettings::default()
    }
}

/// Answers are counted once, by how they got in.
fn assert_every_answer_counted_once(r: &SimReport) {
    let text = r.render();
    let a = &r.answers;
    assert_eq!(
        a.first_send + a.recovered_by_retry + a.recovered_by_backstop + r.relays.answers_relayed,
        r.states.ok + r.states.failing,
        "{text}"
    );
}

#[test]
fn relays_carry_most_answers_of_a_large_mesh_and_every_node_is_accounted_for() {
    let r = run(&relayed(3000, 21));
    let text = r.render();
    assert_eq!(r.relays.relays, 2, "{text}");
    // Every live node answered (checked by the accounting) and most of
    // them through a relay, so the coordinator received far fewer
    // datagrams than there are nodes.
    assert!(
        r.relays.answers_relayed * 10 >= (r.states.ok + r.states.failing) * 8,
        "{text}"
    );
    assert!(
        r.traffic.coordinator_received_packets * 2 < r.states.ok + r.states.failing,
        "{text}"
    );
    assert_every_answer_counted_once(&r);
    // A healthy node's compact answer fits one datagram.
    assert!(r.sizes.after_median * 3 < r.sizes.before_median, "{text}");
    assert!(r.sizes.one_datagram > 0.9, "{text}");
}

#[test]
fn a_relay_dying_during_the_sweep_costs_no_node_its_answer() {
    // One of the two relays dies 20-80 ms into the sweep, after taking
    // answers it never forwarded and while more are on their way to it:
    // its nodes must reach the coordinator directly.
    let r = run(&SimSettings {
        relays_die: 0.5,
        die_within: Duration::from_millis(80),
        ..relayed(2500, 22)
    });
    let text = r.render();
    assert_eq!(r.relays.relays, 2, "{text}");
    assert_eq!(r.relays.died, 1, "{text}");
    assert!(r.relays.answers_relayed > 0, "{text}");
    // The dead relay's nodes got through on a resend to the coordinator
    // or after its backstop asked them.
    assert!(
        r.answers.recovered_by_retry + r.answers.recovered_by_backstop >= 300,
        "{text}"
    );
    assert_every_answer_counted_once(&r);
}

#[test]
fn relayed_answers_keep_each_nodes_proof() {
    // With identities every relayed answer is checked against its own
    // node's proof (a forgery would be counted, and the node listed
    // no_answer: the accounting would fail).
    let r = run(&SimSettings {
        identities: true,
        warm_keys: true,
        ..relayed(2000, 23)
    });
    let text = r.render();
    assert_eq!(r.relays.relays, 2, "{text}");
    assert!(r.relays.answers_relayed > 1000, "{text}");
    assert_every_answer_counted_once(&r);
}

#[test]
fn impossible_settings_are_refused() {
    let bad = SimSettings {
        nodes: 1,
        ..SimSettings::default()
    };
    assert!(sim::run(&bad).is_err());
    let bad = SimSettings {
        down_before: 0.7,
        crashed_before: 0.5,
        ..SimSettings::default()
    };
    assert!(sim::run(&bad).is_err());
}

#[test]
fn with_converged_keys_the_participants_derive_no_pair_key_during_the_sweep() {
    // Without --converged-keys a node holds its view's certificates only
    // and derives keys as it meets members; with it, as a node of a
    // converged mesh, it derived them all before the sweep. The count is
    // deterministic (thread CPU is not involved).
    let base = SimSettings {
        identities: true,
        ..relayed(400, 31)
    };
    let partial = run(&base);
    let converged = run(&SimSettings {
        converged_keys: true,
        ..base
    });
    assert!(
        partial.cpu.others_keys_derived > 100,
        "{}",
        partial.render()
    );
    assert_eq!(
        converged.cpu.others_keys_derived,
        0,
        "{}",
        converged.render()
    );
    assert_every_answer_counted_once(&converged);
}
