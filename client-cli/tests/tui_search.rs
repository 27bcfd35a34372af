//! Message search in the TUI, drawn on ratatui's TestBackend: the overlay with its hits (matches
//! emphasised, byte ranges on and off character boundaries), the next page asked for when the
//! list scrolls past its end, no hits, errors, the index-lag note; Enter on a hit opening its
//! conversation at the message with the history around it, and the unloaded stretch that leaves
//! filled as the selection moves onto it; and `/` in a conversation offering its last search
//! selected, so typing replaces it.

#[allow(dead_code)]
mod common;

use common::*;
use confab_cli::net::{Command, Tag, Update};
use confab_cli::ui::app::{App, Effect, Focus, Overlay};
use confab_protocol::v1::{self, ConversationKind, client_frame::Request, response::Result as R};
use crossterm::event::KeyCode;
use ratatui::style::{Color, Modifier};

const DAVE: u64 = 4;

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

/// The SearchMessages requests queued since the last call, with their tags.
fn searches(app: &mut App) -> Vec<(Tag, v1::SearchMessages)> {
    std::mem::take(&mut app.effects)
        .into_iter()
        .filter_map(|e| match e {
            Effect::Net(Command::Request { tag, request: Request::SearchMessages(r) }) => Some((tag, r)),
            _ => None,
        })
        .collect()
}

fn hit(m: v1::Message, ranges: &[(u32, u32)]) -> v1::SearchHit {
    let highlights = ranges.iter().map(|&(start, end)| v1::TextRange { start, end }).collect();
    v1::SearchHit { message: Some(m), highlights }
}

fn answer(app: &mut App, tag: Tag, hits: Vec<v1::SearchHit>, next_cursor: &str, index_lag: Vec<v1::IndexLag>) {
    let r = v1::SearchMessagesResult { hits, next_cursor: next_cursor.into(), index_lag };
    app.on_update(Update::Reply { tag, result: Ok(R::SearchMessages(r)) });
}

/// Where `needle` is drawn on the screen: (column, row).
fn cell_of(screen: &str, needle: &str) -> (u16, u16) {
    let row = screen.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} not drawn"));
    let line = screen.lines().nth(row).expect("line");
    let col = unicode_width::UnicodeWidthStr::width(&line[..line.find(needle).expect("needle")]);
    (col as u16, row as u16)
}

