//! The PostgreSQL store, with per-session statement and idle-transaction timeouts.

use sqlx::Executor;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;

use super::Backend;
use super::sql::{HasDb, impl_store};
use crate::config::StoreConfig;
use crate::metrics::Metrics;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug)]
pub struct PgStore {
    pool: PgPool,
    metrics: Metrics,
    sealer: super::keys::Sealer,
}

impl PgStore {
    /// `may_enable`: a key configured on a database in clear turns encryption on (a server start).
    pub async fn open(url: &str, cfg: &StoreConfig, metrics: Metrics, may_enable: bool) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url)?
            .application_name("confab-server")
            .statement_cache_capacity(super::STATEMENT_CACHE);
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
        let keys = std::sync::Arc::new(super::keys_sql::SqlKeys::new(pool.clone()));
        let sealer = super::keys::Sealer::open(keys, cfg, super::now_ms(), may_enable).await?;
        let store = Self { pool, metrics, sealer };
        store.init_instance().await?;
        Ok(store)
    }
}

impl HasDb for PgStore {
    type Db = sqlx::Postgres;
}

impl_store!(PgStore, Backend::Postgres);

super::conv_sql::impl_conv_store!(PgStore);
super::shared_sql::impl_shared_state!(PgStore);
super::audit_sql::impl_audit_store!(PgStore);
super::admin_sql::impl_admin_store!(PgStore);
super::reports_sql::impl_report_store!(PgStore);
super::rooms_sql::impl_room_leases!(PgStore);
super::conv_write_sql::impl_conv_writes!(PgStore);
super::media_sql::impl_media_store!(PgStore);
super::search_sql::impl_search_store!(PgStore);
super::push_sql::impl_push_store!(PgStore);
super::meeting_sql::impl_meeting_store!(PgStore);
super::keys_sql::impl_key_store!(PgStore);
