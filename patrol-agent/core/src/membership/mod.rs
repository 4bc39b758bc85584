//! Membership as the agent reports it: foca settings sized to the cluster,
//! and the member view (`alive / suspect / down / left`) that `patrol
//! members` prints.
//!
//! SWIM itself only knows alive, suspect and down. "Left" is what a node
//! that leaves on SIGTERM says about itself: before `leave_cluster` it sends
//! a sealed `Leave` notice directly to the members it knows, and they
//! remember the name; when foca then reports the node down, it shows as
//! `left`. A node that misses the notice shows `down`.
//!
//! [`LastHeard`] remembers when a datagram last came from each member's
//! address, so that a sweep can say of a silent node whether its agent
//! still talks to the coordinator.

pub mod gate;
pub mod proof;
pub mod roster;
pub mod wire;

use core::net::SocketAddr;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::identity::NodeId;
use crate::settings::FocaTuning;

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
    /// Another active member (or this agent) claims the same name at
    /// another address: sweeps list both as a conflict.
    pub name_conflict: bool,
}

/// foca settings for a LAN mesh of about `cluster_size` members, with
/// packets no larger than `max_packet_size` bytes of foca payload: foca's
/// `new_lan` with Patrol's [`FocaTuning`] applied (the reasons for each
/// change are on its fields).
pub fn foca_config(
    cluster_size: usize,
    max_packet_size: usize,
    tuning: &FocaTuning,
) -> foca::Config {
    let size = NonZeroU32::new(
        cluster_size
            .max(tuning.min_cluster_size)
            .clamp(1, u32::MAX as usize) as u32,
    )
    .unwrap_or(NonZeroU32::MIN);
    let mut config = foca::Config::new_lan(size);
    config.max_packet_size = NonZeroUsize::new(max_packet_size).unwrap_or(NonZeroUsize::MIN);
    config.max_transmissions = config.max_transmissions.min(tuning.max_transmissions);
    config.remove_down_after = Some(tuning.remove_down_after);
    config.periodic_announce = Some(foca::PeriodicParams {
        frequency: if cluster_size <= tuning.small_mesh {
            tuning.announce_every_small
        } else {
            tuning.announce_every
        },
        num_members: NonZeroUsize::MIN,
    });
    if let Some(f) = tuning.fanout.and_then(NonZeroUsize::new) {
        config.num_indirect_probes = f;
    }
    if let (Some(every), Some(g)) = (tuning.gossip_every, config.periodic_gossip.as_mut()) {
        g.frequency = every;
    }
    config
}

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

/// Addresses a [`LastHeard`] may hold beyond twice the membership before
/// it prunes again.
const HEARD_SLACK: usize = 64;

/// When the last datagram (any channel, opened) arrived from each sender
/// address, monotonic time. Bounded by the membership: once the map grows
/// past twice its size after the last prune (plus [`HEARD_SLACK`]),
/// [`LastHeard::record`] says so and the node keeps only the addresses of
/// the members foca holds ([`LastHeard::retain`]); each prune is paid for
/// by as many insertions as it scans, so recording stays O(1) amortized,
/// and a key holder sending from many addresses grows it by at most one
/// threshold.
///
/// Keyed by the datagram's source address, which is the member's gossip
/// address whenever the member's advertised address is the one its
/// packets come from (foca relies on that too: it answers to the
/// advertised address).
#[derive(Debug)]
pub struct LastHeard {
    at: HashMap<SocketAddr, Duration>,
    prune_above: usize,
}

impl Default for LastHeard {
    fn default() -> Self {
        LastHeard {
            at: HashMap::new(),
            prune_above: HEARD_SLACK,
        }
    }
}

impl LastHeard {
    /// A datagram from `from` arrived at `now`. True when the map has
    /// outgrown its bound: call [`LastHeard::retain`] with the members.
    pub fn record(&mut self, from: SocketAddr, now: Duration) -> bool {
        self.at.insert(from, now);
        self.at.len() > self.prune_above
    }

    /// Forget every address `keep` refuses (not a member any more).
    pub fn retain(&mut self, keep: impl Fn(&SocketAddr) -> bool) {
        self.at.retain(|addr, _| keep(addr));
        self.prune_above = self.at.len() * 2 + HEARD_SLACK;
    }

    /// When a datagram last came from `addr`.
    pub fn get(&self, addr: &SocketAddr) -> Option<Duration> {
        self.at.get(addr).copied()
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
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
                tags: m.id().tags.to_map(),
                is_self: false,
                name_conflict: false,
            }
        })
        .collect();
    out.push(MemberInfo {
        name: me.name.clone(),
        addr: me.addr.to_string(),
        state: MemberState::Alive,
        tags: me.tags.to_map(),
        is_self: true,
        name_conflict: false,
    });
    let mut active: BTreeMap<&str, usize> = BTreeMap::new();
    for m in out.iter().filter(|m| m.state.is_active()) {
        *active.entry(m.name.as_str()).or_default() += 1;
    }
    let conflicted: HashSet<String> = active
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(name, _)| name.to_string())
        .collect();
    for m in &mut out {
        m.name_conflict = m.state.is_active() && conflicted.contains(&m.name);
    }
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
        let t = FocaTuning::default();
        let small = foca_config(4, 1350, &t);
        let big = foca_config(4096, 1350, &t);
        assert_eq!(small.probe_period, big.probe_period);
        assert!(big.max_transmissions >= small.max_transmissions);
        assert!(big.suspect_to_down_after >= small.suspect_to_down_after);
    }

    #[test]
    fn last_heard_keeps_the_latest_time_and_stays_bounded_by_the_members() {
        let addr = |i: u16| SocketAddr::from(([10, 0, 0, 1], i));
        let mut heard = LastHeard::default();
        heard.record(addr(1), Duration::from_secs(1));
        heard.record(addr(1), Duration::from_secs(3));
        assert_eq!(heard.get(&addr(1)), Some(Duration::from_secs(3)));
        assert_eq!(heard.get(&addr(2)), None);
        // Ten members, and a key holder sending from thousands of addresses.
        let members: HashSet<SocketAddr> = (1..=10).map(addr).collect();
        let mut most = 0;
        for i in 1..=5_000u16 {
            if heard.record(addr(i), Duration::from_secs(4)) {
                heard.retain(|a| members.contains(a));
            }
            most = most.max(heard.len());
        }
        assert!(most <= 2 * members.len() + HEARD_SLACK + 1, "{most}");
        for m in &members {
            assert!(heard.get(m).is_some(), "member {m} forgotten");
        }
    }

    #[test]
    fn transmissions_are_capped_for_large_meshes() {
        let t = FocaTuning::default();
        assert_eq!(
            foca_config(16_384, 1350, &t).max_transmissions,
            t.max_transmissions
        );
        assert_eq!(foca_config(256, 1350, &t).max_transmissions.get(), 9);
    }
}
