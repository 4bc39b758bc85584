//! `patrol-flood`: send garbage UDP datagrams at a fixed rate for a fixed
//! time (bounded in count and time), for the fault suite's flood test.
//! Half the datagrams carry the envelope's version byte and the cluster's
//! real key id (which travels in the clear), so they pass the reader's
//! cheap checks and cost the agent a MAC verification each; the other half
//! are random bytes.
//!
//! ```text
//! patrol-flood --to 10.201.0.2:7946 --rate 100000 --secs 10 --key-id 1234
//! ```
//!
//! Prints `sent N datagrams in S s (R/s)` when done.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Send garbage UDP datagrams at a fixed rate, for a bounded time")]
struct Args {
    /// Where to send.
    #[arg(long)]
    to: SocketAddr,
    /// Datagrams per second.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// For how long, seconds (at most 60).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Bytes per datagram (at most 1,400).
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// The key id to put in half the datagrams.
    #[arg(long, default_value_t = 0)]
    key_id: u32,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let secs = a.secs.min(60);
    let size = a.size.clamp(46, 1400);
    let socket = UdpSocket::bind("0.0.0.0:0").context("bind")?;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut packet = vec![0u8; size];
    let start = Instant::now();
    let end = Duration::from_secs(secs);
    let total = a.rate.saturating_mul(secs);
    let mut sent: u64 = 0;
    while sent < total {
        let elapsed = start.elapsed();
        if elapsed >= end + Duration::from_secs(5) {
            break;
        }
        // Pace: never ahead of rate x elapsed.
        let due = (elapsed.as_secs_f64() * a.rate as f64) as u64;
        if sent > due {
            std::thread::yield_now();
            continue;
        }
        for chunk in packet.chunks_mut(8) {
            let r = next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        if sent.is_multiple_of(2) {
            packet[0] = 1;
            packet[1..5].copy_from_slice(&a.key_id.to_be_bytes());
        }
        // A full socket buffer drops, as a network would: keep going.
        let _ = socket.send_to(&packet, a.to);
        sent += 1;
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} datagrams in {took:.2} s ({:.0}/s)",
        sent as f64 / took.max(1e-9)
    );
    Ok(())
}
