//! Several servers on one PostgreSQL database, like the nodes of a cluster: they sign and check
//! tokens with one key and hash codes with one secret, generated into the database by whichever
//! starts first (or taken from a data dir that already had them), and their account rate limits
//! count the same buckets.

use std::time::Duration;

use anyhow::Context;
use confab_conformance::harness::{TestServer, Transport};
use confab_conformance::pg::TestDatabase;
use confab_conformance::util::{PASSWORD, expect_code, register, request_code, unique, unique_phone, verify_code};
use confab_protocol::v1::ErrorCode;
use confab_server::Config;
use confab_server::config::RateLimit;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sqlx::{Connection, Row};

const T: Transport = Transport::WebSocket;

/// True when `token` carries a valid EdDSA signature of the private key `pem`.
fn signed_by(token: &str, pem: &str) -> bool {
    let public = rcgen::KeyPair::from_pem(pem).expect("key").public_key_pem();
    let key = DecodingKey::from_ed_pem(public.as_bytes()).expect("public key");
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_audience(&["confab"]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).is_ok()
}

fn new_pem() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key").serialize_pem()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_started_at_once_share_one_signing_key_and_code_secret() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    // Both start together: both find no key and race to insert one; both must end with the same.
    let (s1, s2) = tokio::join!(TestServer::start_on(&db.url, |_| {}), TestServer::start_on(&db.url, |_| {}));
    let (s1, s2) = (s1?, s2?);

    let (c1, _e1) = s1.connect(T).await?;
    let a = c1.register(register(&unique("node"))).await?;
    // Node 2 accepts node 1's access token, and rotates its refresh token.
    let (c2, _e2) = s2.connect(T).await?;
    c2.authenticate(&a.access_token).await.context("node 1's access token on node 2")?;
    let b = c2.refresh(&a.refresh_token).await.context("node 1's refresh token on node 2")?;
    // And node 1 accepts what node 2 issued.
    let (c3, _e3) = s1.connect(Transport::Quic).await?;
    c3.authenticate(&b.access_token).await.context("node 2's access token on node 1")?;
    // A code sent by node 1 is checked by node 2 (one code secret).
    let phone = unique_phone();
    request_code(&c1, &phone).await?;
    let code = s1.inbox.code_for(&phone).await?;
    let (c4, _e4) = s2.connect(T).await?;
    verify_code(&c4, &phone, &code).await.context("node 1's code on node 2")?;
    // The keys live in the database only: no copy in either data dir.
    for s in [&s1, &s2] {
        for file in ["jwt-ed25519.pem", "auth-secret.key"] {
            anyhow::ensure!(!s.data_dir().join(file).exists(), "{file} written into a data dir");
        }
    }
    let pem = s1.store().server_secret("jwt_signing_key").await?.context("signing key in the database")?;
    anyhow::ensure!(signed_by(&a.access_token, std::str::from_utf8(&pem)?), "signed with the stored key");

    s2.stop().await?;
    s1.stop().await?;
    db.drop_db().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_the_data_dir_of_an_existing_deployment_move_into_the_database() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    // A single-node PostgreSQL deployment from before shared keys: both files in its data dir.
    let old = tempfile::tempdir()?;
    let pem = new_pem();
    let secret = [0x5a_u8; 32];
    std::fs::write(old.path().join("jwt-ed25519.pem"), &pem)?;
    std::fs::write(old.path().join("auth-secret.key"), hex::encode(secret))?;
    let s1 = TestServer::start_on(&db.url, |c| c.data_dir = old.path().to_path_buf()).await?;
    let (c1, _e1) = s1.connect(T).await?;
    let a = c1.register(register(&unique("legacy"))).await?;
    anyhow::ensure!(signed_by(&a.access_token, &pem), "tokens are still signed with the data dir's key");
    let store = s1.store();
    anyhow::ensure!(
        store.server_secret("jwt_signing_key").await?.as_deref() == Some(pem.as_bytes()),
        "the data dir's key stored"
    );
    anyhow::ensure!(
        store.server_secret("code_secret").await?.as_deref() == Some(&secret[..]),
        "the data dir's secret stored"
    );

    // A node whose data dir holds another key uses the database's (and warns).
    let stray = tempfile::tempdir()?;
    std::fs::write(stray.path().join("jwt-ed25519.pem"), new_pem())?;
    let s2 = TestServer::start_on(&db.url, |c| c.data_dir = stray.path().to_path_buf()).await?;
    let (c2, _e2) = s2.connect(T).await?;
    c2.authenticate(&a.access_token).await.context("the old node's token on the new node")?;
    let (c3, _e3) = s2.connect(T).await?;
    let b = c3.login(&a.me.as_ref().context("me")?.username, PASSWORD, "x").await?;
    anyhow::ensure!(signed_by(&b.access_token, &pem), "the new node signs with the database's key");

    s2.stop().await?;
    s1.stop().await?;
    db.drop_db().await
}

