//! Fuzz target `perfdata`: Nagios plugin output and its perfdata.
//! The harness, and what it checks, is `patrol_fuzz::perfdata`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| patrol_fuzz::perfdata::fuzz(data));
