//! Uploads (§22.2-§22.4, §22.9): BeginUpload against the limits, chunks by offset (from
//! UploadChunk or a QUIC stream), what the server holds, CancelUpload.

use bytes::{Bytes, BytesMut};
use confab_protocol::v1;

use super::{Media, no_upload, purpose, upload_key};
use crate::blobs::PartInfo;
use crate::error::ServerError;
use crate::session::Caller;
use crate::store::{NewUpload, UploadId, UploadLimits, UploadRec, UploadRefusal, now_ms};

/// Longest file name kept, in bytes (§22.2).
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// A file name as given: no path separators, at most 255 bytes (the text rules of §5.4 already
/// hold: no control characters, not blank).
pub(crate) fn file_name(field: &'static str, name: &str) -> Result<String, ServerError> {
    if name.len() > MAX_FILE_NAME_BYTES {
        return Err(ServerError::invalid(field, format!("at most {MAX_FILE_NAME_BYTES} bytes")));
    }
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(ServerError::invalid(field, "a file name, without a path"));
    }
    Ok(name.to_string())
}

/// The ranges `parts` cover, merged.
pub(crate) fn ranges(parts: &[PartInfo], chunk: u32) -> Vec<v1::ByteRange> {
    let mut out: Vec<v1::ByteRange> = Vec::new();
    for p in parts {
        let start = u64::from(p.index) * u64::from(chunk);
        let end = start + p.len;
        match out.last_mut() {
            Some(last) if last.end == start => last.end = end,
            _ => out.push(v1::ByteRange { start, end }),
        }
    }
    out
}

/// FAILED_PRECONDITION when `up` takes no more chunks: finished, or being finished.
fn open_for_chunks(up: &UploadRec) -> Result<(), ServerError> {
    if up.media.is_some() {
        return Err(ServerError::FailedPrecondition("this upload is finished".into()));
    }
    if up.finishing_until_ms.is_some_and(|t| t > now_ms()) {
        return Err(ServerError::FailedPrecondition("this upload is being finished: no more chunks".into()));
    }
    Ok(())
}

/// The chunk that starts at `offset` of `up`: its index and exact length, or INVALID_ARGUMENT.
pub(crate) fn chunk_at(up: &UploadRec, offset: u64, field: &'static str) -> Result<(u32, u64), ServerError> {
    let chunk = u64::from(up.chunk_size);
    if !offset.is_multiple_of(chunk) || offset >= up.size {
        return Err(ServerError::invalid(
            field,
            format!("offset must be a multiple of the chunk size {chunk} below the size {}", up.size),
        ));
    }
    let index = u32::try_from(offset / chunk).map_err(|_| ServerError::invalid(field, "offset out of range"))?;
    Ok((index, chunk.min(up.size - offset)))
}

impl Media {
    /// §22.2: BeginUpload.
    pub async fn begin(&self, caller: &Caller, r: &v1::BeginUpload) -> Result<v1::BeginUploadResult, ServerError> {
        let cfg = &self.0.config;
        if r.size == 0 {
            return Err(ServerError::invalid("begin_upload.size", "an upload has at least one byte"));
        }
        if r.size > cfg.max_upload_bytes {
            return Err(ServerError::TooLarge {
                field: "begin_upload.size",
                message: format!("{} bytes is over this server's limit of {} bytes", r.size, cfg.max_upload_bytes),
            });
        }
        let mime_type = super::content::normalize_mime(&r.mime_type)
            .map_err(|e| ServerError::invalid("begin_upload.mime_type", e.to_string()))?;
        let sha256 = match r.sha256.len() {
            0 => None,
            32 => {
                let mut s = [0u8; 32];
                s.copy_from_slice(&r.sha256);
                Some(s)
            }
            _ => return Err(ServerError::invalid("begin_upload.sha256", "a SHA-256 is 32 bytes (or empty)")),
        };
        let purpose = purpose("begin_upload.purpose", r.purpose)?;
        let file_name = file_name("begin_upload.file_name", &r.file_name)?;
        let now = now_ms();
        let ttl = i64::try_from(cfg.upload_ttl.as_millis()).unwrap_or(i64::MAX);
        let up = NewUpload {
            id: UploadId::random(),
            user: caller.user_id,
            size: r.size,
            mime_type,
            sha256,
            purpose,
            file_name,
            chunk_size: cfg.chunk_bytes,
            created_at_ms: now,
            expires_at_ms: now.saturating_add(ttl),
        };
        let limits =
            UploadLimits { max_pending: cfg.max_pending_uploads_per_user, quota_bytes: cfg.quota_bytes_per_user };
        match self.0.store.begin_upload(&up, limits).await? {
            Ok(()) => Ok(v1::BeginUploadResult {
                upload_id: up.id.0,
                chunk_size: up.chunk_size,
                expires_at_ms: up.expires_at_ms.max(0) as u64,
            }),
            Err(UploadRefusal::TooManyPending { max }) => Err(ServerError::FailedPrecondition(format!(
                "{max} unfinished uploads already: finish or cancel one first"
            ))),
            Err(UploadRefusal::OverQuota { used, quota }) => Err(ServerError::TooLarge {
                field: "begin_upload.size",
                message: format!("over your media quota: {used} of {quota} bytes used"),
            }),
        }
    }

