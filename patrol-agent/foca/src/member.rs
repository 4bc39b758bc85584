/* This Source Code Form is subject to the terms of the Mozilla Public
 * License, v. 2.0. If a copy of the MPL was not distributed with this
 * file, You can obtain one at https://mozilla.org/MPL/2.0/. */
extern crate alloc;
use alloc::vec::Vec;
use core::hash::BuildHasher;

use foldhash::quality::FixedState;
use hashbrown::HashTable;

use rand::{
    RngExt,
    prelude::{IteratorRandom, SliceRandom},
};

/// State describes how a Foca instance perceives a member of the cluster.
///
/// This is part of the Suspicion Mechanism described in section 4.2 of the
/// original SWIM paper.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum State {
    /// Member is active.
    Alive,
    /// Member is active, but at least one cluster member
    /// suspects its down. For all purposes, a `Suspect` member
    /// is treated as if it were `Alive` until either it
    /// refutes the suspicion (becoming `Alive`) or fails to
    /// do so (being declared `Down`).
    Suspect,
    /// Confirmed Down.
    /// A member that reaches this state can't join the cluster
    /// with the same identity until the cluster forgets
    /// this knowledge.
    Down,
}

/// Incarnation is a member-controlled cluster-global number attached
/// to a member identity.
/// A member M's incarnation starts with zero and can only be incremented
/// by said member M when refuting suspicion.
pub type Incarnation = u16;

/// A Cluster Member. Also often called "cluster update".
///
/// A [`Member`] represents Foca's snapshot knowledge about an
/// [`crate::Identity`]. An individual cluster update is simply a
/// serialized Member which other Foca instances receive and use to
/// update their own cluster state representation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Member<T> {
    id: T,
    incarnation: Incarnation,
    state: State,
}

impl<T> Member<T> {
    /// Initializes a new member.
    ///
    /// `id` is an identity used to uniquely identify an individual
    /// cluster member (say, a primary key).
    pub const fn new(id: T, incarnation: Incarnation, state: State) -> Self {
        Self {
            id,
            incarnation,
            state,
        }
    }

    /// Shortcut for initializing a member as [`State::Alive`].
    pub fn alive(id: T) -> Self {
        Self::new(id, Incarnation::default(), State::Alive)
    }

    #[cfg(test)]
    pub(crate) fn suspect(id: T) -> Self {
        Self::new(id, Incarnation::default(), State::Suspect)
    }

    /// Shortcut for initializing a member as [`State::Down`].
    pub fn down(id: T) -> Self {
        Self::new(id, Incarnation::default(), State::Down)
    }

    /// Getter for the member's Incarnation
    pub const fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// Getter for the member's State
    pub const fn state(&self) -> State {
        self.state
    }

    /// Getter for the member's identity
    pub const fn id(&self) -> &T {
        &self.id
    }

    pub(crate) const fn is_active(&self) -> bool {
        match self.state {
            State::Alive | State::Suspect => true,
            State::Down => false,
        }
    }

    pub(crate) const fn change_state(&mut self, incarnation: Incarnation, state: State) -> bool {
        if self.can_change(incarnation, state) {
            self.state = state;
            self.incarnation = incarnation;
            true
        } else {
            false
        }
    }

    const fn can_change(&self, other_incarnation: Incarnation, other: State) -> bool {
        // This implements the order of preference of the Suspicion subprotocol
        // outlined on section 4.2 of the paper.
        match self.state {
            State::Alive => match other {
                State::Alive => other_incarnation > self.incarnation,
                State::Suspect => other_incarnation >= self.incarnation,
                State::Down => true,
            },
            State::Suspect => match other {
                State::Alive | State::Suspect => other_incarnation > self.incarnation,
                State::Down => true,
            },
            State::Down => false,
        }
    }

    pub(crate) fn into_identity(self) -> T {
        self.id
    }
}

/// The cluster members Foca knows, in a `Vec` (the order probes walk, and
/// [`crate::Foca::iter_membership_state`]'s), with an index from each
/// member's [`crate::Identity::Addr`] to its position so that finding a
/// member does not scan the list.
///
/// Invariant: `index` holds exactly one entry per position of `inner`,
/// found by hashing the address of the member at that position.
pub(crate) struct Members<T> {
    pub(crate) inner: Vec<Member<T>>,
    index: HashTable<usize>,
    hasher: FixedState,
    cursor: usize,
    num_active: usize,
}

