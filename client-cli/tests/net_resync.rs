//! The network actor under a connection that keeps breaking (a proxy cuts every connection after
//! a few server frames): it reconnects by itself, catches up with Sync, and reports every log
//! entry exactly once and in order (docs/protocol.md §14.6); messages sent through its outbox
//! are stored exactly once although their answers are lost and they are sent again (§13.2).

use std::collections::BTreeMap;
use std::time::Duration;

use confab_cli::config::{FileConfig, Settings, TrustSetting};
use confab_cli::creds::Credentials;
use confab_cli::net::{self, Command, ConnState, NetOptions, Outgoing, Update, new_client_msg_id};
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::proxy::CutProxy;
use confab_conformance::util::{User, direct, new_user};
use confab_protocol::v1::{self, client_frame::Request, conversation_event::Body, response::Result as R};

fn fast() -> NetOptions {
    NetOptions {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        tick: Duration::from_millis(100),
        persist_outbox: false,
    }
}

fn settings(server: &str, dir: &std::path::Path) -> Settings {
    Settings {
        profile: "test".into(),
        server: server.to_string(),
        trust: TrustSetting::System,
        device_name: "resync test".into(),
        server_explicit: true,
        config_file: dir.join("config.toml"),
        profile_dir: dir.join("profile"),
        file: FileConfig::default(),
    }
}

