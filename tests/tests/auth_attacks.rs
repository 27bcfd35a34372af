//! Attacks on accounts and tokens (docs/protocol.md §11.12), each of which must be refused.

use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::util::{
    PASSWORD, expect_code, expect_revoked, register, request_code, unique, unique_phone, verify_code,
};
use confab_protocol::client::{Client, ClientError};
use confab_protocol::v1::ErrorCode;
use confab_server::config::RateLimit;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const T: Transport = Transport::WebSocket;

fn now() -> u64 {
    confab_protocol::frames::now_ms() / 1000
}

fn server_key(s: &TestServer) -> String {
    std::fs::read_to_string(s.data_dir().join("jwt-ed25519.pem")).expect("server signing key")
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("sign")
}

fn b64(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// Authenticate and Hello both refuse `token` with UNAUTHENTICATED.
async fn refused(s: &TestServer, token: &str, what: &str) {
    let (c, _ev) = s.connect(T).await.expect("connect");
    expect_code(c.authenticate(token).await, ErrorCode::Unauthenticated).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut opts = s.options();
    opts.access_token = Some(token.to_string());
    match Client::connect(&s.url(T), opts).await {
        Err(ClientError::Server(e)) if e.code() == ErrorCode::Unauthenticated => {}
        other => panic!("{what} in Hello: {other:?}"),
    }
}

#[tokio::test]
async fn forged_and_malformed_tokens_are_refused() {
    let s = TestServer::start(StoreKind::Sqlite).await.expect("start");
    let (c, _ev) = s.connect(T).await.expect("connect");
    let a = c.register(register(&unique("forge"))).await.expect("register");
    let sub = a.me.as_ref().expect("me").user_id.to_string();
    let sid = a.session_id.clone();
    let claims = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = json!({"iss": "confab", "aud": "confab", "sub": sub, "sid": sid, "iat": now(), "exp": now() + 600});
        f(&mut v);
        v
    };
    let pem = server_key(&s);
    let key = EncodingKey::from_ed_pem(pem.as_bytes()).expect("server key");

    // Control: a token the test builds with the server's key and valid claims is accepted, so the
    // refusals below are about the one thing each changes.
    let (ok, _e) = s.connect(T).await.expect("connect");
    ok.authenticate(&sign(Algorithm::EdDSA, &key, &claims(&|_| {}))).await.expect("well-formed token accepted");

    let expired = claims(&|v| {
        v["iat"] = json!(now() - 3600);
        v["exp"] = json!(now() - 1800);
    });
    refused(&s, &sign(Algorithm::EdDSA, &key, &expired), "expired token").await;
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims(&|_| {})));
    refused(&s, &none, "alg none").await;
    let none_sig = format!("{}.{}.AAAA", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims(&|_| {})));
    refused(&s, &none_sig, "alg none with a signature").await;
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
    let other_key = EncodingKey::from_ed_pem(other.serialize_pem().as_bytes()).expect("other key");
    refused(&s, &sign(Algorithm::EdDSA, &other_key, &claims(&|_| {})), "another key").await;
    // Algorithm confusion: HMAC keyed with the server's public (or private) key material.
    let public_pem = rcgen::KeyPair::from_pem(&pem).expect("pair").public_key_pem();
    for secret in [public_pem.as_bytes(), pem.as_bytes()] {
        let hs = EncodingKey::from_secret(secret);
        refused(&s, &sign(Algorithm::HS256, &hs, &claims(&|_| {})), "HS256 with the server key").await;
    }
    refused(&s, &sign(Algorithm::EdDSA, &key, &claims(&|v| v["aud"] = json!("other"))), "wrong aud").await;
    refused(&s, &sign(Algorithm::EdDSA, &key, &claims(&|v| v["iss"] = json!("other"))), "wrong iss").await;
    for field in ["exp", "iat", "sub", "aud", "iss", "sid"] {
        let t = sign(Algorithm::EdDSA, &key, &claims(&|v| drop(v.as_object_mut().expect("obj").remove(field))));
        refused(&s, &t, &format!("missing {field}")).await;
    }
    refused(&s, &sign(Algorithm::EdDSA, &key, &claims(&|v| v["iat"] = json!(now() + 3600))), "iat in the future").await;
    refused(&s, &sign(Algorithm::EdDSA, &key, &claims(&|v| v["exp"] = json!("9999999999"))), "string exp").await;
    refused(&s, &sign(Algorithm::EdDSA, &key, &claims(&|v| v["sid"] = json!("feedfacefeedface"))), "unknown session")
        .await;
    refused(&s, &sign(Algorithm::EdDSA, &key, &claims(&|v| v["sub"] = json!("999999"))), "another user's session")
        .await;
    let mut tampered = a.access_token.clone();
    tampered.pop();
    tampered.push(if a.access_token.ends_with('A') { 'B' } else { 'A' });
    refused(&s, &tampered, "tampered signature").await;
    s.stop().await.expect("stop");
}

