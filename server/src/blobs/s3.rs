//! The S3-compatible [`BlobStore`] (AWS S3, SeaweedFS, Ceph RGW, …) through `object_store`: what
//! several nodes share. Keys in the bucket: `{prefix}blobs/<key>` and
//! `{prefix}uploads/<upload>/<index as 10 digits>`. Blobs larger than one part are written as a
//! multipart upload completed at the end, so a blob is never visible half-written.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::list::{PaginatedListOptions, PaginatedListStore as _};
use object_store::path::Path;
use object_store::{ObjectStore as _, ObjectStoreExt as _, PutPayload, WriteMultipart};

use super::{BlobError, BlobKey, BlobStore, ListedBlob, PartInfo, UploadKey};
use crate::config::{BlobBackend, S3Config};

/// Bytes per multipart part (S3's minimum for all parts but the last is 5 MiB). A blob up to this
/// size is written with one PUT.
const PART_BYTES: usize = 5 * 1024 * 1024;

/// Parts of one blob uploading at once: a `put_blob` holds at most this many parts plus the one
/// filling (≈ 15 MiB).
const PARTS_IN_FLIGHT: usize = 2;

/// How long [`S3Blobs::open`] waits for the bucket to answer before giving up.
const PROBE_WITHIN: Duration = Duration::from_secs(20);

/// S3 caps one list page at this many keys.
const MAX_KEYS_PER_PAGE: usize = 1000;

/// Blobs and upload chunks in an S3-compatible bucket.
pub struct S3Blobs {
    store: AmazonS3,
    /// Where the bucket is, for errors and Debug: `bucket` at `endpoint` (or AWS).
    location: String,
    /// `{prefix}blobs` and `{prefix}uploads`.
    blobs: Path,
    uploads: Path,
}

impl std::fmt::Debug for S3Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Blobs").field("location", &self.location).field("blobs", &self.blobs.as_ref()).finish()
    }
}

impl S3Blobs {
    /// Connects to the bucket of `config` with path-style requests (region `us-east-1` when
    /// unset; the access key of `config`, without one EC2 instance metadata, object_store's
    /// fallback) and lists one key to fail early: a `Setup` error names the bucket and endpoint
    /// when the bucket is missing, refuses the credentials or does not answer within 20 s.
    pub async fn open(config: &S3Config) -> Result<S3Blobs, BlobError> {
        // reqwest is built without a bundled TLS provider (the workspace uses ring only, see
        // Cargo.toml): make ring the process default unless something already chose one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let location = format!("bucket {:?} at {}", config.bucket, config.endpoint.as_deref().unwrap_or("AWS S3"));
        if config.bucket.is_empty() {
            return Err(BlobError::Setup("media.s3.bucket is empty".into()));
        }
        let region = if config.region.is_empty() { "us-east-1" } else { config.region.as_str() };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(region)
            .with_allow_http(config.allow_http)
            .with_virtual_hosted_style_request(false);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if !config.access_key_id.is_empty() {
            builder = builder.with_access_key_id(&config.access_key_id);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose());
        }
        let store = builder.build().map_err(|e| BlobError::Setup(format!("{location}: {e}")))?;
        let prefix = config.prefix.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>();
        let under = |dir: &'static str| Path::from_iter(prefix.iter().copied().chain([dir]));
        let s3 = S3Blobs { store, location, blobs: under("blobs"), uploads: under("uploads") };
        let blobs_prefix = format!("{}/", s3.blobs);
        let probe = s3
            .store
            .list_paginated(Some(&blobs_prefix), PaginatedListOptions { max_keys: Some(1), ..Default::default() });
        match tokio::time::timeout(PROBE_WITHIN, probe).await {
            Ok(Ok(_)) => Ok(s3),
            Ok(Err(e)) => Err(BlobError::Setup(format!("{} is not usable: {e}", s3.location))),
            Err(_) => Err(BlobError::Setup(format!("{} did not answer within {PROBE_WITHIN:?}", s3.location))),
        }
    }

    fn blob_path(&self, key: &BlobKey) -> Path {
        self.blobs.clone().join(key.as_str())
    }

    fn upload_dir(&self, upload: &UploadKey) -> Path {
        self.uploads.clone().join(upload.as_str())
    }

    fn part_path(&self, upload: &UploadKey, index: u32) -> Path {
        self.upload_dir(upload).join(format!("{index:010}").as_str())
    }

    /// Writes `first` (the chunks read while deciding: at least one part's worth) and the rest
    /// of `data` as a multipart upload, aborting it on any error.
    async fn put_multipart(
        &self,
        path: &Path,
        first: Vec<Bytes>,
        mut data: BoxStream<'static, Result<Bytes, BlobError>>,
    ) -> Result<u64, BlobError> {
        let upload = self.store.put_multipart(path).await.map_err(remote)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut size = 0u64;
        for chunk in first {
            size += chunk.len() as u64;
            writer.put(chunk);
        }
        while let Some(chunk) = data.next().await {
            let step = match chunk {
                Ok(chunk) => writer.wait_for_capacity(PARTS_IN_FLIGHT).await.map(|()| chunk).map_err(remote),
                Err(e) => Err(e),
            };
            match step {
                Ok(chunk) => {
                    size += chunk.len() as u64;
                    writer.put(chunk);
                }
                Err(e) => {
                    if let Err(abort) = writer.abort().await {
                        tracing::warn!(error = %abort, %path, "could not abort a failed multipart upload");
                    }
                    return Err(e);
                }
            }
        }
        writer.finish().await.map_err(remote)?;
        Ok(size)
    }
}

#[async_trait::async_trait]
impl BlobStore for S3Blobs {
    fn backend(&self) -> BlobBackend {
        BlobBackend::S3
    }

