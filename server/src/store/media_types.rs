//! Domain types of media (docs/protocol.md §22): uploads, media items, thumbnails, attachments.

use super::conv_types::{UnknownValue, numbered};
use super::types::UserId;

/// What an upload is for (same numbers as the wire's `MediaPurpose`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaPurpose {
    Attachment = 1,
    Avatar = 2,
    ConversationPhoto = 3,
}

numbered!(MediaPurpose, "media purpose", [Attachment, Avatar, ConversationPhoto]);

/// An opaque random id: a prefix letter and 32 lowercase hex digits (128 random bits), with
/// `random` and `parse` (an ill-formed one names nothing: NOT_FOUND).
macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub String);

        impl $name {
            pub fn random() -> Self {
                let mut r = [0u8; 16];
                // The OS random source does not fail on the platforms Confab runs on; were it
                // to, the id would still be unique enough for one process (time-based).
                if getrandom::fill(&mut r).is_err() {
                    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    r.copy_from_slice(&t.as_nanos().to_le_bytes());
                }
                Self(format!("{}{}", $prefix, hex::encode(r)))
            }

            pub fn parse(s: &str) -> Option<Self> {
                let ok = s.len() == 33
                    && s.starts_with($prefix)
                    && s[1..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                ok.then(|| Self(s.to_string()))
            }
        }
    };
}

hex_id!(
    /// A media item's id (`m…`): the wire's `media_id`, `avatar_ref` and `photo_ref`.
    MediaId,
    'm'
);

hex_id!(
    /// An upload's id (`u…`).
    UploadId,
    'u'
);

/// An upload to record at BeginUpload.
#[derive(Clone, Debug)]
pub struct NewUpload {
    pub id: UploadId,
    pub user: UserId,
    pub size: u64,
    pub mime_type: String,
    pub sha256: Option<[u8; 32]>,
    pub purpose: MediaPurpose,
    pub file_name: String,
    pub chunk_size: u32,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// The per-user limits BeginUpload is checked against, atomically with the insert.
#[derive(Clone, Copy, Debug)]
pub struct UploadLimits {
    pub max_pending: u32,
    pub quota_bytes: u64,
}

/// Why BeginUpload was refused by the per-user limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadRefusal {
    /// Too many unfinished uploads.
    TooManyPending { max: u32 },
    /// Finished media plus pending uploads plus this one would pass the quota.
    OverQuota { used: u64, quota: u64 },
}

/// A recorded upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRec {
    pub id: UploadId,
    pub user: UserId,
    pub size: u64,
    pub mime_type: String,
    pub sha256: Option<[u8; 32]>,
    pub purpose: MediaPurpose,
    pub file_name: String,
    pub chunk_size: u32,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// Set once FinishUpload succeeded.
    pub media: Option<MediaId>,
    /// While a FinishUpload runs: until when its lease holds.
    pub finishing_until_ms: Option<i64>,
    /// Its chunks are sealed (begun with encryption at rest on).
    pub sealed: bool,
}

/// A stored copy of some bytes: its row (`blobs.id`, the generation its object was first named
/// with), its hash and plaintext size, and how the object is stored now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobRef {
    pub generation: i64,
    pub sha256: [u8; 32],
    pub size: u64,
    /// The data key sealing the object (`blobs.key_id`); `None`: stored in clear.
    pub key_id: Option<i64>,
    /// The generation in the object's name: `generation`, until the re-encryption job wrote a
    /// sealed copy under a new name (`blobs.stored_as`).
    pub stored_as: i64,
}

impl BlobRef {
    /// A blob about to be written under a new generation.
    pub fn new(generation: i64, sha256: [u8; 32], size: u64, key_id: Option<i64>) -> Self {
        Self { generation, sha256, size, key_id, stored_as: generation }
    }
}

/// One thumbnail of a media item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThumbnailRec {
    pub name: String,
    pub blob: BlobRef,
    pub mime_type: String,
    pub width: u32,
    pub height: u32,
}

/// A media item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRec {
    pub id: MediaId,
    pub uploader: UserId,
    pub purpose: MediaPurpose,
    pub mime_type: String,
    pub file_name: String,
    /// The stored original.
    pub blob: BlobRef,
    pub width: u32,
    pub height: u32,
    pub created_at_ms: i64,
    pub thumbnails: Vec<ThumbnailRec>,
}

/// A finished upload to record: the media item (its blobs already durable in the blob store)
/// and the upload it came from.
#[derive(Clone, Debug)]
pub struct NewMedia {
    pub upload: UploadId,
    pub media: MediaRec,
}

/// A media item as a message carries it (§22.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentRec {
    pub media_id: MediaId,
    pub file_name: String,
    pub mime_type: String,
    pub size: u64,
    pub width: u32,
    pub height: u32,
    pub duration_ms: u32,
    pub thumbnails: Vec<String>,
}

/// What the collector removed in one pass (docs/operations.md "Media").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub uploads: Vec<UploadId>,
    pub media: Vec<MediaId>,
    pub blobs: Vec<BlobRef>,
}
