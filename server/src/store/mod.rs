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
mod features;
pub mod keys;
mod keys_job_sql;
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
mod sessions_sql;
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
pub use admin_sql::Suspension;
pub use admin_users_sql::{AdminUserRec, LimitOverrides, LimitsChange, StoreStats, UserListQuery};
pub use audit_types::{AuditAction, AuditFilter, AuditHead, AuditRec, ChainBreak, ChainReport, NewAudit};
pub use conv_types::*;
pub use features::{
    AdminStore, AuditStore, KeyStore, MediaStore, MeetingStore, PushStore, ReportStore, RoomLeaseStore, SearchStore,
    SharedStateStore,
};
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

/// The storage interface every service uses.
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
