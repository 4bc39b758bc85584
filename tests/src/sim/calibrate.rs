//! `patrol-sim calibrate`: measure what every kind of node call costs on
//! this machine and fit the cost model (`cpu.rs`) the simulator charges
//! by default.
//!
//! It runs healthy sweeps (default settings, 1% loss) at a few mesh sizes
//! with `--cpu measured`, keeping every call's thread CPU
//! (`CLOCK_THREAD_CPUTIME_ID`, less the clock's own cost) and what the
//! shell saw of it ([`Units`](super::cpu::Units)). Per call kind it fits
//! `fixed + Σ coefficient × unit` by least squares with every part kept
//! at zero or above (a unit that would cost less than nothing is dropped
//! and the rest fitted again; a negative fixed part becomes none). With a
//! fixed part, the fitted costs add up to the measured total over the
//! calls fitted, so a node's load is right on average even where single
//! calls scatter (no call is left out: the rare costly ones, such as a
//! prune of every member now and then, are real work). A kind
//! with too few calls to tell units apart (the sweep start: one per size)
//! gets the one unit that follows its cost best.
//!
//! The sizes must reach the one to be simulated: the coordinator and the
//! relays hold every member, and their per-member costs are only seen at
//! that size.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::cpu::{CallKind, CallSample, CpuMode, KindCost, UNITS, UNIT_NAMES};
use super::{world, SimSettings};

/// What a calibration run measured, and the model fitted to it.
#[derive(Debug)]
pub struct Calibration {
    /// The model file's text (`tests/sim-cost-model.toml`).
    pub text: String,
    /// Per kind: calls, measured total and modelled total (ms).
    pub kinds: Vec<(CallKind, usize, f64, f64)>,
    /// The coordinator's calls: measured and modelled total (ms), per size.
    pub coordinator: Vec<(usize, f64, f64)>,
}

/// Measure at each size in `sizes` (seed `seed`) and fit.
/// `progress` hears about each run as it ends.
pub fn calibrate(
    sizes: &[usize],
    seed: u64,
    command: &str,
    mut progress: impl FnMut(&str),
) -> Result<Calibration, super::SimError> {
    let mut all: Vec<(usize, CallSample)> = Vec::new();
    for &nodes in sizes {
        let settings = SimSettings {
            nodes,
            seed,
            ..SimSettings::charging(CpuMode::Measured)
        };
        settings.validate()?;
        let (report, samples) = world::World::new(&settings).recording().run();
        progress(&format!(
            "{nodes} nodes: {} calls measured; accounted for in {:?} ms, coordinator {:.1} ms of CPU",
            samples.len(),
            report.completion.completed_ms,
            report.cpu.coordinator_ms
        ));
        all.extend(samples.into_iter().map(|s| (nodes, s)));
    }
    let mut costs = BTreeMap::new();
    let mut kinds = Vec::new();
    for kind in CallKind::ALL {
        let samples: Vec<&CallSample> = all
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.kind == kind)
            .collect();
        // A kind no call of these runs measured (leaves, certificate
        // exchanges, undecodable datagrams in a healthy sweep) is charged
        // as a foca datagram, the cheapest whole datagram measured, rather
        // than nothing.
        let cost = match (samples.is_empty(), costs.get(&CallKind::FocaDatagram)) {
            (true, Some(datagram)) => KindCost {
                samples: 0,
                median_ns: 0.0,
                ..*datagram
            },
            _ => fit(&samples),
        };
        let measured: f64 = samples.iter().map(|s| s.nanos as f64).sum::<f64>() / 1e6;
        let modelled: f64 = samples.iter().map(|s| cost.nanos(&s.units)).sum::<f64>() / 1e6;
        kinds.push((kind, samples.len(), measured, modelled));
        costs.insert(kind, cost);
    }
    let coordinator = sizes
        .iter()
        .map(|&nodes| {
            let mine = all
                .iter()
                .filter(|(n, s)| *n == nodes && s.coordinator)
                .map(|(_, s)| s);
            let (measured, modelled) = mine.fold((0.0, 0.0), |(a, b), s| {
                let modelled = costs.get(&s.kind).map_or(0.0, |c| c.nanos(&s.units));
                (a + s.nanos as f64 / 1e6, b + modelled / 1e6)
            });
            (nodes, measured, modelled)
        })
        .collect::<Vec<_>>();
    let text = model_text(&costs, &kinds, &coordinator, sizes, seed, command);
    Ok(Calibration {
        text,
        kinds,
        coordinator,
    })
}

