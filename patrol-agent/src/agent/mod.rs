//! The agent's owner task: the I/O around one sans-IO [`Node`]. It hands
//! the node the datagrams the transport's opener task let through (opened,
//! not replayed) with the real clock, carries out the node's outputs (seal
//! and send, set a timer, run checks on the inspector, tell the requester),
//! and serves commands from the control channel and tests. Every decision
//! (eager push, direct spread, check budget, join backoff, resizing) is the
//! node's; nothing here would change in the simulator.
//!
//! **Architecture Invariant:** nothing but the owner task touches the
//! `Node`; there is no lock around it. Every task an agent starts is in the
//! one [`Tasks`] set and stops on its one cancellation token.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use patrol_checks::{CheckOutcome, Selector};
use patrol_core::counter_list::{
    Count, AUDIT_LINES_SUPPRESSED, CONTROL_REQUESTS_REFUSED, DATAGRAMS_DROPPED, TAG_SETS_UNSHARED,
};
use patrol_core::node::{MemberEvent, NodeStats, NodeTimer};
use patrol_core::{Node, NodeSettings, Now, Output};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

mod handle;

use handle::Command;
pub use handle::{AgentGone, AgentHandle, Commander, StopMode, SweepEvent};

use crate::clock::WallClock;
use crate::datagram::{GateCounters, Opener, ReplaySettings, Sealer, REPLAY_HEADER};
use crate::envelope::Envelope;
use crate::identity::NodeId;
use crate::shutdown::Tasks;
use crate::timers::{self, TimerSender};
use crate::transport::Transport;

/// Runs a node's checks for a sweep. The real one runs the checks of the
/// node's own config (`CatalogInspector`); tests may supply their own.
/// `budget` is the time left before the answer must leave for the
/// coordinator: an inspector cuts every check's timeout to it.
pub trait Inspector: Send + Sync + 'static {
    fn inspect(
        &self,
        selector: &Selector,
        budget: Duration,
    ) -> Pin<Box<dyn Future<Output = Vec<CheckOutcome>> + Send>>;
}

/// What an agent needs besides its transport, envelope and inspector.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub name: String,
    pub tags: BTreeMap<String, String>,
    /// Gossip addresses of nodes to join through (tried until one answers).
    pub seeds: Vec<SocketAddr>,
    /// Address others reach us at; default: the transport's local address.
    pub advertise: Option<SocketAddr>,
    /// Every tunable of the node (cluster name included).
    pub node: NodeSettings,
    /// The wall clock this agent reads (the system's unless a test shifts it).
    pub clock: WallClock,
    /// When this incarnation started, unix ms; its identity's bump is drawn
    /// from it. `None` (the default): now. Tests set it to play an agent
    /// that has been running for weeks.
    pub started_at_unix_ms: Option<u64>,
    /// Node and operator identities (`[trust]`); None: cluster key only.
    pub trust: Option<crate::node_trust::NodeTrust>,
}

/// Counters, for `members --stats`, tests and logs: the node's own plus
/// what only the shell sees.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStats {
    /// Datagrams that did not open (wrong key, corrupted, truncated, other
    /// cluster, too large, unknown key id): dropped before the node saw them.
    pub dropped_unsealed: u64,
    /// Datagrams that opened but were replayed (seen before, or older than
    /// their sender's window).
    pub dropped_replayed: u64,
    /// Datagrams sent too far from this node's clock: one of the clocks is
    /// wrong (or the datagram is a capture replayed later).
    pub dropped_clock_skew: u64,
    /// Datagrams dropped unread because their source was muted: it had
    /// sent `transport.mute_after` datagrams that did not open within a
    /// second (a flood).
    pub dropped_muted: u64,
    /// Datagrams addressed to another node (a capture replayed here, or a
    /// sender that reaches this node under an address it does not know as
    /// its own: check `advertise`).
    pub dropped_misdirected: u64,
    /// Other refusals: no replay header, too many sender sessions, the
    /// queue to the node full.
    pub dropped_other: u64,
    /// Sealed datagrams dropped because the transport's outbound queue was
    /// full.
    pub dropped_outbound: u64,
    /// With `[trust]`: refusals of control clients that proved no operator,
    /// over the audit budget (summed up in a `suppressed` audit line).
    pub audit_suppressed: u64,
    /// Sweeps the control channel refused because their operator already
    /// ran its share of this agent's sweeps at once.
    pub refused_operator_concurrent: u64,
    /// Sweeps the control channel refused because their operator started
    /// too many in the last minute.
    pub refused_operator_rate: u64,
    /// Tag sets given a copy of their own by the process's tag interner
    /// (`patrol_core::tags`): shared by every node in the process.
    pub tag_sets_unshared: u64,
    pub node: NodeStats,
}

