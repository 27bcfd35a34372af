//! SQL writing conversations, messages and the logs, shared by both backends
//! (`impl_conv_writes!`). `apply` runs a whole batch of writes in one transaction (group commit);
//! each op reads the facts its rule needs (`store/rules`), asks the rule, and writes only when the
//! rule allows it, so a refused op leaves no trace and does not spoil the batch.

/// Asks a rule: its value when the op is allowed; otherwise the op's result is the refusal.
macro_rules! allowed {
    ($rule:expr) => {
        match $rule {
            Ok(value) => value,
            Err(refusal) => return Ok(Err(refusal)),
        }
    };
}

pub(super) use allowed;

macro_rules! impl_conv_writes {
    ($store:ty) => {
        mod conv_write {
            use super::*;
            use $crate::store::conv_sql::join_ids;
            use $crate::store::conv_marks_sql::{MarkRef, MarkSql};
            use $crate::store::conv_send_sql::{SendRef, SendSql};
            use $crate::store::conv_types::*;
            use $crate::store::conv_write_sql::allowed;
            use $crate::store::rules::{self, ConvFacts, Effect, MessageFacts};
            use $crate::store::types::UserId;

            type Db = <$store as $crate::store::sql::HasDb>::Db;
            type Tx = sqlx::Transaction<'static, Db>;

            /// Applies `ops` in one transaction; one result per op.
            pub(super) async fn apply(
                pool: &sqlx::Pool<Db>,
                sealer: &$crate::store::keys::Sealer,
                ops: &[WriteOp],
            ) -> Result<Vec<Result<Applied, OpError>>, StoreError> {
                sealer.check_writable()?;
                // The data keys the batch seals with, at hand before the transaction takes the
                // write lock (creating one is a write of its own) — only for conversations the
                // writer is a member of: anyone else's op is refused by its rule anyway.
                if sealer.is_on() {
                    let mut wanted: Vec<(ConvId, UserId, i64)> = Vec::new();
                    for op in ops {
                        if let WriteOp::Send { conversation_id: c, sender: u, now_ms, .. }
                        | WriteOp::Edit { conversation_id: c, actor: u, now_ms, .. } = op
                            && !sealer.unprepared([$crate::store::keys::Scope::Conversation(*c)], *now_ms).is_empty()
                        {
                            wanted.push((*c, *u, *now_ms));
                        }
                    }
                    if !wanted.is_empty() {
                        // Integers formatted here, never client text.
                        let pairs: Vec<String> = wanted.iter().map(|(c, u, _)| format!("({}, {})", c.0, u.0)).collect();
                        let members: Vec<ConvId> = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "SELECT conversation_id FROM members WHERE (conversation_id, user_id) IN (VALUES {})",
                            pairs.join(", ")
                        )))
                        .persistent(false)
                        .fetch_all(pool)
                        .await?
                        .iter()
                        .map(|r| r.try_get(0))
                        .collect::<Result<_, _>>()?;
                        for (c, _, at) in wanted.iter().filter(|(c, _, _)| members.contains(c)) {
                            sealer.prepare([$crate::store::keys::Scope::Conversation(*c)], *at).await?;
                        }
                    }
                }
                Ok(apply_tx(pool, sealer, ops).await?)
            }

            async fn apply_tx(
                pool: &sqlx::Pool<Db>,
                sealer: &$crate::store::keys::Sealer,
                ops: &[WriteOp],
            ) -> Result<Vec<Result<Applied, OpError>>, sqlx::Error> {
                let mut tx = pool.begin_with(<Db as $crate::store::sql::SqlBackend>::BEGIN).await?;
                let mut out = Vec::with_capacity(ops.len());
                let mut rest = ops;
                while let Some(op) = rest.first() {
                    // Consecutive sends, and consecutive receipts, go together through their
                    // set-based paths.
                    let sends: Vec<SendRef<'_>> = rest.iter().map_while(SendRef::of).collect();
                    let marks: Vec<MarkRef<'_>> = rest.iter().map_while(MarkRef::of).collect();
                    let taken = if !sends.is_empty() {
                        out.extend(SendSql::send_run(&mut tx, sealer, &sends).await?);
                        sends.len()
                    } else if !marks.is_empty() {
                        out.extend(MarkSql::mark_run(&mut tx, &marks).await?);
                        marks.len()
                    } else {
                        out.push(apply_one(&mut tx, sealer, op).await?);
                        1
                    };
                    rest = &rest[taken..];
                }
                // The batch's audit entries, appended once and last (the lock-order rule).
                let audit: Vec<$crate::store::NewAudit> = out.iter().flatten().flat_map(Applied::audit_entries).collect();
                $crate::store::audit_sql::AuditSql::append(&mut tx, &audit).await?;
                tx.commit().await?;
                Ok(out)
            }

            $crate::store::conv_tx_sql::conv_tx_helpers!();
            $crate::store::conv_life_sql::conv_lifecycle_ops!();
            $crate::store::conv_admin_sql::conv_admin_ops!();
            $crate::store::reports_sql::report_ops!();

            type OpOut = Result<Result<Applied, OpError>, sqlx::Error>;

            async fn create(tx: &mut Tx, kind: ConvKind, title: &str, description: &str, creator: UserId, members: &[UserId], now: i64) -> OpOut {
                let mut others: Vec<UserId> = members.iter().copied().filter(|u| *u != creator).collect();
                others.sort_unstable();
                others.dedup();
                let all_live = live_users(tx, &others).await?;
                let blocked = blocked_by_any(tx, &others, creator).await?;
                allowed!(rules::create(kind, others.len(), all_live, blocked));
                let direct_key = match (kind, &others[..]) {
                    (ConvKind::Direct, &[peer]) => {
                        let key = format!("{}:{}", creator.min(peer), creator.max(peer));
                        let existing = sqlx::query("SELECT id FROM conversations WHERE direct_key = $1")
                            .bind(&key)
                            .fetch_optional(&mut **tx)
                            .await?;
                        if let Some(r) = existing {
                            return Ok(Ok(Applied { result: Some(OpResult::Conversation(r.try_get(0)?)), ..Default::default() }));
                        }
                        Some(key)
                    }
                    _ => None,
                };
                if !rules::starts_with_members(kind) {
                    others.clear();
                }
                let r = sqlx::query("INSERT INTO conversations (kind, title, title_key, description, direct_key, created_by, created_at_ms, last_activity_ms) \
                                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id")
                    .bind(kind as i32)
                    .bind(title)
                    .bind(confab_protocol::text::fold(title))
                    .bind(description)
                    .bind(&direct_key)
                    .bind(creator)
                    .bind(now)
                    .fetch_one(&mut **tx)
                    .await?;
                let conv: ConvId = r.try_get(0)?;
                add_member(tx, conv, creator, rules::creator_role(kind), now).await?;
                for u in &others {
                    add_member(tx, conv, *u, Role::Member, now).await?;
                }
                let mut events = vec![append(tx, conv, creator, now, LogBody::Created { kind, title: title.to_string() }).await?];
                if !others.is_empty() {
                    events.push(append(tx, conv, creator, now, LogBody::MembersAdded(others.clone())).await?);
                }
                let mut audience = vec![creator];
                audience.extend(&others);
                let mut user_updates = Vec::new();
                for u in &audience {
                    user_updates.push(user_update(tx, *u, true, conv, now).await?);
                }
                let mut notifications = Vec::new();
                if rules::notifies_added_at_creation(kind) {
                    for u in &others {
                        notifications.push(notify(tx, *u, NotificationKind::AddedToConversation, conv, None, creator, None, now).await?);
                    }
                }
                Ok(Ok(Applied { result: Some(OpResult::Conversation(conv)), events, audience, user_updates, notifications, ..Default::default() }))
            }

            async fn apply_one(tx: &mut Tx, sealer: &$crate::store::keys::Sealer, op: &WriteOp) -> OpOut {
                match op {
                    WriteOp::Create { kind, title, description, creator, members, now_ms } => {
                        create(tx, *kind, title, description, *creator, members, *now_ms).await
                    }
                    WriteOp::Join { conversation_id: conv, user, now_ms } => join_channel(tx, *conv, *user, *now_ms).await,
                    WriteOp::Leave { conversation_id: conv, user, now_ms } => {
                        let role = allowed!(rules::leave(conv_facts(tx, *conv, *user).await?));
                        Ok(Ok(leave(tx, *conv, *user, role, *now_ms).await?))
                    }
                    WriteOp::AddMembers { conversation_id: conv, actor, users, now_ms } => {
                        let facts = conv_facts(tx, *conv, *actor).await?;
                        let mut users = users.clone();
                        users.sort_unstable();
                        users.dedup();
                        let all_live = live_users(tx, &users).await?;
                        let blocked = blocked_by_any(tx, &users, *actor).await?;
                        allowed!(rules::add_members(facts, all_live, blocked));
                        let current = member_ids(tx, *conv).await?;
                        let new: Vec<UserId> = users.into_iter().filter(|u| !current.contains(u)).collect();
                        if new.is_empty() {
                            let r = sqlx::query("SELECT head_seq FROM conversations WHERE id = $1").bind(*conv).fetch_one(&mut **tx).await?;
                            return Ok(Ok(Applied { result: Some(OpResult::Seq(r.try_get(0)?)), ..Default::default() }));
                        }
                        for u in &new {
                            add_member(tx, *conv, *u, Role::Member, *now_ms).await?;
                        }
                        let ev = append(tx, *conv, *actor, *now_ms, LogBody::MembersAdded(new.clone())).await?;
                        let mut user_updates = Vec::new();
                        let mut notifications = Vec::new();
                        for u in &new {
                            user_updates.push(user_update(tx, *u, true, *conv, *now_ms).await?);
                            notifications.push(notify(tx, *u, NotificationKind::AddedToConversation, *conv, None, *actor, None, *now_ms).await?);
                        }
                        let mut audience = current;
                        audience.extend(new);
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, user_updates, notifications, ..Default::default() }))
                    }
                    WriteOp::RemoveMember { conversation_id: conv, actor, user, now_ms } => {
                        let facts = conv_facts(tx, *conv, *actor).await?;
                        let target = role_of(tx, *conv, *user).await?;
                        allowed!(rules::remove_member(facts, user == actor, target));
                        let mut applied = expel(tx, *conv, *actor, *user, *now_ms).await?;
                        let before = serde_json::json!({ "role": target.map(Role::name) }).to_string();
                        let entry = member_entry($crate::store::AuditAction::MemberRemoved, *actor, *user, *conv, *now_ms);
                        applied.audit.push($crate::store::NewAudit { before, ..entry });
                        Ok(Ok(applied))
                    }
                    WriteOp::ReportMessage { conversation_id, message_id, reporter, reason, note, now_ms } => {
                        report_message(tx, *conversation_id, *message_id, *reporter, *reason, note, *now_ms).await
                    }
                    WriteOp::ResolveReport { .. } => resolve_report(tx, op).await,
                    WriteOp::CallEnded { conversation_id: conv, caller, record, missed_by, now_ms } => {
                        // Membership was checked when the call started; the caller may have left
                        // since (which is what ended the call), and the record still belongs here.
                        allowed!(rules::call_ended(conv_facts(tx, *conv, *caller).await?));
                        let ev = append(tx, *conv, *caller, *now_ms, LogBody::CallEnded(record.clone())).await?;
                        let audience = member_ids(tx, *conv).await?;
                        let mut notifications = Vec::new();
                        for u in missed_by.iter().filter(|u| audience.contains(u)) {
                            notifications.push(notify(tx, *u, NotificationKind::MissedCall, *conv, None, *caller, None, *now_ms).await?);
                        }
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, notifications, ..Default::default() }))
                    }
                    WriteOp::Send { .. } => {
                        let run: Vec<SendRef<'_>> = SendRef::of(op).into_iter().collect();
                        Ok(SendSql::send_run(tx, sealer, &run).await?.pop().unwrap_or(Err(OpError::FailedPrecondition("the send was not applied"))))
                    }
                    WriteOp::Edit { conversation_id: conv, actor, message_id, text, now_ms } => {
                        let facts = conv_facts(tx, *conv, *actor).await?;
                        allowed!(rules::edit(facts, message_facts(tx, *conv, *actor, *message_id).await?));
                        let stored = if sealer.is_on() {
                            let seq: i64 = sqlx::query("SELECT seq FROM messages WHERE id = $1").bind(*message_id).fetch_one(&mut **tx).await?.try_get(0)?;
                            let place = $crate::crypto::Place::Message { conv: conv.0, seq };
                            sealer
                                .seal_text($crate::store::keys::Scope::Conversation(*conv), *now_ms, &place, text)
                                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?
                        } else {
                            text.clone()
                        };
                        sqlx::query("UPDATE messages SET text = $1, edited_at_ms = $2 WHERE id = $3")
                            .bind(stored)
                            .bind(*now_ms)
                            .bind(*message_id)
                            .execute(&mut **tx)
                            .await?;
                        let ev = append_with(tx, sealer, *conv, *actor, *now_ms, LogBody::Edited { message_id: *message_id, text: text.clone() }).await?;
                        let audience = member_ids(tx, *conv).await?;
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, ..Default::default() }))
                    }
                    WriteOp::Delete { conversation_id: conv, actor, message_id, now_ms } => {
                        delete_message(tx, *conv, *actor, *message_id, *now_ms).await
                    }
                    WriteOp::DeleteAccount { user, now_ms, by } => delete_account(tx, *user, by.as_ref(), *now_ms).await,
                    WriteOp::AdminDeleteMessage { conversation_id: conv, message_id, by, now_ms } => {
                        admin_delete_message(tx, *conv, *message_id, by, *now_ms).await
                    }
                    WriteOp::AdminDeleteConversation { conversation_id: conv, by, now_ms } => {
                        admin_delete_conversation(tx, *conv, by, *now_ms).await
                    }
                    WriteOp::EraseMessages { user, after, limit, by, now_ms } => {
                        erase_messages(tx, *user, after.as_deref(), *limit, by, *now_ms).await
                    }
                    WriteOp::MarkRead { .. } | WriteOp::Ack { .. } => {
                        let run: Vec<MarkRef<'_>> = MarkRef::of(op).into_iter().collect();
                        Ok(MarkSql::mark_run(tx, &run).await?.pop().unwrap_or(Err(OpError::FailedPrecondition("the receipt was not applied"))))
                    }
                    WriteOp::Update { conversation_id: conv, actor, title, description, photo_ref, announcement_only: ann, now_ms } => {
                        allowed!(rules::update_settings(conv_facts(tx, *conv, *actor).await?));
                        let cur = sqlx::query("SELECT title, description, photo_ref, announcement_only FROM conversations WHERE id = $1")
                            .bind(*conv)
                            .fetch_one(&mut **tx)
                            .await?;
                        let st = Settings {
                            title: title.clone().unwrap_or(cur.try_get(0)?),
                            description: description.clone().unwrap_or(cur.try_get(1)?),
                            photo_ref: photo_ref.clone().unwrap_or(cur.try_get(2)?),
                            announcement_only: ann.unwrap_or(cur.try_get::<i32, _>(3)? != 0),
                        };
                        sqlx::query("UPDATE conversations SET title = $1, title_key = $2, description = $3, photo_ref = $4, announcement_only = $5 WHERE id = $6")
                            .bind(&st.title)
                            .bind(confab_protocol::text::fold(&st.title))
                            .bind(&st.description)
                            .bind(&st.photo_ref)
                            .bind(i32::from(st.announcement_only))
                            .bind(*conv)
                            .execute(&mut **tx)
                            .await?;
                        let ev = append(tx, *conv, *actor, *now_ms, LogBody::Updated(st)).await?;
                        let audience = member_ids(tx, *conv).await?;
                        Ok(Ok(Applied { result: Some(OpResult::Conversation(*conv)), events: vec![ev], audience, ..Default::default() }))
                    }
                    WriteOp::SetRole { conversation_id: conv, actor, user, role: new_role, now_ms } => {
                        let facts = conv_facts(tx, *conv, *actor).await?;
                        let target = role_of(tx, *conv, *user).await?;
                        if allowed!(rules::set_role(facts, target, *new_role)) == Effect::Unchanged {
                            return Ok(Ok(Applied { result: Some(OpResult::Seq(head(tx, *conv).await?)), ..Default::default() }));
                        }
                        set_role(tx, *conv, *user, *new_role).await?;
                        let ev = append(tx, *conv, *actor, *now_ms, LogBody::RoleChanged { user: *user, role: *new_role }).await?;
                        let audience = member_ids(tx, *conv).await?;
                        let n = notify(tx, *user, NotificationKind::RoleChanged, *conv, None, *actor, Some(*new_role), *now_ms).await?;
                        let entry = $crate::store::NewAudit {
                            before: serde_json::json!({ "role": target.map(Role::name) }).to_string(),
                            after: serde_json::json!({ "role": new_role.name() }).to_string(),
                            ..member_entry($crate::store::AuditAction::RoleChanged, *actor, *user, *conv, *now_ms)
                        };
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, notifications: vec![n], audit: vec![entry], ..Default::default() }))
                    }
                    WriteOp::TransferOwnership { conversation_id: conv, actor, user, now_ms } => {
                        let facts = conv_facts(tx, *conv, *actor).await?;
                        let target = role_of(tx, *conv, *user).await?;
                        allowed!(rules::transfer_ownership(facts, user == actor, target.is_some()));
                        set_role(tx, *conv, *user, Role::Owner).await?;
                        set_role(tx, *conv, *actor, rules::FORMER_OWNER_ROLE).await?;
                        let ev = append(tx, *conv, *actor, *now_ms, LogBody::OwnershipTransferred { from: *actor, to: *user }).await?;
                        let audience = member_ids(tx, *conv).await?;
                        let entry = ownership_entry(*actor, *actor, *user, *conv, *now_ms);
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, audit: vec![entry], ..Default::default() }))
                    }
                    WriteOp::Pin { conversation_id: conv, actor, message_id, pin, now_ms } => {
                        let facts = conv_facts(tx, *conv, *actor).await?;
                        allowed!(rules::pin(facts, message_facts(tx, *conv, *actor, *message_id).await?));
                        let changed = if *pin {
                            // pinned_at_ms only orders ListPins (most recently pinned first): keep it strictly
                            // increasing per conversation so pins within one millisecond keep their order.
                            sqlx::query("INSERT INTO pins (conversation_id, message_id, pinned_by, pinned_at_ms) VALUES ($1, $2, $3, \
                                         (SELECT CASE WHEN MAX(pinned_at_ms) >= $4 THEN MAX(pinned_at_ms) + 1 ELSE $4 END FROM pins WHERE conversation_id = $1)) \
                                         ON CONFLICT (conversation_id, message_id) DO NOTHING")
                                .bind(*conv)
                                .bind(*message_id)
                                .bind(*actor)
                                .bind(*now_ms)
                                .execute(&mut **tx)
                                .await?
                        } else {
                            sqlx::query("DELETE FROM pins WHERE conversation_id = $1 AND message_id = $2")
                                .bind(*conv)
                                .bind(*message_id)
                                .execute(&mut **tx)
                                .await?
                        };
                        if changed.rows_affected() == 0 {
                            return Ok(Ok(Applied { result: Some(OpResult::Seq(head(tx, *conv).await?)), ..Default::default() }));
                        }
                        let body = if *pin { LogBody::Pinned { message_id: *message_id } } else { LogBody::Unpinned { message_id: *message_id } };
                        let ev = append(tx, *conv, *actor, *now_ms, body).await?;
                        let audience = member_ids(tx, *conv).await?;
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, ..Default::default() }))
                    }
                    WriteOp::React { conversation_id: conv, actor, message_id, emoji, add, now_ms } => {
                        let facts = conv_facts(tx, *conv, *actor).await?;
                        allowed!(rules::react(facts, message_facts(tx, *conv, *actor, *message_id).await?));
                        let changed = if *add {
                            sqlx::query("INSERT INTO reactions (message_id, user_id, emoji, created_at_ms) VALUES ($1, $2, $3, $4) \
                                         ON CONFLICT (message_id, user_id, emoji) DO NOTHING")
                                .bind(*message_id)
                                .bind(*actor)
                                .bind(emoji)
                                .bind(*now_ms)
                                .execute(&mut **tx)
                                .await?
                        } else {
                            sqlx::query("DELETE FROM reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3")
                                .bind(*message_id)
                                .bind(*actor)
                                .bind(emoji)
                                .execute(&mut **tx)
                                .await?
                        };
                        if changed.rows_affected() == 0 {
                            return Ok(Ok(Applied { result: Some(OpResult::Seq(head(tx, *conv).await?)), ..Default::default() }));
                        }
                        let body = if *add {
                            LogBody::ReactionAdded { message_id: *message_id, emoji: emoji.clone() }
                        } else {
                            LogBody::ReactionRemoved { message_id: *message_id, emoji: emoji.clone() }
                        };
                        let ev = append(tx, *conv, *actor, *now_ms, body).await?;
                        let audience = member_ids(tx, *conv).await?;
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, ..Default::default() }))
                    }
                }
            }

            /// §12.5: `actor` removes `user` from `conv`, once the caller decided they may (RemoveMember,
            /// a report's resolution).
            async fn expel(tx: &mut Tx, conv: ConvId, actor: UserId, user: UserId, now: i64) -> Result<Applied, sqlx::Error> {
                let audience = member_ids(tx, conv).await?;
                drop_member(tx, conv, user).await?;
                let ev = append(tx, conv, actor, now, LogBody::Removed(user)).await?;
                let uu = user_update(tx, user, false, conv, now).await?;
                retire_notifications(tx, user, conv).await?;
                Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, user_updates: vec![uu], ..Default::default() })
            }

            /// The message `message_id` of `conv` as `actor` sees it (`None`: not in `conv`).
            async fn message_facts(tx: &mut Tx, conv: ConvId, actor: UserId, message_id: MessageId) -> Result<Option<MessageFacts>, sqlx::Error> {
                let r = sqlx::query_as::<_, $crate::store::rows::MessageFactsRow>(
                    "SELECT sender_id, deleted_at_ms FROM messages WHERE id = $1 AND conversation_id = $2",
                )
                .bind(message_id)
                .bind(conv)
                .fetch_optional(&mut **tx)
                .await?;
                Ok(r.map(|r| r.facts(actor)))
            }
        }
    };
}

pub(super) use impl_conv_writes;
