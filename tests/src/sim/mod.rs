//! `patrol-sim`: a whole fleet in one process, in virtual time, running the
//! real protocol code.
//!
//! Every simulated node is the shipped sans-IO
//! [`Node`](patrol_core::Node), the very type the agent runs: real foca,
//! the real sweep core and the real glue between them (channel byte, eager
//! push, direct spread, check budget, resizing). Only the shell differs:
//! `shell.rs` feeds each node datagrams, timers and finished checks from
//! one virtual-time event queue instead of sockets and tokio, and counts. The network (`network.rs`) adds one-way latency,
//! random loss and, per node, a CPU: a single server with a bounded
//! receive queue in front.
//!
//! **Every call into a node costs it time** (`cpu.rs`, issue 25): a
//! datagram, a timer, finished checks or the sweep start keeps the node
//! busy for its charge (plus `rx_service` per datagram for the shell's
//! socket read and envelope), its outputs leave when the charge has
//! passed, and datagrams arriving meanwhile queue or, past `rx_queue`,
//! are dropped. `--cpu model` (the default) charges from the cost model
//! committed in `tests/sim-cost-model.toml`, per call kind a fixed part
//! plus parts per byte in and out, per answer carried and per member held,
//! fitted by `patrol-sim calibrate` (`calibrate.rs`) from thread CPU
//! measured on this machine; `--cpu measured` charges each call's live
//! thread CPU; `--cpu off` charges nothing but `rx_service`. Set-up work
//! (joins, `view::know_mentioned`, the relays' full membership) is never
//! charged. Same seed, same report (with `model`; with `off`, all but the
//! CPU figures, measured there): nothing else reads the wall clock or the
//! OS RNG.
//!
//! Membership starts converged without O(N²) work: each node gets a random
//! *view* of about `view` members (a symmetric random graph, fed through
//! foca's `apply_many` without broadcasting); the coordinator gets every
//! member, since its snapshot is the sweep's expected set, and the relays it
//! names get every member the moment it names them, so what foca costs the
//! coordinator and the relays is what it costs them in a real mesh. Before foca reads
//! a packet, members the packet mentions that the node does not hold yet
//! are added silently in the state a fully informed node would hold, so
//! foca reacts exactly as with a full member list (see
//! `view::know_mentioned`). Random choices among ~64 members spread like
//! random choices among all: views of 32, 64, 128 and 256 give the same
//! figures at 10,000 nodes. foca is sized for the real cluster size, not
//! the view. Nodes come up at random times during a warm-up so that their
//! probe and gossip timers are out of phase, as in a real mesh.
//!
//! What is modelled around the real code: node faults (down before the
//! sweep and known to SWIM, crashed just before and not yet known, dying
//! during the sweep), check duration (slow nodes), the answer size and the
//! share of nodes with a failing check. Sealing is not performed, only
//! counted: every datagram is charged its channel byte and the envelope
//! overhead in bytes (opening is in `rx_service`, sealing costs no CPU
//! here). The run goes on after the sweep completes until no node has
//! the request left to gossip, so every copy of it is counted; traffic
//! figures cover the sweep's start to its completion.

pub mod calibrate;
mod cpu;
mod network;
mod render;
mod report;
mod shell;
mod view;
mod world;

use std::time::Duration;

use patrol_core::NodeSettings;

pub use cpu::{thread_cpu, CallKind, CostModel, CpuMode, KindCost, ModelError, Units};
pub use network::{addr_of, index_of, LinkModel};
pub use report::{
    Accounting, AnswerFigures, Completion, Population, Reach, SimReport, TrafficFigures,
};

/// Everything a simulation run depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSettings {
    /// Nodes in the mesh, coordinator included (node 0 coordinates).
    pub nodes: usize,
    /// Members each node knows at the start (its foca member list).
    pub view: usize,
    pub link: LinkModel,
    /// Share of nodes down before the sweep and known down to SWIM
    /// (expected: listed `down`).
    pub down_before: f64,
    /// Share of nodes that crashed just before the sweep, still alive to
    /// SWIM (expected: `no_answer`, or `down` if SWIM notices in time).
    pub crashed_before: f64,
    /// Share of nodes that die during the sweep, at a uniform time within
    /// `die_within` of the start.
    pub die_during: f64,
    pub die_within: Duration,
    /// Share of nodes whose checks take `slow_check`.
    pub slow: f64,
    pub slow_check: Duration,
    /// Check duration of the other nodes, uniform in `[check_min, check_max]`.
    pub check_min: Duration,
    pub check_max: Duration,
    /// Share of nodes that report one failing check.
    pub failing: f64,
    /// What each node answers. None (the default): the built-in
    /// `k8s-node` profile's 20 outcomes as a real host reports them
    /// (`k8s-node-answer.json`), with the values that differ between
    /// machines (process counts, memory, disk use, file handles) drawn per
    /// node; a failing node misses one check. Some(bytes): synthetic
    /// outcomes adding up to about that many bytes, every value the same
    /// on every node.
    pub result_bytes: Option<usize>,
    /// Share of the relays the coordinator names that die during the
    /// sweep (at a uniform time within `die_within`; at least one when
    /// the share is above zero and there are relays).
    pub relays_die: f64,
    /// The sweep's deadline.
    pub deadline: Duration,
    /// Nodes come up at random times in `[0, warmup)`; the sweep starts at
    /// `warmup`.
    pub warmup: Duration,
    pub seed: u64,
    /// The settings every node runs with: the shipped defaults unless a
    /// tuning run changes them. The cluster size hint is set to `nodes`.
    pub node: NodeSettings,
    /// Node and operator identities on: every node has a certificate of
    /// one CA, the sweep is signed by an operator, every participant checks
    /// it and every answer carries its node's proof.
    pub identities: bool,
    /// With identities: every node also knows the coordinator has its
    /// certificate (as after a first sweep) and names it by digest;
    /// without, every answer carries its whole certificate (the first
    /// sweep after a coordinator start).
    pub warm_keys: bool,
    /// With identities: the coordinator has not derived its members' pair
    /// keys when it learned their certificates, and derives them as
    /// answers arrive (as before it derived them on learning; to compare).
    pub cold_keys: bool,
    /// With identities: a node also holds the certificate and pair key of
    /// every member a packet mentions before it reads it (set-up, not
    /// charged), as a node of a converged mesh learned them before the
    /// sweep. Without, nodes hold those of their view only, and a packet
    /// from another member costs a certificate exchange and an X25519
    /// during the sweep, which a real converged mesh does not pay.
    pub converged_keys: bool,
    /// How each node's calls into its `Node` are charged on its virtual
    /// clock (`cpu.rs`): the committed cost model by default.
    pub cpu: CpuMode,
}

