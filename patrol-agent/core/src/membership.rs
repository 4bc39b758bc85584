//! Membership as the agent reports it: foca settings sized to the cluster,
//! and the member view (`alive / suspect / down / left`) that `patrol
//! members` prints.
//!
//! SWIM itself only knows alive, suspect and down. "Left" is what a node
//! that leaves on SIGTERM says about itself: before `leave_cluster` it sends
//! a sealed `Leave` notice directly to the members it knows, and they
//! remember the name; when foca then reports the node down, it shows as
//! `left`. A node that misses the notice shows `down`.

use std::collections::{BTreeMap, HashSet};
use std::num::{NonZeroU32, NonZeroU8, NonZeroUsize};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::identity::NodeId;

/// A member's state as shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    Alive,
    Suspect,
    Down,
    Left,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
            MemberState::Left => "left",
        }
    }

    /// Alive or suspect: SWIM still counts it as a member.
    pub fn is_active(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }
}

/// One line of `patrol members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub name: String,
    pub addr: String,
    pub state: MemberState,
    pub tags: BTreeMap<String, String>,
    /// This is the agent that answered the query.
    pub is_self: bool,
}

/// Up to this size a node announces itself every second (else every 5 s).
pub const SMALL_MESH: usize = 64;

/// foca settings for a LAN mesh of about `cluster_size` members, with
/// packets no larger than `max_packet_size` bytes of foca payload.
///
/// Starts from foca's `new_lan` (memberlist's LAN defaults: 1 s probe
/// period, suspicion scaled by log(cluster size), gossip every 200 ms) and
/// keeps down members for 5 minutes so that `members` and the sweep's
/// expected set still list a node that died.
///
/// Two changes from `new_lan`: the size is taken as at least 16, so a node
/// that has just started (and knows only itself) still retransmits
/// updates often enough for a burst of joins to spread; and each node
/// announces itself to one random member every 5 s instead of 30 s. An
/// announce is answered with a feed of members, so a node that missed
/// some join updates learns them within seconds. Measured with `patrol
/// demo` (25 agents started at once): 24 s to converge with plain
/// `new_lan` sized by the current member count, 0.6 s with these.
///
/// And `max_transmissions` is capped at [`MAX_TRANSMISSIONS`] (10): foca
/// sends every update and every sweep request on that many times from
/// each node, so it is also how often each node receives a request. With
/// `new_lan`'s 4·log10(n) that is 16 at 10,000 nodes; the simulator shows
/// 10 still reaches all but 2-3 of 10,000 nodes by gossip (the sweep's
/// backstop reaches those directly ~400 ms in) and SWIM's own probing
/// and the 5 s announce repair a membership update a node missed. The
/// cap only changes meshes above 500 nodes.
///
/// Up to [`SMALL_MESH`] members the announce runs every second: with 30
/// agents started at once, 1 run in 4 left a node that had missed a join
/// update until the next 5 s announce (convergence 0.55 s or 5.1 s).
pub fn foca_config(cluster_size: usize, max_packet_size: usize) -> foca::Config {
    let size = NonZeroU32::new(cluster_size.clamp(16, u32::MAX as usize) as u32)
        .unwrap_or(NonZeroU32::MIN);
    let mut config = foca::Config::new_lan(size);
    config.max_packet_size = NonZeroUsize::new(max_packet_size).unwrap_or(NonZeroUsize::MIN);
    config.max_transmissions = config.max_transmissions.min(MAX_TRANSMISSIONS);
    config.remove_down_after = Some(Duration::from_secs(300));
    config.periodic_announce = Some(foca::PeriodicParams {
        // Small meshes are where a burst of joins outruns the few
        // retransmissions of each update: announcing every second there
        // caps convergence at about a second instead of 5 s.
        frequency: if cluster_size <= SMALL_MESH {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(5)
        },
        num_members: NonZeroUsize::MIN,
    });
    config
}

/// Most times each node sends an update or a sweep request on.
pub const MAX_TRANSMISSIONS: NonZeroU8 = match NonZeroU8::new(10) {
    Some(n) => n,
    None => NonZeroU8::MIN,
};

/// The cluster size to size foca for: the next power of two at or above the
/// number of members, so settings are re-applied only as the mesh doubles
/// (or halves).
pub fn size_bucket(members: usize) -> usize {
    members.max(1).next_power_of_two()
}

/// Names that announced they were leaving.
#[derive(Debug, Default)]
pub struct Departures {
    left: HashSet<String>,
}

impl Departures {
    pub fn record_leave(&mut self, name: &str) {
        self.left.insert(name.to_string());
    }

    /// The node is back (a new incarnation is alive): forget it left.
    pub fn record_alive(&mut self, name: &str) {
        self.left.remove(name);
    }

    pub fn has_left(&self, name: &str) -> bool {
        self.left.contains(name)
    }
}

/// The member view from foca's membership state plus departures.
pub fn member_view<'a>(
    me: &NodeId,
    members: impl Iterator<Item = &'a foca::Member<NodeId>>,
    departures: &Departures,
) -> Vec<MemberInfo> {
    let mut out: Vec<MemberInfo> = members
        .map(|m| {
            let state = match m.state() {
                foca::State::Alive => MemberState::Alive,
                foca::State::Suspect => MemberState::Suspect,
                foca::State::Down if departures.has_left(&m.id().name) => MemberState::Left,
                foca::State::Down => MemberState::Down,
            };
            MemberInfo {
                name: m.id().name.clone(),
                addr: m.id().addr.to_string(),
                state,
                tags: m.id().tags.clone(),
                is_self: false,
            }
        })
        .collect();
    out.push(MemberInfo {
        name: me.name.clone(),
        addr: me.addr.to_string(),
        state: MemberState::Alive,
        tags: me.tags.clone(),
        is_self: true,
    });
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_by_doubling() {
        assert_eq!(size_bucket(0), 1);
        assert_eq!(size_bucket(3), 4);
        assert_eq!(size_bucket(4), 4);
        assert_eq!(size_bucket(1000), 1024);
    }

    #[test]
    fn config_keeps_foca_probe_defaults_across_sizes() {
        let small = foca_config(4, 1350);
        let big = foca_config(4096, 1350);
        assert_eq!(small.probe_period, big.probe_period);
        assert!(big.max_transmissions >= small.max_transmissions);
        assert!(big.suspect_to_down_after >= small.suspect_to_down_after);
    }

    #[test]
    fn transmissions_are_capped_for_large_meshes() {
        assert_eq!(
            foca_config(16_384, 1350).max_transmissions,
            MAX_TRANSMISSIONS
        );
        assert_eq!(foca_config(256, 1350).max_transmissions.get(), 9);
    }
}
