//! The observation model every Patrol stage shares: a check's outcome
//! ([`CheckOutcome`], [`Status`], [`Observed`]), what a sweep asks for
//! ([`Selector`]) and the finished sweep ([`SweepDocument`], and
//! [`CompactDocument`], the same held compact, both read through
//! [`SweepView`] one node at a time); and
//! [`printable`], the one rule that makes text from a node safe to print.
//!
//! Data only: no I/O and no runtime, so the sans-IO agent core
//! (`patrol-core`) can carry these types on the wire without pulling in
//! what runs checks. `patrol-checks` re-exports everything here.
//!
//! **Architecture Invariant:** on the wire (bincode, not self-describing)
//! these types write every field in order; only human-readable formats
//! (JSON) leave absent fields out and write observed values as plain
//! values. No `flatten`, no `skip_serializing_if`, no untagged enums: the
//! difference is made in hand-written `Serialize` impls over
//! [`fields::Fields`], which ask the serializer `is_human_readable`.
//!
//! With the `schema` feature every type derives `schemars::JsonSchema`;
//! the schema of the sweep document is kept in `schema/` next to this
//! crate.

pub mod compact;
pub mod document;
mod fields;
pub mod outcome;
pub mod printable;
pub mod selector;
pub mod view;

pub use compact::{CompactDocument, CompactNode};
pub use document::{
    AccountingError, ClockOffset, GoneNode, NodeEntry, NodeState, Silence, StateCounts,
    SweepDocument, SweepTiming, SwimState, MAX_DEADLINE,
};
pub use outcome::{CheckOutcome, Observed, Severity, Status};
pub use selector::Selector;
pub use view::{DocumentJson, Head, SweepView};
