//! [`Gate`]: what of a foca packet reaches foca, with `[trust]`.
//!
//! Every foca packet a certified node receives passes here first. The gate
//! decodes the header and the member updates with the same codec foca
//! uses, and
//! - drops the whole packet when its sender's identity is not proven
//!   (asking the sender for a certificate it does not know yet);
//! - removes each update whose identity is not proven, is stale, or waits
//!   for a certificate (kept in a bounded list and applied once the
//!   certificate arrives);
//! - sets every incarnation to 0. Certified nodes never refute with
//!   incarnations, which nobody signs: a suspicion or a down declaration
//!   of this node's own identity becomes `down`, so foca renews the
//!   identity at once (a new bump, signed by the identity's signer) and the
//!   renewed identity wins over the suspected one everywhere. A forged
//!   declaration can make a node renew, never hide it; a forged `alive`
//!   at a high incarnation no longer outranks a suspicion;
//! - records every proven sighting in the [`Roster`], and every refused
//!   identity that claims a name as an intruder (name, address).
//!
//! Every foca packet between certified nodes also ends in a 16-byte tag,
//! an HMAC under the pair key of its sender and its receiver (X25519 of
//! their certified keys, derived once and cached in the sweep's
//! [`PeerKeys`], which proves answers with the same key): a proven identity is
//! public, and anyone holding the cluster key could name it as a packet's
//! sender; the tag proves the node itself sent it. A packet whose tag does
//! not check is dropped and its source recorded as an intruder.
//!
//! The packet foca gets is re-encoded from what is left, custom broadcasts
//! (sweep requests) untouched. Certificates travel on their own channel
//! ([`CertMessage`]): a node asks the sender of a packet for the
//! certificates it lacks, and sends its own with the question.

use core::net::SocketAddr;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use bytes::{Buf, BufMut};
use foca::{Codec, Member, Message, State};
use serde::{Deserialize, Serialize};

use super::proof::{Check, MemberBook};
use super::roster::{Roster, Sighting};
use crate::clock::Now;
use crate::codec::BincodeCodec;
use crate::identity::NodeId;
use crate::trust::{CertDigest, PairKey, PeerKeys, SigningKey, PACKET_TAG_LEN};

pub use super::wire::{CertMessage, MAX_HAVE, MAX_WANT};

/// Most updates held while their certificate is asked for.
const MAX_PENDING: usize = 1024;
/// Most packets held while their sender's certificate is asked for.
const MAX_PENDING_PACKETS: usize = 256;
/// A digest is asked for again after this long.
const ASK_AGAIN: Duration = Duration::from_secs(1);
/// Most address-certificate pairs kept.
const MAX_ADDR_CERTS: usize = 4096;
/// Most intruders remembered.
const MAX_INTRUDERS: usize = 256;
/// An intruder is reported for this long after it was last seen.
pub const INTRUDER_MEMORY: Duration = Duration::from_secs(3600);
/// An agent that claimed a name without that name's proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intruder {
    pub name: String,
    pub addr: SocketAddr,
    /// Why its identity was refused.
    pub reason: String,
    pub packets: u64,
    pub first_seen_unix_ms: u64,
    pub last_seen_unix_ms: u64,
}

/// What the gate counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateCounters {
    /// Packets dropped whole: their sender's identity is not proven.
    pub packets_unproven: u64,
    /// Packets held back until the sender's certificate arrives.
    pub packets_unknown_sender: u64,
    /// Member updates removed: their identity is not proven.
    pub updates_unproven: u64,
    /// Member updates removed: an older identity of a proven name.
    pub updates_stale: u64,
    /// Incarnations other than 0 set back to 0.
    pub incarnations_cleared: u64,
    /// Suspicions or down declarations of this node's identity (each one
    /// renews it).
    pub declared_against_self: u64,
    /// Certificates learned and refused through the exchange.
    pub certs_learned: u64,
    pub certs_refused: u64,
    /// Leave notices refused (no valid signature by the node).
    pub leaves_refused: u64,
    /// Packets dropped whole: their tag is not their sender's (a proven
    /// identity named by someone else), or missing.
    #[serde(default)]
    pub packets_forged: u64,
    /// Packets not sent: no certificate of the destination to tag them
    /// with yet (a seed not introduced yet).
    #[serde(default)]
    pub packets_untagged: u64,
    /// Sweep requests refused because they name a coordinator at another
    /// address than its latest proven one (a captured request re-aimed).
    #[serde(default)]
    pub requests_misaddressed: u64,
}

