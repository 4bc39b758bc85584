//! Patrol checks: the observation model (check spec, outcome, node result),
//! the sweep document every later stage reads, the `Host` gateway to the
//! machine, one module per check kind, and the expectation language.
//!
//! A failed check is data ([`Status::Fail`], [`Status::Error`]); a Rust
//! `Err` from this crate means Patrol itself could not do its job (for
//! example a check definition that does not parse).
//!
//! Flow: [`Catalog::from_config`] parses `[[check]]` tables and built-in
//! profiles into [`CheckSpec`]s; [`Catalog::select`] picks those a sweep
//! asks for; [`Runner::run`] observes them through a [`Host`] and returns
//! one [`CheckOutcome`] per check.

pub mod blocking;
pub mod catalog;
pub mod expect;
pub mod host;
pub mod kinds;
pub mod runner;
pub mod spec;
pub mod version;

pub use catalog::{check_units, Catalog};
pub use expect::Expect;
pub use host::{host_for, FixtureHost, Host, RealHost, RootedHost};
pub use kinds::CheckKind;
pub use patrol_model::{compact, document, outcome, printable, selector, view};
pub use patrol_model::{
    CheckOutcome, ClockOffset, CompactDocument, CompactNode, DocumentJson, NodeEntry, NodeState,
    Observed, Selector, Severity, Silence, StateCounts, Status, SweepDocument, SweepTiming,
    SweepView, SwimState,
};
pub use runner::Runner;
pub use spec::CheckSpec;
