//! What the TUI tests share: a model fed with the same updates the network actor produces (an
//! account with a DM, a group and a channel; the DM's history), drawing on ratatui's
//! TestBackend, and snapshot files in `tests/snapshots/` (`UPDATE_SNAPSHOTS=1` rewrites them).

use std::path::Path;

use confab_cli::config::{FileConfig, Settings, TrustSetting};
use confab_cli::creds::{Credentials, Secret};
use confab_cli::net::{ConnState, Snapshot, Update};
use confab_cli::ui::app::App;
use confab_cli::ui::keymap::Keymap;
use confab_cli::ui::render;
use confab_protocol::v1::{self, ConversationKind, conversation_event::Body};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use unicode_width::UnicodeWidthStr;

/// The server the fixture's profiles name.
pub const SERVER: &str = "ws://chat.example:7600/v1/ws";

/// 2026-11-20 09:00 UTC.
pub const T0: u64 = 1_795_165_200_000;
pub const HOUR: u64 = 3_600_000;
pub const ME: u64 = 1;
pub const BOB: u64 = 2;
pub const CAROL: u64 = 3;

pub fn user(id: u64, name: &str, presence: v1::PresenceState) -> v1::UserProfile {
    v1::UserProfile { user_id: id, username: name.into(), presence: presence as i32, ..Default::default() }
}

pub fn message(conv: u64, seq: u64, id: u64, sender: u64, text: &str, at: u64) -> v1::Message {
    v1::Message {
        message_id: id,
        conversation_id: conv,
        seq,
        sender_id: sender,
        text: text.into(),
        created_at_ms: at,
        ..Default::default()
    }
}

pub fn conversation(
    id: u64,
    kind: ConversationKind,
    title: &str,
    peer: u64,
    head: u64,
    unread: u32,
    last: v1::Message,
) -> v1::Conversation {
    v1::Conversation {
        conversation_id: id,
        kind: kind as i32,
        title: title.into(),
        peer_user_id: peer,
        head_seq: head,
        last_activity_ms: last.created_at_ms,
        member_count: if kind == ConversationKind::Direct { 2 } else { 3 },
        my_read_seq: head - u64::from(unread),
        unread_count: unread,
        last_message: Some(last),
        my_role: v1::MemberRole::Member as i32,
        ..Default::default()
    }
}

pub fn entry(conv: u64, seq: u64, actor: u64, at: u64, body: Body) -> Update {
    Update::Entry(v1::ConversationEvent { conversation_id: conv, seq, actor_id: actor, at_ms: at, body: Some(body) })
}

/// An app signed in as alice with a DM with bob (bob online), a group and a channel.
pub fn app() -> App {
    let mut app = App::new("work", "ws://chat.example:7600/v1/ws", Keymap::default(), true);
    app.now_ms = T0 + 30 * HOUR;
    app.on_update(Update::Connection(ConnState::Online));
    let snap = Snapshot {
        me: v1::Me { user_id: ME, username: "alice".into(), ..Default::default() },
        conversations: vec![
            conversation(
                10,
                ConversationKind::Direct,
                "",
                BOB,
                7,
                1,
                message(10, 7, 107, BOB, "see you tomorrow then", T0 + 26 * HOUR),
            ),
            v1::Conversation {
                unread_mention_count: 1,
                ..conversation(
                    11,
                    ConversationKind::Group,
                    "release crew",
                    0,
                    20,
                    4,
                    message(11, 20, 120, CAROL, "@alice can you tag 1.2?", T0 + 25 * HOUR),
                )
            },
            conversation(
                12,
                ConversationKind::Channel,
                "lobby",
                0,
                5,
                0,
                message(12, 5, 130, ME, "welcome all", T0 + 2 * HOUR),
            ),
        ],
        users: vec![user(BOB, "bob", v1::PresenceState::Online), user(CAROL, "carol", v1::PresenceState::Away)],
    };
    app.on_update(Update::Snapshot(Box::new(snap)));
    app
}

/// Opens the DM and feeds its history: two days, a reply, an edit, a deletion, reactions.
pub fn dm_open() -> App {
    let mut app = app();
    app.open_conversation(10);
    let mut m1 = message(10, 2, 101, BOB, "morning! did the deploy go out?", T0);
    m1.reactions = vec![v1::ReactionCount { emoji: "👍".into(), count: 2, me: true }];
    let m2 = message(10, 3, 102, ME, "yes, at 8. all green", T0 + HOUR);
    let mut m3 = message(10, 4, 103, BOB, "great", T0 + HOUR + 60_000);
    m3.edited_at_ms = T0 + HOUR + 120_000;
    let mut m4 = message(10, 5, 104, BOB, "", T0 + HOUR + 180_000);
    m4.deleted = true;
    let mut m5 = message(
        10,
        6,
        105,
        ME,
        "I will write the notes tomorrow, a long line that has to wrap in the pane",
        T0 + 25 * HOUR,
    );
    m5.reply_to_message_id = 101;
    let m6 = message(10, 7, 107, BOB, "see you tomorrow then", T0 + 26 * HOUR);
    app.on_update(Update::History {
        conversation_id: 10,
        before_seq: 0,
        after_seq: 0,
        messages: vec![m1, m2, m3, m4, m5, m6],
        has_more: false,
    });
    // Bob read up to seq 3 and has everything delivered: m2 read, m5 delivered.
    app.on_update(Update::Receipt(v1::ReceiptUpdated {
        conversation_id: 10,
        user_id: BOB,
        delivered_seq: 7,
        read_seq: 3,
    }));
    app.on_update(Update::Typing(v1::TypingChanged {
        conversation_id: 10,
        user_id: BOB,
        typing: true,
        expires_in_ms: 5000,
    }));
    app
}

pub fn draw(app: &App, w: u16, h: u16) -> (String, Terminal<TestBackend>) {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    t.draw(|f| render::draw(f, app)).expect("draw");
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..h {
        let mut x = 0;
        let mut line = String::new();
        while x < w {
            let s = buf[(x, y)].symbol();
            line.push_str(s);
            x += UnicodeWidthStr::width(s).max(1) as u16;
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    (out, t)
}

pub fn check(name: &str, screen: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, screen).expect("write snapshot");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}: run with UPDATE_SNAPSHOTS=1", path.display()));
    assert!(want == screen, "{name} differs from {}:\n--- want\n{want}\n--- got\n{screen}", path.display());
}

pub fn key(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

/// A profile in `dir` (not signed in) on the fixture's server.
pub fn settings(dir: &Path) -> Settings {
    Settings {
        profile: "work".into(),
        server: SERVER.into(),
        trust: TrustSetting::System,
        device_name: "tui test".into(),
        server_explicit: false,
        config_file: dir.join("config.toml"),
        profile_dir: dir.join("profile"),
        file: FileConfig::default(),
    }
}

/// Stores credentials of `user_id` in the profile, as a sign-in would.
pub fn sign_in_as(settings: &Settings, user_id: u64, username: &str) {
    let creds = Credentials {
        server: SERVER.into(),
        cert: None,
        insecure: false,
        user_id,
        username: username.into(),
        session_id: format!("s{user_id}"),
        access_token: Secret::new("a"),
        access_expires_at_ms: 1,
        refresh_token: Secret::new("r"),
        refresh_expires_at_ms: 1,
    };
    settings.creds().save(&creds).expect("credentials");
}
