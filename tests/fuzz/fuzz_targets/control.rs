//! Fuzz target `control`: the control channel's frames and sweep document pieces.
//! The harness, and what it checks, is `patrol_fuzz::control`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| patrol_fuzz::control::fuzz(data));
