//! The batched writer (an actor): every durable change to conversations (and the account
//! deletion that leaves them) goes through one queue; the writer takes whatever is queued (up to
//! a batch), applies it in one transaction (group commit), publishes each write's
//! [`DomainEvent::Committed`] on the bus in commit order, then answers each caller.
//! A lone write does not wait: the batch is whatever arrived while the previous commit ran.
//! On PostgreSQL two batches may be in flight (the next one's statements run while the
//! previous one commits) when their [`Footprint`]s share nothing; on SQLite, one (one write lock).
//! Each committed batch is observed in `confab_writer_batch_size` and
//! `confab_writer_batch_duration_seconds`.

mod footprint;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

pub use footprint::Footprint;

use crate::bus::{Bus, Commit, DomainEvent};
use crate::error::ServerError;
use crate::metrics::{Metrics, WriterMetrics};
use crate::store::{Backend, OpError, OpResult, Store, WriteOp};

/// Most writes committed together.
const MAX_BATCH: usize = 512;
/// Writes queued before callers wait.
const QUEUE: usize = 8192;

struct Job {
    op: WriteOp,
    reply: oneshot::Sender<Result<Outcome, ServerError>>,
}

/// What a committed write answers its caller; everything else it changed went to the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub result: Option<OpResult>,
    /// Sessions the write revoked (account deletion), for the caller to announce.
    pub revoked_sessions: Vec<String>,
}

/// Handle to the writer task.
#[derive(Clone, Debug)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl From<OpError> for ServerError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::NotFound(m) => ServerError::NotFound(m.into()),
            OpError::PermissionDenied(m) => ServerError::PermissionDenied(m.into()),
            OpError::FailedPrecondition(m) => ServerError::FailedPrecondition(m.into()),
            OpError::Invalid(field, m) => ServerError::invalid(field, m),
        }
    }
}

impl Writer {
    /// Starts the writer task, its batches observed nowhere (tools and tests); it ends when every
    /// handle is dropped.
    pub fn start(store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> Self {
        Self::spawn(store, bus, WriterMetrics::default())
    }

    /// Starts the writer task, observing each committed batch in `metrics` (the server's writer);
    /// it ends when every handle is dropped.
    pub fn start_with_metrics(store: Arc<dyn Store>, bus: Arc<dyn Bus>, metrics: &Metrics) -> Self {
        Self::spawn(store, bus, metrics.writer().clone())
    }

    fn spawn(store: Arc<dyn Store>, bus: Arc<dyn Bus>, metrics: WriterMetrics) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(rx, store, bus, metrics));
        Self { tx }
    }

    /// Applies one write; returns after its transaction committed and its domain event was
    /// published.
    ///
    /// # Errors
    /// The op's own refusal (`NOT_FOUND`, `PERMISSION_DENIED`, `FAILED_PRECONDITION`,
    /// `INVALID_ARGUMENT`), `INTERNAL` when the database refused this write's own data, and
    /// `UNAVAILABLE` when the store is down or failing (after one more try) or the server stopping.
    pub async fn submit(&self, op: WriteOp) -> Result<Outcome, ServerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { op, reply })
            .await
            .map_err(|_| ServerError::Unavailable("the server is shutting down".into()))?;
        rx.await.map_err(|_| ServerError::Unavailable("the write was interrupted".into()))?
    }
}

/// Batches in flight at once: two on PostgreSQL (one runs its statements while the other
/// commits), one on SQLite (a single write lock: a second would only wait for it).
pub fn lanes(backend: Backend) -> usize {
    match backend {
        Backend::Postgres => 2,
        Backend::Sqlite => 1,
    }
}

