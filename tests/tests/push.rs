//! Push notifications end to end (docs/protocol.md §24), with fake provider servers started on
//! 127.0.0.1:0 (tests/src/push_fakes.rs: WebPush, APNs over HTTP/2, FCM with its token endpoint,
//! Expo): an offline device is pushed and a connected one that acks is not, the author never;
//! mute, mentions only and a blocked sender; collapse ids and call invites (VoIP); no content
//! unless the user opts in, never with encryption at rest; retries after 503 and after 429 with
//! Retry-After; a token gone disables the target and the device is told when it connects; Expo
//! receipts; two nodes sending each push once; and the server killed with SIGKILL between commit
//! and planning, and between sending and recording.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::push_fakes::{ApnsKey, Canned, FakeApns, FakeExpo, FakeFcm, FakeWebPush, Received};
use confab_conformance::util::{User, new_user, second_device};
use confab_protocol::v1::{self, event};
use confab_server::Config;
use serde_json::{Value, json};

const WS: Transport = Transport::WebSocket;
const APNS_TOPIC: &str = "net.confab.test";

/// Every fake provider, and the credentials that lead to them.
struct Fakes {
    webpush: FakeWebPush,
    apns: FakeApns,
    apns_key: ApnsKey,
    fcm: FakeFcm,
    expo: FakeExpo,
    dir: tempfile::TempDir,
}

