//! The media collector (docs/operations.md "Media"): every `gc_interval`, on one node of the
//! cluster at a time (a lease in `job_leases`), it deletes expired uploads and their chunks, the
//! media items nothing references (no live message, avatar or photo) once `gc_grace` old, the
//! blobs no media item or thumbnail uses, and bytes in the blob store the database does not know
//! (a crash between writing and recording them) once `gc_grace` old.

use tokio_util::sync::CancellationToken;

use super::{Media, key_of};
use crate::blobs::{BlobKey, UploadKey};
use crate::error::ServerError;
use crate::store::now_ms;

/// The job's name in `job_leases`.
pub const JOB: &str = "media-collector";

/// One pass in this many also sweeps the blob store for bytes the database does not know.
const SWEEP_EVERY: u64 = 6;

/// Rows each step of one pass removes at most; a pass that hit it runs again at once.
const BATCH: u32 = 1000;

/// What one pass removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub uploads: usize,
    pub media: usize,
    pub blobs: usize,
    /// Bytes in the blob store the database did not know.
    pub orphan_blobs: usize,
    pub orphan_uploads: usize,
}

impl Report {
    fn full(&self) -> bool {
        [self.uploads, self.media, self.blobs].iter().any(|n| *n >= BATCH as usize)
    }
}

/// The collector's loop, started with the server.
#[derive(Debug)]
pub struct Collector;

impl Collector {
    /// Runs passes every `gc_interval` until `shutdown`, as `holder` (this node's name).
    pub async fn run(media: Media, holder: String, shutdown: CancellationToken) {
        let every = media.0.config.gc_interval;
        let ttl = i64::try_from((every * 3).as_millis()).unwrap_or(i64::MAX);
        let mut passes: u64 = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match media.0.store.claim_job(JOB, &holder, now_ms(), ttl).await {
                Ok(true) => loop {
                    // Listing the whole blob store costs (S3 LIST requests, directory walks): the
                    // sweep for bytes the database does not know runs every SWEEP_EVERY passes.
                    let sweep = passes.is_multiple_of(SWEEP_EVERY);
                    passes += 1;
                    match media.collect(sweep).await {
                        Ok(r) => {
                            if r != Report::default() {
                                tracing::info!(?r, "media collector pass");
                            }
                            if !r.full() || shutdown.is_cancelled() {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "media collector pass failed; next one in {every:?}");
                            break;
                        }
                    }
                },
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "media collector could not take its lease"),
            }
        }
    }
}

impl Media {
    /// One whole collector pass now, the sweep of the blob store included (the loop's work, for
    /// operators' tools and tests).
    pub async fn collect_once(&self) -> Result<Report, ServerError> {
        self.collect(true).await
    }

    /// One collector pass; `sweep` adds the sweep of the blob store for bytes the database does
    /// not know (every blob listed).
    pub async fn collect(&self, sweep: bool) -> Result<Report, ServerError> {
        let now = now_ms();
        let grace = i64::try_from(self.0.config.gc_grace.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.saturating_sub(grace);
        let gone = self.0.store.collect_media(now, cutoff, BATCH).await?;
        let blobs = &self.0.blobs;
        for u in &gone.uploads {
            if let Some(k) = UploadKey::parse(&u.0) {
                blobs.delete_upload(&k).await.map_err(super::blob_error)?;
            }
        }
        for b in &gone.blobs {
            blobs.delete_blob(&key_of(b)).await.map_err(super::blob_error)?;
        }
        let mut report = Report {
            uploads: gone.uploads.len(),
            media: gone.media.len(),
            blobs: gone.blobs.len(),
            ..Default::default()
        };
        if !sweep {
            return Ok(report);
        }
        // Bytes the database does not know, older than the grace period.
        let mut after: Option<BlobKey> = None;
        loop {
            let page = blobs.list_blobs(after.as_ref(), 500).await.map_err(super::blob_error)?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            let generations: Vec<i64> = page.iter().filter_map(|b| generation_of(&b.key)).collect();
            let known = self.0.store.known_blobs(&generations).await?;
            for b in &page {
                let recorded = generation_of(&b.key).is_some_and(|g| known.contains(&g));
                if !recorded && b.modified_ms < cutoff {
                    blobs.delete_blob(&b.key).await.map_err(super::blob_error)?;
                    report.orphan_blobs += 1;
                }
            }
            if page.len() < 500 {
                break;
            }
        }
        let held = blobs.uploads().await.map_err(super::blob_error)?;
        let ids: Vec<String> = held.iter().map(|u| u.as_str().to_string()).collect();
        let known: std::collections::HashSet<String> = self.0.store.known_uploads(&ids).await?.into_iter().collect();
        for u in held.iter().filter(|u| !known.contains(u.as_str())) {
            blobs.delete_upload(u).await.map_err(super::blob_error)?;
            report.orphan_uploads += 1;
        }
        Ok(report)
    }
}

/// The generation a blob key ends with.
fn generation_of(k: &BlobKey) -> Option<i64> {
    k.as_str().rsplit_once('-').and_then(|(_, g)| g.parse().ok())
}
