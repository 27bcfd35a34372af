//! SQL of push notifications (`PushStore`, migration 0014): targets, settings, the planner's pass
//! over conversation logs that writes ledger rows, the sender's claims with leases, and the
//! ledger's updates. Written once as generic functions over sqlx (`PushSql<DB>`);
//! `impl_push_store!` forwards each backend's methods.

use std::collections::{BTreeSet, HashMap};
use std::marker::PhantomData;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::conv_types::{ConvId, ConvKind, LOG_POSTED, MessageId};
use super::push_types::{
    CallInvitePlan, ConvPushSetting, DeliveryRec, DeliveryState, DeliveryUpdate, DueDelivery, NewTarget,
    PendingReceipt, PlanContext, PlanProgress, PushKind, PushLevel, PushProvider, PushSettingsRec, TargetRec,
};
use super::progress_sql::{PUSH, ProgressSql};
use super::rules::push::{effective_level, notifies};
use super::search_sql::ids;
use super::sql::SqlBackend;
use super::types::UserId;
use super::{Backend, StoreError};

/// Log kind of MembersAdded (`LogBody::kind`).
const LOG_MEMBERS_ADDED: i32 = 5;
/// Most log entries one planner pass reads (over all its conversations).
const PASS_ENTRIES: i64 = 2000;
/// Ledger rows per INSERT statement.
const INSERT_ROWS: usize = 400;

const TARGET_COLS: &str = "t.id, t.user_id, t.session_id, t.provider, t.token, t.app_id, t.voip, t.created_at_ms, \
                           t.disabled_at_ms, t.disabled_reason";

/// The push SQL for backend `DB`.
pub(super) struct PushSql<DB>(PhantomData<DB>);

/// One ledger row to insert.
struct Planned {
    user: i64,
    target: i64,
    session: String,
    conversation: i64,
    seq: i64,
    call_id: String,
    kind: PushKind,
    sender: i64,
    message_id: Option<i64>,
    created_at_ms: i64,
    due_at_ms: i64,
    expires_at_ms: i64,
}

/// A target that may be pushed for a conversation, with the member's span there.
struct Candidate {
    target: i64,
    user: i64,
    session: String,
    voip: bool,
    created_at_ms: i64,
    from_seq: i64,
    until_seq: Option<i64>,
}

