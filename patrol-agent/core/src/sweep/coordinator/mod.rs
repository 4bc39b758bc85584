//! The coordinator side of a sweep, in three parts:
//! - this file, the lifecycle: the expected set snapshot, the request, the
//!   backstop, members going down, the deadline and completion;
//! - [`intake`]: answers coming in, direct (reassembled from pieces) or in
//!   relay batches, checked and recorded, each node once;
//! - [`document`]: the finished sweep as a [`patrol_model::CompactDocument`] that puts every
//!   expected node in exactly one state.
//!
//! Backstop timing: every `tick` the coordinator looks at the sweep. The
//! first backstop round runs once the sweep is older than the answer spread
//! window plus `backstop_min_delay` AND either answers have gone quiet (none
//! for `backstop_quiet`) or `backstop_deadline_percent` of the deadline has
//! passed. So a fast, healthy sweep backstops early (answers stop arriving
//! as soon as the reachable nodes are done) while a sweep whose answers are
//! still streaming in does not flood nodes that are merely slow. With
//! relays, when more than 1,024 nodes have not answered, the first round
//! also waits while new batches keep bringing answers (one within
//! `backstop_min_delay`; resends do not count): answers queued at a relay are on their
//! way, and asking their nodes again would only add direct answers to the
//! coordinator's queue. It waits until `backstop_deadline_percent` of the
//! deadline at most, so a relay that trickles batches cannot keep its
//! nodes from being asked. Later
//! rounds follow after `backstop_interval`, doubling, and never within the
//! last tick before the deadline. While the coordinator is behind (a tick
//! arrives a whole tick after it was due: its inputs queue up), a round
//! is put off by a tick, at most `MAX_DEFERRED` ticks in a row, so the
//! backstop does not add requests and answers to a queue that is already
//! long. Progress is reported per tick (and when the sweep completes or a
//! member goes down), not per answer.

mod document;
mod expected;
mod intake;
mod record;

use core::net::SocketAddr;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use super::ctx::Ctx;
use super::relay::choose_relays;
use super::wire::{RequestAuth, SweepMessage, SweepRequest};
use super::{Effect, MemberView, Peer, StartHead, StartSweep, SweepTimer, TimerKind};

pub(crate) use intake::ack;

/// A first backstop round that would ask at most this many nodes does
/// not wait for the relays: it costs the coordinator a few milliseconds
/// (a request out and, at worst, an answer in per node). More, while the
/// relays still bring answers, are mostly answers on their way, and asking
/// them all again could cost it hundreds of milliseconds.
const BACKSTOP_WITHOUT_WAITING: u64 = 1024;

/// Most ticks in a row a backstop round is put off while the coordinator
/// is behind (its ticks arrive late): 4 ticks, 200 ms at the default tick.
pub(crate) const MAX_DEFERRED: u32 = 4;

/// Completed sweep ids remembered so late answer pieces still get acked.
const RECENT_COMPLETED: usize = 256;

/// Longest node name a coordinator accepts in an answer (a DNS name's
/// limit).
pub const MAX_NODE_NAME: usize = 253;

#[derive(Debug, Default)]
pub(crate) struct Coordinator {
    sweeps: HashMap<u64, Sweep>,
    recent: VecDeque<u64>,
}

#[derive(Debug)]
struct Sweep {
    request: SweepRequest,
    started_at: Duration,
    deadline_at: Duration,
    spread: Duration,
    expected: expected::Expected,
    /// Opened, the expected set not snapshot yet: how many members the
    /// node filter kept when the request was built.
    planned: Option<u64>,
    late: BTreeMap<String, Late>,
    /// Names claimed by more than one alive member: not expected under the
    /// name, listed once per claimant as `failing`, their answers ignored.
    conflicts: BTreeMap<String, Vec<Peer>>,
    /// Answers on their way in.
    intake: intake::Intake,
    /// The check names and base results direct answers are kept against.
    shapes: record::Shapes,
    /// The (answered, settled) counts last reported as progress.
    reported: (u64, u64),
    /// Expected nodes that answered.
    answered: u64,
    /// Expected nodes that answered or are down.
    settled: u64,
    /// Rostered nodes SWIM does not count that have not answered yet.
    unreached: u64,
    last_answer_at: Option<Duration>,
    /// When a relay's batch last came in: while batches keep coming, the
    /// answers still waiting at the relays are on their way, and the
    /// first backstop round waits for them (see the module's doc).
    last_batch_at: Option<Duration>,
    /// The highest batch number each relay has sent (only the relays the
    /// request named: at most `max_relays` entries).
    relay_newest: HashMap<SocketAddr, u32>,
    /// When the next tick is due (it was scheduled for then).
    tick_due: Duration,
    /// Consecutive ticks that found the coordinator behind and put a
    /// backstop round off.
    deferred: u32,
    rounds: u32,
    next_round_at: Option<Duration>,
}

