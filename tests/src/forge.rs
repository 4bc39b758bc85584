//! [`Forge`]: the evil node of the hostile-peer suites (`tests/hostile.rs`,
//! `tests/hostile_membership.rs`). It holds the cluster key, so what it
//! seals opens; it builds datagrams from the real wire types and codec,
//! sends them from its own address on a [`Lab`]'s in-memory network and
//! hears what comes back. [`sniff_identity`] reads a node's identity,
//! proof included, off the wire, as any key holder can.

use std::net::SocketAddr;
use std::time::Duration;

use foca::{Codec, Header};
use patrol_agent::clock::WallClock;
use patrol_agent::codec::BincodeCodec;
use patrol_agent::datagram::{Opener, ReplaySettings, Sealer, REPLAY_HEADER};
use patrol_agent::envelope::Purpose;
use patrol_agent::identity::NodeId;
use patrol_agent::shutdown::Tasks;
use patrol_agent::sweep::SweepMessage;
use patrol_agent::transport::Datagram;
use patrol_core::node::Channel;
use tokio::sync::mpsc;

use crate::lab::{Lab, LIMIT};
use crate::wait_for;

/// The evil node: it holds the cluster key, so what it seals opens; it
/// builds datagrams from the real wire types and codec. It sends from its
/// own address on the network and hears what is sent back to it.
pub struct Forge {
    pub addr: SocketAddr,
    sealer: Sealer,
    opener: Opener,
    inbound: mpsc::Receiver<Datagram>,
    outbound: mpsc::Sender<Datagram>,
    tasks: Tasks,
}

impl Forge {
    pub fn new(lab: &Lab) -> Forge {
        let transport = lab.net.attach();
        let addr = transport.local_addr;
        let mut tasks = Tasks::new();
        let (inbound, outbound) = transport.spawn(&mut tasks);
        Forge {
            addr,
            sealer: Sealer::new(lab.env.clone(), WallClock::default()),
            opener: Opener::new(
                lab.env.clone(),
                WallClock::default(),
                ReplaySettings::default(),
                vec![addr],
            ),
            inbound,
            outbound,
            tasks,
        }
    }

    /// Seal `plain` (channel byte first) as a fresh datagram and send it.
    pub async fn send(&mut self, to: SocketAddr, plain: &[u8]) {
        let mut sealed = Vec::new();
        self.sealer.seal(plain, to, &mut sealed).expect("seal");
        self.outbound
            .send((to, sealed))
            .await
            .expect("forge running");
    }

    pub async fn sweep(&mut self, to: SocketAddr, msg: &SweepMessage) {
        let mut plain = vec![Channel::Sweep as u8];
        plain.extend(msg.encode());
        self.send(to, &plain).await;
        // Let the network and the agent keep up: nothing here is a flood.
        tokio::task::yield_now().await;
    }

    /// A foca packet: `header`, then custom broadcast items (foca's u16
    /// length framing), as a Broadcast message carries them.
    pub async fn foca(&mut self, to: SocketAddr, header: &Header<NodeId>, items: &[Vec<u8>]) {
        let mut plain = vec![Channel::Foca as u8];
        BincodeCodec
            .encode_header(header, &mut plain)
            .expect("encode the header");
        for item in items {
            plain.extend((item.len() as u16).to_be_bytes());
            plain.extend(item);
        }
        self.send(to, &plain).await;
    }

    /// A foca packet: `header`, then member updates (foca's u16 count and
    /// the codec's members), as a Gossip or Ping message carries them.
    pub async fn foca_updates(
        &mut self,
        to: SocketAddr,
        header: &Header<NodeId>,
        members: &[foca::Member<NodeId>],
    ) {
        let mut plain = vec![Channel::Foca as u8];
        BincodeCodec
            .encode_header(header, &mut plain)
            .expect("encode the header");
        plain.extend((members.len() as u16).to_be_bytes());
        for m in members {
            BincodeCodec
                .encode_member(m, &mut plain)
                .expect("encode a member");
        }
        self.send(to, &plain).await;
    }

