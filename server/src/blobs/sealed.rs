//! Sealed objects in any [`BlobStore`] (encryption at rest): a blob written as segments sealed
//! one by one (`crypto::segments`), read back by opening only the segments a range covers, and
//! upload chunks sealed whole. Which data key seals what is decided by the caller and kept in
//! the database (`blobs.key_id`, `uploads.sealed`); these functions only move bytes.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::{BlobError, BlobKey, BlobStore, UploadKey};
use crate::crypto::{self, Place, SEAL_OVERHEAD, SecretKey, segments};

fn inauthentic(e: crypto::CryptoError) -> BlobError {
    BlobError::Sealed(e.to_string())
}

/// Writes `data` (exactly `plain` bytes, any chunking) as blob `key` sealed under data key
/// `key_id`; returns the plaintext bytes written. A stream longer or shorter than `plain` fails.
///
/// # Errors
/// As [`BlobStore::put_blob`], and `Range` when the stream's length is not `plain`.
pub async fn put_sealed(
    blobs: &dyn BlobStore,
    key: &BlobKey,
    key_id: i64,
    dk: &SecretKey,
    plain: u64,
    data: BoxStream<'static, Result<Bytes, BlobError>>,
) -> Result<u64, BlobError> {
    let stored = blobs.put_blob(key, sealing(data, plain, key_id, dk.clone(), key.as_str().to_string())).await?;
    if stored != segments::sealed_len(plain) {
        return Err(BlobError::Range(0..plain));
    }
    Ok(plain)
}

/// The sealed segments of `data`, which must hold `plain` bytes.
fn sealing(
    data: BoxStream<'static, Result<Bytes, BlobError>>,
    plain: u64,
    key_id: i64,
    dk: SecretKey,
    blob: String,
) -> BoxStream<'static, Result<Bytes, BlobError>> {
    let count = segments::count(plain);
    let segment = segments::SEGMENT as usize;
    futures_util::stream::unfold(Some((data, BytesMut::new(), 0u64)), move |state| {
        let (dk, blob) = (dk.clone(), blob.clone());
        async move {
            let (mut data, mut buf, index) = state?;
            if index == count {
                // Whatever follows the last segment is more than `plain` bytes.
                return match data.next().await {
                    Some(Ok(b)) if !b.is_empty() => Some((Err(BlobError::Range(0..plain)), None)),
                    Some(Err(e)) => Some((Err(e), None)),
                    _ => None,
                };
            }
            let last = index + 1 == count;
            let want =
                if last { usize::try_from(plain - index * segments::SEGMENT).unwrap_or(segment) } else { segment };
            while buf.len() < want {
                match data.next().await {
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                    Some(Err(e)) => return Some((Err(e), None)),
                    None => return Some((Err(BlobError::Range(0..plain)), None)),
                }
            }
            let seg = buf.split_to(want);
            if last && !buf.is_empty() {
                return Some((Err(BlobError::Range(0..plain)), None));
            }
            let sealed = segments::seal_segment(key_id, &dk, &blob, index, last, &seg);
            Some((Ok(Bytes::from(sealed)), Some((data, buf, index + 1))))
        }
    })
    .boxed()
}

/// Plaintext bytes `range` of sealed blob `key` holding `plain` bytes, opened with `dk`.
///
/// # Errors
/// As [`BlobStore::read_blob`]; `Remote` when a segment does not open (altered, moved, cut).
pub async fn read_sealed(
    blobs: &dyn BlobStore,
    key: &BlobKey,
    dk: &SecretKey,
    plain: u64,
    range: Range<u64>,
) -> Result<Bytes, BlobError> {
    if range.end > plain || range.start > range.end {
        return Err(BlobError::Range(range));
    }
    let count = segments::count(plain);
    let mut out = BytesMut::with_capacity(usize::try_from(range.end - range.start).unwrap_or(0));
    let covering = segments::covering(&range, plain);
    // The covering segments in one read (one request to an object store).
    let first = segments::stored_range(covering.start, plain).start;
    let stored = blobs.read_blob(key, first..segments::stored_range(covering.end - 1, plain).end).await?;
    for index in covering {
        let at = segments::stored_range(index, plain);
        let bytes = usize::try_from(at.start - first).ok().zip(usize::try_from(at.end - first).ok());
        let stored = bytes.and_then(|(a, b)| stored.get(a..b)).ok_or(BlobError::Range(at))?;
        let seg = segments::open_segment(dk, key.as_str(), index, count, stored).map_err(inauthentic)?;
        let seg_start = index * segments::SEGMENT;
        let from = usize::try_from(range.start.saturating_sub(seg_start)).unwrap_or(0).min(seg.len());
        let to = usize::try_from(range.end - seg_start).unwrap_or(usize::MAX).min(seg.len());
        if from < to {
            out.extend_from_slice(&seg[from..to]);
        }
    }
    Ok(out.freeze())
}

