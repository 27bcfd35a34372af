//! The embedded SQLite store (WAL mode, full fsync): the zero-set-up default.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::Backend;
use super::sql::{HasDb, impl_store};
use crate::config::StoreConfig;
use crate::metrics::Metrics;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    metrics: Metrics,
    sealer: super::keys::Sealer,
}

impl SqliteStore {
    /// `may_enable`: a key configured on a database in clear turns encryption on (a server start).
    pub async fn open(path: &Path, cfg: &StoreConfig, metrics: Metrics, may_enable: bool) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Setup(format!("creating {}: {e}", dir.display())))?;
        }
        let opts = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .statement_cache_capacity(super::STATEMENT_CACHE)
            .journal_mode(SqliteJournalMode::Wal)
            // Durable commits: nothing acknowledged is lost on power failure.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(cfg.statement_timeout)
            // With encryption at rest, freed pages are zeroed: a value once stored in clear (before
            // the job sealed it, or a search document) does not linger in the file.
            .pragma("secure_delete", if cfg.encryption_key_file.is_some() { "on" } else { "off" })
            // No checkpoint inside a commit: with the default (every 1,000 pages), the commit that
            // crossed the mark copied the WAL into the database and fsynced it before returning,
            // and the batched writer (and every caller waiting on it) stalled behind it. The
            // checkpointer below does it beside the writer instead.
            .pragma("wal_autocheckpoint", "0")
            // A WAL that grew under load is cut back to this size when it restarts.
            .pragma("journal_size_limit", "67108864");
        let pool = SqlitePoolOptions::new()
            .max_connections(cfg.pool_size)
            .acquire_timeout(cfg.acquire_timeout)
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        let keys = std::sync::Arc::new(super::keys_sql::SqlKeys::new(pool.clone()));
        let sealer = super::keys::Sealer::open(keys, cfg, super::now_ms(), may_enable).await?;
        let store = Self { pool, metrics, sealer };
        store.init_instance().await?;
        tokio::spawn(checkpointer(store.pool.clone()));
        Ok(store)
    }
}

/// How often the checkpointer copies committed WAL frames into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Checkpoints the WAL beside the writer until the pool closes: `PASSIVE` takes no lock a writer
/// needs, so commits go on while committed pages are copied and the database file is fsynced; the
/// next commit after a complete checkpoint starts the WAL over. (SQLite also checkpoints when the
/// last connection closes.)
async fn checkpointer(pool: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await
            && !pool.is_closed()
        {
            tracing::debug!(error = %e, "WAL checkpoint failed; retried at the next tick");
        }
    }
}

impl HasDb for SqliteStore {
    type Db = sqlx::Sqlite;
}

// Write transactions begin `IMMEDIATE` (`SqlBackend::BEGIN`): they take the write lock up front,
// so two writers never deadlock on upgrade.
impl_store!(SqliteStore, Backend::Sqlite);

super::conv_sql::impl_conv_store!(SqliteStore);
super::shared_sql::impl_shared_state!(SqliteStore);
super::audit_sql::impl_audit_store!(SqliteStore);
super::admin_sql::impl_admin_store!(SqliteStore);
super::reports_sql::impl_report_store!(SqliteStore);
super::rooms_sql::impl_room_leases!(SqliteStore);
super::media_sql::impl_media_store!(SqliteStore);
super::search_sql::impl_search_store!(SqliteStore);
super::push_sql::impl_push_store!(SqliteStore);
super::meeting_sql::impl_meeting_store!(SqliteStore);
super::keys_sql::impl_key_store!(SqliteStore);
super::conv_write_sql::impl_conv_writes!(SqliteStore);
