//! The state every node shares through the store (migration 0009) on both backends: rate-limit
//! buckets (the same arithmetic as `Gcra`, exact under concurrent takers on several store handles,
//! i.e. several nodes) and server secrets (the first insert wins).

use std::sync::Arc;
use std::time::Duration;

use confab_conformance::pg::TestDatabase;
use confab_conformance::two_nodes::TwoNodes;
use confab_server::config::{RateLimit, StoreConfig};
use confab_server::ratelimit::Gcra;
use confab_server::store::{self, RateBucket, Store};

const S: i64 = 1_000_000;

fn bucket(kind: &'static str, key: u8) -> RateBucket {
    RateBucket { kind, key_hash: vec![key; 32] }
}

/// Sweeps at `now_us`: how many buckets were full.
async fn sweep(store: &dyn Store, now_us: i64) -> u64 {
    store.sweep_rate_buckets(now_us).await.expect("sweep")
}

/// Burst, refill, wait, refund and sweep, at explicit times.
async fn bucket_arithmetic(store: &dyn Store) {
    let g = Gcra::new(RateLimit::new(3, Duration::from_secs(10)));
    let t0 = 1_700_000_000 * S;
    let a = bucket("login_ip", 1);
    for i in 0..3 {
        store.take_rate_token(&a, g, t0).await.expect("take").unwrap_or_else(|w| panic!("token {i}: wait {w:?}"));
    }
    assert_eq!(store.take_rate_token(&a, g, t0).await.expect("take"), Err(Duration::from_secs(10)), "empty");
    assert_eq!(
        store.take_rate_token(&a, g, t0 + 4 * S).await.expect("take"),
        Err(Duration::from_secs(6)),
        "the wait counts down"
    );
    // Keys and kinds are independent buckets.
    store.take_rate_token(&bucket("login_ip", 2), g, t0).await.expect("take").expect("another key");
    store.take_rate_token(&bucket("register_ip", 1), g, t0).await.expect("take").expect("another kind");
    // One token back after `per`, and only one.
    store.take_rate_token(&a, g, t0 + 10 * S).await.expect("take").expect("refilled");
    assert!(store.take_rate_token(&a, g, t0 + 10 * S).await.expect("take").is_err());
    // A refund gives exactly one token back.
    store.refund_rate_token(&a, g).await.expect("refund");
    store.take_rate_token(&a, g, t0 + 10 * S).await.expect("take").expect("refunded token");
    assert!(store.take_rate_token(&a, g, t0 + 10 * S).await.expect("take").is_err());
    // Refunding a bucket that has no row does nothing (and does not fail).
    store.refund_rate_token(&bucket("login_ip", 9), g).await.expect("refund of nothing");

    // Sweeping: nothing is full yet at t0 + 10 s (`a` is full at t0 + 40 s, the others at t0 + 10 s).
    assert_eq!(sweep(store, t0 + 10 * S - 1).await, 0, "no bucket is full yet");
    assert_eq!(sweep(store, t0 + 10 * S).await, 2, "the two buckets with one token taken at t0 are full");
    assert_eq!(sweep(store, t0 + 40 * S).await, 1, "then `a`");
    assert_eq!(sweep(store, t0 + 3600 * S).await, 0, "all gone");
    // A swept bucket starts full: a whole burst again.
    for _ in 0..3 {
        store.take_rate_token(&a, g, t0 + 41 * S).await.expect("take").expect("fresh burst");
    }
    assert!(store.take_rate_token(&a, g, t0 + 41 * S).await.expect("take").is_err());

    // Refunding into the past leaves a full bucket, never more than `burst` tokens.
    let b = bucket("login_account", 7);
    store.take_rate_token(&b, g, t0).await.expect("take").expect("first");
    for _ in 0..5 {
        store.refund_rate_token(&b, g).await.expect("refund");
    }
    for _ in 0..3 {
        store.take_rate_token(&b, g, t0).await.expect("take").expect("burst");
    }
    assert!(store.take_rate_token(&b, g, t0).await.expect("take").is_err(), "refunds did not overfill");

    // The open limits of the test harness (100 000 per 1 ms) and a sub-millisecond wait.
    let open = Gcra::new(RateLimit::new(100_000, Duration::from_millis(1)));
    store.take_rate_token(&bucket("code_verify_ip", 1), open, t0).await.expect("take").expect("open");
    let one = Gcra::new(RateLimit::new(1, Duration::from_millis(1)));
    let c = bucket("code_verify_ip", 2);
    store.take_rate_token(&c, one, t0).await.expect("take").expect("one");
    assert_eq!(store.take_rate_token(&c, one, t0 + 500).await.expect("take"), Err(Duration::from_millis(1)));
}