    async fn put_part(&self, upload: &UploadKey, index: u32, data: Bytes) -> Result<(), BlobError> {
        self.store.put(&self.part_path(upload, index), data.into()).await.map_err(remote)?;
        Ok(())
    }

    async fn parts(&self, upload: &UploadKey) -> Result<Vec<PartInfo>, BlobError> {
        let objects: Vec<_> = self.store.list(Some(&self.upload_dir(upload))).try_collect().await.map_err(remote)?;
        let mut parts: Vec<_> = objects
            .into_iter()
            .filter_map(|o| {
                let name = o.location.filename()?;
                let index =
                    (name.len() == 10 && name.bytes().all(|b| b.is_ascii_digit())).then(|| name.parse().ok())??;
                Some(PartInfo { index, len: o.size })
            })
            .collect();
        parts.sort_by_key(|p| p.index);
        Ok(parts)
    }

    async fn read_part(&self, upload: &UploadKey, index: u32) -> Result<Bytes, BlobError> {
        let got = self.store.get(&self.part_path(upload, index)).await.map_err(remote)?;
        got.bytes().await.map_err(remote)
    }

    async fn delete_upload(&self, upload: &UploadKey) -> Result<(), BlobError> {
        let locations = self.store.list(Some(&self.upload_dir(upload))).map_ok(|o| o.location).boxed();
        let mut deleted = self.store.delete_stream(locations);
        while let Some(r) = deleted.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(remote(e)),
            }
        }
        Ok(())
    }

    /// From the chunks themselves (one list request per 1000 chunks), not from "directories":
    /// SeaweedFS goes on listing an upload's prefix after its last chunk is deleted.
    async fn uploads(&self) -> Result<Vec<UploadKey>, BlobError> {
        let mut keys = BTreeSet::new();
        let mut listed = self.store.list(Some(&self.uploads));
        while let Some(object) = listed.next().await {
            let object = object.map_err(remote)?;
            let first = object.location.prefix_match(&self.uploads).and_then(|mut rest| rest.next());
            if let Some(key) = first.and_then(|part| UploadKey::parse(part.as_ref())) {
                keys.insert(key);
            }
        }
        Ok(keys.into_iter().collect())
    }

    async fn put_blob(
        &self,
        key: &BlobKey,
        mut data: BoxStream<'static, Result<Bytes, BlobError>>,
    ) -> Result<u64, BlobError> {
        let path = self.blob_path(key);
        // Up to one part's worth: a small blob is one PUT, a larger one a multipart upload.
        let (mut first, mut buffered) = (Vec::new(), 0usize);
        while buffered < PART_BYTES {
            match data.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    buffered += chunk.len();
                    first.push(chunk);
                }
                None => {
                    self.store.put(&path, PutPayload::from_iter(first)).await.map_err(remote)?;
                    return Ok(buffered as u64);
                }
            }
        }
        self.put_multipart(&path, first, data).await
    }

    async fn read_blob(&self, key: &BlobKey, range: Range<u64>) -> Result<Bytes, BlobError> {
        if range.start > range.end {
            return Err(BlobError::Range(range));
        }
        if range.is_empty() {
            // No empty ranged GET in S3: the object's size says whether the range is inside.
            let size = self.blob_size(key).await?;
            return if range.end <= size { Ok(Bytes::new()) } else { Err(BlobError::Range(range)) };
        }
        match self.store.get_range(&self.blob_path(key), range.clone()).await {
            // A range running past the end comes back cut short.
            Ok(bytes) if bytes.len() as u64 == range.end - range.start => Ok(bytes),
            Ok(_) => Err(BlobError::Range(range)),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound),
            // A range starting at or past the end is refused (416), which object_store does not
            // tell apart from other failures: the size does.
            Err(e) => match self.blob_size(key).await {
                Ok(size) if range.start >= size => Err(BlobError::Range(range)),
                Err(BlobError::NotFound) => Err(BlobError::NotFound),
                _ => Err(remote(e)),
            },
        }
    }

    async fn blob_size(&self, key: &BlobKey) -> Result<u64, BlobError> {
        Ok(self.store.head(&self.blob_path(key)).await.map_err(remote)?.size)
    }

    async fn delete_blob(&self, key: &BlobKey) -> Result<(), BlobError> {
        match self.store.delete(&self.blob_path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(remote(e)),
        }
    }

    async fn list_blobs(&self, after: Option<&BlobKey>, limit: usize) -> Result<Vec<ListedBlob>, BlobError> {
        let prefix = format!("{}/", self.blobs);
        let mut out = Vec::new();
        let mut opts = PaginatedListOptions {
            offset: after.map(|a| format!("{prefix}{a}")),
            max_keys: Some(limit.clamp(1, MAX_KEYS_PER_PAGE)),
            ..Default::default()
        };
        while out.len() < limit {
            let page = self.store.list_paginated(Some(&prefix), opts.clone()).await.map_err(remote)?;
            for o in page.result.objects {
                // Only direct children with a key's name: strangers in the prefix are skipped.
                let Some(name) = o.location.as_ref().strip_prefix(prefix.as_str()) else { continue };
                let Some(key) = BlobKey::parse(name) else { continue };
                if after.is_some_and(|a| &key <= a) {
                    continue;
                }
                out.push(ListedBlob { key, modified_ms: o.last_modified.timestamp_millis() });
            }
            match page.page_token {
                Some(token) => opts.page_token = Some(token),
                None => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.truncate(limit);
        Ok(out)
    }
}

/// An object store error as a blob error: a missing object is [`BlobError::NotFound`].
fn remote(e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        e => BlobError::Remote(e.to_string()),
    }
}
