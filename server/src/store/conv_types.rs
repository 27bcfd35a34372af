//! Domain types of conversations, messages and the two logs.

use super::media_types::AttachmentRec;
use super::types::{UserId, id_type};

id_type!(
    /// A conversation's id: the `conversations.id` column, and the wire's `conversation_id`s.
    ConvId
);

id_type!(
    /// A message's id: the `messages.id` column, and the wire's `message_id`s.
    MessageId
);

/// A stored or wire number that names no value of a domain enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value}")]
pub struct UnknownValue {
    /// The enum the number was read as.
    pub what: &'static str,
    /// The number.
    pub value: i32,
}

/// An enum stored (and sent) as its fixed `i32` discriminants: `From<Self> for i32` and
/// `TryFrom<i32>` over the variants listed.
macro_rules! numbered {
    ($name:ident, $what:literal, [$($variant:ident),* $(,)?]) => {
        impl From<$name> for i32 {
            fn from(v: $name) -> i32 {
                v as i32
            }
        }

        impl TryFrom<i32> for $name {
            type Error = UnknownValue;

            fn try_from(value: i32) -> Result<Self, UnknownValue> {
                match value {
                    $(n if n == Self::$variant as i32 => Ok(Self::$variant),)*
                    _ => Err(UnknownValue { what: $what, value }),
                }
            }
        }
    };
}

/// Conversation kinds (same numbers as the wire enum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvKind {
    Direct = 1,
    Group = 2,
    Channel = 3,
}

pub(super) use numbered;

numbered!(ConvKind, "conversation kind", [Direct, Group, Channel]);

/// A member's role (same numbers as the wire `MemberRole`); a lower number outranks a higher
/// one. It deliberately has no `Ord`: ask `outranks` or `at_least`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Owner = 1,
    Admin = 2,
    Moderator = 3,
    Member = 4,
}

numbered!(Role, "role", [Owner, Admin, Moderator, Member]);

impl Role {
    /// Every role, highest first.
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Moderator, Role::Member];

    /// Whether this role is strictly above `other`.
    pub fn outranks(self, other: Role) -> bool {
        (self as i32) < (other as i32)
    }

    /// Whether this role is `lowest` or above it.
    pub fn at_least(self, lowest: Role) -> bool {
        (self as i32) <= (lowest as i32)
    }
}

/// The log kind of a posted message (`LogBody::Posted`).
pub const LOG_POSTED: i32 = 2;
/// The log kind of an edit (`LogBody::Edited`).
pub const LOG_EDITED: i32 = 3;
/// The stored kind of a MembersAdded entry.
pub const LOG_MEMBERS_ADDED: i32 = 5;

/// A message's current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRec {
    pub id: MessageId,
    pub conversation_id: ConvId,
    pub seq: i64,
    pub sender_id: UserId,
    pub text: String,
    pub reply_to: Option<MessageId>,
    pub mentions: Vec<UserId>,
    pub created_at_ms: i64,
    pub edited_at_ms: Option<i64>,
    pub deleted: bool,
    pub client_msg_id: String,
    /// The reactions per emoji; filled by history only.
    pub reactions: Vec<ReactionCount>,
    pub pinned: bool,
    /// Files, images and videos in the sender's order (§22.8); empty once deleted.
    pub attachments: Vec<AttachmentRec>,
    /// When the sender wrote it, in Unix milliseconds, clamped at send time (§13.2); 0 when not
    /// given.
    pub written_at_ms: i64,
}

/// One emoji's reactions to a message, as one viewer sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: i64,
    /// Whether the viewer is among them.
    pub mine: bool,
}

/// Conversation settings after an update.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    pub title: String,
    pub description: String,
    pub photo_ref: String,
    pub announcement_only: bool,
}

/// What an entry of a conversation's log says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogBody {
    Created {
        kind: ConvKind,
        title: String,
    },
    Posted(MessageRec),
    Edited {
        message_id: MessageId,
        text: String,
    },
    Deleted {
        message_id: MessageId,
    },
    MembersAdded(Vec<UserId>),
    Joined(UserId),
    Left(UserId),
    Removed(UserId),
    Updated(Settings),
    RoleChanged {
        user: UserId,
        role: Role,
    },
    OwnershipTransferred {
        from: UserId,
        to: UserId,
    },
    Pinned {
        message_id: MessageId,
    },
    Unpinned {
        message_id: MessageId,
    },
    ReactionAdded {
        message_id: MessageId,
        emoji: String,
    },
    ReactionRemoved {
        message_id: MessageId,
        emoji: String,
    },
    /// A peer-to-peer call ended (§20.2.7); the entry's actor is the caller.
    CallEnded(CallRecord),
}

