//! Media bytes under encryption at rest: upload chunks sealed as they arrive when the upload
//! was begun with encryption on (`UploadRec::sealed`), blobs written sealed under the current
//! media data key, and reads that open what is sealed (`blobs::sealed`). With encryption off
//! every function passes bytes through.

use bytes::Bytes;
use futures_util::stream::BoxStream;

use super::{Media, blob_error, key_of};
use crate::blobs::{BlobError, PartInfo, UploadKey, sealed};
use crate::error::ServerError;
use crate::store::keys::Scope;
use crate::store::{BlobRef, UploadRec, now_ms};

impl Media {
    /// Stores chunk `index` of `up`, sealed when the upload is.
    pub(super) async fn put_chunk(
        &self,
        up: &UploadRec,
        key: &UploadKey,
        index: u32,
        data: Bytes,
    ) -> Result<(), ServerError> {
        let data = if up.sealed {
            let sealer = self.0.store.sealer();
            let Some((key_id, dk)) = sealer.current_key(Scope::Media, now_ms()).await? else {
                return Err(ServerError::Internal("a sealed upload on a server without encryption at rest".into()));
            };
            sealed::seal_part(key_id, &dk, key, index, &data)
        } else {
            data
        };
        self.0.blobs.put_part(key, index, data).await.map_err(blob_error)
    }

    /// Chunk `index` of `up` in clear.
    pub(super) async fn read_chunk(&self, up: &UploadRec, key: &UploadKey, index: u32) -> Result<Bytes, BlobError> {
        let data = self.0.blobs.read_part(key, index).await?;
        if !up.sealed {
            return Ok(data);
        }
        let key_id = sealed::part_key_id(&data).ok_or_else(|| BlobError::Sealed("a chunk without a key id".into()))?;
        let dk = self.0.store.sealer().key(key_id).await.map_err(|e| {
            // The database out of reach is worth a retry; a key that does not unwrap is not.
            if e.is_unavailable() { BlobError::Remote(e.to_string()) } else { BlobError::Sealed(e.to_string()) }
        })?;
        sealed::open_part(&dk, key, index, &data)
    }

    /// The chunks held for `up`, with their lengths in clear.
    pub(super) async fn held_chunks(&self, up: &UploadRec, key: &UploadKey) -> Result<Vec<PartInfo>, ServerError> {
        let mut parts = self.0.blobs.parts(key).await.map_err(blob_error)?;
        if up.sealed {
            for p in &mut parts {
                p.len = sealed::part_plain_len(p.len);
            }
        }
        Ok(parts)
    }

    /// Writes a new blob `mine` (its bytes from `data`, exactly `mine.size`), sealed under the
    /// current media key when encryption is on; returns it with the key it is sealed under and
    /// the plaintext bytes written.
    pub(super) async fn put_blob(
        &self,
        mut mine: BlobRef,
        data: BoxStream<'static, Result<Bytes, BlobError>>,
    ) -> Result<(BlobRef, u64), ServerError> {
        let key = key_of(&mine);
        let written = match self.0.store.sealer().current_key(Scope::Media, now_ms()).await? {
            None => self.0.blobs.put_blob(&key, data).await,
            Some((key_id, dk)) => {
                mine.key_id = Some(key_id);
                sealed::put_sealed(self.0.blobs.as_ref(), &key, key_id, &dk, mine.size, data).await
            }
        };
        Ok((mine, written.map_err(blob_error)?))
    }

    /// Bytes `range` of blob `blob` in clear.
    pub(super) async fn read_blob(&self, blob: &BlobRef, range: std::ops::Range<u64>) -> Result<Bytes, ReadError> {
        let key = key_of(blob);
        match blob.key_id {
            None => self.0.blobs.read_blob(&key, range).await.map_err(ReadError::Blob),
            Some(id) => {
                let dk = self.0.store.sealer().key(id).await.map_err(|e| ReadError::Server(e.into()))?;
                sealed::read_sealed(self.0.blobs.as_ref(), &key, &dk, blob.size, range).await.map_err(ReadError::Blob)
            }
        }
    }
}

/// Why a blob read failed: the blob store (an object gone is worth one more look at the row),
/// or the keys.
#[derive(Debug)]
pub(super) enum ReadError {
    Blob(BlobError),
    Server(ServerError),
}

impl ReadError {
    pub(super) fn is_not_found(&self) -> bool {
        matches!(self, Self::Blob(BlobError::NotFound))
    }

    pub(super) fn into_server(self) -> ServerError {
        match self {
            Self::Blob(e) => blob_error(e),
            Self::Server(e) => e,
        }
    }
}
