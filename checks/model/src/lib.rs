//! The observation model every Patrol stage shares: a check's outcome
//! ([`CheckOutcome`], [`Status`], [`Observed`]), what a sweep asks for
//! ([`Selector`]) and the finished sweep ([`SweepDocument`]).
//!
//! Data only: no I/O and no runtime, so the sans-IO agent core
//! (`patrol-core`) can carry these types on the wire without pulling in
//! what runs checks. `patrol-checks` re-exports everything here.
//!
//! **Architecture Invariant:** these types use only serde features that
//! bincode (not self-describing) supports: no `flatten`, no
//! `skip_serializing_if`, no untagged enums.

pub mod document;
pub mod outcome;
pub mod selector;

pub use document::{
    AccountingError, NodeEntry, NodeState, StateCounts, SweepDocument, SweepTiming,
};
pub use outcome::{CheckOutcome, Observed, Severity, Status};
pub use selector::Selector;
