//! The simulator as a regular test: 1,000 nodes running the real foca and
//! the real sweep core over a lossy simulated network with dead, dying and
//! slow nodes. Asserts completeness and correct accounting (never timing),
//! and that a seed fully determines the outcome.

use std::time::Duration;

use patrol_tests::sim::{self, SimReport, SimSettings};

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

fn without_cpu(mut r: SimReport) -> SimReport {
    r.cpu.coordinator_ms = 0.0;
    r.cpu.node_mean_us = 0.0;
    r
}

#[test]
fn a_seed_determines_the_whole_report() {
    let settings = faulty(11);
    // The CPU figures are measured (real time), not simulated: everything
    // else must repeat exactly.
    let a = without_cpu(run(&settings));
    let b = without_cpu(run(&settings));
    assert_eq!(a, b);
    let json = |r: &SimReport| serde_json::to_string(r).expect("report encodes");
    assert_eq!(json(&a), json(&b));
    let c = run(&faulty(12));
    assert_ne!(json(&a), json(&c), "another seed should give another run");
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
