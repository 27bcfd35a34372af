//! FinishUpload (§22.5): every chunk held, size and SHA-256 checked, the type sniffed against
//! the claim, images checked against the limits and processed (EXIF orientation, metadata
//! stripped, thumbnails) off the runtime, bytes stored once per content, the media item recorded.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use confab_protocol::v1;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::content::{self, MediaKind, SNIFF_BYTES};
use super::image::{ImageLimits, ProcessedImage};
use super::{Media, blob_error, info, key_of, upload_key};
use crate::blobs::{BlobError, UploadKey};
use crate::error::ServerError;
use crate::session::Caller;
use crate::store::{BlobRef, MediaId, MediaPurpose, MediaRec, NewMedia, StoreError, ThumbnailRec, UploadRec, now_ms};

/// How long a FinishUpload holds its upload: longer than any finish takes (a 50 MiB image).
const FINISH_LEASE_MS: i64 = 5 * 60 * 1000;

/// A random generation for a new blob key: positive, so it prints the same everywhere.
fn generation() -> i64 {
    let mut r = [0u8; 8];
    if getrandom::fill(&mut r).is_err() {
        r = now_ms().to_le_bytes();
    }
    i64::from_le_bytes(r) & i64::MAX
}

impl Media {
    /// §22.5: FinishUpload. A retry of a finished upload answers with the same media item.
    /// Only one FinishUpload of an upload runs at a time (a lease in the store); while it runs no
    /// chunk is accepted, and the bytes copied are hashed again, so what is stored is what was
    /// checked.
    pub async fn finish(&self, caller: &Caller, id: &str) -> Result<v1::FinishUploadResult, ServerError> {
        let up = self.own_upload(caller, id).await?;
        if let Some(done) = &up.media {
            // Read as the uploader reads it: NOT_FOUND once quarantined (§26.7).
            let m = self.readable(up.user, &done.0).await?;
            return Ok(v1::FinishUploadResult { media: Some(info(&m)) });
        }
        if !self.0.store.claim_finish(&up.id, now_ms(), FINISH_LEASE_MS).await? {
            return Err(ServerError::FailedPrecondition(
                "this upload is being finished by another request: ask again shortly".into(),
            ));
        }
        let result = match self.finish_claimed(&up).await {
            // Bytes an administrator quarantined (§26.7): this upload can never succeed.
            Err(ServerError::Store(StoreError::Quarantined)) => {
                self.drop_upload(&up, &upload_key(&up.id)?).await;
                Err(quarantined())
            }
            r => r,
        };
        if result.is_err()
            && let Err(e) = self.0.store.release_finish(&up.id).await
        {
            tracing::warn!(error = %e, "a failed FinishUpload's lease lapses on its own");
        }
        result
    }

