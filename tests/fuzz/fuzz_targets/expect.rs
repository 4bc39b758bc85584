//! Fuzz target `expect`: the expectation language and version constraints.
//! The harness, and what it checks, is `patrol_fuzz::expect`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| patrol_fuzz::expect::fuzz(data));
