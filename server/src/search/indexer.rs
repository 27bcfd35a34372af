//! The search indexer (docs/protocol.md §23.6, docs/operations.md "Search"): an actor that keeps
//! the search documents in step with the conversation logs. It subscribes to the domain events:
//! each write committed on this node names the conversations it touched, and the indexer reads
//! their logs from its per-conversation watermark (`search_progress`) in batched passes, off the
//! write path. The logs are the durable source: a sweep at start and every `sweep_interval`
//! catches up whatever no event announced (a crash between commit and pass, another node's
//! commits, a database from before migration 0012). A search asks it to flush the conversations
//! it is about to read, so a search sees every write committed before it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::bus::{DomainEvent, Subscriber};
use crate::store::{Applied, ConvId, IndexProgress, Store};

use super::normalize::Folded;

/// Commands queued before the subscriber falls back to a sweep.
const QUEUE: usize = 4096;
/// Conversations in one pass (one transaction).
const PASS_CONVERSATIONS: usize = 256;

enum Cmd {
    /// Conversations with new log entries.
    Dirty(Vec<ConvId>),
    /// Index these now and answer with their progress.
    Flush(Vec<ConvId>, oneshot::Sender<Vec<IndexProgress>>),
}

/// The handle: subscribe it to the bus, ask it to flush.
#[derive(Clone, Debug)]
pub struct Indexer(Arc<Inner>);

impl Default for Indexer {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Cmd>,
    /// The queue's other end until [`Indexer::run`] takes it.
    rx: std::sync::Mutex<Option<mpsc::Receiver<Cmd>>>,
    /// Set when a command did not fit: the next round sweeps every lagging conversation.
    overflow: AtomicBool,
    wake: Notify,
}

fn fold(text: &str) -> String {
    Folded::new(text).text
}

impl Indexer {
    /// A handle whose events queue until [`Indexer::run`] starts.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self(Arc::new(Inner {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            overflow: AtomicBool::new(false),
            wake: Notify::new(),
        }))
    }

    /// The indexer's loop, until `shutdown` (at once when it already runs elsewhere).
    pub async fn run(self, store: Arc<dyn Store>, sweep_interval: Duration, shutdown: CancellationToken) {
        let rx = self.0.rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(rx) = rx {
            run(store, rx, self.0.clone(), sweep_interval, shutdown).await;
        }
    }

    /// Indexes `convs` up to their heads now (ahead of anything queued) and returns their
    /// progress; `None` when the indexer is stopping or did not answer within `wait`.
    pub async fn flush(&self, convs: Vec<ConvId>, wait: Duration) -> Option<Vec<IndexProgress>> {
        let (reply, rx) = oneshot::channel();
        tokio::time::timeout(wait, async {
            self.0.tx.send(Cmd::Flush(convs, reply)).await.ok()?;
            rx.await.ok()
        })
        .await
        .ok()
        .flatten()
    }
}

fn touched(applied: &Applied, out: &mut Vec<ConvId>) {
    for e in &applied.events {
        if !out.contains(&e.conversation_id) {
            out.push(e.conversation_id);
        }
    }
    for c in &applied.cascade {
        touched(c, out);
    }
}

impl Subscriber for Indexer {
    fn name(&self) -> &'static str {
        "search-indexer"
    }

    fn handle(&self, event: &DomainEvent) {
        // Only where the write was committed: every node indexing every commit would have the
        // nodes queue on each other's progress rows.
        let DomainEvent::Committed(c) = event else { return };
        let Some(applied) = &c.applied else { return };
        let mut convs = Vec::new();
        touched(applied, &mut convs);
        if !convs.is_empty() && self.0.tx.try_send(Cmd::Dirty(convs)).is_err() {
            self.0.overflow.store(true, Ordering::Release);
            self.0.wake.notify_one();
        }
    }
}

/// Runs passes over `convs` until each is indexed to the head it had; returns the progress of
/// each. A failing store is retried after a second, until `shutdown`.
async fn index(store: &dyn Store, convs: Vec<ConvId>, shutdown: &CancellationToken) -> Vec<IndexProgress> {
    let mut done = Vec::with_capacity(convs.len());
    let mut todo = convs;
    while !todo.is_empty() && !shutdown.is_cancelled() {
        let chunk: Vec<ConvId> = todo.drain(..todo.len().min(PASS_CONVERSATIONS)).collect();
        match store.index_pass(&chunk, &fold).await {
            Ok((progress, written)) => {
                tracing::debug!(conversations = chunk.len(), written, "search index pass");
                for p in progress {
                    if p.indexed_seq < p.head_seq {
                        todo.push(p.conversation);
                    } else {
                        done.push(p);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "search index pass failed; trying again in 1s");
                todo.extend(chunk);
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    done
}

/// Every conversation whose log the index has not read to the head, a pass at a time, taking
/// flushes between passes so a search never waits for a whole sweep.
async fn sweep(
    store: &dyn Store,
    rx: &mut mpsc::Receiver<Cmd>,
    dirty: &mut BTreeSet<ConvId>,
    shutdown: &CancellationToken,
) {
    let mut after = ConvId(0);
    let mut total = 0usize;
    loop {
        let lagging = match store.search_lagging(after, PASS_CONVERSATIONS as u32).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "search index sweep failed; next one at the next interval");
                return;
            }
        };
        let Some(last) = lagging.last().copied() else { break };
        after = last;
        total += lagging.len();
        index(store, lagging, shutdown).await;
        while let Ok(cmd) = rx.try_recv() {
            take(cmd, store, dirty, shutdown).await;
        }
        if shutdown.is_cancelled() {
            return;
        }
    }
    if total > 0 {
        tracing::info!(conversations = total, "search index caught up with the logs");
    }
}

async fn take(cmd: Cmd, store: &dyn Store, dirty: &mut BTreeSet<ConvId>, shutdown: &CancellationToken) {
    match cmd {
        Cmd::Dirty(convs) => dirty.extend(convs),
        Cmd::Flush(convs, reply) => {
            for c in &convs {
                dirty.remove(c);
            }
            let _ = reply.send(index(store, convs, shutdown).await);
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Cmd>,
    inner: Arc<Inner>,
    sweep_interval: Duration,
    shutdown: CancellationToken,
) {
    let mut dirty: BTreeSet<ConvId> = BTreeSet::new();
    // The first tick is at once: the start-up sweep.
    let mut ticks = tokio::time::interval(sweep_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut sweep_now = false;
        tokio::select! {
            () = shutdown.cancelled() => return,
            cmd = rx.recv() => match cmd {
                Some(cmd) => take(cmd, store.as_ref(), &mut dirty, &shutdown).await,
                None => return,
            },
            _ = ticks.tick() => sweep_now = true,
            () = inner.wake.notified() => {}
        }
        while let Ok(cmd) = rx.try_recv() {
            take(cmd, store.as_ref(), &mut dirty, &shutdown).await;
        }
        if inner.overflow.swap(false, Ordering::AcqRel) {
            sweep_now = true;
        }
        if !dirty.is_empty() {
            let convs: Vec<ConvId> = std::mem::take(&mut dirty).into_iter().collect();
            index(store.as_ref(), convs, &shutdown).await;
        }
        if sweep_now {
            sweep(store.as_ref(), &mut rx, &mut dirty, &shutdown).await;
        }
    }
}
