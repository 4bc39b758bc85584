//! The transport contract (chitchat's `test_transport_suite` habit): the
//! same cases run against real UDP on loopback and against the in-memory
//! network the other tests use, so the fake cannot drift from the real:
//! plain transports, and gated ones (`spawn_gated`: the reader's early
//! check, the opener, the replay guard).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use patrol_agent::clock::WallClock;
use patrol_agent::datagram::{GateCounters, Opener, ReplaySettings, Sealer, REPLAY_HEADER};
use patrol_agent::envelope::{Envelope, OVERHEAD};
use patrol_agent::shutdown::Tasks;
use patrol_agent::transport::{MemoryNetwork, Transport, MAX_SEALED_DATAGRAM};
use tokio::sync::mpsc;

type Inbound = mpsc::Receiver<(SocketAddr, Vec<u8>)>;
type Outbound = mpsc::Sender<(SocketAddr, Vec<u8>)>;

/// Two started transports that can reach each other.
struct Pair {
    a: (SocketAddr, Inbound, Outbound),
    b: (SocketAddr, Inbound, Outbound),
    tasks: Tasks,
}

fn start(t: Transport, tasks: &mut Tasks) -> (SocketAddr, Inbound, Outbound) {
    let addr = t.local_addr;
    let (rx, tx) = t.spawn(tasks);
    (addr, rx, tx)
}

/// Two UDP transports on loopback, not started.
async fn udp_transports() -> (Transport, Transport) {
    let bind = || Transport::udp("127.0.0.1:0".parse().unwrap());
    (bind().await.unwrap(), bind().await.unwrap())
}

/// Two nodes of one lossless in-memory network, not started.
async fn memory_transports() -> (Transport, Transport) {
    let net = MemoryNetwork::new(0.0, 1);
    (net.attach(), net.attach())
}

/// Both transports started plain (bytes as they are).
fn plain((a, b): (Transport, Transport)) -> Pair {
    let mut tasks = Tasks::new();
    Pair {
        a: start(a, &mut tasks),
        b: start(b, &mut tasks),
        tasks,
    }
}

/// A sender `a` started plain (it sends raw bytes, as an attacker or a
/// test would) and a receiver `b` started gated under `envelope`.
struct Gated {
    a: (SocketAddr, Inbound, Outbound),
    b: (SocketAddr, Inbound, Outbound),
    /// What `b`'s gate refused.
    refused: Arc<GateCounters>,
    /// Seals as an agent of the cluster does.
    sealer: Sealer,
    tasks: Tasks,
}

fn gated((a, b): (Transport, Transport)) -> Gated {
    let mut tasks = Tasks::new();
    let envelope = Envelope::new(patrol_agent::keyring::Keyring::generate(), "test");
    let refused = Arc::new(GateCounters::default());
    let b_addr = b.local_addr;
    let opener = Opener::new(
        envelope.clone(),
        WallClock::default(),
        ReplaySettings::default(),
        vec![b_addr],
    );
    let (rx, tx) = b.spawn_gated(&mut tasks, opener, Arc::clone(&refused));
    Gated {
        a: start(a, &mut tasks),
        b: (b_addr, rx, tx),
        refused,
        sealer: Sealer::new(envelope, WallClock::default()),
        tasks,
    }
}

impl Gated {
    fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.sealer.seal(plain, self.b.0, &mut out).expect("seals");
        out
    }

    /// Send `bytes` from `a` to `b`.
    async fn send(&self, bytes: Vec<u8>) {
        self.a
            .2
            .send((self.b.0, bytes))
            .await
            .expect("a's writer runs");
    }

    /// A barrier: a fresh sealed datagram sent after everything else
    /// comes out of `b`'s gate, so everything sent before it has been
    /// through the gate (one path, in order). Fails if anything else came
    /// out first.
    async fn flush(&mut self, marker: &[u8]) {
        let sealed = self.seal(marker);
        self.send(sealed).await;
        let (from, got) = recv(&mut self.b.1).await.expect("the marker arrives");
        assert!(
            from == self.a.0 && got == marker,
            "expected the marker from {}, got {} bytes from {from}",
            self.a.0,
            got.len()
        );
    }
}

async fn recv(rx: &mut Inbound) -> Option<(SocketAddr, Vec<u8>)> {
    tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .ok()
        .flatten()
}

/// A datagram arrives whole, with the sender's address, both ways.
async fn delivers_bytes_with_the_senders_address(mut p: Pair) {
    let payload = vec![7u8; MAX_SEALED_DATAGRAM];
    p.a.2.send((p.b.0, payload.clone())).await.unwrap();
    let (from, got) = recv(&mut p.b.1).await.expect("delivered");
    assert_eq!(from, p.a.0);
    assert_eq!(got, payload);
    p.b.2.send((p.a.0, vec![1, 2, 3])).await.unwrap();
    let (from, got) = recv(&mut p.a.1).await.expect("delivered back");
    assert_eq!((from, got), (p.b.0, vec![1, 2, 3]));
    p.tasks.shutdown().await;
}

