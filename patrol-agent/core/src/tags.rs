//! `Tags`: a node's tags as its identity holds them, compact and shared.
//!
//! Every member of foca's list holds an identity, and every identity its
//! tags. As a `BTreeMap<String, String>` one tag cost about 550 bytes a
//! member (a B-tree leaf has room for eleven pairs), most of the 768 bytes
//! a member took at 100,000 members (issue 25). A fleet has few distinct
//! tag sets, so [`Tags`] is a sorted, deduplicated slice of pairs behind an
//! `Arc`, and every way of making one goes through a bounded interner:
//! identities with the same tags share one allocation.
//!
//! **The wire bytes are a `BTreeMap<String, String>`'s.** [`Tags`]
//! serializes as serde's map of its pairs in key order (bincode: a length,
//! then each key and value), so encoded identities and the bytes a
//! [`MemberProof`](crate::identity::MemberProof) signs are what they were.
//! Decoding takes what a `BTreeMap` took: pairs in any order, a repeated
//! key keeping its last value. (A proof is checked over the identity as
//! decoded and encoded again, so refusing such input would change which
//! identities are admitted; no agent sends it.)
//!
//! The interner is bounded, being fed from the network: at most
//! [`INTERN_MAX_SETS`] sets, each of at most [`INTERN_MAX_PAIRS`] pairs and
//! [`INTERN_MAX_TEXT`] bytes of text. A set over those bounds, or arriving
//! when the interner is full of sets still in use, gets an allocation of
//! its own: the tags are the same, only not shared ([`interner_stats`]
//! counts them, and the agent's `tag_sets_unshared` counter). Sets no
//! identity holds any more are dropped when the interner is full. The
//! interner is process-wide: it changes where tags live, never what they
//! are, so the simulator's nodes may share it.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One tag: name and value.
type Pair = (Box<str>, Box<str>);

/// Most distinct tag sets the interner holds. A fleet has a handful (one
/// per role and zone, say); a set beyond this many is not shared. At the
/// other bounds each set takes at most about 1.3 KiB, so the interner at
/// most about 1.3 MiB.
pub const INTERN_MAX_SETS: usize = 1024;

/// Most pairs in a set the interner takes (the config allows 16 tags).
pub const INTERN_MAX_PAIRS: usize = 32;

/// Most bytes of names and values in a set the interner takes (the config
/// keeps a node's name and tags within 192).
pub const INTERN_MAX_TEXT: usize = 256;

/// A node's tags: sorted by name, each name once. Cheap to clone (an
/// `Arc`); equal sets made anywhere in the process usually share one
/// allocation.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tags(Arc<[Pair]>);

impl Tags {
    /// Tags from pairs in any order; a repeated name keeps its last value
    /// (as collecting into a `BTreeMap` does).
    fn from_pairs(pairs: Vec<Pair>) -> Tags {
        intern(canonical(pairs))
    }

    /// The value of tag `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(name))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    /// The tags in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tags as the document and the CLI hold them.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Every tag of `filter` is here with its value (a sweep's node
    /// filter; `patrol_model::selector::tags_match` over a map).
    pub fn matches(&self, filter: &BTreeMap<String, String>) -> bool {
        filter.iter().all(|(k, v)| self.get(k) == Some(v.as_str()))
    }
}

/// Sorted by name, the last value of a repeated name kept.
fn canonical(mut pairs: Vec<Pair>) -> Vec<Pair> {
    if pairs.windows(2).all(|w| w[0].0 < w[1].0) {
        return pairs;
    }
    // Stable: among equal names the last one given stays last.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<Pair> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        match out.last_mut() {
            Some(last) if last.0 == k => last.1 = v,
            _ => out.push((k, v)),
        }
    }
    out
}

impl Default for Tags {
    fn default() -> Tags {
        Tags::from_pairs(Vec::new())
    }
}

impl std::fmt::Debug for Tags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Borrow<[Pair]> for Tags {
    fn borrow(&self) -> &[Pair] {
        &self.0
    }
}

impl From<BTreeMap<String, String>> for Tags {
    fn from(map: BTreeMap<String, String>) -> Tags {
        map.into_iter().collect()
    }
}

impl From<&BTreeMap<String, String>> for Tags {
    fn from(map: &BTreeMap<String, String>) -> Tags {
        Tags::from_pairs(
            map.iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
        )
    }
}

impl FromIterator<(String, String)> for Tags {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Tags {
        Tags::from_pairs(
            iter.into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
                .collect(),
        )
    }
}

