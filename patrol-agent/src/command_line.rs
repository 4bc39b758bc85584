//! The `patrol-agent` command line, in the library so that `patrol man`
//! can render its man page from the same definition the binary parses.

use std::path::PathBuf;

/// The Patrol agent: joins the mesh, answers sweeps, serves the CLI.
#[derive(Debug, clap::Parser)]
#[command(name = "patrol-agent", version)]
pub struct AgentArgs {
    /// Config file.
    #[arg(long, default_value = patrol_config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Overrides `[node] advertise` (e.g. the node's IP from the
    /// Kubernetes downward API, which a shared config file cannot hold).
    #[arg(long, env = "PATROL_ADVERTISE", value_name = "IP:PORT")]
    pub advertise: Option<std::net::SocketAddr>,
    /// Overrides `[node] name` (default: the config's, else the hostname).
    #[arg(long, env = "PATROL_NODE_NAME")]
    pub name: Option<String>,
}

impl AgentArgs {
    /// The `[node]` values these arguments override.
    pub fn overrides(&self) -> patrol_config::NodeOverrides {
        patrol_config::NodeOverrides {
            advertise: self.advertise,
            name: self.name.clone().filter(|n| !n.trim().is_empty()),
        }
    }
}
