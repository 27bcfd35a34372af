//! Domain types of push notifications (docs/protocol.md §24): targets, settings, the ledger's
//! rows and what the planner and the sender read and write.

use super::conv_types::{ConvId, ConvKind, MessageId, UnknownValue, numbered};
use super::types::UserId;

/// `ALL`, and the stored (and metric label) name of each variant: `as_str`, `parse`.
macro_rules! named {
    ($name:ident, [$($variant:ident => $text:literal),* $(,)?]) => {
        impl $name {
            pub const ALL: &[Self] = &[$(Self::$variant),*];

            /// The stored and metric label name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|k| k.as_str() == s)
            }
        }
    };
}

/// The service that carries a target's pushes (wire `PushProvider`). Stored by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PushProvider {
    /// UnifiedPush and generic webhooks: an HTTP POST to the registered endpoint (RFC 8030).
    WebPush = 1,
    /// Firebase Cloud Messaging, HTTP v1.
    Fcm = 2,
    /// Apple Push Notification service.
    Apns = 3,
    /// Expo push service.
    Expo = 4,
}

numbered!(PushProvider, "push provider", [WebPush, Fcm, Apns, Expo]);

named!(PushProvider, [WebPush => "webpush", Fcm => "fcm", Apns => "apns", Expo => "expo"]);

/// When a conversation notifies (wire `PushLevel`, §24.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PushLevel {
    All = 1,
    /// Messages and calls in DIRECT conversations, mentions, being added.
    DirectAndMentions = 2,
    /// Mentions and being added only.
    Mentions = 3,
    /// Nothing.
    Nothing = 4,
}

numbered!(PushLevel, "push level", [All, DirectAndMentions, Mentions, Nothing]);

/// What a push is about (wire `PushKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PushKind {
    Message = 1,
    Mention = 2,
    CallInvite = 3,
    AddedToConversation = 4,
}

numbered!(PushKind, "push kind", [Message, Mention, CallInvite, AddedToConversation]);

impl PushKind {
    /// Addressed to the user in person: passes the MENTIONS level.
    pub fn is_personal(self) -> bool {
        matches!(self, Self::Mention | Self::AddedToConversation)
    }
}

/// Where a delivery stands (wire `PushDeliveryState`). Stored by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    Queued = 1,
    Sent = 2,
    Failed = 3,
    Dropped = 4,
    Expired = 5,
}

numbered!(DeliveryState, "push delivery state", [Queued, Sent, Failed, Dropped, Expired]);

named!(DeliveryState, [Queued => "queued", Sent => "sent", Failed => "failed", Dropped => "dropped", Expired => "expired"]);

/// The reason stored on a target its owner unregistered (not announced to the device).
pub const UNREGISTERED: &str = "unregistered";
/// The reason stored on a target a newer token of the same device replaced (not announced).
pub const REPLACED: &str = "replaced by a newer token";
/// The reason stored on the targets of a session that ended (not announced).
pub const SESSION_ENDED: &str = "session ended";

/// A registered push target.
#[derive(Clone, PartialEq, Eq)]
pub struct TargetRec {
    pub id: i64,
    pub user: UserId,
    /// The device (session) it belongs to.
    pub session: String,
    pub provider: PushProvider,
    pub token: String,
    pub app_id: String,
    pub voip: bool,
    pub created_at_ms: i64,
    /// Set once disabled (token gone, unregistered, session ended).
    pub disabled_at_ms: Option<i64>,
    pub disabled_reason: String,
}

impl std::fmt::Debug for TargetRec {
    // A token lets whoever holds it push to the device: never logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetRec")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("provider", &self.provider)
            .field("voip", &self.voip)
            .field("disabled_at_ms", &self.disabled_at_ms)
            .finish_non_exhaustive()
    }
}

/// A registration (§24.1).
#[derive(Clone, Debug)]
pub struct NewTarget {
    pub user: UserId,
    pub session: String,
    pub provider: PushProvider,
    pub token: String,
    pub app_id: String,
    pub voip: bool,
    pub now_ms: i64,
    /// Enabled targets the session may hold, this one included.
    pub max_per_device: u32,
}

