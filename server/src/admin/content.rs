//! Deleting accounts, messages and conversations as an administrator (docs/protocol.md §26.4,
//! §26.6), through the batched writer so members see it as any deletion (§21). Each write reads
//! the administrator flag again in its transaction and records its audit entry there.

use confab_protocol::v1;

use super::Acting;
use crate::access::id;
use crate::bus::to_completion;
use crate::error::ServerError;
use crate::store::{AdminOrigin, AuditAction, ConvId, MessageId, NewAudit, OpResult, UserId, WriteOp, now_ms};

/// Messages one erase step deletes (one write, one transaction): an erase is as many steps as it
/// takes, so no transaction grows with the account's history.
const ERASE_STEP: u32 = 500;

impl Acting {
    /// This administrator, for the writes that record them.
    fn origin(&self) -> AdminOrigin {
        AdminOrigin { admin: self.actor, client_addr: self.client_addr.clone() }
    }

    /// §26.4: deletes the account as DeleteAccount does (§11.11: its sessions end with reason
    /// ACCOUNT_DELETED, it leaves its groups and channels), audited `account_deleted` with the
    /// administrator as actor. With `erase`, then deletes every message it sent, 500 per write
    /// (each as AdminDeleteMessage deletes it), and records `account_erased` with their number.
    /// Runs to the end even if the administrator's connection goes away.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a missing id; `NOT_FOUND` for no such account, or one deleted
    /// already without `erase` (with `erase`, a deleted account's remaining messages are
    /// erased: a retry finishes an erase a failure stopped); `FAILED_PRECONDITION` for the
    /// administrator's own account.
    pub async fn delete_user(&self, r: v1::AdminDeleteUser) -> Result<v1::AdminDeleteUserResult, ServerError> {
        let user: UserId = id("admin_delete_user.user_id", r.user_id)?;
        if user == self.actor {
            return Err(ServerError::FailedPrecondition("an administrator cannot delete their own account".into()));
        }
        let (admin, by) = (self.admin.clone(), self.origin());
        to_completion(async move {
            match admin.0.auth.delete_user(user, Some(by.clone())).await {
                Ok(()) => {}
                // Deleted already (by itself, or by an erase that a failure stopped): with
                // erase, its messages are erased now; without, NOT_FOUND.
                Err(ServerError::NotFound(_))
                    if r.erase && admin.0.store.user(user).await?.is_some_and(|u| u.deleted) => {}
                Err(e) => return Err(e),
            }
            if !r.erase {
                return Ok(v1::AdminDeleteUserResult { messages_erased: 0 });
            }
            let (mut erased, mut after) = (0i64, None);
            loop {
                let op = WriteOp::EraseMessages {
                    user,
                    after: after.take(),
                    limit: ERASE_STEP,
                    by: by.clone(),
                    now_ms: now_ms(),
                };
                match admin.0.writer.submit(op).await?.result {
                    Some(OpResult::Erased { messages_deleted: 0, .. }) => break,
                    Some(OpResult::Erased { messages_deleted, last_key }) => {
                        erased += messages_deleted;
                        after = last_key;
                    }
                    _ => return Err(ServerError::Internal("erase returned no count".into())),
                }
            }
            let entry = NewAudit {
                actor: Some(by.admin),
                target_user: Some(user),
                after: serde_json::json!({ "messages": erased }).to_string(),
                client_addr: by.client_addr.clone(),
                ..NewAudit::new(AuditAction::AccountErased, now_ms())
            };
            admin.0.store.append_audit(&entry).await?;
            Ok(v1::AdminDeleteUserResult { messages_erased: erased.max(0) as u64 })
        })
        .await
    }

    /// §26.6: deletes any message of any conversation, as a moderator's DeleteMessage does
    /// (§13.3): members get MessageDeleted (its actor the administrator, who need not be a
    /// member). Audited `message_deleted` with the sender as target user.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a missing id; `NOT_FOUND` for no such conversation (or one an
    /// administrator deleted) or no such message in it. A message deleted already answers seq 0.
    pub async fn delete_message(&self, r: v1::AdminDeleteMessage) -> Result<v1::AdminDeleteMessageResult, ServerError> {
        let op = WriteOp::AdminDeleteMessage {
            conversation_id: id::<ConvId>("admin_delete_message.conversation_id", r.conversation_id)?,
            message_id: id::<MessageId>("admin_delete_message.message_id", r.message_id)?,
            by: self.origin(),
            now_ms: now_ms(),
        };
        match self.admin.0.writer.submit(op).await?.result {
            Some(OpResult::Seq(seq)) => Ok(v1::AdminDeleteMessageResult { seq: seq.max(0) as u64 }),
            _ => Err(ServerError::Internal("delete returned no seq".into())),
        }
    }

    /// §26.6: deletes a conversation: every member removed (each gets MemberRemoved and
    /// RemovedFromConversation), every message deleted, and from then on it is `NOT_FOUND` to
    /// everyone. Audited `conversation_deleted` with the counts.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a missing id; `NOT_FOUND` for no such conversation (deleted
    /// already included).
    pub async fn delete_conversation(
        &self,
        r: v1::AdminDeleteConversation,
    ) -> Result<v1::AdminDeleteConversationResult, ServerError> {
        let op = WriteOp::AdminDeleteConversation {
            conversation_id: id::<ConvId>("admin_delete_conversation.conversation_id", r.conversation_id)?,
            by: self.origin(),
            now_ms: now_ms(),
        };
        match self.admin.0.writer.submit(op).await?.result {
            Some(OpResult::Cleared { members_removed, messages_deleted }) => Ok(v1::AdminDeleteConversationResult {
                members_removed: u32::try_from(members_removed.max(0)).unwrap_or(u32::MAX),
                messages_deleted: messages_deleted.max(0) as u64,
            }),
            _ => Err(ServerError::Internal("delete returned no counts".into())),
        }
    }
}
