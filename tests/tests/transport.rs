//! The transport contract (chitchat's `test_transport_suite` habit): the
//! same cases run against real UDP on loopback and against the in-memory
//! network the other tests use, so the fake cannot drift from the real.

use std::net::SocketAddr;
use std::time::Duration;

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

async fn udp_pair() -> Pair {
    let mut tasks = Tasks::new();
    let a = Transport::udp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let b = Transport::udp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Pair {
        a: start(a, &mut tasks),
        b: start(b, &mut tasks),
        tasks,
    }
}

fn memory_pair() -> Pair {
    let mut tasks = Tasks::new();
    let net = MemoryNetwork::new(0.0, 1);
    Pair {
        a: start(net.attach(), &mut tasks),
        b: start(net.attach(), &mut tasks),
        tasks,
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

macro_rules! suite {
    ($($name:ident),*) => {
        mod udp {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::udp_pair().await).await;
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::memory_pair()).await;
                }
            )*
        }
    };
}

suite!(
    delivers_bytes_with_the_senders_address,
    a_full_receive_queue_drops_instead_of_blocking,
    shutdown_stops_every_mover
);