impl PartialEq<BTreeMap<String, String>> for Tags {
    fn eq(&self, map: &BTreeMap<String, String>) -> bool {
        self.len() == map.len()
            && self
                .iter()
                .zip(map)
                .all(|((k, v), (mk, mv))| k == mk && v == mv)
    }
}

/// A `BTreeMap<String, String>`'s bytes: serde's map, in name order.
impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// What a `BTreeMap<String, String>` takes: any order, the last value of
/// a repeated name.
impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Tags, D::Error> {
        deserializer.deserialize_map(TagsVisitor)
    }
}

struct TagsVisitor;

impl<'de> Visitor<'de> for TagsVisitor {
    type Value = Tags;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a map of tag names to values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tags, A::Error> {
        // The length is the sender's claim: reserve no more than a
        // config's worth.
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(16));
        while let Some((k, v)) = map.next_entry::<String, String>()? {
            pairs.push((k.into_boxed_str(), v.into_boxed_str()));
        }
        Ok(Tags::from_pairs(pairs))
    }
}

/// A bounded set of shared tag sets (see the module doc).
struct Interner {
    sets: BTreeSet<Tags>,
    max_sets: usize,
    /// Misses while full before the next sweep for unused sets: a sweep
    /// visits every set, so after one that freed little the next waits a
    /// quarter of `max_sets` misses.
    until_sweep: usize,
    /// Sets given an allocation of their own.
    fresh: u64,
}

impl Interner {
    const fn new(max_sets: usize) -> Interner {
        Interner {
            sets: BTreeSet::new(),
            max_sets,
            until_sweep: 0,
            fresh: 0,
        }
    }

    /// The shared copy of `pairs` (canonical), or a new one.
    fn intern(&mut self, pairs: Vec<Pair>) -> Tags {
        let text: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        if pairs.len() > INTERN_MAX_PAIRS || text > INTERN_MAX_TEXT {
            self.fresh += 1;
            return Tags(pairs.into());
        }
        if let Some(shared) = self.sets.get(pairs.as_slice()) {
            return shared.clone();
        }
        let tags = Tags(pairs.into());
        if self.sets.len() >= self.max_sets {
            if self.until_sweep == 0 {
                let before = self.sets.len();
                self.sets.retain(|t| Arc::strong_count(&t.0) > 1);
                let quarter = self.max_sets / 4;
                if before - self.sets.len() < quarter {
                    self.until_sweep = quarter;
                }
            } else {
                self.until_sweep -= 1;
            }
        }
        if self.sets.len() < self.max_sets {
            self.sets.insert(tags.clone());
        } else {
            self.fresh += 1;
        }
        tags
    }

    fn stats(&self) -> InternerStats {
        InternerStats {
            sets: self.sets.len(),
            fresh: self.fresh,
        }
    }
}

/// The process's interner.
static INTERNER: Mutex<Interner> = Mutex::new(Interner::new(INTERN_MAX_SETS));

/// What the interner holds and how often it could not share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InternerStats {
    /// Distinct sets held (at most [`INTERN_MAX_SETS`]).
    pub sets: usize,
    /// Sets made with an allocation of their own: over the size bounds, or
    /// while the interner was full.
    pub fresh: u64,
}

/// The process's interner, now.
pub fn interner_stats() -> InternerStats {
    INTERNER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .stats()
}

