//! SQL of server administration (`AdminStore`, migration 0019, docs/protocol.md §26), written
//! once over sqlx for both backends (`AdminSql<DB>`; `impl_admin_store!` forwards each
//! backend's trait methods). Every change is recorded in the audit log in its own transaction
//! (`AuditSql::append`, last before the commit).

use std::marker::PhantomData;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::StoreError;
use super::audit_sql::AuditSql;
use super::audit_types::NewAudit;
use super::sessions_sql::SessionSql;
use super::sql::SqlBackend;
use super::types::{RevokeReason, UserId};

/// What suspending an account did (§26.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suspension {
    /// When the account was suspended: now, or earlier when it already was.
    pub suspended_at_ms: i64,
    /// False when the account was already suspended (nothing recorded).
    pub newly: bool,
    /// The sessions this ended.
    pub revoked: Vec<String>,
}

/// The administration SQL for backend `DB`.
pub(super) struct AdminSql<DB>(PhantomData<DB>);

impl<DB: SqlBackend> AdminSql<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i32: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Decode<'q, DB> + Type<DB>,
{
    /// Suspends a live account and ends its sessions, recording `entry`; `None` when there is
    /// no such live account. An account already suspended keeps its time and its live sessions
    /// (none can have opened since) are ended again; nothing is recorded then.
    pub(super) async fn suspend_user(
        pool: &Pool<DB>,
        user: UserId,
        now_ms: i64,
        entry: &NewAudit,
    ) -> Result<Option<Suspension>, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        // Takes the account's row (locked on PostgreSQL until the commit): a sign-in that
        // verified its password just before waits for it in `create_session`, and is refused.
        let set = sqlx::query(
            "UPDATE users SET suspended_at_ms = $1 WHERE id = $2 AND deleted_at_ms IS NULL AND suspended_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(user.0)
        .execute(&mut *tx)
        .await?;
        let newly = DB::rows_affected(&set) == 1;
        let row = sqlx::query("SELECT suspended_at_ms FROM users WHERE id = $1 AND deleted_at_ms IS NULL")
            .bind(user.0)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        // None only when a reactivation committed between the two statements (PostgreSQL).
        let Some(suspended_at_ms) = row.try_get::<Option<i64>, _>(0)? else {
            return Err(StoreError::Setup("the account was reactivated meanwhile; suspend it again".into()));
        };
        let revoked = SessionSql::revoke_all(&mut tx, user, None, RevokeReason::Suspended, now_ms).await?;
        if newly {
            AuditSql::append(&mut tx, std::slice::from_ref(entry)).await?;
        }
        tx.commit().await?;
        Ok(Some(Suspension { suspended_at_ms, newly, revoked }))
    }

    /// Lifts a live account's suspension, recording `entry`; `None` when there is no such live
    /// account, `Some(false)` (nothing recorded) when it was not suspended.
    pub(super) async fn reactivate_user(
        pool: &Pool<DB>,
        user: UserId,
        entry: &NewAudit,
    ) -> Result<Option<bool>, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let lifted = sqlx::query(
            "UPDATE users SET suspended_at_ms = NULL WHERE id = $1 AND deleted_at_ms IS NULL AND suspended_at_ms IS NOT NULL",
        )
        .bind(user.0)
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&lifted) == 0 {
            let exists = sqlx::query("SELECT id FROM users WHERE id = $1 AND deleted_at_ms IS NULL")
                .bind(user.0)
                .fetch_optional(&mut *tx)
                .await?;
            return Ok(exists.map(|_| false));
        }
        AuditSql::append(&mut tx, std::slice::from_ref(entry)).await?;
        tx.commit().await?;
        Ok(Some(true))
    }

    /// Ends every live session of a live account, recording `entry` when there was one; `None`
    /// when there is no such live account.
    pub(super) async fn revoke_user_sessions(
        pool: &Pool<DB>,
        user: UserId,
        now_ms: i64,
        entry: &NewAudit,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let exists = sqlx::query("SELECT id FROM users WHERE id = $1 AND deleted_at_ms IS NULL")
            .bind(user.0)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let revoked = SessionSql::revoke_all(&mut tx, user, None, RevokeReason::Revoked, now_ms).await?;
        if !revoked.is_empty() {
            AuditSql::append(&mut tx, std::slice::from_ref(entry)).await?;
        }
        tx.commit().await?;
        Ok(Some(revoked))
    }
}

