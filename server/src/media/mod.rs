//! The media service (docs/protocol.md §22): resumable uploads into the blob store, the checks
//! that turn an upload into a media item (size, SHA-256, sniffed type, image limits, EXIF
//! orientation and metadata, thumbnails), who may read what, byte-range reads, the attachments
//! of messages, avatars and conversation photos, and the collector of what nothing references.

mod collect;
pub mod content;
mod finish;
pub mod image;
mod upload;
mod vault;

use std::sync::Arc;

use confab_protocol::v1;
use tokio::sync::Semaphore;

use crate::blobs::{BlobError, BlobKey, BlobStore, UploadKey};
use crate::config::MediaConfig;
use crate::error::ServerError;
use crate::session::Caller;
use crate::store::{AttachmentRec, BlobRef, MediaId, MediaPurpose, MediaRec, Store, UploadId, UploadRec, UserId};

pub use collect::Collector;
pub use upload::ChunkSink;

/// Thumbnail names DownloadMedia accepts (§22.6).
pub const THUMBNAIL_NAMES: [&str; 3] = ["crop96", "scale320", "scale800"];

/// Most attachments one message carries (§22.8).
pub const MAX_ATTACHMENTS: usize = 10;

/// The media service: a cheap-clone handle.
#[derive(Clone)]
pub struct Media(Arc<Inner>);

struct Inner {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    config: MediaConfig,
    /// Image decodes (thumbnails, EXIF) at once, each on the blocking pool.
    images: Semaphore,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media").field("blobs", &self.0.blobs).finish_non_exhaustive()
    }
}

/// The answer to a NOT_FOUND media or upload: the same for one that does not exist and one the
/// caller may not see (§22.10).
fn no_media() -> ServerError {
    ServerError::NotFound("no such media".into())
}

fn no_upload() -> ServerError {
    ServerError::NotFound("no such upload".into())
}

/// A blob-store failure: the object missing where the database says it is would be a bug or a
/// lost disk, so every failure is UNAVAILABLE or INTERNAL, never the client's fault.
pub(crate) fn blob_error(e: BlobError) -> ServerError {
    match e {
        BlobError::Io(_) | BlobError::Remote(_) => {
            tracing::warn!(error = %e, "blob store failed");
            ServerError::Unavailable("the media store is unavailable; retry shortly".into())
        }
        other => ServerError::Internal(format!("blob store: {other}")),
    }
}

/// The blob key of a stored blob.
pub(crate) fn key_of(b: &BlobRef) -> BlobKey {
    BlobKey::new(&b.sha256, b.stored_as)
}

/// The blob store's name for an upload (its id is already `[0-9a-z]`).
pub(crate) fn upload_key(id: &UploadId) -> Result<UploadKey, ServerError> {
    UploadKey::parse(&id.0).ok_or_else(no_upload)
}

/// The wire's purpose, or INVALID_ARGUMENT.
fn purpose(field: &'static str, p: i32) -> Result<MediaPurpose, ServerError> {
    MediaPurpose::try_from(p)
        .map_err(|_| ServerError::invalid(field, "purpose must be ATTACHMENT, AVATAR or CONVERSATION_PHOTO"))
}

/// A media item as its readers see it (§22.6).
pub fn info(m: &MediaRec) -> v1::MediaInfo {
    v1::MediaInfo {
        media_id: m.id.0.clone(),
        mime_type: m.mime_type.clone(),
        size: m.blob.size,
        width: m.width,
        height: m.height,
        thumbnails: m
            .thumbnails
            .iter()
            .map(|t| v1::Thumbnail {
                name: t.name.clone(),
                width: t.width,
                height: t.height,
                mime_type: t.mime_type.clone(),
                size: t.blob.size,
            })
            .collect(),
        sha256: bytes::Bytes::copy_from_slice(&m.blob.sha256),
        created_at_ms: m.created_at_ms.max(0) as u64,
        purpose: i32::from(m.purpose),
        file_name: m.file_name.clone(),
    }
}

/// One byte range of a media item or thumbnail, read for DownloadMedia.
#[derive(Debug)]
pub struct Read {
    /// Size of the whole original or thumbnail.
    pub total_size: u64,
    pub mime_type: String,
    pub offset: u64,
    pub data: bytes::Bytes,
}

/// What a DownloadMedia resolves to before any byte is read: the blob, the range, the type.
#[derive(Clone, Debug)]
pub struct Target {
    /// The media item and the thumbnail (empty: the original) it reads.
    pub media_id: MediaId,
    pub thumbnail: String,
    /// The blob (where it is stored, sealed or not).
    pub blob: BlobRef,
    pub total_size: u64,
    pub mime_type: String,
    pub offset: u64,
    /// Bytes from `offset` (0 when offset is the size).
    pub length: u64,
}

impl Media {
    pub fn new(store: Arc<dyn Store>, blobs: Arc<dyn BlobStore>, config: MediaConfig) -> Self {
        let images = Semaphore::new(config.image_concurrency as usize);
        Self(Arc::new(Inner { store, blobs, config, images }))
    }

    pub fn config(&self) -> &MediaConfig {
        &self.0.config
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.0.blobs
    }

    /// The media item `id` if `caller` may read it; NOT_FOUND otherwise, as for an unknown id.
    pub async fn readable(&self, caller: UserId, id: &str) -> Result<MediaRec, ServerError> {
        let id = MediaId::parse(id).ok_or_else(no_media)?;
        if !self.0.store.may_read_media(caller, &id).await? {
            return Err(no_media());
        }
        self.0.store.media(&id).await?.ok_or_else(no_media)
    }

