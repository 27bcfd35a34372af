//! The network actor under a connection that keeps breaking (a proxy cuts every connection after
//! a few server frames): it reconnects by itself, catches up with Sync, and reports every log
//! entry exactly once and in order (docs/protocol.md §14.6); messages sent through its outbox
//! are stored exactly once although their answers are lost and they are sent again (§13.2).

#[allow(dead_code)]
mod common;

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
            written_ms: 0,
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
/// the profile's outbox, shown as pending by the next run from its start (`Update::Queued`, before
/// any connection, and again after the snapshot) and sent by it with the time it was written
/// (docs/protocol.md §14.6 step 5, §13.2).
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
    // Written a minute and a half ago.
    let written_ms = confab_cli::session::now_ms() - 90_000;
    let o = Outgoing {
        conversation_id: conv,
        client_msg_id: new_client_msg_id(),
        text: "written offline".into(),
        reply_to: 0,
        mentions: Vec::new(),
        attachments: Vec::new(),
        written_ms,
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
    // What the UI hears, in order: q = queued, s = snapshot, o = online.
    let mut heard = String::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), updates.recv()).await.expect("update").expect("alive") {
            Update::Queued(q) => {
                assert_eq!(q, o, "the outbox entry as written, its time included");
                heard.push('q');
            }
            Update::Snapshot(_) => heard.push('s'),
            Update::Connection(ConnState::Online) => heard.push('o'),
            Update::Sent { client_msg_id, .. } => {
                assert_eq!(client_msg_id, o.client_msg_id);
                break;
            }
            Update::Connection(ConnState::SignedOut(r)) => panic!("signed out: {r}"),
            _ => {}
        }
    }
    assert_eq!(heard, "qsqo", "pending from the start and again after the snapshot");
    handle.send(Command::Shutdown).await.expect("shutdown");
    let saved = std::fs::read_to_string(dir.path().join("profile/outbox.json")).expect("outbox");
    assert_eq!(saved.trim(), "[]");
    let h = v1::GetHistory { conversation_id: conv, before_seq: 0, after_seq: 0, limit: 50 };
    let R::GetHistory(h) = alice.client.request(Request::GetHistory(h)).await.expect("history") else {
        panic!("history")
    };
    let stored: Vec<&v1::Message> = h.messages.iter().filter(|m| m.text == "written offline").collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].written_at_ms, written_ms, "stored with the time it was written");
    assert!(stored[0].created_at_ms >= written_ms + 90_000, "{:?}", stored[0]);
    server.stop().await.expect("stop");
}

