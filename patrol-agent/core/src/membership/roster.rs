//! [`Roster`]: the certified nodes this agent has seen, which a sweep
//! expects (with `[trust]`), whatever SWIM says of them right now.
//!
//! An entry is made or refreshed only from a proven identity
//! (`membership::proof`): name, certificate serial, last address, tags,
//! first and last seen (wall clock, ms). "Seen" means alive evidence: a
//! datagram whose sender is the node, an `alive` update about it, or a
//! proven answer. An entry leaves the roster only by
//! - the node's own signed leave notice ([`GoneReason::Left`]);
//! - revocation of its certificate ([`GoneReason::Revoked`]);
//! - an operator's signed `patrol roster forget` ([`GoneReason::Forgotten`]);
//! - the age limit, `roster_expiry` after it was last seen
//!   ([`GoneReason::Expired`]).
//!
//! Gone entries are kept for another `roster_expiry` so that sweeps and
//! `patrol roster` can say when each node was last seen; a node that comes
//! back with a proven identity returns to the roster.
//!
//! The roster is bounded (`capacity` entries and as many gone ones: a full
//! roster takes no new name, and says so in a counter) and stored by the
//! agent as one JSON file ([`Roster::to_text`], [`Roster::from_text`]): a
//! format tag, the cluster and node it belongs to, then the entries. Loading
//! checks the tag, the cluster and node, every field's bounds and the
//! count; any problem refuses the whole file with the reason.

use core::net::SocketAddr;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The format tag of a roster file.
pub const ROSTER_FORMAT: &str = "patrol-roster-v1";

/// Longest node name the roster holds (a DNS name's limit).
const MAX_NAME: usize = 253;

/// One certified node the agent has seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEntry {
    pub name: String,
    /// Serial of the certificate its latest identity was proven by.
    pub serial: u64,
    pub addr: SocketAddr,
    /// The bump of its latest proven identity (its start time, ms).
    pub bump: u64,
    /// Interned as an identity's are; in the file, a map.
    pub tags: crate::tags::Tags,
    pub first_seen_unix_ms: u64,
    pub last_seen_unix_ms: u64,
}

/// A roster entry as the roster holds it: everything but the name, which
/// is the map's key (one allocation a name; at 100,000 members an entry
/// with its name twice cost about 240 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    serial: u64,
    addr: SocketAddr,
    bump: u64,
    tags: crate::tags::Tags,
    first_seen_unix_ms: u64,
    last_seen_unix_ms: u64,
}

impl Held {
    fn of(e: RosterEntry) -> (Box<str>, Held) {
        let held = Held {
            serial: e.serial,
            addr: e.addr,
            bump: e.bump,
            tags: e.tags,
            first_seen_unix_ms: e.first_seen_unix_ms,
            last_seen_unix_ms: e.last_seen_unix_ms,
        };
        (e.name.into_boxed_str(), held)
    }

    fn entry(&self, name: &str) -> RosterEntry {
        EntryRef::new(name, self).to_entry()
    }
}

/// A roster entry, borrowed from the roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub name: &'a str,
    pub serial: u64,
    pub addr: SocketAddr,
    pub bump: u64,
    pub tags: &'a crate::tags::Tags,
    pub first_seen_unix_ms: u64,
    pub last_seen_unix_ms: u64,
}

impl<'a> EntryRef<'a> {
    fn new(name: &'a str, h: &'a Held) -> EntryRef<'a> {
        EntryRef {
            name,
            serial: h.serial,
            addr: h.addr,
            bump: h.bump,
            tags: &h.tags,
            first_seen_unix_ms: h.first_seen_unix_ms,
            last_seen_unix_ms: h.last_seen_unix_ms,
        }
    }

    /// The entry, owned (as a file and `patrol roster` list it).
    pub fn to_entry(self) -> RosterEntry {
        RosterEntry {
            name: self.name.to_string(),
            serial: self.serial,
            addr: self.addr,
            bump: self.bump,
            tags: self.tags.clone(),
            first_seen_unix_ms: self.first_seen_unix_ms,
            last_seen_unix_ms: self.last_seen_unix_ms,
        }
    }
}

