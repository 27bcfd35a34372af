//! Lifecycle consequences on the write path (`conv_lifecycle_ops!`, docs/protocol.md §21),
//! expanded inside each backend's `conv_write` module: what deleting a message, leaving, joining an
//! ownerless channel, reading and deleting an account do to pins, reactions, notifications,
//! ownership and membership, each inside the batch's transaction.

macro_rules! conv_lifecycle_ops {
    () => {
            /// §19, §21: reading a conversation up to `seq` reads the mentions of the messages up to it.
            async fn read_mentions(tx: &mut Tx, user: UserId, conv: ConvId, seq: i64) -> Result<(), sqlx::Error> {
                sqlx::query("UPDATE notifications SET read_flag = 1 WHERE user_id = $1 AND conversation_id = $2 AND kind = $3 \
                             AND read_flag = 0 AND message_id IN (SELECT id FROM messages WHERE conversation_id = $2 AND seq <= $4)")
                    .bind(user)
                    .bind(conv)
                    .bind(NOTIFY_MENTIONED)
                    .bind(seq)
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

            /// §13.3, §21: the message loses its text, reactions and mention notifications, and
            /// leaves the pin list (`MessageUnpinned` by the deleter after `MessageDeleted`).
            async fn delete_message(tx: &mut Tx, conv: ConvId, actor: UserId, message_id: i64, now: i64) -> OpOut {
                if let Err(e) = own_live_message(tx, conv, actor, message_id, true).await? {
                    return Ok(Err(e));
                }
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
                    .bind(NOTIFY_MENTIONED)
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
                Ok(Ok(Applied { result: Some(OpResult::Seq(seq)), events, audience, ..Default::default() }))
            }
    };
}

pub(super) use conv_lifecycle_ops;
