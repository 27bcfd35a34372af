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
                    reactions: Vec::new(),
                    pinned: false,
                }))
            }

            /// Columns of a conversation seen by user $1, with its last message.
            const VIEW_SELECT: &str = "SELECT c.id, c.kind, c.title, c.description, c.created_at_ms, c.head_seq, \
                 c.last_activity_ms, c.member_count, m.role, COALESCE(m.read_seq, 0), \
                 (SELECT COUNT(*) FROM messages x WHERE m.role IS NOT NULL AND x.conversation_id = c.id \
                    AND x.seq > m.read_seq AND x.sender_id <> $1 AND x.deleted_at_ms IS NULL), \
                 (SELECT p.user_id FROM members p WHERE c.kind = 1 AND p.conversation_id = c.id AND p.user_id <> $1 LIMIT 1), \
                 lm.id, lm.conversation_id, lm.seq, lm.sender_id, lm.text, lm.reply_to, lm.mentions, lm.created_at_ms, \
                 lm.edited_at_ms, lm.deleted_at_ms, lm.client_msg_id, c.photo_ref, c.announcement_only \
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
                    photo_ref: r.try_get(23)?,
                    announcement_only: r.try_get::<i32, _>(24)? != 0,
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
                let (message_id, text, user_ids, data): (Option<i64>, Option<String>, Option<String>, Option<String>) = match &body {
                    LogBody::Created { kind, title } => (None, Some(title.clone()), Some(kind.to_string()), None),
                    LogBody::Posted(m) => (Some(m.id), Some(m.text.clone()), Some(join_ids(&m.mentions)), None),
                    LogBody::Edited { message_id, text } => (Some(*message_id), Some(text.clone()), None, None),
                    LogBody::Deleted { message_id } | LogBody::Pinned { message_id } | LogBody::Unpinned { message_id } => {
                        (Some(*message_id), None, None, None)
                    }
                    LogBody::MembersAdded(u) => (None, None, Some(join_ids(u)), None),
                    LogBody::Joined(u) | LogBody::Left(u) | LogBody::Removed(u) => (None, None, Some(u.to_string()), None),
                    LogBody::Updated(st) => (None, None, None, serde_json::to_string(st).ok()),
                    LogBody::RoleChanged { user, role } => (None, None, Some(user.to_string()), Some(role.to_string())),
                    LogBody::OwnershipTransferred { from, to } => (None, None, Some(join_ids(&[*from, *to])), None),
                    LogBody::ReactionAdded { message_id, emoji } | LogBody::ReactionRemoved { message_id, emoji } => {
                        (Some(*message_id), Some(emoji.clone()), None, None)
                    }
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
                user_entry(tx, user, if added { UPDATE_ADDED } else { UPDATE_REMOVED }, conv, None, now).await
            }

            async fn user_entry(tx: &mut Tx, user: UserId, kind: i32, conv: ConvId, seq: Option<i64>, now: i64) -> Result<UserUpdateRec, sqlx::Error> {
                let r = sqlx::query("UPDATE users SET update_seq = update_seq + 1 WHERE id = $1 RETURNING update_seq")
                    .bind(user)
                    .fetch_one(&mut **tx)
                    .await?;
                let user_seq: i64 = r.try_get(0)?;
                sqlx::query("INSERT INTO user_updates (user_id, user_seq, kind, conversation_id, at_ms, seq) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(user)
                    .bind(user_seq)
                    .bind(kind)
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

            async fn announcement_only(tx: &mut Tx, conv: ConvId) -> Result<bool, sqlx::Error> {
                let r = sqlx::query("SELECT announcement_only FROM conversations WHERE id = $1").bind(conv).fetch_one(&mut **tx).await?;
                Ok(r.try_get::<i32, _>(0)? != 0)
            }

            async fn role_of(tx: &mut Tx, conv: ConvId, user: UserId) -> Result<Option<i32>, sqlx::Error> {
                let r = sqlx::query("SELECT role FROM members WHERE conversation_id = $1 AND user_id = $2")
                    .bind(conv)
                    .bind(user)
                    .fetch_optional(&mut **tx)
                    .await?;
                r.map(|r| r.try_get(0)).transpose()
            }

            async fn set_role(tx: &mut Tx, conv: ConvId, user: UserId, role: i32) -> Result<(), sqlx::Error> {
                sqlx::query("UPDATE members SET role = $1 WHERE conversation_id = $2 AND user_id = $3")
                    .bind(role)
                    .bind(conv)
                    .bind(user)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            #[allow(clippy::too_many_arguments)]
            async fn notify(tx: &mut Tx, user: UserId, kind: i32, conv: ConvId, message_id: Option<i64>, actor: UserId, role: Option<i32>, now: i64) -> Result<NotificationRec, sqlx::Error> {
                let r = sqlx::query("INSERT INTO notifications (user_id, kind, conversation_id, message_id, actor_id, role, created_at_ms) \
                                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id")
                    .bind(user)
                    .bind(kind)
                    .bind(conv)
                    .bind(message_id)
                    .bind(actor)
                    .bind(role)
                    .bind(now)
                    .fetch_one(&mut **tx)
                    .await?;
                Ok(NotificationRec { id: r.try_get(0)?, user_id: user, kind, conversation_id: conv, message_id, actor_id: actor, role, created_at_ms: now, read: false })
            }

            async fn blocked(tx: &mut Tx, by: UserId, who: UserId) -> Result<bool, sqlx::Error> {
                let r = sqlx::query("SELECT 1 FROM blocks WHERE user_id = $1 AND blocked_id = $2").bind(by).bind(who).fetch_optional(&mut **tx).await?;
                Ok(r.is_some())
            }

            /// The member's watermarks as others see them (read hidden when not shared).
            async fn receipt_of(tx: &mut Tx, conv: ConvId, user: UserId) -> Result<ReceiptRec, sqlx::Error> {
                let r = sqlx::query("SELECT m.delivered_seq, m.read_seq, u.read_receipts FROM members m JOIN users u ON u.id = m.user_id \
                                     WHERE m.conversation_id = $1 AND m.user_id = $2")
                    .bind(conv)
                    .bind(user)
                    .fetch_one(&mut **tx)
                    .await?;
                let shares: i32 = r.try_get(2)?;
                let read: i64 = r.try_get(1)?;
                Ok(ReceiptRec { conversation_id: conv, user_id: user, delivered_seq: r.try_get::<i64, _>(0)?.max(read), read_seq: if shares != 0 { read } else { 0 } })
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
                        if blocked(tx, peer, creator).await? {
                            return Ok(Err(OpError::NotFound("no such user")));
                        }
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
                let mut notifications = Vec::new();
                if kind == ConvKind::Group {
                    for u in &others {
                        notifications.push(notify(tx, *u, NOTIFY_ADDED, conv, None, creator, None, now).await?);
                    }
                }
                Ok(Ok(Applied { result: Some(OpResult::Conversation(conv)), events, audience, user_updates, notifications, ..Default::default() }))
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
                                Ok(Ok(Applied { result: Some(OpResult::Conversation(*conv)), events: vec![ev], audience, user_updates: vec![uu], ..Default::default() }))
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
                        let mut events = Vec::new();
                        if role == ROLE_OWNER {
                            // Ownership passes to the highest role, then the longest-standing member.
                            let next = sqlx::query("SELECT user_id FROM members WHERE conversation_id = $1 AND user_id <> $2 \
                                                    ORDER BY role, joined_at_ms, user_id LIMIT 1")
                                .bind(*conv)
                                .bind(*user)
                                .fetch_optional(&mut **tx)
                                .await?;
                            if let Some(next) = next {
                                let to: UserId = next.try_get(0)?;
                                set_role(tx, *conv, to, ROLE_OWNER).await?;
                                events.push(append(tx, *conv, *user, *now_ms, LogBody::OwnershipTransferred { from: *user, to }).await?);
                            }
                        }
                        drop_member(tx, *conv, *user).await?;
                        events.push(append(tx, *conv, *user, *now_ms, LogBody::Left(*user)).await?);
                        let uu = user_update(tx, *user, false, *conv, *now_ms).await?;
                        Ok(Ok(Applied { result: Some(OpResult::Done), events, audience, user_updates: vec![uu], ..Default::default() }))
                    }
                    WriteOp::AddMembers { conversation_id: conv, actor, users, now_ms } => {
                        let Some((k, Some(role))) = kind_and_role(tx, *conv, *actor).await? else {
                            return Ok(Err(OpError::NotFound("no such conversation")));
                        };
                        if k != ConvKind::Group as i32 {
                            return Ok(Err(OpError::FailedPrecondition("members are added to groups only; channels are joined")));
                        }
                        if !permits(role, Action::AddMembers) {
                            return Ok(Err(OpError::PermissionDenied("only owners and admins add members")));
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
                        let mut notifications = Vec::new();
                        for u in &new {
                            user_updates.push(user_update(tx, *u, true, *conv, *now_ms).await?);
                            notifications.push(notify(tx, *u, NOTIFY_ADDED, *conv, None, *actor, None, *now_ms).await?);
                        }
                        let mut audience = current;
                        audience.extend(new);
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, user_updates, notifications, ..Default::default() }))
                    }
                    WriteOp::RemoveMember { conversation_id: conv, actor, user, now_ms } => {
                        let Some((k, Some(role))) = kind_and_role(tx, *conv, *actor).await? else {
                            return Ok(Err(OpError::NotFound("no such conversation")));
                        };
                        if k == ConvKind::Direct as i32 {
                            return Ok(Err(OpError::FailedPrecondition("members are removed from groups and channels only")));
                        }
                        if !permits(role, Action::RemoveMembers) {
                            return Ok(Err(OpError::PermissionDenied("only owners and admins remove members")));
                        }
                        if user == actor {
                            return Ok(Err(OpError::FailedPrecondition("use LeaveConversation to leave")));
                        }
                        let Some(target_role) = role_of(tx, *conv, *user).await? else {
                            return Ok(Err(OpError::NotFound("not a member")));
                        };
                        if target_role <= role {
                            return Ok(Err(OpError::PermissionDenied("only members of a lower role can be removed")));
                        }
                        let audience = member_ids(tx, *conv).await?;
                        drop_member(tx, *conv, *user).await?;
                        let ev = append(tx, *conv, *actor, *now_ms, LogBody::Removed(*user)).await?;
                        let uu = user_update(tx, *user, false, *conv, *now_ms).await?;
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, user_updates: vec![uu], ..Default::default() }))
                    }
                    WriteOp::Send { conversation_id: conv, sender, session_id, client_msg_id, text, reply_to, mentions, now_ms } => {
                        let Some((kind, Some(role))) = kind_and_role(tx, *conv, *sender).await? else {
                            return Ok(Err(OpError::NotFound("no such conversation")));
                        };
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
                        if kind == ConvKind::Direct as i32 {
                            let peer = member_ids(tx, *conv).await?.into_iter().find(|u| u != sender);
                            if let Some(peer) = peer
                                && blocked(tx, peer, *sender).await?
                            {
                                return Ok(Err(OpError::PermissionDenied("you cannot send to this conversation")));
                            }
                        }
                        if announcement_only(tx, *conv).await? && !permits(role, Action::PostInAnnouncementOnly) {
                            return Ok(Err(OpError::PermissionDenied("only owners and admins post in this conversation")));
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
                            reactions: Vec::new(),
                            pinned: false,
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
                        let mut notifications = Vec::new();
                        for u in mentions.iter().filter(|u| *u != sender && audience.contains(u)) {
                            notifications.push(notify(tx, *u, NOTIFY_MENTIONED, *conv, Some(message_id), *sender, None, *now_ms).await?);
                        }
                        Ok(Ok(Applied {
                            result: Some(OpResult::Sent { message_id, seq, created_at_ms: *now_ms, duplicate: false }),
                            events: vec![ev],
                            audience,
                            notifications,
                            ..Default::default()
                        }))
                    }
                    WriteOp::Edit { conversation_id: conv, actor, message_id, text, now_ms } => {
                        if let Err(e) = own_live_message(tx, *conv, *actor, *message_id, false).await? {
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
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, ..Default::default() }))
                    }
                    WriteOp::Delete { conversation_id: conv, actor, message_id, now_ms } => {
                        if let Err(e) = own_live_message(tx, *conv, *actor, *message_id, true).await? {
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
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, ..Default::default() }))
                    }
                    WriteOp::MarkRead { conversation_id: conv, user, seq, now_ms } => {
                        if !matches!(kind_and_role(tx, *conv, *user).await?, Some((_, Some(_)))) {
                            return Ok(Err(OpError::NotFound("no such conversation")));
                        }
                        if *seq > head(tx, *conv).await? {
                            return Ok(Err(OpError::Invalid("mark_read.seq", "beyond the conversation's head")));
                        }
                        let moved = sqlx::query("UPDATE members SET read_seq = $1, delivered_seq = CASE WHEN delivered_seq < $1 THEN $1 ELSE delivered_seq END \
                                                 WHERE conversation_id = $2 AND user_id = $3 AND read_seq < $1")
                            .bind(*seq)
                            .bind(*conv)
                            .bind(*user)
                            .execute(&mut **tx)
                            .await?;
                        let now_read = receipt_of(tx, *conv, *user).await?;
                        if moved.rows_affected() == 0 {
                            let r = sqlx::query("SELECT read_seq FROM members WHERE conversation_id = $1 AND user_id = $2").bind(*conv).bind(*user).fetch_one(&mut **tx).await?;
                            return Ok(Ok(Applied { result: Some(OpResult::Seq(r.try_get(0)?)), ..Default::default() }));
                        }
                        let uu = user_entry(tx, *user, UPDATE_READ, *conv, Some(*seq), *now_ms).await?;
                        let audience = member_ids(tx, *conv).await?;
                        Ok(Ok(Applied { result: Some(OpResult::Seq(*seq)), audience, user_updates: vec![uu], receipts: vec![now_read], ..Default::default() }))
                    }
                    WriteOp::Ack { conversation_id: conv, user, session_id, seq } => {
                        if !matches!(kind_and_role(tx, *conv, *user).await?, Some((_, Some(_)))) {
                            return Ok(Err(OpError::NotFound("no such conversation")));
                        }
                        if *seq > head(tx, *conv).await? {
                            return Ok(Err(OpError::Invalid("ack.seq", "beyond the conversation's head")));
                        }
                        sqlx::query("INSERT INTO device_acks (session_id, conversation_id, acked_seq) VALUES ($1, $2, $3) \
                                     ON CONFLICT (session_id, conversation_id) DO UPDATE SET acked_seq = excluded.acked_seq \
                                     WHERE device_acks.acked_seq < excluded.acked_seq")
                            .bind(session_id)
                            .bind(*conv)
                            .bind(*seq)
                            .execute(&mut **tx)
                            .await?;
                        let moved = sqlx::query("UPDATE members SET delivered_seq = $1 WHERE conversation_id = $2 AND user_id = $3 AND delivered_seq < $1")
                            .bind(*seq)
                            .bind(*conv)
                            .bind(*user)
                            .execute(&mut **tx)
                            .await?;
                        if moved.rows_affected() == 0 {
                            return Ok(Ok(Applied { result: Some(OpResult::Done), ..Default::default() }));
                        }
                        let r = receipt_of(tx, *conv, *user).await?;
                        let audience = member_ids(tx, *conv).await?;
                        Ok(Ok(Applied { result: Some(OpResult::Done), audience, receipts: vec![r], ..Default::default() }))
                    }
                    WriteOp::Update { conversation_id: conv, actor, title, description, photo_ref, announcement_only: ann, now_ms } => {
                        let Some((k, Some(role))) = kind_and_role(tx, *conv, *actor).await? else {
                            return Ok(Err(OpError::NotFound("no such conversation")));
                        };
                        if k == ConvKind::Direct as i32 {
                            return Ok(Err(OpError::FailedPrecondition("direct conversations have no settings")));
                        }
                        if !permits(role, Action::EditInfo) {
                            return Ok(Err(OpError::PermissionDenied("only owners and admins change the settings")));
                        }
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
                            .bind(st.title.to_lowercase())
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
                        let Some((k, Some(role))) = kind_and_role(tx, *conv, *actor).await? else {
                            return Ok(Err(OpError::NotFound("no such conversation")));
                        };
                        if k == ConvKind::Direct as i32 {
                            return Ok(Err(OpError::FailedPrecondition("direct conversations have no roles")));
                        }
                        if !permits(role, Action::ChangeRoles) {
                            return Ok(Err(OpError::PermissionDenied("only owners and admins change roles")));
                        }
                        let Some(target_role) = role_of(tx, *conv, *user).await? else {
                            return Ok(Err(OpError::NotFound("not a member")));
                        };
                        // Only on members below oneself, and only to roles below one's own.
                        if target_role <= role || *new_role <= role {
                            return Ok(Err(OpError::PermissionDenied("roles are set on, and to, lower roles only")));
                        }
                        if target_role == *new_role {
                            return Ok(Ok(Applied { result: Some(OpResult::Seq(head(tx, *conv).await?)), ..Default::default() }));
                        }
                        set_role(tx, *conv, *user, *new_role).await?;
                        let ev = append(tx, *conv, *actor, *now_ms, LogBody::RoleChanged { user: *user, role: *new_role }).await?;
                        let audience = member_ids(tx, *conv).await?;
                        let n = notify(tx, *user, NOTIFY_ROLE_CHANGED, *conv, None, *actor, Some(*new_role), *now_ms).await?;
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, notifications: vec![n], ..Default::default() }))
                    }
                    WriteOp::TransferOwnership { conversation_id: conv, actor, user, now_ms } => {
                        let Some((k, Some(role))) = kind_and_role(tx, *conv, *actor).await? else {
                            return Ok(Err(OpError::NotFound("no such conversation")));
                        };
                        if k == ConvKind::Direct as i32 {
                            return Ok(Err(OpError::FailedPrecondition("direct conversations have no owner")));
                        }
                        if !permits(role, Action::TransferOwnership) {
                            return Ok(Err(OpError::PermissionDenied("only the owner transfers ownership")));
                        }
                        if user == actor {
                            return Ok(Err(OpError::Invalid("transfer_ownership.user_id", "already the owner")));
                        }
                        if role_of(tx, *conv, *user).await?.is_none() {
                            return Ok(Err(OpError::NotFound("not a member")));
                        }
                        set_role(tx, *conv, *user, ROLE_OWNER).await?;
                        set_role(tx, *conv, *actor, ROLE_ADMIN).await?;
                        let ev = append(tx, *conv, *actor, *now_ms, LogBody::OwnershipTransferred { from: *actor, to: *user }).await?;
                        let audience = member_ids(tx, *conv).await?;
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, ..Default::default() }))
                    }
                    WriteOp::Pin { conversation_id: conv, actor, message_id, pin, now_ms } => {
                        let (kind, role) = match member_message(tx, *conv, *actor, *message_id).await? {
                            Ok(x) => x,
                            Err(e) => return Ok(Err(e)),
                        };
                        if kind != ConvKind::Direct as i32 && !permits(role, Action::Pin) {
                            return Ok(Err(OpError::PermissionDenied("only moderators and above pin")));
                        }
                        let changed = if *pin {
                            sqlx::query("INSERT INTO pins (conversation_id, message_id, pinned_by, pinned_at_ms) VALUES ($1, $2, $3, $4) \
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
                        if let Err(e) = member_message(tx, *conv, *actor, *message_id).await? {
                            return Ok(Err(e));
                        }
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

            /// A live message of `conv` that `actor` may change: their own, or (when `moderate`)
            /// anyone's for moderators and above outside direct conversations.
            async fn own_live_message(tx: &mut Tx, conv: ConvId, actor: UserId, message_id: i64, moderate: bool) -> Result<Result<(), OpError>, sqlx::Error> {
                let Some((kind, Some(role))) = kind_and_role(tx, conv, actor).await? else {
                    return Ok(Err(OpError::NotFound("no such conversation")));
                };
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
                let moderator = moderate && kind != ConvKind::Direct as i32 && permits(role, Action::DeleteOthersMessages);
                if r.try_get::<i64, _>(0)? != actor && !moderator {
                    return Ok(Err(OpError::PermissionDenied("only the sender changes a message")));
                }
                Ok(Ok(()))
            }

            /// A live message of `conv` (any sender); `actor` must be a member.
            async fn member_message(tx: &mut Tx, conv: ConvId, actor: UserId, message_id: i64) -> Result<Result<(i32, i32), OpError>, sqlx::Error> {
                let Some((kind, Some(role))) = kind_and_role(tx, conv, actor).await? else {
                    return Ok(Err(OpError::NotFound("no such conversation")));
                };
                let r = sqlx::query("SELECT 1 FROM messages WHERE id = $1 AND conversation_id = $2 AND deleted_at_ms IS NULL")
                    .bind(message_id)
                    .bind(conv)
                    .fetch_optional(&mut **tx)
                    .await?;
                if r.is_none() {
                    return Ok(Err(OpError::NotFound("no such message")));
                }
                Ok(Ok((kind, role)))
            }

            /// Fills reactions (with the viewer's own) and pin flags of a page of messages.
            async fn decorate(pool: &sqlx::Pool<Db>, conv: ConvId, viewer: UserId, msgs: &mut [MessageRec]) -> Result<(), sqlx::Error> {
                let (Some(lo), Some(hi)) = (msgs.iter().map(|m| m.seq).min(), msgs.iter().map(|m| m.seq).max()) else {
                    return Ok(());
                };
                let rows = sqlx::query("SELECT r.message_id, r.emoji, COUNT(*), SUM(CASE WHEN r.user_id = $1 THEN 1 ELSE 0 END) \
                                        FROM reactions r JOIN messages m ON m.id = r.message_id \
                                        WHERE m.conversation_id = $2 AND m.seq BETWEEN $3 AND $4 \
                                        GROUP BY r.message_id, r.emoji ORDER BY r.message_id, MIN(r.created_at_ms), r.emoji")
                    .bind(viewer)
                    .bind(conv)
                    .bind(lo)
                    .bind(hi)
                    .fetch_all(pool)
                    .await?;
                for r in &rows {
                    let id: i64 = r.try_get(0)?;
                    if let Some(m) = msgs.iter_mut().find(|m| m.id == id) {
                        let me: i64 = r.try_get(3)?;
                        m.reactions.push((r.try_get(1)?, r.try_get(2)?, me > 0));
                    }
                }
                let pins = sqlx::query("SELECT p.message_id FROM pins p JOIN messages m ON m.id = p.message_id \
                                        WHERE p.conversation_id = $1 AND m.seq BETWEEN $2 AND $3")
                    .bind(conv)
                    .bind(lo)
                    .bind(hi)
                    .fetch_all(pool)
                    .await?;
                for p in &pins {
                    let id: i64 = p.try_get(0)?;
                    if let Some(m) = msgs.iter_mut().find(|m| m.id == id) {
                        m.pinned = true;
                    }
                }
                Ok(())
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
                            reactions: Vec::new(),
                            pinned: false,
                        })
                    }
                    3 => LogBody::Edited { message_id: message_id.unwrap_or(0), text: text.unwrap_or_default() },
                    4 => LogBody::Deleted { message_id: message_id.unwrap_or(0) },
                    5 => LogBody::MembersAdded(ids(user_ids)),
                    6 => LogBody::Joined(ids(user_ids).first().copied().unwrap_or(0)),
                    7 => LogBody::Left(ids(user_ids).first().copied().unwrap_or(0)),
                    8 => LogBody::Removed(ids(user_ids).first().copied().unwrap_or(0)),
                    9 => {
                        let data: Option<String> = r.try_get(10)?;
                        let st = data.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or(Settings {
                            title: String::new(),
                            description: String::new(),
                            photo_ref: String::new(),
                            announcement_only: false,
                        });
                        LogBody::Updated(st)
                    }
                    10 => {
                        let data: Option<String> = r.try_get(10)?;
                        LogBody::RoleChanged {
                            user: ids(user_ids).first().copied().unwrap_or(0),
                            role: data.and_then(|d| d.parse().ok()).unwrap_or(0),
                        }
                    }
                    11 => {
                        let v = ids(user_ids);
                        LogBody::OwnershipTransferred { from: v.first().copied().unwrap_or(0), to: v.get(1).copied().unwrap_or(0) }
                    }
                    12 => LogBody::Pinned { message_id: message_id.unwrap_or(0) },
                    13 => LogBody::Unpinned { message_id: message_id.unwrap_or(0) },
                    14 => LogBody::ReactionAdded { message_id: message_id.unwrap_or(0), emoji: text.unwrap_or_default() },
                    _ => LogBody::ReactionRemoved { message_id: message_id.unwrap_or(0), emoji: text.unwrap_or_default() },
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

                async fn history(&self, conv: ConvId, viewer: UserId, before: Option<i64>, after: Option<i64>, limit: u32) -> Result<Vec<MessageRec>, StoreError> {
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
                        let mut msgs: Vec<MessageRec> = rows.iter().filter_map(|r| message_at(r, 0).transpose()).collect::<Result<_, _>>()?;
                        decorate(&self.pool, conv, viewer, &mut msgs).await?;
                        Ok(msgs)
                    })
                    .await
                }

                async fn pins(&self, conv: ConvId, viewer: UserId) -> Result<Vec<MessageRec>, StoreError> {
                    timed(&self.metrics, "pins", async {
                        let cols = MSG_COLS.split(", ").map(|c| format!("m.{c}")).collect::<Vec<_>>().join(", ");
                        let rows = sqlx::query(q(format!(
                            "SELECT {cols} FROM pins p JOIN messages m ON m.id = p.message_id WHERE p.conversation_id = $1 \
                             ORDER BY p.pinned_at_ms DESC, m.seq DESC LIMIT 100"
                        )))
                        .bind(conv)
                        .fetch_all(&self.pool)
                        .await?;
                        let mut msgs: Vec<MessageRec> = rows.iter().filter_map(|r| message_at(r, 0).transpose()).collect::<Result<_, _>>()?;
                        decorate(&self.pool, conv, viewer, &mut msgs).await?;
                        Ok(msgs)
                    })
                    .await
                }

                async fn events_after(&self, conv: ConvId, after: i64, limit: u32) -> Result<Vec<LogEvent>, StoreError> {
                    timed(&self.metrics, "events_after", async {
                        let rows = sqlx::query("SELECT e.seq, e.kind, e.actor_id, e.at_ms, e.message_id, e.text, e.user_ids, \
                                                m.deleted_at_ms, m.reply_to, m.client_msg_id, e.data \
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
                        let rows = sqlx::query("SELECT user_seq, kind, conversation_id, at_ms, seq FROM user_updates WHERE user_id = $1 AND user_seq > $2 \
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
                                    kind: r.try_get(1)?,
                                    conversation_id: r.try_get(2)?,
                                    at_ms: r.try_get(3)?,
                                    seq: r.try_get(4)?,
                                })
                            })
                            .collect::<Result<_, _>>()?;
                        Ok((updates, head))
                    })
                    .await
                }

                async fn watermarks(&self, conv: ConvId) -> Result<Vec<MemberWatermarks>, StoreError> {
                    timed(&self.metrics, "watermarks", async {
                        let rows = sqlx::query("SELECT m.user_id, m.delivered_seq, m.read_seq, u.read_receipts FROM members m JOIN users u ON u.id = m.user_id \
                                                WHERE m.conversation_id = $1 ORDER BY m.user_id")
                            .bind(conv)
                            .fetch_all(&self.pool)
                            .await?;
                        Ok(rows
                            .iter()
                            .map(|r| {
                                Ok::<_, sqlx::Error>(MemberWatermarks {
                                    user_id: r.try_get(0)?,
                                    delivered_seq: r.try_get(1)?,
                                    read_seq: r.try_get(2)?,
                                    shares_read: r.try_get::<i32, _>(3)? != 0,
                                })
                            })
                            .collect::<Result<_, _>>()?)
                    })
                    .await
                }

                async fn message(&self, conv: ConvId, message_id: i64) -> Result<Option<MessageRec>, StoreError> {
                    let r = sqlx::query(q(format!("SELECT {MSG_COLS} FROM messages WHERE id = $1 AND conversation_id = $2")))
                        .bind(message_id)
                        .bind(conv)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(r.as_ref().map(|r| message_at(r, 0)).transpose()?.flatten())
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
