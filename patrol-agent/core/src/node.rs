//! [`Node`]: one mesh member as pure logic, the type both shells drive.
//! It owns `Foca`, the [`SweepCore`], the request-gossip inbox, the
//! departures (members that said they leave), the record of when each
//! member was last heard, join backoff and foca resizing, and glues them
//! together: the channel byte in front of every datagram, eager push of a
//! fresh request, direct spread in small meshes, the membership snapshot a
//! sweep starts from, and what the mesh knows of a finished sweep's silent
//! nodes (when a datagram last came from each, its SWIM state). The sweep
//! protocol itself, the check budget included, is the [`SweepCore`]'s.
//!
//! Inputs are method calls that carry the current time ([`Now`]):
//! `datagram`, `timer`, `checks_done`, `start_sweep`, `set_seeds`,
//! `learn_members`, `leave`, and, with certificates, `set_trust`,
//! `set_bundle`, `learn_peer`. Outputs queue up as [`Output`]s the shell
//! takes with [`Node::next_output`] after every input: datagrams to send
//! (plaintext, channel byte first: the shell seals them), timers to set,
//! checks to run with their budget, sweep progress and results, membership
//! events, audit lines. Nothing here touches a socket, a clock or a
//! runtime: the agent's owner task (`patrol-agent/src/agent/mod.rs`) runs
//! it on tokio and UDP, the simulator (`tests/src/sim/shell.rs`) in virtual
//! time, the unit tests (`node/tests.rs`) by hand.
//!
//! ```text
//!   shell ──datagram/timer/checks_done/start_sweep/leave(now)──▶ Node
//!                                                                 │ foca + SweepCore
//!   shell ◀──────── Output::{Datagram, Timer, RunChecks, ...} ────┘
//! ```

use core::net::SocketAddr;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use foca::{AccumulatingRuntime, Foca, Member, OwnedNotification};
use patrol_model::{CheckOutcome, CompactDocument, Selector, SwimState};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::codec::BincodeCodec;
use crate::identity::NodeId;
use crate::membership::gate::{CertMessage, Gate, GateCounters, Intruder, MAX_HAVE, MAX_WANT};
use crate::membership::proof::{BookSettings, MemberBook};
use crate::membership::roster::{GoneReason, Roster};
pub use crate::membership::wire::SignedLeave;
use crate::membership::{self, Departures, LastHeard, MemberInfo};
use crate::settings::NodeSettings;
use crate::sweep::{
    Effect, GossipShared, MemberView, Peer, RequestGossip, StartSweep, SweepCore, SweepMessage,
    SweepRequest, SweepTimer,
};

/// The first byte of every plaintext datagram: which part of the node it
/// is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Channel {
    /// foca's SWIM traffic (probes, gossip, announces, custom broadcasts).
    Foca = 0,
    /// A direct sweep message (request, answer piece, ack).
    Sweep = 1,
    /// "I am leaving": the sender's name, sent before `leave_cluster`
    /// (with `[trust]`, signed: [`SignedLeave`]).
    Leave = 2,
    /// With `[trust]`: the certificate exchange
    /// ([`CertMessage`](crate::membership::gate::CertMessage)).
    Cert = 3,
    /// With `[trust]`: an operator's signed roster forget
    /// ([`SignedForget`](crate::trust::SignedForget)), passed on once by
    /// the agent the CLI asked.
    Forget = 4,
}

impl Channel {
    pub fn from_byte(b: u8) -> Option<Channel> {
        match b {
            0 => Some(Channel::Foca),
            1 => Some(Channel::Sweep),
            2 => Some(Channel::Leave),
            3 => Some(Channel::Cert),
            4 => Some(Channel::Forget),
            _ => None,
        }
    }
}

/// What a datagram the node sends carries; for counters and the simulator's
/// traffic figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatagramKind {
    /// foca traffic, the request's gossip copies included.
    Foca,
    /// A sweep request sent directly (direct spread or backstop).
    Request,
    /// A piece of an answer to a coordinator.
    Answer,
    /// A coordinator's (or a relay's) ack of an answer piece, or a
    /// coordinator's ack of a relay batch.
    Ack,
    /// A relay's batch of answers to a coordinator.
    Batch,
    /// A leave notice.
    Leave,
    /// A certificate exchange message.
    Cert,
}

pub use crate::clock::Now;

/// A timer the node asked for; opaque to the shell, handed back as is by
/// [`Node::timer`] once `after` has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeTimer {
    Foca(foca::Timer<NodeId>),
    Sweep(SweepTimer),
    /// Announce to the seeds again (while we know nobody), or check that
    /// we still know somebody.
    Rejoin,
}

/// A membership change, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    Up(String),
    Down(String),
    /// The cluster declared us down; we rejoined with this renewed bump.
    Rejoined {
        bump: u64,
    },
    /// Declared down and could not renew (should not happen: `renew` always
    /// succeeds).
    Defunct,
}

/// Entries a drained output queue keeps room for; a burst that grew one
/// past twice this gives the memory back once it is drained (a node that
/// learns 100,000 members would otherwise keep a slot per member in each,
/// and one that joined knowing 64 members 128 outputs' worth: about 37 KiB
/// with foca's queues, which the simulator paid 100,000 times). An input
/// rarely leaves more than a few outputs.
const QUEUE_KEEP: usize = 16;

/// What the shell must do on the node's behalf.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Seal `bytes` (channel byte first) and send them to `to`.
    Datagram {
        to: SocketAddr,
        bytes: Vec<u8>,
        kind: DatagramKind,
    },
    /// Call [`Node::timer`] with `timer` once `after` has passed.
    Timer {
        after: Duration,
        timer: NodeTimer,
    },
    /// Run this node's configured checks matching `selector`, each cut to
    /// `budget`, then call [`Node::checks_done`] with `sweep_id`.
    RunChecks {
        sweep_id: u64,
        selector: Selector,
        budget: Duration,
    },
    /// A sweep this node coordinates made progress.
    Progress {
        sweep_id: u64,
        answered: u64,
        expected: u64,
    },
    /// A sweep this node coordinates is complete (once per sweep).
    Completed {
        sweep_id: u64,
        document: Box<CompactDocument>,
    },
    Member(MemberEvent),
    /// Append this line to the node's audit trail.
    Audit(crate::sweep::AuditEntry),
    /// With `[trust]`: an operator asked to forget a node from the roster
    /// (`action` is `forgot` or `refused`); for the audit trail.
    RosterAudit {
        operator: Option<String>,
        node: String,
        action: &'static str,
        reason: Option<String>,
        peer: Option<SocketAddr>,
    },
}

