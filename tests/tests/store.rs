//! The shared store suite: both backends must pass the same checks.

use std::sync::Arc;

use confab_conformance::pg::TestDatabase;
use confab_server::config::StoreConfig;
use confab_server::store::{self, Backend, Store};

fn migration_files(backend: &str) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations").join(backend);
    std::fs::read_dir(dir)
        .expect("migrations dir")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql")))
        .count()
}

/// Checks one freshly opened store, then reopens it through `reopen`.
async fn suite<F, Fut>(store: Arc<dyn Store>, backend: Backend, reopen: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    assert_eq!(store.backend(), backend);
    store.ping().await.expect("ping");
    let files = migration_files(if backend == Backend::Postgres { "postgres" } else { "sqlite" });
    let applied = store.applied_migrations().await.expect("applied");
    assert_eq!(applied.len(), files, "every migration file applied once: {applied:?}");
    assert!(applied.windows(2).all(|w| w[0] < w[1]), "ascending: {applied:?}");
    let instance = store.instance().await.expect("instance");
    assert!(instance.epoch > 0);
    assert!(instance.created_at_ms > 0);
    store.close().await;
    let err = store.ping().await.expect_err("ping after close");
    assert!(err.is_unavailable(), "closed pool reads as unavailable: {err}");

    // Reopening applies nothing new and keeps the epoch.
    let again = reopen().await;
    assert_eq!(again.applied_migrations().await.expect("applied"), applied);
    assert_eq!(again.instance().await.expect("instance"), instance);
    again.close().await;
}

#[tokio::test]
async fn sqlite_store_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/confab.db");
    let cfg = StoreConfig::default();
    let s = store::open_sqlite(&path, &cfg).await.expect("open");
    suite(s, Backend::Sqlite, || async { store::open_sqlite(&path, &cfg).await.expect("reopen") }).await;
}

#[tokio::test]
async fn postgres_store_suite() {
    let db = TestDatabase::create().await.expect("test database (see scripts/test)");
    let cfg = StoreConfig::default();
    let s = store::open_postgres(&db.url, &cfg).await.expect("open");
    suite(s, Backend::Postgres, || async { store::open_postgres(&db.url, &cfg).await.expect("reopen") }).await;
    db.drop_db().await.expect("drop");
}

#[tokio::test]
async fn postgres_unreachable_fails_fast_with_a_clear_error() {
    let cfg = StoreConfig { acquire_timeout: std::time::Duration::from_millis(500), ..Default::default() };
    let started = std::time::Instant::now();
    // Port 1 on loopback: nothing listens there.
    let err = store::open_postgres("postgres://confab@127.0.0.1:1/confab", &cfg).await.expect_err("no server");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(!err.to_string().is_empty());
}
