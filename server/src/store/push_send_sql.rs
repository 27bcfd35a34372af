//! SQL of the push sender (migration 0014): due ledger rows claimed with a lease (each sent by
//! one node; a lease that ran out is taken over), outcomes recorded while the lease is still the
//! claimer's, receipts, and the ledger's retention.

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::conv_types::{ConvId, ConvKind, MessageId};
use super::push_sql::{PushSql, TARGET_COLS, bad, kind, level};
use super::push_types::{
    ConvPushSetting, DeliveryState, DeliveryUpdate, DueDelivery, PendingReceipt, PushLevel, PushProvider,
};
use super::search_sql::ids;
use super::sql::SqlBackend;
use super::types::UserId;
use super::{Backend, StoreError};

/// Unread messages counted for a push's `unread_count` at most (a badge shows "999+" anyway).
const UNREAD_CAP: i64 = 999;

impl<DB: SqlBackend + sqlx::database::HasStatementCache> PushSql<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    /// Claims up to `limit` due deliveries of `providers` for `holder` until `now_ms + lease_ms`
    /// (a row another node holds is skipped; a lease that ran out is taken over) and counts the
    /// attempt. Each comes with its fence (`lease_until_ms`), which `finish` must present.
    pub(super) async fn claim(
        pool: &Pool<DB>,
        holder: &str,
        providers: &[PushProvider],
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        if providers.is_empty() {
            return Ok(Vec::new());
        }
        let skip = match DB::BACKEND {
            Backend::Postgres => " FOR UPDATE OF d SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let names: Vec<String> = providers.iter().map(|p| format!("'{}'", p.as_str())).collect();
        let fence = now_ms + lease_ms;
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let claimed: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "UPDATE push_deliveries SET lease_holder = $1, lease_until_ms = $2, attempts = attempts + 1, updated_at_ms = $3 \
             WHERE id IN (SELECT d.id FROM push_deliveries d JOIN push_targets t ON t.id = d.target_id \
                          WHERE d.state = 'queued' AND d.due_at_ms <= $3 AND d.lease_until_ms < $3 \
                          AND t.provider IN ({}) ORDER BY d.due_at_ms LIMIT $4{skip}) RETURNING id",
            names.join(", ")
        )))
        .bind(holder)
        .bind(fence)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        if claimed.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TARGET_COLS}, d.id, d.user_id, d.conversation_id, d.seq, d.call_id, d.kind, d.sender_id, d.message_id, \
                    d.attempts, d.created_at_ms, d.expires_at_ms, x.revoked_at_ms, COALESCE(a.acked_seq, 0), \
                    mb.read_seq, m.deleted_at_ms, COALESCE(g.preview, $1), CAST(c.kind AS BIGINT), \
                    (SELECT COUNT(*) FROM (SELECT 1 FROM messages u WHERE u.conversation_id = d.conversation_id \
                       AND u.seq > mb.read_seq AND u.sender_id <> d.user_id AND u.deleted_at_ms IS NULL \
                       LIMIT {UNREAD_CAP}) unread), \
                    (SELECT COUNT(*) FROM blocks b WHERE b.user_id = d.user_id AND b.blocked_id = d.sender_id), \
                    d.session_id, g.level, o.level, o.until_ms \
             FROM push_deliveries d JOIN push_targets t ON t.id = d.target_id \
             LEFT JOIN sessions x ON x.id = d.session_id \
             LEFT JOIN device_acks a ON a.session_id = d.session_id AND a.conversation_id = d.conversation_id \
             LEFT JOIN members mb ON mb.conversation_id = d.conversation_id AND mb.user_id = d.user_id \
             LEFT JOIN messages m ON m.id = d.message_id \
             LEFT JOIN push_settings g ON g.user_id = d.user_id AND g.conversation_id = 0 \
             LEFT JOIN push_settings o ON o.user_id = d.user_id AND o.conversation_id = d.conversation_id \
             LEFT JOIN conversations c ON c.id = d.conversation_id \
             WHERE d.id IN ({}) ORDER BY d.due_at_ms",
            ids(&claimed),
        )))
        .bind(false)
        .persistent(false)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            match Self::due(r, fence) {
                Ok(d) => out.push(d),
                // A row this version cannot read (a newer node's provider or kind): left to its
                // lease; the rest of the batch goes on.
                Err(e) => tracing::warn!(error = %e, "a claimed push delivery could not be read"),
            }
        }
        Ok(out)
    }

    fn due(r: &DB::Row, fence: i64) -> Result<DueDelivery, StoreError> {
        let revoked: Option<i64> = r.try_get(21)?;
        let read_seq: Option<i64> = r.try_get(23)?;
        let deleted: Option<i64> = r.try_get(24)?;
        let conv_kind: Option<i64> = r.try_get(26)?;
        let account: Option<i64> = r.try_get(30)?;
        let own: Option<i64> = r.try_get(31)?;
        let conversation = ConvId(r.try_get(12)?);
        Ok(DueDelivery {
            target: Self::target(r)?,
            id: r.try_get(10)?,
            user: UserId(r.try_get(11)?),
            session: r.try_get(29)?,
            conversation,
            seq: r.try_get(13)?,
            call_id: r.try_get(14)?,
            kind: kind(r.try_get(15)?)?,
            sender: UserId(r.try_get(16)?),
            message_id: r.try_get::<Option<i64>, _>(17)?.map(MessageId),
            attempts: r.try_get(18)?,
            created_at_ms: r.try_get(19)?,
            expires_at_ms: r.try_get(20)?,
            session_ended: revoked.is_some(),
            acked_seq: r.try_get(22)?,
            member: read_seq.is_some(),
            message_deleted: deleted.is_some(),
            preview: r.try_get(25)?,
            conv_kind: conv_kind.and_then(|k| ConvKind::try_from(k as i32).ok()),
            unread: r.try_get(27)?,
            sender_blocked: r.try_get::<i64, _>(28)? > 0,
            account_level: account.map(level).transpose()?.unwrap_or(PushLevel::All),
            own_level: match own {
                Some(l) => Some(ConvPushSetting { conversation, level: level(l)?, until_ms: r.try_get(32)? }),
                None => None,
            },
            fence,
        })
    }

    /// Records what became of claimed deliveries, in one transaction, each only if `holder`
    /// still holds it with the claim's fence: `false` for a row whose lease was lost (another
    /// node, or a later claim, took it over).
    pub(super) async fn finish(
        pool: &Pool<DB>,
        holder: &str,
        updates: &[DeliveryUpdate],
    ) -> Result<Vec<bool>, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let mut recorded = Vec::with_capacity(updates.len());
        for u in updates {
            let r = sqlx::query(
                "UPDATE push_deliveries SET state = $3, provider_status = $4, detail = $5, due_at_ms = $6, \
                 sent_at_ms = COALESCE($7, sent_at_ms), provider_ref = COALESCE($8, provider_ref), receipt_pending = $9, \
                 updated_at_ms = $10, lease_holder = NULL, lease_until_ms = 0 \
                 WHERE id = $1 AND lease_holder = $2 AND lease_until_ms = $11",
            )
            .bind(u.id)
            .bind(holder)
            .bind(u.state.as_str())
            .bind(u.provider_status)
            .bind(u.detail.as_str())
            .bind(u.due_at_ms)
            .bind(u.sent_at_ms)
            .bind(u.provider_ref.clone())
            .bind(u.receipt_pending)
            .bind(u.now_ms)
            .bind(u.fence)
            .execute(&mut *tx)
            .await?;
            recorded.push(DB::rows_affected(&r) > 0);
        }
        tx.commit().await?;
        Ok(recorded)
    }

    /// Sent deliveries whose receipt is due (sent at or before `sent_before_ms`).
    pub(super) async fn pending_receipts(
        pool: &Pool<DB>,
        providers: &[PushProvider],
        sent_before_ms: i64,
        limit: u32,
    ) -> Result<Vec<PendingReceipt>, StoreError> {
        if providers.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = providers.iter().map(|p| format!("'{}'", p.as_str())).collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT d.id, d.target_id, t.provider, d.provider_ref, d.sent_at_ms FROM push_deliveries d \
             JOIN push_targets t ON t.id = d.target_id \
             WHERE d.receipt_pending = $1 AND d.state = 'sent' AND d.sent_at_ms <= $2 AND d.provider_ref IS NOT NULL \
             AND t.provider IN ({}) ORDER BY d.sent_at_ms LIMIT $3",
            names.join(", ")
        )))
        .bind(true)
        .bind(sent_before_ms)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|r| {
                let provider: String = r.try_get(2)?;
                Ok(PendingReceipt {
                    id: r.try_get(0)?,
                    target_id: r.try_get(1)?,
                    provider: PushProvider::parse(&provider).ok_or_else(|| bad("push provider", &provider))?,
                    provider_ref: r.try_get(3)?,
                    sent_at_ms: r.try_get::<Option<i64>, _>(4)?.unwrap_or(0),
                })
            })
            .collect()
    }

    /// Settles a receipt: the delivery stays SENT, or becomes FAILED with `detail`.
    pub(super) async fn settle_receipt(
        pool: &Pool<DB>,
        id: i64,
        failed: Option<(i64, &str)>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (state, status, detail) = match failed {
            Some((s, d)) => (DeliveryState::Failed, s, d),
            None => (DeliveryState::Sent, 0, ""),
        };
        sqlx::query(
            "UPDATE push_deliveries SET receipt_pending = $2, state = $3, \
             provider_status = CASE WHEN $4 = 0 THEN provider_status ELSE $4 END, \
             detail = CASE WHEN $5 = '' THEN detail ELSE $5 END, updated_at_ms = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(false)
        .bind(state.as_str())
        .bind(status)
        .bind(detail)
        .bind(now_ms)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Deletes up to `limit` ledger rows that ended before `before_ms`, then the targets disabled
    /// before it whose device was told (or needed no telling) and that no row names. Returns
    /// the rows deleted.
    pub(super) async fn prune(pool: &Pool<DB>, before_ms: i64, limit: u32) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM push_deliveries WHERE id IN (SELECT id FROM push_deliveries \
             WHERE state <> 'queued' AND updated_at_ms < $1 LIMIT $2)",
        )
        .bind(before_ms)
        .bind(i64::from(limit))
        .execute(pool)
        .await?;
        sqlx::query(
            "DELETE FROM push_targets WHERE disabled_at_ms < $1 AND told_at_ms IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM push_deliveries d WHERE d.target_id = push_targets.id)",
        )
        .bind(before_ms)
        .execute(pool)
        .await?;
        Ok(DB::rows_affected(&r))
    }

    /// The earliest time a queued delivery is due (a lease that runs out counts), if any.
    pub(super) async fn next_due(pool: &Pool<DB>) -> Result<Option<i64>, StoreError> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(CASE WHEN lease_until_ms > due_at_ms THEN lease_until_ms ELSE due_at_ms END) \
             FROM push_deliveries WHERE state = 'queued'",
        )
        .fetch_one(pool)
        .await?;
        Ok(v)
    }
}
