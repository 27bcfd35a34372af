//! `confab push` end to end against a real server (docs/protocol.md §24): settings shown and
//! changed with `--json`, a conversation muted for a while and unmuted, the (empty) lists of
//! targets and deliveries, and an unknown conversation named in one line.

#[allow(dead_code)]
mod cli_user;

use cli_user::User;
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::util::{group, new_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_settings_through_the_binary() {
    let server = TestServer::start(StoreKind::Sqlite).await.expect("server");
    let url = server.url(Transport::WebSocket);
    let alice = User::new(&url);
    let (alice, alice_id) = tokio::task::spawn_blocking(move || {
        alice.ok(&["register", "alice"]);
        let id = alice.json(&["whoami", "--json"])[0]["user_id"].as_u64().expect("user id");
        (alice, id)
    })
    .await
    .expect("register");
    let bob = new_user(&server, Transport::WebSocket, "bob").await.expect("bob");
    let crew = call!(bob.client, CreateConversation, group("crew", &[alice_id])).expect("group").conversation_id;

    tokio::task::spawn_blocking(move || {
        let s = alice.json(&["push", "settings", "--json"]);
        assert_eq!(s[0]["level"], "all");
        assert_eq!(s[0]["preview"], false);
        let s = alice.json(&["push", "settings", "--level", "mentions", "--preview", "true", "--json"]);
        assert_eq!((s[0]["level"].as_str(), s[0]["preview"].as_bool()), (Some("mentions"), Some(true)));
        alice.ok(&["push", "mute", "crew", "--for", "8h"]);
        let s = alice.json(&["push", "settings", "--json"]);
        let convs = s[0]["conversations"].as_array().expect("conversations");
        assert_eq!(convs.len(), 1, "{s:?}");
        assert_eq!(convs[0]["conversation_id"].as_u64(), Some(crew));
        assert_eq!(convs[0]["level"], "none");
        assert!(convs[0]["until_ms"].as_u64().expect("until") > 0);
        alice.ok(&["push", "unmute", "crew"]);
        let s = alice.json(&["push", "settings", "--json"]);
        assert!(s[0]["conversations"].as_array().expect("conversations").is_empty(), "{s:?}");
        assert!(alice.json(&["push", "targets", "--all", "--json"]).is_empty());
        assert!(alice.json(&["push", "deliveries", "--json"]).is_empty());
        let err = alice.fails(&["push", "mute", "no-such-conversation"]);
        assert!(err.contains("no-such-conversation"), "{err}");
    })
    .await
    .expect("cli");
    server.stop().await.expect("stop");
}
