//! What the sweep core counts and holds: [`SweepCounters`] (every refusal,
//! by reason), [`RelayCounters`] (what the node did as a relay) and
//! [`Held`] (the size of each bounded structure right now). Each counter
//! struct lists its fields as rows of the agent's one counter list
//! ([`crate::counter_list`]).

use crate::counter_list::{
    Count, RELAYED_ANSWERS, RELAY_BATCHES_RESENT, RELAY_BATCHES_SENT, REQUEST_REFUSALS_UNAUDITED,
    SWEEP_MESSAGES_REFUSED,
};

/// What the sweep core refused, by reason. Every refusal is counted here.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SweepCounters {
    /// Requests refused because they were issued too far in the future by
    /// this node's clock (reported to a coordinator that asked directly).
    pub requests_clock_skew: u64,
    /// Requests refused because `max_participations` sweeps were remembered
    /// (reported to a coordinator that asked directly).
    pub requests_over_capacity: u64,
    /// With certificates: requests refused because their operator already
    /// held `operator_share` sweeps on this node (reported to a
    /// coordinator that asked directly).
    #[serde(default)]
    pub requests_over_quota: u64,
    /// Answer pieces dropped at a coordinator: malformed, over a size or
    /// count bound, a late joiner over the cap, or for an unknown sweep.
    pub pieces_refused: u64,
    /// Acks not naming this node, this answer's nonce, or not from the
    /// sweep's coordinator (replayed or forged).
    pub acks_refused: u64,
    /// With certificates: requests refused for their operator signature,
    /// scope, signing time or coordinator certificate (once per sweep id).
    #[serde(default)]
    pub requests_unauthorized: u64,
    /// With certificates: whole answers dropped at a coordinator because
    /// they did not carry a valid proof by the node they name.
    #[serde(default)]
    pub answers_forged: u64,
    /// With certificates: whole answers not recorded because they named
    /// the node's certificate by a digest this coordinator does not have
    /// (after a restart or reload); the backstop asks those nodes again.
    #[serde(default)]
    pub answers_unverified: u64,
    /// With certificates: whole answers a node proved with a certificate
    /// that has expired (the bundle accepted it until then): its checks
    /// not recorded, the node listed failing with `patrol.cert_expiry`.
    #[serde(default)]
    pub answers_expired: u64,
    /// Batch acks not from the sweep's coordinator.
    #[serde(default)]
    pub batch_acks_refused: u64,
    /// With certificates: answers whose send time did not carry the node's
    /// tag (changed on the way): a relayed one is dropped (the node is asked
    /// directly), a direct one recorded without a clock measurement.
    #[serde(default)]
    pub times_forged: u64,
    /// Relay hold times the coordinator did not take: over `relay_flush` +
    /// 100 ms, or longer than its own times allow. The answer is recorded,
    /// its trip measured as if the relay had not held it.
    #[serde(default)]
    pub relay_holds_refused: u64,
    /// With certificates: requests refused for their authorization whose
    /// audit line was suppressed (over the sender's budget of one a
    /// minute; the next line says how many).
    #[serde(default)]
    pub refusals_unaudited: u64,
    /// Requests a coordinator sent again, directly, for a sweep whose
    /// whole answer it had acked and this node had settled (it could not
    /// record the answer: it lost our certificate mid-sweep). Nothing is
    /// sent; counted once per sweep.
    #[serde(default)]
    pub requests_answered_before: u64,
    /// What this node did as a relay.
    #[serde(default)]
    pub relay: RelayCounters,
}

/// How much the sweep core holds right now: the size of each of its
/// bounded structures, next to the bound in [`SweepSettings`]. Measured
/// from the structures themselves, not from the counters that enforce the
/// bounds, so a test can tell a bound that holds from one that is only
/// counted. Not on any wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// Sweeps this node coordinates (each started over the control
    /// channel).
    pub coordinating: usize,
    /// The most late joiners (answered or partly answered) one coordinated
    /// sweep holds; bounded by `max_late_joiners`.
    pub late_joiners: usize,
    /// The most bytes one coordinated sweep holds for incomplete answers:
    /// the pieces' payloads and a slot per announced piece; bounded by
    /// `max_partial_bytes`.
    pub partial_bytes: usize,
    /// Of those, the bytes of incomplete answers from nodes outside the
    /// expected set; bounded by `max_late_partial_bytes`.
    pub late_partial_bytes: usize,
    /// Sweeps this node holds as a participant (checks running, or an
    /// answer not acked yet); bounded by `max_participations`.
    pub participations: usize,
    /// Sweeps whose answer the coordinator acked, kept as compact records
    /// until forgotten; bounded by `participant::MAX_SETTLED`.
    pub settled: usize,
    /// Sweeps this node relays answers for (each one it takes part in at
    /// most).
    pub relaying: usize,
}

impl SweepCounters {
    /// Every counter, as rows of the counter list; the relay's included.
    pub fn counts(&self) -> Vec<Count> {
        // No `..`: a new field does not compile until it has a row.
        let SweepCounters {
            requests_clock_skew,
            requests_over_capacity,
            requests_over_quota,
            pieces_refused,
            acks_refused,
            requests_unauthorized,
            answers_forged,
            answers_unverified,
            answers_expired,
            batch_acks_refused,
            refusals_unaudited,
            requests_answered_before,
            times_forged,
            relay_holds_refused,
            relay,
        } = self;
        let refused = |reason, n: &u64| SWEEP_MESSAGES_REFUSED.reason(reason, *n);
        let mut rows = vec![
            refused("clock_skew", requests_clock_skew),
            refused("over_capacity", requests_over_capacity),
            refused("over_quota", requests_over_quota),
            refused("unauthorized", requests_unauthorized),
            refused("answer_piece", pieces_refused),
            refused("forged_answer", answers_forged),
            refused("unverified_answer", answers_unverified),
            refused("expired_answer", answers_expired),
            refused("ack", acks_refused),
            refused("batch_ack", batch_acks_refused),
            refused("forged_time", times_forged),
            refused("relay_hold", relay_holds_refused),
            refused("answered_before", requests_answered_before),
        ];
        rows.push(REQUEST_REFUSALS_UNAUDITED.count(*refusals_unaudited));
        rows.extend(relay.counts());
        rows
    }
}

impl RelayCounters {
    /// Every counter, as rows of the counter list.
    pub fn counts(&self) -> Vec<Count> {
        let RelayCounters {
            answers_relayed,
            batches_sent,
            batches_resent,
            pieces_refused,
        } = self;
        vec![
            RELAYED_ANSWERS.count(*answers_relayed),
            RELAY_BATCHES_SENT.count(*batches_sent),
            RELAY_BATCHES_RESENT.count(*batches_resent),
            SWEEP_MESSAGES_REFUSED.reason("relay_piece", *pieces_refused),
        ]
    }
}

/// What this node did as a relay (part of its sweep counters).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelayCounters {
    /// Answers taken and acked as a relay.
    pub answers_relayed: u64,
    /// Batches sent to coordinators (first sends).
    pub batches_sent: u64,
    /// Batches sent again for want of an ack.
    pub batches_resent: u64,
    /// Answer pieces a relay did not take (not one datagram, not
    /// decodable, over a bound, for a sweep it does not relay): not acked,
    /// so their nodes go to the coordinator.
    pub pieces_refused: u64,
}
