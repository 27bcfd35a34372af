//! Conversation settings, roles, ownership, pins and reactions (docs/protocol.md §12.8, §13.5,
//! §13.6): the requests that change a conversation's state without posting a message.

use super::{Conversations, canonical_emoji, id};
use crate::error::ServerError;
use crate::session::Caller;
use crate::store::{ConvView, MessageRec, Role, WriteOp, now_ms};

impl Conversations {
    /// §12.8: settings; owner and admins.
    pub async fn update(
        &self,
        auth: &Caller,
        conv: u64,
        title: Option<String>,
        description: Option<String>,
        photo_ref: Option<String>,
        announcement_only: Option<bool>,
    ) -> Result<ConvView, ServerError> {
        let conversation_id = id("update_conversation.conversation_id", conv)?;
        if let Some(t) = &title {
            let n = t.chars().count();
            if !(1..=128).contains(&n) || t.chars().any(char::is_control) {
                return Err(ServerError::invalid("update_conversation.title", "1 to 128 characters"));
            }
        }
        if description.as_ref().is_some_and(|d| d.chars().count() > 1024) {
            return Err(ServerError::invalid("update_conversation.description", "at most 1024 characters"));
        }
        if photo_ref.as_ref().is_some_and(|p| p.len() > 256) {
            return Err(ServerError::invalid("update_conversation.photo_ref", "at most 256 bytes"));
        }
        let op = WriteOp::Update {
            conversation_id,
            actor: auth.user_id,
            title,
            description,
            photo_ref,
            announcement_only,
            now_ms: now_ms(),
        };
        self.0.writer.submit(op).await?;
        self.visible(auth.user_id, conversation_id).await
    }

    /// §12.8
    pub async fn set_role(&self, auth: &Caller, conv: u64, user: u64, role: Option<Role>) -> Result<i64, ServerError> {
        let Some(role @ (Role::Admin | Role::Moderator | Role::Member)) = role else {
            return Err(ServerError::invalid(
                "set_role.role",
                "ADMIN, MODERATOR or MEMBER (ownership: TransferOwnership)",
            ));
        };
        let op = WriteOp::SetRole {
            conversation_id: id("set_role.conversation_id", conv)?,
            actor: auth.user_id,
            user: id("set_role.user_id", user)?,
            role,
            now_ms: now_ms(),
        };
        Self::seq_of(self.0.writer.submit(op).await?)
    }

    /// §12.8
    pub async fn transfer_ownership(&self, auth: &Caller, conv: u64, user: u64) -> Result<i64, ServerError> {
        let op = WriteOp::TransferOwnership {
            conversation_id: id("transfer_ownership.conversation_id", conv)?,
            actor: auth.user_id,
            user: id("transfer_ownership.user_id", user)?,
            now_ms: now_ms(),
        };
        Self::seq_of(self.0.writer.submit(op).await?)
    }

    /// §13.6
    pub async fn pin(&self, auth: &Caller, conv: u64, message_id: u64, pin: bool) -> Result<i64, ServerError> {
        let op = WriteOp::Pin {
            conversation_id: id("conversation_id", conv)?,
            actor: auth.user_id,
            message_id: id("message_id", message_id)?,
            pin,
            now_ms: now_ms(),
        };
        Self::seq_of(self.0.writer.submit(op).await?)
    }

    /// §13.6: members only.
    pub async fn pins(&self, auth: &Caller, conv: u64) -> Result<Vec<MessageRec>, ServerError> {
        let conv = id("list_pins.conversation_id", conv)?;
        self.require_member(auth.user_id, conv).await?;
        Ok(self.store().pins(conv, auth.user_id).await?)
    }

    /// §13.5
    pub async fn react(
        &self,
        auth: &Caller,
        conv: u64,
        message_id: u64,
        emoji: &str,
        add: bool,
    ) -> Result<i64, ServerError> {
        let emoji = canonical_emoji(if add { "react.emoji" } else { "unreact.emoji" }, emoji)?;
        let op = WriteOp::React {
            conversation_id: id("conversation_id", conv)?,
            actor: auth.user_id,
            message_id: id("message_id", message_id)?,
            emoji: emoji.to_string(),
            add,
            now_ms: now_ms(),
        };
        Self::seq_of(self.0.writer.submit(op).await?)
    }
}
