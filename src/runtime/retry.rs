//! The retry policy: exponential backoff with full jitter, capped, reset on success.
//!
//! Attempt *n* (from 0) waits a random time in `[base/2, base]` where `base = min(initial · 2ⁿ, max)`:
//! jitter keeps a fleet of gateways from hammering a QMS that comes back, the floor of half keeps the
//! delay predictable for an operator reading the log.

use std::time::Duration;

/// Backoff state for one peer.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff from `initial` up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial: initial.max(Duration::from_millis(1)),
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The delay before the next attempt; grows the next one.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        let base = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = base / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Failed attempts since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        for (i, d) in d.iter().enumerate() {
            let base = Duration::from_millis(100 * (1 << i)).min(Duration::from_secs(1));
            assert!(
                *d >= base / 2 && *d <= base,
                "attempt {i}: {d:?} outside [{:?}, {base:?}]",
                base / 2
            );
        }
        assert_eq!(b.attempts(), 8);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
