//! The embedded SQLite store (WAL mode, full fsync): the zero-set-up default.

use std::path::Path;
use std::str::FromStr;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{Backend, Instance, Store, StoreError, new_epoch, now_ms, timed};
use crate::config::StoreConfig;
use crate::metrics::Metrics;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    metrics: Metrics,
}

impl SqliteStore {
    pub async fn open(
        path: &Path,
        cfg: &StoreConfig,
        metrics: Metrics,
    ) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Setup(format!("creating {}: {e}", dir.display())))?;
        }
        let opts = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Durable commits: nothing acknowledged is lost on power failure.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(cfg.statement_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(cfg.pool_size)
            .acquire_timeout(cfg.acquire_timeout)
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        let store = Self { pool, metrics };
        store.init_instance().await?;
        Ok(store)
    }

    async fn init_instance(&self) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO instance (id, epoch, created_at_ms) VALUES (1, ?, ?) ON CONFLICT (id) DO NOTHING")
            .bind(new_epoch()?)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> Result<(), StoreError> {
        timed(&self.metrics, "ping", async {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    async fn instance(&self) -> Result<Instance, StoreError> {
        timed(&self.metrics, "instance", async {
            let row = sqlx::query("SELECT epoch, created_at_ms FROM instance WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
            Ok(Instance {
                epoch: row.try_get(0)?,
                created_at_ms: row.try_get(1)?,
            })
        })
        .await
    }

    async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let rows =
            sqlx::query("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
