//! Fuzz harnesses: one function per fuzz target, taking the fuzzer's bytes.
//!
//! The cargo-fuzz targets in `tests/fuzz/fuzz_targets/` are one line each
//! and call these functions; `tests/tests/fuzz_corpus.rs` feeds them every
//! committed corpus file and crash reproducer on stable, so the committed
//! corpus is a regression suite in ordinary CI. One copy of every harness.
//!
//! Every harness feeds untrusted bytes to a public API and asserts what
//! the API promises (no panic, errors instead of garbage, round trips);
//! an `assert!` that fires is a bug the fuzzer found, exactly like a panic
//! inside the code under test.

pub mod codec;
pub mod config;
pub mod control;
pub mod enroll;
pub mod envelope;
pub mod expect;
mod node;
pub mod perfdata;
pub mod replay;
pub mod sweep_wire;

/// A harness: the fuzzer's input in, a panic on a bug.
pub type Harness = fn(&[u8]);

/// Every fuzz target by name (the `[[bin]]` names in
/// `tests/fuzz/Cargo.toml` and the folders under `tests/fuzz/corpus/`).
pub const TARGETS: &[(&str, Harness)] = &[
    ("envelope", envelope::fuzz),
    ("replay", replay::fuzz),
    ("sweep_wire", sweep_wire::fuzz),
    ("codec", codec::fuzz),
    ("control", control::fuzz),
    ("enroll", enroll::fuzz),
    ("config", config::fuzz),
    ("perfdata", perfdata::fuzz),
    ("expect", expect::fuzz),
];

/// The harness for a target name.
pub fn harness(name: &str) -> Option<Harness> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, h)| *h)
}
