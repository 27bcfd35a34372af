//! `confab-server keys …` as an operator runs it (docs/operations.md "Encryption at rest"), on
//! an embedded store: a command given a key does not turn encryption on; `status --json`,
//! `rotate-data`, `reencrypt` and `rotate-kek` on an encrypted database; the old key retired
//! afterwards; a wrong key refused with a clear message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn key_file(dir: &Path, name: &str) -> PathBuf {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).expect("random");
    let p = dir.join(name);
    std::fs::write(&p, k).expect("key file");
    p
}

/// Runs `confab-server --data-dir DIR [--encryption-key-file KEY [--encryption-previous-key-files OLD]] keys ARGS`.
fn keys(dir: &Path, key: Option<&Path>, previous: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_confab-server"));
    c.arg("--data-dir").arg(dir).arg("--log-filter").arg("warn");
    if let Some(k) = key {
        c.arg("--encryption-key-file").arg(k);
    }
    if let Some(p) = previous {
        c.arg("--encryption-previous-key-files").arg(p);
    }
    c.arg("keys").args(args);
    c.env_remove("CONFAB_ENCRYPTION_KEY_FILE");
    c.output().expect("run confab-server")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn status(dir: &Path, key: Option<&Path>) -> serde_json::Value {
    serde_json::from_str(&stdout(&keys(dir, key, None, &["status", "--json"]))).expect("status is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_commands_rotate_and_reencrypt_without_turning_anything_on() {
    let tmp = tempfile::tempdir().expect("dir");
    let dir = tmp.path().join("data");
    let (old, new) = (key_file(tmp.path(), "old"), key_file(tmp.path(), "new"));

    // A command with a key on a database in clear changes nothing.
    assert_eq!(status(&dir, Some(&old))["encrypted"], false);
    assert_eq!(status(&dir, None)["encrypted"], false);
    let refused = keys(&dir, Some(&old), None, &["rotate-data"]);
    assert!(!refused.status.success(), "rotate-data on a database in clear is refused");

    // A server start with the key turns it on (the store opened as the server opens it).
    let mut cfg = confab_server::config::StoreConfig { encryption_key_file: Some(old.clone()), ..Default::default() };
    let store = confab_server::store::open_sqlite(&dir.join("confab.db"), &cfg).await.expect("open");
    store.close().await;
    let s = status(&dir, Some(&old));
    assert_eq!(s["encrypted"], true);
    assert_eq!(s["generation"], 1);
    assert!(s["data_keys"].as_array().is_some_and(|k| !k.is_empty()), "{s}");

    // rotate-data, then the job to the end.
    assert!(stdout(&keys(&dir, Some(&old), None, &["rotate-data"])).contains("generation 2"));
    let run = stdout(&keys(&dir, Some(&old), None, &["reencrypt"]));
    assert!(run.contains("message_texts") && run.contains("blobs") && !run.contains("stopped"), "{run}");
    let s = status(&dir, Some(&old));
    assert_eq!(s["generation"], 2);
    assert!(s["remaining"].as_object().expect("remaining").values().all(|v| v == 0), "{s}");

    // rotate-kek: the new key current, the old one previous; then the old one retired.
    let out = stdout(&keys(&dir, Some(&new), Some(&old), &["rotate-kek"]));
    assert!(out.contains("re-wrapped"), "{out}");
    let s = status(&dir, Some(&new));
    let ids: Vec<&str> = s["data_keys"].as_array().expect("keys").iter().filter_map(|k| k["kek_id"].as_str()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one KEK wraps every key: {ids:?}");
    let with_old = keys(&dir, Some(&old), None, &["status"]);
    assert!(!with_old.status.success());
    assert!(String::from_utf8_lossy(&with_old.stderr).contains("not configured"));
    let without = keys(&dir, None, None, &["status"]);
    assert!(String::from_utf8_lossy(&without.stderr).contains("encrypted at rest"));

    // A server configuration that names the new key alone opens it.
    cfg.encryption_key_file = Some(new);
    let store = confab_server::store::open_sqlite(&dir.join("confab.db"), &cfg).await.expect("reopen with the new key");
    // Both rotations are in the audit log, by the command line, and the chain verifies.
    use confab_server::store::AuditAction;
    let log = store.audit_after(0, 100).await.expect("audit");
    let rotations: Vec<&str> =
        log.iter().filter(|r| r.entry.action == AuditAction::KeyRotated).map(|r| r.entry.target.as_str()).collect();
    assert_eq!(rotations.len(), 2, "{log:?}");
    assert!(rotations[0] == "data" && rotations[1].starts_with("kek:"), "{rotations:?}");
    assert!(log.iter().all(|r| r.entry.client_addr == "cli" && r.entry.actor.is_none()));
    assert!(store.verify_audit().await.expect("verify").broken.is_none());
    store.close().await;
}
