//! Links and text in the TUI: URLs drawn underlined in the link colour (on every row a wrapped
//! URL spans) and made terminal hyperlinks, mentions of me highlighted, and the keys that open
//! a link, copy a message and write one in the external editor.

#[allow(dead_code)]
mod common;

use common::*;
use confab_cli::net::Update;
use confab_cli::ui::app::{App, Effect, Focus, Overlay};
use confab_cli::ui::composer::Purpose;
use confab_protocol::v1::conversation_event::Body;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};

/// The link colour (render/marks.rs).
const LINK: Color = Color::LightBlue;

/// A message from `sender` arriving live in a conversation.
fn post(app: &mut App, conv: u64, seq: u64, sender: u64, text: &str) {
    let at = T0 + 30 * HOUR + seq * 60_000;
    app.on_update(entry(conv, seq, sender, at, Body::MessagePosted(message(conv, seq, 100 + seq, sender, text, at))));
}

/// The cells of row `y` from column `x0`, with their columns (a wide character's second
/// column is left out).
fn row_cells(buf: &Buffer, y: u16, x0: u16) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    let mut x = x0;
    while x < buf.area.width {
        let s = buf[(x, y)].symbol().to_string();
        let w = unicode_width::UnicodeWidthStr::width(s.as_str()).max(1) as u16;
        out.push((x, s));
        x += w;
    }
    out
}

/// Where `needle` is drawn (its cells), looking right of column `x0`, top to bottom.
fn find(buf: &Buffer, x0: u16, needle: &str) -> Vec<(u16, u16)> {
    let n = needle.chars().count();
    for y in 0..buf.area.height {
        let cells = row_cells(buf, y, x0);
        for start in 0..cells.len() {
            let text: String = cells[start..].iter().take(n).map(|(_, s)| s.as_str()).collect();
            if text == needle {
                return cells[start..start + n].iter().map(|(x, _)| (*x, y)).collect();
            }
        }
    }
    panic!("{needle:?} is not on screen");
}

fn is_link(buf: &Buffer, (x, y): (u16, u16)) -> bool {
    buf[(x, y)].fg == LINK && buf[(x, y)].modifier.contains(Modifier::UNDERLINED)
}

#[test]
fn urls_are_underlined_in_the_link_colour_on_every_row_they_wrap_to() {
    let mut app = dm_open();
    let url = "https://example.com/docs/a/very/long/path/to/the/release/notes/of/confab.html";
    post(&mut app, 10, 8, BOB, &format!("read {url} now, or www.rust-lang.org."));
    let (s, t) = draw(&app, 80, 30);
    let buf = t.backend().buffer();
    // The message pane starts right of the list: every link cell, in reading order.
    let linked: Vec<(u16, u16)> = (0..30).flat_map(|y| (27..80).map(move |x| (x, y))).collect();
    let linked: Vec<(u16, u16)> = {
        let mut v: Vec<(u16, u16)> = linked.into_iter().filter(|p| is_link(buf, *p)).collect();
        v.sort_by_key(|(x, y)| (*y, *x));
        v
    };
    let text: String = linked.iter().map(|p| buf[*p].symbol()).collect();
    assert_eq!(text, format!("{url}www.rust-lang.org"), "only the URLs are links, the final dot left out:\n{s}");
    let rows: std::collections::BTreeSet<u16> = linked.iter().map(|(_, y)| *y).collect();
    assert_eq!(rows.len(), 3, "the long URL is cut over two rows, both parts styled; then www…: {rows:?}\n{s}");
    // The words around them are plain.
    assert!(find(buf, 27, "read").iter().all(|p| !is_link(buf, *p)));
    assert!(find(buf, 27, "now,").iter().all(|p| !is_link(buf, *p)));
    // Without `[ui] hyperlinks`, no escape sequence reaches the cells.
    assert!(buf.content.iter().all(|c| !c.symbol().contains('\x1b')));
}

#[test]
fn with_hyperlinks_on_the_link_cells_carry_osc_8() {
    let mut app = dm_open();
    app.hyperlinks = true;
    post(&mut app, 10, 8, BOB, "docs at https://example.com/x today");
    let (_, t) = draw(&app, 100, 30);
    let buf = t.backend().buffer();
    let linked: Vec<&str> = buf.content.iter().map(|c| c.symbol()).filter(|s| s.starts_with("\x1b]8;;")).collect();
    assert_eq!(linked, ["\x1b]8;;https://example.com/x\x1b\\https://example.com/x\x1b]8;;\x1b\\"]);
}

