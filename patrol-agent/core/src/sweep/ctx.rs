//! The context every sub-machine of the sweep core works in: who this node
//! is, its settings, its random numbers, its trust, its counters, the time
//! of the input being handled and the effects it produces.
//!
//! [`Env`] owns the long-lived part (one per [`super::SweepCore`]); a
//! [`Ctx`] borrows it for one input, together with the time and the output
//! list, and is handed to the coordinator, participant and relay sides in
//! turn. A sub-machine never reaches for anything that is not in its `Ctx`
//! or its own state, so what it can touch is visible in its signature.

use std::time::Duration;

use super::auth::SweepTrust;
use super::{Effect, Peer, SweepCounters, SweepSettings};
use crate::clock::Now;

/// What a node's sweep core keeps besides its three sides.
#[derive(Debug)]
pub(crate) struct Env {
    pub(crate) me: Peer,
    pub(crate) cluster: String,
    pub(crate) settings: SweepSettings,
    pub(crate) rng: Prng,
    pub(crate) counters: SweepCounters,
    /// With certificates: this node's identity and the CAs it accepts.
    pub(crate) trust: Option<SweepTrust>,
}

/// One input's view of [`Env`], with the time and the effects out.
pub(crate) struct Ctx<'a> {
    pub(crate) me: &'a Peer,
    pub(crate) cluster: &'a str,
    pub(crate) settings: &'a SweepSettings,
    pub(crate) rng: &'a mut Prng,
    pub(crate) counters: &'a mut SweepCounters,
    pub(crate) trust: Option<&'a mut SweepTrust>,
    pub(crate) now: Now,
    pub(crate) out: &'a mut Vec<Effect>,
}

impl Env {
    pub(crate) fn ctx<'a>(&'a mut self, now: Now, out: &'a mut Vec<Effect>) -> Ctx<'a> {
        Ctx {
            me: &self.me,
            cluster: &self.cluster,
            settings: &self.settings,
            rng: &mut self.rng,
            counters: &mut self.counters,
            trust: self.trust.as_mut(),
            now,
            out,
        }
    }
}

impl Ctx<'_> {
    /// The monotonic time of this input.
    pub(crate) fn mono(&self) -> Duration {
        self.now.mono
    }

    /// The wall clock of this input, unix milliseconds.
    pub(crate) fn unix_ms(&self) -> u64 {
        self.now.unix_ms
    }

    pub(crate) fn push(&mut self, effect: Effect) {
        self.out.push(effect);
    }

    /// The wait before resend `n + 1` of an answer or a batch:
    /// `retry_initial`, doubling with each resend, at most `retry_max`,
    /// with ±25% jitter.
    pub(crate) fn retry_delay(&mut self, n: u32) -> Duration {
        let base = self
            .settings
            .retry_initial
            .saturating_mul(1u32 << n.min(16))
            .min(self.settings.retry_max);
        self.rng.jitter(base)
    }
}

/// A small deterministic PRNG (splitmix64) for sweep ids and jitter, so the
/// core stays reproducible under a seed.
#[derive(Debug, Clone)]
pub(crate) struct Prng(u64);

impl Prng {
    pub(crate) fn new(seed: u64) -> Self {
        Prng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, max)`; zero when `max` is zero.
    pub(crate) fn below(&mut self, max: Duration) -> Duration {
        let nanos = max.as_nanos() as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next_u64() % nanos)
    }

    /// `base` with ±25% jitter, so that retries from many nodes do not
    /// line up.
    pub(crate) fn jitter(&mut self, base: Duration) -> Duration {
        base * 3 / 4 + self.below(base / 2)
    }
}
