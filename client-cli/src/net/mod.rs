//! The network actor: one task owns the connection, reconnects by itself with backoff, keeps the
//! sync state of §14.6 and an outbox of unacknowledged sends, and reports everything the UI (or
//! `confab tail`) needs as typed [`Update`]s. Both directions are bounded channels; the UI never
//! waits on the network, and no lock is held across an await.

mod actor;
pub use actor::{fetch_users, forget_outbox};
pub mod sync;
pub mod transfer;
pub use transfer::{Sink, Transfer, TransferKind, Transferred};

use std::time::Duration;

use confab_protocol::v1::{self, client_frame::Request, response};
use tokio::sync::mpsc;

use crate::config::Settings;

/// Commands queued for the actor before `try_send` reports it busy.
pub const COMMAND_QUEUE: usize = 64;
/// Updates queued for the UI before the actor waits for it.
pub const UPDATE_QUEUE: usize = 512;

/// The connection as the user sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnState {
    Connecting {
        attempt: u32,
    },
    /// Connected, signed in, caught up.
    Online,
    Offline {
        reason: String,
        retry_in: Duration,
    },
    /// Credentials are missing or the session ended: sign in again.
    SignedOut(String),
}

/// What a request was for, handed back with the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// Nothing to show on success; errors are reported.
    Quiet,
    /// Nothing to show at all (typing).
    Silent,
    /// A fresh copy of a conversation (counts, title).
    Refresh,
    /// Profiles of users.
    Users,
    /// The UI's own bookkeeping: it knows what this number stands for.
    Ui(u64),
}

/// A message to send, kept until the server acknowledges it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outgoing {
    pub conversation_id: u64,
    pub client_msg_id: String,
    pub text: String,
    pub reply_to: u64,
    pub mentions: Vec<u64>,
    /// Uploaded media to attach (outboxes written before attachments existed have none).
    #[serde(default)]
    pub attachments: Vec<OutAttachment>,
    /// When the user wrote it, Unix milliseconds by this device's clock, sent as
    /// `SendMessage.written_at_ms` (docs/protocol.md §13.2) so a message written offline keeps
    /// its time; 0 when unknown (outboxes written before this field existed).
    #[serde(default)]
    pub written_ms: u64,
}

/// An attachment of an [`Outgoing`] message: what SendMessage takes, and what the pending
/// message shows until the server's copy arrives.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutAttachment {
    pub media_id: String,
    pub file_name: String,
    pub mime_type: String,
    pub size: u64,
}

impl OutAttachment {
    /// As SendMessage carries it (the server fills in the rest from the media item).
    pub fn to_proto(&self) -> v1::Attachment {
        v1::Attachment {
            media_id: self.media_id.clone(),
            file_name: self.file_name.clone(),
            mime_type: self.mime_type.clone(),
            size: self.size,
            ..Default::default()
        }
    }
}

/// Requests to the actor.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Send(Outgoing),
    Request {
        tag: Tag,
        request: Request,
    },
    /// A page of history: below `before_seq` (0: the latest page), or above `after_seq` when
    /// that is set.
    History {
        conversation_id: u64,
        before_seq: u64,
        after_seq: u64,
        limit: u32,
    },
    /// Upload or download media (docs/protocol.md §22).
    Transfer(Transfer),
    /// While offline waiting to retry: connect now, with the backoff reset to its start. Does
    /// nothing while connecting or online.
    Reconnect,
    Shutdown,
}

/// What the account looks like right after (re)bootstrapping.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub me: v1::Me,
    /// Most recent activity first.
    pub conversations: Vec<v1::Conversation>,
    pub users: Vec<v1::UserProfile>,
}

/// Reports from the actor.
#[derive(Clone, Debug)]
pub enum Update {
    Connection(ConnState),
    /// Replace all local state with this (first connect, or the server's database changed).
    Snapshot(Box<Snapshot>),
    /// The next entry of a conversation's log: exactly once, in seq order.
    Entry(v1::ConversationEvent),
    /// The next entry of the user's log, exactly once, in order.
    UserEntry(v1::UserUpdate),
    /// A page of history, as asked for.
    History {
        conversation_id: u64,
        before_seq: u64,
        after_seq: u64,
        messages: Vec<v1::Message>,
        has_more: bool,
    },
    Receipt(v1::ReceiptUpdated),
    Typing(v1::TypingChanged),
    Presence(v1::PresenceChanged),
    Notification(v1::Notification),
    /// A message waiting in the outbox, not yet acknowledged: sent when the actor starts for
    /// each message an earlier run left unsent, and after every [`Update::Snapshot`] for each
    /// message still waiting (a snapshot replaces local state). The UI shows it as pending;
    /// [`Update::Sent`] or [`Update::SendFailed`] follows for each.
    Queued(Outgoing),
    /// The server stored a message from the outbox.
    Sent {
        conversation_id: u64,
        client_msg_id: String,
        result: v1::SendMessageResult,
    },
    /// The server refused a message for good.
    SendFailed {
        conversation_id: u64,
        client_msg_id: String,
        error: String,
    },
    Reply {
        tag: Tag,
        result: Result<response::Result, String>,
    },
    /// Bytes of a transfer so far.
    Transfer {
        id: u64,
        done: u64,
        total: u64,
    },
    TransferDone {
        id: u64,
        result: Result<Transferred, String>,
    },
}

/// Options of the actor.
#[derive(Clone, Debug)]
pub struct NetOptions {
    /// First reconnect delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// How often cursors are acknowledged and stalled sends retried.
    pub tick: Duration,
    /// Keep unsent messages in the profile's `outbox.json`, so they are sent after a restart
    /// too (the TUI does; `tail`, which sends nothing, does not).
    pub persist_outbox: bool,
}

impl Default for NetOptions {
    fn default() -> Self {
        Self {
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            tick: Duration::from_secs(1),
            persist_outbox: true,
        }
    }
}

/// The typed handle to the actor.
#[derive(Clone, Debug)]
pub struct NetHandle {
    tx: mpsc::Sender<Command>,
}

/// The actor's queue is full; the command was not taken.
#[derive(Debug, thiserror::Error)]
#[error("the network task is busy")]
pub struct Busy;

impl NetHandle {
    /// Queues a command without waiting.
    pub fn try_send(&self, c: Command) -> Result<(), Busy> {
        self.tx.try_send(c).map_err(|_| Busy)
    }

    /// Queues a command, waiting for room.
    pub async fn send(&self, c: Command) -> Result<(), Busy> {
        self.tx.send(c).await.map_err(|_| Busy)
    }
}

/// Starts the actor for the profile in `settings`.
pub fn spawn(settings: Settings, opts: NetOptions) -> (NetHandle, mpsc::Receiver<Update>) {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let (up_tx, up_rx) = mpsc::channel(UPDATE_QUEUE);
    tokio::spawn(actor::run(settings, opts, rx, up_tx));
    (NetHandle { tx }, up_rx)
}

pub use confab_protocol::frames::new_client_msg_id;

/// A random fraction in [0, 1) for backoff jitter.
pub(crate) fn jitter() -> f64 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}
