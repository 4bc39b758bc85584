//! Aggregation, diff (new / persisting / resolved) and drift on hand-made
//! sweep documents.

use patrol_checks::{NodeState, Observed, Status};
use patrol_report::aggregate::{aggregate, group_anomalies};
use patrol_report::diff::Change;
use patrol_report::drift::find_drift;
use patrol_report::sample::{document, node, outcome};

mod common;
use common::{day_one, day_two, file_max, somaxconn, swappiness, DAY, T0};
use patrol_report::{build, PreviousSweep};

#[test]
fn headline_counts_states_checks_and_pass_rate() {
    let doc = day_one();
    let a = aggregate(&doc);
    let h = &a.headline;
    assert_eq!(
        (h.expected, h.ok, h.failing, h.no_answer, h.down),
        (7, 3, 2, 1, 1)
    );
    assert_eq!(h.checks_run, 15);
    assert_eq!(h.checks_passed, 12);
    assert!((h.pass_rate_pct - 80.0).abs() < 1e-9);
    assert_eq!(h.duration_ms, 1250);
    assert_eq!(h.reached_p99_ms, Some(180));
}

#[test]
fn anomalies_group_by_check_status_and_value_worst_first() {
    let doc = day_one();
    let groups = group_anomalies(&doc);
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].key.check, "fs.file-max");
    assert_eq!(groups[0].key.status, Status::Fail);
    assert_eq!(groups[0].nodes, vec!["node-a", "node-b"]);
    assert_eq!(
        groups[0].title(),
        "fs.file-max = 65536, expected >= 1048576"
    );
    assert_eq!(groups[1].key.check, "net.core.somaxconn");
    assert_eq!(groups[1].nodes, vec!["node-b"]);
}

#[test]
fn more_nodes_first_within_a_severity() {
    let w = [("role", "worker")];
    let doc = document(
        "prod",
        "01",
        T0,
        vec![
            node("n1", &w, NodeState::Ok, vec![file_max(1.0)]),
            node("n2", &w, NodeState::Ok, vec![file_max(2.0)]),
            node("n3", &w, NodeState::Ok, vec![file_max(2.0)]),
            node("n4", &w, NodeState::Ok, vec![somaxconn(1.0)]),
            node("n5", &w, NodeState::Ok, vec![somaxconn(1.0)]),
            node("n6", &w, NodeState::Ok, vec![somaxconn(1.0)]),
        ],
    );
    let g = group_anomalies(&doc);
    let order: Vec<(String, usize)> = g
        .iter()
        .map(|g| (g.key.observed.clone(), g.nodes.len()))
        .collect();
    // fail before warn even with fewer nodes; within fail, 2 nodes before 1.
    assert_eq!(
        order,
        vec![("2".into(), 2), ("1".into(), 1), ("1".into(), 3)]
    );
    assert_eq!(g[2].key.status, Status::Warn);
}

#[test]
fn unreachable_nodes_listed_no_answer_then_down() {
    let a = aggregate(&day_one());
    let names: Vec<(&str, NodeState)> = a
        .unreachable
        .iter()
        .map(|u| (u.name.as_str(), u.state))
        .collect();
    assert_eq!(
        names,
        vec![("node-f", NodeState::NoAnswer), ("node-g", NodeState::Down)]
    );
}

#[test]
fn without_previous_sweep_every_group_is_new() {
    let r = build(&day_one(), None);
    assert!(r.groups.iter().all(|g| g.change == Change::New));
    assert!(r.resolved.is_empty());
    assert_eq!(r.new_groups(), 2);
}

#[test]
fn diff_marks_new_persisting_and_resolved() {
    let one = day_one();
    let r = build(
        &day_two(),
        Some(PreviousSweep {
            doc: &one,
            first_seen: None,
        }),
    );
    let marks: Vec<(String, Change)> = r
        .groups
        .iter()
        .map(|g| (g.group.key.observed.clone(), g.change))
        .collect();
    assert_eq!(
        marks,
        vec![
            (
                "65536".to_string(),
                Change::Persisting { since_unix_ms: T0 }
            ),
            ("8192".to_string(), Change::New),
        ]
    );
    assert_eq!(r.resolved.len(), 1);
    assert_eq!(r.resolved[0].group.key.check, "net.core.somaxconn");
    assert_eq!(r.resolved[0].change, Change::Resolved);
    assert_eq!(r.previous, Some(("00000000000000a1".to_string(), T0)));
}

#[test]
fn persisting_since_carries_the_first_seen_date_across_sweeps() {
    let one = day_one();
    let r2 = build(
        &day_two(),
        Some(PreviousSweep {
            doc: &one,
            first_seen: None,
        }),
    );
    let seen2 = r2.first_seen();
    let mut three = day_two();
    three.sweep_id = "00000000000000a3".into();
    three.started_at_unix_ms = T0 + 2 * DAY;
    let two = day_two();
    let r3 = build(
        &three,
        Some(PreviousSweep {
            doc: &two,
            first_seen: Some(&seen2),
        }),
    );
    let changes: Vec<Change> = r3.groups.iter().map(|g| g.change).collect();
    // file-max 65536 first seen on day one; 8192 first seen on day two.
    assert_eq!(
        changes,
        vec![
            Change::Persisting { since_unix_ms: T0 },
            Change::Persisting {
                since_unix_ms: T0 + DAY
            },
        ]
    );
}

