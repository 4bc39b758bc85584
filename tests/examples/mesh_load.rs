//! Load for footprint measurements: `COUNT` in-process agents on real
//! loopback UDP sockets join the mesh of a real `patrol-agent` process
//! (through `SEED`, its gossip address), under the key in `KEY_FILE` and
//! cluster `CLUSTER`, and stay for `SECONDS`, then stop. Each answers
//! sweeps with one passing check.
//!
//! ```text
//! cargo run --release -p patrol-tests --example mesh_load -- SEED KEY_FILE CLUSTER COUNT SECONDS
//! ```
//!
//! `bench/footprint_1000.sh` uses it to put one real agent in a
//! 1,000-member mesh and measure that agent's RSS and CPU.

use std::sync::Arc;
use std::time::Duration;

use patrol_agent::agent::StopMode;
use patrol_agent::envelope::Envelope;
use patrol_agent::keyring::Keyring;
use patrol_tests::{udp_agent, CountingInspector};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [seed, key, cluster, count, seconds] = args.as_slice() else {
        anyhow::bail!("usage: mesh_load SEED KEY_FILE CLUSTER COUNT SECONDS");
    };
    let seed: std::net::SocketAddr = seed.parse()?;
    let envelope = Envelope::new(Keyring::load(std::path::Path::new(key))?, cluster);
    let count: usize = count.parse()?;
    let inspector = Arc::new(CountingInspector::default());
    let mut agents = Vec::with_capacity(count);
    for i in 0..count {
        agents.push(
            udp_agent(
                &format!("load-{i:04}"),
                0,
                vec![seed],
                &envelope,
                inspector.clone(),
            )
            .await,
        );
        if i % 50 == 49 {
            // Join in waves, as a fleet rolling out would.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!("mesh_load: {count} agents started");
    tokio::time::sleep(Duration::from_secs(seconds.parse()?)).await;
    for a in agents {
        a.stop(StopMode::Crash).await;
    }
    Ok(())
}
