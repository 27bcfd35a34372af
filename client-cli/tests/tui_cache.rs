//! The local cache (`cache.bin` in the profile): an account saved from the TUI's store starts the
//! next run showing its conversations and the messages it had loaded while still connecting,
//! until the server's snapshot replaces them; a damaged or other-version file is ignored, one
//! account's cache is never shown to (or overwritten for) another, and the file is private.

#[allow(dead_code)]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use confab_cli::cache::{self, Cache};
use confab_cli::config::Settings;
use confab_cli::net::{Command, ConnState, Snapshot, Update};
use confab_cli::ui::app::{App, Effect, Reopen};
use confab_cli::ui::{cached, new_app};
use confab_protocol::v1::{self, ConversationKind};

/// Alice's profile with the cache of `dm_open()` saved in it.
fn saved(dir: &Path) -> Settings {
    let s = settings(dir);
    sign_in_as(&s, ME, "alice");
    assert!(cached::save(&s, &dm_open()).expect("save"), "the store holds the signed-in account");
    s
}

fn history_requests(app: &App) -> usize {
    app.effects.iter().filter(|e| matches!(e, Effect::Net(Command::History { .. }))).count()
}

/// The lines of a drawn screen holding `text`, right-trimmed.
fn lines_with<'a>(screen: &'a str, text: &str) -> Vec<&'a str> {
    screen.lines().filter(|l| l.contains(text)).collect()
}

#[test]
fn a_saved_account_shows_while_connecting_until_the_snapshot_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = saved(dir.path());
    let original = dm_open();
    let mut app = new_app(&s).expect("app");
    assert!(matches!(app.conn, ConnState::Connecting { .. }), "nothing came from the server");
    assert!(app.effects.is_empty(), "showing the cache asks the server nothing");
    // The list as it was: the same rows, previews and counts (presence waits for the server).
    app.now_ms = original.now_ms;
    let (screen, _) = draw(&app, 100, 30);
    let (was, _) = draw(&original, 100, 30);
    let list = |screen: &str| -> Vec<String> {
        screen.lines().skip(1).take(6).map(|l| l.split("││").next().unwrap().to_string()).collect()
    };
    let (now, before) = (list(&screen), list(&was));
    assert!(now[0].contains("@bob") && before[0].contains("@bob"), "{now:?}");
    assert_eq!(now[1..], before[1..], "\n{screen}\n{was}");
    assert!(now[2].contains("release crew            4 @1"), "{now:?}");
    // The DM opens on its cached messages without loading them.
    app.open_conversation(10);
    assert_eq!(history_requests(&app), 0);
    let (screen, _) = draw(&app, 100, 30);
    for text in [
        "09:00 bob: morning! did the deploy go out?",
        "👍 2",
        "10:00 alice: yes, at 8. all green",
        "10:01 bob: great (edited)",
        "10:03 bob: [deleted]",
        "↳ bob: morning! did the deploy go out?",
        "10:00 alice: I will write the notes tomorrow",
        "11:00 bob: see you tomorrow then",
    ] {
        assert_eq!(lines_with(&screen, text).len(), 1, "{text:?} in\n{screen}");
        assert!(was.contains(text), "{text:?} was shown before");
    }
    let c = &app.store.convs[&10];
    assert!(c.history_loaded && !c.has_older, "all six messages were cached: nothing older");
    assert!(c.messages[&4].edited && c.messages[&5].deleted && c.messages[&6].reply_to == 101);
    // The server's snapshot replaces it: the group is gone, the DM's history loads again.
    let snap = Snapshot {
        me: v1::Me { user_id: ME, username: "alice".into(), ..Default::default() },
        conversations: vec![conversation(
            10,
            ConversationKind::Direct,
            "",
            BOB,
            8,
            1,
            message(10, 8, 108, BOB, "back online", T0 + 27 * HOUR),
        )],
        users: vec![user(BOB, "bob", v1::PresenceState::Online)],
    };
    app.effects.clear();
    app.on_update(Update::Snapshot(Box::new(snap)));
    assert_eq!(app.store.ordered(), vec![10]);
    assert!(!app.store.convs[&10].messages.contains_key(&2), "the cached messages went with the cached list");
    assert_eq!(history_requests(&app), 1, "the open DM loads its history from the server");
}

