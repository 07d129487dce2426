//! A token bucket for paced runs: `rate` tokens a second, at most `burst` saved up.

use std::time::{Duration, Instant};

/// Frames may be sent while tokens last; one token per frame.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// An empty bucket filling at `rate_pps` (at least 1) up to `burst` (at least 1) tokens.
    pub fn new(rate_pps: u64, burst: usize, now: Instant) -> Self {
        TokenBucket {
            rate: rate_pps.max(1) as f64,
            burst: burst.max(1) as f64,
            tokens: 0.0,
            last: now,
        }
    }

    /// Adds the tokens earned since the last call.
    pub fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
    }

    /// Whole tokens available.
    pub fn available(&self) -> usize {
        self.tokens as usize
    }

    /// Spends `n` tokens (no more than are available).
    pub fn take(&mut self, n: usize) {
        self.tokens = (self.tokens - n as f64).max(0.0);
    }

    /// How long until `n` tokens (capped at the burst) are available.
    pub fn wait_for(&self, n: usize) -> Duration {
        let missing = (n as f64).min(self.burst) - self.tokens;
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing / self.rate)
        }
    }

    /// How many tokens to wait for before sending: about a millisecond's worth, between 1
    /// and the burst, so slow rates send small groups often and fast ones full batches.
    pub fn send_threshold(rate_pps: u64, burst: usize) -> usize {
        usize::try_from(rate_pps / 1000)
            .unwrap_or(usize::MAX)
            .clamp(1, burst.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_at_the_rate_up_to_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10_000, 64, t0);
        assert_eq!(b.available(), 0);
        b.refill(t0 + Duration::from_millis(1));
        assert_eq!(b.available(), 10);
        b.take(4);
        assert_eq!(b.available(), 6);
        // 3 ms more would be 36 tokens; capped at the burst.
        b.refill(t0 + Duration::from_millis(10));
        assert_eq!(b.available(), 64);
        b.take(64);
        assert_eq!(b.available(), 0);
        // Time going backwards (it does not with Instant, but be safe) adds nothing.
        b.refill(t0);
        assert_eq!(b.available(), 0);
    }

    #[test]
    fn long_run_rate_is_exact_when_drained_in_time() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10_000, 64, t0);
        let mut sent = 0;
        // Poll every 300 us for one second, sending whatever is there.
        for i in 1..=3334u32 {
            b.refill(t0 + Duration::from_micros(300) * i);
            let n = b.available();
            b.take(n);
            sent += n;
        }
        assert!((9_990..=10_010).contains(&sent), "{sent}");
    }

    #[test]
    fn wait_and_threshold() {
        let t0 = Instant::now();
        let b = TokenBucket::new(1_000, 64, t0);
        assert_eq!(b.wait_for(10), Duration::from_millis(10));
        // Never waits for more than the bucket can hold.
        assert_eq!(b.wait_for(1000), Duration::from_millis(64));
        assert_eq!(TokenBucket::send_threshold(10_000, 64), 10);
        assert_eq!(TokenBucket::send_threshold(10, 64), 1);
        assert_eq!(TokenBucket::send_threshold(10_000_000, 64), 64);
    }
}
