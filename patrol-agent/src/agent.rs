//! The agent: one task owns `Foca` and the sweep core and `select!`s over
//! its inputs (datagram, timer, command, finished checks, stop); effects
//! leave through channels (sealed datagrams to the transport, timers to the
//! timer task, progress and results to whoever asked).
//!
//! **Architecture Invariant:** nothing but the owner task touches `Foca` or
//! `SweepCore`; there is no lock around either.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foca::{AccumulatingRuntime, Foca, OwnedNotification};
use patrol_checks::{CheckOutcome, Selector, SweepDocument};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::codec::BincodeCodec;
use crate::envelope::Envelope;
use crate::identity::NodeId;
use crate::membership::{self, Departures, MemberInfo};
use crate::sweep::{
    Effect, MemberView, Peer, RequestGossip, StartSweep, SweepCore, SweepMessage, SweepRequest,
    SweepSettings, SweepTimer,
};
use crate::timers::{self, TimerSender};
use crate::transport::Transport;

/// Channel byte at the front of every opened datagram.
const CH_FOCA: u8 = 0;
const CH_SWEEP: u8 = 1;
const CH_LEAVE: u8 = 2;

/// `foca.broadcast()` calls per fresh request. Each sends the request to
/// 3 random members (foca's gossip fan-out); with one call per node a push
/// epidemic misses about e^-3 = 5% of nodes, which then wait for the
/// periodic gossip or the backstop (~300 ms on loopback). Two calls (fan-out
/// 6) miss about 0.25%, at the cost of ~6 receptions per node.
pub const EAGER_PUSH_ROUNDS: usize = 2;

/// Up to this many members, the coordinator also sends the request to each
/// one directly: a handful of datagrams, and no node waits on gossip luck.
pub const DIRECT_SPREAD_LIMIT: usize = 32;

/// Of the time left before a request expires, what checks may not use:
/// the answer's trip to the coordinator and one retry.
pub const BUDGET_MARGIN_MS: u64 = 400;

/// Largest datagram the agent sends, envelope included (fits a 1500-byte
/// Ethernet MTU with IP and UDP headers).
pub const MAX_DATAGRAM: usize = 1400;

/// Runs a node's checks for a sweep. The real one runs the checks of the
/// node's own config (`CatalogInspector`); tests may supply their own.
/// `budget` is the time left before the answer must leave for the
/// coordinator: an inspector cuts every check's timeout to it, so a hung
/// check ends as `error` in time instead of costing the whole answer.
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
    pub cluster: String,
    pub tags: BTreeMap<String, String>,
    /// Gossip addresses of nodes to join through (tried until one answers).
    pub seeds: Vec<SocketAddr>,
    /// Address others reach us at; default: the transport's local address.
    pub advertise: Option<SocketAddr>,
    pub sweep: SweepSettings,
}

/// Counters, for `members --stats`, tests and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStats {
    /// Datagrams that did not open (wrong key, corrupted, truncated, other
    /// cluster): dropped before foca saw them.
    pub dropped_unsealed: u64,
    /// Opened datagrams that foca or the sweep decoder rejected.
    pub dropped_malformed: u64,
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub sweeps_coordinated: u64,
    pub checks_runs: u64,
}

/// What a sweep's requester hears.
#[derive(Debug, Clone)]
pub enum SweepEvent {
    Progress { answered: u64, expected: u64 },
    Done(Box<SweepDocument>),
}

/// How an agent stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Tell the others we leave (they see `left` at once).
    Leave,
    /// Vanish without a word, as a crashed process would.
    Crash,
}

pub(crate) enum Command {
    Members(oneshot::Sender<Vec<MemberInfo>>),
    SetSeeds(Vec<SocketAddr>),
    Stats(oneshot::Sender<AgentStats>),
    StartSweep(StartSweep, mpsc::Sender<SweepEvent>),
}

/// The agent is gone (stopped or crashed).
#[derive(Debug, thiserror::Error)]
#[error("the agent has stopped")]
pub struct AgentGone;

/// A clonable handle to send commands to a running agent.
#[derive(Clone)]
pub struct Commander {
    tx: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Commander {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Commander")
    }
}