#[test]
fn mentions_of_me_are_highlighted_and_others_are_not() {
    let mut app = app();
    app.open_conversation(11);
    let mut m1 = message(11, 19, 119, CAROL, "@Alice can you tag 1.2? cc @bob", T0 + 24 * HOUR);
    m1.mention_user_ids = vec![ME, BOB];
    let m2 = message(11, 20, 120, BOB, "ask @bob for the notes", T0 + 25 * HOUR);
    app.on_update(Update::History {
        conversation_id: 11,
        before_seq: 0,
        after_seq: 0,
        messages: vec![m1, m2],
        has_more: false,
    });
    let (s, t) = draw(&app, 100, 20);
    let buf = t.backend().buffer();
    let me = find(buf, 34, "@Alice");
    assert!(
        me.iter().all(|p| buf[*p].fg == Color::Yellow && buf[*p].modifier.contains(Modifier::BOLD)),
        "my mention in bold yellow:\n{s}"
    );
    let bob = find(buf, 34, "@bob for");
    assert!(bob.iter().all(|p| buf[*p].fg != Color::Yellow), "someone else's mention is plain:\n{s}");
    // The message that mentions me has its time marked; the other has not.
    let time_bg = |needle: &str| {
        let (x, y) = find(buf, 34, needle)[0];
        let row = row_cells(buf, y, 34);
        let first = row.iter().find(|(_, s)| s != " ").map(|(x, _)| *x).unwrap_or(x);
        buf[(first, y)].bg
    };
    assert_eq!(time_bg("can you tag"), Color::Yellow);
    assert_ne!(time_bg("ask @bob"), Color::Yellow);
}

#[test]
fn yank_copies_the_selected_message() {
    let mut app = dm_open();
    app.focus = Focus::Messages;
    app.effects.clear();
    key(&mut app, KeyCode::Char('y'));
    assert_eq!(app.effects, [Effect::Copy("see you tomorrow then".into())], "nothing selected: the newest");
    app.effects.clear();
    for _ in 0..5 {
        key(&mut app, KeyCode::Char('k'));
    }
    assert_eq!(app.selected, Some(3));
    key(&mut app, KeyCode::Char('y'));
    assert_eq!(app.effects, [Effect::Copy("yes, at 8. all green".into())]);
}

#[test]
fn open_link_opens_one_link_and_offers_several() {
    let mut app = dm_open();
    app.focus = Focus::Messages;
    post(&mut app, 10, 8, BOB, "one: https://example.com/a.");
    post(&mut app, 10, 9, BOB, "no link here");
    app.effects.clear();
    // Nothing selected: the newest message with a link.
    key(&mut app, KeyCode::Char('O'));
    assert_eq!(app.effects, [Effect::OpenUrl("https://example.com/a".into())]);
    app.effects.clear();
    // The selected message has none.
    key(&mut app, KeyCode::Char('k'));
    assert_eq!(app.selected, Some(9));
    key(&mut app, KeyCode::Char('O'));
    assert!(app.effects.is_empty());
    assert_eq!(app.status.as_ref().map(|(s, _)| s.as_str()), Some("no link in that message"));
    // Two links: a chooser; Enter opens the one picked.
    post(&mut app, 10, 10, CAROL, "see (https://example.com/b) and www.example.org/c");
    app.selected = Some(10);
    app.effects.clear();
    key(&mut app, KeyCode::Char('O'));
    assert!(matches!(&app.overlay, Overlay::Links { urls, .. } if urls.len() == 2), "{:?}", app.overlay);
    let (s, _) = draw(&app, 100, 30);
    assert!(s.contains("Open which link?") && s.contains("https://www.example.org/c"), "{s}");
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Enter);
    assert!(matches!(app.overlay, Overlay::None));
    assert_eq!(app.effects, [Effect::OpenUrl("https://www.example.org/c".into())]);
}

#[test]
fn the_editor_key_hands_the_composer_to_the_editor_and_back() {
    let mut app = dm_open();
    app.focus = Focus::Messages;
    // In normal mode, `E` takes what the composer holds.
    key(&mut app, KeyCode::Char('i'));
    for c in "draft".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    key(&mut app, KeyCode::Esc);
    app.effects.clear();
    key(&mut app, KeyCode::Char('E'));
    assert_eq!(app.effects, [Effect::Editor("draft".into())]);
    // What the editor saved, its final newline left out, is in the composer, focused.
    app.editor_done("a long message\n\nwritten in vi\n");
    assert_eq!(app.composer.text(), "a long message\n\nwritten in vi");
    assert_eq!(app.focus, Focus::Composer);
    // In insert mode Ctrl-x does the same, and a reply stays a reply.
    app.composer.clear();
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('r'));
    let reply = app.composer.purpose.clone();
    assert_ne!(reply, Purpose::New);
    key(&mut app, KeyCode::Char('x'));
    app.effects.clear();
    app.on_key(KeyEvent::new(KeyCode::Char('x'), KeyModifiers::CONTROL));
    assert_eq!(app.effects, [Effect::Editor("x".into())]);
    app.editor_done("thanks!\n");
    assert_eq!((app.composer.text().as_str(), &app.composer.purpose), ("thanks!", &reply));
    // With no conversation open there is nothing to write to.
    let mut fresh = common::app();
    fresh.effects.clear();
    key(&mut fresh, KeyCode::Char('E'));
    assert!(fresh.effects.is_empty());
}