impl Default for SimSettings {
    /// The defaults, charging CPU from the committed cost model (panics if
    /// `tests/sim-cost-model.toml` does not parse).
    fn default() -> Self {
        SimSettings::charging(CpuMode::model())
    }
}

impl SimSettings {
    /// The defaults, with node calls charged as `cpu` says.
    pub fn charging(cpu: CpuMode) -> Self {
        SimSettings {
            nodes: 1000,
            view: 64,
            link: LinkModel {
                latency_min: Duration::from_micros(100),
                latency_max: Duration::from_millis(1),
                loss: 0.01,
                rx_service: Duration::from_micros(10),
                rx_queue: 4096,
            },
            down_before: 0.0,
            crashed_before: 0.0,
            die_during: 0.0,
            die_within: Duration::from_secs(1),
            slow: 0.0,
            slow_check: Duration::from_secs(1),
            check_min: Duration::from_millis(5),
            check_max: Duration::from_millis(50),
            failing: 0.02,
            result_bytes: None,
            relays_die: 0.0,
            deadline: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            seed: 1,
            node: NodeSettings::default(),
            identities: false,
            warm_keys: false,
            cold_keys: false,
            converged_keys: false,
            cpu,
        }
    }
}

/// Settings that cannot be simulated.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimError {
    #[error("a simulation needs at least 2 nodes (got {0})")]
    TooFewNodes(usize),
    #[error("at most {max} nodes can be addressed (got {got})")]
    TooManyNodes { got: usize, max: usize },
    #[error("{name} must be a share between 0 and 1 (got {value})")]
    BadShare { name: &'static str, value: f64 },
    #[error("the shares of faulty nodes add up to more than 1 ({0})")]
    TooManyFaulty(f64),
    #[error("the view must hold at least 1 member")]
    EmptyView,
    #[error("latency_min ({min:?}) is above latency_max ({max:?})")]
    BadLatency { min: Duration, max: Duration },
    #[error("check_min ({min:?}) is above check_max ({max:?})")]
    BadCheckTime { min: Duration, max: Duration },
    #[error("the receive queue must hold at least 1 datagram")]
    EmptyRxQueue,
    #[error("the deadline must be positive")]
    ZeroDeadline,
    /// The nodes' settings break a documented constraint.
    #[error("{0}")]
    Node(#[from] patrol_core::SettingsError),
}

impl SimSettings {
    pub fn validate(&self) -> Result<(), SimError> {
        const MAX_NODES: usize = (1 << 24) - 2;
        if self.nodes < 2 {
            return Err(SimError::TooFewNodes(self.nodes));
        }
        if self.nodes > MAX_NODES {
            return Err(SimError::TooManyNodes {
                got: self.nodes,
                max: MAX_NODES,
            });
        }
        for (name, value) in [
            ("loss", self.link.loss),
            ("down_before", self.down_before),
            ("crashed_before", self.crashed_before),
            ("die_during", self.die_during),
            ("slow", self.slow),
            ("failing", self.failing),
            ("relays_die", self.relays_die),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(SimError::BadShare { name, value });
            }
        }
        let faulty = self.down_before + self.crashed_before + self.die_during;
        if faulty > 1.0 {
            return Err(SimError::TooManyFaulty(faulty));
        }
        if self.view == 0 {
            return Err(SimError::EmptyView);
        }
        if self.link.latency_min > self.link.latency_max {
            return Err(SimError::BadLatency {
                min: self.link.latency_min,
                max: self.link.latency_max,
            });
        }
        if self.check_min > self.check_max {
            return Err(SimError::BadCheckTime {
                min: self.check_min,
                max: self.check_max,
            });
        }
        if self.link.rx_queue == 0 {
            return Err(SimError::EmptyRxQueue);
        }
        if self.deadline.is_zero() {
            return Err(SimError::ZeroDeadline);
        }
        self.node.validate()?;
        Ok(())
    }
}

/// Run one simulated sweep and report on it.
pub fn run(settings: &SimSettings) -> Result<SimReport, SimError> {
    settings.validate()?;
    Ok(world::World::new(settings).run().0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_settings_that_break_a_constraint_stop_the_run_before_it_starts() {
        let mut settings = SimSettings::default();
        settings.node.sweep.budget_floor = Duration::ZERO;
        match run(&settings) {
            Err(SimError::Node(e)) => assert_eq!(e.field, "sweep.budget_floor"),
            other => panic!("expected a settings error, got {:?}", other.map(|_| ())),
        }
    }
}
