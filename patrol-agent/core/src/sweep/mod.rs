//! The sans-IO sweep core: one [`SweepCore`] per node, coordinator for the
//! sweeps it starts and participant in every sweep that reaches it.
//!
//! It imports no tokio and touches no socket or clock. The shell feeds it
//! packets, control commands, membership changes and timer expiries, each
//! with the current time, and carries out the [`Effect`]s it returns:
//! spread a request through foca, send a direct message, schedule a timer,
//! run checks, report progress, hand over the finished [`CompactDocument`].
//!
//! Time comes as a [`Now`] with every input: a monotonic time since any
//! epoch (virtual in the simulator) for timers and expiry, and wall-clock
//! milliseconds for the document and for request expiry across nodes (a
//! node whose clock is ahead of the coordinator's by more than the
//! deadline ignores the request).
//!
//! Inside, each input becomes one `Ctx` (`ctx.rs`: who we are, settings,
//! random numbers, trust, counters, the time, the effects out) handed to
//! the side it concerns:
//! - `coordinator/`: the sweeps this node started (lifecycle and backstop,
//!   intake of answers, the document);
//! - `participant/`: admission of requests, running our checks, our answer
//!   and its resends;
//! - `relay.rs`: the answers this node forwards for a coordinator, and the
//!   coordinator's choice of relays;
//! - [`outcomes`]: every `patrol.*` outcome the sweep raises itself;
//! - `auth.rs`: operator signatures and node proofs, with certificates
//!   ([`check_signed_sweep`] is the one check of a signed sweep).
//!
//! The coordinator's own node takes part like any other: `start` registers
//! the request with its own participant side at once (the copy that comes
//! back through the gossip inbox is a duplicate and ignored), and its own
//! answer is delivered in-process instead of over the network.

mod auth;
mod coordinator;
mod counters;
mod ctx;
pub mod gossip;
pub mod outcomes;
mod participant;
mod relay;
mod settings;
pub mod wire;

use core::net::SocketAddr;
use std::collections::BTreeMap;
use std::time::Duration;

use patrol_model::{CheckOutcome, CompactDocument, Selector};

pub use counters::{Held, RelayCounters, SweepCounters};
pub use gossip::{GossipShared, RequestGossip, SweepKey};
pub use settings::SweepSettings;
pub use wire::{
    relay_index, AnswerBody, AnswerChunk, AnswerPayload, AnswerProof, BodyParts, CheckDetail,
    CheckName, CheckResult, GroupHeader, PeerAddr, RelayBatch, RelayGroup, RelayedAnswer,
    RequestAuth, SweepMessage, SweepRequest, WireError, PROTOCOL_VERSION,
};

pub use auth::{check_signed_sweep, signing_window};
use coordinator::Coordinator;
pub use coordinator::MAX_NODE_NAME;
use ctx::{Env, Prng};
use participant::{AckVerdict, Participant};

use crate::clock::Now;

/// A mesh member as the sweep core needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub addr: SocketAddr,
    /// The identity's interned tags: one expected set holds a peer per
    /// member.
    pub tags: crate::tags::Tags,
}

impl Peer {
    pub(crate) fn peer_addr(&self) -> PeerAddr {
        PeerAddr {
            name: self.name.clone(),
            addr: self.addr,
        }
    }
}

/// A member of the membership snapshot: SWIM alive or suspect is `alive`,
/// down or left is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub peer: Peer,
    /// SWIM counts it (alive or suspect).
    pub alive: bool,
    /// On the roster (with `[trust]`): expected and asked directly even
    /// when SWIM does not count it; `down` only if it stays silent while
    /// the others settle.
    pub rostered: bool,
}

/// What a sweep's request is built from before its expected set exists
/// ([`SweepCore::open`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartHead {
    /// Members the node filter keeps, this node included.
    pub members: usize,
    /// Members the node filter keeps that SWIM counts alive, other than
    /// this node: the relays are drawn from them. With `[trust]`, only
    /// proven members on the roster.
    pub relay_candidates: Vec<SocketAddr>,
}

