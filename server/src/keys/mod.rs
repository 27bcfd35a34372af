//! Encryption at rest, the operator's side (docs/operations.md "Encryption at rest"): the
//! resumable re-encryption job — contents stored in clear (a database encrypted after the fact)
//! or under an older data-key generation (after `keys rotate-data`) sealed again under the
//! current one, column by column, then the blobs — run in the background on one node at a time,
//! or in the foreground by `confab-server keys reencrypt`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::blobs::{BlobError, BlobKey, BlobStore, sealed};
use crate::error::ServerError;
use crate::store::keys::Scope;
use crate::store::keys_sql::{BlobRow, JobProgress, SealedColumn};
use crate::store::{Store, now_ms};

/// The job's name in `job_leases`.
pub const JOB: &str = "reencryption";
/// The blob pass's row in `encryption_jobs`.
const BLOB_JOB: &str = "blobs";
/// Rows one step reads.
const STEP_ROWS: u32 = 500;
/// Blobs one step reads.
const STEP_BLOBS: u32 = 50;
/// Bytes of a blob copied at a time.
const COPY_BYTES: u64 = 1024 * 1024;
/// How often the background job looks for work (a new generation).
const CHECK_EVERY: Duration = Duration::from_secs(30);
/// How often every node rereads the generation (and a node without the key looks for
/// encryption turned on elsewhere).
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// A pass starts this long after its generation began, when every node seals under it.
const SETTLE: Duration = Duration::from_secs(10);
/// The lease's length; renewed at every step.
const LEASE: Duration = Duration::from_secs(120);

/// Progress of one column (or the blobs) during a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// `message_texts`, …, `blobs`.
    pub name: &'static str,
    pub visited: u64,
    pub rewritten: u64,
    pub finished: bool,
}

/// The re-encryption job over a store and its blobs.
#[derive(Clone, Debug)]
pub struct Reencryption {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
}

fn blob_failed(e: BlobError) -> ServerError {
    ServerError::Unavailable(format!("blob store: {e}"))
}

impl Reencryption {
    pub fn new(store: Arc<dyn Store>, blobs: Arc<dyn BlobStore>) -> Self {
        Self { store, blobs }
    }