/// How far a roster forget's signing time may be from the node's clock.
pub const FORGET_WINDOW_MS: u64 = 5 * 60 * 1000;
/// Roster forgets remembered, so a copy is applied once.
const FORGETS_REMEMBERED: usize = 256;

/// Counters kept by the node (the shell adds its own, e.g. datagrams that
/// did not open). `counts()` (in [`crate::counter_list`]) lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Datagrams handed to [`Node::datagram`].
    pub datagrams_in: u64,
    /// Of those, rejected by foca or the sweep decoder, or with an unknown
    /// channel byte.
    pub dropped_malformed: u64,
    pub datagrams_out: u64,
    pub sweeps_coordinated: u64,
    pub checks_runs: u64,
    /// Copies of sweep requests received, by gossip or directly, duplicates
    /// included (the spread's redundancy).
    pub request_copies: u64,
    /// What the sweep core refused, by reason.
    pub sweep: crate::sweep::SweepCounters,
    /// With `[trust]`: what the membership gate counted.
    #[serde(default)]
    pub gate: Option<GateCounters>,
}

type NodeFoca = Foca<NodeId, BincodeCodec, SmallRng, RequestGossip>;

/// One mesh member: foca, the sweep core and the glue between them.
pub struct Node {
    foca: NodeFoca,
    rt: AccumulatingRuntime<NodeId>,
    core: SweepCore,
    /// The gossip handler's clock (set on every call) and copy counter.
    gossip: Arc<GossipShared>,
    settings: NodeSettings,
    departures: Departures,
    /// When each member was last heard from: for a sweep's silent nodes.
    heard: LastHeard,
    seeds: Vec<SocketAddr>,
    rejoin_backoff: Duration,
    size_bucket: usize,
    stats: NodeStats,
    effects: Vec<Effect>,
    out: VecDeque<Output>,
    /// With `[trust]`: the membership gate (proofs, roster, intruders) and
    /// this node's credentials.
    gate: Option<Gate>,
    creds: Option<crate::trust::Credentials>,
    seed: u64,
    forgets: VecDeque<(String, u64)>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("me", &self.foca.identity().name)
            .field("members", &self.foca.num_members())
            .finish()
    }
}

impl Node {
    /// A node with identity `me` that knows nobody yet. `seed` makes every
    /// random choice (foca's and the sweep core's) reproducible.
    pub fn new(me: NodeId, settings: NodeSettings, seed: u64, now: Now) -> Node {
        let shared = Arc::new(GossipShared::default());
        shared.unix_ms.store(now.unix_ms, Ordering::Relaxed);
        let gossip = RequestGossip::new(Arc::clone(&shared));
        let bucket = initial_bucket(&settings, 1);
        let config = membership::foca_config(bucket, settings.foca_payload(), &settings.foca);
        let peer = Peer {
            name: me.name.clone(),
            addr: me.addr,
            tags: me.tags.clone(),
        };
        let core = SweepCore::new(peer, settings.cluster.clone(), settings.sweep.clone(), seed);
        let rng = SmallRng::seed_from_u64(seed);
        let foca = Foca::with_custom_broadcast(me, config, rng, BincodeCodec, gossip);
        Node {
            foca,
            rt: AccumulatingRuntime::new(),
            core,
            gossip: shared,
            rejoin_backoff: settings.rejoin_initial,
            settings,
            departures: Departures::default(),
            heard: LastHeard::default(),
            seeds: Vec::new(),
            size_bucket: bucket,
            stats: NodeStats::default(),
            effects: Vec::new(),
            out: VecDeque::new(),
            gate: None,
            creds: None,
            seed,
            forgets: VecDeque::new(),
        }
    }

    pub fn identity(&self) -> &NodeId {
        self.foca.identity()
    }

    pub fn settings(&self) -> &NodeSettings {
        &self.settings
    }

    pub fn stats(&self) -> NodeStats {
        NodeStats {
            sweep: self.core.counters().clone(),
            gate: self.gate_counters(),
            ..self.stats.clone()
        }
    }

    /// How much the sweep core holds right now (see [`crate::sweep::Held`]).
    pub fn held(&self) -> crate::sweep::Held {
        self.core.held()
    }

    /// Members foca knows (alive or suspect), not counting ourselves.
    pub fn num_members(&self) -> usize {
        self.foca.num_members()
    }

    /// Every member foca holds, down ones included, with its SWIM state.
    pub fn membership(&self) -> impl Iterator<Item = &Member<NodeId>> {
        self.foca.iter_membership_state()
    }

    /// Custom broadcasts (sweep requests) foca still has to send on.
    pub fn gossip_backlog(&self) -> usize {
        self.foca.custom_broadcast_backlog()
    }

    /// The mesh as `patrol members` shows it.
    pub fn members(&self) -> Vec<MemberInfo> {
        membership::member_view(
            self.foca.identity(),
            self.foca.iter_membership_state(),
            &self.departures,
        )
    }

    /// The next thing the shell must do, if any. Call until `None` after
    /// every input.
    pub fn next_output(&mut self) -> Option<Output> {
        let next = self.out.pop_front();
        if next.is_none() && self.out.capacity() > 2 * QUEUE_KEEP {
            // A burst (thousands of members learned at once) is not kept
            // as capacity for good.
            self.out.shrink_to(QUEUE_KEEP);
        }
        next
    }

    /// Join through `seeds` (gossip addresses): announce to each, retried
    /// with backoff while we know nobody, then watched every
    /// `rejoin_watch`. Replaces the seeds of an earlier call; the first
    /// call with seeds starts the rejoin timer.
    pub fn set_seeds(&mut self, now: Now, seeds: Vec<SocketAddr>) {
        let first = self.seeds.is_empty() && !seeds.is_empty();
        self.seeds = seeds;
        if first {
            self.tick(now);
            self.join();
            self.flush(now);
        }
    }

    /// Add members we know of without telling anyone (foca's `apply_many`
    /// without broadcasting): members known from elsewhere, as the
    /// simulator's converged start. Already known members are updated only
    /// when the given state is newer.
    ///
    /// With certificates the caller vouches for these identities (it made
    /// them, with their proofs): they are taken as proven and put on the
    /// roster, down ones included (members known from elsewhere were seen
    /// alive once).
    pub fn learn_members(&mut self, now: Now, members: impl Iterator<Item = Member<NodeId>>) {
        self.tick(now);
        let members: Vec<Member<NodeId>> = members.collect();
        if let Some(gate) = self.gate.as_mut() {
            for m in &members {
                let id = m.id();
                gate.book.vouch(id, 0);
                let how = crate::membership::roster::Sighting::Hearsay;
                gate.roster.seen(id, 0, how, now.unix_ms);
            }
        }
        let _ = self
            .foca
            .apply_many(members.into_iter(), false, &mut self.rt);
        self.flush(now);
    }

