//! How long the built-in `k8s-node` profile takes on this machine, the way
//! an agent runs it (one tokio runtime, the runner's default concurrency
//! of 8, `RealHost`).
//!
//! ```text
//! cargo run --release -p patrol-checks --example profile_time [RUNS]
//! ```
//!
//! Prints every run's wall time, then min / median / max, and the median
//! time of each check (slowest first). One warm-up run is not counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use patrol_checks::{Catalog, RealHost, Runner};

fn median(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .map_err(|_| format!("RUNS must be a number, got `{a}`"))?,
        None => 21,
    };
    if runs == 0 {
        return Err("RUNS must be at least 1".into());
    }
    let catalog = Catalog::builtin_profile("k8s-node").ok_or("no k8s-node profile")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let runner = Runner::new(Arc::new(RealHost), 8);

    let warm = runtime.block_on(runner.run(catalog.checks()));
    println!(
        "k8s-node profile: {} checks, {} runs (+1 warm-up), {} CPUs",
        warm.len(),
        runs,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let mut totals = Vec::with_capacity(runs);
    let mut per_check: Vec<Vec<Duration>> = vec![Vec::new(); catalog.len()];
    for i in 0..runs {
        let start = Instant::now();
        let outcomes = runtime.block_on(runner.run(catalog.checks()));
        let took = start.elapsed();
        for (slot, o) in per_check.iter_mut().zip(&outcomes) {
            slot.push(Duration::from_micros(o.duration_us));
        }
        println!("run {:>3}: {}", i + 1, ms(took));
        totals.push(took);
    }
    totals.sort();
    println!(
        "whole profile: min {}, median {}, max {}",
        ms(totals[0]),
        ms(median(&totals)),
        ms(totals[totals.len() - 1])
    );
    let mut rows: Vec<(Duration, &str, &str)> = per_check
        .iter_mut()
        .zip(catalog.checks())
        .zip(&warm)
        .map(|((d, spec), o)| {
            d.sort();
            (median(d), spec.id.as_str(), o.status.as_str())
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    println!("median per check (slowest first):");
    for (d, id, status) in rows {
        println!("  {:>10}  {id} ({status})", ms(d));
    }
    Ok(())
}