#[tokio::test]
async fn a_configured_key_path_wins_over_the_database() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let dir = tempfile::tempdir()?;
    let pem = new_pem();
    let path = dir.path().join("signing.pem");
    std::fs::write(&path, &pem)?;
    let s = TestServer::start_on(&db.url, |c| c.auth.signing_key_path = Some(path.clone())).await?;
    let (c, _e) = s.connect(T).await?;
    let a = c.register(register(&unique("configured"))).await?;
    anyhow::ensure!(signed_by(&a.access_token, &pem), "signed with the configured key");
    anyhow::ensure!(s.store().server_secret("jwt_signing_key").await?.is_none(), "no signing key put in the database");
    anyhow::ensure!(s.store().server_secret("code_secret").await?.is_some(), "the unconfigured secret is");
    s.stop().await?;
    db.drop_db().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attempts_are_counted_across_nodes() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let tweak = |c: &mut Config| c.auth.rate_limits.login_per_account = RateLimit::new(3, Duration::from_secs(60));
    let (s1, s2) = tokio::join!(TestServer::start_on(&db.url, tweak), TestServer::start_on(&db.url, tweak));
    let (s1, s2) = (s1?, s2?);
    let name = unique("spread");
    let (c, _e) = s1.connect(T).await?;
    c.register(register(&name)).await?;
    // Three wrong guesses spread over the two nodes use up the account's three attempts…
    for (i, s) in [&s1, &s2, &s1].into_iter().enumerate() {
        let (g, _eg) = s.connect(T).await?;
        expect_code(g.login(&name, &format!("guess {i}"), "x").await, ErrorCode::Unauthenticated)?;
    }
    // …so neither node lets the next attempt through, right password or not.
    for s in [&s2, &s1] {
        let (g, _eg) = s.connect(T).await?;
        let e = expect_code(g.login(&name, PASSWORD, "x").await, ErrorCode::RateLimited)?;
        anyhow::ensure!(e.retry_after_ms > 0 && e.retry_after_ms <= 60_000, "retry_after_ms {}", e.retry_after_ms);
    }
    // The table holds hashes, never the keys (account names, IP addresses).
    let mut conn = sqlx::PgConnection::connect(&db.url).await?;
    let rows = sqlx::query("SELECT kind, key_hash FROM rate_buckets").fetch_all(&mut conn).await?;
    let kinds: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    anyhow::ensure!(kinds.iter().any(|k| k == "login_account"), "buckets: {kinds:?}");
    for r in &rows {
        let hash: Vec<u8> = r.get(1);
        anyhow::ensure!(hash.len() == 32, "a 32-byte hash, not a key: {} bytes", hash.len());
        let text = String::from_utf8_lossy(&hash);
        anyhow::ensure!(!text.contains(&name) && !text.contains("127.0.0.1"), "a raw key in rate_buckets");
    }
    conn.close().await?;

    s2.stop().await?;
    s1.stop().await?;
    db.drop_db().await
}

/// Rows of `rate_buckets` whose key hash is 32 times `byte`.
async fn rows_of(conn: &mut sqlx::PgConnection, byte: u8) -> anyhow::Result<i64> {
    let row = sqlx::query("SELECT COUNT(*) FROM rate_buckets WHERE key_hash = $1")
        .bind(vec![byte; 32])
        .fetch_one(conn)
        .await?;
    Ok(row.try_get(0)?)
}

#[tokio::test]
async fn a_server_sweeps_full_buckets() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let s = TestServer::start_on(&db.url, |_| {}).await?;
    // One bucket full since 1970 (a node died before sweeping it), one full only in an hour.
    let mut conn = sqlx::PgConnection::connect(&db.url).await?;
    let in_an_hour = (confab_protocol::frames::now_ms() as i64 + 3_600_000) * 1000;
    sqlx::query("INSERT INTO rate_buckets (kind, key_hash, tat_us) VALUES ('login_ip', $1, 1), ('login_ip', $2, $3)")
        .bind(vec![1_u8; 32])
        .bind(vec![2_u8; 32])
        .bind(in_an_hour)
        .execute(&mut conn)
        .await?;
    // A node sweeps at its first attempt, then once a minute.
    let (c, _e) = s.connect(T).await?;
    expect_code(c.login(&unique("nobody"), "guess", "x").await, ErrorCode::Unauthenticated)?;
    let mut swept = false;
    for _ in 0..200 {
        if rows_of(&mut conn, 1).await? == 0 {
            swept = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::ensure!(swept, "the full bucket is still there after 5 s");
    anyhow::ensure!(rows_of(&mut conn, 2).await? == 1, "a bucket not yet full was swept");
    conn.close().await?;
    s.stop().await?;
    db.drop_db().await
}
