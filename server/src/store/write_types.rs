//! The batched writer's vocabulary (docs/architecture.md "The writer"): a durable change
//! ([`WriteOp`]), its outcome ([`OpResult`], [`OpError`]) and what a committed batch produced
//! ([`Applied`]: log entries, notifications, receipts, audit entries, cascades).

use super::conv_types::{
    CallRecord, ConvId, ConvKind, LogEvent, MessageId, NotificationRec, ReceiptRec, Role, UserUpdateRec,
};
use super::media_types::AttachmentRec;
use super::types::UserId;

/// A durable change, applied by the batched writer.
#[derive(Clone, Debug)]
pub enum WriteOp {
    Create {
        kind: ConvKind,
        title: String,
        description: String,
        creator: UserId,
        members: Vec<UserId>,
        now_ms: i64,
    },
    Join {
        conversation_id: ConvId,
        user: UserId,
        now_ms: i64,
    },
    Leave {
        conversation_id: ConvId,
        user: UserId,
        now_ms: i64,
    },
    AddMembers {
        conversation_id: ConvId,
        actor: UserId,
        users: Vec<UserId>,
        now_ms: i64,
    },
    RemoveMember {
        conversation_id: ConvId,
        actor: UserId,
        user: UserId,
        now_ms: i64,
    },
    Send {
        conversation_id: ConvId,
        sender: UserId,
        session_id: String,
        client_msg_id: String,
        text: String,
        reply_to: Option<MessageId>,
        mentions: Vec<UserId>,
        /// Resolved by the media service: each readable by the sender.
        attachments: Vec<AttachmentRec>,
        /// When the sender wrote it, already clamped to `[now_ms - 24 h, now_ms]` (§13.2); 0 when
        /// not given.
        written_at_ms: i64,
        now_ms: i64,
    },
    Edit {
        conversation_id: ConvId,
        actor: UserId,
        message_id: MessageId,
        text: String,
        now_ms: i64,
    },
    Delete {
        conversation_id: ConvId,
        actor: UserId,
        message_id: MessageId,
        now_ms: i64,
    },
    Update {
        conversation_id: ConvId,
        actor: UserId,
        title: Option<String>,
        description: Option<String>,
        photo_ref: Option<String>,
        announcement_only: Option<bool>,
        now_ms: i64,
    },
    SetRole {
        conversation_id: ConvId,
        actor: UserId,
        user: UserId,
        role: Role,
        now_ms: i64,
    },
    TransferOwnership {
        conversation_id: ConvId,
        actor: UserId,
        user: UserId,
        now_ms: i64,
    },
    Pin {
        conversation_id: ConvId,
        actor: UserId,
        message_id: MessageId,
        pin: bool,
        now_ms: i64,
    },
    React {
        conversation_id: ConvId,
        actor: UserId,
        message_id: MessageId,
        emoji: String,
        add: bool,
        now_ms: i64,
    },
    MarkRead {
        conversation_id: ConvId,
        user: UserId,
        seq: i64,
        now_ms: i64,
    },
    Ack {
        conversation_id: ConvId,
        user: UserId,
        session_id: String,
        seq: i64,
    },
    /// A call ended: a log entry by the caller, and a missed-call notification for `missed_by`.
    CallEnded {
        conversation_id: ConvId,
        caller: UserId,
        record: CallRecord,
        missed_by: Vec<UserId>,
        now_ms: i64,
    },
    /// Account deletion (§11.11, §21): the tombstone, revoked sessions, and every group and
    /// channel left as LeaveConversation leaves it. Applying it again changes nothing more.
    /// `by`: a server administrator's deletion (§26.4): refused for an account already deleted
    /// or the administrator's own; audited with the administrator as the actor.
    DeleteAccount {
        user: UserId,
        now_ms: i64,
        by: Option<AdminOrigin>,
    },
    /// §26.6: a server administrator deletes any message of any live conversation, as a
    /// moderator's deletion does (§13.3); the log entry's actor is the administrator.
    AdminDeleteMessage {
        conversation_id: ConvId,
        message_id: MessageId,
        by: AdminOrigin,
        now_ms: i64,
    },
    /// §26.6: a server administrator deletes a conversation: every member removed, every
    /// message deleted, the conversation hidden from then on.
    AdminDeleteConversation {
        conversation_id: ConvId,
        by: AdminOrigin,
        now_ms: i64,
    },
    /// §26.4 erase: deletes at most `limit` live messages the deleted account `user` sent, in
    /// idempotency-key order after `after` (`None`: from the first), each as AdminDeleteMessage
    /// does ([`OpResult::Erased`]; 0 deleted: none left).
    EraseMessages {
        user: UserId,
        after: Option<String>,
        limit: u32,
        by: AdminOrigin,
        now_ms: i64,
    },
    /// §27.1: `reporter` reports a message; the conversation's moderators and the server's
    /// administrators are told (§27.2). Reporting it again answers the same report.
    ReportMessage {
        conversation_id: ConvId,
        message_id: MessageId,
        reporter: UserId,
        reason: super::report_types::ReportReason,
        note: String,
        now_ms: i64,
    },
    /// §27.3: `actor` resolves an open report of `conversation_id` (the report's, read before)
    /// with `action`; the reporter is told (§27.4) and the resolution is audited.
    ResolveReport {
        report_id: super::report_types::ReportId,
        conversation_id: ConvId,
        /// The reported message's sender and the reporter (the report's, read before).
        sender: UserId,
        reporter: UserId,
        actor: UserId,
        action: super::report_types::ReportAction,
        note: String,
        /// The actor's client address, for the audit entry.
        client_addr: String,
        now_ms: i64,
    },
}