    /// Runs the job to the end for the current generation, calling `progress` after each step;
    /// returns what each column and the blobs saw. Nothing to do when encryption is off. A
    /// generation's pass starts 10 s after it began (every node seals under it by then).
    /// `holder`: the job's lease is taken (and renewed at every step) as this holder, so one
    /// runner at a time works. Stopping it anywhere loses nothing: the next run resumes where
    /// the last step left off.
    ///
    /// # Errors
    /// `FAILED_PRECONDITION` when another holder runs the job; when the store or the blob store
    /// fails, or a sealed value does not open (the job stops there, so the operator sees it).
    pub async fn run_once(
        &self,
        shutdown: &CancellationToken,
        holder: Option<&str>,
        mut progress: impl FnMut(&Progress),
    ) -> Result<Vec<Progress>, ServerError> {
        let mut out = Vec::new();
        let sealer = self.store.sealer();
        if !sealer.is_on() {
            return Ok(out);
        }
        sealer.refresh().await?;
        let wait = sealer.rotated_at_ms() + i64::try_from(SETTLE.as_millis()).unwrap_or(0) - now_ms();
        if wait > 0 {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(out),
                _ = tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())) => {}
            }
        }
        let lease = || async {
            let Some(h) = holder else { return Ok(()) };
            let ttl = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
            match self.store.claim_job(JOB, h, now_ms(), ttl).await? {
                true => Ok(()),
                false => Err(ServerError::FailedPrecondition(
                    "the re-encryption job is running elsewhere (a node's background job or another command); \
                     it resumes there"
                        .into(),
                )),
            }
        };
        let mut any = false;
        for col in SealedColumn::ALL {
            let mut p = Progress { name: col.name(), ..Progress::default() };
            loop {
                if shutdown.is_cancelled() {
                    return Ok(out);
                }
                lease().await?;
                let step = self.store.reencrypt_step(col, STEP_ROWS, now_ms()).await?;
                p.visited += step.visited;
                p.rewritten += step.rewritten;
                p.finished = step.finished;
                any |= step.visited > 0;
                progress(&p);
                if step.finished {
                    break;
                }
            }
            out.push(p);
        }
        lease().await?;
        let blobs = self.blob_pass(shutdown, &mut progress).await?;
        any |= blobs.visited > 0;
        out.push(blobs);
        if any {
            // The first generation's pass is the one that sealed what was stored in clear (a
            // database encrypted after the fact): SQLite rebuilds its file once then.
            self.store.settle_after_reencryption(sealer.generation() == 1).await?;
        }
        Ok(out)
    }

    /// Seals every blob stored in clear or under an older generation: a sealed copy written
    /// under a new name, the row pointed at it, the old object deleted.
    async fn blob_pass(
        &self,
        shutdown: &CancellationToken,
        progress: &mut impl FnMut(&Progress),
    ) -> Result<Progress, ServerError> {
        let sealer = self.store.sealer();
        let generation = sealer.generation();
        let mut job = match self.store.job(BLOB_JOB).await? {
            Some(j) if j.generation == generation => j,
            _ => JobProgress {
                name: BLOB_JOB.into(),
                generation,
                cursor: String::new(),
                rewritten: 0,
                finished_at_ms: None,
            },
        };
        let mut p = Progress { name: BLOB_JOB, finished: job.finished_at_ms.is_some(), ..Progress::default() };
        while job.finished_at_ms.is_none() && !shutdown.is_cancelled() {
            let after = job.cursor.parse::<i64>().unwrap_or(0);
            let page = self.store.blobs_after(after, STEP_BLOBS).await?;
            for b in &page {
                let stale = match b.key_id {
                    None => true,
                    Some(k) => sealer.key_generation(k).await? < generation,
                };
                if stale && self.reseal(b).await? {
                    p.rewritten += 1;
                    job.rewritten += 1;
                }
            }
            p.visited += page.len() as u64;
            if let Some(last) = page.last() {
                job.cursor = last.id.to_string();
            }
            if page.len() < STEP_BLOBS as usize {
                job.finished_at_ms = Some(now_ms());
                p.finished = true;
            }
            self.store.save_job(&job).await?;
            progress(&p);
        }
        Ok(p)
    }

    /// One blob sealed under the current media key; false when it moved or went meanwhile.
    async fn reseal(&self, b: &BlobRow) -> Result<bool, ServerError> {
        let sealer = self.store.sealer();
        let Some((key_id, dk)) = sealer.current_key(Scope::Media, now_ms()).await? else { return Ok(false) };
        let old_key = BlobKey::new(&b.sha256, b.stored_as);
        let old_dk = match b.key_id {
            Some(k) => Some(sealer.key(k).await?),
            None => None,
        };
        let mut fresh = [0u8; 8];
        getrandom::fill(&mut fresh).map_err(|e| ServerError::Internal(format!("random: {e}")))?;
        let to = i64::from_le_bytes(fresh) & i64::MAX;
        let new_key = BlobKey::new(&b.sha256, to);
        let (blobs, size) = (self.blobs.clone(), b.size);
        let plain = futures_util::stream::iter((0..size.div_ceil(COPY_BYTES)).map(move |i| i * COPY_BYTES))
            .then(move |start| {
                let (blobs, old_key, old_dk) = (blobs.clone(), old_key.clone(), old_dk.clone());
                async move {
                    let range = start..(start + COPY_BYTES).min(size);
                    match &old_dk {
                        None => blobs.read_blob(&old_key, range).await,
                        Some(dk) => sealed::read_sealed(blobs.as_ref(), &old_key, dk, size, range).await,
                    }
                }
            })
            .boxed();
        match sealed::put_sealed(self.blobs.as_ref(), &new_key, key_id, &dk, size, plain).await {
            Ok(_) => {}
            // Gone meanwhile (the collector removed it): nothing to seal.
            Err(BlobError::NotFound) => {
                let _ = self.blobs.delete_blob(&new_key).await;
                return Ok(false);
            }
            Err(e) => {
                let _ = self.blobs.delete_blob(&new_key).await;
                return Err(blob_failed(e));
            }
        }
        if self.store.move_blob(b.id, b.stored_as, to, key_id).await? {
            // A download that resolved the old name just before fails once and is asked again.
            self.blobs.delete_blob(&BlobKey::new(&b.sha256, b.stored_as)).await.map_err(blob_failed)?;
            Ok(true)
        } else {
            self.blobs.delete_blob(&new_key).await.map_err(blob_failed)?;
            Ok(false)
        }
    }

    /// The background job: every 30 s, on one node at a time (a lease in `job_leases`), runs
    /// until nothing is left for the current generation.
    pub async fn run(self, holder: String, shutdown: CancellationToken) {
        let mut first = true;
        loop {
            if !first {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(CHECK_EVERY) => {}
                }
            }
            first = false;
            if !self.store.sealer().is_on() {
                return;
            }
            let r = self
                .run_once(&shutdown, Some(&holder), |p| {
                    if p.rewritten > 0 && (p.finished || p.visited % 10_000 < u64::from(STEP_ROWS)) {
                        tracing::info!(column = p.name, visited = p.visited, sealed = p.rewritten, "re-encryption");
                    }
                })
                .await;
            match r {
                Ok(_) | Err(ServerError::FailedPrecondition(_)) => {}
                Err(e) => tracing::warn!(error = %e, "re-encryption stopped; it resumes at its next run"),
            }
        }
    }

    /// The data-key generation every few seconds, so `keys rotate-data` on any node takes effect
    /// on this one.
    pub async fn refresh_keys(store: Arc<dyn Store>, every: Duration, shutdown: CancellationToken) {
        if !store.sealer().watches() {
            return;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = store.sealer().refresh().await {
                tracing::warn!(error = %e, "could not reread the data-key generation");
            }
        }
    }
}
