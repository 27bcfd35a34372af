//! The full-screen client (ratatui + crossterm): `confab` with no subcommand. The run loop
//! draws, then waits on the terminal, the network actor and a timer at once; the network runs
//! in its own task, so the UI never waits on it. The terminal is restored on exit and on panic.

mod actions;
pub mod app;
pub mod cached;
mod commands;
pub mod complete;
pub mod composer;
pub mod drafts;
mod history;
mod input;
pub mod keymap;
pub mod media;
pub mod notify;
pub mod overlay;
pub mod render;
mod replies;
pub mod search;
mod text_actions;
mod unread;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste, Event, EventStream, KeyEventKind};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::{Settings, TUI_STATE_FILE, write_private};
use crate::net::{self, Command, NetHandle, NetOptions, Update};
use crate::session::{self, now_ms};
use app::{App, Effect, Screen};
use keymap::Keymap;
use ratatui_image::picker::{Picker, ProtocolType};

type Net = Option<(NetHandle, mpsc::Receiver<Update>)>;

/// The profile's TUI state on disk (`tui-state.toml`, private to the user: drafts are message
/// text), for the account `user_id`: another account signed in on the profile ignores it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct UiState {
    #[serde(default)]
    user_id: u64,
    #[serde(default)]
    muted: BTreeSet<u64>,
    /// The conversation open at the last save, and its selected message.
    #[serde(default)]
    open: Option<u64>,
    #[serde(default)]
    selected: Option<u64>,
    /// Unsent drafts by conversation id (TOML keys are strings).
    #[serde(default)]
    drafts: BTreeMap<String, drafts::SavedDraft>,
}

/// The TUI state of account `user_id`: nothing when the file is another account's (or a
/// file written before states named their account).
fn load_state(settings: &Settings, user_id: u64) -> UiState {
    std::fs::read_to_string(settings.profile_dir.join(TUI_STATE_FILE))
        .ok()
        .and_then(|s| toml::from_str::<UiState>(&s).ok())
        .filter(|s| s.user_id == user_id && user_id != 0)
        .unwrap_or_default()
}

/// Writes the TUI state (mutes, drafts, the open conversation) to the profile's
/// `tui-state.toml`, for the account the app shows (nothing before it knows which).
pub fn save_state(settings: &Settings, app: &App) -> anyhow::Result<()> {
    if app.store.me.user_id == 0 {
        return Ok(());
    }
    let state = UiState {
        user_id: app.store.me.user_id,
        muted: app.muted.clone(),
        open: app.open,
        selected: app.open.and(app.selected),
        drafts: app.saved_drafts().into_iter().map(|(id, d)| (id.to_string(), d)).collect(),
    };
    let s = toml::to_string(&state)?;
    write_private(&settings.profile_dir, TUI_STATE_FILE, s.as_bytes()).context("saving the TUI state")
}

/// Builds the app for a profile (also used by tests to start from the real configuration).
pub fn new_app(settings: &Settings) -> anyhow::Result<App> {
    let keymap = Keymap::new(&settings.file.keys)?;
    let creds = settings.credentials()?;
    let signed_in = creds.is_some();
    let mut app = App::new(&settings.profile, &settings.server, keymap, signed_in);
    app.tz = *chrono::Local::now().offset();
    app.time_format = settings.file.ui.time_format.clone();
    app.history_page = settings.file.ui.history_page.clamp(10, 200);
    app.notify = settings.file.notifications.clone();
    let state = load_state(settings, creds.as_ref().map_or(0, |c| c.user_id));
    app.muted = state.muted;
    app.restore_drafts(state.drafts.into_iter().filter_map(|(id, d)| Some((id.parse().ok()?, d))).collect());
    app.reopen = state.open.map(|conversation_id| app::Reopen { conversation_id, selected: state.selected });
    app.now_ms = now_ms();
    graphics(&settings.file.media.graphics)?;
    app.media = settings.file.media.clone();
    app.open_dir = settings.file.media.open_dir();
    app.hyperlinks = settings.file.ui.hyperlinks;
    // What the account looked like at the last run, shown until the server's snapshot arrives.
    if let Some(c) = &creds {
        cached::restore(&mut app, settings, c.user_id);
    }
    Ok(app)
}

/// The `graphics` setting: `None` asks the terminal, else the protocol named.
fn graphics(name: &str) -> anyhow::Result<Option<ProtocolType>> {
    Ok(match name {
        "auto" => None,
        "kitty" => Some(ProtocolType::Kitty),
        "sixel" => Some(ProtocolType::Sixel),
        "iterm2" => Some(ProtocolType::Iterm2),
        "halfblocks" => Some(ProtocolType::Halfblocks),
        other => anyhow::bail!("[media] graphics = {other:?}: use auto, kitty, sixel, iterm2 or halfblocks"),
    })
}

/// How images are drawn on this terminal: ratatui-image's picker asks it (kitty, sixel, iTerm2,
/// else half-blocks) unless the configuration names a protocol. Must run once the terminal is
/// in raw mode and before its events are read.
fn picker(settings: &Settings) -> Option<Picker> {
    let media = &settings.file.media;
    if !media.previews {
        return None;
    }
    let wanted = graphics(&media.graphics).ok().flatten();
    if wanted == Some(ProtocolType::Halfblocks) {
        return Some(Picker::halfblocks());
    }
    let mut p = Picker::from_query_stdio().unwrap_or_else(|e| {
        tracing::debug!("the terminal did not say how to draw images ({e}): half-blocks");
        Picker::halfblocks()
    });
    if let Some(t) = wanted {
        p.set_protocol_type(t);
    }
    Some(p)
}

