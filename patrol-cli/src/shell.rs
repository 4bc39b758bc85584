//! `patrol completions bash|zsh|fish` (clap_complete) and `patrol man
//! --out DIR` (clap_mangen): what a package installs next to the binaries,
//! rendered from the same clap definitions the binaries parse.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// The completion script for `shell` on stdout.
pub fn completions(args: CompletionArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "patrol", &mut script);
    let mut out = std::io::stdout().lock();
    match std::io::Write::write_all(&mut out, &script)
        .and_then(|()| std::io::Write::flush(&mut out))
    {
        // A reader that went away (`| head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("writing the completion script")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// `patrol.1`, one `patrol-SUBCOMMAND.1` per subcommand (nested ones
/// joined with `-`), and `patrol-agent.1`; prints each path.
pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut written = Vec::new();
    let mut patrol = crate::Cli::command();
    patrol.build();
    page(&patrol, "patrol", &args.out, &mut written)?;
    let mut agent = patrol_agent::command_line::AgentArgs::command();
    agent.build();
    page(&agent, "patrol-agent", &args.out, &mut written)?;
    for p in written {
        crate::stdout::outln!("{}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn page(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name)
        .render(&mut bytes)
        .with_context(|| format!("rendering the {name} page"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        page(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