#[cfg(test)]
impl<T> Members<T> {
    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }
}

/// Random draws per wanted member, scaled by how rare candidates are,
/// before [`Members::choose_members`] falls back to a full scan.
const DRAWS_PER_WANTED: usize = 4;

impl<T> Members<T>
where
    T: PartialEq + Clone + crate::Identity,
{
    pub(crate) const fn num_active(&self) -> usize {
        self.num_active
    }

    #[cfg(test)]
    pub(crate) fn new(inner: Vec<Member<T>>) -> Self {
        Self::with_hash_seed(inner, 0)
    }

    /// Members whose address index hashes with `seed` (Foca draws it from
    /// its rng, so that colliding addresses cannot be chosen in advance).
    pub(crate) fn with_hash_seed(inner: Vec<Member<T>>, seed: u64) -> Self {
        // XXX This doesn't prevent someone initializing with
        //     duplicated members... Not a problem (yet?) since
        //     inner is always empty outside of tests
        let num_active = inner.iter().filter(|member| member.is_active()).count();

        let mut members = Self {
            cursor: 0,
            num_active,
            inner,
            index: HashTable::new(),
            hasher: FixedState::with_seed(seed),
        };
        members.rebuild_index();
        members
    }

    fn hash(hasher: &FixedState, addr: &T::Addr) -> u64 {
        hasher.hash_one(addr)
    }

    fn rebuild_index(&mut self) {
        let Self {
            inner,
            index,
            hasher,
            ..
        } = self;
        index.clear();
        index.reserve(inner.len(), |&pos| {
            Self::hash(hasher, &inner[pos].id.addr())
        });
        for pos in 0..inner.len() {
            let hash = Self::hash(hasher, &inner[pos].id.addr());
            index.insert_unique(hash, pos, |&p| Self::hash(hasher, &inner[p].id.addr()));
        }
    }

    /// Position of the member whose address is `addr`.
    fn position(&self, addr: &T::Addr) -> Option<usize> {
        let hash = Self::hash(&self.hasher, addr);
        self.index
            .find(hash, |&pos| &self.inner[pos].id.addr() == addr)
            .copied()
    }

    /// The member whose address is `addr`, active or down.
    pub(crate) fn find(&self, addr: &T::Addr) -> Option<&Member<T>> {
        self.position(addr).map(|pos| &self.inner[pos])
    }

    /// Record that the member at `from` now sits at `to`.
    fn reindex(&mut self, from: usize, to: usize) {
        let hash = Self::hash(&self.hasher, &self.inner[to].id.addr());
        if let Some(slot) = self.index.find_mut(hash, |&pos| pos == from) {
            *slot = to;
        } else {
            debug_assert!(false, "member at {from} was not indexed");
        }
    }

    /// Index the member at `pos`, not indexed yet.
    fn index_at(&mut self, pos: usize) {
        let Self {
            inner,
            index,
            hasher,
            ..
        } = self;
        let hash = Self::hash(hasher, &inner[pos].id.addr());
        index.insert_unique(hash, pos, |&p| Self::hash(hasher, &inner[p].id.addr()));
    }

    // Next member that's considered active
    // Chosen at random (shuffle + round-robin)
    pub(crate) fn next(&mut self, mut rng: impl RngExt) -> Option<&Member<T>> {
        // Round-robin with a shuffle at the end
        if self.cursor >= self.inner.len() {
            self.inner.shuffle(&mut rng);
            // Once per walk through the whole list: O(1) per probe
            self.rebuild_index();
            self.cursor = 0;
        }

        // Find an active member from cursor..len()
        let position = self
            .inner
            .iter()
            .skip(self.cursor)
            .position(|m| m.is_active())
            // Since we skip(), position() will start counting from zero
            // this ensures it's actually the index of the chosen member
            .map(|pos| pos + self.cursor);

        // And if we don't find any: try from 0..cursor
        let position = position.or_else(|| {
            self.inner
                .iter()
                .take(self.cursor)
                .position(|m| m.is_active())
        });

        if let Some(pos) = position {
            if pos < self.cursor {
                // We wrapped around the list to find a member. A shuffle
                // is needed, so we set it to MAX. Any other value could
                // cause the shuffle to not happen since members may join
                // in-between probes
                self.cursor = usize::MAX;
            } else {
                self.cursor = pos.saturating_add(1);
            }
            self.inner.get(pos)
        } else {
            None
        }
    }

    /// Up to `wanted` distinct members that pass `picker`, chosen uniformly
    /// at random, appended to `output`. `candidates` is an upper bound of
    /// how many members may pass.
    ///
    /// When candidates are plenty, random positions are drawn until enough
    /// pass (a handful of draws, whatever the size of the cluster); when
    /// that takes too many draws, or candidates are few, every member is
    /// looked at (reservoir sampling). Both give every subset of `wanted`
    /// candidates the same chance.
    fn choose_members<F>(
        &self,
        wanted: usize,
        candidates: usize,
        output: &mut Vec<Member<T>>,
        mut rng: impl RngExt,
        picker: F,
    ) where
        F: Fn(&Member<T>) -> bool,
    {
        let len = self.inner.len();
        if wanted == 0 || len == 0 {
            return;
        }
        if wanted.saturating_mul(DRAWS_PER_WANTED) <= candidates {
            let start = output.len();
            let rarity = len.div_ceil(candidates);
            let max_draws = wanted
                .saturating_mul(DRAWS_PER_WANTED)
                .saturating_mul(rarity)
                .saturating_add(16);
            let mut chosen: Vec<usize> = Vec::with_capacity(wanted);
            for _ in 0..max_draws {
                let pos = rng.random_range(0..len);
                if chosen.contains(&pos) || !picker(&self.inner[pos]) {
                    continue;
                }
                chosen.push(pos);
                output.push(self.inner[pos].clone());
                if chosen.len() == wanted {
                    return;
                }
            }
            output.truncate(start);
        }
        self.scan_members(wanted, output, rng, picker);
    }

    fn scan_members<F>(
        &self,
        wanted: usize,
        output: &mut Vec<Member<T>>,
        mut rng: impl RngExt,
        picker: F,
    ) where
        F: Fn(&Member<T>) -> bool,
    {
        // Basic reservoir sampling
        let start = output.len();
        let mut num_chosen = 0;
        let mut num_seen = 0;

        for member in &self.inner {
            if !picker(member) {
                continue;
            }

            num_seen += 1;
            if num_chosen < wanted {
                num_chosen += 1;
                output.push(member.clone());
            } else {
                let replace_at = rng.random_range(0..num_seen);
                if replace_at < wanted {
                    output[start + replace_at] = member.clone();
                }
            }
        }
    }

    pub(crate) fn choose_down_members(
        &self,
        wanted: usize,
        output: &mut Vec<Member<T>>,
        rng: impl RngExt,
    ) {
        let num_down = self.inner.len() - self.num_active;
        self.choose_members(wanted, num_down, output, rng, |member| !member.is_active());
    }

    pub(crate) fn choose_active_members<F>(
        &self,
        wanted: usize,
        output: &mut Vec<Member<T>>,
        rng: impl RngExt,
        picker: F,
    ) where
        F: Fn(&T) -> bool,
    {
        self.choose_members(wanted, self.num_active, output, rng, |member| {
            member.is_active() && picker(member.id())
        });
    }

    pub(crate) fn remove_if_down(&mut self, id: &T) -> Option<Member<T>> {
        let pos = self
            .position(&id.addr())
            .filter(|&pos| &self.inner[pos].id == id && self.inner[pos].state == State::Down)?;

        let hash = Self::hash(&self.hasher, &id.addr());
        if let Ok(entry) = self.index.find_entry(hash, |&p| p == pos) {
            entry.remove();
        }
        let last = self.inner.len() - 1;
        let removed = self.inner.swap_remove(pos);
        if pos != last {
            self.reindex(last, pos);
        }
        Some(removed)
    }

    pub(crate) fn iter_active(&self) -> impl Iterator<Item = &Member<T>> {
        self.inner.iter().filter(|m| m.is_active())
    }

    pub(crate) fn is_active(&self, id: &T) -> bool {
        self.position(&id.addr())
            .is_some_and(|pos| &self.inner[pos].id == id && self.inner[pos].is_active())
    }

    pub(crate) fn apply_existing_if<F: Fn(&Member<T>) -> bool>(
        &mut self,
        mut update: Member<T>,
        condition: F,
    ) -> Option<ApplySummary<T>> {
        let pos = self.position(&update.id().addr())?;
        let known_member = &mut self.inner[pos];
        let id_conflict = known_member.id != update.id;

        // If the update wins the conflict, the full member
        // state is replaced (it's essentially a rejoin)
        // If it doesn't, it gets discarded
        if id_conflict && known_member.id.win_addr_conflict(&update.id) {
            return Some(ApplySummary {
                is_active_now: known_member.is_active(),
                apply_successful: false,
                changed_active_set: false,
                conflict: ConflictResult::Lost,
            });
        }

        if !condition(known_member) {
            return Some(ApplySummary {
                is_active_now: known_member.is_active(),
                apply_successful: false,
                changed_active_set: false,
                conflict: if id_conflict {
                    ConflictResult::FailedCondition
                } else {
                    ConflictResult::NoConflict
                },
            });
        }
        let was_active = known_member.is_active();

        // The address, and so the index, is the same after a swap
        let (apply_successful, conflict) = if id_conflict {
            core::mem::swap(&mut known_member.id, &mut update.id);
            known_member.state = update.state;
            known_member.incarnation = update.incarnation;
            (true, ConflictResult::Replaced(update.id))
        } else {
            (
                known_member.change_state(update.incarnation, update.state),
                ConflictResult::NoConflict,
            )
        };

        let is_active_now = known_member.is_active();
        let changed_active_set = is_active_now != was_active;

        if changed_active_set {
            // XXX Overzealous checking
            if is_active_now {
                self.num_active = self.num_active.saturating_add(1);
            } else {
                self.num_active = self.num_active.saturating_sub(1);
            }
        }

        Some(ApplySummary {
            is_active_now,
            apply_successful,
            changed_active_set,
            conflict,
        })
    }

    pub(crate) fn apply(&mut self, update: Member<T>, mut rng: impl RngExt) -> ApplySummary<T> {
        self.apply_existing_if(update.clone(), |_member| true)
            .unwrap_or_else(|| {
                // Unknown member, we'll register it
                let is_active_now = update.is_active();

                // Insert at the end and swap with a random position.
                self.inner.push(update);
                let inserted_at = self.inner.len() - 1;

                let swap_idx = (0..self.inner.len())
                    .choose(&mut rng)
                    .unwrap_or(inserted_at);

                self.inner.swap(swap_idx, inserted_at);
                if swap_idx != inserted_at {
                    self.reindex(swap_idx, inserted_at);
                }
                self.index_at(swap_idx);

                if is_active_now {
                    self.num_active = self.num_active.saturating_add(1);
                }

                ApplySummary {
                    is_active_now,
                    apply_successful: true,
                    // Registering a new active member changes the active set
                    changed_active_set: is_active_now,
                    conflict: ConflictResult::NoConflict,
                }
            })
    }
}

