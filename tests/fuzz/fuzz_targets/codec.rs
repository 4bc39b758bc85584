//! Fuzz target `codec`: foca's bincode codec, and a foca datagram to a node.
//! The harness, and what it checks, is `patrol_fuzz::codec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| patrol_fuzz::codec::fuzz(data));
