//! The TUI as a daily driver (issue 21): each bug found trying it as a new user, and the keys
//! daily users expect (unread navigation, paging, `:` commands, completion, a second password
//! field), on the model fed with the network actor's updates and drawn on ratatui's TestBackend.

#[allow(dead_code)]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;
use confab_cli::net::{Command, ConnState, Tag, Update};
use confab_cli::ui::app::{App, Effect, Focus, Overlay, Screen};
use confab_cli::ui::keymap::Keymap;
use confab_cli::ui::{new_app, save_state};
use confab_protocol::v1::{self, client_frame::Request, conversation_event::Body, response::Result as R};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

fn typed(app: &mut App, s: &str) {
    for c in s.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn ctrl(app: &mut App, c: char) {
    app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL));
}

fn sends(app: &App) -> Vec<String> {
    app.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Net(Command::Send(o)) => Some(o.text.clone()),
            _ => None,
        })
        .collect()
}

/// The requests queued, with their tags.
fn requests(app: &App) -> Vec<(Tag, Request)> {
    app.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Net(Command::Request { tag, request }) => Some((*tag, request.clone())),
            _ => None,
        })
        .collect()
}

fn status(app: &App) -> String {
    app.status.as_ref().map(|(s, _)| s.clone()).unwrap_or_default()
}

#[test]
fn a_multi_line_paste_lands_in_the_composer_as_one_text() {
    let mut app = dm_open();
    app.effects.clear();
    // In normal mode with the DM open: the paste goes to the composer, nothing is sent.
    app.on_paste("line one\r\nline two\rline three");
    assert_eq!(app.focus, Focus::Composer);
    assert_eq!(app.composer.text(), "line one\nline two\nline three");
    assert!(sends(&app).is_empty(), "a paste sends nothing");
    let (s, _) = draw(&app, 100, 30);
    assert!(s.contains("│line one") && s.contains("│line three"), "all lines in the composer:\n{s}");
    // Enter sends it as one message.
    key(&mut app, KeyCode::Enter);
    assert_eq!(sends(&app), ["line one\nline two\nline three"]);
    // In a one-line prompt only the first line is taken.
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('n'));
    app.on_paste("bob\nrm -rf /");
    match &app.overlay {
        Overlay::Prompt { input, .. } => assert_eq!(input.text(), "bob"),
        other => panic!("prompt expected, got {other:?}"),
    }
}

#[test]
fn a_draft_stays_with_its_conversation() {
    let mut app = dm_open();
    key(&mut app, KeyCode::Char('i'));
    typed(&mut app, "draft for bob");
    key(&mut app, KeyCode::Esc);
    // Into the group: its composer is empty, and Enter there sends nothing.
    app.open_conversation(11);
    assert_eq!(app.composer.text(), "");
    key(&mut app, KeyCode::Char('i'));
    key(&mut app, KeyCode::Enter);
    assert!(sends(&app).is_empty(), "the DM's draft is not sent in the group");
    let (s, _) = draw(&app, 100, 30);
    assert!(!s.contains("draft for bob"), "the draft does not follow:\n{s}");
    typed(&mut app, "group note");
    key(&mut app, KeyCode::Esc);
    // Back in the DM: its draft is back.
    app.open_conversation(10);
    assert_eq!(app.composer.text(), "draft for bob");
    let drafts = app.saved_drafts();
    assert_eq!(drafts.get(&10).map(|d| d.text.as_str()), Some("draft for bob"));
    assert_eq!(drafts.get(&11).map(|d| d.text.as_str()), Some("group note"));
    assert!(app.effects.contains(&Effect::SaveState), "switching saves the drafts");
}

#[test]
fn drafts_and_the_open_conversation_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    sign_in_as(&s, ME, "alice");
    let mut app = dm_open();
    key(&mut app, KeyCode::Char('i'));
    typed(&mut app, "half a thought");
    key(&mut app, KeyCode::Esc);
    // Scrolled up to alice's reply (seq 3).
    app.selected = Some(3);
    save_state(&s, &app).expect("save");
    // The next start: the conversations arrive, and the DM reopens with its draft.
    let mut next = new_app(&s).expect("app");
    next.screen = Screen::Main;
    let fresh = app_from(next);
    assert_eq!(fresh.open, Some(10), "the last conversation reopens");
    assert_eq!(fresh.selected, Some(3), "at the message that was selected");
    assert_eq!(fresh.composer.text(), "half a thought");
    // The file holds message text: private to the user.
    let mode = std::fs::metadata(s.profile_dir.join("tui-state.toml")).expect("state").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Another account signed in on the profile gets none of it.
    sign_in_as(&s, 42, "mallory");
    let other = new_app(&s).expect("app");
    assert!(other.drafts.is_empty() && other.reopen.is_none(), "{:?} {:?}", other.drafts, other.reopen);
}

