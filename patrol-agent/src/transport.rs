//! Datagram transports: real UDP, and an in-memory network for tests that
//! can drop packets and partition nodes.
//!
//! A transport is a pair of channels. The agent never touches the socket:
//! it receives `(from, bytes)` on `inbound` and puts `(to, bytes)` on
//! `outbound`. Bytes are sealed; the transport moves them as they are.
//! [`Transport::spawn_gated`] puts an opener task between the socket and
//! the agent: datagrams are opened and checked for replay there, off the
//! agent's owner task, and the UDP reader drops what cannot be a datagram
//! of ours (too large, unknown version or key id) before queueing it. The
//! in-memory network applies the same check at the receiving end, so the
//! fake drops what the real one drops. Every limit is a field of
//! [`TransportSettings`].

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use patrol_core::SettingsError;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::datagram::{log_refusal, GateCounters, Opener, Refusal};
use crate::envelope::Envelope;
use crate::shutdown::Tasks;
use crate::strikes::Strikes;

/// One datagram and its peer address.
pub type Datagram = (SocketAddr, Vec<u8>);

/// Largest sealed datagram an agent sends: fits a 1,500-byte Ethernet MTU
/// with IP and UDP headers. The node's plaintext limit
/// (`NodeSettings::max_datagram`) is this less the envelope's overhead and
/// the replay header. A wire constant, not a setting: every agent's reader
/// drops a larger datagram unopened, so an agent configured to send more
/// would be dropped by the rest of the mesh.
pub const MAX_SEALED_DATAGRAM: usize = 1400;

/// The transport's limits. `Default` gives the shipped values;
/// [`TransportSettings::validate`] checks the constraint each field states.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportSettings {
    /// Datagrams queued each way between the socket and the agent, and
    /// between the opener task and the owner task; a full queue drops, as
    /// the network would. Default 4,096: a relay's batch of
    /// `nodes_per_relay` (2,000) one-datagram answers within the spread
    /// window fits with room to spare, and the simulator's receive queue
    /// is the same size. Must not be zero.
    pub queue: usize,
    /// Bytes of the UDP reader's buffer. Default 65,536, UDP's own ceiling:
    /// every datagram is read whole, so one larger than
    /// [`MAX_SEALED_DATAGRAM`] is seen (and counted) as oversized rather
    /// than cut to fit. Must be more than [`MAX_SEALED_DATAGRAM`].
    pub recv_buffer: usize,
    /// How long the UDP reader waits after a receive error (other than an
    /// ICMP refusal) before reading again, so an error that repeats does
    /// not spin a core. Default 10 ms. Must not be zero.
    pub recv_error_pause: Duration,
    /// The opener logs at most one clock-skew refusal per this period
    /// (each one is counted): a node with a wrong clock would otherwise
    /// log every datagram it receives. Default 10 s.
    pub skew_warning_every: Duration,
    /// A source whose datagrams the opener refuses this many times within
    /// a second is muted for the rest of that second and the next: the
    /// reader drops its datagrams unread (counted as `muted`), so one
    /// flooding address cannot starve everyone else (see
    /// [`crate::strikes`]). An agent's own sealed datagrams are never
    /// refused, so it is never muted. Default 1,000. Must not be zero.
    pub mute_after: u32,
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            queue: 4096,
            recv_buffer: 65_536,
            recv_error_pause: Duration::from_millis(10),
            skew_warning_every: Duration::from_secs(10),
            mute_after: 1_000,
        }
    }
}

impl TransportSettings {
    /// Check the constraint each field's doc states.
    pub fn validate(&self) -> Result<(), SettingsError> {
        use patrol_core::constraint::{at_least, not_zero};
        not_zero("transport.queue", self.queue)?;
        at_least(
            "transport.recv_buffer",
            self.recv_buffer,
            MAX_SEALED_DATAGRAM + 1,
        )?;
        not_zero("transport.recv_error_pause", self.recv_error_pause)?;
        not_zero("transport.mute_after", self.mute_after)
    }
}

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
    /// What the reader checks before queueing, once gated.
    early: Early,
    settings: TransportSettings,
}

/// The reader's early check, set when the transport is gated (shared with
/// the reader, or with the in-memory network's route to this node).
type Early = Arc<OnceLock<EarlyCheck>>;

/// The reader's cheap checks: the source is not muted, and the envelope's
/// precheck; each drop counted.
#[derive(Debug)]
struct EarlyCheck {
    envelope: Envelope,
    counters: Arc<GateCounters>,
    strikes: Arc<Strikes>,
}

impl EarlyCheck {
    /// Whether `early` (when set) lets `bytes` from `from` through; a drop
    /// is counted.
    fn lets_through(early: &Early, from: SocketAddr, bytes: &[u8]) -> bool {
        early.get().is_none_or(|c| c.pass(from, bytes))
    }

