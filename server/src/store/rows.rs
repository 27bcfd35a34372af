//! Rows as the SQL returns them, mapped by column name with `#[derive(sqlx::FromRow)]`, and their
//! conversion into domain types. Store-only: the domain types (`types.rs`, `conv_types.rs`) know
//! nothing of sqlx, and these structs never leave the store. One definition serves both backends
//! (the derived `FromRow` is generic over the row type). Columns keep their stored types here
//! (`i32` flags, `Option<i64>` deletion times); the `From` impls turn them into domain values.
//! The domain enums stored as numbers (`ConvKind`, `Role`, `NotificationKind`, `UpdateKind`) are
//! read as columns directly: an unknown number fails the read (`sqlx::Error::ColumnDecode`, a
//! store error), never a panic. They are written as `i32::from(..)` binds.

use super::conv_sql::ids;
use super::conv_types::{
    CallRecord, ConvId, ConvKind, ConvView, LogBody, LogEvent, MemberRec, MemberWatermarks, MessageId, MessageRec,
    NotificationKind, NotificationRec, ReceiptRec, Role, Settings, UnknownValue, UpdateKind, UserUpdateRec,
};
use super::report_types::{ReportAction, ReportId, ReportReason, ReportState};
use super::rules::{ConvFacts, MessageFacts, Poster};
use super::types::{SessionRecord, User, UserId};

/// Reads a domain enum from its stored `i32`, on any backend that reads `i32`.
macro_rules! stored_as_i32 {
    ($($name:ty),*) => {$(
        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            i32: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <i32 as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <i32 as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            i32: sqlx::Decode<'r, DB>,
        {
            fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(Self::try_from(<i32 as sqlx::Decode<'r, DB>>::decode(value)?)?)
            }
        }
    )*};
}

stored_as_i32!(ConvKind, Role, NotificationKind, UpdateKind, ReportReason, ReportState, ReportAction);

/// A number kept as text in a log entry's `column` (`LogBody::Created`'s kind, `RoleChanged`'s
/// role), read as `T`.
fn stored_number<T: TryFrom<i32, Error = UnknownValue>>(text: Option<&str>, column: &str) -> Result<T, sqlx::Error> {
    let n: i32 = text.and_then(|t| t.parse().ok()).unwrap_or(0);
    T::try_from(n).map_err(|e| sqlx::Error::ColumnDecode { index: column.to_string(), source: Box::new(e) })
}

/// The columns of [`UserRow`]; `user_columns_of` qualifies them for joins.
pub(super) const USER_COLUMNS: &str = "id, username, display_name, email, phone, status_text, avatar_ref, created_at_ms, \
     password_hash IS NOT NULL AS has_password, deleted_at_ms IS NOT NULL AS deleted, read_receipts, show_last_seen, \
     last_seen_at_ms";

/// `USER_COLUMNS` qualified with a table alias, each keeping its name.
pub(super) fn user_columns_of(alias: &str) -> String {
    USER_COLUMNS
        .split(", ")
        .map(|c| if c.contains(" AS ") { format!("{alias}.{c}") } else { format!("{alias}.{c} AS {c}") })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An account row (`USER_COLUMNS`).
#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: UserId,
    username: String,
    display_name: String,
    email: Option<String>,
    phone: Option<String>,
    status_text: String,
    avatar_ref: String,
    created_at_ms: i64,
    has_password: bool,
    deleted: bool,
    read_receipts: i32,
    show_last_seen: i32,
    last_seen_at_ms: Option<i64>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            username: r.username,
            display_name: r.display_name,
            email: r.email,
            phone: r.phone,
            status_text: r.status_text,
            avatar_ref: r.avatar_ref,
            created_at_ms: r.created_at_ms,
            has_password: r.has_password,
            deleted: r.deleted,
            read_receipts: r.read_receipts != 0,
            show_last_seen: r.show_last_seen != 0,
            last_seen_at_ms: r.last_seen_at_ms,
        }
    }
}

/// An account with its password hash (`USER_COLUMNS, password_hash`).
#[derive(sqlx::FromRow)]
pub(super) struct CredentialsRow {
    #[sqlx(flatten)]
    pub(super) user: UserRow,
    pub(super) password_hash: Option<String>,
}

