//! History benchmark: store a series of generated 10,000-node sweeps
//! (`sample::generate`, a new seed each night, so every gauge moves) in a
//! fresh history database the way the nightly job does: rebuild the
//! previous sweep, diff against it, store. Prints per sweep the time to
//! read the previous sweep and diff (`diff`), the time to store
//! (`store`), the value rows written, and the size on disk.
//!
//! ```text
//! cargo run --release -p patrol-report --example history_bench [NODES] [SWEEPS] [DIR]
//! ```
//!
//! Target (DESIGN.md): storing and diffing a 10,000-node sweep under 1 s.

use std::path::PathBuf;
use std::time::Instant;

use patrol_report::store::{History, Stored, SweepSummary, DB_FILE};
use patrol_report::summary::{build, PreviousSweep};

fn size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(DB_FILE))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let sweeps: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/history_bench"));
    let _ = std::fs::remove_dir_all(&dir);
    let mut history = History::open(&dir)?;
    println!(
        "{nodes} nodes, {sweeps} sweeps, database in {}",
        dir.display()
    );
    for night in 0..sweeps {
        let mut doc = patrol_report::sample::generate(nodes, 400, 42 + night);
        doc.sweep_id = format!("{:016x}", 0x1000 + night);
        doc.started_at_unix_ms += night * 86_400_000;

        let t = Instant::now();
        let previous = history.previous(&doc)?;
        let report = build(
            &doc,
            previous.as_ref().map(|p| PreviousSweep {
                doc: &p.doc,
                first_seen: Some(&p.first_seen),
            }),
        );
        let diff = t.elapsed();

        let t = Instant::now();
        let stored = history.store(&doc, &report.first_seen(), SweepSummary::of(&report), 400)?;
        let store = t.elapsed();
        let rows = match stored {
            Stored::Added { changes } => changes,
            _ => 0,
        };
        println!(
            "sweep {night}: diff {:>6.0} ms  store {:>6.0} ms  total {:>6.0} ms  {rows:>7} value rows  {:>6.1} MB on disk  ({} groups, {} resolved)",
            diff.as_secs_f64() * 1000.0,
            store.as_secs_f64() * 1000.0,
            (diff + store).as_secs_f64() * 1000.0,
            size(&dir) as f64 / 1e6,
            report.groups.len(),
            report.resolved.len(),
        );
    }
    drop(history);
    println!("closed: {:.1} MB on disk", size(&dir) as f64 / 1e6);
    Ok(())
}