/// A server administrator acting through the writer (§26): re-checked in the write's
/// transaction, and recorded as the audit entry's actor and address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminOrigin {
    pub admin: UserId,
    /// The administrator's client address (IP), for the audit entry.
    pub client_addr: String,
}

/// What an applied op returns to its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    Conversation(ConvId),
    Sent {
        message_id: MessageId,
        seq: i64,
        created_at_ms: i64,
        duplicate: bool,
    },
    Seq(i64),
    Done,
    /// §26.6: what deleting a conversation took away.
    Cleared {
        members_removed: i64,
        messages_deleted: i64,
    },
    /// §26.4: messages an erase step deleted, and the idempotency key to go on after.
    Erased {
        messages_deleted: i64,
        last_key: Option<String>,
    },
    /// §27.1: the report made, or the earlier one of the same reporter and message.
    Reported(super::report_types::ReportId),
    /// §27.3: the report as resolved.
    Resolved(Box<super::report_types::ReportRec>),
}

/// An applied op: its result, and what to deliver live.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    pub result: Option<OpResult>,
    pub events: Vec<LogEvent>,
    /// Who receives `events` live: the conversation's members (and a leaver).
    pub audience: Vec<UserId>,
    pub user_updates: Vec<UserUpdateRec>,
    /// Receipt watermark changes, delivered to `audience`.
    pub receipts: Vec<ReceiptRec>,
    /// New inbox entries, each delivered to its user.
    pub notifications: Vec<NotificationRec>,
    /// Sessions the op revoked (account deletion), for the caller to end live.
    pub revoked_sessions: Vec<String>,
    /// Changes in other conversations caused by this op (the groups and channels an account
    /// deletion leaves), each with its own events, audience and user-log entries.
    pub cascade: Vec<Applied>,
    /// Audit entries the op records; the batch appends them all last, just before its commit.
    pub audit: Vec<super::audit_types::NewAudit>,
}

impl Applied {
    /// The audit entries this write records, cascades included, in order.
    pub fn audit_entries(&self) -> Vec<super::audit_types::NewAudit> {
        let mut out = self.audit.clone();
        for c in &self.cascade {
            out.extend(c.audit_entries());
        }
        out
    }

    /// The conversations this write added log entries to, cascades included, each once, in the
    /// order they first appear.
    pub fn conversations(&self) -> Vec<ConvId> {
        fn walk(a: &Applied, out: &mut Vec<ConvId>) {
            for e in &a.events {
                if !out.contains(&e.conversation_id) {
                    out.push(e.conversation_id);
                }
            }
            for c in &a.cascade {
                walk(c, out);
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }
}

/// Why one op of a batch was refused (the rest of the batch is unaffected).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpError {
    NotFound(&'static str),
    PermissionDenied(&'static str),
    FailedPrecondition(&'static str),
    Invalid(&'static str, &'static str),
}