/// Updates from `updates` until one `stop` accepts (returned last), within `secs`.
async fn until(
    updates: &mut tokio::sync::mpsc::Receiver<Update>,
    secs: u64,
    stop: impl Fn(&Update) -> bool,
) -> Vec<Update> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    loop {
        let u = tokio::time::timeout_at(deadline, updates.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out after {seen:#?}"))
            .expect("actor alive");
        if let Update::Connection(ConnState::SignedOut(r)) = &u {
            panic!("signed out: {r}");
        }
        let done = stop(&u);
        seen.push(u);
        if done {
            return seen;
        }
    }
}

/// The user-log entries among `seen`, as (user_seq, conversation added to).
fn user_entries(seen: &[Update]) -> Vec<(u64, u64)> {
    use confab_protocol::v1::user_update::Body as U;
    seen.iter()
        .filter_map(|u| match u {
            Update::UserEntry(e) => {
                Some((e.user_seq, if let Some(U::AddedToConversation(a)) = &e.body { a.conversation_id } else { 0 }))
            }
            _ => None,
        })
        .collect()
}

/// A (re)started actor reports the account as a snapshot and then only what changes after it: the
/// user log is not replayed from its start (`confab tail --json` printed every conversation the
/// user was ever added to on every start), yet an entry written after the bootstrap is reported,
/// once (docs/protocol.md §14.3, §14.6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_actor_reports_only_what_is_new() {
    let server = TestServer::start(StoreKind::Sqlite).await.expect("server");
    let (alice, bob, conv) = alice_and_bob(&server).await;
    // Bob's user log: added to the DM and to a group, a read marker.
    call!(alice.client, CreateConversation, confab_conformance::util::group("before", &[bob.id])).expect("group");
    call!(alice.client, SendMessage, confab_conformance::util::send(conv, "r1", "hi")).expect("send");
    call!(bob.client, MarkRead, v1::MarkRead { conversation_id: conv, seq: 2 }).expect("read");
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(&server.url(Transport::WebSocket), dir.path());
    settings.creds().save(&Credentials::from_auth(&settings.server, &settings.trust, &bob.auth)).expect("creds");

    for run in ["first", "restarted"] {
        let (handle, mut updates) = net::spawn(settings.clone(), fast());
        let start = until(&mut updates, 30, |u| matches!(u, Update::Connection(ConnState::Online))).await;
        let snapshot = start.iter().find_map(|u| match u {
            Update::Snapshot(s) => Some(s),
            _ => None,
        });
        let convs = snapshot.expect("a snapshot").conversations.len();
        assert!(convs >= 2, "{run}: the snapshot has the conversations ({convs})");
        assert_eq!(user_entries(&start), [], "{run} run: no old user-log entry replayed");
        assert!(!start.iter().any(|u| matches!(u, Update::Entry(_))), "{run} run: no old entry replayed");

        // Added to a group now: reported once, as the next entry of the log.
        let title = format!("after the {run} start");
        let g = call!(alice.client, CreateConversation, confab_conformance::util::group(&title, &[bob.id]))
            .expect("group")
            .conversation_id;
        let seen = until(&mut updates, 10, |u| user_entries(std::slice::from_ref(u)).iter().any(|e| e.1 == g)).await;
        assert_eq!(user_entries(&seen).len(), 1, "{run}: {seen:#?}");
        // Its first message too.
        call!(alice.client, SendMessage, confab_conformance::util::send(g, &format!("{run}-m"), "welcome"))
            .expect("send");
        until(&mut updates, 10, |u| {
            matches!(u, Update::Entry(e) if e.conversation_id == g
                && matches!(&e.body, Some(Body::MessagePosted(m)) if m.text == "welcome"))
        })
        .await;
        handle.send(Command::Shutdown).await.expect("shutdown");
        while updates.recv().await.is_some() {}
    }
    server.stop().await.expect("stop");
}

/// Offline with a long wait before the next attempt, `Command::Reconnect` connects at once: the
/// server comes back on the address the actor was given, and the actor is online within seconds
/// instead of the minute its backoff said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_connects_now_instead_of_after_the_backoff() {
    let server = TestServer::start(StoreKind::Sqlite).await.expect("server");
    let (_alice, bob, _conv) = alice_and_bob(&server).await;
    // An address nothing listens on, for now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings(&format!("ws://{addr}/v1/ws"), dir.path());
    s.creds().save(&Credentials::from_auth(&s.server, &s.trust, &bob.auth)).expect("creds");
    let slow = NetOptions { min_backoff: Duration::from_secs(60), max_backoff: Duration::from_secs(120), ..fast() };
    let (handle, mut updates) = net::spawn(s, slow);
    let seen = until(&mut updates, 10, |u| matches!(u, Update::Connection(ConnState::Offline { .. }))).await;
    let Some(Update::Connection(ConnState::Offline { retry_in, .. })) = seen.last() else { unreachable!() };
    assert!(*retry_in >= Duration::from_secs(45), "a long wait: {retry_in:?}");

    // Reconnect while the server is still away: one attempt now, offline again.
    handle.send(Command::Reconnect).await.expect("reconnect");
    let seen = until(&mut updates, 5, |u| matches!(u, Update::Connection(ConnState::Offline { .. }))).await;
    assert!(matches!(seen[0], Update::Connection(ConnState::Connecting { .. })), "{seen:?}");
    let Some(Update::Connection(ConnState::Offline { retry_in, .. })) = seen.last() else { unreachable!() };
    assert!(*retry_in >= Duration::from_secs(45), "the backoff starts over: {retry_in:?}");

    // The server is back on that address (a relay to it).
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind the address");
    let upstream = server.ws_addr;
    let relay = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                }
            });
        }
    });
    let asked = tokio::time::Instant::now();
    handle.send(Command::Reconnect).await.expect("reconnect");
    until(&mut updates, 10, |u| matches!(u, Update::Connection(ConnState::Online))).await;
    assert!(asked.elapsed() < Duration::from_secs(10), "online at once, not after the backoff");
    // Online, Reconnect does nothing: no new attempt.
    handle.send(Command::Reconnect).await.expect("reconnect");
    let quiet = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            match updates.recv().await {
                Some(Update::Connection(c)) => return c,
                Some(_) => {}
                None => return ConnState::SignedOut("actor stopped".into()),
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "the connection changed: {quiet:?}");
    handle.send(Command::Shutdown).await.expect("shutdown");
    relay.abort();
    server.stop().await.expect("stop");
}

