//! [`NodeSettings`]: every tunable of a [`Node`](crate::node::Node) in one
//! place, in the style of foca's `Config`: each field says its unit, its
//! default, why that default, and its constraints. The sweep's own
//! tunables are [`SweepSettings`] (nested here as `sweep`), foca's are
//! [`FocaTuning`] (nested as `foca`); the shell's are the control
//! channel's `ControlSettings` (`patrol-agent/src/control/server.rs`) and
//! the transport's `TransportSettings` (`patrol-agent/src/transport.rs`).
//! [`NodeSettings::validate`] checks every constraint a doc states, once,
//! before a node starts: the daemon and the simulator call it.
//!
//! ARCHITECTURE.md links here rather than quoting the defaults; where
//! another doc quotes one (PROTOCOL.md), the tidy test
//! (`tests/tests/tidy.rs`) fails when the code disagrees.

use std::num::NonZeroU8;
use std::time::Duration;

use crate::constraint::{at_least, not_above, not_zero, SettingsError};
use crate::sweep::SweepSettings;

/// The smallest `max_datagram`: foca needs room for its header, the
/// identities of an indirect probe and at least one update, and a sweep
/// request needs its selector.
pub const MIN_DATAGRAM: usize = 512;

/// A node's settings. `Default` gives the tuned defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSettings {
    /// Cluster name: part of every sweep document and of the history scope.
    /// Default `"patrol"`.
    pub cluster: String,
    /// Largest plaintext datagram the node emits, in bytes, channel byte
    /// included. The shell adds a 42-byte replay header and the envelope's
    /// 45 bytes (`patrol_agent::datagram`, `patrol_agent::envelope`), so the
    /// default 1,313 makes sealed datagrams of at most 1,400 bytes, which
    /// fit a 1,500-byte Ethernet MTU with IP and UDP headers. Must be at
    /// least [`MIN_DATAGRAM`] (512).
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
    /// seed that starts a moment later is joined at once). Must not be zero
    /// (doubling zero stays zero: announces in a busy loop).
    pub rejoin_initial: Duration,
    /// Longest wait between announces while we know nobody. Default 5 s.
    /// Must be at least `rejoin_initial`.
    pub rejoin_max: Duration,
    /// Once joined, how often the node checks that it still knows somebody
    /// (and rejoins through its seeds if not). Default 5 s. Must not be
    /// zero.
    pub rejoin_watch: Duration,
    /// Size foca for at least this many members even while the node knows
    /// fewer. `None` (the default) sizes foca by the member count, re-applied
    /// as the mesh doubles or halves. The simulator sets the real cluster
    /// size, since its nodes hold a partial view.
    pub cluster_size_hint: Option<usize>,
    /// foca's tunables as Patrol changes them.
    pub foca: FocaTuning,
    /// The sweep core's tunables.
    pub sweep: SweepSettings,
    /// With `[trust]`: how long a node stays on the roster after it was
    /// last seen (`[sweep] roster_expiry`). Default 7 days. Must not be
    /// zero.
    pub roster_expiry: Duration,
    /// With `[trust]`: most nodes on the roster, and most certificates and
    /// proven names the membership book holds. Default 131,072. Must not
    /// be zero.
    pub roster_capacity: usize,
    /// With `[trust]`: how far ahead of this node's wall clock a member's
    /// bump (its start time, ms) may be. Default 10 minutes.
    pub bump_slack: Duration,
    /// With `[trust]`: how long an address stays with the node last heard
    /// from it, refusing another name's identity there. Default 60 s.
    pub address_hold: Duration,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            cluster: "patrol".to_string(),
            max_datagram: 1313,
            eager_push_rounds: 2,
            direct_spread_limit: 32,
            rejoin_initial: Duration::from_millis(200),
            rejoin_max: Duration::from_secs(5),
            rejoin_watch: Duration::from_secs(5),
            cluster_size_hint: None,
            foca: FocaTuning::default(),
            sweep: SweepSettings::default(),
            roster_expiry: Duration::from_secs(7 * 24 * 3600),
            roster_capacity: 131_072,
            bump_slack: Duration::from_secs(600),
            address_hold: Duration::from_secs(60),
        }
    }
}

impl NodeSettings {
    /// Check the constraint each field's doc states, the nested foca and
    /// sweep settings' included; the first broken one is the error.
    pub fn validate(&self) -> Result<(), SettingsError> {
        at_least("max_datagram", self.max_datagram, MIN_DATAGRAM)?;
        not_zero("rejoin_initial", self.rejoin_initial)?;
        not_above(
            "rejoin_initial",
            self.rejoin_initial,
            "rejoin_max",
            self.rejoin_max,
        )?;
        not_zero("rejoin_watch", self.rejoin_watch)?;
        not_zero("roster_expiry", self.roster_expiry)?;
        at_least("roster_capacity", self.roster_capacity, 1)?;
        self.foca.validate()?;
        self.sweep.validate()?;
        not_above(
            "sweep.max_datagram",
            self.sweep.max_datagram,
            "max_datagram less its channel byte",
            self.max_datagram.saturating_sub(1),
        )
    }

