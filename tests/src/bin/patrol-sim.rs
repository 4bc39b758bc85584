//! `patrol-sim`: simulate one sweep over N nodes running the real foca and
//! the real sweep core in virtual time, and report how it went.
//!
//! ```text
//! cargo run --release -p patrol-tests --bin patrol-sim -- --nodes 10000 --loss 0.01
//! cargo run --release -p patrol-tests --bin patrol-sim -- --nodes 10000 --cpu measured
//! cargo run --release -p patrol-tests --bin patrol-sim -- calibrate   # rewrites tests/sim-cost-model.toml
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use patrol_tests::sim::{self, CostModel, CpuMode, SimSettings};

/// The model file compiled into the simulator.
const MODEL_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sim-cost-model.toml");

/// Simulate a sweep over a whole fleet in virtual time (real foca, real
/// sweep core, simulated network). Same seed, same output.
#[derive(Debug, Parser)]
#[command(name = "patrol-sim", version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// How each node's calls into its code are charged on its clock:
    /// `model` (the calibrated cost model), `measured` (live thread CPU)
    /// or `off` (nothing; only --rx-service-us per datagram).
    #[arg(long, value_enum, default_value_t = Cpu::Model)]
    cpu: Cpu,
    /// With --cpu model: a model file instead of the one compiled in
    /// (tests/sim-cost-model.toml).
    #[arg(long)]
    cost_model: Option<PathBuf>,
    /// With --cpu model: multiply every charge by this.
    #[arg(long)]
    cpu_scale: Option<f64>,
    /// Nodes in the mesh, the coordinator included.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Members each node knows at the start (its initial foca member list;
    /// the coordinator knows all).
    #[arg(long, default_value_t = 64)]
    view: usize,
    /// One-way latency, lower bound (ms); drawn uniformly per datagram.
    #[arg(long, default_value_t = 0.1)]
    latency_min_ms: f64,
    /// One-way latency, upper bound (ms).
    #[arg(long, default_value_t = 1.0)]
    latency_max_ms: f64,
    /// Share of datagrams lost, 0..1 (0.01 = 1%).
    #[arg(long, default_value_t = 0.01)]
    loss: f64,
    /// Time a node spends receiving one datagram (µs); datagrams queue.
    #[arg(long, default_value_t = 10.0)]
    rx_service_us: f64,
    /// Datagrams a node's receive queue holds; more are dropped.
    #[arg(long, default_value_t = 4096)]
    rx_queue: usize,
    /// Share of nodes down before the sweep, known down to SWIM.
    #[arg(long, default_value_t = 0.0)]
    down_before: f64,
    /// Share of nodes crashed just before the sweep, still alive to SWIM.
    #[arg(long, default_value_t = 0.0)]
    crashed_before: f64,
    /// Share of nodes that die during the sweep.
    #[arg(long, default_value_t = 0.0)]
    die_during: f64,
    /// Dying nodes die at a uniform time this long after the start (ms).
    #[arg(long, default_value_t = 1000.0)]
    die_within_ms: f64,
    /// Share of nodes whose checks are slow.
    #[arg(long, default_value_t = 0.0)]
    slow: f64,
    /// Check duration on slow nodes (ms).
    #[arg(long, default_value_t = 1000.0)]
    slow_check_ms: f64,
    /// Check duration on other nodes: uniform from this (ms) ...
    #[arg(long, default_value_t = 5.0)]
    check_min_ms: f64,
    /// ... to this (ms).
    #[arg(long, default_value_t = 50.0)]
    check_max_ms: f64,
    /// Share of nodes reporting one failing check.
    #[arg(long, default_value_t = 0.02)]
    failing: f64,
    /// Synthetic answers of about this many bytes, the same on every node
    /// (default: the built-in k8s-node profile's answer as a real host
    /// gives it, with per-node values).
    #[arg(long)]
    result_bytes: Option<usize>,
    /// Share of the relays the coordinator names that die during the
    /// sweep (at least one when above zero).
    #[arg(long, default_value_t = 0.0)]
    relays_die: f64,
    /// The sweep's deadline (ms).
    #[arg(long, default_value_t = 5000.0)]
    deadline_ms: f64,
    /// Nodes come up at random times within this before the sweep (ms).
    #[arg(long, default_value_t = 1000.0)]
    warmup_ms: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run this many seeds (seed, seed+1, ...) and print one line each.
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Node and operator identities on: certificates, a signed sweep
    /// checked by every node, answers proved by their node.
    #[arg(long)]
    identities: bool,
    /// With --identities: every node knows the coordinator has its
    /// certificate, as after a first sweep (without: every answer carries
    /// its whole certificate, as in the first sweep after a coordinator
    /// start).
    #[arg(long, requires = "identities")]
    warm_keys: bool,
    /// With --identities: the coordinator did not derive its members'
    /// pair keys when it learned their certificates, but derives each as
    /// its answer arrives (as the agent did before; for comparison).
    #[arg(long, requires = "identities", conflicts_with = "warm_keys")]
    cold_keys: bool,
    /// With --identities: every node also holds the certificate and pair
    /// key of each member a packet mentions, as a node of a converged mesh
    /// learned them before the sweep (set-up, not charged; slower to set
    /// up). Without: nodes hold their view's only, and meet the others'
    /// certificates during the sweep.
    #[arg(long, requires = "identities")]
    converged_keys: bool,

    /// Tuning: foca max_transmissions (default: from foca_config).
    #[arg(long)]
    max_transmissions: Option<u8>,
    /// Tuning: foca fan-out (num_indirect_probes).
    #[arg(long)]
    fanout: Option<usize>,
    /// Tuning: foca periodic gossip period (ms).
    #[arg(long)]
    gossip_every_ms: Option<f64>,
    /// Tuning: answer spread window per expected node (µs).
    #[arg(long)]
    answer_spread_per_node_us: Option<f64>,
    /// Tuning: answer spread window cap (ms).
    #[arg(long)]
    answer_spread_max_ms: Option<f64>,
    /// Tuning: first answer resend delay (ms).
    #[arg(long)]
    retry_initial_ms: Option<f64>,
    /// Tuning: longest answer resend delay (ms).
    #[arg(long)]
    retry_max_ms: Option<f64>,
    /// Tuning: coordinator tick (ms).
    #[arg(long)]
    tick_ms: Option<f64>,
    /// Tuning: earliest first backstop after the spread window (ms).
    #[arg(long)]
    backstop_min_delay_ms: Option<f64>,
    /// Tuning: answers quiet for this long allow the backstop (ms).
    #[arg(long)]
    backstop_quiet_ms: Option<f64>,
    /// Tuning: share of the deadline after which the backstop runs anyway (%).
    #[arg(long)]
    backstop_deadline_percent: Option<u32>,
    /// Tuning: wait between backstop rounds, doubling (ms).
    #[arg(long)]
    backstop_interval_ms: Option<f64>,
    /// Tuning: relays engage from this many expected nodes (a huge value
    /// turns them off).
    #[arg(long)]
    relay_min_nodes: Option<usize>,
    /// Tuning: nodes per relay.
    #[arg(long)]
    nodes_per_relay: Option<usize>,
    /// Tuning: most relays a request names.
    #[arg(long)]
    max_relays: Option<usize>,
    /// Tuning: answer spread window per expected node with relays (µs).
    #[arg(long)]
    relay_spread_per_node_us: Option<f64>,
    /// Tuning: a relay forwards what it holds after this long (ms).
    #[arg(long)]
    relay_flush_ms: Option<f64>,
    /// Tuning: batches a relay has in flight to the coordinator at most.
    #[arg(long)]
    relay_window: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Cpu {
    Model,
    Measured,
    Off,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure what each kind of node call costs on this machine (thread
    /// CPU) in healthy sweeps, fit the cost model and write it.
    Calibrate {
        /// Mesh sizes to measure at; the largest should reach the size you
        /// simulate (the coordinator and relays hold every member).
        #[arg(long, value_delimiter = ',', default_values_t = [3000, 30000, 100000])]
        nodes: Vec<usize>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write the model (default: the file compiled into the
        /// simulator, tests/sim-cost-model.toml; rebuild to use it).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn cpu_mode(a: &Args) -> Result<CpuMode> {
    Ok(match a.cpu {
        Cpu::Measured => CpuMode::Measured,
        Cpu::Off => CpuMode::Off,
        Cpu::Model => {
            let mut model = match &a.cost_model {
                None => CostModel::builtin().context(
                    "the compiled-in tests/sim-cost-model.toml (rewrite it with `patrol-sim calibrate`)",
                )?,
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("read {}", path.display()))?;
                    CostModel::parse(&text).with_context(|| format!("in {}", path.display()))?
                }
            };
            if let Some(scale) = a.cpu_scale {
                if !scale.is_finite() || scale < 0.0 {
                    bail!("--cpu-scale must be a number >= 0 (got {scale})");
                }
                model.scale *= scale;
            }
            CpuMode::Model(Arc::new(model))
        }
    })
}

fn calibrate(nodes: &[usize], seed: u64, out: Option<PathBuf>) -> Result<()> {
    let out = out.unwrap_or_else(|| PathBuf::from(MODEL_FILE));
    let sizes: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    let command = format!(
        "cargo run --release -p patrol-tests --bin patrol-sim -- calibrate --nodes {} --seed {seed}",
        sizes.join(",")
    );
    let c = sim::calibrate::calibrate(nodes, seed, &command, |line| eprintln!("  {line}"))
        .context("calibration run")?;
    std::fs::write(&out, &c.text).with_context(|| format!("write {}", out.display()))?;
    for (kind, n, measured, modelled) in &c.kinds {
        println!(
            "{kind:<18} {n:>9} calls: measured {measured:>9.1} ms, modelled {modelled:>9.1} ms"
        );
    }
    for (nodes, measured, modelled) in &c.coordinator {
        println!(
            "coordinator at {nodes} nodes: measured {measured:.1} ms, modelled {modelled:.1} ms"
        );
    }
    println!("wrote {} (rebuild patrol-sim to use it)", out.display());
    Ok(())
}

fn millis(v: f64, what: &str) -> Result<Duration> {
    if !v.is_finite() || v < 0.0 {
        bail!("--{what} must be a non-negative number of milliseconds (got {v})");
    }
    Ok(Duration::from_secs_f64(v / 1000.0))
}

fn settings(a: &Args) -> Result<SimSettings> {
    let mut s = SimSettings {
        nodes: a.nodes,
        view: a.view,
        down_before: a.down_before,
        crashed_before: a.crashed_before,
        die_during: a.die_during,
        die_within: millis(a.die_within_ms, "die-within-ms")?,
        slow: a.slow,
        slow_check: millis(a.slow_check_ms, "slow-check-ms")?,
        check_min: millis(a.check_min_ms, "check-min-ms")?,
        check_max: millis(a.check_max_ms, "check-max-ms")?,
        failing: a.failing,
        result_bytes: a.result_bytes,
        relays_die: a.relays_die,
        deadline: millis(a.deadline_ms, "deadline-ms")?,
        warmup: millis(a.warmup_ms, "warmup-ms")?,
        seed: a.seed,
        identities: a.identities,
        warm_keys: a.warm_keys,
        cold_keys: a.cold_keys,
        converged_keys: a.converged_keys,
        ..SimSettings::charging(cpu_mode(a)?)
    };
    s.link.latency_min = millis(a.latency_min_ms, "latency-min-ms")?;
    s.link.latency_max = millis(a.latency_max_ms, "latency-max-ms")?;
    s.link.loss = a.loss;
    s.link.rx_service = millis(a.rx_service_us / 1000.0, "rx-service-us")?;
    s.link.rx_queue = a.rx_queue;
    if let Some(tx) = a.max_transmissions {
        s.node.foca.max_transmissions = std::num::NonZeroU8::new(tx)
            .ok_or_else(|| anyhow::anyhow!("--max-transmissions must not be zero"))?;
    }
    s.node.foca.fanout = a.fanout;
    s.node.foca.gossip_every = a
        .gossip_every_ms
        .map(|v| millis(v, "gossip-every-ms"))
        .transpose()?;
    let w = &mut s.node.sweep;
    let set = |slot: &mut Duration, v: Option<f64>, what: &str| -> Result<()> {
        if let Some(v) = v {
            *slot = millis(v, what)?;
        }
        Ok(())
    };
    set(
        &mut w.answer_spread_per_node,
        a.answer_spread_per_node_us.map(|v| v / 1000.0),
        "answer-spread-per-node-us",
    )?;
    set(
        &mut w.answer_spread_max,
        a.answer_spread_max_ms,
        "answer-spread-max-ms",
    )?;
    set(&mut w.retry_initial, a.retry_initial_ms, "retry-initial-ms")?;
    set(&mut w.retry_max, a.retry_max_ms, "retry-max-ms")?;
    set(&mut w.tick, a.tick_ms, "tick-ms")?;
    set(
        &mut w.backstop_min_delay,
        a.backstop_min_delay_ms,
        "backstop-min-delay-ms",
    )?;
    set(
        &mut w.backstop_quiet,
        a.backstop_quiet_ms,
        "backstop-quiet-ms",
    )?;
    set(
        &mut w.backstop_interval,
        a.backstop_interval_ms,
        "backstop-interval-ms",
    )?;
    if let Some(p) = a.backstop_deadline_percent {
        w.backstop_deadline_percent = p;
    }
    if let Some(n) = a.relay_min_nodes {
        w.relay_min_nodes = n;
    }
    if let Some(n) = a.nodes_per_relay {
        w.nodes_per_relay = n;
    }
    if let Some(n) = a.max_relays {
        w.max_relays = n;
    }
    if let Some(n) = a.relay_window {
        w.relay_window = n;
    }
    set(
        &mut w.relay_spread_per_node,
        a.relay_spread_per_node_us.map(|v| v / 1000.0),
        "relay-spread-per-node-us",
    )?;
    set(&mut w.relay_flush, a.relay_flush_ms, "relay-flush-ms")?;
    s.validate().context("invalid simulation settings")?;
    Ok(s)
}

/// The simulator's own peak resident memory (VmHWM), as Linux reports it.
fn peak_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Command::Calibrate { nodes, seed, out }) = args.command {
        return calibrate(&nodes, seed, out);
    }
    let base = settings(&args)?;
    let mut all_ok = true;
    for k in 0..args.runs.max(1) {
        let mut s = base.clone();
        s.seed = base.seed.wrapping_add(k);
        let started = Instant::now();
        let report = sim::run(&s).context("simulation failed")?;
        let wall = started.elapsed().as_secs_f64();
        all_ok &= report.accounting.ok;
        if args.json {
            let mut value = serde_json::to_value(&report).context("encode the report")?;
            if let Some(obj) = value.as_object_mut() {
                obj.insert("wall_seconds".to_string(), serde_json::json!(wall));
            }
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else if args.runs > 1 {
            let f = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
            println!(
                "seed {:>4}: cpu {}; accounted {} ms, no_answer {}, coordinator busy {:.1}% (queue max {}), all queue drops {}; reach p50 {} p99 {} p100 {} ms; accounted {} ms; last answer {} ms; copies/node {:.1}; reached by backstop {}; answers recovered by retry {} / backstop {}; backstop requests {}; coordinator rx {} packets {:.1} MiB, drops {}; relays {} (died {}) rx max {} packets, drops {}; all drops {}; accounting {}; coordinator cpu {:.1} ms; wall {wall:.1} s",
                s.seed,
                report.cpu.mode,
                f(report.completion.completed_ms),
                report.states.no_answer,
                report.cpu.coordinator_busy_share * 100.0,
                report.cpu.coordinator_queue_max,
                report.traffic.queue_overflow,
                f(report.reach.p50_ms),
                f(report.reach.p99_ms),
                f(report.reach.p100_ms),
                f(report.completion.completed_ms),
                f(report.completion.last_answer_ms),
                report.reach.receptions_mean,
                report.reach.by_backstop,
                report.answers.recovered_by_retry,
                report.answers.recovered_by_backstop,
                report.answers.backstop_requests_sent,
                report.traffic.coordinator_received_packets,
                report.traffic.coordinator_received_bytes as f64 / 1048576.0,
                report.traffic.coordinator_queue_overflow,
                report.relays.relays,
                report.relays.died,
                report.relays.received_packets_max,
                report.relays.queue_overflow,
                report.traffic.queue_overflow,
                if report.accounting.ok { "ok" } else { "PROBLEMS" },
                report.cpu.coordinator_ms,
            );
        } else {
            print!("{}", report.render());
            println!(
                "  wall time {wall:.2} s; simulator peak memory {}",
                peak_memory().unwrap_or_else(|| "unknown".to_string())
            );
        }
    }
    if !all_ok {
        std::process::exit(2);
    }
    Ok(())
}
