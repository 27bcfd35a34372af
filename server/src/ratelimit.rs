//! Token-bucket rate limits keyed by account, destination or client IP. Memory stays bounded:
//! buckets that have refilled completely carry no information and are swept away.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One kind of limit (e.g. logins per account).
#[derive(Debug)]
pub struct Limiter {
    rate: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Keys tracked before a sweep of full buckets runs.
const SWEEP_AT: usize = 10_000;

impl Limiter {
    pub fn new(rate: RateLimit) -> Self {
        Self { rate, buckets: Mutex::new(HashMap::new()) }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let per = self.rate.per.as_secs_f64();
        let gained = now.saturating_duration_since(b.at).as_secs_f64() / per;
        b.tokens = (b.tokens + gained).min(f64::from(self.rate.burst));
        b.at = now;
    }

    /// Takes one token for `key`; `Err(wait)` when none is left.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut map = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= SWEEP_AT {
            let full = f64::from(self.rate.burst);
            let per = self.rate.per.as_secs_f64();
            map.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() / per < full);
        }
        let burst = f64::from(self.rate.burst);
        let b = map.entry(key.to_string()).or_insert(Bucket { tokens: burst, at: now });
        self.refill(b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - b.tokens;
            Err(Duration::from_secs_f64(missing * self.rate.per.as_secs_f64()).max(Duration::from_millis(1)))
        }
    }

    /// Gives back a token taken for an attempt that turned out legitimate (a successful login).
    pub fn refund(&self, key: &str) {
        let mut map = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(b) = map.get_mut(key) {
            b.tokens = (b.tokens + 1.0).min(f64::from(self.rate.burst));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let l = Limiter::new(RateLimit::new(3, Duration::from_secs(10)));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take_at("a", t0).is_ok());
        }
        let wait = l.take_at("a", t0).expect_err("empty");
        assert!(wait > Duration::from_secs(9) && wait <= Duration::from_secs(10), "{wait:?}");
        assert!(l.take_at("b", t0).is_ok(), "keys are independent");
        assert!(l.take_at("a", t0 + Duration::from_secs(10)).is_ok(), "one token back after `per`");
        assert!(l.take_at("a", t0 + Duration::from_secs(10)).is_err());
    }

    #[test]
    fn refund_returns_a_token() {
        let l = Limiter::new(RateLimit::new(1, Duration::from_secs(60)));
        l.take("k").expect("first");
        l.refund("k");
        l.take("k").expect("refunded");
    }
}