    async fn finish_claimed(&self, up: &UploadRec) -> Result<v1::FinishUploadResult, ServerError> {
        let up = up.clone();
        let key = upload_key(&up.id)?;
        let parts = self.held_chunks(&up, &key).await?;
        let chunk = u64::from(up.chunk_size);
        let count = up.size.div_ceil(chunk);
        let complete = parts.len() as u64 == count
            && parts.iter().enumerate().all(|(i, p)| {
                let start = i as u64 * chunk;
                u64::from(p.index) == i as u64 && p.len == chunk.min(up.size - start)
            });
        if !complete {
            let held: u64 = parts.iter().map(|p| p.len).sum();
            return Err(ServerError::FailedPrecondition(format!(
                "the server holds {held} of {} bytes: send the missing chunks (GetUpload lists what it has)",
                up.size
            )));
        }
        // Pass 1: hash and sniff, one chunk in memory at a time.
        let mut hasher = Sha256::new();
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        for i in 0..count {
            let data = self.read_chunk(&up, &key, i as u32).await.map_err(blob_error)?;
            if head.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - head.len()).min(data.len());
                head.extend_from_slice(&data[..take]);
            }
            hasher.update(&data);
        }
        let sha: [u8; 32] = hasher.finalize().into();
        if let Some(claimed) = up.sha256
            && claimed != sha
        {
            return Err(ServerError::invalid(
                "begin_upload.sha256",
                "the bytes received do not have the SHA-256 given at BeginUpload: re-send the chunks, or cancel",
            ));
        }
        let sniffed = match content::check_claim(&up.mime_type, &head) {
            Ok(s) => s,
            Err(e) => {
                self.drop_upload(&up, &key).await;
                return Err(ServerError::invalid("begin_upload.mime_type", e.to_string()));
            }
        };
        let format = match sniffed.kind {
            MediaKind::Image(f) => Some(f),
            _ => None,
        };
        if up.purpose != MediaPurpose::Attachment && format.is_none() {
            self.drop_upload(&up, &key).await;
            return Err(ServerError::invalid(
                "begin_upload.purpose",
                "an avatar or a conversation photo is a JPEG, PNG, WebP or GIF image",
            ));
        }
        let media = match format {
            Some(format) => {
                let processed = match self.process_image(&key, &up, format, sha).await {
                    Ok(p) => p,
                    Err(e @ ServerError::InvalidArgument { .. }) => {
                        // The image was refused: it can never succeed.
                        self.drop_upload(&up, &key).await;
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                };
                self.store_image(&up, processed).await?
            }
            None => {
                let blob = self.store_parts(&up, &key, count, sha).await?;
                MediaRec {
                    id: MediaId::random(),
                    uploader: up.user,
                    purpose: up.purpose,
                    mime_type: sniffed.mime,
                    file_name: up.file_name.clone(),
                    blob,
                    width: 0,
                    height: 0,
                    created_at_ms: now_ms(),
                    thumbnails: Vec::new(),
                }
            }
        };
        self.0.store.finish_upload(&NewMedia { upload: up.id.clone(), media: media.clone() }).await?;
        if let Err(e) = self.0.blobs.delete_upload(&key).await {
            tracing::warn!(error = %e, "an upload's chunks stay until the collector removes them");
        }
        Ok(v1::FinishUploadResult { media: Some(info(&media)) })
    }

    /// Gives up an upload that can never succeed (wrong type, refused image): its quota and
    /// chunks are freed at once. Failures are left to the collector.
    async fn drop_upload(&self, up: &UploadRec, key: &UploadKey) {
        if let Err(e) = self.0.store.cancel_upload(&up.id, up.user).await {
            tracing::warn!(error = %e, "a refused upload stays until it expires");
        }
        if let Err(e) = self.0.blobs.delete_upload(key).await {
            tracing::warn!(error = %e, "a refused upload's chunks stay until the collector removes them");
        }
    }

    /// The whole image in memory (at most `max_upload_bytes`), then checked and processed on the
    /// blocking pool, `image_concurrency` at a time (the permit is taken before the bytes are
    /// read, so at most that many images are in memory). The bytes read must hash to `sha`.
    async fn process_image(
        &self,
        key: &UploadKey,
        up: &UploadRec,
        format: content::ImageFormat,
        sha: [u8; 32],
    ) -> Result<ProcessedImage, ServerError> {
        let limits = ImageLimits::from_config(&self.0.config);
        let count = up.size.div_ceil(u64::from(up.chunk_size));
        let _permit = self.0.images.acquire().await.map_err(|_| ServerError::Unavailable("shutting down".into()))?;
        let mut hasher = Sha256::new();
        let mut bytes = Vec::with_capacity(usize::try_from(up.size).unwrap_or(0));
        // The header alone decides whether the image may be decoded: check it on the first chunk
        // before reading the rest.
        for i in 0..count {
            let data = self.read_chunk(up, key, i as u32).await.map_err(blob_error)?;
            hasher.update(&data);
            bytes.extend_from_slice(&data);
            if i == 0
                && let Err(e) = super::image::probe(&bytes, format, &limits)
                && !matches!(e, content::ContentError::Undecodable(_))
            {
                return Err(ServerError::invalid("begin_upload", e.to_string()));
            }
        }
        if <[u8; 32]>::from(hasher.finalize()) != sha {
            return Err(changed());
        }
        tokio::task::spawn_blocking(move || super::image::process(&bytes, format, &limits))
            .await
            .map_err(|e| ServerError::Internal(format!("image task: {e}")))?
            .map_err(|e| ServerError::invalid("begin_upload", e.to_string()))
    }

    /// Stores a processed image and its thumbnails as blobs; the media item to record.
    async fn store_image(&self, up: &UploadRec, p: ProcessedImage) -> Result<MediaRec, ServerError> {
        let blob = self.store_bytes(Bytes::from(p.original)).await?;
        let mut thumbnails = Vec::with_capacity(p.thumbnails.len());
        for t in p.thumbnails {
            let b = self.store_bytes(Bytes::from(t.bytes)).await?;
            thumbnails.push(ThumbnailRec {
                name: t.name.to_string(),
                blob: b,
                mime_type: t.mime,
                width: t.width,
                height: t.height,
            });
        }
        Ok(MediaRec {
            id: MediaId::random(),
            uploader: up.user,
            purpose: up.purpose,
            mime_type: p.mime,
            file_name: up.file_name.clone(),
            blob,
            width: p.width,
            height: p.height,
            created_at_ms: now_ms(),
            thumbnails,
        })
    }

    /// Bytes in memory as a blob, stored once per content.
    async fn store_bytes(&self, data: Bytes) -> Result<BlobRef, ServerError> {
        let sha: [u8; 32] = Sha256::digest(&data).into();
        let size = data.len() as u64;
        let stored = self
            .store_blob(sha, size, move || futures_util::stream::iter([Ok::<_, BlobError>(data.clone())]).boxed())
            .await?;
        Ok(stored.blob)
    }

    /// An upload's chunks, in order, as a blob, stored once per content. The bytes copied are
    /// hashed as they go: a chunk replaced since the first pass makes them differ from `sha`, and
    /// the copy is deleted (`changed`), so a blob never holds other bytes than its name says.
    async fn store_parts(
        &self,
        up: &UploadRec,
        key: &UploadKey,
        count: u64,
        sha: [u8; 32],
    ) -> Result<BlobRef, ServerError> {
        let media = self.clone();
        let (up, key) = (up.clone(), key.clone());
        let size = up.size;
        let copied = Arc::new(Mutex::new(Sha256::new()));
        let hashed = copied.clone();
        let blob = self
            .store_blob(sha, size, move || {
                let (media, up, key, hashed) = (media.clone(), up.clone(), key.clone(), hashed.clone());
                futures_util::stream::iter(0..count)
                    .then(move |i| {
                        let (media, up, key, hashed) = (media.clone(), up.clone(), key.clone(), hashed.clone());
                        async move {
                            let data = media.read_chunk(&up, &key, i as u32).await?;
                            if let Ok(mut h) = hashed.lock() {
                                h.update(&data);
                            }
                            Ok(data)
                        }
                    })
                    .boxed()
            })
            .await?;
        let wrote = copied.lock().ok().filter(|_| blob.fresh).map(|h| <[u8; 32]>::from(h.clone().finalize()));
        if let Some(got) = wrote
            && got != sha
        {
            if let Err(e) = self.0.blobs.delete_blob(&key_of(&blob.blob)).await {
                tracing::warn!(error = %e, "a copy that changed stays until the collector removes it");
            }
            return Err(changed());
        }
        Ok(blob.blob)
    }

    /// Content addressing: the blob recorded for `sha` when there is one, else the bytes written
    /// under a new generation and recorded (when another writer recorded the same bytes first,
    /// its blob wins and this copy is deleted).
    async fn store_blob(
        &self,
        sha: [u8; 32],
        size: u64,
        data: impl Fn() -> futures_util::stream::BoxStream<'static, Result<Bytes, BlobError>>,
    ) -> Result<Stored, ServerError> {
        if let Some(b) = self.0.store.reuse_blob(&sha, now_ms()).await? {
            return Ok(Stored { blob: b, fresh: false });
        }
        let (mine, written) = self.put_blob(BlobRef::new(generation(), sha, size, None), data()).await?;
        if written != size {
            let _ = self.0.blobs.delete_blob(&key_of(&mine)).await;
            return Err(ServerError::Internal(format!("stored {written} bytes of {size}")));
        }
        let recorded = match self.0.store.add_blob(mine, now_ms()).await {
            Err(StoreError::Quarantined) => {
                // The same bytes were recorded first, and quarantined: this copy is not recorded.
                if let Err(e) = self.0.blobs.delete_blob(&key_of(&mine)).await {
                    tracing::warn!(error = %e, "an unrecorded blob stays until the collector removes it");
                }
                return Err(StoreError::Quarantined.into());
            }
            r => r?,
        };
        let fresh = recorded.generation == mine.generation;
        if !fresh && let Err(e) = self.0.blobs.delete_blob(&key_of(&mine)).await {
            tracing::warn!(error = %e, "a duplicate blob stays until the collector removes it");
        }
        Ok(Stored { blob: recorded, fresh })
    }
}

/// A blob [`Media::store_blob`] found or wrote.
struct Stored {
    blob: BlobRef,
    /// Written now (not an earlier copy of the same bytes).
    fresh: bool,
}

/// The answer to an upload of bytes an administrator quarantined (§26.7): it says no more.
fn quarantined() -> ServerError {
    ServerError::FailedPrecondition("this content is quarantined".into())
}

/// The answer when an upload's chunks changed while FinishUpload ran.
fn changed() -> ServerError {
    ServerError::FailedPrecondition("the upload's chunks changed while it was being finished: finish it again".into())
}