/// Fit one kind's cost to its calls.
fn fit(samples: &[&CallSample]) -> KindCost {
    let mut sorted: Vec<u64> = samples.iter().map(|s| s.nanos).collect();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0) as f64;
    if samples.is_empty() {
        return KindCost::from_fit(0.0, [0.0; UNITS], 0, 0.0);
    }
    let y: Vec<f64> = samples.iter().map(|s| s.nanos as f64).collect();
    let x: Vec<[f64; UNITS]> = samples.iter().map(|s| s.units.values()).collect();
    // Units that vary: the others are part of the fixed cost.
    let mut active: Vec<usize> = (0..UNITS)
        .filter(|&k| x.iter().any(|r| r[k] != x[0][k]))
        .collect();
    // Too few calls to tell units apart (the sweep start: one per size):
    // the one unit that follows the cost best, members on a near tie (a
    // coordinator's work grows with the members it expects).
    if samples.len() < 20 * (active.len() + 1) && active.len() > 1 {
        const MEMBERS: usize = UNITS - 1;
        let r = |k: usize| correlation(&x, &y, k);
        let best = active
            .iter()
            .copied()
            .max_by(|&a, &b| r(a).total_cmp(&r(b)))
            .unwrap_or(MEMBERS);
        let members_close = active.contains(&MEMBERS) && r(MEMBERS) >= r(best) - 0.02;
        active = vec![if members_close { MEMBERS } else { best }];
    }
    let mut intercept = true;
    loop {
        let (fixed, coef) = least_squares(&x, &y, &active, intercept);
        let worst = (0..active.len())
            .filter(|&j| coef[j] < 0.0)
            .min_by(|&a, &b| coef[a].total_cmp(&coef[b]));
        if let Some(j) = worst {
            active.remove(j);
            continue;
        }
        if intercept && fixed < 0.0 && !active.is_empty() {
            // No fixed part rather than a negative one.
            intercept = false;
            continue;
        }
        let mut c = [0.0; UNITS];
        for (j, &k) in active.iter().enumerate() {
            c[k] = coef[j];
        }
        return KindCost::from_fit(fixed.max(0.0), c, samples.len() as u64, median);
    }
}