impl Fakes {
    async fn start() -> Self {
        let apns_key = ApnsKey::generate();
        Self {
            webpush: FakeWebPush::start().await,
            apns: FakeApns::start(&apns_key).await,
            apns_key,
            fcm: FakeFcm::start().await,
            expo: FakeExpo::start(None).await,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Points `c`'s providers at the fakes, with short timings.
    fn configure(&self, c: &mut Config) {
        let p = &mut c.push;
        p.ack_wait = Duration::from_millis(400);
        p.initial_backoff = Duration::from_millis(100);
        p.max_backoff = Duration::from_secs(2);
        p.request_timeout = Duration::from_secs(2);
        p.lease = Duration::from_secs(3);
        p.sweep_interval = Duration::from_secs(1);
        p.webpush.allow_http = true;
        p.webpush.allow_private_addresses = true;
        p.apns.key_file = Some(self.apns_key.write(self.dir.path()));
        p.apns.key_id = self.apns_key.key_id.clone();
        p.apns.team_id = self.apns_key.team_id.clone();
        p.apns.topic = APNS_TOPIC.into();
        p.apns.base_url = self.apns.base_url();
        p.fcm.service_account_file = Some(self.fcm.write_service_account(self.dir.path()));
        p.fcm.base_url = self.fcm.base_url();
        p.fcm.token_url = Some(self.fcm.token_uri());
        p.expo.base_url = self.expo.base_url();
        p.expo.receipt_delay = Duration::from_secs(1);
    }
}

async fn server(store: StoreKind, fakes: &Fakes) -> anyhow::Result<TestServer> {
    TestServer::start_with(store, |c| fakes.configure(c)).await
}

fn target(provider: v1::PushProvider, token: &str) -> v1::RegisterPushTarget {
    v1::RegisterPushTarget { provider: provider as i32, token: token.into(), ..Default::default() }
}

/// A user whose first device registered `t`, then went offline; the user stays reachable through
/// the returned second device (connected, never acking).
async fn offline_with(
    s: &TestServer,
    prefix: &str,
    t: v1::RegisterPushTarget,
) -> anyhow::Result<(User, v1::PushTarget)> {
    let phone = new_user(s, WS, prefix).await?;
    let registered = phone.client.register_push_target(t).await?;
    let other = second_device(s, WS, &phone).await?;
    drop(phone);
    Ok((other, registered))
}

async fn dm(a: &User, b: u64) -> anyhow::Result<u64> {
    let r =
        v1::CreateConversation { kind: v1::ConversationKind::Direct as i32, member_ids: vec![b], ..Default::default() };
    Ok(call!(a.client, CreateConversation, r)?.conversation_id)
}

async fn group(a: &User, members: &[u64]) -> anyhow::Result<u64> {
    let r = v1::CreateConversation {
        kind: v1::ConversationKind::Group as i32,
        title: "push".into(),
        member_ids: members.to_vec(),
        ..Default::default()
    };
    Ok(call!(a.client, CreateConversation, r)?.conversation_id)
}

async fn send(a: &User, conv: u64, text: &str, mentions: &[u64]) -> anyhow::Result<u64> {
    let r = v1::SendMessage {
        conversation_id: conv,
        client_msg_id: confab_conformance::util::msg_key(text),
        text: text.into(),
        mention_user_ids: mentions.to_vec(),
        ..Default::default()
    };
    Ok(call!(a.client, SendMessage, r)?.seq)
}

/// The user's ledger once it has at least `n` rows and none is QUEUED (polled; within 15 s).
async fn settled(u: &User, n: usize) -> anyhow::Result<Vec<v1::PushDelivery>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let page = u.client.list_push_deliveries(0, 100).await?.deliveries;
        if page.len() >= n && page.iter().all(|d| d.state != v1::PushDeliveryState::Queued as i32) {
            return Ok(page);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the ledger did not settle with {n} rows: {page:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn data(r: &Received) -> Value {
    let j = r.json.clone().unwrap_or_default();
    j.get("data").or_else(|| j.get("confab")).cloned().unwrap_or_default()
}

fn field(r: &Received, key: &str) -> String {
    data(r).get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn state(d: &v1::PushDelivery) -> v1::PushDeliveryState {
    v1::PushDeliveryState::try_from(d.state).unwrap_or_default()
}

/// §24.2: an offline device is pushed (ids and kind, no text); a connected device that acks
/// within the window is not (its row DROPPED); the author's devices never.
async fn offline_is_pushed_connected_is_not(store: StoreKind) -> anyhow::Result<()> {
    let fakes = Fakes::start().await;
    let s = server(store, &fakes).await?;
    let (mut bob, phone) =
        offline_with(&s, "pbob", target(v1::PushProvider::Webpush, &fakes.webpush.endpoint("/bob-phone"))).await?;
    bob.client.register_push_target(target(v1::PushProvider::Webpush, &fakes.webpush.endpoint("/bob-laptop"))).await?;
    let (alice, _) =
        offline_with(&s, "palice", target(v1::PushProvider::Webpush, &fakes.webpush.endpoint("/alice"))).await?;
    let conv = dm(&alice, bob.id).await?;
    let seq = send(&alice, conv, "the secret plans", &[]).await?;
    // The laptop applies and acknowledges what it is shown.
    loop {
        let e = confab_conformance::util::next_conv_event(&mut bob.events).await?;
        if e.conversation_id == conv && e.seq == seq {
            call!(bob.client, Ack, v1::Ack { conversation_id: conv, seq })?;
            break;
        }
    }
    let got = fakes.webpush.wait_for(1, Duration::from_secs(10)).await;
    ensure!(got[0].path == "/bob-phone", "pushed {}", got[0].path);
    ensure!(field(&got[0], "kind") == "message" && field(&got[0], "conversation_id") == conv.to_string());
    ensure!(field(&got[0], "seq") == seq.to_string(), "{:?}", data(&got[0]));
    let body = String::from_utf8_lossy(&got[0].body);
    ensure!(!body.contains("secret"), "the push carries the text: {body}");
    let rows = settled(&bob, 2).await?;
    let by_target = |id: u64| rows.iter().find(|d| d.target_id == id && d.seq == seq);
    let sent = by_target(phone.target_id).context("no row for the phone")?;
    ensure!(state(sent) == v1::PushDeliveryState::Sent && sent.attempts == 1, "{sent:?}");
    let laptop = rows.iter().find(|d| d.target_id != phone.target_id).context("no row for the laptop")?;
    ensure!(state(laptop) == v1::PushDeliveryState::Dropped, "{laptop:?}");
    ensure!(laptop.detail.contains("acknowledged"), "{laptop:?}");
    ensure!(
        fakes.webpush.received().len() == 1,
        "pushed: {:?}",
        fakes.webpush.received().iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    ensure!(alice.client.list_push_deliveries(0, 100).await?.deliveries.is_empty(), "the author was pushed");
    s.stop().await
}

/// §24.3, §18: a conversation muted except mentions pushes mentions only, muted entirely
/// nothing; a blocked sender's mention nothing; the rest of the account is unaffected.
async fn mute_mentions_only_and_blocked(store: StoreKind) -> anyhow::Result<()> {
    let fakes = Fakes::start().await;
    let s = server(store, &fakes).await?;
    let (bob, _) = offline_with(&s, "mbob", target(v1::PushProvider::Webpush, &fakes.webpush.endpoint("/bob"))).await?;
    let alice = new_user(&s, WS, "malice").await?;
    let carol = new_user(&s, WS, "mcarol").await?;
    let g = group(&alice, &[bob.id, carol.id]).await?;
    let direct = dm(&alice, bob.id).await?;
    let level = |l: v1::PushLevel| v1::SetConversationPushSettings { conversation_id: g, level: l as i32, until_ms: 0 };
    bob.client.set_conversation_push_settings(level(v1::PushLevel::Mentions)).await?;
    call!(bob.client, Block, v1::Block { user_id: carol.id })?;
    send(&alice, g, "plain, not for bob's phone", &[]).await?;
    send(&carol, g, "blocked sender mentions bob", &[bob.id]).await?;
    let mention = send(&alice, g, "bob, look", &[bob.id]).await?;
    let got = fakes.webpush.wait_for(1, Duration::from_secs(10)).await;
    ensure!(field(&got[0], "kind") == "mention" && field(&got[0], "seq") == mention.to_string(), "{:?}", data(&got[0]));
    bob.client.set_conversation_push_settings(level(v1::PushLevel::None)).await?;
    send(&alice, g, "muted: even a mention", &[bob.id]).await?;
    let sentinel = send(&alice, direct, "the DM still pushes", &[]).await?;
    let got = fakes.webpush.wait_for(2, Duration::from_secs(10)).await;
    ensure!(field(&got[1], "conversation_id") == direct.to_string() && field(&got[1], "seq") == sentinel.to_string());
    let rows = settled(&bob, 2).await?;
    ensure!(rows.len() == 2, "rows beyond the mention and the DM: {rows:#?}");
    ensure!(fakes.webpush.received().len() == 2);
    s.stop().await
}

/// §24.5: a 503, then a 429 with Retry-After: 1, then success: three attempts, the third at
/// least a second after the second, one SENT row.
async fn retries_after_503_and_429(store: StoreKind) -> anyhow::Result<()> {
    let fakes = Fakes::start().await;
    let s = server(store, &fakes).await?;
    let (bob, _) = offline_with(&s, "rbob", target(v1::PushProvider::Webpush, &fakes.webpush.endpoint("/bob"))).await?;
    let alice = new_user(&s, WS, "ralice").await?;
    let conv = dm(&alice, bob.id).await?;
    fakes.webpush.script(Canned::status(503));
    fakes.webpush.script(Canned::status(429).header("retry-after", "1"));
    let seq = send(&alice, conv, "retry me", &[]).await?;
    let got = fakes.webpush.wait_for(3, Duration::from_secs(15)).await;
    ensure!(got.iter().all(|r| field(r, "seq") == seq.to_string()), "another push came in between");
    let gap = got[2].at.duration_since(got[1].at);
    ensure!(gap >= Duration::from_millis(950), "Retry-After: 1 was not honoured: {gap:?}");
    let rows = settled(&bob, 1).await?;
    ensure!(rows.len() == 1, "{rows:#?}");
    ensure!(state(&rows[0]) == v1::PushDeliveryState::Sent && rows[0].attempts == 3, "{:?}", rows[0]);
    ensure!(rows[0].provider_status == 201, "{:?}", rows[0]);
    s.stop().await
}

/// §24.2: FCM answers UNREGISTERED: the row FAILED, the target disabled, and the device told
/// once, when it next connects.
async fn token_gone_disables_and_tells_the_device(store: StoreKind) -> anyhow::Result<()> {
    let fakes = Fakes::start().await;
    let s = server(store, &fakes).await?;
    let phone = new_user(&s, WS, "gbob").await?;
    let registered = phone.client.register_push_target(target(v1::PushProvider::Fcm, "fcm-token-of-bob")).await?;
    let (id, session, access) = (phone.id, phone.auth.session_id.clone(), phone.auth.access_token.clone());
    drop(phone);
    let alice = new_user(&s, WS, "galice").await?;
    let conv = dm(&alice, id).await?;
    fakes.fcm.script(Canned::json(
        404,
        json!({"error": {"code": 404, "status": "NOT_FOUND", "message": "Requested entity was not found.",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}}),
    ));
    send(&alice, conv, "to a token that is gone", &[]).await?;
    fakes.fcm.wait_for(1, Duration::from_secs(10)).await;
    let (client, mut events) = s.connect(WS).await?;
    let _auth = client.authenticate(&access).await?;
    let told = confab_conformance::util::next_matching(&mut events, Duration::from_secs(10), |e| match e {
        event::Event::PushTargetInvalidated(t) => t.target.clone(),
        _ => None,
    })
    .await?;
    ensure!(told.target_id == registered.target_id && !told.enabled, "{told:?}");
    ensure!(told.disabled_reason.contains("UNREGISTERED"), "{told:?}");
    let rows = client.list_push_deliveries(0, 100).await?.deliveries;
    ensure!(rows.len() == 1 && state(&rows[0]) == v1::PushDeliveryState::Failed, "{rows:#?}");
    let listed = client.list_push_targets(false).await?.targets;
    ensure!(listed.iter().any(|t| t.target_id == registered.target_id && !t.enabled), "{listed:?}");
    ensure!(s.store().take_untold_push_targets(&session, 0).await?.is_empty(), "the device would be told twice");
    // A disabled target can still be unregistered: it leaves the list.
    client.unregister_push_target(registered.target_id).await?;
    ensure!(client.list_push_targets(true).await?.targets.is_empty(), "an unregistered target is still listed");
    // A disabled target is never used again.
    send(&alice, conv, "again", &[]).await?;
    let sentinel_user = new_user(&s, WS, "gsentinel").await?;
    sentinel_user.client.register_push_target(target(v1::PushProvider::Fcm, "fcm-sentinel")).await?;
    let sid = sentinel_user.id;
    drop(sentinel_user);
    let c2 = dm(&alice, sid).await?;
    send(&alice, c2, "sentinel", &[]).await?;
    let got = fakes.fcm.wait_for(2, Duration::from_secs(10)).await;
    ensure!(got.len() == 2, "the disabled target was pushed again");
    s.stop().await
}

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::StoreKind::Sqlite).await.unwrap();
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::StoreKind::Postgres).await.unwrap();
                }
            )*
        }
    };
}

