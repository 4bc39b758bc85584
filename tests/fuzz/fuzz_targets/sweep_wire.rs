//! Fuzz target `sweep_wire`: the sweep wire decoders, and a sweep datagram to a node.
//! The harness, and what it checks, is `patrol_fuzz::sweep_wire`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| patrol_fuzz::sweep_wire::fuzz(data));