impl Commander {
    pub async fn members(&self) -> Result<Vec<MemberInfo>, AgentGone> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Members(tx))
            .await
            .map_err(|_| AgentGone)?;
        rx.await.map_err(|_| AgentGone)
    }

    pub async fn stats(&self) -> Result<AgentStats, AgentGone> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Stats(tx))
            .await
            .map_err(|_| AgentGone)?;
        rx.await.map_err(|_| AgentGone)
    }

    /// Replace the seed addresses the agent (re)joins through, e.g. after
    /// seed names were resolved again.
    pub async fn set_seeds(&self, seeds: Vec<SocketAddr>) -> Result<(), AgentGone> {
        self.tx
            .send(Command::SetSeeds(seeds))
            .await
            .map_err(|_| AgentGone)
    }

    /// Start a sweep coordinated by this agent; events stream on the
    /// returned receiver, ending with `Done`.
    pub async fn start_sweep(
        &self,
        spec: StartSweep,
    ) -> Result<mpsc::Receiver<SweepEvent>, AgentGone> {
        let (tx, rx) = mpsc::channel(256);
        self.tx
            .send(Command::StartSweep(spec, tx))
            .await
            .map_err(|_| AgentGone)?;
        Ok(rx)
    }
}

/// A running agent.
pub struct AgentHandle {
    pub name: String,
    /// The gossip address.
    pub addr: SocketAddr,
    commander: Commander,
    stop: Option<oneshot::Sender<StopMode>>,
    task: Option<JoinHandle<AgentStats>>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish()
    }
}

impl AgentHandle {
    pub fn commander(&self) -> Commander {
        self.commander.clone()
    }

    pub async fn members(&self) -> Result<Vec<MemberInfo>, AgentGone> {
        self.commander.members().await
    }

    pub async fn stats(&self) -> Result<AgentStats, AgentGone> {
        self.commander.stats().await
    }

    pub async fn start_sweep(
        &self,
        spec: StartSweep,
    ) -> Result<mpsc::Receiver<SweepEvent>, AgentGone> {
        self.commander.start_sweep(spec).await
    }

    /// Stop the agent and wait for its task; returns its final counters.
    pub async fn stop(mut self, mode: StopMode) -> AgentStats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(mode);
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => AgentStats::default(),
        }
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Start an agent on `transport`.
pub fn start(
    settings: AgentSettings,
    transport: Transport,
    envelope: Envelope,
    inspector: Arc<dyn Inspector>,
) -> AgentHandle {
    let addr = settings.advertise.unwrap_or(transport.local_addr);
    let me = NodeId::new(settings.name.clone(), addr, settings.tags.clone());
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (stop_tx, stop_rx) = oneshot::channel();
    let name = settings.name.clone();
    let task = tokio::spawn(run(
        settings, me, transport, envelope, inspector, cmd_rx, stop_rx,
    ));
    AgentHandle {
        name,
        addr,
        commander: Commander { tx: cmd_tx },
        stop: Some(stop_tx),
        task: Some(task),
    }
}

/// The sweep's view of foca's member list: alive or suspect is `alive`,
/// down is not (foca keeps down members for `remove_down_after`). The
/// coordinator's expected set is taken from this; the simulator takes it
/// the same way.
pub fn membership_snapshot<'a>(
    members: impl Iterator<Item = &'a foca::Member<NodeId>>,
) -> Vec<MemberView> {
    members
        .map(|m| MemberView {
            peer: Peer {
                name: m.id().name.clone(),
                addr: m.id().addr,
                tags: m.id().tags.clone(),
            },
            alive: m.state() != foca::State::Down,
        })
        .collect()
}

