//! How the rest of the agent talks to a running owner task: the clonable
//! [`Commander`], the [`AgentHandle`] that owns the agent's tasks, and what
//! travels between them.

use std::net::SocketAddr;

use patrol_checks::CompactDocument;
use patrol_core::membership::roster::RosterView;
use tokio::sync::{mpsc, oneshot};

use super::{AgentStats, ControlCounters};
use crate::membership::MemberInfo;
use crate::shutdown::Tasks;
use crate::sweep::{Held, StartSweep};

/// What a sweep's requester hears.
#[derive(Debug, Clone)]
pub enum SweepEvent {
    Progress {
        answered: u64,
        expected: u64,
    },
    Done(Box<CompactDocument>),
    /// The node would not start the sweep (with certificates: no valid
    /// operator authorization), and why.
    Refused(String),
}

/// How an agent stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Tell the others we leave (they see `left` at once).
    Leave,
    /// Vanish without a word, as a crashed process would.
    Crash,
}

pub(super) enum Command {
    Members(oneshot::Sender<Vec<MemberInfo>>),
    SetSeeds(Vec<SocketAddr>),
    Stats(oneshot::Sender<AgentStats>),
    Held(oneshot::Sender<Held>),
    StartSweep(Box<StartSweep>, mpsc::Sender<SweepEvent>),
    SetBundle(Box<patrol_core::trust::TrustBundle>),
    RenewCredentials(
        Box<(
            patrol_core::trust::Credentials,
            patrol_core::trust::TrustBundle,
        )>,
    ),
    Roster(oneshot::Sender<Option<RosterView>>),
    Forget(
        Box<patrol_core::trust::SignedForget>,
        oneshot::Sender<Result<bool, String>>,
    ),
    Stop(StopMode, oneshot::Sender<AgentStats>),
}

/// The agent is gone (stopped or crashed).
#[derive(Debug, thiserror::Error)]
#[error("the agent has stopped")]
pub struct AgentGone;

/// A clonable handle to send commands to a running agent.
#[derive(Clone)]
pub struct Commander {
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) control: std::sync::Arc<ControlCounters>,
}

impl std::fmt::Debug for Commander {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Commander")
    }
}

impl Commander {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, AgentGone> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| AgentGone)?;
        rx.await.map_err(|_| AgentGone)
    }

    /// Where the control channel counts what it refuses.
    pub fn control_counters(&self) -> &ControlCounters {
        &self.control
    }

    pub async fn members(&self) -> Result<Vec<MemberInfo>, AgentGone> {
        self.ask(Command::Members).await
    }

    pub async fn stats(&self) -> Result<AgentStats, AgentGone> {
        self.ask(Command::Stats).await
    }

    /// How much the node's sweep core holds right now, bound by bound.
    pub async fn held(&self) -> Result<Held, AgentGone> {
        self.ask(Command::Held).await
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
    /// Use a reloaded CA bundle and deny list from now on.
    pub async fn set_bundle(
        &self,
        bundle: patrol_core::trust::TrustBundle,
    ) -> Result<(), AgentGone> {
        self.tx
            .send(Command::SetBundle(Box::new(bundle)))
            .await
            .map_err(|_| AgentGone)
    }

    /// A renewed certificate (and the bundle with its chain): the node
    /// proves itself with it from now on, without a restart.
    pub async fn renew_credentials(
        &self,
        creds: patrol_core::trust::Credentials,
        bundle: patrol_core::trust::TrustBundle,
    ) -> Result<(), AgentGone> {
        self.tx
            .send(Command::RenewCredentials(Box::new((creds, bundle))))
            .await
            .map_err(|_| AgentGone)
    }

    /// With `[trust]`: the roster (None without).
    pub async fn roster(&self) -> Result<Option<RosterView>, AgentGone> {
        self.ask(Command::Roster).await
    }

    /// With `[trust]`: an operator's signed forget; passed on to every
    /// member. Whether the node was on the roster, or why it was refused.
    pub async fn forget(
        &self,
        forget: patrol_core::trust::SignedForget,
    ) -> Result<Result<bool, String>, AgentGone> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Forget(Box::new(forget), tx))
            .await
            .map_err(|_| AgentGone)?;
        rx.await.map_err(|_| AgentGone)
    }

    pub async fn start_sweep(
        &self,
        spec: StartSweep,
    ) -> Result<mpsc::Receiver<SweepEvent>, AgentGone> {
        let (tx, rx) = mpsc::channel(256);
        self.tx
            .send(Command::StartSweep(Box::new(spec), tx))
            .await
            .map_err(|_| AgentGone)?;
        Ok(rx)
    }
}

/// A running agent: its commander and every task it started.
#[derive(Debug)]
pub struct AgentHandle {
    pub name: String,
    /// The gossip address.
    pub addr: SocketAddr,
    pub(super) commander: Commander,
    pub(super) tasks: Tasks,
}

impl AgentHandle {
    pub fn commander(&self) -> Commander {
        self.commander.clone()
    }

    /// The agent's task set: the daemon adds its control listener, seed
    /// refresher and key reloader here, so one stop ends them all.
    pub fn tasks(&mut self) -> &mut Tasks {
        &mut self.tasks
    }

    pub async fn members(&self) -> Result<Vec<MemberInfo>, AgentGone> {
        self.commander.members().await
    }

    pub async fn stats(&self) -> Result<AgentStats, AgentGone> {
        self.commander.stats().await
    }

    /// With `[trust]`: the roster (None without).
    pub async fn roster(&self) -> Result<Option<RosterView>, AgentGone> {
        self.commander.roster().await
    }

    /// With `[trust]`: an operator's signed roster forget (see
    /// [`Commander::forget`]).
    pub async fn forget(
        &self,
        forget: patrol_core::trust::SignedForget,
    ) -> Result<Result<bool, String>, AgentGone> {
        self.commander.forget(forget).await
    }

    pub async fn held(&self) -> Result<Held, AgentGone> {
        self.commander.held().await
    }

    pub async fn start_sweep(
        &self,
        spec: StartSweep,
    ) -> Result<mpsc::Receiver<SweepEvent>, AgentGone> {
        self.commander.start_sweep(spec).await
    }

    /// Stop the agent (leaving the mesh first, or not), then cancel and
    /// join every task; returns its final counters.
    pub async fn stop(mut self, mode: StopMode) -> AgentStats {
        let stats = self
            .commander
            .ask(|tx| Command::Stop(mode, tx))
            .await
            .unwrap_or_default();
        self.tasks.shutdown().await;
        stats
    }
}