/// The columns of [`SessionRow`].
pub(super) const SESSION_COLUMNS: &str =
    "id, user_id, device_name, client_name, created_at_ms, last_seen_at_ms, revoked_at_ms IS NOT NULL AS revoked";

/// A session row (`SESSION_COLUMNS`).
#[derive(sqlx::FromRow)]
pub(super) struct SessionRow {
    id: String,
    user_id: UserId,
    device_name: String,
    client_name: String,
    created_at_ms: i64,
    last_seen_at_ms: i64,
    revoked: bool,
}

impl From<SessionRow> for SessionRecord {
    fn from(r: SessionRow) -> Self {
        SessionRecord {
            id: r.id,
            user_id: r.user_id,
            device_name: r.device_name,
            client_name: r.client_name,
            created_at_ms: r.created_at_ms,
            last_seen_at_ms: r.last_seen_at_ms,
            revoked: r.revoked,
        }
    }
}

/// The columns of [`MessageRow`].
pub(super) const MSG_COLS: &str = "id, conversation_id, seq, sender_id, text, reply_to, mentions, created_at_ms, \
                                   edited_at_ms, deleted_at_ms, client_msg_id, written_at_ms";

/// A message row (`MSG_COLS`).
#[derive(sqlx::FromRow)]
pub(super) struct MessageRow {
    id: MessageId,
    conversation_id: ConvId,
    seq: i64,
    sender_id: UserId,
    text: String,
    reply_to: Option<MessageId>,
    mentions: Option<String>,
    created_at_ms: i64,
    edited_at_ms: Option<i64>,
    deleted_at_ms: Option<i64>,
    client_msg_id: String,
    written_at_ms: i64,
}

impl From<MessageRow> for MessageRec {
    fn from(r: MessageRow) -> Self {
        MessageRec {
            id: r.id,
            conversation_id: r.conversation_id,
            seq: r.seq,
            sender_id: r.sender_id,
            text: r.text,
            reply_to: r.reply_to,
            mentions: ids(r.mentions),
            created_at_ms: r.created_at_ms,
            edited_at_ms: r.edited_at_ms,
            deleted: r.deleted_at_ms.is_some(),
            client_msg_id: r.client_msg_id,
            reactions: Vec::new(),
            pinned: false,
            attachments: Vec::new(),
            written_at_ms: r.written_at_ms,
        }
    }
}

/// A conversation as one user sees it, with its last message (`lm_*`, all NULL when there is
/// none or the user may not see it). See `VIEW_SELECT` in `conv_sql.rs`.
#[derive(sqlx::FromRow)]
pub(super) struct ViewRow {
    id: ConvId,
    kind: ConvKind,
    title: String,
    description: String,
    created_at_ms: i64,
    head_seq: i64,
    last_activity_ms: i64,
    member_count: i32,
    my_role: Option<Role>,
    my_read_seq: i64,
    unread_count: i64,
    unread_mention_count: i64,
    peer_user_id: Option<UserId>,
    photo_ref: String,
    announcement_only: i32,
    lm_id: Option<MessageId>,
    lm_conversation_id: Option<ConvId>,
    lm_seq: Option<i64>,
    lm_sender_id: Option<UserId>,
    lm_text: Option<String>,
    lm_reply_to: Option<MessageId>,
    lm_mentions: Option<String>,
    lm_created_at_ms: Option<i64>,
    lm_edited_at_ms: Option<i64>,
    lm_deleted_at_ms: Option<i64>,
    lm_client_msg_id: Option<String>,
    lm_written_at_ms: Option<i64>,
}