enum TimerEvent {
    Foca(foca::Timer<NodeId>),
    Sweep(SweepTimer),
    Rejoin,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Owner {
    foca: Foca<NodeId, BincodeCodec, StdRng, RequestGossip>,
    rt: AccumulatingRuntime<NodeId>,
    core: SweepCore,
    gossip_inbox: std::sync::mpsc::Receiver<SweepRequest>,
    envelope: Envelope,
    outbound: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    timers: TimerSender<TimerEvent>,
    inspector: Arc<dyn Inspector>,
    checks: JoinSet<(u64, Vec<CheckOutcome>)>,
    requesters: HashMap<u64, mpsc::Sender<SweepEvent>>,
    /// Sweep id -> (unix ms the request expires, its answer spread), for
    /// the check budget. Pruned as requests expire.
    expiries: HashMap<u64, (u64, u32)>,
    departures: Departures,
    seeds: Vec<SocketAddr>,
    rejoin_backoff: Duration,
    size_bucket: usize,
    epoch: Instant,
    stats: AgentStats,
    effects: Vec<Effect>,
}

async fn run(
    settings: AgentSettings,
    me: NodeId,
    mut transport: Transport,
    envelope: Envelope,
    inspector: Arc<dyn Inspector>,
    mut commands: mpsc::Receiver<Command>,
    mut stop: oneshot::Receiver<StopMode>,
) -> AgentStats {
    let (timers, mut due, timer_task) = timers::spawn::<TimerEvent>();
    let (inbox_tx, inbox_rx) = std::sync::mpsc::channel();
    let payload_limit = MAX_DATAGRAM - crate::envelope::OVERHEAD - 1;
    let config = membership::foca_config(1, payload_limit);
    let rng: StdRng = rand::make_rng();
    let peer = Peer {
        name: me.name.clone(),
        addr: me.addr,
        tags: me.tags.clone(),
    };
    let seed: u64 = rand::random();
    let foca =
        Foca::with_custom_broadcast(me, config, rng, BincodeCodec, RequestGossip::new(inbox_tx));
    let mut owner = Owner {
        foca,
        rt: AccumulatingRuntime::new(),
        core: SweepCore::new(peer, settings.cluster.clone(), settings.sweep.clone(), seed),
        gossip_inbox: inbox_rx,
        envelope,
        outbound: transport.outbound.clone(),
        timers,
        inspector,
        checks: JoinSet::new(),
        requesters: HashMap::new(),
        expiries: HashMap::new(),
        departures: Departures::default(),
        seeds: settings.seeds.clone(),
        rejoin_backoff: Duration::from_millis(200),
        size_bucket: 1,
        epoch: Instant::now(),
        stats: AgentStats::default(),
        effects: Vec::new(),
    };
    owner.join();
    owner.flush();

    let mode = loop {
        tokio::select! {
            mode = &mut stop => break mode.unwrap_or(StopMode::Leave),
            Some((from, bytes)) = transport.inbound.recv() => owner.on_datagram(from, &bytes),
            Some(event) = due.recv() => owner.on_timer(event),
            Some(cmd) = commands.recv() => owner.on_command(cmd),
            Some(done) = owner.checks.join_next(), if !owner.checks.is_empty() => {
                if let Ok((sweep_id, outcomes)) = done {
                    let now = owner.epoch.elapsed();
                    owner.core.checks_done(now, unix_ms(), sweep_id, outcomes, &mut owner.effects);
                }
            }
        }
        owner.flush();
    };

    if mode == StopMode::Leave {
        owner.leave();
        // Let the writer put the goodbye on the wire before the socket goes.
        let deadline = Instant::now() + Duration::from_millis(500);
        while owner.outbound.capacity() < owner.outbound.max_capacity() && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    owner.checks.abort_all();
    timer_task.abort();
    drop(transport);
    owner.stats
}

impl Owner {
    /// Announce to every seed; retried with backoff while we know nobody.
    fn join(&mut self) {
        if self.foca.num_members() == 0 && !self.seeds.is_empty() {
            for seed in self.seeds.clone() {
                if seed == self.foca.identity().addr {
                    continue;
                }
                let _ = self
                    .foca
                    .announce(NodeId::seed_placeholder(seed), &mut self.rt);
            }
            self.timers.submit(self.rejoin_backoff, TimerEvent::Rejoin);
            self.rejoin_backoff = (self.rejoin_backoff * 2).min(Duration::from_secs(5));
        } else {
            self.rejoin_backoff = Duration::from_millis(200);
            // Keep watching: a node cut off from everyone rejoins through its seeds.
            if !self.seeds.is_empty() {
                self.timers
                    .submit(Duration::from_secs(5), TimerEvent::Rejoin);
            }
        }
    }

    fn send(&mut self, to: SocketAddr, channel: u8, payload: &[u8]) {
        let mut plain = Vec::with_capacity(payload.len() + 1);
        plain.push(channel);
        plain.extend_from_slice(payload);
        let mut sealed = Vec::with_capacity(plain.len() + crate::envelope::OVERHEAD);
        if let Err(e) = self.envelope.seal(&plain, &mut sealed) {
            tracing::warn!(error = %e, "cannot seal a datagram");
            return;
        }
        self.stats.datagrams_out += 1;
        if self.outbound.try_send((to, sealed)).is_err() {
            tracing::debug!(%to, "outbound queue full, datagram dropped");
        }
    }

    fn on_datagram(&mut self, from: SocketAddr, bytes: &[u8]) {
        self.stats.datagrams_in += 1;
        let plain = match self.envelope.open(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.stats.dropped_unsealed += 1;
                tracing::debug!(%from, error = %e, "dropped a datagram that does not open");
                return;
            }
        };
        let Some((&channel, body)) = plain.split_first() else {
            self.stats.dropped_malformed += 1;
            return;
        };
        match channel {
            CH_FOCA => {
                if let Err(e) = self.foca.handle_data(body, &mut self.rt) {
                    if !matches!(e, foca::Error::DataFromOurselves) {
                        self.stats.dropped_malformed += 1;
                        tracing::debug!(%from, error = %e, "foca rejected a datagram");
                    }
                }
                self.drain_gossip();
            }
            CH_SWEEP => match SweepMessage::decode(body) {
                Ok(msg) => {
                    if let SweepMessage::Request(req) = &msg {
                        self.note_expiry(req);
                    }
                    let now = self.epoch.elapsed();
                    self.core
                        .handle_message(now, unix_ms(), from, msg, &mut self.effects);
                }
                Err(e) => {
                    self.stats.dropped_malformed += 1;
                    tracing::debug!(%from, error = %e, "bad sweep message");
                }
            },
            CH_LEAVE => match std::str::from_utf8(body) {
                Ok(name) => self.departures.record_leave(name),
                Err(_) => self.stats.dropped_malformed += 1,
            },
            _ => self.stats.dropped_malformed += 1,
        }
    }

    fn note_expiry(&mut self, req: &SweepRequest) {
        let now = unix_ms();
        self.expiries.retain(|_, (expiry, _)| *expiry > now);
        if self.expiries.len() < 4096 {
            self.expiries
                .insert(req.id, (req.expires_at_unix_ms(), req.answer_spread_ms));
        }
    }

    /// Time the checks of sweep `id` may take: until the request expires,
    /// less the answer spread and a margin for the answer's trip and a
    /// retry. At least 100 ms; a sweep with no known expiry gets 10 minutes
    /// (the longest deadline a request may have), so each check keeps its
    /// own timeout.
    fn check_budget(&self, id: u64) -> Duration {
        match self.expiries.get(&id) {
            Some(&(expiry, spread)) => {
                let left = expiry.saturating_sub(unix_ms());
                let reserve = u64::from(spread) + BUDGET_MARGIN_MS;
                Duration::from_millis(left.saturating_sub(reserve).max(100))
            }
            None => Duration::from_secs(600),
        }
    }

    /// New requests that arrived by gossip go to the core, and are pushed
    /// on at once (eager push) instead of waiting for the gossip tick.
    fn drain_gossip(&mut self) {
        let mut fresh = false;
        while let Ok(req) = self.gossip_inbox.try_recv() {
            fresh = true;
            self.note_expiry(&req);
            let now = self.epoch.elapsed();
            self.core
                .handle_request(now, unix_ms(), req, &mut self.effects);
        }
        if fresh {
            for _ in 0..EAGER_PUSH_ROUNDS {
                let _ = self.foca.broadcast(&mut self.rt);
            }
        }
    }

    fn on_timer(&mut self, event: TimerEvent) {
        match event {
            TimerEvent::Foca(t) => {
                if let Err(e) = self.foca.handle_timer(t, &mut self.rt) {
                    tracing::debug!(error = %e, "foca timer");
                }
            }
            TimerEvent::Sweep(t) => {
                let now = self.epoch.elapsed();
                self.core.handle_timer(now, unix_ms(), t, &mut self.effects);
            }
            TimerEvent::Rejoin => self.join(),
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Members(reply) => {
                let view = membership::member_view(
                    self.foca.identity(),
                    self.foca.iter_membership_state(),
                    &self.departures,
                );
                let _ = reply.send(view);
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.stats.clone());
            }
            Command::SetSeeds(seeds) => {
                let first = self.seeds.is_empty() && !seeds.is_empty();
                self.seeds = seeds;
                if first {
                    // No rejoin timer runs without seeds: start one.
                    self.join();
                }
            }
            Command::StartSweep(spec, events) => {
                let members = membership_snapshot(self.foca.iter_membership_state());
                let now = self.epoch.elapsed();
                let sweep_id = self
                    .core
                    .start(now, unix_ms(), spec, members, &mut self.effects);
                self.stats.sweeps_coordinated += 1;
                self.requesters.insert(sweep_id, events);
            }
        }
    }

