//! A server administrator's deletions on the write path (`conv_admin_ops!`, docs/protocol.md
//! §26.4, §26.6), expanded inside each backend's `conv_write` module: any message, a whole
//! conversation, the messages of a deleted account, each in the batch's transaction with its
//! audit entry. The administrator flag is read again in the transaction (`rules::admin`).

macro_rules! conv_admin_ops {
    () => {
            /// Whether `user` is a live server administrator, as the transaction reads it.
            async fn server_admin(tx: &mut Tx, user: UserId) -> Result<bool, sqlx::Error> {
                let r = sqlx::query("SELECT server_admin FROM users WHERE id = $1 AND deleted_at_ms IS NULL")
                    .bind(user)
                    .fetch_optional(&mut **tx)
                    .await?;
                Ok(match r {
                    Some(r) => r.try_get::<i32, _>(0)? != 0,
                    None => false,
                })
            }

            /// Whether `conv` exists and no administrator deleted it.
            async fn conv_live(tx: &mut Tx, conv: ConvId) -> Result<bool, sqlx::Error> {
                let r = sqlx::query("SELECT 1 FROM conversations WHERE id = $1 AND deleted_at_ms IS NULL")
                    .bind(conv)
                    .fetch_optional(&mut **tx)
                    .await?;
                Ok(r.is_some())
            }

            /// The account `user` as an administrator's write finds it (`rules::admin::AccountFacts`).
            async fn account_facts(tx: &mut Tx, user: UserId) -> Result<rules::admin::AccountFacts, sqlx::Error> {
                let r = sqlx::query("SELECT deleted_at_ms FROM users WHERE id = $1").bind(user).fetch_optional(&mut **tx).await?;
                r.map(|r| Ok(r.try_get::<Option<i64>, _>(0)?.is_some())).transpose()
            }

            /// The sender of message `message_id`.
            async fn sender_of(tx: &mut Tx, message_id: MessageId) -> Result<UserId, sqlx::Error> {
                sqlx::query("SELECT sender_id FROM messages WHERE id = $1").bind(message_id).fetch_one(&mut **tx).await?.try_get(0)
            }

            /// An audit entry of `action` by the administrator of `by`, at `now`.
            fn admin_entry(by: &AdminOrigin, action: $crate::store::AuditAction, now: i64) -> $crate::store::NewAudit {
                $crate::store::NewAudit {
                    actor: Some(by.admin),
                    client_addr: by.client_addr.clone(),
                    ..$crate::store::NewAudit::new(action, now)
                }
            }

            /// An audit entry of `action` by the member `actor` on `user` in `conv` (§28.1). A
            /// member's write carries no client address: it is left empty.
            fn member_entry(action: $crate::store::AuditAction, actor: UserId, user: UserId, conv: ConvId, now: i64) -> $crate::store::NewAudit {
                $crate::store::NewAudit {
                    actor: Some(actor),
                    target_user: Some(user),
                    target_conversation: Some(conv),
                    ..$crate::store::NewAudit::new(action, now)
                }
            }

            /// The `ownership_transferred` entry (§28.1): `conv`'s ownership passed from `from` to
            /// `to` by `actor` (`from` itself, transferring or leaving; `target` says `automatic`
            /// when leaving passed it).
            fn ownership_entry(actor: UserId, from: UserId, to: UserId, conv: ConvId, now: i64) -> $crate::store::NewAudit {
                $crate::store::NewAudit {
                    before: serde_json::json!({ "owner": from.0 }).to_string(),
                    after: serde_json::json!({ "owner": to.0 }).to_string(),
                    ..member_entry($crate::store::AuditAction::OwnershipTransferred, actor, to, conv, now)
                }
            }

            /// The `message_deleted` entry (§28.1) of `actor` deleting `message_id` of `conv`.
            async fn message_deleted_entry(
                tx: &mut Tx,
                actor: UserId,
                client_addr: &str,
                conv: ConvId,
                message_id: MessageId,
                now: i64,
            ) -> Result<$crate::store::NewAudit, sqlx::Error> {
                Ok($crate::store::NewAudit {
                    actor: Some(actor),
                    target_user: Some(sender_of(tx, message_id).await?),
                    target_conversation: Some(conv),
                    target_message: Some(message_id),
                    client_addr: client_addr.to_string(),
                    ..$crate::store::NewAudit::new($crate::store::AuditAction::MessageDeleted, now)
                })
            }

            /// §26.6 AdminDeleteMessage: as a moderator's deletion, by the administrator (the log
            /// entry's actor), who need not be a member. Seq 0 when it was deleted already.
            async fn admin_delete_message(tx: &mut Tx, conv: ConvId, message_id: MessageId, by: &AdminOrigin, now: i64) -> OpOut {
                let is_admin = server_admin(tx, by.admin).await?;
                let live = conv_live(tx, conv).await?;
                let message = message_facts(tx, conv, by.admin, message_id).await?;
                if allowed!(rules::admin::delete_message(is_admin, live, message)) == Effect::Unchanged {
                    return Ok(Ok(Applied { result: Some(OpResult::Seq(0)), ..Default::default() }));
                }
                let mut applied = erase_message(tx, conv, by.admin, message_id, now).await?;
                applied.audit.push(message_deleted_entry(tx, by.admin, &by.client_addr, conv, message_id, now).await?);
                Ok(Ok(applied))
            }

            /// §26.6 AdminDeleteConversation: every message deleted (one statement each for the
            /// messages, their log text, reactions, pins and mention notifications, and their
            /// search documents), every member removed (each gets its own `MemberRemoved`, by the
            /// administrator, and a user-log `Removed` entry: one cascade entry per member, so a
            /// member receives its own removal only), notifications retired, and the conversation
            /// marked deleted: hidden from every read from then on.
            async fn admin_delete_conversation(tx: &mut Tx, conv: ConvId, by: &AdminOrigin, now: i64) -> OpOut {
                let is_admin = server_admin(tx, by.admin).await?;
                // The conversation's row first (locked on PostgreSQL until the commit), as every
                // write into the conversation takes it when it moves the head: one that passed
                // its checks before has committed when the statements below read on, and one
                // after waits for this commit and finds the conversation gone (`next_seq`).
                sqlx::query("UPDATE conversations SET deleted_at_ms = deleted_at_ms WHERE id = $1")
                    .bind(conv)
                    .execute(&mut **tx)
                    .await?;
                let live = conv_live(tx, conv).await?;
                allowed!(rules::admin::delete_conversation(is_admin, live));
                let members = member_ids(tx, conv).await?;
                let messages = sqlx::query("UPDATE messages SET text = '', mentions = '', deleted_at_ms = $1 \
                                            WHERE conversation_id = $2 AND deleted_at_ms IS NULL")
                    .bind(now)
                    .bind(conv)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                sqlx::query("UPDATE conversation_events SET text = '' WHERE conversation_id = $1 AND kind IN ($2, $3)")
                    .bind(conv)
                    .bind(LOG_POSTED)
                    .bind(LOG_EDITED)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("DELETE FROM reactions WHERE message_id IN (SELECT id FROM messages WHERE conversation_id = $1)")
                    .bind(conv)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("DELETE FROM pins WHERE conversation_id = $1").bind(conv).execute(&mut **tx).await?;
                sqlx::query("DELETE FROM notifications WHERE conversation_id = $1 AND kind = $2")
                    .bind(conv)
                    .bind(i32::from(NotificationKind::Mentioned))
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("UPDATE notifications SET read_flag = 1 WHERE conversation_id = $1 AND read_flag = 0")
                    .bind(conv)
                    .execute(&mut **tx)
                    .await?;
                forget_search_docs(tx, conv).await?;
                // The members, all at once (`drop_member` for each, in three statements).
                sqlx::query("UPDATE membership_spans SET until_seq = (SELECT head_seq FROM conversations WHERE id = $1) \
                             WHERE conversation_id = $1 AND until_seq IS NULL")
                    .bind(conv)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("DELETE FROM members WHERE conversation_id = $1").bind(conv).execute(&mut **tx).await?;
                let mut cascade = Vec::with_capacity(members.len());
                for u in &members {
                    let ev = append(tx, conv, by.admin, now, LogBody::Removed(*u)).await?;
                    let uu = user_update(tx, *u, false, conv, now).await?;
                    cascade.push(Applied { events: vec![ev], audience: vec![*u], user_updates: vec![uu], ..Default::default() });
                }
                // No longer the DIRECT conversation of its pair (a new one can be made), nor a
                // channel photo anyone may read.
                sqlx::query("UPDATE conversations SET deleted_at_ms = $1, member_count = 0, direct_key = NULL, photo_ref = '' WHERE id = $2")
                    .bind(now)
                    .bind(conv)
                    .execute(&mut **tx)
                    .await?;
                let (members_removed, messages_deleted) = (members.len() as i64, messages as i64);
                let entry = $crate::store::NewAudit {
                    target_conversation: Some(conv),
                    after: serde_json::json!({ "members_removed": members_removed, "messages_deleted": messages_deleted }).to_string(),
                    ..admin_entry(by, $crate::store::AuditAction::ConversationDeleted, now)
                };
                Ok(Ok(Applied {
                    result: Some(OpResult::Cleared { members_removed, messages_deleted }),
                    cascade,
                    audit: vec![entry],
                    ..Default::default()
                }))
            }

            /// Drops the search documents of `conv`'s messages (§23), its indexer watermark held
            /// first: a pass that read the messages before this transaction has written its
            /// documents (and they go here), one that comes after reads them deleted.
            async fn forget_search_docs(tx: &mut Tx, conv: ConvId) -> Result<(), sqlx::Error> {
                sqlx::query("INSERT INTO search_progress (conversation_id, indexed_seq) VALUES ($1, 0) ON CONFLICT DO NOTHING")
                    .bind(conv)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("UPDATE search_progress SET indexed_seq = indexed_seq WHERE conversation_id = $1")
                    .bind(conv)
                    .execute(&mut **tx)
                    .await?;
                if <Db as $crate::store::sql::SqlBackend>::BACKEND == $crate::store::Backend::Sqlite {
                    for fts in ["search_trigrams", "search_blind"] {
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DELETE FROM {fts} WHERE rowid IN (SELECT message_id FROM search_docs WHERE conversation_id = $1)"
                        )))
                        .persistent(false)
                        .bind(conv)
                        .execute(&mut **tx)
                        .await?;
                    }
                }
                sqlx::query("DELETE FROM search_docs WHERE conversation_id = $1").bind(conv).execute(&mut **tx).await?;
                Ok(())
            }

            /// §26.4 erase, one step: up to `limit` live messages of the deleted account `user`
            /// after the idempotency key `after`, each deleted as AdminDeleteMessage deletes it.
            /// One cascade entry per conversation, its deletions in seq order.
            async fn erase_messages(tx: &mut Tx, user: UserId, after: Option<&str>, limit: u32, by: &AdminOrigin, now: i64) -> OpOut {
                let is_admin = server_admin(tx, by.admin).await?;
                allowed!(rules::admin::erase_messages(is_admin, account_facts(tx, user).await?));
                let rows = sqlx::query("SELECT m.id, m.conversation_id, m.seq, m.client_msg_id, \
                                        CASE WHEN c.deleted_at_ms IS NULL THEN 0 ELSE 1 END \
                                        FROM messages m JOIN conversations c ON c.id = m.conversation_id \
                                        WHERE m.sender_id = $1 AND m.deleted_at_ms IS NULL AND ($2 IS NULL OR m.client_msg_id > $2) \
                                        ORDER BY m.client_msg_id LIMIT $3")
                    .bind(user)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&mut **tx)
                    .await?;
                let mut found: Vec<(ConvId, i64, MessageId)> = Vec::with_capacity(rows.len());
                let mut last_key: Option<String> = None;
                let mut hidden = 0_i64;
                for r in &rows {
                    last_key = Some(r.try_get(3)?);
                    let (conv, message_id): (ConvId, MessageId) = (r.try_get(1)?, r.try_get(0)?);
                    if r.try_get::<i32, _>(4)? == 0 {
                        found.push((conv, r.try_get(2)?, message_id));
                        continue;
                    }
                    // A live message in a conversation an administrator deleted: one that raced
                    // the deletion before it took the conversation's row first (§26.6). Nobody
                    // can see that conversation, so nothing is appended; its text goes.
                    sqlx::query("UPDATE messages SET text = '', mentions = '', deleted_at_ms = $1 WHERE id = $2")
                        .bind(now)
                        .bind(message_id)
                        .execute(&mut **tx)
                        .await?;
                    sqlx::query("UPDATE conversation_events SET text = '' WHERE conversation_id = $1 AND message_id = $2")
                        .bind(conv)
                        .bind(message_id)
                        .execute(&mut **tx)
                        .await?;
                    hidden += 1;
                }
                found.sort_unstable();
                let mut cascade: Vec<Applied> = Vec::new();
                for (conv, _, message_id) in &found {
                    let a = erase_message(tx, *conv, by.admin, *message_id, now).await?;
                    match cascade.last_mut() {
                        Some(c) if c.events.first().is_some_and(|e| e.conversation_id == *conv) => {
                            c.events.extend(a.events);
                            c.audience = a.audience;
                        }
                        _ => cascade.push(Applied { events: a.events, audience: a.audience, ..Default::default() }),
                    }
                }
                let messages_deleted = found.len() as i64 + hidden;
                Ok(Ok(Applied { result: Some(OpResult::Erased { messages_deleted, last_key }), cascade, ..Default::default() }))
            }
    };
}

pub(super) use conv_admin_ops;