both_stores!(
    offline_is_pushed_connected_is_not,
    mute_mentions_only_and_blocked,
    retries_after_503_and_429,
    token_gone_disables_and_tells_the_device,
);

const APNS_TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const APNS_VOIP_TOKEN: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f";

fn apns(token: &str, voip: bool) -> v1::RegisterPushTarget {
    v1::RegisterPushTarget { voip, ..target(v1::PushProvider::Apns, token) }
}

/// §24.4 over APNs (HTTP/2): a burst of messages shares the conversation's collapse id, alert
/// pushes carry no text; a ringing call goes to the device's VoIP target only, as a VoIP push
/// of priority 10; with the preview setting on, the sender's name and the text are in the alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apns_collapse_call_invites_and_previews() -> anyhow::Result<()> {
    let fakes = Fakes::start().await;
    let s = server(StoreKind::Sqlite, &fakes).await?;
    let phone = new_user(&s, WS, "abob").await?;
    phone.client.register_push_target(apns(APNS_TOKEN, false)).await?;
    phone.client.register_push_target(apns(APNS_VOIP_TOKEN, true)).await?;
    let bob = second_device(&s, WS, &phone).await?;
    drop(phone);
    let alice = new_user(&s, WS, "aalice").await?;
    let conv = dm(&alice, bob.id).await?;
    for text in ["one secret", "two secrets", "three secrets"] {
        send(&alice, conv, text, &[]).await?;
    }
    let got = fakes.apns.wait_for(3, Duration::from_secs(10)).await;
    for r in &got {
        ensure!(r.version == hyper::Version::HTTP_2, "APNs over {:?}", r.version);
        ensure!(r.path == format!("/3/device/{APNS_TOKEN}"), "{}", r.path);
        ensure!(r.header("apns-collapse-id") == format!("conv-{conv}"), "{:?}", r.header("apns-collapse-id"));
        ensure!(r.header("apns-push-type") == "alert" && r.header("apns-topic") == APNS_TOPIC);
        ensure!(!String::from_utf8_lossy(&r.body).contains("secret"), "text in an alert without preview");
        let aps = r.json.as_ref().and_then(|j| j.get("aps")).context("no aps")?;
        ensure!(aps["alert"]["loc-key"] == "CONFAB_NEW_MESSAGE", "{aps}");
    }
    call!(alice.client, StartCall, v1::StartCall { conversation_id: conv, media: v1::CallMedia::Audio as i32 })?;
    let got = fakes.apns.wait_for(4, Duration::from_secs(10)).await;
    let ring = &got[3];
    ensure!(ring.path == format!("/3/device/{APNS_VOIP_TOKEN}"), "the call went to {}", ring.path);
    ensure!(ring.header("apns-push-type") == "voip" && ring.header("apns-priority") == "10");
    ensure!(ring.header("apns-topic") == format!("{APNS_TOPIC}.voip"));
    ensure!(field(ring, "kind") == "call_invite" && !field(ring, "call_id").is_empty(), "{:?}", data(ring));
    bob.client.set_push_settings(v1::SetPushSettings { level: 0, preview: Some(true) }).await?;
    call!(alice.client, HangupCall, v1::HangupCall { call_id: field(ring, "call_id"), ..Default::default() })?;
    send(&alice, conv, "now you may read this", &[]).await?;
    let got = fakes.apns.wait_for(5, Duration::from_secs(10)).await;
    let alert = &got[4].json.as_ref().context("json")?["aps"]["alert"];
    ensure!(alert["body"] == "now you may read this" && alert["title"] == alice.name.as_str(), "{alert}");
    ensure!(got.len() == 5, "the alert target got the call too: {:?}", got.iter().map(|r| &r.path).collect::<Vec<_>>());
    s.stop().await
}