/// `app`, fed the fixture's snapshot as `common::app()` is.
fn app_from(mut app: App) -> App {
    let template = common::app();
    app.now_ms = template.now_ms;
    app.on_update(Update::Connection(ConnState::Online));
    let convs: Vec<v1::Conversation> = template.store.convs.keys().map(|id| fixture_conversation(*id)).collect();
    let snap = confab_cli::net::Snapshot {
        me: v1::Me { user_id: ME, username: "alice".into(), ..Default::default() },
        conversations: convs,
        users: vec![user(BOB, "bob", v1::PresenceState::Online)],
    };
    app.on_update(Update::Snapshot(Box::new(snap)));
    app
}

fn fixture_conversation(id: u64) -> v1::Conversation {
    let kind = match id {
        10 => v1::ConversationKind::Direct,
        11 => v1::ConversationKind::Group,
        _ => v1::ConversationKind::Channel,
    };
    conversation(id, kind, "", if id == 10 { BOB } else { 0 }, 5, 0, message(id, 5, id * 10, BOB, "hi", T0))
}

#[test]
fn the_composer_wraps_and_scrolls_with_the_cursor() {
    let mut app = dm_open();
    key(&mut app, KeyCode::Char('i'));
    let long = "word ".repeat(60) + "THE-END";
    typed(&mut app, &long);
    let (s, t) = draw(&app, 80, 30);
    // The text wraps inside the box and its end is on screen, the cursor right after it.
    let row = s.lines().position(|l| l.contains("THE-END")).expect("the end of the text shows");
    let line = s.lines().nth(row).unwrap();
    assert!(line.trim_end().ends_with("THE-END") || line.contains("THE-END "), "{line}");
    let mut t = t;
    let cursor = t.get_cursor_position().expect("cursor");
    assert_eq!(usize::from(cursor.y), row, "the cursor is on the text's last row");
    assert!(cursor.x < 80, "the cursor is inside the screen");
    // The box grew to show several rows (at most 6 of text).
    let boxed = s.lines().filter(|l| l.contains("word word")).count();
    assert!(boxed >= 4, "the composer shows several wrapped rows:\n{s}");
}

#[test]
fn a_group_name_with_a_space_is_quoted() {
    let mut app = app();
    app.effects.clear();
    key(&mut app, KeyCode::Char('c'));
    typed(&mut app, "\"release crew\" bob");
    key(&mut app, KeyCode::Enter);
    let reqs = requests(&app);
    let (tag, query) = match reqs.as_slice() {
        [(tag, Request::SearchUsers(q))] => (*tag, q.query.clone()),
        other => panic!("one user lookup expected, got {other:?}"),
    };
    assert_eq!(query, "bob");
    app.effects.clear();
    let found = v1::SearchUsersResult {
        users: vec![user(BOB, "bob", v1::PresenceState::Online)],
        next_page_token: String::new(),
    };
    app.on_update(Update::Reply { tag, result: Ok(R::SearchUsers(found)) });
    match requests(&app).as_slice() {
        [(_, Request::CreateConversation(c))] => {
            assert_eq!((c.title.as_str(), c.member_ids.as_slice()), ("release crew", &[BOB][..]))
        }
        other => panic!("a create expected, got {other:?}"),
    }
    // An unbalanced quote is said, not sent.
    app.effects.clear();
    key(&mut app, KeyCode::Char('c'));
    typed(&mut app, "\"release crew bob");
    key(&mut app, KeyCode::Enter);
    assert!(requests(&app).is_empty());
    assert!(status(&app).contains("unbalanced quote"), "{}", status(&app));
}

