//! The control listener's slots: connections pending (no request yet),
//! in arrival order, and the number serving a request; how a new
//! connection takes a slot, evicting the oldest pending one when needed.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::ControlSettings;

/// Who holds the control slots: connections pending (no request yet), in
/// arrival order, and the number serving a request.
#[derive(Debug, Default)]
pub(super) struct Slots {
    next: u64,
    pending: VecDeque<(u64, IpAddr, CancellationToken)>,
    serving: usize,
}

/// One connection's hold on a slot; released when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    id: u64,
    slots: Arc<Mutex<Slots>>,
    /// Cancelled when the connection is evicted to make room.
    pub(super) closed: CancellationToken,
    serving: bool,
}

impl Slots {
    /// A slot for a new connection from `ip`, closing the oldest pending
    /// connection (of this peer when it holds its share, else of anyone)
    /// to make room; `None` when every slot is serving a request.
    pub(super) fn take(
        slots: &Arc<Mutex<Slots>>,
        settings: &ControlSettings,
        ip: IpAddr,
    ) -> Option<Slot> {
        let mut s = slots.lock().unwrap_or_else(|p| p.into_inner());
        let same_peer = s.pending.iter().filter(|(_, p, _)| *p == ip).count();
        if same_peer >= settings.max_pending_per_peer {
            if let Some(pos) = s.pending.iter().position(|(_, p, _)| *p == ip) {
                if let Some((_, _, token)) = s.pending.remove(pos) {
                    token.cancel();
                }
            }
        }
        if s.pending.len() + s.serving >= settings.max_connections {
            let (_, _, token) = s.pending.pop_front()?;
            token.cancel();
        }
        s.next += 1;
        let id = s.next;
        let closed = CancellationToken::new();
        s.pending.push_back((id, ip, closed.clone()));
        Some(Slot {
            id,
            slots: Arc::clone(slots),
            closed,
            serving: false,
        })
    }
}

impl Slot {
    /// The request opened: this connection can no longer be evicted.
    pub(super) fn serving(&mut self) {
        let mut s = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pos) = s.pending.iter().position(|(id, _, _)| *id == self.id) {
            s.pending.remove(pos);
            s.serving += 1;
            self.serving = true;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if self.serving {
            s.serving -= 1;
        } else if let Some(pos) = s.pending.iter().position(|(id, _, _)| *id == self.id) {
            s.pending.remove(pos);
        }
    }
}
