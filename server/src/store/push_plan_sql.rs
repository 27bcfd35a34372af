//! SQL of the push planner (`PushStore::plan_push_pass`, `plan_call_push`, migration 0014): a
//! pass over conversation logs from the planner's watermark that writes a ledger row for every
//! (target, entry) that notifies (`rules::push`), and the rows of a ringing call.

use std::collections::{BTreeSet, HashMap};

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};

use super::StoreError;
use super::conv_types::{ConvId, ConvKind, LOG_MEMBERS_ADDED, LOG_POSTED};
use super::progress_sql::{PUSH, ProgressSql};
use super::push_sql::{PushSql, bad, level};
use super::push_types::{CallInvitePlan, ConvPushSetting, PlanContext, PlanProgress, PushKind, PushLevel};
use super::rules::push::{effective_level, notifies};
use super::search_sql::ids;
use super::sql::SqlBackend;

/// Most log entries one planner pass reads (over all its conversations).
const PASS_ENTRIES: i64 = 2000;
/// About the most ledger rows one conversation adds to a pass (entries × its targets).
const PASS_ROWS: i64 = 20_000;
/// Ledger rows per INSERT statement.
const INSERT_ROWS: usize = 400;

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

/// Each user's level in a conversation, and who blocked whom.
struct Facts {
    levels: HashMap<i64, PushLevel>,
    /// `(user, blocked)`.
    blocked: BTreeSet<(i64, i64)>,
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
        let lagging: Vec<(i64, i64)> =
            rows.iter().filter(|r| r.read < r.head).map(|r| (r.conversation.0, r.read)).collect();
        let mut candidates = Self::candidates(&mut tx, &lagging).await?;
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
            let targets = candidates.remove(&conversation).unwrap_or_default();
            let upto =
                Self::plan_conversation(&mut tx, conversation, kind, &targets, from, upto, cx, &mut planned).await?;
            budget -= upto - from;
            progress.push(PlanProgress { conversation: ConvId(conversation), planned_seq: upto, head_seq: head });
        }
        let written = Self::insert(&mut tx, &planned).await?;
        ProgressSql::<DB>::advance(&mut tx, PUSH, &rows, progress.iter().map(|p| p.planned_seq)).await?;
        tx.commit().await?;
        Ok((progress, written))
    }

    /// The ledger rows for entries `from < seq <= upto` of one conversation — fewer entries when
    /// the conversation has many targets, so a pass writes at most about `PASS_ROWS` rows (at
    /// least one entry goes). Returns the last seq planned.
    #[allow(clippy::too_many_arguments)]
    async fn plan_conversation(
        tx: &mut sqlx::Transaction<'_, DB>,
        conversation: i64,
        conv_kind: ConvKind,
        candidates: &[Candidate],
        from: i64,
        upto: i64,
        cx: &PlanContext<'_>,
        out: &mut Vec<Planned>,
    ) -> Result<i64, StoreError> {
        if candidates.is_empty() {
            return Ok(upto);
        }
        let per_entry = i64::try_from(candidates.len()).unwrap_or(i64::MAX);
        let upto = upto.min(from.saturating_add((PASS_ROWS / per_entry).max(1)));
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
            return Ok(upto);
        }
        let users: Vec<i64> = candidates.iter().map(|c| c.user).collect::<BTreeSet<_>>().into_iter().collect();
        let actors: Vec<i64> =
            entries.iter().map(|e| e.try_get(2)).collect::<Result<BTreeSet<i64>, _>>()?.into_iter().collect();
        let facts = Self::facts(tx, &users, &actors, conversation, conv_kind, cx.now_ms).await?;
        // Whether each device is connected, asked once per pass (the hub takes a lock).
        let waits: Vec<i64> =
            candidates.iter().map(|c| if (cx.connected)(&c.session) { cx.ack_wait_ms } else { 0 }).collect();
        for e in &entries {
            let (seq, kind, actor, at_ms): (i64, i64, i64, i64) =
                (e.try_get(0)?, e.try_get(1)?, e.try_get(2)?, e.try_get(3)?);
            let message_id: Option<i64> = e.try_get(4)?;
            let listed: BTreeSet<i64> = super::conv_sql::ids(e.try_get(5)?).into_iter().map(|u| u.0).collect();
            for (c, wait) in candidates.iter().zip(&waits) {
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
        Ok(upto)
    }

    /// For each `(conversation, from)`: the enabled targets of live sessions whose users were
    /// members of the conversation after `from`, in one statement for the whole pass (trusted
    /// integers, inlined).
    async fn candidates(
        tx: &mut sqlx::Transaction<'_, DB>,
        lagging: &[(i64, i64)],
    ) -> Result<HashMap<i64, Vec<Candidate>>, StoreError> {
        let mut out: HashMap<i64, Vec<Candidate>> = HashMap::new();
        if lagging.is_empty() {
            return Ok(out);
        }
        let ranges: Vec<String> = lagging.iter().map(|(c, from)| format!("({c}, {from})")).collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH r(cid, lo) AS (VALUES {}) \
             SELECT s.conversation_id, t.id, t.user_id, t.session_id, t.voip, t.created_at_ms, s.from_seq, s.until_seq \
             FROM r JOIN membership_spans s ON s.conversation_id = r.cid AND (s.until_seq IS NULL OR s.until_seq > r.lo) \
             JOIN push_targets t ON t.user_id = s.user_id JOIN sessions x ON x.id = t.session_id \
             WHERE t.disabled_at_ms IS NULL AND x.revoked_at_ms IS NULL",
            ranges.join(", ")
        )))
        .persistent(false)
        .fetch_all(&mut **tx)
        .await?;
        for r in &rows {
            out.entry(r.try_get(0)?).or_default().push(Candidate {
                target: r.try_get(1)?,
                user: r.try_get(2)?,
                session: r.try_get(3)?,
                voip: r.try_get(4)?,
                created_at_ms: r.try_get(5)?,
                from_seq: r.try_get(6)?,
                until_seq: r.try_get(7)?,
            });
        }
        Ok(out)
    }

    /// Each user's level in the conversation, and which of `actors` each blocked.
    async fn facts(
        tx: &mut sqlx::Transaction<'_, DB>,
        users: &[i64],
        actors: &[i64],
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
            "SELECT user_id, blocked_id FROM blocks WHERE user_id IN ({list}) AND blocked_id IN ({})",
            ids(actors)
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
        let facts = Self::facts(&mut tx, &users, &[call.caller.0], call.conversation.0, conv_kind, call.now_ms).await?;
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
}
