//! The one list of an agent's counters: every counter the node, its sweep
//! core and the agent's shell keep, as [`Count`] rows (family, help text,
//! reason label, value). `patrol members --stats` (table and JSON), the
//! agent's `/metrics` endpoint and the `members --stats --prometheus`
//! textfile all print these rows and nothing else, so they cannot drift.
//!
//! Each struct that keeps counters lists its own fields in a `counts`
//! method (`NodeStats::counts`, here; `SweepCounters::counts`,
//! `RelayCounters::counts`, and the shell's `AgentStats::counts`), by
//! destructuring itself without `..`: a new field does not compile until
//! it is given a row. The families are named here, once.
//!
//! **Naming.** A family is `patrol_{name}_total` in Prometheus. A
//! refusal or a drop carries a `reason` label (lowercase snake_case); the
//! other families have one row and no label. Within a family either every
//! row has a reason or there is exactly one row.

use serde::Serialize;

use crate::node::NodeStats;

/// A counter family: one Prometheus metric (`patrol_{name}_total`) and
/// its help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Without the `patrol_` prefix and the `_total` suffix.
    pub name: &'static str,
    pub help: &'static str,
}

/// One counter's row in the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Count {
    /// The family's name (see [`Family::name`]).
    pub name: &'static str,
    /// The `reason` label of a refusal or a drop; `None` for a family of
    /// one row.
    pub reason: Option<&'static str>,
    /// The family's help text.
    pub help: &'static str,
    pub value: u64,
}

impl Family {
    /// The family's only row.
    pub const fn count(self, value: u64) -> Count {
        Count {
            name: self.name,
            reason: None,
            help: self.help,
            value,
        }
    }

    /// The row of one reason.
    pub const fn reason(self, reason: &'static str, value: u64) -> Count {
        Count {
            name: self.name,
            reason: Some(reason),
            help: self.help,
            value,
        }
    }
}

/// Datagrams that opened and reached the node.
pub const DATAGRAMS_RECEIVED: Family = Family {
    name: "datagrams_received",
    help: "Datagrams received on the gossip socket that opened and reached the node (the others count in patrol_datagrams_dropped_total)",
};

/// Datagrams the node sent.
pub const DATAGRAMS_SENT: Family = Family {
    name: "datagrams_sent",
    help: "Datagrams the node handed to the gossip socket",
};

/// Datagrams dropped, by reason: by the shell (`unsealed`, `replayed`,
/// `clock_skew`, `muted`, `misdirected`, `other`, `outbound_full`) or the node (`malformed`).
pub const DATAGRAMS_DROPPED: Family = Family {
    name: "datagrams_dropped",
    help: "Datagrams dropped: unsealed (did not open: wrong key, corrupted, truncated, other cluster, too large, unknown key id), replayed (seen before or older than the sender's window), clock_skew (sent too far from this node's clock), muted (from a source muted for sending datagrams that keep failing to open), misdirected (addressed to another node: a capture replayed here), other (no replay header, too many sender sessions, the queue to the node full), malformed (opened but did not decode) or outbound_full (not sent: the send queue was full)",
};

/// Sweeps this node coordinated.
pub const SWEEPS_COORDINATED: Family = Family {
    name: "sweeps_coordinated",
    help: "Sweeps this agent coordinated",
};

/// Times the node started its local checks for a sweep.
pub const CHECK_RUNS: Family = Family {
    name: "check_runs",
    help: "Times the node started its local checks for a sweep",
};

/// Copies of sweep requests received.
pub const SWEEP_REQUEST_COPIES: Family = Family {
    name: "sweep_request_copies",
    help: "Copies of sweep requests received, by gossip or directly, duplicates included (the spread's redundancy)",
};

/// Sweep messages refused, by reason (see `SweepCounters`).
pub const SWEEP_MESSAGES_REFUSED: Family = Family {
    name: "sweep_messages_refused",
    help: "Sweep messages this node refused: clock_skew (request issued too far in the future), over_capacity (request over max_participations), over_quota (the request's operator already holds its operator_share of this node's participations), unauthorized (request's operator signature, scope, signing time or coordinator certificate), answer_piece (malformed, over a bound, or for an unknown sweep), forged_answer (no valid proof by the node it names), unverified_answer (names a certificate this coordinator does not have), expired_answer (proven by the node's certificate after it expired: its checks not recorded, the node listed with patrol.cert_expiry failing), ack and batch_ack (not from the sweep's coordinator, or not for this node and answer), forged_time (an answer's send time without the node's tag: changed on the way), relay_hold (a relay's hold time over relay_flush + 100 ms or more than the coordinator's own times allow: not taken off the trip), relay_piece (a piece this node did not take as a relay), answered_before (a coordinator asked again, directly, for a sweep whose answer it had acked and this node had forgotten: nothing sent)",
};

