//! End to end through the subcommands, as scripts use them: two users on a real server register,
//! open a DM, send (from arguments and from stdin); `tail` of the other side receives the
//! messages live, `history` shows them, and the receipts move from sent to delivered to read.
//! Files go up with `send --file` over WebSocket and come back byte for byte with `download`
//! over QUIC; `avatar` sets and clears the avatar.

mod cli_user;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cli_user::User;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use serde_json::Value;

/// A running `confab tail --json`, its lines read on a thread.
struct Tail {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Tail {
    fn start(user: &User, args: &[&str]) -> Self {
        let mut child = user.command().args(args).stdin(Stdio::null()).stdout(Stdio::piped()).spawn().expect("tail");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("tail printed {line:?}: {e}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The first line matching `pred` within `timeout`; earlier lines are returned too.
    fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if pred(&v) => return (v, seen),
                Ok(v) => seen.push(v),
                Err(_) => panic!("tail: nothing matching within {timeout:?}; saw {seen:#?}"),
            }
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn receipt_state(user: &User, conv: &str, message_id: u64) -> String {
    let r = user.json(&["receipts", conv, &message_id.to_string(), "--json"]);
    assert_eq!(r.len(), 1, "one other member: {r:?}");
    assert_eq!(r[0]["username"], "bob");
    r[0]["state"].as_str().expect("state").to_string()
}

fn wait_state(user: &User, conv: &str, message_id: u64, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = receipt_state(user, conv, message_id);
        if s == want {
            return;
        }
        assert!(Instant::now() < deadline, "receipt stayed {s}, wanted {want}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_users_through_the_subcommands() {
    let server = TestServer::start(StoreKind::Sqlite).await.expect("server");
    let url = server.url(Transport::WebSocket);
    let alice = User::new(&url);
    let bob = User::new(&url);
    let carol = User::new(&url);

    tokio::task::spawn_blocking(move || {
        // Not signed in: one clear line on stderr, non-zero exit.
        let out = carol.run(&["whoami"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("confab: not signed in"), "{err}");

        let reg = alice.json(&["register", "alice", "--display-name", "Alice", "--json"]);
        assert_eq!(reg[0]["username"], "alice");
        bob.ok(&["register", "bob"]);
        let creds = alice.data().join("confab/profiles/default/credentials.toml");
        assert_eq!(mode(&creds), 0o600, "token file is private");
        let me = alice.json(&["whoami", "--json"]);
        assert_eq!((me[0]["username"].as_str(), me[0]["display_name"].as_str()), (Some("alice"), Some("Alice")));

        // Registering a taken name fails with the server's reason.
        let out = carol.run(&["register", "alice"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("ALREADY_EXISTS"));

        let dm = alice.json(&["create-dm", "bob", "--json"]);
        assert_eq!((dm[0]["kind"].as_str(), dm[0]["name"].as_str()), (Some("dm"), Some("@bob")));
        let conv = dm[0]["conversation_id"].as_u64().expect("id").to_string();

        // Before bob has any device online: the first message stays "sent".
        let first = alice.json(&["send", "@bob", "first", "message", "--json"]);
        let first_id = first[0]["message_id"].as_u64().expect("message id");
        assert_eq!(receipt_state(&alice, &conv, first_id), "sent");

        let tail = Tail::start(&bob, &["tail", "--json"]);
        tail.wait_for(Duration::from_secs(20), |v| v["type"] == "connection" && v["state"] == "online");

        let sent = alice.json(&["send", &conv, "hello", "bob", "--json"]);
        let hello_id = sent[0]["message_id"].as_u64().expect("message id");
        let (got, _) = tail.wait_for(Duration::from_secs(10), |v| v["type"] == "message");
        assert_eq!(got["message"]["text"], "hello bob");
        assert_eq!(got["message"]["sender"], "alice");
        assert_eq!(got["conversation"], "@alice");
        assert_eq!(got["message"]["message_id"].as_u64(), Some(hello_id));

        // Text from stdin, a multi-line message.
        alice.with_stdin(&["send", "@bob"], "line one\nline two\n");
        let (got, _) = tail.wait_for(Duration::from_secs(10), |v| v["type"] == "message");
        assert_eq!(got["message"]["text"], "line one\nline two");

        // create-dm again answers the existing DM; its last message is alice's own, by name.
        let again = alice.ok(&["create-dm", "bob"]);
        assert!(again.contains("@bob") && again.contains("alice: line one"), "{again}");
        let again = alice.json(&["create-dm", "bob", "--json"]);
        assert_eq!(again[0]["last_message"]["sender"], "alice", "{again:?}");

        // bob's tail acknowledged what it applied: delivered (covering the first message too).
        wait_state(&alice, &conv, hello_id, "delivered");
        assert_eq!(receipt_state(&alice, &conv, first_id), "delivered");

        let history = bob.json(&["history", "@alice", "--json"]);
        let texts: Vec<&str> = history.iter().map(|m| m["text"].as_str().unwrap_or("")).collect();
        assert_eq!(texts, ["first message", "hello bob", "line one\nline two"]);
        assert!(history.iter().all(|m| m["sender"] == "alice"));
        let text_history = bob.ok(&["history", "@alice", "-n", "1"]);
        assert!(text_history.contains("alice: line one"), "{text_history}");

        let convs = bob.json(&["conversations", "--json"]);
        assert_eq!(convs.len(), 1);
        assert_eq!(convs[0]["unread_count"], 3);
        bob.ok(&["mark-read", "@alice"]);
        wait_state(&alice, &conv, hello_id, "read");
        let convs = bob.json(&["conversations", "--json"]);
        assert_eq!(convs[0]["unread_count"], 0);
        // alice sees bob's read watermark move in her own tail stream too.
        let atail = Tail::start(&alice, &["tail", "--json"]);
        atail.wait_for(Duration::from_secs(20), |v| v["type"] == "connection" && v["state"] == "online");
        bob.ok(&["react", "@alice", &hello_id.to_string(), "👍"]);
        let (r, _) = atail.wait_for(Duration::from_secs(10), |v| v["type"] == "reaction_added");
        assert_eq!((r["emoji"].as_str(), r["actor"].as_str()), (Some("👍"), Some("bob")));

        // Replies from bob arrive in alice's stream; search and sessions work.
        bob.ok(&["send", "@alice", "hi", "alice"]);
        let (got, _) = atail.wait_for(Duration::from_secs(10), |v| v["type"] == "message");
        assert_eq!(
            (got["message"]["text"].as_str(), got["message"]["sender"].as_str()),
            (Some("hi alice"), Some("bob"))
        );
        let found = alice.json(&["search-users", "bo", "--json"]);
        assert!(found.iter().any(|u| u["username"] == "bob"));
        let sessions = alice.json(&["sessions", "--json"]);
        assert!(sessions.iter().any(|s| s["current"] == true));

        // A group and a channel.
        let g = alice.json(&["create-group", "team", "bob", "--json"]);
        assert_eq!((g[0]["kind"].as_str(), g[0]["member_count"].as_u64()), (Some("group"), Some(2)));
        alice.ok(&["create-channel", "lobby"]);
        let listed = bob.ok(&["channels", "lob"]);
        assert!(listed.contains("lobby (1 member)"), "{listed}");
        let joined = bob.json(&["join", "lobby", "--json"]);
        assert_eq!(joined[0]["kind"], "channel");
        let members = alice.json(&["members", "lobby", "--json"]);
        assert_eq!(members.len(), 2);

        // Sign out: the tokens are gone and the next command says so.
        drop(atail);
        alice.ok(&["logout"]);
        assert!(!creds.exists());
        let out = alice.run(&["conversations"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("not signed in"));
    })
    .await
    .expect("test body");
    server.stop().await.expect("stop");
}

/// Access tokens that expire while commands and a long-running `tail` use them are refreshed
/// (docs/protocol.md §11.6): the token file is rewritten, parallel processes of one profile do
/// not trip refresh-token reuse detection, and the tail's requests keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_tokens_are_refreshed() {
    let server = TestServer::start_with(StoreKind::Sqlite, |c| c.auth.access_token_ttl = Duration::from_secs(10))
        .await
        .expect("server");
    let url = server.url(Transport::WebSocket);
    let alice = User::new(&url);
    let bob = User::new(&url);
    tokio::task::spawn_blocking(move || {
        alice.ok(&["register", "alice"]);
        bob.ok(&["register", "bob"]);
        let conv = bob.json(&["create-dm", "alice", "--json"])[0]["conversation_id"].as_u64().expect("id").to_string();
        let creds = alice.data().join("confab/profiles/default/credentials.toml");
        let before = std::fs::read_to_string(&creds).expect("creds");
        let bob_creds = bob.data().join("confab/profiles/default/credentials.toml");
        let bob_before = std::fs::read_to_string(&bob_creds).expect("creds");
        let tail = Tail::start(&bob, &["tail", "--json", "--mark-read"]);
        let started = Instant::now();
        tail.wait_for(Duration::from_secs(20), |v| v["type"] == "connection" && v["state"] == "online");

        std::thread::sleep(Duration::from_secs(7));
        // Three processes at once with a token about to expire: one refreshes, the others
        // take the stored result (the session would be revoked on a reused refresh token).
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let mut c = alice.command();
                c.args(["whoami", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped());
                c.spawn().expect("spawn")
            })
            .collect();
        for h in handles {
            let out = h.wait_with_output().expect("wait");
            assert!(out.status.success(), "whoami failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let after = std::fs::read_to_string(&creds).expect("creds");
        assert_ne!(before, after, "the token file was rewritten");
        assert_eq!(mode(&creds), 0o600);

        // Past the first token's life, bob's tail still marks read.
        std::thread::sleep(Duration::from_secs(12).saturating_sub(started.elapsed()));
        let sent = alice.json(&["send", &conv, "after", "expiry", "--json"]);
        let id = sent[0]["message_id"].as_u64().expect("id");
        let (got, _) = tail.wait_for(Duration::from_secs(10), |v| v["type"] == "message");
        assert_eq!(got["message"]["text"], "after expiry");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = alice.json(&["receipts", &conv, &id.to_string(), "--json"]);
            if r[0]["state"] == "read" {
                break;
            }
            assert!(Instant::now() < deadline, "not read: {r:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        // Nothing but the tail ran as bob: it refreshed on its live connection and stored the tokens.
        assert_ne!(bob_before, std::fs::read_to_string(&bob_creds).expect("creds"), "the tail refreshed");
    })
    .await
    .expect("test body");
    server.stop().await.expect("stop");
}

/// `send --file` with two files (several chunks over WebSocket), then an image alone; `history
/// --json` and `tail --json` show the attachments; `download` over QUIC brings each back byte for
/// byte (by its own name, into a directory, to stdout), refuses to overwrite without `--force`,
/// and fetches a thumbnail; `avatar` sets the avatar GetMe reports, and clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_are_sent_downloaded_and_set_as_avatar() {
    let server = TestServer::start_with(StoreKind::Sqlite, |c| c.media.chunk_bytes = 64 * 1024).await.expect("server");
    let alice = User::new(&server.url(Transport::WebSocket));
    let mut bob = User::new(&server.url(Transport::Quic));
    bob.cert = Some(bob.file("server-cert.der", &server.cert));
    tokio::task::spawn_blocking(move || {
        alice.ok(&["register", "alice"]);
        bob.ok(&["register", "bob"]);
        alice.ok(&["create-dm", "bob"]);
        let tail = Tail::start(&bob, &["tail", "--json"]);
        tail.wait_for(Duration::from_secs(20), |v| v["type"] == "connection" && v["state"] == "online");

        let data = confab_conformance::media::random_bytes(300_001);
        let notes = b"meeting notes\nline two\n".to_vec();
        let photo = confab_conformance::media::png(640, 400);
        alice.file("data.bin", &data);
        alice.file("notes.txt", &notes);
        alice.file("photo.png", &photo);
        // Eleven files are refused before anything goes up.
        let many: Vec<&str> = (0..11).flat_map(|_| ["--file", "notes.txt"]).collect();
        let err = alice.fails(&[&["send", "@bob"][..], &many].concat());
        assert!(err.contains("at most 10 files"), "{err}");

        let sent = alice.json(&["send", "@bob", "--file", "data.bin", "-f", "notes.txt", "two", "files", "--json"]);
        assert_eq!(sent[0]["media_ids"].as_array().map(Vec::len), Some(2), "{sent:?}");
        let (got, _) = tail.wait_for(Duration::from_secs(10), |v| v["type"] == "message");
        assert_eq!(got["message"]["attachments"][1]["file_name"], "notes.txt");
        // Files without text.
        let out = alice.ok(&["send", "@bob", "--file", "photo.png"]);
        assert!(out.starts_with("sent #") && out.contains("with 1 file"), "{out}");

        let history = bob.json(&["history", "@alice", "--json"]);
        assert_eq!(history.len(), 2, "{history:#?}");
        assert_eq!(history[0]["text"], "two files");
        let a = &history[0]["attachments"];
        assert_eq!((a[0]["file_name"].as_str(), a[0]["size"].as_u64()), (Some("data.bin"), Some(300_001)));
        assert_eq!(a[0]["mime_type"], "application/octet-stream");
        assert_eq!((a[1]["file_name"].as_str(), a[1]["mime_type"].as_str()), (Some("notes.txt"), Some("text/plain")));
        assert_eq!(a[1]["size"].as_u64(), Some(notes.len() as u64));
        assert_eq!(history[1]["text"], "");
        let p = &history[1]["attachments"][0];
        assert_eq!(
            (p["mime_type"].as_str(), p["width"].as_u64(), p["height"].as_u64()),
            (Some("image/png"), Some(640), Some(400))
        );
        let thumbs: Vec<&str> =
            p["thumbnails"].as_array().expect("thumbnails").iter().filter_map(|t| t.as_str()).collect();
        assert!(thumbs.contains(&"scale320") && thumbs.contains(&"crop96"), "{thumbs:?}");
        let text = bob.ok(&["history", "@alice"]);
        assert!(text.contains("📎 notes.txt (text/plain, 23 B)"), "{text}");
        assert!(text.contains("📎 data.bin (application/octet-stream, 292.97 KiB)"), "{text}");

        // Back byte for byte over QUIC: by the file's own name in the working directory, then
        // into a directory; the same name again is refused unless --force.
        let (data_id, notes_id) = (a[0]["media_id"].as_str().expect("id"), a[1]["media_id"].as_str().expect("id"));
        let out = bob.ok(&["download", data_id]);
        assert!(out.starts_with("saved data.bin (application/octet-stream"), "{out}");
        assert_eq!(std::fs::read(bob.home.path().join("data.bin")).expect("read"), data);
        std::fs::create_dir(bob.home.path().join("inbox")).expect("mkdir");
        let saved = bob.json(&["download", notes_id, "-o", "inbox", "--json"]);
        assert_eq!(saved[0]["path"], "inbox/notes.txt");
        assert_eq!(std::fs::read(bob.home.path().join("inbox/notes.txt")).expect("read"), notes);
        let err = bob.fails(&["download", data_id]);
        assert!(err.contains("data.bin exists") && err.contains("--force"), "{err}");
        bob.ok(&["download", data_id, "--force"]);
        assert_eq!(std::fs::read(bob.home.path().join("data.bin")).expect("read"), data);
        let stdout = bob.run(&["download", notes_id, "-o", "-"]);
        assert!(stdout.status.success());
        assert_eq!(stdout.stdout, notes, "to standard output");
        // No temporary file is left behind.
        let left: Vec<String> = std::fs::read_dir(bob.home.path())
            .expect("ls")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(".confab-download"))
            .collect();
        assert!(left.is_empty(), "{left:?}");

        // A thumbnail, under a name that says which.
        let photo_id = p["media_id"].as_str().expect("id");
        let t = bob.json(&["download", photo_id, "--thumbnail", "scale320", "--json"]);
        let path = t[0]["path"].as_str().expect("path");
        assert!(path.starts_with("photo.scale320."), "{path}");
        let img = image::load_from_memory(&std::fs::read(bob.home.path().join(path)).expect("read")).expect("decodes");
        assert_eq!((img.width(), img.height()), (320, 200));
        let err = bob.fails(&["download", photo_id, "--thumbnail", "huge"]);
        assert!(err.contains("no thumbnail \"huge\""), "{err}");
        let err = bob.fails(&["download", "m00000000000000000000000000000000"]);
        assert!(err.contains("NOT_FOUND"), "{err}");

        // The avatar: set from an image (over QUIC), as GetMe reports it; a text file is refused;
        // --clear removes it.
        bob.file("me.png", &confab_conformance::media::png(200, 200));
        let set = bob.json(&["avatar", "me.png", "--json"]);
        let avatar = set[0]["avatar_ref"].as_str().expect("avatar_ref").to_string();
        assert!(avatar.starts_with('m') && avatar.len() == 33, "{avatar}");
        let me = bob.json(&["whoami", "--json"]);
        assert_eq!(me[0]["avatar_ref"].as_str(), Some(avatar.as_str()));
        let err = alice.fails(&["avatar", "notes.txt"]);
        assert!(err.contains("uploading notes.txt"), "{err}");
        assert_eq!(bob.ok(&["avatar", "--clear"]).trim(), "avatar removed");
        let me = bob.json(&["whoami", "--json"]);
        assert_eq!(me[0]["avatar_ref"], "");
    })
    .await
    .expect("test body");
    server.stop().await.expect("stop");
}
