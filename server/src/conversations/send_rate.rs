//! Messages per minute per account (docs/protocol.md §26.8 `messages_per_minute`,
//! docs/operations.md `limits.messages_per_minute`): a token bucket per sender in this node's
//! memory. The rate is the account's override when an administrator set one, else the server's;
//! 0 is unlimited. It is read from the store at most every 30 s per sender, so a change takes
//! effect on every node within 30 s. Each node counts its own sends: a sender connected to two
//! nodes may send up to twice the rate. Memory holds only recent senders: an entry whose bucket
//! is full again and whose rate is stale carries nothing and is swept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimit;
use crate::error::ServerError;
use crate::ratelimit::Gcra;
use crate::store::{Store, UserId};

/// How long a sender's rate is used before it is read again.
const RATE_TTL: Duration = Duration::from_secs(30);

/// Entries held before the first sweep; after a sweep, twice what was left (so sweeping stays
/// linear in the sends however many senders there are).
const SWEEP_AT: usize = 10_000;

/// One sender: its rate and when it was read, and its bucket.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Messages per minute; 0: unlimited.
    per_minute: u32,
    read_at: Instant,
    /// The bucket's TAT in µs after the limiter's origin; `None`: full.
    tat_us: Option<i64>,
}

#[derive(Debug)]
struct Senders {
    map: HashMap<UserId, Entry>,
    sweep_at: usize,
}

/// The send rate of every sender on this node.
#[derive(Debug)]
pub(super) struct SendRate {
    /// The server's rate (`limits.messages_per_minute`); 0: unlimited.
    default_per_minute: u32,
    origin: Instant,
    senders: Mutex<Senders>,
}

/// The bucket of `per_minute` messages a minute: that many at once, then one every
/// `60 s / per_minute`.
fn gcra(per_minute: u32) -> Gcra {
    Gcra::new(RateLimit::new(per_minute, Duration::from_secs(60) / per_minute.max(1)))
}

impl SendRate {
    pub(super) fn new(default_per_minute: u32) -> Self {
        Self {
            default_per_minute,
            origin: Instant::now(),
            senders: Mutex::new(Senders { map: HashMap::new(), sweep_at: SWEEP_AT }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Senders> {
        self.senders.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn micros(&self, at: Instant) -> i64 {
        i64::try_from(at.saturating_duration_since(self.origin).as_micros()).unwrap_or(i64::MAX / 2)
    }

    /// `user`'s rate: cached, or read from the store (the lock is not held meanwhile).
    async fn per_minute(&self, store: &dyn Store, user: UserId, now: Instant) -> Result<u32, ServerError> {
        if let Some(e) = self.lock().map.get(&user)
            && now.saturating_duration_since(e.read_at) < RATE_TTL
        {
            return Ok(e.per_minute);
        }
        let per_minute = store.user_limits(user).await?.messages_per_minute.unwrap_or(self.default_per_minute);
        let mut s = self.lock();
        Self::sweep(&mut s, now, self.micros(now));
        let e = s.map.entry(user).or_insert(Entry { per_minute, read_at: now, tat_us: None });
        e.per_minute = per_minute;
        e.read_at = now;
        Ok(per_minute)
    }

    /// Forgets senders whose rate is stale and whose bucket is full again, once the map has
    /// grown to twice what the last sweep left (so memory stays bounded by recent senders).
    fn sweep(s: &mut Senders, now: Instant, now_us: i64) {
        if s.map.len() >= s.sweep_at {
            s.map.retain(|_, e| {
                now.saturating_duration_since(e.read_at) < RATE_TTL
                    || e.tat_us.is_some_and(|t| !Gcra::is_full(t, now_us))
            });
            s.sweep_at = SWEEP_AT.max(2 * s.map.len());
        }
    }

    /// Takes one message from `user`'s bucket.
    ///
    /// # Errors
    /// `RATE_LIMITED` with the wait until the next one; store errors reading the rate.
    pub(super) async fn take(&self, store: &dyn Store, user: UserId) -> Result<(), ServerError> {
        let now = Instant::now();
        let per_minute = self.per_minute(store, user, now).await?;
        if per_minute == 0 {
            return Ok(());
        }
        let now_us = self.micros(now);
        let mut s = self.lock();
        Self::sweep(&mut s, now, now_us);
        let e = s.map.entry(user).or_insert(Entry { per_minute, read_at: now, tat_us: None });
        let tat = gcra(per_minute).take(e.tat_us, now_us).map_err(ServerError::RateLimited)?;
        e.tat_us = Some(tat);
        Ok(())
    }

    /// Gives back the token of a send that sent nothing new (a retry of a message already sent).
    pub(super) fn refund(&self, user: UserId) {
        if let Some(e) = self.lock().map.get_mut(&user)
            && e.per_minute > 0
            && let Some(tat) = e.tat_us.as_mut()
        {
            *tat = gcra(e.per_minute).refund(*tat);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_a_burst_then_one_per_interval() {
        let g = gcra(2);
        assert_eq!(g.interval_us, 30_000_000);
        let t0 = 1_000_000;
        let tat = g.take(None, t0).expect("first");
        let tat = g.take(Some(tat), t0).expect("second");
        assert_eq!(g.take(Some(tat), t0), Err(Duration::from_secs(30)), "the third waits half a minute");
        assert_eq!(gcra(0), gcra(1), "0 is never used as a rate; it is taken as 1");
    }
}
