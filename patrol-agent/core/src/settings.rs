//! [`NodeSettings`]: every tunable of a [`Node`](crate::node::Node) in one
//! place, in the style of foca's `Config`: each field says its unit, its
//! default, why that default, and its constraints. The sweep's own
//! tunables are [`SweepSettings`] (nested here as `sweep`), foca's are
//! [`FocaTuning`] (nested as `foca`); the shell's are the control
//! channel's `ControlSettings` (`patrol-agent/src/control/server.rs`) and
//! the transport's constants (`patrol-agent/src/transport.rs`).
//!
//! ARCHITECTURE.md links here instead of repeating the numbers; the tidy
//! test (`tests/tests/tidy.rs`) fails when a number it quotes disagrees.

use std::num::NonZeroU8;
use std::time::Duration;

use crate::sweep::SweepSettings;

/// A node's settings. `Default` gives the tuned defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSettings {
    /// Cluster name: part of every sweep document and of the history scope.
    /// Default `"patrol"`.
    pub cluster: String,
    /// Largest plaintext datagram the node emits, in bytes, channel byte
    /// included. The shell's envelope adds its overhead (45 bytes for
    /// `patrol_agent::envelope`), so the default 1,355 makes sealed
    /// datagrams of at most 1,400 bytes, which fit a 1,500-byte Ethernet
    /// MTU with IP and UDP headers. Must be at least 512.
    pub max_datagram: usize,
    /// `foca.broadcast()` calls per fresh request. Each sends the request
    /// to 3 random members (foca's gossip fan-out): with one call per node
    /// a push epidemic misses about e^-3 = 5% of nodes, which then wait for
    /// the periodic gossip or the backstop (in the simulator p99 reach
    /// 106 ms and p100 ~500 ms at 10,000 nodes; on loopback 300 ms tails
    /// at 20 agents). Two calls (fan-out 6) miss about 0.25%: p99 3 ms, at
    /// the cost of ~6 receptions per node. Default 2. Zero disables eager
    /// push (requests then spread on the gossip tick only).
    pub eager_push_rounds: usize,
    /// Up to this many members, the coordinator also sends the request to
    /// each one directly: a handful of datagrams, and no node of a small
    /// mesh waits on gossip luck. Default 32.
    pub direct_spread_limit: usize,
    /// First wait before announcing to the seeds again while we know
    /// nobody; doubles per attempt up to `rejoin_max`. Default 200 ms (a
    /// seed that starts a moment later is joined at once).
    pub rejoin_initial: Duration,
    /// Longest wait between announces while we know nobody. Default 5 s.
    pub rejoin_max: Duration,
    /// Once joined, how often the node checks that it still knows somebody
    /// (and rejoins through its seeds if not). Default 5 s.
    pub rejoin_watch: Duration,
    /// Size foca for at least this many members even while the node knows
    /// fewer. `None` (the default) sizes foca by the member count, re-applied
    /// as the mesh doubles or halves. The simulator sets the real cluster
    /// size, since its nodes hold a partial view.
    pub cluster_size_hint: Option<usize>,
    pub foca: FocaTuning,
    pub sweep: SweepSettings,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            cluster: "patrol".to_string(),
            max_datagram: 1355,
            eager_push_rounds: 2,
            direct_spread_limit: 32,
            rejoin_initial: Duration::from_millis(200),
            rejoin_max: Duration::from_secs(5),
            rejoin_watch: Duration::from_secs(5),
            cluster_size_hint: None,
            foca: FocaTuning::default(),
            sweep: SweepSettings::default(),
        }
    }
}

impl NodeSettings {
    /// foca's `max_packet_size`: the datagram less the channel byte.
    pub fn foca_payload(&self) -> usize {
        self.max_datagram.saturating_sub(1)
    }
}

/// What Patrol changes in foca's `Config::new_lan` (memberlist's LAN
/// defaults: 1 s probe period, 500 ms probe RTT, 3 indirect probes,
/// suspicion and retransmissions scaled by log10 of the cluster size,
/// gossip to 3 members every 200 ms). Applied by
/// [`foca_config`](crate::membership::foca_config).
#[derive(Debug, Clone, PartialEq)]
pub struct FocaTuning {
    /// foca is sized for at least this many members, so a node that has
    /// just started (and knows only itself) still retransmits updates often
    /// enough for a burst of joins to spread. Default 16: with `patrol demo`
    /// (25 agents started at once) the mesh took 24 s to converge with
    /// plain `new_lan` sized by the current member count, 0.6 s with this
    /// and the announce below.
    pub min_cluster_size: usize,
    /// Most times each node sends an update or a sweep request on. foca's
    /// `new_lan` gives 4·log10(n), 16 at 10,000 nodes; the simulator shows
    /// 10 still reaches all but 0-3 of 10,000 nodes by gossip (the backstop
    /// reaches those) and cuts the copies of a request each node receives
    /// from 15.8 to 9.9. Only meshes above ~500 nodes change. Default 10.
    pub max_transmissions: NonZeroU8,
    /// Each node announces itself to one random member this often: an
    /// announce is answered with a feed of members, so a node that missed
    /// join updates learns them. Default 5 s (foca: 30 s).
    pub announce_every: Duration,
    /// Up to this many members the announce runs every
    /// `announce_every_small` instead: with 30 agents started at once, 1 run
    /// in 4 left a node that had missed a join update until the next 5 s
    /// announce. Default 64.
    pub small_mesh: usize,
    /// Default 1 s.
    pub announce_every_small: Duration,
    /// Down members are kept this long, so `patrol members` and a sweep's
    /// expected set still list a node that died. Default 5 min.
    pub remove_down_after: Duration,
    /// Members picked per gossip round, per eager push and per indirect
    /// probe (foca's `num_indirect_probes`). `None` (default) keeps foca's
    /// 3. For tuning runs of the simulator.
    pub fanout: Option<usize>,
    /// Period of foca's background gossip. `None` (default) keeps foca's
    /// 200 ms. For tuning runs of the simulator.
    pub gossip_every: Option<Duration>,
}

impl Default for FocaTuning {
    fn default() -> Self {
        FocaTuning {
            min_cluster_size: 16,
            max_transmissions: NonZeroU8::new(10).unwrap_or(NonZeroU8::MIN),
            announce_every: Duration::from_secs(5),
            small_mesh: 64,
            announce_every_small: Duration::from_secs(1),
            remove_down_after: Duration::from_secs(300),
            fanout: None,
            gossip_every: None,
        }
    }
}
