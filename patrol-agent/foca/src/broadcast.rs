/* This Source Code Form is subject to the terms of the Mozilla Public
 * License, v. 2.0. If a copy of the MPL was not distributed with this
 * file, You can obtain one at https://mozilla.org/MPL/2.0/. */
use alloc::{collections::BTreeMap, vec::Vec};
use core::cmp::Ordering;

use bytes::BufMut;

/// A type capable of decoding a (associated) broadcast from a buffer
/// and deciding whether to keep disseminating it for other members
/// of the cluster (when it's new information) or to discard it (when
/// its outdated/stale).
pub trait BroadcastHandler<T> {
    /// A unique identifier for the broadcasts this handler manages
    ///
    /// It should be able to compare itself against an arbitrary number
    /// of other [`Self::Key`] instances and decide wether it
    /// replaces it or not so conflicting/stale information isn't
    /// disseminated.
    type Key: Invalidates;

    /// The error type that `receive_item` may emit. Will be wrapped
    /// by [`crate::Error::CustomBroadcast`].
    type Error: core::error::Error + Send + Sync + 'static;

    /// Decodes a [`Self::Key`] from a buffer and either discards
    /// it or tells Foca to persist and disseminate it.
    ///
    /// `Sender` is `None` when you're adding broadcast data directly,
    /// via [`crate::Foca::add_broadcast`], otherwise it will be the
    /// address of the member that sent the data. Notice that Foca
    /// doesn't track the origin of packets- if you need it you
    /// have to add it to the data you're broadcasting.
    ///
    /// When you receive a broadcast you have to decide whether it's
    /// new information that needs to be disseminated (`Ok(Some(...))`)
    /// or not (`Ok(None)`).
    ///
    /// Always yielding `Some(...)` is wrong because Foca will never
    /// know when to stop sending this information to other members.
    ///
    /// Example: Assume your custom broadcast is a simple Set-Key-Value
    /// operation. When you receive it you should check if your map
    /// contains the Key-Value pair; If it didn't, you yield
    /// `Some`, otherwise the operation is stale, so you yield `None`.
    ///
    /// The `data` parameter is the exact data provided to
    /// [`crate::Foca::add_broadcast`]. When Foca receives N custom
    /// broadcasts at once, this gets called N times.
    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&T>,
    ) -> Result<Option<Self::Key>, Self::Error>;

    /// Decides whether Foca should add broadcast data to the message
    /// it's about to send to active member `T`.
    ///
    /// Normally when Foca sends a message it always tries to include
    /// custom broadcasts alongside the information it actually
    /// cares about; This allows implementations to override this
    /// logic with something else.
    ///
    /// Example: You are running a heterogeneous cluster and some nodes
    /// are always very busy and you'd rather they never have to deal
    /// with the extra cpu/bandwidth cost of receiving/sending
    /// your custom broadcasts.
    ///
    /// Returning `true` tells Foca to proceed as it would normally,
    /// including broadcasts in the messages it sends when it can.
    ///
    /// Returning `false` tells Foca to not include such broadcasts
    /// in the message. It does *not* prevent the message from being
    /// sent, just keeps Foca from attaching extra data to them.
    fn should_add_broadcast_data(&self, _member: &T) -> bool {
        true
    }
}

/// A type that's able to look at another and decide wether it's
/// newer/fresher (i.e. invalidates) than it.
///
/// As you send/receive broadcasts, Foca will hold them for a while
/// as it disseminates the data to other cluster members. This trait
/// helps with replacing data that hasn't been fully disseminated
/// yet but you already know it's stale.
///
/// Example: Assume a versioned broadcast like `{key,version,...}`;
/// After you receive `{K, 0, ...}` and keep it, Foca will be
/// disseminating it. Soon after you receive `{K, 1, ...}` which
/// is a newer version for this broadcast. This trait enables
/// Foca to immediately stop disseminating the previous version,
/// even if it hasn't sent it to everyone it can yet.
pub trait Invalidates {
    /// When `item.invalidates(&other)` it means that Foca will
    /// keep `item` and discard `other` from its dissemination
    /// backlog.
    fn invalidates(&self, other: &Self) -> bool;
}

