//! The agent as a daemon: config in, running tasks out. This is what the
//! `patrol-agent` binary and `patrol demo` call.
//!
//! Config becomes running tasks like this: the key file becomes the
//! envelope; `[[check]]` and `[checks] profiles` become the inspector; the
//! `[node]` bind address becomes the UDP transport; the agent task starts
//! and joins through the seeds; the control listener starts on
//! `[control] listen`. Everything stops on the shutdown future.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use patrol_config::Config;
use tokio::net::TcpListener;

use crate::agent::{self, AgentHandle, AgentSettings, AgentStats, StopMode};
use crate::envelope::Envelope;
use crate::inspector::CatalogInspector;
use crate::keyring::Keyring;
use crate::sweep::SweepSettings;
use crate::transport::Transport;
use patrol_core::NodeSettings;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] patrol_config::ConfigError),
    #[error("{0}")]
    Key(#[from] crate::keyring::KeyringError),
    #[error("cannot bind the gossip socket {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("node.advertise is required: node.bind ({0}) is an unspecified address, which other nodes cannot reach")]
    Advertise(SocketAddr),
    #[error("node.name and node.tags encode to {0} bytes, over the {max} that fit in the gossip header (shorten the name or drop tags)", max = patrol_core::identity::MAX_IDENTITY_BYTES)]
    Identity(usize),
    #[error("cannot bind the control listener {addr}: {source}")]
    Control {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot bind the metrics listener {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    TrustFile(#[from] crate::trust_files::TrustFileError),
    #[error("[trust] cert {}: {source}", path.display())]
    Trust {
        path: std::path::PathBuf,
        source: patrol_core::trust::TrustError,
    },
    #[error("cannot open the audit log {}: {source}", path.display())]
    Audit {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// A node's identity, loaded and checked from `[trust]`.
#[derive(Debug, Clone)]
pub struct NodeTrust {
    pub creds: patrol_core::trust::Credentials,
    pub bundle: patrol_core::trust::TrustBundle,
    pub audit: Option<crate::audit::AuditLog>,
}

/// Load `[trust]`: the node's key and certificate (its name must be
/// `[node] name`, and the bundle must accept it now), the CA bundle and
/// the deny list, and open the audit log.
pub fn load_trust(config: &Config) -> Result<Option<NodeTrust>, StartError> {
    let Some(mut trust) = check_trust(config)? else {
        return Ok(None);
    };
    if let Some(t) = &config.trust {
        let audit = crate::audit::AuditLog::open(&t.audit_log, t.audit_max_bytes, t.audit_keep)
            .map_err(|source| StartError::Audit {
                path: t.audit_log.clone(),
                source,
            })?;
        trust.audit = Some(audit);
    }
    Ok(Some(trust))
}

/// [`load_trust`] without opening the audit log (so `patrol config
/// check` writes nothing): the identity and bundle, checked.
pub fn check_trust(config: &Config) -> Result<Option<NodeTrust>, StartError> {
    let Some(t) = &config.trust else {
        return Ok(None);
    };
    let creds = crate::trust_files::load_credentials(&t.cert, &t.key)?;
    let bundle = crate::trust_files::load_bundle(&t.ca_bundle, t.deny_list.as_deref())?;
    if creds.name() != config.node.name {
        return Err(StartError::Trust {
            path: t.cert.clone(),
            source: patrol_core::trust::TrustError::NameMismatch {
                cert: creds.name().to_string(),
                node: config.node.name.clone(),
            },
        });
    }
    bundle
        .verify(&creds.cert, "node", crate::clock::unix_ms() / 1000)
        .map_err(|source| StartError::Trust {
            path: t.cert.clone(),
            source,
        })?;
    Ok(Some(NodeTrust {
        creds,
        bundle,
        audit: None,
    }))
}

/// Where a started daemon listens.
#[derive(Debug, Clone)]
pub struct Ready {
    pub name: String,
    pub gossip: SocketAddr,
    pub control: SocketAddr,
}

/// A started daemon: the agent, whose task set also holds the control
/// listener, the seed refresher and (under [`run`]) the key reloader.
#[derive(Debug)]
pub struct Daemon {
    pub ready: Ready,
    pub agent: AgentHandle,
    /// Where a reloaded CA bundle and deny list go (with `[trust]`).
    pub bundle: Option<tokio::sync::watch::Sender<patrol_core::trust::TrustBundle>>,
}

impl Daemon {
    /// Stop: the agent leaves (gracefully or not), then one cancellation
    /// ends every task and the stop waits for them all.
    pub async fn stop(self, mode: StopMode) -> AgentStats {
        self.agent.stop(mode).await
    }
}

/// Resolve `host:port` seeds; unresolvable ones are logged and skipped
/// (the agent keeps retrying the others).
pub async fn resolve_seeds(seeds: &[String]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for seed in seeds {
        match tokio::net::lookup_host(seed.as_str()).await {
            Ok(addrs) => out.extend(addrs.take(1)),
            Err(e) => tracing::warn!(seed = %seed, error = %e, "cannot resolve seed"),
        }
    }
    out
}

/// How often seed names are resolved again.
const SEED_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

/// Resolve the seed names again every [`SEED_REFRESH`] and hand the agent
/// the addresses when they change: a seed whose name did not resolve at
/// boot, or that moved, is still found. `last` is what the agent started
/// with.
async fn refresh_seeds(names: Vec<String>, mut last: Vec<SocketAddr>, commander: agent::Commander) {
    loop {
        tokio::time::sleep(SEED_REFRESH).await;
        let now = resolve_seeds(&names).await;
        if now != last && !now.is_empty() {
            if commander.set_seeds(now.clone()).await.is_err() {
                return;
            }
            last = now;
        }
    }
}

/// Start a daemon from a loaded config and an envelope, with the
/// identity from `[trust]` when the config has one.
pub async fn start_with(config: &Config, envelope: Envelope) -> Result<Daemon, StartError> {
    let trust = load_trust(config)?;
    start_trusted(config, envelope, trust).await
}

/// Start a daemon from a loaded config, an envelope and an identity
/// already loaded (`patrol demo` and tests make a throwaway CA).
pub async fn start_trusted(
    config: &Config,
    envelope: Envelope,
    trust: Option<NodeTrust>,
) -> Result<Daemon, StartError> {
    let catalog = patrol_checks::Catalog::from_config(config)?;
    // `[checks] command_user` needs an agent running as root.
    catalog.check_user_switch()?;
    let inspector = Arc::new(CatalogInspector::with_runner(
        catalog,
        config.node.tags.clone(),
        patrol_checks::Runner::for_checks(patrol_checks::host_for(&config.node), &config.checks),
    ));
    let meter = crate::metrics::CheckMeter::default();
    let inspector = Arc::new(crate::metrics::MeteredInspector::new(
        inspector,
        meter.clone(),
    ));
    let transport = Transport::udp(config.node.bind)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.node.bind,
            source,
        })?;
    let advertise = match config.node.advertise {
        Some(a) => a,
        None if config.node.bind.ip().is_unspecified() => {
            return Err(StartError::Advertise(config.node.bind))
        }
        None => transport.local_addr,
    };
    let listener = TcpListener::bind(config.control.listen)
        .await
        .map_err(|source| StartError::Control {
            addr: config.control.listen,
            source,
        })?;
    let control_addr = listener
        .local_addr()
        .map_err(|source| StartError::Control {
            addr: config.control.listen,
            source,
        })?;
    let probe = crate::identity::NodeId::new(
        config.node.name.clone(),
        advertise,
        u64::MAX,
        config.node.tags.clone(),
    );
    if probe.encoded_len() > patrol_core::identity::MAX_IDENTITY_BYTES {
        return Err(StartError::Identity(probe.encoded_len()));
    }
    let metrics_listener = match config.metrics.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Metrics { addr, source })?,
        ),
        None => None,
    };
    let seeds = resolve_seeds(&config.node.seeds).await;
    let settings = AgentSettings {
        name: config.node.name.clone(),
        tags: config.node.tags.clone(),
        seeds: seeds.clone(),
        advertise: Some(advertise),
        node: node_settings(config),
        clock: crate::clock::WallClock::default(),
        started_at_unix_ms: None,
        trust: trust.clone(),
    };
    let mut agent = agent::start(settings, transport, envelope.clone(), inspector);
    let commander = agent.commander();
    if !config.node.seeds.is_empty() {
        let names = config.node.seeds.clone();
        agent
            .tasks()
            .spawn(refresh_seeds(names, seeds, commander.clone()));
    }
    if let Some(l) = metrics_listener {
        let exporter = crate::metrics::Exporter::new(metrics_source(commander.clone()), meter);
        // `[metrics]` has no keys for the endpoint's limits: the defaults.
        agent.tasks().spawn(crate::metrics::serve(
            l,
            exporter,
            crate::metrics::MetricsSettings::default(),
        ));
    }
    let bundle = match &trust {
        Some(t) => {
            let (tx, rx) = tokio::sync::watch::channel(t.bundle.clone());
            let auth = crate::control::server::CertAuth {
                cluster: config.node.cluster.clone(),
                node: t.creds.clone(),
                bundle: rx,
                audit: t.audit.clone(),
                clock: crate::clock::WallClock::default(),
                sweep: node_settings(config).sweep,
            };
            agent.tasks().spawn(crate::control::serve(
                listener,
                crate::control::server::ControlAuth::Certificates(Box::new(auth)),
                commander,
            ));
            Some(tx)
        }
        None => {
            tracing::warn!("no [trust] section: the cluster key is the only trust boundary (any key holder can answer for any node and start sweeps); see `patrol ca`");
            agent
                .tasks()
                .spawn(crate::control::serve(listener, envelope, commander));
            None
        }
    };
    Ok(Daemon {
        ready: Ready {
            name: config.node.name.clone(),
            gossip: advertise,
            control: control_addr,
        },
        agent,
        bundle,
    })
}

