//! Token bucket: `rate` tokens per second up to `burst`. Used for the send limits (per author in a
//! room, per client address, per room), the join rate per client address, and the flood guard on
//! a connection's frames.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket { rate: rate.max(0.0), burst, tokens: burst, last: Instant::now() }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until a token is there: zero when one is there now. Takes nothing.
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        if self.rate <= 0.0 {
            return Duration::MAX;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
    }

    /// Whether the bucket has refilled completely, so forgetting it loses nothing.
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(5.0, 10);
        assert_eq!((0..20).filter(|_| bucket.take(start)).count(), 10);
        assert!(bucket.take(start + Duration::from_millis(200)));
        assert!(!bucket.take(start + Duration::from_millis(200)));
    }

    #[test]
    fn wait_says_when_the_next_token_is_back() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(4.0, 2);
        assert_eq!(bucket.wait(start), Duration::ZERO);
        assert!(bucket.take(start) && bucket.take(start));
        assert_eq!(bucket.wait(start), Duration::from_millis(250));
        assert!(!bucket.is_full(start + Duration::from_millis(400)));
        assert!(bucket.is_full(start + Duration::from_millis(500)));
    }
}