    /// §22.6: GetMedia.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<v1::MediaInfo, ServerError> {
        Ok(info(&self.readable(caller.user_id, id).await?))
    }

    /// §22.7: what DownloadMedia reads: the original or a thumbnail, from `offset`, `length`
    /// bytes (0: to the end), at most `cap` bytes when given.
    pub async fn target(
        &self,
        caller: &Caller,
        r: &v1::DownloadMedia,
        cap: Option<u64>,
    ) -> Result<Target, ServerError> {
        let m = self.readable(caller.user_id, &r.media_id).await?;
        let (blob, mime_type) = if r.thumbnail.is_empty() {
            (m.blob, m.mime_type.clone())
        } else {
            let t = m.thumbnails.iter().find(|t| t.name == r.thumbnail).ok_or_else(|| {
                ServerError::NotFound(format!(
                    "no thumbnail {:?} for this media (see MediaInfo.thumbnails)",
                    r.thumbnail
                ))
            })?;
            (t.blob, t.mime_type.clone())
        };
        if r.offset > blob.size {
            return Err(ServerError::invalid(
                "download_media.offset",
                format!("offset {} is past the end ({} bytes)", r.offset, blob.size),
            ));
        }
        let rest = blob.size - r.offset;
        let mut length = if r.length == 0 { rest } else { r.length.min(rest) };
        if let Some(cap) = cap {
            length = length.min(cap);
        }
        Ok(Target {
            media_id: m.id.clone(),
            thumbnail: r.thumbnail.clone(),
            blob,
            total_size: blob.size,
            mime_type,
            offset: r.offset,
            length,
        })
    }

    /// Reads a resolved target (at most one chunk: callers cap the length).
    pub async fn read(&self, t: &Target) -> Result<Read, ServerError> {
        let data = if t.length == 0 {
            bytes::Bytes::new()
        } else {
            let range = t.offset..t.offset + t.length;
            match self.read_blob(&t.blob, range.clone()).await {
                // The re-encryption job moved the bytes to a sealed copy since the target was
                // resolved: read where the row points now.
                Err(e) if e.is_not_found() => match self.0.store.media(&t.media_id).await? {
                    Some(m) => {
                        let now = if t.thumbnail.is_empty() {
                            Some(m.blob)
                        } else {
                            m.thumbnails.iter().find(|x| x.name == t.thumbnail).map(|x| x.blob)
                        };
                        match now {
                            Some(b) if b.stored_as != t.blob.stored_as => {
                                self.read_blob(&b, range).await.map_err(vault::ReadError::into_server)?
                            }
                            _ => return Err(e.into_server()),
                        }
                    }
                    None => return Err(no_media()),
                },
                r => r.map_err(vault::ReadError::into_server)?,
            }
        };
        Ok(Read { total_size: t.total_size, mime_type: t.mime_type.clone(), offset: t.offset, data })
    }

    /// §22.8: the attachments of a SendMessage, resolved: each media item readable by the
    /// sender (its own upload, or one it can read elsewhere, to forward it), filled in from the
    /// stored item. NOT_FOUND for one it cannot read.
    pub async fn attachments(
        &self,
        caller: &Caller,
        given: &[v1::Attachment],
    ) -> Result<Vec<AttachmentRec>, ServerError> {
        if given.len() > MAX_ATTACHMENTS {
            return Err(ServerError::invalid(
                "send_message.attachments",
                format!("at most {MAX_ATTACHMENTS} attachments per message"),
            ));
        }
        let mut out = Vec::with_capacity(given.len());
        for a in given {
            let m = self.readable(caller.user_id, &a.media_id).await?;
            if m.purpose != MediaPurpose::Attachment {
                return Err(ServerError::invalid(
                    "send_message.attachments.media_id",
                    "this media was uploaded as an avatar or a photo, not an attachment",
                ));
            }
            let file_name = if a.file_name.is_empty() {
                m.file_name.clone()
            } else {
                upload::file_name("send_message.attachments.file_name", &a.file_name)?
            };
            out.push(AttachmentRec {
                media_id: m.id.clone(),
                file_name,
                mime_type: m.mime_type.clone(),
                size: m.blob.size,
                width: m.width,
                height: m.height,
                duration_ms: a.duration_ms,
                thumbnails: m.thumbnails.iter().map(|t| t.name.clone()).collect(),
            });
        }
        Ok(out)
    }

    /// §22.10: a media id the caller may set as its avatar or a conversation's photo: an image it
    /// uploaded itself with that purpose. Empty (clearing) passes. NOT_FOUND otherwise.
    pub async fn own_image(
        &self,
        caller: &Caller,
        id: &str,
        purpose: MediaPurpose,
        field: &'static str,
    ) -> Result<(), ServerError> {
        if id.is_empty() {
            return Ok(());
        }
        if id.len() > 256 {
            return Err(ServerError::invalid(field, "at most 256 bytes"));
        }
        let m = self.readable(caller.user_id, id).await?;
        if m.uploader != caller.user_id {
            return Err(no_media());
        }
        if m.purpose != purpose {
            return Err(ServerError::invalid(
                field,
                "this media was uploaded for another purpose (BeginUpload.purpose)",
            ));
        }
        Ok(())
    }

    /// The caller's upload `id`, unexpired; NOT_FOUND for anyone else's, as for an unknown one.
    pub(crate) async fn own_upload(&self, caller: &Caller, id: &str) -> Result<UploadRec, ServerError> {
        let id = UploadId::parse(id).ok_or_else(no_upload)?;
        let up = self.0.store.upload(&id, crate::store::now_ms()).await?.ok_or_else(no_upload)?;
        if up.user != caller.user_id {
            return Err(no_upload());
        }
        Ok(up)
    }
}
