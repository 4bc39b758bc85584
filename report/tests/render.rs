//! Snapshot tests of the rendered subject, text and HTML on hand-made
//! sweep documents, and the bound on the HTML size for a large fleet.

use patrol_report::render::{html, subject, text, view};
use patrol_report::{build, PreviousSweep};

mod common;
use common::{day_one, day_two};

#[test]
fn subject_counts_anomalies_new_and_unreachable() {
    let r = build(&day_one(), None);
    assert_eq!(
        subject(&r, "[patrol]"),
        "[patrol] prod: 2 anomalies (2 new), 2 unreachable, 1 drift - 2026-11-22"
    );
}

#[test]
fn first_day_text_and_html() {
    let r = build(&day_one(), None);
    let v = view(&r, "[patrol]");
    insta::assert_snapshot!("day_one_text", text(&v).unwrap());
    insta::assert_snapshot!("day_one_html", html(&v).unwrap());
}

#[test]
fn second_day_text_and_html_with_diff() {
    let one = day_one();
    let r = build(
        &day_two(),
        Some(PreviousSweep {
            doc: &one,
            first_seen: None,
        }),
    );
    let v = view(&r, "[patrol]");
    insta::assert_snapshot!("day_two_text", text(&v).unwrap());
    insta::assert_snapshot!("day_two_html", html(&v).unwrap());
}

#[test]
fn html_escapes_values_from_the_fleet() {
    let mut doc = day_one();
    doc.nodes[0].checks[0].observed = patrol_checks::Observed::Text("<script>x</script>".into());
    let r = build(&doc, None);
    let h = html(&view(&r, "[patrol]")).unwrap();
    assert!(!h.contains("<script>"));
    assert!(
        h.contains("&#60;script&#62;") || h.contains("&lt;script&gt;"),
        "escaped value missing"
    );
}

#[test]
fn large_fleet_html_is_bounded_and_names_are_sampled() {
    let doc = patrol_report::sample::generate(10_000, 400, 42);
    let r = build(&doc, None);
    let h = html(&view(&r, "[patrol]")).unwrap();
    assert!(h.len() < 500 * 1024, "HTML is {} bytes", h.len());
    // Every node is still in the CSV.
    let csv = patrol_report::attachment::csv(&doc);
    for n in doc.nodes.iter().step_by(997) {
        assert!(csv.contains(&n.name), "{} missing from the CSV", n.name);
    }
}

/// The worst case for the HTML size (about 300 KB): every section full of distinct
/// groups (unique values on thousands of nodes, long node names, long
/// remediation text), plus a thousand unreachable nodes.
#[test]
fn html_stays_under_500_kb_when_every_section_overflows() {
    let (before, now) = patrol_report::sample::overflowing(10_000, common::T0);
    let r = build(
        &now,
        Some(PreviousSweep {
            doc: &before,
            first_seen: None,
        }),
    );
    assert!(r.groups.len() > 5_000 && r.resolved.len() > 5_000 && r.drift.len() > 500);
    let v = view(&r, "[patrol]");
    let h = html(&v).unwrap();
    eprintln!("worst case: HTML {} KB", h.len() / 1024);
    assert!(h.len() < 400 * 1024, "HTML is {} KB", h.len() / 1024);
    let t = text(&v).unwrap();
    assert!(t.len() < 500 * 1024, "text is {} KB", t.len() / 1024);
    assert!(h.contains("not shown, every one is in the CSV"));
}

#[test]
fn a_huge_observed_value_is_clipped_in_the_bodies_and_kept_in_the_csv() {
    let mut doc = day_one();
    let line = format!("kernel: {}", "segfault at 0 ip 00007f ".repeat(400));
    doc.nodes[0].checks[0].observed = patrol_checks::Observed::Text(line.clone());
    let r = build(&doc, None);
    let v = view(&r, "[patrol]");
    let h = html(&v).unwrap();
    let t = text(&v).unwrap();
    assert!(h.len() < 12_000, "HTML is {} bytes", h.len());
    assert!(t.contains("kernel: segfault at 0 ip 00007f segfault"));
    assert!(t.contains("..."));
    assert!(!t.contains(&line));
    assert!(patrol_report::attachment::csv(&doc).contains(&line));
}

