//! Patrol integration-test support: a harness that starts real agents on
//! ephemeral loopback ports (or on an in-memory network), helpers to wait
//! for the mesh to reach a state, and the one way tests wait for a sweep's
//! document ([`finish`], which always checks its accounting).
//!
//! Tests live in `tests/tests/`; the simulator in `src/sim/` and the
//! `patrol-sim` binary.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use patrol_agent::agent::{self, AgentHandle, AgentSettings, AgentStats, Inspector, SweepEvent};
use patrol_agent::clock::WallClock;
use patrol_agent::datagram::Sealer;
use patrol_agent::envelope::Envelope;
use patrol_agent::keyring::Keyring;
use patrol_agent::membership::{MemberInfo, MemberState};
use patrol_agent::transport::{MemoryNetwork, Transport};
use patrol_checks::{CheckOutcome, Selector, SweepDocument};
use patrol_core::sweep::StartSweep;
use patrol_core::NodeSettings;
use tokio::sync::mpsc;

pub mod forge;
pub mod identities;
pub mod lab;
pub mod netns;
pub mod process;
pub mod sim;

/// An inspector with no checks: for tests about membership only.
#[derive(Debug, Default)]
pub struct NoChecks;

impl Inspector for NoChecks {
    fn inspect(
        &self,
        _selector: &Selector,
        _budget: std::time::Duration,
    ) -> Pin<Box<dyn Future<Output = Vec<CheckOutcome>> + Send>> {
        Box::pin(async { Vec::new() })
    }
}

/// An inspector that counts how often it ran and answers one passing
/// check (`probe`).
#[derive(Debug, Default)]
pub struct CountingInspector {
    pub runs: std::sync::atomic::AtomicU64,
}

impl CountingInspector {
    pub fn runs(&self) -> u64 {
        self.runs.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Inspector for CountingInspector {
    fn inspect(
        &self,
        _selector: &Selector,
        _budget: std::time::Duration,
    ) -> Pin<Box<dyn Future<Output = Vec<CheckOutcome>> + Send>> {
        self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async {
            vec![CheckOutcome {
                id: "probe".into(),
                kind: "test".into(),
                status: patrol_checks::Status::Pass,
                severity: patrol_checks::Severity::Fail,
                observed: patrol_checks::Observed::Number(1.0),
                expected: "1".into(),
                message: "ok".into(),
                duration_us: 1,
                description: String::new(),
                remediation: String::new(),
            }]
        })
    }
}

/// An inspector whose checks never finish: an agent that runs, talks to
/// the mesh, and never answers (a check hung in a way its timeout cannot
/// cut, e.g. a blocked runtime thread).
#[derive(Debug, Default)]
pub struct HungInspector;

impl Inspector for HungInspector {
    fn inspect(
        &self,
        _selector: &Selector,
        _budget: std::time::Duration,
    ) -> Pin<Box<dyn Future<Output = Vec<CheckOutcome>> + Send>> {
        Box::pin(std::future::pending())
    }
}

/// The real check executor over checks given as `[[check]]` TOML.
pub fn catalog_inspector(checks_toml: &str) -> patrol_agent::inspector::CatalogInspector {
    let config = patrol_config::Config::parse(checks_toml, std::path::Path::new("test.toml"))
        .expect("test config parses");
    let catalog = patrol_checks::Catalog::from_config(&config).expect("test checks parse");
    patrol_agent::inspector::CatalogInspector::new(catalog, BTreeMap::new(), 4)
}

/// A fresh envelope for cluster `test` under a new random key.
pub fn new_envelope() -> Envelope {
    Envelope::new(Keyring::generate(), "test")
}

/// Settings for a test agent.
pub fn settings(
    name: &str,
    seeds: Vec<SocketAddr>,
    tags: BTreeMap<String, String>,
) -> AgentSettings {
    AgentSettings {
        name: name.to_string(),
        tags,
        seeds,
        advertise: None,
        node: NodeSettings {
            cluster: "test".to_string(),
            ..NodeSettings::default()
        },
        clock: Default::default(),
        started_at_unix_ms: None,
        trust: None,
    }
}

/// Start an agent on a real UDP socket on 127.0.0.1 (port given, or 0).
pub async fn udp_agent(
    name: &str,
    port: u16,
    seeds: Vec<SocketAddr>,
    envelope: &Envelope,
    inspector: Arc<dyn Inspector>,
) -> AgentHandle {
    udp_agent_with(
        settings(name, seeds, BTreeMap::new()),
        port,
        envelope,
        inspector,
    )
    .await
}

/// Start an agent with `settings` (e.g. a shifted clock) on a real UDP
/// socket on 127.0.0.1 (port given, or 0).
pub async fn udp_agent_with(
    settings: AgentSettings,
    port: u16,
    envelope: &Envelope,
    inspector: Arc<dyn Inspector>,
) -> AgentHandle {
    let transport = Transport::udp(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("bind a loopback UDP socket");
    agent::start(settings, transport, envelope.clone(), inspector)
}

/// Start an agent on an in-memory network.
pub fn memory_agent(
    net: &MemoryNetwork,
    name: &str,
    seeds: Vec<SocketAddr>,
    envelope: &Envelope,
    inspector: Arc<dyn Inspector>,
) -> AgentHandle {
    agent::start(
        settings(name, seeds, BTreeMap::new()),
        net.attach(),
        envelope.clone(),
        inspector,
    )
}

/// Poll `probe` every 100 ms until it returns `Some`, or panic with
/// `what` and the last state after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = tokio::time::Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        match probe().await {
            Ok(v) => return v,
            Err(state) => last = state,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}; last state: {last}");
}

