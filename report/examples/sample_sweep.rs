//! Write a generated sweep document (the `sample::generate` fleet) as
//! JSON, for looking at the CLI and the report at scale without a fleet:
//!
//! ```text
//! cargo run -p patrol-report --example sample_sweep -- OUT.json [NODES] [ANOMALIES] [SEED]
//! patrol sweep --from OUT.json
//! ```

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .ok_or("usage: sample_sweep OUT.json [NODES] [ANOMALIES] [SEED]")?;
    let mut num = |default: u64| args.next().and_then(|a| a.parse().ok()).unwrap_or(default);
    let nodes = num(10_000) as usize;
    let anomalies = num(400) as usize;
    let seed = num(42);
    let doc = patrol_report::sample::generate(nodes, anomalies, seed);
    std::fs::write(&out, serde_json::to_vec_pretty(&doc)?)?;
    eprintln!("wrote {out}: {nodes} nodes, about {anomalies} anomalous outcomes");
    Ok(())
}
