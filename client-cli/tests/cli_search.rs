//! `confab search` end to end against a real server (docs/protocol.md §23): bob and carol post
//! through the protocol client (a hundred messages and more, so the cursor is followed), alice
//! searches with the binary: `--json` hits whose highlights slice the matching words out of the
//! text (accents and CJK too), each filter (`--from` by username and by id, `--in`, `--after`,
//! `--before`, `--with-attachments`, `--without-attachments`), the query syntax through the
//! shell (`-excluded` quoted or after `--`, "a phrase"), `--limit` over several pages, the text
//! output with its markers, and the errors said before anything is asked.

#[allow(dead_code)]
mod cli_user;

use std::time::{SystemTime, UNIX_EPOCH};

use cli_user::User;
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::util::{direct, group, new_user, send};
use serde_json::Value;

/// The matched parts of a hit's text, by its highlights (byte offsets).
fn matched(hit: &Value) -> Vec<String> {
    let text = hit["text"].as_str().expect("text").as_bytes();
    hit["highlights"]
        .as_array()
        .expect("highlights")
        .iter()
        .map(|r| {
            let (s, e) = (r[0].as_u64().expect("start") as usize, r[1].as_u64().expect("end") as usize);
            String::from_utf8(text[s..e].to_vec()).expect("ranges on character boundaries")
        })
        .collect()
}