/// Counters the control channel keeps, shared with the owner task through
/// the [`Commander`] (the owner reports them in [`AgentStats`]).
#[derive(Debug, Default)]
pub struct ControlCounters {
    pub refused_operator_concurrent: AtomicU64,
    pub refused_operator_rate: AtomicU64,
}

impl AgentStats {
    /// Every counter, as rows of the one counter list
    /// ([`patrol_core::counter_list`]): what `members --stats`, `/metrics`
    /// and the textfile show.
    pub fn counts(&self) -> Vec<Count> {
        // No `..`: a new field does not compile until it has a row.
        let AgentStats {
            dropped_unsealed,
            dropped_replayed,
            dropped_clock_skew,
            dropped_muted,
            dropped_misdirected,
            dropped_other,
            dropped_outbound,
            audit_suppressed,
            refused_operator_concurrent,
            refused_operator_rate,
            tag_sets_unshared,
            node,
        } = self;
        let mut rows = node.counts();
        // The shell's drops, next to the node's (`malformed`).
        let at = rows
            .iter()
            .position(|c| c.name == DATAGRAMS_DROPPED.name)
            .unwrap_or(rows.len());
        rows.splice(
            at..at,
            [
                DATAGRAMS_DROPPED.reason("unsealed", *dropped_unsealed),
                DATAGRAMS_DROPPED.reason("replayed", *dropped_replayed),
                DATAGRAMS_DROPPED.reason("clock_skew", *dropped_clock_skew),
                DATAGRAMS_DROPPED.reason("muted", *dropped_muted),
                DATAGRAMS_DROPPED.reason("misdirected", *dropped_misdirected),
                DATAGRAMS_DROPPED.reason("other", *dropped_other),
                DATAGRAMS_DROPPED.reason("outbound_full", *dropped_outbound),
            ],
        );
        rows.extend([
            AUDIT_LINES_SUPPRESSED.count(*audit_suppressed),
            CONTROL_REQUESTS_REFUSED.reason("operator_concurrent", *refused_operator_concurrent),
            CONTROL_REQUESTS_REFUSED.reason("operator_rate", *refused_operator_rate),
            TAG_SETS_UNSHARED.count(*tag_sets_unshared),
        ]);
        rows
    }
}

/// How often the roster is written when it changed.
const ROSTER_SAVE_EVERY: Duration = Duration::from_secs(10);

/// Start an agent on `transport`: the transport's tasks, the timer task and
/// the owner task, all in one new [`Tasks`] set.
pub fn start(
    settings: AgentSettings,
    transport: Transport,
    envelope: Envelope,
    inspector: Arc<dyn Inspector>,
) -> AgentHandle {
    let mut tasks = Tasks::new();
    let addr = settings.advertise.unwrap_or(transport.local_addr);
    let started = settings.clock.unix_ms();
    let bump = NodeId::bump_from_unix_ms(settings.started_at_unix_ms.unwrap_or(started));
    let me = NodeId::new(settings.name.clone(), addr, bump, settings.tags.clone());
    let gate = Arc::new(GateCounters::default());
    let own = vec![addr, transport.local_addr];
    let opener = Opener::new(
        envelope.clone(),
        settings.clock,
        ReplaySettings::default(),
        own,
    );
    let (inbound, outbound) = transport.spawn_gated(&mut tasks, opener, Arc::clone(&gate));
    let (timers, due) = timers::spawn::<NodeTimer>(&mut tasks);
    let (cmd_tx, commands) = mpsc::channel(64);
    let control = Arc::new(ControlCounters::default());
    let epoch = Instant::now();
    let now = Now {
        mono: Duration::ZERO,
        unix_ms: started,
    };
    let mut node = Node::new(me, settings.node.clone(), rand::random(), now);
    let audit = settings.trust.as_ref().and_then(|t| t.audit.clone());
    let roster_file = settings.trust.as_ref().and_then(|t| t.roster_file.clone());
    if let Some(t) = settings.trust {
        node.set_trust(t.creds, t.bundle, now);
        if let Some(path) = &roster_file {
            if let Some(roster) = crate::roster_file::load(path, &settings.name, &settings.node) {
                node.set_roster(roster);
            }
        }
    }
    node.set_seeds(now, settings.seeds.clone());
    let owner = Owner {
        node,
        sealer: Sealer::new(envelope, settings.clock),
        gate,
        outbound,
        timers,
        inspector,
        checks: JoinSet::new(),
        requesters: HashMap::new(),
        epoch,
        clock: settings.clock,
        stats: AgentStats::default(),
        audit,
        roster_file,
        control: Arc::clone(&control),
    };
    tasks.spawn(owner.run(inbound, due, commands));
    AgentHandle {
        name: settings.name,
        addr,
        commander: Commander {
            tx: cmd_tx,
            control,
        },
        tasks,
    }
}

