//! The agent as a daemon: config in, running tasks out. This is what the
//! `patrol-agent` binary and `patrol demo` call.
//!
//! Config becomes running tasks like this: the key file becomes the
//! envelope; `[[check]]` and `[checks] profiles` become the inspector; the
//! `[node]` bind address becomes the UDP transport; the agent task starts
//! and joins through the seeds; the control listener starts on
//! `[control] listen`. Everything stops on the shutdown future. Every
//! tunable the daemon uses is in one [`DaemonSettings`], built from the
//! config and validated before anything binds.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use patrol_config::Config;
use tokio::net::TcpListener;

use crate::agent::{self, AgentHandle, AgentSettings, AgentStats, StopMode};
use crate::control::server::ControlSettings;
use crate::envelope::Envelope;
use crate::hangup::Reload;
use crate::inspector::CatalogInspector;
use crate::keyring::Keyring;
pub use crate::node_trust::NodeTrust;
use crate::transport::{Transport, TransportSettings, MAX_SEALED_DATAGRAM};
use patrol_core::{NodeSettings, SettingsError};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] patrol_config::ConfigError),
    #[error("{0}")]
    Key(#[from] crate::keyring::KeyringError),
    #[error("invalid settings: {0}")]
    Settings(#[from] SettingsError),
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
    #[error("[trust] enroll: {0}")]
    Enroll(#[from] crate::enroll::EnrollError),
    /// `[trust]` names files that are not there: a fresh install, before
    /// the node has its identity. Says which and how to provide it.
    #[error("{0}")]
    NoIdentity(String),
}

/// What a `[trust]` node lacks before it can start, in words: the root
/// CA's certificate, and (without `enroll`) its own certificate. Checked
/// before enrolling and before loading, so a fresh install says what to
/// provide instead of failing on the first file it cannot read.
pub fn check_identity_files(config: &Config) -> Result<(), StartError> {
    let Some(t) = &config.trust else {
        return Ok(());
    };
    if !t.ca_bundle.exists() {
        return Err(StartError::NoIdentity(format!(
            "[trust] ca_bundle {} does not exist: this node runs with identities: put the root CA's certificate there (`patrol ca init`'s ca.crt)",
            t.ca_bundle.display()
        )));
    }
    if t.enroll.is_none() && !t.cert.exists() {
        return Err(StartError::NoIdentity(format!(
            "[trust] cert {} does not exist: this node has no certificate. Set [trust] enroll and enroll_token_file and the agent enrolls itself, or issue one (`patrol ca issue node --name {}`) and put its node.crt and node.key at [trust] cert and key",
            t.cert.display(),
            config.node.name
        )));
    }
    Ok(())
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
    check_identity_files(config)?;
    let (creds, chain) = crate::trust_files::load_identity(&t.cert, &t.key)?;
    let bundle = crate::trust_files::load_bundle_with_chain(
        &t.ca_bundle,
        t.deny_list.as_deref(),
        &t.cert,
        &chain,
    )?;
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
        roster_file: Some(t.roster_file.clone()),
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
    pub bundle: Option<Arc<tokio::sync::watch::Sender<patrol_core::trust::TrustBundle>>>,
    /// Where a renewed certificate goes for the control channel (with
    /// `[trust]`).
    pub node: Option<tokio::sync::watch::Sender<patrol_core::trust::Credentials>>,
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

/// Every tunable a daemon runs with: the node's, the transport's, the
/// control channel's and its own. [`DaemonSettings::from_config`] is the
/// one place the defaults meet the config; everything the daemon starts
/// reads these.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSettings {
    /// The node's settings: the tuned defaults with the config's cluster
    /// name, `[sweep] max_concurrent` and `[sweep] clock_skew_limit`.
    pub node: NodeSettings,
    pub transport: TransportSettings,
    pub control: ControlSettings,
    /// The `/metrics` endpoint's limits (`[metrics]` has no keys for them).
    pub metrics: crate::metrics::MetricsSettings,
    /// How often seed names are resolved again, so a seed whose name did
    /// not resolve at boot, or that moved, is still found. Default 30 s:
    /// two lookups a minute per seed name, and a seed that moved is found
    /// within half a minute. Must not be zero.
    pub seed_refresh: Duration,
    /// How long an agent whose config lists seeds may see no other node
    /// before it logs a warning (again each time it falls alone). Default
    /// 60 s: a join takes one gossip round trip, and a seed that restarts
    /// is back well within a minute, so a minute alone is a wrong seed
    /// address, a closed port or another cluster key, not bad luck. Must
    /// not be zero.
    pub seed_warning: Duration,
}

impl DaemonSettings {
    /// The settings a daemon runs `config` with.
    pub fn from_config(config: &Config) -> DaemonSettings {
        let mut node = NodeSettings::default();
        node.cluster = config.node.cluster.clone();
        node.max_datagram =
            MAX_SEALED_DATAGRAM - crate::envelope::OVERHEAD - crate::datagram::REPLAY_HEADER;
        node.sweep.max_concurrent = config.sweep.max_concurrent;
        node.sweep.clock_skew_limit = config.sweep.clock_skew_limit;
        node.roster_expiry = config.sweep.roster_expiry;
        let control = ControlSettings {
            deadline_max: node.sweep.max_deadline,
            quota: crate::control::server::QuotaSettings {
                max_sweeps: (node.sweep.max_participations / 4).max(1),
                ..Default::default()
            },
            ..ControlSettings::default()
        };
        DaemonSettings {
            node,
            transport: TransportSettings::default(),
            control,
            metrics: crate::metrics::MetricsSettings::default(),
            seed_refresh: Duration::from_secs(30),
            seed_warning: Duration::from_secs(60),
        }
    }

    /// Check every constraint a doc states, the node's and the
    /// transport's included, and how they fit together: a sealed node
    /// datagram fits [`MAX_SEALED_DATAGRAM`], and the control channel
    /// accepts no deadline the node refuses.
    pub fn validate(&self) -> Result<(), SettingsError> {
        use patrol_core::constraint::{at_most, not_above, not_zero};
        self.node.validate()?;
        self.transport.validate()?;
        self.metrics.validate()?;
        at_most(
            "node.max_datagram",
            self.node.max_datagram,
            MAX_SEALED_DATAGRAM - crate::envelope::OVERHEAD - crate::datagram::REPLAY_HEADER,
        )?;
        not_zero("control.deadline_min", self.control.deadline_min)?;
        not_above(
            "control.deadline_min",
            self.control.deadline_min,
            "control.deadline_max",
            self.control.deadline_max,
        )?;
        not_above(
            "control.deadline_max",
            self.control.deadline_max,
            "node.sweep.max_deadline",
            self.node.sweep.max_deadline,
        )?;
        not_zero("control.quota.max_sweeps", self.control.quota.max_sweeps)?;
        not_zero("control.quota.per_minute", self.control.quota.per_minute)?;
        not_zero("seed_refresh", self.seed_refresh)?;
        not_zero("seed_warning", self.seed_warning)
    }
}

/// Resolve the seed names again every `every` and hand the agent the
/// addresses when they change. `last` is what the agent started with.
async fn refresh_seeds(
    names: Vec<String>,
    mut last: Vec<SocketAddr>,
    commander: agent::Commander,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        let now = resolve_seeds(&names).await;
        if now != last && !now.is_empty() {
            if commander.set_seeds(now.clone()).await.is_err() {
                return;
            }
            last = now;
        }
    }
}

/// Every `after`, look at the members: an agent that sees no other node
/// although its config lists seeds logs a warning naming them (once each
/// time it falls alone), and an info line when it is joined again.
async fn warn_when_alone(seeds: Vec<String>, commander: agent::Commander, after: Duration) {
    let mut warned = false;
    loop {
        tokio::time::sleep(after).await;
        let Ok(members) = commander.members().await else {
            return;
        };
        let alone = members.iter().all(|m| {
            m.is_self
                || matches!(
                    m.state,
                    crate::membership::MemberState::Down | crate::membership::MemberState::Left
                )
        });
        if alone && !warned {
            tracing::warn!(
                seeds = %seeds.join(", "),
                "no seed has answered within {}: this agent is alone in its cluster (check the seed addresses, that their gossip port is open to this node, and that they share this cluster name and key)",
                patrol_config::format_duration(after)
            );
        } else if !alone && warned {
            tracing::info!(
                members = members.len(),
                "joined: this agent sees other nodes again"
            );
        }
        warned = alone;
    }
}

/// Start a daemon from a loaded config and an envelope, with the
/// identity from `[trust]` when the config has one.
pub async fn start_with(config: &Config, envelope: Envelope) -> Result<Daemon, StartError> {
    check_identity_files(config)?;
    if let Some(e) = crate::enroll::renewal::Enrollment::from_config(config) {
        crate::enroll::renewal::enroll_if_needed(&e).await?;
    }
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
    let settings = DaemonSettings::from_config(config);
    settings.validate()?;
    let catalog = patrol_checks::Catalog::from_config(config)?;
    // `[checks] command_user` needs an agent running as root.
    catalog.check_user_switch()?;
    let inspector = Arc::new(CatalogInspector::with_runner(
        catalog,
        config.node.tags.clone(),
        patrol_checks::Runner::for_checks(patrol_checks::host_for(&config.node), &config.checks),
    ));
    // With `[trust]`: the node's certificate and bundle, replaced by
    // renewals and SIGHUP, read by the control channel and by the
    // `patrol.cert_expiry` outcome every answer carries.
    let watches = trust.as_ref().map(|t| {
        (
            tokio::sync::watch::channel(t.creds.clone()),
            tokio::sync::watch::channel(t.bundle.clone()),
        )
    });
    let inspector: Arc<dyn agent::Inspector> = match &watches {
        Some(((_, node), (_, bundle))) => Arc::new(crate::cert_expiry::ExpiryInspector::new(
            inspector,
            node.clone(),
            bundle.clone(),
        )),
        None => inspector,
    };
    let meter = crate::metrics::CheckMeter::default();
    let inspector = Arc::new(crate::metrics::MeteredInspector::new(
        inspector,
        meter.clone(),
    ));
    let transport = Transport::udp_with(config.node.bind, settings.transport.clone())
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
    let agent_settings = AgentSettings {
        name: config.node.name.clone(),
        tags: config.node.tags.clone(),
        seeds: seeds.clone(),
        advertise: Some(advertise),
        node: settings.node.clone(),
        clock: crate::clock::WallClock::default(),
        started_at_unix_ms: None,
        trust: trust.clone(),
    };
    let mut agent = agent::start(agent_settings, transport, envelope.clone(), inspector);
    let commander = agent.commander();
    if !config.node.seeds.is_empty() {
        let names = config.node.seeds.clone();
        agent.tasks().spawn(refresh_seeds(
            names,
            seeds.clone(),
            commander.clone(),
            settings.seed_refresh,
        ));
    }
    // Seeds other than this node (a seed name that did not resolve counts:
    // it is not this node either).
    let other_seeds = seeds.len() < config.node.seeds.len()
        || seeds
            .iter()
            .any(|a| *a != advertise && *a != config.node.bind);
    if other_seeds {
        agent.tasks().spawn(warn_when_alone(
            config.node.seeds.clone(),
            commander.clone(),
            settings.seed_warning,
        ));
    }
    if let Some(l) = metrics_listener {
        let exporter = crate::metrics::Exporter::new(metrics_source(commander.clone()), meter);
        agent
            .tasks()
            .spawn(crate::metrics::serve(l, exporter, settings.metrics.clone()));
    }
    let (bundle, node) = match (&trust, watches) {
        (Some(t), Some(((node_tx, node_rx), (tx, rx)))) => {
            let auth = crate::control::server::CertAuth {
                cluster: config.node.cluster.clone(),
                node: node_rx,
                bundle: rx,
                audit: t.audit.clone(),
                clock: crate::clock::WallClock::default(),
                sweep: settings.node.sweep.clone(),
            };
            agent.tasks().spawn(crate::control::server::serve_with(
                settings.control.clone(),
                listener,
                crate::control::server::ControlAuth::Certificates(Box::new(auth)),
                commander,
            ));
            (Some(Arc::new(tx)), Some(node_tx))
        }
        _ => {
            tracing::warn!("no [trust] section: the cluster key is the only trust boundary (any key holder can answer for any node and start sweeps); see `patrol ca`");
            agent.tasks().spawn(crate::control::server::serve_with(
                settings.control.clone(),
                listener,
                envelope,
                commander,
            ));
            (None, None)
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
        node,
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
            let roster = commander.roster().await.ok()?;
            Some(crate::metrics::Snapshot {
                members: by_state,
                counts: stats.counts(),
                roster,
            })
        })
    })
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
    crate::enroll::renewal::spawn(config, &mut daemon);
    let trust = match (&config.trust, daemon.bundle.take()) {
        (Some(t), Some(tx)) => Some(Reload {
            ca_bundle: t.ca_bundle.clone(),
            cert: t.cert.clone(),
            deny_list: t.deny_list.clone(),
            watch: tx,
            commander: daemon.agent.commander(),
        }),
        _ => None,
    };
    daemon.agent.tasks().spawn(crate::hangup::reload_on_hangup(
        envelope,
        config.node.key_file.clone(),
        trust,
    ));
    on_ready(&daemon.ready);
    shutdown.await;
    Ok(daemon.stop(StopMode::Leave).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            "[node]\nname = \"n1\"\ncluster = \"c1\"\nbind = \"127.0.0.1:0\"\n[sweep]\nmax_concurrent = 3\n",
            std::path::Path::new("test.toml"),
        )
        .expect("test config parses")
    }

    #[test]
    fn the_settings_of_a_config_are_valid_and_carry_its_values() {
        let s = DaemonSettings::from_config(&config());
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.node.cluster, "c1");
        assert_eq!(s.node.sweep.max_concurrent, 3);
        assert_eq!(s.node.max_datagram, NodeSettings::default().max_datagram);
        assert_eq!(s.control.deadline_max, s.node.sweep.max_deadline);
    }

    #[test]
    fn a_control_deadline_beyond_the_nodes_is_refused() {
        let mut s = DaemonSettings::from_config(&config());
        s.node.sweep.max_deadline = Duration::from_secs(60);
        let e = s.validate().unwrap_err();
        assert_eq!(e.field, "control.deadline_max");
    }

    #[test]
    fn a_node_datagram_that_would_not_fit_sealed_is_refused() {
        let mut s = DaemonSettings::from_config(&config());
        s.node.max_datagram += 1;
        s.node.sweep.max_datagram = s.node.max_datagram - 1;
        assert_eq!(s.validate().unwrap_err().field, "node.max_datagram");
    }

    #[test]
    fn a_zero_transport_queue_is_refused() {
        let mut s = DaemonSettings::from_config(&config());
        s.transport.queue = 0;
        assert_eq!(s.validate().unwrap_err().field, "transport.queue");
    }
}
