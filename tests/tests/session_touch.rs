//! Sessions' last use is written coalesced (server/src/auth/touch.rs): many touches of many
//! sessions become one transaction holding the latest time of each; a revoked session and an
//! older time change nothing. On both stores.

use std::sync::Arc;

use confab_conformance::pg::TestDatabase;
use confab_server::auth::touch::Toucher;
use confab_server::config::StoreConfig;
use confab_server::store::{self, AuditAction, NewAudit, NewSession, NewUser, RevokeReason, Store};

async fn check(store: Arc<dyn Store>) {
    let user = store
        .create_user(NewUser {
            username: "toucher".into(),
            username_key: "toucher".into(),
            display_name: "Toucher".into(),
            email: None,
            email_key: None,
            phone: None,
            password_hash: None,
            created_at_ms: 1_000,
        })
        .await
        .expect("user");
    for i in 0..40 {
        store
            .create_session(NewSession {
                id: format!("s{i:02}"),
                user_id: user.id,
                client_addr: "127.0.0.1".into(),
                device_name: "d".into(),
                client_name: "c".into(),
                now_ms: 1_000,
                refresh_hash: vec![i as u8; 32],
                refresh_expires_at_ms: i64::MAX / 2,
            })
            .await
            .expect("session");
    }
    let revoked = NewAudit { target: "s39".into(), ..NewAudit::new(AuditAction::SessionRevoked, 1_500) };
    assert!(store.revoke_session(user.id, "s39", RevokeReason::Revoked, 1_500, &revoked).await.expect("revoke"));
    let toucher = Toucher::start(store.clone());
    // Every session touched 25 times, out of order; s00 last touched with an older time.
    for round in 0..25i64 {
        for i in 0..40 {
            toucher.touch(&format!("s{i:02}"), 2_000 + ((round * 7) % 25) * 10 + i);
        }
    }
    toucher.touch("s00", 1_200);
    toucher.flush().await;
    let list = store.list_sessions(user.id).await.expect("list");
    assert_eq!(list.len(), 39, "the revoked session is not listed");
    for s in &list {
        let i: i64 = s.id[1..].parse().expect("number");
        assert_eq!(s.last_seen_at_ms, 2_000 + 240 + i, "{s:?}: the latest touch wins, an older one changes nothing");
    }
    // A flush with nothing pending writes nothing and returns.
    toucher.flush().await;
}

#[tokio::test]
async fn sqlite_touches_are_coalesced_and_latest_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store::open_sqlite(&dir.path().join("confab.db"), &StoreConfig::default()).await.expect("open");
    check(s).await;
}

#[tokio::test]
async fn postgres_touches_are_coalesced_and_latest_wins() {
    let db = TestDatabase::create().await.expect("test database (see scripts/test)");
    let s = store::open_postgres(&db.url, &StoreConfig::default()).await.expect("open");
    check(s.clone()).await;
    s.close().await;
    db.drop_db().await.expect("drop");
}