#[test]
fn offline_counts_down_shows_the_whole_reason_and_reconnects_on_a_key() {
    let mut app = dm_open();
    let reason = "connecting to wss://chat.example.org:7600/v1/ws: Connection refused (os error 111)";
    app.on_update(Update::Connection(ConnState::Offline { reason: reason.into(), retry_in: Duration::from_secs(7) }));
    let (s, _) = draw(&app, 160, 30);
    let bar = s.lines().last().unwrap_or_default().to_string();
    assert!(bar.contains(reason), "the whole reason fits in 160 columns: {bar}");
    assert!(bar.contains("retry in 7 s"), "{bar}");
    // Three seconds later the tick redraws a smaller number.
    app.on_tick(app.now_ms + 3_000);
    let (s, _) = draw(&app, 160, 30);
    assert!(s.lines().last().unwrap_or_default().contains("retry in 4 s"), "{s}");
    // Bob's presence is not known while offline: the header does not say online.
    let header = s.lines().find(|l| l.contains("bob ·")).expect("header");
    assert!(header.contains("unknown") && !header.contains("online"), "{header}");
    // Narrow: the reason is shortened, the countdown stays.
    let (s, _) = draw(&app, 90, 30);
    assert!(s.lines().last().unwrap_or_default().contains("retry in 4 s"), "{s}");
    app.effects.clear();
    key(&mut app, KeyCode::Char('R'));
    assert!(app.effects.contains(&Effect::Net(Command::Reconnect)), "{:?}", app.effects);
}

#[test]
fn form_errors_wrap_and_a_success_clears_an_old_status() {
    let mut app = App::new("default", "ws://127.0.0.1:7600/v1/ws", Keymap::default(), false);
    let error = "a password has at least 8 characters and is not one of the 10,000 most common passwords";
    if let Screen::Login(f) = &mut app.screen {
        f.error = Some(error.into());
    }
    let (s, _) = draw(&app, 60, 20);
    let shown: String = s.lines().map(|l| l.trim_matches(|c| c == '│' || c == ' ')).collect::<Vec<_>>().join(" ");
    assert!(shown.contains("most common passwords"), "the whole error shows:\n{s}");
    // A failed send is said; the next successful send clears it.
    let mut app = dm_open();
    app.on_update(Update::SendFailed { conversation_id: 10, client_msg_id: "x".into(), error: "too long".into() });
    assert!(status(&app).starts_with("not sent"));
    app.on_update(Update::Sent {
        conversation_id: 10,
        client_msg_id: "y".into(),
        result: v1::SendMessageResult::default(),
    });
    assert_eq!(app.status, None);
}

#[test]
fn the_help_scrolls_on_a_small_screen() {
    let mut app = app();
    key(&mut app, KeyCode::Char('?'));
    let (s, _) = draw(&app, 60, 20);
    assert!(s.contains("scroll"), "the title says it scrolls:\n{s}");
    assert!(!s.contains("quit at once"), "the last line is below:\n{s}");
    key(&mut app, KeyCode::Char('G'));
    let (s, _) = draw(&app, 60, 20);
    assert!(s.contains("quit at once"), "G shows the end:\n{s}");
    key(&mut app, KeyCode::Char('g'));
    let (s, _) = draw(&app, 60, 20);
    assert!(s.contains("this help"), "g goes back to the top:\n{s}");
}

#[test]
fn one_member_is_not_members() {
    let mut app = app();
    let mut g = fixture_conversation(11);
    g.member_count = 1;
    app.on_update(Update::Reply { tag: Tag::Refresh, result: Ok(R::GetConversation(g)) });
    app.open_conversation(11);
    let (s, _) = draw(&app, 100, 20);
    assert!(s.contains("· 1 member ") && !s.contains("1 members"), "{s}");
}

#[test]
fn the_servers_mention_count_is_shown_as_given() {
    let mut app = app();
    let mut g = fixture_conversation(11);
    (g.head_seq, g.my_read_seq, g.unread_count, g.unread_mention_count) = (20, 15, 5, 3);
    app.on_update(Update::Reply { tag: Tag::Refresh, result: Ok(R::GetConversation(g.clone())) });
    let (s, _) = draw(&app, 100, 14);
    assert!(s.contains(" 5 @3"), "{s}");
    // The same values again (a refresh after a restart) do not add up.
    app.on_update(Update::Reply { tag: Tag::Refresh, result: Ok(R::GetConversation(g)) });
    let (s, _) = draw(&app, 100, 14);
    assert!(s.contains(" 5 @3"), "{s}");
}

/// The group's messages 1..=`head`.
fn group_history_to(app: &mut App, head: u64) {
    let messages: Vec<v1::Message> = (1..=head)
        .map(|seq| message(11, seq, 200 + seq, CAROL, &format!("msg {seq}"), T0 + 20 * HOUR + seq * 60_000))
        .collect();
    app.on_update(Update::History { conversation_id: 11, before_seq: 0, after_seq: 0, messages, has_more: false });
}

