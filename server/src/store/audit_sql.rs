//! SQL of the audit log (`AuditStore`, migration 0018) and the server administrator flag,
//! written once over sqlx for both backends (`AuditSql<DB>`; `impl_audit_store!` forwards each
//! backend's trait methods). Appending takes the one-row `audit_head` with
//! `UPDATE … RETURNING`: on PostgreSQL that locks it until the transaction ends, so appends from
//! several nodes form one line; a transaction appends last, just before it commits.

use std::marker::PhantomData;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::StoreError;
use super::audit_types::{AuditAction, AuditFilter, AuditHead, AuditRec, ChainReport, NewAudit, check_links};
use super::conv_types::{ConvId, MessageId};
use super::sql::SqlBackend;
use super::types::UserId;
use crate::crypto::chain::{self, HASH_BYTES};

/// The columns [`AuditSql::recs`] reads, in its order.
const AUDIT_COLUMNS: &str = "seq, at_ms, actor_id, action, target_user_id, target, before, after, client_addr, \
                             prev_hash, hash, target_conversation_id, target_message_id";

/// Entries read per query while checking the chain.
const VERIFY_PAGE: i64 = 5_000;

/// The audit log's SQL for backend `DB`.
pub(super) struct AuditSql<DB>(PhantomData<DB>);

