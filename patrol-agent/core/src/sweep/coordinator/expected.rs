//! The expected set of a sweep: one [`Slot`] per expected node, kept in
//! name order (the order the document lists them in and backstop rounds
//! walk), and found by name through a hash index. Every answer looks its
//! node up here, so at 100,000 nodes a lookup must not walk a tree of long
//! names; and the index holds positions, not another copy of each name.
//!
//! The index hashes with a seed the coordinator draws from its generator
//! when it takes the snapshot, as foca's member index does, so names that
//! collide cannot be chosen in advance.

use core::hash::BuildHasher;
use std::fmt;

use foldhash::quality::FixedState;
use hashbrown::HashTable;

use super::Slot;

/// Invariant: `slots` is sorted by name with no name twice, and `index`
/// holds exactly one entry per position of `slots`, found by hashing the
/// name of the slot at that position.
pub(crate) struct Expected {
    slots: Vec<Slot>,
    index: HashTable<u32>,
    hasher: FixedState,
}

impl fmt::Debug for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.slots).finish()
    }
}

impl Default for Expected {
    fn default() -> Self {
        Expected {
            slots: Vec::new(),
            index: HashTable::new(),
            hasher: FixedState::with_seed(0),
        }
    }
}

impl Expected {
    /// The set of `slots`, sorted by name and unique (as
    /// `expected_set` builds them), indexed with `seed`.
    pub(crate) fn new(slots: Vec<Slot>, seed: u64) -> Self {
        debug_assert!(
            slots.windows(2).all(|w| w[0].peer.name < w[1].peer.name),
            "expected slots sorted by name, each name once"
        );
        let hasher = FixedState::with_seed(seed);
        let mut index = HashTable::with_capacity(slots.len());
        for (pos, slot) in slots.iter().enumerate() {
            let hash = hasher.hash_one(slot.peer.name.as_str());
            index.insert_unique(hash, pos as u32, |&p| {
                hasher.hash_one(slots[p as usize].peer.name.as_str())
            });
        }
        Expected {
            slots,
            index,
            hasher,
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(name);
        self.index
            .find(hash, |&p| self.slots[p as usize].peer.name == name)
            .map(|&p| p as usize)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Slot> {
        self.position(name).map(|p| &self.slots[p])
    }

    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut Slot> {
        self.position(name).map(|p| &mut self.slots[p])
    }

    pub(crate) fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The slots in name order.
    pub(crate) fn values(&self) -> std::slice::Iter<'_, Slot> {
        self.slots.iter()
    }

    pub(crate) fn values_mut(&mut self) -> std::slice::IterMut<'_, Slot> {
        self.slots.iter_mut()
    }

    pub(crate) fn into_values(self) -> std::vec::IntoIter<Slot> {
        self.slots.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Slot, SlotState};
    use super::Expected;
    use crate::sweep::Peer;

    fn slot(name: &str, port: u16) -> Slot {
        Slot {
            peer: Peer {
                name: name.to_string(),
                addr: ([127, 0, 0, 1], port).into(),
                tags: Default::default(),
            },
            state: SlotState::Pending,
            backstops: 0,
            swim_down: false,
            rostered: false,
        }
    }

    #[test]
    fn every_name_is_found_at_its_own_slot_and_no_other_name_is() {
        let mut names: Vec<String> = (0..5000).map(|i| format!("node-{i:05}.zone-a")).collect();
        names.sort();
        for seed in [0, 1, 0xDEAD_BEEF] {
            let slots = names
                .iter()
                .enumerate()
                .map(|(i, n)| slot(n, i as u16))
                .collect();
            let mut set = Expected::new(slots, seed);
            assert_eq!(set.len(), names.len());
            for (i, n) in names.iter().enumerate() {
                let found = set.get(n).expect("an expected name is found");
                assert_eq!(
                    (found.peer.name.as_str(), found.peer.addr.port()),
                    (n.as_str(), i as u16)
                );
                assert!(set.contains_key(n));
            }
            for absent in [
                "",
                "node-05000.zone-a",
                "node-00001.zone-",
                "node-00001.zone-aa",
            ] {
                assert!(set.get(absent).is_none(), "{absent:?} is not expected");
            }
            set.get_mut("node-00042.zone-a").expect("found").state = SlotState::Down;
            assert!(matches!(
                set.get("node-00042.zone-a").expect("found").state,
                SlotState::Down
            ));
            // Name order, as the document lists them.
            let listed: Vec<&str> = set.values().map(|s| s.peer.name.as_str()).collect();
            assert_eq!(listed, names.iter().map(String::as_str).collect::<Vec<_>>());
        }
        assert!(Expected::default().get("node-00000.zone-a").is_none());
    }
}
