//! Domain → wire conversions, in one module: accounts and sessions, conversations, messages, log
//! entries, receipts and notifications (used by handlers and by live delivery, which encodes each
//! event once), and the wire numbers of the domain enums. The services' own result types are
//! converted by the child `results`, one layer up. Calls and the SFU still build their `v1`
//! events themselves.

pub mod results;

use bytes::Bytes;
use confab_protocol::frames::{encode_server, event_frame};
use confab_protocol::v1::{self, conversation_event::Body, event, user_update};

use crate::session::Caller;
use crate::store::{
    AttachmentRec, AuditRec, ConvId, ConvKind, ConvView, LogBody, LogEvent, MemberRec, MessageId, MessageRec,
    NotificationRec, ReceiptRec, ReportRec, RevokeReason, Role, SessionRecord, UpdateKind, User, UserId, UserUpdateRec,
};

/// A user id as the wire carries it.
pub fn user(id: UserId) -> u64 {
    id.0 as u64
}

/// A conversation id as the wire carries it.
pub fn conv(id: ConvId) -> u64 {
    id.0 as u64
}

/// A message id as the wire carries it.
pub fn msg_id(id: MessageId) -> u64 {
    id.0 as u64
}

/// A sequence number (a log position or a read marker) as the wire carries it.
pub fn seq(seq: i64) -> u64 {
    seq as u64
}

/// A count as the wire carries it, clamped to `u32`.
pub fn count(n: i64) -> u32 {
    n.clamp(0, i64::from(u32::MAX)) as u32
}

/// A requested conversation kind (`ConversationKind`); `None` for UNSPECIFIED or unknown.
pub fn conv_kind(kind: i32) -> Option<ConvKind> {
    ConvKind::try_from(kind).ok()
}

/// A requested role (`MemberRole`); `None` for UNSPECIFIED or unknown.
pub fn role(role: i32) -> Option<Role> {
    Role::try_from(role).ok()
}

/// The answer to SendMessage (§13.2).
pub fn sent(s: &crate::page::Sent) -> v1::SendMessageResult {
    v1::SendMessageResult {
        message_id: msg_id(s.message_id),
        seq: s.seq as u64,
        created_at_ms: s.created_at_ms.max(0) as u64,
        duplicate: s.duplicate,
    }
}

/// A message; `client_msg_id` is shown only to the sender.
pub fn message(m: &MessageRec, viewer: UserId) -> v1::Message {
    v1::Message {
        message_id: msg_id(m.id),
        conversation_id: conv(m.conversation_id),
        seq: m.seq as u64,
        sender_id: user(m.sender_id),
        text: m.text.clone(),
        reply_to_message_id: msg_id(m.reply_to.unwrap_or_default()),
        mention_user_ids: m.mentions.iter().map(|u| user(*u)).collect(),
        created_at_ms: m.created_at_ms as u64,
        edited_at_ms: m.edited_at_ms.unwrap_or(0) as u64,
        deleted: m.deleted,
        client_msg_id: if m.sender_id == viewer { m.client_msg_id.clone() } else { String::new() },
        reactions: m
            .reactions
            .iter()
            .map(|r| v1::ReactionCount { emoji: r.emoji.clone(), count: r.count as u32, me: r.mine })
            .collect(),
        pinned: m.pinned,
        attachments: if m.deleted { Vec::new() } else { m.attachments.iter().map(attachment).collect() },
        written_at_ms: m.written_at_ms.max(0) as u64,
    }
}

/// An attachment as a message carries it (§22.8).
pub fn attachment(a: &AttachmentRec) -> v1::Attachment {
    v1::Attachment {
        media_id: a.media_id.0.clone(),
        file_name: a.file_name.clone(),
        mime_type: a.mime_type.clone(),
        size: a.size,
        width: a.width,
        height: a.height,
        duration_ms: a.duration_ms,
        thumbnails: a.thumbnails.clone(),
    }
}

pub fn conversation(c: &ConvView, viewer: UserId) -> v1::Conversation {
    v1::Conversation {
        conversation_id: conv(c.id),
        kind: c.kind.into(),
        title: c.title.clone(),
        description: c.description.clone(),
        created_at_ms: c.created_at_ms as u64,
        head_seq: c.head_seq as u64,
        last_activity_ms: c.last_activity_ms as u64,
        member_count: c.member_count as u32,
        my_read_seq: c.my_read_seq as u64,
        unread_count: c.unread_count as u32,
        unread_mention_count: c.unread_mention_count as u32,
        last_message: c.last_message.as_ref().map(|m| message(m, viewer)),
        my_role: c.my_role.map_or(0, i32::from),
        peer_user_id: user(c.peer_user_id.unwrap_or_default()),
        photo_ref: c.photo_ref.clone(),
        announcement_only: c.announcement_only,
    }
}

