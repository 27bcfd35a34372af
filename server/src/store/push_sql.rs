//! SQL of push notifications (`PushStore`, migration 0014): targets, settings and the ledger as
//! users read it; the planner's pass is in `push_plan_sql`, the sender's claims in
//! `push_send_sql`. Written once as generic functions over sqlx (`PushSql<DB>`);
//! `impl_push_store!` forwards each backend's methods.

use std::marker::PhantomData;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::StoreError;
use super::conv_types::ConvId;
use super::push_types::{
    ConvPushSetting, DeliveryRec, DeliveryState, NewTarget, PushKind, PushLevel, PushProvider, PushSettingsRec,
    TargetRec, TargetSelector,
};
use super::search_sql::ids;
use super::sql::SqlBackend;
use super::types::UserId;

pub(super) const TARGET_COLS: &str = "t.id, t.user_id, t.session_id, t.provider, t.token, t.app_id, t.voip, t.created_at_ms, \
                           t.disabled_at_ms, t.disabled_reason";

/// The push SQL for backend `DB`.
pub(super) struct PushSql<DB>(PhantomData<DB>);

/// A stored value this version does not know.
pub(super) fn bad(what: &'static str, v: impl std::fmt::Display) -> StoreError {
    StoreError::Database(sqlx::Error::ColumnDecode {
        index: what.to_string(),
        source: Box::new(std::io::Error::other(format!("unknown {what}: {v}"))),
    })
}

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
    pub(super) fn target(r: &DB::Row) -> Result<TargetRec, StoreError> {
        let provider: String = r.try_get(3)?;
        Ok(TargetRec {
            id: r.try_get(0)?,
            user: UserId(r.try_get(1)?),
            session: r.try_get(2)?,
            provider: PushProvider::parse(&provider).ok_or_else(|| bad("push provider", &provider))?,
            token: r.try_get(4)?,
            app_id: r.try_get(5)?,
            voip: r.try_get(6)?,
            created_at_ms: r.try_get(7)?,
            disabled_at_ms: r.try_get(8)?,
            disabled_reason: r.try_get(9)?,
        })
    }

    /// §24.1: registers or takes over `(provider, token)` for the session. `None` when the session
    /// already holds `max_per_device` other enabled targets.
    pub(super) async fn register(pool: &Pool<DB>, t: &NewTarget) -> Result<Option<TargetRec>, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM push_targets WHERE session_id = $1 AND disabled_at_ms IS NULL \
             AND NOT (provider = $2 AND app_id = $3 AND voip = $4)",
        )
        .bind(t.session.as_str())
        .bind(t.provider.as_str())
        .bind(t.app_id.as_str())
        .bind(t.voip)
        .fetch_one(&mut *tx)
        .await?;
        if held >= i64::from(t.max_per_device) {
            return Ok(None);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO push_targets (user_id, session_id, provider, token, app_id, voip, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (provider, token) DO UPDATE SET user_id = excluded.user_id, session_id = excluded.session_id, \
             app_id = excluded.app_id, voip = excluded.voip, updated_at_ms = excluded.updated_at_ms, \
             created_at_ms = CASE WHEN push_targets.disabled_at_ms IS NULL AND push_targets.user_id = excluded.user_id \
                                  THEN push_targets.created_at_ms ELSE excluded.created_at_ms END, \
             disabled_at_ms = NULL, disabled_reason = '', told_at_ms = NULL \
             RETURNING id",
        )
        .bind(t.user.0)
        .bind(t.session.as_str())
        .bind(t.provider.as_str())
        .bind(t.token.as_str())
        .bind(t.app_id.as_str())
        .bind(t.voip)
        .bind(t.now_ms)
        .fetch_one(&mut *tx)
        .await?;
        // A fresh token of this device for the same provider and app replaces the one it had
        // (tokens change: an app registers at every start), so the device is not pushed twice.
        let replaced: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM push_targets WHERE session_id = $1 AND provider = $2 AND app_id = $3 AND voip = $4 \
             AND id <> $5 AND disabled_at_ms IS NULL",
        )
        .bind(t.session.as_str())
        .bind(t.provider.as_str())
        .bind(t.app_id.as_str())
        .bind(t.voip)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        for old in replaced {
            Self::disable_one(&mut tx, old, super::push_types::REPLACED, true, t.now_ms).await?;
        }
        // A token taken over from another device or account: what was queued for the old owner
        // is not for this one.
        sqlx::query(
            "UPDATE push_deliveries SET state = 'dropped', detail = 'the token was registered again', \
             updated_at_ms = $3, lease_holder = NULL WHERE target_id = $1 AND state = 'queued' AND session_id <> $2",
        )
        .bind(id)
        .bind(t.session.as_str())
        .bind(t.now_ms)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {TARGET_COLS} FROM push_targets t WHERE t.id = $1")))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let rec = Self::target(&row)?;
        tx.commit().await?;
        Ok(Some(rec))
    }

    /// Disables the enabled targets `which` selects with `reason` and drops their queued
    /// deliveries; `told` when the device needs no PushTargetInvalidated. Returns the targets
    /// disabled by this call (one disabled meanwhile by another is not).
    pub(super) async fn disable(
        pool: &Pool<DB>,
        which: TargetSelector<'_>,
        reason: &str,
        told: bool,
        now_ms: i64,
    ) -> Result<Vec<TargetRec>, StoreError> {
        let (filter, binds): (String, Vec<String>) = match which {
            TargetSelector::Ids([]) | TargetSelector::Sessions([]) => return Ok(Vec::new()),
            TargetSelector::Ids(v) => (format!("t.id IN ({})", ids(v)), Vec::new()),
            TargetSelector::Sessions(v) => {
                let marks: Vec<String> = (1..=v.len()).map(|i| format!("${i}")).collect();
                (format!("t.session_id IN ({})", marks.join(", ")), v.to_vec())
            }
            TargetSelector::User(u) => (format!("t.user_id = {}", u.0), Vec::new()),
        };
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TARGET_COLS} FROM push_targets t WHERE {filter} AND t.disabled_at_ms IS NULL"
        )))
        .persistent(false);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut t = Self::target(r)?;
            if Self::disable_one(&mut tx, t.id, reason, told, now_ms).await? {
                t.disabled_at_ms = Some(now_ms);
                t.disabled_reason = reason.to_string();
                out.push(t);
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Disables one target if it is still enabled, and drops its queued deliveries.
    async fn disable_one(
        tx: &mut sqlx::Transaction<'_, DB>,
        id: i64,
        reason: &str,
        told: bool,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE push_targets SET disabled_at_ms = $2, disabled_reason = $3, updated_at_ms = $2, \
             told_at_ms = CASE WHEN $4 THEN $2 ELSE NULL END WHERE id = $1 AND disabled_at_ms IS NULL",
        )
        .bind(id)
        .bind(now_ms)
        .bind(reason)
        .bind(told)
        .execute(&mut **tx)
        .await?;
        if DB::rows_affected(&r) == 0 {
            return Ok(false);
        }
        Self::drop_queued(tx, id, &format!("the target was disabled: {reason}"), now_ms).await?;
        Ok(true)
    }

    async fn drop_queued(
        tx: &mut sqlx::Transaction<'_, DB>,
        target: i64,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE push_deliveries SET state = 'dropped', detail = $2, updated_at_ms = $3, lease_holder = NULL \
             WHERE target_id = $1 AND state = 'queued'",
        )
        .bind(target)
        .bind(detail)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// §24.1: `user`'s target `id` unregistered (disabled or not). `false` when it is not theirs.
    pub(super) async fn unregister(pool: &Pool<DB>, user: UserId, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let r = sqlx::query(
            "UPDATE push_targets SET disabled_at_ms = COALESCE(disabled_at_ms, $3), disabled_reason = $4, \
             told_at_ms = $3, updated_at_ms = $3 WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user.0)
        .bind(now_ms)
        .bind(super::push_types::UNREGISTERED)
        .execute(&mut *tx)
        .await?;
        let found = DB::rows_affected(&r) > 0;
        if found {
            Self::drop_queued(&mut tx, id, "the target was unregistered", now_ms).await?;
        }
        tx.commit().await?;
        Ok(found)
    }

    /// The user's targets (of `session` only when given), enabled first, newest first.
    pub(super) async fn targets(
        pool: &Pool<DB>,
        user: UserId,
        session: Option<&str>,
    ) -> Result<Vec<TargetRec>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TARGET_COLS} FROM push_targets t WHERE t.user_id = $1 AND ($2 = '' OR t.session_id = $2) \
             AND t.disabled_reason NOT IN ('{}', '{}', '{}') \
             AND NOT EXISTS (SELECT 1 FROM sessions x WHERE x.id = t.session_id AND x.revoked_at_ms IS NOT NULL) \
             ORDER BY t.disabled_at_ms IS NOT NULL, t.id DESC LIMIT 200",
            super::push_types::UNREGISTERED,
            super::push_types::SESSION_ENDED,
            super::push_types::REPLACED,
        )))
        .bind(user.0)
        .bind(session.unwrap_or(""))
        .fetch_all(pool)
        .await?;
        rows.iter().map(Self::target).collect()
    }

    /// Targets of `session` disabled by their provider whose device was not told yet; marks them
    /// told (each is returned to one caller only). Reads before it writes: most devices have
    /// nothing to be told.
    pub(super) async fn take_untold(pool: &Pool<DB>, session: &str, now_ms: i64) -> Result<Vec<TargetRec>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TARGET_COLS} FROM push_targets t WHERE t.session_id = $1 AND t.disabled_at_ms IS NOT NULL \
             AND t.told_at_ms IS NULL"
        )))
        .bind(session)
        .fetch_all(pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let t = Self::target(r)?;
            let done = sqlx::query("UPDATE push_targets SET told_at_ms = $1 WHERE id = $2 AND told_at_ms IS NULL")
                .bind(now_ms)
                .bind(t.id)
                .execute(pool)
                .await?;
            if DB::rows_affected(&done) > 0 {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// §24.3: the user's settings, with the conversation levels that still hold at `now_ms`.
    pub(super) async fn settings(pool: &Pool<DB>, user: UserId, now_ms: i64) -> Result<PushSettingsRec, StoreError> {
        let rows = sqlx::query(
            "SELECT conversation_id, level, preview, until_ms FROM push_settings WHERE user_id = $1 \
             AND (conversation_id = 0 OR until_ms = 0 OR until_ms > $2) ORDER BY conversation_id",
        )
        .bind(user.0)
        .bind(now_ms)
        .fetch_all(pool)
        .await?;
        let mut out = PushSettingsRec { level: PushLevel::All, preview: false, conversations: Vec::new() };
        for r in &rows {
            let conv: i64 = r.try_get(0)?;
            let level = level(r.try_get(1)?)?;
            if conv == 0 {
                out.level = level;
                out.preview = r.try_get(2)?;
            } else {
                out.conversations.push(ConvPushSetting { conversation: ConvId(conv), level, until_ms: r.try_get(3)? });
            }
        }
        Ok(out)
    }

    /// §24.3: the account's level and preview (`None`: unchanged).
    pub(super) async fn set_settings(
        pool: &Pool<DB>,
        user: UserId,
        new_level: Option<PushLevel>,
        preview: Option<bool>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO push_settings (user_id, conversation_id, level, preview, until_ms) VALUES ($1, 0, $2, $3, 0) \
             ON CONFLICT (user_id, conversation_id) DO UPDATE SET \
             level = CASE WHEN $4 THEN excluded.level ELSE push_settings.level END, \
             preview = CASE WHEN $5 THEN excluded.preview ELSE push_settings.preview END",
        )
        .bind(user.0)
        .bind(i64::from(i32::from(new_level.unwrap_or(PushLevel::All))))
        .bind(preview.unwrap_or(false))
        .bind(new_level.is_some())
        .bind(preview.is_some())
        .execute(pool)
        .await?;
        Ok(())
    }

    /// §24.3: a conversation's own level (`None` removes it). `false` when `user` is not a member.
    pub(super) async fn set_conversation(
        pool: &Pool<DB>,
        user: UserId,
        setting: ConvPushSetting,
        remove: bool,
    ) -> Result<bool, StoreError> {
        if remove {
            // A former member may still clear what they set.
            let r = sqlx::query("DELETE FROM push_settings WHERE user_id = $1 AND conversation_id = $2")
                .bind(user.0)
                .bind(setting.conversation.0)
                .execute(pool)
                .await?;
            if DB::rows_affected(&r) > 0 {
                return Ok(true);
            }
        }
        let member: Option<i64> =
            sqlx::query_scalar("SELECT user_id FROM members WHERE conversation_id = $1 AND user_id = $2")
                .bind(setting.conversation.0)
                .bind(user.0)
                .fetch_optional(pool)
                .await?;
        if member.is_none() {
            return Ok(false);
        }
        if remove {
            sqlx::query("DELETE FROM push_settings WHERE user_id = $1 AND conversation_id = $2")
                .bind(user.0)
                .bind(setting.conversation.0)
                .execute(pool)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO push_settings (user_id, conversation_id, level, preview, until_ms) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (user_id, conversation_id) DO UPDATE SET level = excluded.level, until_ms = excluded.until_ms",
            )
            .bind(user.0)
            .bind(setting.conversation.0)
            .bind(i64::from(i32::from(setting.level)))
            .bind(false)
            .bind(setting.until_ms)
            .execute(pool)
            .await?;
        }
        Ok(true)
    }

    /// §24.5: the user's deliveries with ids below `before` (0: from the newest), newest first.
    pub(super) async fn deliveries(
        pool: &Pool<DB>,
        user: UserId,
        before: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRec>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.target_id, d.session_id, t.provider, d.kind, d.conversation_id, d.seq, d.call_id, d.state, \
                    d.attempts, d.provider_status, d.detail, d.created_at_ms, d.updated_at_ms, d.sent_at_ms, d.due_at_ms \
             FROM push_deliveries d JOIN push_targets t ON t.id = d.target_id \
             WHERE d.user_id = $1 AND ($2 = 0 OR d.id < $2) ORDER BY d.id DESC LIMIT $3",
        )
        .bind(user.0)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|r| {
                let provider: String = r.try_get(3)?;
                let state: String = r.try_get(8)?;
                Ok(DeliveryRec {
                    id: r.try_get(0)?,
                    target_id: r.try_get(1)?,
                    session: r.try_get(2)?,
                    provider: PushProvider::parse(&provider).ok_or_else(|| bad("push provider", &provider))?,
                    kind: kind(r.try_get(4)?)?,
                    conversation: ConvId(r.try_get(5)?),
                    seq: r.try_get(6)?,
                    call_id: r.try_get(7)?,
                    state: DeliveryState::parse(&state).ok_or_else(|| bad("delivery state", &state))?,
                    attempts: r.try_get(9)?,
                    provider_status: r.try_get(10)?,
                    detail: r.try_get(11)?,
                    created_at_ms: r.try_get(12)?,
                    updated_at_ms: r.try_get(13)?,
                    sent_at_ms: r.try_get(14)?,
                    due_at_ms: r.try_get(15)?,
                })
            })
            .collect()
    }
}

