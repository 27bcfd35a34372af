//! Snapshot tests of the main screens, drawn on ratatui's TestBackend from a model fed with the
//! same updates the network actor produces. Expected screens are in `tests/snapshots/`; run with
//! `UPDATE_SNAPSHOTS=1` to rewrite them after an intended change, and review the diff.

#[allow(dead_code)]
mod common;

use std::time::Duration;

use common::*;
use confab_cli::net::{ConnState, Tag, Update};
use confab_cli::ui::app::{App, Effect, Focus};
use confab_cli::ui::keymap::Keymap;
use confab_protocol::v1::{self, ConversationKind, conversation_event::Body, response::Result as R};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use unicode_width::UnicodeWidthStr;

#[test]
fn conversation_list() {
    let (s, _) = draw(&app(), 100, 14);
    check("list", &s);
}

#[test]
fn message_view_with_receipts_replies_and_typing() {
    let mut app = dm_open();
    app.on_key(KeyEvent::new(KeyCode::Char('i'), KeyModifiers::NONE));
    for c in "on my way".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    let (s, t) = draw(&app, 100, 30);
    check("dm", &s);
    // Read ticks are cyan, delivered ones are not: find the ticks on the rows of m2 and m5.
    let buf = t.backend().buffer();
    let tick_color = |needle: &str| {
        let row = s.lines().position(|l| l.contains(needle)).expect("row");
        let line = s.lines().nth(row).expect("line");
        let col = UnicodeWidthStr::width(&line[..line.find('✓').expect("tick")]) as u16;
        buf[(col, row as u16)].fg
    };
    assert_eq!(tick_color("all green"), Color::Cyan, "m2 is read");
    assert_ne!(tick_color("in the pane"), Color::Cyan, "m5 is only delivered");
}

#[test]
fn help_overlay() {
    let mut app = app();
    key(&mut app, KeyCode::Char('?'));
    let (s, _) = draw(&app, 100, 54);
    check("help", &s);
}

#[test]
fn login_screen() {
    let app = App::new("default", "ws://127.0.0.1:7600/v1/ws", Keymap::default(), false);
    let (s, _) = draw(&app, 80, 16);
    check("login", &s);
}

#[test]
fn offline_filter_and_prompt() {
    let mut app = app();
    app.on_update(Update::Connection(ConnState::Offline {
        reason: "connection lost".into(),
        retry_in: Duration::from_secs(4),
    }));
    key(&mut app, KeyCode::Char('/'));
    for c in "re".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    let (s, _) = draw(&app, 100, 12);
    check("offline_filter", &s);
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.open, Some(11), "Enter opens the first match");
    key(&mut app, KeyCode::Char('n'));
    for c in "carol".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    let (s, _) = draw(&app, 100, 12);
    check("prompt", &s);
}

#[test]
fn live_updates_move_counts_and_notify() {
    let mut app = app();
    // A message from bob in the DM, not open: unread 1 → 2, a bell, the DM first in the list,
    // and bob no longer shown typing.
    let typing = v1::TypingChanged { conversation_id: 10, user_id: BOB, typing: true, expires_in_ms: 5000 };
    app.on_update(Update::Typing(typing));
    assert!(app.store.convs[&10].typing.contains_key(&BOB));
    app.on_update(entry(
        10,
        8,
        BOB,
        T0 + 30 * HOUR,
        Body::MessagePosted(message(10, 8, 108, BOB, "ping", T0 + 30 * HOUR)),
    ));
    assert_eq!(app.store.convs[&10].unread, 2);
    assert!(app.store.convs[&10].typing.is_empty());
    assert!(app.effects.contains(&Effect::Bell));
    assert_eq!(app.visible()[0], 10);
    app.effects.clear();
    // A mention in the group counts apart; a plain group message rings nothing.
    let mut m = message(11, 21, 121, CAROL, "@alice ping", T0 + 31 * HOUR);
    m.mention_user_ids = vec![ME];
    app.on_update(entry(11, 21, CAROL, T0 + 31 * HOUR, Body::MessagePosted(m)));
    assert_eq!((app.store.convs[&11].unread, app.store.convs[&11].mentions), (5, 2));
    assert!(app.effects.contains(&Effect::Bell));
    app.effects.clear();
    app.on_update(entry(
        11,
        22,
        CAROL,
        T0 + 31 * HOUR,
        Body::MessagePosted(message(11, 22, 122, CAROL, "thanks", T0 + 31 * HOUR)),
    ));
    assert!(!app.effects.contains(&Effect::Bell));
    // Muted: no bell even for a DM.
    app.muted.insert(10);
    app.on_update(entry(
        10,
        9,
        BOB,
        T0 + 32 * HOUR,
        Body::MessagePosted(message(10, 9, 109, BOB, "pong", T0 + 32 * HOUR)),
    ));
    assert!(!app.effects.contains(&Effect::Bell));
    // A fresh copy of the conversation as of seq 8 does not count seq 9 twice.
    let mut c =
        conversation(10, ConversationKind::Direct, "", BOB, 8, 2, message(10, 8, 108, BOB, "ping", T0 + 30 * HOUR));
    c.my_read_seq = 6;
    app.on_update(Update::Reply { tag: Tag::Refresh, result: Ok(R::GetConversation(c)) });
    assert_eq!(app.store.convs[&10].unread, 3);
    // Opening marks it read and tells the server.
    app.effects.clear();
    app.open_conversation(10);
    assert_eq!(app.store.convs[&10].unread, 0);
    assert!(app.effects.iter().any(|e| matches!(e, Effect::Net(c) if format!("{c:?}").contains("MarkRead"))));
    assert_eq!(app.focus, Focus::Messages);
    // Another device of ours read the group: its counts go away.
    app.on_update(Update::UserEntry(v1::UserUpdate {
        user_seq: 1,
        at_ms: 0,
        body: Some(v1::user_update::Body::ReadMarker(v1::ReadMarker { conversation_id: 11, seq: 22 })),
    }));
    assert_eq!((app.store.convs[&11].unread, app.store.convs[&11].mentions), (0, 0));
}

