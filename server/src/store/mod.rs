//! Storage behind one trait object, with a PostgreSQL and an embedded SQLite implementation.
//! SQL lives only in the backend modules; they return domain types, never wire types.

mod admin_sql;
mod admin_users_sql;
mod audit_sql;
pub mod audit_types;
mod conv_admin_sql;
pub mod conv_life_sql;
pub mod conv_marks_sql;
pub mod conv_send_sql;
pub mod conv_sql;
pub mod conv_tx_sql;
pub mod conv_types;
pub mod conv_write_sql;
pub mod keys;
pub mod keys_sql;
mod media_collect_sql;
mod media_sql;
pub mod media_types;
mod meeting_sql;
pub mod meeting_types;
mod postgres;
mod progress_sql;
mod push_plan_sql;
mod push_send_sql;
mod push_sql;
pub mod push_types;
pub mod report_types;
mod reports_sql;
pub(crate) mod rooms_sql;
mod rows;
mod rowset;
pub mod rules;
pub mod search_sql;
mod search_statement;
pub mod search_types;
pub(crate) mod shared_sql;
mod sql;
mod sqlite;
pub mod types;
pub mod write_types;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::ratelimit::Gcra;
pub use admin_sql::Suspension;
pub use admin_users_sql::{AdminUserRec, LimitOverrides, LimitsChange, StoreStats, UserListQuery};
pub use audit_types::{AuditAction, AuditFilter, AuditHead, AuditRec, ChainBreak, ChainReport, NewAudit};
pub use conv_types::*;
pub use media_types::*;
pub use meeting_types::*;
pub use push_types::*;
pub use report_types::*;
pub use search_types::*;
pub use types::*;

/// Which backend a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Facts about this database, fixed when it was created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// Random identifier drawn when the database was first initialised. Sync cursors carry it:
    /// a cursor from another epoch (a restored or different database) forces a full resync.
    pub epoch: i64,
    /// Unix milliseconds of creation.
    pub created_at_ms: i64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store setup: {0}")]
    Setup(String),
    /// A unique field (username, email, phone) is taken.
    #[error("{0} already taken")]
    Conflict(&'static str),
    /// A sign-in of a suspended account (§26.3): no session is created.
    #[error("the account is suspended")]
    Suspended,
    /// A sign-in of an account deleted while its secret was being checked: no session is
    /// created, and the answer is that of a wrong secret (§11.3).
    #[error("the account is deleted")]
    AccountGone,
    /// Bytes an administrator quarantined (§26.7): a new upload of them is refused.
    #[error("this content is quarantined")]
    Quarantined,
    /// Encryption at rest: a sealed value that does not open, or a key that cannot be had.
    #[error("encryption at rest: {0}")]
    Sealed(#[from] crate::crypto::CryptoError),
}

impl StoreError {
    /// True when the store is unreachable or overloaded rather than the request being wrong.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed
            )
        )
    }

    /// True when the database refused the data itself — a value it cannot hold or a constraint or
    /// trigger it broke — so the same write would fail again and others without it would not:
    /// PostgreSQL SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation)
    /// and P0001 (raised by a trigger); SQLite's CONSTRAINT (triggers' RAISE too), MISMATCH,
    /// TOOBIG and RANGE primary result codes. Timeouts, locks, serialization failures, a full
    /// disk or a read-only database are not: they are about the database's state.
    pub fn is_caused_by_the_data(&self) -> bool {
        let Self::Database(sqlx::Error::Database(db)) = self else { return false };
        let Some(code) = db.code() else { return false };
        if let Ok(extended) = code.parse::<i32>() {
            // SQLite: the primary result code is the low byte of the extended one.
            return matches!(extended & 0xff, 18 | 19 | 20 | 25);
        }
        code.starts_with("22") || code.starts_with("23") || code == "P0001"
    }
}