    fn pass(&self, from: SocketAddr, bytes: &[u8]) -> bool {
        if self.strikes.muted(from) {
            self.counters.muted.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let ok = bytes.len() <= MAX_SEALED_DATAGRAM && self.envelope.precheck(bytes).is_ok();
        if !ok {
            self.counters
                .oversized_or_unknown
                .fetch_add(1, Ordering::Relaxed);
        }
        ok
    }
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

    /// Start the movers and an opener task: the inbound channel carries the
    /// node's plaintext of every datagram that opened under `opener`, once;
    /// refusals are counted in `counters`.
    pub fn spawn_gated(
        self,
        tasks: &mut Tasks,
        mut opener: Opener,
        counters: Arc<GateCounters>,
    ) -> (mpsc::Receiver<Datagram>, mpsc::Sender<Datagram>) {
        let strikes = Arc::new(Strikes::new(self.settings.mute_after));
        let _ = self.early.set(EarlyCheck {
            envelope: opener.envelope().clone(),
            counters: Arc::clone(&counters),
            strikes: Arc::clone(&strikes),
        });
        let quiet_for = self.settings.skew_warning_every;
        let (plain_tx, plain_rx) = mpsc::channel::<Datagram>(self.settings.queue);
        let (mut raw, outbound) = self.spawn(tasks);
        tasks.spawn(async move {
            let mut last_warning: Option<tokio::time::Instant> = None;
            while let Some((from, bytes)) = raw.recv().await {
                match opener.open(from, &bytes) {
                    Ok(plain) => {
                        if plain_tx.try_send((from, plain)).is_err() {
                            counters.other.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(refusal) => {
                        counters.count(&refusal);
                        if strikes.strike(from) {
                            tracing::warn!(
                                %from,
                                "muting a source for a second: its datagrams keep failing to open (a flood?)"
                            );
                        }
                        // At most one warning per `skew_warning_every`.
                        let quiet = last_warning.is_some_and(|t| t.elapsed() < quiet_for);
                        if !quiet || !matches!(refusal, Refusal::ClockSkew { .. }) {
                            if matches!(refusal, Refusal::ClockSkew { .. }) {
                                last_warning = Some(tokio::time::Instant::now());
                            }
                            log_refusal(from, &refusal);
                        }
                    }
                }
            }
        });
        (plain_rx, outbound)
    }

    /// Bind a UDP socket, with the default [`TransportSettings`].
    pub async fn udp(bind: SocketAddr) -> io::Result<Transport> {
        Transport::udp_with(bind, TransportSettings::default()).await
    }

    /// Bind a UDP socket; its reader and writer tasks start with
    /// [`Transport::spawn`].
    pub async fn udp_with(bind: SocketAddr, settings: TransportSettings) -> io::Result<Transport> {
        let socket = Arc::new(UdpSocket::bind(bind).await?);
        let local_addr = socket.local_addr()?;
        let (in_tx, in_rx) = mpsc::channel::<Datagram>(settings.queue);
        let (out_tx, mut out_rx) = mpsc::channel::<Datagram>(settings.queue);
        let early: Early = Arc::new(OnceLock::new());
        let reader = {
            let socket = socket.clone();
            let early = Arc::clone(&early);
            let (size, pause) = (settings.recv_buffer, settings.recv_error_pause);
            Box::pin(async move {
                let mut buf = vec![0u8; size];
                loop {
                    match socket.recv_from(&mut buf).await {
                        Ok((n, from)) if !EarlyCheck::lets_through(&early, from, &buf[..n]) => {}
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
                            tokio::time::sleep(pause).await;
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
            early,
            settings,
        })
    }
}

/// An in-memory datagram network for tests: nodes attach under an address;
/// each datagram is dropped with probability `loss`; partitioned addresses
/// neither send nor receive. A gated node's route applies the UDP reader's
/// early check (size and envelope precheck, counted alike), and its queues
/// hold `TransportSettings::queue` datagrams, as over UDP.
#[derive(Debug, Clone)]
pub struct MemoryNetwork {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug)]
struct MemoryInner {
    routes: HashMap<SocketAddr, Route>,
    settings: TransportSettings,
    isolated: HashSet<SocketAddr>,
    loss: f64,
    rng_state: u64,
    next_port: u16,
    dropped: u64,
    delivered: u64,
    /// Every datagram moved, while capturing (an eavesdropper's view).
    captured: Option<Vec<(SocketAddr, SocketAddr, Vec<u8>)>>,
    /// A man in the middle: changes datagrams on the way.
    rewriter: Option<Rewriter>,
}

/// What a man in the middle does to each datagram: `(from, to, bytes)` in,
/// the bytes delivered out.
type RewriteFn = dyn Fn(SocketAddr, SocketAddr, Vec<u8>) -> Vec<u8> + Send + Sync;

#[derive(Clone)]
struct Rewriter(Arc<RewriteFn>);

impl std::fmt::Debug for Rewriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rewriter")
    }
}

impl MemoryNetwork {
    /// A network dropping each datagram with probability `loss` (0.0-1.0),
    /// reproducibly from `seed`.
    pub fn new(loss: f64, seed: u64) -> Self {
        MemoryNetwork::with_settings(loss, seed, TransportSettings::default())
    }

    /// [`MemoryNetwork::new`] whose nodes' transports have `settings`.
    pub fn with_settings(loss: f64, seed: u64, settings: TransportSettings) -> Self {
        MemoryNetwork {
            inner: Arc::new(Mutex::new(MemoryInner {
                routes: HashMap::new(),
                settings,
                isolated: HashSet::new(),
                loss,
                rng_state: seed | 1,
                next_port: 10_000,
                dropped: 0,
                delivered: 0,
                captured: None,
                rewriter: None,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attach a node; it gets a fresh address on 127.0.0.1.
    pub fn attach(&self) -> Transport {
        let early: Early = Arc::new(OnceLock::new());
        let (local_addr, settings, in_rx, out_tx, mut out_rx) = {
            let mut inner = self.lock();
            let settings = inner.settings.clone();
            let (in_tx, in_rx) = mpsc::channel::<Datagram>(settings.queue);
            let (out_tx, out_rx) = mpsc::channel::<Datagram>(settings.queue);
            inner.next_port = inner.next_port.wrapping_add(1);
            let addr = SocketAddr::from(([127, 0, 0, 1], inner.next_port));
            let route = Route {
                tx: in_tx,
                early: Arc::clone(&early),
            };
            inner.routes.insert(addr, route);
            (addr, settings, in_rx, out_tx, out_rx)
        };
        let net = self.clone();
        let mover = Box::pin(async move {
            while let Some((to, bytes)) = out_rx.recv().await {
                let (target, rewriter) = {
                    let mut inner = net.lock();
                    if let Some(c) = inner.captured.as_mut() {
                        c.push((local_addr, to, bytes.clone()));
                    }
                    let lost = inner.roll() < inner.loss
                        || inner.isolated.contains(&to)
                        || inner.isolated.contains(&local_addr);
                    let target = if lost {
                        inner.dropped += 1;
                        None
                    } else {
                        inner.delivered += 1;
                        inner.routes.get(&to).cloned()
                    };
                    (target, inner.rewriter.clone())
                };
                if let Some(route) = target {
                    let bytes = match rewriter {
                        Some(Rewriter(f)) => f(local_addr, to, bytes),
                        None => bytes,
                    };
                    route.deliver(local_addr, bytes);
                }
            }
            net.lock().routes.remove(&local_addr);
        });
        Transport {
            local_addr,
            inbound: in_rx,
            outbound: out_tx,
            movers: vec![mover],
            early,
            settings,
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

    /// Put a man in the middle (or take it away, with None): from now on
    /// every datagram delivered is what `f(from, to, bytes)` returns.
    pub fn rewrite(&self, f: Option<Arc<RewriteFn>>) {
        self.lock().rewriter = f.map(Rewriter);
    }

    /// Start recording every datagram sent (as an eavesdropper on the
    /// wire would), or stop and return what was recorded.
    pub fn capture(&self, on: bool) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
        let mut inner = self.lock();
        let got = inner.captured.take().unwrap_or_default();
        if on {
            inner.captured = Some(Vec::new());
        }
        got
    }

    /// Deliver `bytes` to `to` as if `from` had sent them (a replay),
    /// bypassing loss and partitions but not the receiver's early check.
    /// False when nobody is attached at `to`, the early check dropped them
    /// or the receiver's queue is full.
    pub fn inject(&self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) -> bool {
        let target = self.lock().routes.get(&to).cloned();
        target.is_some_and(|route| route.deliver(from, bytes))
    }

    /// Datagrams dropped and delivered so far.
    pub fn stats(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.dropped, inner.delivered)
    }
}

/// Where the in-memory network delivers to one node: its inbound queue,
/// behind its early check.
#[derive(Debug, Clone)]
struct Route {
    tx: mpsc::Sender<Datagram>,
    early: Early,
}

impl Route {
    /// Queue `bytes` from `from` if the early check lets them through and
    /// the queue has room (dropped otherwise, as the UDP reader drops).
    fn deliver(&self, from: SocketAddr, bytes: Vec<u8>) -> bool {
        EarlyCheck::lets_through(&self.early, from, &bytes)
            && self.tx.try_send((from, bytes)).is_ok()
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
