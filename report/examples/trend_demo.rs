//! A month of nightly reports for a look at the trend chart: 30 generated
//! sweeps (`sample::generate`, anomalies rising then falling) stored one by
//! one with `write_report`, as the nightly job does; the last report
//! (HTML with `trend.png` beside it) ends up in `OUT/last/`.
//!
//! ```text
//! cargo run --release -p patrol-report --example trend_demo [OUT] [NODES]
//! chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
//!   --screenshot=OUT/last.png --window-size=700,1400 file://$PWD/OUT/last/report.html
//! ```

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "target/trend_demo".into()));
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let _ = std::fs::remove_dir_all(&out);
    let mut config = patrol_config::Config::default();
    config.report.history_dir = out.join("history");
    for night in 0..30u64 {
        // A bad rollout around night 12, fixed by night 20.
        let anomalies = match night {
            0..=9 => 40 + night as usize * 3,
            10..=19 => 120 + (night as usize - 10) * 25,
            _ => 60usize.saturating_sub(night as usize - 20),
        };
        let mut doc = patrol_report::sample::generate(nodes, anomalies, 1000 + night);
        doc.sweep_id = format!("{:016x}", 0x3000 + night);
        doc.started_at_unix_ms += night * 86_400_000;
        let dir = if night == 29 {
            out.join("last")
        } else {
            out.join(format!("night-{night:02}"))
        };
        let files = patrol_report::write_report(&doc, &config, &dir)?;
        for w in files.warnings {
            eprintln!("warning: {w}");
        }
    }
    println!("{}", out.join("last/report.html").display());
    Ok(())
}
