//! Fuzz target `replay`: the gossip replay window: admit a sequence of datagrams.
//! The harness, and what it checks, is `patrol_fuzz::replay`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| patrol_fuzz::replay::fuzz(data));
