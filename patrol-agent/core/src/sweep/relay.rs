//! The relay side of a sweep: a member the request names as a relay takes
//! the one-datagram answers of its share of the nodes, acks each, groups
//! them by tags and check names (the first answer of a group is its base,
//! the others carry only where they differ), and forwards full datagrams
//! to the coordinator at once and the rest after `relay_flush`. A group's
//! shared part (its header) travels until a batch carrying it is acked;
//! later batches name the group by its number only. Batches are resent
//! until the coordinator acks them or the request expires.
//!
//! A relay cannot answer for a node: it forwards each node's nonce and,
//! with certificates, the node's own proof over its whole answer, which
//! the coordinator checks on the answer it rebuilds. A relay can drop an
//! answer; the coordinator's backstop then asks the node directly, and the
//! node, which kept its answer, sends it straight to the coordinator.
//!
//! Which members relay is the coordinator's choice ([`choose_relays`]):
//! none below `relay_min_nodes`, else `relays_for` alive expected members
//! drawn at random; which relay a node uses is [`super::relay_index`].

use core::net::SocketAddr;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::coordinator::ack;
use super::ctx::{Ctx, Prng};
use super::wire::{
    AnswerBody, AnswerChunk, AnswerPayload, CheckResult, GroupHeader, RelayBatch, RelayGroup,
    RelayedAnswer, SweepMessage,
};
use super::{Effect, SweepSettings, SweepTimer, TimerKind};

/// Bytes of a batch besides its groups, at most: sweep id 9, batch number
/// 5, group count 3, and the message's version and variant 4.
const BATCH_HEADER: usize = 24;

/// Bytes of a group besides its header and nodes, at most: key 5, header
/// tag 1, node count 3.
const GROUP_OVERHEAD: usize = 9;

/// Most groups (distinct tags and check names) a relay keeps per sweep.
pub(crate) const MAX_GROUPS: usize = 1024;

/// What one relay holds for the sweeps it relays.
#[derive(Debug, Default)]
pub(crate) struct Relay {
    sweeps: HashMap<u64, RelaySweep>,
}

#[derive(Debug)]
struct RelaySweep {
    coordinator: SocketAddr,
    expires_at: Duration,
    /// Nodes whose answers this relay took (acked again on a resend).
    taken: HashSet<String>,
    /// Groups by number; a group's number is its index.
    groups: Vec<Group>,
    /// Answers waiting for the next batch: group, answer, arrival here.
    waiting: Vec<(u32, RelayedAnswer, Duration)>,
    /// Encoded size of what `waiting` would take, about.
    waiting_bytes: usize,
    /// A flush timer is scheduled.
    flush_pending: bool,
    /// The flush timer fired while `relay_window` batches were in flight:
    /// what waits is due, and goes with the next ack, however little.
    overdue: bool,
    /// Batches sent and not acked yet, by number.
    unacked: HashMap<u32, Unacked>,
    next_batch: u32,
    /// How long the coordinator takes to ack a batch, as TCP estimates a
    /// round trip (RFC 6298): smoothed and its variation, from batches
    /// acked without a resend. A coordinator that falls behind acks late;
    /// the resend waits for that instead of adding copies to its queue.
    rtt: Option<(Duration, Duration)>,
}

#[derive(Debug)]
struct Unacked {
    batch: RelayBatch,
    sent_at: Duration,
    resent: bool,
}

#[derive(Debug)]
struct Group {
    header: GroupHeader,
    header_len: usize,
    /// The coordinator acked a batch carrying the header.
    known: bool,
}

impl Relay {
    /// Sweeps relayed right now.
    pub(crate) fn len(&self) -> usize {
        self.sweeps.len()
    }

    pub(crate) fn relays(&self, sweep_id: u64) -> bool {
        self.sweeps.contains_key(&sweep_id)
    }

    /// This node relays `sweep_id` until `expires_at`.
    pub(crate) fn start(&mut self, sweep_id: u64, coordinator: SocketAddr, expires_at: Duration) {
        self.sweeps.entry(sweep_id).or_insert(RelaySweep {
            coordinator,
            expires_at,
            taken: HashSet::new(),
            groups: Vec::new(),
            waiting: Vec::new(),
            waiting_bytes: 0,
            flush_pending: false,
            overdue: false,
            unacked: HashMap::new(),
            next_batch: 0,
            rtt: None,
        });
    }