/// The `AdminStore` impl of a backend struct with `pool` and `metrics` fields.
macro_rules! impl_admin_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::AdminStore for $store {
            async fn suspend_user(
                &self,
                user: $crate::store::UserId,
                now_ms: i64,
                entry: &$crate::store::NewAudit,
            ) -> Result<Option<$crate::store::Suspension>, $crate::store::StoreError> {
                let f = $crate::store::admin_sql::AdminSql::suspend_user(&self.pool, user, now_ms, entry);
                $crate::store::timed(&self.metrics, "suspend_user", f).await
            }

            async fn reactivate_user(
                &self,
                user: $crate::store::UserId,
                entry: &$crate::store::NewAudit,
            ) -> Result<Option<bool>, $crate::store::StoreError> {
                let f = $crate::store::admin_sql::AdminSql::reactivate_user(&self.pool, user, entry);
                $crate::store::timed(&self.metrics, "reactivate_user", f).await
            }

            async fn revoke_user_sessions(
                &self,
                user: $crate::store::UserId,
                now_ms: i64,
                entry: &$crate::store::NewAudit,
            ) -> Result<Option<Vec<String>>, $crate::store::StoreError> {
                let f = $crate::store::admin_sql::AdminSql::revoke_user_sessions(&self.pool, user, now_ms, entry);
                $crate::store::timed(&self.metrics, "revoke_user_sessions", f).await
            }

            async fn admin_users(
                &self,
                q: &$crate::store::UserListQuery,
                now_ms: i64,
            ) -> Result<Vec<$crate::store::AdminUserRec>, $crate::store::StoreError> {
                let f = $crate::store::admin_users_sql::AdminUsersSql::admin_users(&self.pool, q, now_ms);
                $crate::store::timed(&self.metrics, "admin_users", f).await
            }

            async fn admin_user(
                &self,
                user: $crate::store::UserId,
                now_ms: i64,
            ) -> Result<Option<$crate::store::AdminUserRec>, $crate::store::StoreError> {
                let f = $crate::store::admin_users_sql::AdminUsersSql::admin_user(&self.pool, user, now_ms);
                $crate::store::timed(&self.metrics, "admin_user", f).await
            }

            async fn user_limits(
                &self,
                user: $crate::store::UserId,
            ) -> Result<$crate::store::LimitOverrides, $crate::store::StoreError> {
                let f = $crate::store::admin_users_sql::AdminUsersSql::user_limits(&self.pool, user);
                $crate::store::timed(&self.metrics, "user_limits", f).await
            }

            async fn set_user_limits(
                &self,
                user: $crate::store::UserId,
                limits: &$crate::store::LimitOverrides,
                buckets: &[$crate::store::RateBucket],
                entry: &$crate::store::NewAudit,
            ) -> Result<Option<$crate::store::LimitsChange>, $crate::store::StoreError> {
                let f = $crate::store::admin_users_sql::AdminUsersSql::set_user_limits(
                    &self.pool, user, limits, buckets, entry,
                );
                $crate::store::timed(&self.metrics, "set_user_limits", f).await
            }

            async fn quarantine_media(
                &self,
                id: &$crate::store::MediaId,
                now_ms: i64,
                entry: &$crate::store::NewAudit,
            ) -> Result<Option<bool>, $crate::store::StoreError> {
                let f = $crate::store::admin_users_sql::AdminUsersSql::quarantine_media(&self.pool, id, now_ms, entry);
                $crate::store::timed(&self.metrics, "quarantine_media", f).await
            }

            async fn server_stats(&self, now_ms: i64) -> Result<$crate::store::StoreStats, $crate::store::StoreError> {
                let f = $crate::store::admin_users_sql::AdminUsersSql::stats(&self.pool, now_ms);
                $crate::store::timed(&self.metrics, "server_stats", f).await
            }
        }
    };
}

pub(super) use impl_admin_store;
