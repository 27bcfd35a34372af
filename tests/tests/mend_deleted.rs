//! Older data (docs/protocol.md §21): an account deleted before deletion left its groups is still
//! a member, and the owner. A server starting on such data makes it leave, so the group has an
//! owner again — on SQLite and PostgreSQL.

use confab_conformance::pg::TestDatabase;
use confab_server::config::DatabaseUrl;
use confab_server::store::{ConvKind, NewUser, OpResult, Role, UserId, WriteOp};
use confab_server::{Config, Server};

fn user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        username_key: name.into(),
        display_name: String::new(),
        email: None,
        email_key: None,
        phone: None,
        password_hash: None,
        created_at_ms: 1,
    }
}

/// Builds a group of A (owner) and B, marks A deleted the way older versions left it (tombstone
/// only), restarts, and checks B owns the group alone.
async fn mended(config: Config, mark_deleted: impl AsyncFnOnce(UserId)) {
    let server = Server::build(config.clone()).await.expect("first start");
    let store = server.store();
    let a = store.create_user(user("mend_a")).await.expect("a");
    let b = store.create_user(user("mend_b")).await.expect("b");
    let create = WriteOp::Create {
        kind: ConvKind::Group,
        title: "old".into(),
        description: String::new(),
        creator: a.id,
        members: vec![b.id],
        now_ms: 1,
    };
    let applied = store.apply(&[create]).await.expect("apply").remove(0).expect("created");
    let Some(OpResult::Conversation(conv)) = applied.result else { panic!("{applied:?}") };
    store.close().await;
    drop(server);
    mark_deleted(a.id).await;

    let server = Server::build(config).await.expect("second start");
    let store = server.store();
    let members = store.members(conv, UserId(0), 10).await.expect("members");
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!((members[0].user_id, members[0].role), (b.id, Role::Owner), "B is the owner: {members:?}");
    assert!(store.deleted_members().await.expect("deleted members").is_empty());
    store.close().await;
}

#[tokio::test]
async fn sqlite_start_mends_deleted_members() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config { data_dir: dir.path().to_path_buf(), ..Default::default() };
    let db = dir.path().join("confab.db");
    // Boxed: the future holds two server builds and their configuration.
    Box::pin(mended(config, async move |id| {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.expect("sqlite");
        sqlx::query("UPDATE users SET deleted_at_ms = 2 WHERE id = ?").bind(id).execute(&pool).await.expect("mark");
        pool.close().await;
    }))
    .await;
}

#[tokio::test]
async fn postgres_start_mends_deleted_members() {
    let db = TestDatabase::create().await.expect("database");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        database_url: Some(DatabaseUrl::new(db.url.clone())),
        ..Default::default()
    };
    let url = db.url.clone();
    Box::pin(mended(config, async move |id| {
        let pool = sqlx::PgPool::connect(&url).await.expect("postgres");
        sqlx::query("UPDATE users SET deleted_at_ms = 2 WHERE id = $1").bind(id).execute(&pool).await.expect("mark");
        pool.close().await;
    }))
    .await;
}
