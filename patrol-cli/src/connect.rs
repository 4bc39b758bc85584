//! How the CLI reaches an agent: control-channel options shared by
//! `members` and `sweep`, the cluster key, and "first seed that answers"
//! ([`Target`]); or, with `--context`, the seeds and key of a named
//! cluster from the contexts file (see `contexts.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use patrol_agent::control::client::{ClientAuth, OperatorIdentity};
use patrol_agent::control::{ControlClient, ControlError, ControlRequest};
use patrol_agent::envelope::Envelope;
use patrol_agent::keyring::Keyring;

/// Options for talking to an agent's control port.
#[derive(Debug, Clone, clap::Args)]
pub struct ControlArgs {
    /// Control address (HOST:PORT) of an agent; repeat to give fallbacks,
    /// tried in order until one answers. Default: the config's `[control]
    /// listen` (the agent of this host), unless a context names the
    /// cluster (`patrol sweep --from FILE` asks none).
    #[arg(long = "seed", value_name = "HOST:PORT")]
    pub seeds: Vec<String>,
    /// A cluster from the contexts file (its seeds, cluster name and key)
    /// instead of --seed; repeat (sweep only) to sweep several clusters at
    /// once into one merged result.
    #[arg(long = "context", value_name = "NAME", conflicts_with = "seeds")]
    pub contexts: Vec<String>,
    /// Every cluster of the contexts file (sweep only).
    #[arg(long, conflicts_with_all = ["seeds", "contexts"])]
    pub all_contexts: bool,
    /// The contexts file (default: $XDG_CONFIG_HOME/patrol/contexts.toml,
    /// else ~/.config/patrol/contexts.toml).
    #[arg(long, env = "PATROL_CONTEXTS", value_name = "FILE")]
    pub contexts_file: Option<PathBuf>,
    /// Config file to take the key file and cluster name from.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Cluster key file (overrides the config's `node.key_file`), for
    /// clusters without `[trust]`.
    #[arg(long, conflicts_with = "identity")]
    pub key_file: Option<PathBuf>,
    /// Operator identity folder (`operator.key`, `operator.crt`, `ca.crt`,
    /// as `patrol ca issue operator` writes it), for clusters with
    /// `[trust]`: no cluster key is needed then.
    #[arg(long, env = "PATROL_IDENTITY", value_name = "DIR")]
    pub identity: Option<PathBuf>,
    /// Cluster name (overrides the config's `node.cluster`).
    #[arg(long)]
    pub cluster: Option<String>,
    /// How long to wait for an agent to accept the connection.
    #[arg(long, default_value = "3s", value_parser = patrol_config::parse_duration)]
    pub connect_timeout: Duration,
}

impl ControlArgs {
    /// How to authenticate: the operator identity folder when given,
    /// else the cluster key.
    pub fn auth(&self) -> anyhow::Result<ClientAuth> {
        match &self.identity {
            Some(dir) => {
                let cluster = match (&self.cluster, self.load_config()?) {
                    (Some(c), _) => c.clone(),
                    (None, Some(c)) => c.node.cluster.clone(),
                    (None, None) => "default".to_string(),
                };
                load_identity(dir, &cluster)
            }
            None => Ok(ClientAuth::ClusterKey(self.envelope()?)),
        }
    }

    /// The envelope for the cluster: key file and cluster name from the
    /// flags, else from the config file (given, or the default one if it
    /// exists).
    pub fn envelope(&self) -> anyhow::Result<Envelope> {
        let config = self.load_config()?;
        let key_file = match (&self.key_file, &config) {
            (Some(k), _) => k.clone(),
            (None, Some(c)) => c.node.key_file.clone(),
            (None, None) => bail!(
                "no key: pass --key-file FILE (and --cluster NAME) or --config FILE; {} does not exist",
                patrol_config::DEFAULT_CONFIG_PATH
            ),
        };
        let cluster = match (&self.cluster, &config) {
            (Some(c), _) => c.clone(),
            (None, Some(c)) => c.node.cluster.clone(),
            (None, None) => "default".to_string(),
        };
        let keyring =
            Keyring::load(&key_file).with_context(|| format!("loading {}", key_file.display()))?;
        Ok(Envelope::new(keyring, &cluster))
    }