struct Owner {
    node: Node,
    sealer: Sealer,
    /// What the opener task refused (it counts, we report).
    gate: Arc<GateCounters>,
    outbound: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    timers: TimerSender<NodeTimer>,
    inspector: Arc<dyn Inspector>,
    /// Running checks: aborted and awaited on a stop, aborted if the owner
    /// is dropped (its task cancelled).
    checks: JoinSet<(u64, Vec<CheckOutcome>)>,
    requesters: HashMap<u64, mpsc::Sender<SweepEvent>>,
    epoch: Instant,
    clock: WallClock,
    stats: AgentStats,
    /// Where the node's audit entries go (with `[trust]`).
    audit: Option<crate::audit::AuditLog>,
    /// Where the roster is saved (with `[trust]`).
    roster_file: Option<std::path::PathBuf>,
    /// What the control channel refused (it counts, we report).
    control: Arc<ControlCounters>,
}

impl Owner {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
        mut due: mpsc::UnboundedReceiver<NodeTimer>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        self.carry_out();
        let mut save = tokio::time::interval(ROSTER_SAVE_EVERY);
        save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = save.tick(), if self.roster_file.is_some() => self.save_roster(),
                Some((from, bytes)) = inbound.recv() => self.on_datagram(from, &bytes),
                Some(timer) = due.recv() => self.node.timer(self.now(), timer),
                Some(Ok((sweep_id, outcomes))) = self.checks.join_next(), if !self.checks.is_empty() => {
                    self.node.checks_done(self.now(), sweep_id, outcomes);
                }
                Some(cmd) = commands.recv() => {
                    if let Command::Stop(mode, reply) = cmd {
                        self.stop(mode).await;
                        self.save_roster();
                        // The running checks end with the agent (a
                        // command check's process group is killed).
                        self.checks.shutdown().await;
                        let _ = reply.send(self.stats());
                        return;
                    }
                    self.on_command(cmd);
                }
                // Every input is gone (the handle dropped without a stop,
                // the transport and timer tasks ended): nothing can reach
                // the node any more.
                else => return,
            }
            self.carry_out();
        }
    }

    fn now(&self) -> Now {
        Now {
            mono: self.epoch.elapsed(),
            unix_ms: self.clock.unix_ms(),
        }
    }

    fn stats(&self) -> AgentStats {
        let gate = self.gate.snapshot();
        AgentStats {
            dropped_unsealed: gate.unsealed + gate.oversized_or_unknown,
            dropped_replayed: gate.replayed,
            dropped_clock_skew: gate.clock_skew,
            dropped_muted: gate.muted,
            dropped_misdirected: gate.misdirected,
            dropped_other: gate.other,
            audit_suppressed: self.audit.as_ref().map_or(0, |a| a.suppressed()),
            refused_operator_concurrent: self
                .control
                .refused_operator_concurrent
                .load(Ordering::Relaxed),
            refused_operator_rate: self.control.refused_operator_rate.load(Ordering::Relaxed),
            tag_sets_unshared: patrol_core::tags::interner_stats().fresh,
            node: self.node.stats(),
            ..self.stats.clone()
        }
    }

    /// Write the roster if it changed (atomically, mode 0640).
    fn save_roster(&mut self) {
        let Some(path) = self.roster_file.clone() else {
            return;
        };
        if let Some(text) = self.node.roster_to_save(self.now()) {
            if let Err(e) = crate::roster_file::save(&path, &text) {
                tracing::warn!(path = %path.display(), error = %e, "cannot save the roster");
            }
        }
    }

    fn on_datagram(&mut self, from: SocketAddr, plain: &[u8]) {
        self.node.datagram(self.now(), from, plain);
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Members(reply) => {
                let _ = reply.send(self.node.members());
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Command::Held(reply) => {
                let _ = reply.send(self.node.held());
            }
            Command::SetSeeds(seeds) => self.node.set_seeds(self.now(), seeds),
            Command::StartSweep(spec, events) => match self.node.start_sweep(self.now(), *spec) {
                Ok(id) => {
                    self.requesters.insert(id, events);
                    // The request is on its way before the expected set
                    // is snapshot.
                    self.carry_out();
                    self.node.snapshot_sweeps(self.now());
                }
                Err(e) => {
                    let _ = events.try_send(SweepEvent::Refused(e.to_string()));
                }
            },
            Command::SetBundle(bundle) => self.node.set_bundle(self.now(), *bundle),
            Command::RenewCredentials(renewed) => {
                let (creds, bundle) = *renewed;
                self.node.renew_credentials(self.now(), creds, bundle);
            }
            Command::Roster(reply) => {
                let _ = reply.send(self.node.roster_view(self.now()));
            }
            Command::Forget(forget, reply) => {
                let result = self.node.forget(self.now(), *forget, None);
                let _ = reply.send(result);
                self.save_roster();
            }
            Command::Stop(..) => {}
        }
    }

    /// Leave (or not), and let the writer put the goodbye on the wire.
    async fn stop(&mut self, mode: StopMode) {
        if mode == StopMode::Leave {
            self.node.leave(self.now());
            self.carry_out();
            let deadline = Instant::now() + Duration::from_millis(500);
            while self.outbound.capacity() < self.outbound.max_capacity()
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Do what the node asked for, until it asks for nothing more.
    fn carry_out(&mut self) {
        while let Some(output) = self.node.next_output() {
            match output {
                Output::Datagram { to, bytes, .. } => self.send(to, &bytes),
                Output::Timer { after, timer } => self.timers.submit(after, timer),
                Output::RunChecks {
                    sweep_id,
                    selector,
                    budget,
                } => {
                    let fut = self.inspector.inspect(&selector, budget);
                    self.checks.spawn(async move { (sweep_id, fut.await) });
                }
                Output::Progress {
                    sweep_id,
                    answered,
                    expected,
                } => {
                    // Progress is dropped when the reader lags; the last
                    // slot of the channel is kept for the document.
                    if let Some(tx) = self.requesters.get(&sweep_id) {
                        if tx.capacity() > 1 {
                            let _ = tx.try_send(SweepEvent::Progress { answered, expected });
                        }
                    }
                }
                Output::Completed { sweep_id, document } => {
                    if let Some(tx) = self.requesters.remove(&sweep_id) {
                        // Always has room: progress never takes the last slot.
                        let _ = tx.try_send(SweepEvent::Done(document));
                    }
                }
                Output::Member(event) => log_member(event),
                Output::Audit(entry) => {
                    if let Some(log) = &self.audit {
                        log.append(&audit_record(self.clock.unix_ms(), entry));
                    }
                }
                Output::RosterAudit {
                    operator,
                    node,
                    action,
                    reason,
                    peer,
                } => {
                    tracing::info!(%node, action, operator = operator.as_deref().unwrap_or("-"), "roster forget");
                    if let Some(log) = &self.audit {
                        let mut r =
                            crate::audit::AuditRecord::new(self.clock.unix_ms(), "roster", action);
                        r.request = Some("forget");
                        r.operator = operator;
                        r.node = Some(node);
                        r.reason = reason;
                        r.peer = peer.map(|p| p.to_string());
                        log.append(&r);
                    }
                }
            }
        }
    }

    fn send(&mut self, to: SocketAddr, plain: &[u8]) {
        let mut sealed =
            Vec::with_capacity(plain.len() + crate::envelope::OVERHEAD + REPLAY_HEADER);
        if let Err(e) = self.sealer.seal(plain, to, &mut sealed) {
            tracing::warn!(error = %e, "cannot seal a datagram");
            return;
        }
        if self.outbound.try_send((to, sealed)).is_err() {
            self.stats.dropped_outbound += 1;
            tracing::debug!(%to, "outbound queue full, datagram dropped");
        }
    }
}

fn log_member(event: MemberEvent) {
    match event {
        MemberEvent::Up(name) => tracing::debug!(member = %name, "member up"),
        MemberEvent::Down(name) => tracing::debug!(member = %name, "member down"),
        MemberEvent::Rejoined { bump } => {
            tracing::info!(bump, "rejoined the cluster with a renewed identity")
        }
        MemberEvent::Defunct => tracing::warn!("declared down by the cluster and could not renew"),
    }
}

/// The audit line of a node's audit entry.
fn audit_record(now_unix_ms: u64, e: patrol_core::sweep::AuditEntry) -> crate::audit::AuditRecord {
    use patrol_core::sweep::AuditAction;
    let (action, checks, reason) = match e.action {
        AuditAction::Ran { checks } => ("ran", Some(checks), None),
        AuditAction::Refused(r) => ("refused", None, Some(r)),
        AuditAction::Skipped(r) => ("skipped", None, Some(r)),
    };
    let mut r = crate::audit::AuditRecord::new(now_unix_ms, "sweep", action);
    r.sweep_id = Some(format!("{:016x}", e.sweep_id));
    r.operator = e.operator;
    r.coordinator = Some(e.coordinator);
    r.selector = Some(e.selector);
    r.node_filter = e.node_filter;
    r.checks = checks;
    r.reason = reason;
    r
}
