//! SQL of sessions and their refresh tokens (docs/protocol.md §11), written once over sqlx for
//! both backends (`SessionSql<DB>`; `impl_store!` forwards the `Store` session methods): opening
//! one with its first refresh token, reading, touching and listing them, revoking one, rotating
//! refresh tokens (a reuse revokes), and ending every live session of a user, which a password
//! change, a suspension, an administrator's revocation and an account deletion each do inside
//! their own transaction.

use std::marker::PhantomData;

use sqlx::{ColumnIndex, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Row as _, Type};

use super::StoreError;
use super::audit_sql::AuditSql;
use super::audit_types::{AuditAction, NewAudit};
use super::rows::{SESSION_COLUMNS, SessionRow};
use super::sql::SqlBackend;
use super::types::{NewSession, RevokeReason, RotateOutcome, SessionRecord, SessionTouch, UserId};

/// The session SQL for backend `DB`.
pub(super) struct SessionSql<DB>(PhantomData<DB>);

impl<DB: SqlBackend> SessionSql<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i32: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'r> SessionRow: FromRow<'r, DB::Row>,
{
    /// Creates a session with its first refresh token, and records the sign-in in the audit log.
    pub(super) async fn create_session(pool: &Pool<DB>, s: NewSession) -> Result<SessionRecord, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        // Takes the account's row (a suspension or deletion running at once holds it
        // until its commit, §26.3, §26.4), and refuses a suspended or deleted account.
        let state = sqlx::query(
            "UPDATE users SET suspended_at_ms = suspended_at_ms WHERE id = $1 \
             RETURNING suspended_at_ms, deleted_at_ms",
        )
        .bind(s.user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(state) = state else { return Err(StoreError::AccountGone) };
        if state.try_get::<Option<i64>, _>(1)?.is_some() {
            return Err(StoreError::AccountGone);
        }
        if state.try_get::<Option<i64>, _>(0)?.is_some() {
            return Err(StoreError::Suspended);
        }
        let row = sqlx::query_as::<_, SessionRow>(sqlx::AssertSqlSafe(format!(
            "INSERT INTO sessions (id, user_id, device_name, client_name, created_at_ms, last_seen_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING {SESSION_COLUMNS}"
        )))
        .bind(&s.id)
        .bind(s.user_id)
        .bind(&s.device_name)
        .bind(&s.client_name)
        .bind(s.now_ms)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&s.refresh_hash)
        .bind(&s.id)
        .bind(s.now_ms)
        .bind(s.refresh_expires_at_ms)
        .execute(&mut *tx)
        .await?;
        // Recorded with the session it opened (the audit log is appended last).
        let entry = NewAudit {
            actor: Some(s.user_id),
            target_user: Some(s.user_id),
            target: s.id.clone(),
            client_addr: s.client_addr.clone(),
            ..NewAudit::new(AuditAction::SignIn, s.now_ms)
        };
        AuditSql::append(&mut tx, std::slice::from_ref(&entry)).await?;
        tx.commit().await?;
        Ok(row.into())
    }

    pub(super) async fn session(pool: &Pool<DB>, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query_as::<_, SessionRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(pool)
        .await?;
        Ok(row.map(SessionRecord::from))
    }

    /// Records the last use of live sessions (revoked ones are left alone), all in one
    /// transaction.
    pub(super) async fn touch_sessions(pool: &Pool<DB>, touches: &[SessionTouch]) -> Result<(), StoreError> {
        let mut tx = pool.begin().await?;
        for t in touches {
            sqlx::query(
                "UPDATE sessions SET last_seen_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL \
                 AND last_seen_at_ms < $1",
            )
            .bind(t.at_ms)
            .bind(&t.id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The user's live sessions, most recently seen first.
    pub(super) async fn list_sessions(pool: &Pool<DB>, user: UserId) -> Result<Vec<SessionRecord>, StoreError> {
        let rows = sqlx::query_as::<_, SessionRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 AND revoked_at_ms IS NULL \
             ORDER BY last_seen_at_ms DESC, id"
        )))
        .bind(user)
        .fetch_all(pool)
        .await?;
        Ok(rows.into_iter().map(SessionRecord::from).collect())
    }

    /// Revokes one live session of `user` and records `entry` in the same transaction; false
    /// (nothing recorded) when there is none with that id.
    pub(super) async fn revoke_session(
        pool: &Pool<DB>,
        user: UserId,
        id: &str,
        reason: RevokeReason,
        now_ms: i64,
        entry: &NewAudit,
    ) -> Result<bool, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let r = sqlx::query(
            "UPDATE sessions SET revoked_at_ms = $1, revoked_reason = $2 WHERE id = $3 AND user_id = $4 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(reason as i32)
        .bind(id)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&r) != 1 {
            return Ok(false);
        }
        AuditSql::append(&mut tx, std::slice::from_ref(entry)).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Spends a refresh token and records its successor, atomically; detects reuse, which
    /// revokes the session and is recorded in the audit log with `client_addr`.
    pub(super) async fn rotate_refresh(
        pool: &Pool<DB>,
        old_hash: &[u8],
        new_hash: &[u8],
        now_ms: i64,
        new_expires_at_ms: i64,
        client_addr: &str,
    ) -> Result<RotateOutcome, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        // Spend the token if it is current. Row locks (PostgreSQL) and the write lock
        // (SQLite) make two racing refreshes see each other: one spends, one reuses.
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET used_at_ms = $1 WHERE token_hash = $2 AND used_at_ms IS NULL \
             RETURNING session_id, expires_at_ms",
        )
        .bind(now_ms)
        .bind(old_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(spent) = spent else {
            let known = sqlx::query(
                "SELECT s.id, s.user_id FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id WHERE t.token_hash = $1",
            )
            .bind(old_hash)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(known) = known else {
                tx.commit().await?;
                return Ok(RotateOutcome::Invalid);
            };
            let session_id: String = known.try_get(0)?;
            let user_id: UserId = known.try_get(1)?;
            let revoked = sqlx::query(
                "UPDATE sessions SET revoked_at_ms = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(RevokeReason::RefreshReused as i32)
            .bind(&session_id)
            .execute(&mut *tx)
            .await?;
            if DB::rows_affected(&revoked) == 1 {
                let entry = NewAudit {
                    target_user: Some(user_id),
                    target: session_id.clone(),
                    client_addr: client_addr.to_string(),
                    ..NewAudit::new(AuditAction::RefreshReused, now_ms)
                };
                AuditSql::append(&mut tx, std::slice::from_ref(&entry)).await?;
            }
            tx.commit().await?;
            return Ok(if DB::rows_affected(&revoked) == 1 {
                RotateOutcome::Reused { session_id, user_id }
            } else {
                RotateOutcome::Invalid
            });
        };
        let session_id: String = spent.try_get(0)?;
        let expires_at_ms: i64 = spent.try_get(1)?;
        let session = sqlx::query_as::<_, SessionRow>(sqlx::AssertSqlSafe(format!(
            "UPDATE sessions SET last_seen_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL RETURNING {SESSION_COLUMNS}"
        )))
        .bind(now_ms)
        .bind(&session_id)
        .fetch_optional(&mut *tx)
        .await?;
        let session = match session {
            Some(row) if expires_at_ms > now_ms => SessionRecord::from(row),
            _ => {
                tx.commit().await?;
                return Ok(RotateOutcome::Invalid);
            }
        };
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(new_hash)
        .bind(&session_id)
        .bind(now_ms)
        .bind(new_expires_at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RotateOutcome::Rotated(session))
    }
}

impl<DB: SqlBackend> SessionSql<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
{
    /// Ends every live session of `user` with `reason`, inside `tx`; returns their ids. With
    /// `except`, the session with that id is left alone (a password change keeps the caller's).
    pub(super) async fn revoke_all(
        tx: &mut sqlx::Transaction<'_, DB>,
        user: UserId,
        except: Option<&str>,
        reason: RevokeReason,
        now_ms: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        let statement = match except {
            None => {
                "UPDATE sessions SET revoked_at_ms = $1, revoked_reason = $2 \
                 WHERE user_id = $3 AND revoked_at_ms IS NULL RETURNING id"
            }
            Some(_) => {
                "UPDATE sessions SET revoked_at_ms = $1, revoked_reason = $2 \
                 WHERE user_id = $3 AND revoked_at_ms IS NULL AND id <> $4 RETURNING id"
            }
        };
        let mut q = sqlx::query(statement).bind(now_ms).bind(reason as i32).bind(user.0);
        if let Some(id) = except {
            q = q.bind(id);
        }
        let rows = q.fetch_all(&mut **tx).await?;
        rows.iter().map(|r| r.try_get(0)).collect()
    }
}
