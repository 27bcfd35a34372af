//! Conversations, messages and sync (docs/protocol.md §12-§14): validation and authorization in
//! front of the batched writer (for changes) and the store (for reads). A non-member learns
//! nothing: every refusal about a conversation they cannot see is the same NOT_FOUND.

mod emoji;
mod reports;
mod send_rate;
mod settings;

pub use emoji::canonical_emoji;

use std::collections::HashMap;
use std::sync::Arc;

pub(crate) use crate::access::id;
use crate::access::not_found;
use crate::error::ServerError;
use crate::page::{Receipt, ReceiptState, Sent, Slice, page_limit};
use crate::session::Caller;
use crate::store::{
    AttachmentRec, ConvId, ConvKind, ConvView, LogBody, LogEvent, MemberRec, MessageRec, OpResult, Store, UserId,
    UserUpdateRec, WriteOp, now_ms,
};
use crate::writer::{Outcome, Writer};

/// Longest history page.
pub const MAX_HISTORY: u32 = 200;
/// Most user-log entries per Sync.
const MAX_USER_UPDATES: u32 = 500;
/// Rough byte budget of one Sync answer's events, so it stays far below frame limits.
const SYNC_BYTES: usize = 512 * 1024;
/// How long before the server's receive time a message's `written_at_ms` may be (§13.2): 24 h.
pub const MAX_WRITTEN_AGE_MS: i64 = 24 * 60 * 60 * 1000;

/// One conversation's part of a Sync answer.
#[derive(Debug)]
pub struct Diff {
    pub conversation_id: ConvId,
    pub head_seq: i64,
    pub events: Vec<LogEvent>,
    pub has_more: bool,
}

/// A Sync answer.
#[derive(Debug, Default)]
pub struct SyncOut {
    pub epoch: i64,
    pub resync_required: bool,
    pub user_seq: i64,
    pub user_updates: Vec<UserUpdateRec>,
    pub has_more_updates: bool,
    pub diffs: Vec<Diff>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    writer: Writer,
    epoch: i64,
    max_text_bytes: usize,
    /// Messages per minute per sender on this node (§26.8).
    send_rate: send_rate::SendRate,
    /// Reports per account, one bucket per reporter in the store, so exact across nodes (§27.1).
    report_rate: crate::ratelimit::Gcra,
}

/// Cheap-clone handle to the conversations service.
#[derive(Clone, Debug)]
pub struct Conversations(Arc<Inner>);

/// Validates message text: UTF-8 (guaranteed by protobuf), non-empty, bounded, no NUL.
fn check_text(field: &'static str, text: &str, max: usize) -> Result<(), ServerError> {
    if text.trim().is_empty() {
        return Err(ServerError::invalid(field, "a message needs some text"));
    }
    if text.len() > max {
        return Err(ServerError::invalid(field, format!("at most {max} bytes")));
    }
    if text.contains('\0') {
        return Err(ServerError::invalid(field, "NUL characters are not allowed"));
    }
    Ok(())
}

/// §13.2: when the sender wrote a message, as stored: 0 stays 0 (not given); anything else is
/// clamped to `[now_ms - 24 h, now_ms]` (Unix milliseconds), so a clock ahead of the server's
/// yields the receive time and one far behind yields 24 h before it.
fn written_at(given: u64, now_ms: i64) -> i64 {
    if given == 0 {
        return 0;
    }
    let given = i64::try_from(given).unwrap_or(i64::MAX);
    given.clamp(now_ms.saturating_sub(MAX_WRITTEN_AGE_MS).max(1), now_ms.max(1))
}

/// §13.2: a client_msg_id is a UUID (RFC 9562) in its 36-character hyphenated form, not nil or
/// max; returned lower-cased, so one key has one spelling.
fn idempotency_key(key: &str) -> Result<String, ServerError> {
    const FIELD: &str = "send_message.client_msg_id";
    let uuid = (key.len() == 36).then(|| uuid::Uuid::try_parse(key).ok()).flatten();
    match uuid {
        Some(u) if !u.is_nil() && !u.is_max() => Ok(u.hyphenated().to_string()),
        _ => Err(ServerError::invalid(FIELD, "a random UUID in its 36-character form (RFC 9562), e.g. from UUIDv4")),
    }
}

