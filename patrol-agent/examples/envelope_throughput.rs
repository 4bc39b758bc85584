//! Seal and open throughput of the envelope for one 1,200-byte packet
//! (a full gossip datagram). Run with
//! `cargo run --release -p patrol-agent --example envelope_throughput`.

use std::time::{Duration, Instant};

use patrol_agent::envelope::{Envelope, Purpose, OVERHEAD};
use patrol_agent::keyring::Keyring;

const PACKET: usize = 1200;

fn main() {
    let env = Envelope::new(Keyring::generate(), "bench");
    let plaintext = vec![0x5a_u8; PACKET - OVERHEAD];
    let mut sealed = Vec::with_capacity(PACKET);
    let mut opened = Vec::with_capacity(PACKET);

    let seal_only = run(Duration::from_secs(2), || {
        sealed.clear();
        env.seal(Purpose::Gossip, &plaintext, &mut sealed)
            .expect("seal");
    });
    let packet = sealed.clone();
    let open_only = run(Duration::from_secs(2), || {
        opened.clear();
        env.open_into(Purpose::Gossip, &packet, &mut opened)
            .expect("open");
    });
    let both = run(Duration::from_secs(2), || {
        sealed.clear();
        opened.clear();
        env.seal(Purpose::Gossip, &plaintext, &mut sealed)
            .expect("seal");
        env.open_into(Purpose::Gossip, &sealed, &mut opened)
            .expect("open");
    });
    assert_eq!(opened, plaintext);
    println!(
        "packet {PACKET} bytes ({} payload + {OVERHEAD} overhead), one thread:",
        PACKET - OVERHEAD
    );
    for (name, per_sec) in [
        ("seal", seal_only),
        ("open", open_only),
        ("seal+open", both),
    ] {
        println!(
            "  {name:<10} {:>10.0} packets/s  {:>7.1} MB/s  {:>6.2} us/packet",
            per_sec,
            per_sec * PACKET as f64 / 1e6,
            1e6 / per_sec
        );
    }
}

/// Packets per second of `f` over about `budget`.
fn run(budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..1000 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..1000 {
            f();
        }
        n += 1000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}
