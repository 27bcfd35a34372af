//! Coalesces the "last seen" writes of sessions (§11.5, §11.8 `last_seen_at_ms`): every
//! authentication records its session's use, and a connect storm made that one UPDATE (and on
//! SQLite one write-lock turn) per connection. An actor gathers the touches, keeps the latest per
//! session, and writes them together at most every [`INTERVAL`] (or at [`MAX_PENDING`]
//! sessions) in one transaction; `ListSessions` is at most that much behind.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::store::{SessionTouch, Store};

/// How long a touch may wait before it is written.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Sessions gathered before a write is due whatever the time.
pub const MAX_PENDING: usize = 4096;
/// Commands the actor may have queued; a touch that finds the queue full is dropped (the next
/// authentication of that session records it again).
const QUEUE: usize = 8192;

enum Command {
    Touch(SessionTouch),
    /// Write what is pending now; answered once written.
    Flush(oneshot::Sender<()>),
}

/// Handle to the touch actor (cheap to clone).
#[derive(Clone, Debug)]
pub struct Toucher {
    tx: mpsc::Sender<Command>,
}

impl Toucher {
    /// Starts the actor on `store`.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, rx));
        Self { tx }
    }

    /// Records that session `id` was used at `at_ms` (milliseconds since the Unix epoch);
    /// written within [`INTERVAL`]. Never waits.
    pub fn touch(&self, id: &str, at_ms: i64) {
        let _ = self.tx.try_send(Command::Touch(SessionTouch { id: id.to_owned(), at_ms }));
    }

    /// Writes every touch recorded so far and waits until it is written (shutdown, tests).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Command>) {
    let mut pending: HashMap<String, i64> = HashMap::new();
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut flushed = None;
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Command::Touch(t)) => {
                    let at = pending.entry(t.id).or_insert(t.at_ms);
                    *at = (*at).max(t.at_ms);
                    if pending.len() < MAX_PENDING {
                        continue;
                    }
                }
                Some(Command::Flush(done)) => flushed = Some(done),
                None => {
                    write(store.as_ref(), &mut pending).await;
                    return;
                }
            },
            _ = tick.tick() => {}
        }
        write(store.as_ref(), &mut pending).await;
        if let Some(done) = flushed {
            let _ = done.send(());
        }
    }
}

/// Writes the pending touches in one transaction; a failure is logged and the touches dropped
/// (they are advisory: the next use of each session records it again).
async fn write(store: &dyn Store, pending: &mut HashMap<String, i64>) {
    if pending.is_empty() {
        return;
    }
    let touches: Vec<SessionTouch> = pending.drain().map(|(id, at_ms)| SessionTouch { id, at_ms }).collect();
    if let Err(e) = store.touch_sessions(&touches).await {
        tracing::warn!(error = %e, sessions = touches.len(), "recording sessions' last use failed");
    }
}