async fn secrets(store: &dyn Store) {
    assert_eq!(store.server_secret("jwt_signing_key").await.expect("read"), None);
    let first = store.init_server_secret("jwt_signing_key", b"first", 1).await.expect("init");
    assert_eq!(first, b"first");
    let second = store.init_server_secret("jwt_signing_key", b"second", 2).await.expect("init again");
    assert_eq!(second, b"first", "the first value stays");
    assert_eq!(store.server_secret("jwt_signing_key").await.expect("read").as_deref(), Some(&b"first"[..]));
    let bytes: Vec<u8> = (0..=255).collect();
    assert_eq!(store.init_server_secret("code_secret", &bytes, 3).await.expect("init"), bytes, "binary values");
}

#[tokio::test]
async fn buckets_and_secrets_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store::open_sqlite(&dir.path().join("confab.db"), &StoreConfig::default()).await.expect("open");
    bucket_arithmetic(s.as_ref()).await;
    secrets(s.as_ref()).await;
    s.close().await;
}

#[tokio::test]
async fn buckets_and_secrets_on_postgres() {
    let db = TestDatabase::create().await.expect("test database (see scripts/test)");
    let s = store::open_postgres(&db.url, &StoreConfig::default()).await.expect("open");
    bucket_arithmetic(s.as_ref()).await;
    secrets(s.as_ref()).await;
    s.close().await;
    db.drop_db().await.expect("drop");
}

/// `takers` tasks split over `nodes` take at once from one fresh bucket of `kind` with `burst`
/// tokens that does not refill during the test, round after round: exactly `burst` get a token.
async fn concurrent_takers(nodes: &[Arc<dyn Store>], kind: &'static str, burst: u32, takers: usize, rounds: u8) {
    let g = Gcra::new(RateLimit::new(burst, Duration::from_secs(3600)));
    for round in 0..rounds {
        let b = bucket(kind, round);
        let gate = Arc::new(tokio::sync::Barrier::new(takers));
        let tasks: Vec<_> = (0..takers)
            .map(|i| {
                let (store, b, gate) = (nodes[i % nodes.len()].clone(), b.clone(), gate.clone());
                tokio::spawn(async move {
                    gate.wait().await;
                    store.take_rate_token(&b, g, 1_700_000_000 * S).await.expect("take").is_ok()
                })
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            granted += usize::from(t.await.expect("task"));
        }
        assert_eq!(
            granted, burst as usize,
            "round {round}: {granted} of {takers} racing takers got one of {burst} tokens"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_postgres_nodes_racing_for_one_bucket_get_exactly_burst_tokens() {
    let two = TwoNodes::postgres().await;
    // 32 takers, 16 per node: each node's pool (16 connections) runs all of its at once.
    concurrent_takers(&two.nodes, "login_account", 10, 32, 8).await;
    // Burst 1: the classic last-token race, on a fresh bucket (first takers insert concurrently).
    concurrent_takers(&two.nodes, "login_ip", 1, 32, 8).await;
    two.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sqlite_handles_racing_for_one_bucket_get_exactly_burst_tokens() {
    let two = TwoNodes::sqlite().await;
    concurrent_takers(&two.nodes, "login_account", 10, 32, 4).await;
    concurrent_takers(&two.nodes, "login_ip", 1, 32, 4).await;
    two.close().await;
}
