//! The four push providers (server/src/push/providers) against fake provider servers
//! (confab_conformance::push_fakes), set up the way the server does it: `Providers::from_config`
//! with base URLs pointing at the fakes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use confab_conformance::push_fakes::{ApnsKey, Canned, FakeApns, FakeExpo, FakeFcm, FakeWebPush, Received};
use confab_server::config::PushConfig;
use confab_server::push::providers::{
    Notification, Outcome, Preview, Priority, Provider, ProviderKind, Providers, Target,
};
use hyper::Version;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
const APNS_TOKEN: &str = "a1b2c3d4e5f60718a1b2c3d4e5f60718a1b2c3d4e5f60718a1b2c3d4e5f60718";
const BUNDLE: &str = "chat.confab.app";
const EXPO_TOKEN: &str = "ExponentPushToken[xxxxxxxxxxxxxxxxxxxxxx]";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn notification(priority: Priority, preview: Option<Preview>) -> Notification {
    let data: BTreeMap<String, String> =
        [("kind", "message"), ("conversation_id", "42"), ("seq", "7"), ("unread_count", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    Notification {
        delivery_id: 1,
        data,
        priority,
        collapse_key: "conversation:42".into(),
        expires_at_ms: now_ms() + 3_600_000,
        preview,
    }
}

fn preview(body: &str) -> Option<Preview> {
    Some(Preview { title: "Ann".into(), body: body.into() })
}

fn target(provider: ProviderKind, token: &str, app_id: &str, voip: bool) -> Target {
    Target { id: 1, provider, token: token.into(), app_id: app_id.into(), voip }
}

/// No provider but the ones a test turns on.
fn config() -> PushConfig {
    let mut config = PushConfig::default();
    config.webpush.enabled = false;
    config.expo.enabled = false;
    config.request_timeout = Duration::from_secs(5);
    config
}

fn provider(config: &PushConfig, kind: ProviderKind) -> Arc<dyn Provider> {
    let providers = Providers::from_config(config).expect("providers set up");
    providers.get(kind).cloned().unwrap_or_else(|| panic!("{kind:?} configured"))
}

fn json_of(r: &Received) -> &Value {
    r.json.as_ref().expect("a JSON body")
}

fn data_json() -> Value {
    json!({ "kind": "message", "conversation_id": "42", "seq": "7", "unread_count": "3" })
}

struct Apns {
    fake: FakeApns,
    provider: Arc<dyn Provider>,
    _dir: tempfile::TempDir,
}

async fn apns() -> Apns {
    let key = ApnsKey::generate();
    let fake = FakeApns::start(&key).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config();
    config.apns.key_file = Some(key.write(dir.path()));
    config.apns.key_id = key.key_id.clone();
    config.apns.team_id = key.team_id.clone();
    config.apns.topic = BUNDLE.into();
    config.apns.base_url = fake.base_url();
    Apns { provider: provider(&config, ProviderKind::Apns), fake, _dir: dir }
}

#[tokio::test]
async fn apns_delivers_over_http2_with_its_headers_and_no_text_without_preview() {
    let Apns { fake, provider, _dir } = apns().await;
    let alert = target(ProviderKind::Apns, APNS_TOKEN, "", false);
    let n = notification(Priority::Normal, None);
    let outcome = provider.send(&alert, &n).await;
    let Outcome::Sent { status: 200, provider_ref: Some(apns_id), receipt_pending: false } = outcome else {
        panic!("{outcome:?}")
    };
    let got = fake.wait_for(1, WAIT).await;
    let r = &got[0];
    assert_eq!(r.version, Version::HTTP_2);
    assert_eq!(r.path, format!("/3/device/{APNS_TOKEN}"));
    assert_eq!(apns_id, "00000000-0000-4000-8000-000000000001");
    assert_eq!(r.header("apns-topic"), BUNDLE);
    assert_eq!(r.header("apns-push-type"), "alert");
    assert_eq!(r.header("apns-priority"), "10");
    assert_eq!(r.header("apns-collapse-id"), "conversation:42");
    assert_eq!(r.header("apns-expiration"), (n.expires_at_ms / 1000).to_string());
    assert!(r.jwt_iat.is_some(), "the provider token checked out");
    let body = json_of(r);
    assert_eq!(
        body,
        &json!({
            "aps": { "alert": { "loc-key": "CONFAB_NEW_MESSAGE" }, "mutable-content": 1, "thread-id": "conversation:42" },
            "confab": data_json(),
        })
    );

    // A call invite to the VoIP target: voip push type, `.voip` topic, no alert; the target's
    // app id wins over the configured topic.
    let voip = target(ProviderKind::Apns, APNS_TOKEN, "chat.confab.other", true);
    assert!(matches!(provider.send(&voip, &notification(Priority::High, None)).await, Outcome::Sent { .. }));
    let r = &fake.wait_for(2, WAIT).await[1];
    assert_eq!(r.header("apns-topic"), "chat.confab.other.voip");
    assert_eq!(r.header("apns-push-type"), "voip");
    assert_eq!(r.header("apns-priority"), "10");
    assert_eq!(json_of(r), &json!({ "confab": data_json() }));

    // A call invite to the alert target, then a message with a preview.
    assert!(matches!(provider.send(&alert, &notification(Priority::High, None)).await, Outcome::Sent { .. }));
    let sent = provider.send(&alert, &notification(Priority::Normal, preview("see you at 6"))).await;
    assert!(matches!(sent, Outcome::Sent { .. }), "{sent:?}");
    let got = fake.wait_for(4, WAIT).await;
    assert_eq!(json_of(&got[2])["aps"]["alert"], json!({ "loc-key": "CONFAB_INCOMING_CALL" }));
    assert_eq!(json_of(&got[3])["aps"]["alert"], json!({ "title": "Ann", "body": "see you at 6" }));

    // Messages do not go to VoIP targets; nothing is sent.
    let refused = provider.send(&voip, &notification(Priority::Normal, None)).await;
    assert!(matches!(refused, Outcome::Failed { status: 0, .. }), "{refused:?}");
    assert_eq!(fake.received().len(), 4);

    assert!(provider.check_target(APNS_TOKEN, "", false).is_ok());
    assert!(provider.check_target("not-hex", "", false).is_err());
    assert!(provider.check_target(APNS_TOKEN, "bad/bundle", false).is_err());
}

#[tokio::test]
async fn apns_reuses_its_provider_token_and_renews_it_once_when_expired() {
    let Apns { fake, provider, _dir } = apns().await;
    let alert = target(ProviderKind::Apns, APNS_TOKEN, "", false);
    for _ in 0..3 {
        assert!(matches!(provider.send(&alert, &notification(Priority::Normal, None)).await, Outcome::Sent { .. }));
    }
    let got = fake.wait_for(3, WAIT).await;
    let first = got[0].bearer().expect("bearer").to_string();
    assert!(got.iter().all(|r| r.bearer() == Some(first.as_str())), "one provider token for all three");
    assert!(got.iter().all(|r| r.jwt_iat == got[0].jwt_iat));

    // APNs calls it expired: renewed once, the push retried with the new one.
    fake.script(Canned::json(403, json!({ "reason": "ExpiredProviderToken" })));
    let outcome = provider.send(&alert, &notification(Priority::Normal, None)).await;
    assert!(matches!(outcome, Outcome::Sent { status: 200, .. }), "{outcome:?}");
    let got = fake.wait_for(5, WAIT).await;
    assert_eq!(got.len(), 5);
    assert_eq!(got[3].bearer(), Some(first.as_str()));
    let renewed = got[4].bearer().expect("bearer").to_string();
    assert_ne!(renewed, first);
    assert!(got[4].jwt_iat > got[0].jwt_iat, "a later iat");

    // The renewed token is the one reused from now on.
    assert!(matches!(provider.send(&alert, &notification(Priority::Normal, None)).await, Outcome::Sent { .. }));
    assert_eq!(fake.wait_for(6, WAIT).await[5].bearer(), Some(renewed.as_str()));

    // Expired again right after renewal: one renewal only, then Retry.
    fake.script(Canned::json(403, json!({ "reason": "ExpiredProviderToken" })));
    fake.script(Canned::json(403, json!({ "reason": "ExpiredProviderToken" })));
    let outcome = provider.send(&alert, &notification(Priority::Normal, None)).await;
    assert!(matches!(outcome, Outcome::Retry { status: 403, .. }), "{outcome:?}");
    assert_eq!(fake.wait_for(8, WAIT).await.len(), 8);
}

#[tokio::test]
async fn apns_gone_tokens_and_busy_answers() {
    let Apns { fake, provider, _dir } = apns().await;
    let alert = target(ProviderKind::Apns, APNS_TOKEN, "", false);
    let n = notification(Priority::Normal, None);
    fake.script(Canned::json(410, json!({ "reason": "Unregistered", "timestamp": 1_700_000_000_000u64 })));
    let outcome = provider.send(&alert, &n).await;
    assert_eq!(outcome, Outcome::TokenGone { status: 410, reason: "Unregistered".into() });
    fake.script(Canned::json(400, json!({ "reason": "BadDeviceToken" })));
    assert!(matches!(provider.send(&alert, &n).await, Outcome::TokenGone { status: 400, .. }));
    fake.script(Canned::json(400, json!({ "reason": "DeviceTokenNotForTopic" })));
    assert!(matches!(provider.send(&alert, &n).await, Outcome::TokenGone { status: 400, .. }));
    fake.script(Canned::json(400, json!({ "reason": "BadTopic" })));
    assert!(matches!(provider.send(&alert, &n).await, Outcome::Failed { status: 400, .. }));
    fake.script(Canned::json(429, json!({ "reason": "TooManyRequests" })).header("retry-after", "12"));
    let outcome = provider.send(&alert, &n).await;
    assert!(
        matches!(outcome, Outcome::Retry { status: 429, after: Some(a), .. } if a == Duration::from_secs(12)),
        "{outcome:?}"
    );
    fake.script(Canned::json(503, json!({ "reason": "ServiceUnavailable" })));
    assert!(matches!(provider.send(&alert, &n).await, Outcome::Retry { status: 503, after: None, .. }));
    assert_eq!(fake.wait_for(6, WAIT).await.len(), 6);
}

struct Fcm {
    fake: FakeFcm,
    provider: Arc<dyn Provider>,
    _dir: tempfile::TempDir,
}

async fn fcm() -> Fcm {
    let fake = FakeFcm::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config();
    config.fcm.service_account_file = Some(fake.write_service_account(dir.path()));
    config.fcm.base_url = fake.base_url();
    Fcm { provider: provider(&config, ProviderKind::Fcm), fake, _dir: dir }
}

#[tokio::test]
async fn fcm_exchanges_a_token_once_then_again_when_it_expires_and_after_401() {
    let Fcm { fake, provider, _dir } = fcm().await;
    let device = target(ProviderKind::Fcm, "fcm-registration-token:APA91b", "", false);
    for _ in 0..3 {
        let outcome = provider.send(&device, &notification(Priority::Normal, None)).await;
        assert!(
            matches!(&outcome, Outcome::Sent { status: 200, provider_ref: Some(name), .. } if name.starts_with("projects/confab-test/messages/")),
            "{outcome:?}"
        );
    }
    assert_eq!(fake.exchanges(), 1, "one token exchange for three sends");
    let sends = fake.sends();
    assert_eq!(sends.len(), 3);
    assert!(sends.iter().all(|r| r.bearer() == Some("fake-access-1")));
    let message = &json_of(&sends[0])["message"];
    assert_eq!(message["token"], "fcm-registration-token:APA91b");
    assert_eq!(message["data"], data_json());
    assert_eq!(message["android"]["priority"], "NORMAL");
    assert_eq!(message["android"]["collapse_key"], "conversation:42");
    let ttl = message["android"]["ttl"].as_str().expect("ttl");
    let secs: u64 = ttl.strip_suffix('s').and_then(|s| s.parse().ok()).expect("ttl in seconds");
    assert!((3590..=3600).contains(&secs), "{ttl}");
    assert!(message.get("notification").is_none(), "no text without a preview");
    assert_eq!(message["apns"]["headers"]["apns-priority"], "5");

    // The access token is revoked: 401, a new exchange, the same push again.
    fake.set_expires_in(2);
    fake.revoke_all();
    let outcome = provider.send(&device, &notification(Priority::High, preview("hi"))).await;
    assert!(matches!(outcome, Outcome::Sent { status: 200, .. }), "{outcome:?}");
    assert_eq!(fake.exchanges(), 2);
    let sends = fake.sends();
    assert_eq!(sends.len(), 5);
    assert_eq!(sends[3].bearer(), Some("fake-access-1"));
    assert_eq!(sends[4].bearer(), Some("fake-access-2"));
    assert_eq!(sends[3].body, sends[4].body, "the same message retried");
    let message = &json_of(&sends[4])["message"];
    assert_eq!(message["android"]["priority"], "HIGH");
    assert_eq!(message["notification"], json!({ "title": "Ann", "body": "hi" }));
    assert_eq!(message["apns"]["headers"]["apns-priority"], "10");

    // Token 2 lives 2 s: refreshed ahead of its expiry (half its life when that is short), so
    // the next send goes with a new token and no 401 first.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(matches!(provider.send(&device, &notification(Priority::Normal, None)).await, Outcome::Sent { .. }));
    assert_eq!(fake.exchanges(), 3);
    let sends = fake.sends();
    assert_eq!(sends.len(), 6);
    assert_eq!(sends[5].bearer(), Some("fake-access-3"));
}

#[tokio::test]
async fn fcm_unregistered_is_token_gone_and_busy_answers_retry_after() {
    let Fcm { fake, provider, _dir } = fcm().await;
    let device = target(ProviderKind::Fcm, "fcm-token", "", false);
    let n = notification(Priority::Normal, None);
    fake.script(Canned::json(
        404,
        json!({ "error": { "code": 404, "status": "NOT_FOUND", "message": "Requested entity was not found.",
            "details": [{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED" }] } }),
    ));
    assert!(matches!(provider.send(&device, &n).await, Outcome::TokenGone { status: 404, .. }));
    fake.script(
        Canned::json(503, json!({ "error": { "code": 503, "status": "UNAVAILABLE" } })).header("Retry-After", "30"),
    );
    let outcome = provider.send(&device, &n).await;
    assert!(
        matches!(outcome, Outcome::Retry { status: 503, after: Some(a), .. } if a == Duration::from_secs(30)),
        "{outcome:?}"
    );
    fake.script(
        Canned::json(
            429,
            json!({ "error": { "code": 429, "status": "RESOURCE_EXHAUSTED",
            "details": [{ "errorCode": "QUOTA_EXCEEDED" }] } }),
        )
        .header("Retry-After", "90"),
    );
    let outcome = provider.send(&device, &n).await;
    assert!(
        matches!(outcome, Outcome::Retry { status: 429, after: Some(a), .. } if a == Duration::from_secs(90)),
        "{outcome:?}"
    );
    fake.script(Canned::json(400, json!({ "error": { "code": 400, "status": "INVALID_ARGUMENT", "message": "bad" } })));
    assert!(matches!(provider.send(&device, &n).await, Outcome::Failed { status: 400, .. }));
    assert_eq!(fake.exchanges(), 1);
    assert!(provider.check_target("fcm-token", "", false).is_ok());
    assert!(provider.check_target("has space", "", false).is_err());
    assert!(provider.check_target("fcm-token", "", true).is_err(), "no VoIP through FCM");
}

#[tokio::test]
async fn expo_ticket_then_receipt_device_not_registered_is_token_gone() {
    let fake = FakeExpo::start(Some("expo-secret")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("expo-token");
    std::fs::write(&token_file, "expo-secret\n").expect("write the access token");
    let mut config = config();
    config.expo.enabled = true;
    config.expo.base_url = fake.base_url();
    config.expo.access_token_file = Some(token_file);
    let provider = provider(&config, ProviderKind::Expo);
    let device = target(ProviderKind::Expo, EXPO_TOKEN, "", false);

    let outcome = provider.send(&device, &notification(Priority::Normal, None)).await;
    assert_eq!(outcome, Outcome::Sent { status: 200, provider_ref: Some("ticket-1".into()), receipt_pending: true });
    let r = &fake.wait_for(1, WAIT).await[0];
    assert_eq!(r.bearer(), Some("expo-secret"));
    let messages = json_of(r).as_array().expect("an array of messages");
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["to"], EXPO_TOKEN);
    assert_eq!(m["data"], data_json());
    assert_eq!(m["priority"], "normal");
    assert_eq!(m["_contentAvailable"], true);
    assert!(m.get("title").is_none() && m.get("body").is_none(), "no text without a preview");
    assert!((3590..=3600).contains(&m["ttl"].as_u64().expect("ttl")));

    let outcome = provider.send(&device, &notification(Priority::High, preview("hello"))).await;
    assert!(matches!(&outcome, Outcome::Sent { provider_ref: Some(t), .. } if t == "ticket-2"), "{outcome:?}");
    let got = fake.wait_for(2, WAIT).await;
    let m = &json_of(&got[1])[0];
    assert_eq!((&m["title"], &m["body"], &m["priority"]), (&json!("Ann"), &json!("hello"), &json!("high")));
    assert!(matches!(provider.send(&device, &notification(Priority::Normal, None)).await, Outcome::Sent { .. }));

    fake.set_receipt("ticket-1", json!({ "status": "error", "message": "\"ExponentPushToken[x]\" is not a registered push notification recipient", "details": { "error": "DeviceNotRegistered" } }));
    fake.receipt_not_ready("ticket-3");
    let refs: Vec<String> = ["ticket-1", "ticket-2", "ticket-3"].map(String::from).to_vec();
    let receipts = provider.receipts(&refs).await;
    assert_eq!(
        receipts,
        vec![
            ("ticket-1".to_string(), Outcome::TokenGone { status: 200, reason: "DeviceNotRegistered".into() }),
            (
                "ticket-2".to_string(),
                Outcome::Sent { status: 200, provider_ref: Some("ticket-2".into()), receipt_pending: false }
            ),
        ],
        "ticket-3 is not ready: left out"
    );
    let asked = fake.wait_for(4, WAIT).await;
    assert_eq!(json_of(&asked[3]), &json!({ "ids": refs }));

    // An error ticket at send.
    fake.script(Canned::json(
        200,
        json!({ "data": [{ "status": "error", "message": "not registered",
        "details": { "error": "DeviceNotRegistered" } }] }),
    ));
    assert!(matches!(provider.send(&device, &notification(Priority::Normal, None)).await, Outcome::TokenGone { .. }));
    assert!(provider.check_target("ExponentPushToken[abc]", "", false).is_ok());
    assert!(provider.check_target("abc", "", false).is_err());
}

fn webpush_config(allow: bool) -> PushConfig {
    let mut config = config();
    config.webpush.enabled = true;
    config.webpush.allow_http = allow;
    config.webpush.allow_private_addresses = allow;
    config
}

#[tokio::test]
async fn webpush_posts_the_payload_with_ttl_urgency_and_topic() {
    let fake = FakeWebPush::start().await;
    let provider = provider(&webpush_config(true), ProviderKind::WebPush);
    let endpoint = fake.endpoint("/up/AbCdEf123");
    assert!(provider.check_target(&endpoint, "", false).is_ok());
    let device = target(ProviderKind::WebPush, &endpoint, "", false);
    let outcome = provider.send(&device, &notification(Priority::High, preview("hi"))).await;
    assert_eq!(outcome, Outcome::Sent { status: 201, provider_ref: None, receipt_pending: false });
    let mut other = notification(Priority::Normal, None);
    assert!(matches!(provider.send(&device, &other).await, Outcome::Sent { .. }));
    other.collapse_key = "conversation:43".into();
    assert!(matches!(provider.send(&device, &other).await, Outcome::Sent { .. }));
    let got = fake.wait_for(3, WAIT).await;
    let r = &got[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/up/AbCdEf123"));
    let ttl: u64 = r.header("ttl").parse().expect("TTL in seconds");
    assert!((3590..=3600).contains(&ttl), "{ttl}");
    assert_eq!(r.header("urgency"), "high");
    assert_eq!(r.header("content-type"), "application/json");
    let topic = r.header("topic");
    assert_eq!(topic.len(), 32);
    assert!(topic.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{topic}");
    assert_eq!(json_of(r), &json!({ "data": data_json(), "notification": { "title": "Ann", "body": "hi" } }));
    assert_eq!(got[1].header("urgency"), "normal");
    assert_eq!(got[1].header("topic"), topic, "the same conversation, the same topic");
    assert_ne!(got[2].header("topic"), topic);
    assert_eq!(json_of(&got[1]), &json!({ "data": data_json() }));
}

#[tokio::test]
async fn webpush_gone_retry_and_no_redirects() {
    let fake = FakeWebPush::start().await;
    let provider = provider(&webpush_config(true), ProviderKind::WebPush);
    let device = target(ProviderKind::WebPush, &fake.endpoint("/up/x"), "", false);
    let n = notification(Priority::Normal, None);
    fake.script(Canned::status(410));
    assert!(matches!(provider.send(&device, &n).await, Outcome::TokenGone { status: 410, .. }));
    fake.script(Canned::status(404));
    assert!(matches!(provider.send(&device, &n).await, Outcome::TokenGone { status: 404, .. }));
    fake.script(Canned::status(503).header("Retry-After", "5"));
    let outcome = provider.send(&device, &n).await;
    assert!(
        matches!(outcome, Outcome::Retry { status: 503, after: Some(a), .. } if a == Duration::from_secs(5)),
        "{outcome:?}"
    );
    // An HTTP-date far ahead: capped at a day.
    fake.script(Canned::status(429).header("Retry-After", "Fri, 01 Jan 2100 00:00:00 GMT"));
    let outcome = provider.send(&device, &n).await;
    let day = Duration::from_secs(24 * 3600);
    assert!(matches!(outcome, Outcome::Retry { status: 429, after: Some(a), .. } if a == day), "{outcome:?}");
    fake.script(Canned::status(307).header("Location", &fake.endpoint("/elsewhere")));
    assert!(matches!(provider.send(&device, &n).await, Outcome::Failed { status: 307, .. }));
    let got = fake.wait_for(5, WAIT).await;
    assert!(got.iter().all(|r| r.path == "/up/x"), "the redirect was not followed");

    // Nobody listening: a connection error is Retry with status 0.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let gone = target(ProviderKind::WebPush, &format!("http://127.0.0.1:{port}/up/x"), "", false);
    assert!(matches!(provider.send(&gone, &n).await, Outcome::Retry { status: 0, after: None, .. }));
}

#[tokio::test]
async fn webpush_endpoints_are_checked_at_registration_and_at_send() {
    let strict = provider(&webpush_config(false), ProviderKind::WebPush);
    assert!(strict.check_target("https://push.example.com/up/abc", "", false).is_ok());
    let long = format!("https://push.example.com/{}", "a".repeat(2048));
    for refused in [
        "http://push.example.com/up/abc",
        "https://127.0.0.1/up",
        "https://[::1]/up",
        "https://10.0.0.7/up",
        "https://192.168.1.1/up",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.1.1/up",
        "https://[fd00::1]/up",
        "https://[fe80::1]/up",
        "https://[::ffff:127.0.0.1]/up",
        "https://0.0.0.0/up",
        "https://localhost/up",
        "not a url",
        long.as_str(),
    ] {
        assert!(strict.check_target(refused, "", false).is_err(), "{refused} refused");
    }
    let mut hosts = webpush_config(false);
    hosts.webpush.allowed_hosts = vec!["ntfy.sh".into()];
    let hosts = provider(&hosts, ProviderKind::WebPush);
    assert!(hosts.check_target("https://ntfy.sh/up123", "", false).is_ok());
    assert!(hosts.check_target("https://push.ntfy.sh/up123", "", false).is_ok());
    assert!(hosts.check_target("https://push.example.com/up123", "", false).is_err());

    // Allowed with allow_http and allow_private_addresses; refused again at send without.
    let fake = FakeWebPush::start().await;
    let endpoint = fake.endpoint("/up/private");
    let lenient = provider(&webpush_config(true), ProviderKind::WebPush);
    assert!(lenient.check_target(&endpoint, "", false).is_ok());
    assert!(strict.check_target(&endpoint, "", false).is_err());
    let device = target(ProviderKind::WebPush, &endpoint, "", false);
    let outcome = strict.send(&device, &notification(Priority::Normal, None)).await;
    assert!(matches!(outcome, Outcome::Failed { status: 0, .. }), "{outcome:?}");
    assert!(fake.received().is_empty(), "nothing reached the private endpoint");
}

#[tokio::test]
async fn long_previews_are_cut_to_fit_4096_bytes() {
    let long: String = "Grüße aus Köln 😀 ".repeat(400);
    assert!(long.len() > 8000);
    let check = |r: &Received, body: &str| {
        assert!(r.body.len() <= 4096, "{} bytes", r.body.len());
        assert!(r.body.len() > 3900, "cut close to the limit: {} bytes", r.body.len());
        let kept = body.strip_suffix('…').expect("cut with an ellipsis");
        assert!(long.starts_with(kept));
    };

    let Apns { fake, provider: apns, _dir } = apns().await;
    let alert = target(ProviderKind::Apns, APNS_TOKEN, "", false);
    assert!(matches!(apns.send(&alert, &notification(Priority::Normal, preview(&long))).await, Outcome::Sent { .. }));
    let r = &fake.wait_for(1, WAIT).await[0];
    check(r, json_of(r)["aps"]["alert"]["body"].as_str().expect("body"));

    let web = FakeWebPush::start().await;
    let webpush = provider(&webpush_config(true), ProviderKind::WebPush);
    let device = target(ProviderKind::WebPush, &web.endpoint("/up/x"), "", false);
    assert!(matches!(
        webpush.send(&device, &notification(Priority::Normal, preview(&long))).await,
        Outcome::Sent { .. }
    ));
    let r = &web.wait_for(1, WAIT).await[0];
    check(r, json_of(r)["notification"]["body"].as_str().expect("body"));

    let Fcm { fake, provider: fcm, _dir } = fcm().await;
    let device = target(ProviderKind::Fcm, "fcm-token", "", false);
    assert!(matches!(fcm.send(&device, &notification(Priority::Normal, preview(&long))).await, Outcome::Sent { .. }));
    let r = &fake.sends()[0];
    check(r, json_of(r)["message"]["notification"]["body"].as_str().expect("body"));
}

#[tokio::test]
async fn from_config_sets_up_what_is_configured_and_refuses_bad_key_files() {
    let providers = Providers::from_config(&PushConfig::default()).expect("defaults");
    assert_eq!(providers.kinds(), vec![ProviderKind::WebPush, ProviderKind::Expo]);

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config();
    config.apns.key_file = Some(dir.path().join("missing.p8"));
    config.apns.key_id = "ABC123DEFG".into();
    config.apns.team_id = "TEAM123456".into();
    let error = Providers::from_config(&config).expect_err("no key file");
    assert_eq!(error.provider, "apns");
    let not_a_key = dir.path().join("bad.p8");
    std::fs::write(&not_a_key, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").expect("write");
    config.apns.key_file = Some(not_a_key);
    assert_eq!(Providers::from_config(&config).expect_err("not a key").provider, "apns");

    let mut config = self::config();
    let account = dir.path().join("account.json");
    std::fs::write(&account, r#"{"client_email": "a@b.c"}"#).expect("write");
    config.fcm.service_account_file = Some(account);
    let error = Providers::from_config(&config).expect_err("no private_key");
    assert_eq!(error.provider, "fcm");
    assert!(error.to_string().starts_with("push.fcm: "), "{error}");
}