impl Invalidates for &[u8] {
    fn invalidates(&self, other: &Self) -> bool {
        self.eq(other)
    }
}

pub(crate) struct Broadcasts<V> {
    flip: alloc::collections::BinaryHeap<Entry<V>>,
    flop: alloc::collections::BinaryHeap<Entry<V>>,
    // How many entries hold data of each length: the smallest tells
    // `fill` when nothing else can fit in the buffer.
    lengths: BTreeMap<usize, usize>,
}

fn count_in(lengths: &mut BTreeMap<usize, usize>, len: usize) {
    *lengths.entry(len).or_default() += 1;
}

fn count_out(lengths: &mut BTreeMap<usize, usize>, len: usize) {
    if let Some(count) = lengths.get_mut(&len) {
        *count -= 1;
        if *count == 0 {
            lengths.remove(&len);
        }
    } else {
        debug_assert!(false, "no entry of length {len} was counted");
    }
}

impl<T> Broadcasts<T>
where
    T: Invalidates,
{
    pub(crate) fn new() -> Self {
        Self {
            flip: Default::default(),
            flop: Default::default(),
            lengths: BTreeMap::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.flip.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.flip.is_empty()
    }

    pub(crate) fn add_or_replace(&mut self, item: T, data: Vec<u8>, max_tx: usize) {
        debug_assert!(max_tx > 0);
        let lengths = &mut self.lengths;
        self.flip.retain(|node| {
            let keep = !item.invalidates(&node.item);
            if !keep {
                count_out(lengths, node.data.len());
            }
            keep
        });
        count_in(&mut self.lengths, data.len());
        self.flip.push(Entry {
            remaining_tx: max_tx,
            item,
            data,
        });
    }

    // The length of the shortest entry (zero if there are none): once the
    // buffer has less room than this, no entry left can fit.
    fn shortest(&self) -> usize {
        self.lengths.keys().next().copied().unwrap_or(0)
    }

    pub(crate) fn fill(&mut self, buffer: impl BufMut, max_items: usize) -> usize {
        self.fill_with_overhead(buffer, max_items, 0)
    }

    pub(crate) fn fill_with_len_prefix(&mut self, buffer: impl BufMut, max_items: usize) -> usize {
        self.fill_with_overhead(buffer, max_items, 2)
    }

    // Takes entries in order and writes those that fit, each prefixed by
    // its length as a u16 if `overhead` is 2. Stops once the buffer is
    // full: when it has no room left for the shortest entry (the
    // shortest of all, so of those not yet looked at too), instead of
    // popping every entry left to find that none fits.
    fn fill_with_overhead(
        &mut self,
        mut buffer: impl BufMut,
        max_items: usize,
        overhead: usize,
    ) -> usize {
        if self.flip.is_empty() {
            return 0;
        }
        debug_assert!(self.flop.is_empty());

        let mut num_taken = 0;
        let mut remaining = max_items;
        let room_needed = usize::max(1, self.shortest() + overhead);

        while buffer.remaining_mut() >= room_needed && remaining > 0 {
            let Some(mut node) = self.flip.pop() else {
                break;
            };
            debug_assert!(node.remaining_tx > 0);

            if buffer.remaining_mut() >= node.data.len() + overhead {
                num_taken += 1;
                remaining -= 1;

                if overhead == 2 {
                    debug_assert!(u16::try_from(node.data.len()).is_ok());
                    buffer.put_u16(node.data.len() as u16);
                }
                buffer.put_slice(&node.data);
                node.remaining_tx -= 1;
            }

            if node.remaining_tx > 0 {
                self.flop.push(node);
            } else {
                count_out(&mut self.lengths, node.data.len());
            }
        }

        self.flip.append(&mut self.flop);

        num_taken
    }
}

#[derive(Debug, Clone)]
struct Entry<T> {
    remaining_tx: usize,
    // XXX could be Bytes, or keep a pool in parent
    data: Vec<u8>,
    // ignored for eq/ord. sorting is unstable
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.remaining_tx
            .cmp(&other.remaining_tx)
            .then_with(|| self.data.len().cmp(&other.data.len()))
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    struct Key(&'static str);

    impl Invalidates for Key {
        fn invalidates(&self, other: &Self) -> bool {
            self.0 == other.0
        }
    }

    #[test]
    fn piggyback_behaviour() {
        let max_tx = 5;
        let mut piggyback = Broadcasts::new();

        assert!(piggyback.is_empty(), "Piggyback starts empty");

        piggyback.add_or_replace(Key("AA"), b"AAabc".to_vec(), max_tx);

        assert_eq!(1, piggyback.len());

        piggyback.add_or_replace(Key("AA"), b"AAcba".to_vec(), max_tx);

        assert_eq!(
            1,
            piggyback.len(),
            "add_or_replace with same key should replace"
        );

        let mut buf = Vec::new();

        for _i in 0..max_tx {
            buf.clear();
            let num_items = piggyback.fill(&mut buf, usize::MAX);
            assert_eq!(1, num_items);
            assert_eq!(
                b"AAcba",
                &buf[..],
                "Should transmit an item at most max_tx times"
            );
        }

        assert!(
            piggyback.is_empty(),
            "Should remove item after being used max_tx times"
        );
    }

    #[test]
    fn fill_does_nothing_if_buffer_full() {
        let mut piggyback = Broadcasts::new();
        piggyback.add_or_replace(Key("a "), b"a super long value".to_vec(), 1);

        let buf = bytes::BytesMut::new();
        let mut limited = buf.limit(5);

        let num_items = piggyback.fill(&mut limited, usize::MAX);

        assert_eq!(0, num_items);
        assert_eq!(5, limited.remaining_mut());
        assert_eq!(1, piggyback.len());
    }

    #[test]
    fn piggyback_consumes_largest_first() {
        let max_tx = 10;
        let mut piggyback = Broadcasts::new();

        piggyback.add_or_replace(Key("00"), b"00hi".to_vec(), max_tx);
        piggyback.add_or_replace(Key("01"), b"01hello".to_vec(), max_tx);
        piggyback.add_or_replace(Key("02"), b"02hey".to_vec(), max_tx);

        let mut buf = Vec::new();
        let num_items = piggyback.fill(&mut buf, usize::MAX);

        assert_eq!(3, num_items);
        assert_eq!(b"01hello02hey00hi", &buf[..]);
    }

    #[test]
    fn highest_max_tx_is_consumed_first() {
        let mut piggyback = Broadcasts::new();

        // 3 items, same byte size, distinct max_tx
        piggyback.add_or_replace(Key("10"), b"100".to_vec(), 1);
        piggyback.add_or_replace(Key("20"), b"200".to_vec(), 2);
        piggyback.add_or_replace(Key("30"), b"300".to_vec(), 3);

        let mut buf = Vec::new();
        piggyback.fill(&mut buf, usize::MAX);
        assert_eq!(b"300200100", &buf[..]);

        buf.clear();
        piggyback.fill(&mut buf, usize::MAX);
        assert_eq!(b"300200", &buf[..]);

        buf.clear();
        piggyback.fill(&mut buf, usize::MAX);
        assert_eq!(b"300", &buf[..]);

        assert_eq!(0, piggyback.len());
    }

    #[test]
    fn piggyback_respects_limit() {
        let max_tx = 10;
        let mut piggyback = Broadcasts::new();

        piggyback.add_or_replace(Key("fo"), b"foo".to_vec(), max_tx);
        piggyback.add_or_replace(Key("ba"), b"bar".to_vec(), max_tx);
        piggyback.add_or_replace(Key("ba"), b"baz".to_vec(), max_tx);

        let mut buf = Vec::new();
        let num_items = piggyback.fill(&mut buf, 0);

        assert_eq!(0, num_items);
        assert!(buf.is_empty());

        let num_items = piggyback.fill(&mut buf, 2);
        assert_eq!(2, num_items);
    }

    #[test]
    fn fill_with_len_prefix() {
        let mut bcs = Broadcasts::new();

        bcs.add_or_replace(Key("fo"), b"foo".to_vec(), 10);
        bcs.add_or_replace(Key("ba"), b"barr".to_vec(), 10);
        bcs.add_or_replace(Key("ba"), b"bazz".to_vec(), 10);

        let mut buf = Vec::new();
        let num_items = bcs.fill_with_len_prefix(&mut buf, 0);

        assert_eq!(0, num_items);
        assert!(buf.is_empty());

        let num_items = bcs.fill_with_len_prefix(&mut buf, 2);
        assert_eq!(2, num_items);

        use bytes::Buf;
        let mut buf = &buf[..];
        assert_eq!(4, buf.get_u16());
        assert_eq!(&b"bazz"[..], &buf[..4]);
        buf.advance(4);
        assert_eq!(3, buf.get_u16());
        assert_eq!(&b"foo"[..], &buf[..3]);
        buf.advance(3);
        assert!(buf.is_empty());
    }

    // The fill of foca 2.0.0, which looks at every entry whatever room is
    // left: the reference `fill` must agree with.
    fn fill_looking_at_every_entry(b: &mut Broadcasts<u32>, mut buffer: impl BufMut) -> usize {
        let mut num_taken = 0;
        while buffer.has_remaining_mut() {
            let Some(mut node) = b.flip.pop() else {
                break;
            };
            if buffer.remaining_mut() >= node.data.len() {
                num_taken += 1;
                buffer.put_slice(&node.data);
                node.remaining_tx -= 1;
            }
            if node.remaining_tx > 0 {
                b.flop.push(node);
            } else {
                count_out(&mut b.lengths, node.data.len());
            }
        }
        b.flip.append(&mut b.flop);
        num_taken
    }

    impl Invalidates for u32 {
        fn invalidates(&self, other: &Self) -> bool {
            self == other
        }
    }

    fn assert_lengths_counted(b: &Broadcasts<u32>) {
        let counted: usize = b.lengths.values().sum();
        assert_eq!(b.flip.len(), counted, "every entry's length counted once");
        let shortest = b.flip.iter().map(|e| e.data.len()).min().unwrap_or(0);
        assert_eq!(shortest, b.shortest());
    }

    #[test]
    fn fill_takes_what_looking_at_every_entry_takes() {
        use rand::{RngExt, SeedableRng, rngs::SmallRng};
        let mut rng = SmallRng::seed_from_u64(0xF0CA);

        for _ in 0..200 {
            let mut ours = Broadcasts::new();
            let mut reference = Broadcasts::new();
            // Distinct lengths, so that the order of entries is total and
            // both take them in the same order
            let mut lens: Vec<usize> = (1..=80).collect();
            lens.retain(|_| rng.random_bool(0.5));
            for (key, &len) in lens.iter().enumerate() {
                let key = u32::try_from(key).unwrap();
                let max_tx = rng.random_range(1..4);
                let data = alloc::vec![(len % 251) as u8; len];
                ours.add_or_replace(key, data.clone(), max_tx);
                reference.add_or_replace(key, data, max_tx);
            }
            // And some replaced
            for key in 0..5 {
                if usize::try_from(key).unwrap() < lens.len() {
                    ours.add_or_replace(key, alloc::vec![1; 90 + key as usize], 2);
                    reference.add_or_replace(key, alloc::vec![1; 90 + key as usize], 2);
                }
            }
            assert_lengths_counted(&ours);

            while !ours.is_empty() {
                let room = rng.random_range(0..200);
                let mut got = Vec::new();
                let mut want = Vec::new();
                let n = ours.fill((&mut got).limit(room), usize::MAX);
                let m = fill_looking_at_every_entry(&mut reference, (&mut want).limit(room));
                assert_eq!((m, want), (n, got), "room {room}");
                assert_lengths_counted(&ours);
            }
            assert!(reference.is_empty());
            assert!(ours.lengths.is_empty());
        }
    }
}
