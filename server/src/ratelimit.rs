//! Token-bucket rate limits: the arithmetic ([`Gcra`]), shared by the buckets the store keeps for
//! every node (account limits, `Store::take_rate_token`) and the in-memory [`Limiter`] of limits
//! that may be per node (typing). Memory stays bounded: buckets that have refilled completely
//! carry no information and are swept away.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// The longest interval or tolerance the arithmetic uses, in µs (about 142 years): longer rates
/// are clamped, so `now + tolerance + interval` never overflows an `i64`.
const MAX_SPAN_US: i64 = 1 << 52;

/// A token bucket of `burst` tokens refilling one every `per`, kept as one number per key: the
/// theoretical arrival time (TAT, Unix µs or any fixed origin), the moment the bucket is full
/// again (the generic cell rate algorithm). A bucket whose TAT is at or before now is full: it
/// carries no information and may be forgotten. Taking a token moves the TAT one interval later
/// (from now, when it was in the past); a token is there while the TAT is at most `tolerance`
/// ahead of now. Same behaviour as counting fractional tokens, in integers that SQL can update in
/// one statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    /// µs one token takes to come back: `per`, at least 1.
    pub interval_us: i64,
    /// How far ahead of now the TAT may be for a token to be taken: `(burst − 1) × per` in µs.
    pub tolerance_us: i64,
}

impl Gcra {
    /// The arithmetic of `rate`; a `burst` of 0 counts as 1 (configuration refuses 0).
    pub fn new(rate: RateLimit) -> Self {
        let interval_us = i64::try_from(rate.per.as_micros()).unwrap_or(MAX_SPAN_US).clamp(1, MAX_SPAN_US);
        let tolerance_us = interval_us.saturating_mul(i64::from(rate.burst.max(1)) - 1).min(MAX_SPAN_US);
        Self { interval_us, tolerance_us }
    }

    /// Takes a token at `now_us` from a bucket whose TAT is `tat_us` (`None`: no record, full):
    /// `Ok(new TAT)`, or `Err(wait)` until the next token.
    pub fn take(&self, tat_us: Option<i64>, now_us: i64) -> Result<i64, Duration> {
        let tat = tat_us.unwrap_or(now_us).max(now_us);
        if tat - now_us <= self.tolerance_us { Ok(tat + self.interval_us) } else { Err(self.wait(tat, now_us)) }
    }

    /// How long after `now_us` a bucket with TAT `tat_us` has a token again: zero when it has one
    /// now, else at least 1 ms (what a client is told to wait).
    pub fn wait(&self, tat_us: i64, now_us: i64) -> Duration {
        let us = tat_us - self.tolerance_us - now_us;
        if us <= 0 { Duration::ZERO } else { Duration::from_micros(us as u64).max(Duration::from_millis(1)) }
    }

    /// The TAT after a token is given back: one interval earlier (a TAT in the past is a full
    /// bucket, so a refund never fills a bucket beyond `burst`).
    pub fn refund(&self, tat_us: i64) -> i64 {
        tat_us - self.interval_us
    }

    /// True when a bucket with TAT `tat_us` is full at `now_us` (its record may be deleted).
    pub fn is_full(tat_us: i64, now_us: i64) -> bool {
        tat_us <= now_us
    }
}

/// One kind of limit kept in this process's memory (e.g. typing indicators per user and
/// conversation): per node, not shared.
#[derive(Debug)]
pub struct Limiter {
    gcra: Gcra,
    /// The origin of the TATs.
    origin: Instant,
    /// TAT (µs after `origin`) by key.
    buckets: Mutex<HashMap<String, i64>>,
}

/// Keys tracked before a sweep of full buckets runs.
const SWEEP_AT: usize = 10_000;

impl Limiter {
    pub fn new(rate: RateLimit) -> Self {
        Self { gcra: Gcra::new(rate), origin: Instant::now(), buckets: Mutex::new(HashMap::new()) }
    }

    fn micros(&self, at: Instant) -> i64 {
        i64::try_from(at.saturating_duration_since(self.origin).as_micros()).unwrap_or(i64::MAX / 2)
    }

