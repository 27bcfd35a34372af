//! The sub-traits of `Store` for the features beside accounts, the social tables and
//! conversations (those are in `store/mod.rs`): the state nodes share, room leases, media,
//! encryption keys, search, push, meetings, the audit log, administration and reports. Each
//! backend implements them all; `store` re-exports them.

use super::{
    AdminUserRec, AttachmentRec, AuditFilter, AuditHead, AuditRec, Barred, BlobRef, CallInvitePlan, ChainReport,
    Collected, ConvId, ConvPushSetting, DeliveryRec, DeliveryUpdate, DueDelivery, FoldFn, Found, IndexProgress,
    InviteRec, InviteUse, LimitOverrides, LimitsChange, MediaId, MediaRec, MessageId, NewAudit, NewMedia, NewTarget,
    NewUpload, PendingReceipt, PlanContext, PlanProgress, PushLevel, PushProvider, PushSettingsRec, RateBucket,
    ReportFilter, ReportId, ReportRec, RoomChange, RoomCloseReason, RoomId, RoomLease, RoomRec, SearchScope,
    SearchSpec, StoreError, StoreStats, Suspension, TargetRec, TargetSelector, UploadId, UploadLimits, UploadRec,
    UploadRefusal, UserId, UserListQuery, keys, keys_sql,
};
use crate::ratelimit::Gcra;

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
