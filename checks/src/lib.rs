//! Patrol checks: the observation model (check spec, outcome, node result),
//! the sweep document every later stage reads, the `Host` gateway to the
//! machine, one module per check kind, and the expectation language.
//!
//! A failed check is data ([`Status::Fail`], [`Status::Error`]); a Rust
//! `Err` from this crate means Patrol itself could not do its job (for
//! example a check definition that does not parse).

pub mod document;
pub mod outcome;
pub mod selector;

pub use document::{NodeEntry, NodeState, StateCounts, SweepDocument, SweepTiming};
pub use outcome::{CheckOutcome, Observed, Severity, Status};
pub use selector::Selector;