/// What became of one packet.
#[derive(Debug, Default)]
pub struct Filtered {
    /// The packet for foca (None: dropped).
    pub packet: Option<Vec<u8>>,
    /// Certificate digests to ask the sender for.
    pub want: Vec<CertDigest>,
}

/// The gate: the book of proofs, the roster, pending updates, intruders.
#[derive(Debug)]
pub struct Gate {
    pub book: MemberBook,
    pub roster: Roster,
    pub counters: GateCounters,
    pending: VecDeque<(CertDigest, SocketAddr, Member<NodeId>)>,
    pending_packets: VecDeque<(CertDigest, SocketAddr, Vec<u8>)>,
    asked: HashMap<CertDigest, Duration>,
    intruders: BTreeMap<(String, SocketAddr), Intruder>,
    /// This node's key, for pair keys when no cache is given.
    mine: SigningKey,
    /// The certificate each address introduced itself with (for seeds,
    /// known by address only).
    addr_certs: HashMap<SocketAddr, CertDigest>,
}

impl Gate {
    pub fn new(book: MemberBook, roster: Roster, mine: SigningKey) -> Gate {
        Gate {
            book,
            roster,
            counters: GateCounters::default(),
            pending: VecDeque::new(),
            pending_packets: VecDeque::new(),
            asked: HashMap::new(),
            intruders: BTreeMap::new(),
            mine,
            addr_certs: HashMap::new(),
        }
    }

    /// The pair key with the holder of certificate `digest`: from `keys`,
    /// the sweep's cache (derived there once, when the node learned the
    /// certificate, or now), so that each key is held once for both the
    /// membership packets' tags and the answers' proofs. Without a cache,
    /// derived each time.
    fn pair_key(&self, keys: Option<&mut PeerKeys>, digest: &CertDigest) -> Option<PairKey> {
        let cert = self.book.held(digest)?;
        match keys {
            Some(keys) => keys.adopt(*digest, cert.clone()).ok(),
            None => PairKey::derive(&self.mine, &cert.verifying_key().ok()?).ok(),
        }
    }

    /// `addr` introduced itself with certificate `digest`.
    pub fn introduced(&mut self, addr: SocketAddr, digest: CertDigest) {
        if self.addr_certs.len() >= MAX_ADDR_CERTS && !self.addr_certs.contains_key(&addr) {
            self.addr_certs.clear();
        }
        self.addr_certs.insert(addr, digest);
    }

    /// The tag of foca packet `packet` for destination `to`: by its
    /// proof's certificate, its name's latest proven one, or the one its
    /// address introduced itself with. `Err(Some(digest))`: the
    /// certificate is named but not held (evicted, or vouched for without
    /// it): ask `to` for it; `Err(None)`: nothing known of `to` yet.
    pub fn tag_for(
        &mut self,
        now: Now,
        to: &NodeId,
        packet: &[u8],
        keys: Option<&mut PeerKeys>,
    ) -> Result<[u8; PACKET_TAG_LEN], Option<CertDigest>> {
        let named = to.proof.as_ref().map(|p| p.cert);
        let digest = named
            .filter(|d| self.book.has_cert(d))
            .or_else(|| {
                self.book
                    .cert_of(&to.name)
                    .filter(|d| self.book.has_cert(d))
            })
            .or_else(|| self.addr_certs.get(&to.addr).copied());
        match digest.and_then(|d| self.pair_key(keys, &d)) {
            Some(key) => Ok(key.packet_tag(packet)),
            None => {
                self.counters.packets_untagged += 1;
                let missing = named.or_else(|| self.book.cert_of(&to.name));
                let mut want = Vec::new();
                if let Some(d) = missing {
                    self.ask(now, d, &mut want);
                }
                Err(want.first().copied())
            }
        }
    }