pub(super) fn level(v: i64) -> Result<PushLevel, StoreError> {
    PushLevel::try_from(v as i32).map_err(|e| bad("push level", e))
}

pub(super) fn kind(v: i64) -> Result<PushKind, StoreError> {
    PushKind::try_from(v as i32).map_err(|e| bad("push kind", e))
}

macro_rules! impl_push_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::PushStore for $store {
            async fn register_push_target(
                &self,
                t: &$crate::store::NewTarget,
            ) -> Result<Option<$crate::store::TargetRec>, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::register(&self.pool, t);
                $crate::store::timed(&self.metrics, "register_push_target", f).await
            }

            async fn disable_push_targets(
                &self,
                which: $crate::store::TargetSelector<'_>,
                reason: &str,
                told: bool,
                now_ms: i64,
            ) -> Result<Vec<$crate::store::TargetRec>, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::disable(&self.pool, which, reason, told, now_ms);
                $crate::store::timed(&self.metrics, "disable_push_targets", f).await
            }

            async fn unregister_push_target(
                &self,
                user: $crate::store::UserId,
                id: i64,
                now_ms: i64,
            ) -> Result<bool, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::unregister(&self.pool, user, id, now_ms);
                $crate::store::timed(&self.metrics, "unregister_push_target", f).await
            }

            async fn push_targets(
                &self,
                user: $crate::store::UserId,
                session: Option<&str>,
            ) -> Result<Vec<$crate::store::TargetRec>, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::targets(&self.pool, user, session);
                $crate::store::timed(&self.metrics, "push_targets", f).await
            }

            async fn take_untold_push_targets(
                &self,
                session: &str,
                now_ms: i64,
            ) -> Result<Vec<$crate::store::TargetRec>, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::take_untold(&self.pool, session, now_ms);
                $crate::store::timed(&self.metrics, "take_untold_push_targets", f).await
            }

            async fn push_settings(
                &self,
                user: $crate::store::UserId,
                now_ms: i64,
            ) -> Result<$crate::store::PushSettingsRec, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::settings(&self.pool, user, now_ms);
                $crate::store::timed(&self.metrics, "push_settings", f).await
            }

            async fn set_push_settings(
                &self,
                user: $crate::store::UserId,
                level: Option<$crate::store::PushLevel>,
                preview: Option<bool>,
            ) -> Result<(), $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::set_settings(&self.pool, user, level, preview);
                $crate::store::timed(&self.metrics, "set_push_settings", f).await
            }

            async fn set_conversation_push(
                &self,
                user: $crate::store::UserId,
                setting: $crate::store::ConvPushSetting,
                remove: bool,
            ) -> Result<bool, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::set_conversation(&self.pool, user, setting, remove);
                $crate::store::timed(&self.metrics, "set_conversation_push", f).await
            }

            async fn push_deliveries(
                &self,
                user: $crate::store::UserId,
                before: i64,
                limit: u32,
            ) -> Result<Vec<$crate::store::DeliveryRec>, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::deliveries(&self.pool, user, before, limit);
                $crate::store::timed(&self.metrics, "push_deliveries", f).await
            }

            async fn push_lagging(
                &self,
                after: $crate::store::ConvId,
                limit: u32,
            ) -> Result<Vec<$crate::store::ConvId>, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::lagging(&self.pool, after, limit);
                $crate::store::timed(&self.metrics, "push_lagging", f).await
            }

            async fn plan_push_pass(
                &self,
                convs: &[$crate::store::ConvId],
                cx: &$crate::store::PlanContext<'_>,
            ) -> Result<(Vec<$crate::store::PlanProgress>, u64), $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::plan_pass(&self.pool, convs, cx);
                $crate::store::timed(&self.metrics, "plan_push_pass", f).await
            }

            async fn plan_call_push(
                &self,
                call: &$crate::store::CallInvitePlan,
            ) -> Result<u64, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::plan_call(&self.pool, call);
                $crate::store::timed(&self.metrics, "plan_call_push", f).await
            }

            async fn claim_push_deliveries(
                &self,
                holder: &str,
                providers: &[$crate::store::PushProvider],
                now_ms: i64,
                lease_ms: i64,
                limit: u32,
            ) -> Result<Vec<$crate::store::DueDelivery>, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::claim(&self.pool, holder, providers, now_ms, lease_ms, limit);
                $crate::store::timed(&self.metrics, "claim_push_deliveries", f).await
            }

            async fn finish_push_deliveries(
                &self,
                holder: &str,
                updates: &[$crate::store::DeliveryUpdate],
            ) -> Result<Vec<bool>, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::finish(&self.pool, holder, updates);
                $crate::store::timed(&self.metrics, "finish_push_deliveries", f).await
            }

            async fn pending_push_receipts(
                &self,
                providers: &[$crate::store::PushProvider],
                sent_before_ms: i64,
                limit: u32,
            ) -> Result<Vec<$crate::store::PendingReceipt>, $crate::store::StoreError> {
                let f =
                    $crate::store::push_sql::PushSql::pending_receipts(&self.pool, providers, sent_before_ms, limit);
                $crate::store::timed(&self.metrics, "pending_push_receipts", f).await
            }

            async fn settle_push_receipt(
                &self,
                id: i64,
                failed: Option<(i64, &str)>,
                now_ms: i64,
            ) -> Result<(), $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::settle_receipt(&self.pool, id, failed, now_ms);
                $crate::store::timed(&self.metrics, "settle_push_receipt", f).await
            }

            async fn prune_push_ledger(&self, before_ms: i64, limit: u32) -> Result<u64, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::prune(&self.pool, before_ms, limit);
                $crate::store::timed(&self.metrics, "prune_push_ledger", f).await
            }

            async fn next_push_due(&self) -> Result<Option<i64>, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::next_due(&self.pool);
                $crate::store::timed(&self.metrics, "next_push_due", f).await
            }
        }
    };
}

pub(super) use impl_push_store;
