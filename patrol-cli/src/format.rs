//! The output formats every subcommand that prints results shares
//! (`--format table|json|ndjson|junit`), and the one exit-code rule for a
//! set of check statuses.

use std::process::ExitCode;

use patrol_checks::Status;

/// What a subcommand prints on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a person.
    Table,
    /// One pretty-printed JSON document.
    Json,
    /// One compact JSON object per line (per node for `sweep`, per check
    /// for `check`, per member for `members`).
    Ndjson,
    /// JUnit XML: one test case per node and check, for CI systems.
    Junit,
}

/// The exit code for a set of check statuses: 2 when any check failed or
/// errored or when a node could not be reached, 1 for warnings only, 0
/// when everything passed. (3, "could not run", and 4, "report not sent",
/// are decided by the callers.)
pub fn verdict(statuses: impl IntoIterator<Item = Status>, unreachable: bool) -> u8 {
    let worst = statuses
        .into_iter()
        .max_by_key(|s| s.badness())
        .unwrap_or(Status::Pass);
    match (unreachable, worst) {
        (true, _) | (_, Status::Fail | Status::Error) => 2,
        (false, Status::Warn) => 1,
        (false, Status::Pass) => 0,
    }
}

/// [`verdict`] as a process exit code.
pub fn exit_code(statuses: impl IntoIterator<Item = Status>, unreachable: bool) -> ExitCode {
    ExitCode::from(verdict(statuses, unreachable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_nodes_or_failures_give_2_warnings_alone_give_1() {
        assert_eq!(verdict([], false), 0);
        assert_eq!(verdict([Status::Pass, Status::Pass], false), 0);
        assert_eq!(verdict([Status::Pass, Status::Warn], false), 1);
        assert_eq!(verdict([Status::Warn, Status::Error], false), 2);
        assert_eq!(verdict([Status::Fail], false), 2);
        assert_eq!(verdict([], true), 2);
        assert_eq!(verdict([Status::Warn], true), 2);
    }
}