impl Conversations {
    /// The service over `store`, writing through `writer` (the batched writer every service
    /// shares), with `limits`' longest text, send rate per account (0: unlimited; an
    /// administrator's override replaces it for one account, §26.8) and report rate per account
    /// (§27.1).
    pub async fn new(
        store: Arc<dyn Store>,
        writer: Writer,
        limits: &crate::config::Limits,
    ) -> Result<Self, ServerError> {
        let epoch = store.instance().await?.epoch;
        let send_rate = send_rate::SendRate::new(limits.messages_per_minute);
        let report_rate = crate::ratelimit::Gcra::new(limits.reports_per_account);
        let max_text_bytes = limits.max_message_text_bytes as usize;
        Ok(Self(Arc::new(Inner { store, writer, epoch, max_text_bytes, send_rate, report_rate })))
    }

    fn store(&self) -> &dyn Store {
        self.0.store.as_ref()
    }

    /// A conversation the user may see: a member, or anyone for a channel.
    async fn visible(&self, user: UserId, conv: ConvId) -> Result<ConvView, ServerError> {
        match self.store().conversation(user, conv).await? {
            Some(c) if c.my_role.is_some() || c.kind == ConvKind::Channel => Ok(c),
            _ => Err(not_found()),
        }
    }

    async fn require_member(&self, user: UserId, conv: ConvId) -> Result<(), ServerError> {
        if self.store().is_member(conv, user).await? { Ok(()) } else { Err(not_found()) }
    }

    /// §12.2
    pub async fn create(
        &self,
        auth: &Caller,
        kind: Option<ConvKind>,
        title: &str,
        description: &str,
        member_ids: &[u64],
    ) -> Result<ConvView, ServerError> {
        let kind = kind.ok_or_else(|| ServerError::invalid("create_conversation.kind", "required"))?;
        if kind != ConvKind::Direct {
            let n = title.chars().count();
            if !(1..=128).contains(&n) || title.chars().any(char::is_control) {
                return Err(ServerError::invalid("create_conversation.title", "1 to 128 characters"));
            }
        }
        if description.chars().count() > 1024 {
            return Err(ServerError::invalid("create_conversation.description", "at most 1024 characters"));
        }
        if member_ids.len() > 256 {
            return Err(ServerError::invalid("create_conversation.member_ids", "at most 256 members at once"));
        }
        let members =
            member_ids.iter().map(|u| id("create_conversation.member_ids", *u)).collect::<Result<Vec<_>, _>>()?;
        let title = if kind == ConvKind::Direct { "" } else { title };
        let applied = self
            .0
            .writer
            .submit(WriteOp::Create {
                kind,
                title: title.to_string(),
                description: description.to_string(),
                creator: auth.user_id,
                members,
                now_ms: now_ms(),
            })
            .await?;
        let Some(OpResult::Conversation(conv)) = applied.result else {
            return Err(ServerError::Internal("create returned no conversation".into()));
        };
        self.visible(auth.user_id, conv).await
    }

    /// §12.1
    pub async fn get(&self, auth: &Caller, conv: u64) -> Result<ConvView, ServerError> {
        self.visible(auth.user_id, id("conversation_id", conv)?).await
    }

    /// §12.3: pages by (last activity, id), newest first. The token is "ms:id".
    pub async fn list(&self, auth: &Caller, token: &str, limit: u32) -> Result<(Vec<ConvView>, String), ServerError> {
        let limit = page_limit(limit, 50, 100);
        let before =
            if token.is_empty() {
                None
            } else {
                let parsed = token.split_once(':').and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
                Some(parsed.ok_or_else(|| {
                    ServerError::invalid("list_conversations.page_token", "not a token from this server")
                })?)
            };
        let list = self.store().list_conversations(auth.user_id, before, limit + 1).await?;
        let more = list.len() > limit as usize;
        let mut list = list;
        list.truncate(limit as usize);
        let next = match (more, list.last()) {
            (true, Some(c)) => format!("{}:{}", c.last_activity_ms, c.id),
            _ => String::new(),
        };
        Ok((list, next))
    }

