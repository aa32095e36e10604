//! A client-side rate limit: requests are spaced evenly at most `rate` per second, so a backfill
//! or a burst of pushes never meets Stripe's own limit (and its 429s) in the first place.
//!
//! Hand-written rather than `governor`: it is thirty lines, hands out slots in arrival order, and
//! sleeps on tokio's clock, so tests run it with time paused; governor keeps its own clock
//! (quanta), which paused tokio time does not move, and would add a few crates for no new
//! behaviour.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

pub struct RateLimiter {
    interval: Duration,
    next_slot: Mutex<Instant>,
}

impl RateLimiter {
    /// `rate` requests per second; 0 or less (or not finite) means no limit.
    pub fn new(rate: f64) -> RateLimiter {
        let interval = if rate.is_finite() && rate > 0.0 {
            Duration::from_secs_f64(1.0 / rate)
        } else {
            Duration::ZERO
        };
        RateLimiter {
            interval,
            next_slot: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this caller's slot. Slots are handed out in order, one `interval` apart; an idle
    /// limiter does not save up a burst.
    pub async fn acquire(&self) {
        if self.interval.is_zero() {
            return;
        }
        let slot = {
            let mut next = self.next_slot.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_by_the_rate() {
        let limiter = RateLimiter::new(10.0);
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        // The first slot is now, the fifth 4 × 100 ms later.
        assert_eq!(start.elapsed(), Duration::from_millis(400));
    }
}