    /// A datagram that opened: channel byte, then the payload.
    pub fn datagram(&mut self, now: Now, from: SocketAddr, bytes: &[u8]) {
        self.tick(now);
        self.stats.datagrams_in += 1;
        let Some((&channel, body)) = bytes.split_first() else {
            self.stats.dropped_malformed += 1;
            return;
        };
        match Channel::from_byte(channel) {
            Some(Channel::Foca) => self.foca_packet(now, from, body),
            Some(Channel::Sweep) => match SweepMessage::decode(body) {
                Ok(msg) => {
                    if let SweepMessage::Request(req) = &msg {
                        self.stats.request_copies += 1;
                        if self.misaddressed(req) {
                            self.flush(now);
                            return;
                        }
                    }
                    self.core.handle_message(now, from, msg, &mut self.effects);
                }
                Err(e) => {
                    self.stats.dropped_malformed += 1;
                    tracing::debug!(%from, error = %e, "bad sweep message");
                }
            },
            Some(Channel::Leave) if self.gate.is_some() => self.signed_leave(now, body),
            Some(Channel::Leave) => match std::str::from_utf8(body) {
                Ok(name) => self.departures.record_leave(name),
                Err(_) => self.stats.dropped_malformed += 1,
            },
            Some(Channel::Cert) if self.gate.is_some() => match CertMessage::decode(body) {
                Some(msg) => self.cert_message(now, from, msg),
                None => self.stats.dropped_malformed += 1,
            },
            Some(Channel::Cert) => self.stats.dropped_malformed += 1,
            Some(Channel::Forget) => match crate::trust::SignedForget::decode(body) {
                Some(f) if self.gate.is_some() => {
                    let _ = self.apply_forget(now, &f, Some(from));
                }
                _ => self.stats.dropped_malformed += 1,
            },
            None => self.stats.dropped_malformed += 1,
        }
        // Any datagram that opened shows the sender's agent runs and
        // reaches us (recorded after foca had it, so a joiner counts).
        if self.heard.record(from, now.mono) {
            let members: HashSet<SocketAddr> = self
                .foca
                .iter_membership_state()
                .map(|m| m.id().addr)
                .collect();
            self.heard.retain(|a| members.contains(a));
        }
        self.flush(now);
    }

    /// When a datagram last arrived from `addr` (monotonic), if one did
    /// since the member was last pruned.
    pub fn last_heard(&self, addr: &SocketAddr) -> Option<Duration> {
        self.heard.get(addr)
    }

    /// A timer set by an [`Output::Timer`] is due.
    pub fn timer(&mut self, now: Now, timer: NodeTimer) {
        self.tick(now);
        match timer {
            NodeTimer::Foca(t) => {
                if let Err(e) = self.foca.handle_timer(t, &mut self.rt) {
                    tracing::debug!(error = %e, "foca timer");
                }
            }
            NodeTimer::Sweep(t) => self.core.handle_timer(now, t, &mut self.effects),
            NodeTimer::Rejoin => self.join(),
        }
        self.flush(now);
    }

    /// The checks of an [`Output::RunChecks`] finished.
    ///
    /// With certificates, every answer also lists the agents this node saw
    /// claim a name without its proof within the last hour
    /// (`patrol.intruder`, one `fail` each).
    pub fn checks_done(&mut self, now: Now, sweep_id: u64, mut outcomes: Vec<CheckOutcome>) {
        self.tick(now);
        for i in self.intruders(now) {
            outcomes.push(crate::sweep::outcomes::intruder(&i, now.unix_ms));
        }
        self.core
            .checks_done(now, sweep_id, outcomes, &mut self.effects);
        self.flush(now);
    }

    /// Coordinate a sweep: the expected set is every member foca holds
    /// (alive or suspect as alive, down as down) after the node filter;
    /// with certificates, the roster. Returns the sweep id; progress and
    /// the document come as outputs. With certificates, a sweep without a
    /// valid operator authorization is refused.
    ///
    /// The request goes out first, built from a count of the members and
    /// the ones that may relay; the expected set is snapshot by
    /// [`Node::snapshot_sweeps`], which the caller runs once this call's
    /// outputs are on their way, and which any later input runs first
    /// otherwise (no answer is ever taken in before it).
    pub fn start_sweep(
        &mut self,
        now: Now,
        spec: StartSweep,
    ) -> Result<u64, crate::sweep::StartRefused> {
        self.tick(now);
        let head = self.start_head(now, &spec.node_filter);
        let id = match self.gate.as_ref() {
            None => self.core.open(now, spec, head, &mut self.effects),
            // With a roster the candidates are its entries, and a relay
            // drawn from them must be alive to SWIM at its rostered
            // address, under its rostered name: checked for the few drawn
            // (a lookup each in foca's address index), not for every
            // member.
            Some(gate) => {
                let foca = &self.foca;
                let filter = spec.node_filter.clone();
                let mut accept = |addr: SocketAddr| {
                    foca.member_at(&addr).is_some_and(|m| {
                        m.state() != foca::State::Down
                            && m.id().tags.matches(&filter)
                            && gate
                                .roster
                                .get(&m.id().name)
                                .is_some_and(|e| e.addr == addr)
                    })
                };
                self.core
                    .open_checking(now, spec, head, &mut accept, &mut self.effects)
            }
        };
        if id.is_ok() {
            self.stats.sweeps_coordinated += 1;
        }
        self.flush(now);
        id
    }

    /// Snapshot the expected set of every sweep [`Node::start_sweep`]
    /// opened (none most of the time).
    pub fn snapshot_sweeps(&mut self, now: Now) {
        self.tick(now);
        self.flush(now);
    }

    /// The members `filter` keeps and the ones that may relay, without
    /// copying any identity.
    fn start_head(&mut self, now: Now, filter: &Tags) -> crate::sweep::StartHead {
        let me = self.foca.identity();
        let mut head = crate::sweep::StartHead {
            members: usize::from(me.tags.matches(filter)),
            relay_candidates: Vec::new(),
        };
        let me = me.name.clone();
        match self.gate.as_mut() {
            None => {
                for m in self.foca.iter_membership_state() {
                    let id = m.id();
                    if id.name == me || !id.tags.matches(filter) {
                        continue;
                    }
                    head.members += 1;
                    if m.state() != foca::State::Down {
                        head.relay_candidates.push(id.addr);
                    }
                }
            }
            Some(gate) => {
                gate.roster.expire(now.unix_ms);
                // One walk over the roster, in order: no member is looked
                // up here (a tree lookup per member took 76 ms at 100,000
                // in the simulator); `start_sweep` checks the relays drawn.
                for e in gate.roster.entries() {
                    if e.name != me && e.tags.matches(filter) {
                        head.members += 1;
                        head.relay_candidates.push(e.addr);
                    }
                }
            }
        }
        head
    }

