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
            .journal_mode(SqliteJournalMode::Wal)
            // Durable commits: nothing acknowledged is lost on power failure.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(cfg.statement_timeout)
            // With encryption at rest, freed pages are zeroed: a value once stored in clear (before
            // the job sealed it, or a search document) does not linger in the file.
            .pragma("secure_delete", if cfg.encryption_key_file.is_some() { "on" } else { "off" });
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
        Ok(store)
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
super::rooms_sql::impl_room_leases!(SqliteStore);
super::media_sql::impl_media_store!(SqliteStore);
super::search_sql::impl_search_store!(SqliteStore);
super::push_sql::impl_push_store!(SqliteStore);
super::meeting_sql::impl_meeting_store!(SqliteStore);
super::keys_sql::impl_key_store!(SqliteStore);
super::conv_write_sql::impl_conv_writes!(SqliteStore);