    /// Move everything foca and the core produced to where it goes, until
    /// neither has anything left.
    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some((to, data)) = self.rt.to_send() {
                progressed = true;
                self.send(to.addr, CH_FOCA, &data);
            }
            while let Some((after, timer)) = self.rt.to_schedule() {
                progressed = true;
                self.timers.submit(after, TimerEvent::Foca(timer));
            }
            while let Some(n) = self.rt.to_notify() {
                progressed = true;
                self.on_notification(n);
            }
            let effects = std::mem::take(&mut self.effects);
            for effect in effects {
                progressed = true;
                self.on_effect(effect);
            }
            if !progressed {
                break;
            }
        }
    }

    fn on_notification(&mut self, n: OwnedNotification<NodeId>) {
        match n {
            OwnedNotification::MemberUp(id) => {
                tracing::debug!(member = %id.name, "member up");
                self.departures.record_alive(&id.name);
                self.resize();
            }
            OwnedNotification::MemberDown(id) => {
                tracing::debug!(member = %id.name, "member down");
                let now = self.epoch.elapsed();
                self.core.member_down(now, &id.name, &mut self.effects);
                self.resize();
            }
            OwnedNotification::Rename(old, new) => {
                tracing::debug!(from = ?old, to = ?new, "member renamed");
                self.departures.record_alive(&new.name);
            }
            OwnedNotification::Rejoin(id) => {
                tracing::info!(
                    bump = id.bump,
                    "rejoined the cluster with a renewed identity"
                );
            }
            OwnedNotification::Defunct => {
                tracing::warn!("declared down by the cluster and could not renew");
            }
            _ => {}
        }
    }

    /// Re-apply foca settings when the mesh doubles or halves.
    fn resize(&mut self) {
        let bucket = membership::size_bucket(self.foca.num_members() + 1);
        if bucket != self.size_bucket {
            self.size_bucket = bucket;
            let limit = MAX_DATAGRAM - crate::envelope::OVERHEAD - 1;
            if let Err(e) = self.foca.set_config(membership::foca_config(bucket, limit)) {
                tracing::warn!(error = %e, "could not re-apply foca settings");
            }
        }
    }

    fn on_effect(&mut self, effect: Effect) {
        match effect {
            Effect::Spread(req) => {
                self.note_expiry(&req);
                let bytes = req.encode();
                match self.foca.add_broadcast(&bytes) {
                    Ok(_) => {
                        for _ in 0..EAGER_PUSH_ROUNDS {
                            let _ = self.foca.broadcast(&mut self.rt);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot spread the sweep request"),
                }
                if self.foca.num_members() <= DIRECT_SPREAD_LIMIT {
                    let direct = SweepMessage::Request(req.clone()).encode();
                    let members: Vec<SocketAddr> =
                        self.foca.iter_members().map(|m| m.id().addr).collect();
                    for to in members {
                        self.send(to, CH_SWEEP, &direct);
                    }
                }
                // Our own gossip handler saw it too; nothing else to do.
                while self.gossip_inbox.try_recv().is_ok() {}
            }
            Effect::Send { to, msg } => {
                let bytes = msg.encode();
                self.send(to, CH_SWEEP, &bytes);
            }
            Effect::Schedule { after, timer } => {
                self.timers.submit(after, TimerEvent::Sweep(timer))
            }
            Effect::RunChecks { sweep_id, selector } => {
                self.stats.checks_runs += 1;
                let fut = self
                    .inspector
                    .inspect(&selector, self.check_budget(sweep_id));
                self.checks.spawn(async move { (sweep_id, fut.await) });
            }
            Effect::Progress {
                sweep_id,
                answered,
                expected,
            } => {
                if let Some(tx) = self.requesters.get(&sweep_id) {
                    let _ = tx.try_send(SweepEvent::Progress { answered, expected });
                }
            }
            Effect::Completed(doc) => {
                let id = u64::from_str_radix(&doc.sweep_id, 16).unwrap_or_default();
                if let Some(tx) = self.requesters.remove(&id) {
                    // Progress may be dropped when the reader lags; the
                    // result must not be.
                    tokio::spawn(async move {
                        let _ = tx.send(SweepEvent::Done(doc)).await;
                    });
                }
            }
        }
    }

    fn leave(&mut self) {
        let me = self.foca.identity().name.clone();
        let targets: Vec<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
        for to in targets {
            self.send(to, CH_LEAVE, me.as_bytes());
        }
        let _ = self.foca.leave_cluster(&mut self.rt);
        while let Some((to, data)) = self.rt.to_send() {
            self.send(to.addr, CH_FOCA, &data);
        }
    }
}