    /// A node's answer piece, sent to us as its relay: acked when taken
    /// (or taken before), refused and counted otherwise.
    pub(crate) fn answer(&mut self, cx: &mut Ctx, from: SocketAddr, chunk: AnswerChunk) {
        let id = chunk.sweep_id;
        let Some(sweep) = self.sweeps.get_mut(&id) else {
            cx.counters.relay.pieces_refused += 1;
            return;
        };
        if sweep.taken.contains(&chunk.node) {
            cx.push(ack(from, &chunk));
            return;
        }
        let now = cx.mono();
        let Some((key, answer, len)) = sweep.admit(cx.settings, now, &chunk) else {
            cx.counters.relay.pieces_refused += 1;
            return;
        };
        sweep.taken.insert(chunk.node.clone());
        sweep.waiting.push((key, answer, now));
        sweep.waiting_bytes += len;
        cx.counters.relay.answers_relayed += 1;
        cx.push(ack(from, &chunk));
        let full = BATCH_HEADER + sweep.waiting_bytes >= cx.settings.max_datagram;
        if full && sweep.unacked.len() < cx.settings.relay_window {
            sweep.flush(cx, id, true);
        } else if !full && !sweep.flush_pending {
            sweep.flush_pending = true;
            cx.push(Effect::Schedule {
                after: cx.settings.relay_flush,
                timer: SweepTimer(TimerKind::RelayFlush(id)),
            });
        }
    }

    /// The flush timer: forward whatever waits, as far as the window
    /// lets; the rest goes with the next ack.
    pub(crate) fn flush(&mut self, cx: &mut Ctx, sweep_id: u64) {
        if let Some(sweep) = self.sweeps.get_mut(&sweep_id) {
            sweep.flush_pending = false;
            sweep.flush(cx, sweep_id, false);
            sweep.overdue = !sweep.waiting.is_empty();
        }
    }

    /// Resend batch `batch` unless acked (attempt `attempt`).
    pub(crate) fn resend(&mut self, cx: &mut Ctx, sweep_id: u64, batch: u32, attempt: u32) {
        let Some(sweep) = self.sweeps.get_mut(&sweep_id) else {
            return;
        };
        let Some(b) = sweep.unacked.get_mut(&batch) else {
            return;
        };
        if cx.mono() >= sweep.expires_at {
            return;
        }
        b.resent = true;
        cx.counters.relay.batches_resent += 1;
        cx.push(Effect::Send {
            to: sweep.coordinator,
            msg: SweepMessage::Batch(b.batch.clone()),
        });
        let rtt = sweep.rtt;
        schedule_resend(cx, sweep_id, batch, attempt + 1, rtt);
    }

    /// The coordinator acked batch `batch`: the headers it carried are
    /// known from now on, a batch never resent tells how long acks take,
    /// and its place in the window goes to what waits. Acks from anyone
    /// else are refused (false).
    pub(crate) fn batch_acked(
        &mut self,
        cx: &mut Ctx,
        from: SocketAddr,
        sweep_id: u64,
        batch: u32,
    ) -> bool {
        let now = cx.mono();
        let Some(sweep) = self.sweeps.get_mut(&sweep_id) else {
            return true;
        };
        if sweep.coordinator != from {
            return false;
        }
        if let Some(Unacked {
            batch: b,
            sent_at,
            resent,
        }) = sweep.unacked.remove(&batch)
        {
            if !resent {
                sweep.rtt = Some(next_rtt(sweep.rtt, now.saturating_sub(sent_at)));
            }
            for g in b.groups.iter().filter(|g| g.header.is_some()) {
                if let Some(group) = sweep.groups.get_mut(g.key as usize) {
                    group.known = true;
                }
            }
            if !sweep.waiting.is_empty() && now < sweep.expires_at {
                // Full batches go now; a small rest waits for its flush
                // timer unless that has already fired.
                sweep.flush(cx, sweep_id, !sweep.overdue);
                sweep.overdue = sweep.overdue && !sweep.waiting.is_empty();
            }
        }
        true
    }

    pub(crate) fn forget(&mut self, sweep_id: u64) {
        self.sweeps.remove(&sweep_id);
    }
}