/// A receiver that does not read loses datagrams past its queue; the
/// sender is never blocked.
async fn a_full_receive_queue_drops_instead_of_blocking(mut p: Pair) {
    for i in 0..6000u32 {
        let sent = tokio::time::timeout(
            Duration::from_secs(2),
            p.a.2.send((p.b.0, i.to_be_bytes().to_vec())),
        )
        .await;
        assert!(sent.is_ok(), "sending blocked at datagram {i}");
        if i % 500 == 0 {
            tokio::task::yield_now().await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), p.b.1.recv()).await {
        got += 1;
    }
    assert!(got > 0, "nothing arrived");
    assert!(
        got <= 4096 + 64,
        "{got} queued: the receive queue is not bounded"
    );
    p.tasks.shutdown().await;
}

/// After shutdown nothing moves: the receiver's channel closes.
async fn shutdown_stops_every_mover(mut p: Pair) {
    p.tasks.shutdown().await;
    let _ = p.a.2.send((p.b.0, vec![1])).await;
    let r = tokio::time::timeout(Duration::from_secs(2), p.b.1.recv()).await;
    assert!(
        matches!(r, Ok(None)),
        "a mover outlived the shutdown: {r:?}"
    );
}

/// Through the gate, a sealed datagram arrives as the node's plaintext,
/// once: the same bytes again are refused as a replay and counted.
async fn gated_delivers_the_plaintext_once(mut g: Gated) {
    let sealed = g.seal(b"hello");
    g.send(sealed.clone()).await;
    let (from, got) = recv(&mut g.b.1).await.expect("delivered");
    assert_eq!((from, got.as_slice()), (g.a.0, &b"hello"[..]));
    g.send(sealed).await;
    g.flush(b"after the replay").await;
    let refused = g.refused.snapshot();
    assert_eq!(refused.replayed, 1, "{refused:?}");
    assert_eq!(refused.oversized_or_unknown, 0, "{refused:?}");
    g.tasks.shutdown().await;
}

/// The reader's early check: a datagram larger than any agent sends, and
/// one of an unknown version or key id, are dropped before the opener
/// and counted as such; one sealed under another key is refused by the
/// opener.
async fn gated_drops_oversized_and_unknown_datagrams_early(mut g: Gated) {
    let oversized = g.seal(&vec![1u8; MAX_SEALED_DATAGRAM]);
    assert!(oversized.len() > MAX_SEALED_DATAGRAM);
    g.send(oversized).await;
    g.send(vec![0xEE; 100]).await;
    let mut stranger = Sealer::new(
        Envelope::new(patrol_agent::keyring::Keyring::generate(), "test"),
        WallClock::default(),
    );
    let mut foreign = Vec::new();
    stranger
        .seal(b"not ours", g.b.0, &mut foreign)
        .expect("seals");
    g.send(foreign).await;
    g.flush(b"after the junk").await;
    let refused = g.refused.snapshot();
    assert_eq!(refused.oversized_or_unknown, 3, "{refused:?}");
    assert_eq!(refused.unsealed, 0, "{refused:?}");
    let plain = MAX_SEALED_DATAGRAM - OVERHEAD - REPLAY_HEADER;
    let largest = g.seal(&vec![2u8; plain]);
    assert_eq!(largest.len(), MAX_SEALED_DATAGRAM);
    g.send(largest).await;
    let (_, got) = recv(&mut g.b.1).await.expect("the largest datagram passes");
    assert_eq!(got.len(), plain);
    g.tasks.shutdown().await;
}

/// After shutdown the gate is gone too: the plaintext channel closes.
async fn gated_shutdown_closes_the_plaintext_channel(mut g: Gated) {
    g.tasks.shutdown().await;
    let r = tokio::time::timeout(Duration::from_secs(2), g.b.1.recv()).await;
    assert!(
        matches!(r, Ok(None)),
        "the opener outlived the shutdown: {r:?}"
    );
}

/// Each case, against UDP on loopback and against the in-memory network.
macro_rules! suite {
    ($($name:ident: $start:ident),* $(,)?) => {
        mod udp {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::$start(super::udp_transports().await)).await;
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::$start(super::memory_transports().await)).await;
                }
            )*
        }
    };
}

suite!(
    delivers_bytes_with_the_senders_address: plain,
    a_full_receive_queue_drops_instead_of_blocking: plain,
    shutdown_stops_every_mover: plain,
    gated_delivers_the_plaintext_once: gated,
    gated_drops_oversized_and_unknown_datagrams_early: gated,
    gated_shutdown_closes_the_plaintext_channel: gated,
);
