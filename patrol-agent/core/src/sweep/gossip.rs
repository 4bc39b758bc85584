//! The foca custom-broadcast handler that carries sweep requests through the
//! mesh.
//!
//! foca calls [`RequestGossip::receive_item`] for every request it finds in
//! a packet (and for the coordinator's own `add_broadcast`). A request is
//! new when its sweep id was not seen before and it has not expired; only a
//! new request is handed to the inbox and returned as a key, so foca keeps
//! re-broadcasting it for its usual number of transmissions and drops every
//! duplicate. The shell drains the inbox into
//! [`SweepCore::handle_request`](super::SweepCore::handle_request) and, when
//! something new arrived, calls `foca.broadcast()` at once (eager push).
//!
//! A request issued further in the future than the clock-skew tolerance
//! (by this node's clock) is handed to the inbox, where the participant
//! refuses and counts it, but neither remembered nor returned as a key:
//! foca does not pass it on, so a forged future-dated request stops at the
//! first node instead of reaching the whole mesh.
//!
//! Memory is bounded: ids are forgotten once their request expires, and at
//! most [`MAX_REMEMBERED`] are kept (the earliest to expire go first).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use foca::{BroadcastHandler, Invalidates};

use super::wire::{SweepRequest, WireError};

/// Most sweep ids remembered at once for duplicate suppression.
pub const MAX_REMEMBERED: usize = 4096;

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
}

/// Decodes requests from foca broadcasts, drops duplicates and expired
/// ones, and hands new ones to the shell through a channel.
pub struct RequestGossip {
    inbox: Sender<SweepRequest>,
    shared: Arc<GossipShared>,
    /// Sweep id -> unix ms when its request expires.
    seen: HashMap<u64, u64>,
    /// Requests issued further ahead of our clock are not passed on
    /// (`SweepSettings::clock_skew_tolerance`).
    skew_tolerance_ms: u64,
}

impl std::fmt::Debug for RequestGossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestGossip")
            .field("seen", &self.seen.len())
            .finish()
    }
}

impl RequestGossip {
    /// A handler reading the wall clock from `shared`: the
    /// [`Node`](crate::node::Node) sets it from the time of each call.
    /// Requests issued more than `skew_tolerance` ahead of it are not
    /// passed on.
    pub fn new(
        inbox: Sender<SweepRequest>,
        shared: Arc<GossipShared>,
        skew_tolerance: Duration,
    ) -> Self {
        RequestGossip {
            inbox,
            shared,
            seen: HashMap::new(),
            skew_tolerance_ms: u64::try_from(skew_tolerance.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn remember(&mut self, id: u64, expires: u64, now: u64) {
        if self.seen.len() >= MAX_REMEMBERED {
            self.seen.retain(|_, exp| *exp >= now);
        }
        if self.seen.len() >= MAX_REMEMBERED {
            if let Some((&oldest, _)) = self.seen.iter().min_by_key(|(_, exp)| **exp) {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(id, expires);
    }
}

impl<T> BroadcastHandler<T> for RequestGossip {
    type Key = SweepKey;
    type Error = WireError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&T>,
    ) -> Result<Option<SweepKey>, WireError> {
        let req = SweepRequest::decode(data)?;
        self.shared.copies.fetch_add(1, Ordering::Relaxed);
        let now = self.shared.unix_ms.load(Ordering::Relaxed);
        let expires = req.expires_at_unix_ms();
        if self.seen.contains_key(&req.id) || expires < now {
            return Ok(None);
        }
        if req.issued_at_unix_ms.saturating_sub(now) > self.skew_tolerance_ms {
            // The participant refuses and counts it; nobody else hears it
            // from us.
            let _ = self.inbox.send(req);
            return Ok(None);
        }
        self.remember(req.id, expires, now);
        let key = SweepKey(req.id);
        // A closed inbox means the shell is shutting down: stop spreading.
        match self.inbox.send(req) {
            Ok(()) => Ok(Some(key)),
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::wire::PeerAddr;
    use std::sync::mpsc;

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

    fn handler(now: u64) -> (RequestGossip, mpsc::Receiver<SweepRequest>) {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(GossipShared::default());
        shared.unix_ms.store(now, Ordering::Relaxed);
        (RequestGossip::new(tx, shared, Duration::from_secs(5)), rx)
    }

    #[test]
    fn new_request_is_kept_once() {
        let (mut h, rx) = handler(10_000);
        let bytes = req(5, 9_500).encode();
        let first = BroadcastHandler::<()>::receive_item(&mut h, &bytes, None).unwrap();
        assert_eq!(first, Some(SweepKey(5)));
        let again = BroadcastHandler::<()>::receive_item(&mut h, &bytes, None).unwrap();
        assert_eq!(again, None);
        assert_eq!(rx.try_iter().count(), 1);
    }

    #[test]
    fn expired_request_is_dropped() {
        let (mut h, rx) = handler(10_000);
        let bytes = req(5, 8_000).encode();
        assert_eq!(
            BroadcastHandler::<()>::receive_item(&mut h, &bytes, None).unwrap(),
            None
        );
        assert_eq!(rx.try_iter().count(), 0);
    }

    #[test]
    fn a_future_dated_request_goes_to_the_inbox_but_is_not_passed_on() {
        let (mut h, rx) = handler(10_000);
        let bytes = req(5, 10_000 + 5_001).encode();
        for _ in 0..2 {
            let key = BroadcastHandler::<()>::receive_item(&mut h, &bytes, None).unwrap();
            assert_eq!(key, None, "not spread");
        }
        assert_eq!(rx.try_iter().count(), 2, "each copy refused where it lands");
        assert!(h.seen.is_empty(), "nothing remembered");
        let within = req(6, 10_000 + 5_000).encode();
        let key = BroadcastHandler::<()>::receive_item(&mut h, &within, None).unwrap();
        assert_eq!(key, Some(SweepKey(6)));
    }

    #[test]
    fn garbage_is_an_error() {
        let (mut h, _rx) = handler(0);
        assert!(BroadcastHandler::<()>::receive_item(&mut h, &[1, 2, 3], None).is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let (mut h, _rx) = handler(10_000);
        for id in 0..(MAX_REMEMBERED as u64 + 100) {
            let bytes = req(id, 9_999).encode();
            BroadcastHandler::<()>::receive_item(&mut h, &bytes, None).unwrap();
        }
        assert!(h.seen.len() <= MAX_REMEMBERED);
    }
}
