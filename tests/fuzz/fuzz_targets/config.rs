//! Fuzz target `config`: a config file's text, its checks and profiles.
//! The harness, and what it checks, is `patrol_fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| patrol_fuzz::config::fuzz(data));