#[test]
fn the_overlay_lists_hits_with_their_matches_and_pages_on() {
    let mut app = app();
    key(&mut app, KeyCode::Char('S'));
    assert!(matches!(app.overlay, Overlay::MessageSearch));
    let (s, _) = draw(&app, 100, 20);
    assert!(s.contains("Enter searches every conversation you are in"), "{s}");
    typed(&mut app, "tag elodie");
    key(&mut app, KeyCode::Enter);
    let asked = searches(&mut app);
    let [(tag, req)] = asked.as_slice() else { panic!("one search: {asked:?}") };
    assert_eq!((req.query.as_str(), req.limit, req.cursor.as_str()), ("tag elodie", 50, ""));
    let hits = vec![
        hit(message(11, 20, 120, CAROL, "@alice can you tag 1.2?", T0 + 25 * HOUR), &[(15, 18)]),
        // "Élodie" starts with a two-byte É; the second range starts inside it (a bad range).
        hit(message(11, 14, 114, DAVE, "Élodie said the tag can wait", T0 + 3 * HOUR), &[(0, 7), (1, 3), (17, 20)]),
        hit(message(10, 3, 103, BOB, "tags: ask élodie", T0 + HOUR), &[(0, 3), (10, 17)]),
    ];
    let lag = vec![v1::IndexLag { conversation_id: 11, indexed_seq: 18, head_seq: 20 }];
    answer(&mut app, *tag, hits, "page2", lag);
    // dave is not known yet: asked for, shown as user4 meanwhile.
    assert!(app.effects.iter().any(|e| matches!(e,
        Effect::Net(Command::Request { request: Request::GetUsers(g), .. }) if g.user_ids == [DAVE])));
    app.on_update(Update::Reply {
        tag: Tag::Users,
        result: Ok(R::GetUsers(v1::GetUsersResult { users: vec![user(DAVE, "dave", v1::PresenceState::Online)] })),
    });
    let (s, t) = draw(&app, 100, 20);
    check("search", &s);
    // The matches are bold yellow; the text around them is not.
    let buf = t.backend().buffer();
    let (x, y) = cell_of(&s, "Élodie said");
    assert_eq!(buf[(x, y)].fg, Color::Yellow);
    assert!(buf[(x, y)].modifier.contains(Modifier::BOLD));
    assert_ne!(buf[(x + 7, y)].fg, Color::Yellow, "\"said\" is not a match");
    let (x, y) = cell_of(&s, "tag 1.2?");
    assert_eq!(buf[(x, y)].fg, Color::Yellow);
    // The first hit is selected; down twice reaches the last, which asks for the next page once.
    key(&mut app, KeyCode::Char('j'));
    assert!(searches(&mut app).is_empty());
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Char('j'));
    let asked = searches(&mut app);
    let [(tag2, req)] = asked.as_slice() else { panic!("one more page: {asked:?}") };
    assert_eq!((req.query.as_str(), req.cursor.as_str()), ("tag elodie", "page2"));
    // An answer to the first page arriving late is dropped; the second page is appended.
    answer(&mut app, *tag, vec![hit(message(12, 1, 1, ME, "stale", T0), &[])], "", Vec::new());
    answer(
        &mut app,
        *tag2,
        vec![hit(message(12, 5, 130, ME, "welcome all, tag along", T0 + 2 * HOUR), &[(13, 16)])],
        "",
        Vec::new(),
    );
    let view = app.message_search.as_ref().expect("search state");
    let ids: Vec<u64> = view.hits.iter().filter_map(|h| h.message.as_ref()).map(|m| m.message_id).collect();
    assert_eq!(ids, [120, 114, 103, 130]);
    assert!(view.lag.is_empty() && view.next_cursor.is_empty());
    let (s, _) = draw(&app, 100, 20);
    assert!(s.contains("4 hits for tag elodie") && !s.contains("more below"), "{s}");
    // Esc closes; the key shows the same hits again, with the query offered selected.
    key(&mut app, KeyCode::Esc);
    assert!(matches!(app.overlay, Overlay::None));
    key(&mut app, KeyCode::Char('S'));
    let (s, _) = draw(&app, 100, 20);
    assert!(s.contains("› tag elodie") && s.contains("welcome all, tag along"), "{s}");
}

#[test]
fn no_hits_errors_and_a_new_query() {
    let mut app = app();
    key(&mut app, KeyCode::Char('S'));
    typed(&mut app, "zebra");
    key(&mut app, KeyCode::Enter);
    let (s, _) = draw(&app, 80, 12);
    assert!(s.contains("searching for zebra…"), "{s}");
    let [(tag, _)] = searches(&mut app)[..] else { panic!("one search") };
    answer(&mut app, tag, Vec::new(), "", Vec::new());
    let (s, _) = draw(&app, 80, 12);
    check("search_empty", &s);
    // No hits: the keys stay on the query, offered selected, so typing replaces it.
    typed(&mut app, "-");
    key(&mut app, KeyCode::Enter);
    let asked = searches(&mut app);
    let [(tag, req)] = asked.as_slice() else { panic!("one search: {asked:?}") };
    assert_eq!(req.query, "-");
    app.on_update(Update::Reply { tag: *tag, result: Err("a query needs a word or a filter".into()) });
    let (s, _) = draw(&app, 80, 12);
    assert!(s.contains("a query needs a word or a filter"), "the error shows in the overlay: {s}");
    assert!(app.status.is_none(), "not in the status bar");
}

/// The group with 300 entries, its newest page (281..=300) loaded.
fn long_group() -> App {
    let mut app = app();
    let last = message(11, 300, 1300, CAROL, "latest", T0 + 29 * HOUR);
    let c = conversation(11, ConversationKind::Group, "release crew", 0, 300, 0, last);
    app.on_update(Update::Reply { tag: Tag::Refresh, result: Ok(R::GetConversation(c)) });
    app.open_conversation(11);
    app.on_update(history(11, 0, 0, 281..=300, true));
    app.effects.clear();
    app
}

fn history(conv: u64, before_seq: u64, after_seq: u64, seqs: std::ops::RangeInclusive<u64>, has_more: bool) -> Update {
    let messages = seqs
        .map(|s| {
            let who = if s % 2 == 0 { BOB } else { CAROL };
            message(conv, s, 1000 + s, who, &format!("message {s}"), T0 + 20 * HOUR + s * 60_000)
        })
        .collect();
    Update::History { conversation_id: conv, before_seq, after_seq, messages, has_more }
}

