//! Every outcome the sweep raises itself (check ids `patrol.*`), rather
//! than a configured check: why a node was busy, refused a request, sent
//! an answer too large or unreadable, shares its name, has a clock off, or
//! proved its answer with a certificate that has expired.
//! A report reads them like any check, so a problem of the sweep is listed
//! with the node it concerns instead of making the node look silent.

use std::fmt::Display;

use patrol_model::{CheckOutcome, ClockOffset, Observed, Severity, Status};

/// A node answers with this single `error` when `max_concurrent` sweeps
/// already run on it.
pub const BUSY_CHECK_ID: &str = "patrol.busy";
/// A node answers with this single `error` when its answer is too large to
/// send.
pub const TOO_LARGE_CHECK_ID: &str = "patrol.answer_too_large";
/// A node answers with this single `error` (once, unretried) for a request
/// issued too far in the future by its clock; a coordinator lists a node
/// whose measured clock offset is over `clock_skew_limit` with a `fail` of
/// the same id.
pub const CLOCK_SKEW_CHECK_ID: &str = "patrol.clock_skew";
/// A node answers with this single `error` (once, unretried) for a request
/// that found `max_participations` sweeps remembered.
pub const OVER_CAPACITY_CHECK_ID: &str = "patrol.over_capacity";
/// A request refused because its operator holds its share of the node's
/// participations.
pub const OVER_QUOTA_CHECK_ID: &str = "patrol.over_quota";
/// Listed for each of several alive members claiming one name.
pub const NAME_CONFLICT_ID: &str = "patrol.name_conflict";
/// Listed by a node (with `[trust]`) for each agent it saw claim a name
/// without that name's certificate.
pub const INTRUDER_ID: &str = "patrol.intruder";
/// Recorded for a node whose answer arrived whole but did not decode.
pub const UNREADABLE_ANSWER_ID: &str = "patrol.unreadable_answer";
/// Every certified node adds this outcome to its answer (the agent's
/// `cert_expiry`); a coordinator lists a node whose answer is proven by a
/// certificate that has expired with a `fail` of the same id
/// ([`cert_expired`]), so the report groups it with the other expired
/// nodes.
pub const CERT_EXPIRY_ID: &str = "patrol.cert_expiry";

/// Days, two decimals, rounded down, from seconds: how
/// `patrol.cert_expiry` observes a certificate's life left. Rounded down
/// so that a certificate expired a second ago is below zero (the report's
/// `expired` group), not `-0.0`.
pub fn days(seconds: i64) -> f64 {
    (seconds as f64 / 864.0).floor() / 100.0
}

/// `3d 4h`, `2h 5m`, `1h`, `40s`: the two largest units.
pub fn span(seconds: u64) -> String {
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = seconds;
    for (size, unit) in units {
        if rest >= size && parts.len() < 2 {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        } else if !parts.is_empty() {
            break;
        }
    }
    if parts.is_empty() {
        "0s".to_string()
    } else {
        parts.join(" ")
    }
}

/// An `error` raised by the sweep itself.
pub(crate) fn patrol_error(id: &str, expected: String, message: String) -> CheckOutcome {
    CheckOutcome {
        id: id.to_string(),
        kind: "patrol".to_string(),
        status: Status::Error,
        severity: Severity::Fail,
        observed: Observed::None,
        expected,
        message,
        duration_us: 0,
        description: "raised by the sweep itself, not by a configured check".to_string(),
        remediation: String::new(),
    }
}

/// `max_concurrent` sweeps already run here: this one's checks did not.
pub(crate) fn busy(max_concurrent: usize) -> CheckOutcome {
    patrol_error(
        BUSY_CHECK_ID,
        format!("at most {max_concurrent} sweeps at once"),
        format!(
            "node busy: {max_concurrent} sweeps already running, this sweep's checks were not run"
        ),
    )
}

/// The answer of `size` bytes is over `max_answer_bytes`.
pub(crate) fn too_large(max_answer_bytes: usize, size: usize) -> CheckOutcome {
    patrol_error(
        TOO_LARGE_CHECK_ID,
        format!("an answer of at most {max_answer_bytes} bytes"),
        format!("answer of {size} bytes is too large to send; checks ran but results were dropped"),
    )
}

/// The request was issued `ahead_ms` in the future by this node's clock,
/// more than `tolerance_ms`.
pub(crate) fn issued_in_the_future(tolerance_ms: u128, ahead_ms: u64) -> CheckOutcome {
    patrol_error(
        CLOCK_SKEW_CHECK_ID,
        format!("clocks within {tolerance_ms} ms of the coordinator's"),
        format!(
            "request refused: issued {ahead_ms} ms in the future by this node's clock; this node's clock is behind the coordinator's (or the request is forged)"
        ),
    )
}

/// The node already takes part in `max_participations` sweeps.
pub(crate) fn over_capacity(max_participations: usize) -> CheckOutcome {
    patrol_error(
        OVER_CAPACITY_CHECK_ID,
        format!("at most {max_participations} sweeps remembered"),
        format!(
            "request refused: this node already takes part in {max_participations} sweeps (the most it remembers); its checks were not run"
        ),
    )
}

