//! Why a `no_answer` node is silent, in words: from what the coordinator
//! knew when the sweep ended (the document's [`Silence`]: when it last
//! heard from the node, the node's SWIM state, how often the backstop
//! asked it again). Pure; the terminal table, the text and HTML report
//! and the CSV all word it through here, so they say the same thing.
//!
//! The verdict, in order:
//! - SWIM suspects the node (or lost it): **unreachable**: the mesh's own
//!   probes fail, so the network or the whole host is the problem;
//! - SWIM counts it alive and the coordinator heard from it during the
//!   sweep: **agent up, no answer**: its agent runs and talks to the
//!   coordinator, yet no answer came (its checks hung past the deadline,
//!   or the answer was lost on the way back);
//! - anything else (alive, but not heard from directly during the sweep;
//!   in a large mesh a node may talk to the coordinator only every few
//!   minutes): **silent, cause unclear**.

use patrol_checks::{Silence, SwimState};

use crate::text::millis;

/// The verdict on a silent node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// Alive to SWIM and heard during the sweep: the agent runs, its
    /// answer did not come.
    AgentUp,
    /// SWIM suspects it, or declared it down: the mesh cannot reach it.
    Unreachable,
    /// Neither is clear.
    Unclear,
}

impl Cause {
    /// The verdict in a few words (the grouping key of the terminal table).
    pub fn words(self) -> &'static str {
        match self {
            Cause::AgentUp => "agent up, no answer",
            Cause::Unreachable => "unreachable",
            Cause::Unclear => "silent, cause unclear",
        }
    }
}

/// The verdict on `silence`, for a sweep that ended `sweep_ms` after its
/// start (`timing.completed_ms`).
pub fn cause(silence: &Silence, sweep_ms: u64) -> Cause {
    let heard_during_sweep = silence.last_heard_ago_ms.is_some_and(|ago| ago <= sweep_ms);
    match silence.swim {
        SwimState::Suspect | SwimState::Down => Cause::Unreachable,
        SwimState::Alive if heard_during_sweep => Cause::AgentUp,
        SwimState::Alive | SwimState::Unknown => Cause::Unclear,
    }
}

/// One line: the verdict, then the facts it rests on and what it likely
/// means. E.g. `agent up, no answer: alive, last heard 212 ms before the
/// end, backstop request sent 2 times; checks hung past the deadline or
/// the answer was lost`.
pub fn explain(silence: &Silence, sweep_ms: u64) -> String {
    let verdict = cause(silence, sweep_ms);
    let heard = match silence.last_heard_ago_ms {
        Some(ago) if ago <= sweep_ms => format!("last heard {} before the end", millis(ago)),
        Some(ago) => format!(
            "last heard {} before the end (before the sweep began)",
            millis(ago)
        ),
        None => "never heard from by the coordinator".to_string(),
    };
    let backstop = match silence.backstop_requests {
        0 => "no backstop request sent".to_string(),
        1 => "backstop request sent once".to_string(),
        n => format!("backstop request sent {n} times"),
    };
    let swim = match silence.swim {
        SwimState::Unknown => "not in the coordinator's member list".to_string(),
        s => s.to_string(),
    };
    let meaning = match verdict {
        Cause::AgentUp => "checks hung past the deadline or the answer was lost",
        Cause::Unreachable => "network partition, or the host or its agent is stopped",
        Cause::Unclear => "the coordinator cannot tell whether its agent runs",
    };
    format!(
        "{}: {swim}, {heard}, {backstop}; {meaning}",
        verdict.words()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silence(ago: Option<u64>, swim: SwimState, backstops: u32) -> Silence {
        Silence {
            last_heard_ago_ms: ago,
            swim,
            backstop_requests: backstops,
        }
    }

    #[test]
    fn a_node_heard_during_the_sweep_and_alive_has_its_agent_up() {
        let s = silence(Some(212), SwimState::Alive, 2);
        assert_eq!(cause(&s, 3000), Cause::AgentUp);
        assert_eq!(
            explain(&s, 3000),
            "agent up, no answer: alive, last heard 212 ms before the end, backstop request sent 2 times; checks hung past the deadline or the answer was lost"
        );
    }

    #[test]
    fn a_suspect_node_is_unreachable_however_recently_it_was_heard() {
        for ago in [None, Some(100), Some(9_400)] {
            let s = silence(ago, SwimState::Suspect, 1);
            assert_eq!(cause(&s, 3000), Cause::Unreachable);
        }
        assert_eq!(
            explain(&silence(Some(9_400), SwimState::Suspect, 1), 3000),
            "unreachable: suspect, last heard 9.40 s before the end (before the sweep began), backstop request sent once; network partition, or the host or its agent is stopped"
        );
    }

    #[test]
    fn an_alive_node_not_heard_during_the_sweep_is_unclear() {
        let s = silence(Some(95_000), SwimState::Alive, 0);
        assert_eq!(cause(&s, 3000), Cause::Unclear);
        assert!(explain(&s, 3000).starts_with("silent, cause unclear: alive"));
        let s = silence(None, SwimState::Unknown, 1);
        assert_eq!(cause(&s, 3000), Cause::Unclear);
        assert!(
            explain(&s, 3000).contains("not in the coordinator's member list, never heard"),
            "{}",
            explain(&s, 3000)
        );
    }
}
