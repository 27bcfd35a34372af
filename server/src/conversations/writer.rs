//! The batched writer (an actor): every durable change to conversations goes through one queue;
//! the writer takes whatever is queued (up to a batch), applies it in one transaction (group
//! commit), then answers each caller and delivers the resulting events live in commit order.
//! A lone write does not wait: the batch is whatever arrived while the previous commit ran.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::wire;
use crate::error::ServerError;
use crate::hub::Hub;
use crate::store::{Applied, OpError, Store, WriteOp};

/// Most writes committed together.
const MAX_BATCH: usize = 512;
/// Writes queued before callers wait.
const QUEUE: usize = 8192;

struct Job {
    op: WriteOp,
    reply: oneshot::Sender<Result<Applied, ServerError>>,
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
    pub fn start(store: Arc<dyn Store>, hub: Arc<Hub>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(rx, store, hub));
        Self { tx }
    }

    /// Applies one write; returns after its transaction committed.
    pub async fn submit(&self, op: WriteOp) -> Result<Applied, ServerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { op, reply })
            .await
            .map_err(|_| ServerError::Unavailable("the server is shutting down".into()))?;
        rx.await.map_err(|_| ServerError::Unavailable("the write was interrupted".into()))?
    }
}

async fn run(mut rx: mpsc::Receiver<Job>, store: Arc<dyn Store>, hub: Arc<Hub>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let ops: Vec<WriteOp> = jobs.iter().map(|j| j.op.clone()).collect();
        match store.apply(&ops).await {
            Ok(results) => {
                for (job, result) in jobs.drain(..).zip(results) {
                    match result {
                        Ok(applied) => {
                            deliver(&hub, &applied);
                            let _ = job.reply.send(Ok(applied));
                        }
                        Err(e) => {
                            let _ = job.reply.send(Err(e.into()));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = jobs.len(), "write batch failed");
                let unavailable = e.is_unavailable();
                for job in jobs.drain(..) {
                    let err = if unavailable {
                        ServerError::Unavailable("the store is unavailable; retry".into())
                    } else {
                        ServerError::Internal("write batch failed".into())
                    };
                    let _ = job.reply.send(Err(err));
                }
            }
        }
    }
}

/// Live delivery in commit order: each event encoded once, shared by every member's connections.
fn deliver(hub: &Hub, applied: &Applied) {
    for e in &applied.events {
        hub.deliver(&applied.audience, &wire::event_frame_bytes(e));
    }
    for u in &applied.user_updates {
        hub.deliver(&[u.user_id], &wire::user_update_frame_bytes(u));
    }
    for r in &applied.receipts {
        hub.deliver(&applied.audience, &wire::receipt_frame_bytes(r));
    }
    for n in &applied.notifications {
        hub.deliver(&[n.user_id], &wire::notification_frame_bytes(n));
    }
    for c in &applied.cascade {
        deliver(hub, c);
    }
}