#[test]
fn sending_shows_pending_then_the_stored_message_once() {
    let mut app = dm_open();
    key(&mut app, KeyCode::Char('i'));
    for c in "new message".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    key(&mut app, KeyCode::Enter);
    let send = app.effects.iter().find_map(|e| match e {
        Effect::Net(confab_cli::net::Command::Send(o)) => Some(o.clone()),
        _ => None,
    });
    let o = send.expect("a send");
    assert_eq!(o.text, "new message");
    assert_eq!(app.store.convs[&10].pending.len(), 1);
    let (s, _) = draw(&app, 100, 30);
    assert!(s.contains("alice: new message …"), "pending shown:\n{s}");
    // The entry arrives before the server's answer; then the answer: shown once.
    app.on_update(entry(
        10,
        8,
        ME,
        T0 + 30 * HOUR,
        Body::MessagePosted(message(10, 8, 108, ME, "new message", T0 + 30 * HOUR)),
    ));
    app.on_update(Update::Sent {
        conversation_id: 10,
        client_msg_id: o.client_msg_id.clone(),
        result: v1::SendMessageResult { message_id: 108, seq: 8, ..Default::default() },
    });
    let (s, _) = draw(&app, 100, 30);
    // Once in the message view (the list preview aside), and no longer pending.
    assert_eq!(s.matches(":00 alice: new message").count(), 1, "{s}");
    assert!(!s.contains("new message …"), "{s}");
    assert!(app.store.convs[&10].pending.is_empty());
}

#[test]
fn editing_and_keys_remapped_from_config() {
    let mut keys = std::collections::BTreeMap::new();
    keys.insert("down".to_string(), vec!["Ctrl-n".to_string()]);
    let mut app = dm_open();
    app.keymap = Keymap::new(&keys).expect("keys");
    app.focus = Focus::List;
    app.on_key(KeyEvent::new(KeyCode::Char('n'), KeyModifiers::CONTROL));
    assert_eq!(app.list_index(), 1);
    // `e` in the message view edits our latest message.
    app.focus = Focus::Messages;
    key(&mut app, KeyCode::Char('e'));
    assert_eq!(app.focus, Focus::Composer);
    assert!(app.composer.text().starts_with("I will write the notes"));
}

#[test]
fn members_popup_lists_and_removes() {
    let mut app = app();
    app.open_conversation(11);
    app.effects.clear();
    key(&mut app, KeyCode::Char('m'));
    let tag = app
        .effects
        .iter()
        .find_map(|e| match e {
            Effect::Net(confab_cli::net::Command::Request {
                tag,
                request: v1::client_frame::Request::ListMembers(_),
            }) => Some(*tag),
            _ => None,
        })
        .expect("ListMembers asked");
    let members = vec![
        v1::Member { user_id: ME, role: v1::MemberRole::Owner as i32, joined_at_ms: 0 },
        v1::Member { user_id: BOB, role: v1::MemberRole::Member as i32, joined_at_ms: 0 },
        v1::Member { user_id: CAROL, role: v1::MemberRole::Member as i32, joined_at_ms: 0 },
    ];
    app.on_update(Update::Reply {
        tag,
        result: Ok(R::ListMembers(v1::ListMembersResult { members, has_more: false })),
    });
    let (s, _) = draw(&app, 100, 14);
    check("members", &s);
    app.effects.clear();
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Char('x'));
    assert!(app.effects.iter().any(|e| matches!(e,
        Effect::Net(confab_cli::net::Command::Request { request: v1::client_frame::Request::RemoveMember(r), .. })
            if r.user_id == BOB && r.conversation_id == 11)));
}

#[test]
fn searching_loaded_messages() {
    let mut app = dm_open();
    app.focus = Focus::Messages;
    key(&mut app, KeyCode::Char('/'));
    for c in "DEPLOY".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.selected, Some(2), "the newest message containing 'deploy'");
    let (s, _) = draw(&app, 100, 30);
    assert!(s.contains("morning! did the deploy go out?"));
    // The same search again looks further up: nothing older is left.
    key(&mut app, KeyCode::Char('/'));
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.selected, Some(2));
    assert_eq!(app.status.as_ref().map(|(s, _)| s.as_str()), Some("no match"));
}

/// `M` mutes the open conversation here and for the account's push notifications (§24.3), and
/// unmutes both.
#[test]
fn mute_key_mutes_push_notifications_too() {
    use confab_cli::net::Command;
    use confab_protocol::v1::client_frame::Request;
    let mut app = dm_open();
    let conv = app.open.expect("a conversation is open");
    let push_level = |app: &App| {
        app.effects.iter().find_map(|e| match e {
            Effect::Net(Command::Request { request: Request::SetConversationPushSettings(r), .. }) => {
                assert_eq!(r.conversation_id, conv);
                Some(r.level)
            }
            _ => None,
        })
    };
    app.effects.clear();
    key(&mut app, KeyCode::Char('M'));
    assert!(app.effects.contains(&Effect::SaveState));
    assert_eq!(push_level(&app), Some(v1::PushLevel::None as i32));
    app.effects.clear();
    key(&mut app, KeyCode::Char('M'));
    assert_eq!(push_level(&app), Some(v1::PushLevel::Unspecified as i32));
}