#[test]
fn the_next_unread_key_opens_the_mention_first_at_its_divider() {
    let mut app = app();
    // The DM has 1 unread, the group 24 with a mention: the group comes first.
    let mut g = fixture_conversation(11);
    (g.head_seq, g.my_read_seq, g.unread_count, g.unread_mention_count) = (40, 16, 24, 1);
    app.on_update(Update::Reply { tag: Tag::Refresh, result: Ok(R::GetConversation(g)) });
    app.effects.clear();
    key(&mut app, KeyCode::Char('u'));
    assert_eq!(app.open, Some(11));
    assert!(
        app.effects.iter().any(|e| matches!(e, Effect::Net(Command::History { conversation_id: 11, .. }))),
        "its history is asked for"
    );
    group_history_to(&mut app, 40);
    assert_eq!(app.selected, Some(17), "the first unread message is selected");
    let (s, _) = draw(&app, 100, 16);
    let lines: Vec<&str> = s.lines().collect();
    let divider = lines.iter().position(|l| l.contains("new messages")).expect("divider");
    let first = lines.iter().position(|l| l.contains("msg 17")).expect("first unread");
    assert_eq!(first, divider + 1, "the divider is right above the first unread:\n{s}");
    assert!(divider <= 1, "the divider is at the top of the view:\n{s}");
    assert!(s.contains("msg 24") && !s.contains("msg 40"), "what follows shows below:\n{s}");
    // Reading down and back: U jumps to the divider again.
    key(&mut app, KeyCode::Char('G'));
    assert_eq!(app.selected, None);
    key(&mut app, KeyCode::Char('U'));
    assert_eq!(app.selected, Some(17));
    // Then the DM, then nothing left.
    key(&mut app, KeyCode::Char('u'));
    assert_eq!(app.open, Some(10));
    key(&mut app, KeyCode::Char('u'));
    assert!(status(&app).contains("no unread"), "{}", status(&app));
}

/// The numbers of the "msg N" messages on screen, top to bottom.
fn shown_msgs(app: &App) -> Vec<u64> {
    let (s, _) = draw(app, 100, 20);
    s.lines().filter_map(|l| l.split("carol: msg ").nth(1)?.split_whitespace().next()?.parse().ok()).collect()
}

#[test]
fn ctrl_f_and_ctrl_b_page_through_messages() {
    let mut app = app();
    let mut g = fixture_conversation(11);
    (g.head_seq, g.my_read_seq, g.unread_count) = (40, 40, 0);
    app.on_update(Update::Reply { tag: Tag::Refresh, result: Ok(R::GetConversation(g)) });
    app.open_conversation(11);
    group_history_to(&mut app, 40);
    let bottom = shown_msgs(&app);
    assert_eq!(bottom.last(), Some(&40));
    let n = bottom.len();
    // Ctrl-b: the message at the top comes to the bottom, and again (a page each time).
    ctrl(&mut app, 'b');
    let up1 = shown_msgs(&app);
    // (as a pager does, a line or two stay in view for context)
    let overlap = |a: &[u64], b: &[u64]| b.iter().filter(|x| a.contains(x)).count();
    assert!((1..=2).contains(&overlap(&bottom, &up1)), "one page up: {bottom:?} then {up1:?}");
    ctrl(&mut app, 'b');
    let up2 = shown_msgs(&app);
    assert!((1..=2).contains(&overlap(&up1, &up2)), "another page up: {up1:?} then {up2:?}");
    // Ctrl-f back down a page; Ctrl-u / Ctrl-d move half as far.
    ctrl(&mut app, 'f');
    let down = shown_msgs(&app);
    assert!(down.first() > up2.first(), "{up2:?} then {down:?}");
    let sel = app.selected.expect("a selection");
    ctrl(&mut app, 'u');
    let moved = sel - app.selected.expect("a selection");
    assert!(moved as usize >= n / 2 - 1 && (moved as usize) < n, "half a page is {moved} of {n}");
    // Search moved to S alone.
    assert!(!matches!(app.overlay, Overlay::MessageSearch));
}

