//! `patrol config check FILE`: validate a config file the way the agent
//! would load it, and report every problem at once, one per line as
//! `FILE: KEY: PROBLEM`.
//!
//! Besides the config itself this checks that the key file it names exists,
//! parses, and is not readable by group or others (the agent refuses such a
//! file). A relative `node.key_file` is taken from the current directory,
//! as the agent does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use patrol_agent::keyring::Keyring;
use patrol_config::{Config, NodeSection, Problem};

/// Exit code when the file has problems (3 is kept for "patrol itself
/// failed").
const EXIT_PROBLEMS: u8 = 2;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a config file: prints `ok`, or every problem as
    /// `FILE: KEY: PROBLEM` and exits 2.
    Check {
        /// The config file to check.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Skip the key file check (for configs checked away from the
        /// nodes, e.g. in CI).
        #[arg(long)]
        no_key_file: bool,
    },
}

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { file, no_key_file } => {
            let problems = check_file(&file, !no_key_file);
            if problems.is_empty() {
                println!("ok");
                return Ok(ExitCode::SUCCESS);
            }
            for problem in &problems {
                println!("{problem}");
            }
            eprintln!(
                "patrol: {} problem{} in {}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                file.display()
            );
            Ok(ExitCode::from(EXIT_PROBLEMS))
        }
    }
}

/// Every problem with `file`: the config's own, the checks', the key file's.
fn check_file(file: &Path, check_key_file: bool) -> Vec<Problem> {
    let mut problems = Vec::new();
    let key_file = match Config::load(file) {
        Ok(config) => {
            problems.extend(check_problems(&config));
            Some(config.node.key_file)
        }
        Err(e) => {
            problems.extend(e.problems);
            // Still check the key file when the config names one, so one
            // run shows everything.
            key_file_of_broken_config(file)
        }
    };
    if check_key_file {
        if let Some(path) = key_file {
            if let Err(e) = Keyring::load(&path) {
                problems.push(Problem {
                    file: file.to_path_buf(),
                    key: "node.key_file".into(),
                    message: e.to_string(),
                });
            }
        }
    }
    problems
}

/// Problems in the `[[check]]` tables, reported as `check[INDEX].KEY`.
fn check_problems(_config: &Config) -> Vec<Problem> {
    // TODO(catalog): validate the [[check]] tables and profiles through
    // `patrol_checks::Catalog::from_config(&config)` once patrol-checks
    // provides it; until then `config check` does not look inside them.
    Vec::new()
}

/// `node.key_file` of a config that did not load: its value when it is a
/// string, the default when the file is TOML but does not set it, nothing
/// when the file is not TOML at all.
fn key_file_of_broken_config(file: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(file).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    match table.get("node").and_then(|n| n.get("key_file")) {
        Some(toml::Value::String(s)) => Some(PathBuf::from(s)),
        Some(_) => None,
        None => Some(NodeSection::default().key_file),
    }
}
