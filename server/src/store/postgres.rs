//! The PostgreSQL store, with per-session statement and idle-transaction timeouts.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor, Row};
use std::str::FromStr;

use super::{Backend, Instance, Store, StoreError, new_epoch, now_ms, timed};
use crate::config::StoreConfig;
use crate::metrics::Metrics;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug)]
pub struct PgStore {
    pool: PgPool,
    metrics: Metrics,
}

impl PgStore {
    pub async fn open(url: &str, cfg: &StoreConfig, metrics: Metrics) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url)?.application_name("confab-server");
        let statement_ms = cfg.statement_timeout.as_millis();
        let pool = PgPoolOptions::new()
            .max_connections(cfg.pool_size)
            .acquire_timeout(cfg.acquire_timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    let sql = format!(
                        "SET statement_timeout = {statement_ms}; SET idle_in_transaction_session_timeout = {}",
                        statement_ms * 2
                    );
                    conn.execute(sqlx::AssertSqlSafe(sql)).await?;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        let store = Self { pool, metrics };
        store.init_instance().await?;
        Ok(store)
    }

    async fn init_instance(&self) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO instance (id, epoch, created_at_ms) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(new_epoch()?)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
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