    /// The expected set of the sweeps opened and not snapshot yet.
    fn snapshot_opened(&mut self, now: Now) {
        let ids = self.core.awaiting_snapshot();
        for id in ids {
            let members = match self.gate.as_mut() {
                None => membership_snapshot(self.foca.iter_membership_state()),
                Some(gate) => roster_snapshot(&gate.roster, self.foca.iter_membership_state()),
            };
            self.core.snapshot(now, id, members, &mut self.effects);
        }
    }

    /// Run with certificates (see [`crate::sweep::SweepCore::set_trust`]):
    /// this node's identity is signed, and membership goes through the
    /// [`Gate`] (proven identities, the roster). Call before the node
    /// joins (`set_seeds`, `learn_members`): foca starts again with the
    /// signed identity.
    pub fn set_trust(
        &mut self,
        creds: crate::trust::Credentials,
        bundle: crate::trust::TrustBundle,
        now: Now,
    ) {
        let cluster = self.settings.cluster.clone();
        let signer = Arc::new(crate::identity::IdentitySigner::new(
            creds.key.clone(),
            crate::trust::cert_digest(&creds.cert),
            &cluster,
        ));
        let me = self.foca.identity().clone().signed(signer);
        // Requests gossiped to the foca being replaced are not checked.
        self.gossip.clear_inbound();
        let gossip = RequestGossip::new(Arc::clone(&self.gossip));
        let config = membership::foca_config(
            self.size_bucket,
            self.settings.foca_payload(),
            &self.settings.foca,
        );
        let rng = SmallRng::seed_from_u64(self.seed);
        self.foca = Foca::with_custom_broadcast(me, config, rng, BincodeCodec, gossip);
        let mut book = MemberBook::new(
            &cluster,
            bundle.clone(),
            BookSettings {
                capacity: self.settings.roster_capacity,
                bump_slack: self.settings.bump_slack,
                address_hold: self.settings.address_hold,
            },
        );
        if let Err(e) = book.learn_cert(&creds.cert, now.unix_ms / 1000) {
            tracing::warn!(error = %e, "this node's own certificate is not accepted by its bundle");
        }
        let roster = Roster::new(self.settings.roster_capacity, self.settings.roster_expiry);
        self.gate = Some(Gate::new(book, roster, creds.key.clone()));
        self.creds = Some(creds.clone());
        let own = crate::trust::cert_digest(&creds.cert);
        self.core.set_trust(creds, bundle);
        // Our own too: as a coordinator we check our own answer's proof.
        self.derive_keys(&[own]);
    }

    /// A reloaded CA bundle or deny list: proofs are checked again, and
    /// nodes whose certificate is revoked leave the roster.
    pub fn set_bundle(&mut self, now: Now, bundle: crate::trust::TrustBundle) {
        if let Some(gate) = self.gate.as_mut() {
            let revoked = bundle.revocations().clone();
            gate.book.set_bundle(bundle.clone());
            for name in gate.roster.revoke(|s| revoked.contains(s), now.unix_ms) {
                tracing::info!(node = %name, "certificate revoked: the node leaves the roster");
            }
            if let Some(creds) = self.creds.as_ref() {
                let _ = gate.book.learn_cert(&creds.cert, now.unix_ms / 1000);
            }
        }
        self.core.set_bundle(bundle);
    }

    /// A renewed certificate (enrollment): from now on this node proves
    /// itself with `creds` and `bundle` (which must accept it). Its
    /// identity is renewed as after a rejoin (the bump moves on, signed
    /// with the new certificate's digest), so peers learn the new
    /// certificate from the next packet; the old identity is announced
    /// down by foca itself. No effect without `[trust]`.
    pub fn renew_credentials(
        &mut self,
        now: Now,
        creds: crate::trust::Credentials,
        bundle: crate::trust::TrustBundle,
    ) {
        let Some(gate) = self.gate.as_mut() else {
            return;
        };
        gate.book.set_bundle(bundle.clone());
        if let Err(e) = gate.book.learn_cert(&creds.cert, now.unix_ms / 1000) {
            tracing::warn!(error = %e, "the renewed certificate is not accepted by the bundle; keeping the current one");
            return;
        }
        let signer = Arc::new(crate::identity::IdentitySigner::new(
            creds.key.clone(),
            crate::trust::cert_digest(&creds.cert),
            &self.settings.cluster,
        ));
        let mut next = self.foca.identity().clone();
        next.bump = next.bump.saturating_add(1);
        let next = next.signed(signer);
        if let Err(e) = self.foca.change_identity(next, &mut self.rt) {
            tracing::warn!(error = ?e, "cannot renew the identity with the new certificate");
        }
        self.creds = Some(creds.clone());
        self.core.set_trust(creds, bundle);
        self.flush(now);
    }

    /// With `[trust]`: the roster (None without).
    pub fn roster(&self) -> Option<&Roster> {
        self.gate.as_ref().map(|g| &g.roster)
    }