pub fn member(m: &MemberRec) -> v1::Member {
    v1::Member { user_id: user(m.user_id), role: m.role.into(), joined_at_ms: m.joined_at_ms as u64 }
}

/// A log entry. Live delivery shares one encoding among all members, so the sender's
/// `client_msg_id` is carried only when `viewer` is given and is the sender.
pub fn event(e: &LogEvent, viewer: Option<UserId>) -> v1::ConversationEvent {
    let ids = |v: &[UserId]| v.iter().map(|u| user(*u)).collect();
    let body = match &e.body {
        LogBody::Created { kind, title } => {
            Body::Created(v1::ConversationCreated { kind: (*kind).into(), title: title.clone() })
        }
        LogBody::Posted(m) => {
            let mut msg = message(m, viewer.unwrap_or_default());
            if viewer.is_none() {
                msg.client_msg_id.clear();
            }
            Body::MessagePosted(msg)
        }
        LogBody::Edited { message_id, text } => {
            Body::MessageEdited(v1::MessageEdited { message_id: msg_id(*message_id), text: text.clone() })
        }
        LogBody::Deleted { message_id } => Body::MessageDeleted(v1::MessageDeleted { message_id: msg_id(*message_id) }),
        LogBody::MembersAdded(u) => Body::MembersAdded(v1::MembersAdded { user_ids: ids(u) }),
        LogBody::Joined(u) => Body::MemberJoined(v1::MemberJoined { user_id: user(*u) }),
        LogBody::Left(u) => Body::MemberLeft(v1::MemberLeft { user_id: user(*u) }),
        LogBody::Removed(u) => Body::MemberRemoved(v1::MemberRemoved { user_id: user(*u) }),
        LogBody::Updated(st) => Body::Updated(v1::ConversationUpdated {
            title: st.title.clone(),
            description: st.description.clone(),
            photo_ref: st.photo_ref.clone(),
            announcement_only: st.announcement_only,
        }),
        LogBody::RoleChanged { user: who, role } => {
            Body::RoleChanged(v1::RoleChanged { user_id: user(*who), role: (*role).into() })
        }
        LogBody::OwnershipTransferred { from, to } => {
            Body::OwnershipTransferred(v1::OwnershipTransferred { from_user_id: user(*from), to_user_id: user(*to) })
        }
        LogBody::Pinned { message_id } => Body::MessagePinned(v1::MessagePinned { message_id: msg_id(*message_id) }),
        LogBody::Unpinned { message_id } => {
            Body::MessageUnpinned(v1::MessageUnpinned { message_id: msg_id(*message_id) })
        }
        LogBody::ReactionAdded { message_id, emoji } => {
            Body::ReactionAdded(v1::ReactionAdded { message_id: msg_id(*message_id), emoji: emoji.clone() })
        }
        LogBody::ReactionRemoved { message_id, emoji } => {
            Body::ReactionRemoved(v1::ReactionRemoved { message_id: msg_id(*message_id), emoji: emoji.clone() })
        }
        LogBody::CallEnded(c) => Body::CallEnded(v1::CallSummary {
            call_id: c.call_id.clone(),
            media: c.media,
            caller_id: user(e.actor_id),
            outcome: c.outcome,
            duration_ms: c.duration_ms.max(0) as u64,
            answered_by: user(c.answered_by),
        }),
    };
    v1::ConversationEvent {
        conversation_id: conv(e.conversation_id),
        seq: e.seq as u64,
        actor_id: user(e.actor_id),
        at_ms: e.at_ms as u64,
        body: Some(body),
    }
}

pub fn user_update(u: &UserUpdateRec) -> v1::UserUpdate {
    let conversation_id = conv(u.conversation_id);
    let body = match u.kind {
        UpdateKind::Added => user_update::Body::AddedToConversation(v1::AddedToConversation { conversation_id }),
        UpdateKind::Read => {
            user_update::Body::ReadMarker(v1::ReadMarker { conversation_id, seq: u.seq.unwrap_or(0) as u64 })
        }
        UpdateKind::Removed => {
            user_update::Body::RemovedFromConversation(v1::RemovedFromConversation { conversation_id })
        }
    };
    v1::UserUpdate { user_seq: u.user_seq as u64, at_ms: u.at_ms as u64, body: Some(body) }
}

pub fn receipt(r: &ReceiptRec) -> v1::ReceiptUpdated {
    v1::ReceiptUpdated {
        conversation_id: conv(r.conversation_id),
        user_id: user(r.user_id),
        delivered_seq: r.delivered_seq as u64,
        read_seq: r.read_seq as u64,
    }
}

