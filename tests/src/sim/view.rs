//! The simulator's stand-in for full membership: nodes start with a
//! partial view, and [`know_mentioned`] adds the members a packet mentions
//! before the node reads it, as a fully informed node would already hold
//! them.

use foca::Member;
use patrol_core::codec::BincodeCodec;
use patrol_core::identity::NodeId;
use patrol_core::{Node, Now};

use super::network::index_of;
use super::report::NodeFate;

/// Emulate a full member list lazily: before foca reads a packet, every
/// member the packet mentions (its sender, and the subject of each
/// membership update) that this node does not know yet is added silently
/// in the state a node knowing every member would already hold: alive at
/// the previous incarnation, or down for nodes that were down before the
/// sweep.
///
/// Without it, a node hearing from a member outside its partial view
/// would treat it as a newcomer and gossip "X is alive" to the whole mesh,
/// which makes others meet strangers and gossip about them in turn: a
/// cascade of O(N²) membership updates that a real, fully-meshed cluster
/// never sees. With it, foca's own handling of the packet sees exactly the
/// changes a fully informed node would see, and broadcasts only those.
///
/// With `certs` (`--converged-keys`), the node also holds each mentioned
/// member's certificate and the pair key with it, as a node that learned
/// every member before the sweep does; without, it asks for a certificate
/// it lacks and derives the key when the packet is read (charged).
pub(super) fn know_mentioned(
    node: &mut Node,
    now: Now,
    payload: &[u8],
    fates: &[NodeFate],
    certs: Option<&[patrol_core::trust::CompactCert]>,
) {
    use bytes::Buf;
    use foca::{Codec, Message, State};

    let mut buf = payload;
    let mut codec = BincodeCodec;
    let Ok(header) = codec.decode_header(&mut buf) else {
        return;
    };
    let me = node.identity().addr;
    let mut known: Vec<Member<NodeId>> = Vec::new();
    let baseline = |id: NodeId, incarnation: u16, state: State| {
        let down = index_of(id.addr, fates.len()).is_some_and(|j| fates[j] == NodeFate::DownBefore);
        if down {
            Member::down(id)
        } else {
            let previous = match state {
                State::Alive => incarnation.saturating_sub(1),
                State::Suspect | State::Down => incarnation,
            };
            Member::new(id, previous, State::Alive)
        }
    };
    if header.src.addr != me {
        known.push(Member::new(
            header.src,
            header.src_incarnation,
            State::Alive,
        ));
    }
    if header.message != Message::Broadcast && buf.remaining() >= 2 {
        let count = buf.get_u16();
        for _ in 0..count {
            let Ok(update) = codec.decode_member(&mut buf) else {
                break;
            };
            if update.id().addr != me {
                let (inc, state) = (update.incarnation(), update.state());
                known.push(baseline(update.id().clone(), inc, state));
            }
        }
    }
    if let Some(certs) = certs {
        let mentioned = known
            .iter()
            .filter_map(|m| index_of(m.id().addr, certs.len()))
            .map(|j| &certs[j]);
        node.vouch_certs(mentioned, true);
    }
    // Already known members are left as they are: the baseline is never
    // newer than what the node holds.
    node.learn_members(now, known.into_iter());
}