/// Answers taken and acked as a relay.
pub const RELAYED_ANSWERS: Family = Family {
    name: "relayed_answers",
    help: "Answers this node took and acked as a relay",
};

/// Relay batches sent (first sends).
pub const RELAY_BATCHES_SENT: Family = Family {
    name: "relay_batches_sent",
    help: "Batches of relayed answers sent to coordinators (first sends)",
};

/// Relay batches sent again.
pub const RELAY_BATCHES_RESENT: Family = Family {
    name: "relay_batches_resent",
    help: "Batches of relayed answers sent again for want of an ack",
};

/// With `[trust]`: membership refused by the gate, by reason.
pub const MEMBERSHIP_REFUSED: Family = Family {
    name: "membership_refused",
    help: "With [trust], membership the gate refused: unproven_packet (a foca packet whose sender identity has no valid proof by its node, dropped whole), unproven_update (a member update without a valid proof, removed), stale_update (an older identity of a proven name, removed), certificate (a certificate from the exchange the bundle refuses), leave (a leave notice without its node's signature), forged_sender (a foca packet whose tag is not its named sender's: a proven identity replayed by someone else), coordinator_address (a sweep request naming a coordinator at another address than its proven one)",
};

/// With `[trust]`: foca packets not sent for want of a certificate.
pub const MEMBERSHIP_UNSENT: Family = Family {
    name: "membership_unsent",
    help: "With [trust], foca packets not sent because the destination's certificate was not known yet to tag them (a seed before it introduced itself)",
};

/// With `[trust]`: packets held for their sender's certificate.
pub const MEMBERSHIP_HELD: Family = Family {
    name: "membership_held",
    help: "With [trust], foca packets held until their sender's certificate arrived (asked from the sender)",
};

/// With `[trust]`: incarnations set back to 0.
pub const INCARNATIONS_CLEARED: Family = Family {
    name: "incarnations_cleared",
    help: "With [trust], SWIM incarnations other than 0 set back to 0 (nobody signs them; certified nodes refute by renewing their signed identity)",
};

/// With `[trust]`: suspicions or down declarations of this node.
pub const DECLARED_AGAINST_SELF: Family = Family {
    name: "declared_against_self",
    help: "With [trust], suspicions or down declarations of this node's identity received; each makes it renew its identity",
};

/// With `[trust]`: node certificates learned through the exchange.
pub const CERTIFICATES_LEARNED: Family = Family {
    name: "certificates_learned",
    help: "With [trust], node certificates learned and checked through the certificate exchange",
};

/// With `[trust]`: sweep requests refused for their authorization, over
/// the sender's audit budget (counted in its next audit line instead).
pub const REQUEST_REFUSALS_UNAUDITED: Family = Family {
    name: "request_refusals_unaudited",
    help: "With [trust], sweep requests refused for their authorization and not audited one by one: at most one line per sender a minute, which counts those suppressed before it",
};

/// With `[trust]`: audit lines of refusals nobody proved that were over
/// their budget (counted in a `suppressed` audit line instead).
pub const AUDIT_LINES_SUPPRESSED: Family = Family {
    name: "audit_lines_suppressed",
    help: "With [trust], refusals of control clients that proved no operator certificate, over the audit budget: not written one by one but summed up in a suppressed audit line",
};

/// Control requests refused by this agent's quotas, by reason.
pub const CONTROL_REQUESTS_REFUSED: Family = Family {
    name: "control_requests_refused",
    help: "Sweeps refused on the control channel by the per-operator quotas: operator_concurrent (the operator already runs its share of this agent's sweeps) or operator_rate (the operator started too many sweeps in the last minute)",
};

/// Tag sets not shared (see [`crate::tags`]).
pub const TAG_SETS_UNSHARED: Family = Family {
    name: "tag_sets_unshared",
    help: "Identities' tag sets given a copy of their own instead of the shared one, in this process: over the interner's bounds (32 tags, 256 bytes), or while it held 1,024 sets in use (far more distinct tag sets than a fleet has: made-up tags)",
};

/// Every family, in the order the list shows them.
pub const FAMILIES: [Family; 20] = [
    DATAGRAMS_RECEIVED,
    DATAGRAMS_SENT,
    DATAGRAMS_DROPPED,
    SWEEPS_COORDINATED,
    CHECK_RUNS,
    SWEEP_REQUEST_COPIES,
    SWEEP_MESSAGES_REFUSED,
    RELAYED_ANSWERS,
    RELAY_BATCHES_SENT,
    RELAY_BATCHES_RESENT,
    MEMBERSHIP_REFUSED,
    MEMBERSHIP_HELD,
    MEMBERSHIP_UNSENT,
    INCARNATIONS_CLEARED,
    DECLARED_AGAINST_SELF,
    CERTIFICATES_LEARNED,
    REQUEST_REFUSALS_UNAUDITED,
    AUDIT_LINES_SUPPRESSED,
    CONTROL_REQUESTS_REFUSED,
    TAG_SETS_UNSHARED,
];

