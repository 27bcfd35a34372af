//! Domain types of conversations, messages and the two logs.

use super::media_types::AttachmentRec;
use super::types::{UserId, id_type};
pub use super::write_types::{AdminOrigin, Applied, OpError, OpResult, WriteOp};

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

    /// The role as one lower-case word (audit entries' `before` and `after`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Moderator => "moderator",
            Role::Member => "member",
        }
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
    /// A member reported a message of a conversation the recipient moderates (§27.2).
    Reported = 5,
    /// A report the recipient made was resolved (§27.4).
    ReportResolved = 6,
}

numbered!(
    NotificationKind,
    "notification kind",
    [Mentioned, AddedToConversation, RoleChanged, MissedCall, Reported, ReportResolved]
);

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
    /// `Reported`, `ReportResolved`: the report (§27).
    pub report_id: Option<super::report_types::ReportId>,
    /// `ReportResolved`: what was done.
    pub report_action: Option<super::report_types::ReportAction>,
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

/// Which node holds a conversation's group-call room, until when, under which fencing token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomLease {
    pub conversation: ConvId,
    pub node: String,
    pub fencing: i64,
    pub expires_at_ms: i64,
}
