//! SQL of reports (migration 0020, docs/protocol.md §27). The two writes, ReportMessage and
//! ResolveReport, run in the batched writer's transaction with the conversation helpers: they are
//! expanded inside each backend's `conv_write` module (`report_ops!`), ask `rules::reports`, and
//! write only when it allows. The reads are written once over sqlx for both backends
//! (`ReportSql<DB>`; `impl_report_store!` forwards each backend's `ReportStore` methods).

use std::marker::PhantomData;

use sqlx::{ColumnIndex, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use super::StoreError;
use super::conv_types::{ConvId, ConvKind, MessageId};
use super::report_types::{ReportAction, ReportFilter, ReportId, ReportReason, ReportRec, ReportScope, ReportState};
use super::sql::SqlBackend;
use super::types::UserId;

/// The columns [`ReportRow`] reads.
pub(super) const REPORT_COLUMNS: &str = "id, conversation_id, message_id, reporter_id, sender_id, reason, note, \
     created_at_ms, state, resolved_by, resolved_at_ms, action, resolution_note";

/// A `reports` row.
#[derive(sqlx::FromRow)]
pub(super) struct ReportRow {
    id: ReportId,
    conversation_id: ConvId,
    message_id: MessageId,
    reporter_id: UserId,
    sender_id: UserId,
    reason: ReportReason,
    note: String,
    created_at_ms: i64,
    state: ReportState,
    resolved_by: Option<UserId>,
    resolved_at_ms: Option<i64>,
    action: Option<ReportAction>,
    resolution_note: String,
}

impl From<ReportRow> for ReportRec {
    fn from(r: ReportRow) -> Self {
        ReportRec {
            id: r.id,
            conversation_id: r.conversation_id,
            message_id: r.message_id,
            reporter_id: r.reporter_id,
            sender_id: r.sender_id,
            reason: r.reason,
            note: r.note,
            created_at_ms: r.created_at_ms,
            state: r.state,
            resolved_by: r.resolved_by,
            resolved_at_ms: r.resolved_at_ms,
            action: r.action,
            resolution_note: r.resolution_note,
        }
    }
}

/// The report reads for backend `DB`.
pub(super) struct ReportSql<DB>(PhantomData<DB>);

impl<DB: SqlBackend> ReportSql<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i32: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'r> ReportRow: FromRow<'r, DB::Row>,
{
    /// A report by id.
    pub(super) async fn report(pool: &Pool<DB>, id: ReportId) -> Result<Option<ReportRec>, StoreError> {
        let mut q = sqlx::QueryBuilder::<DB>::new(format!("SELECT {REPORT_COLUMNS} FROM reports WHERE id = "));
        q.push_bind(id.0);
        Ok(q.build_query_as::<ReportRow>().fetch_optional(pool).await?.map(ReportRec::from))
    }

    /// The reports `filter` selects, newest first, at most `limit`.
    pub(super) async fn reports(
        pool: &Pool<DB>,
        filter: &ReportFilter,
        limit: u32,
    ) -> Result<Vec<ReportRec>, StoreError> {
        // Not the reports of a conversation an administrator deleted (§26.6): nothing is left to
        // act on, and ResolveReport answers NOT_FOUND for them.
        let mut q = sqlx::QueryBuilder::<DB>::new(format!(
            "SELECT {REPORT_COLUMNS} FROM reports WHERE conversation_id NOT IN \
             (SELECT id FROM conversations WHERE deleted_at_ms IS NOT NULL) AND state = "
        ));
        q.push_bind(i32::from(filter.state));
        if let Some(b) = filter.before {
            q.push(" AND id < ").push_bind(b.0);
        }
        match filter.scope {
            ReportScope::All => {}
            ReportScope::Conversation(c) => {
                q.push(" AND conversation_id = ").push_bind(c.0);
            }
            // `rules::reports::moderates`, as SQL: a role at `lowest` or above (a lower number),
            // in a group or channel.
            ReportScope::ModeratedBy { user, lowest } => {
                q.push(
                    " AND conversation_id IN (SELECT m.conversation_id FROM members m \
                     JOIN conversations c ON c.id = m.conversation_id WHERE m.user_id = ",
                )
                .push_bind(user.0)
                .push(" AND m.role <= ")
                .push_bind(i32::from(lowest))
                .push(" AND c.kind <> ")
                .push_bind(i32::from(ConvKind::Direct))
                .push(")");
            }
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
        Ok(q.build_query_as::<ReportRow>().fetch_all(pool).await?.into_iter().map(ReportRec::from).collect())
    }
}

/// ReportMessage and ResolveReport on the write path, expanded inside each backend's
/// `conv_write` module (its `Tx`, `OpOut` and helpers: `conv_facts`, `erase_message`, `expel`, …).
macro_rules! report_ops {
    () => {
            /// §27.1, §27.2: a new report, each moderator and server administrator told; a repeat
            /// answers the reporter's earlier report of the message and tells nobody.
            async fn report_message(
                tx: &mut Tx,
                conv: ConvId,
                message_id: MessageId,
                reporter: UserId,
                reason: $crate::store::ReportReason,
                note: &str,
                now: i64,
            ) -> OpOut {
                use $crate::store::rules::reports::{self, ReportVerdict};
                let facts = conv_facts(tx, conv, reporter).await?;
                let earlier: Option<$crate::store::ReportId> =
                    sqlx::query("SELECT id FROM reports WHERE reporter_id = $1 AND message_id = $2 AND conversation_id = $3")
                        .bind(reporter)
                        .bind(message_id)
                        .bind(conv)
                        .fetch_optional(&mut **tx)
                        .await?
                        .map(|r| r.try_get(0))
                        .transpose()?;
                let message = sqlx::query_as::<_, $crate::store::rows::MessageFactsRow>(
                    "SELECT sender_id, deleted_at_ms FROM messages WHERE id = $1 AND conversation_id = $2",
                )
                .bind(message_id)
                .bind(conv)
                .fetch_optional(&mut **tx)
                .await?;
                let verdict = allowed!(reports::report(facts, message.as_ref().map(|m| m.facts(reporter)), earlier.is_some()));
                if let (ReportVerdict::Repeat, Some(id)) = (verdict, earlier) {
                    return Ok(Ok(Applied { result: Some(OpResult::Reported(id)), ..Default::default() }));
                }
                let (Some(facts), Some(message)) = (facts, message) else {
                    return Ok(Err(OpError::NotFound("no such message")));
                };
                // A report of the same message by the same reporter committed meanwhile (from
                // another node) makes this one a repeat: nothing inserted, its id answered.
                let inserted = sqlx::query(
                    "INSERT INTO reports (conversation_id, message_id, reporter_id, sender_id, reason, note, created_at_ms, state) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (reporter_id, message_id) DO NOTHING RETURNING id",
                )
                .bind(conv)
                .bind(message_id)
                .bind(reporter)
                .bind(message.sender())
                .bind(i32::from(reason))
                .bind(note)
                .bind(now)
                .bind(i32::from($crate::store::ReportState::Open))
                .fetch_optional(&mut **tx)
                .await?;
                let id: $crate::store::ReportId = match inserted {
                    Some(row) => row.try_get(0)?,
                    None => {
                        let id = sqlx::query("SELECT id FROM reports WHERE reporter_id = $1 AND message_id = $2")
                            .bind(reporter)
                            .bind(message_id)
                            .fetch_one(&mut **tx)
                            .await?
                            .try_get(0)?;
                        return Ok(Ok(Applied { result: Some(OpResult::Reported(id)), ..Default::default() }));
                    }
                };
                let moderators = sqlx::query("SELECT user_id, role FROM members WHERE conversation_id = $1 AND role <= $2")
                    .bind(conv)
                    .bind(i32::from(reports::LOWEST_MODERATOR))
                    .fetch_all(&mut **tx)
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<Result<Vec<(UserId, Role)>, sqlx::Error>>()?;
                let admins = $crate::store::audit_sql::AuditSql::server_admins(&mut **tx).await?;
                let mut notifications = Vec::new();
                for u in reports::report_recipients(facts.kind, &moderators, &admins, reporter) {
                    let n = $crate::store::conv_send_sql::SendSql::notify(
                        tx,
                        u,
                        NotificationKind::Reported,
                        conv,
                        Some(message_id),
                        reporter,
                        None,
                        Some(id),
                        None,
                        now,
                    )
                    .await?;
                    notifications.push(n);
                }
                Ok(Ok(Applied { result: Some(OpResult::Reported(id)), notifications, ..Default::default() }))
            }

            /// §27.3, §27.4: resolves an open report: the action's deletion and removal (as a
            /// moderator's DeleteMessage and RemoveMember do), the report closed, the reporter told,
            /// and the audit entry, all in the batch's transaction.
            async fn resolve_report(tx: &mut Tx, op: &WriteOp) -> OpOut {
                use $crate::store::rules::reports;
                use $crate::store::{ReportAction, ReportRec, ReportState};
                let WriteOp::ResolveReport { report_id, conversation_id: conv, actor, action, note, client_addr, now_ms: now, .. } = op else {
                    return Ok(Err(OpError::FailedPrecondition("not a resolution")));
                };
                let (report_id, conv, actor, action, now) = (*report_id, *conv, *actor, *action, *now);
                let columns = $crate::store::reports_sql::REPORT_COLUMNS;
                let report: Option<ReportRec> = sqlx::query_as::<_, $crate::store::reports_sql::ReportRow>(sqlx::AssertSqlSafe(
                    format!("SELECT {columns} FROM reports WHERE id = $1 AND conversation_id = $2"),
                ))
                .bind(report_id)
                .bind(conv)
                .fetch_optional(&mut **tx)
                .await?
                .map(ReportRec::from);
                let facts = conv_facts(tx, conv, actor).await?;
                let server_admin = server_admin(tx, actor).await?;
                allowed!(reports::resolve(report.as_ref().map(|r| r.state), reports::may_act(facts, server_admin)));
                let (Some(report), Some(facts)) = (report, facts) else {
                    return Ok(Err(OpError::NotFound("no such report")));
                };
                let sender_role = role_of(tx, conv, report.sender_id).await?;
                let remove = action == ReportAction::RemoveSender
                    && allowed!(reports::remove_sender(facts.kind, facts.role, server_admin, actor == report.sender_id, sender_role))
                        == Effect::Change;
                // The first write, guarded: of two resolutions racing (another node's), one wins.
                let closed = sqlx::query(
                    "UPDATE reports SET state = $1, resolved_by = $2, resolved_at_ms = $3, action = $4, resolution_note = $5 \
                     WHERE id = $6 AND state = $7",
                )
                .bind(i32::from(ReportState::Resolved))
                .bind(actor)
                .bind(now)
                .bind(i32::from(action))
                .bind(note)
                .bind(report_id)
                .bind(i32::from(ReportState::Open))
                .execute(&mut **tx)
                .await?;
                if closed.rows_affected() == 0 {
                    return Ok(Err(OpError::FailedPrecondition("the report is already resolved")));
                }
                let mut applied = Applied::default();
                let live = sqlx::query("SELECT 1 FROM messages WHERE id = $1 AND conversation_id = $2 AND deleted_at_ms IS NULL")
                    .bind(report.message_id)
                    .bind(conv)
                    .fetch_optional(&mut **tx)
                    .await?
                    .is_some();
                // Each change audited as the same change by a moderator is (§28.1), then the
                // resolution itself.
                let entry = |action: $crate::store::AuditAction| $crate::store::NewAudit {
                    actor: Some(actor),
                    target_user: Some(report.sender_id),
                    target_conversation: Some(conv),
                    client_addr: client_addr.clone(),
                    ..$crate::store::NewAudit::new(action, now)
                };
                if reports::deletes_message(action) && live {
                    applied = erase_message(tx, conv, actor, report.message_id, now).await?;
                    if report.sender_id != actor {
                        let deleted = entry($crate::store::AuditAction::MessageDeleted);
                        applied.audit.push($crate::store::NewAudit { target_message: Some(report.message_id), ..deleted });
                    }
                }
                if remove {
                    let removed = expel(tx, conv, actor, report.sender_id, now).await?;
                    applied.events.extend(removed.events);
                    applied.audience = removed.audience;
                    applied.user_updates.extend(removed.user_updates);
                    let before = serde_json::json!({ "role": sender_role.map(Role::name) }).to_string();
                    applied.audit.push($crate::store::NewAudit { before, ..entry($crate::store::AuditAction::MemberRemoved) });
                }
                let reporter_live = live_users(tx, &[report.reporter_id]).await?;
                if reporter_live && report.reporter_id != actor {
                    let n = $crate::store::conv_send_sql::SendSql::notify(
                        tx,
                        report.reporter_id,
                        NotificationKind::ReportResolved,
                        conv,
                        Some(report.message_id),
                        actor,
                        None,
                        Some(report_id),
                        Some(action),
                        now,
                    )
                    .await?;
                    applied.notifications.push(n);
                }
                applied.audit.push($crate::store::NewAudit {
                    target_message: Some(report.message_id),
                    target: report_id.to_string(),
                    after: serde_json::json!({ "action": action.name() }).to_string(),
                    ..entry($crate::store::AuditAction::ReportResolved)
                });
                let resolved = ReportRec {
                    state: ReportState::Resolved,
                    resolved_by: Some(actor),
                    resolved_at_ms: Some(now),
                    action: Some(action),
                    resolution_note: note.clone(),
                    ..report
                };
                applied.result = Some(OpResult::Resolved(Box::new(resolved)));
                Ok(Ok(applied))
            }
    };
}

pub(super) use report_ops;

/// The `ReportStore` impl of a backend struct with `pool` and `metrics` fields.
macro_rules! impl_report_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::ReportStore for $store {
            async fn report(
                &self,
                id: $crate::store::ReportId,
            ) -> Result<Option<$crate::store::ReportRec>, $crate::store::StoreError> {
                let f = $crate::store::reports_sql::ReportSql::report(&self.pool, id);
                $crate::store::timed(&self.metrics, "report", f).await
            }

            async fn reports(
                &self,
                filter: &$crate::store::ReportFilter,
                limit: u32,
            ) -> Result<Vec<$crate::store::ReportRec>, $crate::store::StoreError> {
                let f = $crate::store::reports_sql::ReportSql::reports(&self.pool, filter, limit);
                $crate::store::timed(&self.metrics, "reports", f).await
            }
        }
    };
}

pub(super) use impl_report_store;