pub fn notification(n: &NotificationRec) -> v1::Notification {
    v1::Notification {
        notification_id: n.id as u64,
        kind: n.kind.into(),
        conversation_id: conv(n.conversation_id),
        message_id: msg_id(n.message_id.unwrap_or_default()),
        actor_id: user(n.actor_id),
        created_at_ms: n.created_at_ms as u64,
        read: n.read,
        role: n.role.map_or(0, i32::from),
        report_id: n.report_id.map_or(0, |r| r.0 as u64),
        report_action: n.report_action.map_or(0, i32::from),
    }
}

/// A report (§27).
pub fn report(r: &ReportRec) -> v1::Report {
    v1::Report {
        report_id: r.id.0 as u64,
        conversation_id: conv(r.conversation_id),
        message_id: msg_id(r.message_id),
        reporter_id: user(r.reporter_id),
        sender_id: user(r.sender_id),
        reason: i32::from(r.reason),
        note: r.note.clone(),
        created_at_ms: r.created_at_ms.max(0) as u64,
        state: i32::from(r.state),
        resolved_by: r.resolved_by.map_or(0, user),
        resolved_at_ms: r.resolved_at_ms.map_or(0, |t| t.max(0) as u64),
        action: r.action.map_or(0, i32::from),
        resolution_note: r.resolution_note.clone(),
    }
}

/// An audit log entry (§28.1).
pub fn audit_entry(r: &AuditRec) -> v1::AuditEntry {
    let e = &r.entry;
    v1::AuditEntry {
        seq: r.seq as u64,
        at_ms: e.at_ms.max(0) as u64,
        actor_id: e.actor.map_or(0, user),
        action: i32::from(e.action),
        target_user_id: e.target_user.map_or(0, user),
        target_conversation_id: e.target_conversation.map_or(0, conv),
        target_message_id: e.target_message.map_or(0, msg_id),
        target: e.target.clone(),
        before: e.before.clone(),
        after: e.after.clone(),
        client_addr: e.client_addr.clone(),
        hash: r.hash.clone().into(),
    }
}

/// The encoded live frame of a receipt change.
pub fn receipt_frame_bytes(r: &ReceiptRec) -> Bytes {
    encode_server(&event_frame(event::Event::ReceiptUpdated(receipt(r))))
}

/// The encoded live frame of a new notification.
pub fn notification_frame_bytes(n: &NotificationRec) -> Bytes {
    encode_server(&event_frame(event::Event::Notification(notification(n))))
}

/// The encoded live frame of a log entry.
pub fn event_frame_bytes(e: &LogEvent) -> Bytes {
    encode_server(&event_frame(event::Event::ConversationEvent(event(e, None))))
}

/// The encoded live frame of a user log entry.
pub fn user_update_frame_bytes(u: &UserUpdateRec) -> Bytes {
    encode_server(&event_frame(event::Event::UserUpdate(user_update(u))))
}

/// The signed-in user's own account (§11.10).
pub fn me(u: &User) -> v1::Me {
    v1::Me {
        user_id: user(u.id),
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        email: u.email.clone().unwrap_or_default(),
        phone: u.phone.clone().unwrap_or_default(),
        status_text: u.status_text.clone(),
        created_at_ms: u.created_at_ms as u64,
        has_password: u.has_password,
        avatar_ref: u.avatar_ref.clone(),
    }
}

/// Who an access token signs in (§11.5, and `Welcome.auth`, §4.4).
pub fn auth_info(a: &Caller) -> v1::AuthInfo {
    v1::AuthInfo {
        user_id: user(a.user_id),
        session_id: a.session_id.clone(),
        access_token_expires_at_ms: a.expires_at_ms,
    }
}

/// One of the user's sessions; `current` is the asking connection's session id (§11.7).
pub fn session(s: SessionRecord, current: &str) -> v1::Session {
    v1::Session {
        current: s.id == current,
        session_id: s.id,
        device_name: s.device_name,
        client_name: s.client_name,
        created_at_ms: s.created_at_ms as u64,
        last_seen_at_ms: s.last_seen_at_ms as u64,
    }
}

/// A member's receipt state for one message (§15.2).
pub fn member_receipt(r: &crate::page::Receipt) -> v1::MemberReceipt {
    v1::MemberReceipt { user_id: user(r.user_id), state: r.state as i32 }
}

/// The encoded live frame telling a connection its session ended (§11.7).
pub fn session_revoked_frame_bytes(session_id: &str, reason: RevokeReason) -> Bytes {
    encode_server(&event_frame(event::Event::SessionRevoked(v1::SessionRevoked {
        session_id: session_id.to_string(),
        reason: reason as i32,
    })))
}
