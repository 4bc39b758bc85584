//! Datagram transports: real UDP, and an in-memory network for tests that
//! can drop packets and partition nodes.
//!
//! A transport is a pair of channels. The agent never touches the socket:
//! it receives `(from, bytes)` on `inbound` and puts `(to, bytes)` on
//! `outbound`. Bytes are already sealed; the transport moves them as they
//! are.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use std::future::Future;
use std::pin::Pin;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::shutdown::Tasks;

/// One datagram and its peer address.
pub type Datagram = (SocketAddr, Vec<u8>);

/// Largest sealed datagram an agent sends: fits a 1,500-byte Ethernet MTU
/// with IP and UDP headers. The node's plaintext limit
/// (`NodeSettings::max_datagram`) is this less the envelope's overhead.
pub const MAX_SEALED_DATAGRAM: usize = 1400;

/// Largest datagram we read (UDP's own ceiling).
const MAX_DATAGRAM: usize = 65_536;
const QUEUE: usize = 4096;

/// A task that moves bytes, not started yet.
type Mover = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The agent's end of a transport: its channels and the tasks that move
/// bytes, which start only when the transport is handed to
/// [`Transport::spawn`] (so they join the agent's task set and stop with
/// it).
pub struct Transport {
    pub local_addr: SocketAddr,
    inbound: mpsc::Receiver<Datagram>,
    outbound: mpsc::Sender<Datagram>,
    movers: Vec<Mover>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl Transport {
    /// Start the tasks that move bytes in `tasks`; returns the inbound and
    /// outbound channels.
    pub fn spawn(self, tasks: &mut Tasks) -> (mpsc::Receiver<Datagram>, mpsc::Sender<Datagram>) {
        for mover in self.movers {
            tasks.spawn(mover);
        }
        (self.inbound, self.outbound)
    }

    /// Bind a UDP socket and start its reader and writer tasks.
    pub async fn udp(bind: SocketAddr) -> io::Result<Transport> {
        let socket = Arc::new(UdpSocket::bind(bind).await?);
        let local_addr = socket.local_addr()?;
        let (in_tx, in_rx) = mpsc::channel::<Datagram>(QUEUE);
        let (out_tx, mut out_rx) = mpsc::channel::<Datagram>(QUEUE);
        let reader = {
            let socket = socket.clone();
            Box::pin(async move {
                let mut buf = vec![0u8; MAX_DATAGRAM];
                loop {
                    match socket.recv_from(&mut buf).await {
                        Ok((n, from)) => {
                            // A full queue means the agent is overloaded: drop,
                            // as the network would.
                            let _ = in_tx.try_send((from, buf[..n].to_vec()));
                        }
                        // ICMP errors surface on Linux as recv errors
                        // (connection refused from an earlier send): ignore.
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, "udp receive failed");
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                    }
                    if in_tx.is_closed() {
                        break;
                    }
                }
            })
        };
        let writer = Box::pin(async move {
            while let Some((to, bytes)) = out_rx.recv().await {
                if let Err(e) = socket.send_to(&bytes, to).await {
                    tracing::debug!(error = %e, %to, "udp send failed");
                }
            }
        });
        Ok(Transport {
            local_addr,
            inbound: in_rx,
            outbound: out_tx,
            movers: vec![reader, writer],
        })
    }
}

/// An in-memory datagram network for tests: nodes attach under an address;
/// each datagram is dropped with probability `loss`; partitioned addresses
/// neither send nor receive.
#[derive(Debug, Clone)]
pub struct MemoryNetwork {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug)]
struct MemoryInner {
    routes: HashMap<SocketAddr, mpsc::Sender<Datagram>>,
    isolated: HashSet<SocketAddr>,
    loss: f64,
    rng_state: u64,
    next_port: u16,
    dropped: u64,
    delivered: u64,
}

impl MemoryNetwork {
    /// A network dropping each datagram with probability `loss` (0.0-1.0),
    /// reproducibly from `seed`.
    pub fn new(loss: f64, seed: u64) -> Self {
        MemoryNetwork {
            inner: Arc::new(Mutex::new(MemoryInner {
                routes: HashMap::new(),
                isolated: HashSet::new(),
                loss,
                rng_state: seed | 1,
                next_port: 10_000,
                dropped: 0,
                delivered: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attach a node; it gets a fresh address on 127.0.0.1.
    pub fn attach(&self) -> Transport {
        let (in_tx, in_rx) = mpsc::channel::<Datagram>(QUEUE);
        let (out_tx, mut out_rx) = mpsc::channel::<Datagram>(QUEUE);
        let local_addr = {
            let mut inner = self.lock();
            inner.next_port = inner.next_port.wrapping_add(1);
            let addr = SocketAddr::from(([127, 0, 0, 1], inner.next_port));
            inner.routes.insert(addr, in_tx);
            addr
        };
        let net = self.clone();
        let mover = Box::pin(async move {
            while let Some((to, bytes)) = out_rx.recv().await {
                let target = {
                    let mut inner = net.lock();
                    let lost = inner.roll() < inner.loss
                        || inner.isolated.contains(&to)
                        || inner.isolated.contains(&local_addr);
                    if lost {
                        inner.dropped += 1;
                        None
                    } else {
                        inner.delivered += 1;
                        inner.routes.get(&to).cloned()
                    }
                };
                if let Some(tx) = target {
                    let _ = tx.try_send((local_addr, bytes));
                }
            }
            net.lock().routes.remove(&local_addr);
        });
        Transport {
            local_addr,
            inbound: in_rx,
            outbound: out_tx,
            movers: vec![mover],
        }
    }

    /// Cut `addr` off (true) or reconnect it (false).
    pub fn isolate(&self, addr: SocketAddr, isolated: bool) {
        let mut inner = self.lock();
        if isolated {
            inner.isolated.insert(addr);
        } else {
            inner.isolated.remove(&addr);
        }
    }

    /// Change the loss probability from now on (e.g. converge first, then
    /// make the network lossy).
    pub fn set_loss(&self, loss: f64) {
        self.lock().loss = loss;
    }

    /// Datagrams dropped and delivered so far.
    pub fn stats(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.dropped, inner.delivered)
    }
}

impl MemoryInner {
    /// xorshift64*: reproducible loss without pulling an RNG into tests.
    fn roll(&mut self) -> f64 {
        let mut x = self.rng_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng_state = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}
