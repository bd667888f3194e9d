//! Exponential backoff with jitter, capped: the delay after the n-th
//! consecutive failure is drawn from [d/2, d] with d = min(base * 2^n, cap),
//! so appliances that lost the same server do not all come back at once.
//! A success resets it, and the next pass resumes where the last one stopped
//! (the queue is the buffer's per-row sync state, not this struct).

use std::time::Duration;

/// Backoff state of one loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// Starts at `base` (or `cap` if smaller) and never exceeds `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base: base.min(cap),
            cap,
            failures: 0,
        }
    }

    /// The delay after one more failure, with random jitter.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(rand::random::<f64>())
    }

    /// The delay after one more failure, `unit` in [0, 1] choosing within [d/2, d].
    pub fn next_with(&mut self, unit: f64) -> Duration {
        let ceiling = self
            .base
            .checked_mul(1u32 << self.failures.min(30))
            .unwrap_or(self.cap)
            .min(self.cap);
        self.failures = self.failures.saturating_add(1);
        ceiling.div_f64(2.0).mul_f64(1.0 + unit.clamp(0.0, 1.0))
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets past failures after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn delays_double_up_to_the_cap_and_jitter_stays_within_half_to_full() {
        let mut b = Backoff::new(S(1), S(30));
        let highs: Vec<Duration> = (0..8).map(|_| b.next_with(1.0)).collect();
        assert_eq!(highs, [S(1), S(2), S(4), S(8), S(16), S(30), S(30), S(30)]);
        let mut b = Backoff::new(S(1), S(30));
        let lows: Vec<Duration> = (0..7).map(|_| b.next_with(0.0)).collect();
        assert_eq!(lows[0], Duration::from_millis(500));
        assert_eq!(lows[6], S(15));
        let mut b = Backoff::new(S(1), S(30));
        for _ in 0..100 {
            let d = b.next_delay();
            assert!(d <= S(30));
        }
    }

    #[test]
    fn success_resets_and_many_failures_do_not_overflow() {
        let mut b = Backoff::new(S(1), Duration::from_secs(1800));
        for _ in 0..1000 {
            b.next_with(1.0);
        }
        assert_eq!(b.next_with(1.0), Duration::from_secs(1800));
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.next_with(1.0), S(1));
    }

    #[test]
    fn a_cap_below_the_base_wins() {
        let mut b = Backoff::new(S(5), S(2));
        assert_eq!(b.next_with(1.0), S(2));
    }
}
