//! `patrol`: the command-line tool. One module per subcommand; each is a
//! thin layer that parses, loads config and calls a library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod ca;
mod check;
mod columns;
mod config_cmd;
mod connect;
mod contexts;
mod coverage;
mod demo;
mod demo_hosts;
mod demo_netns;
mod enroll;
mod format;
mod history;
mod junit;
mod keys;
mod members;
mod report;
mod roster;
mod shell;
mod stdout;
mod sweep;
mod textfile;

/// Patrol: inspect a whole fleet in seconds.
#[derive(Debug, Parser)]
#[command(name = "patrol", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the members of the mesh as an agent sees them.
    Members(members::Args),
    /// Run a sweep across the fleet through any agent.
    #[command(after_help = sweep::EXIT_CODES)]
    Sweep(Box<sweep::Args>),
    /// The roster of certified nodes (with [trust]) that sweeps expect;
    /// `patrol roster forget NODE` removes one.
    #[command(after_help = roster::AFTER_HELP)]
    Roster(roster::Args),
    /// Run checks on this machine, with no mesh.
    Check(check::Args),
    /// Render or send the report of a stored sweep.
    Report(report::Args),
    /// Read the sweep history: a node's timeline, a check over time, or
    /// import a JSON history.
    #[command(subcommand)]
    History(history::Command),
    /// Manage cluster keys.
    #[command(subcommand)]
    Keys(keys::Command),
    /// The cluster CA: make it, issue node and operator certificates,
    /// show certificates, revoke serials.
    #[command(subcommand)]
    Ca(ca::Command),
    /// Enrollment: a service that issues node certificates for tokens and
    /// renews them, its tokens, and a manual request.
    #[command(subcommand)]
    Enroll(enroll::Command),
    /// Validate configuration files.
    #[command(subcommand)]
    Config(config_cmd::Command),
    /// Start a local mesh on loopback, sweep this machine, write a report.
    Demo(demo::Args),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions(shell::CompletionArgs),
    /// Write the man pages of patrol and patrol-agent into a directory.
    #[command(hide = true)]
    Man(shell::ManArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PATROL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("patrol: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Members(a) => members::run(a).await,
            Command::Sweep(a) => sweep::run(*a).await,
            Command::Roster(a) => roster::run(a).await,
            Command::Check(a) => check::run(a).await,
            Command::Report(a) => report::run(a).await,
            Command::History(c) => history::run(c),
            Command::Keys(c) => keys::run(c).await,
            Command::Ca(c) => ca::run(c).await,
            Command::Enroll(c) => enroll::run(c).await,
            Command::Config(c) => config_cmd::run(c).await,
            Command::Demo(a) => demo::run(a).await,
            Command::Completions(a) => shell::completions(a),
            Command::Man(a) => shell::man(a),
        }
    });
    // A check stuck in a blocking read (a hung NFS mount) must not keep the
    // process alive after its result is out.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) if stdout::is_closed(&e) => ExitCode::from(stdout::EXIT_CLOSED),
        Err(e) => {
            // Error text can carry what an agent or a node said.
            eprintln!(
                "patrol: {}",
                patrol_checks::printable::lines(&error_text(&e))
            );
            ExitCode::from(3)
        }
    }
}

/// An error and its causes, `: `-separated, each said once: a cause
/// whose text its error already quotes (`cannot write key file F: No
/// such file or directory (os error 2)` over the io error itself) is
/// not repeated.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_the_error_already_quotes_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let quoted = format!("cannot write key file /tmp/x/k: {io}");
        let e = anyhow::Error::new(io).context(quoted.clone());
        assert_eq!(error_text(&e), quoted);
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&e), "outer: inner");
    }
}