/// Starts the configured opener (`xdg-open` by default, arguments allowed) on `path`, detached
/// from the terminal; a thread reaps it.
fn open_with(opener: &str, path: &std::path::Path) -> anyhow::Result<()> {
    let mut words = opener.split_whitespace();
    let program = words.next().context("[media] opener is empty")?;
    let mut child = std::process::Command::new(program)
        .args(words)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Runs the TUI until the user quits.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let mut app = new_app(&settings)?;
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    // Pastes arrive as one event (else each pasted line would be an Enter that sends).
    crossterm::execute!(std::io::stdout(), EnableBracketedPaste).context("enabling bracketed paste")?;
    app.previews = media::Previews::new(picker(&settings));
    // ratatui's hook restores the terminal; a panic in any task (the network's too) then ends
    // the process instead of leaving the UI running on a restored terminal.
    let restore_and_report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = crossterm::execute!(std::io::stdout(), DisableBracketedPaste);
        restore_and_report(info);
        std::process::exit(101);
    }));
    let result = event_loop(&mut terminal, &mut app, &settings).await;
    let _ = crossterm::execute!(std::io::stdout(), DisableBracketedPaste);
    ratatui::restore();
    result
}

async fn next_update(net: &mut Net) -> Option<Update> {
    match net {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn event_loop(terminal: &mut ratatui::DefaultTerminal, app: &mut App, settings: &Settings) -> anyhow::Result<()> {
    let mut net: Net = match app.screen {
        Screen::Main => Some(net::spawn(settings.clone(), NetOptions::default())),
        Screen::Login(_) => None,
    };
    let (login_tx, mut login_rx) = mpsc::channel::<Result<(), String>>(1);
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut saver = cached::Saver::default();
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    loop {
        app.now_ms = now_ms();
        terminal.draw(|f| render::draw(f, app))?;
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(Event::Key(k))) if k.kind != KeyEventKind::Release => app.on_key(k),
                Some(Ok(Event::Paste(text))) => app.on_paste(&text),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                None => return Ok(()),
            },
            u = next_update(&mut net) => match u {
                Some(u) => {
                    app.on_update(u);
                    // Take whatever else is queued before drawing again.
                    for _ in 0..256 {
                        match net.as_mut().map(|(_, rx)| rx.try_recv()) {
                            Some(Ok(u)) => app.on_update(u),
                            _ => break,
                        }
                    }
                    app.after_updates();
                }
                None => net = None,
            },
            Some(r) = login_rx.recv() => match r {
                Ok(()) => {
                    if let Some((h, _)) = net.take() {
                        let _ = h.try_send(Command::Shutdown);
                    }
                    let fresh = Settings { ..settings.clone() };
                    net = Some(net::spawn(fresh, NetOptions::default()));
                }
                Err(e) => {
                    if let Screen::Login(f) = &mut app.screen {
                        f.busy = false;
                        f.error = Some(e);
                    }
                }
            },
            _ = tick.tick() => {
                app.on_tick(now_ms());
                saver.tick(settings, app);
            }
            // Terminated or the SSH session dropped: quit cleanly (the terminal is restored).
            _ = term.recv() => app.quit = true,
            _ = hangup.recv() => app.quit = true,
        }
        app.request_previews();
        for effect in std::mem::take(&mut app.effects) {
            match effect {
                Effect::Net(c) => {
                    let sent = net.as_ref().map(|(h, _)| h.try_send(c));
                    if !matches!(sent, Some(Ok(()))) {
                        app.say("busy: try again");
                    }
                }
                Effect::Bell => notify::bell(),
                Effect::Desktop { title, body } => notify::desktop(&title, &body),
                Effect::Open(path) => {
                    if let Err(e) = open_with(&settings.file.media.opener, &path) {
                        app.say(format!("{e:#}"));
                    }
                }
                Effect::OpenUrl(url) => {
                    // The opener takes the URL as it would a path.
                    if let Err(e) = open_with(&settings.file.media.opener, std::path::Path::new(&url)) {
                        app.say(format!("{e:#}"));
                    }
                }
                Effect::Copy(text) => {
                    if let Err(e) = text_actions::copy(terminal.backend_mut(), &text) {
                        app.say(format!("{e:#}"));
                    }
                }
                Effect::Editor(text) => match text_actions::run_editor(terminal, &mut events, &text).await {
                    Ok(edited) => app.editor_done(&edited),
                    Err(e) => app.say(format!("{e:#}")),
                },
                Effect::SaveState => {
                    if let Err(e) = save_state(settings, app) {
                        app.say(format!("{e:#}"));
                    }
                }
                Effect::Login { username, password, register } => {
                    let (settings, tx) = (settings.clone(), login_tx.clone());
                    tokio::spawn(async move {
                        let r = session::sign_in(&settings, &username, &password, register, None, None).await;
                        let _ = tx.send(r.map(|_| ()).map_err(|e| format!("{e:#}"))).await;
                    });
                }
            }
        }
        if app.quit {
            if let Err(e) = save_state(settings, app) {
                tracing::warn!("{e:#}");
            }
            if let Some((h, mut rx)) = net.take() {
                let _ = h.try_send(Command::Shutdown);
                // Let the actor acknowledge what was shown and close cleanly, briefly.
                let _ = tokio::time::timeout(Duration::from_millis(800), async { while rx.recv().await.is_some() {} })
                    .await;
            }
            saver.finish(settings, app).await;
            return Ok(());
        }
    }
}