    /// The config file given with `--config`, else the default one if it
    /// exists, else None.
    pub fn load_config(&self) -> anyhow::Result<Option<patrol_config::Config>> {
        let config_path = self.config.clone().or_else(|| {
            let p = PathBuf::from(patrol_config::DEFAULT_CONFIG_PATH);
            p.exists().then_some(p)
        });
        match &config_path {
            Some(p) => Ok(Some(
                patrol_config::Config::load(p).map_err(|e| anyhow::anyhow!("{e}"))?,
            )),
            None => Ok(None),
        }
    }

    /// Where to connect: the `--seed`s with the envelope from the flags or
    /// the config, or each context named (all of them with
    /// `--all-contexts`), in the order given.
    pub fn targets(&self) -> anyhow::Result<Vec<Target>> {
        if self.contexts.is_empty() && !self.all_contexts {
            let seeds = match (self.seeds.is_empty(), self.load_config()?) {
                (false, _) => self.seeds.clone(),
                (true, Some(config)) => vec![control_address(&config)?],
                (true, None) => bail!(
                    "no agent to ask: pass --seed HOST:PORT (an agent's control address), --config FILE (its [control] listen) or --context NAME"
                ),
            };
            return Ok(vec![Target {
                context: None,
                cluster: None,
                seeds,
                auth: Ok(self.auth()?),
                connect_timeout: self.connect_timeout,
            }]);
        }
        let file = crate::contexts::ContextsFile::load(self.contexts_file.as_deref())?;
        let names: Vec<String> = if self.all_contexts {
            file.names()
        } else {
            self.contexts.clone()
        };
        if names.is_empty() {
            bail!("{} defines no context", file.path.display());
        }
        names
            .iter()
            .map(|n| file.target(n, self.connect_timeout))
            .collect()
    }

    /// Connect to the first seed that answers and send `request`.
    pub async fn open(
        &self,
        request: &ControlRequest,
    ) -> anyhow::Result<(SocketAddr, ControlClient)> {
        self.open_with(|_| Ok(request.clone())).await
    }

    /// Connect to the first seed that answers and send the request
    /// `request` makes for that connection (a roster forget is signed by
    /// the connection's operator).
    pub async fn open_with(
        &self,
        request: impl Fn(&ControlClient) -> anyhow::Result<ControlRequest>,
    ) -> anyhow::Result<(SocketAddr, ControlClient)> {
        let mut targets = self.targets()?;
        if targets.len() != 1 {
            bail!("this command talks to one cluster: give one --context");
        }
        targets.remove(0).open_with(request).await
    }
}

