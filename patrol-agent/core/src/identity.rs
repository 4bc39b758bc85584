//! `NodeId`: a node's identity in the SWIM mesh.
//!
//! The cluster-wide unique address of a node (foca's `Identity::Addr`) is
//! its gossip socket address: that is all a joining node knows of its
//! seeds, and foca accepts an announce addressed to any identity with our
//! address. Each start draws a fresh `bump` from the clock, so a node
//! restarted on the same address wins the conflict with its old identity,
//! and `renew` increments it so a node wrongly declared down rejoins at
//! once.
//!
//! The bump is 64 bits of milliseconds and compared plainly: it does not
//! wrap within the life of any cluster. (It was a `u32` compared with
//! serial arithmetic, which made an agent restarted 25-50 days after its
//! previous start lose to its own old identity.)

use core::net::SocketAddr;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A node's identity: name (unique in the cluster), gossip address, a bump
/// that orders incarnations of the same name, and the node's tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    pub name: String,
    pub addr: SocketAddr,
    pub bump: u64,
    pub tags: BTreeMap<String, String>,
}

/// Largest encoded identity a node starts with, and the largest the codec
/// takes from anyone else (`codec.rs` refuses a packet carrying a larger
/// one). foca puts the sender's identity in every packet's header and up
/// to three identities in an indirect probe, all within one 1,330-byte
/// packet; about 400 bytes of tags silently broke indirect probes and
/// about 620 all gossip. The config keeps a name and its tags within 192
/// bytes of text, which encodes to at most ~260.
pub const MAX_IDENTITY_BYTES: usize = 300;

impl NodeId {
    /// The identity's size in foca's packets (bincode, as the codec writes);
    /// counted, not written.
    pub fn encoded_len(&self) -> usize {
        let mut size = bincode::enc::write::SizeWriter::default();
        match bincode::serde::encode_into_writer(self, &mut size, bincode::config::standard()) {
            Ok(()) => size.bytes_written,
            Err(_) => usize::MAX,
        }
    }

    /// A new identity. The shell draws `bump` from the wall clock at start
    /// ([`NodeId::bump_from_unix_ms`]) so that a restart beats the previous
    /// incarnation.
    pub fn new(
        name: impl Into<String>,
        addr: SocketAddr,
        bump: u64,
        tags: BTreeMap<String, String>,
    ) -> Self {
        NodeId {
            name: name.into(),
            addr,
            bump,
            tags,
        }
    }

    /// The bump for an identity started at `unix_ms`: the milliseconds
    /// themselves, so a later start beats every earlier incarnation.
    pub fn bump_from_unix_ms(unix_ms: u64) -> u64 {
        unix_ms
    }

    /// A stand-in for a seed we know only by address: used as the
    /// destination of an announce. It never enters the member list: foca
    /// accepts an announce whose destination has the receiver's address,
    /// and learns the seed's real identity from its reply.
    pub fn seed_placeholder(addr: SocketAddr) -> Self {
        NodeId {
            name: format!("seed@{addr}"),
            addr,
            bump: 0,
            tags: BTreeMap::new(),
        }
    }
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        let mut next = self.clone();
        next.bump = self.bump.saturating_add(1);
        Some(next)
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

#[cfg(test)]
mod tests {
    use foca::Identity;

    use super::*;

    #[test]
    fn renewed_identity_wins_and_keeps_the_name() {
        let a = NodeId::new("a", "127.0.0.1:1".parse().unwrap(), 7, BTreeMap::new());
        let b = a.renew().unwrap();
        assert_eq!(a.addr(), b.addr());
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
    }

    #[test]
    fn a_restart_any_time_later_wins() {
        let day = 24 * 3600 * 1000;
        let addr = "127.0.0.1:1".parse().unwrap();
        let old = NodeId::new(
            "a",
            addr,
            NodeId::bump_from_unix_ms(1_800_000_000_000),
            BTreeMap::new(),
        );
        for days in [1, 25, 30, 49, 50, 365, 3650] {
            let new = NodeId::new("a", addr, old.bump + days * day, BTreeMap::new());
            assert!(new.win_addr_conflict(&old), "{days} days later");
            assert!(!old.win_addr_conflict(&new));
        }
    }
}
