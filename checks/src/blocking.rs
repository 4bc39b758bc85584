//! Blocking host calls (file reads, `statvfs`, `/dev/kmsg`, HTTP, name
//! lookups, TCP connects) run on tokio's blocking pool, at most a few per
//! check kind at once.
//!
//! A blocking call cannot be cancelled: when its check times out, the
//! thread goes on waiting. A `statvfs` on a hung NFS mount never returns,
//! so without a cap every sweep would leave one more thread stuck on it
//! until the pool is exhausted. Here each kind has `cap` slots (`[checks]
//! blocking_per_kind`); a call holds its slot until its thread returns,
//! whether or not anyone still waits for it.
//!
//! - A slot is free: the call starts.
//! - Every slot is held and some holder's check still waits for it: the
//!   call waits for a slot (asynchronously, holding no thread), bounded by
//!   its own check's timeout. A burst of healthy checks of one kind is
//!   only slowed down.
//! - Every slot is held by a call its check gave up on (*blocked*): the
//!   call does not start and the check gets an `error` at once, "4 earlier
//!   disk calls are still blocked; not starting another". When the hung
//!   calls return, their slots are free again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::host::Host;
use crate::kinds::CheckKind;

/// The blocking-call slots of every check kind. Shared by the clones of a
/// [`crate::Runner`].
#[derive(Debug)]
pub struct BlockingCalls {
    cap: usize,
    kinds: BTreeMap<&'static str, Arc<KindSlots>>,
}

/// One kind's slots.
#[derive(Debug)]
struct KindSlots {
    cap: usize,
    slots: Arc<Semaphore>,
    /// Calls holding a slot that no check waits for any more.
    blocked: AtomicUsize,
    /// Woken when a call becomes blocked, so that waiters look again.
    became_blocked: Notify,
}

/// Where one call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Its check gave up on it; it still holds its slot.
    Blocked,
    Done,
}

impl BlockingCalls {
    /// `cap` calls of each kind in flight at once (at least one).
    pub fn new(cap: usize) -> BlockingCalls {
        let cap = cap.max(1);
        let kinds = CheckKind::NAMES
            .iter()
            .map(|name| {
                let slots = KindSlots {
                    cap,
                    slots: Arc::new(Semaphore::new(cap)),
                    blocked: AtomicUsize::new(0),
                    became_blocked: Notify::new(),
                };
                (*name, Arc::new(slots))
            })
            .collect();
        BlockingCalls { cap, kinds }
    }

    /// Slots per kind.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Calls of `kind` that hold a slot although their check gave up on
    /// them.
    pub fn blocked(&self, kind: &str) -> usize {
        self.kinds
            .get(kind)
            .map_or(0, |k| k.blocked.load(Ordering::SeqCst))
    }

    /// Run `f` on the blocking pool in one of `kind`'s slots. `Err` says
    /// why it did not run or did not finish, in words for the check's
    /// message.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        kind: &'static str,
        host: &Arc<dyn Host>,
        f: impl FnOnce(&dyn Host) -> T + Send + 'static,
    ) -> Result<T, String> {
        let Some(slots) = self.kinds.get(kind).cloned() else {
            return Err(format!(
                "internal error: no blocking-call slots for `{kind}`"
            ));
        };
        let permit = slots.acquire(kind).await?;
        let phase = Arc::new(Mutex::new(Phase::Running));
        let mut watch = GiveUpWatch {
            slots: Arc::clone(&slots),
            phase: Arc::clone(&phase),
            armed: true,
        };
        let finish = Finish {
            slots,
            phase,
            _permit: permit,
        };
        let h = Arc::clone(host);
        let joined = tokio::task::spawn_blocking(move || {
            // Dropped when `f` returns or panics: the slot is free again.
            let _finish = finish;
            f(&*h)
        })
        .await;
        watch.armed = false;
        joined.map_err(|e| format!("internal error: {e}"))
    }
}

impl KindSlots {
    async fn acquire(&self, kind: &str) -> Result<OwnedSemaphorePermit, String> {
        loop {
            let notified = self.became_blocked.notified();
            tokio::pin!(notified);
            // Registered before looking, so a call that becomes blocked
            // after the look still wakes this waiter.
            notified.as_mut().enable();
            if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
                return Ok(permit);
            }
            // Blocked calls hold slots: when all of them are blocked, no
            // slot will come free by waiting for a check.
            let blocked = self.blocked.load(Ordering::SeqCst);
            if blocked >= self.cap {
                let calls = if blocked == 1 { "call is" } else { "calls are" };
                return Err(format!(
                    "{blocked} earlier {kind} {calls} still blocked; not starting another"
                ));
            }
            tokio::select! {
                permit = Arc::clone(&self.slots).acquire_owned() => {
                    // The semaphore is never closed.
                    return permit.map_err(|e| format!("internal error: {e}"));
                }
                () = &mut notified => {}
            }
        }
    }
}

/// Marks the call blocked when the check stops waiting for it (its future
/// is dropped: a timeout, a sweep's budget) before the thread returned.
struct GiveUpWatch {
    slots: Arc<KindSlots>,
    phase: Arc<Mutex<Phase>>,
    armed: bool,
}

impl Drop for GiveUpWatch {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if *phase == Phase::Running {
            *phase = Phase::Blocked;
            self.slots.blocked.fetch_add(1, Ordering::SeqCst);
            drop(phase);
            self.slots.became_blocked.notify_waiters();
        }
    }
}

/// Held by the thread: when the call returns (or panics), it is no longer
/// blocked and its slot is free.
struct Finish {
    slots: Arc<KindSlots>,
    phase: Arc<Mutex<Phase>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if *phase == Phase::Blocked {
            self.slots.blocked.fetch_sub(1, Ordering::SeqCst);
        }
        *phase = Phase::Done;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::FixtureHost;

    fn host() -> Arc<dyn Host> {
        Arc::new(FixtureHost::new("/nonexistent"))
    }

    #[tokio::test]
    async fn a_call_that_panics_frees_its_slot() {
        let calls = BlockingCalls::new(1);
        let h = host();
        let err = calls
            .run("disk", &h, |_| -> u32 { panic!("a bug in a kind") })
            .await
            .unwrap_err();
        assert!(err.starts_with("internal error"), "{err}");
        assert_eq!(calls.run("disk", &h, |_| 7).await, Ok(7));
    }

    #[tokio::test]
    async fn a_call_given_up_on_is_blocked_until_it_returns() {
        let calls = BlockingCalls::new(1);
        let h = host();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let given_up = tokio::time::timeout(
            Duration::from_millis(50),
            calls.run("memory", &h, move |_| wait.recv().is_ok()),
        )
        .await;
        assert!(given_up.is_err(), "the call should still be running");
        assert_eq!(calls.blocked("memory"), 1);
        assert_eq!(
            calls.run("memory", &h, |_| ()).await,
            Err("1 earlier memory call is still blocked; not starting another".into())
        );
        // Other kinds have slots of their own.
        assert_eq!(calls.run("sysctl", &h, |_| 1).await, Ok(1));
        release.send(()).unwrap();
        for _ in 0..500 {
            if calls.blocked("memory") == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(calls.blocked("memory"), 0);
        assert_eq!(calls.run("memory", &h, |_| 2).await, Ok(2));
    }
}
