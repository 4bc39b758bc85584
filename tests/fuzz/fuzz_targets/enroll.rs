//! Fuzz target `enroll`: the enrollment protocol's frames.
//! The harness, and what it checks, is `patrol_fuzz::enroll`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| patrol_fuzz::enroll::fuzz(data));
