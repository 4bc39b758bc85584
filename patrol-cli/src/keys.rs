//! `patrol keys`: make and inspect cluster key files. Secrets are never
//! printed; only key ids are.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use patrol_agent::keyring::{Keyring, KeyringError};

/// Where `patrol keys generate` writes when `--out` is not given (the
/// default `node.key_file`).
pub const DEFAULT_KEY_FILE: &str = "/etc/patrol/cluster.key";

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a new key file holding one fresh random key (mode 0600).
    /// Copy the same file to every node of the cluster.
    Generate {
        /// The key file to write.
        #[arg(long, value_name = "FILE", default_value = DEFAULT_KEY_FILE)]
        out: PathBuf,
        /// Replace an existing file (atomically) instead of refusing.
        #[arg(long)]
        force: bool,
    },
    /// List the key ids in a key file and which one is primary.
    List {
        /// The key file to read.
        #[arg(value_name = "FILE", default_value = DEFAULT_KEY_FILE)]
        file: PathBuf,
    },
}

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Generate { out, force } => {
            let ring = Keyring::generate();
            let written = if force {
                ring.save(&out)
            } else {
                ring.write_new(&out)
            };
            match written {
                Ok(()) => {}
                Err(e @ KeyringError::Exists { .. }) => bail!("{e}: pass --force to replace it"),
                Err(e) => return Err(e.into()),
            }
            println!(
                "wrote {} (mode 0600): key id {} (primary)",
                out.display(),
                ring.primary_id()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::List { file } => {
            let ring = Keyring::load(&file)?;
            println!("{}: {} key(s)", file.display(), ring.len());
            for id in ring.ids() {
                if id == ring.primary_id() {
                    println!("{id}\tprimary");
                } else {
                    println!("{id}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
