//! [`Lab`]: real agents on one in-memory network under one key, each
//! with a [`Probe`] inspector, joined through the first and converged;
//! sweeps, stats and members by node name. The hostile-peer suite attacks
//! it (`tests/hostile.rs`): the network can record and replay every
//! datagram (`MemoryNetwork::capture`, `inject`), and each node's identity
//! is known exactly, so forged foca packets can name it.
//!
//! Network namespaces with real processes are another thing:
//! [`crate::netns::Hosts`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use patrol_agent::agent::{self, AgentHandle, AgentStats, Inspector, StopMode, SweepEvent};
use patrol_agent::clock::WallClock;
use patrol_agent::envelope::Envelope;
use patrol_agent::identity::NodeId;
use patrol_agent::sweep::SweepSettings;
use patrol_agent::transport::MemoryNetwork;
use patrol_checks::{CheckOutcome, Observed, Selector, Severity, Status, SweepDocument};
use patrol_core::NodeSettings;
use tokio::sync::mpsc;

use crate::{finish, new_envelope, sweep_spec, wait_converged};

/// How long a lab waits for anything; only stops a broken run from
/// hanging.
pub const LIMIT: Duration = Duration::from_secs(30);

/// An inspector with one passing check that takes `delay` (so that a
/// sweep stays open while it is attacked), counting its runs and the most
/// it ran at once.
#[derive(Debug, Default)]
pub struct Probe {
    delay_ms: AtomicU64,
    runs: AtomicU64,
    running: Arc<AtomicU64>,
    /// The most checks that ran at once.
    pub peak: Arc<AtomicU64>,
}

impl Probe {
    /// How often the checks ran.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }

    /// Make every later run take `d`.
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Inspector for Probe {
    fn inspect(
        &self,
        _selector: &Selector,
        _budget: Duration,
    ) -> Pin<Box<dyn Future<Output = Vec<CheckOutcome>> + Send>> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let delay = Duration::from_millis(self.delay_ms.load(Ordering::SeqCst));
        let (running, peak) = (Arc::clone(&self.running), Arc::clone(&self.peak));
        Box::pin(async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            running.fetch_sub(1, Ordering::SeqCst);
            vec![CheckOutcome {
                id: "probe".into(),
                kind: "test".into(),
                status: Status::Pass,
                severity: Severity::Fail,
                observed: Observed::Number(1.0),
                expected: "1".into(),
                message: "ok".into(),
                duration_us: 1,
                description: String::new(),
                remediation: String::new(),
            }]
        })
    }
}

/// Real agents on one in-memory network under one key.
pub struct Lab {
    pub net: MemoryNetwork,
    pub env: Envelope,
    pub nodes: Vec<AgentHandle>,
    /// Each node's identity, exactly as foca knows it.
    pub ids: Vec<NodeId>,
    pub probes: Vec<Arc<Probe>>,
    /// A certified lab: the CA every node's identity is from, and the
    /// operator that signs its sweeps.
    pub ca: Option<Arc<crate::identities::TestCa>>,
    pub operator: Option<patrol_core::trust::Credentials>,
}

/// Node settings for a lab: the shipped defaults with `sweep` changed.
pub fn node_settings(sweep: SweepSettings) -> NodeSettings {
    NodeSettings {
        cluster: "test".to_string(),
        sweep,
        ..NodeSettings::default()
    }
}

impl Lab {
    /// Agents named `names`, joined through the first, converged.
    pub async fn start(names: &[&str], settings: NodeSettings) -> Lab {
        let net = MemoryNetwork::new(0.0, 12);
        let env = new_envelope();
        let mut lab = Lab {
            net,
            env,
            nodes: Vec::new(),
            ids: Vec::new(),
            probes: Vec::new(),
            ca: None,
            operator: None,
        };
        for name in names {
            lab.add(name, settings.clone());
        }
        wait_converged(&lab.nodes, names.len(), LIMIT).await;
        lab
    }