/// §24.3: with encryption at rest a push never carries content, whatever the preview setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_servers_never_put_content_in_a_push() -> anyhow::Result<()> {
    let fakes = Fakes::start().await;
    let key = fakes.dir.path().join("kek");
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    std::fs::write(&key, k)?;
    let s = TestServer::start_with(StoreKind::Sqlite, |c| {
        fakes.configure(c);
        c.store.encryption_key_file = Some(key.clone());
    })
    .await?;
    let (bob, _) = offline_with(&s, "ebob", target(v1::PushProvider::Webpush, &fakes.webpush.endpoint("/bob"))).await?;
    bob.client.set_push_settings(v1::SetPushSettings { level: 0, preview: Some(true) }).await?;
    let alice = new_user(&s, WS, "ealice").await?;
    let conv = dm(&alice, bob.id).await?;
    send(&alice, conv, "sealed words", &[]).await?;
    let got = fakes.webpush.wait_for(1, Duration::from_secs(10)).await;
    let body = String::from_utf8_lossy(&got[0].body);
    ensure!(!body.contains("sealed") && !body.contains(&alice.name), "content in a push: {body}");
    ensure!(field(&got[0], "kind") == "message", "{body}");
    s.stop().await
}

/// §24.5: Expo accepts with a ticket (SENT); its receipt says DeviceNotRegistered: the row
/// FAILED and the target disabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expo_receipts_disable_gone_tokens() -> anyhow::Result<()> {
    let fakes = Fakes::start().await;
    let s = server(StoreKind::Sqlite, &fakes).await?;
    fakes.expo.set_receipt(
        "ticket-1",
        json!({"status": "error", "message": "gone", "details": {"error": "DeviceNotRegistered"}}),
    );
    let (bob, registered) =
        offline_with(&s, "xbob", target(v1::PushProvider::Expo, "ExponentPushToken[abcdefghijklmnop]")).await?;
    let alice = new_user(&s, WS, "xalice").await?;
    let conv = dm(&alice, bob.id).await?;
    send(&alice, conv, "via expo", &[]).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let rows = bob.client.list_push_deliveries(0, 10).await?.deliveries;
        let targets = bob.client.list_push_targets(true).await?.targets;
        let disabled = targets.iter().any(|t| t.target_id == registered.target_id && !t.enabled);
        if rows.len() == 1 && state(&rows[0]) == v1::PushDeliveryState::Failed && disabled {
            ensure!(rows[0].detail.contains("DeviceNotRegistered"), "{:?}", rows[0]);
            break;
        }
        ensure!(tokio::time::Instant::now() < deadline, "no receipt settled: {rows:#?} {targets:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let asked = fakes.expo.received().iter().filter(|r| r.path.ends_with("getReceipts")).count();
    ensure!(asked >= 1, "receipts were never asked for");
    s.stop().await
}