impl From<ViewRow> for ConvView {
    fn from(r: ViewRow) -> Self {
        let last_message = r.lm_id.map(|id| MessageRec {
            id,
            conversation_id: r.lm_conversation_id.unwrap_or_default(),
            seq: r.lm_seq.unwrap_or_default(),
            sender_id: r.lm_sender_id.unwrap_or_default(),
            text: r.lm_text.unwrap_or_default(),
            reply_to: r.lm_reply_to,
            mentions: ids(r.lm_mentions),
            created_at_ms: r.lm_created_at_ms.unwrap_or_default(),
            edited_at_ms: r.lm_edited_at_ms,
            deleted: r.lm_deleted_at_ms.is_some(),
            client_msg_id: r.lm_client_msg_id.unwrap_or_default(),
            reactions: Vec::new(),
            pinned: false,
            attachments: Vec::new(),
            written_at_ms: r.lm_written_at_ms.unwrap_or_default(),
        });
        ConvView {
            id: r.id,
            kind: r.kind,
            title: r.title,
            description: r.description,
            created_at_ms: r.created_at_ms,
            head_seq: r.head_seq,
            last_activity_ms: r.last_activity_ms,
            member_count: i64::from(r.member_count),
            my_role: r.my_role,
            my_read_seq: r.my_read_seq,
            unread_count: r.unread_count,
            unread_mention_count: r.unread_mention_count,
            peer_user_id: r.peer_user_id,
            last_message,
            photo_ref: r.photo_ref,
            announcement_only: r.announcement_only != 0,
        }
    }
}

/// A member row.
#[derive(sqlx::FromRow)]
pub(super) struct MemberRow {
    user_id: UserId,
    role: Role,
    joined_at_ms: i64,
}

impl From<MemberRow> for MemberRec {
    fn from(r: MemberRow) -> Self {
        MemberRec { user_id: r.user_id, role: r.role, joined_at_ms: r.joined_at_ms }
    }
}

/// A notifications inbox row.
#[derive(sqlx::FromRow)]
pub(super) struct NotificationRow {
    id: i64,
    user_id: UserId,
    kind: NotificationKind,
    conversation_id: ConvId,
    message_id: Option<MessageId>,
    actor_id: UserId,
    role: Option<Role>,
    created_at_ms: i64,
    read_flag: i32,
    report_id: Option<ReportId>,
    report_action: Option<ReportAction>,
}

impl From<NotificationRow> for NotificationRec {
    fn from(r: NotificationRow) -> Self {
        NotificationRec {
            id: r.id,
            user_id: r.user_id,
            kind: r.kind,
            conversation_id: r.conversation_id,
            message_id: r.message_id,
            actor_id: r.actor_id,
            role: r.role,
            created_at_ms: r.created_at_ms,
            read: r.read_flag != 0,
            report_id: r.report_id,
            report_action: r.report_action,
        }
    }
}

/// A user log row.
#[derive(sqlx::FromRow)]
pub(super) struct UserUpdateRow {
    user_id: UserId,
    user_seq: i64,
    kind: UpdateKind,
    conversation_id: ConvId,
    at_ms: i64,
    seq: Option<i64>,
}

impl From<UserUpdateRow> for UserUpdateRec {
    fn from(r: UserUpdateRow) -> Self {
        UserUpdateRec {
            user_id: r.user_id,
            user_seq: r.user_seq,
            at_ms: r.at_ms,
            kind: r.kind,
            conversation_id: r.conversation_id,
            seq: r.seq,
        }
    }
}

/// A member's receipt watermarks, with whether they share read receipts.
#[derive(Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub(super) struct WatermarkRow {
    user_id: UserId,
    pub(super) delivered_seq: i64,
    pub(super) read_seq: i64,
    read_receipts: i32,
}

impl From<WatermarkRow> for MemberWatermarks {
    fn from(r: WatermarkRow) -> Self {
        MemberWatermarks {
            user_id: r.user_id,
            delivered_seq: r.delivered_seq,
            read_seq: r.read_seq,
            shares_read: r.read_receipts != 0,
        }
    }
}

impl WatermarkRow {
    /// The watermarks as other members see them (delivered never below read; read hidden when
    /// not shared).
    pub(super) fn receipt(&self, conversation_id: ConvId) -> ReceiptRec {
        ReceiptRec {
            conversation_id,
            user_id: self.user_id,
            delivered_seq: self.delivered_seq.max(self.read_seq),
            read_seq: if self.read_receipts != 0 { self.read_seq } else { 0 },
        }
    }
}

