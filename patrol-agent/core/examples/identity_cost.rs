//! What proven membership (`[trust]`, issue 21) costs, on this machine:
//!
//! ```text
//! cargo run --release -p patrol-core --example identity_cost [ROUNDS]
//! ```
//!
//! Prints the bytes a proof adds to an identity and to typical foca
//! packets, and the median thread CPU time (`CLOCK_THREAD_CPUTIME_ID`, not
//! the wall clock) of ROUNDS (default 2000) calls of the membership gate
//! (`Gate::filter`, the decode, checks and re-encode a certified node runs
//! before foca sees a packet):
//! - a probe (header only) from a sender whose proof is cached;
//! - gossip with 6 member updates, every proof cached;
//! - the same with one identity new to the node (one Ed25519 verify);
//! - a sender whose certificate arrived just before (certificate check,
//!   identity check and the pair key's X25519).
//!
//! Every packet's 16-byte tag (an HMAC under the sender's and receiver's
//! pair key) is checked in each case.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use foca::{Codec, Header, Member, Message};
use patrol_core::codec::BincodeCodec;
use patrol_core::identity::{IdentitySigner, NodeId};
use patrol_core::membership::gate::Gate;
use patrol_core::membership::proof::{BookSettings, MemberBook};
use patrol_core::membership::roster::Roster;
use patrol_core::trust::{
    cert_digest, issue, Certificate, Credentials, Issue, PairKey, PeerKeys, Revocations, Role,
    SigningKey, TrustBundle, PACKET_TAG_LEN,
};
use patrol_core::Now;

const NOW_MS: u64 = 1_800_000_000_000;

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median thread CPU of `rounds` calls of `f`.
fn time(rounds: usize, mut f: impl FnMut(usize)) -> Duration {
    let mut v = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let t = thread_cpu();
        f(i);
        v.push(thread_cpu().saturating_sub(t));
    }
    median(v)
}

struct Fleet {
    bundle: TrustBundle,
    creds: Vec<Credentials>,
    ids: Vec<NodeId>,
}

fn fleet(n: usize) -> Fleet {
    let ca_key = SigningKey::from_bytes(&[1; 32]);
    let ca = Credentials::new(
        ca_key.clone(),
        Certificate::new_ca(&ca_key, "ca", 1, 0, u64::MAX / 2),
    )
    .unwrap();
    let bundle = TrustBundle::new(vec![ca.cert.clone()], Revocations::default()).unwrap();
    let mut creds = Vec::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let key = SigningKey::from_bytes(&seed);
        let name = format!("node-{i:05}");
        let cert = issue(
            &ca,
            Issue {
                role: Role::Node,
                name: &name,
                public_key: key.verifying_key(),
                serial: i as u64 + 10,
                not_before: 0,
                not_after: u64::MAX / 2,
            },
        )
        .unwrap();
        let c = Credentials::new(key, cert).unwrap();
        let signer = Arc::new(IdentitySigner::new(
            c.key.clone(),
            cert_digest(&c.cert),
            "prod",
        ));
        let tags = BTreeMap::from([("role".to_string(), "worker".to_string())]);
        let addr = format!("10.0.{}.{}:7946", i / 250, i % 250 + 1)
            .parse()
            .unwrap();
        ids.push(NodeId::new(name, addr, NOW_MS - 1000, tags).signed(signer));
        creds.push(c);
    }
    Fleet { bundle, creds, ids }
}

fn strip(id: &NodeId) -> NodeId {
    let mut id = id.clone();
    id.proof = None;
    id.signer = None;
    id
}

fn packet(src: &NodeId, dst: &NodeId, message: Message<NodeId>, updates: &[NodeId]) -> Vec<u8> {
    let mut out = Vec::new();
    let header = Header {
        src: src.clone(),
        src_incarnation: 0,
        dst: dst.clone(),
        message,
    };
    BincodeCodec.encode_header(&header, &mut out).unwrap();
    if !updates.is_empty() {
        out.extend((updates.len() as u16).to_be_bytes());
        for u in updates {
            BincodeCodec
                .encode_member(&Member::alive(u.clone()), &mut out)
                .unwrap();
        }
    }
    out
}

/// `packet` from node `from` to node `to`, with its tag.
fn tagged(f: &Fleet, from: usize, to: usize, mut packet: Vec<u8>) -> Vec<u8> {
    let key = PairKey::derive(&f.creds[from].key, &f.creds[to].key.verifying_key()).unwrap();
    let tag = key.packet_tag(&packet);
    packet.extend_from_slice(&tag);
    packet
}

