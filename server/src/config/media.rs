//! Media settings (docs/protocol.md §22, docs/operations.md "Media"): where blobs live (the data
//! dir or S3-compatible storage), upload limits and quotas, image limits and the collector.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

/// Where media bytes are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackend {
    /// Files under `media.dir` (default: `DATA_DIR/media`). One node only.
    #[default]
    Fs,
    /// An S3-compatible object store (`media.s3`); what several nodes share.
    S3,
}

/// Uploads, downloads, images and the blob store.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    pub store: BlobBackend,
    /// The filesystem store's directory; unset: `media` in the data dir.
    pub dir: Option<PathBuf>,
    pub s3: S3Config,
    /// Largest file accepted, in bytes (refused at BeginUpload).
    pub max_upload_bytes: u64,
    /// Bytes of media (finished and pending) one user may hold.
    pub quota_bytes_per_user: u64,
    /// Unfinished uploads one user may have at once.
    pub max_pending_uploads_per_user: u32,
    /// Uploads and downloads one connection may run at once (QUIC streams and in-flight chunks).
    pub max_transfers_per_connection: u32,
    /// Upload and download chunk size in bytes; lowered to fit a frame when max_frame_bytes is
    /// smaller (see [`MediaConfig::chunk_size`]).
    pub chunk_bytes: u32,
    /// An unfinished upload is deleted this long after it began.
    #[serde(with = "humantime_serde")]
    pub upload_ttl: Duration,
    /// Images larger than this many pixels (width × height) are refused before decoding.
    pub max_image_pixels: u64,
    /// Images wider or taller than this are refused before decoding.
    pub max_image_dimension: u32,
    /// Images decoded (thumbnails, EXIF) at once, off the async runtime.
    pub image_concurrency: u32,
    /// How often the collector looks for unreferenced media and blobs (one node at a time).
    #[serde(with = "humantime_serde")]
    pub gc_interval: Duration,
    /// A finished media item nothing references is kept this long (time to attach it), and an
    /// orphan blob this long, before the collector removes it.
    #[serde(with = "humantime_serde")]
    pub gc_grace: Duration,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            store: BlobBackend::Fs,
            dir: None,
            s3: S3Config::default(),
            max_upload_bytes: 50 * 1024 * 1024,
            quota_bytes_per_user: 2 * 1024 * 1024 * 1024,
            max_pending_uploads_per_user: 16,
            max_transfers_per_connection: 4,
            chunk_bytes: 512 * 1024,
            upload_ttl: Duration::from_secs(24 * 3600),
            max_image_pixels: 32_000_000,
            max_image_dimension: 16_384,
            image_concurrency: 2,
            gc_interval: Duration::from_secs(600),
            gc_grace: Duration::from_secs(24 * 3600),
        }
    }
}

/// An S3-compatible bucket (AWS S3, SeaweedFS, Ceph RGW, …).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// `http(s)://HOST:PORT` of the S3 endpoint; unset: AWS for `region`.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    /// Key prefix inside the bucket (several servers may share one bucket).
    pub prefix: String,
    pub access_key_id: String,
    /// Never shown in Debug output, logs or `--print-config`.
    pub secret_access_key: Option<Secret>,
    /// Allow a plain-HTTP endpoint (test servers, a store on the same host).
    pub allow_http: bool,
}

impl MediaConfig {
    /// The chunk size in force: `chunk_bytes`, but small enough that a chunk and its envelope fit
    /// in a frame of `max_frame_bytes` (4 KiB less, or half a small frame).
    pub fn chunk_size(&self, max_frame_bytes: u32) -> u32 {
        self.chunk_bytes.min(max_frame_bytes.saturating_sub(4096).max(max_frame_bytes / 2))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.max_upload_bytes == 0 {
            return bad("media.max_upload_bytes must be at least 1".into());
        }
        if self.quota_bytes_per_user < self.max_upload_bytes {
            return bad("media.quota_bytes_per_user must be at least media.max_upload_bytes".into());
        }
        if !(4096..=64 * 1024 * 1024).contains(&self.chunk_bytes) {
            return bad("media.chunk_bytes must be within 4096..=67108864".into());
        }
        if self.max_pending_uploads_per_user == 0 || !(1..=64).contains(&self.max_transfers_per_connection) {
            return bad(
                "media.max_pending_uploads_per_user must be at least 1, media.max_transfers_per_connection 1..=64"
                    .into(),
            );
        }
        if !(1..=64).contains(&self.image_concurrency) {
            return bad("media.image_concurrency must be 1..=64".into());
        }
        if self.max_image_dimension == 0 || self.max_image_pixels == 0 {
            return bad("media.max_image_dimension and max_image_pixels must be at least 1".into());
        }
        if self.upload_ttl < Duration::from_secs(60) || self.gc_interval < Duration::from_secs(1) {
            return bad("media.upload_ttl must be at least 1m and media.gc_interval at least 1s".into());
        }
        if self.store == BlobBackend::S3 && self.s3.bucket.is_empty() {
            return bad("media.store = \"s3\" needs media.s3.bucket".into());
        }
        if let Some(e) = &self.s3.endpoint {
            match url::Url::parse(e) {
                Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && self.s3.allow_http) => {}
                Ok(u) if u.scheme() == "http" => {
                    return bad("media.s3.endpoint is plain HTTP: set media.s3.allow_http to allow it".into());
                }
                _ => return bad(format!("media.s3.endpoint must be an http(s) URL (got {e:?})")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_key_never_shows() {
        let c = S3Config { secret_access_key: Some(Secret::new("hunter2")), ..Default::default() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn chunks_fit_in_a_frame() {
        let c = MediaConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.chunk_size(1024 * 1024), 512 * 1024);
        assert_eq!(c.chunk_size(65536), 61440);
        assert_eq!(c.chunk_size(1024), 512);
        assert!(MediaConfig { store: BlobBackend::S3, ..c }.validate().is_err());
    }
}
