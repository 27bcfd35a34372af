//! Transaction helpers of the write path (`conv_tx_helpers!`), expanded inside each backend's
//! `conv_write` module: the facts the rules read (`conv_facts`), sequence numbers, log and
//! user-log appends, membership, roles, receipts and notifications, one statement each.

macro_rules! conv_tx_helpers {
    () => {
            /// Moves `conv`'s head one step and returns it. Fails (`RowNotFound`) when an
            /// administrator deleted the conversation after the op read its facts (§26.6): on
            /// PostgreSQL this statement waited for that deletion's commit on the conversation's
            /// row. The writer then tries the batch once more, and the op finds the conversation
            /// gone while the others commit.
            async fn next_seq(tx: &mut Tx, conv: ConvId, now: i64) -> Result<i64, sqlx::Error> {
                let r = sqlx::query("UPDATE conversations SET head_seq = head_seq + 1, last_activity_ms = $1 WHERE id = $2 AND deleted_at_ms IS NULL RETURNING head_seq")
                    .bind(now)
                    .bind(conv)
                    .fetch_one(&mut **tx)
                    .await?;
                r.try_get(0)
            }

            async fn append(tx: &mut Tx, conv: ConvId, actor: UserId, now: i64, body: LogBody) -> Result<LogEvent, sqlx::Error> {
                append_with(tx, &$crate::store::keys::Sealer::off(), conv, actor, now, body).await
            }

            /// Appends a log entry whose text (a posted or edited message's) `sealer` seals; the
            /// returned entry holds the plaintext.
            async fn append_with(
                tx: &mut Tx,
                sealer: &$crate::store::keys::Sealer,
                conv: ConvId,
                actor: UserId,
                now: i64,
                body: LogBody,
            ) -> Result<LogEvent, sqlx::Error> {
                let seq = next_seq(tx, conv, now).await?;
                let seal = |text: &str| {
                    let place = $crate::crypto::Place::Log { conv: conv.0, seq };
                    sealer
                        .seal_text($crate::store::keys::Scope::Conversation(conv), now, &place, text)
                        .map_err(|e| sqlx::Error::Protocol(e.to_string()))
                };
                let (message_id, text, user_ids, data): (Option<MessageId>, Option<String>, Option<String>, Option<String>) = match &body {
                    LogBody::Created { kind, title } => (None, Some(title.clone()), Some(i32::from(*kind).to_string()), None),
                    LogBody::Posted(m) => (Some(m.id), Some(seal(&m.text)?), Some(join_ids(&m.mentions)), None),
                    LogBody::Edited { message_id, text } => (Some(*message_id), Some(seal(text)?), None, None),
                    LogBody::Deleted { message_id } | LogBody::Pinned { message_id } | LogBody::Unpinned { message_id } => {
                        (Some(*message_id), None, None, None)
                    }
                    LogBody::MembersAdded(u) => (None, None, Some(join_ids(u)), None),
                    LogBody::Joined(u) | LogBody::Left(u) | LogBody::Removed(u) => (None, None, Some(u.to_string()), None),
                    LogBody::Updated(st) => (None, None, None, serde_json::to_string(st).ok()),
                    LogBody::RoleChanged { user, role } => (None, None, Some(user.to_string()), Some(i32::from(*role).to_string())),
                    LogBody::OwnershipTransferred { from, to } => (None, None, Some(join_ids(&[*from, *to])), None),
                    LogBody::ReactionAdded { message_id, emoji } | LogBody::ReactionRemoved { message_id, emoji } => {
                        (Some(*message_id), Some(emoji.clone()), None, None)
                    }
                    LogBody::CallEnded(c) => (None, Some(c.call_id.clone()), None, serde_json::to_string(c).ok()),
                };
                sqlx::query("INSERT INTO conversation_events (conversation_id, seq, kind, actor_id, at_ms, message_id, text, user_ids, data) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                    .bind(conv)
                    .bind(seq)
                    .bind(body.kind())
                    .bind(actor)
                    .bind(now)
                    .bind(message_id)
                    .bind(text)
                    .bind(user_ids)
                    .bind(data)
                    .execute(&mut **tx)
                    .await?;
                let body = match body {
                    LogBody::Posted(mut m) => {
                        m.seq = seq;
                        LogBody::Posted(m)
                    }
                    b => b,
                };
                Ok(LogEvent { conversation_id: conv, seq, actor_id: actor, at_ms: now, body })
            }

            async fn user_update(tx: &mut Tx, user: UserId, added: bool, conv: ConvId, now: i64) -> Result<UserUpdateRec, sqlx::Error> {
                user_entry(tx, user, if added { UpdateKind::Added } else { UpdateKind::Removed }, conv, None, now).await
            }

            async fn user_entry(tx: &mut Tx, user: UserId, kind: UpdateKind, conv: ConvId, seq: Option<i64>, now: i64) -> Result<UserUpdateRec, sqlx::Error> {
                let r = sqlx::query("UPDATE users SET update_seq = update_seq + 1 WHERE id = $1 RETURNING update_seq")
                    .bind(user)
                    .fetch_one(&mut **tx)
                    .await?;
                let user_seq: i64 = r.try_get(0)?;
                sqlx::query("INSERT INTO user_updates (user_id, user_seq, kind, conversation_id, at_ms, seq) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(user)
                    .bind(user_seq)
                    .bind(i32::from(kind))
                    .bind(conv)
                    .bind(now)
                    .bind(seq)
                    .execute(&mut **tx)
                    .await?;
                Ok(UserUpdateRec { user_id: user, user_seq, at_ms: now, kind, conversation_id: conv, seq })
            }

            async fn member_ids(tx: &mut Tx, conv: ConvId) -> Result<Vec<UserId>, sqlx::Error> {
                let rows = sqlx::query("SELECT user_id FROM members WHERE conversation_id = $1 ORDER BY user_id")
                    .bind(conv)
                    .fetch_all(&mut **tx)
                    .await?;
                rows.iter().map(|r| r.try_get(0)).collect()
            }

            /// The conversation as `user` stands in it (kind, role if a member, head), for the rules;
            /// `None` when there is none, or an administrator deleted it (§26.6).
            async fn conv_facts(tx: &mut Tx, conv: ConvId, user: UserId) -> Result<Option<ConvFacts>, sqlx::Error> {
                let r = sqlx::query_as::<_, $crate::store::rows::ConvFactsRow>(
                    "SELECT c.kind AS kind, m.role AS role, c.head_seq AS head_seq FROM conversations c LEFT JOIN members m \
                     ON m.conversation_id = c.id AND m.user_id = $1 WHERE c.id = $2 AND c.deleted_at_ms IS NULL",
                )
                .bind(user)
                .bind(conv)
                .fetch_optional(&mut **tx)
                .await?;
                Ok(r.map(ConvFacts::from))
            }

            async fn role_of(tx: &mut Tx, conv: ConvId, user: UserId) -> Result<Option<Role>, sqlx::Error> {
                let r = sqlx::query("SELECT role FROM members WHERE conversation_id = $1 AND user_id = $2")
                    .bind(conv)
                    .bind(user)
                    .fetch_optional(&mut **tx)
                    .await?;
                r.map(|r| r.try_get(0)).transpose()
            }

            async fn set_role(tx: &mut Tx, conv: ConvId, user: UserId, role: Role) -> Result<(), sqlx::Error> {
                sqlx::query("UPDATE members SET role = $1 WHERE conversation_id = $2 AND user_id = $3")
                    .bind(i32::from(role))
                    .bind(conv)
                    .bind(user)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            /// A new inbox entry (the SQL is `SendSql::notify`, written once).
            #[allow(clippy::too_many_arguments)]
            async fn notify(tx: &mut Tx, user: UserId, kind: NotificationKind, conv: ConvId, message_id: Option<MessageId>, actor: UserId, role: Option<Role>, now: i64) -> Result<NotificationRec, sqlx::Error> {
                $crate::store::conv_send_sql::SendSql::notify(tx, user, kind, conv, message_id, actor, role, None, None, now).await
            }

            async fn head(tx: &mut Tx, conv: ConvId) -> Result<i64, sqlx::Error> {
                sqlx::query("SELECT head_seq FROM conversations WHERE id = $1").bind(conv).fetch_one(&mut **tx).await?.try_get(0)
            }

            async fn live_users(tx: &mut Tx, users: &[UserId]) -> Result<bool, sqlx::Error> {
                for u in users {
                    let r = sqlx::query("SELECT 1 FROM users WHERE id = $1 AND deleted_at_ms IS NULL")
                        .bind(*u)
                        .fetch_optional(&mut **tx)
                        .await?;
                    if r.is_none() {
                        return Ok(false);
                    }
                }
                Ok(true)
            }

            async fn add_member(tx: &mut Tx, conv: ConvId, user: UserId, role: Role, now: i64) -> Result<(), sqlx::Error> {
                sqlx::query("INSERT INTO members (conversation_id, user_id, role, joined_at_ms) VALUES ($1, $2, $3, $4)")
                    .bind(conv)
                    .bind(user)
                    .bind(i32::from(role))
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("UPDATE conversations SET member_count = member_count + 1 WHERE id = $1")
                    .bind(conv)
                    .execute(&mut **tx)
                    .await?;
                // The span of history the member may search (§23.1) starts after the head: the
                // messages that come after this membership began.
                sqlx::query("INSERT INTO membership_spans (user_id, conversation_id, from_seq) \
                             SELECT $1, id, head_seq FROM conversations WHERE id = $2 ON CONFLICT DO NOTHING")
                    .bind(user)
                    .bind(conv)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            async fn drop_member(tx: &mut Tx, conv: ConvId, user: UserId) -> Result<(), sqlx::Error> {
                sqlx::query("DELETE FROM members WHERE conversation_id = $1 AND user_id = $2")
                    .bind(conv)
                    .bind(user)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("UPDATE conversations SET member_count = member_count - 1 WHERE id = $1")
                    .bind(conv)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("UPDATE membership_spans SET until_seq = (SELECT head_seq FROM conversations WHERE id = $1) \
                             WHERE conversation_id = $1 AND user_id = $2 AND until_seq IS NULL")
                    .bind(conv)
                    .bind(user)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

    };
}

pub(super) use conv_tx_helpers;