async fn refresh_reuse(store: StoreKind) {
    let s = TestServer::start(store).await.expect("start");
    let (c, _ev) = s.connect(T).await.expect("connect");
    let a = c.register(register(&unique("reuse"))).await.expect("register");
    let b = c.refresh(&a.refresh_token).await.expect("first refresh");
    let (live, mut live_ev) = s.connect(T).await.expect("connect");
    live.authenticate(&b.access_token).await.expect("authenticate");
    // The spent token again: refused, and the whole session is revoked.
    let (thief, _et) = s.connect(T).await.expect("connect");
    expect_code(thief.refresh(&a.refresh_token).await, ErrorCode::Unauthenticated).expect("reuse refused");
    expect_revoked(&mut live_ev).await.expect("live connection of the session closed");
    // `c` was signed in to the session by its refresh: it is closed too.
    let (d, _e) = s.connect(T).await.expect("connect");
    expect_code(d.refresh(&b.refresh_token).await, ErrorCode::Unauthenticated).expect("successor refused");
    expect_code(d.authenticate(&b.access_token).await, ErrorCode::Unauthenticated).expect("access token refused");
    s.stop().await.expect("stop");
}

#[tokio::test]
async fn refresh_reuse_revokes_the_session_on_sqlite() {
    refresh_reuse(StoreKind::Sqlite).await;
}

#[tokio::test]
async fn refresh_reuse_revokes_the_session_on_postgres() {
    refresh_reuse(StoreKind::Postgres).await;
}