    /// §22.3: UploadChunk. Returns the bytes held after it.
    pub async fn chunk(&self, caller: &Caller, r: v1::UploadChunk) -> Result<v1::UploadChunkResult, ServerError> {
        let up = self.own_upload(caller, &r.upload_id).await?;
        open_for_chunks(&up)?;
        let (index, len) = chunk_at(&up, r.offset, "upload_chunk.offset")?;
        if r.data.len() as u64 != len {
            return Err(ServerError::invalid(
                "upload_chunk.data",
                format!("the chunk at offset {} has exactly {len} bytes", r.offset),
            ));
        }
        let key = upload_key(&up.id)?;
        self.put_chunk(&up, &key, index, r.data).await?;
        Ok(v1::UploadChunkResult { received_bytes: self.held_bytes(&up).await? })
    }

    /// §22.4: GetUpload.
    pub async fn upload_state(&self, caller: &Caller, id: &str) -> Result<v1::UploadState, ServerError> {
        let up = self.own_upload(caller, id).await?;
        let held = self.held_chunks(&up, &upload_key(&up.id)?).await?;
        Ok(v1::UploadState {
            upload_id: up.id.0.clone(),
            size: up.size,
            chunk_size: up.chunk_size,
            received: ranges(&held, up.chunk_size),
            expires_at_ms: up.expires_at_ms.max(0) as u64,
            purpose: i32::from(up.purpose),
            mime_type: up.mime_type,
        })
    }

    /// §22.4: CancelUpload.
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<v1::CancelUploadResult, ServerError> {
        let up = self.own_upload(caller, id).await?;
        if !self.0.store.cancel_upload(&up.id, caller.user_id).await? {
            return Err(no_upload());
        }
        self.0.blobs.delete_upload(&upload_key(&up.id)?).await.map_err(super::blob_error)?;
        Ok(v1::CancelUploadResult {})
    }

    /// Bytes of the caller's upload `id` the blob store holds.
    pub async fn received(&self, caller: &Caller, id: &str) -> Result<u64, ServerError> {
        let up = self.own_upload(caller, id).await?;
        self.held_bytes(&up).await
    }

    /// Bytes of an upload the blob store holds.
    async fn held_bytes(&self, up: &UploadRec) -> Result<u64, ServerError> {
        let held = self.held_chunks(up, &upload_key(&up.id)?).await?;
        Ok(held.iter().map(|p| p.len).sum())
    }

    /// §22.9: where the bytes of a QUIC upload stream go: the caller's unfinished upload from
    /// `offset` (a chunk boundary).
    pub async fn sink(&self, caller: &Caller, h: &v1::UploadStream) -> Result<ChunkSink, ServerError> {
        let up = self.own_upload(caller, &h.upload_id).await?;
        open_for_chunks(&up)?;
        let (index, _) = chunk_at(&up, h.offset, "upload_stream.offset")?;
        Ok(ChunkSink { media: self.clone(), key: upload_key(&up.id)?, up, index, buf: BytesMut::new() })
    }
}

/// Cuts a stream of bytes into the chunks of an upload and stores each as it fills: memory is
/// one chunk. Bytes past the file's end are refused; a last partial chunk is stored only when it
/// ends exactly at the file's end (a stream cut short loses at most the chunk in progress, which
/// GetUpload then reports missing).
#[derive(Debug)]
pub struct ChunkSink {
    media: Media,
    key: crate::blobs::UploadKey,
    up: UploadRec,
    index: u32,
    buf: BytesMut,
}

impl ChunkSink {
    fn expected(&self) -> u64 {
        let start = u64::from(self.index) * u64::from(self.up.chunk_size);
        u64::from(self.up.chunk_size).min(self.up.size.saturating_sub(start))
    }

    /// Takes the next bytes of the stream; stores every chunk they complete.
    pub async fn push(&mut self, mut data: Bytes) -> Result<(), ServerError> {
        while !data.is_empty() {
            let want = self.expected();
            if want == 0 {
                return Err(ServerError::invalid("upload_stream", "bytes past the end of the file"));
            }
            let room = (want as usize).saturating_sub(self.buf.len());
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data.split_to(take));
            if self.buf.len() as u64 == want {
                let chunk = std::mem::take(&mut self.buf).freeze();
                self.media.put_chunk(&self.up, &self.key, self.index, chunk).await?;
                self.index += 1;
            }
        }
        Ok(())
    }

    /// The stream ended: a partial chunk left over is dropped (it was not the end of the file).
    pub fn finish(self) -> u64 {
        u64::from(self.index) * u64::from(self.up.chunk_size)
    }

    /// The chunk size: how much the caller should read at a time.
    pub fn chunk_size(&self) -> usize {
        self.up.chunk_size as usize
    }
}