#[test]
fn many_values_of_one_check_fold_into_one_family_card() {
    use patrol_checks::{NodeState, Observed, Status};
    use patrol_report::sample::{document, node, outcome};

    let w = [("role", "worker")];
    let disk = |v: f64| {
        outcome(
            "disk.root_used_pct",
            Status::Fail,
            Observed::Number(v),
            "< 85",
        )
    };
    let ok = || {
        outcome(
            "disk.root_used_pct",
            Status::Pass,
            Observed::Number(40.0),
            "< 85",
        )
    };
    let doc = |values: &[(&str, f64)], id: &str, at: u64| {
        let mut nodes: Vec<_> = values
            .iter()
            .map(|(n, v)| node(n, &w, NodeState::Ok, vec![disk(*v)]))
            .collect();
        nodes.push(node("n9", &w, NodeState::Ok, vec![ok()]));
        document("prod", id, at, nodes)
    };
    // Three values: three cards, as the spec's grouping says.
    let three = doc(
        &[("n1", 86.0), ("n2", 87.0), ("n3", 90.0)],
        "c0",
        common::T0,
    );
    let v = view(&build(&three, None), "[patrol]");
    assert_eq!(v.groups.len(), 3);
    // Five values on five nodes: one family card, every node counted.
    let before = doc(
        &[("n1", 86.0), ("n2", 87.0), ("n3", 90.0), ("n4", 99.0)],
        "c1",
        common::T0,
    );
    let after = doc(
        &[
            ("n1", 86.0),
            ("n2", 88.0),
            ("n3", 90.0),
            ("n4", 99.0),
            ("n5", 95.0),
        ],
        "c2",
        common::T0 + common::DAY,
    );
    let r = build(
        &after,
        Some(PreviousSweep {
            doc: &before,
            first_seen: None,
        }),
    );
    assert_eq!(r.groups.len(), 5, "the groups themselves are unchanged");
    let v = view(&r, "[patrol]");
    assert_eq!(v.groups.len(), 1);
    assert_eq!(v.groups_total, 5);
    let card = &v.groups[0];
    assert_eq!(
        card.title,
        "disk.root_used_pct = 86 .. 99 (5 values), expected < 85"
    );
    assert_eq!(card.count, "5 nodes");
    // n2 moved from 87 to 88: persisting; n5 never failed before: new.
    assert_eq!(card.change, "NEW for 1 of 5 values");
    assert!(
        card.sample.starts_with("n1 (86), n2 (88), "),
        "{}",
        card.sample
    );
    let t = text(&v).unwrap();
    assert!(t.contains("ANOMALIES (5)"), "{t}");
    assert!(t.contains("[FAIL] [NEW for 1 of 5 values] disk.root_used_pct = 86 .. 99 (5 values), expected < 85 - 5 nodes"), "{t}");
}

/// A certified sweep: nodes gone from the roster, an answer SWIM
/// disagreed with, and intruders reported by two nodes.
#[test]
fn gone_nodes_swim_disagreement_and_intruders_in_text_and_html() {
    let r = build(&patrol_report::sample::with_roster(), None);
    let v = view(&r, "[patrol]");
    let t = text(&v).unwrap();
    for line in [
        "ANSWERED ALTHOUGH SWIM DISAGREED (1)\n  node-03 (10.0.7.54:7946): answered; SWIM said down\n",
        "GONE FROM THE ROSTER (2)\n  [FORGOTTEN] node-9 (10.0.0.9:7946): last seen 2026-11-21 22:40 UTC, gone 2026-11-22 02:41 UTC\n      an operator forgot it (patrol roster forget)\n  [EXPIRED] node-7 (10.0.0.7:7946): last seen 2026-11-15 03:12 UTC, gone 2026-11-22 02:10 UTC\n",
        "  [FAIL] [NEW] patrol.intruder = node-01 at 10.9.9.9:7946, expected only certified nodes in the mesh - 2 nodes\n      seen by node-02, node-04\n      fix: find the process at 10.9.9.9:7946 and stop it;",
    ] {
        assert!(t.contains(line), "{line}\nnot in\n{t}");
    }
    insta::assert_snapshot!("roster_text", t);
    let h = html(&v).unwrap();
    for part in [
        "Answered although SWIM disagreed (1)",
        "answered; SWIM said down: its proven answer counts",
        "Gone from the roster (2)",
        "last seen 2026-11-15 03:12 UTC<br>gone 2026-11-22 02:10 UTC",
        "seen by node-02, node-04",
    ] {
        assert!(h.contains(part), "{part} not in the HTML");
    }
    insta::assert_snapshot!("roster_html", h);
    // Without [trust] neither section appears.
    let plain = build(&common::day_one(), None);
    let t = text(&view(&plain, "[patrol]")).unwrap();
    assert!(
        !t.contains("SWIM DISAGREED") && !t.contains("GONE FROM"),
        "{t}"
    );
}

/// Four intruders fold into one family card: its fix names the value it
/// was written for, not all four addresses as if they were one.
#[test]
fn a_family_of_intruders_says_whose_fix_it_shows() {
    let mut doc = patrol_report::sample::with_roster();
    let model = doc.nodes[1].checks[1].clone();
    for (i, n) in doc.nodes.iter_mut().enumerate() {
        let addr = format!("10.9.9.{i}:7946");
        let mut c = model.clone();
        c.observed = patrol_checks::Observed::Text(format!("node-01 at {addr}"));
        c.remediation = format!("find the process at {addr} and stop it");
        n.checks.retain(|c| c.id != "patrol.intruder");
        n.checks.push(c);
    }
    let r = build(&doc, None);
    let t = text(&view(&r, "[patrol]")).unwrap();
    assert!(t.contains("patrol.intruder = node-01 at "), "{t}");
    assert!(
        t.contains(" (4 values), expected only certified nodes in the mesh - 4 nodes\n"),
        "{t}"
    );
    assert!(
        t.contains("      seen by node-01 (node-01 at 10.9.9.0:7946)"),
        "{t}"
    );
    assert!(
        t.contains("      fix: for node-01 at 10.9.9.0:7946: find the process at 10.9.9.0:7946 and stop it\n"),
        "{t}"
    );
}