/// The operator already holds its share of this node's participations.
pub(crate) fn over_quota(operator: &str, share: usize) -> CheckOutcome {
    patrol_error(
        OVER_QUOTA_CHECK_ID,
        format!("at most {share} sweeps of one operator at once"),
        format!(
            "request refused: operator `{operator}` already holds {share} sweeps on this node, its share; its checks were not run (other operators still find room)"
        ),
    )
}

/// One of `claimants` (their addresses) nodes claiming `name`.
pub(crate) fn name_conflict(name: &str, addrs: &[String]) -> CheckOutcome {
    patrol_error(
        NAME_CONFLICT_ID,
        "one node per name".to_string(),
        format!(
            "{} nodes claim the name {name} ({}); their answers cannot be told apart and were not recorded: give each its own [node] name",
            addrs.len(),
            addrs.join(", ")
        ),
    )
}

/// The node's whole answer did not decode.
pub(crate) fn undecodable(e: &dyn Display) -> CheckOutcome {
    patrol_error(
        UNREADABLE_ANSWER_ID,
        "an answer this coordinator can decode".to_string(),
        format!("the node's answer did not decode ({e}); is it running another Patrol version?"),
    )
}

/// The node's answer decoded but does not hold together (its catalog and
/// results disagree).
pub(crate) fn malformed(e: &dyn Display) -> CheckOutcome {
    patrol_error(
        UNREADABLE_ANSWER_ID,
        "an answer this coordinator can decode".to_string(),
        format!("the node's answer is malformed ({e})"),
    )
}

/// The coordinator's `patrol.cert_expiry` for node `name`, whose answer
/// is its own (its key's proof checks) but proven by certificate `serial`,
/// which the bundle accepted until it expired at `not_after` (Unix
/// seconds): a `fail` in place of the node's checks, which are not
/// recorded. Observed like the node's own outcome (`node`: days left,
/// negative), so the report groups the node as expired.
pub(crate) fn cert_expired(name: &str, serial: u64, not_after: u64, now_s: u64) -> CheckOutcome {
    let ago = now_s.saturating_sub(not_after);
    CheckOutcome {
        id: CERT_EXPIRY_ID.to_string(),
        kind: "patrol".to_string(),
        status: Status::Fail,
        severity: Severity::Fail,
        observed: Observed::Named(vec![(
            "node".to_string(),
            Observed::Number(days(-(ago.min(i64::MAX as u64) as i64))),
        )]),
        expected: "a valid node certificate".to_string(),
        message: format!(
            "node certificate `{name}` (serial {serial:016x}) expired {} ago: the node answered, but its checks were not recorded (not renewed: a revoked node's renewal is refused, or its enrollment service is unreachable)",
            span(ago)
        ),
        duration_us: 0,
        description: "raised by the coordinator: an answer proven by a certificate that has expired"
            .to_string(),
        remediation: "see the node's agent log (`renewal refused` or `cannot renew`); with `[trust] enroll` give it a new token (`enroll_token_file`) if it should stay, else stop its agent; without, `patrol ca issue node` and SIGHUP".to_string(),
    }
}

/// The `patrol.clock_skew` outcome for a node whose clock is certainly
/// further from ours than `limit_ms` (its offset less the measurement's
/// bound), or None.
pub(crate) fn clock_skew(limit_ms: u64, clock: ClockOffset) -> Option<CheckOutcome> {
    if clock.least_skew_ms() <= limit_ms {
        return None;
    }
    let way = if clock.offset_ms > 0 {
        "ahead"
    } else {
        "behind"
    };
    Some(CheckOutcome {
        id: CLOCK_SKEW_CHECK_ID.to_string(),
        kind: "patrol".to_string(),
        status: Status::Fail,
        severity: Severity::Fail,
        observed: Observed::Text(way.to_string()),
        expected: format!("within {limit_ms} ms of the coordinator's clock"),
        message: format!(
            "clock {} ms {way} of the coordinator's (± {} ms), measured by the sweep",
            clock.offset_ms.unsigned_abs(),
            clock.bound_ms
        ),
        duration_us: 0,
        description: "the node's clock offset from the coordinator's, measured by the sweep itself"
            .to_string(),
        remediation: "check time synchronisation on the node (chronyc tracking, timedatectl); if most nodes are off the same way, on the coordinator".to_string(),
    })
}

/// An agent claimed a name without its proof: a `fail` on the node that saw
/// it, naming the claimed name and the agent's address.
pub fn intruder(i: &crate::membership::gate::Intruder, unix_ms: u64) -> CheckOutcome {
    let ago_s = unix_ms.saturating_sub(i.last_seen_unix_ms) / 1000;
    CheckOutcome {
        id: INTRUDER_ID.to_string(),
        kind: "patrol".to_string(),
        status: Status::Fail,
        severity: Severity::Fail,
        observed: Observed::Text(format!("{} at {}", i.name, i.addr)),
        expected: "only certified nodes in the mesh".to_string(),
        message: format!(
            "an agent at {} claims the name `{}` without its certificate ({}; {} packets refused, last {} s ago)",
            i.addr, i.name, i.reason, i.packets, ago_s
        ),
        duration_us: 0,
        description: "raised by the membership gate: an identity without a valid proof"
            .to_string(),
        remediation: format!(
            "find the process at {} and stop it; if it is a real node, give it a certificate (patrol ca issue node)",
            i.addr
        ),
    }
}
