//! The foca custom-broadcast handler that carries sweep requests through the
//! mesh.
//!
//! foca calls [`RequestGossip::receive_item`] for every request it finds in
//! a packet. A request is passed on only once this node has checked it:
//! the handler hands a new request to the inbox with the address of the
//! member that sent it, and returns no key, so foca does not spread it. The
//! [`Node`](crate::node::Node) gives it to the sweep core, and only when
//! the core vouches for it (unexpired, not issued in the future, and with
//! `[trust]` signed by an operator the bundle accepts for this coordinator)
//! adds it back as a broadcast of its own and pushes it at once (eager
//! push). While it does, the id is in [`GossipShared::vouching`], and the
//! handler returns the key: foca then re-broadcasts it for its usual number
//! of transmissions and drops every later copy. A coordinator's own request
//! is vouched for the same way.
//!
//! So a forged, unsigned, replayed or future-dated request stops at the
//! first node it reaches: no other node hears it from us, audits it, or
//! spends a signature check on it.
//!
//! A request the core did not vouch for is remembered by id and a digest
//! of its bytes, for at most [`REFUSED_FOR_MS`]: its copies are dropped
//! here, while another request under the same id (the real one, after a
//! forged copy raced it here) still reaches the core.
//!
//! Memory is bounded: ids are forgotten once their request expires, and at
//! most [`MAX_REMEMBERED`] are kept (refused ones first, then the earliest
//! to expire, go when it is full).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use foca::{BroadcastHandler, Invalidates};
use sha2::{Digest, Sha256};

use super::wire::{SweepRequest, WireError};
use crate::identity::NodeId;

/// Most sweep ids remembered at once for duplicate suppression.
pub const MAX_REMEMBERED: usize = 4096;

/// How long a request the core did not vouch for is remembered (its
/// copies dropped unread): at most this, and never past its expiry.
pub const REFUSED_FOR_MS: u64 = 10_000;

/// foca broadcast key: the sweep id. Two broadcasts of one sweep are the
/// same broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepKey(pub u64);

impl Invalidates for SweepKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

/// What the handler shares with the [`Node`](crate::node::Node) that owns
/// the foca holding it (foca offers no access to its handler).
#[derive(Debug, Default)]
pub struct GossipShared {
    /// The wall clock in unix milliseconds, as of the node's current call.
    pub unix_ms: AtomicU64,
    /// Request copies received so far, duplicates included.
    pub copies: AtomicU64,
    /// The sweep id the node is adding as a broadcast right now, having
    /// vouched for it: the handler takes it without asking again.
    pub vouching: Mutex<Option<u64>>,
    /// New requests for the node to check, oldest first. A queue both
    /// hold, not a channel: a channel keeps a block of 31 slots (about
    /// 8 KiB) from its first message on, and every node gets a request.
    inbox: Mutex<VecDeque<Inbound>>,
}

impl GossipShared {
    fn inbox(&self) -> std::sync::MutexGuard<'_, VecDeque<Inbound>> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The oldest new request not taken yet. An emptied queue gives its
    /// room back (a request comes once a sweep).
    pub fn take_inbound(&self) -> Option<Inbound> {
        let mut inbox = self.inbox();
        let next = inbox.pop_front();
        if inbox.is_empty() {
            *inbox = VecDeque::new();
        }
        next
    }

    /// Forget the requests not taken yet.
    pub fn clear_inbound(&self) {
        *self.inbox() = VecDeque::new();
    }
}

/// A request for the node to check: the request, and the address of the
/// member whose packet carried it (none for one added locally).
pub type Inbound = (SweepRequest, Option<SocketAddr>);

/// A remembered sweep id.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Unix ms after which it is forgotten.
    until: u64,
    /// The node vouched for it and foca spreads it.
    passed_on: bool,
    /// For one not passed on: which bytes were refused.
    digest: [u8; 16],
}

/// Decodes requests from foca broadcasts, drops duplicates and expired
/// ones, and hands new ones to the node through [`GossipShared`].
pub struct RequestGossip {
    shared: Arc<GossipShared>,
    seen: HashMap<u64, Seen>,
}

impl std::fmt::Debug for RequestGossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestGossip")
            .field("seen", &self.seen.len())
            .finish()
    }
}

fn digest(bytes: &[u8]) -> [u8; 16] {
    let mut d = [0u8; 16];
    d.copy_from_slice(&Sha256::digest(bytes)[..16]);
    d
}

impl RequestGossip {
    /// A handler reading the wall clock and the vouched id from `shared`:
    /// the [`Node`](crate::node::Node) sets them.
    pub fn new(shared: Arc<GossipShared>) -> Self {
        RequestGossip {
            shared,
            seen: HashMap::new(),
        }
    }

