//! `confab room` end to end against a real server (docs/protocol.md §25): a room created with a
//! lobby, an invite link that opens the server's meeting page and whose token makes a guest, the
//! room listed and shown with the guest knocking, the invite revoked and the room closed.

#[allow(dead_code)]
mod cli_user;

use cli_user::User;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_protocol::client::Client;
use confab_protocol::v1::{self, client_frame::Request, response};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rooms_and_invite_links_through_the_binary() {
    let server = TestServer::start(StoreKind::Sqlite).await.expect("server");
    let url = server.url(Transport::WebSocket);
    let alice = User::new(&url);
    let (alice, room, token) = tokio::task::spawn_blocking(move || {
        alice.ok(&["register", "alice"]);
        let r = alice.json(&["room", "create", "stand up", "--lobby", "--expires-in", "2h", "--json"]);
        let room = r[0]["room_id"].as_str().expect("room id").to_string();
        assert_eq!(r[0]["name"], "stand up");
        assert_eq!(r[0]["lobby"], true);
        assert!(r[0]["expires_at_ms"].as_u64().expect("expiry") > 0);
        let i = alice.json(&["room", "invite", &room, "--role", "guest", "--max-uses", "5", "--json"]);
        let link = i[0]["link"].as_str().expect("link");
        assert!(link.starts_with("http://127.0.0.1:") && link.contains(&format!("/call/{room}#token=")), "{link}");
        assert_eq!(i[0]["role"], "guest");
        let listed = alice.json(&["room", "list", "--json"]);
        assert!(listed.iter().any(|r| r["room_id"] == room.as_str()), "{listed:?}");
        (alice, room, i[0]["token"].as_str().expect("token").to_string())
    })
    .await
    .expect("cli");

    // The token makes a guest, who knocks.
    let mut o = server.options();
    o.room_token = Some(token);
    o.display_name = "Visitor".into();
    let (guest, _events) = Client::connect(&url, o).await.expect("guest");
    let join = v1::JoinCall { room_id: room.clone(), conversation_id: 0 };
    match guest.request(Request::JoinCall(join)).await.expect("join") {
        response::Result::JoinCall(r) => assert!(r.in_lobby),
        other => panic!("{other:?}"),
    }

    let r2 = room.clone();
    tokio::task::spawn_blocking(move || {
        let shown = alice.json(&["room", "show", &r2, "--json"]);
        assert_eq!(shown[0]["role"], "owner");
        assert_eq!(shown[0]["knocks"][0]["display_name"], "Visitor", "{shown:?}");
        let text = alice.ok(&["room", "show", &r2]);
        assert!(text.contains("knocks   Visitor"), "{text}");
        alice.ok(&["room", "close", &r2]);
        assert!(alice.json(&["room", "list", "--json"]).is_empty());
        let err = alice.fails(&["room", "show", "no-such-room"]);
        assert!(err.contains("no such room"), "{err}");
    })
    .await
    .expect("cli");
    guest.close().await;
    server.stop().await.expect("stop");
}
