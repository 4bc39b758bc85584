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

/// Start a daemon from a loaded config and an envelope.
pub async fn start_with(config: &Config, envelope: Envelope) -> Result<Daemon, StartError> {
    let catalog = patrol_checks::Catalog::from_config(config)?;
    let inspector = Arc::new(CatalogInspector::with_runner(
        catalog,
        config.node.tags.clone(),
        patrol_checks::Runner::new(
            patrol_checks::host_for(&config.node),
            config.checks.concurrency,
        ),
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
        agent.tasks().spawn(crate::metrics::serve(l, exporter));
    }
    agent
        .tasks()
        .spawn(crate::control::serve(listener, envelope, commander));
    Ok(Daemon {
        ready: Ready {
            name: config.node.name.clone(),
            gossip: advertise,
            control: control_addr,
        },
        agent,
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
                datagrams_in: stats.node.datagrams_in,
                datagrams_out: stats.node.datagrams_out,
                dropped_unsealed: stats.dropped_unsealed,
                dropped_malformed: stats.node.dropped_malformed,
                dropped_outbound: stats.dropped_outbound,
                sweeps_coordinated: stats.node.sweeps_coordinated,
                refused: vec![
                    ("clock_skew".into(), stats.node.sweep.requests_clock_skew),
                    (
                        "over_capacity".into(),
                        stats.node.sweep.requests_over_capacity,
                    ),
                    ("answer_piece".into(), stats.node.sweep.pieces_refused),
                    ("ack".into(), stats.node.sweep.acks_refused),
                ],
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
    daemon
        .agent
        .tasks()
        .spawn(reload_on_hangup(envelope, config.node.key_file.clone()));
    on_ready(&daemon.ready);
    shutdown.await;
    Ok(daemon.stop(StopMode::Leave).await)
}

/// On SIGHUP, read the key file again and use its keys from then on (the
/// gossip socket and the control channel both): key rotation without a
/// restart. A file that does not load leaves the old keys in use.
async fn reload_on_hangup(envelope: Envelope, key_file: std::path::PathBuf) {
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
    }
}