/// How closely unit `k` follows the cost (Pearson's r).
fn correlation(x: &[[f64; UNITS]], y: &[f64], k: usize) -> f64 {
    let n = y.len() as f64;
    let (mx, my) = (
        x.iter().map(|r| r[k]).sum::<f64>() / n,
        y.iter().sum::<f64>() / n,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (r, &yv) in x.iter().zip(y) {
        let (dx, dy) = (r[k] - mx, yv - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// Ordinary least squares of `y` on the columns `active` of `x`, plus a
/// constant if `intercept`: (constant, coefficients in `active` order).
/// Columns are scaled to their largest value first, and a tiny ridge
/// keeps a collinear pair solvable.
fn least_squares(
    x: &[[f64; UNITS]],
    y: &[f64],
    active: &[usize],
    intercept: bool,
) -> (f64, Vec<f64>) {
    let first = usize::from(intercept);
    let m = active.len() + first;
    if m == 0 {
        return (0.0, Vec::new());
    }
    let scale: Vec<f64> = active
        .iter()
        .map(|&k| x.iter().map(|r| r[k].abs()).fold(0.0, f64::max).max(1.0))
        .collect();
    let row = |r: &[f64; UNITS]| -> Vec<f64> {
        let constant = intercept.then_some(1.0);
        constant
            .into_iter()
            .chain(active.iter().zip(&scale).map(|(&k, s)| r[k] / s))
            .collect()
    };
    let mut a = vec![vec![0.0; m + 1]; m];
    for (r, &yv) in x.iter().zip(y) {
        let v = row(r);
        for i in 0..m {
            for j in 0..m {
                a[i][j] += v[i] * v[j];
            }
            a[i][m] += v[i] * yv;
        }
    }
    let ridge = 1e-9 * (0..m).map(|i| a[i][i]).sum::<f64>().max(1.0);
    for (i, r) in a.iter_mut().enumerate().skip(first) {
        r[i] += ridge;
    }
    let solution = solve(a);
    let fixed = if intercept { solution[0] } else { 0.0 };
    let coef = solution[first..]
        .iter()
        .zip(&scale)
        .map(|(c, s)| c / s)
        .collect();
    (fixed, coef)
}

/// Gaussian elimination with partial pivoting on an augmented matrix.
fn solve(mut a: Vec<Vec<f64>>) -> Vec<f64> {
    let m = a.len();
    for col in 0..m {
        let pivot = (col..m)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        let p = a[col][col];
        if p.abs() < 1e-300 {
            continue;
        }
        let pivot_row = a[col].clone();
        for (i, row) in a.iter_mut().enumerate() {
            if i != col {
                let f = row[col] / p;
                for (v, pv) in row.iter_mut().zip(&pivot_row).skip(col) {
                    *v -= f * pv;
                }
            }
        }
    }
    (0..m)
        .map(|i| {
            if a[i][i].abs() < 1e-300 {
                0.0
            } else {
                a[i][m] / a[i][i]
            }
        })
        .collect()
}

/// The model file: what it is, how it was made, then one table per kind.
fn model_text(
    costs: &BTreeMap<CallKind, KindCost>,
    kinds: &[(CallKind, usize, f64, f64)],
    coordinator: &[(usize, f64, f64)],
    sizes: &[usize],
    seed: u64,
    command: &str,
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# patrol-sim's CPU cost model: what each kind of call into a node costs\n\
         # (tests/src/sim/cpu.rs), fitted by `patrol-sim calibrate` from thread CPU\n\
         # measured on the machine below (tests/src/sim/calibrate.rs). Rewritten by:\n\
         #\n#     {command}\n#\n\
         # Per kind: cost = fixed_ns + per_in_byte_ns × bytes in + per_out_datagram_ns ×\n\
         # datagrams sent + per_out_byte_ns × bytes sent + per_answer_ns × answers carried\n\
         # (outcomes, for checks_done) + per_member_ns × members held. `samples` and\n\
         # `median_ns` are information only.\n#\n\
         # Calls measured and their totals (measured / modelled, ms):"
    );
    for (kind, n, measured, modelled) in kinds {
        let none = if *n == 0 {
            "   (none measured: charged as foca_datagram)"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "#   {kind:<18} {n:>9} calls {measured:>10.1} / {modelled:>10.1}{none}"
        );
    }
    let _ = writeln!(o, "# The coordinator's calls (measured / modelled, ms):");
    for (nodes, measured, modelled) in coordinator {
        let _ = writeln!(
            o,
            "#   {nodes:>7} nodes {measured:>10.1} / {modelled:>10.1}"
        );
    }
    let _ = writeln!(o, "\nscale = 1.0\n\n[about]");
    let cpu = cpu_name().unwrap_or_else(|| "unknown".to_string());
    let sizes: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
    let _ = writeln!(o, "cpu = {cpu:?}");
    let _ = writeln!(
        o,
        "cores = \"{}\"",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(o, "sizes = \"{}\"", sizes.join(", "));
    let _ = writeln!(o, "seed = \"{seed}\"");
    for (kind, c) in costs {
        let _ = writeln!(o, "\n[kinds.{kind}]");
        let _ = writeln!(o, "fixed_ns = {:.1}", c.fixed_ns);
        for (name, v) in UNIT_NAMES.iter().zip(c.coefficients()) {
            if v != 0.0 {
                let _ = writeln!(o, "{name} = {v:.5}");
            }
        }
        let _ = writeln!(o, "samples = {}", c.samples);
        let _ = writeln!(o, "median_ns = {:.0}", c.median_ns);
    }
    o
}

/// The processor's name, from `/proc/cpuinfo`.
fn cpu_name() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::super::cpu::Units;
    use super::*;

    fn sample(in_bytes: u32, members: u32, nanos: u64) -> CallSample {
        CallSample {
            kind: CallKind::FocaDatagram,
            units: Units {
                in_bytes,
                members,
                ..Units::default()
            },
            nanos,
            coordinator: false,
        }
    }

    #[test]
    fn the_fit_recovers_a_linear_cost() {
        // 2 µs + 3 ns per byte + 0.5 ns per member.
        let samples: Vec<CallSample> = (0..200)
            .map(|k| {
                let (b, m) = (100 + 7 * k, 64 + 500 * (k % 5));
                sample(b, m, 2000 + 3 * u64::from(b) + u64::from(m) / 2)
            })
            .collect();
        let refs: Vec<&CallSample> = samples.iter().collect();
        let c = fit(&refs);
        assert!((c.fixed_ns - 2000.0).abs() < 1.0, "{c:?}");
        assert!((c.per_in_byte_ns - 3.0).abs() < 0.01, "{c:?}");
        assert!((c.per_member_ns - 0.5).abs() < 0.01, "{c:?}");
    }

    #[test]
    fn a_unit_that_would_cost_less_than_nothing_is_left_out() {
        // Cost falls with bytes: the fit keeps the mean, never a negative
        // per-byte cost.
        let samples: Vec<CallSample> = (0..100)
            .map(|k| sample(100 + k, 64, 5000 - 10 * u64::from(k)))
            .collect();
        let refs: Vec<&CallSample> = samples.iter().collect();
        let c = fit(&refs);
        assert_eq!(c.per_in_byte_ns, 0.0, "{c:?}");
        assert!((c.fixed_ns - 4505.0).abs() < 1.0, "{c:?}");
    }
}
