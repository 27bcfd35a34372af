//! `confab admin …`, `report`, `reports`, `resolve` and `security` end to end against a real
//! server on both stores (docs/protocol.md §26-§28): an administrator (made as the server's
//! command line does) lists accounts, suspends one (its tokens die, its sign-in is refused as
//! suspended) and reactivates it, changes limits, reads the figures and the audit log; anyone
//! else is told "not found" with the hint; a member reports a message, the group's owner lists and
//! resolves the report; an account lists its own sign-ins.

#[allow(dead_code)]
mod cli_user;

use cli_user::User;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_server::store::{AuditAction, NewAudit, UserId};
use serde_json::Value;

/// Makes `user` a server administrator as `confab-server admin grant` does.
async fn grant(server: &TestServer, user: u64) {
    let entry = NewAudit {
        target_user: Some(UserId(user as i64)),
        client_addr: "cli".into(),
        ..NewAudit::new(AuditAction::AdminGranted, confab_protocol::frames::now_ms() as i64)
    };
    assert!(server.store().set_server_admin(UserId(user as i64), true, &entry).await.expect("grant"));
}

/// Registers `name` through the binary; its user id.
fn register(u: &User, name: &str) -> u64 {
    let r = u.json(&["register", name, "--json"]);
    r[0]["user_id"].as_u64().expect("user id")
}

/// The one JSON document a command prints.
fn one(u: &User, args: &[&str]) -> Value {
    let mut v = u.json(args);
    assert_eq!(v.len(), 1, "one JSON document from {args:?}: {v:?}");
    v.remove(0)
}

