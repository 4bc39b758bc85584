//! Tunable sweep settings and their defaults, chosen with `patrol-sim`
//! (the simulator in `tests/src/sim/`, real foca and real `SweepCore` on
//! 10,000 virtual nodes): each field's doc gives the measurement behind its
//! value, `bench/RESULTS.md` the longer runs. [`SweepSettings::validate`]
//! checks the constraint each field's doc states.

use std::time::Duration;

use crate::constraint::{at_most, not_above, not_zero, SettingsError};

/// Bytes of an encoded `AnswerChunk` besides its payload and node name, at
/// most: version 1, variant 1, sweep id 9, name length 3, nonce 9, index
/// 3, count 3, send time 9, send-time tag 17, payload length 3 (bincode
/// varints), rounded up.
const CHUNK_HEADER: usize = 64;

/// Sweep settings. `Default` gives the tuned defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSettings {
    /// Most sweeps whose checks run at once on this node as a participant.
    /// A request beyond that gets an immediate `busy` answer (one `error`
    /// check `patrol.busy`). Default 2. Must not be zero (every request
    /// would be answered `busy`).
    pub max_concurrent: usize,
    /// Largest encoded sweep message the core emits, in bytes (the shell
    /// adds its channel byte, the replay header and the sealed envelope).
    /// Answers are cut into pieces to fit. Default 1312: the node's
    /// 1,313-byte plaintext limit less the channel byte, so a sealed sweep
    /// datagram is at most 1,400 bytes, inside a 1,500-byte Ethernet MTU.
    /// Must not be zero, nor exceed the node's `max_datagram` less its
    /// channel byte (checked by `NodeSettings::validate`).
    pub max_datagram: usize,
    /// Answer spread window per expected node: the coordinator sets the
    /// request's window to `expected * answer_spread_per_node`, capped by
    /// `answer_spread_max`; each participant delays its answer by a random
    /// time in that window. Default 30 µs per node: 10,000 nodes answer
    /// over 300 ms, about 100,000 datagrams/s at the coordinator for
    /// answers the size of the `k8s-node` profile's (three 1,200-byte
    /// pieces), what one agent handles at ~10 µs per datagram. In the
    /// simulator 20 µs overflowed the coordinator's queue (4,300 answer
    /// pieces dropped, recovered by resends) and no spread at all dropped
    /// most of them.
    pub answer_spread_per_node: Duration,
    /// Cap of the answer spread window. Default 1 s (reached at about
    /// 33,000 nodes; a 250 ms cap overflowed the coordinator at 40,000).
    pub answer_spread_max: Duration,
    /// First wait before resending unacked answer pieces; doubles per
    /// attempt up to `retry_max`, with ±25% jitter. Default 150 ms. Must
    /// not be zero (doubling zero stays zero: a resend at every tick).
    pub retry_initial: Duration,
    /// Longest wait between resends. Default 800 ms. Must be at least
    /// `retry_initial`.
    pub retry_max: Duration,
    /// How often the coordinator looks at progress. Default 50 ms. Must not
    /// be zero (a timer due at once, forever).
    pub tick: Duration,
    /// The backstop (request sent directly to expected, alive members that
    /// have not answered) runs at the first tick where the sweep is at
    /// least `backstop_min_delay` old (counted from the end of the answer
    /// spread window) and either no answer came in for `backstop_quiet`
    /// or `backstop_deadline_percent` of the deadline has passed.
    /// Default 100 ms: enough for checks of a well-behaved node; the
    /// nodes gossip missed (2-3 in 10,000 with 10 transmissions) are then
    /// reached ~400 ms after the start at 10,000 nodes.
    pub backstop_min_delay: Duration,
    /// Default 0 (the backstop does not wait for answers to go quiet): at
    /// 10,000 nodes resends trickle in until ~600 ms, so waiting for quiet
    /// delayed the backstop by 300 ms, and one direct datagram to each
    /// silent node costs little.
    pub backstop_quiet: Duration,
    /// Share of the deadline, in percent, after which the backstop runs
    /// whatever the answers do (see `backstop_min_delay`). Default 50 (%):
    /// half the deadline is left for the silent nodes' checks. At most 100.
    pub backstop_deadline_percent: u32,
    /// Later backstop rounds wait at least this long after the previous
    /// round, doubling each round. No round starts within the last
    /// `tick` before the deadline. Default 50 ms (one tick): a round asks
    /// a few hundred nodes at 10,000 and 1-2% of them lose the request or
    /// the answer (1% loss each way); they are asked again 50 ms later,
    /// not 200 (`patrol-sim --nodes 10000 --runs 5`: every node accounted
    /// for in 204-207 ms against 216-354 ms with 200 ms). A round costs a
    /// datagram per silent node, and while the coordinator is behind (its
    /// ticks come late) a round is put off anyway. Must not be zero
    /// (rounds would follow each other at every tick).
    pub backstop_interval: Duration,
    /// Requests whose deadline is further away than this are refused, and
    /// a coordinator cuts a longer deadline to it (bounds how long a
    /// participant remembers a sweep). Default 10 min:
    /// [`patrol_model::MAX_DEADLINE`], the one cap every layer reads. Must
    /// not be zero, and at most that cap (the control channel and the config
    /// never ask for more).
    pub max_deadline: Duration,
    /// Largest answer body the coordinator reassembles, bytes. Default 4 MiB
    /// (a `k8s-node` answer is three pieces of about 1,200 bytes). Must not
    /// be zero.
    pub max_answer_bytes: usize,
    /// Of the time left before a request expires, what a participant's
    /// checks may not use: the answer's trip to the coordinator and one
    /// retry. The check budget is `time left - answer spread - margin`.
    /// Default 400 ms (a retry is 150 ms, loopback and LAN trips are well
    /// under 50 ms, the rest is slack for a loaded node).
    pub budget_margin: Duration,
    /// The smallest check budget, however late the request arrived: a
    /// request seen with less time left still runs its checks, which then
    /// mostly end as `error` (cut short) rather than not at all. Default
    /// 100 ms. Must not be zero.
    pub budget_floor: Duration,
    /// A request issued further in the future than this by our clock is
    /// refused (a forged future-dated request would otherwise live for its
    /// whole deadline window), and the node tells the coordinator once,
    /// with a `patrol.clock_skew` error, so the skew is reported rather
    /// than silent. Default 5 s: NTP keeps a fleet within milliseconds;
    /// seconds mean a broken clock.
    pub clock_skew_tolerance: Duration,
    /// A node whose clock the sweep measures further from the
    /// coordinator's than this, for certain (the offset less its
    /// measurement bound: half the round trip), is listed `failing` with
    /// a `patrol.clock_skew` outcome. The offset of every answering node
    /// is in the document either way. Default 1 s: NTP keeps a fleet
    /// within milliseconds, and etcd and Kerberos start to complain about
    /// skews around a second; the measurement's own bound on a LAN is a
    /// few milliseconds, so the verdict is the clock's, not the
    /// network's. Zero reports any offset the measurement can tell from
    /// zero. A node behind by more than `clock_skew_tolerance` refuses the
    /// request instead (and says so with the same check id).
    pub clock_skew_limit: Duration,
    /// Most sweeps a participant holds at once (checks running, or an
    /// answer the coordinator has not acked yet); further requests are
    /// refused and counted. An acked sweep is settled: a record of about
    /// 100 bytes, bounded apart (`participant::MAX_SETTLED`), that no
    /// longer counts here. Bounds the participant's heavy state and its
    /// resend timers. Default 64. Must not be zero (every request would be
    /// refused).
    pub max_participations: usize,
    /// With certificates: most of those sweeps one operator may hold at
    /// once on this node (its share); further requests of that operator
    /// are refused and counted (`patrol.over_quota`), so one operator,
    /// however many coordinators it uses, can never fill a node and lock
    /// the others out. An operator whose certificate scope carries a
    /// `share` gets the smaller of the two (a scope only narrows). Default
    /// 16, a quarter of `max_participations`: four operators at their share
    /// still leave room. Must not be zero nor above `max_participations`.
    pub operator_share: usize,
    /// Most nodes outside the expected set whose answers a coordinator
    /// keeps per sweep. Default 1,024.
    pub max_late_joiners: usize,
    /// Most answer bytes a coordinator buffers per sweep while answers are
    /// incomplete. Default 64 MiB (10,000 k8s-node answers in flight at
    /// once is 34 MiB).
    pub max_partial_bytes: usize,
    /// With certificates: how long after the operator signed a sweep,
    /// beyond its deadline, a node still accepts it (the time for the CLI
    /// to reach the coordinator and the request to spread). Default 60 s:
    /// generous for a slow laptop, while an old signed request cannot be
    /// replayed later. Together with `clock_skew_tolerance` it is the
    /// whole window.
    pub signed_request_slack: Duration,
    /// With certificates: peer certificates and pair keys a node caches.
    /// Each costs a signature check and an X25519 (about 90 µs) the first
    /// time. Default 131,072: every member of a 100,000-node mesh, about
    /// 40 MB at most. Must not be zero.
    pub peer_keys: usize,
    /// Of `max_partial_bytes`, the most that incomplete answers from nodes
    /// outside the expected set may hold, so that answers under names
    /// nobody expected (a key holder inventing them) cannot crowd out the
    /// expected nodes' answers. Default 16 MiB (about 4,700 `k8s-node`
    /// answers in flight). Must not exceed `max_partial_bytes`.
    pub max_late_partial_bytes: usize,
    /// Relays engage for an expected set of at least this many nodes;
    /// below it every node answers the coordinator directly (one hop,
    /// nothing to wait for). Default 2,000: see `bench/RESULTS.md` ("Relays
    /// at scale") for the simulator runs behind it.
    pub relay_min_nodes: usize,
    /// Nodes per relay: the coordinator names `expected / nodes_per_relay`
    /// relays (rounded up), between 2 and `max_relays`. Default 2,000: a
    /// relay takes that many one-datagram answers within the spread window
    /// with room to spare in its 4,096-datagram receive queue. Must not be
    /// zero.
    pub nodes_per_relay: usize,
    /// Most relays a request names (each costs 8 bytes of the request,
    /// which rides in foca packets). Default 64.
    pub max_relays: usize,
    /// A relay forwards what it holds this long after the first answer of
    /// a batch arrived, or at once when a datagram is full. Default 10 ms.
    pub relay_flush: Duration,
    /// Batches a relay has in flight to the coordinator (sent and not yet
    /// acked) at most. Further answers wait at the relay, packed into
    /// full batches, until an ack frees a place, so a coordinator that is
    /// behind holds at most `relays * relay_window` batches in its queue
    /// (2,048 with `max_relays`, half its 4,096-datagram queue) instead of
    /// an overflowing queue and the resends it causes. Default 32: in the
    /// simulator (`patrol-sim --cpu model --relay-window N`), 4 kept
    /// 100,000 nodes from dropping anything but slowed 10,000 to 330-440
    /// ms (the relays' acks wait behind their own input), 16 gave 206-273
    /// ms and 32 216-354 ms at 10,000 and 670 ms at 100,000 (seed 1).
    /// Must not be zero.
    pub relay_window: usize,
    /// With relays, the answer spread window is `expected *
    /// relay_spread_per_node` (capped by `answer_spread_max`): sized for
    /// what the coordinator can take in, rather than for one datagram per
    /// node at the coordinator. Default 3 µs: 300 ms at 100,000 nodes,
    /// 2,000 answers per relay. With every node's CPU charged in the
    /// simulator (`patrol-sim --cpu model`), 1 µs crowded the answers of
    /// 100,000 nodes into 100 ms, more than the coordinator takes in: its
    /// receive queue overflowed and the retries and backstop that followed
    /// took the sweep past a second (`bench/RESULTS.md`, "Charged CPU at
    /// scale"). With certificates, each expected node beyond the peer keys
    /// cached counts four times (its answer carries the whole
    /// certificate).
    pub relay_spread_per_node: Duration,
    /// Sends of an answer to its relay before the node gives up on the
    /// relay and sends to the coordinator directly (the first send counts;
    /// a later one waits `retry_initial`, doubling). Default 1: a relay that
    /// does not ack the first send is passed over at the first resend.
    pub relay_attempts: u32,
    /// Most answers one relay takes per sweep (bounds its maps); beyond,
    /// answers are not acked and their nodes go to the coordinator.
    /// Default 65,536.
    pub max_relayed_nodes: usize,
}

