//! `patrol history`: read the sweep history database
//! (`[report] history_dir/history.sqlite`).
//!
//! ```text
//! patrol history node NAME [--check ID]   when each value changed, between which sweeps
//! patrol history check ID                 a check's non-passing node count over time
//! patrol history import DIR               take a JSON history (one file per sweep)
//! ```
//!
//! Node names, check ids, values and messages in the history came from
//! nodes: they are printed through [`one_line`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use patrol_checks::printable::one_line;
use patrol_config::{Config, DEFAULT_CONFIG_PATH};
use patrol_report::store::History;
use patrol_report::text::{date_time, thousands};

#[derive(Debug, clap::Args)]
pub struct Common {
    /// Config file for `[report] history_dir` (default:
    /// /etc/patrol/patrol.toml when it exists, else built-in defaults).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The history folder (overrides the config's `history_dir`).
    #[arg(long, value_name = "DIR")]
    history_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// A node's timeline: every change of its state and check values.
    Node {
        name: String,
        /// Only this check.
        #[arg(long, value_name = "ID")]
        check: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// A check over time: nodes not passing it in every stored sweep.
    Check {
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Import a JSON history (`HISTORY_DIR` of an older Patrol, or one
    /// scope folder of it) into the database.
    Import {
        dir: PathBuf,
        #[command(flatten)]
        common: Common,
    },
}

impl Common {
    fn config(&self) -> anyhow::Result<Config> {
        match &self.config {
            Some(p) => Config::load(p).map_err(|e| anyhow::anyhow!("{e}")),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                Config::load(Path::new(DEFAULT_CONFIG_PATH)).map_err(|e| anyhow::anyhow!("{e}"))
            }
            None => Ok(Config::default()),
        }
    }

    /// The history folder, how many sweeps to keep, and the zone times
    /// are shown in.
    fn settings(&self) -> anyhow::Result<(PathBuf, usize, jiff::tz::TimeZone)> {
        let config = self.config()?;
        let dir = self
            .history_dir
            .clone()
            .unwrap_or(config.report.history_dir.clone());
        Ok((dir, config.report.keep_sweeps, config.report.zone()))
    }

    /// The history for a query: `Err(file)` when there is no database. A
    /// query never creates one (a root query must not leave a root-owned
    /// file that the `patrol` user's sweeps then cannot write).
    fn open_existing(&self) -> anyhow::Result<Result<(History, jiff::tz::TimeZone), PathBuf>> {
        let (dir, _, zone) = self.settings()?;
        let file = dir.join(patrol_report::store::DB_FILE);
        if !file.exists() {
            return Ok(Err(file));
        }
        Ok(Ok((open(&dir)?, zone)))
    }
}

/// Open (or create) the history in `dir`.
fn open(dir: &Path) -> anyhow::Result<History> {
    History::open(dir).with_context(|| format!("history in {}", dir.display()))
}

/// What a query prints when there is no database yet (exit 1, as for
/// nothing stored).
fn no_history(what: &str, file: &Path) -> anyhow::Result<ExitCode> {
    crate::stdout::outln!(
        "{}: nothing stored (no history database at {})",
        one_line(what),
        file.display()
    );
    Ok(ExitCode::from(1))
}

fn sweep_words(s: &Option<(String, u64)>, zone: &jiff::tz::TimeZone) -> String {
    match s {
        Some((id, at)) => format!("sweep {} ({})", one_line(id), date_time(*at, zone)),
        None => "an earlier sweep no longer kept".to_string(),
    }
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Node {
            name,
            check,
            common,
        } => {
            let (h, zone) = match common.open_existing()? {
                Ok(opened) => opened,
                Err(file) => return no_history(&name, &file),
            };
            let changes = h.node_timeline(&name, check.as_deref())?;
            if changes.is_empty() {
                crate::stdout::outln!("{}: nothing stored", one_line(&name));
                return Ok(ExitCode::from(1));
            }
            let mut scope = None;
            let mut current_check = None;
            for c in &changes {
                if scope.as_ref() != Some(&c.scope) {
                    crate::stdout::outln!("{} in scope: {}", one_line(&name), one_line(&c.scope));
                    scope = Some(c.scope.clone());
                    current_check = None;
                }
                if current_check.as_ref() != Some(&c.check) {
                    crate::stdout::outln!("  {}", one_line(&c.check));
                    current_check = Some(c.check.clone());
                }
                let when = match &c.previous_sweep {
                    None => format!("first recorded in {}", sweep_words(&c.sweep, &zone)),
                    Some(_) => format!(
                        "changed between {} and {}",
                        sweep_words(&c.previous_sweep, &zone),
                        sweep_words(&c.sweep, &zone)
                    ),
                };
                let value = if c.value.is_empty() {
                    one_line(&c.status).into_owned()
                } else {
                    one_line(&format!("{} {}", c.status, c.value)).into_owned()
                };
                crate::stdout::outln!("    {value:<24} {when}");
                if !c.message.is_empty() {
                    crate::stdout::outln!("    {:<24} {}", "", one_line(&c.message));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { id, common } => {
            let (h, zone) = match common.open_existing()? {
                Ok(opened) => opened,
                Err(file) => return no_history(&id, &file),
            };
            let points = h.check_history(&id)?;
            if points.is_empty() {
                crate::stdout::outln!("{}: no stored sweep ran this check", one_line(&id));
                return Ok(ExitCode::from(1));
            }
            let mut rows = Vec::new();
            for p in &points {
                rows.push([
                    date_time(p.started_ms, &zone),
                    p.sweep_id.clone(),
                    thousands(p.not_passing()),
                    format!("{} warn, {} fail, {} error", p.warn, p.fail, p.error),
                    thousands(p.pass + p.not_passing()),
                    p.scope.clone(),
                ]);
            }
            crate::stdout::out!(
                "{}",
                crate::columns::render(
                    [
                        "STARTED",
                        "SWEEP",
                        "NOT PASSING",
                        "OF WHICH",
                        "NODES",
                        "SCOPE"
                    ],
                    &rows
                )
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { dir, common } => {
            let (history_dir, keep, _) = common.settings()?;
            let mut h = open(&history_dir)?;
            let done = patrol_report::history::import_dir(&mut h, &dir, keep)?;
            for w in &done.warnings {
                eprintln!("patrol: warning: {w}");
            }
            crate::stdout::outln!(
                "imported {} sweeps from {} ({} already stored, {} older than the history and not stored, {} files skipped)",
                done.stored,
                dir.display(),
                done.already,
                done.older,
                done.warnings.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