#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub(crate) struct ApplySummary<T> {
    pub(crate) is_active_now: bool,
    pub(crate) apply_successful: bool,
    pub(crate) changed_active_set: bool,
    pub(crate) conflict: ConflictResult<T>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ConflictResult<T> {
    NoConflict,
    Replaced(T),
    Lost,
    FailedCondition,
}

#[cfg(test)]
mod tests {

    use crate::Identity;

    use super::*;

    use alloc::vec;
    use rand::{SeedableRng, rngs::SmallRng};

    #[derive(Clone, Debug, PartialEq, Eq, Copy, PartialOrd, Ord)]
    struct Id(&'static str);
    impl crate::Identity for Id {
        type Addr = &'static str;

        fn renew(&self) -> Option<Self> {
            None
        }

        fn addr(&self) -> Self::Addr {
            self.0
        }

        fn win_addr_conflict(&self, _adversary: &Self) -> bool {
            panic!("addr is self, there'll never be a conflict");
        }
    }

    use State::*;

    #[test]
    fn alive_transitions() {
        let mut member = Member::new(Id("a"), 0, Alive);

        // Alive => Alive
        assert!(
            member.change_state(member.incarnation + 1, Alive),
            "can transition to a higher incarnation"
        );

        assert_eq!(1, member.incarnation);
        assert_eq!(Alive, member.state);

        assert!(
            !member.change_state(member.incarnation - 1, Alive),
            "cannot transition to a lower incarnation"
        );

        assert!(
            !member.change_state(member.incarnation, Alive),
            "cannot transition to same state and incarnation {:?}",
            member
        );

        // Alive => Suspect
        assert!(
            !member.change_state(member.incarnation - 1, Suspect),
            "lower suspect incarnation shouldn't transition"
        );

        assert!(
            member.change_state(member.incarnation, Suspect),
            "transition to suspect with same incarnation"
        );
        assert_eq!(Suspect, member.state);

        member = Member::new(Id("b"), 0, Alive);
        assert!(
            member.change_state(member.incarnation + 1, Suspect),
            "transition to suspect with higher incarnation"
        );
        assert_eq!(1, member.incarnation);
        assert_eq!(Suspect, member.state);

        // Alive => Down, always works
        assert!(
            Member::new("c", 1, Alive).change_state(0, Down),
            "transitions to down on lower incarnation"
        );
        assert!(
            Member::new("c", 0, Alive).change_state(0, Down),
            "transitions to down on same incarnation"
        );
        assert!(
            Member::new("c", 0, Alive).change_state(1, Down),
            "transitions to down on higher incarnation"
        );
    }

    #[test]
    fn suspect_transitions() {
        let mut member = Member::new(Id("a"), 0, Suspect);

        // Suspect => Suspect
        assert!(
            member.change_state(member.incarnation + 1, Suspect),
            "can transition to a higher incarnation"
        );

        assert_eq!(1, member.incarnation);
        assert_eq!(Suspect, member.state);

        assert!(
            !member.change_state(member.incarnation - 1, Suspect),
            "cannot transition to a lower incarnation"
        );

        assert!(
            !member.change_state(member.incarnation, Suspect),
            "cannot transition to same state and incarnation {:?}",
            member
        );

        // Suspect => Alive
        assert!(
            !member.change_state(member.incarnation - 1, Alive),
            "lower alive incarnation shouldn't transition"
        );
        assert!(
            !member.change_state(member.incarnation, Alive),
            "same alive incarnation shouldn't transition"
        );

        assert!(
            member.change_state(member.incarnation + 1, Alive),
            "can transition to alive with higher incarnation"
        );
        assert_eq!(Alive, member.state);

        // Suspect => Down, always works
        assert!(
            Member::new("c", 1, Suspect).change_state(0, Down),
            "transitions to down on lower incarnation"
        );
        assert!(
            Member::new("c", 0, Suspect).change_state(0, Down),
            "transitions to down on same incarnation"
        );
        assert!(
            Member::new("c", 0, Suspect).change_state(1, Down),
            "transitions to down on higher incarnation"
        );
    }

    #[test]
    fn down_never_transitions() {
        let mut member = Member::new("dead", 1, Down);

        for incarnation in 0..=2 {
            assert!(!member.change_state(incarnation, Alive));
            assert!(!member.change_state(incarnation, Suspect));
            assert!(!member.change_state(incarnation, Down));
        }
    }

    #[test]
    fn next_walks_sequentially_then_shuffles() {
        let ordered_ids = vec![Id("1"), Id("2"), Id("3"), Id("4"), Id("5")];
        let mut members = Members::new(ordered_ids.iter().cloned().map(Member::alive).collect());

        let mut rng = SmallRng::seed_from_u64(0xF0CA);

        for wanted in ordered_ids.iter() {
            let got = members
                .next(&mut rng)
                .expect("Non-empty set of Alive members should always yield Some()")
                .id;
            assert_eq!(wanted, &got);
        }

        // By now we walked through all known live members so
        // the internal state should've shuffled.
        // We'll verify that by calling `next()` multiple
        // times and comparing with the original `ordered_ids`
        let mut after_shuffle = (0..ordered_ids.len())
            .map(|_| members.next(&mut rng).unwrap().id)
            .collect::<Vec<_>>();
        assert_ne!(ordered_ids, after_shuffle);

        // The shuffle only happens once the cursor walks
        // through the whole set, so `after_shuffle` should
        // contain every member, like `ordered_ids`, but in
        // a distinct order
        after_shuffle.sort_unstable();
        assert_eq!(ordered_ids, after_shuffle);
    }

    #[test]
    fn apply_existing_if_behaviour() {
        let mut members = Members::new(Vec::new());

        assert_eq!(
            None,
            members.apply_existing_if(Member::alive(Id("1")), |_member| true),
            "Only yield None only if member is not found"
        );

        let mut rng = SmallRng::seed_from_u64(0xF0CA);
        let _ = members.apply(Member::alive(Id("1")), &mut rng);

        assert_ne!(
            None,
            members.apply_existing_if(Member::alive(Id("1")), |_member| true),
            "Must yield Some() if existing, regardless of condition"
        );

        assert_ne!(
            None,
            members.apply_existing_if(Member::alive(Id("1")), |_member| false),
            "Must yield Some() if existing, regardless of condition"
        );
    }

    #[test]
    fn apply_summary_behaviour() {
        let mut members = Members::new(Vec::new());
        let mut rng = SmallRng::seed_from_u64(0xF0CA);

        // New and active member
        let res = members.apply(Member::suspect(Id("1")), &mut rng);
        assert_eq!(
            ApplySummary {
                is_active_now: true,
                apply_successful: true,
                changed_active_set: true,
                conflict: ConflictResult::NoConflict,
            },
            res,
        );
        assert_eq!(1, members.len());
        assert_eq!(1, members.num_active());

        // Failed attempt to change member id=1 to alive
        // (since it's already suspect with same incarnation)
        let res = members.apply(Member::alive(Id("1")), &mut rng);
        assert_eq!(
            ApplySummary {
                is_active_now: true,
                apply_successful: false,
                changed_active_set: false,
                conflict: ConflictResult::NoConflict,
            },
            res,
        );
        assert_eq!(1, members.len());

        // Successful attempt at changing member id=1 to
        // alive by using a higher incarnation
        let res = members.apply(Member::new(Id("1"), 1, State::Alive), &mut rng);
        assert_eq!(
            ApplySummary {
                is_active_now: true,
                apply_successful: true,
                changed_active_set: false,
                conflict: ConflictResult::NoConflict,
            },
            res,
        );
        assert_eq!(1, members.len());

        // Change existing member to down
        let res = members.apply(Member::down(Id("1")), &mut rng);
        assert_eq!(
            ApplySummary {
                is_active_now: false,
                apply_successful: true,
                changed_active_set: true,
                conflict: ConflictResult::NoConflict,
            },
            res,
        );
        assert_eq!(1, members.len());
        assert_eq!(0, members.num_active());

        // New and inactive member
        let res = members.apply(Member::down(Id("2")), &mut rng);
        assert_eq!(
            ApplySummary {
                is_active_now: false,
                apply_successful: true,
                changed_active_set: false,
                conflict: ConflictResult::NoConflict,
            },
            res,
        );
        assert_eq!(2, members.len());
        assert_eq!(0, members.num_active());
    }

    #[test]
    fn remove_if_down_works() {
        let mut members = Members::new(Vec::new());
        let mut rng = SmallRng::seed_from_u64(0xF0CA);

        assert_eq!(
            None,
            members.remove_if_down(&Id("1")),
            "cant remove member that does not exist"
        );
        let _ = members.apply(Member::alive(Id("1")), &mut rng);

        assert_eq!(
            None,
            members.remove_if_down(&Id("1")),
            "cant remove member that isnt down"
        );
        let _ = members.apply(Member::down(Id("1")), &mut rng);

        assert_eq!(
            Some(Member::down(Id("1"))),
            members.remove_if_down(&Id("1")),
            "must return the removed member"
        );
    }

    #[test]
    fn next_yields_none_with_no_active_members() {
        let mut members = Members::new(Vec::new());
        let mut rng = SmallRng::seed_from_u64(0xF0CA);

        assert_eq!(
            None,
            members.next(&mut rng),
            "next() should yield None when there are no members"
        );

        let _ = members.apply(Member::down(Id("-1")), &mut rng);
        let _ = members.apply(Member::down(Id("-2")), &mut rng);
        let _ = members.apply(Member::down(Id("-3")), &mut rng);

        assert_eq!(
            None,
            members.next(&mut rng),
            "next() should yield None when there are no active members"
        );

        let _ = members.apply(Member::alive(Id("1")), &mut rng);

        for _i in 0..10 {
            assert_eq!(
                Some(Id("1")),
                members.next(&mut rng).map(|m| m.id),
                "next() should yield the same member if its the only active"
            );
        }
    }

    #[test]
    fn choose_active_members_behaviour() {
        let members = Members::new(Vec::from([
            // 5 active members
            Member::alive(Id("1")),
            Member::alive(Id("2")),
            Member::alive(Id("3")),
            Member::suspect(Id("4")),
            Member::suspect(Id("5")),
            // 2 down
            Member::down(Id("6")),
            Member::down(Id("7")),
        ]));

        assert_eq!(7, members.len());
        assert_eq!(5, members.num_active());

        let mut out = Vec::new();
        let mut rng = SmallRng::seed_from_u64(0xF0CA);

        out.clear();
        members.choose_active_members(0, &mut out, &mut rng, |_| true);
        assert_eq!(0, out.len(), "Can pointlessly choose 0 members");

        out.clear();
        members.choose_active_members(10, &mut out, &mut rng, |_| false);
        assert_eq!(0, out.len(), "Filtering works");

        out.clear();
        members.choose_active_members(members.len(), &mut out, &mut rng, |_| true);
        assert_eq!(
            members.num_active(),
            out.len(),
            "Only chooses active members"
        );

        out.clear();
        members.choose_active_members(2, &mut out, &mut rng, |_| true);
        assert_eq!(2, out.len(), "Respects `wanted` even if we have more");

        out.clear();
        members.choose_active_members(usize::MAX, &mut out, &mut rng, |&member_id| {
            member_id.0.parse::<usize>().expect("number") > 4
        });
        assert_eq!(vec![Member::suspect(Id("5"))], out);

        out.clear();
        members.choose_down_members(3, &mut out, &mut rng);
        assert_eq!(2, out.len());
        assert!(out.iter().any(|m| m.id == Id("7")));
        assert!(out.iter().any(|m| m.id == Id("6")));
    }

    #[test]
    fn sets_replaced_id_on_addr_conflict() {
        let id = crate::testing::ID::new(1).rejoinable();
        let mut members = Members::new(Vec::from([
            // 5 active members
            Member::alive(id),
        ]));

        let renewed = id.renew().unwrap();
        let summary = members
            .apply_existing_if(Member::alive(renewed), |_| true)
            .expect("member found");

        assert!(summary.apply_successful);
        assert_eq!(ConflictResult::Replaced(id), summary.conflict);

        let another = renewed.renew().unwrap();
        let summary = members
            .apply_existing_if(Member::alive(another), |_| false)
            .expect("member found");

        assert!(!summary.apply_successful);
        assert_eq!(
            ConflictResult::FailedCondition,
            summary.conflict,
            "must not apply if condition fails"
        );

        // trying to go back to the past leads to
        // conflict resolution failure
        let summary = members
            .apply_existing_if(Member::alive(id), |_| true)
            .expect("member found");

        assert_eq!(ConflictResult::Lost, summary.conflict,);
        assert!(!summary.apply_successful, "must not apply if conflict lost");
    }

    // An identity with a wide address space, renewable (a bump that wins
    // conflicts), for the index and sampling tests.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Wide {
        addr: u32,
        bump: u8,
    }

