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
    /// Add a fresh random key to a key file (it opens packets but does not
    /// seal until made primary). Rotation: install, copy the file to every
    /// node and SIGHUP the agents; `use` the new id, copy, SIGHUP; `remove`
    /// the old id, copy, SIGHUP.
    Install {
        /// The key file to change.
        #[arg(value_name = "FILE", default_value = DEFAULT_KEY_FILE)]
        file: PathBuf,
    },
    /// Make an installed key the one that seals.
    Use {
        /// The key file to change.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The key id to seal with.
        #[arg(value_name = "KEY_ID")]
        id: u32,
    },
    /// Remove a key that is not primary.
    Remove {
        /// The key file to change.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The key id to remove.
        #[arg(value_name = "KEY_ID")]
        id: u32,
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
            crate::stdout::outln!(
                "wrote {} (mode 0600): key id {} (primary)",
                out.display(),
                ring.primary_id()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Install { file } => {
            let mut ring = Keyring::load(&file)?;
            let id = ring.install_generated();
            ring.save(&file)?;
            crate::stdout::outln!(
                "installed key id {id} in {} (primary is still {}); copy the file to every node and send the agents SIGHUP",
                file.display(),
                ring.primary_id()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Use { file, id } => {
            let mut ring = Keyring::load(&file)?;
            ring.use_primary(id)?;
            ring.save(&file)?;
            crate::stdout::outln!(
                "key id {id} is now primary in {}; copy the file to every node and send the agents SIGHUP",
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Remove { file, id } => {
            let mut ring = Keyring::load(&file)?;
            ring.remove(id)?;
            ring.save(&file)?;
            crate::stdout::outln!(
                "removed key id {id} from {}; copy the file to every node and send the agents SIGHUP",
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::List { file } => {
            let ring = Keyring::load(&file)?;
            crate::stdout::outln!("{}: {} key(s)", file.display(), ring.len());
            for id in ring.ids() {
                if id == ring.primary_id() {
                    crate::stdout::outln!("{id}\tprimary");
                } else {
                    crate::stdout::outln!("{id}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