/// What the metrics endpoint asks the owner task for at each scrape.
fn metrics_source(commander: agent::Commander) -> crate::metrics::Source {
    Arc::new(move || {
        let commander = commander.clone();
        Box::pin(async move {
            let members = commander.members().await.ok()?;
            let stats = commander.stats().await.ok()?;
            let mut by_state: Vec<(crate::membership::MemberState, u64)> = Vec::new();
            for m in &members {
                match by_state.iter_mut().find(|(s, _)| *s == m.state) {
                    Some((_, n)) => *n += 1,
                    None => by_state.push((m.state, 1)),
                }
            }
            Some(crate::metrics::Snapshot {
                members: by_state,
                counts: stats.counts(),
            })
        })
    })
}

/// The node's settings from the config file: the tuned defaults, with the
/// cluster name, `[sweep] max_concurrent` and `[sweep] clock_skew_limit`
/// from `config`.
pub fn node_settings(config: &Config) -> NodeSettings {
    let defaults = NodeSettings::default();
    NodeSettings {
        cluster: config.node.cluster.clone(),
        max_datagram: crate::transport::MAX_SEALED_DATAGRAM
            - crate::envelope::OVERHEAD
            - crate::datagram::REPLAY_HEADER,
        sweep: SweepSettings {
            max_concurrent: config.sweep.max_concurrent,
            clock_skew_limit: config.sweep.clock_skew_limit,
            ..defaults.sweep.clone()
        },
        ..defaults
    }
}