/// How a proven identity was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// The node itself spoke (a datagram whose sender it is), or answered
    /// a sweep with its proof.
    Direct,
    /// Another member said it is alive.
    Hearsay,
    /// Another member mentioned it as suspect or down: proves who is at its
    /// address, not that it lives.
    Mentioned,
}

/// Why a node left the roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GoneReason {
    Left,
    Revoked,
    Forgotten,
    Expired,
}

impl GoneReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GoneReason::Left => "left",
            GoneReason::Revoked => "revoked",
            GoneReason::Forgotten => "forgotten",
            GoneReason::Expired => "expired",
        }
    }
}

/// A node that left the roster, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoneEntry {
    pub entry: RosterEntry,
    pub reason: GoneReason,
    pub gone_unix_ms: u64,
}

/// `patrol roster`: the roster as one agent holds it, with what SWIM says
/// of each node now and the intruders it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterView {
    /// The agent that answered.
    pub node: String,
    pub members: Vec<RosterMember>,
    pub gone: Vec<GoneEntry>,
    pub intruders: Vec<super::gate::Intruder>,
    pub expiry_ms: u64,
    pub capacity: u64,
    /// New names refused because the roster was full.
    pub refused_full: u64,
}

/// One roster entry and SWIM's view of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterMember {
    pub entry: RosterEntry,
    /// `alive`, `suspect`, `down`, `left`, or `absent` (not in SWIM's
    /// member list).
    pub swim: String,
}