impl RelaySweep {
    /// The relayed form of `chunk` (its group, the answer, its encoded
    /// size), or None when this relay cannot take it: expired, more than
    /// one piece, malformed, over a bound, or too large for a batch.
    fn admit(
        &mut self,
        settings: &SweepSettings,
        now: Duration,
        chunk: &AnswerChunk,
    ) -> Option<(u32, RelayedAnswer, usize)> {
        if now >= self.expires_at
            || chunk.count != 1
            || chunk.index != 0
            || chunk.node.len() > super::coordinator::MAX_NODE_NAME
            || chunk.payload.len() > settings.chunk_payload(chunk.node.len())
            || self.taken.len() >= settings.max_relayed_nodes
        {
            return None;
        }
        let payload = AnswerPayload::decode(&chunk.payload).ok()?;
        let body = AnswerBody::decode(&payload.body).ok()?;
        if body.catalog.len() != body.results.len() || body.results.len() > usize::from(u16::MAX) {
            return None;
        }
        let found = self
            .groups
            .iter()
            .position(|g| g.header.tags == body.tags && g.header.catalog == body.catalog);
        let mut answer = RelayedAnswer {
            node: chunk.node.clone(),
            nonce: chunk.nonce,
            received_unix_ms: body.received_unix_ms,
            checks_ms: body.checks_ms,
            sent_after_ms: chunk
                .sent_unix_ms
                .saturating_sub(body.received_unix_ms)
                .min(u64::from(u32::MAX)) as u32,
            sent_tag: chunk.sent_tag,
            // Set when the batch leaves; the largest value sizes it here.
            held_ms: u32::MAX,
            diff: Vec::new(),
            proof: payload.proof,
        };
        let key = match found {
            Some(key) => {
                answer.diff = diff(&self.groups[key].header.base, &body.results);
                key
            }
            None => {
                if self.groups.len() >= MAX_GROUPS {
                    return None;
                }
                let header = GroupHeader {
                    tags: body.tags,
                    catalog: body.catalog,
                    base: body.results,
                };
                let header_len = encoded_len(&header);
                self.groups.push(Group {
                    header,
                    header_len,
                    known: false,
                });
                self.groups.len() - 1
            }
        };
        let len = encoded_len(&answer);
        let alone = BATCH_HEADER + GROUP_OVERHEAD + self.groups[key].header_len + len;
        if alone > settings.max_datagram {
            // Even alone in a batch it would not fit: the node must go to
            // the coordinator itself (its header stays, unused).
            return None;
        }
        let first = !self.waiting.iter().any(|(k, _, _)| *k as usize == key);
        let mut added = len;
        if first {
            added += GROUP_OVERHEAD;
            if !self.groups[key].known {
                added += self.groups[key].header_len;
            }
        }
        Some((key as u32, answer, added))
    }