fn history_asked(app: &mut App) -> Vec<(u64, u64, u64, u32)> {
    std::mem::take(&mut app.effects)
        .into_iter()
        .filter_map(|e| match e {
            Effect::Net(Command::History { conversation_id, before_seq, after_seq, limit }) => {
                Some((conversation_id, before_seq, after_seq, limit))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn enter_on_a_hit_opens_its_conversation_at_the_message() {
    let mut app = long_group();
    app.open_conversation(10);
    key(&mut app, KeyCode::Char('S'));
    typed(&mut app, "message 100");
    key(&mut app, KeyCode::Enter);
    let [(tag, _)] = searches(&mut app)[..] else { panic!("one search") };
    let found = message(11, 100, 1100, BOB, "message 100", T0 + 20 * HOUR + 100 * 60_000);
    answer(&mut app, tag, vec![hit(found, &[(0, 7), (8, 11)])], "", Vec::new());
    key(&mut app, KeyCode::Enter);
    assert!(matches!(app.overlay, Overlay::None));
    assert_eq!((app.open, app.selected, app.focus), (Some(11), Some(100), Focus::Messages));
    // The page below 126 holds it with 25 messages on each side.
    assert_eq!(history_asked(&mut app), [(11, 126, 0, 51)]);
    app.on_update(history(11, 126, 0, 76..=125, true));
    let (s, _) = draw(&app, 100, 16);
    check("search_jump", &s);
    // Down to the last message of that page: one more stops there and loads what follows.
    for _ in 0..25 {
        key(&mut app, KeyCode::Char('j'));
    }
    assert_eq!(app.selected, Some(125));
    key(&mut app, KeyCode::Char('j'));
    assert_eq!(app.selected, Some(125));
    assert_eq!(history_asked(&mut app), [(11, 0, 125, 50)]);
    let (s, _) = draw(&app, 100, 16);
    assert!(s.contains("message 125") && s.contains("loading…"), "{s}");
    // Asked once while it loads.
    key(&mut app, KeyCode::Char('j'));
    assert!(history_asked(&mut app).is_empty());
    app.on_update(history(11, 0, 125, 126..=175, true));
    key(&mut app, KeyCode::Char('j'));
    assert_eq!(app.selected, Some(126));
    // From the newest end, up across the stretch still missing: it loads from above.
    key(&mut app, KeyCode::Char('G'));
    assert_eq!(app.selected, None);
    for _ in 0..21 {
        key(&mut app, KeyCode::Char('k'));
    }
    assert_eq!(app.selected, Some(281));
    assert_eq!(history_asked(&mut app), [(11, 281, 0, 50)]);
    app.on_update(history(11, 281, 0, 176..=280, true));
    let conv = &app.store.convs[&11];
    assert_eq!(conv.gap, None);
    assert_eq!(conv.messages.keys().copied().collect::<Vec<_>>(), (76..=300).collect::<Vec<_>>());
}

#[test]
fn a_hit_already_loaded_is_selected_without_loading() {
    let mut app = dm_open();
    app.open_conversation(12);
    key(&mut app, KeyCode::Char('S'));
    typed(&mut app, "deploy");
    key(&mut app, KeyCode::Enter);
    let [(tag, _)] = searches(&mut app)[..] else { panic!("one search") };
    let m = message(10, 2, 101, BOB, "morning! did the deploy go out?", T0);
    answer(&mut app, tag, vec![hit(m, &[(17, 23)])], "", Vec::new());
    key(&mut app, KeyCode::Enter);
    assert_eq!((app.open, app.selected), (Some(10), Some(2)));
    assert!(history_asked(&mut app).is_empty());
}

#[test]
fn slash_offers_the_last_search_selected() {
    let mut app = dm_open();
    app.focus = Focus::Messages;
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "DEPLOY");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.selected, Some(2));
    // Again: the last text, selected (drawn so) ...
    key(&mut app, KeyCode::Char('/'));
    let (s, t) = draw(&app, 100, 30);
    check("search_again", &s);
    let (x, y) = cell_of(&s, "DEPLOY");
    assert_eq!(t.backend().buffer()[(x, y)].bg, Color::DarkGray);
    // ... which typing replaces instead of appending to.
    typed(&mut app, "green");
    let Overlay::Prompt { input, .. } = &app.overlay else { panic!("the prompt") };
    assert_eq!(input.text(), "green");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.selected, Some(3), "yes, at 8. all green");
}
