//! Attachments in the TUI, drawn on ratatui's TestBackend: the line each attachment gets, an
//! image's inline preview (half-blocks: what ratatui-image's picker falls back to) once its
//! thumbnail arrives, the attach prompt's Tab completion and the upload it starts (progress in
//! the status line, then the message), and the save and open keys.

#[allow(dead_code)]
mod common;

use std::path::PathBuf;

use common::*;
use confab_cli::net::{Command, ConnState, Sink, TransferKind, Transferred, Update};
use confab_cli::ui::app::{App, Effect, Focus, Overlay};
use confab_cli::ui::media::Previews;
use confab_protocol::v1;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use ratatui_image::picker::Picker;

fn attachment(id: &str, name: &str, mime: &str, size: u64, thumbs: &[&str]) -> v1::Attachment {
    v1::Attachment {
        media_id: id.into(),
        file_name: name.into(),
        mime_type: mime.into(),
        size,
        width: if thumbs.is_empty() { 0 } else { 640 },
        height: if thumbs.is_empty() { 0 } else { 400 },
        thumbnails: thumbs.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

/// The DM open, previews drawn with half-blocks, and bob's newest message carrying a PDF and a
/// photo.
fn with_attachments() -> App {
    let mut app = dm_open();
    app.previews = Previews::new(Some(Picker::halfblocks()));
    let mut m = message(10, 8, 108, BOB, "the report and a photo", T0 + 27 * HOUR);
    m.attachments = vec![
        attachment("m01", "q3-report.pdf", "application/pdf", 1_572_864, &[]),
        attachment("m02", "harbour.png", "image/png", 2_400_000, &["crop96", "scale320", "scale800"]),
    ];
    app.on_update(entry(10, 8, BOB, T0 + 27 * HOUR, v1::conversation_event::Body::MessagePosted(m)));
    app.focus = Focus::Messages;
    app
}

/// The transfers the app asked the network task for.
fn transfers(app: &App) -> Vec<(u64, TransferKind)> {
    app.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Net(Command::Transfer(t)) => Some((t.id, t.kind.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn attachments_show_a_line_each_and_images_a_preview() {
    let mut app = with_attachments();
    app.effects.clear();
    let (s, _) = draw(&app, 100, 30);
    assert!(s.contains("📎 q3-report.pdf (application/pdf, 1.50 MiB)"), "{s}");
    assert!(s.contains("📎 harbour.png (image/png, 2.29 MiB)"), "{s}");
    // Drawn without its preview: the photo's scale320 thumbnail is fetched into memory, once.
    app.request_previews();
    let asked = transfers(&app);
    assert_eq!(asked.len(), 1, "{asked:?}");
    let (id, kind) = asked[0].clone();
    assert_eq!(
        kind,
        TransferKind::Download { media_id: "m02".into(), thumbnail: "scale320".into(), sink: Sink::Memory }
    );
    draw(&app, 100, 30);
    app.request_previews();
    assert_eq!(transfers(&app).len(), 1, "not asked again while loading");
    app.on_update(Update::TransferDone {
        id,
        result: Ok(Transferred::Bytes(confab_conformance::media::png(320, 200))),
    });
    assert_eq!(app.previews.len(), 1);
    assert!(app.status.is_none(), "previews load quietly");
    let (s, t) = draw(&app, 100, 30);
    check("attachments", &s);
    // The preview's cells are half-blocks in the picture's colours, under the photo's line.
    let row = s.lines().position(|l| l.contains("harbour.png")).expect("row") as u16 + 1;
    let cell = &t.backend().buffer()[(32 + 6 + 2, row + 2)];
    assert_eq!(cell.symbol(), "▄", "{s}");
    assert!(matches!(cell.fg, Color::Rgb(..)), "{:?}", cell.fg);
}

#[test]
fn a_preview_that_fails_is_not_asked_again_until_back_online() {
    let mut app = with_attachments();
    draw(&app, 100, 30);
    app.effects.clear();
    app.request_previews();
    let (id, _) = transfers(&app)[0].clone();
    app.on_update(Update::TransferDone { id, result: Ok(Transferred::Bytes(b"not an image".to_vec())) });
    app.effects.clear();
    draw(&app, 100, 30);
    app.request_previews();
    assert!(transfers(&app).is_empty());
    // Back online after a drop: tried again.
    app.on_update(Update::Connection(ConnState::Online));
    draw(&app, 100, 30);
    app.request_previews();
    assert_eq!(transfers(&app).len(), 1);
}

#[test]
fn the_attach_prompt_completes_paths_and_sends_the_upload() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("photos")).expect("mkdir");
    std::fs::write(dir.path().join("photos/cat.png"), b"x").expect("write");
    std::fs::write(dir.path().join("photos/cattle.png"), vec![7u8; 3000]).expect("write");
    std::fs::write(dir.path().join("report.pdf"), b"x").expect("write");
    let mut app = with_attachments();
    app.cwd = dir.path().to_path_buf();
    app.effects.clear();
    key(&mut app, KeyCode::Char('f'));
    key(&mut app, KeyCode::Char('p'));
    key(&mut app, KeyCode::Char('h'));
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Tab);
    let (s, _) = draw(&app, 100, 16);
    check("attach_prompt", &s);
    // Typing clears the list; one match completes.
    key(&mut app, KeyCode::Char('t'));
    key(&mut app, KeyCode::Tab);
    let Overlay::Prompt { input, completions, .. } = &app.overlay else { panic!("prompt") };
    assert_eq!((input.text(), completions.len()), ("photos/cattle.png".to_string(), 0));
    key(&mut app, KeyCode::Enter);
    let asked = transfers(&app);
    let (id, kind) = asked.last().cloned().expect("an upload");
    assert_eq!(kind, TransferKind::Upload { path: dir.path().join("photos/cattle.png") });
    app.on_update(Update::Transfer { id, done: 1500, total: 3000 });
    let (s, _) = draw(&app, 120, 16);
    assert!(s.contains("⇡ cattle.png 50% of 2.93 KiB"), "{s}");
    // Stored: sent as a message of its own, shown pending with its attachment line.
    app.effects.clear();
    let info = v1::MediaInfo {
        media_id: "m99".into(),
        mime_type: "image/png".into(),
        size: 3000,
        file_name: "cattle.png".into(),
        ..Default::default()
    };
    app.on_update(Update::TransferDone { id, result: Ok(Transferred::Uploaded(info)) });
    let sent = app.effects.iter().find_map(|e| match e {
        Effect::Net(Command::Send(o)) => Some(o.clone()),
        _ => None,
    });
    let o = sent.expect("a send");
    assert_eq!((o.conversation_id, o.text.as_str()), (10, ""));
    assert_eq!(o.attachments.iter().map(|a| a.media_id.as_str()).collect::<Vec<_>>(), ["m99"]);
    let (s, _) = draw(&app, 120, 30);
    assert!(!s.contains("⇡ cattle.png"), "{s}");
    assert!(s.contains("📎 cattle.png (image/png, 2.93 KiB)"), "{s}");
    // A path that is not a file is refused in the status line.
    key(&mut app, KeyCode::Char('f'));
    for c in "photos".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    key(&mut app, KeyCode::Enter);
    assert!(app.status.as_ref().is_some_and(|(s, _)| s.ends_with("photos: not a file")), "{:?}", app.status);
}

#[test]
fn save_asks_which_attachment_and_open_hands_the_file_to_the_opener() {
    let mut app = with_attachments();
    app.media.downloads_dir = Some(PathBuf::from("/home/alice/Downloads"));
    app.open_dir = PathBuf::from("/tmp/confab-open");
    app.effects.clear();
    // Two attachments: a list to pick from; the second is saved under its own name. From the
    // composer, Esc then `D` typed quickly arrive as Alt-Shift-D: both count.
    key(&mut app, KeyCode::Char('i'));
    assert_eq!(app.focus, Focus::Composer);
    app.on_key(KeyEvent::new(KeyCode::Char('D'), KeyModifiers::ALT | KeyModifiers::SHIFT));
    assert_eq!(app.focus, Focus::Messages);
    assert!(matches!(app.overlay, Overlay::Attachments { open: false, .. }));
    let (s, _) = draw(&app, 100, 30);
    assert!(s.contains("Save which attachment?") && s.contains("📎 harbour.png (image/png, 2.29 MiB)"), "{s}");
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Enter);
    let (id, kind) = transfers(&app).pop().expect("a download");
    let path = PathBuf::from("/home/alice/Downloads/harbour.png");
    assert_eq!(
        kind,
        TransferKind::Download {
            media_id: "m02".into(),
            thumbnail: String::new(),
            sink: Sink::File { path: path.clone(), replace: false }
        }
    );
    app.on_update(Update::TransferDone { id, result: Ok(Transferred::Saved(path)) });
    assert_eq!(app.status.as_ref().map(|(s, _)| s.as_str()), Some("saved /home/alice/Downloads/harbour.png"));
    // A message with one attachment opens it at once, from the cache directory.
    let mut m = message(10, 9, 109, BOB, "", T0 + 28 * HOUR);
    m.attachments = vec![attachment("m03", "../../.profile", "text/plain", 10, &[])];
    app.on_update(entry(10, 9, BOB, T0 + 28 * HOUR, v1::conversation_event::Body::MessagePosted(m)));
    app.effects.clear();
    key(&mut app, KeyCode::Char('o'));
    let (id, kind) = transfers(&app).pop().expect("a download");
    let path = PathBuf::from("/tmp/confab-open/m03/_profile");
    assert_eq!(
        kind,
        TransferKind::Download {
            media_id: "m03".into(),
            thumbnail: String::new(),
            sink: Sink::File { path: path.clone(), replace: true }
        },
        "a name from the server never leaves its directory"
    );
    app.on_update(Update::TransferDone { id, result: Ok(Transferred::Saved(path.clone())) });
    assert!(app.effects.contains(&Effect::Open(path)));
    // Failures say so; a message without attachments has nothing to save.
    app.effects.clear();
    key(&mut app, KeyCode::Char('o'));
    let (id, _) = transfers(&app).pop().expect("a download");
    app.on_update(Update::TransferDone { id, result: Err("offline: not connected".into()) });
    assert_eq!(app.status.as_ref().map(|(s, _)| s.as_str()), Some("_profile: download failed: offline: not connected"));
    for _ in 0..3 {
        key(&mut app, KeyCode::Char('k'));
    }
    key(&mut app, KeyCode::Char('D'));
    assert_eq!(app.status.as_ref().map(|(s, _)| s.as_str()), Some("no attachment on this message"));
}