impl Default for SweepSettings {
    fn default() -> Self {
        SweepSettings {
            max_concurrent: 2,
            max_datagram: 1312,
            answer_spread_per_node: Duration::from_micros(30),
            answer_spread_max: Duration::from_secs(1),
            retry_initial: Duration::from_millis(150),
            retry_max: Duration::from_millis(800),
            tick: Duration::from_millis(50),
            backstop_min_delay: Duration::from_millis(100),
            backstop_quiet: Duration::ZERO,
            backstop_deadline_percent: 50,
            backstop_interval: Duration::from_millis(50),
            max_deadline: patrol_model::MAX_DEADLINE,
            max_answer_bytes: 4 * 1024 * 1024,
            budget_margin: Duration::from_millis(400),
            budget_floor: Duration::from_millis(100),
            clock_skew_tolerance: Duration::from_secs(5),
            clock_skew_limit: Duration::from_secs(1),
            max_participations: 64,
            operator_share: 16,
            max_late_joiners: 1024,
            max_partial_bytes: 64 * 1024 * 1024,
            signed_request_slack: Duration::from_secs(60),
            peer_keys: 131_072,
            max_late_partial_bytes: 16 * 1024 * 1024,
            relay_min_nodes: 2000,
            nodes_per_relay: 2000,
            max_relays: 64,
            relay_flush: Duration::from_millis(10),
            relay_window: 32,
            relay_spread_per_node: Duration::from_micros(3),
            relay_attempts: 1,
            max_relayed_nodes: 65_536,
        }
    }
}

