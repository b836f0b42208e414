//! Reconnect delays: exponential with jitter drawn from the node's seeded RNG, so
//! reconnect storms spread out in production and replay exactly in the simulation.
//!
//! Owns: the delay sequence. Must not: sleep or read a clock.

use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// First reconnect delay (before jitter).
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest delay between two reconnect attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    base: Duration,
    cap: Duration,
    rng: ChaCha8Rng,
}

impl Backoff {
    pub fn new(seed: u64) -> Self {
        Self::with_limits(seed, BACKOFF_BASE, BACKOFF_CAP)
    }

    pub fn with_limits(seed: u64, base: Duration, cap: Duration) -> Self {
        Self {
            attempt: 0,
            base,
            cap,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The delay before the next attempt: `min(cap, base·2^n)` scaled by a random
    /// factor in [0.5, 1].
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_within(self.base, self.cap)
    }

    /// Like [`Backoff::next_delay`], but from `base` up to `cap` for this attempt (a
    /// failure that calls for longer waits, such as a peer answering 404, uses
    /// larger ones); the attempt count is the same.
    pub fn next_delay_within(&mut self, base: Duration, cap: Duration) -> Duration {
        let exp = base.saturating_mul(1u32 << self.attempt.min(20));
        let d = exp.min(cap);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = 0.5 + (self.rng.next_u32() as f64 / u32::MAX as f64) * 0.5;
        d.mul_f64(jitter)
    }

    /// A connection worked: start again from the base delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(7);
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= BACKOFF_BASE / 2 && delays[0] <= BACKOFF_BASE);
        for d in &delays {
            assert!(*d <= BACKOFF_CAP);
        }
        assert!(delays[7] >= BACKOFF_CAP / 2);
        b.reset();
        assert!(b.next_delay() <= BACKOFF_BASE);
        // Same seed, same delays.
        let mut again = Backoff::new(7);
        let replay: Vec<Duration> = (0..8).map(|_| again.next_delay()).collect();
        assert_eq!(delays, replay);
    }
}