/// Why a roster file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosterError {
    #[error("not a roster file: {0}")]
    Malformed(String),
    #[error("format `{0}`, expected `{ROSTER_FORMAT}`")]
    Format(String),
    #[error("the roster belongs to node `{node}` of cluster `{cluster}`, not to this node")]
    Foreign { cluster: String, node: String },
    #[error("{0} entries, over the {1} a roster holds")]
    TooMany(usize, usize),
    #[error("entry `{name}`: {problem}")]
    Entry { name: String, problem: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct RosterFile {
    format: String,
    cluster: String,
    node: String,
    saved_unix_ms: u64,
    members: Vec<RosterEntry>,
    gone: Vec<GoneEntry>,
}

/// The roster and its bounds.
#[derive(Debug, Clone)]
pub struct Roster {
    entries: BTreeMap<Box<str>, Held>,
    gone: BTreeMap<String, GoneEntry>,
    capacity: usize,
    expiry: Duration,
    dirty: bool,
    /// New names refused because the roster was full.
    pub refused_full: u64,
}

impl Roster {
    pub fn new(capacity: usize, expiry: Duration) -> Roster {
        Roster {
            entries: BTreeMap::new(),
            gone: BTreeMap::new(),
            capacity: capacity.max(1),
            expiry,
            dirty: false,
            refused_full: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn expiry(&self) -> Duration {
        self.expiry
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn entries(&self) -> impl Iterator<Item = EntryRef<'_>> {
        self.entries.iter().map(|(name, h)| EntryRef::new(name, h))
    }

    pub fn gone(&self) -> impl Iterator<Item = &GoneEntry> {
        self.gone.values()
    }

    pub fn get(&self, name: &str) -> Option<EntryRef<'_>> {
        self.entries
            .get_key_value(name)
            .map(|(name, h)| EntryRef::new(name, h))
    }

    /// Changed since the last [`Roster::saved`].
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    pub fn saved(&mut self) {
        self.dirty = false;
    }

    /// A proven identity of `name` was seen (see [`Sighting`]). Alive
    /// evidence (direct or hearsay) refreshes last seen and enrols a new
    /// name; a node that left the roster comes back only when it speaks
    /// itself, so gossip that still mentions it cannot undo a leave, a
    /// forget or a revocation.
    pub fn seen(&mut self, id: &crate::identity::NodeId, serial: u64, how: Sighting, unix_ms: u64) {
        let (name, addr, tags) = (id.name.as_str(), id.addr, &id.tags);
        let alive = how != Sighting::Mentioned;
        if let Some(e) = self.entries.get_mut(name) {
            if id.bump < e.bump {
                return;
            }
            if e.serial != serial || e.addr != addr || &e.tags != tags || e.bump != id.bump {
                e.serial = serial;
                e.addr = addr;
                e.bump = id.bump;
                e.tags = tags.clone();
                self.dirty = true;
            }
            if alive && unix_ms > e.last_seen_unix_ms {
                // Saved at most once a minute for last-seen alone.
                if unix_ms / 60_000 != e.last_seen_unix_ms / 60_000 {
                    self.dirty = true;
                }
                e.last_seen_unix_ms = unix_ms;
            }
            return;
        }
        if !alive || name.is_empty() || name.len() > MAX_NAME {
            return;
        }
        if let Some(g) = self.gone.get(name) {
            // Gossip that still mentions a node cannot undo its leave, a
            // forget or a revocation; the node itself can, and after a
            // leave only with a new identity (it started again).
            let left = g.reason == GoneReason::Left && id.bump <= g.entry.bump;
            if how == Sighting::Hearsay || left {
                return;
            }
        }
        if self.entries.len() >= self.capacity {
            self.refused_full += 1;
            return;
        }
        self.gone.remove(name);
        self.entries.insert(
            name.into(),
            Held {
                serial,
                addr,
                bump: id.bump,
                tags: tags.clone(),
                first_seen_unix_ms: unix_ms,
                last_seen_unix_ms: unix_ms,
            },
        );
        self.dirty = true;
    }

    /// `name` leaves the roster for `reason`. Returns whether it was there.
    pub fn remove(&mut self, name: &str, reason: GoneReason, unix_ms: u64) -> bool {
        let Some(held) = self.entries.remove(name) else {
            return false;
        };
        let entry = held.entry(name);
        if self.gone.len() >= self.capacity {
            let oldest = self
                .gone
                .values()
                .min_by_key(|g| g.gone_unix_ms)
                .map(|g| g.entry.name.clone());
            if let Some(oldest) = oldest {
                self.gone.remove(&oldest);
            }
        }
        self.gone.insert(
            name.to_string(),
            GoneEntry {
                entry,
                reason,
                gone_unix_ms: unix_ms,
            },
        );
        self.dirty = true;
        true
    }

    /// Entries whose certificate serial `revoked` says is revoked leave.
    pub fn revoke(&mut self, revoked: impl Fn(u64) -> bool, unix_ms: u64) -> Vec<String> {
        let names: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, h)| revoked(h.serial))
            .map(|(name, _)| name.to_string())
            .collect();
        for n in &names {
            self.remove(n, GoneReason::Revoked, unix_ms);
        }
        names
    }

    /// Entries not seen for `expiry` leave as expired; gone entries older
    /// than another `expiry` are dropped. Returns the names that expired.
    pub fn expire(&mut self, unix_ms: u64) -> Vec<String> {
        let limit = self.expiry.as_millis() as u64;
        let names: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, h)| unix_ms.saturating_sub(h.last_seen_unix_ms) > limit)
            .map(|(name, _)| name.to_string())
            .collect();
        for n in &names {
            self.remove(n, GoneReason::Expired, unix_ms);
        }
        let before = self.gone.len();
        self.gone
            .retain(|_, g| unix_ms.saturating_sub(g.gone_unix_ms) <= limit);
        if self.gone.len() != before {
            self.dirty = true;
        }
        names
    }

    /// The roster as the text of its file.
    pub fn to_text(&self, cluster: &str, node: &str, unix_ms: u64) -> String {
        let file = RosterFile {
            format: ROSTER_FORMAT.to_string(),
            cluster: cluster.to_string(),
            node: node.to_string(),
            saved_unix_ms: unix_ms,
            members: self.entries().map(EntryRef::to_entry).collect(),
            gone: self.gone.values().cloned().collect(),
        };
        // Plain data: serializing cannot fail.
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Load a roster file for `node` of `cluster`, checked whole.
    pub fn from_text(
        text: &str,
        cluster: &str,
        node: &str,
        capacity: usize,
        expiry: Duration,
    ) -> Result<Roster, RosterError> {
        let file: RosterFile =
            serde_json::from_str(text).map_err(|e| RosterError::Malformed(e.to_string()))?;
        if file.format != ROSTER_FORMAT {
            return Err(RosterError::Format(file.format));
        }
        if file.cluster != cluster || file.node != node {
            return Err(RosterError::Foreign {
                cluster: file.cluster,
                node: file.node,
            });
        }
        for n in [file.members.len(), file.gone.len()] {
            if n > capacity {
                return Err(RosterError::TooMany(n, capacity));
            }
        }
        let mut roster = Roster::new(capacity, expiry);
        for e in file.members {
            check_entry(&e)?;
            let (name, held) = Held::of(e);
            if roster.entries.contains_key(&name) {
                return Err(entry_error(&name, "listed twice"));
            }
            roster.entries.insert(name, held);
        }
        for g in file.gone {
            check_entry(&g.entry)?;
            if roster.entries.contains_key(g.entry.name.as_str()) {
                return Err(entry_error(&g.entry.name, "both a member and gone"));
            }
            roster.gone.insert(g.entry.name.clone(), g);
        }
        Ok(roster)
    }
}