/// A stored value this version does not know.
fn bad(what: &'static str, v: impl std::fmt::Display) -> StoreError {
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
    fn target(r: &DB::Row) -> Result<TargetRec, StoreError> {
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
             AND NOT (provider = $2 AND token = $3)",
        )
        .bind(t.session.as_str())
        .bind(t.provider.as_str())
        .bind(t.token.as_str())
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

    /// Disables targets (`ids`, or when empty every enabled target of `sessions`, or of `user`)
    /// with `reason`, drops their queued deliveries; `told` when the device needs no
    /// PushTargetInvalidated. Returns the targets disabled now.
    pub(super) async fn disable(
        pool: &Pool<DB>,
        which: TargetSelector<'_>,
        reason: &str,
        told: bool,
        now_ms: i64,
    ) -> Result<Vec<TargetRec>, StoreError> {
        let filter = match which {
            TargetSelector::Ids([]) | TargetSelector::Sessions([]) => return Ok(Vec::new()),
            TargetSelector::Ids(v) => format!("t.id IN ({})", ids(v)),
            TargetSelector::Sessions(v) => {
                let quoted: Vec<String> = v.iter().map(|s| format!("'{}'", s.replace('\'', "''"))).collect();
                format!("t.session_id IN ({})", quoted.join(", "))
            }
            TargetSelector::User(u) => format!("t.user_id = {}", u.0),
        };
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TARGET_COLS} FROM push_targets t WHERE {filter} AND t.disabled_at_ms IS NULL"
        )))
        .persistent(false)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut t = Self::target(r)?;
            sqlx::query(
                "UPDATE push_targets SET disabled_at_ms = $2, disabled_reason = $3, updated_at_ms = $2, \
                 told_at_ms = CASE WHEN $4 THEN $2 ELSE NULL END WHERE id = $1",
            )
            .bind(t.id)
            .bind(now_ms)
            .bind(reason)
            .bind(told)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE push_deliveries SET state = 'dropped', detail = $2, updated_at_ms = $3, lease_holder = NULL \
                 WHERE target_id = $1 AND state = 'queued'",
            )
            .bind(t.id)
            .bind(format!("the target was disabled: {reason}"))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            t.disabled_at_ms = Some(now_ms);
            t.disabled_reason = reason.to_string();
            out.push(t);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// The user's targets (of `session` only when given), enabled first, newest first.
    pub(super) async fn targets(
        pool: &Pool<DB>,
        user: UserId,
        session: Option<&str>,
    ) -> Result<Vec<TargetRec>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TARGET_COLS} FROM push_targets t WHERE t.user_id = $1 AND ($2 = '' OR t.session_id = $2) \
             AND t.disabled_reason NOT IN ('{}', '{}') \
             AND NOT EXISTS (SELECT 1 FROM sessions x WHERE x.id = t.session_id AND x.revoked_at_ms IS NOT NULL) ORDER BY t.disabled_at_ms IS NOT NULL, t.id DESC LIMIT 200",
            super::push_types::UNREGISTERED,
            super::push_types::SESSION_ENDED
        )))
        .bind(user.0)
        .bind(session.unwrap_or(""))
        .fetch_all(pool)
        .await?;
        rows.iter().map(Self::target).collect()
    }

    /// Targets of `session` disabled by their provider whose device was not told yet; marks them told.
    pub(super) async fn take_untold(pool: &Pool<DB>, session: &str, now_ms: i64) -> Result<Vec<TargetRec>, StoreError> {
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TARGET_COLS} FROM push_targets t WHERE t.session_id = $1 AND t.disabled_at_ms IS NOT NULL \
             AND t.told_at_ms IS NULL"
        )))
        .bind(session)
        .fetch_all(&mut *tx)
        .await?;
        let out: Vec<TargetRec> = rows.iter().map(Self::target).collect::<Result<_, _>>()?;
        if !out.is_empty() {
            let list: Vec<i64> = out.iter().map(|t| t.id).collect();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE push_targets SET told_at_ms = $1 WHERE id IN ({})",
                ids(&list)
            )))
            .bind(now_ms)
            .persistent(false)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
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

    /// Conversations whose log the planner has not read to the head, lowest id first.
    pub(super) async fn lagging(pool: &Pool<DB>, after: ConvId, limit: u32) -> Result<Vec<ConvId>, StoreError> {
        ProgressSql::<DB>::lagging(pool, PUSH, after, limit).await
    }

    /// One planner pass over `convs` in one transaction: progress rows locked (two nodes never
    /// plan one conversation at once), up to `PASS_ENTRIES` new log entries read, a ledger row
    /// written for every (target, entry) that notifies (`rules::push`), progress moved on.
    /// Returns each conversation's progress and the rows written.
    pub(super) async fn plan_pass(
        pool: &Pool<DB>,
        convs: &[ConvId],
        cx: &PlanContext<'_>,
    ) -> Result<(Vec<PlanProgress>, u64), StoreError> {
        let convs: Vec<ConvId> = convs.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
        if convs.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let rows = ProgressSql::<DB>::lock(&mut tx, PUSH, &convs).await?;
        let mut progress = Vec::with_capacity(rows.len());
        let mut planned: Vec<Planned> = Vec::new();
        let mut budget = PASS_ENTRIES;
        for r in &rows {
            let (conversation, from, head) = (r.conversation.0, r.read, r.head);
            let kind = ConvKind::try_from(r.kind as i32).map_err(|e| bad("conversation kind", e))?;
            if from >= head || budget <= 0 {
                progress.push(PlanProgress { conversation: ConvId(conversation), planned_seq: from, head_seq: head });
                continue;
            }
            let upto = head.min(from.saturating_add(budget));
            budget -= upto - from;
            Self::plan_conversation(&mut tx, conversation, kind, from, upto, cx, &mut planned).await?;
            progress.push(PlanProgress { conversation: ConvId(conversation), planned_seq: upto, head_seq: head });
        }
        let written = Self::insert(&mut tx, &planned).await?;
        for p in &progress {
            ProgressSql::<DB>::advance(&mut tx, PUSH, p.conversation, p.planned_seq).await?;
        }
        tx.commit().await?;
        Ok((progress, written))
    }

    /// The ledger rows for entries `from < seq <= upto` of one conversation.
    async fn plan_conversation(
        tx: &mut sqlx::Transaction<'_, DB>,
        conversation: i64,
        conv_kind: ConvKind,
        from: i64,
        upto: i64,
        cx: &PlanContext<'_>,
        out: &mut Vec<Planned>,
    ) -> Result<(), StoreError> {
        let oldest = cx.now_ms - cx.max_age_ms;
        let entries = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT seq, CAST(kind AS BIGINT), actor_id, at_ms, message_id, user_ids FROM conversation_events \
             WHERE conversation_id = $1 AND seq > $2 AND seq <= $3 AND kind IN ({LOG_POSTED}, {LOG_MEMBERS_ADDED}) \
             AND at_ms >= $4 ORDER BY seq"
        )))
        .bind(conversation)
        .bind(from)
        .bind(upto)
        .bind(oldest)
        .fetch_all(&mut **tx)
        .await?;
        if entries.is_empty() {
            return Ok(());
        }
        let candidates = Self::candidates(tx, conversation, from).await?;
        if candidates.is_empty() {
            return Ok(());
        }
        let users: Vec<i64> = candidates.iter().map(|c| c.user).collect::<BTreeSet<_>>().into_iter().collect();
        let facts = Self::facts(tx, &users, conversation, conv_kind, cx.now_ms).await?;
        for e in &entries {
            let (seq, kind, actor, at_ms): (i64, i64, i64, i64) =
                (e.try_get(0)?, e.try_get(1)?, e.try_get(2)?, e.try_get(3)?);
            let message_id: Option<i64> = e.try_get(4)?;
            let listed: BTreeSet<i64> = super::conv_sql::ids(e.try_get(5)?).into_iter().map(|u| u.0).collect();
            for c in &candidates {
                if c.user == actor || c.voip || c.created_at_ms > at_ms || facts.blocked.contains(&(c.user, actor)) {
                    continue;
                }
                let push_kind = if kind == i64::from(LOG_POSTED) {
                    if c.from_seq >= seq || c.until_seq.is_some_and(|u| u < seq) {
                        continue;
                    }
                    if listed.contains(&c.user) { PushKind::Mention } else { PushKind::Message }
                } else {
                    if c.from_seq != seq || !listed.contains(&c.user) {
                        continue;
                    }
                    PushKind::AddedToConversation
                };
                let level = facts.levels.get(&c.user).copied().unwrap_or(PushLevel::All);
                if !notifies(level, push_kind, conv_kind) {
                    continue;
                }
                let wait = if (cx.connected)(&c.session) { cx.ack_wait_ms } else { 0 };
                out.push(Planned {
                    user: c.user,
                    target: c.target,
                    session: c.session.clone(),
                    conversation,
                    seq,
                    call_id: String::new(),
                    kind: push_kind,
                    sender: actor,
                    message_id,
                    created_at_ms: cx.now_ms,
                    due_at_ms: cx.now_ms + wait,
                    expires_at_ms: at_ms + cx.max_age_ms,
                });
            }
        }
        Ok(())
    }

    /// Enabled targets of live sessions whose users were members of the conversation after `from`.
    async fn candidates(
        tx: &mut sqlx::Transaction<'_, DB>,
        conversation: i64,
        from: i64,
    ) -> Result<Vec<Candidate>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.id, t.user_id, t.session_id, t.voip, t.created_at_ms, s.from_seq, s.until_seq \
             FROM membership_spans s JOIN push_targets t ON t.user_id = s.user_id \
             JOIN sessions x ON x.id = t.session_id \
             WHERE s.conversation_id = $1 AND (s.until_seq IS NULL OR s.until_seq > $2) \
             AND t.disabled_at_ms IS NULL AND x.revoked_at_ms IS NULL",
        )
        .bind(conversation)
        .bind(from)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Candidate {
                    target: r.try_get(0)?,
                    user: r.try_get(1)?,
                    session: r.try_get(2)?,
                    voip: r.try_get(3)?,
                    created_at_ms: r.try_get(4)?,
                    from_seq: r.try_get(5)?,
                    until_seq: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Each user's level in the conversation and who blocked whom among them.
    async fn facts(
        tx: &mut sqlx::Transaction<'_, DB>,
        users: &[i64],
        conversation: i64,
        conv_kind: ConvKind,
        now_ms: i64,
    ) -> Result<Facts, StoreError> {
        let list = ids(users);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT user_id, conversation_id, level, until_ms FROM push_settings \
             WHERE user_id IN ({list}) AND conversation_id IN (0, $1)"
        )))
        .bind(conversation)
        .persistent(false)
        .fetch_all(&mut **tx)
        .await?;
        let mut account: HashMap<i64, PushLevel> = HashMap::new();
        let mut own: HashMap<i64, ConvPushSetting> = HashMap::new();
        for r in &rows {
            let (user, conv): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
            let lv = level(r.try_get(2)?)?;
            if conv == 0 {
                account.insert(user, lv);
            } else {
                own.insert(user, ConvPushSetting { conversation: ConvId(conv), level: lv, until_ms: r.try_get(3)? });
            }
        }
        let levels = users
            .iter()
            .map(|u| {
                let acc = account.get(u).copied().unwrap_or(PushLevel::All);
                (*u, effective_level(acc, own.get(u).copied(), conv_kind, now_ms))
            })
            .collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT user_id, blocked_id FROM blocks WHERE user_id IN ({list})"
        )))
        .persistent(false)
        .fetch_all(&mut **tx)
        .await?;
        let blocked = rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect::<Result<_, StoreError>>()?;
        Ok(Facts { levels, blocked })
    }

    async fn insert(tx: &mut sqlx::Transaction<'_, DB>, rows: &[Planned]) -> Result<u64, StoreError> {
        let mut written = 0;
        for chunk in rows.chunks(INSERT_ROWS) {
            let mut sql = String::from(
                "INSERT INTO push_deliveries (user_id, target_id, session_id, conversation_id, seq, call_id, kind, \
                 sender_id, message_id, state, created_at_ms, updated_at_ms, due_at_ms, expires_at_ms) VALUES ",
            );
            for (i, _) in chunk.iter().enumerate() {
                let b = i * 12;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, 'queued', ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8,
                    b + 9,
                    b + 10,
                    b + 10,
                    b + 11,
                    b + 12
                ));
            }
            sql.push_str(" ON CONFLICT DO NOTHING");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
            for p in chunk {
                q = q
                    .bind(p.user)
                    .bind(p.target)
                    .bind(p.session.clone())
                    .bind(p.conversation)
                    .bind(p.seq)
                    .bind(p.call_id.clone())
                    .bind(i64::from(i32::from(p.kind)))
                    .bind(p.sender)
                    .bind(p.message_id)
                    .bind(p.created_at_ms)
                    .bind(p.due_at_ms)
                    .bind(p.expires_at_ms);
            }
            written += DB::rows_affected(&q.execute(&mut **tx).await?);
        }
        Ok(written)
    }

    /// Ledger rows for a ringing call's callees: on each device its VoIP target when it has
    /// one, else its other targets; due at once.
    pub(super) async fn plan_call(pool: &Pool<DB>, call: &CallInvitePlan) -> Result<u64, StoreError> {
        if call.callees.is_empty() {
            return Ok(0);
        }
        let users: Vec<i64> = call.callees.iter().map(|u| u.0).collect();
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let kind: Option<i64> = sqlx::query_scalar("SELECT CAST(kind AS BIGINT) FROM conversations WHERE id = $1")
            .bind(call.conversation.0)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(kind) = kind else { return Ok(0) };
        let conv_kind = ConvKind::try_from(kind as i32).map_err(|e| bad("conversation kind", e))?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT t.id, t.user_id, t.session_id, t.voip FROM push_targets t JOIN sessions x ON x.id = t.session_id \
             WHERE t.user_id IN ({}) AND t.disabled_at_ms IS NULL AND x.revoked_at_ms IS NULL ORDER BY t.id",
            ids(&users)
        )))
        .persistent(false)
        .fetch_all(&mut *tx)
        .await?;
        let facts = Self::facts(&mut tx, &users, call.conversation.0, conv_kind, call.now_ms).await?;
        let mut by_session: HashMap<String, Vec<(i64, i64, bool)>> = HashMap::new();
        for r in &rows {
            let (id, user, session, voip): (i64, i64, String, bool) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
            by_session.entry(session).or_default().push((id, user, voip));
        }
        let mut planned = Vec::new();
        for (session, targets) in by_session {
            let has_voip = targets.iter().any(|t| t.2);
            for (id, user, voip) in targets {
                let level = facts.levels.get(&user).copied().unwrap_or(PushLevel::All);
                if voip != has_voip
                    || facts.blocked.contains(&(user, call.caller.0))
                    || !notifies(level, PushKind::CallInvite, conv_kind)
                {
                    continue;
                }
                planned.push(Planned {
                    user,
                    target: id,
                    session: session.clone(),
                    conversation: call.conversation.0,
                    seq: 0,
                    call_id: call.call_id.clone(),
                    kind: PushKind::CallInvite,
                    sender: call.caller.0,
                    message_id: None,
                    created_at_ms: call.now_ms,
                    due_at_ms: call.now_ms,
                    expires_at_ms: call.expires_at_ms,
                });
            }
        }
        let written = Self::insert(&mut tx, &planned).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Claims up to `limit` due deliveries for `holder` until `now_ms + lease_ms` (a row another
    /// node holds is skipped; a lease that ran out is taken over) and counts the attempt.
    pub(super) async fn claim(
        pool: &Pool<DB>,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let skip = match DB::BACKEND {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let mut tx = pool.begin_with(DB::BEGIN).await?;
        let claimed: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "UPDATE push_deliveries SET lease_holder = $1, lease_until_ms = $2, attempts = attempts + 1, updated_at_ms = $3 \
             WHERE id IN (SELECT id FROM push_deliveries WHERE state = 'queued' AND due_at_ms <= $3 \
                          AND lease_until_ms < $3 ORDER BY due_at_ms LIMIT $4{skip}) RETURNING id"
        )))
        .bind(holder)
        .bind(now_ms + lease_ms)
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
                    mb.read_seq, m.deleted_at_ms, COALESCE(g.preview, {f}), CAST(c.kind AS BIGINT), \
                    (SELECT COUNT(*) FROM messages u WHERE u.conversation_id = d.conversation_id AND u.seq > mb.read_seq \
                       AND u.sender_id <> d.user_id AND u.deleted_at_ms IS NULL), \
                    (SELECT COUNT(*) FROM blocks b WHERE b.user_id = d.user_id AND b.blocked_id = d.sender_id) \
             FROM push_deliveries d JOIN push_targets t ON t.id = d.target_id \
             LEFT JOIN sessions x ON x.id = d.session_id \
             LEFT JOIN device_acks a ON a.session_id = d.session_id AND a.conversation_id = d.conversation_id \
             LEFT JOIN members mb ON mb.conversation_id = d.conversation_id AND mb.user_id = d.user_id \
             LEFT JOIN messages m ON m.id = d.message_id \
             LEFT JOIN push_settings g ON g.user_id = d.user_id AND g.conversation_id = 0 \
             LEFT JOIN conversations c ON c.id = d.conversation_id \
             WHERE d.id IN ({}) ORDER BY d.due_at_ms",
            ids(&claimed),
            f = match DB::BACKEND {
                Backend::Postgres => "FALSE",
                Backend::Sqlite => "0",
            }
        )))
        .persistent(false)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let revoked: Option<i64> = r.try_get(21)?;
                let read_seq: Option<i64> = r.try_get(23)?;
                let deleted: Option<i64> = r.try_get(24)?;
                let conv_kind: Option<i64> = r.try_get(26)?;
                Ok(DueDelivery {
                    target: Self::target(r)?,
                    id: r.try_get(10)?,
                    user: UserId(r.try_get(11)?),
                    conversation: ConvId(r.try_get(12)?),
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
                })
            })
            .collect()
    }

    /// Records what became of a claimed delivery, if `holder` still holds it. `false` when the
    /// lease was lost (another node took the row over).
    pub(super) async fn finish(pool: &Pool<DB>, holder: &str, u: &DeliveryUpdate) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE push_deliveries SET state = $3, provider_status = $4, detail = $5, due_at_ms = $6, \
             sent_at_ms = COALESCE($7, sent_at_ms), provider_ref = COALESCE($8, provider_ref), receipt_pending = $9, \
             updated_at_ms = $10, lease_holder = NULL, lease_until_ms = 0 WHERE id = $1 AND lease_holder = $2",
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
        .execute(pool)
        .await?;
        Ok(DB::rows_affected(&r) > 0)
    }

    /// Sent deliveries whose receipt is due (sent at or before `sent_before_ms`).
    pub(super) async fn pending_receipts(
        pool: &Pool<DB>,
        sent_before_ms: i64,
        limit: u32,
    ) -> Result<Vec<PendingReceipt>, StoreError> {
        let t = match DB::BACKEND {
            Backend::Postgres => "TRUE",
            Backend::Sqlite => "1",
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT d.id, d.target_id, t.provider, d.provider_ref FROM push_deliveries d \
             JOIN push_targets t ON t.id = d.target_id \
             WHERE d.receipt_pending = {t} AND d.state = 'sent' AND d.sent_at_ms <= $1 AND d.provider_ref IS NOT NULL \
             ORDER BY d.sent_at_ms LIMIT $2"
        )))
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