impl NodeStats {
    /// Every counter, as rows of the counter list; the sweep core's
    /// included.
    pub fn counts(&self) -> Vec<Count> {
        // No `..`: a new field does not compile until it has a row.
        let NodeStats {
            datagrams_in,
            dropped_malformed,
            datagrams_out,
            sweeps_coordinated,
            checks_runs,
            request_copies,
            sweep,
            gate,
        } = self;
        let mut rows = vec![
            DATAGRAMS_RECEIVED.count(*datagrams_in),
            DATAGRAMS_SENT.count(*datagrams_out),
            DATAGRAMS_DROPPED.reason("malformed", *dropped_malformed),
            SWEEPS_COORDINATED.count(*sweeps_coordinated),
            CHECK_RUNS.count(*checks_runs),
            SWEEP_REQUEST_COPIES.count(*request_copies),
        ];
        rows.extend(sweep.counts());
        rows.extend(gate.clone().unwrap_or_default().counts());
        rows
    }
}

impl crate::membership::gate::GateCounters {
    /// The gate's rows (all zero without `[trust]`).
    pub fn counts(&self) -> Vec<Count> {
        let crate::membership::gate::GateCounters {
            packets_unproven,
            packets_unknown_sender,
            updates_unproven,
            updates_stale,
            incarnations_cleared,
            declared_against_self,
            certs_learned,
            certs_refused,
            leaves_refused,
            packets_forged,
            packets_untagged,
            requests_misaddressed,
        } = self;
        vec![
            MEMBERSHIP_REFUSED.reason("unproven_packet", *packets_unproven),
            MEMBERSHIP_REFUSED.reason("unproven_update", *updates_unproven),
            MEMBERSHIP_REFUSED.reason("stale_update", *updates_stale),
            MEMBERSHIP_REFUSED.reason("certificate", *certs_refused),
            MEMBERSHIP_REFUSED.reason("leave", *leaves_refused),
            MEMBERSHIP_REFUSED.reason("forged_sender", *packets_forged),
            MEMBERSHIP_REFUSED.reason("coordinator_address", *requests_misaddressed),
            MEMBERSHIP_UNSENT.count(*packets_untagged),
            MEMBERSHIP_HELD.count(*packets_unknown_sender),
            INCARNATIONS_CLEARED.count(*incarnations_cleared),
            DECLARED_AGAINST_SELF.count(*declared_against_self),
            CERTIFICATES_LEARNED.count(*certs_learned),
        ]
    }
}

/// Why `counts` is not a well-formed list (see the module doc).
pub fn check(counts: &[Count]) -> Result<(), String> {
    let snake = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    for (i, c) in counts.iter().enumerate() {
        if !FAMILIES
            .iter()
            .any(|f| f.name == c.name && f.help == c.help)
        {
            return Err(format!("{} is not a family of the list", c.name));
        }
        if let Some(r) = c.reason.filter(|r| !snake(r)) {
            return Err(format!("{}: reason {r:?} is not snake_case", c.name));
        }
        let same: Vec<&Count> = counts.iter().filter(|o| o.name == c.name).collect();
        if c.reason.is_none() && same.len() > 1 {
            return Err(format!(
                "{} has more than one row, one without a reason",
                c.name
            ));
        }
        if counts[..i]
            .iter()
            .any(|o| o.name == c.name && o.reason == c.reason)
        {
            return Err(format!("{} {:?} is listed twice", c.name, c.reason));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_names_are_snake_case_and_unique() {
        for (i, f) in FAMILIES.iter().enumerate() {
            assert!(
                f.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                f.name
            );
            assert!(!f.name.ends_with("_total"), "{}", f.name);
            assert!(FAMILIES[..i].iter().all(|o| o.name != f.name), "{}", f.name);
        }
    }

    #[test]
    fn the_node_lists_every_counter_once_with_a_known_family() {
        let counts = crate::node::NodeStats::default().counts();
        check(&counts).unwrap();
        assert!(counts.len() >= 17, "{counts:?}");
    }

    #[test]
    fn a_malformed_list_is_refused() {
        let twice = [
            DATAGRAMS_DROPPED.reason("malformed", 1),
            DATAGRAMS_DROPPED.reason("malformed", 2),
        ];
        assert!(check(&twice).unwrap_err().contains("twice"));
        let mixed = [DATAGRAMS_SENT.count(1), DATAGRAMS_SENT.reason("x", 1)];
        assert!(check(&mixed).is_err());
        let camel = [DATAGRAMS_DROPPED.reason("ClockSkew", 1)];
        assert!(check(&camel).unwrap_err().contains("snake_case"));
        let stranger = [Family {
            name: "made_up",
            help: "",
        }
        .count(1)];
        assert!(check(&stranger).is_err());
    }
}