    /// Intruders seen within [`INTRUDER_MEMORY`].
    pub fn intruders(&self, unix_ms: u64) -> Vec<Intruder> {
        let memory = INTRUDER_MEMORY.as_millis() as u64;
        self.intruders
            .values()
            .filter(|i| unix_ms.saturating_sub(i.last_seen_unix_ms) <= memory)
            .cloned()
            .collect()
    }

    /// Packets held for their sender's certificate `digest`, now that it
    /// arrived: (sender address, packet), to filter again.
    pub fn take_pending_packets(&mut self, digest: &CertDigest) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        self.pending_packets.retain(|(d, from, p)| {
            if d == digest {
                out.push((*from, p.clone()));
                false
            } else {
                true
            }
        });
        out
    }

    /// Updates held for `digest`, now that its certificate arrived.
    pub fn take_pending(&mut self, digest: &CertDigest) -> Vec<(SocketAddr, Member<NodeId>)> {
        let mut out = Vec::new();
        self.pending.retain(|(d, from, m)| {
            if d == digest {
                out.push((*from, m.clone()));
                false
            } else {
                true
            }
        });
        out
    }

    /// Filter one foca packet `body` from `from`, for node `me`.
    pub fn filter(
        &mut self,
        now: Now,
        from: SocketAddr,
        me: &NodeId,
        body: &[u8],
        keys: Option<&mut PeerKeys>,
    ) -> Filtered {
        let mut out = Filtered::default();
        let mut codec = BincodeCodec;
        let mut buf = body;
        let Ok(mut header) = codec.decode_header(&mut buf) else {
            // foca refuses it again and it is counted as malformed.
            out.packet = Some(body.to_vec());
            return out;
        };
        let header_len = body.len() - buf.len();
        // The tag ends the packet (a packet too short for one has none).
        let split = body.len().saturating_sub(PACKET_TAG_LEN).max(header_len);
        let (packet, tag) = body.split_at(split);
        let mut buf = &packet[header_len..];
        if header.src.name == me.name {
            // Our own identity (a replay, or an old incarnation): foca
            // refuses data from ourselves; never a roster entry.
            if header.src.addr == me.addr {
                out.packet = Some(packet.to_vec());
            } else {
                self.counters.packets_unproven += 1;
            }
            return out;
        }
        match self.book.check(&header.src, now.unix_ms, now.mono) {
            Check::Proven { serial, .. } => {
                // Proven identities are public: the tag says the node
                // itself sent this.
                let digest = header.src.proof.as_ref().map(|p| p.cert);
                let key = digest.and_then(|d| self.pair_key(keys, &d));
                if !key.is_some_and(|k| k.check_packet_tag(packet, tag)) {
                    self.counters.packets_forged += 1;
                    self.intruder(
                        &header.src.name,
                        from,
                        "a packet not sealed by the node it names",
                        now.unix_ms,
                    );
                    return out;
                }
                if header.src.addr == from {
                    self.book.heard_from(&header.src, now.mono);
                }
                self.roster
                    .seen(&header.src, serial, Sighting::Direct, now.unix_ms);
            }
            Check::UnknownCert(d) => {
                self.counters.packets_unknown_sender += 1;
                if self.pending_packets.len() >= MAX_PENDING_PACKETS {
                    self.pending_packets.pop_front();
                }
                self.pending_packets.push_back((d, from, body.to_vec()));
                self.ask(now, d, &mut out.want);
                return out;
            }
            Check::Stale => {
                self.counters.packets_unproven += 1;
                return out;
            }
            Check::Refused(r) => {
                self.counters.packets_unproven += 1;
                self.intruder(&header.src.name, from, r.as_str(), now.unix_ms);
                return out;
            }
        }
        if header.src_incarnation != 0 {
            self.counters.incarnations_cleared += 1;
            header.src_incarnation = 0;
        }
        let mut packet = Vec::with_capacity(body.len());
        if codec.encode_header(&header, &mut packet).is_err() {
            return out;
        }
        let has_updates = buf.remaining() >= 2 && header.message != Message::Broadcast;
        if has_updates {
            let count = buf.get_u16();
            let mut kept = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                let Ok(member) = codec.decode_member(&mut buf) else {
                    out.packet = Some(packet.to_vec());
                    return out;
                };
                if let Some(m) = self.update(now, from, me, member, &mut out.want) {
                    kept.push(m);
                }
            }
            packet.put_u16(kept.len() as u16);
            for m in &kept {
                if codec.encode_member(m, &mut packet).is_err() {
                    return out;
                }
            }
        }
        packet.extend_from_slice(buf);
        out.packet = Some(packet);
        out
    }

    /// One member update: kept (as foca should see it) or removed.
    fn update(
        &mut self,
        now: Now,
        from: SocketAddr,
        me: &NodeId,
        member: Member<NodeId>,
        want: &mut Vec<CertDigest>,
    ) -> Option<Member<NodeId>> {
        let state = member.state();
        let incarnation = member.incarnation();
        let id = member.id().clone();
        if incarnation != 0 {
            self.counters.incarnations_cleared += 1;
        }
        if &id == me {
            if state != State::Alive {
                // Nobody refutes with incarnations here: renew instead.
                self.counters.declared_against_self += 1;
                return Some(Member::new(id, 0, State::Down));
            }
            return Some(Member::new(id, 0, state));
        }
        match self.book.check(&id, now.unix_ms, now.mono) {
            Check::Proven { serial, .. } => {
                if id.name != me.name {
                    let seen = if state == State::Alive {
                        Sighting::Hearsay
                    } else {
                        Sighting::Mentioned
                    };
                    self.roster.seen(&id, serial, seen, now.unix_ms);
                }
                Some(Member::new(id, 0, state))
            }
            Check::UnknownCert(d) => {
                if self.pending.len() >= MAX_PENDING {
                    self.pending.pop_front();
                }
                self.pending.push_back((d, from, Member::new(id, 0, state)));
                self.ask(now, d, want);
                None
            }
            Check::Stale => {
                self.counters.updates_stale += 1;
                None
            }
            Check::Refused(r) => {
                // Listed at the address it came from (the claimed address
                // may be a victim's).
                self.counters.updates_unproven += 1;
                let reason = format!("{} (an update claiming {})", r.as_str(), id.addr);
                self.intruder(&id.name, from, &reason, now.unix_ms);
                None
            }
        }
    }

    /// An update held for its certificate, checked again once it arrived:
    /// whether to apply it.
    pub fn recheck(
        &mut self,
        now: Now,
        from: SocketAddr,
        me: &NodeId,
        member: &Member<NodeId>,
    ) -> bool {
        let mut want = Vec::new();
        self.update(now, from, me, member.clone(), &mut want)
            .is_some()
    }

    fn ask(&mut self, now: Now, digest: CertDigest, want: &mut Vec<CertDigest>) {
        if want.contains(&digest) || want.len() >= MAX_WANT {
            return;
        }
        if let Some(at) = self.asked.get(&digest) {
            if now.mono.saturating_sub(*at) < ASK_AGAIN {
                return;
            }
        }
        if self.asked.len() >= MAX_PENDING {
            self.asked
                .retain(|_, at| now.mono.saturating_sub(*at) < ASK_AGAIN);
        }
        self.asked.insert(digest, now.mono);
        want.push(digest);
    }

    /// Record an identity refused for `reason` that claims `name` at `addr`.
    pub fn intruder(&mut self, name: &str, addr: SocketAddr, reason: &str, unix_ms: u64) {
        let name: String = name.chars().take(253).collect();
        let key = (name.clone(), addr);
        if let Some(i) = self.intruders.get_mut(&key) {
            i.packets += 1;
            i.last_seen_unix_ms = unix_ms;
            return;
        }
        if self.intruders.len() >= MAX_INTRUDERS {
            let oldest = self
                .intruders
                .iter()
                .min_by_key(|(_, i)| i.last_seen_unix_ms)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.intruders.remove(&k);
            }
        }
        self.intruders.insert(
            key,
            Intruder {
                name,
                addr,
                reason: reason.to_string(),
                packets: 1,
                first_seen_unix_ms: unix_ms,
                last_seen_unix_ms: unix_ms,
            },
        );
    }
}