    /// foca's `max_packet_size`: the datagram less the channel byte and
    /// the 16-byte tag the membership gate appends to every foca packet
    /// between certified nodes (reserved with or without `[trust]`, so a
    /// full packet never grows past the datagram).
    pub fn foca_payload(&self) -> usize {
        self.max_datagram
            .saturating_sub(1 + crate::trust::PACKET_TAG_LEN)
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
    /// join updates learns them. Default 5 s (foca: 30 s). Must not be
    /// zero.
    pub announce_every: Duration,
    /// Up to this many members the announce runs every
    /// `announce_every_small` instead: with 30 agents started at once, 1 run
    /// in 4 left a node that had missed a join update until the next 5 s
    /// announce. Default 64.
    pub small_mesh: usize,
    /// Default 1 s. Must not be zero.
    pub announce_every_small: Duration,
    /// Down members are kept this long, so `patrol members` and a sweep's
    /// expected set still list a node that died. Default 5 min.
    pub remove_down_after: Duration,
    /// Members picked per gossip round, per eager push and per indirect
    /// probe (foca's `num_indirect_probes`). `None` (default) keeps foca's
    /// 3. For tuning runs of the simulator. Must not be zero when set.
    pub fanout: Option<usize>,
    /// Period of foca's background gossip. `None` (default) keeps foca's
    /// 200 ms. For tuning runs of the simulator. Must not be zero when set.
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

impl FocaTuning {
    /// Check the constraint each field's doc states.
    pub fn validate(&self) -> Result<(), SettingsError> {
        not_zero("foca.announce_every", self.announce_every)?;
        not_zero("foca.announce_every_small", self.announce_every_small)?;
        if let Some(fanout) = self.fanout {
            not_zero("foca.fanout", fanout)?;
        }
        if let Some(every) = self.gossip_every {
            not_zero("foca.gossip_every", every)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(NodeSettings::default().validate(), Ok(()));
    }

    #[test]
    fn a_datagram_below_the_minimum_is_refused_by_name() {
        let s = NodeSettings {
            max_datagram: 300,
            ..NodeSettings::default()
        };
        let e = s.validate().unwrap_err();
        assert_eq!(e.field, "max_datagram");
        assert_eq!(
            e.to_string(),
            "setting `max_datagram` must be at least 512 (it is 300)"
        );
    }

    #[test]
    fn a_sweep_datagram_larger_than_the_nodes_is_refused() {
        let mut s = NodeSettings::default();
        s.sweep.max_datagram = s.max_datagram;
        assert_eq!(s.validate().unwrap_err().field, "sweep.max_datagram");
    }

    #[test]
    fn each_documented_constraint_of_the_nested_settings_is_checked() {
        type Breaks = fn(&mut NodeSettings);
        let cases: [(&str, Breaks); 18] = [
            ("rejoin_initial", |s| s.rejoin_initial = Duration::ZERO),
            ("rejoin_initial", |s| {
                s.rejoin_max = Duration::from_millis(1)
            }),
            ("rejoin_watch", |s| s.rejoin_watch = Duration::ZERO),
            ("foca.announce_every", |s| {
                s.foca.announce_every = Duration::ZERO
            }),
            ("foca.announce_every_small", |s| {
                s.foca.announce_every_small = Duration::ZERO
            }),
            ("foca.fanout", |s| s.foca.fanout = Some(0)),
            ("foca.gossip_every", |s| {
                s.foca.gossip_every = Some(Duration::ZERO)
            }),
            ("sweep.max_concurrent", |s| s.sweep.max_concurrent = 0),
            ("sweep.retry_initial", |s| {
                s.sweep.retry_max = Duration::from_millis(1)
            }),
            ("sweep.tick", |s| s.sweep.tick = Duration::ZERO),
            ("sweep.backstop_deadline_percent", |s| {
                s.sweep.backstop_deadline_percent = 101
            }),
            ("sweep.backstop_interval", |s| {
                s.sweep.backstop_interval = Duration::ZERO
            }),
            ("sweep.max_deadline", |s| {
                s.sweep.max_deadline = patrol_model::MAX_DEADLINE + Duration::from_secs(1)
            }),
            ("sweep.budget_floor", |s| {
                s.sweep.budget_floor = Duration::ZERO
            }),
            ("sweep.max_participations", |s| {
                s.sweep.max_participations = 0
            }),
            ("sweep.peer_keys", |s| s.sweep.peer_keys = 0),
            ("sweep.max_late_partial_bytes", |s| {
                s.sweep.max_late_partial_bytes = s.sweep.max_partial_bytes + 1
            }),
            ("sweep.nodes_per_relay", |s| s.sweep.nodes_per_relay = 0),
        ];
        for (field, breaks) in cases {
            let mut s = NodeSettings::default();
            breaks(&mut s);
            assert_eq!(
                s.validate().map_err(|e| e.field),
                Err(field),
                "breaking {field}"
            );
        }
    }
}
