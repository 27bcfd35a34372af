//! The search indexer (docs/protocol.md §23.6, docs/operations.md "Search"): an actor that keeps
//! the search documents in step with the conversation logs. It subscribes to the domain events:
//! each write committed on this node names the conversations it touched, and the indexer reads
//! their logs from its per-conversation watermark (`search_progress`) in batched passes, off the
//! write path. The logs are the durable source: a sweep at start and every `sweep_interval`
//! catches up whatever no event announced (a crash between commit and pass, another node's
//! commits, a database from before migration 0012). A search asks it to flush the conversations
//! it is about to read, so a search sees every write committed before it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::bus::{DomainEvent, Mailbox, Subscriber};
use crate::store::{ConvId, IndexProgress, Store};

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

/// When the indexer works (`search.*` settings).
#[derive(Clone, Copy, Debug)]
pub struct IndexTiming {
    /// How long new writes gather before a pass (searches flush what they read at once).
    pub delay: Duration,
    /// How often the indexer sweeps for conversations it has not read to the head.
    pub sweep_interval: Duration,
}

/// The handle: subscribe it to the bus, ask it to flush.
#[derive(Clone, Debug)]
pub struct Indexer(Arc<Mailbox<Cmd>>);

impl Default for Indexer {
    fn default() -> Self {
        Self::new()
    }
}

fn fold(text: &str) -> String {
    Folded::new(text).text
}

impl Indexer {
    /// A handle whose events queue until [`Indexer::run`] starts.
    pub fn new() -> Self {
        // A command that does not fit makes the next round sweep every lagging conversation.
        Self(Arc::new(Mailbox::new(QUEUE)))
    }

    /// The indexer's loop, until `shutdown` (at once when it already runs elsewhere).
    pub async fn run(self, store: Arc<dyn Store>, timing: IndexTiming, shutdown: CancellationToken) {
        if let Some(rx) = self.0.take_receiver() {
            run(store, rx, self.0.clone(), timing, shutdown).await;
        }
    }

    /// Indexes `convs` up to their heads now (ahead of anything queued) and returns their
    /// progress; `None` when the indexer is stopping or did not answer within `wait`.
    pub async fn flush(&self, convs: Vec<ConvId>, wait: Duration) -> Option<Vec<IndexProgress>> {
        let (reply, rx) = oneshot::channel();
        tokio::time::timeout(wait, async {
            self.0.send(Cmd::Flush(convs, reply)).await.then_some(())?;
            rx.await.ok()
        })
        .await
        .ok()
        .flatten()
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
        let convs = applied.conversations();
        if !convs.is_empty() {
            self.0.post(Cmd::Dirty(convs));
        }
    }
}

/// Store failures in a row after which a round of work is left to the next sweep.
const MAX_FAILURES: u32 = 3;

/// The indexer's task: its queue, the conversations waiting for a pass, and the store.
struct Worker {
    store: Arc<dyn Store>,
    rx: mpsc::Receiver<Cmd>,
    dirty: BTreeSet<ConvId>,
    shutdown: CancellationToken,
}

impl Worker {
    /// Runs passes over `convs` until each has reached the head it had at its first pass (a
    /// conversation written to faster than it is indexed does not hold the indexer). When
    /// `serve`, queued flushes are answered between passes, ahead of the rest of this work. After
    /// `MAX_FAILURES` store failures in a row the rest is left to the next sweep. Returns the
    /// progress of the conversations done.
    async fn index(&mut self, convs: Vec<ConvId>, serve: bool) -> Vec<IndexProgress> {
        let mut targets: HashMap<ConvId, i64> = HashMap::with_capacity(convs.len());
        let mut done = Vec::with_capacity(convs.len());
        let mut todo: VecDeque<ConvId> = convs.into();
        let mut failures = 0u32;
        while !todo.is_empty() && !self.shutdown.is_cancelled() {
            let chunk: Vec<ConvId> = todo.drain(..todo.len().min(PASS_CONVERSATIONS)).collect();
            // With encryption at rest the document is the folded text's blind tokens.
            let blind = self.store.sealer().blind_index().cloned();
            let document = move |text: &str| match &blind {
                Some(b) => b.document(&fold(text)),
                None => fold(text),
            };
            match self.store.index_pass(&chunk, &document).await {
                Ok((progress, written)) => {
                    failures = 0;
                    tracing::debug!(conversations = chunk.len(), written, "search index pass");
                    for p in progress {
                        let target = *targets.entry(p.conversation).or_insert(p.head_seq);
                        if p.indexed_seq < target {
                            todo.push_back(p.conversation);
                        } else {
                            done.push(p);
                        }
                    }
                }
                Err(e) if failures + 1 >= MAX_FAILURES => {
                    tracing::warn!(error = %e, conversations = todo.len() + chunk.len(), "search index pass failed again; left to the next sweep");
                    break;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "search index pass failed; trying again in 1s");
                    todo.extend(chunk);
                    tokio::select! {
                        () = self.shutdown.cancelled() => {}
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
            if serve {
                self.serve_queue().await;
            }
        }
        done
    }

    /// Takes what is queued: flushes are indexed and answered now, dirty conversations kept.
    async fn serve_queue(&mut self) {
        while let Ok(cmd) = self.rx.try_recv() {
            self.take(cmd).await;
        }
    }

    async fn take(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Dirty(convs) => self.dirty.extend(convs),
            Cmd::Flush(convs, reply) => {
                for c in &convs {
                    self.dirty.remove(c);
                }
                let progress = Box::pin(self.index(convs, false)).await;
                let _ = reply.send(progress);
            }
        }
    }

    /// Every conversation whose log the index has not read to the head, a chunk at a time.
    async fn sweep(&mut self) {
        let mut after = ConvId(0);
        let mut total = 0usize;
        loop {
            let lagging = match self.store.search_lagging(after, PASS_CONVERSATIONS as u32).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "search index sweep failed; next one at the next interval");
                    return;
                }
            };
            let Some(last) = lagging.last().copied() else { break };
            after = last;
            total += lagging.len();
            self.index(lagging, true).await;
            if self.shutdown.is_cancelled() {
                return;
            }
        }
        if total > 0 {
            tracing::info!(conversations = total, "search index caught up with the logs");
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    rx: mpsc::Receiver<Cmd>,
    inner: Arc<Mailbox<Cmd>>,
    timing: IndexTiming,
    shutdown: CancellationToken,
) {
    let mut w = Worker { store, rx, dirty: BTreeSet::new(), shutdown };
    // The first tick is at once: the start-up sweep.
    let mut ticks = tokio::time::interval(timing.sweep_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When the writes gathered in `dirty` get their pass: one transaction for a second's worth
    // of commits rather than one per commit (the writer's throughput pays for every commit the
    // indexer adds to the database's).
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let mut sweep_now = false;
        let wait_due = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = w.shutdown.cancelled() => return,
            cmd = w.rx.recv() => match cmd {
                Some(cmd) => w.take(cmd).await,
                None => return,
            },
            _ = ticks.tick() => sweep_now = true,
            () = inner.dropped() => {}
            () = wait_due => {
                due = None;
                let convs: Vec<ConvId> = std::mem::take(&mut w.dirty).into_iter().collect();
                w.index(convs, true).await;
            }
        }
        w.serve_queue().await;
        if inner.overflowed() {
            sweep_now = true;
        }
        if w.dirty.is_empty() {
            due = None;
        } else if due.is_none() {
            due = Some(tokio::time::Instant::now() + timing.delay);
        }
        if sweep_now {
            w.sweep().await;
        }
    }
}
