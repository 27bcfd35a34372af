//! SQL reading conversations, messages and the logs, shared by both backends (`impl_conv_store!`).
//! Writes are in `conv_write_sql.rs`.

use super::types::UserId;

/// Parses a comma-separated user id list.
pub(super) fn ids(s: Option<String>) -> Vec<UserId> {
    s.unwrap_or_default().split(',').filter_map(|x| x.parse().ok()).map(UserId).collect()
}

/// Formats a user id list for storage.
pub(super) fn join_ids(v: &[UserId]) -> String {
    v.iter().map(UserId::to_string).collect::<Vec<_>>().join(",")
}

macro_rules! impl_conv_store {
    ($store:ty) => {
        mod conv_impl {
            use super::*;
            use $crate::store::rows::{EventRow, MSG_COLS, MemberRow, MessageRow, ReactionRow, UserUpdateRow, ViewRow, WatermarkRow};
            use $crate::store::conv_types::*;
            use $crate::store::{ConvStore, StoreError, timed};
            use $crate::store::types::UserId;

            type Db = <$store as $crate::store::sql::HasDb>::Db;

            /// Columns of a conversation seen by user $1, with its last message. Counts and the last
            /// message are a member's only: a channel seen from outside shows no content (§12.1).
            /// Mentions are matched in the comma-separated `mentions` column of unread messages.
            const VIEW_SELECT: &str = "SELECT c.id AS id, c.kind AS kind, c.title AS title, c.description AS description, \
                 c.created_at_ms AS created_at_ms, c.head_seq AS head_seq, c.last_activity_ms AS last_activity_ms, \
                 c.member_count AS member_count, m.role AS my_role, COALESCE(m.read_seq, 0) AS my_read_seq, \
                 (SELECT COUNT(*) FROM messages x WHERE m.role IS NOT NULL AND x.conversation_id = c.id \
                    AND x.seq > m.read_seq AND x.sender_id <> $1 AND x.deleted_at_ms IS NULL) AS unread_count, \
                 (SELECT p.user_id FROM members p WHERE c.kind = 1 AND p.conversation_id = c.id AND p.user_id <> $1 LIMIT 1) \
                    AS peer_user_id, \
                 lm.id AS lm_id, lm.conversation_id AS lm_conversation_id, lm.seq AS lm_seq, lm.sender_id AS lm_sender_id, \
                 lm.text AS lm_text, lm.reply_to AS lm_reply_to, lm.mentions AS lm_mentions, \
                 lm.created_at_ms AS lm_created_at_ms, lm.edited_at_ms AS lm_edited_at_ms, \
                 lm.deleted_at_ms AS lm_deleted_at_ms, lm.client_msg_id AS lm_client_msg_id, \
                 lm.written_at_ms AS lm_written_at_ms, \
                 c.photo_ref AS photo_ref, c.announcement_only AS announcement_only, \
                 (SELECT COUNT(*) FROM messages x WHERE m.role IS NOT NULL AND x.conversation_id = c.id \
                    AND x.seq > m.read_seq AND x.sender_id <> $1 AND x.deleted_at_ms IS NULL \
                    AND (',' || x.mentions || ',') LIKE ('%,' || CAST($1 AS TEXT) || ',%') \
                    AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = $1 AND b.blocked_id = x.sender_id)) \
                    AS unread_mention_count \
                 FROM conversations c LEFT JOIN members m ON m.conversation_id = c.id AND m.user_id = $1 \
                 LEFT JOIN messages lm ON lm.conversation_id = c.id AND lm.seq = c.last_message_seq AND m.role IS NOT NULL";

            fn q(s: String) -> sqlx::AssertSqlSafe<String> {
                sqlx::AssertSqlSafe(s)
            }

            /// Fills reactions (with the viewer's own) and pin flags of a page of messages.
            async fn decorate(pool: &sqlx::Pool<Db>, conv: ConvId, viewer: UserId, msgs: &mut [MessageRec]) -> Result<(), sqlx::Error> {
                let (Some(lo), Some(hi)) = (msgs.iter().map(|m| m.seq).min(), msgs.iter().map(|m| m.seq).max()) else {
                    return Ok(());
                };
                let rows = sqlx::query_as::<_, ReactionRow>("SELECT r.message_id AS message_id, r.emoji AS emoji, COUNT(*) AS count, \
                                        SUM(CASE WHEN r.user_id = $1 THEN 1 ELSE 0 END) AS mine \
                                        FROM reactions r JOIN messages m ON m.id = r.message_id \
                                        WHERE m.conversation_id = $2 AND m.seq BETWEEN $3 AND $4 \
                                        GROUP BY r.message_id, r.emoji ORDER BY r.message_id, MIN(r.created_at_ms), r.emoji")
                    .bind(viewer)
                    .bind(conv)
                    .bind(lo)
                    .bind(hi)
                    .fetch_all(pool)
                    .await?;
                let pins = sqlx::query("SELECT p.message_id FROM pins p JOIN messages m ON m.id = p.message_id \
                                        WHERE p.conversation_id = $1 AND m.seq BETWEEN $2 AND $3")
                    .bind(conv)
                    .bind(lo)
                    .bind(hi)
                    .fetch_all(pool)
                    .await?;
                apply_decorations(msgs, rows, &pins)
            }

            /// Puts reaction counts and pin flags read for `msgs` on them.
            fn apply_decorations(msgs: &mut [MessageRec], reactions: Vec<ReactionRow>, pins: &[<Db as sqlx::Database>::Row]) -> Result<(), sqlx::Error> {
                for r in reactions {
                    if let Some(m) = msgs.iter_mut().find(|m| m.id == r.message_id) {
                        m.reactions.push(ReactionCount { emoji: r.emoji, count: r.count, mine: r.mine > 0 });
                    }
                }
                for p in pins {
                    let id: MessageId = p.try_get(0)?;
                    if let Some(m) = msgs.iter_mut().find(|m| m.id == id) {
                        m.pinned = true;
                    }
                }
                Ok(())
            }

            /// Fills reactions and pin flags of messages picked anywhere in a conversation
            /// (search hits), by id: `decorate` reads a contiguous seq range instead.
            async fn decorate_listed(pool: &sqlx::Pool<Db>, viewer: UserId, msgs: &mut [MessageRec]) -> Result<(), sqlx::Error> {
                if msgs.is_empty() {
                    return Ok(());
                }
                let list = $crate::store::search_sql::ids(&msgs.iter().map(|m| m.id).collect::<Vec<_>>());
                let rows = sqlx::query_as::<_, ReactionRow>(q(format!("SELECT r.message_id AS message_id, r.emoji AS emoji, COUNT(*) AS count, \
                                        SUM(CASE WHEN r.user_id = $1 THEN 1 ELSE 0 END) AS mine \
                                        FROM reactions r WHERE r.message_id IN ({list}) \
                                        GROUP BY r.message_id, r.emoji ORDER BY r.message_id, MIN(r.created_at_ms), r.emoji")))
                    .persistent(false)
                    .bind(viewer)
                    .fetch_all(pool)
                    .await?;
                let pins = sqlx::query(q(format!("SELECT message_id FROM pins WHERE message_id IN ({list})")))
                    .persistent(false)
                    .fetch_all(pool)
                    .await?;
                apply_decorations(msgs, rows, &pins)
            }

            #[async_trait::async_trait]
            impl ConvStore for $store {
                async fn apply(&self, ops: &[WriteOp]) -> Result<Vec<Result<Applied, OpError>>, StoreError> {
                    timed(&self.metrics, "apply_batch", super::conv_write::apply(&self.pool, &self.sealer, ops)).await
                }

                async fn conversation(&self, user: UserId, conv: ConvId) -> Result<Option<ConvView>, StoreError> {
                    timed(&self.metrics, "conversation", async {
                        let r = sqlx::query_as::<_, ViewRow>(q(format!("{VIEW_SELECT} WHERE c.id = $2 AND c.deleted_at_ms IS NULL")))
                            .bind(user)
                            .bind(conv)
                            .fetch_optional(&self.pool)
                            .await?;
                        let mut v = r.map(ConvView::from);
                        $crate::store::media_sql::MediaSql::attach(&self.pool, v.iter_mut().filter_map(|v| v.last_message.as_mut())).await?;
                        self.sealer.open_views(v.iter_mut()).await?;
                        Ok(v)
                    })
                    .await
                }

                async fn list_conversations(&self, user: UserId, before: Option<(i64, i64)>, limit: u32) -> Result<Vec<ConvView>, StoreError> {
                    timed(&self.metrics, "list_conversations", async {
                        let (ms, id) = before.unwrap_or((i64::MAX, i64::MAX));
                        let rows = sqlx::query_as::<_, ViewRow>(q(format!(
                            "{VIEW_SELECT} WHERE m.role IS NOT NULL AND (c.last_activity_ms < $2 OR (c.last_activity_ms = $2 AND c.id < $3)) \
                             ORDER BY c.last_activity_ms DESC, c.id DESC LIMIT $4"
                        )))
                        .bind(user)
                        .bind(ms)
                        .bind(id)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?;
                        let mut views: Vec<ConvView> = rows.into_iter().map(ConvView::from).collect();
                        $crate::store::media_sql::MediaSql::attach(&self.pool, views.iter_mut().filter_map(|v| v.last_message.as_mut())).await?;
                        self.sealer.open_views(views.iter_mut()).await?;
                        Ok(views)
                    })
                    .await
                }

                async fn members(&self, conv: ConvId, after: UserId, limit: u32) -> Result<Vec<MemberRec>, StoreError> {
                    timed(&self.metrics, "members", async {
                        let rows = sqlx::query_as::<_, MemberRow>("SELECT user_id, role, joined_at_ms FROM members WHERE conversation_id = $1 AND user_id > $2 \
                                                ORDER BY user_id LIMIT $3")
                            .bind(conv)
                            .bind(after)
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await?;
                        Ok(rows.into_iter().map(MemberRec::from).collect())
                    })
                    .await
                }

                async fn discover(&self, user: UserId, prefix: &str, after: ConvId, limit: u32) -> Result<Vec<ConvView>, StoreError> {
                    timed(&self.metrics, "discover", async {
                        // Prefix match on the case-folded title; LIKE wildcards in the query are escaped.
                        let escaped = $crate::store::sql::escape_like(&confab_protocol::text::fold(prefix));
                        let rows = sqlx::query_as::<_, ViewRow>(q(format!(
                            "{VIEW_SELECT} WHERE c.kind = 3 AND c.deleted_at_ms IS NULL AND c.title_key LIKE $2 ESCAPE '\\' AND c.id > $3 \
                             ORDER BY c.id LIMIT $4"
                        )))
                        .bind(user)
                        .bind(format!("{escaped}%"))
                        .bind(after)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?;
                        let mut views: Vec<ConvView> = rows.into_iter().map(ConvView::from).collect();
                        $crate::store::media_sql::MediaSql::attach(&self.pool, views.iter_mut().filter_map(|v| v.last_message.as_mut())).await?;
                        self.sealer.open_views(views.iter_mut()).await?;
                        Ok(views)
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
                            Some(a) => sqlx::query_as::<_, MessageRow>(q(format!("SELECT {MSG_COLS} FROM messages WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")))
                                .bind(conv)
                                .bind(a)
                                .bind(i64::from(limit))
                                .fetch_all(&self.pool)
                                .await?,
                            None => {
                                let mut rows = sqlx::query_as::<_, MessageRow>(q(format!(
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
                        let mut msgs: Vec<MessageRec> = rows.into_iter().map(MessageRec::from).collect();
                        decorate(&self.pool, conv, viewer, &mut msgs).await?;
                        $crate::store::media_sql::MediaSql::attach(&self.pool, msgs.iter_mut()).await?;
                        self.sealer.open_messages(msgs.iter_mut()).await?;
                        Ok(msgs)
                    })
                    .await
                }

                async fn pins(&self, conv: ConvId, viewer: UserId) -> Result<Vec<MessageRec>, StoreError> {
                    timed(&self.metrics, "pins", async {
                        let cols = MSG_COLS.split(", ").map(|c| format!("m.{c} AS {c}")).collect::<Vec<_>>().join(", ");
                        let rows = sqlx::query_as::<_, MessageRow>(q(format!(
                            "SELECT {cols} FROM pins p JOIN messages m ON m.id = p.message_id WHERE p.conversation_id = $1 \
                             ORDER BY p.pinned_at_ms DESC, m.seq DESC LIMIT 100"
                        )))
                        .bind(conv)
                        .fetch_all(&self.pool)
                        .await?;
                        let mut msgs: Vec<MessageRec> = rows.into_iter().map(MessageRec::from).collect();
                        decorate(&self.pool, conv, viewer, &mut msgs).await?;
                        $crate::store::media_sql::MediaSql::attach(&self.pool, msgs.iter_mut()).await?;
                        self.sealer.open_messages(msgs.iter_mut()).await?;
                        Ok(msgs)
                    })
                    .await
                }

                async fn events_after(&self, conv: ConvId, after: i64, limit: u32) -> Result<Vec<LogEvent>, StoreError> {
                    timed(&self.metrics, "events_after", async {
                        let rows = sqlx::query_as::<_, EventRow>("SELECT e.conversation_id AS conversation_id, e.seq AS seq, e.kind AS kind, \
                                                e.actor_id AS actor_id, e.at_ms AS at_ms, e.message_id AS message_id, e.text AS text, \
                                                e.user_ids AS user_ids, e.data AS data, m.deleted_at_ms AS m_deleted_at_ms, \
                                                m.reply_to AS m_reply_to, m.client_msg_id AS m_client_msg_id, \
                                                m.written_at_ms AS m_written_at_ms \
                                                FROM conversation_events e LEFT JOIN messages m ON e.kind = 2 AND m.id = e.message_id \
                                                WHERE e.conversation_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3")
                            .bind(conv)
                            .bind(after)
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await?;
                        let mut events: Vec<LogEvent> = rows.into_iter().map(LogEvent::try_from).collect::<Result<_, _>>()?;
                        let posted = events.iter_mut().filter_map(|e| match &mut e.body {
                            LogBody::Posted(m) => Some(m),
                            _ => None,
                        });
                        $crate::store::media_sql::MediaSql::attach(&self.pool, posted).await?;
                        self.sealer.open_events(&mut events).await?;
                        Ok(events)
                    })
                    .await
                }

                async fn user_updates_after(&self, user: UserId, after: i64, limit: u32) -> Result<(Vec<UserUpdateRec>, i64), StoreError> {
                    timed(&self.metrics, "user_updates_after", async {
                        let head = sqlx::query("SELECT update_seq FROM users WHERE id = $1").bind(user).fetch_one(&self.pool).await?;
                        let head: i64 = head.try_get(0)?;
                        let rows = sqlx::query_as::<_, UserUpdateRow>("SELECT user_id, user_seq, kind, conversation_id, at_ms, seq FROM user_updates WHERE user_id = $1 AND user_seq > $2 \
                                                ORDER BY user_seq LIMIT $3")
                            .bind(user)
                            .bind(after)
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await?;
                        let updates = rows.into_iter().map(UserUpdateRec::from).collect();
                        Ok((updates, head))
                    })
                    .await
                }

                async fn watermarks(&self, conv: ConvId) -> Result<Vec<MemberWatermarks>, StoreError> {
                    timed(&self.metrics, "watermarks", async {
                        let rows = sqlx::query_as::<_, WatermarkRow>("SELECT m.user_id AS user_id, m.delivered_seq AS delivered_seq, m.read_seq AS read_seq, \
                                                u.read_receipts AS read_receipts FROM members m JOIN users u ON u.id = m.user_id \
                                                WHERE m.conversation_id = $1 ORDER BY m.user_id")
                            .bind(conv)
                            .fetch_all(&self.pool)
                            .await?;
                        Ok(rows.into_iter().map(MemberWatermarks::from).collect())
                    })
                    .await
                }

                async fn message(&self, conv: ConvId, message_id: MessageId) -> Result<Option<MessageRec>, StoreError> {
                    let r = sqlx::query_as::<_, MessageRow>(q(format!("SELECT {MSG_COLS} FROM messages WHERE id = $1 AND conversation_id = $2")))
                        .bind(message_id)
                        .bind(conv)
                        .fetch_optional(&self.pool)
                        .await?;
                    let mut m = r.map(MessageRec::from);
                    $crate::store::media_sql::MediaSql::attach(&self.pool, m.iter_mut()).await?;
                    self.sealer.open_messages(m.iter_mut()).await?;
                    Ok(m)
                }

                async fn messages(&self, conv: ConvId, viewer: UserId, ids: &[MessageId]) -> Result<Vec<MessageRec>, StoreError> {
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    timed(&self.metrics, "messages", async {
                        let list = $crate::store::search_sql::ids(ids);
                        let rows = sqlx::query_as::<_, MessageRow>(q(format!(
                            "SELECT {MSG_COLS} FROM messages WHERE conversation_id = $1 AND id IN ({list})"
                        )))
                        .persistent(false)
                        .bind(conv)
                        .fetch_all(&self.pool)
                        .await?;
                        let mut msgs: Vec<MessageRec> = rows.into_iter().map(MessageRec::from).collect();
                        decorate_listed(&self.pool, viewer, &mut msgs).await?;
                        $crate::store::media_sql::MediaSql::attach(&self.pool, msgs.iter_mut()).await?;
                        self.sealer.open_messages(msgs.iter_mut()).await?;
                        Ok(msgs)
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
