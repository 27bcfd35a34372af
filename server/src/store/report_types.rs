//! Reports of messages (migration 0020, docs/protocol.md §27): their ids, reasons, states and
//! actions (stored as the wire's numbers), a stored report, and which reports a page holds.

use super::conv_types::{ConvId, MessageId, UnknownValue, numbered};
use super::types::{UserId, id_type};

id_type!(
    /// A report's id: the `reports.id` column, and the wire's `report_id`s.
    ReportId
);

/// Why a member reported a message (same numbers as the wire `ReportReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportReason {
    Spam = 1,
    /// Harassment, threats, hate.
    Abuse = 2,
    /// Content against the law.
    Illegal = 3,
    Other = 4,
}

numbered!(ReportReason, "report reason", [Spam, Abuse, Illegal, Other]);

/// Whether a report still waits for someone to act (same numbers as the wire `ReportState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportState {
    Open = 1,
    Resolved = 2,
}

numbered!(ReportState, "report state", [Open, Resolved]);

/// What the resolver did (same numbers as the wire `ReportAction`, §27.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportAction {
    /// Nothing: the report is closed.
    Dismiss = 1,
    /// The message is deleted as a moderator deletes it (§13.3).
    DeleteMessage = 2,
    /// The message is deleted and its sender removed from the conversation (§12.5).
    RemoveSender = 3,
}

numbered!(ReportAction, "report action", [Dismiss, DeleteMessage, RemoveSender]);

impl ReportAction {
    /// The action as one word (the audit entry's `after`, docs).
    pub fn name(self) -> &'static str {
        match self {
            Self::Dismiss => "dismiss",
            Self::DeleteMessage => "delete_message",
            Self::RemoveSender => "remove_sender",
        }
    }
}

/// A stored report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRec {
    pub id: ReportId,
    pub conversation_id: ConvId,
    pub message_id: MessageId,
    pub reporter_id: UserId,
    /// The reported message's sender.
    pub sender_id: UserId,
    pub reason: ReportReason,
    /// The reporter's note, at most 2,000 bytes; may be empty.
    pub note: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    pub state: ReportState,
    /// Who resolved it; `None` while open.
    pub resolved_by: Option<UserId>,
    /// Unix milliseconds; `None` while open.
    pub resolved_at_ms: Option<i64>,
    /// What was done; `None` while open.
    pub action: Option<ReportAction>,
    /// The resolver's note to the reporter; may be empty.
    pub resolution_note: String,
}

/// Whose reports a page holds (§27.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportScope {
    /// Every conversation's (a server administrator's view).
    All,
    /// One conversation's.
    Conversation(ConvId),
    /// Those of the groups and channels where the user's role is `lowest` or above.
    ModeratedBy { user: UserId, lowest: super::conv_types::Role },
}

/// Which reports a page holds, newest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportFilter {
    pub scope: ReportScope,
    pub state: ReportState,
    /// Reports with an id below this; `None`: from the newest.
    pub before: Option<ReportId>,
}