#[test]
fn drift_flags_the_minority_value_of_a_peer_group() {
    let w = [("role", "worker")];
    let mut nodes: Vec<_> = (0..12)
        .map(|i| {
            node(
                &format!("w{i:02}"),
                &w,
                NodeState::Ok,
                vec![swappiness(if i % 5 == 1 { 60.0 } else { 0.0 })],
            )
        })
        .collect();
    // A control node with another value is in another peer group: no drift.
    nodes.push(node(
        "c1",
        &[("role", "control")],
        NodeState::Ok,
        vec![swappiness(10.0)],
    ));
    let doc = document("prod", "01", T0, nodes);
    let drift = find_drift(&doc);
    assert_eq!(drift.len(), 1, "{drift:?}");
    let d = &drift[0];
    assert_eq!(d.nodes, vec!["w01", "w06", "w11"]);
    assert_eq!(d.value, "60");
    assert_eq!(d.majority_value, "0");
    assert_eq!(d.majority_count, 9);
    assert_eq!(d.peer_tags, "role=worker");
    assert_eq!(d.title(), "vm.swappiness = 60 on 3 nodes, 0 on 9 others");
}

#[test]
fn no_drift_when_values_simply_vary() {
    let w = [("role", "worker")];
    let nodes: Vec<_> = (0..12)
        .map(|i| {
            node(
                &format!("w{i:02}"),
                &w,
                NodeState::Ok,
                vec![outcome(
                    "memory.used_pct",
                    Status::Pass,
                    Observed::Number(f64::from(i % 4)),
                    "< 90",
                )],
            )
        })
        .collect();
    assert!(find_drift(&document("prod", "01", T0, nodes)).is_empty());
}

#[test]
fn failing_minority_is_an_anomaly_not_drift() {
    let doc = day_one();
    let drift = find_drift(&doc);
    // swappiness 60 on node-c is drift (4 of 5 have 0); file-max 65536 on
    // two nodes fails, so it is an anomaly group and never drift.
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(drift[0].check, "vm.swappiness");
    assert_eq!(drift[0].nodes, vec!["node-c"]);
}

#[test]
fn generated_sweep_has_groups_unreachable_and_drift() {
    let doc = patrol_report::sample::generate(2000, 100, 7);
    let r = build(&doc, None);
    assert_eq!(doc.nodes.len(), 2000);
    assert!(!r.groups.is_empty());
    let total: usize = r.groups.iter().map(|g| g.group.nodes.len()).sum();
    assert!(total <= 100 && total > 50, "{total}");
    assert!(!r.aggregate.unreachable.is_empty());
    assert!(r
        .drift
        .iter()
        .any(|d| d.check == "sysctl.vm.swappiness" && d.value == "60"));
}

/// Regression: a value that moved on the same node (zombies 108 -> 112)
/// was reported as one group resolved and another new.
#[test]
fn a_moved_value_on_the_same_node_persists_and_is_not_resolved() {
    let w = [("role", "worker")];
    let zombies = |v: f64| {
        outcome(
            "process.zombies",
            Status::Warn,
            Observed::Number(v),
            "<= 10",
        )
    };
    let before = document(
        "prod",
        "01",
        T0,
        vec![
            node("n1", &w, NodeState::Ok, vec![zombies(108.0)]),
            node("n2", &w, NodeState::Ok, vec![zombies(40.0)]),
            node("n3", &w, NodeState::Ok, vec![zombies(50.0)]),
        ],
    );
    let after = document(
        "prod",
        "02",
        T0 + DAY,
        vec![
            // n1 still too many zombies, another count: persisting.
            node("n1", &w, NodeState::Ok, vec![zombies(112.0)]),
            // n2 fixed: its group is resolved.
            node(
                "n2",
                &w,
                NodeState::Ok,
                vec![outcome(
                    "process.zombies",
                    Status::Pass,
                    Observed::Number(0.0),
                    "<= 10",
                )],
            ),
            // n3 unreachable: nothing known, neither resolved nor persisting.
            node("n3", &w, NodeState::Down, vec![]),
            // n4 newly failing: new.
            node("n4", &w, NodeState::Ok, vec![zombies(112.0)]),
        ],
    );
    let r = build(
        &after,
        Some(PreviousSweep {
            doc: &before,
            first_seen: None,
        }),
    );
    // n1 and n4 share the value 112: not every node failed before -> new.
    assert_eq!(r.groups.len(), 1);
    assert_eq!(r.groups[0].group.nodes, vec!["n1", "n4"]);
    assert_eq!(r.groups[0].change, Change::New);
    let resolved: Vec<(&str, &[String])> = r
        .resolved
        .iter()
        .map(|m| (m.group.key.observed.as_str(), m.group.nodes.as_slice()))
        .collect();
    assert_eq!(resolved, vec![("40", &["n2".to_string()][..])]);

    // Without n4, the moved value alone persists since the first sweep.
    let mut only_n1 = after.clone();
    only_n1.nodes.retain(|n| n.name != "n4");
    let r = build(
        &only_n1,
        Some(PreviousSweep {
            doc: &before,
            first_seen: None,
        }),
    );
    assert_eq!(r.groups[0].group.nodes, vec!["n1"]);
    assert_eq!(r.groups[0].change, Change::Persisting { since_unix_ms: T0 });
    assert_eq!(r.new_groups(), 0);
}