async fn administration(kind: StoreKind) {
    let server = TestServer::start(kind).await.expect("server");
    let url = server.url(Transport::WebSocket);
    let (root, alice, mallory) = (User::new(&url), User::new(&url), User::new(&url));
    let (root, alice, mallory, root_id, mallory_id) = tokio::task::spawn_blocking(move || {
        let root_id = register(&root, "root");
        register(&alice, "alice");
        let mallory_id = register(&mallory, "mallory");
        (root, alice, mallory, root_id, mallory_id)
    })
    .await
    .expect("cli");
    grant(&server, root_id).await;

    tokio::task::spawn_blocking(move || {
        // The accounts, with their figures.
        let list = one(&root, &["admin", "users", "--json"]);
        let names: Vec<&str> =
            list["users"].as_array().expect("users").iter().filter_map(|u| u["username"].as_str()).collect();
        assert_eq!(names, ["root", "alice", "mallory"], "{list}");
        assert_eq!(list["has_more"], false);
        assert_eq!(list["users"][0]["server_admin"], true);
        assert!(list["users"][0]["created_at_ms"].as_u64().expect("ms") > 0);
        assert!(list["users"][0]["created_at"].as_str().expect("RFC 3339").ends_with('Z'));
        let page = one(&root, &["admin", "users", "--limit", "1", "--after", &root_id.to_string(), "--json"]);
        assert_eq!(page["users"][0]["username"], "alice", "{page}");
        assert_eq!(page["has_more"], true);
        let text = root.ok(&["admin", "users", "mal"]);
        assert!(text.starts_with("ID ") && text.contains("mallory") && !text.contains("alice"), "{text}");

        // Suspended: its session ends and its sign-in is refused as suspended.
        let s = one(&root, &["admin", "suspend", "mallory", "--reason", "spam wave", "--json"]);
        assert_eq!(s["user_id"], mallory_id);
        assert!(s["sessions_revoked"].as_u64().expect("count") >= 1, "{s}");
        let u = one(&root, &["admin", "user", &format!("#{mallory_id}"), "--json"]);
        assert_eq!(u["suspended"], true, "{u}");
        assert!(u["suspended_at_ms"].as_u64().expect("ms") > 0);
        let err = mallory.fails(&["whoami"]);
        assert!(err.contains("session ended"), "{err}");
        let err = mallory.fails(&["login", "mallory"]);
        assert!(err.contains("suspended"), "{err}");
        let r = one(&root, &["admin", "reactivate", "mallory", "--json"]);
        assert_eq!(r["reactivated"], true);
        assert!(root.ok(&["admin", "reactivate", "mallory"]).contains("was not suspended"));
        mallory.ok(&["login", "mallory"]);
        assert!(mallory.ok(&["whoami"]).starts_with("mallory"));

        // Limits: one changed, the others stay the server's; shown without flags.
        let l = one(&root, &["admin", "limits", "alice", "--messages-per-minute", "30", "--json"]);
        assert_eq!(l["limits"]["messages_per_minute"], 30, "{l}");
        assert_eq!(l["limits"]["media_quota_bytes"], Value::Null);
        let l = one(&root, &["admin", "limits", "alice", "--media-quota", "2MiB", "--json"]);
        assert_eq!(l["limits"]["media_quota_bytes"], 2 << 20, "{l}");
        assert_eq!(l["limits"]["messages_per_minute"], 30, "an unnamed limit stays: {l}");
        let text = root.ok(&["admin", "limits", "alice"]);
        assert!(text.contains("2.00 MiB") && text.contains("server default"), "{text}");

        // The figures and the audit log.
        let st = one(&root, &["admin", "stats", "--json"]);
        assert!(st["users"].as_u64().expect("users") >= 3, "{st}");
        for k in ["connections", "online_users", "messages", "store_bytes", "media_bytes", "audit_entries"] {
            assert!(st[k].is_u64(), "{k} is a number: {st}");
        }
        assert!(st["messages_per_day"].is_array(), "{st}");
        let log = one(&root, &["admin", "audit", "--json", "--action", "account_suspended", "--since", "1h"]);
        let entries = log["entries"].as_array().expect("entries");
        assert_eq!(entries.len(), 1, "{log}");
        assert_eq!(entries[0]["action"], "account_suspended");
        assert_eq!(entries[0]["actor_id"], root_id);
        assert_eq!(entries[0]["target_user_id"], mallory_id);
        assert!(entries[0]["after"].to_string().contains("spam wave"), "{log}");
        assert!(log["head_seq"].as_u64().expect("head") >= entries[0]["seq"].as_u64().expect("seq"));
        let text = root.ok(&["admin", "audit", "--target", "mallory", "--action", "account_reactivated"]);
        assert!(text.contains("account_reactivated") && text.contains("root") && text.contains("mallory"), "{text}");
        let out = root.run(&["admin", "audit", "--action", "nope"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("sign_in_failed"), "names the actions: {err}");

        // Destructive requests ask; without a terminal they need --yes.
        let err = root.fails(&["admin", "delete", "mallory"]);
        assert!(err.contains("--yes"), "{err}");
        assert!(mallory.ok(&["whoami"]).starts_with("mallory"), "nothing was deleted");

        // Anyone else: "not found", with the hint.
        for args in [&["admin", "stats"][..], &["admin", "suspend", "mallory"], &["admin", "users", "--json"]] {
            let err = alice.fails(args);
            assert!(err.contains("not found (or you are not a server administrator)"), "{args:?}: {err}");
        }
        assert!(mallory.ok(&["whoami"]).starts_with("mallory"), "nothing happened");

        // Own security events: the registration and a failed sign-in, newest first.
        let stranger = User::new(&root.server);
        let mut c = stranger.command();
        c.env("CONFAB_PASSWORD", "not the password").args(["login", "alice"]).stdin(std::process::Stdio::null());
        let out = c.output().expect("run");
        assert!(!out.status.success());
        let sec = one(&alice, &["security", "--json"]);
        let events = sec["events"].as_array().expect("events");
        let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
        assert_eq!(actions, ["sign_in_failed", "sign_in"], "{sec}");
        let device = events[1]["device"].as_str().unwrap_or_default();
        assert!(device.starts_with("confab-cli") && events[1]["current"] == true, "the live session's device: {sec}");
        assert_eq!(events[1]["client_addr"], "127.0.0.1");
        assert!(events[0]["at"].as_str().expect("time").ends_with('Z'));
        let text = alice.ok(&["security"]);
        assert!(text.contains("sign_in_failed") && text.contains("127.0.0.1"), "{text}");
    })
    .await
    .expect("cli");
    server.stop().await.expect("stop");
}

async fn reports(kind: StoreKind) {
    let server = TestServer::start(kind).await.expect("server");
    let url = server.url(Transport::WebSocket);
    let (owner, bob, carol) = (User::new(&url), User::new(&url), User::new(&url));
    tokio::task::spawn_blocking(move || {
        register(&owner, "owner");
        let bob_id = register(&bob, "bob");
        let carol_id = register(&carol, "carol");
        let conv = one(&owner, &["create-group", "crew", "bob", "carol", "--json"]);
        let conv = conv["conversation_id"].as_u64().expect("conversation").to_string();
        let sent = one(&carol, &["send", &conv, "cheap pills here", "--json"]);
        let msg_id = sent["message_id"].as_u64().expect("message");
        let msg = msg_id.to_string();
        let first = one(&carol, &["send", &conv, "and more", "--json"])["message_id"].as_u64().expect("message");

        // A member reports; reporting again answers the same report.
        let r = one(&bob, &["report", "crew", &msg, "--reason", "spam", "looks", "like", "spam", "--json"]);
        let report = r["report_id"].as_u64().expect("report id");
        let again = one(&bob, &["report", &conv, &msg, "--reason", "spam", "--json"]);
        assert_eq!(again["report_id"], report);
        let out = bob.run(&["report", &conv, &msg, "--reason", "rude"]);
        assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("possible values"));

        // The owner (a moderator of the group) sees it open, and resolves it.
        let open = one(&owner, &["reports", "--json"]);
        let list = open["reports"].as_array().expect("reports");
        assert_eq!(list.len(), 1, "{open}");
        assert_eq!(list[0]["report_id"], report);
        assert_eq!(list[0]["reporter_id"], bob_id);
        assert_eq!(list[0]["reporter"], "bob");
        assert_eq!(list[0]["sender_id"], carol_id);
        assert_eq!(list[0]["reason"], "spam");
        assert_eq!(list[0]["note"], "looks like spam");
        assert_eq!(list[0]["state"], "open");
        let text = owner.ok(&["reports", "--conversation", "crew"]);
        assert!(text.contains("crew") && text.contains("carol") && text.contains("looks like spam"), "{text}");
        let done = one(&owner, &["resolve", &report.to_string(), "delete-message", "removed, thanks", "--json"]);
        assert_eq!(done["state"], "resolved", "{done}");
        assert_eq!(done["action"], "delete_message");
        assert_eq!(done["resolution_note"], "removed, thanks");
        assert!(owner.ok(&["reports"]).contains("no open reports"));
        let closed = one(&owner, &["reports", "--resolved", "--json"]);
        assert_eq!(closed["reports"][0]["report_id"], report, "{closed}");
        let history = carol.json(&["history", &conv, "--json"]);
        let m = history.iter().find(|m| m["message_id"] == msg_id).expect("the message");
        assert_eq!(m["deleted"], true, "{m}");
        // Resolving twice is refused in one line; a member who does not moderate learns nothing.
        owner.fails(&["resolve", &report.to_string(), "dismiss"]);
        let again = one(&bob, &["report", &conv, &first.to_string(), "--reason", "other", "--json"]);
        let err = bob.fails(&["resolve", &again["report_id"].to_string(), "dismiss"]);
        assert!(err.contains("no such report (or you are not a moderator"), "{err}");
    })
    .await
    .expect("cli");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn administration_through_the_binary_sqlite() {
    administration(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn administration_through_the_binary_postgres() {
    administration(StoreKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_round_trip_through_the_binary_sqlite() {
    reports(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_round_trip_through_the_binary_postgres() {
    reports(StoreKind::Postgres).await;
}