/// Alice and Bob, signed in over WebSocket, and their direct conversation.
async fn alice_and_bob(server: &TestServer) -> (User, User, u64) {
    let alice = new_user(server, Transport::WebSocket, "alice").await.expect("alice");
    let bob = new_user(server, Transport::WebSocket, "bob").await.expect("bob");
    let conv = call!(alice.client, CreateConversation, direct(bob.id)).expect("dm").conversation_id;
    (alice, bob, conv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_converges_through_cut_connections_and_sends_once() {
    let server = TestServer::start(StoreKind::Sqlite).await.expect("server");
    let (alice, bob, conv) = alice_and_bob(&server).await;

    // Bob's actor talks through a proxy that closes every connection after 14 server frames.
    let proxy = CutProxy::start(server.ws_addr, Some(14)).await.expect("proxy");
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(&format!("ws://{}/v1/ws", proxy.addr), dir.path());
    settings.creds().save(&Credentials::from_auth(&settings.server, &settings.trust, &bob.auth)).expect("creds");
    let (handle, mut updates) = net::spawn(settings, fast());
    // Entries after the first snapshot are what the actor reports (earlier ones are history).
    loop {
        match tokio::time::timeout(Duration::from_secs(30), updates.recv()).await.expect("snapshot").expect("alive") {
            Update::Snapshot(s) => {
                assert!(s.conversations.iter().any(|c| c.conversation_id == conv));
                break;
            }
            Update::Connection(ConnState::SignedOut(r)) => panic!("signed out: {r}"),
            _ => {}
        }
    }
    let mut connects = 1;

    for i in 0..10 {
        let o = Outgoing {
            conversation_id: conv,
            client_msg_id: new_client_msg_id(),
            text: format!("b{i}"),
            reply_to: 0,
            mentions: Vec::new(),
            attachments: Vec::new(),
        };
        handle.send(Command::Send(o)).await.expect("queue");
    }
    for i in 0..30 {
        let m = v1::SendMessage {
            conversation_id: conv,
            client_msg_id: new_client_msg_id(),
            text: format!("a{i}"),
            ..Default::default()
        };
        alice.client.request(Request::SendMessage(m)).await.expect("alice sends");
    }

    let mut entries: Vec<(u64, String)> = Vec::new();
    let mut sent = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while entries.len() < 40 || sent < 10 {
        let u = tokio::time::timeout_at(deadline, updates.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out with {} entries, {sent} sent: {entries:?}", entries.len()))
            .expect("actor alive");
        match u {
            Update::Entry(e) if e.conversation_id == conv => {
                if let Some(Body::MessagePosted(m)) = &e.body {
                    entries.push((e.seq, m.text.clone()));
                }
            }
            Update::Sent { .. } => sent += 1,
            Update::SendFailed { error, .. } => panic!("send refused: {error}"),
            Update::Connection(ConnState::Connecting { .. }) => connects += 1,
            Update::Connection(ConnState::SignedOut(r)) => panic!("signed out: {r}"),
            _ => {}
        }
    }
    handle.send(Command::Shutdown).await.expect("shutdown");
    assert!(connects >= 3, "the proxy cut the connection repeatedly ({connects} connects)");
    // In order, no gaps, nothing twice.
    for w in entries.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "entries in seq order without gaps: {entries:?}");
    }
    let mut count: BTreeMap<&str, u32> = BTreeMap::new();
    for (_, t) in &entries {
        *count.entry(t.as_str()).or_default() += 1;
    }
    assert_eq!(count.len(), 40, "{count:?}");
    assert!(count.values().all(|n| *n == 1), "{count:?}");

    // Bob's messages were stored in the order he wrote them.
    let b: Vec<&str> = entries.iter().filter(|(_, t)| t.starts_with('b')).map(|(_, t)| t.as_str()).collect();
    assert_eq!(b, ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9"]);
    // The server stored each of bob's messages once.
    let h = v1::GetHistory { conversation_id: conv, before_seq: 0, after_seq: 0, limit: 200 };
    let R::GetHistory(h) = alice.client.request(Request::GetHistory(h)).await.expect("history") else {
        panic!("history")
    };
    let bobs: Vec<&str> = h.messages.iter().filter(|m| m.sender_id == bob.id).map(|m| m.text.as_str()).collect();
    assert_eq!(bobs.len(), 10, "{bobs:?}");
    let mut sorted = bobs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 10, "no duplicates: {bobs:?}");
    drop(proxy);
    server.stop().await.expect("stop");
}

/// A message written while the server cannot be reached, then the program quits: it is kept in
/// the profile's outbox and sent by the next run (docs/protocol.md §14.6 step 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_messages_survive_a_restart() {
    let server = TestServer::start(StoreKind::Sqlite).await.expect("server");
    let (alice, bob, conv) = alice_and_bob(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // First run: nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let offline = settings(&format!("ws://{closed}/v1/ws"), dir.path());
    offline.creds().save(&Credentials::from_auth(&offline.server, &offline.trust, &bob.auth)).expect("creds");
    let (handle, mut updates) = net::spawn(offline, NetOptions { persist_outbox: true, ..fast() });
    let o = Outgoing {
        conversation_id: conv,
        client_msg_id: new_client_msg_id(),
        text: "written offline".into(),
        reply_to: 0,
        mentions: Vec::new(),
        attachments: Vec::new(),
    };
    handle.send(Command::Send(o.clone())).await.expect("queue");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), updates.recv()).await.expect("update").expect("alive") {
            Update::Connection(ConnState::Offline { .. }) => break,
            Update::Sent { .. } => panic!("nothing listens there"),
            _ => {}
        }
    }
    handle.send(Command::Shutdown).await.expect("shutdown");
    while updates.recv().await.is_some() {}
    let saved = std::fs::read_to_string(dir.path().join("profile/outbox.json")).expect("outbox kept");
    assert!(saved.contains("written offline"), "{saved}");

    // Second run, online: the message goes out once and the outbox empties.
    let online = settings(&server.url(Transport::WebSocket), dir.path());
    online.creds().save(&Credentials::from_auth(&online.server, &online.trust, &bob.auth)).expect("creds");
    let (handle, mut updates) = net::spawn(online, NetOptions { persist_outbox: true, ..fast() });
    loop {
        match tokio::time::timeout(Duration::from_secs(20), updates.recv()).await.expect("update").expect("alive") {
            Update::Sent { client_msg_id, .. } => {
                assert_eq!(client_msg_id, o.client_msg_id);
                break;
            }
            Update::Connection(ConnState::SignedOut(r)) => panic!("signed out: {r}"),
            _ => {}
        }
    }
    handle.send(Command::Shutdown).await.expect("shutdown");
    let saved = std::fs::read_to_string(dir.path().join("profile/outbox.json")).expect("outbox");
    assert_eq!(saved.trim(), "[]");
    let h = v1::GetHistory { conversation_id: conv, before_seq: 0, after_seq: 0, limit: 50 };
    let R::GetHistory(h) = alice.client.request(Request::GetHistory(h)).await.expect("history") else {
        panic!("history")
    };
    assert_eq!(h.messages.iter().filter(|m| m.text == "written offline").count(), 1);
    server.stop().await.expect("stop");
}