fn gate(f: &Fleet, me: usize, known: impl Iterator<Item = usize>) -> Gate {
    let mut book = MemberBook::new("prod", f.bundle.clone(), BookSettings::default());
    for i in known {
        book.learn_cert(&f.creds[i].cert, NOW_MS / 1000).unwrap();
    }
    book.learn_cert(&f.creds[me].cert, NOW_MS / 1000).unwrap();
    Gate::new(
        book,
        Roster::new(131_072, Duration::from_secs(7 * 86_400)),
        f.creds[me].key.clone(),
    )
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let f = fleet(rounds + 8);
    let me = &f.ids[0];
    let now = Now {
        mono: Duration::from_secs(100),
        unix_ms: NOW_MS,
    };
    let from = "10.0.0.9:7946".parse().unwrap();

    // Bytes.
    let one = f.ids[1].encoded_len() - strip(&f.ids[1]).encoded_len();
    let ping =
        |p: fn(&NodeId) -> NodeId| packet(&p(&f.ids[1]), &p(me), Message::Ping(1), &[]).len();
    let gossip = |p: fn(&NodeId) -> NodeId| {
        let ups: Vec<NodeId> = f.ids[2..8].iter().map(p).collect();
        packet(&p(&f.ids[1]), &p(me), Message::Gossip, &ups).len()
    };
    let same = |id: &NodeId| id.clone();
    println!("bytes (an identity with one tag, `node-00001` role=worker):");
    println!("  proof per identity                         {one:6} B");
    println!("  tag per foca packet                        {PACKET_TAG_LEN:6} B");
    println!(
        "  probe (header: 2 identities)          {:5} B -> {:5} B (+{})",
        ping(strip),
        ping(same) + PACKET_TAG_LEN,
        ping(same) + PACKET_TAG_LEN - ping(strip)
    );
    println!(
        "  gossip, 6 updates (8 identities)      {:5} B -> {:5} B (+{})",
        gossip(strip),
        gossip(same) + PACKET_TAG_LEN,
        gossip(same) + PACKET_TAG_LEN - gossip(strip)
    );

    // CPU.
    let probe = tagged(&f, 1, 0, packet(&f.ids[1], me, Message::Ping(1), &[]));
    let ups: Vec<NodeId> = f.ids[2..8].to_vec();
    let full = tagged(&f, 1, 0, packet(&f.ids[1], me, Message::Gossip, &ups));
    let mut g = gate(&f, 0, 1..rounds + 8);
    // The node's pair-key cache, which the gate shares with the sweep.
    let keys = || PeerKeys::new(f.creds[0].key.clone(), 131_072);
    let mut k = keys();
    let _ = g.filter(now, from, me, &full, Some(&mut k));
    let cached_probe = time(rounds, |_| {
        assert!(g
            .filter(now, from, me, &probe, Some(&mut k))
            .packet
            .is_some());
    });
    let cached_gossip = time(rounds, |_| {
        assert!(g
            .filter(now, from, me, &full, Some(&mut k))
            .packet
            .is_some());
    });
    // One identity in each packet the gate has not seen (its certificate
    // known): one signature check.
    let fresh: Vec<Vec<u8>> = (0..rounds)
        .map(|i| {
            let mut ups = f.ids[2..7].to_vec();
            ups.push(f.ids[8 + i % rounds].clone());
            tagged(&f, 1, 0, packet(&f.ids[1], me, Message::Gossip, &ups))
        })
        .collect();
    let mut g2 = gate(&f, 0, 1..rounds + 8);
    let mut k2 = keys();
    let _ = g2.filter(now, from, me, &full, Some(&mut k2));
    let one_new = time(rounds, |i| {
        assert!(g2
            .filter(now, from, me, &fresh[i], Some(&mut k2))
            .packet
            .is_some());
    });
    // A sender met for the first time: its certificate arrives (checked),
    // then its probe (its identity checked, the pair key derived).
    let mut g3 = gate(&f, 0, std::iter::empty());
    let mut k3 = keys();
    let probes: Vec<Vec<u8>> = (1..=rounds)
        .map(|i| tagged(&f, i, 0, packet(&f.ids[i], me, Message::Ping(1), &[])))
        .collect();
    let first_contact = time(rounds, |i| {
        g3.book
            .learn_cert(&f.creds[i + 1].cert, NOW_MS / 1000)
            .unwrap();
        assert!(g3
            .filter(now, from, me, &probes[i], Some(&mut k3))
            .packet
            .is_some());
    });
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("thread CPU, medians of {rounds} rounds:");
    println!(
        "  probe, sender cached                       {:7.1} µs",
        us(cached_probe)
    );
    println!(
        "  gossip with 6 updates, all cached          {:7.1} µs",
        us(cached_gossip)
    );
    println!(
        "  gossip with 6 updates, one new identity    {:7.1} µs",
        us(one_new)
    );
    println!(
        "  first contact: certificate, then identity  {:7.1} µs",
        us(first_contact)
    );
}