/// A conversation log row, with the live state of a posted message (`m_*`, from a join).
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    conversation_id: ConvId,
    seq: i64,
    kind: i32,
    actor_id: UserId,
    at_ms: i64,
    message_id: Option<MessageId>,
    text: Option<String>,
    user_ids: Option<String>,
    data: Option<String>,
    m_deleted_at_ms: Option<i64>,
    m_reply_to: Option<MessageId>,
    m_client_msg_id: Option<String>,
    m_written_at_ms: Option<i64>,
}

impl TryFrom<EventRow> for LogEvent {
    type Error = sqlx::Error;

    fn try_from(r: EventRow) -> Result<Self, sqlx::Error> {
        let message_id = r.message_id.unwrap_or_default();
        let text = r.text.unwrap_or_default();
        let first_user = || ids(r.user_ids.clone()).first().copied().unwrap_or_default();
        let body = match r.kind {
            1 => LogBody::Created { kind: stored_number(r.user_ids.as_deref(), "user_ids")?, title: text },
            2 => LogBody::Posted(MessageRec {
                id: message_id,
                conversation_id: r.conversation_id,
                seq: r.seq,
                sender_id: r.actor_id,
                text,
                reply_to: r.m_reply_to,
                mentions: ids(r.user_ids),
                created_at_ms: r.at_ms,
                edited_at_ms: None,
                deleted: r.m_deleted_at_ms.is_some(),
                client_msg_id: r.m_client_msg_id.unwrap_or_default(),
                reactions: Vec::new(),
                pinned: false,
                attachments: Vec::new(),
                written_at_ms: r.m_written_at_ms.unwrap_or_default(),
            }),
            3 => LogBody::Edited { message_id, text },
            4 => LogBody::Deleted { message_id },
            5 => LogBody::MembersAdded(ids(r.user_ids)),
            6 => LogBody::Joined(first_user()),
            7 => LogBody::Left(first_user()),
            8 => LogBody::Removed(first_user()),
            9 => LogBody::Updated(r.data.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or(Settings {
                title: String::new(),
                description: String::new(),
                photo_ref: String::new(),
                announcement_only: false,
            })),
            10 => LogBody::RoleChanged { user: first_user(), role: stored_number(r.data.as_deref(), "data")? },
            11 => {
                let v = ids(r.user_ids);
                LogBody::OwnershipTransferred {
                    from: v.first().copied().unwrap_or_default(),
                    to: v.get(1).copied().unwrap_or_default(),
                }
            }
            12 => LogBody::Pinned { message_id },
            13 => LogBody::Unpinned { message_id },
            14 => LogBody::ReactionAdded { message_id, emoji: text },
            16 => LogBody::CallEnded(r.data.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or(CallRecord {
                call_id: text,
                media: 0,
                outcome: 0,
                duration_ms: 0,
                answered_by: UserId::default(),
            })),
            _ => LogBody::ReactionRemoved { message_id, emoji: text },
        };
        Ok(LogEvent { conversation_id: r.conversation_id, seq: r.seq, actor_id: r.actor_id, at_ms: r.at_ms, body })
    }
}

/// A conversation as one user stands in it, for the rules (`conv_facts`).
#[derive(sqlx::FromRow)]
pub(super) struct ConvFactsRow {
    kind: ConvKind,
    role: Option<Role>,
    head_seq: i64,
}

impl From<ConvFactsRow> for ConvFacts {
    fn from(r: ConvFactsRow) -> Self {
        ConvFacts { kind: r.kind, role: r.role, head_seq: r.head_seq }
    }
}

/// A (conversation, user) pair of a run of receipts (`MarkSql`): the conversation's facts for
/// the rules, and the member's watermarks (`None` when not a member).
#[derive(sqlx::FromRow)]
pub(super) struct MarkFactsRow {
    pub(super) cid: ConvId,
    pub(super) uid: UserId,
    kind: ConvKind,
    role: Option<Role>,
    head_seq: i64,
    delivered_seq: Option<i64>,
    read_seq: Option<i64>,
    read_receipts: Option<i32>,
}

impl MarkFactsRow {
    /// The facts `rules::watermark` takes.
    pub(super) fn facts(&self) -> ConvFacts {
        ConvFacts { kind: self.kind, role: self.role, head_seq: self.head_seq }
    }