/// Run a daemon from its config file until `shutdown` completes, then leave
/// the cluster gracefully. `on_ready` hears where it listens. SIGHUP
/// reloads the key file.
pub async fn run(
    config: &Config,
    on_ready: impl FnOnce(&Ready),
    shutdown: impl Future<Output = ()>,
) -> Result<AgentStats, StartError> {
    let keyring = Keyring::load(&config.node.key_file)?;
    let envelope = Envelope::new(keyring, &config.node.cluster);
    let mut daemon = start_with(config, envelope.clone()).await?;
    let trust = match (&config.trust, daemon.bundle.take()) {
        (Some(t), Some(tx)) => Some(Reload {
            ca_bundle: t.ca_bundle.clone(),
            deny_list: t.deny_list.clone(),
            watch: tx,
            commander: daemon.agent.commander(),
        }),
        _ => None,
    };
    daemon.agent.tasks().spawn(reload_on_hangup(
        envelope,
        config.node.key_file.clone(),
        trust,
    ));
    on_ready(&daemon.ready);
    shutdown.await;
    Ok(daemon.stop(StopMode::Leave).await)
}

/// What SIGHUP reloads besides the key file, with `[trust]`.
struct Reload {
    ca_bundle: std::path::PathBuf,
    deny_list: Option<std::path::PathBuf>,
    watch: tokio::sync::watch::Sender<patrol_core::trust::TrustBundle>,
    commander: agent::Commander,
}

impl Reload {
    /// Read the CA bundle and deny list again; the control channel and
    /// the node use them from the next request on (the node checks every
    /// cached peer again). Files that do not load leave the old ones.
    async fn run(&self) {
        match crate::trust_files::load_bundle(&self.ca_bundle, self.deny_list.as_deref()) {
            Ok(bundle) => {
                let revoked = bundle.revocations().len();
                let cas = bundle.cas().count();
                self.watch.send_replace(bundle.clone());
                if self.commander.set_bundle(bundle).await.is_ok() {
                    tracing::info!(cas, revoked, "reloaded the CA bundle and deny list");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "CA bundle or deny list not reloaded; the previous ones stay in use")
            }
        }
    }
}

/// On SIGHUP, read the key file again and use its keys from then on (the
/// gossip socket and the control channel both): key rotation without a
/// restart. A file that does not load leaves the old keys in use. With
/// `[trust]`, the CA bundle and the deny list are read again too.
async fn reload_on_hangup(envelope: Envelope, key_file: std::path::PathBuf, trust: Option<Reload>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; key file reload disabled");
            return;
        }
    };
    while hangup.recv().await.is_some() {
        match Keyring::load(&key_file) {
            Ok(ring) => {
                let primary = envelope.reload(ring);
                tracing::info!(primary, keys = ?envelope.key_ids(), file = %key_file.display(), "reloaded the key file");
            }
            Err(e) => {
                tracing::warn!(error = %e, "key file not reloaded; the previous keys stay in use")
            }
        }
        if let Some(t) = &trust {
            t.run().await;
        }
    }
}
