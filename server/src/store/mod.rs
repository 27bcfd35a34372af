//! Storage behind one trait object, with a PostgreSQL and an embedded SQLite implementation.
//! SQL lives only in the backend modules; they return domain types, never wire types.

mod postgres;
mod sqlite;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::metrics::Metrics;

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
}

impl StoreError {
    /// True when the store is unreachable or overloaded rather than the request being wrong.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Database(
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::WorkerCrashed
            )
        )
    }
}

/// The storage interface every service uses.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    fn backend(&self) -> Backend;
    /// A round trip to the database (for /healthz).
    async fn ping(&self) -> Result<(), StoreError>;
    /// This database's instance facts.
    async fn instance(&self) -> Result<Instance, StoreError>;
    /// Versions of the migrations applied, ascending.
    async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError>;
    /// Closes the pool, waiting for connections in use to be returned.
    async fn close(&self);
}

/// Opens the configured store and applies pending migrations.
pub async fn open(config: &Config, metrics: Metrics) -> Result<Arc<dyn Store>, StoreError> {
    match &config.database_url {
        Some(url) => Ok(Arc::new(
            postgres::PgStore::open(url.expose(), &config.store, metrics).await?,
        )),
        None => {
            let path = config.data_dir.join("confab.db");
            Ok(Arc::new(
                sqlite::SqliteStore::open(&path, &config.store, metrics).await?,
            ))
        }
    }
}

/// Opens the embedded store at an explicit path (tools and tests).
pub async fn open_sqlite(
    path: &Path,
    config: &crate::config::StoreConfig,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(
        sqlite::SqliteStore::open(path, config, Metrics::new()).await?,
    ))
}

/// Opens a PostgreSQL store (tools and tests).
pub async fn open_postgres(
    url: &str,
    config: &crate::config::StoreConfig,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(
        postgres::PgStore::open(url, config, Metrics::new()).await?,
    ))
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
fn new_epoch() -> Result<i64, StoreError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| StoreError::Setup(format!("random: {e}")))?;
    Ok((i64::from_le_bytes(b) & i64::MAX).max(1))
}

fn now_ms() -> i64 {
    confab_protocol::frames::now_ms() as i64
}
