//! Sealed blobs: a blob's bytes cut into segments of [`SEGMENT`] bytes, each sealed on its own
//! ([`super::seal`], place [`Place::Segment`]) and stored one after the other, so a range of the
//! plaintext is read by opening only the segments it covers.

use std::ops::Range;

use super::{CryptoError, Place, SEAL_OVERHEAD, SecretKey};

/// Plaintext bytes per segment (the last one may hold fewer, an empty blob has one empty segment).
pub const SEGMENT: u64 = 64 * 1024;
/// Stored bytes of a full segment.
pub const SEALED_SEGMENT: u64 = SEGMENT + SEAL_OVERHEAD as u64;

/// Segments of a blob of `plain` bytes.
pub fn count(plain: u64) -> u64 {
    plain.div_ceil(SEGMENT).max(1)
}

/// Stored size of a blob of `plain` bytes.
pub fn sealed_len(plain: u64) -> u64 {
    plain + count(plain) * SEAL_OVERHEAD as u64
}

/// Plaintext size of a stored blob of `sealed` bytes; `None` when no plaintext size gives it.
pub fn plain_len(sealed: u64) -> Option<u64> {
    let segments = sealed.div_ceil(SEALED_SEGMENT).max(1);
    let plain = sealed.checked_sub(segments * SEAL_OVERHEAD as u64)?;
    (sealed_len(plain) == sealed).then_some(plain)
}

/// The segments holding plaintext bytes `range` of a blob of `plain` bytes (`range` within it).
pub fn covering(range: &Range<u64>, plain: u64) -> Range<u64> {
    let first = range.start / SEGMENT;
    let end = if range.end <= range.start { first + 1 } else { range.end.div_ceil(SEGMENT) };
    first..end.min(count(plain)).max(first + 1)
}

/// Where segment `index` of a blob of `plain` bytes is stored.
pub fn stored_range(index: u64, plain: u64) -> Range<u64> {
    let start = index * SEALED_SEGMENT;
    let len = (plain - (index * SEGMENT).min(plain)).min(SEGMENT) + SEAL_OVERHEAD as u64;
    start..start + len
}

/// Seals segment `index` (plaintext `data`) of blob `blob`; `last` for the final one.
pub fn seal_segment(key_id: i64, key: &SecretKey, blob: &str, index: u64, last: bool, data: &[u8]) -> Vec<u8> {
    super::seal(key_id, key, &Place::Segment { blob, index, last }, data)
}

/// Opens segment `index` of blob `blob` that has `count` segments.
///
/// # Errors
/// `Inauthentic` when it was altered, moved, or the blob was cut short.
pub fn open_segment(
    key: &SecretKey,
    blob: &str,
    index: u64,
    count: u64,
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    super::open(key, &Place::Segment { blob, index, last: index + 1 == count }, sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip_and_ranges_cover() {
        for plain in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 5 * SEGMENT + 17] {
            assert_eq!(plain_len(sealed_len(plain)), Some(plain), "{plain}");
            let n = count(plain);
            let last = stored_range(n - 1, plain);
            assert_eq!(last.end, sealed_len(plain));
        }
        assert_eq!(covering(&(0..1), 10), 0..1);
        assert_eq!(covering(&(SEGMENT - 1..SEGMENT + 1), 3 * SEGMENT), 0..2);
        assert_eq!(covering(&(SEGMENT..2 * SEGMENT), 3 * SEGMENT), 1..2);
    }

    #[test]
    fn segments_open_in_place_only() {
        let k = SecretKey::random();
        let s = seal_segment(9, &k, "blob-1", 0, false, b"abc");
        assert_eq!(open_segment(&k, "blob-1", 0, 2, &s).unwrap(), b"abc");
        // The same segment presented as the last one (a truncated blob) fails.
        assert!(open_segment(&k, "blob-1", 0, 1, &s).is_err());
        assert!(open_segment(&k, "blob-2", 0, 2, &s).is_err());
        assert!(open_segment(&k, "blob-1", 1, 3, &s).is_err());
    }
}