impl<DB: SqlBackend> AuditSql<DB>
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
    /// Appends `entries` in order inside `tx`, which must be the last thing the transaction
    /// does before it commits. Returns their seqs.
    pub(super) async fn append(
        tx: &mut sqlx::Transaction<'_, DB>,
        entries: &[NewAudit],
    ) -> Result<Vec<i64>, sqlx::Error> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let n = entries.len() as i64;
        let row = sqlx::query("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
            .bind(n)
            .fetch_one(&mut **tx)
            .await?;
        let last: i64 = row.try_get(0)?;
        let mut prev = to_hash(row.try_get::<Vec<u8>, _>(1)?)?;
        let mut seqs = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let seq = last - n + 1 + i as i64;
            let hash = chain::link(&prev, &e.canonical(seq));
            sqlx::query(
                "INSERT INTO audit_log (seq, at_ms, actor_id, action, target_user_id, target, before, after, \
                 client_addr, prev_hash, hash, target_conversation_id, target_message_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(seq)
            .bind(e.at_ms)
            .bind(e.actor.map(|u| u.0))
            .bind(i32::from(e.action))
            .bind(e.target_user.map(|u| u.0))
            .bind(e.target.as_str())
            .bind(e.before.as_str())
            .bind(e.after.as_str())
            .bind(e.client_addr.as_str())
            .bind(prev.as_slice())
            .bind(hash.as_slice())
            .bind(e.target_conversation.map(|c| c.0))
            .bind(e.target_message.map(|m| m.0))
            .execute(&mut **tx)
            .await?;
            prev = hash;
            seqs.push(seq);
        }
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1").bind(prev.as_slice()).execute(&mut **tx).await?;
        Ok(seqs)
    }

    /// Appends one entry in a transaction of its own (an action that changes nothing else,
    /// such as a failed sign-in).
    pub(super) async fn append_audit(pool: &Pool<DB>, entry: &NewAudit) -> Result<i64, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let seq = Self::append(&mut tx, std::slice::from_ref(entry)).await?;
        tx.commit().await?;
        Ok(seq[0])
    }

    /// Entries after `after_seq`, ascending, at most `limit`.
    pub(super) async fn audit_after(pool: &Pool<DB>, after_seq: i64, limit: i64) -> Result<Vec<AuditRec>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
        )))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(pool)
        .await?;
        Self::recs(&rows)
    }

    /// Entries matching `filter`, newest first, at most `limit`.
    pub(super) async fn audit_page(
        pool: &Pool<DB>,
        filter: &AuditFilter,
        limit: i64,
    ) -> Result<Vec<AuditRec>, StoreError> {
        let mut q = sqlx::QueryBuilder::<DB>::new(format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE 1 = 1"));
        if let Some(a) = filter.actor {
            q.push(" AND actor_id = ").push_bind(a.0);
        }
        if let Some(u) = filter.target_user {
            q.push(" AND target_user_id = ").push_bind(u.0);
        }
        if let Some(c) = filter.target_conversation {
            q.push(" AND target_conversation_id = ").push_bind(c.0);
        }
        if !filter.actions.is_empty() {
            q.push(" AND action IN (");
            let mut sep = q.separated(", ");
            for a in &filter.actions {
                sep.push_bind(i32::from(*a));
            }
            q.push(")");
        }
        if let Some(t) = filter.since_ms {
            q.push(" AND at_ms >= ").push_bind(t);
        }
        if let Some(b) = filter.before_seq {
            q.push(" AND seq < ").push_bind(b);
        }
        q.push(" ORDER BY seq DESC LIMIT ").push_bind(limit);
        let rows = q.build().fetch_all(pool).await?;
        Self::recs(&rows)
    }

    fn recs(rows: &[DB::Row]) -> Result<Vec<AuditRec>, StoreError> {
        rows.iter()
            .map(|r| {
                let action: i32 = r.try_get(3)?;
                let action = AuditAction::try_from(action).map_err(|e| sqlx::Error::Decode(e.to_string().into()))?;
                Ok(AuditRec {
                    seq: r.try_get(0)?,
                    entry: NewAudit {
                        at_ms: r.try_get(1)?,
                        actor: r.try_get::<Option<i64>, _>(2)?.map(UserId),
                        action,
                        target_user: r.try_get::<Option<i64>, _>(4)?.map(UserId),
                        target: r.try_get(5)?,
                        before: r.try_get(6)?,
                        after: r.try_get(7)?,
                        client_addr: r.try_get(8)?,
                        target_conversation: r.try_get::<Option<i64>, _>(11)?.map(ConvId),
                        target_message: r.try_get::<Option<i64>, _>(12)?.map(MessageId),
                    },
                    prev_hash: r.try_get(9)?,
                    hash: r.try_get(10)?,
                })
            })
            .collect()
    }

    /// The chain's head as the database records it.
    pub(super) async fn audit_head(pool: &Pool<DB>) -> Result<AuditHead, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(pool).await?;
        Ok(AuditHead { seq: row.try_get(0)?, hash: to_hash(row.try_get::<Vec<u8>, _>(1)?)? })
    }

    /// Checks the whole chain, a page at a time: every link, every hash, and that it ends at the
    /// recorded head.
    pub(super) async fn verify_audit(pool: &Pool<DB>) -> Result<ChainReport, StoreError> {
        // The head first: entries appended while checking lie beyond it and are not looked at.
        let head = Self::audit_head(pool).await?;
        let mut link = (0, chain::GENESIS);
        loop {
            let page = Self::audit_after(pool, link.0, VERIFY_PAGE).await?;
            let page: Vec<AuditRec> = page.into_iter().take_while(|r| r.seq <= head.seq).collect();
            if page.is_empty() {
                break;
            }
            match check_links(link, &page) {
                Ok(next) => link = next,
                Err(broken) => {
                    let entries = (broken.first_bad() - 1).max(0) as u64;
                    return Ok(ChainReport { entries, head, broken: Some(broken) });
                }
            }
        }
        let broken = (link.0 != head.seq || link.1 != head.hash)
            .then_some(super::audit_types::ChainBreak::Head { last: link.0, head: head.seq });
        Ok(ChainReport { entries: link.0.max(0) as u64, head, broken })
    }

    /// Sets a live account's server administrator flag and records it in the same transaction;
    /// false (nothing recorded) when the account does not exist or already had that flag.
    pub(super) async fn set_server_admin(
        pool: &Pool<DB>,
        user: UserId,
        admin: bool,
        entry: &NewAudit,
    ) -> Result<bool, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let changed = sqlx::query(
            "UPDATE users SET server_admin = $1 WHERE id = $2 AND deleted_at_ms IS NULL AND server_admin <> $1",
        )
        .bind(i32::from(admin))
        .bind(user.0)
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&changed) == 0 {
            return Ok(false);
        }
        Self::append(&mut tx, std::slice::from_ref(entry)).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Whether a live account is a server administrator.
    pub(super) async fn is_server_admin(pool: &Pool<DB>, user: UserId) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT server_admin FROM users WHERE id = $1 AND deleted_at_ms IS NULL")
            .bind(user.0)
            .fetch_optional(pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<i32, _>(0)? != 0,
            None => false,
        })
    }

    /// The live server administrators, by id: on the pool, or inside a transaction (a new
    /// report tells each of them, §27.2).
    pub(super) async fn server_admins<'e, E>(ex: E) -> Result<Vec<UserId>, sqlx::Error>
    where
        E: Executor<'e, Database = DB>,
    {
        let rows = sqlx::query("SELECT id FROM users WHERE server_admin <> 0 AND deleted_at_ms IS NULL ORDER BY id")
            .fetch_all(ex)
            .await?;
        rows.iter().map(|r| Ok(UserId(r.try_get(0)?))).collect()
    }
}