/// The UI shows each outbox message it hears of (`Update::Queued`) as pending once, at the time it
/// was written, again after a snapshot replaced its state, and drops it when its entry arrives.
#[test]
fn queued_messages_show_as_pending_once() {
    use common::{BOB, HOUR, ME, T0, app, conversation, entry, message};
    let mut app = app();
    let o = Outgoing {
        conversation_id: 10,
        client_msg_id: new_client_msg_id(),
        text: "written on the train".into(),
        reply_to: 0,
        mentions: Vec::new(),
        attachments: Vec::new(),
        written_ms: T0 + 29 * HOUR,
    };
    let pending = |app: &confab_cli::ui::app::App| -> Vec<(String, u64)> {
        app.store.convs[&10].pending.iter().map(|p| (p.text.clone(), p.created_ms)).collect()
    };
    let want = vec![("written on the train".to_string(), T0 + 29 * HOUR)];
    app.on_update(Update::Queued(o.clone()));
    app.on_update(Update::Queued(o.clone()));
    assert_eq!(pending(&app), want, "once, at the time it was written");
    // A new snapshot (a reconnect that bootstrapped again) replaces the state; the actor then
    // reports what still waits.
    let last = message(10, 7, 107, BOB, "see you tomorrow then", T0 + 26 * HOUR);
    let snap = confab_cli::net::Snapshot {
        me: v1::Me { user_id: ME, username: "alice".into(), ..Default::default() },
        conversations: vec![conversation(10, v1::ConversationKind::Direct, "", BOB, 7, 0, last)],
        users: Vec::new(),
    };
    app.on_update(Update::Snapshot(Box::new(snap)));
    app.on_update(Update::Queued(o.clone()));
    assert_eq!(pending(&app), want, "pending again after the snapshot");

    // Stored: the answer, then its entry.
    let result = v1::SendMessageResult { message_id: 108, seq: 8, created_at_ms: T0 + 30 * HOUR, duplicate: false };
    app.on_update(Update::Sent { conversation_id: 10, client_msg_id: o.client_msg_id.clone(), result });
    let mut m = message(10, 8, 108, ME, "written on the train", T0 + 30 * HOUR);
    m.written_at_ms = T0 + 29 * HOUR;
    app.on_update(entry(10, 8, ME, T0 + 30 * HOUR, Body::MessagePosted(m)));
    assert_eq!(pending(&app), [], "the stored message replaced it");
    assert_eq!(app.store.convs[&10].message_by_id(108).map(|m| m.written_ms), Some(T0 + 29 * HOUR));
}
