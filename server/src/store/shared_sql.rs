//! SQL of the state every node shares (`SharedStateStore`), written once for both backends:
//! the account rate-limit buckets and the named server secrets (migration 0009).

macro_rules! impl_shared_state {
    ($store:ty) => {
        mod shared_state_impl {
            use super::*;
            use $crate::ratelimit::Gcra;
            use $crate::store::types::RateBucket;
            use $crate::store::{SharedStateStore, StoreError, timed};

            #[async_trait::async_trait]
            impl SharedStateStore for $store {
                async fn take_rate_token(
                    &self,
                    bucket: &RateBucket,
                    gcra: Gcra,
                    now_us: i64,
                ) -> Result<Result<(), std::time::Duration>, StoreError> {
                    timed(&self.metrics, "take_rate_token", async {
                        // Gcra::take in one statement. On a conflict PostgreSQL locks the row and
                        // evaluates the WHERE on its latest version (SQLite holds the write lock),
                        // so two takers of the last token are serialised: one updates, the other
                        // finds the bucket empty and gets no row back.
                        let taken = sqlx::query(
                            "INSERT INTO rate_buckets (kind, key_hash, tat_us) VALUES ($1, $2, $3 + $4) \
                             ON CONFLICT (kind, key_hash) DO UPDATE \
                             SET tat_us = CASE WHEN rate_buckets.tat_us > $3 THEN rate_buckets.tat_us ELSE $3 END + $4 \
                             WHERE rate_buckets.tat_us - $3 <= $5 \
                             RETURNING tat_us",
                        )
                        .bind(bucket.kind)
                        .bind(&bucket.key_hash)
                        .bind(now_us)
                        .bind(gcra.interval_us)
                        .bind(gcra.tolerance_us)
                        .fetch_optional(&self.pool)
                        .await?;
                        if taken.is_some() {
                            return Ok(Ok(()));
                        }
                        // Empty: how long until a token (a refund may have raced in; the wait is
                        // advice, the statement above is the decision).
                        let tat = sqlx::query("SELECT tat_us FROM rate_buckets WHERE kind = $1 AND key_hash = $2")
                            .bind(bucket.kind)
                            .bind(&bucket.key_hash)
                            .fetch_optional(&self.pool)
                            .await?;
                        let tat: i64 = match tat {
                            Some(row) => row.try_get(0)?,
                            None => now_us,
                        };
                        Ok(Err(gcra.wait(tat, now_us).max(std::time::Duration::from_millis(1))))
                    })
                    .await
                }

                async fn refund_rate_token(&self, bucket: &RateBucket, gcra: Gcra) -> Result<(), StoreError> {
                    timed(&self.metrics, "refund_rate_token", async {
                        // Gcra::refund: a TAT that falls into the past is a full bucket.
                        sqlx::query("UPDATE rate_buckets SET tat_us = tat_us - $1 WHERE kind = $2 AND key_hash = $3")
                            .bind(gcra.interval_us)
                            .bind(bucket.kind)
                            .bind(&bucket.key_hash)
                            .execute(&self.pool)
                            .await?;
                        Ok(())
                    })
                    .await
                }

                async fn sweep_rate_buckets(&self, now_us: i64) -> Result<u64, StoreError> {
                    timed(&self.metrics, "sweep_rate_buckets", async {
                        let r = sqlx::query("DELETE FROM rate_buckets WHERE tat_us <= $1").bind(now_us).execute(&self.pool).await?;
                        Ok(r.rows_affected())
                    })
                    .await
                }

                async fn server_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
                    let row = sqlx::query("SELECT value FROM server_secrets WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
                    Ok(match row {
                        Some(r) => Some(r.try_get(0)?),
                        None => None,
                    })
                }

                async fn init_server_secret(&self, name: &str, value: &[u8], now_ms: i64) -> Result<Vec<u8>, StoreError> {
                    sqlx::query("INSERT INTO server_secrets (name, value, created_at_ms) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                        .bind(name)
                        .bind(value)
                        .bind(now_ms)
                        .execute(&self.pool)
                        .await?;
                    // Committed by now, ours or a racing node's: every node reads the same value.
                    self.server_secret(name)
                        .await?
                        .ok_or_else(|| StoreError::Setup(format!("server secret {name:?} vanished after it was stored")))
                }
            }
        }
    };
}

pub(super) use impl_shared_state;