fn to_hash(v: Vec<u8>) -> Result<[u8; HASH_BYTES], sqlx::Error> {
    v.try_into().map_err(|v: Vec<u8>| sqlx::Error::Decode(format!("a chain hash of {} bytes", v.len()).into()))
}

/// The `AuditStore` impl of a backend struct with `pool` and `metrics` fields.
macro_rules! impl_audit_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::AuditStore for $store {
            async fn append_audit(&self, entry: &$crate::store::NewAudit) -> Result<i64, $crate::store::StoreError> {
                let f = $crate::store::audit_sql::AuditSql::append_audit(&self.pool, entry);
                $crate::store::timed(&self.metrics, "append_audit", f).await
            }

            async fn audit_after(
                &self,
                after_seq: i64,
                limit: i64,
            ) -> Result<Vec<$crate::store::AuditRec>, $crate::store::StoreError> {
                $crate::store::audit_sql::AuditSql::audit_after(&self.pool, after_seq, limit).await
            }

            async fn verify_audit(&self) -> Result<$crate::store::ChainReport, $crate::store::StoreError> {
                $crate::store::audit_sql::AuditSql::verify_audit(&self.pool).await
            }

            async fn set_server_admin(
                &self,
                user: $crate::store::UserId,
                admin: bool,
                entry: &$crate::store::NewAudit,
            ) -> Result<bool, $crate::store::StoreError> {
                $crate::store::audit_sql::AuditSql::set_server_admin(&self.pool, user, admin, entry).await
            }

            async fn is_server_admin(&self, user: $crate::store::UserId) -> Result<bool, $crate::store::StoreError> {
                $crate::store::audit_sql::AuditSql::is_server_admin(&self.pool, user).await
            }

            async fn server_admins(&self) -> Result<Vec<$crate::store::UserId>, $crate::store::StoreError> {
                Ok($crate::store::audit_sql::AuditSql::server_admins(&self.pool).await?)
            }

            async fn audit_page(
                &self,
                filter: &$crate::store::AuditFilter,
                limit: i64,
            ) -> Result<Vec<$crate::store::AuditRec>, $crate::store::StoreError> {
                let f = $crate::store::audit_sql::AuditSql::audit_page(&self.pool, filter, limit);
                $crate::store::timed(&self.metrics, "audit_page", f).await
            }

            async fn audit_head(&self) -> Result<$crate::store::AuditHead, $crate::store::StoreError> {
                $crate::store::audit_sql::AuditSql::audit_head(&self.pool).await
            }
        }
    };
}

pub(super) use impl_audit_store;