    impl crate::Identity for Wide {
        type Addr = u32;

        fn renew(&self) -> Option<Self> {
            Some(Wide {
                addr: self.addr,
                bump: self.bump.wrapping_add(1),
            })
        }

        fn addr(&self) -> u32 {
            self.addr
        }

        fn win_addr_conflict(&self, adversary: &Self) -> bool {
            self.bump > adversary.bump
        }
    }

    fn wide(addr: u32) -> Wide {
        Wide { addr, bump: 0 }
    }

    // Every position is indexed once under its member's address, nothing
    // else is, and `num_active` counts the active members.
    fn assert_consistent<T: crate::Identity>(members: &Members<T>) {
        assert_eq!(
            members.index.len(),
            members.inner.len(),
            "one entry per member"
        );
        for (pos, member) in members.inner.iter().enumerate() {
            assert_eq!(
                Some(pos),
                members.position(&member.id().addr()),
                "member at {pos} found where it is"
            );
        }
        assert_eq!(
            members.inner.iter().filter(|m| m.is_active()).count(),
            members.num_active()
        );
    }

    #[test]
    fn index_stays_consistent_under_apply_renew_remove_and_shuffle() {
        let mut members = Members::with_hash_seed(Vec::new(), 7);
        let mut rng = SmallRng::seed_from_u64(0xF0CA);
        let mut known: Vec<Wide> = Vec::new();

        for round in 0..4000u32 {
            match rng.random_range(0..6) {
                // A new member, inserted at a random position
                0 | 1 => {
                    let id = wide(round);
                    let _ = members.apply(Member::alive(id.clone()), &mut rng);
                    known.push(id);
                }
                // A renewed identity replaces the old one at its address
                2 if !known.is_empty() => {
                    let at = rng.random_range(0..known.len());
                    let renewed = known[at].renew().unwrap();
                    let summary = members.apply(Member::alive(renewed.clone()), &mut rng);
                    if let ConflictResult::Replaced(old) = summary.conflict {
                        assert_eq!(old, known[at]);
                    }
                    known[at] = renewed;
                }
                // Down, then removed (the last member moves into its place)
                3 if !known.is_empty() => {
                    let at = rng.random_range(0..known.len());
                    let id = known[at].clone();
                    let _ = members.apply(Member::down(id.clone()), &mut rng);
                    assert_consistent(&members);
                    assert_eq!(Some(Member::down(id.clone())), members.remove_if_down(&id));
                    assert!(!members.is_active(&id));
                    known.swap_remove(at);
                }
                // Probes walk the list and reshuffle it at the end
                _ => {
                    let _ = members.next(&mut rng);
                }
            }
            assert_consistent(&members);
        }

        assert_eq!(known.len(), members.len());
        for id in &known {
            assert!(members.is_active(id), "{id:?} is known and active");
        }
    }

