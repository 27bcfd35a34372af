//! SQL of accounts as administrators see and limit them (docs/protocol.md §26.2, §26.7-§26.9):
//! the user list with its figures, limit overrides (migration 0019 `user_limits`), media
//! quarantine and the server's figures. Written once over sqlx for both backends
//! (`AdminUsersSql<DB>`); `impl_admin_store!` forwards to it. Changes are recorded in the audit
//! log in their own transaction (`AuditSql::append`, last before the commit).

use std::marker::PhantomData;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::audit_sql::AuditSql;
use super::audit_types::NewAudit;
use super::media_types::MediaId;
use super::sql::SqlBackend;
use super::types::{RateBucket, UserId};
use super::{Backend, StoreError};

/// One UTC day, in ms.
pub const DAY_MS: i64 = 86_400_000;

/// An administrator's overrides of one account's limits (§26.8); `None`: the server's
/// configured value applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LimitOverrides {
    /// Bytes of media the account may store.
    pub media_quota_bytes: Option<u64>,
    /// Uploads the account may have begun and not finished.
    pub max_pending_uploads: Option<u32>,
    /// Messages per minute the account may send; 0: unlimited.
    pub messages_per_minute: Option<u32>,
}

impl LimitOverrides {
    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The overrides as the small JSON object of an audit entry (`null`: the server's value).
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What changing a user's limits did (§26.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitsChange {
    pub before: LimitOverrides,
    pub after: LimitOverrides,
}

/// An account with the figures an administrator sees (§26.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminUserRec {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub created_at_ms: i64,
    /// The later of the account's last presence (users.last_seen_at_ms) and its live sessions'
    /// last use; `None`: never seen.
    pub last_seen_at_ms: Option<i64>,
    /// Sessions not revoked whose refresh token has not expired.
    pub live_sessions: u32,
    /// Messages it sent that are not deleted.
    pub messages_sent: u64,
    /// Conversations it is a member of.
    pub conversations: u32,
    pub server_admin: bool,
    pub suspended_at_ms: Option<i64>,
    pub deleted_at_ms: Option<i64>,
    pub limits: LimitOverrides,
}

/// Which accounts an administrator lists (§26.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserListQuery {
    /// Case-folded prefix of the username or display name (`confab_protocol::text::fold`);
    /// empty: every account.
    pub prefix: String,
    /// Accounts with an id above this, in id order.
    pub after: UserId,
    /// Rows to read (the caller asks one more than it shows).
    pub limit: u32,
    /// Deleted accounts too.
    pub include_deleted: bool,
}