    /// With certificates: keep `certs` as checked without checking them
    /// (certificates the caller vouches for: the simulator's converged
    /// start, next to [`Node::learn_members`]).
    ///
    /// With `derive_keys`, their pair keys are derived as when the node
    /// learns a certificate (the simulator asks it of the coordinator
    /// only: the set-up of 100,000 nodes would otherwise derive millions).
    pub fn vouch_certs<'a>(
        &mut self,
        certs: impl Iterator<Item = &'a crate::trust::CompactCert>,
        derive_keys: bool,
    ) {
        let mut learned = Vec::new();
        if let Some(gate) = self.gate.as_mut() {
            for c in certs {
                gate.book.vouch_cert(c);
                if derive_keys {
                    learned.push(c.digest());
                }
            }
        }
        self.derive_keys(&learned);
    }

    /// With `[trust]`: the roster for `patrol roster`.
    pub fn roster_view(&self, now: Now) -> Option<crate::membership::roster::RosterView> {
        use crate::membership::roster::{RosterMember, RosterView};
        let gate = self.gate.as_ref()?;
        let swim: std::collections::HashMap<String, &'static str> = self
            .members()
            .into_iter()
            .map(|m| (m.name, m.state.as_str()))
            .collect();
        Some(RosterView {
            node: self.foca.identity().name.clone(),
            members: gate
                .roster
                .entries()
                .map(|e| RosterMember {
                    entry: e.to_entry(),
                    swim: swim.get(e.name).copied().unwrap_or("absent").to_string(),
                })
                .collect(),
            gone: gate.roster.gone().cloned().collect(),
            intruders: gate.intruders(now.unix_ms),
            expiry_ms: gate.roster.expiry().as_millis() as u64,
            capacity: gate.roster.capacity() as u64,
            refused_full: gate.roster.refused_full,
        })
    }

    /// With `[trust]`: replace the roster with one loaded from disk.
    pub fn set_roster(&mut self, roster: Roster) {
        if let Some(gate) = self.gate.as_mut() {
            gate.roster = roster;
        }
    }

    /// With `[trust]`: the roster as its file's text, when it changed since
    /// the last call (the shell writes it).
    pub fn roster_to_save(&mut self, now: Now) -> Option<String> {
        let me = self.foca.identity().name.clone();
        let cluster = self.settings.cluster.clone();
        let gate = self.gate.as_mut()?;
        gate.roster.expire(now.unix_ms);
        if !gate.roster.dirty() {
            return None;
        }
        gate.roster.saved();
        Some(gate.roster.to_text(&cluster, &me, now.unix_ms))
    }

    /// With `[trust]`: an operator's signed `patrol roster forget`, from
    /// the control channel (`peer` None: then passed on to every member)
    /// or from a member. Checked, applied once, audited either way.
    /// Returns whether the node was on the roster, or why it was refused.
    pub fn forget(
        &mut self,
        now: Now,
        forget: crate::trust::SignedForget,
        peer: Option<SocketAddr>,
    ) -> Result<bool, String> {
        self.tick(now);
        let result = self.apply_forget(now, &forget, peer);
        if result.is_ok() && peer.is_none() {
            let bytes = forget.encode();
            let to: Vec<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
            for addr in to {
                self.emit(addr, Channel::Forget, &bytes, DatagramKind::Leave);
            }
        }
        self.flush(now);
        result
    }

    fn apply_forget(
        &mut self,
        now: Now,
        forget: &crate::trust::SignedForget,
        peer: Option<SocketAddr>,
    ) -> Result<bool, String> {
        let Some(gate) = self.gate.as_mut() else {
            return Err("this agent runs without [trust]: it has no roster".to_string());
        };
        let key = (forget.node.clone(), forget.signed_at_unix_ms);
        if self.forgets.contains(&key) {
            return Ok(false);
        }
        let checked = forget.check(
            gate.book.bundle(),
            &self.settings.cluster,
            now.unix_ms,
            FORGET_WINDOW_MS,
        );
        let operator = match checked {
            Ok(op) => op,
            Err(e) => {
                let reason = e.to_string();
                self.out.push_back(Output::RosterAudit {
                    operator: None,
                    node: forget.node.clone(),
                    action: "refused",
                    reason: Some(reason.clone()),
                    peer,
                });
                return Err(reason);
            }
        };
        if self.forgets.len() >= FORGETS_REMEMBERED {
            self.forgets.pop_front();
        }
        self.forgets.push_back(key);
        gate.book.forget(&forget.node);
        let was = gate
            .roster
            .remove(&forget.node, GoneReason::Forgotten, now.unix_ms);
        self.out.push_back(Output::RosterAudit {
            operator: Some(operator),
            node: forget.node.clone(),
            action: "forgot",
            reason: (!was).then(|| "not on this node's roster".to_string()),
            peer,
        });
        Ok(was)
    }

    /// With `[trust]`: what the membership gate counted.
    pub fn gate_counters(&self) -> Option<GateCounters> {
        self.gate.as_ref().map(|g| g.counters.clone())
    }

    /// With `[trust]`: agents that claimed a name without its proof, seen
    /// within the last hour.
    pub fn intruders(&self, now: Now) -> Vec<Intruder> {
        self.gate
            .as_ref()
            .map(|g| g.intruders(now.unix_ms))
            .unwrap_or_default()
    }

    /// Check a peer's certificate and derive the pair key with it ahead of
    /// its answers, as a coordinator that swept before has it (see
    /// [`crate::sweep::SweepCore::learn_peer`]).
    pub fn learn_peer(
        &mut self,
        now: Now,
        cert: &crate::trust::Certificate,
    ) -> Result<(), crate::trust::TrustError> {
        self.core.learn_peer(cert, now.unix_ms)
    }

    /// Pair keys this node derived (certificate checks plus X25519).
    pub fn pair_keys_derived(&self) -> u64 {
        self.core.pair_keys_derived()
    }

    /// With certificates: this node's peer epoch as a coordinator.
    pub fn peer_epoch(&self) -> Option<u64> {
        self.core.peer_epoch()
    }

    /// With certificates: `coordinator` has this node's certificate in its
    /// peer epoch `epoch` (what a node that answered it before knows).
    pub fn mark_told(&mut self, coordinator: &str, epoch: u64) {
        self.core.mark_told(coordinator, epoch);
    }

    /// The relays a sweep this node coordinates named (empty in a small
    /// mesh, or once the sweep is over).
    pub fn relays(&self, sweep_id: u64) -> &[SocketAddr] {
        self.core.relays(sweep_id)
    }

    /// Leave the mesh: a leave notice straight to every member (they show
    /// us `left` at once), then foca's `leave_cluster`.
    pub fn leave(&mut self, now: Now) {
        self.tick(now);
        let me = self.foca.identity().name.clone();
        let notice = match self.creds.as_ref() {
            None => me.into_bytes(),
            Some(creds) => {
                use ed25519_dalek::Signer;
                let bump = self.foca.identity().bump;
                let bytes = SignedLeave::signed_bytes(&self.settings.cluster, &me, bump);
                let leave = SignedLeave {
                    name: me,
                    bump,
                    sig: creds.key.sign(&bytes).to_bytes().to_vec(),
                };
                bincode::serde::encode_to_vec(&leave, bincode::config::standard())
                    .unwrap_or_default()
            }
        };
        let targets: Vec<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
        for to in targets {
            self.emit(to, Channel::Leave, &notice, DatagramKind::Leave);
        }
        let _ = self.foca.leave_cluster(&mut self.rt);
        while let Some((to, data)) = self.rt.to_send() {
            self.send_foca(now, &to, &data);
        }
    }

    /// A foca packet from `from`: through the gate with certificates, then
    /// to foca; fresh sweep requests it carried go to the core.
    fn foca_packet(&mut self, now: Now, from: SocketAddr, body: &[u8]) {
        let filtered;
        let body = match self.gate.as_mut() {
            None => body,
            Some(gate) => {
                let me = self.foca.identity().clone();
                let f = gate.filter(now, from, &me, body, self.core.peer_keys());
                self.want_certs(from, f.want);
                match f.packet {
                    Some(p) => {
                        filtered = p;
                        &filtered[..]
                    }
                    None => return,
                }
            }
        };
        if let Err(e) = self.foca.handle_data(body, &mut self.rt) {
            if !matches!(e, foca::Error::DataFromOurselves) {
                self.stats.dropped_malformed += 1;
                tracing::debug!(%from, error = %e, "foca rejected a datagram");
            }
        }
        self.drain_gossip(now);
    }

    /// A foca packet for `to`; with certificates, tagged under our pair key
    /// with `to` (not sent while we have no certificate of it).
    fn send_foca(&mut self, now: Now, to: &NodeId, data: &[u8]) {
        match self.gate.as_mut() {
            None => self.emit(to.addr, Channel::Foca, data, DatagramKind::Foca),
            Some(gate) => match gate.tag_for(now, to, data, self.core.peer_keys()) {
                Ok(tag) => {
                    let mut tagged = Vec::with_capacity(data.len() + tag.len());
                    tagged.extend_from_slice(data);
                    tagged.extend_from_slice(&tag);
                    self.emit(to.addr, Channel::Foca, &tagged, DatagramKind::Foca);
                }
                // Ask the member for the certificate it was proven by;
                // foca sends to it again later.
                Err(Some(digest)) => self.want_certs(to.addr, vec![digest]),
                Err(None) => {}
            },
        }
    }

    /// With certificates: `req` names a coordinator whose latest proven
    /// address is another (a captured request re-aimed at someone else's
    /// address, so that the answers go there): refused and counted.
    fn misaddressed(&mut self, req: &SweepRequest) -> bool {
        let me = &self.foca.identity().name;
        let Some(gate) = self.gate.as_mut() else {
            return false;
        };
        let c = &req.coordinator;
        let wrong = if &c.name == me {
            c.addr != self.foca.identity().addr
        } else {
            gate.roster.get(&c.name).is_some_and(|e| e.addr != c.addr)
        };
        if wrong {
            gate.counters.requests_misaddressed += 1;
            tracing::debug!(coordinator = %c.name, addr = %c.addr, "request names another address");
        }
        wrong
    }

    /// With certificates: send our certificate to `to` (who then sends
    /// its own back if ours was new to it).
    fn introduce(&mut self, to: SocketAddr) {
        if self.gate.is_some() {
            self.want_certs_from(to, Vec::new(), true);
        }
    }

    /// Ask `from` for the certificates `want` names, with ours.
    fn want_certs(&mut self, from: SocketAddr, want: Vec<crate::trust::CertDigest>) {
        self.want_certs_from(from, want, false);
    }

    fn want_certs_from(
        &mut self,
        to: SocketAddr,
        want: Vec<crate::trust::CertDigest>,
        always: bool,
    ) {
        let Some(creds) = self.creds.as_ref() else {
            return;
        };
        let mine = Box::new(creds.cert.clone());
        if want.is_empty() && always {
            let msg = CertMessage::Want {
                mine,
                want: Vec::new(),
            };
            self.emit(to, Channel::Cert, &msg.encode(), DatagramKind::Cert);
            return;
        }
        for chunk in want.chunks(MAX_WANT) {
            let msg = CertMessage::Want {
                mine: mine.clone(),
                want: chunk.to_vec(),
            };
            self.emit(to, Channel::Cert, &msg.encode(), DatagramKind::Cert);
        }
    }

    /// Certificates the book just learned: the pair key with each member
    /// is derived now, once, for both the sweep (its answers' proofs) and
    /// the gate (its membership packets' tags). Learning a member already
    /// costs two signature checks; this adds an X25519, so a coordinator's
    /// first sweep does not pay one per node.
    fn derive_keys(&mut self, learned: &[crate::trust::CertDigest]) {
        let Some(gate) = self.gate.as_mut() else {
            return;
        };
        for digest in learned {
            let Some(cert) = gate.book.held(digest).cloned() else {
                continue;
            };
            // One cache for the sweep and the gate.
            let _ = self.core.adopt_peer(*digest, cert);
        }
    }

    /// A certificate exchange message from `from`.
    fn cert_message(&mut self, now: Now, from: SocketAddr, msg: CertMessage) {
        let (mine, learn, want) = match msg {
            CertMessage::Want { mine, want } => (*mine, Vec::new(), Some(want)),
            CertMessage::Have { mine, certs } => (*mine, certs, None),
        };
        let learn: Vec<crate::trust::Certificate> =
            std::iter::once(mine.clone()).chain(learn).collect();
        let mut introduce = false;
        let mut released = Vec::new();
        let mut packets = Vec::new();
        let mut learned = Vec::new();
        if let Some(gate) = self.gate.as_mut() {
            for cert in &learn {
                let known = gate.book.has_cert(&crate::trust::cert_digest(cert));
                match gate.book.learn_cert(cert, now.unix_ms / 1000) {
                    Ok(digest) if !known => {
                        gate.counters.certs_learned += 1;
                        learned.push(digest);
                        introduce = want.is_some();
                        released.extend(gate.take_pending(&digest));
                        packets.extend(gate.take_pending_packets(&digest));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        gate.counters.certs_refused += 1;
                        tracing::debug!(%from, error = %e, "refused a certificate");
                    }
                }
            }
        }
        self.derive_keys(&learned);
        // The sender's own certificate was checked above: it is who
        // speaks from that address (a seed we know by address only).
        let introduced = self.gate.as_mut().is_some_and(|gate| {
            let digest = crate::trust::cert_digest(&mine);
            let known = gate.book.has_cert(&digest);
            if known {
                gate.introduced(from, digest);
            }
            known
        });
        if let (Some(want), Some(creds)) = (want, self.creds.as_ref()) {
            let own = Box::new(creds.cert.clone());
            let certs: Vec<crate::trust::Certificate> = self
                .gate
                .as_ref()
                .map(|gate| want.iter().filter_map(|d| gate.book.cert(d)).collect())
                .unwrap_or_default();
            // An empty list is an introduction: always answered with
            // ours (the asker may have restarted and forgotten it).
            if introduce || want.is_empty() || !certs.is_empty() {
                let mut chunks: Vec<Vec<crate::trust::Certificate>> =
                    certs.chunks(MAX_HAVE).map(|c| c.to_vec()).collect();
                if chunks.is_empty() {
                    chunks.push(Vec::new());
                }
                for chunk in chunks {
                    let msg = CertMessage::Have {
                        mine: own.clone(),
                        certs: chunk,
                    };
                    self.emit(from, Channel::Cert, &msg.encode(), DatagramKind::Cert);
                }
            }
        }
        // A seed that introduced itself while we know nobody: announce to
        // it now rather than at the next join attempt.
        if introduced && self.foca.num_members() == 0 && self.seeds.contains(&from) {
            let _ = self
                .foca
                .announce(NodeId::seed_placeholder(from), &mut self.rt);
        }
        if !released.is_empty() {
            // Checked again now that the certificate is known, then applied
            // as if they had just arrived.
            let me = self.foca.identity().clone();
            let mut admitted = Vec::new();
            if let Some(gate) = self.gate.as_mut() {
                for (sender, m) in released {
                    if gate.recheck(now, sender, &me, &m) {
                        admitted.push(m);
                    }
                }
            }
            let _ = self
                .foca
                .apply_many(admitted.into_iter(), true, &mut self.rt);
        }
        for (sender, packet) in packets {
            self.foca_packet(now, sender, &packet);
        }
    }

    /// A leave notice with certificates: taken only with the node's
    /// signature over its current identity's bump.
    fn signed_leave(&mut self, now: Now, body: &[u8]) {
        let Some(gate) = self.gate.as_mut() else {
            return;
        };
        let config = bincode::config::standard().with_limit::<1024>();
        let leave: Option<SignedLeave> = bincode::serde::decode_from_slice(body, config)
            .ok()
            .filter(|(_, used)| *used == body.len())
            .map(|(l, _)| l);
        let Some(leave) = leave else {
            self.stats.dropped_malformed += 1;
            return;
        };
        let bytes = SignedLeave::signed_bytes(gate.book.cluster(), &leave.name, leave.bump);
        let current = gate.book.bump_of(&leave.name) == Some(leave.bump);
        if !current || !gate.book.verify_by(&leave.name, &bytes, &leave.sig) {
            gate.counters.leaves_refused += 1;
            return;
        }
        gate.book.forget(&leave.name);
        gate.roster
            .remove(&leave.name, GoneReason::Left, now.unix_ms);
        self.departures.record_leave(&leave.name);
    }

    /// Every input starts here: the clock, then the expected set of a
    /// sweep opened by the previous call, before anything else is taken in.
    fn tick(&mut self, now: Now) {
        self.gossip.unix_ms.store(now.unix_ms, Ordering::Relaxed);
        if self.core.coordinating() > 0 {
            self.snapshot_opened(now);
        }
    }

    fn emit(&mut self, to: SocketAddr, channel: Channel, payload: &[u8], kind: DatagramKind) {
        let mut bytes = Vec::with_capacity(payload.len() + 1);
        bytes.push(channel as u8);
        bytes.extend_from_slice(payload);
        self.stats.datagrams_out += 1;
        self.out.push_back(Output::Datagram { to, bytes, kind });
    }

    /// Announce to every seed; retried with backoff while we know nobody.
    fn join(&mut self) {
        if self.seeds.is_empty() {
            return;
        }
        if self.foca.num_members() == 0 {
            let me = self.foca.identity().addr;
            for seed in self.seeds.clone() {
                if seed != me {
                    // With certificates, ours goes first, so the seed can
                    // check our announce (and sends its own back).
                    self.introduce(seed);
                    let _ = self
                        .foca
                        .announce(NodeId::seed_placeholder(seed), &mut self.rt);
                }
            }
            self.out.push_back(Output::Timer {
                after: self.rejoin_backoff,
                timer: NodeTimer::Rejoin,
            });
            self.rejoin_backoff = (self.rejoin_backoff * 2).min(self.settings.rejoin_max);
        } else {
            self.rejoin_backoff = self.settings.rejoin_initial;
            // Keep watching: a node cut off from everyone rejoins through
            // its seeds.
            self.out.push_back(Output::Timer {
                after: self.settings.rejoin_watch,
                timer: NodeTimer::Rejoin,
            });
        }
    }

    /// New requests that arrived by gossip go to the core; those it vouches
    /// for are added back as our own broadcast and pushed on at once (eager
    /// push) instead of waiting for the gossip tick. The others stop here.
    fn drain_gossip(&mut self, now: Now) {
        let mut fresh = false;
        while let Some((req, from)) = self.gossip.take_inbound() {
            if self.misaddressed(&req) {
                continue;
            }
            let bytes = req.encode();
            let id = req.id;
            if self.core.handle_gossiped(now, req, from, &mut self.effects) {
                fresh |= self.vouch(id, &bytes);
            }
        }
        if fresh {
            self.eager_push();
        }
    }

    /// Add the request `bytes` (sweep `id`), which this node checked, as a
    /// broadcast: the gossip handler takes it without handing it back.
    fn vouch(&mut self, id: u64, bytes: &[u8]) -> bool {
        *self
            .gossip
            .vouching
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(id);
        let added = self.foca.add_broadcast(bytes);
        *self
            .gossip
            .vouching
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        match added {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(error = %e, "cannot spread the sweep request");
                false
            }
        }
    }

    fn eager_push(&mut self) {
        for _ in 0..self.settings.eager_push_rounds {
            let _ = self.foca.broadcast(&mut self.rt);
        }
    }

    /// Move everything foca and the core produced to the output queue,
    /// until neither has anything left.
    fn flush(&mut self, now: Now) {
        self.stats.request_copies += self.gossip.copies.swap(0, Ordering::Relaxed);
        loop {
            let mut progressed = false;
            while let Some((to, data)) = self.rt.to_send() {
                progressed = true;
                self.send_foca(now, &to, &data);
            }
            while let Some((after, timer)) = self.rt.to_schedule() {
                progressed = true;
                self.out.push_back(Output::Timer {
                    after,
                    timer: NodeTimer::Foca(timer),
                });
            }
            while let Some(n) = self.rt.to_notify() {
                progressed = true;
                self.on_notification(now, n);
            }
            for effect in std::mem::take(&mut self.effects) {
                progressed = true;
                self.on_effect(now, effect);
            }
            if !progressed {
                break;
            }
        }
        self.rt.release(QUEUE_KEEP);
    }

    fn on_notification(&mut self, now: Now, n: OwnedNotification<NodeId>) {
        match n {
            OwnedNotification::MemberUp(id) => {
                self.departures.record_alive(&id.name);
                self.resize();
                self.out
                    .push_back(Output::Member(MemberEvent::Up(id.name.clone())));
            }
            OwnedNotification::MemberDown(id) => {
                self.core.member_down(now, &id.name, &mut self.effects);
                self.resize();
                self.out
                    .push_back(Output::Member(MemberEvent::Down(id.name.clone())));
            }
            OwnedNotification::Rename(_, new) => self.departures.record_alive(&new.name),
            OwnedNotification::Rejoin(id) => self
                .out
                .push_back(Output::Member(MemberEvent::Rejoined { bump: id.bump })),
            OwnedNotification::Defunct => self.out.push_back(Output::Member(MemberEvent::Defunct)),
            _ => {}
        }
    }

    /// Re-apply foca settings when the mesh doubles or halves.
    fn resize(&mut self) {
        let bucket = initial_bucket(&self.settings, self.foca.num_members() + 1);
        if bucket != self.size_bucket {
            self.size_bucket = bucket;
            let config =
                membership::foca_config(bucket, self.settings.foca_payload(), &self.settings.foca);
            if let Err(e) = self.foca.set_config(config) {
                tracing::warn!(error = %e, "could not re-apply foca settings");
            }
        }
    }

    fn on_effect(&mut self, now: Now, effect: Effect) {
        match effect {
            Effect::Spread(req) => self.spread(req),
            Effect::Send { to, msg } => {
                let kind = match &msg {
                    SweepMessage::Request(_) => DatagramKind::Request,
                    SweepMessage::Answer(_) => DatagramKind::Answer,
                    SweepMessage::Ack { .. } | SweepMessage::BatchAck { .. } => DatagramKind::Ack,
                    SweepMessage::Batch(_) => DatagramKind::Batch,
                };
                self.emit(to, Channel::Sweep, &msg.encode(), kind);
            }
            Effect::Schedule { after, timer } => self.out.push_back(Output::Timer {
                after,
                timer: NodeTimer::Sweep(timer),
            }),
            Effect::RunChecks {
                sweep_id,
                selector,
                budget,
            } => {
                self.stats.checks_runs += 1;
                self.out.push_back(Output::RunChecks {
                    sweep_id,
                    selector,
                    budget,
                });
            }
            Effect::Progress {
                sweep_id,
                answered,
                expected,
            } => self.out.push_back(Output::Progress {
                sweep_id,
                answered,
                expected,
            }),
            Effect::Completed {
                sweep_id,
                mut document,
            } => {
                self.explain_silence(now, &mut document);
                self.list_gone(&mut document);
                self.out.push_back(Output::Completed { sweep_id, document })
            }
            Effect::Audit(entry) => self.out.push_back(Output::Audit(entry)),
        }
    }

    /// What the mesh knows of each silent node of a finished sweep (the
    /// sweep core filled in the backstop requests): when a datagram from
    /// it last arrived, and its SWIM state now. A name foca holds more than
    /// once (a restart under the same name) takes its liveliest identity
    /// and the latest datagram from any of its addresses.
    fn explain_silence(&self, now: Now, doc: &mut CompactDocument) {
        if !doc.nodes.iter().any(|n| n.silence.is_some()) {
            return;
        }
        let mut known: std::collections::HashMap<&str, (SwimState, Vec<SocketAddr>)> =
            std::collections::HashMap::new();
        for m in self.foca.iter_membership_state() {
            let state = match m.state() {
                foca::State::Alive => SwimState::Alive,
                foca::State::Suspect => SwimState::Suspect,
                foca::State::Down => SwimState::Down,
            };
            let entry = known
                .entry(m.id().name.as_str())
                .or_insert((SwimState::Down, Vec::new()));
            if liveliness(state) > liveliness(entry.0) {
                entry.0 = state;
            }
            entry.1.push(m.id().addr);
        }
        for node in &mut doc.nodes {
            let Some(silence) = node.silence.as_mut() else {
                continue;
            };
            let (swim, mut addrs) = known
                .get(node.name.as_str())
                .cloned()
                .unwrap_or((SwimState::Unknown, Vec::new()));
            addrs.extend(node.addr.parse::<SocketAddr>().ok());
            silence.swim = swim;
            silence.last_heard_ago_ms = addrs
                .iter()
                .filter_map(|a| self.heard.get(a))
                .max()
                .map(|at| now.mono.saturating_sub(at).as_millis() as u64);
        }
    }

    /// With certificates: the nodes that left the roster (within the
    /// sweep's node filter), with when they were last seen.
    fn list_gone(&self, doc: &mut CompactDocument) {
        let Some(gate) = self.gate.as_ref() else {
            return;
        };
        doc.gone = gate
            .roster
            .gone()
            .filter(|g| g.entry.tags.matches(&doc.node_filter))
            .filter(|g| !doc.nodes.iter().any(|n| n.name == g.entry.name))
            .map(|g| patrol_model::GoneNode {
                name: g.entry.name.clone(),
                addr: g.entry.addr.to_string(),
                reason: g.reason.as_str().to_string(),
                last_seen_unix_ms: g.entry.last_seen_unix_ms,
                gone_unix_ms: g.gone_unix_ms,
            })
            .collect();
    }

    /// A request this node coordinates: into foca's broadcasts and pushed
    /// at once, plus a direct copy to every member in a small mesh.
    fn spread(&mut self, req: SweepRequest) {
        if self.vouch(req.id, &req.encode()) {
            self.eager_push();
        }
        if self.foca.num_members() <= self.settings.direct_spread_limit {
            let direct = SweepMessage::Request(req).encode();
            let members: Vec<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
            for to in members {
                self.emit(to, Channel::Sweep, &direct, DatagramKind::Request);
            }
        }
    }
}