/// §24.5: two nodes on one database, both sending: each push is sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_send_each_push_once() -> anyhow::Result<()> {
    let fakes = Fakes::start().await;
    let db = confab_conformance::pg::TestDatabase::create().await?;
    let a = TestServer::start_on(&db.url, |c| fakes.configure(c)).await?;
    let b = TestServer::start_on(&db.url, |c| fakes.configure(c)).await?;
    let (bob, _) = offline_with(&a, "nbob", target(v1::PushProvider::Webpush, &fakes.webpush.endpoint("/bob"))).await?;
    let alice = new_user(&b, WS, "nalice").await?;
    let conv = dm(&alice, bob.id).await?;
    const N: usize = 40;
    for i in 0..N {
        send(&alice, conv, &format!("burst {i}"), &[]).await?;
    }
    let rows = settled(&bob, N).await?;
    ensure!(rows.len() == N, "{} rows", rows.len());
    ensure!(rows.iter().all(|d| state(d) == v1::PushDeliveryState::Sent && d.attempts == 1), "{rows:#?}");
    let got = fakes.webpush.received();
    let mut seqs: Vec<String> = got.iter().map(|r| field(r, "seq")).collect();
    seqs.sort();
    seqs.dedup();
    ensure!(got.len() == N && seqs.len() == N, "{} requests for {} entries", got.len(), seqs.len());
    a.stop().await?;
    b.stop().await?;
    Ok(())
}

