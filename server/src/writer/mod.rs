//! The batched writer (an actor): every durable change to conversations (and the account
//! deletion that leaves them) goes through one queue; the writer takes whatever is queued (up to
//! a batch), applies it in one transaction (group commit), publishes each write's
//! [`DomainEvent::Committed`] on the bus in commit order, then answers each caller.
//! A lone write does not wait: the batch is whatever arrived while the previous commit ran.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::bus::{Bus, Commit, DomainEvent};
use crate::error::ServerError;
use crate::store::{OpError, OpResult, Store, WriteOp};

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
    /// Starts the writer task; it ends when every handle is dropped.
    pub fn start(store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(rx, store, bus));
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

async fn run(mut rx: mpsc::Receiver<Job>, store: Arc<dyn Store>, bus: Arc<dyn Bus>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        apply(store.as_ref(), bus.as_ref(), std::mem::take(&mut jobs), true).await;
    }
}

/// Applies `jobs` in one transaction and answers them.
///
/// When the database refuses the data of some write (`StoreError::is_caused_by_the_data`), the
/// batch is split in two and each half applied alone, in order, down to the write that fails: it
/// fails alone (INTERNAL) and every other write of its batch commits, at the cost of about
/// 2·log2(n) extra transactions. Any other failure is about the database's state, not a write:
/// the batch is tried once more as a whole, then answered UNAVAILABLE (retry later), so a locked
/// or failing database never costs more than two attempts per batch (`may_retry` is false on the
/// second).
async fn apply(store: &dyn Store, bus: &dyn Bus, mut jobs: Vec<Job>, may_retry: bool) {
    let ops: Vec<WriteOp> = jobs.iter().map(|j| j.op.clone()).collect();
    match store.apply(&ops).await {
        Ok(results) => {
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
            Box::pin(apply(store, bus, jobs, may_retry)).await;
            Box::pin(apply(store, bus, second, may_retry)).await;
        }
        Err(e) if may_retry && !e.is_unavailable() => {
            tracing::warn!(error = %e, batch = jobs.len(), "write batch failed; trying it once more");
            Box::pin(apply(store, bus, jobs, false)).await;
        }
        Err(e) => {
            tracing::warn!(error = %e, batch = jobs.len(), "write batch failed: store unavailable");
            for job in jobs {
                let _ = job.reply.send(Err(ServerError::Unavailable("the store is unavailable; retry".into())));
            }
        }
    }
}
