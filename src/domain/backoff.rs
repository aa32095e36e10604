//! The one retry policy: the n-th retry waits `base · 2^(n-1)`, at most `cap`, and with jitter a
//! random share of that between a half and the whole, so that many callers failing together do
//! not retry in step. Stripe calls, background jobs and inbox events each have one, configured
//! from the environment.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub jitter: bool,
}

impl Backoff {
    /// The longest wait before retry number `retry` (1 for the first retry).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(30);
        self.base.saturating_mul(1 << doublings).min(self.cap)
    }

    /// The wait before retry number `retry`.
    pub fn delay(&self, retry: u32) -> Duration {
        let [a, b] = super::ids::random_bytes::<2>();
        let share = f64::from(u16::from_le_bytes([a, b])) / f64::from(u16::MAX);
        self.delay_with(retry, share)
    }

    /// The wait before retry number `retry`, given a random `share` in 0..=1.
    pub fn delay_with(&self, retry: u32, share: f64) -> Duration {
        let ceiling = self.ceiling(retry);
        if self.jitter {
            ceiling.mul_f64(0.5 + share.clamp(0.0, 1.0) / 2.0)
        } else {
            ceiling
        }
    }

    /// The wait as a time span to add to a stored time.
    pub fn delay_span(&self, retry: u32) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.delay(retry)).unwrap_or(chrono::TimeDelta::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_the_base_up_to_the_cap() {
        let policy = Backoff {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(3600),
            jitter: false,
        };
        let waits: Vec<u64> = (1..=10).map(|n| policy.delay(n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]);
        assert_eq!(policy.delay(u32::MAX).as_secs(), 3600, "no overflow");
    }

    #[test]
    fn jitter_takes_between_half_and_all_of_the_wait() {
        let policy = Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(32),
            jitter: true,
        };
        assert_eq!(policy.delay_with(3, 0.0), Duration::from_secs(1));
        assert_eq!(policy.delay_with(3, 1.0), Duration::from_secs(2));
        for _ in 0..100 {
            let wait = policy.delay(3);
            assert!(
                (Duration::from_secs(1)..=Duration::from_secs(2)).contains(&wait),
                "{wait:?}"
            );
        }
    }
}
