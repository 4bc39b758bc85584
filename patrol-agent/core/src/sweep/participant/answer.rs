//! A participant's answer: the outcomes as a compact body, proved (with
//! certificates) for the coordinator, cut into pieces that each fit a
//! datagram, sent after a random delay within the request's spread window
//! and resent until every piece is acked.

use core::net::SocketAddr;

use patrol_model::CheckOutcome;

use super::super::auth::SweepTrust;
use super::super::ctx::Ctx;
use super::super::outcomes;
use super::super::wire::{AnswerBody, AnswerChunk, AnswerPayload, SweepMessage};
use super::super::{Effect, Peer, SweepSettings, SweepTimer, TimerKind};
use super::{Participation, Phase};
use crate::trust::PairKey;

/// What a relay's batch adds around an answer alone in it, at most: the
/// batch header, the node's times and hold time, less the piece header.
const RELAY_OVERHEAD: usize = 64;

/// With certificates: how an answer is proved.
#[derive(Debug, Clone, Copy)]
pub(super) struct Proof<'a> {
    pub(super) trust: &'a SweepTrust,
    pub(super) pair: &'a PairKey,
    /// Carry our whole certificate (else name it by digest: the
    /// coordinator has it).
    pub(super) whole: bool,
}

impl Participation {
    /// Our answer to `sweep_id`, built from `outcomes` and scheduled to
    /// leave after a random delay within the spread window.
    pub(super) fn answer(&mut self, cx: &mut Ctx, sweep_id: u64, outcomes: Vec<CheckOutcome>) {
        let now = cx.mono();
        let body = AnswerBody::compact(
            cx.me.tags.to_map(),
            self.received_unix_ms,
            now.saturating_sub(self.received_at).as_millis() as u64,
            outcomes,
        );
        self.nonce = cx.rng.next_u64();
        let (me, settings) = (cx.me, cx.settings);
        let trust = cx.trust.as_deref();
        let proof = |whole| {
            trust
                .zip(self.pair.as_ref())
                .map(|(trust, pair)| Proof { trust, pair, whole })
        };
        if self.cert_known {
            if let Some(whole) = proof(true) {
                let pieces = chunks(
                    me,
                    settings,
                    sweep_id,
                    self.nonce,
                    body.clone(),
                    Some(whole),
                );
                self.whole = Some(pieces);
            }
        }
        let proved = proof(!self.cert_known);
        self.tell_on_ack = proved.is_some() && !self.cert_known;
        let pieces: Vec<_> = chunks(me, settings, sweep_id, self.nonce, body, proved)
            .into_iter()
            .map(Some)
            .collect();
        let relayable = match pieces.as_slice() {
            [Some(only)] => {
                only.payload.len() + RELAY_OVERHEAD <= settings.chunk_payload(me.name.len())
            }
            _ => false,
        };
        if !relayable {
            // Relays take answers that fit one datagram, with room for
            // what a relay's batch adds around them.
            self.relay = None;
        }
        self.phase = Phase::Answering(pieces);
        let after = cx.rng.below(self.spread);
        cx.push(Effect::Schedule {
            after,
            timer: SweepTimer(TimerKind::SendAnswer(sweep_id)),
        });
    }
}

/// `body` (with this node's proof, when given) cut into pieces that each
/// fit a datagram; an answer too large to send becomes one
/// `patrol.answer_too_large` error.
pub(super) fn chunks(
    me: &Peer,
    settings: &SweepSettings,
    sweep_id: u64,
    nonce: u64,
    mut body: AnswerBody,
    proof: Option<Proof>,
) -> Vec<AnswerChunk> {
    let wrap = |body: Vec<u8>| match proof {
        Some(p) => p
            .trust
            .prove(p.pair, sweep_id, &me.name, nonce, body, p.whole)
            .encode(),
        None => AnswerPayload { body, proof: None }.encode(),
    };
    let mut bytes = wrap(body.encode());
    let payload = settings.chunk_payload(me.name.len());
    if bytes.len() > settings.max_answer_bytes
        || bytes.len().div_ceil(payload) > usize::from(u16::MAX)
    {
        body = AnswerBody::compact(
            body.tags.clone(),
            body.received_unix_ms,
            body.checks_ms,
            vec![outcomes::too_large(settings.max_answer_bytes, bytes.len())],
        );
        bytes = wrap(body.encode());
    }
    let pieces: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[][..]]
    } else {
        bytes.chunks(payload).collect()
    };
    let count = pieces.len() as u16;
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, part)| AnswerChunk {
            sweep_id,
            node: me.name.clone(),
            nonce,
            index: i as u16,
            count,
            // Stamped when sent.
            sent_unix_ms: 0,
            sent_tag: None,
            payload: part.to_vec(),
        })
        .collect()
}

/// Send every unacked piece, each stamped with `sent_unix_ms` (our clock
/// now: a resent piece carries its resend time, not the first send's) and,
/// with certificates, our tag over it under `pair`.
pub(super) fn send_pieces(
    cx: &mut Ctx,
    to: SocketAddr,
    pieces: &[Option<AnswerChunk>],
    sent_unix_ms: u64,
    pair: Option<&PairKey>,
) {
    for piece in pieces.iter().flatten() {
        cx.push(Effect::Send {
            to,
            msg: SweepMessage::Answer(stamped(piece.clone(), sent_unix_ms, pair)),
        });
    }
}

/// `piece` stamped with its send time, and tagged under `pair`.
pub(super) fn stamped(
    mut piece: AnswerChunk,
    sent_unix_ms: u64,
    pair: Option<&PairKey>,
) -> AnswerChunk {
    piece.sent_unix_ms = sent_unix_ms;
    piece.sent_tag =
        pair.map(|k| k.sent_tag(piece.sweep_id, &piece.node, piece.nonce, sent_unix_ms));
    piece
}
