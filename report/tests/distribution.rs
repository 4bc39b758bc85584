//! Value distributions: top values first, bounded, with sample names; a
//! rollout reads as `1.28.3 on N nodes, 1.27.9 on M (names)`.

use patrol_checks::{NodeState, Observed, Status};
use patrol_report::distribution::{distribution, distributions, TOP_VALUES};
use patrol_report::sample::{document, node, outcome};

fn version(v: &str) -> patrol_checks::CheckOutcome {
    let mut o = outcome(
        "kubelet-version",
        Status::Pass,
        Observed::Version(v.into()),
        "",
    );
    o.kind = "kubelet_version".into();
    o
}

#[test]
fn a_rollout_lists_the_leading_version_first_and_names_the_laggards() {
    let nodes: Vec<_> = (0..1000)
        .map(|i| {
            let v = match i {
                0..=11 => "1.27.9",
                12 => "1.26.1",
                _ => "1.28.3",
            };
            node(&format!("n{i:04}"), &[], NodeState::Ok, vec![version(v)])
        })
        .collect();
    let doc = document("prod", "01", 0, nodes);
    let d = distribution(&doc, "kubelet-version").unwrap();
    assert_eq!(d.observed, 1000);
    assert_eq!(d.distinct, 3);
    assert_eq!(
        d.line(),
        "kubelet-version: 1.28.3 on 987 nodes, 1.27.9 on 12 (n0000, n0001, n0002, ...), 1.26.1 on 1 (n0012)"
    );
    assert!(
        d.table()
            .contains("1.27.9       12 nodes   1.2%  n0000, n0001, n0002, ..."),
        "{}",
        d.table()
    );
    assert!(distribution(&doc, "nope").is_none());
}

#[test]
fn many_values_are_bounded_and_gauges_carry_quantiles() {
    let nodes: Vec<_> = (0..500)
        .map(|i| {
            let mut o = outcome("procs", Status::Pass, Observed::Number(f64::from(i)), "");
            o.kind = "process_count".into();
            let mut e = outcome("broken", Status::Error, Observed::None, "");
            e.kind = "sysctl".into();
            node(&format!("n{i:04}"), &[], NodeState::Ok, vec![o, e])
        })
        .collect();
    let doc = document("prod", "01", 0, nodes);
    let all = distributions(&doc);
    assert_eq!(all.len(), 2);
    let broken = &all[0];
    assert_eq!((broken.observed, broken.errors), (0, 500));
    let procs = &all[1];
    assert_eq!(procs.top.len(), TOP_VALUES);
    assert_eq!(procs.other_nodes, 500 - TOP_VALUES);
    let q = procs.quantiles.as_ref().unwrap();
    assert_eq!((q.min, q.p50, q.max), (0.0, 250.0, 499.0));
    assert_eq!(q.max_node, "n0499");
    assert!(procs.line().len() < 300, "{}", procs.line());
}

#[test]
fn the_text_report_shows_distributions() {
    let nodes: Vec<_> = (0..4)
        .map(|i| {
            node(
                &format!("n{i}"),
                &[],
                NodeState::Ok,
                vec![version(if i == 3 { "1.27.9" } else { "1.28.3" })],
            )
        })
        .collect();
    let doc = document("prod", "01", 0, nodes);
    let r = patrol_report::render_report(&doc, None, "[p]", &jiff::tz::TimeZone::UTC).unwrap();
    assert!(
        r.text
            .contains("kubelet-version: 1.28.3 on 3 nodes, 1.27.9 on 1 (n3)"),
        "{}",
        r.text
    );
    assert!(r
        .html
        .contains("kubelet-version: 1.28.3 on 3 nodes, 1.27.9 on 1 (n3)"));
}

#[test]
fn values_with_a_unit_show_it_and_a_gauge_of_all_different_values_gives_quantiles() {
    let nodes: Vec<_> = (0..6)
        .map(|i| {
            let mut mem = outcome(
                "memory-available",
                Status::Pass,
                Observed::Number(f64::from(40 + i)),
                "",
            );
            mem.kind = "memory".into();
            let mut disk = outcome(
                "disk-root",
                Status::Pass,
                Observed::Named(vec![("/".into(), Observed::Number(77.5))]),
                "",
            );
            disk.kind = "disk".into();
            node(&format!("n{i}"), &[], NodeState::Ok, vec![mem, disk])
        })
        .collect();
    let doc = document("prod", "01", 0, nodes);
    let mem = distribution(&doc, "memory-available").unwrap();
    assert_eq!(mem.unit.as_deref(), Some("%"));
    assert_eq!(
        mem.line(),
        "memory-available: 6 different values; min 40%, p50 43%, p90 45%, p99 45%, max 45% (n5)"
    );
    assert!(
        mem.table().contains("  40%        1 nodes"),
        "{}",
        mem.table()
    );
    let disk = distribution(&doc, "disk-root").unwrap();
    assert!(
        disk.line().starts_with("disk-root (values in %): "),
        "{}",
        disk.line()
    );
    // A config's own check decides its unit.
    let mut all = distributions(&doc);
    let units = std::collections::BTreeMap::from([("memory-available".to_string(), "MiB")]);
    patrol_report::distribution::label_units(&mut all, &units);
    assert!(all[1].line().contains("min 40 MiB"), "{}", all[1].line());
    assert_eq!(all[0].unit, None);
}
