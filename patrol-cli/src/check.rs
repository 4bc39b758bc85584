//! `patrol check`: run checks on this machine, with no mesh (the way `goss
//! validate` does). Table (failures first, colour on a terminal unless
//! `NO_COLOR` is set) or JSON (an array of `CheckOutcome`, in definition
//! order).
//!
//! What runs: `--profile NAME` alone runs that built-in profile; `--config
//! FILE` runs the file's `[[check]]` tables and `[checks] profiles`
//! (only the named profile's checks when `--profile` is given too);
//! neither runs `/etc/patrol/patrol.toml` when it exists. `--only ID...`
//! narrows to those ids. Checks whose `tags` do not match the config's
//! `[node] tags` are skipped, as in a sweep.
//!
//! Exit codes: 0 all pass, 1 warnings only, 2 at least one `fail` or
//! `error` (a check that could not observe counts as a failure), 3 Patrol
//! could not run (config problem, unknown profile or check id, nothing
//! selected).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use patrol_checks::printable::one_line;
use patrol_checks::{Catalog, CheckOutcome, Runner, Selector, Status};
use patrol_config::{Config, DEFAULT_CONFIG_PATH};

use crate::format::Format;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Config file whose [[check]] tables and [checks] profiles to run
    /// (default: /etc/patrol/patrol.toml when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run a built-in profile (e.g. k8s-node); with --config, only that
    /// profile's checks.
    #[arg(long)]
    profile: Option<String>,
    /// Run only these check ids (space- or comma-separated).
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    only: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// What to run: the catalog, the settings, the node's tags.
fn plan(args: &Args) -> anyhow::Result<(Catalog, Config)> {
    let config_path = match (&args.config, &args.profile) {
        (Some(p), _) => Some(p.clone()),
        (None, None) if Path::new(DEFAULT_CONFIG_PATH).exists() => {
            Some(PathBuf::from(DEFAULT_CONFIG_PATH))
        }
        (None, None) => anyhow::bail!(
            "no checks to run: pass --config FILE, or --profile {} (no {DEFAULT_CONFIG_PATH} here)",
            Catalog::builtin_profile_names().join("|")
        ),
        (None, Some(_)) => None,
    };
    let unknown_profile = |name: &str| {
        anyhow::anyhow!(
            "unknown profile `{name}` (built-in profiles: {})",
            Catalog::builtin_profile_names().join(", ")
        )
    };
    match config_path {
        Some(path) => {
            let mut config = Config::load(&path).map_err(config_error)?;
            if let Some(p) = &args.profile {
                if Catalog::builtin_profile(p).is_none() {
                    return Err(unknown_profile(p));
                }
                if !config.checks.profiles.contains(p) {
                    config.checks.profiles.push(p.clone());
                }
            }
            let catalog = Catalog::from_config(&config).map_err(config_error)?;
            // `[checks] command_user` needs root, here as in the agent.
            catalog.check_user_switch().map_err(config_error)?;
            Ok((catalog, config))
        }
        None => {
            let name = args.profile.as_deref().unwrap_or_default();
            let catalog = Catalog::builtin_profile(name).ok_or_else(|| unknown_profile(name))?;
            Ok((catalog, Config::default()))
        }
    }
}

/// Every config problem on its own line, `FILE: KEY: PROBLEM`.
fn config_error(e: patrol_config::ConfigError) -> anyhow::Error {
    let lines: Vec<String> = e
        .problems
        .into_iter()
        .map(|p| crate::config_cmd::one_line(p).to_string())
        .collect();
    anyhow::anyhow!("the config has problems:\n{}", lines.join("\n"))
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (catalog, config) = plan(&args)?;
    let selector = Selector {
        checks: args.only.clone(),
        labels: Vec::new(),
        profile: args.profile.clone(),
    };
    let tags: BTreeMap<String, String> = config.node.tags.clone();
    for id in &args.only {
        if !catalog.checks().iter().any(|c| &c.id == id) {
            anyhow::bail!("--only {id}: no check has that id");
        }
    }
    let checks = catalog.select(&selector, &tags);
    if checks.is_empty() {
        anyhow::bail!(
            "nothing to run: {} of {} defined checks selected ({}; node tags {:?})",
            checks.len(),
            catalog.len(),
            selector.describe(),
            tags
        );
    }
    let start = Instant::now();
    let runner = Runner::for_checks(patrol_checks::host_for(&config.node), &config.checks);
    let outcomes = runner.run(&checks).await;
    let elapsed = start.elapsed();
    let text = match args.format {
        Format::Json => {
            let mut t = serde_json::to_string_pretty(&outcomes).context("encoding JSON")?;
            t.push('\n');
            t
        }
        Format::Ndjson => {
            let mut t = String::new();
            for o in &outcomes {
                t.push_str(&serde_json::to_string(o).context("encoding JSON")?);
                t.push('\n');
            }
            t
        }
        Format::Junit => {
            let node = config.node.name.clone();
            crate::junit::render([crate::junit::Suite {
                node: &node,
                unreachable: None,
                checks: &outcomes,
            }])
        }
        Format::Table => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let mut t = render_table(&outcomes, colour);
            t.push_str(&summary(&outcomes, elapsed.as_secs_f64() * 1000.0));
            t.push('\n');
            t
        }
    };
    // A reader that went away (`| head`) does not change the verdict.
    match crate::stdout::write(format_args!("{text}")) {
        Err(e) if !crate::stdout::is_closed(&e) => return Err(e),
        _ => {}
    }
    Ok(ExitCode::from(exit_code(&outcomes)))
}