#[test]
fn colon_commands_cover_what_has_no_key() {
    let mut app = app();
    app.open_conversation(11);
    app.effects.clear();
    key(&mut app, KeyCode::Char(':'));
    typed(&mut app, "topic ship 1.2 on Friday");
    key(&mut app, KeyCode::Enter);
    let tag = match requests(&app).as_slice() {
        [(tag, Request::UpdateConversation(u))] => {
            assert_eq!((u.conversation_id, u.description.as_deref()), (11, Some("ship 1.2 on Friday")));
            *tag
        }
        other => panic!("{other:?}"),
    };
    // The server's answer: the topic shows in the header.
    let mut g = fixture_conversation(11);
    g.description = "ship 1.2 on Friday".into();
    app.on_update(Update::Reply { tag, result: Ok(R::UpdateConversation(g)) });
    let (s, _) = draw(&app, 120, 20);
    assert!(s.contains("· ship 1.2 on Friday"), "{s}");
    app.effects.clear();
    key(&mut app, KeyCode::Char(':'));
    typed(&mut app, "leave");
    key(&mut app, KeyCode::Enter);
    assert!(matches!(requests(&app).as_slice(), [(_, Request::LeaveConversation(l))] if l.conversation_id == 11));
    assert_eq!(app.open, None);
    // An action by its name, and Tab completing a command.
    app.open_conversation(11);
    key(&mut app, KeyCode::Char(':'));
    typed(&mut app, "mu");
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Enter);
    assert!(app.muted.contains(&11), "`:mute` ran the mute action");
    key(&mut app, KeyCode::Char(':'));
    typed(&mut app, "frobnicate");
    key(&mut app, KeyCode::Enter);
    assert!(status(&app).contains("unknown command"), "{}", status(&app));
}

#[test]
fn tab_completes_usernames_and_channels() {
    let mut app = app();
    key(&mut app, KeyCode::Char('n'));
    typed(&mut app, "ca");
    app.effects.clear();
    key(&mut app, KeyCode::Tab);
    let prompt_text = |app: &App| match &app.overlay {
        Overlay::Prompt { input, .. } => input.text(),
        _ => String::new(),
    };
    assert_eq!(prompt_text(&app), "carol", "a known user completes at once");
    // The server's search answers for names not known here.
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('n'));
    typed(&mut app, "da");
    app.effects.clear();
    key(&mut app, KeyCode::Tab);
    let tag = match requests(&app).as_slice() {
        [(tag, Request::SearchUsers(q))] if q.query == "da" => *tag,
        other => panic!("{other:?}"),
    };
    let users = vec![user(7, "dave", v1::PresenceState::Offline), user(8, "dana", v1::PresenceState::Offline)];
    app.on_update(Update::Reply {
        tag,
        result: Ok(R::SearchUsers(v1::SearchUsersResult { users, next_page_token: String::new() })),
    });
    match &app.overlay {
        Overlay::Prompt { input, completions, .. } => {
            assert_eq!(input.text(), "da");
            assert_eq!(completions, &["dana".to_string(), "dave".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    // Channels from the directory.
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('J'));
    typed(&mut app, "gen");
    app.effects.clear();
    key(&mut app, KeyCode::Tab);
    let tag = match requests(&app).as_slice() {
        [(tag, Request::DiscoverChannels(q))] if q.query == "gen" => *tag,
        other => panic!("{other:?}"),
    };
    let general = v1::Conversation { conversation_id: 40, title: "general".into(), ..Default::default() };
    let result = v1::DiscoverChannelsResult { conversations: vec![general], ..Default::default() };
    app.on_update(Update::Reply { tag, result: Ok(R::DiscoverChannels(result.clone())) });
    assert_eq!(prompt_text(&app), "general");
    // A new group's members, and a command's arguments.
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('c'));
    typed(&mut app, "\"release crew\" bob ca");
    key(&mut app, KeyCode::Tab);
    assert_eq!(prompt_text(&app), "\"release crew\" bob carol");
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char(':'));
    typed(&mut app, "invite ca");
    key(&mut app, KeyCode::Tab);
    assert_eq!(prompt_text(&app), "invite carol");
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char(':'));
    typed(&mut app, "join gen");
    app.effects.clear();
    key(&mut app, KeyCode::Tab);
    let tag = match requests(&app).as_slice() {
        [(tag, Request::DiscoverChannels(q))] if q.query == "gen" => *tag,
        other => panic!("{other:?}"),
    };
    app.on_update(Update::Reply { tag, result: Ok(R::DiscoverChannels(result)) });
    assert_eq!(prompt_text(&app), "join general");
}