fn texts(hits: &[Value]) -> Vec<&str> {
    hits.iter().map(|h| h["text"].as_str().unwrap_or("")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn search_through_the_binary() {
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
    let carol = new_user(&server, Transport::WebSocket, "carol").await.expect("carol");
    let launch = call!(bob.client, CreateConversation, group("launch", &[alice_id, carol.id])).expect("group");
    let dm = call!(bob.client, CreateConversation, direct(alice_id)).expect("dm");
    let (g, d) = (launch.conversation_id, dm.conversation_id);
    call!(bob.client, SendMessage, send(g, "b1", "Élodie ships the release today")).expect("send");
    call!(carol.client, SendMessage, send(g, "c1", "the release notes are in the wiki")).expect("send");
    call!(bob.client, SendMessage, send(g, "b2", "東京 office says hi")).expect("send");
    call!(bob.client, SendMessage, send(d, "b3", "release party at 6?")).expect("send");
    for i in 0..130 {
        call!(carol.client, SendMessage, send(g, &format!("w{i}"), &format!("widget status {i}"))).expect("send");
    }
    let since = now_ms();
    let (bob_name, carol_id) = (bob.name.clone(), carol.id);

    tokio::task::spawn_blocking(move || {
        // A file from alice, through the binary: the one hit with an attachment.
        let chart = alice.file("chart.png", &png());
        alice.ok(&["send", "launch", "--file", chart.to_str().expect("path"), "release chart"]);

        // Every hit of a word, newest first, its highlights the word as written.
        let hits = alice.json(&["search", "release", "--json"]);
        assert_eq!(
            texts(&hits),
            [
                "release chart",
                "release party at 6?",
                "the release notes are in the wiki",
                "Élodie ships the release today"
            ]
        );
        for h in &hits {
            assert_eq!(matched(h), ["release"], "{h}");
            for field in ["message_id", "conversation_id", "seq", "sender_id", "created_at_ms"] {
                assert!(h[field].as_u64().is_some_and(|v| v > 0), "{field} in {h}");
            }
        }
        assert_eq!(hits[1]["conversation"].as_str(), Some(format!("@{bob_name}").as_str()));
        assert_eq!((hits[2]["conversation"].as_str(), hits[2]["sender_id"].as_u64()), (Some("launch"), Some(carol_id)));
        // Accents and case do not matter, CJK is found; the ranges cover the text as written.
        let hits = alice.json(&["search", "elodie", "--json"]);
        assert_eq!(hits.iter().map(matched).collect::<Vec<_>>(), [["Élodie"]]);
        let hits = alice.json(&["search", "東京", "--json"]);
        assert_eq!(hits.iter().map(matched).collect::<Vec<_>>(), [["東京"]]);

        // Filters: sender by name and by id, conversation by title and by @user, attachments.
        let from_bob = alice.json(&["search", "release", "--from", &bob_name, "--json"]);
        assert_eq!(texts(&from_bob), ["release party at 6?", "Élodie ships the release today"]);
        let from_carol = alice.json(&["search", "release", "--from", &carol_id.to_string(), "--json"]);
        assert_eq!(texts(&from_carol), ["the release notes are in the wiki"]);
        assert_eq!(alice.json(&["search", "release", "--in", "launch", "--json"]).len(), 3);
        assert_eq!(alice.json(&["search", "release", "--in", &g.to_string(), "--json"]).len(), 3);
        let in_dm = alice.json(&["search", "release", "--in", &format!("@{bob_name}"), "--json"]);
        assert_eq!(texts(&in_dm), ["release party at 6?"]);
        let with = alice.json(&["search", "release", "--with-attachments", "--json"]);
        assert_eq!(texts(&with), ["release chart"]);
        assert_eq!(with[0]["attachments"][0]["file_name"], "chart.png");
        assert_eq!(alice.json(&["search", "release", "--without-attachments", "--json"]).len(), 3);
        // Time: everything is from the last minutes.
        assert_eq!(alice.json(&["search", "release", "--after", "1h", "--json"]).len(), 4);
        assert!(alice.json(&["search", "release", "--before", "1h", "--json"]).is_empty());
        let after = rfc3339(since);
        assert_eq!(texts(&alice.json(&["search", "release", "--after", &after, "--json"])), ["release chart"]);

        // Query syntax through the shell: excluded words in the quoted query or after --, a
        // phrase; an excluded word among the options is refused with clap's tip.
        let hits = alice.json(&["search", "release -notes", "--json", "--", "-chart"]);
        assert_eq!(texts(&hits), ["release party at 6?", "Élodie ships the release today"]);
        let mixed = alice.run(&["search", "release", "-notes"]);
        assert!(!mixed.status.success() && String::from_utf8_lossy(&mixed.stderr).contains("-- -n"));
        let hits = alice.json(&["search", "\"release notes\"", "--json"]);
        assert_eq!(texts(&hits), ["the release notes are in the wiki"]);
        assert_eq!(alice.json(&["search", "release", "--order", "relevance", "--json"]).len(), 4);

        // 20 hits by default; more follow the cursor over pages of at most 100.
        assert_eq!(alice.json(&["search", "widget", "--json"]).len(), 20);
        let hits = alice.json(&["search", "widget", "--limit", "125", "--json"]);
        let ids: Vec<u64> = hits.iter().map(|h| h["message_id"].as_u64().expect("id")).collect();
        assert_eq!(ids.len(), 125);
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first, no repeat");
        assert_eq!(hits[0]["text"], "widget status 129");
        // A filter alone is a search.
        assert_eq!(alice.json(&["search", "--from", &bob_name, "--limit", "50", "--json"]).len(), 3);

        // Text: a header line, then the text with the matches between brackets (not a terminal).
        let out = alice.ok(&["search", "elodie"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with(&format!("launch · {bob_name} · ")), "{out}");
        assert_eq!(lines[1], "    [Élodie] ships the release today");
        let none = alice.run(&["search", "nothing-like-this"]);
        assert!(none.status.success() && none.stdout.is_empty());
        assert_eq!(String::from_utf8_lossy(&none.stderr), "no messages match\n");

        // Errors, before anything is asked.
        assert!(alice.fails(&["search"]).contains("nothing to search for"));
        assert!(alice.fails(&["search", "x", "--after", "1h", "--before", "2h"]).contains("--after must be earlier"));
        let bad = alice.run(&["search", "x", "--after", "someday"]);
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a time"));
        assert!(alice.fails(&["search", "x", "--from", "nobody-here"]).contains("no user named"));
    })
    .await
    .expect("test body");
    server.stop().await.expect("stop");
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64
}

/// `ms` as RFC 3339 in UTC, as `--after` takes it.
fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).expect("time").to_rfc3339()
}

/// A 1×1 PNG.
fn png() -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::new(1, 1)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encode png");
    out
}
