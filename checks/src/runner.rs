//! Running checks: concurrently under a limit, each under its timeout,
//! their blocking host calls capped per kind ([`crate::blocking`]).
//! Never fails: a check that hangs, floods or panics becomes an `error`
//! outcome, and the others still finish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::blocking::BlockingCalls;
use crate::host::Host;
use crate::kinds::{Context, Finding, Verdict};
use crate::{CheckOutcome, CheckSpec, Observed, Severity, Status};

/// Runs checks against one host. Cheap to clone; clones share the limit
/// and the blocking-call slots.
#[derive(Clone)]
pub struct Runner {
    host: Arc<dyn Host>,
    limit: Arc<Semaphore>,
    calls: Arc<BlockingCalls>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("available", &self.limit.available_permits())
            .finish()
    }
}

impl Runner {
    /// `concurrency` checks run at once (at least one), with the default
    /// [`patrol_config::DEFAULT_BLOCKING_PER_KIND`] blocking calls per kind.
    pub fn new(host: Arc<dyn Host>, concurrency: usize) -> Runner {
        Runner::with_limits(host, concurrency, patrol_config::DEFAULT_BLOCKING_PER_KIND)
    }

    /// The limits of a node's `[checks]` section: `concurrency` and
    /// `blocking_per_kind`.
    pub fn for_checks(host: Arc<dyn Host>, checks: &patrol_config::ChecksSection) -> Runner {
        Runner::with_limits(host, checks.concurrency, checks.blocking_per_kind)
    }

    /// `concurrency` checks at once, `blocking_per_kind` blocking host
    /// calls of each kind in flight at once (both at least one).
    pub fn with_limits(
        host: Arc<dyn Host>,
        concurrency: usize,
        blocking_per_kind: usize,
    ) -> Runner {
        Runner {
            host,
            limit: Arc::new(Semaphore::new(concurrency.max(1))),
            calls: Arc::new(BlockingCalls::new(blocking_per_kind)),
        }
    }

    /// The blocking-call slots this runner's checks share.
    pub fn blocking_calls(&self) -> &BlockingCalls {
        &self.calls
    }

    /// Run `checks`; the outcomes come back in the same order.
    pub async fn run(&self, checks: &[CheckSpec]) -> Vec<CheckOutcome> {
        self.run_until(checks, None).await
    }

    /// Run `checks` within `budget` (what is left of a sweep's deadline).
    /// A check's timeout is cut to what remains of the budget when it gets
    /// its slot; a check still waiting for a slot when the budget is spent
    /// is not started and comes back as `error` saying so. Every check
    /// still gets an outcome, in the same order, by the end of the budget
    /// (plus the time a kind needs to notice its own timeout).
    pub async fn run_within(&self, checks: &[CheckSpec], budget: Duration) -> Vec<CheckOutcome> {
        let deadline = tokio::time::Instant::now() + budget;
        self.run_until(checks, Some((deadline, budget))).await
    }

    async fn run_until(
        &self,
        checks: &[CheckSpec],
        deadline: Option<(tokio::time::Instant, Duration)>,
    ) -> Vec<CheckOutcome> {
        let mut running = Running(Vec::with_capacity(checks.len()));
        for spec in checks {
            let mut spec = spec.clone();
            let host = Arc::clone(&self.host);
            let limit = Arc::clone(&self.limit);
            let calls = Arc::clone(&self.calls);
            running.0.push(tokio::spawn(async move {
                let Some((deadline, budget)) = deadline else {
                    // The semaphore is never closed, so acquire cannot fail.
                    let _permit = limit.acquire_owned().await.ok();
                    return run_one(&host, &calls, &spec).await;
                };
                let not_started = |spec: &CheckSpec| {
                    outcome(
                        spec,
                        Finding::error(
                            spec.expect.describe(),
                            format!(
                                "not started: the {} budget ran out while other checks held every slot",
                                patrol_config::format_duration(budget)
                            ),
                        ),
                        0,
                    )
                };
                let _permit = match tokio::time::timeout_at(deadline, limit.acquire_owned()).await
                {
                    Ok(p) => p.ok(),
                    Err(_) => return not_started(&spec),
                };
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return not_started(&spec);
                }
                spec.timeout = spec.timeout.min(left);
                run_one(&host, &calls, &spec).await
            }));
        }
        let mut out = Vec::with_capacity(checks.len());
        for (handle, spec) in running.0.iter_mut().zip(checks) {
            out.push(match handle.await {
                Ok(o) => o,
                Err(e) => outcome(
                    spec,
                    Finding::error(spec.expect.describe(), format!("the check crashed: {e}")),
                    0,
                ),
            });
        }
        out
    }
}

/// The tasks of a run's checks, aborted when the run is dropped (its sweep
/// or its agent stopped): a check never outlives the caller waiting for
/// it, and a command check's process group is killed as its task ends.
struct Running(Vec<tokio::task::JoinHandle<CheckOutcome>>);

impl Drop for Running {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}

/// Run one check under its timeout.
async fn run_one(host: &Arc<dyn Host>, calls: &BlockingCalls, spec: &CheckSpec) -> CheckOutcome {
    let start = Instant::now();
    let cx = Context {
        host,
        timeout: spec.timeout,
        run_as: spec.run_as.as_ref(),
        calls,
        kind: spec.kind.name(),
    };
    let finding = match tokio::time::timeout(spec.timeout, spec.kind.run(&cx, &spec.expect)).await {
        Ok(f) => f,
        Err(_) => Finding::error(
            spec.expect.describe(),
            format!(
                "no result within the {} timeout (check cut off)",
                patrol_config::format_duration(spec.timeout)
            ),
        ),
    };
    let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    outcome(spec, finding, us)
}

/// What an observe-only check shows as its expectation.
pub const OBSERVE_ONLY: &str = "(observe only)";

fn outcome(spec: &CheckSpec, mut f: Finding, duration_us: u64) -> CheckOutcome {
    if spec.observe_only {
        // Observe only: whatever was observed passes; only "could not
        // observe" stays an error.
        if matches!(f.verdict, Verdict::Warn | Verdict::Miss) {
            f.verdict = Verdict::Pass;
            f.message = format!("observed {}", crate::expect::show(&f.observed));
        }
        f.expected = OBSERVE_ONLY.to_string();
    }
    let status = match f.verdict {
        Verdict::Pass => Status::Pass,
        Verdict::Warn => Status::Warn,
        Verdict::Error => Status::Error,
        Verdict::Miss => match spec.severity {
            Severity::Warn => Status::Warn,
            Severity::Fail => Status::Fail,
        },
    };
    CheckOutcome {
        id: spec.id.clone(),
        kind: spec.kind.name().to_string(),
        status,
        severity: spec.severity,
        observed: if status == Status::Error && f.observed == Observed::None {
            Observed::None
        } else {
            f.observed
        },
        expected: f.expected,
        message: f.message,
        duration_us,
        description: spec.description.clone(),
        remediation: spec.remediation.clone(),
    }
}