/// A late joiner's answer (a node outside the expected set), by name.
#[derive(Debug)]
struct Late {
    addr: String,
    tags: BTreeMap<String, String>,
    recorded: record::Recorded,
}

#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) peer: Peer,
    pub(crate) state: SlotState,
    /// Backstop rounds that sent this node the request.
    backstops: u32,
    /// SWIM did not count it alive (at the start, or went down since).
    pub(crate) swim_down: bool,
    rostered: bool,
}

#[derive(Debug)]
pub(crate) enum SlotState {
    Pending,
    /// On the roster but not alive to SWIM: asked directly, and `down`
    /// once every other node has settled (or at the deadline) without an
    /// answer from it.
    Unreached,
    Down,
    Answered(Box<record::Recorded>),
}

/// Names claimed by more than one alive member (at different addresses),
/// with every alive claimant. One hash lookup per member; a list only for
/// a name in conflict.
fn name_conflicts(members: &[MemberView]) -> BTreeMap<String, Vec<Peer>> {
    let mut first: HashMap<&str, &Peer> = HashMap::with_capacity(members.len());
    let mut conflicts: BTreeMap<String, Vec<Peer>> = BTreeMap::new();
    for m in members.iter().filter(|m| m.alive) {
        match first.entry(m.peer.name.as_str()) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(&m.peer);
            }
            std::collections::hash_map::Entry::Occupied(o) => {
                let claimants = conflicts
                    .entry(m.peer.name.clone())
                    .or_insert_with(|| vec![(*o.get()).clone()]);
                if !claimants.iter().any(|p| p.addr == m.peer.addr) {
                    claimants.push(m.peer.clone());
                }
            }
        }
    }
    conflicts.retain(|_, c| c.len() > 1);
    conflicts
}

/// The expected set: `members` (this node added) after the node filter,
/// one slot per name, less the names in conflict.
fn expected_set(
    me: &Peer,
    filter: &BTreeMap<String, String>,
    members: Vec<MemberView>,
) -> (Vec<Slot>, BTreeMap<String, Vec<Peer>>) {
    let mut members: Vec<MemberView> = members
        .into_iter()
        .filter(|m| m.peer.tags.matches(filter))
        .collect();
    if me.tags.matches(filter) {
        members.push(MemberView {
            peer: me.clone(),
            alive: true,
            rostered: false,
        });
    }
    let conflicts = name_conflicts(&members);
    // By name, alive members first, so that a name held by a down
    // identity (a node that came back at another address) and an alive
    // one is expected at the alive one; then the first of each name.
    members.sort_by(|a, b| {
        a.peer
            .name
            .cmp(&b.peer.name)
            .then_with(|| b.alive.cmp(&a.alive))
    });
    members.dedup_by(|later, first| later.peer.name == first.peer.name);
    let slots = members
        .into_iter()
        .filter(|m| conflicts.is_empty() || !conflicts.contains_key(&m.peer.name))
        .map(|m| {
            let state = if m.alive {
                SlotState::Pending
            } else if m.rostered {
                SlotState::Unreached
            } else {
                SlotState::Down
            };
            Slot {
                state,
                backstops: 0,
                swim_down: !m.alive,
                rostered: m.rostered,
                peer: m.peer,
            }
        });
    // Sorted by name, each name once.
    (slots.collect(), conflicts)
}

impl Coordinator {
    pub(crate) fn active(&self) -> usize {
        self.sweeps.len()
    }