/// Chunk `index` of `upload` sealed under data key `key_id` (the key id travels in it).
pub fn seal_part(key_id: i64, dk: &SecretKey, upload: &UploadKey, index: u32, data: &[u8]) -> Bytes {
    Bytes::from(crypto::seal(key_id, dk, &Place::Part { upload: upload.as_str(), index }, data))
}

/// The data key a sealed chunk names.
pub fn part_key_id(sealed: &[u8]) -> Option<i64> {
    crypto::sealed_key_id(sealed)
}

/// Opens a chunk sealed by [`seal_part`] with the key it names (`dk`).
///
/// # Errors
/// `Remote` when it does not open (altered, moved to another upload or index).
pub fn open_part(dk: &SecretKey, upload: &UploadKey, index: u32, sealed: &[u8]) -> Result<Bytes, BlobError> {
    crypto::open(dk, &Place::Part { upload: upload.as_str(), index }, sealed).map(Bytes::from).map_err(inauthentic)
}

/// Plaintext length of a sealed chunk stored as `stored` bytes.
pub fn part_plain_len(stored: u64) -> u64 {
    stored.saturating_sub(SEAL_OVERHEAD as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::fs::FsBlobs;

    #[tokio::test]
    async fn sealed_blobs_round_trip_by_range_and_refuse_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobs::open(dir.path()).await.unwrap();
        let dk = SecretKey::random();
        let plain: Vec<u8> = (0..(3 * segments::SEGMENT + 100)).map(|i| (i % 251) as u8).collect();
        let key = BlobKey::new(&[1; 32], 7);
        let chunks: Vec<Result<Bytes, BlobError>> =
            plain.chunks(10_000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let n = plain.len() as u64;
        put_sealed(&store, &key, 5, &dk, n, futures_util::stream::iter(chunks).boxed()).await.unwrap();
        let raw = store.read_blob(&key, 0..segments::sealed_len(n)).await.unwrap();
        assert!(!raw.windows(64).any(|w| plain.windows(64).take(100).any(|p| p == w)));
        for r in [0..1, 0..n, segments::SEGMENT - 3..segments::SEGMENT + 3, n - 1..n, 70_000..190_000] {
            let got = read_sealed(&store, &key, &dk, n, r.clone()).await.unwrap();
            assert_eq!(&got[..], &plain[r.start as usize..r.end as usize]);
        }
        // Too short or too long a stream is refused.
        let short = futures_util::stream::iter([Ok(Bytes::from_static(b"abc"))]).boxed();
        assert!(put_sealed(&store, &BlobKey::new(&[2; 32], 1), 5, &dk, 4, short).await.is_err());
        let long = futures_util::stream::iter([Ok(Bytes::from_static(b"abcde"))]).boxed();
        assert!(put_sealed(&store, &BlobKey::new(&[3; 32], 1), 5, &dk, 4, long).await.is_err());
        // Another key's object under this name does not open.
        let other = BlobKey::new(&[4; 32], 1);
        let copy = store.read_blob(&key, 0..segments::sealed_len(n)).await.unwrap();
        store.put_blob(&other, futures_util::stream::iter([Ok(copy)]).boxed()).await.unwrap();
        assert!(read_sealed(&store, &other, &dk, n, 0..10).await.is_err());
        let up = UploadKey::parse("up1").unwrap();
        let p = seal_part(5, &dk, &up, 3, b"chunk");
        assert_eq!(part_key_id(&p), Some(5));
        assert_eq!(part_plain_len(p.len() as u64), 5);
        assert_eq!(&open_part(&dk, &up, 3, &p).unwrap()[..], b"chunk");
        assert!(open_part(&dk, &up, 4, &p).is_err());
    }
}
