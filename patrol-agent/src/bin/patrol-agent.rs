//! `patrol-agent`: the daemon binary. Parses arguments, sets up logging,
//! loads the config and calls [`patrol_agent::daemon::run`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = patrol_agent::command_line::AgentArgs::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PATROL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match patrol_config::Config::load_with(&args.config, &args.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("patrol-agent: invalid config:\n{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("patrol-agent: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let result = runtime.block_on(patrol_agent::daemon::run(
        &config,
        |ready| {
            // One machine-readable line, so scripts and tests started with
            // port 0 learn the real ports.
            println!(
                "patrol-agent ready name={} gossip={} control={}",
                ready.name, ready.gossip, ready.control
            );
        },
        shutdown_signal(),
    ));
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(stats) => {
            // One readable line: the counters that moved, as `patrol
            // members --stats` names them.
            let moved: Vec<String> = stats
                .counts()
                .iter()
                .filter(|c| c.value > 0)
                .map(|c| match c.reason {
                    Some(reason) => format!("{} {reason} {}", c.name, c.value),
                    None => format!("{} {}", c.name, c.value),
                })
                .collect();
            tracing::info!(
                "left the cluster; counters: {}",
                if moved.is_empty() {
                    "all zero".to_string()
                } else {
                    moved.join(", ")
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("patrol-agent: {e}");
            ExitCode::from(2)
        }
    }
}

/// SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