async fn racing_refreshes(store: StoreKind) {
    let s = TestServer::start(store).await.expect("start");
    for round in 0..10 {
        let (c, _ev) = s.connect(T).await.expect("connect");
        let a = c.register(register(&unique("race"))).await.expect("register");
        let (x, _ex) = s.connect(T).await.expect("connect");
        let (y, _ey) = s.connect(Transport::Quic).await.expect("connect");
        let (rx, ry) = tokio::join!(x.refresh(&a.refresh_token), y.refresh(&a.refresh_token));
        let winners: Vec<_> = [rx, ry].into_iter().filter_map(Result::ok).collect();
        assert_eq!(winners.len(), 1, "round {round}: {} of two racing refreshes succeeded", winners.len());
        // The loser presented a spent token: the session is revoked, the winner's tokens included.
        let w = &winners[0];
        let (d, _e) = s.connect(T).await.expect("connect");
        expect_code(d.refresh(&w.refresh_token).await, ErrorCode::Unauthenticated).expect("winner's refresh token");
        expect_code(d.authenticate(&w.access_token).await, ErrorCode::Unauthenticated).expect("winner's access token");
    }
    s.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_refreshes_leave_one_winner_and_a_revoked_session_on_sqlite() {
    racing_refreshes(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_refreshes_leave_one_winner_and_a_revoked_session_on_postgres() {
    racing_refreshes(StoreKind::Postgres).await;
}

#[tokio::test]
async fn brute_force_is_rate_limited_and_the_right_password_works_after_the_window() {
    let s = TestServer::start_with(StoreKind::Sqlite, |c| {
        // One attempt back every 3 s: the four logins below fit in that even on a loaded machine
        // (with 700 ms, slow password hashes under load earned an attempt back mid-test).
        c.auth.rate_limits.login_per_account = RateLimit::new(3, Duration::from_secs(3));
    })
    .await
    .expect("start");
    let name = unique("brute");
    let (c, _ev) = s.connect(T).await.expect("connect");
    c.register(register(&name)).await.expect("register");
    let (b, _eb) = s.connect(T).await.expect("connect");
    for i in 0..3 {
        expect_code(b.login(&name, &format!("guess number {i}"), "x").await, ErrorCode::Unauthenticated)
            .expect("wrong");
    }
    // Out of attempts: even the right password is refused until the window passes.
    let e = expect_code(b.login(&name, PASSWORD, "x").await, ErrorCode::RateLimited).expect("limited");
    assert!(e.retry_after_ms > 0 && e.retry_after_ms <= 3000, "retry_after_ms {}", e.retry_after_ms);
    // Another account is not affected by this one's budget.
    let other = unique("bystander");
    c.register(register(&other)).await.expect("register");
    b.login(&other, PASSWORD, "x").await.expect("other account");
    tokio::time::sleep(Duration::from_millis(e.retry_after_ms + 20)).await;
    b.login(&name, PASSWORD, "x").await.expect("right password after the window");
    s.stop().await.expect("stop");
}

#[tokio::test]
async fn logins_are_rate_limited_per_ip() {
    let s = TestServer::start_with(StoreKind::Sqlite, |c| {
        c.auth.rate_limits.login_per_ip = RateLimit::new(4, Duration::from_secs(60));
    })
    .await
    .expect("start");
    let (b, _eb) = s.connect(T).await.expect("connect");
    for i in 0..4 {
        expect_code(b.login(&unique(&format!("spray{i}")), "password guess", "x").await, ErrorCode::Unauthenticated)
            .expect("wrong");
    }
    let e =
        expect_code(b.login(&unique("spray"), "password guess", "x").await, ErrorCode::RateLimited).expect("limited");
    assert!(e.retry_after_ms > 0);
    s.stop().await.expect("stop");
}

#[tokio::test]
async fn a_code_tried_a_sixth_time_is_refused_even_when_right() {
    let s = TestServer::start(StoreKind::Sqlite).await.expect("start");
    let (c, _ev) = s.connect(T).await.expect("connect");
    let phone = unique_phone();
    request_code(&c, &phone).await.expect("request");
    let code = s.inbox.code_for(&phone).await.expect("code");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        expect_code(verify_code(&c, &phone, wrong).await, ErrorCode::Unauthenticated).expect("wrong code");
    }
    let sixth = expect_code(verify_code(&c, &phone, &code).await, ErrorCode::Unauthenticated).expect("sixth try");
    let first =
        expect_code(verify_code(&c, &unique_phone(), &code).await, ErrorCode::Unauthenticated).expect("no code");
    assert_eq!(sixth.message, first.message, "the refusal says nothing about why");
    // A new code works.
    request_code(&c, &phone).await.expect("request again");
    let code = s.inbox.code_for(&phone).await.expect("code");
    verify_code(&c, &phone, &code).await.expect("fresh code");
    s.stop().await.expect("stop");
}

#[tokio::test]
async fn code_requests_are_rate_limited_per_number() {
    let s = TestServer::start_with(StoreKind::Sqlite, |c| {
        c.auth.rate_limits.code_request_per_destination = RateLimit::new(2, Duration::from_secs(60));
    })
    .await
    .expect("start");
    let (c, _ev) = s.connect(T).await.expect("connect");
    let phone = unique_phone();
    request_code(&c, &phone).await.expect("first");
    request_code(&c, &phone).await.expect("second");
    let e = expect_code(request_code(&c, &phone).await, ErrorCode::RateLimited).expect("third");
    assert!(e.retry_after_ms > 0);
    request_code(&c, &unique_phone()).await.expect("another number");
    s.stop().await.expect("stop");
}

#[tokio::test]
async fn webhook_delivery_is_retried_after_gateway_failures() {
    let s = TestServer::start(StoreKind::Sqlite).await.expect("start");
    let (c, _ev) = s.connect(T).await.expect("connect");
    s.inbox.fail_next(2);
    let before = s.inbox.requests();
    let phone = unique_phone();
    request_code(&c, &phone).await.expect("request");
    let m = s.inbox.next_for(&phone).await.expect("delivered after retries");
    assert!(m.signature_ok, "unsigned or badly signed webhook");
    assert_eq!(m.json["purpose"], "sign_in");
    assert_eq!(m.json["channel"], "sms");
    assert_eq!(s.inbox.requests() - before, 3, "two failures, then success");
    let code = m.json["code"].as_str().context("code").expect("code");
    verify_code(&c, &phone, code).await.expect("the retried code works");
    s.stop().await.expect("stop");
}