impl StartHead {
    /// The head of `members` as a snapshot lists them, `me` included
    /// when the filter keeps it.
    pub fn of(me: &Peer, filter: &BTreeMap<String, String>, members: &[MemberView]) -> StartHead {
        let mut head = StartHead {
            members: usize::from(me.tags.matches(filter)),
            relay_candidates: Vec::new(),
        };
        for m in members.iter().filter(|m| m.peer.tags.matches(filter)) {
            if m.peer.name == me.name {
                continue;
            }
            head.members += 1;
            if m.alive {
                head.relay_candidates.push(m.peer.addr);
            }
        }
        head
    }
}

/// The control command that starts a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartSweep {
    pub selector: Selector,
    /// Only members whose tags contain every pair take part.
    pub node_filter: BTreeMap<String, String>,
    pub deadline: Duration,
    /// The sweep id an operator signed; None: the core draws one.
    pub id: Option<u64>,
    /// The operator's signature over this sweep (required when the node
    /// runs with certificates; carried in the request to every node).
    pub authorization: Option<crate::trust::Authorization>,
}

/// What the shell must do on the core's behalf.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Spread this request through the mesh: `foca.add_broadcast(&req.encode())`
    /// then `foca.broadcast()` at once (eager push).
    Spread(SweepRequest),
    /// Send a direct message (UDP, sealed) to `to`.
    Send { to: SocketAddr, msg: SweepMessage },
    /// Call [`SweepCore::handle_timer`] with `timer` once `after` has passed.
    Schedule { after: Duration, timer: SweepTimer },
    /// Run this node's configured checks matching `selector` (under their
    /// timeouts, each cut to `budget`), then call [`SweepCore::checks_done`].
    /// `budget` is the time left before the request expires, less the
    /// answer spread and [`SweepSettings::budget_margin`], at least
    /// [`SweepSettings::budget_floor`]: a hung check ends as `error` in time
    /// instead of costing the node its whole answer.
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
    /// A sweep this node coordinates is complete (emitted once per sweep).
    Completed {
        sweep_id: u64,
        document: Box<CompactDocument>,
    },
    /// Append this line to the node's audit trail.
    Audit(AuditEntry),
}

/// What a participant did with a sweep request, for the audit trail (one
/// entry per request, not per gossip copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub sweep_id: u64,
    /// The operator whose certificate signed the request (as the request
    /// claims it when the node runs without certificates).
    pub operator: Option<String>,
    pub coordinator: String,
    pub selector: Selector,
    pub node_filter: BTreeMap<String, String>,
    pub action: AuditAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditAction {
    /// Ran this many checks and answered.
    Ran { checks: usize },
    /// Refused, and why.
    Refused(String),
    /// Not for this node, and why.
    Skipped(String),
}

/// Why a coordinator did not start a sweep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartRefused {
    #[error("the sweep is not authorized: {0}")]
    Unauthorized(String),
    #[error("a sweep with id {0:016x} is already running or was just done")]
    DuplicateId(u64),
}

/// A timer the core asked for; opaque to the shell, handed back as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SweepTimer(TimerKind);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TimerKind {
    /// Participant: the random answer delay is over; send the answer.
    SendAnswer(u64),
    /// Participant: resend the unacked pieces of the answer (attempt n).
    Resend(u64, u32),
    /// Participant: the request expired; forget the sweep.
    Forget(u64),
    /// Coordinator: look at progress, maybe run the backstop.
    Tick(u64),
    /// Coordinator: the deadline.
    Deadline(u64),
    /// Relay: forward what waits for sweep n.
    RelayFlush(u64),
    /// Relay: resend batch b of sweep n unless acked (attempt a).
    RelayResend(u64, u32, u32),
}