/// The address a config's own agent serves the CLI on (`[control]
/// listen`), for `--config FILE` without `--seed`: a wildcard address is
/// reached on loopback.
fn control_address(config: &patrol_config::Config) -> anyhow::Result<String> {
    let mut addr = config.control.listen;
    if addr.port() == 0 {
        bail!(
            "{}: control.listen has port 0 (chosen at start): pass --seed HOST:PORT",
            config.source.display()
        );
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(addr.to_string())
}

/// One cluster to reach: its seeds and its key.
#[derive(Debug, Clone)]
pub struct Target {
    /// The context's name, when it came from the contexts file.
    pub context: Option<String>,
    /// The cluster name the context gives (the sweep document says it too).
    pub cluster: Option<String>,
    pub seeds: Vec<String>,
    /// Why not, when the context's key could not be loaded: opening fails
    /// with that reason then, so one bad context does not stop the others.
    pub auth: Result<ClientAuth, String>,
    pub connect_timeout: Duration,
}

impl Target {
    /// The name to show for this target (context, else first seed).
    pub fn label(&self) -> String {
        self.context
            .clone()
            .or_else(|| self.cluster.clone())
            .unwrap_or_else(|| self.seeds.join(","))
    }

    /// Connect to the first seed that answers and send `request`.
    pub async fn open(
        &self,
        request: &ControlRequest,
    ) -> anyhow::Result<(SocketAddr, ControlClient)> {
        self.open_with(|_| Ok(request.clone())).await
    }

    /// Connect to the first seed that answers and send the request that
    /// `request` makes for that connection; an error making it ends the
    /// attempt.
    pub async fn open_with(
        &self,
        request: impl Fn(&ControlClient) -> anyhow::Result<ControlRequest>,
    ) -> anyhow::Result<(SocketAddr, ControlClient)> {
        let auth = match &self.auth {
            Ok(a) => a.clone(),
            Err(reason) => bail!("{reason}"),
        };
        let mut failures = Vec::new();
        for seed in &self.seeds {
            let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(seed.as_str()).await {
                Ok(a) => a.collect(),
                Err(e) => {
                    failures.push(format!("{seed}: {e}"));
                    continue;
                }
            };
            for addr in addrs {
                match ControlClient::connect(addr, auth.clone(), self.connect_timeout).await {
                    Ok(mut client) => match client.send(&request(&client)?).await {
                        Ok(()) => return Ok((addr, client)),
                        Err(e) => failures.push(format!("{seed}: {e}")),
                    },
                    Err(e @ ControlError::Refused(_)) => return Err(e.into()),
                    Err(e) => failures.push(format!("{seed}: {e}")),
                }
            }
        }
        bail!("no agent answered:\n  {}", failures.join("\n  "))
    }
}

/// An operator identity folder: `operator.crt`, `operator.key` (mode
/// 0600) and `ca.crt` (the CA bundle the agents' certificates are checked
/// against).
pub fn load_identity(dir: &std::path::Path, cluster: &str) -> anyhow::Result<ClientAuth> {
    use patrol_agent::trust_files;
    let creds =
        trust_files::load_credentials(&dir.join("operator.crt"), &dir.join("operator.key"))?;
    let bundle = trust_files::load_bundle(&dir.join("ca.crt"), None)?;
    if let Some(warning) = expiry_warning(&creds.cert, patrol_agent::clock::unix_ms() / 1000) {
        eprintln!("patrol: warning: {warning}");
    }
    Ok(ClientAuth::Operator(std::sync::Arc::new(
        OperatorIdentity {
            creds,
            bundle,
            cluster: cluster.to_string(),
        },
    )))
}

/// A warning when the operator certificate `cert` has under
/// [`WARN_BELOW_S`](patrol_agent::cert_expiry::WARN_BELOW_S) left at
/// `now_s` (an expired one is refused by the agent, which says so).
pub fn expiry_warning(cert: &patrol_agent::trust::Certificate, now_s: u64) -> Option<String> {
    use patrol_agent::cert_expiry::{span, WARN_BELOW_S};
    let left = cert.body.not_after.checked_sub(now_s)?;
    (left < WARN_BELOW_S).then(|| {
        format!(
            "operator certificate `{}` expires in {}: issue a new one (`patrol ca issue operator`)",
            cert.body.name,
            span(left)
        )
    })
}

#[cfg(test)]
mod tests {
    use patrol_agent::trust::testing::{ca, issued};
    use patrol_agent::trust::{Role, Scope, SigningKey};

    use super::expiry_warning;

    #[test]
    fn an_operator_certificate_with_under_seven_days_left_is_warned_about() {
        let root = ca(1);
        let key = SigningKey::from_bytes(&[2; 32]);
        let op = issued(
            &root,
            key,
            Role::Operator(Scope::full(1000)),
            "alice",
            3,
            0..10 * 86_400,
        );
        assert_eq!(expiry_warning(&op.cert, 86_400), None);
        let w = expiry_warning(&op.cert, 10 * 86_400 - 2 * 86_400 - 3600).unwrap();
        assert!(w.contains("`alice` expires in 2d 1h"), "{w}");
        // Expired: the agent refuses it and says so; no warning here.
        assert_eq!(expiry_warning(&op.cert, 10 * 86_400 + 1), None);
    }
}
