//! `patrol-agent`: the daemon binary.
fn main() {}
