//! The account rate limits (docs/operations.md): logins per account and per IP, registrations
//! per IP, code requests per destination and per IP, code verifications per IP. Their token
//! buckets live in the store, so every node on one database counts the same tokens. Keys (IP
//! addresses, account names, phone numbers) reach the store only as HMAC-SHA256 under a key
//! derived from the code secret, and are never logged. Full buckets are swept once a minute.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::RateLimits;
use crate::error::ServerError;
use crate::ratelimit::Gcra;
use crate::store::{RateBucket, Store, User};

/// One account limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    LoginAccount,
    LoginIp,
    CodeRequestDestination,
    CodeRequestIp,
    CodeVerifyIp,
    RegisterIp,
}

impl Limit {
    /// The limit's name in the `rate_buckets` table.
    pub fn name(self) -> &'static str {
        match self {
            Self::LoginAccount => "login_account",
            Self::LoginIp => "login_ip",
            Self::CodeRequestDestination => "code_request_destination",
            Self::CodeRequestIp => "code_request_ip",
            Self::CodeVerifyIp => "code_verify_ip",
            Self::RegisterIp => "register_ip",
        }
    }
}

impl super::AuthService {
    /// The buckets that count an account's sign-in attempts (docs/protocol.md §26.8
    /// `reset_sign_in_limits`): Login keys its budget by the login name as typed, lower-cased,
    /// and finds the account only when that equals its username's or email's key (the
    /// lower-cased username or email), so those two are every name that spent this account's
    /// tokens; ChangePassword and DeleteAccount key it by the account's id.
    pub fn sign_in_buckets(&self, user: &User) -> Vec<RateBucket> {
        let mut keys = vec![format!("acct:{}", user.username.to_lowercase()), format!("user:{}", user.id)];
        if let Some(email) = &user.email {
            keys.push(format!("acct:{}", email.to_lowercase()));
        }
        keys.iter().map(|k| self.0.limits.bucket(Limit::LoginAccount, k)).collect()
    }
}

/// How often a node deletes the full buckets.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The account limits of one node, over the shared buckets of its store.
pub struct Limits {
    store: Arc<dyn Store>,
    rates: RateLimits,
    /// Keys the hashes of bucket keys.
    hash_key: [u8; 32],
    /// Unix µs after which the next take starts a sweep.
    next_sweep_us: AtomicI64,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").field("rates", &self.rates).finish_non_exhaustive()
    }
}

fn now_us() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX / 2)
}

impl Limits {
    /// `code_secret` is the deployment's code secret (shared by every node, so the same key
    /// hashes the same on each).
    pub fn new(store: Arc<dyn Store>, rates: &RateLimits, code_secret: &[u8; 32]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(code_secret).expect("HMAC takes any key length");
        mac.update(b"confab rate-limit bucket keys v1");
        let hash_key = mac.finalize().into_bytes().into();
        Self { store, rates: rates.clone(), hash_key, next_sweep_us: AtomicI64::new(0) }
    }

    fn gcra(&self, limit: Limit) -> Gcra {
        let r = &self.rates;
        Gcra::new(match limit {
            Limit::LoginAccount => r.login_per_account,
            Limit::LoginIp => r.login_per_ip,
            Limit::CodeRequestDestination => r.code_request_per_destination,
            Limit::CodeRequestIp => r.code_request_per_ip,
            Limit::CodeVerifyIp => r.code_verify_per_ip,
            Limit::RegisterIp => r.register_per_ip,
        })
    }

    /// The bucket of `key` under `limit`: its key hashed, with the limit's name in the hash too
    /// (one IP under two limits gives two unrelated hashes).
    pub fn bucket(&self, limit: Limit, key: &str) -> RateBucket {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.hash_key).expect("HMAC takes any key length");
        mac.update(limit.name().as_bytes());
        mac.update(&[0]);
        mac.update(key.as_bytes());
        RateBucket { kind: limit.name(), key_hash: mac.finalize().into_bytes().to_vec() }
    }

    /// Takes one token for `key` under `limit`.
    ///
    /// # Errors
    /// `RATE_LIMITED` with how long to wait when the bucket is empty; `UNAVAILABLE` when the
    /// store fails (no token is granted without the store).
    pub async fn take(&self, limit: Limit, key: &str) -> Result<(), ServerError> {
        let now = now_us();
        self.maybe_sweep(now);
        self.store
            .take_rate_token(&self.bucket(limit, key), self.gcra(limit), now)
            .await?
            .map_err(ServerError::RateLimited)
    }

    /// Gives back a token taken for an attempt that turned out legitimate (a successful login). A
    /// store failure costs the user that token only: it is logged, not returned.
    pub async fn refund(&self, limit: Limit, key: &str) {
        if let Err(e) = self.store.refund_rate_token(&self.bucket(limit, key), self.gcra(limit)).await {
            tracing::warn!(limit = limit.name(), error = %e, "rate limit refund failed");
        }
    }

    /// At most once per [`SWEEP_EVERY`] on this node, deletes the full buckets in the background.
    fn maybe_sweep(&self, now: i64) {
        let due = self.next_sweep_us.load(Ordering::Relaxed);
        let next = now + SWEEP_EVERY.as_micros() as i64;
        if now < due || self.next_sweep_us.compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return;
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            match store.sweep_rate_buckets(now).await {
                Ok(n) => tracing::debug!(rows = n, "swept full rate-limit buckets"),
                Err(e) => tracing::warn!(error = %e, "sweeping rate-limit buckets failed"),
            }
        });
    }
}
