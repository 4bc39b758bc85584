//! Render benchmark: a generated sweep of 10,000 nodes with a few hundred
//! anomalies, rendered to HTML, text and CSV several times; prints the
//! median and the slowest time, the sizes; then renders the worst case for
//! the size ([`patrol_report::sample::overflowing`]) once; and writes the
//! last HTML of the first part to
//! `target/render_bench/report.html` for a look in a browser.
//!
//! ```text
//! cargo run --release -p patrol-report --example render_bench [NODES] [ANOMALIES] [RUNS]
//! ```
//!
//! Target (DESIGN.md): under 1 s, HTML under 500 KB.

use std::time::{Duration, Instant};

use patrol_report::render::{html, text, view};
use patrol_report::{attachment, build};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let nodes = arg(1, 10_000);
    let anomalies = arg(2, 400);
    let runs = arg(3, 9).max(1);

    let doc = patrol_report::sample::generate(nodes, anomalies, 42);
    // A previous sweep with a slightly different set of anomalies, so the
    // diff marks some groups new, some persisting, and some resolved.
    let previous = patrol_report::sample::generate(nodes, anomalies, 7);

    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    let mut sizes = (0, 0, 0);
    let mut last_html = String::new();
    let mut groups = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let report = build(
            &doc,
            Some(patrol_report::PreviousSweep {
                doc: &previous,
                first_seen: None,
            }),
        );
        let v = view(&report, "[patrol]");
        let h = html(&v).expect("render HTML");
        let t = text(&v).expect("render text");
        let c = attachment::csv(&doc);
        times.push(start.elapsed());
        sizes = (h.len(), t.len(), c.len());
        groups = report.groups.len();
        last_html = h;
    }
    times.sort();
    let median = times[times.len() / 2];
    let max = times[times.len() - 1];
    println!(
        "{nodes} nodes, {anomalies} anomalous outcomes -> {groups} anomaly groups, {} unreachable",
        doc.counts.no_answer + doc.counts.down
    );
    println!(
        "aggregate + diff + drift + HTML + text + CSV: median {:.1} ms, max {:.1} ms over {runs} runs",
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    println!(
        "HTML {:.1} KB, text {:.1} KB, CSV {:.1} KB",
        sizes.0 as f64 / 1024.0,
        sizes.1 as f64 / 1024.0,
        sizes.2 as f64 / 1024.0
    );

    // The worst case for the size: every section overflowing.
    let (before, now) = patrol_report::sample::overflowing(nodes, 1_795_316_400_000);
    let start = Instant::now();
    let report = build(
        &now,
        Some(patrol_report::PreviousSweep {
            doc: &before,
            first_seen: None,
        }),
    );
    let v = view(&report, "[patrol]");
    let h = html(&v).expect("render HTML");
    let t = text(&v).expect("render text");
    let c = attachment::csv(&now);
    println!(
        "worst case ({} groups, {} resolved, {} drift): one run {:.1} ms, HTML {:.1} KB, text {:.1} KB, CSV {:.1} KB",
        report.groups.len(),
        report.resolved.len(),
        report.drift.len(),
        start.elapsed().as_secs_f64() * 1e3,
        h.len() as f64 / 1024.0,
        t.len() as f64 / 1024.0,
        c.len() as f64 / 1024.0
    );

    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/render_bench");
    if std::fs::create_dir_all(&out).is_ok()
        && std::fs::write(out.join("report.html"), &last_html).is_ok()
    {
        println!("HTML written to {}", out.join("report.html").display());
    }
}
