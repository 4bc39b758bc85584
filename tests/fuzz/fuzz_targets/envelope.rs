//! Fuzz target `envelope`: the sealed envelope: open and precheck any bytes, seal and open any plaintext.
//! The harness, and what it checks, is `patrol_fuzz::envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| patrol_fuzz::envelope::fuzz(data));