/// Which targets [`PushSql::disable`] acts on.
#[derive(Clone, Copy, Debug)]
pub enum TargetSelector<'a> {
    Ids(&'a [i64]),
    Sessions(&'a [String]),
    User(UserId),
}

struct Facts {
    levels: HashMap<i64, PushLevel>,
    /// `(user, blocked)`.
    blocked: BTreeSet<(i64, i64)>,
}

fn level(v: i64) -> Result<PushLevel, StoreError> {
    PushLevel::try_from(v as i32).map_err(|e| bad("push level", e))
}

fn kind(v: i64) -> Result<PushKind, StoreError> {
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
                which: $crate::store::push_sql::TargetSelector<'_>,
                reason: &str,
                told: bool,
                now_ms: i64,
            ) -> Result<Vec<$crate::store::TargetRec>, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::disable(&self.pool, which, reason, told, now_ms);
                $crate::store::timed(&self.metrics, "disable_push_targets", f).await
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
                now_ms: i64,
                lease_ms: i64,
                limit: u32,
            ) -> Result<Vec<$crate::store::DueDelivery>, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::claim(&self.pool, holder, now_ms, lease_ms, limit);
                $crate::store::timed(&self.metrics, "claim_push_deliveries", f).await
            }

            async fn finish_push_delivery(
                &self,
                holder: &str,
                update: &$crate::store::DeliveryUpdate,
            ) -> Result<bool, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::finish(&self.pool, holder, update);
                $crate::store::timed(&self.metrics, "finish_push_delivery", f).await
            }

            async fn pending_push_receipts(
                &self,
                sent_before_ms: i64,
                limit: u32,
            ) -> Result<Vec<$crate::store::PendingReceipt>, $crate::store::StoreError> {
                let f = $crate::store::push_sql::PushSql::pending_receipts(&self.pool, sent_before_ms, limit);
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

            async fn next_push_due(&self) -> Result<Option<i64>, $crate::store::StoreError> {
                $crate::store::push_sql::PushSql::next_due(&self.pool).await
            }
        }
    };
}

pub(super) use impl_push_store;