    /// Like [`Lab::start`], every node with an identity from a new CA
    /// (`[trust]`), and an operator of full scope signing the sweeps.
    pub async fn start_certified(names: &[&str], settings: NodeSettings) -> Lab {
        let ca = Arc::new(crate::identities::TestCa::new("lab-ca"));
        let operator = ca.creds_for(
            patrol_core::trust::Role::Operator(patrol_core::trust::Scope::full(600_000)),
            "lab-operator",
            Duration::from_secs(3600),
        );
        let mut lab = Lab {
            net: MemoryNetwork::new(0.0, 12),
            env: new_envelope(),
            nodes: Vec::new(),
            ids: Vec::new(),
            probes: Vec::new(),
            ca: Some(ca),
            operator: Some(operator),
        };
        for name in names {
            lab.add(name, settings.clone());
        }
        wait_converged(&lab.nodes, names.len(), LIMIT).await;
        lab
    }

    /// Start one more agent, joining through the first; its index.
    pub fn add(&mut self, name: &str, settings: NodeSettings) -> usize {
        self.add_with(name, settings, true)
    }

    /// Start one more agent; in a certified lab, with an identity only when
    /// `certified` (without one it holds the cluster key alone).
    pub fn add_with(&mut self, name: &str, settings: NodeSettings, certified: bool) -> usize {
        let seeds = self.nodes.first().map(|n| vec![n.addr]).unwrap_or_default();
        let mut s = crate::settings(name, seeds, BTreeMap::new());
        s.node = settings;
        // A known start time is a known bump: the evil node can address
        // foca packets to exact identities.
        let started = WallClock::default().unix_ms() + self.nodes.len() as u64;
        s.started_at_unix_ms = Some(started);
        if let Some(ca) = self.ca.as_ref().filter(|_| certified) {
            s.trust = Some(ca.node_trust(name, ca.bundle()));
        }
        let probe = Arc::new(Probe::default());
        let handle = agent::start(s, self.net.attach(), self.env.clone(), probe.clone());
        self.ids.push(NodeId::new(
            name,
            handle.addr,
            NodeId::bump_from_unix_ms(started),
            BTreeMap::new(),
        ));
        self.nodes.push(handle);
        self.probes.push(probe);
        self.nodes.len() - 1
    }

    pub fn node(&self, name: &str) -> &AgentHandle {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .expect("a lab node")
    }

    pub fn index(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .expect("a lab node")
    }

    /// Node `name`'s stats: a round trip through its owner task, so
    /// everything it received before was handled.
    pub async fn stats(&self, name: &str) -> AgentStats {
        self.node(name).stats().await.expect("agent running")
    }

    /// Wait until `probe` holds for the stats of node `name`.
    pub async fn wait_stats(&self, name: &str, what: &str, probe: impl Fn(&AgentStats) -> bool) {
        crate::wait_stats(self.node(name), LIMIT, what, probe).await
    }

    /// Start a sweep coordinated by `name` (signed by the lab's operator
    /// in a certified lab); its events.
    pub async fn start_sweep(&self, name: &str, deadline: Duration) -> mpsc::Receiver<SweepEvent> {
        self.start_sweep_as(name, deadline, self.operator.as_ref())
            .await
    }

    /// [`Lab::start_sweep`] signed by `operator` (none: unsigned).
    pub async fn start_sweep_as(
        &self,
        name: &str,
        deadline: Duration,
        operator: Option<&patrol_core::trust::Credentials>,
    ) -> mpsc::Receiver<SweepEvent> {
        let mut spec = sweep_spec(deadline);
        if let Some(op) = operator {
            let id = rand::random::<u64>();
            let ask = patrol_core::trust::authorization::SweepAsk {
                sweep_id: id,
                selector: &spec.selector,
                node_filter: &spec.node_filter,
                deadline_ms: deadline.as_millis() as u64,
                coordinator: name,
            };
            spec.authorization = Some(patrol_core::trust::Authorization::sign(
                op,
                &ask,
                WallClock::default().unix_ms(),
            ));
            spec.id = Some(id);
        }
        self.node(name)
            .start_sweep(spec)
            .await
            .expect("agent running")
    }

    /// A whole sweep coordinated by `name`: its document, accounting
    /// checked ([`finish`]).
    pub async fn sweep(&self, name: &str, deadline: Duration) -> SweepDocument {
        finish(self.start_sweep(name, deadline).await, LIMIT)
            .await
            .doc
    }

    /// Stop every node hard.
    pub async fn stop(self) {
        for n in self.nodes {
            n.stop(StopMode::Crash).await;
        }
    }
}