#[test]
fn the_last_conversation_reopens_on_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let s = saved(dir.path());
    let mut app = App::new("work", SERVER, confab_cli::ui::keymap::Keymap::default(), true);
    app.reopen = Some(Reopen { conversation_id: 10, selected: Some(3) });
    assert!(cached::restore(&mut app, &s, ME));
    assert_eq!((app.open, app.selected), (Some(10), Some(3)));
    assert!(app.effects.is_empty());
    // The server's snapshot replaces the store: the view stays at that message, loaded again
    // around it (not the latest page, which may not hold it).
    let fresh = common::app();
    let snap = Snapshot {
        me: v1::Me { user_id: ME, username: "alice".into(), ..Default::default() },
        conversations: fresh
            .store
            .convs
            .keys()
            .map(|id| v1::Conversation { conversation_id: *id, ..Default::default() })
            .collect(),
        users: Vec::new(),
    };
    app.on_update(Update::Snapshot(Box::new(snap)));
    assert_eq!((app.open, app.selected), (Some(10), Some(3)));
    assert!(
        app.effects.iter().any(
            |e| matches!(e, Effect::Net(Command::History { conversation_id: 10, before_seq, .. }) if *before_seq > 3)
        ),
        "a page around the selected message is asked for: {:?}",
        app.effects
    );
    // A conversation the cache does not have is left for the server's snapshot.
    let mut app = App::new("work", SERVER, confab_cli::ui::keymap::Keymap::default(), true);
    let elsewhere = Reopen { conversation_id: 99, selected: None };
    app.reopen = Some(elsewhere);
    assert!(cached::restore(&mut app, &s, ME));
    assert_eq!((app.open, app.reopen), (None, Some(elsewhere)));
}

#[test]
fn a_damaged_or_other_version_cache_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let s = saved(dir.path());
    let path = cache::path(&s.profile_dir);
    let good = std::fs::read(&path).unwrap();
    assert_eq!(new_app(&s).unwrap().store.convs.len(), 3, "the file itself is readable");
    let mut other_version = good.clone();
    other_version[4] = cache::VERSION + 1;
    let damaged: Vec<u8> = good.iter().map(|b| b ^ 0x5a).collect();
    for bytes in [other_version, good[..good.len() / 2].to_vec(), damaged, b"garbage".to_vec(), Vec::new()] {
        std::fs::write(&path, &bytes).unwrap();
        let app = new_app(&s).expect("a bad cache is not an error");
        assert!(app.store.convs.is_empty() && app.store.me.user_id == 0, "nothing shown from {} bytes", bytes.len());
        assert!(Cache::load(&s.profile_dir, ME).is_none());
    }
    // The next save replaces it.
    assert!(cached::save(&s, &dm_open()).unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), good);
}

#[test]
fn one_accounts_cache_is_not_shown_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let s = saved(dir.path());
    // Bob signs in on the same profile: alice's conversations stay hidden.
    sign_in_as(&s, BOB, "bob");
    let app = new_app(&s).unwrap();
    assert!(app.store.convs.is_empty() && app.store.me.user_id == 0);
    // Alice's store (a TUI still running from before) does not overwrite it as bob's.
    let before = std::fs::read(cache::path(&s.profile_dir)).unwrap();
    assert!(!cached::save(&s, &dm_open()).unwrap());
    assert!(Cache::load(&s.profile_dir, BOB).is_none());
    assert_eq!(std::fs::read(cache::path(&s.profile_dir)).unwrap(), before);
    // Signed out: nothing is written either.
    s.creds().remove().unwrap();
    std::fs::remove_file(cache::path(&s.profile_dir)).unwrap();
    assert!(!cached::save(&s, &dm_open()).unwrap());
    assert!(!cache::path(&s.profile_dir).exists());
}

#[test]
fn the_cache_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    sign_in_as(&s, ME, "alice");
    // Even over a file someone made readable.
    let path = cache::path(&s.profile_dir);
    std::fs::write(&path, b"old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(cached::save(&s, &dm_open()).unwrap());
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(&s.profile_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".cache"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file left: {leftovers:?}");
}

#[tokio::test]
async fn quitting_writes_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    sign_in_as(&s, ME, "alice");
    let mut app = dm_open();
    let mut saver = cached::Saver::default();
    saver.finish(&s, &app).await;
    let path = cache::path(&s.profile_dir);
    assert_eq!(Cache::load(&s.profile_dir, ME).unwrap(), Cache::from_store(&app.store));
    // Unchanged: not written again.
    std::fs::remove_file(&path).unwrap();
    saver.finish(&s, &app).await;
    assert!(!path.exists());
    // A new message: written.
    app.on_update(entry(
        10,
        8,
        BOB,
        T0 + 27 * HOUR,
        v1::conversation_event::Body::MessagePosted(message(10, 8, 108, BOB, "one more", T0 + 27 * HOUR)),
    ));
    saver.finish(&s, &app).await;
    let back = Cache::load(&s.profile_dir, ME).unwrap();
    let dm = back.histories.iter().find(|h| h.conversation_id == 10).unwrap();
    assert_eq!(dm.messages.last().map(|m| m.text.as_str()), Some("one more"));
}
