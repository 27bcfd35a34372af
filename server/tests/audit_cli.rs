//! `confab-server admin …` and `confab-server audit verify` as an operator runs them
//! (docs/operations.md "Administrators", "Audit log"), on an embedded store: granting is recorded
//! in the audit log, the chain verifies, and after a row is altered in the database `verify`
//! names it and exits 1.

use std::path::Path;
use std::process::{Command, Output};

use confab_server::config::StoreConfig;
use confab_server::store::{self, NewUser};

fn server(dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_confab-server"));
    c.arg("--data-dir").arg(dir).arg("--log-filter").arg("warn").args(args);
    c.env_remove("CONFAB_ENCRYPTION_KEY_FILE");
    c.output().expect("run confab-server")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn granting_is_audited_and_a_tampered_chain_fails_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("confab.db");
    let st = store::open_sqlite(&db, &StoreConfig::default()).await.expect("store");
    let user = NewUser {
        username: "Dana".into(),
        username_key: "dana".into(),
        display_name: "Dana".into(),
        email: None,
        email_key: None,
        phone: None,
        password_hash: None,
        created_at_ms: 1,
    };
    let dana = st.create_user(user).await.expect("user");
    st.close().await;

    let o = server(dir.path(), &["admin", "list"]);
    assert!(o.status.success() && stdout(&o).contains("no server administrators"), "{o:?}");
    let o = server(dir.path(), &["admin", "grant", "DANA"]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("is a server administrator now"), "{}", stdout(&o));
    let o = server(dir.path(), &["admin", "grant", &format!("#{}", dana.id)]);
    assert!(stdout(&o).contains("already"), "granting twice changes nothing: {}", stdout(&o));
    let o = server(dir.path(), &["admin", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(list[0]["username"], "Dana");
    let o = server(dir.path(), &["admin", "grant", "nobody"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no live account"), "{o:?}");

    let o = server(dir.path(), &["audit", "verify", "--json"]);
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!((v["intact"].as_bool(), v["entries"].as_u64(), v["head_seq"].as_i64()), (Some(true), Some(1), Some(1)));
    assert_eq!(v["head_hash"].as_str().map(str::len), Some(64));

    // Someone edits the entry in the database: verify names it and fails.
    {
        use sqlx::Connection as _;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.expect("db");
        sqlx::query("UPDATE audit_log SET after = '{\"server_admin\":false}' WHERE seq = 1")
            .execute(&mut c)
            .await
            .expect("tamper");
        c.close().await.expect("close");
    }
    let o = server(dir.path(), &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stdout(&o).contains("BROKEN") && stdout(&o).contains("entry 1 was altered"), "{}", stdout(&o));
}