/// What the log keeps of a finished call.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallRecord {
    pub call_id: String,
    pub media: i32,
    pub outcome: i32,
    pub duration_ms: i64,
    /// Who answered (0: nobody).
    pub answered_by: UserId,
}

impl LogBody {
    /// The stored kind number.
    pub fn kind(&self) -> i32 {
        match self {
            Self::Created { .. } => 1,
            Self::Posted(_) => LOG_POSTED,
            Self::Edited { .. } => LOG_EDITED,
            Self::Deleted { .. } => 4,
            Self::MembersAdded(_) => LOG_MEMBERS_ADDED,
            Self::Joined(_) => 6,
            Self::Left(_) => 7,
            Self::Removed(_) => 8,
            Self::Updated(_) => 9,
            Self::RoleChanged { .. } => 10,
            Self::OwnershipTransferred { .. } => 11,
            Self::Pinned { .. } => 12,
            Self::Unpinned { .. } => 13,
            Self::ReactionAdded { .. } => 14,
            Self::ReactionRemoved { .. } => 15,
            Self::CallEnded(_) => 16,
        }
    }
}

/// One entry of a conversation's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEvent {
    pub conversation_id: ConvId,
    pub seq: i64,
    pub actor_id: UserId,
    pub at_ms: i64,
    pub body: LogBody,
}

/// Kinds of user log entries (stored numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpdateKind {
    /// Added to a conversation (created with, added, joined).
    Added = 1,
    /// No longer in a conversation (left, removed).
    Removed = 2,
    /// The user's read marker moved.
    Read = 3,
}

numbered!(UpdateKind, "user update kind", [Added, Removed, Read]);

/// One entry of a user's own log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserUpdateRec {
    pub user_id: UserId,
    pub user_seq: i64,
    pub at_ms: i64,
    /// What happened.
    pub kind: UpdateKind,
    pub conversation_id: ConvId,
    /// `UpdateKind::Read`: the new read watermark.
    pub seq: Option<i64>,
}

/// A member's receipt watermarks after a change; `read_seq` is 0 when they hide read receipts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptRec {
    pub conversation_id: ConvId,
    pub user_id: UserId,
    pub delivered_seq: i64,
    pub read_seq: i64,
}

/// Notification kinds (same numbers as the wire enum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotificationKind {
    Mentioned = 1,
    AddedToConversation = 2,
    RoleChanged = 3,
    MissedCall = 4,
}

numbered!(NotificationKind, "notification kind", [Mentioned, AddedToConversation, RoleChanged, MissedCall]);

/// An entry of a user's notifications inbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRec {
    pub id: i64,
    pub user_id: UserId,
    pub kind: NotificationKind,
    pub conversation_id: ConvId,
    pub message_id: Option<MessageId>,
    pub actor_id: UserId,
    /// `RoleChanged`: the new role.
    pub role: Option<Role>,
    pub created_at_ms: i64,
    pub read: bool,
}

/// A member's receipt state, for GetReceipts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberWatermarks {
    pub user_id: UserId,
    pub delivered_seq: i64,
    pub read_seq: i64,
    pub shares_read: bool,
}

/// A conversation as one user sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvView {
    pub id: ConvId,
    pub kind: ConvKind,
    pub title: String,
    pub description: String,
    pub created_at_ms: i64,
    pub head_seq: i64,
    pub last_activity_ms: i64,
    pub member_count: i64,
    /// None when the user is not a member (a channel seen from outside).
    pub my_role: Option<Role>,
    pub my_read_seq: i64,
    pub unread_count: i64,
    /// Unread messages (as `unread_count`) that mention the viewer, from senders they have not
    /// blocked (§12.1).
    pub unread_mention_count: i64,
    pub peer_user_id: Option<UserId>,
    pub last_message: Option<MessageRec>,
    pub photo_ref: String,
    pub announcement_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRec {
    pub user_id: UserId,
    pub role: Role,
    pub joined_at_ms: i64,
}

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
    DeleteAccount {
        user: UserId,
        now_ms: i64,
    },
}

/// What an applied op returns to its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    Conversation(ConvId),
    Sent { message_id: MessageId, seq: i64, created_at_ms: i64, duplicate: bool },
    Seq(i64),
    Done,
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
}

impl Applied {
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

/// Which node holds a conversation's group-call room, until when, under which fencing token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomLease {
    pub conversation: ConvId,
    pub node: String,
    pub fencing: i64,
    pub expires_at_ms: i64,
}