impl SweepSettings {
    /// Check the constraint each field's doc states; the first broken one
    /// is the error.
    pub fn validate(&self) -> Result<(), SettingsError> {
        not_zero("sweep.max_concurrent", self.max_concurrent)?;
        not_zero("sweep.retry_initial", self.retry_initial)?;
        not_above(
            "sweep.retry_initial",
            self.retry_initial,
            "sweep.retry_max",
            self.retry_max,
        )?;
        not_zero("sweep.tick", self.tick)?;
        at_most(
            "sweep.backstop_deadline_percent",
            self.backstop_deadline_percent,
            100,
        )?;
        not_zero("sweep.backstop_interval", self.backstop_interval)?;
        not_zero("sweep.max_deadline", self.max_deadline)?;
        at_most(
            "sweep.max_deadline",
            self.max_deadline,
            patrol_model::MAX_DEADLINE,
        )?;
        not_zero("sweep.max_answer_bytes", self.max_answer_bytes)?;
        not_zero("sweep.budget_floor", self.budget_floor)?;
        not_zero("sweep.max_participations", self.max_participations)?;
        not_zero("sweep.operator_share", self.operator_share)?;
        not_above(
            "sweep.operator_share",
            self.operator_share,
            "sweep.max_participations",
            self.max_participations,
        )?;
        not_zero("sweep.peer_keys", self.peer_keys)?;
        not_above(
            "sweep.max_late_partial_bytes",
            self.max_late_partial_bytes,
            "sweep.max_partial_bytes",
            self.max_partial_bytes,
        )?;
        not_zero("sweep.nodes_per_relay", self.nodes_per_relay)?;
        not_zero("sweep.max_datagram", self.max_datagram)?;
        not_zero("sweep.relay_window", self.relay_window)?;
        Ok(())
    }