    /// A compromised node: the forge gets a node certificate of the lab's
    /// CA under `name`, introduces itself to node `to` of the lab (the
    /// certificate exchange) and learns that node's certificate from the
    /// answer. Returns the forge's own signed identity (at the forge's
    /// address) and the pair key it shares with node `to`.
    pub async fn compromised(
        &mut self,
        lab: &Lab,
        creds: &patrol_core::trust::Credentials,
        to: usize,
    ) -> (NodeId, patrol_core::trust::PairKey) {
        use patrol_core::membership::wire::CertMessage;
        let signer = std::sync::Arc::new(patrol_core::identity::IdentitySigner::new(
            creds.key.clone(),
            patrol_core::trust::cert_digest(&creds.cert),
            "test",
        ));
        let me = NodeId::new(
            creds.cert.body.name.clone(),
            self.addr,
            WallClock::default().unix_ms(),
            patrol_core::tags::Tags::default(),
        )
        .signed(signer);
        let hello = CertMessage::Want {
            mine: Box::new(creds.cert.clone()),
            want: Vec::new(),
        };
        let mut plain = vec![Channel::Cert as u8];
        plain.extend(hello.encode());
        self.send(lab.nodes[to].addr, &plain).await;
        let theirs = loop {
            let heard = self.heard(Duration::from_millis(200)).await;
            let cert = heard.iter().find_map(|(from, p)| {
                if *from != lab.nodes[to].addr || p.first() != Some(&(Channel::Cert as u8)) {
                    return None;
                }
                match CertMessage::decode(&p[1..]) {
                    Some(CertMessage::Have { mine, .. }) => Some(*mine),
                    _ => None,
                }
            });
            if let Some(c) = cert {
                break c;
            }
        };
        let key = patrol_core::trust::PairKey::derive(
            &creds.key,
            &theirs.public_key().expect("a node certificate"),
        )
        .expect("a pair key");
        (me, key)
    }

    /// A foca packet from a compromised node: header and updates as
    /// [`Forge::foca_updates`], tagged under `key` (its pair key with the
    /// receiver), as a certified node's packets are.
    pub async fn tagged_updates(
        &mut self,
        to: SocketAddr,
        header: &Header<NodeId>,
        members: &[foca::Member<NodeId>],
        key: &patrol_core::trust::PairKey,
    ) {
        let mut packet = Vec::new();
        BincodeCodec
            .encode_header(header, &mut packet)
            .expect("encode the header");
        packet.extend((members.len() as u16).to_be_bytes());
        for m in members {
            BincodeCodec
                .encode_member(m, &mut packet)
                .expect("encode a member");
        }
        let tag = key.packet_tag(&packet);
        let mut plain = vec![Channel::Foca as u8];
        plain.extend(packet);
        plain.extend(tag);
        self.send(to, &plain).await;
    }

    /// A foca packet from a compromised node carrying custom broadcast
    /// `items` (as [`Forge::foca`]), tagged under `key` (its pair key with
    /// the receiver).
    pub async fn tagged_broadcast(
        &mut self,
        to: SocketAddr,
        header: &Header<NodeId>,
        items: &[Vec<u8>],
        key: &patrol_core::trust::PairKey,
    ) {
        let mut packet = Vec::new();
        BincodeCodec
            .encode_header(header, &mut packet)
            .expect("encode the header");
        for item in items {
            packet.extend((item.len() as u16).to_be_bytes());
            packet.extend(item);
        }
        let tag = key.packet_tag(&packet);
        let mut plain = vec![Channel::Foca as u8];
        plain.extend(packet);
        plain.extend(tag);
        self.send(to, &plain).await;
    }

    /// What reached the forge within `window`: sender and plaintext.
    pub async fn heard(&mut self, window: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut got = Vec::new();
        let end = tokio::time::Instant::now() + window;
        while let Ok(Some((from, bytes))) = tokio::time::timeout_at(end, self.inbound.recv()).await
        {
            if let Ok(plain) = self.opener.open(from, &bytes) {
                got.push((from, plain));
            }
        }
        got
    }

    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Node `name`'s identity as it travels (with its proof, under
/// `[trust]`): read from the header of a foca packet it sent, captured on
/// the lab's network. Turns capture on and leaves it on.
pub async fn sniff_identity(lab: &Lab, name: &str) -> NodeId {
    wait_for(LIMIT, &format!("a foca packet from {name}"), || async {
        let captured = lab.net.capture(true);
        let total = captured.len();
        for (_, _, bytes) in captured {
            let Ok(inner) = lab.env.open(Purpose::Gossip, &bytes) else {
                continue;
            };
            let plain = &inner[REPLAY_HEADER..];
            if plain.first() != Some(&(Channel::Foca as u8)) {
                continue;
            }
            let mut buf = &plain[1..];
            if let Ok(header) = BincodeCodec.decode_header(&mut buf) {
                if header.src.name == name {
                    return Ok(header.src);
                }
            }
        }
        Err(format!("none among the last {total} datagrams"))
    })
    .await
}