/// The state `agent` reports for member `name`, if listed.
pub async fn state_of(agent: &AgentHandle, name: &str) -> Option<MemberState> {
    agent
        .members()
        .await
        .ok()?
        .into_iter()
        .find(|m| m.name == name)
        .map(|m| m.state)
}

/// Count members by state.
pub fn count(members: &[MemberInfo], state: MemberState) -> usize {
    members.iter().filter(|m| m.state == state).count()
}

/// Wait until every agent lists exactly `n` alive members.
pub async fn wait_converged(agents: &[AgentHandle], n: usize, limit: Duration) {
    wait_for(
        limit,
        &format!("{} agents to list {n} alive members", agents.len()),
        || async {
            let mut worst = None;
            for a in agents {
                let members = a.members().await.map_err(|e| e.to_string())?;
                let alive = count(&members, MemberState::Alive);
                if alive != n {
                    worst = Some(format!("{} sees {alive} alive", a.name));
                    break;
                }
            }
            match worst {
                None => Ok(()),
                Some(w) => Err(w),
            }
        },
    )
    .await
}

/// Wait until `probe` holds for `agent`'s stats (each read is a round
/// trip through its owner task).
pub async fn wait_stats(
    agent: &AgentHandle,
    limit: Duration,
    what: &str,
    probe: impl Fn(&AgentStats) -> bool,
) {
    wait_for(limit, what, || async {
        let s = agent.stats().await.map_err(|e| e.to_string())?;
        if probe(&s) {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await
}

// Barriers, for tests that assert that something did not happen: they
// wait until the agent has handled what could have made it happen, rather
// than for a while (which passes when a run is merely late).

/// A barrier datagram: sealed under `envelope` (so it opens) on a channel
/// that does not exist, so the node counts it in
/// `NodeStats::dropped_malformed`. One sender's datagrams reach the node
/// in order: once the marker is counted, everything sent before it from
/// the same socket was handled ([`wait_stats`] on that counter).
pub fn marker(envelope: &Envelope, to: std::net::SocketAddr) -> Vec<u8> {
    const NO_SUCH_CHANNEL: u8 = 0xEE;
    let mut sealed = Vec::new();
    Sealer::new(envelope.clone(), WallClock::default())
        .seal(&[NO_SUCH_CHANNEL], to, &mut sealed)
        .expect("seal a marker");
    sealed
}

/// A stats round trip to every agent, which handles commands in order: so
/// each has handled every command sent to it before (a control server's
/// too), and none of them started a sweep.
pub async fn assert_no_sweep_started(agents: &[AgentHandle]) {
    for a in agents {
        let s = a.stats().await.expect("agent running");
        assert_eq!(s.node.sweeps_coordinated, 0, "{} started a sweep", a.name);
    }
}

/// A sweep of every check on every node, ending `deadline` after it
/// starts.
pub fn sweep_spec(deadline: Duration) -> StartSweep {
    StartSweep {
        selector: Selector::default(),
        node_filter: BTreeMap::new(),
        deadline,
        id: None,
        authorization: None,
    }
}

/// Every node of `doc` in exactly one state, and the counts agree with
/// the list; panics saying what is off.
pub fn assert_accounted(doc: &SweepDocument) {
    if let Err(e) = doc.check_accounting() {
        panic!("{e}");
    }
}

/// How a sweep's events ended: the document, and the progress reported
/// before it.
#[derive(Debug)]
pub struct Finished {
    pub doc: SweepDocument,
    /// Every `(answered, expected)` progress event, in order.
    pub progress: Vec<(u64, u64)>,
}

/// Wait for the document at the end of a sweep's `events`, each event at
/// most `limit` after the one before. Panics when the sweep is refused,
/// dropped or silent that long, when a progress event counts more answers
/// than expected, and when the document's accounting does not hold
/// ([`assert_accounted`]).
pub async fn finish(mut events: mpsc::Receiver<SweepEvent>, limit: Duration) -> Finished {
    let mut progress = Vec::new();
    loop {
        match tokio::time::timeout(limit, events.recv()).await {
            Ok(Some(SweepEvent::Progress { answered, expected })) => {
                assert!(answered <= expected, "progress {answered}/{expected}");
                progress.push((answered, expected));
            }
            Ok(Some(SweepEvent::Done(doc))) => {
                let doc = doc.to_document();
                assert_accounted(&doc);
                return Finished { doc, progress };
            }
            Ok(Some(SweepEvent::Refused(reason))) => panic!("the sweep was refused: {reason}"),
            Ok(None) => panic!("the agent dropped the sweep"),
            Err(_) => panic!("no sweep result within {limit:?} of the last event"),
        }
    }
}

/// Wait (blocking, for tests driving processes) until `f` holds, trying
/// every 200 ms; panics after `limit` with the last reason.
pub fn wait_blocking(limit: Duration, what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let start = std::time::Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        match f() {
            Ok(()) => return,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {limit:?} waiting for {what}; last: {last}");
}