    /// §12.4
    pub async fn join(&self, auth: &Caller, conv: u64) -> Result<ConvView, ServerError> {
        let conv = id("join_channel.conversation_id", conv)?;
        self.0.writer.submit(WriteOp::Join { conversation_id: conv, user: auth.user_id, now_ms: now_ms() }).await?;
        self.visible(auth.user_id, conv).await
    }

    /// §12.4
    pub async fn leave(&self, auth: &Caller, conv: u64) -> Result<(), ServerError> {
        let conv = id("leave_conversation.conversation_id", conv)?;
        self.0.writer.submit(WriteOp::Leave { conversation_id: conv, user: auth.user_id, now_ms: now_ms() }).await?;
        Ok(())
    }

    fn seq_of(applied: Outcome) -> Result<i64, ServerError> {
        match applied.result {
            Some(OpResult::Seq(s)) => Ok(s),
            _ => Err(ServerError::Internal("write returned no seq".into())),
        }
    }

    /// §12.5
    pub async fn add_members(&self, auth: &Caller, conv: u64, users: &[u64]) -> Result<i64, ServerError> {
        let conversation_id = id("add_members.conversation_id", conv)?;
        if users.is_empty() || users.len() > 256 {
            return Err(ServerError::invalid("add_members.user_ids", "1 to 256 users"));
        }
        let users = users.iter().map(|u| id("add_members.user_ids", *u)).collect::<Result<Vec<_>, _>>()?;
        let op = WriteOp::AddMembers { conversation_id, actor: auth.user_id, users, now_ms: now_ms() };
        Self::seq_of(self.0.writer.submit(op).await?)
    }

    /// §12.5
    pub async fn remove_member(&self, auth: &Caller, conv: u64, user: u64) -> Result<i64, ServerError> {
        let op = WriteOp::RemoveMember {
            conversation_id: id("remove_member.conversation_id", conv)?,
            actor: auth.user_id,
            user: id("remove_member.user_id", user)?,
            now_ms: now_ms(),
        };
        Self::seq_of(self.0.writer.submit(op).await?)
    }

    /// §12.6
    pub async fn members(
        &self,
        auth: &Caller,
        conv: u64,
        after: u64,
        limit: u32,
    ) -> Result<Slice<MemberRec>, ServerError> {
        let conv = id("list_members.conversation_id", conv)?;
        self.visible(auth.user_id, conv).await?;
        let limit = page_limit(limit, 100, 500);
        Ok(Slice::cut(self.store().members(conv, UserId(after.min(i64::MAX as u64) as i64), limit + 1).await?, limit))
    }

    /// §12.7
    pub async fn discover(
        &self,
        auth: &Caller,
        query: &str,
        after: u64,
        limit: u32,
    ) -> Result<Slice<ConvView>, ServerError> {
        if query.chars().count() > 128 {
            return Err(ServerError::invalid("discover_channels.query", "at most 128 characters"));
        }
        let limit = page_limit(limit, 50, 100);
        let list =
            self.store().discover(auth.user_id, query, ConvId(after.min(i64::MAX as u64) as i64), limit + 1).await?;
        Ok(Slice::cut(list, limit))
    }

