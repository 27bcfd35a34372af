//! SQL of the state every node shares (`SharedStateStore`, migration 0009): the account
//! rate-limit buckets and the named server secrets. Written once as generic functions over sqlx
//! (`SharedSql<DB>`, see docs/architecture.md on the bounds); `impl_shared_state!` only forwards
//! each backend's trait methods to them.

use std::marker::PhantomData;
use std::time::Duration;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::StoreError;
use super::sql::SqlBackend;
use super::types::RateBucket;
use crate::ratelimit::Gcra;

/// The shared state's SQL for backend `DB`.
pub(super) struct SharedSql<DB>(PhantomData<DB>);

impl<DB: SqlBackend> SharedSql<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Decode<'q, DB> + Type<DB>,
{
    /// `Gcra::take` in one statement. On a conflict PostgreSQL locks the row and evaluates the
    /// `WHERE` on its latest version (SQLite holds the write lock), so two takers of the last token
    /// are serialised: one updates, the other finds the bucket empty and gets no row back.
    pub(super) async fn take_rate_token(
        pool: &Pool<DB>,
        bucket: &RateBucket,
        gcra: Gcra,
        now_us: i64,
    ) -> Result<Result<(), Duration>, StoreError> {
        let taken = sqlx::query(
            "INSERT INTO rate_buckets (kind, key_hash, tat_us) VALUES ($1, $2, $3 + $4) \
             ON CONFLICT (kind, key_hash) DO UPDATE \
             SET tat_us = CASE WHEN rate_buckets.tat_us > $3 THEN rate_buckets.tat_us ELSE $3 END + $4 \
             WHERE rate_buckets.tat_us - $3 <= $5 \
             RETURNING tat_us",
        )
        .bind(bucket.kind)
        .bind(bucket.key_hash.as_slice())
        .bind(now_us)
        .bind(gcra.interval_us)
        .bind(gcra.tolerance_us)
        .fetch_optional(pool)
        .await?;
        if taken.is_some() {
            return Ok(Ok(()));
        }
        // Empty: how long until a token (a refund may have raced in; the wait is advice, the
        // statement above is the decision).
        let row = sqlx::query("SELECT tat_us FROM rate_buckets WHERE kind = $1 AND key_hash = $2")
            .bind(bucket.kind)
            .bind(bucket.key_hash.as_slice())
            .fetch_optional(pool)
            .await?;
        let tat: i64 = match row {
            Some(r) => r.try_get(0)?,
            None => now_us,
        };
        Ok(Err(gcra.wait(tat, now_us).max(Duration::from_millis(1))))
    }

    /// `Gcra::refund`: a TAT that falls into the past is a full bucket.
    pub(super) async fn refund_rate_token(pool: &Pool<DB>, bucket: &RateBucket, gcra: Gcra) -> Result<(), StoreError> {
        sqlx::query("UPDATE rate_buckets SET tat_us = tat_us - $1 WHERE kind = $2 AND key_hash = $3")
            .bind(gcra.interval_us)
            .bind(bucket.kind)
            .bind(bucket.key_hash.as_slice())
            .execute(pool)
            .await?;
        Ok(())
    }

    /// Deletes the buckets full at `now_us` (index `rate_buckets_tat`).
    pub(super) async fn sweep_rate_buckets(pool: &Pool<DB>, now_us: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM rate_buckets WHERE tat_us <= $1").bind(now_us).execute(pool).await?;
        Ok(DB::rows_affected(&r))
    }

    pub(super) async fn server_secret(pool: &Pool<DB>, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row =
            sqlx::query("SELECT value FROM server_secrets WHERE name = $1").bind(name).fetch_optional(pool).await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// The first insert wins (`ON CONFLICT DO NOTHING`); then everyone reads the committed row.
    pub(super) async fn init_server_secret(
        pool: &Pool<DB>,
        name: &str,
        value: &[u8],
        now_ms: i64,
    ) -> Result<Vec<u8>, StoreError> {
        sqlx::query(
            "INSERT INTO server_secrets (name, value, created_at_ms) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .bind(now_ms)
        .execute(pool)
        .await?;
        Self::server_secret(pool, name)
            .await?
            .ok_or_else(|| StoreError::Setup(format!("server secret {name:?} vanished after it was stored")))
    }
}

/// The `SharedStateStore` impl of a backend struct with `pool` and `metrics` fields.
macro_rules! impl_shared_state {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::SharedStateStore for $store {
            async fn take_rate_token(
                &self,
                bucket: &$crate::store::RateBucket,
                gcra: $crate::ratelimit::Gcra,
                now_us: i64,
            ) -> Result<Result<(), std::time::Duration>, $crate::store::StoreError> {
                let f = $crate::store::shared_sql::SharedSql::take_rate_token(&self.pool, bucket, gcra, now_us);
                $crate::store::timed(&self.metrics, "take_rate_token", f).await
            }

            async fn refund_rate_token(
                &self,
                bucket: &$crate::store::RateBucket,
                gcra: $crate::ratelimit::Gcra,
            ) -> Result<(), $crate::store::StoreError> {
                let f = $crate::store::shared_sql::SharedSql::refund_rate_token(&self.pool, bucket, gcra);
                $crate::store::timed(&self.metrics, "refund_rate_token", f).await
            }

            async fn sweep_rate_buckets(&self, now_us: i64) -> Result<u64, $crate::store::StoreError> {
                let f = $crate::store::shared_sql::SharedSql::sweep_rate_buckets(&self.pool, now_us);
                $crate::store::timed(&self.metrics, "sweep_rate_buckets", f).await
            }

            async fn server_secret(&self, name: &str) -> Result<Option<Vec<u8>>, $crate::store::StoreError> {
                $crate::store::shared_sql::SharedSql::server_secret(&self.pool, name).await
            }

            async fn init_server_secret(
                &self,
                name: &str,
                value: &[u8],
                now_ms: i64,
            ) -> Result<Vec<u8>, $crate::store::StoreError> {
                $crate::store::shared_sql::SharedSql::init_server_secret(&self.pool, name, value, now_ms).await
            }
        }
    };
}

pub(super) use impl_shared_state;