/// The server's figures from the store (§26.9).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Accounts not deleted.
    pub users: u64,
    /// Of those, suspended.
    pub users_suspended: u64,
    pub users_deleted: u64,
    /// Conversations not deleted.
    pub conversations: u64,
    /// Messages not deleted.
    pub messages: u64,
    /// (day start in ms since the epoch, messages sent that day, deleted ones included), the 7
    /// UTC days ending with today's, oldest first.
    pub messages_per_day: Vec<(i64, u64)>,
    /// Bytes the database takes: `pg_database_size`, or SQLite's pages plus its WAL file.
    pub store_bytes: u64,
    /// Bytes of stored blobs (originals and thumbnails).
    pub media_bytes: u64,
    /// Entries in the audit log (its head's seq).
    pub audit_entries: u64,
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn u32_of(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The figures of one account, read in one statement per page: each a subquery over an index
/// (`sessions_user`, `refresh_tokens_session`, `messages_sender_idempotency` whose leading column
/// is `sender_id`, `members_user`, `user_limits`' key). `$1` is now (ms).
const ADMIN_USER_COLS: &str = "u.id, u.username, u.display_name, u.created_at_ms, u.last_seen_at_ms, \
     (SELECT MAX(s.last_seen_at_ms) FROM sessions s WHERE s.user_id = u.id AND s.revoked_at_ms IS NULL), \
     (SELECT COUNT(*) FROM sessions s WHERE s.user_id = u.id AND s.revoked_at_ms IS NULL AND EXISTS \
        (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id AND t.used_at_ms IS NULL AND t.expires_at_ms > $1)), \
     (SELECT COUNT(*) FROM messages g WHERE g.sender_id = u.id AND g.deleted_at_ms IS NULL), \
     (SELECT COUNT(*) FROM members mb WHERE mb.user_id = u.id), \
     CAST(u.server_admin AS BIGINT), u.suspended_at_ms, u.deleted_at_ms, \
     l.media_quota_bytes, CAST(l.max_pending_uploads AS BIGINT), CAST(l.messages_per_minute AS BIGINT)";

/// The overrides of `$1`, as [`AdminUsersSql::overrides_row`] reads them.
const OVERRIDES_SQL: &str = "SELECT media_quota_bytes, CAST(max_pending_uploads AS BIGINT), \
     CAST(messages_per_minute AS BIGINT) FROM user_limits WHERE user_id = $1";

/// The administration SQL of accounts for backend `DB`.
pub(super) struct AdminUsersSql<DB>(PhantomData<DB>);

impl<DB: SqlBackend> AdminUsersSql<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i32: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<i32>: Encode<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Decode<'q, DB> + Type<DB>,
{
    /// Overrides from columns `at..at + 3` (quota, pending, per minute; all BIGINT or NULL).
    fn overrides_row(r: &DB::Row, at: usize) -> Result<LimitOverrides, StoreError> {
        let quota: Option<i64> = r.try_get(at)?;
        let pending: Option<i64> = r.try_get(at + 1)?;
        let per_minute: Option<i64> = r.try_get(at + 2)?;
        Ok(LimitOverrides {
            media_quota_bytes: quota.map(u64_of),
            max_pending_uploads: pending.map(u32_of),
            messages_per_minute: per_minute.map(u32_of),
        })
    }

    fn user_row(r: &DB::Row) -> Result<AdminUserRec, StoreError> {
        let seen: Option<i64> = r.try_get(4)?;
        let session_seen: Option<i64> = r.try_get(5)?;
        Ok(AdminUserRec {
            id: UserId(r.try_get(0)?),
            username: r.try_get(1)?,
            display_name: r.try_get(2)?,
            created_at_ms: r.try_get(3)?,
            last_seen_at_ms: seen.max(session_seen),
            live_sessions: u32_of(r.try_get(6)?),
            messages_sent: u64_of(r.try_get(7)?),
            conversations: u32_of(r.try_get(8)?),
            server_admin: r.try_get::<i64, _>(9)? != 0,
            suspended_at_ms: r.try_get(10)?,
            deleted_at_ms: r.try_get(11)?,
            limits: Self::overrides_row(r, 12)?,
        })
    }

    /// Accounts matching `q` in id order, at most `q.limit`, with their figures at `now_ms`:
    /// one statement.
    pub(super) async fn admin_users(
        pool: &Pool<DB>,
        q: &UserListQuery,
        now_ms: i64,
    ) -> Result<Vec<AdminUserRec>, StoreError> {
        let mut sql = format!(
            "SELECT {ADMIN_USER_COLS} FROM users u LEFT JOIN user_limits l ON l.user_id = u.id WHERE u.id > $2"
        );
        if !q.include_deleted {
            sql.push_str(" AND u.deleted_at_ms IS NULL");
        }
        if !q.prefix.is_empty() {
            sql.push_str(" AND (u.username_key LIKE $4 ESCAPE '\\' OR u.display_name_key LIKE $4 ESCAPE '\\')");
        }
        sql.push_str(" ORDER BY u.id LIMIT $3");
        let pattern = format!("{}%", super::sql::escape_like(&q.prefix));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now_ms).bind(q.after.0).bind(i64::from(q.limit));
        if !q.prefix.is_empty() {
            query = query.bind(pattern.as_str());
        }
        let rows = query.fetch_all(pool).await?;
        rows.iter().map(Self::user_row).collect()
    }

    /// One account (deleted ones included) with its figures at `now_ms`.
    pub(super) async fn admin_user(
        pool: &Pool<DB>,
        user: UserId,
        now_ms: i64,
    ) -> Result<Option<AdminUserRec>, StoreError> {
        let sql = format!(
            "SELECT {ADMIN_USER_COLS} FROM users u LEFT JOIN user_limits l ON l.user_id = u.id WHERE u.id = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now_ms).bind(user.0).fetch_optional(pool).await?;
        row.as_ref().map(Self::user_row).transpose()
    }

    /// The account's overrides (all `None` when it has none).
    pub(super) async fn user_limits(pool: &Pool<DB>, user: UserId) -> Result<LimitOverrides, StoreError> {
        let row = sqlx::query(OVERRIDES_SQL).bind(user.0).fetch_optional(pool).await?;
        row.as_ref().map_or(Ok(LimitOverrides::default()), |r| Self::overrides_row(r, 0))
    }

    /// Replaces a live account's overrides with `limits` (none: the row goes) and deletes the
    /// rate-limit `buckets`, recording `entry` with the overrides before and after, when anything
    /// changed or buckets were given; `None` when there is no such live account.
    pub(super) async fn set_user_limits(
        pool: &Pool<DB>,
        user: UserId,
        limits: &LimitOverrides,
        buckets: &[RateBucket],
        entry: &NewAudit,
    ) -> Result<Option<LimitsChange>, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        // Takes the account's row: a deletion committing meanwhile is ordered before or after.
        let live = sqlx::query("UPDATE users SET id = id WHERE id = $1 AND deleted_at_ms IS NULL")
            .bind(user.0)
            .execute(&mut *tx)
            .await?;
        if DB::rows_affected(&live) == 0 {
            return Ok(None);
        }
        let row = sqlx::query(OVERRIDES_SQL).bind(user.0).fetch_optional(&mut *tx).await?;
        let before = row.as_ref().map_or(Ok(LimitOverrides::default()), |r| Self::overrides_row(r, 0))?;
        let int = |v: Option<u32>| v.map(|v| i32::try_from(v).unwrap_or(i32::MAX));
        if limits.is_empty() {
            sqlx::query("DELETE FROM user_limits WHERE user_id = $1").bind(user.0).execute(&mut *tx).await?;
        } else {
            sqlx::query(
                "INSERT INTO user_limits (user_id, media_quota_bytes, max_pending_uploads, messages_per_minute) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET \
                 media_quota_bytes = excluded.media_quota_bytes, max_pending_uploads = excluded.max_pending_uploads, \
                 messages_per_minute = excluded.messages_per_minute",
            )
            .bind(user.0)
            .bind(limits.media_quota_bytes.map(|v| i64::try_from(v).unwrap_or(i64::MAX)))
            .bind(int(limits.max_pending_uploads))
            .bind(int(limits.messages_per_minute))
            .execute(&mut *tx)
            .await?;
        }
        for b in buckets {
            sqlx::query("DELETE FROM rate_buckets WHERE kind = $1 AND key_hash = $2")
                .bind(b.kind)
                .bind(b.key_hash.as_slice())
                .execute(&mut *tx)
                .await?;
        }
        let after = *limits;
        if before != after || !buckets.is_empty() {
            let entry = NewAudit { before: before.json(), after: after.json(), ..entry.clone() };
            AuditSql::append(&mut tx, std::slice::from_ref(&entry)).await?;
        }
        tx.commit().await?;
        Ok(Some(LimitsChange { before, after }))
    }

    /// Quarantines media item `id` and its blob at `now_ms`, recording `entry` with the media
    /// id as target and the uploader as target user; `None` for an unknown id, `Some(false)`
    /// (nothing recorded) when it already was.
    pub(super) async fn quarantine_media(
        pool: &Pool<DB>,
        id: &MediaId,
        now_ms: i64,
        entry: &NewAudit,
    ) -> Result<Option<bool>, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let row = sqlx::query(
            "UPDATE media SET quarantined_at_ms = $1 WHERE id = $2 AND quarantined_at_ms IS NULL \
             RETURNING uploader_id, blob_id",
        )
        .bind(now_ms)
        .bind(id.0.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let known =
                sqlx::query("SELECT 1 FROM media WHERE id = $1").bind(id.0.as_str()).fetch_optional(&mut *tx).await?;
            return Ok(known.map(|_| false));
        };
        let uploader: i64 = row.try_get(0)?;
        let blob: i64 = row.try_get(1)?;
        sqlx::query("UPDATE blobs SET quarantined_at_ms = COALESCE(quarantined_at_ms, $1) WHERE id = $2")
            .bind(now_ms)
            .bind(blob)
            .execute(&mut *tx)
            .await?;
        let entry = NewAudit { target_user: Some(UserId(uploader)), target: id.0.clone(), ..entry.clone() };
        AuditSql::append(&mut tx, std::slice::from_ref(&entry)).await?;
        tx.commit().await?;
        Ok(Some(true))
    }

    async fn count(pool: &Pool<DB>, sql: &'static str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query(sql).fetch_one(pool).await?.try_get(0)?;
        Ok(u64_of(n))
    }

    /// The server's figures at `now_ms` (§26.9). Counting users, conversations and messages
    /// reads those tables whole; the daily counts read only the last 7 days' messages, found by
    /// id (below).
    pub(super) async fn stats(pool: &Pool<DB>, now_ms: i64) -> Result<StoreStats, StoreError> {
        let users = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN deleted_at_ms IS NULL THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN deleted_at_ms IS NULL AND suspended_at_ms IS NOT NULL THEN 1 ELSE 0 END), 0) \
             AS BIGINT), CAST(COALESCE(SUM(CASE WHEN deleted_at_ms IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM users",
        )
        .fetch_one(pool)
        .await?;
        let store_bytes = match DB::BACKEND {
            Backend::Postgres => Self::count(pool, "SELECT pg_database_size(current_database())").await?,
            Backend::Sqlite => {
                let pages =
                    Self::count(pool, "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
                        .await?;
                let file: String = sqlx::query("SELECT file FROM pragma_database_list WHERE name = 'main'")
                    .fetch_one(pool)
                    .await?
                    .try_get(0)?;
                let wal = match tokio::fs::metadata(format!("{file}-wal")).await {
                    Ok(m) => m.len(),
                    Err(_) => 0,
                };
                pages.saturating_add(wal)
            }
        };
        Ok(StoreStats {
            users: u64_of(users.try_get(0)?),
            users_suspended: u64_of(users.try_get(1)?),
            users_deleted: u64_of(users.try_get(2)?),
            conversations: Self::count(pool, "SELECT COUNT(*) FROM conversations WHERE deleted_at_ms IS NULL").await?,
            messages: Self::count(pool, "SELECT COUNT(*) FROM messages WHERE deleted_at_ms IS NULL").await?,
            messages_per_day: Self::messages_per_day(pool, now_ms).await?,
            store_bytes,
            media_bytes: Self::count(pool, "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs").await?,
            audit_entries: Self::count(pool, "SELECT seq FROM audit_head WHERE id = 1").await?,
        })
    }

    /// Messages sent on each of the 7 UTC days ending today. `messages.created_at_ms` has no
    /// index, but ids grow with time (one sequence, taken as the batched writer inserts), so
    /// each day's start is found as an id by bisection over the primary key (about 30 probes of
    /// one row each per day), and one statement counts the id ranges: the week's rows only.
    async fn messages_per_day(pool: &Pool<DB>, now_ms: i64) -> Result<Vec<(i64, u64)>, StoreError> {
        let today = now_ms - now_ms.rem_euclid(DAY_MS);
        let days: Vec<i64> = (0..7).rev().map(|back| today - back * DAY_MS).collect();
        let span = sqlx::query("SELECT MIN(id), MAX(id) FROM messages").fetch_one(pool).await?;
        let (Some(min), Some(max)) = (span.try_get::<Option<i64>, _>(0)?, span.try_get::<Option<i64>, _>(1)?) else {
            return Ok(days.into_iter().map(|d| (d, 0)).collect());
        };
        // bounds[i]: the first id of a message created at or after days[i] (max + 1: none).
        let mut bounds = Vec::with_capacity(days.len());
        let mut lo = min;
        for day in &days {
            let mut hi = max + 1;
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let r = sqlx::query("SELECT id, created_at_ms FROM messages WHERE id >= $1 ORDER BY id LIMIT 1")
                    .bind(mid)
                    .fetch_optional(pool)
                    .await?;
                match r {
                    Some(r) if r.try_get::<i64, _>(1)? < *day => lo = r.try_get::<i64, _>(0)? + 1,
                    _ => hi = mid,
                }
            }
            bounds.push(lo);
        }
        // The ids are integers computed here, never client input.
        let sums: Vec<String> = bounds
            .iter()
            .enumerate()
            .map(|(i, b)| match bounds.get(i + 1) {
                Some(next) => format!("SUM(CASE WHEN id >= {b} AND id < {next} THEN 1 ELSE 0 END)"),
                None => format!("SUM(CASE WHEN id >= {b} THEN 1 ELSE 0 END)"),
            })
            .map(|s| format!("CAST(COALESCE({s}, 0) AS BIGINT)"))
            .collect();
        let sql = format!("SELECT {} FROM messages WHERE id >= {}", sums.join(", "), bounds[0]);
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await?;
        days.iter().enumerate().map(|(i, d)| Ok((*d, u64_of(row.try_get(i)?)))).collect()
    }
}