    /// Takes one token for `key`; `Err(wait)` when none is left.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let now = self.micros(now);
        let mut map = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= SWEEP_AT {
            map.retain(|_, tat| !Gcra::is_full(*tat, now));
        }
        let tat = self.gcra.take(map.get(key).copied(), now)?;
        map.insert(key.to_string(), tat);
        Ok(())
    }

    /// Gives back a token taken for an attempt that turned out legitimate.
    pub fn refund(&self, key: &str) {
        let mut map = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tat) = map.get_mut(key) {
            *tat = self.gcra.refund(*tat);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn gcra_burst_then_one_token_per_interval() {
        let g = Gcra::new(RateLimit::new(3, Duration::from_secs(10)));
        assert_eq!(g, Gcra { interval_us: 10 * S, tolerance_us: 20 * S });
        let t0 = 1_700_000_000 * S;
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(g.take(tat, t0).expect("burst"));
        }
        assert_eq!(tat, Some(t0 + 30 * S));
        assert_eq!(g.take(tat, t0), Err(Duration::from_secs(10)), "empty: the next token in one interval");
        assert_eq!(g.take(tat, t0 + 4 * S), Err(Duration::from_secs(6)));
        let later = g.take(tat, t0 + 10 * S).expect("one token back after `per`");
        assert!(g.take(Some(later), t0 + 10 * S).is_err(), "and only one");
        // Long idle: the bucket is full again, not fuller.
        let idle = t0 + 3600 * S;
        assert!(Gcra::is_full(later, idle));
        let mut tat = Some(later);
        for _ in 0..3 {
            tat = Some(g.take(tat, idle).expect("full burst after idling"));
        }
        assert!(g.take(tat, idle).is_err());
    }

    #[test]
    fn gcra_refund_never_overfills_and_wait_is_at_least_a_millisecond() {
        let g = Gcra::new(RateLimit::new(2, Duration::from_secs(60)));
        let now = 5 * S;
        let tat = g.take(None, now).expect("first");
        let tat = g.refund(tat);
        assert!(Gcra::is_full(tat, now), "refunded to full");
        // Refunding a full bucket again does not give a third token.
        let tat = g.refund(tat);
        let tat = g.take(Some(tat), now).expect("1");
        let tat = g.take(Some(tat), now).expect("2");
        assert!(g.take(Some(tat), now).is_err(), "burst stays 2");
        // 500 µs short of a token: told to wait 1 ms, not 0.
        let almost = now + g.interval_us - 500;
        assert_eq!(g.take(Some(tat), almost), Err(Duration::from_millis(1)));
        assert_eq!(g.wait(tat, now + 120 * S), Duration::ZERO);
    }

    #[test]
    fn gcra_clamps_degenerate_rates() {
        let tiny = Gcra::new(RateLimit::new(100_000, Duration::from_nanos(10)));
        assert_eq!(tiny.interval_us, 1, "sub-µs periods count as 1 µs");
        let zero = Gcra::new(RateLimit::new(0, Duration::from_secs(1)));
        assert_eq!(zero.tolerance_us, 0, "burst 0 counts as 1");
        assert!(zero.take(None, 0).is_ok());
        let huge = Gcra::new(RateLimit::new(u32::MAX, Duration::from_secs(u64::MAX / 4)));
        assert_eq!((huge.interval_us, huge.tolerance_us), (MAX_SPAN_US, MAX_SPAN_US));
        let now = 1_800_000_000 * S;
        let tat = huge.take(Some(now + MAX_SPAN_US), now).expect("within tolerance");
        assert!(tat > now, "no overflow");
    }

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

    #[test]
    fn full_buckets_are_swept() {
        let l = Limiter::new(RateLimit::new(1, Duration::from_millis(1)));
        let t0 = Instant::now();
        for i in 0..SWEEP_AT {
            l.take_at(&i.to_string(), t0).expect("fresh key");
        }
        l.take_at("last", t0 + Duration::from_secs(1)).expect("fresh key");
        let left = l.buckets.lock().expect("lock").len();
        assert_eq!(left, 1, "only the bucket taken after the others refilled");
    }
}