/// The size foca is configured for: the next power of two of the member
/// count, or the configured cluster size when that is larger.
fn initial_bucket(settings: &NodeSettings, members: usize) -> usize {
    membership::size_bucket(members.max(settings.cluster_size_hint.unwrap_or(0)))
}

/// The sweep's view of foca's member list: alive or suspect is `alive`,
/// down is not (foca keeps down members for `remove_down_after`).
fn membership_snapshot<'a>(
    members: impl Iterator<Item = &'a foca::Member<NodeId>>,
) -> Vec<MemberView> {
    members
        .map(|m| MemberView {
            peer: Peer {
                name: m.id().name.clone(),
                addr: m.id().addr,
                tags: m.id().tags.clone(),
            },
            alive: m.state() != foca::State::Down,
            rostered: false,
        })
        .collect()
}

/// With certificates, the expected set is the roster: every node on it,
/// at its last proven address and tags, alive when foca counts its name
/// alive or suspect, and asked directly otherwise.
fn roster_snapshot<'a>(
    roster: &Roster,
    members: impl Iterator<Item = &'a foca::Member<NodeId>>,
) -> Vec<MemberView> {
    let alive: HashSet<&str> = members
        .filter(|m| m.state() != foca::State::Down)
        .map(|m| m.id().name.as_str())
        .collect();
    roster
        .entries()
        .map(|e| MemberView {
            peer: Peer {
                name: e.name.to_string(),
                addr: e.addr,
                tags: e.tags.clone(),
            },
            alive: alive.contains(e.name),
            rostered: true,
        })
        .collect()
}

/// Orders SWIM states from least to most alive.
fn liveliness(state: SwimState) -> u8 {
    match state {
        SwimState::Unknown => 0,
        SwimState::Down => 1,
        SwimState::Suspect => 2,
        SwimState::Alive => 3,
    }
}

/// Tags as a node carries them in its identity.
pub type Tags = BTreeMap<String, String>;

#[cfg(test)]
mod tests;