    #[test]
    fn index_is_built_from_initial_members() {
        let members = Members::new((0..100).map(|i| Member::alive(wide(i))).collect());
        assert_consistent(&members);
        assert!(members.is_active(&wide(42)));
        assert!(!members.is_active(&wide(100)));
        assert!(
            !members.is_active(&wide(42).renew().unwrap()),
            "same address, another identity"
        );
    }

    #[test]
    fn sampling_chooses_distinct_members_that_pass_the_picker() {
        let mut members = Members::new(Vec::new());
        let mut rng = SmallRng::seed_from_u64(0xF0CA);
        for i in 0..1000 {
            let member = if i % 10 == 0 {
                Member::down(wide(i))
            } else {
                Member::alive(wide(i))
            };
            let _ = members.apply(member, &mut rng);
        }

        let mut out = Vec::new();
        for _ in 0..200 {
            out.clear();
            members.choose_active_members(20, &mut out, &mut rng, |id| id.addr % 2 == 1);
            assert_eq!(20, out.len());
            let mut addrs: Vec<u32> = out.iter().map(|m| m.id().addr).collect();
            assert!(addrs.iter().all(|a| a % 2 == 1), "only picked members");
            assert!(out.iter().all(|m| m.is_active()), "only active members");
            addrs.sort_unstable();
            addrs.dedup();
            assert_eq!(20, addrs.len(), "no member twice");
        }
    }