fn entry_error(name: &str, problem: &str) -> RosterError {
    RosterError::Entry {
        name: name.chars().take(MAX_NAME).collect(),
        problem: problem.to_string(),
    }
}

fn check_entry(e: &RosterEntry) -> Result<(), RosterError> {
    if e.name.is_empty() || e.name.len() > MAX_NAME {
        return Err(entry_error(&e.name, "a name must be 1 to 253 bytes"));
    }
    if e.last_seen_unix_ms < e.first_seen_unix_ms {
        return Err(entry_error(&e.name, "last seen before first seen"));
    }
    let tag_bytes: usize = e.tags.iter().map(|(k, v)| k.len() + v.len()).sum();
    if tag_bytes > crate::identity::MAX_IDENTITY_BYTES {
        return Err(entry_error(&e.name, "tags larger than an identity holds"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600 * 1000;

    fn nid(
        name: &str,
        addr: SocketAddr,
        tags: &BTreeMap<String, String>,
    ) -> crate::identity::NodeId {
        crate::identity::NodeId::new(name, addr, 1, tags.clone())
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn nodes_enter_when_seen_alive_and_leave_only_for_a_reason() {
        let mut r = Roster::new(10, Duration::from_millis(7 * DAY));
        let tags = BTreeMap::new();
        // A down update alone does not enrol anybody.
        r.seen(&nid("a", addr(1), &tags), 1, Sighting::Mentioned, 1000);
        assert!(r.is_empty());
        r.seen(&nid("a", addr(1), &tags), 1, Sighting::Direct, 1000);
        r.seen(&nid("b", addr(2), &tags), 2, Sighting::Direct, 1000);
        r.seen(&nid("a", addr(3), &tags), 1, Sighting::Mentioned, 5000);
        let a = r.get("a").unwrap();
        assert_eq!(
            (a.addr, a.first_seen_unix_ms, a.last_seen_unix_ms),
            (addr(3), 1000, 1000)
        );
        assert!(r.remove("b", GoneReason::Forgotten, 6000));
        assert_eq!(r.gone().next().unwrap().reason, GoneReason::Forgotten);
        assert_eq!(r.expire(1000 + 7 * DAY + 1), vec!["a".to_string()]);
        assert!(r.is_empty());
        // b is forgotten for good after another expiry; a is still listed gone.
        r.expire(6000 + 7 * DAY + 1);
        let gone: Vec<&str> = r.gone().map(|g| g.entry.name.as_str()).collect();
        assert_eq!(gone, vec!["a"]);
    }

    #[test]
    fn a_node_that_left_comes_back_only_when_it_speaks_itself() {
        let mut r = Roster::new(10, Duration::from_millis(DAY));
        let tags = BTreeMap::new();
        r.seen(&nid("a", addr(1), &tags), 1, Sighting::Direct, 1000);
        r.remove("a", GoneReason::Forgotten, 2000);
        // Gossip that still says it is alive does not undo the forget.
        r.seen(&nid("a", addr(1), &tags), 1, Sighting::Hearsay, 3000);
        assert!(r.get("a").is_none());
        r.seen(&nid("a", addr(1), &tags), 1, Sighting::Direct, 4000);
        assert_eq!(r.get("a").unwrap().first_seen_unix_ms, 4000);
        assert_eq!(r.gone().count(), 0);
    }

    #[test]
    fn a_node_that_left_comes_back_only_with_a_new_identity() {
        let mut r = Roster::new(10, Duration::from_millis(DAY));
        let tags = BTreeMap::new();
        let old = nid("a", addr(1), &tags);
        r.seen(&old, 1, Sighting::Direct, 1000);
        r.remove("a", GoneReason::Left, 2000);
        // Its last packets (foca's own goodbye) still name the old identity.
        r.seen(&old, 1, Sighting::Direct, 2001);
        assert!(r.get("a").is_none());
        let mut restarted = old.clone();
        restarted.bump = 5000;
        r.seen(&restarted, 1, Sighting::Direct, 5001);
        assert_eq!(r.get("a").unwrap().bump, 5000);
    }

    #[test]
    fn a_full_roster_takes_no_new_name_and_counts_it() {
        let mut r = Roster::new(2, Duration::from_millis(DAY));
        let tags = BTreeMap::new();
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            r.seen(
                &nid(n, addr(i as u16), &tags),
                i as u64,
                Sighting::Direct,
                1,
            );
        }
        assert_eq!(r.len(), 2);
        assert_eq!(r.refused_full, 1);
    }

    #[test]
    fn the_file_round_trips_and_a_foreign_or_broken_one_is_refused() {
        let mut r = Roster::new(10, Duration::from_millis(DAY));
        let mut tags = BTreeMap::new();
        tags.insert("role".to_string(), "web".to_string());
        r.seen(&nid("a", addr(1), &tags), 7, Sighting::Direct, 1000);
        r.seen(&nid("b", addr(2), &tags), 8, Sighting::Direct, 1000);
        r.remove("b", GoneReason::Left, 2000);
        let text = r.to_text("c1", "me", 3000);
        let back = Roster::from_text(&text, "c1", "me", 10, Duration::from_millis(DAY)).unwrap();
        assert_eq!(back.get("a"), r.get("a"));
        assert_eq!(back.gone().count(), 1);
        assert!(matches!(
            Roster::from_text(&text, "c2", "me", 10, Duration::from_millis(DAY)),
            Err(RosterError::Foreign { .. })
        ));
        assert!(matches!(
            Roster::from_text(&text, "c1", "me", 0, Duration::from_millis(DAY)),
            Err(RosterError::TooMany(1, 0))
        ));
        let broken = text.replace("\"last_seen_unix_ms\": 1000", "\"last_seen_unix_ms\": 10");
        assert!(matches!(
            Roster::from_text(&broken, "c1", "me", 10, Duration::from_millis(DAY)),
            Err(RosterError::Entry { .. })
        ));
        assert!(matches!(
            Roster::from_text("{", "c1", "me", 10, Duration::from_millis(DAY)),
            Err(RosterError::Malformed(_))
        ));
    }
}
