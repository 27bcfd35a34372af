//! SQL of conversations, messages and the logs, shared by both backends (`impl_conv_store!`).
//! `apply` runs a whole batch of writes in one transaction (group commit); each op checks its
//! preconditions before writing, so a refused op leaves no trace and does not spoil the batch.

/// Parses a comma-separated id list.
pub(super) fn ids(s: Option<String>) -> Vec<i64> {
    s.unwrap_or_default().split(',').filter_map(|x| x.parse().ok()).collect()
}

/// Formats an id list for storage.
pub(super) fn join_ids(v: &[i64]) -> String {
    v.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

macro_rules! impl_conv_store {
    ($store:ty, $begin:literal) => {
        mod conv_impl {
            use super::*;
            use $crate::store::conv_sql::{ids, join_ids};
            use $crate::store::conv_types::*;
            use $crate::store::{ConvStore, StoreError, timed};
            use $crate::store::types::UserId;

            type Db = <$store as $crate::store::sql::HasDb>::Db;
            type Tx = sqlx::Transaction<'static, Db>;
            type Row = <Db as sqlx::Database>::Row;

            const MSG_COLS: &str = "id, conversation_id, seq, sender_id, text, reply_to, mentions, created_at_ms, \
                                    edited_at_ms, deleted_at_ms, client_msg_id";

            fn message_at(r: &Row, o: usize) -> Result<Option<MessageRec>, sqlx::Error> {
                let id: Option<i64> = r.try_get(o)?;
                let Some(id) = id else { return Ok(None) };
                let deleted_at: Option<i64> = r.try_get(o + 9)?;
                Ok(Some(MessageRec {
                    id,
                    conversation_id: r.try_get(o + 1)?,
                    seq: r.try_get(o + 2)?,
                    sender_id: r.try_get(o + 3)?,
                    text: r.try_get(o + 4)?,
                    reply_to: r.try_get(o + 5)?,
                    mentions: ids(r.try_get(o + 6)?),
                    created_at_ms: r.try_get(o + 7)?,
                    edited_at_ms: r.try_get(o + 8)?,
                    deleted: deleted_at.is_some(),
                    client_msg_id: r.try_get(o + 10)?,
                }))
            }

            /// Columns of a conversation seen by user $1, with its last message.
            const VIEW_SELECT: &str = "SELECT c.id, c.kind, c.title, c.description, c.created_at_ms, c.head_seq, \
                 c.last_activity_ms, c.member_count, m.role, COALESCE(m.read_seq, 0), \
                 (SELECT COUNT(*) FROM messages x WHERE m.role IS NOT NULL AND x.conversation_id = c.id \
                    AND x.seq > m.read_seq AND x.sender_id <> $1 AND x.deleted_at_ms IS NULL), \
                 (SELECT p.user_id FROM members p WHERE c.kind = 1 AND p.conversation_id = c.id AND p.user_id <> $1 LIMIT 1), \
                 lm.id, lm.conversation_id, lm.seq, lm.sender_id, lm.text, lm.reply_to, lm.mentions, lm.created_at_ms, \
                 lm.edited_at_ms, lm.deleted_at_ms, lm.client_msg_id \
                 FROM conversations c LEFT JOIN members m ON m.conversation_id = c.id AND m.user_id = $1 \
                 LEFT JOIN messages lm ON lm.id = c.last_message_id";

            fn view(r: &Row) -> Result<ConvView, sqlx::Error> {
                Ok(ConvView {
                    id: r.try_get(0)?,
                    kind: r.try_get::<i32, _>(1)?,
                    title: r.try_get(2)?,
                    description: r.try_get(3)?,
                    created_at_ms: r.try_get(4)?,
                    head_seq: r.try_get(5)?,
                    last_activity_ms: r.try_get(6)?,
                    member_count: r.try_get::<i32, _>(7)? as i64,
                    my_role: r.try_get(8)?,
                    my_read_seq: r.try_get(9)?,
                    unread_count: r.try_get(10)?,
                    peer_user_id: r.try_get(11)?,
                    last_message: message_at(r, 12)?,
                })
            }

            fn q(s: String) -> sqlx::AssertSqlSafe<String> {
                sqlx::AssertSqlSafe(s)
            }

            async fn next_seq(tx: &mut Tx, conv: ConvId, now: i64) -> Result<i64, sqlx::Error> {
                let r = sqlx::query("UPDATE conversations SET head_seq = head_seq + 1, last_activity_ms = $1 WHERE id = $2 RETURNING head_seq")
                    .bind(now)
                    .bind(conv)
                    .fetch_one(&mut **tx)
                    .await?;
                r.try_get(0)
            }

            async fn append(tx: &mut Tx, conv: ConvId, actor: UserId, now: i64, body: LogBody) -> Result<LogEvent, sqlx::Error> {
                let seq = next_seq(tx, conv, now).await?;
                let (message_id, text, user_ids) = match &body {
                    LogBody::Created { kind, title } => (None, Some(title.clone()), Some(kind.to_string())),
                    LogBody::Posted(m) => (Some(m.id), Some(m.text.clone()), Some(join_ids(&m.mentions))),
                    LogBody::Edited { message_id, text } => (Some(*message_id), Some(text.clone()), None),
                    LogBody::Deleted { message_id } => (Some(*message_id), None, None),
                    LogBody::MembersAdded(u) => (None, None, Some(join_ids(u))),
                    LogBody::Joined(u) | LogBody::Left(u) | LogBody::Removed(u) => (None, None, Some(u.to_string())),
                };
                sqlx::query("INSERT INTO conversation_events (conversation_id, seq, kind, actor_id, at_ms, message_id, text, user_ids) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                    .bind(conv)
                    .bind(seq)
                    .bind(body.kind())
                    .bind(actor)
                    .bind(now)
                    .bind(message_id)
                    .bind(text)
                    .bind(user_ids)
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
                let r = sqlx::query("UPDATE users SET update_seq = update_seq + 1 WHERE id = $1 RETURNING update_seq")
                    .bind(user)
                    .fetch_one(&mut **tx)
                    .await?;
                let user_seq: i64 = r.try_get(0)?;
                sqlx::query("INSERT INTO user_updates (user_id, user_seq, kind, conversation_id, at_ms) VALUES ($1, $2, $3, $4, $5)")
                    .bind(user)
                    .bind(user_seq)
                    .bind(if added { 1 } else { 2 })
                    .bind(conv)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                Ok(UserUpdateRec { user_id: user, user_seq, at_ms: now, added, conversation_id: conv })
            }

            async fn member_ids(tx: &mut Tx, conv: ConvId) -> Result<Vec<UserId>, sqlx::Error> {
                let rows = sqlx::query("SELECT user_id FROM members WHERE conversation_id = $1 ORDER BY user_id")
                    .bind(conv)
                    .fetch_all(&mut **tx)
                    .await?;
                rows.iter().map(|r| r.try_get(0)).collect()
            }

            /// (kind, role of `user` if a member) of a conversation.
            async fn kind_and_role(tx: &mut Tx, conv: ConvId, user: UserId) -> Result<Option<(i32, Option<i32>)>, sqlx::Error> {
                let r = sqlx::query("SELECT c.kind, m.role FROM conversations c LEFT JOIN members m \
                                     ON m.conversation_id = c.id AND m.user_id = $1 WHERE c.id = $2")
                    .bind(user)
                    .bind(conv)
                    .fetch_optional(&mut **tx)
                    .await?;
                r.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
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

            async fn add_member(tx: &mut Tx, conv: ConvId, user: UserId, role: i32, now: i64) -> Result<(), sqlx::Error> {
                sqlx::query("INSERT INTO members (conversation_id, user_id, role, joined_at_ms) VALUES ($1, $2, $3, $4)")
                    .bind(conv)
                    .bind(user)
                    .bind(role)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("UPDATE conversations SET member_count = member_count + 1 WHERE id = $1")
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
                Ok(())
            }

            type OpOut = Result<Result<Applied, OpError>, sqlx::Error>;

            async fn create(tx: &mut Tx, kind: ConvKind, title: &str, description: &str, creator: UserId, members: &[UserId], now: i64) -> OpOut {
                let mut others: Vec<UserId> = members.iter().copied().filter(|u| *u != creator).collect();
                others.sort_unstable();
                others.dedup();
                if !live_users(tx, &others).await? {
                    return Ok(Err(OpError::NotFound("no such user")));
                }
                let direct_key = match kind {
                    ConvKind::Direct => {
                        let [peer] = others[..] else { return Ok(Err(OpError::Invalid("create_conversation.member_ids", "a direct conversation has exactly one other member"))) };
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
                    ConvKind::Group => None,
                    ConvKind::Channel => {
                        others.clear();
                        None
                    }
                };
                let r = sqlx::query("INSERT INTO conversations (kind, title, title_key, description, direct_key, created_by, created_at_ms, last_activity_ms) \
                                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id")
                    .bind(kind as i32)
                    .bind(title)
                    .bind(title.to_lowercase())
                    .bind(description)
                    .bind(&direct_key)
                    .bind(creator)
                    .bind(now)
                    .fetch_one(&mut **tx)
                    .await?;
                let conv: ConvId = r.try_get(0)?;
                let creator_role = if kind == ConvKind::Direct { ROLE_MEMBER } else { ROLE_OWNER };
                add_member(tx, conv, creator, creator_role, now).await?;
                for u in &others {
                    add_member(tx, conv, *u, ROLE_MEMBER, now).await?;
                }
                let mut events = vec![append(tx, conv, creator, now, LogBody::Created { kind: kind as i32, title: title.to_string() }).await?];
                if !others.is_empty() {
                    events.push(append(tx, conv, creator, now, LogBody::MembersAdded(others.clone())).await?);
                }
                let mut audience = vec![creator];
                audience.extend(&others);
                let mut user_updates = Vec::new();
                for u in &audience {
                    user_updates.push(user_update(tx, *u, true, conv, now).await?);
                }
                Ok(Ok(Applied { result: Some(OpResult::Conversation(conv)), events, audience, user_updates }))
            }

            async fn apply_one(tx: &mut Tx, op: &WriteOp) -> OpOut {
                match op {
                    WriteOp::Create { kind, title, description, creator, members, now_ms } => {
                        create(tx, *kind, title, description, *creator, members, *now_ms).await
                    }
                    WriteOp::Join { conversation_id: conv, user, now_ms } => {
                        match kind_and_role(tx, *conv, *user).await? {
                            Some((k, Some(_))) if k == ConvKind::Channel as i32 => {
                                Ok(Ok(Applied { result: Some(OpResult::Conversation(*conv)), ..Default::default() }))
                            }
                            Some((k, None)) if k == ConvKind::Channel as i32 => {
                                add_member(tx, *conv, *user, ROLE_MEMBER, *now_ms).await?;
                                let ev = append(tx, *conv, *user, *now_ms, LogBody::Joined(*user)).await?;
                                let uu = user_update(tx, *user, true, *conv, *now_ms).await?;
                                let audience = member_ids(tx, *conv).await?;
                                Ok(Ok(Applied { result: Some(OpResult::Conversation(*conv)), events: vec![ev], audience, user_updates: vec![uu] }))
                            }
                            _ => Ok(Err(OpError::NotFound("no such channel"))),
                        }
                    }
                    WriteOp::Leave { conversation_id: conv, user, now_ms } => {
                        let Some((k, Some(role))) = kind_and_role(tx, *conv, *user).await? else {
                            return Ok(Err(OpError::NotFound("no such conversation")));
                        };
                        if k == ConvKind::Direct as i32 {
                            return Ok(Err(OpError::FailedPrecondition("a direct conversation cannot be left")));
                        }
                        let audience = member_ids(tx, *conv).await?;
                        if role == ROLE_OWNER && k == ConvKind::Group as i32 && audience.len() > 1 {
                            return Ok(Err(OpError::FailedPrecondition("the owner of a group with members cannot leave it (§12.4)")));
                        }
                        drop_member(tx, *conv, *user).await?;
                        let ev = append(tx, *conv, *user, *now_ms, LogBody::Left(*user)).await?;
                        let uu = user_update(tx, *user, false, *conv, *now_ms).await?;
                        Ok(Ok(Applied { result: Some(OpResult::Done), events: vec![ev], audience, user_updates: vec![uu] }))
                    }
                    WriteOp::AddMembers { conversation_id: conv, actor, users, now_ms } => {
                        let Some((k, Some(role))) = kind_and_role(tx, *conv, *actor).await? else {
                            return Ok(Err(OpError::NotFound("no such conversation")));
                        };
                        if k != ConvKind::Group as i32 {
                            return Ok(Err(OpError::FailedPrecondition("members are added to groups only; channels are joined")));
                        }
                        if role != ROLE_OWNER {
                            return Ok(Err(OpError::PermissionDenied("only the group's owner adds members")));
                        }
                        let mut users = users.clone();
                        users.sort_unstable();
                        users.dedup();
                        if !live_users(tx, &users).await? {
                            return Ok(Err(OpError::NotFound("no such user")));
                        }
                        let current = member_ids(tx, *conv).await?;
                        let new: Vec<UserId> = users.into_iter().filter(|u| !current.contains(u)).collect();
                        if new.is_empty() {
                            let r = sqlx::query("SELECT head_seq FROM conversations WHERE id = $1").bind(*conv).fetch_one(&mut **tx).await?;
                            return Ok(Ok(Applied { result: Some(OpResult::Seq(r.try_get(0)?)), ..Default::default() }));
                        }
                        for u in &new {
                            add_member(tx, *conv, *u, ROLE_MEMBER, *now_ms).await?;
                        }
                        let ev = append(tx, *conv, *actor, *now_ms, LogBody::MembersAdded(new.clone())).await?;
                        let mut user_updates = Vec::new();
                        for u in &new {
                            user_updates.push(user_update(tx, *u, true, *conv, *now_ms).await?);
                        }
                        let mut audience = current;
                        audience.extend(new);
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, user_updates }))
                    }
                    WriteOp::RemoveMember { conversation_id: conv, actor, user, now_ms } => {
                        let Some((k, Some(role))) = kind_and_role(tx, *conv, *actor).await? else {
                            return Ok(Err(OpError::NotFound("no such conversation")));
                        };
                        if k != ConvKind::Group as i32 {
                            return Ok(Err(OpError::FailedPrecondition("members are removed from groups only")));
                        }
                        if role != ROLE_OWNER {
                            return Ok(Err(OpError::PermissionDenied("only the group's owner removes members")));
                        }
                        if user == actor {
                            return Ok(Err(OpError::FailedPrecondition("use LeaveConversation to leave")));
                        }
                        let audience = member_ids(tx, *conv).await?;
                        if !audience.contains(user) {
                            return Ok(Err(OpError::NotFound("not a member")));
                        }
                        drop_member(tx, *conv, *user).await?;
                        let ev = append(tx, *conv, *actor, *now_ms, LogBody::Removed(*user)).await?;
                        let uu = user_update(tx, *user, false, *conv, *now_ms).await?;
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, user_updates: vec![uu] }))
                    }
                    WriteOp::Send { conversation_id: conv, sender, session_id, client_msg_id, text, reply_to, mentions, now_ms } => {
                        if !matches!(kind_and_role(tx, *conv, *sender).await?, Some((_, Some(_)))) {
                            return Ok(Err(OpError::NotFound("no such conversation")));
                        }
                        let dup = sqlx::query("SELECT id, seq, created_at_ms, conversation_id FROM messages WHERE session_id = $1 AND client_msg_id = $2")
                            .bind(session_id)
                            .bind(client_msg_id)
                            .fetch_optional(&mut **tx)
                            .await?;
                        if let Some(d) = dup {
                            if d.try_get::<i64, _>(3)? != *conv {
                                return Ok(Err(OpError::Invalid("send_message.client_msg_id", "already used for another conversation")));
                            }
                            return Ok(Ok(Applied {
                                result: Some(OpResult::Sent { message_id: d.try_get(0)?, seq: d.try_get(1)?, created_at_ms: d.try_get(2)?, duplicate: true }),
                                ..Default::default()
                            }));
                        }
                        if let Some(parent) = reply_to {
                            let p = sqlx::query("SELECT 1 FROM messages WHERE id = $1 AND conversation_id = $2")
                                .bind(*parent)
                                .bind(*conv)
                                .fetch_optional(&mut **tx)
                                .await?;
                            if p.is_none() {
                                return Ok(Err(OpError::Invalid("send_message.reply_to_message_id", "no such message in this conversation")));
                            }
                        }
                        // The seq is taken first so the message row carries it.
                        let seq = next_seq(tx, *conv, *now_ms).await?;
                        let r = sqlx::query("INSERT INTO messages (conversation_id, seq, sender_id, session_id, client_msg_id, text, reply_to, mentions, created_at_ms) \
                                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id")
                            .bind(*conv)
                            .bind(seq)
                            .bind(*sender)
                            .bind(session_id)
                            .bind(client_msg_id)
                            .bind(text)
                            .bind(*reply_to)
                            .bind(join_ids(mentions))
                            .bind(*now_ms)
                            .fetch_one(&mut **tx)
                            .await?;
                        let message_id: i64 = r.try_get(0)?;
                        sqlx::query("UPDATE conversations SET last_message_id = $1 WHERE id = $2").bind(message_id).bind(*conv).execute(&mut **tx).await?;
                        let m = MessageRec {
                            id: message_id,
                            conversation_id: *conv,
                            seq,
                            sender_id: *sender,
                            text: text.clone(),
                            reply_to: *reply_to,
                            mentions: mentions.clone(),
                            created_at_ms: *now_ms,
                            edited_at_ms: None,
                            deleted: false,
                            client_msg_id: client_msg_id.clone(),
                        };
                        sqlx::query("INSERT INTO conversation_events (conversation_id, seq, kind, actor_id, at_ms, message_id, text, user_ids) \
                                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                            .bind(*conv)
                            .bind(seq)
                            .bind(LogBody::Posted(m.clone()).kind())
                            .bind(*sender)
                            .bind(*now_ms)
                            .bind(message_id)
                            .bind(text)
                            .bind(join_ids(mentions))
                            .execute(&mut **tx)
                            .await?;
                        let ev = LogEvent { conversation_id: *conv, seq, actor_id: *sender, at_ms: *now_ms, body: LogBody::Posted(m) };
                        let audience = member_ids(tx, *conv).await?;
                        Ok(Ok(Applied {
                            result: Some(OpResult::Sent { message_id, seq, created_at_ms: *now_ms, duplicate: false }),
                            events: vec![ev],
                            audience,
                            user_updates: vec![],
                        }))
                    }
                    WriteOp::Edit { conversation_id: conv, actor, message_id, text, now_ms } => {
                        if let Err(e) = own_live_message(tx, *conv, *actor, *message_id).await? {
                            return Ok(Err(e));
                        }
                        sqlx::query("UPDATE messages SET text = $1, edited_at_ms = $2 WHERE id = $3")
                            .bind(text)
                            .bind(*now_ms)
                            .bind(*message_id)
                            .execute(&mut **tx)
                            .await?;
                        let ev = append(tx, *conv, *actor, *now_ms, LogBody::Edited { message_id: *message_id, text: text.clone() }).await?;
                        let audience = member_ids(tx, *conv).await?;
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, user_updates: vec![] }))
                    }
                    WriteOp::Delete { conversation_id: conv, actor, message_id, now_ms } => {
                        if let Err(e) = own_live_message(tx, *conv, *actor, *message_id).await? {
                            return Ok(Err(e));
                        }
                        sqlx::query("UPDATE messages SET text = '', mentions = '', deleted_at_ms = $1 WHERE id = $2")
                            .bind(*now_ms)
                            .bind(*message_id)
                            .execute(&mut **tx)
                            .await?;
                        // The log keeps the entries; their text goes with the message.
                        sqlx::query("UPDATE conversation_events SET text = '' WHERE conversation_id = $1 AND message_id = $2")
                            .bind(*conv)
                            .bind(*message_id)
                            .execute(&mut **tx)
                            .await?;
                        let ev = append(tx, *conv, *actor, *now_ms, LogBody::Deleted { message_id: *message_id }).await?;
                        let audience = member_ids(tx, *conv).await?;
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, user_updates: vec![] }))
                    }
                }
            }

            async fn own_live_message(tx: &mut Tx, conv: ConvId, actor: UserId, message_id: i64) -> Result<Result<(), OpError>, sqlx::Error> {
                if !matches!(kind_and_role(tx, conv, actor).await?, Some((_, Some(_)))) {
                    return Ok(Err(OpError::NotFound("no such conversation")));
                }
                let r = sqlx::query("SELECT sender_id, deleted_at_ms FROM messages WHERE id = $1 AND conversation_id = $2")
                    .bind(message_id)
                    .bind(conv)
                    .fetch_optional(&mut **tx)
                    .await?;
                let Some(r) = r else { return Ok(Err(OpError::NotFound("no such message"))) };
                let deleted: Option<i64> = r.try_get(1)?;
                if deleted.is_some() {
                    return Ok(Err(OpError::NotFound("no such message")));
                }
                if r.try_get::<i64, _>(0)? != actor {
                    return Ok(Err(OpError::PermissionDenied("only the sender changes a message")));
                }
                Ok(Ok(()))
            }

            fn event_from(r: &Row, conv: ConvId) -> Result<LogEvent, sqlx::Error> {
                let seq: i64 = r.try_get(0)?;
                let kind: i32 = r.try_get(1)?;
                let actor: i64 = r.try_get(2)?;
                let at: i64 = r.try_get(3)?;
                let message_id: Option<i64> = r.try_get(4)?;
                let text: Option<String> = r.try_get(5)?;
                let user_ids: Option<String> = r.try_get(6)?;
                let body = match kind {
                    1 => LogBody::Created {
                        kind: user_ids.and_then(|k| k.parse().ok()).unwrap_or(0),
                        title: text.unwrap_or_default(),
                    },
                    2 => {
                        let deleted_at: Option<i64> = r.try_get(7)?;
                        LogBody::Posted(MessageRec {
                            id: message_id.unwrap_or(0),
                            conversation_id: conv,
                            seq,
                            sender_id: actor,
                            text: text.unwrap_or_default(),
                            reply_to: r.try_get(8)?,
                            mentions: ids(user_ids),
                            created_at_ms: at,
                            edited_at_ms: None,
                            deleted: deleted_at.is_some(),
                            client_msg_id: r.try_get::<Option<String>, _>(9)?.unwrap_or_default(),
                        })
                    }
                    3 => LogBody::Edited { message_id: message_id.unwrap_or(0), text: text.unwrap_or_default() },
                    4 => LogBody::Deleted { message_id: message_id.unwrap_or(0) },
                    5 => LogBody::MembersAdded(ids(user_ids)),
                    6 => LogBody::Joined(ids(user_ids).first().copied().unwrap_or(0)),
                    7 => LogBody::Left(ids(user_ids).first().copied().unwrap_or(0)),
                    _ => LogBody::Removed(ids(user_ids).first().copied().unwrap_or(0)),
                };
                Ok(LogEvent { conversation_id: conv, seq, actor_id: actor, at_ms: at, body })
            }

            #[async_trait::async_trait]
            impl ConvStore for $store {
                async fn apply(&self, ops: &[WriteOp]) -> Result<Vec<Result<Applied, OpError>>, StoreError> {
                    timed(&self.metrics, "apply_batch", async {
                        let mut tx = self.pool.begin_with($begin).await?;
                        let mut out = Vec::with_capacity(ops.len());
                        for op in ops {
                            out.push(apply_one(&mut tx, op).await?);
                        }
                        tx.commit().await?;
                        Ok(out)
                    })
                    .await
                }

                async fn conversation(&self, user: UserId, conv: ConvId) -> Result<Option<ConvView>, StoreError> {
                    timed(&self.metrics, "conversation", async {
                        let r = sqlx::query(q(format!("{VIEW_SELECT} WHERE c.id = $2")))
                            .bind(user)
                            .bind(conv)
                            .fetch_optional(&self.pool)
                            .await?;
                        Ok(r.as_ref().map(view).transpose()?)
                    })
                    .await
                }

                async fn list_conversations(&self, user: UserId, before: Option<(i64, i64)>, limit: u32) -> Result<Vec<ConvView>, StoreError> {
                    timed(&self.metrics, "list_conversations", async {
                        let (ms, id) = before.unwrap_or((i64::MAX, i64::MAX));
                        let rows = sqlx::query(q(format!(
                            "{VIEW_SELECT} WHERE m.role IS NOT NULL AND (c.last_activity_ms < $2 OR (c.last_activity_ms = $2 AND c.id < $3)) \
                             ORDER BY c.last_activity_ms DESC, c.id DESC LIMIT $4"
                        )))
                        .bind(user)
                        .bind(ms)
                        .bind(id)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?;
                        Ok(rows.iter().map(view).collect::<Result<_, _>>()?)
                    })
                    .await
                }

                async fn members(&self, conv: ConvId, after: UserId, limit: u32) -> Result<Vec<MemberRec>, StoreError> {
                    timed(&self.metrics, "members", async {
                        let rows = sqlx::query("SELECT user_id, role, joined_at_ms FROM members WHERE conversation_id = $1 AND user_id > $2 \
                                                ORDER BY user_id LIMIT $3")
                            .bind(conv)
                            .bind(after)
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await?;
                        Ok(rows
                            .iter()
                            .map(|r| Ok::<_, sqlx::Error>(MemberRec { user_id: r.try_get(0)?, role: r.try_get(1)?, joined_at_ms: r.try_get(2)? }))
                            .collect::<Result<_, _>>()?)
                    })
                    .await
                }

                async fn discover(&self, user: UserId, prefix: &str, after: ConvId, limit: u32) -> Result<Vec<ConvView>, StoreError> {
                    timed(&self.metrics, "discover", async {
                        // Prefix match on the case-folded title; LIKE wildcards in the query are escaped.
                        let escaped: String = prefix.chars().flat_map(|c| match c {
                            '%' | '_' | '\\' => vec!['\\', c],
                            c => vec![c],
                        }).collect();
                        let rows = sqlx::query(q(format!(
                            "{VIEW_SELECT} WHERE c.kind = 3 AND c.title_key LIKE $2 ESCAPE '\\' AND c.id > $3 ORDER BY c.id LIMIT $4"
                        )))
                        .bind(user)
                        .bind(format!("{escaped}%"))
                        .bind(after)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?;
                        Ok(rows.iter().map(view).collect::<Result<_, _>>()?)
                    })
                    .await
                }

                async fn is_member(&self, conv: ConvId, user: UserId) -> Result<bool, StoreError> {
                    timed(&self.metrics, "is_member", async {
                        let r = sqlx::query("SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = $2")
                            .bind(conv)
                            .bind(user)
                            .fetch_optional(&self.pool)
                            .await?;
                        Ok(r.is_some())
                    })
                    .await
                }

                async fn history(&self, conv: ConvId, before: Option<i64>, after: Option<i64>, limit: u32) -> Result<Vec<MessageRec>, StoreError> {
                    timed(&self.metrics, "history", async {
                        let rows = match after {
                            Some(a) => sqlx::query(q(format!("SELECT {MSG_COLS} FROM messages WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")))
                                .bind(conv)
                                .bind(a)
                                .bind(i64::from(limit))
                                .fetch_all(&self.pool)
                                .await?,
                            None => {
                                let mut rows = sqlx::query(q(format!(
                                    "SELECT {MSG_COLS} FROM messages WHERE conversation_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
                                )))
                                .bind(conv)
                                .bind(before.unwrap_or(i64::MAX))
                                .bind(i64::from(limit))
                                .fetch_all(&self.pool)
                                .await?;
                                rows.reverse();
                                rows
                            }
                        };
                        Ok(rows.iter().filter_map(|r| message_at(r, 0).transpose()).collect::<Result<_, _>>()?)
                    })
                    .await
                }

                async fn events_after(&self, conv: ConvId, after: i64, limit: u32) -> Result<Vec<LogEvent>, StoreError> {
                    timed(&self.metrics, "events_after", async {
                        let rows = sqlx::query("SELECT e.seq, e.kind, e.actor_id, e.at_ms, e.message_id, e.text, e.user_ids, \
                                                m.deleted_at_ms, m.reply_to, m.client_msg_id \
                                                FROM conversation_events e LEFT JOIN messages m ON e.kind = 2 AND m.id = e.message_id \
                                                WHERE e.conversation_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3")
                            .bind(conv)
                            .bind(after)
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await?;
                        Ok(rows.iter().map(|r| event_from(r, conv)).collect::<Result<_, _>>()?)
                    })
                    .await
                }

                async fn user_updates_after(&self, user: UserId, after: i64, limit: u32) -> Result<(Vec<UserUpdateRec>, i64), StoreError> {
                    timed(&self.metrics, "user_updates_after", async {
                        let head = sqlx::query("SELECT update_seq FROM users WHERE id = $1").bind(user).fetch_one(&self.pool).await?;
                        let head: i64 = head.try_get(0)?;
                        let rows = sqlx::query("SELECT user_seq, kind, conversation_id, at_ms FROM user_updates WHERE user_id = $1 AND user_seq > $2 \
                                                ORDER BY user_seq LIMIT $3")
                            .bind(user)
                            .bind(after)
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await?;
                        let updates = rows
                            .iter()
                            .map(|r| {
                                Ok::<_, sqlx::Error>(UserUpdateRec {
                                    user_id: user,
                                    user_seq: r.try_get(0)?,
                                    added: r.try_get::<i32, _>(1)? == 1,
                                    conversation_id: r.try_get(2)?,
                                    at_ms: r.try_get(3)?,
                                })
                            })
                            .collect::<Result<_, _>>()?;
                        Ok((updates, head))
                    })
                    .await
                }

                async fn heads(&self, user: UserId) -> Result<Vec<(ConvId, i64)>, StoreError> {
                    timed(&self.metrics, "heads", async {
                        let rows = sqlx::query("SELECT c.id, c.head_seq FROM members m JOIN conversations c ON c.id = m.conversation_id WHERE m.user_id = $1")
                            .bind(user)
                            .fetch_all(&self.pool)
                            .await?;
                        Ok(rows.iter().map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?))).collect::<Result<_, _>>()?)
                    })
                    .await
                }

                async fn ack(&self, session: &str, conv: ConvId, seq: i64) -> Result<(), StoreError> {
                    timed(&self.metrics, "ack", async {
                        sqlx::query("INSERT INTO device_acks (session_id, conversation_id, acked_seq) VALUES ($1, $2, $3) \
                                     ON CONFLICT (session_id, conversation_id) DO UPDATE SET acked_seq = excluded.acked_seq \
                                     WHERE device_acks.acked_seq < excluded.acked_seq")
                            .bind(session)
                            .bind(conv)
                            .bind(seq)
                            .execute(&self.pool)
                            .await?;
                        Ok(())
                    })
                    .await
                }

                async fn acked(&self, session: &str, conv: ConvId) -> Result<i64, StoreError> {
                    let r = sqlx::query("SELECT acked_seq FROM device_acks WHERE session_id = $1 AND conversation_id = $2")
                        .bind(session)
                        .bind(conv)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(r.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
                }
            }
        }
    };
}

pub(super) use impl_conv_store;
