//! The push planner (docs/protocol.md §24.2): an actor that reads conversation logs from its
//! per-conversation watermark (`push_progress`) and writes a ledger row for every device an
//! entry notifies. Commits on this node wake it (passes at least [`pass_gap`] apart); the logs are
//! the durable source, so a sweep at start and every `push.sweep_interval` catches up what no
//! event announced (a crash between commit and pass, another node's commits, a node with
//! `push.enabled = false`).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::Mailbox;
use crate::config::PushConfig;
use crate::store::{ConvId, PlanContext, Store, now_ms};

use super::sender::Wake;

/// Whether a session has a live connection anywhere.
pub(super) type Connected = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Commands queued before the subscriber falls back to a sweep.
const QUEUE: usize = 4096;
/// Conversations in one pass (one transaction).
const PASS_CONVERSATIONS: usize = 256;
/// Store failures in a row after which a round of work is left to the next sweep.
const MAX_FAILURES: u32 = 3;

/// The handle: the subscriber tells it which conversations have new entries.
#[derive(Clone, Debug)]
pub struct Planner(Arc<Mailbox<Vec<ConvId>>>);

impl Default for Planner {
    fn default() -> Self {
        Self::new()
    }
}

impl Planner {
    /// A handle whose conversations queue until the planner runs.
    pub fn new() -> Self {
        Self(Arc::new(Mailbox::new(QUEUE)))
    }

    /// Conversations with new log entries (from the bus; never blocks).
    pub(super) fn dirty(&self, convs: Vec<ConvId>) {
        if !convs.is_empty() {
            self.0.post(convs);
        }
    }

    /// The planner's loop, until `shutdown`.
    pub(super) async fn run(
        self,
        store: Arc<dyn Store>,
        config: PushConfig,
        connected: Connected,
        sender: Wake,
        shutdown: CancellationToken,
    ) {
        let Some(mut rx) = self.0.take_receiver() else { return };
        let w = Worker { store, config, connected, sender, shutdown: shutdown.clone() };
        let mut ticks = tokio::time::interval(w.config.sweep_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let gap = pass_gap(w.config.ack_wait);
        let mut last_pass: Option<tokio::time::Instant> = None;
        loop {
            let mut sweep = false;
            let mut convs = BTreeSet::new();
            tokio::select! {
                () = shutdown.cancelled() => return,
                got = rx.recv() => match got {
                    Some(c) => convs.extend(c),
                    None => return,
                },
                _ = ticks.tick() => sweep = true,
                () = self.0.dropped() => {}
            }
            // Passes are at least `gap` apart, so a busy writer's commits share one.
            if let Some(at) = last_pass.filter(|_| !convs.is_empty()) {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep_until(at + gap) => {}
                }
            }
            // Whatever else is queued shares the pass.
            while let Ok(c) = rx.try_recv() {
                convs.extend(c);
            }
            if self.0.overflowed() {
                sweep = true;
            }
            if !convs.is_empty() {
                last_pass = Some(tokio::time::Instant::now());
                w.plan(convs.into_iter().collect()).await;
            }
            if sweep {
                w.sweep().await;
            }
        }
    }
}

/// The least time between two passes woken by commits: a tenth of `ack_wait` (a push waits that
/// long for the device's Ack anyway, §24.2), at most 100 ms. Each pass is a transaction (a
/// commit, an fsync on PostgreSQL), and under load (W4, docs/benchmarks.md) one followed nearly
/// every commit of the writer.
fn pass_gap(ack_wait: Duration) -> Duration {
    (ack_wait / 10).min(Duration::from_millis(100))
}

struct Worker {
    store: Arc<dyn Store>,
    config: PushConfig,
    connected: Connected,
    sender: Wake,
    shutdown: CancellationToken,
}

impl Worker {
    /// Passes over `convs` until each has reached the head it had at its first pass.
    async fn plan(&self, convs: Vec<ConvId>) {
        let mut targets: HashMap<ConvId, i64> = HashMap::with_capacity(convs.len());
        let mut todo: VecDeque<ConvId> = convs.into();
        let mut failures = 0u32;
        while !todo.is_empty() && !self.shutdown.is_cancelled() {
            let chunk: Vec<ConvId> = todo.drain(..todo.len().min(PASS_CONVERSATIONS)).collect();
            let connected = self.connected.clone();
            let is_connected = move |s: &str| connected(s);
            let cx = PlanContext {
                now_ms: now_ms(),
                max_age_ms: self.config.max_age.as_millis() as i64,
                ack_wait_ms: self.config.ack_wait.as_millis() as i64,
                connected: &is_connected,
            };
            match self.store.plan_push_pass(&chunk, &cx).await {
                Ok((progress, written)) => {
                    failures = 0;
                    if written > 0 {
                        tracing::debug!(conversations = chunk.len(), written, "push plan pass");
                        self.sender.wake();
                    }
                    for p in progress {
                        let target = *targets.entry(p.conversation).or_insert(p.head_seq);
                        if p.planned_seq < target {
                            todo.push_back(p.conversation);
                        }
                    }
                }
                Err(e) if failures + 1 >= MAX_FAILURES => {
                    tracing::warn!(error = %e, "push plan pass failed again; left to the next sweep");
                    return;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "push plan pass failed; trying again in 1s");
                    todo.extend(chunk);
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// Every conversation whose log the planner has not read to the head, a chunk at a time.
    async fn sweep(&self) {
        let mut after = ConvId(0);
        loop {
            let lagging = match self.store.push_lagging(after, PASS_CONVERSATIONS as u32).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "push planner sweep failed; next one at the next interval");
                    return;
                }
            };
            let Some(last) = lagging.last().copied() else { return };
            after = last;
            self.plan(lagging).await;
            if self.shutdown.is_cancelled() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_are_a_tenth_of_the_ack_wait_apart_at_most_100_ms() {
        assert_eq!(pass_gap(Duration::from_secs(5)), Duration::from_millis(100));
        assert_eq!(pass_gap(Duration::from_millis(500)), Duration::from_millis(50));
        assert_eq!(pass_gap(Duration::ZERO), Duration::ZERO, "no ack wait: a pass per wake-up");
    }
}