/// Conversations, messages and the two logs (docs/protocol.md §12-§14).
#[async_trait::async_trait]
pub trait ConvStore: Send + Sync {
    /// Applies a batch of writes in one transaction (group commit); one result per op.
    async fn apply(&self, ops: &[WriteOp]) -> Result<Vec<Result<Applied, OpError>>, StoreError>;
    /// A conversation as `user` sees it (member or not).
    async fn conversation(&self, user: UserId, conv: ConvId) -> Result<Option<ConvView>, StoreError>;
    /// The user's conversations, latest activity first, strictly before (activity_ms, id).
    async fn list_conversations(
        &self,
        user: UserId,
        before: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<ConvView>, StoreError>;
    async fn members(&self, conv: ConvId, after: UserId, limit: u32) -> Result<Vec<MemberRec>, StoreError>;
    /// Channels whose case-folded title starts with `prefix`, by id after `after`.
    async fn discover(
        &self,
        user: UserId,
        prefix: &str,
        after: ConvId,
        limit: u32,
    ) -> Result<Vec<ConvView>, StoreError>;
    async fn is_member(&self, conv: ConvId, user: UserId) -> Result<bool, StoreError>;
    /// Messages in current state, ascending: below `before`, or above `after` when given.
    async fn history(
        &self,
        conv: ConvId,
        viewer: UserId,
        before: Option<i64>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MessageRec>, StoreError>;
    /// Pinned messages (at most 100), most recently pinned first, decorated for `viewer`.
    async fn pins(&self, conv: ConvId, viewer: UserId) -> Result<Vec<MessageRec>, StoreError>;
    /// Log entries with seq above `after`, ascending.
    async fn events_after(&self, conv: ConvId, after: i64, limit: u32) -> Result<Vec<LogEvent>, StoreError>;
    /// User log entries above `after`, and the log's head.
    async fn user_updates_after(
        &self,
        user: UserId,
        after: i64,
        limit: u32,
    ) -> Result<(Vec<UserUpdateRec>, i64), StoreError>;
    /// Every member's receipt watermarks.
    async fn watermarks(&self, conv: ConvId) -> Result<Vec<MemberWatermarks>, StoreError>;
    async fn message(&self, conv: ConvId, message_id: MessageId) -> Result<Option<MessageRec>, StoreError>;
    /// These messages of `conv` in their current state, decorated for `viewer` (reactions,
    /// pins, attachments), in any order; unknown ids are left out.
    async fn messages(&self, conv: ConvId, viewer: UserId, ids: &[MessageId]) -> Result<Vec<MessageRec>, StoreError>;
    /// (conversation, head seq) of every conversation the user is a member of.
    async fn heads(&self, user: UserId) -> Result<Vec<(ConvId, i64)>, StoreError>;
    /// The highest seq a device acknowledged in a conversation (acks are written by `apply`).
    async fn acked(&self, session: &str, conv: ConvId) -> Result<i64, StoreError>;
}

/// State every node on one database must see the same: the account rate-limit buckets and the
/// deployment's key material (migration 0009).
#[async_trait::async_trait]
pub trait SharedStateStore: Send + Sync {
    /// Takes one token from `bucket`, whose arithmetic is `gcra`, at `now_us` (Unix µs), in one
    /// atomic statement: concurrent takers, on this node or any other, never share the last token.
    /// `Ok(Err(wait))` when the bucket is empty: `wait` is how long until its next token (at least
    /// 1 ms).
    async fn take_rate_token(
        &self,
        bucket: &RateBucket,
        gcra: Gcra,
        now_us: i64,
    ) -> Result<Result<(), std::time::Duration>, StoreError>;
    /// Gives one token back to `bucket` (never beyond full; nothing when it has no row).
    async fn refund_rate_token(&self, bucket: &RateBucket, gcra: Gcra) -> Result<(), StoreError>;
    /// Deletes the buckets that are full at `now_us` (Unix µs): they carry no information.
    /// Returns how many rows went.
    async fn sweep_rate_buckets(&self, now_us: i64) -> Result<u64, StoreError>;
    /// The server secret stored under `name`, if any.
    async fn server_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `value` under `name` unless a value is there already, and returns the stored one:
    /// of nodes racing to initialise a secret, the first insert wins and all read the winner.
    async fn init_server_secret(&self, name: &str, value: &[u8], now_ms: i64) -> Result<Vec<u8>, StoreError>;
}

/// Which node holds each conversation's group-call room in a cluster (§20.3; migration 0010).
/// A holder is one run of a node (`NODE@INCARNATION`); a lease runs until `expires_at_ms` and is
/// renewed by its holder; `fencing` grows whenever the room changes hands (or its holder claims it
/// afresh), so a holder that lost its lease can neither renew nor release it.
#[async_trait::async_trait]
pub trait RoomLeaseStore: Send + Sync {
    /// The lease of `conv`'s room, if any (expired ones included).
    async fn room_lease(&self, conv: ConvId) -> Result<Option<RoomLease>, StoreError>;
    /// Takes `conv`'s room for `holder` until `now_ms + ttl_ms` when nobody holds it, its lease
    /// expired, `holder` holds it already (same fencing when `keep`, else fencing + 1), or it is
    /// still held as `take_over` says (that holder is not running: taken over, fencing + 1).
    /// Returns the lease after the attempt: `holder`'s when it won, the other holder's when not.
    async fn claim_room(
        &self,
        conv: ConvId,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
        take_over: Option<(&str, i64)>,
        keep: bool,
    ) -> Result<RoomLease, StoreError>;
    /// Extends the leases `node` holds with these fencing tokens; returns the rooms extended (a
    /// room missing from it was taken over).
    async fn renew_rooms(
        &self,
        node: &str,
        held: &[(ConvId, i64)],
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Vec<ConvId>, StoreError>;
    /// Ends `node`'s lease of `conv` if it still holds it with `fencing`.
    async fn release_room(&self, conv: ConvId, node: &str, fencing: i64) -> Result<(), StoreError>;
    /// Ends the leases of `holder` (it stopped) that expired before `now_ms` and returns them;
    /// each to exactly one caller. A holder still renewing (declared down by mistake) keeps its.
    async fn drop_node_rooms(&self, holder: &str, now_ms: i64) -> Result<Vec<RoomLease>, StoreError>;
    /// Expires every lease of `holder` at once (it is stopping; the others end its rooms).
    async fn expire_rooms(&self, holder: &str) -> Result<(), StoreError>;
}

/// The storage interface every service uses.
/// Media (docs/protocol.md §22, migration 0011): uploads, blobs, media items, who may read
/// them, and the collector. Bytes live in a `blobs::BlobStore`; this is what the database knows.
#[async_trait::async_trait]
pub trait MediaStore: Send + Sync {
    /// Records an upload unless its user is at a limit (pending uploads, quota), checked in the
    /// same transaction.
    async fn begin_upload(&self, up: &NewUpload, limits: UploadLimits)
    -> Result<Result<(), UploadRefusal>, StoreError>;
    /// The upload, unless unknown or expired at `now_ms`.
    async fn upload(&self, id: &UploadId, now_ms: i64) -> Result<Option<UploadRec>, StoreError>;
    /// Takes an unfinished upload's finishing lease until `now_ms + ttl_ms`; false when another
    /// FinishUpload holds it (or the upload is finished or gone).
    async fn claim_finish(&self, id: &UploadId, now_ms: i64, ttl_ms: i64) -> Result<bool, StoreError>;
    /// Gives the finishing lease back.
    async fn release_finish(&self, id: &UploadId) -> Result<(), StoreError>;
    /// Deletes `user`'s unfinished upload; true when there was one.
    async fn cancel_upload(&self, id: &UploadId, user: UserId) -> Result<bool, StoreError>;
    /// Bytes of `user`'s media items and unexpired unfinished uploads.
    async fn media_usage(&self, user: UserId, now_ms: i64) -> Result<u64, StoreError>;
    /// The recorded blob holding bytes with this hash, kept from the collector for now (its
    /// clock restarts at `now_ms`).
    async fn reuse_blob(&self, sha256: &[u8; 32], now_ms: i64) -> Result<Option<BlobRef>, StoreError>;
    /// Records a blob now durable in the blob store; returns the blob recorded for its hash (an
    /// earlier one when another copy got there first: the caller deletes its own).
    async fn add_blob(&self, blob: BlobRef, now_ms: i64) -> Result<BlobRef, StoreError>;
    /// Records a finished upload's media item and thumbnails and marks the upload finished.
    async fn finish_upload(&self, new: &NewMedia) -> Result<(), StoreError>;
    async fn media(&self, id: &MediaId) -> Result<Option<MediaRec>, StoreError>;
    /// Whether `user` may read the media item (§22.10).
    async fn may_read_media(&self, user: UserId, id: &MediaId) -> Result<bool, StoreError>;
    /// The attachments of the given messages, by message, in order.
    async fn attachments(&self, messages: &[MessageId]) -> Result<Vec<(MessageId, AttachmentRec)>, StoreError>;
    /// Takes or renews a cluster-wide job lease; true when `holder` holds it.
    async fn claim_job(&self, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<bool, StoreError>;
    /// One collector pass over the database (each step at most `limit` rows).
    async fn collect_media(&self, now_ms: i64, cutoff_ms: i64, limit: u32) -> Result<Collected, StoreError>;
    /// Of these blob generations, those recorded.
    async fn known_blobs(&self, generations: &[i64]) -> Result<Vec<i64>, StoreError>;
    /// Of these upload ids, those recorded.
    async fn known_uploads(&self, uploads: &[String]) -> Result<Vec<String>, StoreError>;
}

/// Encryption at rest (docs/operations.md "Encryption at rest", migration 0013): the sealer the
/// store seals and opens contents with, and the operator's key management.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync {
    /// Seals and opens contents (off when the database is not encrypted).
    fn sealer(&self) -> &keys::Sealer;
    /// Keys, generations, the job's progress and what is still in clear.
    async fn key_status(&self) -> Result<keys_sql::KeyStatus, StoreError>;
    /// Re-wraps every data key under the current key-encryption key; returns how many.
    async fn rewrap_keys(&self) -> Result<u64, StoreError>;
    /// Starts a new data-key generation (new contents are sealed under new keys); returns it.
    async fn rotate_data_keys(&self, now_ms: i64) -> Result<i64, StoreError>;
    /// One step of the re-encryption job over `col` (at most `limit` rows).
    async fn reencrypt_step(
        &self,
        col: keys_sql::SealedColumn,
        limit: u32,
        now_ms: i64,
    ) -> Result<keys_sql::JobStep, StoreError>;
    /// The re-encryption job's row `name` (the blob pass keeps its own: `blobs`).
    async fn job(&self, name: &str) -> Result<Option<keys_sql::JobProgress>, StoreError>;
    async fn save_job(&self, job: &keys_sql::JobProgress) -> Result<(), StoreError>;
    /// Up to `limit` blobs with ids above `after`, by id.
    async fn blobs_after(&self, after: i64, limit: u32) -> Result<Vec<keys_sql::BlobRow>, StoreError>;
    /// Points blob `id` (named with `from`) at its sealed copy named with `to`; false when it
    /// moved or went meanwhile.
    async fn move_blob(&self, id: i64, from: i64, to: i64, key_id: i64) -> Result<bool, StoreError>;
    /// After the job: nothing stored in clear is left in the database's own files that the
    /// database can clear (SQLite: the WAL).
    /// `vacuum`: the job sealed values stored in clear, so SQLite also rebuilds its file.
    async fn settle_after_reencryption(&self, vacuum: bool) -> Result<(), StoreError>;
}

/// Message search (docs/protocol.md §23, migration 0012): who may search what (membership spans,
/// written by `apply` with the memberships), the search itself, and the indexer's passes.
#[async_trait::async_trait]
pub trait SearchStore: Send + Sync {
    /// `user`'s searchable spans (only in `only` when it is not empty), with the index's progress
    /// in each of their conversations.
    async fn search_scope(&self, user: UserId, only: &[ConvId]) -> Result<SearchScope, StoreError>;
    /// The page of hits of `spec`, in its order, with one more when more follow. Documents of
    /// messages deleted or edited since the indexer read them may still be found: the caller
    /// checks hits against the messages' current state.
    async fn search(&self, spec: &SearchSpec) -> Result<Vec<Found>, StoreError>;
    /// Conversations whose log the index has not read to the head, by id after `after`.
    async fn search_lagging(&self, after: ConvId, limit: u32) -> Result<Vec<ConvId>, StoreError>;
    /// One indexer pass over `convs` (each conversation's progress row locked for it); returns
    /// their progress after it and how many documents it wrote.
    async fn index_pass(&self, convs: &[ConvId], fold: &FoldFn) -> Result<(Vec<IndexProgress>, u64), StoreError>;
}

/// Push notifications (§24, migration 0014): targets, settings, the planner's passes, the
/// sender's claims and the ledger.
#[async_trait::async_trait]
pub trait PushStore: Send + Sync {
    /// §24.1: registers (or takes over) a target; `None` when the device holds its maximum.
    async fn register_push_target(&self, t: &NewTarget) -> Result<Option<TargetRec>, StoreError>;
    /// Disables targets with `reason` and drops their queued deliveries; returns those disabled
    /// now. `told`: the device needs no PushTargetInvalidated.
    async fn disable_push_targets(
        &self,
        which: TargetSelector<'_>,
        reason: &str,
        told: bool,
        now_ms: i64,
    ) -> Result<Vec<TargetRec>, StoreError>;
    /// §24.1: `user`'s target `id` unregistered; `false` when it is not theirs.
    async fn unregister_push_target(&self, user: UserId, id: i64, now_ms: i64) -> Result<bool, StoreError>;
    /// The user's targets (one session's when given), unregistered ones left out.
    async fn push_targets(&self, user: UserId, session: Option<&str>) -> Result<Vec<TargetRec>, StoreError>;
    /// Targets of `session` disabled by their provider and not yet announced; marks them told.
    async fn take_untold_push_targets(&self, session: &str, now_ms: i64) -> Result<Vec<TargetRec>, StoreError>;
    /// §24.3: the account's settings and the conversation levels that still hold at `now_ms`.
    async fn push_settings(&self, user: UserId, now_ms: i64) -> Result<PushSettingsRec, StoreError>;
    async fn set_push_settings(
        &self,
        user: UserId,
        level: Option<PushLevel>,
        preview: Option<bool>,
    ) -> Result<(), StoreError>;
    /// `false` when `user` is not a member of the conversation.
    async fn set_conversation_push(
        &self,
        user: UserId,
        setting: ConvPushSetting,
        remove: bool,
    ) -> Result<bool, StoreError>;
    /// §24.5: newest first, ids below `before` (0: all).
    async fn push_deliveries(&self, user: UserId, before: i64, limit: u32) -> Result<Vec<DeliveryRec>, StoreError>;
    /// Conversations whose log the planner has not read to the head.
    async fn push_lagging(&self, after: ConvId, limit: u32) -> Result<Vec<ConvId>, StoreError>;
    /// One planner pass (`push_sql::PushSql::plan_pass`).
    async fn plan_push_pass(
        &self,
        convs: &[ConvId],
        cx: &PlanContext<'_>,
    ) -> Result<(Vec<PlanProgress>, u64), StoreError>;
    /// Ledger rows for a ringing call's callees.
    async fn plan_call_push(&self, call: &CallInvitePlan) -> Result<u64, StoreError>;
    /// Claims due deliveries for `holder` with a lease.
    async fn claim_push_deliveries(
        &self,
        holder: &str,
        providers: &[PushProvider],
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError>;
    /// Records claimed deliveries' outcomes in one transaction; `false` for each whose lease was
    /// lost.
    async fn finish_push_deliveries(&self, holder: &str, updates: &[DeliveryUpdate]) -> Result<Vec<bool>, StoreError>;
    /// Sent deliveries of `providers` whose receipt is due (sent at or before `sent_before_ms`).
    async fn pending_push_receipts(
        &self,
        providers: &[PushProvider],
        sent_before_ms: i64,
        limit: u32,
    ) -> Result<Vec<PendingReceipt>, StoreError>;
    /// Settles a receipt: the delivery stays SENT, or becomes FAILED with `(status, detail)`.
    async fn settle_push_receipt(&self, id: i64, failed: Option<(i64, &str)>, now_ms: i64) -> Result<(), StoreError>;
    /// Deletes up to `limit` ledger rows that ended before `before_ms` (and targets disabled
    /// before it that nothing names); returns the rows deleted.
    async fn prune_push_ledger(&self, before_ms: i64, limit: u32) -> Result<u64, StoreError>;
    /// When the next queued delivery is due.
    async fn next_push_due(&self) -> Result<Option<i64>, StoreError>;
}

/// Meeting rooms (§25, migration 0015): rooms and their moderators, invites, bars.
#[async_trait::async_trait]
pub trait MeetingStore: Send + Sync {
    /// §25.1: stores a new room (its `empty_since_ms` is its creation).
    async fn create_meeting_room(&self, r: &RoomRec) -> Result<(), StoreError>;
    async fn meeting_room(&self, id: &RoomId) -> Result<Option<RoomRec>, StoreError>;
    /// The rooms `user` owns or moderates, newest first (at most 1,000).
    async fn meeting_rooms_of(&self, user: UserId, include_closed: bool) -> Result<Vec<RoomRec>, StoreError>;
    /// Applies `c` to an open room; `None` when there is no open room `id`.
    async fn update_meeting_room(&self, id: &RoomId, c: &RoomChange) -> Result<Option<RoomRec>, StoreError>;
    /// `Some(since)`: nobody is in the room since then; `None`: someone is.
    async fn set_meeting_room_empty(&self, id: &RoomId, since_ms: Option<u64>) -> Result<(), StoreError>;
    /// At a start: open rooms recorded as in use count as empty from `now_ms`; how many.
    async fn reset_meeting_rooms_in_use(&self, now_ms: u64) -> Result<u64, StoreError>;
    /// Closes an open room; whether this call closed it.
    async fn close_meeting_room(&self, id: &RoomId, reason: RoomCloseReason, now_ms: u64) -> Result<bool, StoreError>;
    /// §25.6: open rooms due to close (expired, or empty past their timeout), at most `limit`.
    async fn meeting_rooms_due(
        &self,
        now_ms: u64,
        default_empty_ms: u64,
        limit: i64,
    ) -> Result<Vec<(RoomId, RoomCloseReason)>, StoreError>;
    async fn create_room_invite(&self, v: &InviteRec) -> Result<(), StoreError>;
    /// A room's invites, newest first (at most 1,000).
    async fn room_invites(&self, room: &RoomId) -> Result<Vec<InviteRec>, StoreError>;
    async fn room_invite(&self, room: &RoomId, id: &str) -> Result<Option<InviteRec>, StoreError>;
    /// §25.3: counts one use of a live invite of an open room.
    async fn use_room_invite(&self, room: &RoomId, id: &str, now_ms: u64) -> Result<InviteUse, StoreError>;
    /// Whether this call revoked the invite.
    async fn revoke_room_invite(&self, room: &RoomId, id: &str, now_ms: u64) -> Result<bool, StoreError>;
    async fn bar_from_room(&self, room: &RoomId, who: &Barred, now_ms: u64) -> Result<(), StoreError>;
    /// Whether any of `who` is barred from `room`.
    async fn barred_from_room(&self, room: &RoomId, who: &[Barred]) -> Result<bool, StoreError>;
}

/// The audit log and the server administrator flag (migration 0018, docs/operations.md "Audit
/// log"). Entries of actions that change something are appended by the store in the same
/// transaction as the change; these methods are for the rest.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends one entry in a transaction of its own; returns its seq.
    async fn append_audit(&self, entry: &NewAudit) -> Result<i64, StoreError>;
    /// Entries after `after_seq`, ascending, at most `limit`.
    async fn audit_after(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRec>, StoreError>;
    /// Checks the whole chain against its recorded head (`confab-server audit verify`).
    async fn verify_audit(&self) -> Result<ChainReport, StoreError>;
    /// Sets a live account's administrator flag, recording `entry` in the same transaction;
    /// false (nothing recorded) when there is no such live account or the flag was already so.
    async fn set_server_admin(&self, user: UserId, admin: bool, entry: &NewAudit) -> Result<bool, StoreError>;
    /// Whether a live account is a server administrator.
    async fn is_server_admin(&self, user: UserId) -> Result<bool, StoreError>;
    /// The live server administrators.
    async fn server_admins(&self) -> Result<Vec<UserId>, StoreError>;
    /// Entries matching `filter`, newest first, at most `limit` (§28.3, §28.4).
    async fn audit_page(&self, filter: &AuditFilter, limit: i64) -> Result<Vec<AuditRec>, StoreError>;
    /// The chain's head as the database records it.
    async fn audit_head(&self) -> Result<AuditHead, StoreError>;
}

/// Server administration (docs/protocol.md §26): each change recorded in the audit log in its
/// own transaction.
#[async_trait::async_trait]
pub trait AdminStore: Send + Sync {
    /// Suspends a live account and ends its sessions (reason `Suspended`), recording `entry`
    /// unless it already was; `None` when there is no such live account (§26.3).
    async fn suspend_user(&self, user: UserId, now_ms: i64, entry: &NewAudit)
    -> Result<Option<Suspension>, StoreError>;
    /// Lifts a suspension, recording `entry`; `None` for no such live account, `Some(false)`
    /// when it was not suspended (§26.3).
    async fn reactivate_user(&self, user: UserId, entry: &NewAudit) -> Result<Option<bool>, StoreError>;
    /// Ends every live session of a live account (reason `Revoked`), recording `entry` when
    /// there was one; `None` for no such live account (§26.5).
    async fn revoke_user_sessions(
        &self,
        user: UserId,
        now_ms: i64,
        entry: &NewAudit,
    ) -> Result<Option<Vec<String>>, StoreError>;
    /// Accounts matching `q` in id order with their figures at `now_ms` (§26.2), one statement.
    async fn admin_users(&self, q: &UserListQuery, now_ms: i64) -> Result<Vec<AdminUserRec>, StoreError>;
    /// One account, deleted or not, with its figures at `now_ms` (§26.2).
    async fn admin_user(&self, user: UserId, now_ms: i64) -> Result<Option<AdminUserRec>, StoreError>;
    /// The account's limit overrides (§26.8); all `None` when it has none.
    async fn user_limits(&self, user: UserId) -> Result<LimitOverrides, StoreError>;
    /// Replaces a live account's limit overrides and deletes the given rate-limit buckets,
    /// recording `entry` (with the overrides before and after) when anything changed or buckets
    /// were given; `None` for no such live account (§26.8).
    async fn set_user_limits(
        &self,
        user: UserId,
        limits: &LimitOverrides,
        buckets: &[RateBucket],
        entry: &NewAudit,
    ) -> Result<Option<LimitsChange>, StoreError>;
    /// Quarantines a media item and its blob, recording `entry` (target: the media id, target
    /// user: the uploader); `None` for an unknown id, `Some(false)` when it already was (§26.7).
    async fn quarantine_media(&self, id: &MediaId, now_ms: i64, entry: &NewAudit) -> Result<Option<bool>, StoreError>;
    /// The server's figures from the store at `now_ms` (§26.9).
    async fn server_stats(&self, now_ms: i64) -> Result<StoreStats, StoreError>;
}

/// Reports of messages as moderators and administrators read them (docs/protocol.md §27);
/// reports are made and resolved through the batched writer (`WriteOp::ReportMessage`,
/// `WriteOp::ResolveReport`).
#[async_trait::async_trait]
pub trait ReportStore: Send + Sync {
    /// A report by id.
    async fn report(&self, id: ReportId) -> Result<Option<ReportRec>, StoreError>;
    /// The reports `filter` selects, newest first, at most `limit`.
    async fn reports(&self, filter: &ReportFilter, limit: u32) -> Result<Vec<ReportRec>, StoreError>;
}

#[async_trait::async_trait]
pub trait Store:
    ConvStore
    + ReportStore
    + SharedStateStore
    + AuditStore
    + AdminStore
    + RoomLeaseStore
    + MediaStore
    + SearchStore
    + KeyStore
    + PushStore
    + MeetingStore
    + Send
    + Sync
    + std::fmt::Debug
{
    fn backend(&self) -> Backend;
    /// A round trip to the database (for /healthz).
    async fn ping(&self) -> Result<(), StoreError>;
    /// This database's instance facts.
    async fn instance(&self) -> Result<Instance, StoreError>;
    /// Versions of the migrations applied, ascending.
    async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError>;
    /// Closes the pool, waiting for connections in use to be returned.
    async fn close(&self);

    // ---- accounts (docs/protocol.md §11) ----

    /// Creates an account; `Conflict(field)` when the username, email or phone is taken.
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError>;
    /// An account by id, deleted ones included (they show as deleted users).
    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError>;
    /// A live account by case-folded username or email, with its password hash.
    async fn credentials_by_login(&self, key: &str) -> Result<Option<Credentials>, StoreError>;
    /// A live account by id, with its password hash.
    async fn credentials(&self, id: UserId) -> Result<Option<Credentials>, StoreError>;
    /// A live account by phone number.
    async fn user_by_phone(&self, phone: &str) -> Result<Option<User>, StoreError>;
    async fn update_profile(&self, id: UserId, update: ProfileUpdate) -> Result<Option<User>, StoreError>;
    /// Sets the password hash and revokes every session but `keep_session`; returns the revoked ids.
    async fn set_password(
        &self,
        id: UserId,
        hash: &str,
        keep_session: Option<&str>,
        reason: RevokeReason,
        now_ms: i64,
        entry: &NewAudit,
    ) -> Result<Vec<String>, StoreError>;
    /// Creates a session with its first refresh token, and records the sign-in in the audit log.
    async fn create_session(&self, session: NewSession) -> Result<SessionRecord, StoreError>;
    async fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Records the last use of live sessions (revoked ones are left alone), all in one
    /// transaction: the session "touch" of every authentication, coalesced (`auth::touch`).
    async fn touch_sessions(&self, touches: &[SessionTouch]) -> Result<(), StoreError>;
    /// The user's live sessions, most recently seen first.
    async fn list_sessions(&self, user: UserId) -> Result<Vec<SessionRecord>, StoreError>;
    /// Revokes one live session of `user` and records `entry` in the same transaction; false
    /// (nothing recorded) when there is none with that id.
    async fn revoke_session(
        &self,
        user: UserId,
        id: &str,
        reason: RevokeReason,
        now_ms: i64,
        entry: &NewAudit,
    ) -> Result<bool, StoreError>;
    /// Spends a refresh token and records its successor, atomically; detects reuse, which
    /// revokes the session and is recorded in the audit log with `client_addr`.
    async fn rotate_refresh(
        &self,
        old_hash: &[u8],
        new_hash: &[u8],
        now_ms: i64,
        new_expires_at_ms: i64,
        client_addr: &str,
    ) -> Result<RotateOutcome, StoreError>;
    /// Stores a one-time code, replacing the previous one for the same kind and destination.
    async fn put_code(&self, code: NewCode) -> Result<(), StoreError>;
    // ---- social (docs/protocol.md §15-§19) ----

    async fn set_privacy(
        &self,
        user: UserId,
        read_receipts: Option<bool>,
        show_last_seen: Option<bool>,
    ) -> Result<(), StoreError>;
    async fn set_last_seen(&self, user: UserId, now_ms: i64) -> Result<(), StoreError>;
    /// Live users among `ids`, in id order.
    async fn users(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError>;
    /// Live users whose username or display name starts with `prefix` (case-folded), by username
    /// after `after`, leaving out users who blocked `viewer`.
    async fn search_users(
        &self,
        viewer: UserId,
        prefix: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<User>, StoreError>;
    /// Adds a contact; false when the user does not exist (or is deleted).
    async fn add_contact(&self, user: UserId, contact: UserId, now_ms: i64) -> Result<bool, StoreError>;
    async fn remove_contact(&self, user: UserId, contact: UserId) -> Result<(), StoreError>;
    async fn contacts(&self, user: UserId) -> Result<Vec<User>, StoreError>;
    async fn block(&self, user: UserId, other: UserId, now_ms: i64) -> Result<bool, StoreError>;
    async fn unblock(&self, user: UserId, other: UserId) -> Result<(), StoreError>;
    async fn blocked_users(&self, user: UserId) -> Result<Vec<User>, StoreError>;
    /// The users who blocked `user`.
    async fn blockers(&self, user: UserId) -> Result<Vec<UserId>, StoreError>;
    /// Deleted accounts still members of a GROUP or CHANNEL: data from before account deletion
    /// left them (docs/protocol.md §21), to be mended at start.
    async fn deleted_members(&self) -> Result<Vec<UserId>, StoreError>;
    /// Writes the search keys (`confab_protocol::text::fold`) of display names and titles that
    /// have none (rows from before migration 0008), a thousand per transaction; returns how many.
    async fn refold_keys(&self) -> Result<u64, StoreError>;
    /// Who may see `user`'s presence: co-members and users in `user`'s contacts, minus those
    /// `user` blocked.
    async fn presence_audience(&self, user: UserId) -> Result<Vec<UserId>, StoreError>;
    async fn notifications(
        &self,
        user: UserId,
        before: i64,
        limit: u32,
        unread_only: bool,
    ) -> Result<(Vec<NotificationRec>, i64), StoreError>;
    /// Marks entries up to `up_to` read; returns the unread count left.
    async fn mark_notifications_read(&self, user: UserId, up_to: i64) -> Result<i64, StoreError>;

    /// Tries a code: counts the try, and consumes the code when it is right.
    async fn check_code(
        &self,
        kind: CodeKind,
        destination: &str,
        code_hash: &[u8],
        now_ms: i64,
        max_attempts: u32,
    ) -> Result<CodeCheck, StoreError>;
}

/// Opens the configured store and applies pending migrations.
pub async fn open(config: &Config, metrics: Metrics) -> Result<Arc<dyn Store>, StoreError> {
    open_with(config, metrics, true).await
}

/// Opens the configured store for a tool (`confab-server keys …`): like [`open`], except that a
/// key given for a database in clear does not turn encryption on (only a server start does).
pub async fn open_for_tools(config: &Config, metrics: Metrics) -> Result<Arc<dyn Store>, StoreError> {
    open_with(config, metrics, false).await
}

async fn open_with(config: &Config, metrics: Metrics, may_enable: bool) -> Result<Arc<dyn Store>, StoreError> {
    match &config.database_url {
        Some(url) => Ok(Arc::new(postgres::PgStore::open(url.expose(), &config.store, metrics, may_enable).await?)),
        None => {
            let path = config.data_dir.join("confab.db");
            Ok(Arc::new(sqlite::SqliteStore::open(&path, &config.store, metrics, may_enable).await?))
        }
    }
}

/// Opens the embedded store at an explicit path (tools and tests).
pub async fn open_sqlite(path: &Path, config: &crate::config::StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(sqlite::SqliteStore::open(path, config, Metrics::new(), true).await?))
}

/// Opens a PostgreSQL store (tools and tests).
pub async fn open_postgres(url: &str, config: &crate::config::StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(postgres::PgStore::open(url, config, Metrics::new(), true).await?))
}

/// Times a store operation into the store latency histogram.
async fn timed<T, F: Future<Output = Result<T, StoreError>>>(
    metrics: &Metrics,
    op: &'static str,
    f: F,
) -> Result<T, StoreError> {
    let start = Instant::now();
    let r = f.await;
    metrics.store_op(op, start.elapsed());
    r
}

/// A fresh random epoch (positive, so it prints the same everywhere).
pub(crate) fn new_epoch() -> Result<i64, StoreError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| StoreError::Setup(format!("random: {e}")))?;
    Ok((i64::from_le_bytes(b) & i64::MAX).max(1))
}

/// Prepared statements kept per pooled connection (sqlx's default is 100). The writer's
/// multi-row statements differ with the batch size (one text per row count and statement kind:
/// up to `MAX_BATCH` each), so with the default a writer connection evicted and prepared them
/// again all the time: a round trip and a fresh plan per statement per batch. Measured in W4
/// (docs/benchmarks.md).
pub(super) const STATEMENT_CACHE: usize = 2048;

pub(crate) fn now_ms() -> i64 {
    confab_protocol::frames::now_ms() as i64
}