    /// Whether this node coordinates `id` right now.
    pub(crate) fn active_sweep(&self, id: u64) -> bool {
        self.sweeps.contains_key(&id)
    }

    /// Whether `id` is running or was completed recently.
    pub(crate) fn knows(&self, id: u64) -> bool {
        self.sweeps.contains_key(&id) || self.recent.contains(&id)
    }

    /// What the sweeps being coordinated hold (the largest of each).
    pub(crate) fn held(&self) -> super::Held {
        let mut held = super::Held {
            coordinating: self.sweeps.len(),
            ..super::Held::default()
        };
        for sweep in self.sweeps.values() {
            let late = sweep.late.len() + sweep.late_partial();
            held.late_joiners = held.late_joiners.max(late);
            let (all, late) = sweep.partial_held();
            held.partial_bytes = held.partial_bytes.max(all);
            held.late_partial_bytes = held.late_partial_bytes.max(late);
        }
        held
    }

    /// Open sweep `id` and build its request from `head` alone (how many
    /// members the filter keeps, the ones that may relay), before the
    /// expected set exists: the relays hear it first, directly. The
    /// expected set follows in [`Coordinator::snapshot`], which must come
    /// before any answer is taken in.
    pub(crate) fn open(
        &mut self,
        cx: &mut Ctx,
        id: u64,
        spec: StartSweep,
        auth: Option<Box<RequestAuth>>,
        head: StartHead,
        accept: &mut dyn FnMut(SocketAddr) -> bool,
    ) -> SweepRequest {
        let settings = cx.settings;
        let deadline = spec.deadline.min(settings.max_deadline);
        let planned = head.members;
        let relays = choose_relays(settings, id, planned, head.relay_candidates, accept);
        // With certificates, a node whose answer we have not taken since
        // our start (or the last bundle reload) sends its whole
        // certificate (about 150 bytes more, three times the room in a
        // relay's batch): count it four times when sizing the window.
        let cached_peers = cx.trust.as_ref().map(|t| t.peers.answered());
        let cold = cached_peers.map_or(0, |c| planned.saturating_sub(c));
        let spread = settings.spread_for(planned + 3 * cold, !relays.is_empty());
        let request = SweepRequest {
            id,
            coordinator: cx.me.peer_addr(),
            selector: spec.selector,
            node_filter: spec.node_filter,
            issued_at_unix_ms: cx.unix_ms(),
            deadline_ms: deadline.as_millis() as u64,
            answer_spread_ms: spread.as_micros().div_ceil(1000).min(u128::from(u32::MAX)) as u32,
            relays,
            auth,
        };
        // The relays hear first, straight from us: each must know it
        // relays before its nodes' answers come in.
        for to in &request.relays {
            cx.push(Effect::Send {
                to: *to,
                msg: SweepMessage::Request(request.clone()),
            });
        }
        let mut sweep = Sweep {
            request: request.clone(),
            started_at: cx.mono(),
            deadline_at: cx.mono() + deadline,
            spread,
            expected: expected::Expected::default(),
            planned: Some(planned as u64),
            late: BTreeMap::new(),
            conflicts: BTreeMap::new(),
            intake: intake::Intake::default(),
            shapes: record::Shapes::default(),
            reported: (0, 0),
            answered: 0,
            settled: 0,
            unreached: 0,
            last_answer_at: None,
            last_batch_at: None,
            relay_newest: HashMap::new(),
            tick_due: cx.mono() + settings.tick,
            deferred: 0,
            rounds: 0,
            next_round_at: None,
        };
        cx.push(sweep.progress());
        cx.push(Effect::Schedule {
            after: deadline,
            timer: SweepTimer(TimerKind::Deadline(id)),
        });
        cx.push(Effect::Schedule {
            after: settings.tick,
            timer: SweepTimer(TimerKind::Tick(id)),
        });
        self.sweeps.insert(id, sweep);
        request
    }

