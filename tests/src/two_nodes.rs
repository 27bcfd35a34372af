//! Two store handles on one database, as two nodes of a cluster have them: for tests of what
//! several nodes write at the same moment (PostgreSQL), and of two handles on one SQLite file.

use std::sync::Arc;

use confab_server::config::StoreConfig;
use confab_server::store::{self, Store};

use crate::pg::TestDatabase;

/// The two handles and what they stand on (dropped with them).
#[derive(Debug)]
pub struct TwoNodes {
    pub nodes: [Arc<dyn Store>; 2],
    db: Option<TestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

impl TwoNodes {
    /// Two pools on a fresh PostgreSQL database (`CONFAB_TEST_DATABASE_URL`).
    pub async fn postgres() -> Self {
        let db = TestDatabase::create().await.expect("test database (see scripts/test)");
        let cfg = StoreConfig::default();
        let nodes = [
            store::open_postgres(&db.url, &cfg).await.expect("node 1"),
            store::open_postgres(&db.url, &cfg).await.expect("node 2"),
        ];
        Self { nodes, db: Some(db), _dir: None }
    }

    /// Two pools on one SQLite file in a fresh directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("confab.db");
        let cfg = StoreConfig::default();
        let nodes = [
            store::open_sqlite(&path, &cfg).await.expect("handle 1"),
            store::open_sqlite(&path, &cfg).await.expect("handle 2"),
        ];
        Self { nodes, db: None, _dir: Some(dir) }
    }

    /// Closes both handles and drops the PostgreSQL database.
    pub async fn close(self) {
        for n in &self.nodes {
            n.close().await;
        }
        if let Some(db) = self.db {
            db.drop_db().await.expect("drop");
        }
    }
}