    #[test]
    fn sampling_falls_back_to_a_scan_when_candidates_are_rare() {
        let mut members = Members::new(Vec::new());
        let mut rng = SmallRng::seed_from_u64(0xF0CA);
        for i in 0..5000 {
            let _ = members.apply(Member::alive(wide(i)), &mut rng);
        }

        // Active, but the picker accepts only 3 of 5000
        let mut out = Vec::new();
        members.choose_active_members(3, &mut out, &mut rng, |id| id.addr % 2000 == 7);
        let mut addrs: Vec<u32> = out.iter().map(|m| m.id().addr).collect();
        addrs.sort_unstable();
        assert_eq!(vec![7, 2007, 4007], addrs);

        // Down members: 2 of 5000
        let _ = members.apply(Member::down(wide(11)), &mut rng);
        let _ = members.apply(Member::down(wide(4000)), &mut rng);
        out.clear();
        members.choose_down_members(2, &mut out, &mut rng);
        let mut addrs: Vec<u32> = out.iter().map(|m| m.id().addr).collect();
        addrs.sort_unstable();
        assert_eq!(vec![11, 4000], addrs);
    }

    #[test]
    fn sampling_gives_every_member_the_same_chance() {
        let members = Members::new((0..100).map(|i| Member::alive(wide(i))).collect());
        let mut rng = SmallRng::seed_from_u64(0xF0CA);
        let mut times = [0u32; 100];
        let mut out = Vec::new();
        let rounds = 50_000;
        for _ in 0..rounds {
            out.clear();
            // 3 of 100: the sampling path, not the scan
            members.choose_active_members(3, &mut out, &mut rng, |_| true);
            for m in &out {
                times[m.id().addr as usize] += 1;
            }
        }
        let expected = rounds * 3 / 100;
        for (addr, &n) in times.iter().enumerate() {
            assert!(
                n > expected * 9 / 10 && n < expected * 11 / 10,
                "member {addr} chosen {n} times, expected about {expected}"
            );
        }
    }
}