/// The process's shared copy of `pairs` (canonical), or a new one.
fn intern(pairs: Vec<Pair>) -> Tags {
    // Nothing in `Interner::intern` panics; a poisoned lock still holds a
    // sound set.
    INTERNER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .intern(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn bincode_of<T: Serialize>(value: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
    }

    fn bincode_from<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
        let (value, used) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard()).unwrap();
        assert_eq!(used, bytes.len());
        value
    }

    /// The length and the pairs, as a sender that does not sort writes.
    fn raw_map(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut bytes = bincode_of(&(pairs.len() as u64));
        for (k, v) in pairs {
            bytes.extend(bincode_of(k));
            bytes.extend(bincode_of(v));
        }
        bytes
    }

    #[test]
    fn tags_encode_to_the_bytes_of_a_btreemap() {
        let cases = [
            map(&[]),
            map(&[("role", "worker")]),
            map(&[("zone", "b"), ("role", "db"), ("rack", "r7"), ("", "")]),
            (0..16)
                .map(|k| (format!("k{k:02}"), "v".repeat(6)))
                .collect(),
        ];
        for old in cases {
            let new = Tags::from(&old);
            assert_eq!(bincode_of(&new), bincode_of(&old), "{old:?}");
            assert_eq!(
                serde_json::to_string(&new).unwrap(),
                serde_json::to_string(&old).unwrap()
            );
            assert_eq!(new, old);
            assert_eq!(new.to_map(), old);
            let back: Tags = bincode_from(&bincode_of(&old));
            assert_eq!(back, new);
        }
    }

    #[test]
    fn unsorted_and_repeated_names_decode_as_a_btreemap_decoded_them() {
        for pairs in [
            &[("b", "1"), ("a", "2")][..],
            &[("a", "1"), ("a", "2")],
            &[("c", "1"), ("a", "2"), ("c", "3"), ("b", "4"), ("a", "5")],
        ] {
            let bytes = raw_map(pairs);
            let old: BTreeMap<String, String> = bincode_from(&bytes);
            let new: Tags = bincode_from(&bytes);
            assert_eq!(new, old, "{pairs:?}");
            assert_eq!(bincode_of(&new), bincode_of(&old));
        }
    }

    #[test]
    fn truncated_or_lying_input_fails_as_for_a_btreemap() {
        let good = raw_map(&[("role", "worker"), ("zone", "a")]);
        let mut lying = bincode_of(&u64::MAX);
        lying.extend_from_slice(&good[1..]);
        for bytes in [&good[..good.len() - 1], &good[..1], &lying[..], &[][..]] {
            let config = bincode::config::standard().with_limit::<1024>();
            let old =
                bincode::serde::decode_from_slice::<BTreeMap<String, String>, _>(bytes, config);
            let new = bincode::serde::decode_from_slice::<Tags, _>(bytes, config);
            assert!(old.is_err() && new.is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn lookups_read_the_sorted_pairs() {
        let tags = Tags::from(map(&[("zone", "b"), ("role", "db")]));
        assert_eq!(tags.get("role"), Some("db"));
        assert_eq!(tags.get("zone"), Some("b"));
        assert_eq!(tags.get("rack"), None);
        assert_eq!(tags.len(), 2);
        let names: Vec<&str> = tags.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["role", "zone"]);
        assert!(tags.matches(&map(&[])));
        assert!(tags.matches(&map(&[("role", "db")])));
        assert!(!tags.matches(&map(&[("role", "web")])));
        assert!(!tags.matches(&map(&[("rack", "db")])));
        assert!(Tags::default().is_empty());
    }

    #[test]
    fn equal_sets_share_one_allocation_whichever_way_they_are_made() {
        let old = map(&[("interned-role", "web"), ("interned-zone", "a")]);
        let from_map = Tags::from(&old);
        let decoded: Tags = bincode_from(&raw_map(&[
            ("interned-zone", "a"),
            ("interned-role", "web"),
        ]));
        assert!(Arc::ptr_eq(&from_map.0, &decoded.0));
    }

    #[test]
    fn a_set_too_large_to_intern_is_still_whole() {
        let big: BTreeMap<String, String> = (0..INTERN_MAX_PAIRS + 1)
            .map(|k| (format!("big-{k:03}"), String::new()))
            .collect();
        let a = Tags::from(&big);
        let b = Tags::from(&big);
        assert!(!Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a, b);
        assert_eq!(a, big);
    }

    fn pairs(i: usize) -> Vec<Pair> {
        vec![("n".into(), i.to_string().into())]
    }

    #[test]
    fn a_full_interner_never_grows_past_its_bound_and_shares_again_once_sets_are_unused() {
        let mut interner = Interner::new(8);
        let held: Vec<Tags> = (0..12).map(|i| interner.intern(pairs(i))).collect();
        assert_eq!(interner.stats(), InternerStats { sets: 8, fresh: 4 });
        for (i, tags) in held.iter().enumerate() {
            assert_eq!(tags.get("n"), Some(i.to_string().as_str()));
        }
        assert!(Arc::ptr_eq(&interner.intern(pairs(3)).0, &held[3].0));
        drop(held);
        // Within a quarter of the bound's misses the unused sets go.
        let shared = (100..103).any(|i| {
            let a = interner.intern(pairs(i));
            Arc::ptr_eq(&a.0, &interner.intern(pairs(i)).0)
        });
        assert!(shared);
        assert!(interner.stats().sets <= 8);
    }

    #[test]
    fn a_set_over_the_text_bound_is_not_interned() {
        let mut interner = Interner::new(8);
        let long = vec![("k".into(), "v".repeat(INTERN_MAX_TEXT).into())];
        let a = interner.intern(long.clone());
        let b = interner.intern(long);
        assert!(!Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a, b);
        assert_eq!(interner.stats(), InternerStats { sets: 0, fresh: 2 });
    }
}