    /// The member's watermarks before the run; zero when not a member (the rules refuse then).
    pub(super) fn watermarks(&self) -> WatermarkRow {
        WatermarkRow {
            user_id: self.uid,
            delivered_seq: self.delivered_seq.unwrap_or(0),
            read_seq: self.read_seq.unwrap_or(0),
            read_receipts: self.read_receipts.unwrap_or(0),
        }
    }
}

/// A sender's standing in the conversation of a send, keyed by (conversation, sender)
/// (`send_checks`).
#[derive(sqlx::FromRow)]
pub(super) struct PosterRow {
    pub(super) cid: ConvId,
    pub(super) uid: UserId,
    kind: ConvKind,
    announcement_only: i32,
    role: Role,
    peer_blocked: i32,
}

impl PosterRow {
    /// The facts `rules::send` takes.
    pub(super) fn poster(&self) -> Poster {
        Poster {
            kind: self.kind,
            role: self.role,
            announcement_only: self.announcement_only != 0,
            peer_blocked: self.peer_blocked != 0,
        }
    }
}

/// A message already stored under an idempotency key of a run of sends (`send_stored_keys`).
#[derive(sqlx::FromRow)]
pub(super) struct StoredKeyRow {
    pub(super) sender_id: UserId,
    pub(super) client_msg_id: String,
    pub(super) id: MessageId,
    pub(super) seq: i64,
    pub(super) created_at_ms: i64,
    pub(super) conversation_id: ConvId,
}

/// A message an op is about (`message_facts`).
#[derive(sqlx::FromRow)]
pub(super) struct MessageFactsRow {
    sender_id: UserId,
    deleted_at_ms: Option<i64>,
}

impl MessageFactsRow {
    /// The facts the rules take, for `actor`.
    pub(super) fn facts(&self, actor: UserId) -> MessageFacts {
        MessageFacts { own: self.sender_id == actor, deleted: self.deleted_at_ms.is_some() }
    }

    /// The message's sender.
    pub(super) fn sender(&self) -> UserId {
        self.sender_id
    }
}

/// One emoji's reactions to a message, with whether the viewer is among them (`decorate`).
#[derive(sqlx::FromRow)]
pub(super) struct ReactionRow {
    pub(super) message_id: MessageId,
    pub(super) emoji: String,
    pub(super) count: i64,
    pub(super) mine: i64,
}

#[cfg(test)]
mod tests {
    use super::{ConvFactsRow, EventRow, LogEvent, MemberRow, Role};

    async fn db() -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect("sqlite::memory:").await.expect("in-memory sqlite")
    }

    /// A stored number that names no role or kind fails the read as a decode error (a store
    /// error), and a known one reads as its enum.
    #[tokio::test]
    async fn unknown_stored_numbers_are_errors() {
        let pool = db().await;
        let ok: MemberRow =
            sqlx::query_as("SELECT 7 AS user_id, 3 AS role, 0 AS joined_at_ms").fetch_one(&pool).await.unwrap();
        assert_eq!(ok.role, Role::Moderator);
        let bad =
            sqlx::query_as::<_, MemberRow>("SELECT 7 AS user_id, 9 AS role, 0 AS joined_at_ms").fetch_one(&pool).await;
        assert!(matches!(bad, Err(sqlx::Error::ColumnDecode { .. })), "{:?}", bad.err());
        let bad =
            sqlx::query_as::<_, ConvFactsRow>("SELECT 0 AS kind, NULL AS role, 1 AS head_seq").fetch_one(&pool).await;
        assert!(matches!(bad, Err(sqlx::Error::ColumnDecode { .. })), "{:?}", bad.err());
        let row: EventRow = sqlx::query_as(
            "SELECT 1 AS conversation_id, 2 AS seq, 10 AS kind, 3 AS actor_id, 0 AS at_ms, NULL AS message_id, \
             NULL AS text, '4' AS user_ids, '5' AS data, NULL AS m_deleted_at_ms, NULL AS m_reply_to, \
             NULL AS m_client_msg_id, NULL AS m_written_at_ms",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(matches!(LogEvent::try_from(row), Err(sqlx::Error::ColumnDecode { .. })));
    }
}