async fn run(mut rx: mpsc::Receiver<Job>, store: Arc<dyn Store>, bus: Arc<dyn Bus>, metrics: WriterMetrics) {
    let lanes = lanes(store.backend());
    let mut waiting: VecDeque<(Footprint, Job)> = VecDeque::new();
    // The batches in flight, each with its footprint; a batch's future yields its index here.
    let mut busy: Vec<Option<Footprint>> = vec![None; lanes];
    let mut running = FuturesUnordered::new();
    let mut open = true;
    loop {
        while open && waiting.len() < MAX_BATCH * lanes {
            match rx.try_recv() {
                Ok(j) => waiting.push_back((Footprint::of(&j.op), j)),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        while let Some(lane) = busy.iter().position(Option::is_none) {
            let mut in_flight = Footprint::default();
            busy.iter().flatten().for_each(|f| in_flight.extend(f));
            let (footprint, jobs) = take_batch(&mut waiting, &in_flight);
            if jobs.is_empty() {
                break;
            }
            busy[lane] = Some(footprint);
            let (store, bus, metrics) = (store.clone(), bus.clone(), metrics.clone());
            running.push(async move {
                apply(store.as_ref(), bus.as_ref(), &metrics, jobs, true).await;
                lane
            });
        }
        if !open && waiting.is_empty() && running.is_empty() {
            return;
        }
        tokio::select! {
            j = rx.recv(), if open && waiting.len() < MAX_BATCH * lanes => match j {
                Some(j) => waiting.push_back((Footprint::of(&j.op), j)),
                None => open = false,
            },
            Some(lane) = running.next(), if !running.is_empty() => busy[lane] = None,
        }
    }
}

/// The next batch from `waiting`, in order, up to [`MAX_BATCH`], of the writes that share no
/// row with the batches `in_flight`; a write that does stays, and so does every later one that
/// shares a row with it, so each key's writes keep their order. Returns the batch's footprint.
fn take_batch(waiting: &mut VecDeque<(Footprint, Job)>, in_flight: &Footprint) -> (Footprint, Vec<Job>) {
    let mut taken = Footprint::default();
    let mut held = Footprint::default();
    let mut jobs = Vec::new();
    let mut kept = VecDeque::with_capacity(waiting.len());
    for (f, job) in waiting.drain(..) {
        if jobs.len() < MAX_BATCH && !f.overlaps(in_flight) && !f.overlaps(&held) {
            taken.extend(&f);
            jobs.push(job);
        } else {
            held.extend(&f);
            kept.push_back((f, job));
        }
    }
    *waiting = kept;
    (taken, jobs)
}

/// Applies `jobs` in one transaction and answers them.
///
/// When the database refuses the data of some write (`StoreError::is_caused_by_the_data`), the
/// batch is split in two and each half applied alone, in order, down to the write that fails: it
/// fails alone (INTERNAL) and every other write of its batch commits, at the cost of about
/// 2·log2(n) extra transactions. Any other failure is about the database's state, not a write:
/// the batch is tried once more as a whole, then answered UNAVAILABLE (retry later), so a locked
/// or failing database never costs more than two attempts per batch (`may_retry` is false on the
/// second). Each transaction that commits is observed in `metrics` (size and time).
async fn apply(store: &dyn Store, bus: &dyn Bus, metrics: &WriterMetrics, mut jobs: Vec<Job>, may_retry: bool) {
    let ops: Vec<WriteOp> = jobs.iter().map(|j| j.op.clone()).collect();
    let started = Instant::now();
    match store.apply(&ops).await {
        Ok(results) => {
            metrics.batch_duration.observe(started.elapsed().as_secs_f64());
            metrics.batch_size.observe(ops.len() as f64);
            for (job, result) in jobs.into_iter().zip(results) {
                match result {
                    Ok(applied) => {
                        let outcome = Outcome {
                            result: applied.result.clone(),
                            revoked_sessions: applied.revoked_sessions.clone(),
                        };
                        bus.publish(DomainEvent::Committed(Arc::new(Commit::local(applied))));
                        let _ = job.reply.send(Ok(outcome));
                    }
                    Err(e) => {
                        let _ = job.reply.send(Err(e.into()));
                    }
                }
            }
        }
        Err(e) if e.is_caused_by_the_data() && jobs.len() == 1 => {
            tracing::error!(error = %e, "write refused by the database; answered INTERNAL");
            for job in jobs {
                let _ = job.reply.send(Err(ServerError::Internal("write failed".into())));
            }
        }
        Err(e) if e.is_caused_by_the_data() => {
            tracing::warn!(error = %e, batch = jobs.len(), "write batch refused by the database; applying its halves apart");
            let second = jobs.split_off(jobs.len() / 2);
            Box::pin(apply(store, bus, metrics, jobs, may_retry)).await;
            Box::pin(apply(store, bus, metrics, second, may_retry)).await;
        }
        Err(e) if may_retry && !e.is_unavailable() => {
            tracing::warn!(error = %e, batch = jobs.len(), "write batch failed; trying it once more");
            Box::pin(apply(store, bus, metrics, jobs, false)).await;
        }
        Err(e) => {
            tracing::warn!(error = %e, batch = jobs.len(), "write batch failed: store unavailable");
            for job in jobs {
                let _ = job.reply.send(Err(ServerError::Unavailable("the store is unavailable; retry".into())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ConvId, UserId};

    fn job(conv: i64, sender: i64) -> (Footprint, Job) {
        let op = WriteOp::Send {
            conversation_id: ConvId(conv),
            sender: UserId(sender),
            session_id: "s".into(),
            client_msg_id: format!("{conv}-{sender}"),
            text: "t".into(),
            reply_to: None,
            mentions: vec![],
            attachments: vec![],
            written_at_ms: 0,
            now_ms: 0,
        };
        (Footprint::of(&op), Job { op, reply: oneshot::channel().0 })
    }

    fn convs(jobs: &[Job]) -> Vec<i64> {
        jobs.iter()
            .map(|j| match &j.op {
                WriteOp::Send { conversation_id, .. } => conversation_id.0,
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn a_batch_takes_what_shares_nothing_with_the_one_in_flight_and_keeps_each_keys_order() {
        let mut waiting: VecDeque<_> = [job(1, 10), job(2, 20), job(1, 11), job(3, 30), job(2, 21)].into();
        let mut in_flight = Footprint::default();
        in_flight.extend(&job(1, 99).0);
        let (taken, jobs) = take_batch(&mut waiting, &in_flight);
        // Conversation 1 waits for the batch in flight; 2 and 3 go.
        assert_eq!(convs(&jobs), [2, 3, 2]);
        assert!(taken.overlaps(&job(3, 0).0) && !taken.overlaps(&job(1, 0).0));
        assert_eq!(
            waiting.iter().map(|(_, j)| j).map(|j| convs(std::slice::from_ref(j))[0]).collect::<Vec<_>>(),
            [1, 1]
        );
        // With nothing in flight, everything goes, in order.
        let (_, jobs) = take_batch(&mut waiting, &Footprint::default());
        assert_eq!(convs(&jobs), [1, 1]);
        assert!(waiting.is_empty());
    }

    #[test]
    fn a_held_write_holds_the_later_writes_of_its_keys() {
        // Sender 10 writes in conversation 1 (in flight) and then in 2: its write in 2 must not
        // overtake the one in 1 still waiting, nor may a later write in 2 overtake it.
        let mut waiting: VecDeque<_> = [job(1, 10), job(2, 10), job(2, 20), job(4, 40)].into();
        let mut in_flight = Footprint::default();
        in_flight.extend(&job(1, 5).0);
        let (_, jobs) = take_batch(&mut waiting, &in_flight);
        assert_eq!(convs(&jobs), [4]);
        assert_eq!(waiting.len(), 3);
    }

    #[test]
    fn a_batch_is_at_most_max_batch_and_postgres_alone_overlaps() {
        let mut waiting: VecDeque<_> = (0..MAX_BATCH as i64 + 3).map(|i| job(i, i)).collect();
        let (_, jobs) = take_batch(&mut waiting, &Footprint::default());
        assert_eq!(jobs.len(), MAX_BATCH);
        assert_eq!(waiting.len(), 3);
        assert_eq!(lanes(Backend::Postgres), 2);
        assert_eq!(lanes(Backend::Sqlite), 1);
    }
}