/// 0 all pass, 1 warnings only, 2 any fail or error.
fn exit_code(outcomes: &[CheckOutcome]) -> u8 {
    crate::format::verdict(outcomes.iter().map(|o| o.status), false)
}

fn summary(outcomes: &[CheckOutcome], ms: f64) -> String {
    let n = |s: Status| outcomes.iter().filter(|o| o.status == s).count();
    format!(
        "{} checks: {} pass, {} warn, {} fail, {} error ({ms:.0} ms)",
        outcomes.len(),
        n(Status::Pass),
        n(Status::Warn),
        n(Status::Fail),
        n(Status::Error)
    )
}

/// `s` safe to print ([`one_line`]) and cut to `max` characters.
fn clip(s: &str, max: usize) -> String {
    let s = one_line(s);
    if s.chars().count() <= max {
        s.into_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Failures first (fail, error, warn, pass), then definition order; a
/// `fix:` line under every check that did not pass and says how. What a
/// check read (a kernel log line, a command's output) is printed through
/// [`one_line`] (the cells by [`crate::columns::render`]), before any
/// colour of ours goes on.
fn render_table(outcomes: &[CheckOutcome], colour: bool) -> String {
    let mut rows: Vec<&CheckOutcome> = outcomes.iter().collect();
    rows.sort_by_key(|o| std::cmp::Reverse(o.status.badness()));
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|o| {
            [
                o.status.as_str().to_uppercase(),
                o.id.clone(),
                clip(&o.observed.to_string(), 32),
                clip(&o.expected, 32),
                clip(&o.message, 160),
            ]
        })
        .collect();
    let table = crate::columns::render(
        ["STATUS", "CHECK", "OBSERVED", "EXPECTED", "MESSAGE"],
        &cells,
    );
    let status_width = cells
        .iter()
        .map(|c| c[0].chars().count())
        .chain(["STATUS".len()])
        .max()
        .unwrap_or(0);
    let mut lines = table.lines();
    let mut out = format!("{}\n", lines.next().unwrap_or_default());
    for (o, line) in rows.iter().zip(lines) {
        // Colour goes on after the layout, so escape codes never count
        // towards a column's width.
        let word = o.status.as_str().to_uppercase();
        match line.strip_prefix(word.as_str()) {
            Some(rest) if colour => {
                let code = match o.status {
                    Status::Pass => "32",
                    Status::Warn => "33",
                    Status::Fail => "31;1",
                    Status::Error => "35",
                };
                out.push_str(&format!("\x1b[{code}m{word}\x1b[0m{rest}\n"));
            }
            _ => out.push_str(&format!("{line}\n")),
        }
        if o.status != Status::Pass && !o.remediation.is_empty() {
            out.push_str(&format!(
                "{}  fix: {}\n",
                " ".repeat(status_width),
                one_line(&o.remediation)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use patrol_checks::{Observed, Severity};

    fn outcome(id: &str, status: Status) -> CheckOutcome {
        CheckOutcome {
            id: id.into(),
            kind: "sysctl".into(),
            status,
            severity: Severity::Fail,
            observed: Observed::Number(1.0),
            expected: "= 1".into(),
            message: "observed 1".into(),
            duration_us: 10,
            description: String::new(),
            remediation: "do it".into(),
        }
    }

    #[test]
    fn failures_first_and_exit_codes() {
        let o = vec![
            outcome("a", Status::Pass),
            outcome("b", Status::Warn),
            outcome("c", Status::Fail),
        ];
        let table = render_table(&o, false);
        let order: Vec<&str> = table
            .lines()
            .skip(1)
            .filter(|l| !l.trim_start().starts_with("fix:"))
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(order, ["c", "b", "a"]);
        assert!(!table.contains('\x1b'));
        assert!(render_table(&o, true).contains("\x1b[31;1m"));
        assert_eq!(exit_code(&o), 2);
        assert_eq!(exit_code(&o[..2]), 1);
        assert_eq!(exit_code(&o[..1]), 0);
        assert_eq!(exit_code(&[outcome("e", Status::Error)]), 2);
    }

    #[test]
    fn what_a_check_read_prints_no_control_character_even_in_colour() {
        let mut o = outcome("kernel-log", Status::Fail);
        o.observed = Observed::Text("\x1b]0;pwned\x07".into());
        o.message = "line one\r\n\x1b[2J\u{202e}two".into();
        o.remediation = "\x1b[2Jrestart".into();
        for colour in [false, true] {
            let table = render_table(std::slice::from_ref(&o), colour);
            // Our own colour codes are the only escapes, and only in colour.
            let ours = table.replace("\x1b[31;1m", "").replace("\x1b[0m", "");
            assert!(
                !ours
                    .chars()
                    .any(|c| c != '\n' && patrol_checks::printable::is_unsafe(c, false)),
                "{table}"
            );
            assert_eq!(ours.lines().count(), 3, "{table}");
            assert!(ours.contains("\\x1b]0;pwned\\x07"), "{table}");
            assert!(
                ours.contains("line one\\r\\n\\x1b[2J\\u{202e}two"),
                "{table}"
            );
            assert!(ours.contains("fix: \\x1b[2Jrestart"), "{table}");
        }
    }
}
