//! What identities cost, per operation, on this machine:
//!
//! ```text
//! cargo run --release -p patrol-core --example trust_cost [ROUNDS]
//! ```
//!
//! Prints the median of ROUNDS (default 2000) timings of: checking a node
//! certificate against the bundle (one Ed25519 verification), deriving a
//! pair key (one X25519 and HKDF), a coordinator's first contact with a
//! peer (both, through `PeerKeys`), a coordinator's later answers from
//! that peer (the cache lookup and one HMAC over a 3,400-byte body), and
//! what one Ed25519 signature per answer would cost instead.

// A benchmark: it times the core's calls on the wall clock, which the
// core itself may not read (`clippy.toml`).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, Verifier};
use patrol_core::trust::{
    issue, Certificate, Credentials, Issue, PairKey, PeerKeys, Revocations, Role, SigningKey,
    TrustBundle,
};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(rounds: usize, mut f: impl FnMut(usize)) -> Duration {
    let mut v = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let t = Instant::now();
        f(i);
        v.push(t.elapsed());
    }
    median(v)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let ca_key = SigningKey::from_bytes(&[1; 32]);
    let ca = Credentials::new(
        ca_key.clone(),
        Certificate::new_ca(&ca_key, "ca", 1, 0, u64::MAX / 2),
    )
    .unwrap();
    let bundle = TrustBundle::new(vec![ca.cert.clone()], Revocations::default()).unwrap();
    let node = |i: usize| {
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let key = SigningKey::from_bytes(&seed);
        let cert = issue(
            &ca,
            Issue {
                role: Role::Node,
                name: &format!("node-{i:05}"),
                public_key: key.verifying_key(),
                serial: i as u64 + 10,
                not_before: 0,
                not_after: u64::MAX / 2,
            },
        )
        .unwrap();
        Credentials::new(key, cert).unwrap()
    };
    let me = node(usize::MAX >> 1);
    let peers: Vec<Credentials> = (0..rounds).map(node).collect();
    let body = vec![0x5a; 3400];

    let verify = time(rounds, |i| {
        bundle.verify(&peers[i].cert, "node", 100).unwrap();
    });
    let derive = time(rounds, |i| {
        PairKey::derive(&me.key, &peers[i].key.verifying_key()).unwrap();
    });
    let mut cache = PeerKeys::new(me.key.clone(), rounds * 2);
    let first = time(rounds, |i| {
        cache.peer(&bundle, &peers[i].cert, 100).unwrap();
    });
    let proofs: Vec<[u8; 32]> = peers
        .iter()
        .map(|p| {
            PairKey::derive(&p.key, &me.key.verifying_key())
                .unwrap()
                .answer_proof(42, &p.cert.body.name, 9, &body)
        })
        .collect();
    let later = time(rounds, |i| {
        let (_, peer) = cache.peer(&bundle, &peers[i].cert, 100).unwrap();
        assert!(peer
            .key
            .check_answer(42, &peers[i].cert.body.name, 9, &body, &proofs[i]));
    });
    let sigs: Vec<_> = peers.iter().map(|p| p.key.sign(&body)).collect();
    let signature = time(rounds, |i| {
        peers[i]
            .key
            .verifying_key()
            .verify(&body, &sigs[i])
            .unwrap();
    });
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("medians of {rounds} rounds:");
    println!(
        "  node certificate check (Ed25519 verify)       {:8.1} µs",
        us(verify)
    );
    println!(
        "  pair key derivation (X25519 + HKDF)           {:8.1} µs",
        us(derive)
    );
    println!(
        "  coordinator, first answer of a peer (both)    {:8.1} µs",
        us(first)
    );
    println!(
        "  coordinator, each later answer (cache + HMAC) {:8.1} µs",
        us(later)
    );
    println!(
        "  instead: one Ed25519 signature per answer     {:8.1} µs",
        us(signature)
    );
    println!(
        "  at 10,000 nodes: first sweep +{:.0} ms, later sweeps +{:.0} ms (signatures: +{:.0} ms every sweep)",
        us(first) * 10.0,
        us(later) * 10.0,
        us(signature) * 10.0
    );
}