    /// Forward what waits in batches of at most one datagram each, grouped
    /// by group, as many as `relay_window` leaves room for (the others
    /// keep waiting, for the next ack); with `full_only`, a last batch
    /// less than half full keeps waiting for the flush timer.
    fn flush(&mut self, cx: &mut Ctx, sweep_id: u64, full_only: bool) {
        let settings = cx.settings;
        let now = cx.mono();
        let mut waiting = std::mem::take(&mut self.waiting);
        self.waiting_bytes = 0;
        waiting.sort_by_key(|(key, _, _)| *key);
        // Each batch: its groups, its size, and its answers' arrivals.
        let mut batches: Vec<(Vec<RelayGroup>, usize, Vec<Duration>)> = Vec::new();
        let mut current: (Vec<RelayGroup>, usize, Vec<Duration>) =
            (Vec::new(), BATCH_HEADER, Vec::new());
        for (key, mut answer, arrived) in waiting {
            answer.held_ms = now
                .saturating_sub(arrived)
                .as_millis()
                .min(u128::from(u32::MAX)) as u32;
            let len = encoded_len(&answer);
            let group = &self.groups[key as usize];
            let open = current.0.last().is_some_and(|g| g.key == key);
            let group_len = GROUP_OVERHEAD + if group.known { 0 } else { group.header_len };
            let need = len + if open { 0 } else { group_len };
            if current.1 + need > settings.max_datagram && !current.0.is_empty() {
                batches.push(std::mem::replace(
                    &mut current,
                    (Vec::new(), BATCH_HEADER, Vec::new()),
                ));
            }
            let open = current.0.last().is_some_and(|g| g.key == key);
            if !open {
                current.0.push(RelayGroup {
                    key,
                    header: (!group.known).then(|| group.header.clone()),
                    nodes: Vec::new(),
                });
                current.1 += group_len;
            }
            if let Some(g) = current.0.last_mut() {
                g.nodes.push(answer);
            }
            current.1 += len;
            current.2.push(arrived);
        }
        if !current.0.is_empty() {
            batches.push(current);
        }
        // Beyond the window's room: back to wait for an ack. With
        // `full_only`, a last batch less than half full is not worth a
        // datagram yet: back to wait for the flush timer.
        let room = settings
            .relay_window
            .saturating_sub(self.unacked.len())
            .min(batches.len());
        let mut held = batches.split_off(room);
        if full_only
            && held.is_empty()
            && batches
                .last()
                .is_some_and(|b| b.1 < settings.max_datagram / 2)
        {
            held.extend(batches.pop());
            if !self.flush_pending {
                self.flush_pending = true;
                cx.push(Effect::Schedule {
                    after: settings.relay_flush,
                    timer: SweepTimer(TimerKind::RelayFlush(sweep_id)),
                });
            }
        }
        for (groups, bytes, arrivals) in held {
            let mut arrivals = arrivals.into_iter();
            for group in groups {
                for answer in group.nodes {
                    let arrived = arrivals.next().unwrap_or(now);
                    self.waiting.push((group.key, answer, arrived));
                }
            }
            self.waiting_bytes += bytes - BATCH_HEADER;
        }
        for (groups, _, _) in batches {
            let batch = RelayBatch {
                sweep_id,
                batch: self.next_batch,
                groups,
            };
            self.next_batch = self.next_batch.wrapping_add(1);
            cx.counters.relay.batches_sent += 1;
            cx.push(Effect::Send {
                to: self.coordinator,
                msg: SweepMessage::Batch(batch.clone()),
            });
            schedule_resend(cx, sweep_id, batch.batch, 1, self.rtt);
            self.unacked.insert(
                batch.batch,
                Unacked {
                    batch,
                    sent_at: cx.mono(),
                    resent: false,
                },
            );
        }
    }
}

/// The round-trip estimate after one more sample (RFC 6298: smoothed
/// with gain 1/8, its variation with gain 1/4).
fn next_rtt(rtt: Option<(Duration, Duration)>, sample: Duration) -> (Duration, Duration) {
    match rtt {
        None => (sample, sample / 2),
        Some((srtt, var)) => {
            let diff = srtt.abs_diff(sample);
            ((srtt * 7 + sample) / 8, (var * 3 + diff) / 4)
        }
    }
}

/// The wait before resend `n` (0 for the first): `retry` (the answer
/// retry delay of that attempt), or longer when acks take longer: the
/// smoothed round trip plus four times its variation, doubled per
/// attempt, up to `retry_max`.
fn resend_after(
    retry: Duration,
    n: u32,
    rtt: Option<(Duration, Duration)>,
    retry_max: Duration,
) -> Duration {
    let Some((srtt, var)) = rtt else {
        return retry;
    };
    let rto = (srtt + var * 4).saturating_mul(1u32 << n.min(16));
    retry.max(rto.min(retry_max))
}

/// A batch's resend: after the retry delay of its attempt, or the time
/// acks take now (smoothed plus four times its variation, doubling with
/// every attempt) when that is longer, so that a coordinator behind on
/// its queue is not sent copies of what waits in it.
fn schedule_resend(
    cx: &mut Ctx,
    sweep_id: u64,
    batch: u32,
    attempt: u32,
    rtt: Option<(Duration, Duration)>,
) {
    let n = attempt.saturating_sub(1);
    let after = resend_after(cx.retry_delay(n), n, rtt, cx.settings.retry_max);
    cx.push(Effect::Schedule {
        after,
        timer: SweepTimer(TimerKind::RelayResend(sweep_id, batch, attempt)),
    });
}

/// Where `results` differ from `base`, by index.
fn diff(base: &[CheckResult], results: &[CheckResult]) -> Vec<(u16, CheckResult)> {
    results
        .iter()
        .enumerate()
        .filter(|(i, r)| base.get(*i) != Some(r))
        .map(|(i, r)| (i as u16, r.clone()))
        .collect()
}

