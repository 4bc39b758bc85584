//! The timer task: one min-heap that delivers timer events in deadline
//! order (ties in submission order) back to the agent's owner task.
//!
//! foca's timers and the sweep core's timers are plain values; the owner
//! task hands them here with a delay and gets them back when due, so the
//! state machines never sleep or read a clock themselves.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::shutdown::Tasks;

/// Submit side of the timer task.
#[derive(Debug)]
pub struct TimerSender<E> {
    tx: mpsc::UnboundedSender<(Instant, E)>,
}

impl<E> Clone for TimerSender<E> {
    fn clone(&self) -> Self {
        TimerSender {
            tx: self.tx.clone(),
        }
    }
}

impl<E> TimerSender<E> {
    /// Deliver `event` after `after`. Silently nothing once the task ended
    /// (the agent is shutting down).
    pub fn submit(&self, after: Duration, event: E) {
        let _ = self.tx.send((Instant::now() + after, event));
    }
}

struct Entry<E> {
    due: Instant,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// Start the timer task in `tasks`. It ends when every sender is dropped,
/// the receiver of due events is dropped, or the tasks are shut down.
pub fn spawn<E: Send + 'static>(tasks: &mut Tasks) -> (TimerSender<E>, mpsc::UnboundedReceiver<E>) {
    let (in_tx, mut in_rx) = mpsc::unbounded_channel::<(Instant, E)>();
    let (out_tx, out_rx) = mpsc::unbounded_channel::<E>();
    tasks.spawn(async move {
        let mut heap: BinaryHeap<Reverse<Entry<E>>> = BinaryHeap::new();
        let mut seq = 0u64;
        loop {
            let next_due = heap.peek().map(|Reverse(e)| e.due);
            tokio::select! {
                biased;
                incoming = in_rx.recv() => match incoming {
                    Some((due, event)) => {
                        seq += 1;
                        heap.push(Reverse(Entry { due, seq, event }));
                    }
                    None => break,
                },
                _ = async { tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)).await }, if next_due.is_some() => {
                    let now = Instant::now();
                    while heap.peek().is_some_and(|Reverse(e)| e.due <= now) {
                        if let Some(Reverse(entry)) = heap.pop() {
                            if out_tx.send(entry.event).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        }
    });
    (TimerSender { tx: in_tx }, out_rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn delivers_in_deadline_order() {
        let mut tasks = Tasks::new();
        let (tx, mut rx) = spawn::<u32>(&mut tasks);
        tx.submit(Duration::from_millis(30), 3);
        tx.submit(Duration::from_millis(10), 1);
        tx.submit(Duration::from_millis(20), 2);
        tx.submit(Duration::from_millis(20), 22);
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(rx.recv().await.unwrap());
        }
        assert_eq!(got, vec![1, 2, 22, 3]);
    }
}