    /// Payload bytes per answer piece so that the encoded message stays
    /// under `max_datagram` (header: version, variant, ids, node name).
    pub fn chunk_payload(&self, node_name_len: usize) -> usize {
        self.max_datagram
            .saturating_sub(CHUNK_HEADER + node_name_len)
            .max(64)
    }

    /// Time the checks of a request may take, given the time `left`
    /// before it expires and its answer `spread` window.
    pub fn check_budget(&self, left: Duration, spread: Duration) -> Duration {
        left.saturating_sub(spread + self.budget_margin)
            .max(self.budget_floor)
    }

    /// The answer spread window for an expected set of `expected` nodes,
    /// answering through relays or not.
    pub(crate) fn spread_for(&self, expected: usize, relayed: bool) -> Duration {
        let per_node = if relayed {
            self.relay_spread_per_node
        } else {
            self.answer_spread_per_node
        };
        (per_node * expected.min(u32::MAX as usize) as u32).min(self.answer_spread_max)
    }

    /// How many relays a sweep of `expected` nodes, `alive` of them alive
    /// members other than the coordinator, names: none below
    /// `relay_min_nodes`.
    pub fn relays_for(&self, expected: usize, alive: usize) -> usize {
        if expected < self.relay_min_nodes.max(1) || self.max_relays == 0 {
            return 0;
        }
        expected
            .div_ceil(self.nodes_per_relay.max(1))
            .clamp(2, self.max_relays)
            .min(alive)
    }
}
