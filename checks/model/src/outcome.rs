//! The result of running one check: a status, what was observed, what was
//! expected, in words a report can show.
//!
//! These types travel on the wire (bincode 2 through serde) and in the
//! sweep JSON document, so they use only serde features that non
//! self-describing formats support: externally tagged enums, no
//! `skip_serializing_if`, no `flatten`, no untagged enums.

use serde::{Deserialize, Serialize};

/// The verdict of one check on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The observation met the expectation.
    Pass,
    /// The observation missed an expectation whose severity is `warn`.
    Warn,
    /// The observation missed an expectation whose severity is `fail`.
    Fail,
    /// The check could not observe (missing key, timeout, command failed).
    Error,
}

impl Status {
    /// Rank for "worst first" ordering: fail > error > warn > pass.
    pub fn badness(self) -> u8 {
        match self {
            Status::Pass => 0,
            Status::Warn => 1,
            Status::Error => 2,
            Status::Fail => 3,
        }
    }

    /// Lowercase name as shown in tables and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Error => "error",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a missed expectation becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warn,
    #[default]
    Fail,
}

/// A typed observed value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Observed {
    /// Nothing could be observed (the status is then `error`).
    None,
    Number(f64),
    Text(String),
    Version(String),
    List(Vec<Observed>),
    /// Named values, e.g. Nagios perfdata or per-mount disk usage.
    Named(Vec<(String, Observed)>),
}

impl std::fmt::Display for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Observed::None => f.write_str("(nothing)"),
            Observed::Number(n) => {
                if n.fract() == 0.0 && n.abs() < 1e15 {
                    write!(f, "{}", *n as i64)
                } else {
                    write!(f, "{n}")
                }
            }
            Observed::Text(s) | Observed::Version(s) => f.write_str(s),
            Observed::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{item}")?;
                }
                Ok(())
            }
            Observed::Named(items) => {
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}={v}")?;
                }
                Ok(())
            }
        }
    }
}

/// The outcome of one check on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// The check's `id` from the config.
    pub id: String,
    /// The check kind (`sysctl`, `process_count`, ...).
    pub kind: String,
    pub status: Status,
    pub severity: Severity,
    pub observed: Observed,
    /// The expectation in words, e.g. `>= 524288`.
    pub expected: String,
    /// A short human message, e.g. `observed 8192, expected >= 524288`.
    pub message: String,
    /// How long the check took, in microseconds.
    pub duration_us: u64,
    /// One line saying what the check is about (may be empty).
    pub description: String,
    /// One line saying how to fix a miss (may be empty).
    pub remediation: String,
}