/// A conversation's own level and until when it holds (0: until changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvPushSetting {
    pub conversation: ConvId,
    pub level: PushLevel,
    pub until_ms: i64,
}

/// A user's notification settings (§24.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushSettingsRec {
    pub level: PushLevel,
    pub preview: bool,
    /// Conversation levels that still hold.
    pub conversations: Vec<ConvPushSetting>,
}

/// One ledger row as its user reads it (§24.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRec {
    pub id: i64,
    pub target_id: i64,
    pub session: String,
    pub provider: PushProvider,
    pub kind: PushKind,
    pub conversation: ConvId,
    pub seq: i64,
    pub call_id: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub provider_status: i64,
    pub detail: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub sent_at_ms: Option<i64>,
    pub due_at_ms: i64,
}

/// A delivery a sender claimed, with what it needs to decide and to send.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    pub id: i64,
    pub user: UserId,
    /// The device it was planned for (the target may have moved since).
    pub session: String,
    pub target: TargetRec,
    pub conversation: ConvId,
    pub conv_kind: Option<ConvKind>,
    pub seq: i64,
    pub call_id: String,
    pub kind: PushKind,
    pub sender: UserId,
    pub message_id: Option<MessageId>,
    /// Attempts, this one included.
    pub attempts: i64,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// The session was revoked (signed out) since.
    pub session_ended: bool,
    /// The highest seq the device acknowledged in the conversation (§14.4).
    pub acked_seq: i64,
    /// The user is still a member of the conversation.
    pub member: bool,
    /// The message was deleted since.
    pub message_deleted: bool,
    /// The user blocked the sender since.
    pub sender_blocked: bool,
    /// The user's unread messages in the conversation now.
    pub unread: i64,
    /// The user allows previews.
    pub preview: bool,
    /// The user's account level now.
    pub account_level: PushLevel,
    /// The conversation's own level now, if it has one (`rules::push::effective_level` decides
    /// whether it still holds).
    pub own_level: Option<ConvPushSetting>,
    /// The claim's lease end: `finish` records the outcome only while the row still has it.
    pub fence: i64,
}

/// What became of a claimed delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryUpdate {
    pub id: i64,
    /// The claim's fence ([`DueDelivery::fence`]).
    pub fence: i64,
    pub state: DeliveryState,
    pub provider_status: i64,
    pub detail: String,
    /// When the next attempt is due (QUEUED).
    pub due_at_ms: i64,
    pub sent_at_ms: Option<i64>,
    pub provider_ref: Option<String>,
    pub receipt_pending: bool,
    pub now_ms: i64,
}

/// A sent delivery whose provider answers later (Expo receipts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingReceipt {
    pub id: i64,
    pub target_id: i64,
    pub provider: PushProvider,
    pub provider_ref: String,
    pub sent_at_ms: i64,
}

/// How far the planner has read one conversation's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanProgress {
    pub conversation: ConvId,
    pub planned_seq: i64,
    pub head_seq: i64,
}

/// A ringing call to announce (§20.2): its callees' devices are pushed at once, high priority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallInvitePlan {
    pub call_id: String,
    pub conversation: ConvId,
    pub caller: UserId,
    pub callees: Vec<UserId>,
    pub now_ms: i64,
    /// When the call stops ringing.
    pub expires_at_ms: i64,
}

/// What the planner needs beyond the log: the timing rules and whether a device is connected.
pub struct PlanContext<'a> {
    pub now_ms: i64,
    /// Entries older than this are not pushed (a push an hour late is noise).
    pub max_age_ms: i64,
    /// How long a connected device has to ack an entry before it is pushed.
    pub ack_wait_ms: i64,
    /// Whether a session has a live connection anywhere (the hub's view, §24.2).
    pub connected: &'a (dyn Fn(&str) -> bool + Send + Sync),
}

impl std::fmt::Debug for PlanContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanContext").field("now_ms", &self.now_ms).finish_non_exhaustive()
    }
}

/// Which targets `PushStore::disable_push_targets` acts on.
#[derive(Clone, Copy, Debug)]
pub enum TargetSelector<'a> {
    /// These target ids.
    Ids(&'a [i64]),
    /// Every target of these sessions (devices).
    Sessions(&'a [String]),
    /// Every target of one account.
    User(UserId),
}
