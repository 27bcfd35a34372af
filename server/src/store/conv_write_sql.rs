//! SQL writing conversations, messages and the logs, shared by both backends
//! (`impl_conv_writes!`). `apply` runs a whole batch of writes in one transaction (group commit);
//! each op checks its preconditions before writing, so a refused op leaves no trace and does not
//! spoil the batch.

macro_rules! impl_conv_writes {
    ($store:ty, $begin:literal) => {
        mod conv_write {
            use super::*;
            use $crate::store::conv_sql::join_ids;
            use $crate::store::conv_types::*;
            use $crate::store::types::UserId;
            use std::collections::{HashMap, HashSet};

            type Db = <$store as $crate::store::sql::HasDb>::Db;
            type Tx = sqlx::Transaction<'static, Db>;

            /// Applies `ops` in one transaction; one result per op.
            pub(super) async fn apply(pool: &sqlx::Pool<Db>, ops: &[WriteOp]) -> Result<Vec<Result<Applied, OpError>>, sqlx::Error> {
                let mut tx = pool.begin_with($begin).await?;
                let mut out = Vec::with_capacity(ops.len());
                let mut rest = ops;
                while let Some(op) = rest.first() {
                    // Consecutive sends go together through the set-based path.
                    let run: Vec<SendRef<'_>> = rest.iter().map_while(SendRef::of).collect();
                    if run.is_empty() {
                        out.push(apply_one(&mut tx, op).await?);
                        rest = &rest[1..];
                    } else {
                        out.extend(send_run(&mut tx, &run).await?);
                        rest = &rest[run.len()..];
                    }
                }
                tx.commit().await?;
                Ok(out)
            }

            $crate::store::conv_tx_sql::conv_tx_helpers!();
            $crate::store::conv_send_sql::conv_send_run!();
            $crate::store::conv_life_sql::conv_lifecycle_ops!();

            type OpOut = Result<Result<Applied, OpError>, sqlx::Error>;

            async fn create(tx: &mut Tx, kind: ConvKind, title: &str, description: &str, creator: UserId, members: &[UserId], now: i64) -> OpOut {
                let mut others: Vec<UserId> = members.iter().copied().filter(|u| *u != creator).collect();
                others.sort_unstable();
                others.dedup();
                if !live_users(tx, &others).await? {
                    return Ok(Err(OpError::NotFound("no such user")));
                }
                // §18: a user who blocked the creator is not added, and looks like no user at all.
                if kind == ConvKind::Group && blocked_by_any(tx, &others, creator).await? {
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
                    WriteOp::Join { conversation_id: conv, user, now_ms } => join_channel(tx, *conv, *user, *now_ms).await,
                    WriteOp::Leave { conversation_id: conv, user, now_ms } => {
                        let Some((k, Some(role))) = kind_and_role(tx, *conv, *user).await? else {
                            return Ok(Err(OpError::NotFound("no such conversation")));
                        };
                        if k == ConvKind::Direct as i32 {
                            return Ok(Err(OpError::FailedPrecondition("a direct conversation cannot be left")));
                        }
                        Ok(Ok(leave(tx, *conv, *user, role, *now_ms).await?))
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
                        if blocked_by_any(tx, &users, *actor).await? {
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
                        retire_notifications(tx, *user, *conv).await?;
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, user_updates: vec![uu], ..Default::default() }))
                    }
                    WriteOp::CallEnded { conversation_id: conv, caller, record, missed_by, now_ms } => {
                        // Membership was checked when the call started; the caller may have left
                        // since (which is what ended the call), and the record still belongs here.
                        if kind_and_role(tx, *conv, *caller).await?.is_none() {
                            return Ok(Err(OpError::NotFound("no such conversation")));
                        }
                        let ev = append(tx, *conv, *caller, *now_ms, LogBody::CallEnded(record.clone())).await?;
                        let audience = member_ids(tx, *conv).await?;
                        let mut notifications = Vec::new();
                        for u in missed_by.iter().filter(|u| audience.contains(u)) {
                            notifications.push(notify(tx, *u, NOTIFY_MISSED_CALL, *conv, None, *caller, None, *now_ms).await?);
                        }
                        Ok(Ok(Applied { result: Some(OpResult::Seq(ev.seq)), events: vec![ev], audience, notifications, ..Default::default() }))
                    }
                    WriteOp::Send { .. } => {
                        let run: Vec<SendRef<'_>> = SendRef::of(op).into_iter().collect();
                        Ok(send_run(tx, &run).await?.pop().unwrap_or(Err(OpError::FailedPrecondition("the send was not applied"))))
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
                        delete_message(tx, *conv, *actor, *message_id, *now_ms).await
                    }
                    WriteOp::DeleteAccount { user, now_ms } => delete_account(tx, *user, *now_ms).await,
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
                        read_mentions(tx, *user, *conv, *seq).await?;
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

        }
    };
}

pub(super) use impl_conv_writes;
