//! Where media bytes live (docs/protocol.md §22, docs/operations.md "Media"): a [`BlobStore`]
//! trait with a local-filesystem implementation ([`fs::FsBlobs`], the default) and an
//! S3-compatible one ([`s3::S3Blobs`], what several nodes share). Two kinds of objects: the
//! chunks of unfinished uploads (by upload id and chunk index) and finished blobs (by
//! [`BlobKey`], content-addressed). Bytes only: which blobs exist and who may read them is the
//! database's business (store::media_sql).

pub mod fs;
pub mod s3;
pub mod sealed;

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::config::{BlobBackend, MediaConfig};

/// A finished blob's name: the SHA-256 of its bytes in lowercase hex, a dash, and the decimal
/// generation the database gave it (`<64 hex>-<n>`). The generation makes a blob deleted by the
/// collector and the same bytes uploaded again at that moment two different objects, so the
/// deletion of the old one can never remove the new one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobKey(String);

impl BlobKey {
    /// The key of the blob with `sha256` and `generation`.
    pub fn new(sha256: &[u8; 32], generation: i64) -> Self {
        Self(format!("{}-{generation}", hex::encode(sha256)))
    }

    /// Parses a key as listed by a store; `None` for anything else (temporary files, strangers).
    pub fn parse(s: &str) -> Option<Self> {
        let (hash, generation) = s.split_once('-')?;
        let ok = hash.len() == 64
            && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && !generation.is_empty()
            && generation.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BlobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An upload's id as the blob store sees it: 1 to 64 of `[A-Za-z0-9_-]` (the service makes
/// them; the stores use them in paths and keys).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UploadKey(String);

impl UploadKey {
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One chunk of an upload the store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartInfo {
    /// Chunk index: the chunk starts at `index × chunk_size`.
    pub index: u32,
    /// Bytes in the chunk.
    pub len: u64,
}

/// A blob as listed, for the collector's sweep of blobs the database does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedBlob {
    pub key: BlobKey,
    /// Last modification, Unix milliseconds.
    pub modified_ms: i64,
}

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The blob or chunk does not exist.
    #[error("not found")]
    NotFound,
    /// A read range outside the object.
    #[error("range {0:?} is outside the object")]
    Range(Range<u64>),
    #[error("blob store i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The object store (S3) failed.
    #[error("object store: {0}")]
    Remote(String),
    #[error("blob store setup: {0}")]
    Setup(String),
    /// A sealed object or chunk that does not open (altered, moved, cut short, wrong key).
    #[error("sealed object: {0}")]
    Sealed(String),
}

/// Bytes of uploads and blobs. Every write is durable when it returns (fsynced, or acknowledged
/// by the object store); every method is safe to call concurrently, also from several nodes on
/// the same S3 bucket.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// `fs` or `s3`, for logs and metrics.
    fn backend(&self) -> BlobBackend;

    /// Stores chunk `index` of `upload`, replacing any earlier copy whole (a reader sees the old
    /// or the new chunk, never a mix).
    async fn put_part(&self, upload: &UploadKey, index: u32, data: Bytes) -> Result<(), BlobError>;
    /// The chunks held for `upload`, by ascending index; empty when none.
    async fn parts(&self, upload: &UploadKey) -> Result<Vec<PartInfo>, BlobError>;
    /// One chunk's bytes; `NotFound` when absent.
    async fn read_part(&self, upload: &UploadKey, index: u32) -> Result<Bytes, BlobError>;
    /// Removes every chunk of `upload`; no error when there are none.
    async fn delete_upload(&self, upload: &UploadKey) -> Result<(), BlobError>;
    /// Every upload that has chunks (the collector removes those the database no longer knows).
    async fn uploads(&self) -> Result<Vec<UploadKey>, BlobError>;

    /// Writes blob `key` from `data` (any chunking) and returns its size. Durable when it
    /// returns; a blob is never visible half-written (fs: temporary file, fsync, rename, fsync of
    /// the directory; s3: a multipart upload completed at the end). Writing a key that exists
    /// replaces it with the same bytes. Memory stays bounded by the chunks in flight.
    async fn put_blob(
        &self,
        key: &BlobKey,
        data: BoxStream<'static, Result<Bytes, BlobError>>,
    ) -> Result<u64, BlobError>;
    /// Bytes `range` of blob `key`; `NotFound` when absent, `Range` when past its end. Callers
    /// keep ranges small (a chunk): the bytes are in memory.
    async fn read_blob(&self, key: &BlobKey, range: Range<u64>) -> Result<Bytes, BlobError>;
    /// Size in bytes of blob `key`; `NotFound` when absent.
    async fn blob_size(&self, key: &BlobKey) -> Result<u64, BlobError>;
    /// Removes blob `key`; no error when it is absent.
    async fn delete_blob(&self, key: &BlobKey) -> Result<(), BlobError>;
    /// Up to `limit` blobs with keys after `after`, ascending by key.
    async fn list_blobs(&self, after: Option<&BlobKey>, limit: usize) -> Result<Vec<ListedBlob>, BlobError>;
}

/// Opens the configured store: `media.store` = `fs` (in `media.dir`, default `DATA_DIR/media`)
/// or `s3` (`media.s3`).
pub async fn open(config: &MediaConfig, data_dir: &std::path::Path) -> Result<Arc<dyn BlobStore>, BlobError> {
    match config.store {
        BlobBackend::Fs => {
            let dir = config.dir.clone().unwrap_or_else(|| data_dir.join("media"));
            Ok(Arc::new(fs::FsBlobs::open(&dir).await?))
        }
        BlobBackend::S3 => Ok(Arc::new(s3::S3Blobs::open(&config.s3).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_strangers_are_refused() {
        let k = BlobKey::new(&[0xab; 32], 7);
        assert_eq!(k.as_str(), format!("{}-7", "ab".repeat(32)));
        assert_eq!(BlobKey::parse(k.as_str()), Some(k));
        for bad in ["", "abc-1", &format!("{}-", "ab".repeat(32)), &format!("{}-1", "AB".repeat(32)), "x.tmp"] {
            assert_eq!(BlobKey::parse(bad), None, "{bad}");
        }
        assert!(UploadKey::parse("up_abc-1").is_some());
        assert!(UploadKey::parse("../x").is_none() && UploadKey::parse("").is_none());
    }
}