/// One node's sweep logic: coordinator, participant and relay, around one
/// [`Env`] that each gets a [`Ctx`] of per input.
#[derive(Debug)]
pub struct SweepCore {
    env: Env,
    coordinator: Coordinator,
    participant: Participant,
    relay: relay::Relay,
}

impl SweepCore {
    pub fn new(me: Peer, cluster: String, settings: SweepSettings, seed: u64) -> Self {
        let mut mix = seed;
        for b in me.name.bytes() {
            mix = mix.rotate_left(5) ^ u64::from(b);
        }
        SweepCore {
            env: Env {
                me,
                cluster,
                settings,
                rng: Prng::new(mix),
                counters: SweepCounters::default(),
                trust: None,
            },
            coordinator: Coordinator::default(),
            participant: Participant::default(),
            relay: relay::Relay::default(),
        }
    }

    /// Run with certificates: requests must carry an operator signature
    /// and a coordinator certificate, answers a proof by their node.
    pub fn set_trust(
        &mut self,
        creds: crate::trust::Credentials,
        bundle: crate::trust::TrustBundle,
    ) {
        let epoch = self.env.rng.next_u64();
        // A renewed certificate for the same key, under the same bundle:
        // every pair key is still the same, so they are kept (a node's
        // membership learns its members again after a renewal, and would
        // otherwise derive every key again). The new epoch still makes
        // every node send its certificate whole once.
        let kept = self.env.trust.take().filter(|t| {
            t.creds.key.verifying_key() == creds.key.verifying_key() && t.bundle == bundle
        });
        let mut trust = auth::SweepTrust::new(creds, bundle, &self.env.settings, epoch);
        if let Some(old) = kept {
            trust.peers = old.peers;
            trust.peers.forget_answers();
        }
        self.env.trust = Some(trust);
    }

    /// A reloaded CA bundle or deny list (no effect without certificates).
    pub fn set_bundle(&mut self, bundle: crate::trust::TrustBundle) {
        if let Some(t) = self.env.trust.as_mut() {
            t.set_bundle(bundle, self.env.rng.next_u64());
        }
    }

    /// With certificates: this node's peer epoch as a coordinator (see
    /// `RequestAuth::peer_epoch`).
    pub fn peer_epoch(&self) -> Option<u64> {
        self.env.trust.as_ref().map(|t| t.epoch)
    }

    /// With certificates: `coordinator` has this node's certificate in its
    /// peer epoch `epoch`, as after an answer to it (what a node that
    /// answered it before knows; the simulator's warm start).
    pub fn mark_told(&mut self, coordinator: &str, epoch: u64) {
        if let Some(t) = self.env.trust.as_mut() {
            t.told(coordinator, epoch);
        }
    }

    /// Whether this node runs with certificates.
    pub fn trusted(&self) -> bool {
        self.env.trust.is_some()
    }