#[test]
fn registering_asks_for_the_password_twice() {
    let mut app = App::new("default", "ws://127.0.0.1:7600/v1/ws", Keymap::default(), false);
    ctrl(&mut app, 'r');
    typed(&mut app, "zoe");
    key(&mut app, KeyCode::Tab);
    typed(&mut app, "correct horse");
    key(&mut app, KeyCode::Enter);
    typed(&mut app, "correct hose");
    let (s, _) = draw(&app, 80, 24);
    assert!(s.contains("Again"), "{s}");
    key(&mut app, KeyCode::Enter);
    assert!(app.effects.is_empty(), "different passwords are not sent");
    let Screen::Login(f) = &app.screen else { panic!("still the form") };
    assert!(f.error.as_deref().unwrap_or_default().contains("differ"));
    typed(&mut app, "correct horse");
    key(&mut app, KeyCode::Enter);
    assert_eq!(
        app.effects,
        [Effect::Login { username: "zoe".into(), password: "correct horse".into(), register: true }]
    );
}

#[test]
fn shortcode_reactions_are_sent_and_counted_as_their_emoji() {
    let mut app = dm_open();
    // m1 (bob's first) has 👍 ×2, one of them alice's: `:thumbsup:` on it takes hers back.
    app.selected = Some(2);
    app.focus = Focus::Messages;
    app.effects.clear();
    key(&mut app, KeyCode::Char('+'));
    typed(&mut app, ":thumbsup:");
    key(&mut app, KeyCode::Enter);
    match requests(&app).as_slice() {
        [(_, Request::Unreact(u))] => assert_eq!(u.emoji, "👍"),
        other => panic!("an unreact of 👍 expected, got {other:?}"),
    }
    app.effects.clear();
    key(&mut app, KeyCode::Char('+'));
    typed(&mut app, "tada");
    key(&mut app, KeyCode::Enter);
    match requests(&app).as_slice() {
        [(_, Request::React(r))] => assert_eq!(r.emoji, "🎉"),
        other => panic!("a react with 🎉 expected, got {other:?}"),
    }
    app.effects.clear();
    key(&mut app, KeyCode::Char('+'));
    typed(&mut app, "hello");
    key(&mut app, KeyCode::Enter);
    assert!(requests(&app).is_empty() && status(&app).contains("not an emoji"));
    // A shortcode stored by an older server shows as its emoji and counts with it.
    let mut m = message(10, 8, 108, BOB, "ship it", T0 + 27 * HOUR);
    m.reactions = vec![
        v1::ReactionCount { emoji: ":thumbsup:".into(), count: 1, me: false },
        v1::ReactionCount { emoji: "👍".into(), count: 2, me: true },
    ];
    app.on_update(entry(10, 8, BOB, T0 + 27 * HOUR, Body::MessagePosted(m)));
    app.status = None;
    let (s, _) = draw(&app, 100, 30);
    assert!(s.contains("👍 3") && !s.contains(":thumbsup:"), "{s}");
}

#[test]
fn a_message_written_offline_shows_when_it_was_written() {
    let mut app = dm_open();
    let mut m = message(10, 8, 108, ME, "written on the train", T0 + 28 * HOUR);
    m.written_at_ms = T0 + 27 * HOUR + 17 * 60_000;
    app.on_update(entry(10, 8, ME, T0 + 28 * HOUR, Body::MessagePosted(m)));
    let (s, _) = draw(&app, 100, 30);
    assert!(s.contains("12:17 alice: written on the train"), "the writing time, not the server's 13:00:\n{s}");
}

#[test]
fn editing_a_message_keeps_the_draft_aside() {
    let mut app = dm_open();
    key(&mut app, KeyCode::Char('i'));
    typed(&mut app, "half a reply");
    key(&mut app, KeyCode::Esc);
    // Edit alice's "yes, at 8. all green" (seq 3), then give up: the draft is back.
    app.selected = Some(3);
    key(&mut app, KeyCode::Char('e'));
    assert_eq!(app.composer.text(), "yes, at 8. all green");
    assert_eq!(app.saved_drafts().get(&10).map(|d| d.text.as_str()), Some("half a reply"));
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.composer.text(), "half a reply");
    // Edit and save: the draft is back too, and the edit was sent.
    key(&mut app, KeyCode::Esc);
    app.selected = Some(3);
    key(&mut app, KeyCode::Char('e'));
    typed(&mut app, "!");
    app.effects.clear();
    key(&mut app, KeyCode::Enter);
    let edited = requests(&app)
        .into_iter()
        .any(|(_, r)| matches!(r, Request::EditMessage(e) if e.text == "yes, at 8. all green!"));
    assert!(edited, "the edit is sent");
    assert_eq!(app.composer.text(), "half a reply");
}
