//! Lifecycle consequences on the write path (`conv_lifecycle_ops!`, docs/protocol.md §21),
//! expanded inside each backend's `conv_write` module: what deleting a message, leaving, joining an
//! ownerless channel and deleting an account do to pins, reactions, notifications,
//! ownership and membership, each inside the batch's transaction.

macro_rules! conv_lifecycle_ops {
    () => {
            /// §21: a member who can no longer open `conv` has nothing unread left from it.
            async fn retire_notifications(tx: &mut Tx, user: UserId, conv: ConvId) -> Result<(), sqlx::Error> {
                sqlx::query("UPDATE notifications SET read_flag = 1 WHERE user_id = $1 AND conversation_id = $2 AND read_flag = 0")
                    .bind(user)
                    .bind(conv)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            /// Whether any of `users` blocked `who` (one statement for the whole list).
            async fn blocked_by_any(tx: &mut Tx, users: &[UserId], who: UserId) -> Result<bool, sqlx::Error> {
                if users.is_empty() {
                    return Ok(false);
                }
                let mut q = sqlx::QueryBuilder::<Db>::new("SELECT 1 FROM blocks WHERE blocked_id = ");
                q.push_bind(who);
                q.push(" AND user_id IN (");
                let mut list = q.separated(", ");
                for u in users {
                    list.push_bind(*u);
                }
                q.push(") LIMIT 1");
                Ok(q.build().fetch_optional(&mut **tx).await?.is_some())
            }

            /// §12.4: `user` (of `role`) leaves a group or channel. An owner first passes ownership to
            /// the remaining live member with the highest role, then the longest-standing one.
            async fn leave(tx: &mut Tx, conv: ConvId, user: UserId, role: Role, now: i64) -> Result<Applied, sqlx::Error> {
                let audience = member_ids(tx, conv).await?;
                let mut events = Vec::new();
                let mut audit = Vec::new();
                if rules::passes_ownership(role) {
                    let next = sqlx::query("SELECT m.user_id FROM members m JOIN users u ON u.id = m.user_id \
                                            WHERE m.conversation_id = $1 AND m.user_id <> $2 AND u.deleted_at_ms IS NULL \
                                            ORDER BY m.role, m.joined_at_ms, m.user_id LIMIT 1")
                        .bind(conv)
                        .bind(user)
                        .fetch_optional(&mut **tx)
                        .await?;
                    if let Some(next) = next {
                        let to: UserId = next.try_get(0)?;
                        set_role(tx, conv, to, Role::Owner).await?;
                        events.push(append(tx, conv, user, now, LogBody::OwnershipTransferred { from: user, to }).await?);
                        audit.push($crate::store::NewAudit { target: "automatic".into(), ..ownership_entry(user, user, to, conv, now) });
                    }
                }
                drop_member(tx, conv, user).await?;
                events.push(append(tx, conv, user, now, LogBody::Left(user)).await?);
                let uu = user_update(tx, user, false, conv, now).await?;
                retire_notifications(tx, user, conv).await?;
                Ok(Applied { result: Some(OpResult::Done), events, audience, user_updates: vec![uu], audit, ..Default::default() })
            }

            /// §12.4: joins a channel; joining one without an owner makes the joiner its OWNER
            /// (`MemberJoined`, then `RoleChanged` to OWNER by the joiner), audited as a
            /// `role_changed` with target `automatic` (§28.1).
            async fn join_channel(tx: &mut Tx, conv: ConvId, user: UserId, now: i64) -> OpOut {
                if allowed!(rules::join(conv_facts(tx, conv, user).await?)) == Effect::Unchanged {
                    return Ok(Ok(Applied { result: Some(OpResult::Conversation(conv)), ..Default::default() }));
                }
                let owned = sqlx::query("SELECT 1 FROM members WHERE conversation_id = $1 AND role = $2 LIMIT 1")
                    .bind(conv)
                    .bind(i32::from(Role::Owner))
                    .fetch_optional(&mut **tx)
                    .await?
                    .is_some();
                let role = rules::joiner_role(owned);
                add_member(tx, conv, user, role, now).await?;
                let mut events = vec![append(tx, conv, user, now, LogBody::Joined(user)).await?];
                let mut audit = Vec::new();
                if !owned {
                    events.push(append(tx, conv, user, now, LogBody::RoleChanged { user, role }).await?);
                    audit.push($crate::store::NewAudit {
                        target: "automatic".into(),
                        before: serde_json::json!({ "role": None::<&str> }).to_string(),
                        after: serde_json::json!({ "role": role.name() }).to_string(),
                        ..member_entry($crate::store::AuditAction::RoleChanged, user, user, conv, now)
                    });
                }
                let uu = user_update(tx, user, true, conv, now).await?;
                let audience = member_ids(tx, conv).await?;
                Ok(Ok(Applied { result: Some(OpResult::Conversation(conv)), events, audience, user_updates: vec![uu], audit, ..Default::default() }))
            }

            /// §13.3, §21: the message loses its text, reactions and mention notifications, and
            /// leaves the pin list (`MessageUnpinned` by the deleter after `MessageDeleted`).
            async fn delete_message(tx: &mut Tx, conv: ConvId, actor: UserId, message_id: MessageId, now: i64) -> OpOut {
                let facts = conv_facts(tx, conv, actor).await?;
                let message = message_facts(tx, conv, actor, message_id).await?;
                allowed!(rules::delete(facts, message));
                let mut applied = erase_message(tx, conv, actor, message_id, now).await?;
                if rules::admin::audits_deletion(message) {
                    applied.audit.push(message_deleted_entry(tx, actor, "", conv, message_id, now).await?);
                }
                Ok(Ok(applied))
            }

            /// What deleting a live message of `conv` does (§13.3, §21), by `actor`, once the caller
            /// decided they may (a moderator's deletion, a report's resolution).
            async fn erase_message(tx: &mut Tx, conv: ConvId, actor: UserId, message_id: MessageId, now: i64) -> Result<Applied, sqlx::Error> {
                sqlx::query("UPDATE messages SET text = '', mentions = '', deleted_at_ms = $1 WHERE id = $2")
                    .bind(now)
                    .bind(message_id)
                    .execute(&mut **tx)
                    .await?;
                // The log keeps the entries; their text goes with the message (reaction entries keep
                // their emoji: a client replaying them drops them at `MessageDeleted`).
                sqlx::query("UPDATE conversation_events SET text = '' WHERE conversation_id = $1 AND message_id = $2 AND kind IN ($3, $4)")
                    .bind(conv)
                    .bind(message_id)
                    .bind(LOG_POSTED)
                    .bind(LOG_EDITED)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("DELETE FROM reactions WHERE message_id = $1").bind(message_id).execute(&mut **tx).await?;
                sqlx::query("DELETE FROM notifications WHERE message_id = $1 AND kind = $2")
                    .bind(message_id)
                    .bind(i32::from(NotificationKind::Mentioned))
                    .execute(&mut **tx)
                    .await?;
                let deleted = append(tx, conv, actor, now, LogBody::Deleted { message_id }).await?;
                let seq = deleted.seq;
                let mut events = vec![deleted];
                let unpinned = sqlx::query("DELETE FROM pins WHERE conversation_id = $1 AND message_id = $2")
                    .bind(conv)
                    .bind(message_id)
                    .execute(&mut **tx)
                    .await?;
                if unpinned.rows_affected() > 0 {
                    events.push(append(tx, conv, actor, now, LogBody::Unpinned { message_id }).await?);
                }
                let audience = member_ids(tx, conv).await?;
                Ok(Applied { result: Some(OpResult::Seq(seq)), events, audience, ..Default::default() })
            }

            /// §11.11, §21: the tombstone, every session revoked, codes and refresh tokens dropped,
            /// the inbox emptied, and every group and channel left (DIRECT conversations are kept, so
            /// the peer still sees the deleted user). Each conversation left is one `cascade` entry.
            /// `by`: a server administrator's deletion (§26.4). Audited (`account_deleted`) when the
            /// tombstone is new, so applying it again records nothing.
            async fn delete_account(tx: &mut Tx, user: UserId, by: Option<&AdminOrigin>, now: i64) -> OpOut {
                let account = account_facts(tx, user).await?;
                match by {
                    Some(by) => {
                        let is_admin = server_admin(tx, by.admin).await?;
                        allowed!(rules::admin::delete_user(is_admin, account, by.admin == user));
                    }
                    None => allowed!(rules::delete_account(account.is_some())),
                }
                let tombstone = sqlx::query(
                    "UPDATE users SET username = $1, username_key = $1, display_name = '', display_name_key = '', email = NULL, email_key = NULL, \
                     phone = NULL, password_hash = NULL, status_text = '', avatar_ref = '', deleted_at_ms = $2 \
                     WHERE id = $3 AND deleted_at_ms IS NULL",
                )
                .bind(format!("deleted-{user}"))
                .bind(now)
                .bind(user)
                .execute(&mut **tx)
                .await?;
                let mut audit = Vec::new();
                if tombstone.rows_affected() > 0 {
                    let entry = match by {
                        Some(by) => admin_entry(by, $crate::store::AuditAction::AccountDeleted, now),
                        None => $crate::store::NewAudit { actor: Some(user), ..$crate::store::NewAudit::new($crate::store::AuditAction::AccountDeleted, now) },
                    };
                    audit.push($crate::store::NewAudit { target_user: Some(user), ..entry });
                }
                let revoked_sessions = $crate::store::sessions_sql::SessionSql::revoke_all(
                    tx,
                    user,
                    None,
                    $crate::store::types::RevokeReason::AccountDeleted,
                    now,
                )
                .await?;
                sqlx::query("UPDATE sessions SET device_name = '', client_name = '' WHERE user_id = $1")
                    .bind(user)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("DELETE FROM auth_codes WHERE user_id = $1").bind(user).execute(&mut **tx).await?;
                sqlx::query("DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE user_id = $1)")
                    .bind(user)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("DELETE FROM notifications WHERE user_id = $1").bind(user).execute(&mut **tx).await?;
                let memberships = sqlx::query("SELECT m.conversation_id, m.role FROM members m JOIN conversations c ON c.id = m.conversation_id \
                                               WHERE m.user_id = $1 AND c.kind <> $2 ORDER BY m.conversation_id")
                    .bind(user)
                    .bind(i32::from(ConvKind::Direct))
                    .fetch_all(&mut **tx)
                    .await?;
                let mut cascade = Vec::with_capacity(memberships.len());
                for r in &memberships {
                    cascade.push(leave(tx, r.try_get(0)?, user, r.try_get(1)?, now).await?);
                }
                Ok(Ok(Applied { result: Some(OpResult::Done), revoked_sessions, cascade, audit, ..Default::default() }))
            }
    };
}

pub(super) use conv_lifecycle_ops;
