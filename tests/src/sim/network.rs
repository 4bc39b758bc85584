//! The simulated network: one event queue in virtual time, node addresses,
//! the link model (one-way latency, random loss) and each node's CPU: a
//! single server with a receive queue that drops datagrams when it
//! overflows, like a socket buffer.
//!
//! Nothing here sleeps or touches a socket; time only moves when the queue
//! pops its next event.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
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
    /// Time the agent's shell spends receiving one datagram outside the
    /// node's code (read the socket, open the envelope), charged to the
    /// node's CPU on top of what `--cpu` charges for the node's call.
    /// Datagrams queue behind each other. Default 10 µs (opening a
    /// 1,200-byte envelope alone takes 3.3 µs here, `envelope_throughput`
    /// example).
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

/// A node's CPU: a single server with a bounded receive queue in front.
///
/// A piece of work (a datagram, or with `--cpu model|measured` a timer,
/// finished checks or the sweep start) that arrives while the node is idle
/// runs at once; otherwise it waits its turn. Datagrams are dropped when
/// `rx_queue` of them are already in (the one being served counts), like
/// a full socket buffer; other work always waits.
#[derive(Debug)]
pub struct Server<W> {
    /// A piece of work is being served (a `Free` event is due).
    busy: bool,
    waiting: VecDeque<(W, bool)>,
    datagrams_waiting: usize,
}

impl<W> Default for Server<W> {
    fn default() -> Self {
        Server {
            busy: false,
            waiting: VecDeque::new(),
            datagrams_waiting: 0,
        }
    }
}

/// What became of work offered to a [`Server`].
#[derive(Debug, PartialEq)]
pub enum Admission<W> {
    /// The node is idle: serve it now.
    Now(W),
    Queued,
    /// A datagram and the receive queue is full: dropped.
    Full(W),
}

impl<W> Server<W> {
    /// Offer `work` (`datagram`: it counts against `limit`).
    pub fn offer(&mut self, work: W, datagram: bool, limit: usize) -> Admission<W> {
        if !self.busy && self.waiting.is_empty() {
            return Admission::Now(work);
        }
        if datagram {
            if self.datagrams_waiting + usize::from(self.busy) >= limit {
                return Admission::Full(work);
            }
            self.datagrams_waiting += 1;
        }
        self.waiting.push_back((work, datagram));
        Admission::Queued
    }

    /// The node took up a piece of work that keeps it busy (a `Free` event
    /// is due when it ends).
    pub fn occupy(&mut self) {
        self.busy = true;
    }

    /// The work being served ended: the next piece waiting, if any.
    pub fn free(&mut self) -> Option<W> {
        self.busy = false;
        self.take()
    }

    /// The next piece waiting, if any (the node is idle).
    pub fn take(&mut self) -> Option<W> {
        let (work, datagram) = self.waiting.pop_front()?;
        if datagram {
            self.datagrams_waiting -= 1;
        }
        Some(work)
    }

    /// Whether a piece of work is being served.
    pub fn is_busy(&self) -> bool {
        self.busy
    }

    /// Datagrams waiting, the one being served not included.
    pub fn queued(&self) -> usize {
        self.datagrams_waiting
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
    fn the_receive_queue_drops_datagrams_when_full_but_keeps_other_work() {
        let mut server: Server<&str> = Server::default();
        assert_eq!(server.offer("a", true, 3), Admission::Now("a"));
        server.occupy();
        assert_eq!(server.offer("b", true, 3), Admission::Queued);
        assert_eq!(server.offer("c", true, 3), Admission::Queued);
        // "a" in service and two waiting: the queue of 3 is full.
        assert_eq!(server.offer("d", true, 3), Admission::Full("d"));
        assert_eq!(server.offer("timer", false, 3), Admission::Queued);
        assert_eq!(server.queued(), 2);
        assert_eq!(server.free(), Some("b"));
        server.occupy();
        assert_eq!(server.free(), Some("c"));
        assert_eq!(server.take(), Some("timer"));
        assert_eq!(server.take(), None);
        assert!(!server.is_busy());
        assert_eq!(server.offer("e", true, 3), Admission::Now("e"));
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