    fn remember(&mut self, id: u64, seen: Seen, now: u64) {
        if self.seen.len() >= MAX_REMEMBERED && !self.seen.contains_key(&id) {
            self.seen.retain(|_, s| s.until >= now);
        }
        if self.seen.len() >= MAX_REMEMBERED && !self.seen.contains_key(&id) {
            let oldest = self
                .seen
                .iter()
                .min_by_key(|(_, s)| (s.passed_on, s.until))
                .map(|(&id, _)| id);
            if let Some(oldest) = oldest {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(id, seen);
    }

    fn vouched(&self, id: u64) -> bool {
        let vouching = self
            .shared
            .vouching
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *vouching == Some(id)
    }
}

impl BroadcastHandler<NodeId> for RequestGossip {
    type Key = SweepKey;
    type Error = WireError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&NodeId>,
    ) -> Result<Option<SweepKey>, WireError> {
        let req = SweepRequest::decode(data)?;
        self.shared.copies.fetch_add(1, Ordering::Relaxed);
        let now = self.shared.unix_ms.load(Ordering::Relaxed);
        let expires = req.expires_at_unix_ms();
        if self.vouched(req.id) {
            let seen = Seen {
                until: expires,
                passed_on: true,
                digest: [0; 16],
            };
            self.remember(req.id, seen, now);
            return Ok(Some(SweepKey(req.id)));
        }
        if expires < now {
            return Ok(None);
        }
        let d = digest(data);
        match self.seen.get(&req.id) {
            Some(s) if s.passed_on || (s.digest == d && s.until >= now) => return Ok(None),
            _ => {}
        }
        let seen = Seen {
            until: expires.min(now.saturating_add(REFUSED_FOR_MS)),
            passed_on: false,
            digest: d,
        };
        self.remember(req.id, seen, now);
        self.shared.inbox().push_back((req, sender.map(|s| s.addr)));
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::wire::PeerAddr;
    fn req(id: u64, issued: u64) -> SweepRequest {
        SweepRequest {
            id,
            coordinator: PeerAddr {
                name: "c".into(),
                addr: "127.0.0.1:1".parse().unwrap(),
            },
            selector: Default::default(),
            node_filter: Default::default(),
            issued_at_unix_ms: issued,
            deadline_ms: 1000,
            answer_spread_ms: 0,
            relays: vec![],
            auth: None,
        }
    }

    fn handler(now: u64) -> (RequestGossip, Arc<GossipShared>) {
        let shared = Arc::new(GossipShared::default());
        shared.unix_ms.store(now, Ordering::Relaxed);
        (RequestGossip::new(Arc::clone(&shared)), shared)
    }

    /// The requests handed to the node since the last call.
    fn taken(shared: &GossipShared) -> usize {
        std::iter::from_fn(|| shared.take_inbound()).count()
    }

    fn receive(h: &mut RequestGossip, bytes: &[u8]) -> Option<SweepKey> {
        let from = NodeId::new(
            "m",
            "127.0.0.1:9".parse().unwrap(),
            1,
            crate::tags::Tags::default(),
        );
        h.receive_item(bytes, Some(&from)).unwrap()
    }

    /// The node vouches for `id` and adds it back, as `Node` does.
    fn vouch(h: &mut RequestGossip, bytes: &[u8], id: u64) -> Option<SweepKey> {
        *h.shared.vouching.lock().unwrap() = Some(id);
        let key = h.receive_item(bytes, None).unwrap();
        *h.shared.vouching.lock().unwrap() = None;
        key
    }

    #[test]
    fn a_new_request_goes_to_the_node_with_its_sender_and_is_not_spread_until_vouched_for() {
        let (mut h, rx) = handler(10_000);
        let bytes = req(5, 9_500).encode();
        assert_eq!(receive(&mut h, &bytes), None, "not spread unchecked");
        let (got, from) = rx.take_inbound().unwrap();
        assert_eq!(got.id, 5);
        assert_eq!(from, Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(
            vouch(&mut h, &bytes, 5),
            Some(SweepKey(5)),
            "spread once vouched"
        );
        assert_eq!(taken(&rx), 0, "the vouched copy is not handed back");
        assert_eq!(receive(&mut h, &bytes), None, "later copies are duplicates");
        assert_eq!(taken(&rx), 0);
    }

    #[test]
    fn copies_of_a_refused_request_are_dropped_but_other_bytes_under_its_id_are_checked() {
        let (mut h, rx) = handler(10_000);
        let forged = req(5, 9_500).encode();
        assert_eq!(receive(&mut h, &forged), None);
        assert_eq!(receive(&mut h, &forged), None);
        assert_eq!(taken(&rx), 1, "one check for the forged bytes");
        let mut real = req(5, 9_500);
        real.deadline_ms = 2_000;
        let real = real.encode();
        assert_eq!(receive(&mut h, &real), None);
        assert_eq!(taken(&rx), 1, "the real request still reaches the node");
        assert_eq!(vouch(&mut h, &real, 5), Some(SweepKey(5)));
    }

    #[test]
    fn a_refused_request_is_checked_again_after_a_while() {
        let (mut h, rx) = handler(10_000);
        let mut r = req(5, 9_500);
        r.deadline_ms = 60_000;
        let bytes = r.encode();
        receive(&mut h, &bytes);
        h.shared
            .unix_ms
            .store(10_000 + REFUSED_FOR_MS + 1, Ordering::Relaxed);
        receive(&mut h, &bytes);
        assert_eq!(taken(&rx), 2);
    }

    #[test]
    fn expired_request_is_dropped() {
        let (mut h, rx) = handler(10_000);
        let bytes = req(5, 8_000).encode();
        assert_eq!(receive(&mut h, &bytes), None);
        assert_eq!(taken(&rx), 0);
    }

    #[test]
    fn garbage_is_an_error() {
        let (mut h, _rx) = handler(0);
        assert!(h.receive_item(&[1, 2, 3], None).is_err());
    }

    #[test]
    fn memory_is_bounded_and_refused_ids_go_first() {
        let (mut h, _rx) = handler(10_000);
        let kept = req(u64::MAX, 9_999).encode();
        vouch(&mut h, &kept, u64::MAX);
        for id in 0..(MAX_REMEMBERED as u64 + 100) {
            let bytes = req(id, 9_999).encode();
            receive(&mut h, &bytes);
        }
        assert!(h.seen.len() <= MAX_REMEMBERED);
        assert!(h.seen[&u64::MAX].passed_on, "the vouched id is kept");
    }
}
