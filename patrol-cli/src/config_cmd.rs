//! `patrol config check FILE`: validate a config file the way the agent
//! would load it, and report every problem at once, one per line as
//! `FILE: KEY: PROBLEM`.
//!
//! Besides the config itself this checks the `[[check]]` tables and the
//! profiles named in `[checks]` (through `patrol_checks::Catalog`), and
//! that the key file the config names exists, parses, and is not readable
//! by group or others (the agent refuses such a file; skip with
//! `--no-key-file`). A relative `node.key_file` is taken from the current
//! directory, as the agent does. With `[trust]`, the node's certificate
//! and key, the CA bundle and the deny list are loaded and checked the way
//! the agent checks them at start (the key's mode, the certificate's name
//! against `[node] name`, its CA, expiry and revocation); the same flag
//! skips them.
//!
//! A problem is always one line: a message that spans lines (the TOML
//! decoder appends "in `KEY`" on a line of its own) is folded, and that
//! trailing key is moved into the key column.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use patrol_agent::keyring::Keyring;
use patrol_checks::Catalog;
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
                crate::stdout::outln!("ok");
                return Ok(ExitCode::SUCCESS);
            }
            for problem in &problems {
                crate::stdout::outln!("{}", one_line(problem.clone()));
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
            // An agent that enrolls has no certificate before its first
            // start: then what enrolling needs is checked instead.
            let enrolling = patrol_agent::enroll::renewal::Enrollment::from_config(&config)
                .filter(|e| e.current().is_none());
            if let (true, Some(e)) = (check_key_file, &enrolling) {
                if let Err(message) = e.check_ready() {
                    problems.push(Problem {
                        file: file.to_path_buf(),
                        key: "trust".into(),
                        message,
                    });
                }
            } else if check_key_file && config.trust.is_some() {
                if let Err(e) = patrol_agent::daemon::check_trust(&config) {
                    problems.push(Problem {
                        file: file.to_path_buf(),
                        key: "trust".into(),
                        message: e.to_string(),
                    });
                }
            }
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

/// Problems in the `[[check]]` tables (as `check[INDEX].KEY`) and in
/// `checks.profiles`.
fn check_problems(config: &Config) -> Vec<Problem> {
    match Catalog::from_config(config) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems,
    }
}

/// The problem as one line. The TOML decoder ends some messages with a
/// line "in `default_timeout`" naming the key inside the section: that
/// key joins the key column (`checks` becomes `checks.default_timeout`),
/// and any other line break becomes "; ".
pub(crate) fn one_line(mut problem: Problem) -> Problem {
    let mut lines: Vec<&str> = problem
        .message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() > 1 {
        let inner = lines
            .last()
            .and_then(|l| l.strip_prefix("in `"))
            .and_then(|l| l.strip_suffix('`'))
            .filter(|k| !k.is_empty() && !k.contains(char::is_whitespace))
            .map(str::to_string);
        if let Some(inner) = inner {
            lines.pop();
            if problem.key.is_empty() {
                problem.key = inner;
            } else if !problem.key.ends_with(&format!(".{inner}")) {
                problem.key = format!("{}.{inner}", problem.key);
            }
        }
    }
    problem.message = lines.join("; ");
    problem
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

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(key: &str, message: &str) -> Problem {
        Problem {
            file: PathBuf::from("p.toml"),
            key: key.into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_trailing_in_key_line_moves_into_the_key() {
        let p = one_line(problem(
            "checks",
            "unknown unit `parsecs` in `5 parsecs` (use ms, s, m, h or d)\nin `default_timeout`\n",
        ));
        assert_eq!(p.key, "checks.default_timeout");
        assert_eq!(
            p.message,
            "unknown unit `parsecs` in `5 parsecs` (use ms, s, m, h or d)"
        );
    }

    #[test]
    fn other_line_breaks_are_folded_and_one_line_messages_kept() {
        let p = one_line(problem("node", "first\nsecond"));
        assert_eq!(
            (p.key.as_str(), p.message.as_str()),
            ("node", "first; second")
        );
        let p = one_line(problem("node.name", "must not be empty"));
        assert_eq!(p.to_string(), "p.toml: node.name: must not be empty");
    }
}