fn encoded_len<T: serde::Serialize>(value: &T) -> usize {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_or(usize::MAX / 4, |v| v.len())
}

/// The relays of sweep `id`: none below `relay_min_nodes`, else
/// `relays_for` of `candidates` (alive members the node filter keeps,
/// other than the coordinator), drawn at random (seeded by the sweep id).
/// `expected` is the number of members the filter keeps.
pub(crate) fn choose_relays(
    settings: &SweepSettings,
    id: u64,
    expected: usize,
    mut candidates: Vec<SocketAddr>,
    mut accept: impl FnMut(SocketAddr) -> bool,
) -> Vec<SocketAddr> {
    let count = settings.relays_for(expected, candidates.len());
    let mut rng = Prng::new(id ^ 0x7265_6c61_7973);
    // A partial shuffle, each draw looked at as it comes: a candidate
    // `accept` refuses is passed over, so only about `count` are looked
    // at (when every one is accepted, the draws are those of a plain
    // partial shuffle).
    let mut chosen = 0;
    for i in 0..candidates.len() {
        if chosen == count {
            break;
        }
        let j = i + (rng.next_u64() % (candidates.len() - i) as u64) as usize;
        candidates.swap(i, j);
        if accept(candidates[i]) {
            candidates.swap(chosen, i);
            chosen += 1;
        }
    }
    candidates.truncate(chosen);
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_refused_by_the_check_are_passed_over_and_the_rest_drawn_as_before() {
        let settings = SweepSettings::default();
        let candidates: Vec<SocketAddr> = (0..20_000u16)
            .map(|i| SocketAddr::from(([127, 0, (i >> 8) as u8, i as u8], 7946)))
            .collect();
        let expected = 100_000;
        let count = settings.relays_for(expected, candidates.len());
        assert!(count > 10, "{count} relays");
        let all = choose_relays(&settings, 7, expected, candidates.clone(), |_| true);
        assert_eq!(all.len(), count);
        // The same sweep id draws the same relays.
        assert_eq!(
            all,
            choose_relays(&settings, 7, expected, candidates.clone(), |_| true)
        );
        // Refusing every other address: still `count` relays, none refused,
        // and the checker asked about few more than it was given.
        let odd = |a: SocketAddr| match a.ip() {
            std::net::IpAddr::V4(ip) => ip.octets()[3] % 2 == 1,
            std::net::IpAddr::V6(_) => false,
        };
        let mut asked = 0;
        let some = choose_relays(&settings, 7, expected, candidates.clone(), |a| {
            asked += 1;
            odd(a)
        });
        assert_eq!(some.len(), count);
        assert!(some.iter().all(|a| odd(*a)), "a refused candidate relays");
        assert!(asked < 4 * count, "{asked} asked for {count} relays");
        // Too few accepted: only those.
        let one = candidates[123];
        assert_eq!(
            choose_relays(&settings, 7, expected, candidates, |a| a == one),
            vec![one]
        );
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_round_trip_estimate_follows_acks_as_tcp_does() {
        let rtt = next_rtt(None, 40 * MS);
        assert_eq!(rtt, (40 * MS, 20 * MS));
        // A coordinator falling behind: acks take 400 ms.
        let rtt = next_rtt(Some(rtt), 400 * MS);
        assert_eq!(rtt, (85 * MS, 105 * MS));
    }

    #[test]
    fn a_resend_waits_for_acks_that_come_late_and_no_longer_than_retry_max() {
        let retry = 150 * MS;
        let max = 800 * MS;
        // No ack timed yet, or acks quick: the retry delay.
        assert_eq!(resend_after(retry, 0, None, max), retry);
        assert_eq!(resend_after(retry, 0, Some((5 * MS, 2 * MS)), max), retry);
        // Acks take about 200 ms, varying by 30: 320 ms, then doubled.
        let slow = Some((200 * MS, 30 * MS));
        assert_eq!(resend_after(retry, 0, slow, max), 320 * MS);
        assert_eq!(resend_after(300 * MS, 1, slow, max), 640 * MS);
        // Never past retry_max for the round trip's sake.
        assert_eq!(resend_after(600 * MS, 2, slow, max), max);
        assert_eq!(resend_after(retry, 0, Some((2 * max, MS)), max), max);
    }
}
