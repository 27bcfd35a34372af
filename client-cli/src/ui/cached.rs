//! The local cache in the TUI (crate::cache holds the file): at start, a signed-in profile's
//! cache of its account is shown while the connection comes up, through the same updates the
//! server's snapshot and history pages bring; while running it is written at most every
//! [`SAVE_EVERY`] when the store changed, and once more on quit.

use std::hash::{DefaultHasher, Hasher};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::app::App;
use crate::cache::{self, Cache};
use crate::config::Settings;
use crate::net::{Snapshot, Update};

/// The longest the running TUI waits to write what changed.
pub const SAVE_EVERY: Duration = Duration::from_secs(30);

/// Fills the app from the profile's cache when it belongs to `user_id` (the signed-in account),
/// and reopens the conversation [`App::reopen`] names in it. What this would ask the server
/// (history, read markers, receipts, profiles) is dropped: the server's snapshot replaces the
/// cached one and asks again. True when a cache was shown.
pub fn restore(app: &mut App, settings: &Settings, user_id: u64) -> bool {
    let Some(Cache { me, conversations, users, histories }) = Cache::load(&settings.profile_dir, user_id) else {
        return false;
    };
    // The conversation to reopen waits for the histories, so it opens on them.
    let reopen = app.reopen.take();
    let me = me.unwrap_or_default();
    app.on_update(Update::Snapshot(Box::new(Snapshot { me, conversations, users })));
    for h in histories {
        app.on_update(Update::History {
            conversation_id: h.conversation_id,
            before_seq: 0,
            after_seq: 0,
            messages: h.messages,
            has_more: h.has_more,
        });
    }
    app.reopen = reopen;
    app.reopen_last();
    app.effects.clear();
    app.requests.clear();
    true
}

/// The cache's bytes for the app's store, when it holds the account the profile is signed in as
/// (not before the first snapshot, nor after a sign-out).
fn bytes(settings: &Settings, app: &App) -> Option<Vec<u8>> {
    let user = app.store.me.user_id;
    let signed_in = settings.credentials().ok().flatten().is_some_and(|c| c.user_id == user);
    (user != 0 && signed_in).then(|| Cache::from_store(&app.store).to_bytes())
}

/// Writes the profile's cache from the app's store (what quitting does). False when the store
/// holds no account, or not the one signed in.
pub fn save(settings: &Settings, app: &App) -> anyhow::Result<bool> {
    let Some(bytes) = bytes(settings, app) else { return Ok(false) };
    cache::write(&settings.profile_dir, &bytes)?;
    Ok(true)
}

/// Writes the cache while the TUI runs: at most every [`SAVE_EVERY`], in the background, and
/// only when what it would write changed.
#[derive(Debug)]
pub struct Saver {
    checked: Instant,
    /// A hash of the bytes last written.
    written: Option<u64>,
    writing: Option<JoinHandle<()>>,
}

impl Default for Saver {
    fn default() -> Self {
        Self { checked: Instant::now(), written: None, writing: None }
    }
}

impl Saver {
    /// The bytes to write, when they differ from the last written.
    fn changed(&mut self, settings: &Settings, app: &App) -> Option<Vec<u8>> {
        let bytes = bytes(settings, app)?;
        let mut h = DefaultHasher::new();
        h.write(&bytes);
        let hash = h.finish();
        (self.written != Some(hash)).then(|| {
            self.written = Some(hash);
            bytes
        })
    }

    /// On the timer: starts a write when one is due and the store changed.
    pub fn tick(&mut self, settings: &Settings, app: &App) {
        if self.checked.elapsed() < SAVE_EVERY || self.writing.as_ref().is_some_and(|w| !w.is_finished()) {
            return;
        }
        self.checked = Instant::now();
        if let Some(bytes) = self.changed(settings, app) {
            let dir = settings.profile_dir.clone();
            self.writing = Some(tokio::task::spawn_blocking(move || {
                if let Err(e) = cache::write(&dir, &bytes) {
                    tracing::warn!("saving the cache: {e:#}");
                }
            }));
        }
    }

    /// On quit: waits for a write under way, then writes what changed since.
    pub async fn finish(&mut self, settings: &Settings, app: &App) {
        if let Some(w) = self.writing.take() {
            let _ = w.await;
        }
        if let Some(bytes) = self.changed(settings, app)
            && let Err(e) = cache::write(&settings.profile_dir, &bytes)
        {
            tracing::warn!("saving the cache: {e:#}");
        }
    }
}