/// §24.5: a provider that does not answer holds up only its own pushes: another user's push goes
/// while the first request is still waiting for its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_provider_holds_up_only_its_own_pushes() -> anyhow::Result<()> {
    let fakes = Fakes::start().await;
    let s = server(StoreKind::Sqlite, &fakes).await?;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let silent_url = format!("http://{}/never", silent.local_addr()?);
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
            let _ = accepted_tx.send(()).await;
        }
    });
    let (carol, _) = offline_with(&s, "scarol", target(v1::PushProvider::Webpush, &silent_url)).await?;
    let (bob, _) = offline_with(&s, "sbob", target(v1::PushProvider::Webpush, &fakes.webpush.endpoint("/bob"))).await?;
    let alice = new_user(&s, WS, "salice").await?;
    let to_carol = dm(&alice, carol.id).await?;
    let to_bob = dm(&alice, bob.id).await?;
    send(&alice, to_carol, "into the void", &[]).await?;
    tokio::time::timeout(Duration::from_secs(10), accepted.recv()).await?.context("never connected")?;
    send(&alice, to_bob, "still delivered", &[]).await?;
    fakes.webpush.wait_for(1, Duration::from_secs(10)).await;
    let waiting = carol.client.list_push_deliveries(0, 10).await?.deliveries;
    ensure!(
        waiting.len() == 1
            && state(&waiting[0]) == v1::PushDeliveryState::Queued
            && waiting[0].attempts == 1
            && waiting[0].next_attempt_at_ms == waiting[0].created_at_ms,
        "the silent provider's push is no longer in its first attempt (no retry is scheduled yet): {waiting:#?}"
    );
    s.stop().await
}

/// §24.2, §24.3: a connected device that does not ack has a push waiting for its ack window;
/// muting the conversation meanwhile drops it (the settings are read again when it is due).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muting_drops_what_is_waiting() -> anyhow::Result<()> {
    let fakes = Fakes::start().await;
    let s = TestServer::start_with(StoreKind::Sqlite, |c| {
        fakes.configure(c);
        c.push.ack_wait = Duration::from_secs(5);
    })
    .await?;
    let bob = new_user(&s, WS, "wbob").await?;
    bob.client.register_push_target(target(v1::PushProvider::Webpush, &fakes.webpush.endpoint("/bob"))).await?;
    let alice = new_user(&s, WS, "walice").await?;
    let conv = dm(&alice, bob.id).await?;
    let seq = send(&alice, conv, "waits for the ack window", &[]).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rows = bob.client.list_push_deliveries(0, 10).await?.deliveries;
        if rows.iter().any(|d| d.seq == seq) {
            let d = &rows[0];
            ensure!(state(d) == v1::PushDeliveryState::Queued && d.next_attempt_at_ms > d.created_at_ms, "{d:?}");
            break;
        }
        ensure!(tokio::time::Instant::now() < deadline, "never planned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mute =
        v1::SetConversationPushSettings { conversation_id: conv, level: v1::PushLevel::None as i32, until_ms: 0 };
    bob.client.set_conversation_push_settings(mute).await?;
    let rows = settled(&bob, 1).await?;
    ensure!(state(&rows[0]) == v1::PushDeliveryState::Dropped && rows[0].detail.contains("settings"), "{rows:#?}");
    ensure!(fakes.webpush.received().is_empty(), "pushed after muting");
    s.stop().await
}