    /// Check a peer's node certificate, derive the pair key with it now
    /// and count it as a peer whose answer was taken: what a coordinator
    /// that swept before has (the simulator's and the benchmarks' warm
    /// start). No effect without certificates.
    pub fn learn_peer(
        &mut self,
        cert: &crate::trust::Certificate,
        unix_ms: u64,
    ) -> Result<(), crate::trust::TrustError> {
        match self.env.trust.as_mut() {
            Some(t) => {
                let (digest, _) = t.peers.peer(&t.bundle, cert, unix_ms / 1000)?;
                t.peers.mark_answered(&digest);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// A node certificate the member book checked and learned: its pair
    /// key is derived now and cached (see [`crate::trust::PeerKeys::adopt`]),
    /// for the answers' proofs and the membership gate's packet tags
    /// alike ([`SweepCore::peer_keys`]). None without certificates or for
    /// a key of small order.
    pub fn adopt_peer(
        &mut self,
        digest: crate::trust::CertDigest,
        cert: crate::trust::CompactCert,
    ) -> Option<crate::trust::PairKey> {
        self.env.trust.as_mut()?.peers.adopt(digest, cert).ok()
    }

    /// The pair-key cache, with certificates (the membership gate tags
    /// and checks its packets with the same keys).
    pub fn peer_keys(&mut self) -> Option<&mut crate::trust::PeerKeys> {
        self.env.trust.as_mut().map(|t| &mut t.peers)
    }

    /// Peer certificates verified and pair keys derived so far.
    pub fn pair_keys_derived(&self) -> u64 {
        self.env.trust.as_ref().map_or(0, |t| t.peers.derived)
    }

    pub fn me(&self) -> &Peer {
        &self.env.me
    }

    pub fn settings(&self) -> &SweepSettings {
        &self.env.settings
    }

    /// What the core refused so far.
    pub fn counters(&self) -> &SweepCounters {
        &self.env.counters
    }

    /// Number of sweeps this node coordinates right now.
    pub fn coordinating(&self) -> usize {
        self.coordinator.active()
    }

    /// The size of every bounded structure right now.
    pub fn held(&self) -> Held {
        let mut held = self.coordinator.held();
        held.participations = self.participant.len();
        held.settled = self.participant.settled();
        held.relaying = self.relay.len();
        held
    }

    /// The relays a sweep this node coordinates named (empty for a small
    /// mesh, or once the sweep is over).
    pub fn relays(&self, sweep_id: u64) -> &[SocketAddr] {
        self.coordinator.relays(sweep_id)
    }

    /// Number of sweeps whose checks this node is running right now.
    pub fn running_checks(&self) -> usize {
        self.participant.running()
    }

    /// Coordinator: [`SweepCore::open`] the sweep, then
    /// [`SweepCore::snapshot`] `members` as its expected set, in one call.
    /// Returns the sweep id.
    pub fn start(
        &mut self,
        now: Now,
        spec: StartSweep,
        members: Vec<MemberView>,
        out: &mut Vec<Effect>,
    ) -> Result<u64, StartRefused> {
        let head = StartHead::of(&self.env.me, &spec.node_filter, &members);
        let id = self.open(now, spec, head, out)?;
        self.snapshot(now, id, members, out);
        Ok(id)
    }

    /// Coordinator: spread the request of a new sweep and take part
    /// ourselves, knowing only `head` (how many members the node filter
    /// keeps, and which may relay). Returns the sweep id. The expected set
    /// comes after, from [`SweepCore::snapshot`], which must be called
    /// before any other input: sending first keeps a 100,000-member
    /// snapshot (tens of milliseconds) off the request's path.
    /// With certificates the sweep must carry an operator's authorization
    /// for its id ([`check_signed_sweep`], checked here and again by every
    /// participant).
    pub fn open(
        &mut self,
        now: Now,
        spec: StartSweep,
        head: StartHead,
        out: &mut Vec<Effect>,
    ) -> Result<u64, StartRefused> {
        self.open_checking(now, spec, head, &mut |_| true, out)
    }

    /// [`SweepCore::open`], with `accept` asked about each relay drawn
    /// from `head`'s candidates before it is chosen (one refused is passed
    /// over): what the caller checks only for the few it draws, not for
    /// every member.
    pub fn open_checking(
        &mut self,
        now: Now,
        mut spec: StartSweep,
        head: StartHead,
        accept: &mut dyn FnMut(SocketAddr) -> bool,
        out: &mut Vec<Effect>,
    ) -> Result<u64, StartRefused> {
        let id = spec.id.unwrap_or_else(|| self.env.rng.next_u64());
        if self.coordinator.knows(id) {
            return Err(StartRefused::DuplicateId(id));
        }
        let auth = match self.env.trust.as_ref() {
            None => None,
            Some(trust) => {
                let Some(authorization) = spec.authorization.take() else {
                    return Err(StartRefused::Unauthorized(
                        "this node requires sweeps signed by an operator certificate".into(),
                    ));
                };
                let ask = crate::trust::authorization::SweepAsk {
                    sweep_id: id,
                    selector: &spec.selector,
                    node_filter: &spec.node_filter,
                    deadline_ms: spec.deadline.as_millis() as u64,
                    coordinator: &self.env.me.name,
                };
                check_signed_sweep(
                    &authorization,
                    &trust.bundle,
                    &ask,
                    &self.env.settings,
                    now.unix_ms,
                )
                .map_err(|e| StartRefused::Unauthorized(e.to_string()))?;
                Some(Box::new(trust.request_auth(authorization)))
            }
        };
        let mut cx = self.env.ctx(now, out);
        let req = self.coordinator.open(&mut cx, id, spec, auth, head, accept);
        cx.push(Effect::Spread(req.clone()));
        self.handle_request(now, req, out);
        Ok(id)
    }

    /// Coordinator: `members` (after the node filter; this node is added
    /// when missing) become the expected set of sweep `id`, opened by
    /// [`SweepCore::open`]. Nothing happens for a sweep already snapshot
    /// or over.
    pub fn snapshot(&mut self, now: Now, id: u64, members: Vec<MemberView>, out: &mut Vec<Effect>) {
        let mut cx = self.env.ctx(now, out);
        self.coordinator.snapshot(&mut cx, id, members);
    }

    /// Sweeps opened by [`SweepCore::open`] whose expected set is not
    /// snapshot yet.
    pub fn awaiting_snapshot(&self) -> Vec<u64> {
        self.coordinator.unsnapshot().collect()
    }

    /// A request arrived through gossip. Duplicates, expired requests,
    /// requests already answered and requests whose node filter does not
    /// match our tags run nothing. When `max_concurrent` sweeps are already
    /// running, the node answers at once with a single `error` check
    /// `patrol.busy`, so the coordinator lists it as `failing`, not silent.
    pub fn handle_request(&mut self, now: Now, req: SweepRequest, out: &mut Vec<Effect>) {
        self.handle_gossiped(now, req, None, out);
    }

    /// [`SweepCore::handle_request`] for a request that member `sender`
    /// gossiped to us (its refusals are audited under that sender's
    /// budget). True when this node vouches for the request, so it may be
    /// passed on: unexpired, not issued in the future, and with
    /// certificates authorized (see [`gossip`]).
    pub fn handle_gossiped(
        &mut self,
        now: Now,
        req: SweepRequest,
        sender: Option<SocketAddr>,
        out: &mut Vec<Effect>,
    ) -> bool {
        let verdict = self.take_request(now, req, None, sender, out);
        self.deliver_local(now, out);
        verdict.pass_on
    }

    /// A request, gossiped (`from` None) or direct: to the participant,
    /// and, when it names this node a relay and the participant took it,
    /// to the relay side.
    fn take_request(
        &mut self,
        now: Now,
        req: SweepRequest,
        from: Option<SocketAddr>,
        sender: Option<SocketAddr>,
        out: &mut Vec<Effect>,
    ) -> participant::Verdict {
        let relay = req.relays.contains(&self.env.me.addr).then(|| {
            let left = req.expires_at_unix_ms().saturating_sub(now.unix_ms);
            (
                req.id,
                req.coordinator.addr,
                now.mono + Duration::from_millis(left),
            )
        });
        let mut cx = self.env.ctx(now, out);
        let verdict = self.participant.request(&mut cx, req, from, sender);
        if verdict.taken {
            if let Some((id, coordinator, expires_at)) = relay {
                self.relay.start(id, coordinator, expires_at);
            }
        }
        verdict
    }

    /// A direct sweep message: backstop request, answer piece or ack.
    pub fn handle_message(
        &mut self,
        now: Now,
        from: SocketAddr,
        msg: SweepMessage,
        out: &mut Vec<Effect>,
    ) {
        match msg {
            SweepMessage::Request(req) => {
                self.take_request(now, req, Some(from), Some(from), out);
            }
            msg => self.take_direct(now, from, msg, out),
        }
        self.deliver_local(now, out);
    }

    /// An answer piece or an ack, from the network or from ourselves.
    fn take_direct(
        &mut self,
        now: Now,
        from: SocketAddr,
        msg: SweepMessage,
        out: &mut Vec<Effect>,
    ) {
        let mut cx = self.env.ctx(now, out);
        match msg {
            SweepMessage::Answer(chunk)
                if !self.coordinator.active_sweep(chunk.sweep_id)
                    && self.relay.relays(chunk.sweep_id) =>
            {
                self.relay.answer(&mut cx, from, chunk);
            }
            SweepMessage::Answer(chunk) => self.coordinator.answer_chunk(&mut cx, from, chunk),
            SweepMessage::Ack {
                sweep_id,
                node,
                nonce,
                index,
            } => {
                let verdict = self
                    .participant
                    .ack(&mut cx, from, sweep_id, &node, nonce, index);
                if verdict == AckVerdict::Forged {
                    cx.counters.acks_refused += 1;
                }
            }
            SweepMessage::Batch(batch) => self.coordinator.batch(&mut cx, from, batch),
            SweepMessage::BatchAck { sweep_id, batch } => {
                if !self.relay.batch_acked(&mut cx, from, sweep_id, batch) {
                    cx.counters.batch_acks_refused += 1;
                }
            }
            // A backstop request to ourselves: we always have the request.
            SweepMessage::Request(_) => {}
        }
    }

    /// Our checks for `sweep_id` finished; the answer goes out after a
    /// random delay within the request's spread window.
    pub fn checks_done(
        &mut self,
        now: Now,
        sweep_id: u64,
        outcomes: Vec<CheckOutcome>,
        out: &mut Vec<Effect>,
    ) {
        let mut cx = self.env.ctx(now, out);
        self.participant.checks_done(&mut cx, sweep_id, outcomes);
        self.deliver_local(now, out);
    }

    /// SWIM declared `name` down or left: in every sweep we coordinate, an
    /// expected member that has not answered becomes `down`.
    pub fn member_down(&mut self, now: Now, name: &str, out: &mut Vec<Effect>) {
        let mut cx = self.env.ctx(now, out);
        self.coordinator.member_down(&mut cx, name);
    }

    pub fn handle_timer(&mut self, now: Now, timer: SweepTimer, out: &mut Vec<Effect>) {
        let mut cx = self.env.ctx(now, out);
        match timer.0 {
            TimerKind::SendAnswer(id) => self.participant.send_answer(&mut cx, id, 0),
            TimerKind::Resend(id, attempt) => self.participant.send_answer(&mut cx, id, attempt),
            TimerKind::Forget(id) => {
                self.participant.forget(id);
                self.relay.forget(id);
            }
            TimerKind::RelayFlush(id) => self.relay.flush(&mut cx, id),
            TimerKind::RelayResend(id, batch, attempt) => {
                self.relay.resend(&mut cx, id, batch, attempt)
            }
            TimerKind::Tick(id) => self.coordinator.tick(&mut cx, id),
            TimerKind::Deadline(id) => self.coordinator.deadline(&mut cx, id),
        }
        self.deliver_local(now, out);
    }

    /// Answers addressed to ourselves never touch the network: move them
    /// from `Send` effects to the coordinator side, acks back likewise.
    fn deliver_local(&mut self, now: Now, out: &mut Vec<Effect>) {
        let me = self.env.me.addr;
        while let Some(pos) = out
            .iter()
            .position(|e| matches!(e, Effect::Send { to, .. } if *to == me))
        {
            if let Effect::Send { msg, .. } = out.remove(pos) {
                self.take_direct(now, me, msg, out);
            }
        }
    }
}

#[cfg(test)]
mod tests;
