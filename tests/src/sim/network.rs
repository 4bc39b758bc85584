//! The simulated network: one event queue in virtual time, node addresses,
//! and the link model (one-way latency, random loss, and a receive queue
//! per node that drops datagrams when it overflows, like a socket buffer).
//!
//! Nothing here sleeps or touches a socket; time only moves when the queue
//! pops its next event.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::RngExt;

/// Gossip port every simulated node listens on.
const PORT: u16 = 7946;

/// The address of node `index`: `10.a.b.c:7946` with `abc = index + 1`.
pub fn addr_of(index: usize) -> SocketAddr {
    let n = (index as u32).wrapping_add(1);
    let ip = Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8);
    SocketAddr::V4(SocketAddrV4::new(ip, PORT))
}

/// The node index behind an address made by [`addr_of`], if any.
pub fn index_of(addr: SocketAddr, nodes: usize) -> Option<usize> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    let [a, b, c, d] = v4.ip().octets();
    if a != 10 || v4.port() != PORT {
        return None;
    }
    let n = (u32::from(b) << 16) | (u32::from(c) << 8) | u32::from(d);
    let index = n.checked_sub(1)? as usize;
    (index < nodes).then_some(index)
}

/// A min-heap of events keyed by virtual time; ties pop in insertion order,
/// so a run is a pure function of its seed.
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
    popped: u64,
}

#[derive(Debug)]
struct Entry<E> {
    at: Duration,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap, we want the earliest first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
            popped: 0,
        }
    }
}

impl<E> EventQueue<E> {
    pub fn push(&mut self, at: Duration, event: E) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            event,
        });
    }

    pub fn pop(&mut self) -> Option<(Duration, E)> {
        let entry = self.heap.pop()?;
        self.popped += 1;
        Some((entry.at, entry.event))
    }

    /// Events handled so far.
    pub fn popped(&self) -> u64 {
        self.popped
    }
}

/// Link settings shared by every pair of nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkModel {
    /// One-way latency, drawn uniformly from `[latency_min, latency_max]`
    /// for every datagram.
    pub latency_min: Duration,
    pub latency_max: Duration,
    /// Probability that a datagram is lost, `0.0..1.0`.
    pub loss: f64,
    /// Time a node spends receiving one datagram (open the envelope,
    /// decode, hand to foca or the core). Datagrams queue behind each other.
    /// Default 10 µs (opening a 1,200-byte envelope alone takes 3.3 µs
    /// here, `envelope_throughput` example).
    pub rx_service: Duration,
    /// Datagrams that fit in a node's receive queue; more are dropped.
    /// Default 4096: the agent's reader task drains the socket into an
    /// in-process queue of that size ahead of the owner task.
    pub rx_queue: usize,
}

impl LinkModel {
    /// The latency of one datagram.
    pub fn latency(&self, rng: &mut SmallRng) -> Duration {
        if self.latency_max <= self.latency_min {
            return self.latency_min;
        }
        let span = (self.latency_max - self.latency_min).as_nanos() as u64;
        self.latency_min + Duration::from_nanos(rng.random_range(0..=span))
    }

    /// Whether one datagram is lost.
    pub fn lost(&self, rng: &mut SmallRng) -> bool {
        self.loss > 0.0 && rng.random::<f64>() < self.loss
    }
}

/// A node's receive queue: a single server with a constant service time
/// and a bounded queue.
#[derive(Debug, Clone, Copy, Default)]
pub struct RxQueue {
    busy_until: Duration,
}

impl RxQueue {
    /// A datagram arrives at `now`: `None` when the queue is full (dropped),
    /// else the time it reaches the node's code.
    pub fn admit(&mut self, now: Duration, link: &LinkModel) -> Option<Duration> {
        if link.rx_service.is_zero() {
            return Some(now);
        }
        let backlog = self.busy_until.saturating_sub(now);
        let queued = backlog.as_nanos().div_ceil(link.rx_service.as_nanos());
        if queued >= link.rx_queue as u128 {
            return None;
        }
        let start = self.busy_until.max(now);
        self.busy_until = start + link.rx_service;
        Some(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn addresses_round_trip() {
        for i in [0, 1, 255, 256, 9_999, 70_000] {
            assert_eq!(index_of(addr_of(i), 100_000), Some(i));
        }
        assert_eq!(index_of(addr_of(10), 10), None);
        assert_eq!(index_of("127.0.0.1:7946".parse().unwrap(), 10), None);
    }

    #[test]
    fn queue_pops_in_time_then_insertion_order() {
        let mut q = EventQueue::default();
        q.push(Duration::from_millis(2), "c");
        q.push(Duration::from_millis(1), "a");
        q.push(Duration::from_millis(1), "b");
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn receive_queue_overflows() {
        let link = LinkModel {
            latency_min: Duration::ZERO,
            latency_max: Duration::ZERO,
            loss: 0.0,
            rx_service: Duration::from_micros(10),
            rx_queue: 3,
        };
        let mut rx = RxQueue::default();
        let now = Duration::from_secs(1);
        let admitted: Vec<_> = (0..5).map(|_| rx.admit(now, &link)).collect();
        assert_eq!(admitted[0], Some(now));
        assert_eq!(admitted[2], Some(now + Duration::from_micros(20)));
        assert_eq!(admitted[3], None);
        // Later the queue has drained again.
        assert!(rx.admit(now + Duration::from_millis(1), &link).is_some());
    }

    #[test]
    fn latency_stays_in_range() {
        let link = LinkModel {
            latency_min: Duration::from_micros(100),
            latency_max: Duration::from_millis(1),
            loss: 0.5,
            rx_service: Duration::ZERO,
            rx_queue: 1,
        };
        let mut rng = SmallRng::seed_from_u64(1);
        let mut lost = 0;
        for _ in 0..1000 {
            let l = link.latency(&mut rng);
            assert!(l >= link.latency_min && l <= link.latency_max);
            lost += usize::from(link.lost(&mut rng));
        }
        assert!((400..600).contains(&lost), "{lost}");
    }
}