    /// Snapshot `members` as the expected set of sweep `id`, opened by
    /// [`Coordinator::open`] and not snapshot yet (otherwise nothing
    /// happens): rostered nodes SWIM does not count hear the request
    /// straight from us.
    pub(crate) fn snapshot(&mut self, cx: &mut Ctx, id: u64, members: Vec<MemberView>) {
        let Some(sweep) = self.sweeps.get_mut(&id) else {
            return;
        };
        if sweep.planned.take().is_none() {
            return;
        }
        let (slots, conflicts) = expected_set(cx.me, &sweep.request.node_filter, members);
        let expected = expected::Expected::new(slots, cx.rng.next_u64());
        sweep.settled = expected
            .values()
            .filter(|s| matches!(s.state, SlotState::Down))
            .count() as u64;
        for slot in expected.values() {
            if matches!(slot.state, SlotState::Unreached) {
                sweep.unreached += 1;
                cx.push(Effect::Send {
                    to: slot.peer.addr,
                    msg: SweepMessage::Request(sweep.request.clone()),
                });
            }
        }
        sweep.expected = expected;
        sweep.conflicts = conflicts;
        cx.push(sweep.progress());
        self.complete_if_settled(cx, id);
    }

    /// Sweeps opened and not snapshot yet.
    pub(crate) fn unsnapshot(&self) -> impl Iterator<Item = u64> + '_ {
        self.sweeps
            .iter()
            .filter(|(_, s)| s.planned.is_some())
            .map(|(id, _)| *id)
    }

    /// The relays sweep `id` named (empty when it has none or is over).
    pub(crate) fn relays(&self, id: u64) -> &[SocketAddr] {
        self.sweeps
            .get(&id)
            .map_or(&[][..], |s| s.request.relays.as_slice())
    }

    /// SWIM declared `name` down or left: in every sweep, an expected
    /// member that has not answered becomes `down`.
    pub(crate) fn member_down(&mut self, cx: &mut Ctx, name: &str) {
        let ids: Vec<u64> = self.sweeps.keys().copied().collect();
        for id in ids {
            let Some(sweep) = self.sweeps.get_mut(&id) else {
                continue;
            };
            if let Some(slot) = sweep.expected.get_mut(name) {
                if matches!(slot.state, SlotState::Pending) {
                    slot.swim_down = true;
                    if slot.rostered {
                        // Still asked (the backstop): SWIM may be wrong.
                        slot.state = SlotState::Unreached;
                        sweep.unreached += 1;
                    } else {
                        slot.state = SlotState::Down;
                        sweep.settled += 1;
                    }
                    cx.push(sweep.progress());
                }
            }
            self.complete_if_settled(cx, id);
        }
    }

    /// The periodic look at sweep `id`: maybe a backstop round, and the
    /// next tick.
    pub(crate) fn tick(&mut self, cx: &mut Ctx, id: u64) {
        let Some(sweep) = self.sweeps.get_mut(&id) else {
            return;
        };
        let settings = cx.settings;
        let now = cx.mono();
        let elapsed = now.saturating_sub(sweep.started_at);
        let deadline = sweep.deadline_at.saturating_sub(sweep.started_at);
        let quiet = now.saturating_sub(sweep.last_answer_at.unwrap_or(sweep.started_at))
            >= settings.backstop_quiet;
        let late = elapsed * 100 >= deadline * settings.backstop_deadline_percent;
        // The relays are still forwarding: a new batch (not a resend) with
        // an answer not had before came in within `backstop_min_delay`. Their nodes' answers wait in them (a relay
        // holds at most `relay_window` batches in flight), so the first
        // round waits, until `late` at most: a relay that trickles
        // batches cannot keep its nodes from being asked.
        let missing = (sweep.expected.len() as u64).saturating_sub(sweep.settled);
        let relays_busy = missing > BACKSTOP_WITHOUT_WAITING
            && sweep
                .last_batch_at
                .is_some_and(|at| now.saturating_sub(at) < settings.backstop_min_delay);
        let ready = match sweep.next_round_at {
            None => elapsed >= sweep.spread + settings.backstop_min_delay && (!relays_busy || late),
            Some(at) => now >= at,
        };
        let room = sweep.deadline_at.saturating_sub(now) > settings.tick;
        // Behind: this tick came a whole tick late, so the node's inputs
        // queue up (answers waiting to be read). A backstop round now
        // would add requests, then answers, to that queue: put it off to
        // the next tick, at most MAX_DEFERRED ticks in a row.
        let behind = now.saturating_sub(sweep.tick_due) >= settings.tick;
        if ready && (quiet || late) && room && behind && sweep.deferred < MAX_DEFERRED {
            sweep.deferred += 1;
        } else if ready && (quiet || late) && room {
            sweep.deferred = 0;
            sweep.backstop(cx);
            let wait = settings
                .backstop_interval
                .saturating_mul(1u32 << sweep.rounds.min(16));
            sweep.rounds += 1;
            sweep.next_round_at = Some(now + wait);
        }
        // Progress is reported per tick, not per answer.
        if (sweep.answered, sweep.settled) != sweep.reported {
            cx.push(sweep.progress());
        }
        if sweep.deadline_at > now + settings.tick {
            sweep.tick_due = now + settings.tick;
            cx.push(Effect::Schedule {
                after: settings.tick,
                timer: SweepTimer(TimerKind::Tick(id)),
            });
        }
        self.complete_if_settled(cx, id);
    }

    pub(crate) fn deadline(&mut self, cx: &mut Ctx, id: u64) {
        self.complete(cx, id);
    }

    /// Complete sweep `id` once every expected node has settled. Rostered
    /// nodes SWIM does not count settle as `down` once all the others
    /// have, and not before the first backstop could have asked them
    /// again.
    fn complete_if_settled(&mut self, cx: &mut Ctx, id: u64) {
        let Some(sweep) = self.sweeps.get_mut(&id) else {
            return;
        };
        if sweep.planned.is_some() {
            return;
        }
        let all = sweep.expected.len() as u64;
        if sweep.unreached > 0 && sweep.settled + sweep.unreached == all {
            let waited = cx.mono().saturating_sub(sweep.started_at)
                >= sweep.spread + cx.settings.backstop_min_delay + cx.settings.backstop_quiet;
            if waited {
                for slot in sweep.expected.values_mut() {
                    if matches!(slot.state, SlotState::Unreached) {
                        slot.state = SlotState::Down;
                    }
                }
                sweep.settled += sweep.unreached;
                sweep.unreached = 0;
            }
        }
        if sweep.settled == all {
            self.complete(cx, id);
        }
    }

    fn complete(&mut self, cx: &mut Ctx, id: u64) {
        let Some(mut sweep) = self.sweeps.remove(&id) else {
            return;
        };
        if (sweep.answered, sweep.settled) != sweep.reported {
            cx.push(sweep.progress());
        }
        if self.recent.len() >= RECENT_COMPLETED {
            self.recent.pop_front();
        }
        self.recent.push_back(id);
        cx.push(Effect::Completed {
            sweep_id: id,
            document: Box::new(sweep.finish(cx.cluster, cx.mono())),
        });
    }
}

impl Sweep {
    /// One backstop round: the request, directly, to every expected node
    /// that has not answered and is not known down.
    fn backstop(&mut self, cx: &mut Ctx) {
        for slot in self.expected.values_mut() {
            let ask = matches!(slot.state, SlotState::Pending | SlotState::Unreached);
            if ask && slot.peer.name != cx.me.name {
                slot.backstops += 1;
                cx.push(Effect::Send {
                    to: slot.peer.addr,
                    msg: SweepMessage::Request(self.request.clone()),
                });
            }
        }
    }

    /// Progress now, remembered as reported.
    fn progress(&mut self) -> Effect {
        self.reported = (self.answered, self.settled);
        Effect::Progress {
            sweep_id: self.request.id,
            answered: self.answered,
            expected: self.planned.unwrap_or(self.expected.len() as u64),
        }
    }

    /// Our wall clock at monotonic time `now`, unix milliseconds: the
    /// request's issue time plus the time since, so the issue and arrival
    /// times of the clock measurement stay on one timeline.
    fn coordinator_clock(&self, now: Duration) -> u64 {
        self.request
            .issued_at_unix_ms
            .saturating_add(now.saturating_sub(self.started_at).as_millis() as u64)
    }
}