    /// §13.2: idempotent per (sender, client_msg_id), whatever the session; acknowledged after
    /// commit.
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &self,
        auth: &Caller,
        conv: u64,
        client_msg_id: &str,
        text: &str,
        reply_to: u64,
        mentions: &[u64],
        attachments: Vec<AttachmentRec>,
        written_at_ms: u64,
    ) -> Result<Sent, ServerError> {
        let conversation_id = id("send_message.conversation_id", conv)?;
        let client_msg_id = idempotency_key(client_msg_id)?;
        // A message of attachments only needs no text (§22.8).
        if attachments.is_empty() || !text.is_empty() {
            check_text("send_message.text", text, self.0.max_text_bytes)?;
        }
        if mentions.len() > 64 {
            return Err(ServerError::invalid("send_message.mention_user_ids", "at most 64 mentions"));
        }
        let mut mentions =
            mentions.iter().map(|u| id("send_message.mention_user_ids", *u)).collect::<Result<Vec<_>, _>>()?;
        mentions.sort_unstable();
        mentions.dedup();
        let reply_to = if reply_to == 0 { None } else { Some(id("send_message.reply_to_message_id", reply_to)?) };
        // §26.8: every send counts but the retry of a message already sent (refunded below).
        self.0.send_rate.take(self.store(), auth.user_id).await?;
        let now_ms = now_ms();
        let op = WriteOp::Send {
            conversation_id,
            sender: auth.user_id,
            session_id: auth.session_id.clone(),
            client_msg_id,
            text: text.to_string(),
            reply_to,
            mentions,
            attachments,
            written_at_ms: written_at(written_at_ms, now_ms),
            now_ms,
        };
        match self.0.writer.submit(op).await?.result {
            Some(OpResult::Sent { message_id, seq, created_at_ms, duplicate }) => {
                if duplicate {
                    self.0.send_rate.refund(auth.user_id);
                }
                Ok(Sent { message_id, seq, created_at_ms, duplicate })
            }
            _ => Err(ServerError::Internal("send returned no message".into())),
        }
    }

    /// §13.3
    pub async fn edit(&self, auth: &Caller, conv: u64, message_id: u64, text: &str) -> Result<i64, ServerError> {
        check_text("edit_message.text", text, self.0.max_text_bytes)?;
        let op = WriteOp::Edit {
            conversation_id: id("edit_message.conversation_id", conv)?,
            actor: auth.user_id,
            message_id: id("edit_message.message_id", message_id)?,
            text: text.to_string(),
            now_ms: now_ms(),
        };
        Self::seq_of(self.0.writer.submit(op).await?)
    }

    /// §13.3
    pub async fn delete(&self, auth: &Caller, conv: u64, message_id: u64) -> Result<i64, ServerError> {
        let op = WriteOp::Delete {
            conversation_id: id("delete_message.conversation_id", conv)?,
            actor: auth.user_id,
            message_id: id("delete_message.message_id", message_id)?,
            now_ms: now_ms(),
        };
        Self::seq_of(self.0.writer.submit(op).await?)
    }

    /// §13.4: members only.
    pub async fn history(
        &self,
        auth: &Caller,
        conv: u64,
        before: u64,
        after: u64,
        limit: u32,
    ) -> Result<Slice<MessageRec>, ServerError> {
        let conv = id("get_history.conversation_id", conv)?;
        if before != 0 && after != 0 {
            return Err(ServerError::invalid("get_history.after_seq", "give before_seq or after_seq, not both"));
        }
        if limit > MAX_HISTORY {
            return Err(ServerError::invalid("get_history.limit", "at most 200"));
        }
        let limit = if limit == 0 { 50 } else { limit };
        self.require_member(auth.user_id, conv).await?;
        let before = (before != 0).then_some(before.min(i64::MAX as u64) as i64);
        let after = (after != 0).then_some(after.min(i64::MAX as u64) as i64);
        let mut page = self.store().history(conv, auth.user_id, before, after, limit + 1).await?;
        // Oldest first: going back in time, the extra row is the oldest.
        if after.is_none() && page.len() > limit as usize {
            page.remove(0);
            return Ok(Slice { items: page, has_more: true });
        }
        Ok(Slice::cut(page, limit))
    }

    /// §14.3: everything after the client's cursors, per conversation, bounded.
    pub async fn sync(
        &self,
        auth: &Caller,
        epoch: i64,
        user_seq: u64,
        cursors: &[(u64, u64)],
        limit: u32,
    ) -> Result<SyncOut, ServerError> {
        if cursors.len() > 10_000 {
            return Err(ServerError::invalid("sync.conversations", "at most 10000 cursors"));
        }
        let limit = page_limit(limit, 100, 1000);
        let mut out = SyncOut { epoch: self.0.epoch, ..Default::default() };
        if epoch != 0 && epoch != self.0.epoch {
            out.resync_required = true;
            return Ok(out);
        }
        let after = user_seq.min(i64::MAX as u64) as i64;
        let (updates, head) = self.store().user_updates_after(auth.user_id, after, MAX_USER_UPDATES).await?;
        out.user_seq = head;
        out.has_more_updates = updates.last().is_some_and(|u| u.user_seq < head);
        out.user_updates = updates;
        let cursors: HashMap<ConvId, i64> =
            cursors.iter().map(|(c, s)| (ConvId(*c as i64), (*s).min(i64::MAX as u64) as i64)).collect();
        let mut budget = SYNC_BYTES;
        let mut heads = self.store().heads(auth.user_id).await?;
        heads.sort_unstable();
        for (conv, head) in heads {
            let from = cursors.get(&conv).copied().unwrap_or(0);
            if head <= from {
                continue;
            }
            let mut events = Vec::new();
            if budget > 0 {
                for e in self.store().events_after(conv, from, limit).await? {
                    let size = 64
                        + match &e.body {
                            LogBody::Posted(m) => m.text.len(),
                            LogBody::Edited { text, .. } => text.len(),
                            _ => 32,
                        };
                    if size > budget && !events.is_empty() {
                        budget = 0;
                        break;
                    }
                    budget = budget.saturating_sub(size);
                    events.push(e);
                }
            }
            let last = events.last().map_or(from, |e| e.seq);
            out.diffs.push(Diff { conversation_id: conv, head_seq: head, events, has_more: last < head });
        }
        Ok(out)
    }

    /// §14.4: this device applied the conversation up to `seq`; may move the delivered watermark.
    pub async fn ack(&self, auth: &Caller, conv: u64, seq: u64) -> Result<(), ServerError> {
        let op = WriteOp::Ack {
            conversation_id: id("ack.conversation_id", conv)?,
            user: auth.user_id,
            session_id: auth.session_id.clone(),
            seq: seq.min(i64::MAX as u64) as i64,
        };
        self.0.writer.submit(op).await?;
        Ok(())
    }

    /// §15.1: moves the caller's read watermark forward; returns it.
    pub async fn mark_read(&self, auth: &Caller, conv: u64, seq: u64) -> Result<i64, ServerError> {
        let op = WriteOp::MarkRead {
            conversation_id: id("mark_read.conversation_id", conv)?,
            user: auth.user_id,
            seq: seq.min(i64::MAX as u64) as i64,
            now_ms: now_ms(),
        };
        Self::seq_of(self.0.writer.submit(op).await?)
    }

    /// §15.2: each other member's state for one of the caller's messages.
    pub async fn receipts(&self, auth: &Caller, conv: u64, message_id: u64) -> Result<Vec<Receipt>, ServerError> {
        let conv = id("get_receipts.conversation_id", conv)?;
        self.require_member(auth.user_id, conv).await?;
        let m = self
            .store()
            .message(conv, id("get_receipts.message_id", message_id)?)
            .await?
            .ok_or_else(|| ServerError::NotFound("no such message".into()))?;
        if m.sender_id != auth.user_id {
            return Err(ServerError::PermissionDenied("receipts are shown to the sender only".into()));
        }
        Ok(self
            .store()
            .watermarks(conv)
            .await?
            .into_iter()
            .filter(|w| w.user_id != auth.user_id)
            .map(|w| {
                let state = if w.shares_read && w.read_seq >= m.seq {
                    ReceiptState::Read
                } else if w.delivered_seq.max(w.read_seq) >= m.seq {
                    ReceiptState::Delivered
                } else {
                    ReceiptState::Sent
                };
                Receipt { user_id: w.user_id, state }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_WRITTEN_AGE_MS, written_at};

    #[test]
    fn written_at_is_clamped_to_the_day_before_the_receive_time() {
        let now = 1_700_000_000_000;
        assert_eq!(written_at(0, now), 0, "not given");
        assert_eq!(written_at((now - 600_000) as u64, now), now - 600_000, "ten minutes ago, as given");
        assert_eq!(written_at((now - 2 * MAX_WRITTEN_AGE_MS) as u64, now), now - MAX_WRITTEN_AGE_MS);
        assert_eq!(written_at((now + 5_000) as u64, now), now, "the future is now");
        assert_eq!(written_at(u64::MAX, now), now);
        assert_eq!(written_at(1, now), now - MAX_WRITTEN_AGE_MS);
    }
}
