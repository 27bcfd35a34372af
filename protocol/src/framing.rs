//! Length-delimited framing for stream transports (QUIC, §2.2): a protobuf base-128 varint length,
//! then that many bytes of one encoded frame. The length is checked against the limit before any
//! buffer is allocated.

use bytes::{BufMut, Bytes, BytesMut};

/// Longest varint a frame length may use: five bytes cover every `u32`.
pub const MAX_VARINT_LEN: usize = 5;

/// Why a length prefix or frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("frame of {declared} bytes exceeds the limit of {limit} bytes")]
    TooLarge { declared: u64, limit: u32 },
    #[error("malformed length prefix")]
    BadLength,
}

/// Appends the varint length prefix for a frame of `len` bytes to `out`.
pub fn put_length_prefix(out: &mut impl BufMut, len: usize) {
    let mut v = len as u64;
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Returns the varint length prefix for a frame of `len` bytes.
pub fn length_prefix(len: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(MAX_VARINT_LEN);
    put_length_prefix(&mut b, len);
    b.freeze()
}

/// Incremental varint decoder: feed it one byte at a time as they arrive.
#[derive(Debug, Default, Clone)]
pub struct LengthDecoder {
    value: u64,
    shift: u32,
    bytes: usize,
}

impl LengthDecoder {
    /// Feeds one byte. Returns `Ok(Some(len))` once the varint is complete and within `limit`,
    /// `Ok(None)` when more bytes are needed. Zero-length frames are refused: an empty
    /// ClientFrame carries nothing.
    pub fn push(&mut self, byte: u8, limit: u32) -> Result<Option<u32>, FramingError> {
        self.bytes += 1;
        self.value |= u64::from(byte & 0x7f) << self.shift;
        self.shift += 7;
        if byte & 0x80 != 0 {
            if self.bytes >= MAX_VARINT_LEN {
                return Err(FramingError::BadLength);
            }
            // Refuse as soon as the value already exceeds the limit.
            if self.value > u64::from(limit) {
                return Err(FramingError::TooLarge { declared: self.value, limit });
            }
            return Ok(None);
        }
        let len = self.value;
        *self = Self::default();
        if len == 0 {
            return Err(FramingError::BadLength);
        }
        if len > u64::from(limit) {
            return Err(FramingError::TooLarge { declared: len, limit });
        }
        Ok(Some(len as u32))
    }
}

/// Buffers bytes read from a stream and cuts them into frames. Cancel-safe by construction:
/// all state lives here, so a reader may be dropped between reads without losing bytes.
/// Capacity grows in small steps as bytes arrive, never by a declared length.
#[derive(Debug)]
pub struct FrameBuffer {
    buf: BytesMut,
    limit: u32,
}

/// Bytes reserved per read: small, so an idle connection costs little.
const READ_CHUNK: usize = 4096;

impl FrameBuffer {
    pub fn new(limit: u32) -> Self {
        Self { buf: BytesMut::new(), limit }
    }

    /// The buffer to read more bytes into; has at least a few KiB of spare capacity.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.reserve(READ_CHUNK);
        }
        &mut self.buf
    }

    /// True when no partial frame is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Cuts the next complete frame off the buffer. An oversized or malformed length prefix is
    /// refused as soon as its bytes are here, before the payload arrives.
    pub fn decode(&mut self) -> Result<Option<Bytes>, FramingError> {
        let mut dec = LengthDecoder::default();
        for (i, b) in self.buf.iter().enumerate() {
            if let Some(len) = dec.push(*b, self.limit)? {
                let start = i + 1;
                let end = start + len as usize;
                if self.buf.len() < end {
                    return Ok(None);
                }
                let _ = self.buf.split_to(start);
                let frame = self.buf.split_to(len as usize).freeze();
                if self.buf.is_empty() {
                    // Release the frame's storage instead of keeping it for the next read.
                    self.buf = BytesMut::new();
                }
                return Ok(Some(frame));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], limit: u32) -> Result<Option<u32>, FramingError> {
        let mut d = LengthDecoder::default();
        for (i, b) in bytes.iter().enumerate() {
            if let Some(n) = d.push(*b, limit)? {
                assert_eq!(i, bytes.len() - 1, "decoder stopped early");
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    #[test]
    fn prefix_round_trips() {
        for len in [1usize, 127, 128, 300, 16_383, 16_384, 1 << 20, u32::MAX as usize] {
            let p = length_prefix(len);
            assert_eq!(decode(&p, u32::MAX), Ok(Some(len as u32)), "len {len}");
        }
    }

    #[test]
    fn oversized_length_is_refused_before_the_varint_ends() {
        // 4 GiB declared with a limit of 1 MiB: refused at the third of five bytes.
        let p = length_prefix(u32::MAX as usize);
        let mut d = LengthDecoder::default();
        let mut refused_at = None;
        for (i, b) in p.iter().enumerate() {
            if let Err(e) = d.push(*b, 1 << 20) {
                assert!(matches!(e, FramingError::TooLarge { .. }));
                refused_at = Some(i);
                break;
            }
        }
        assert_eq!(refused_at, Some(2));
    }

    #[test]
    fn frame_buffer_cuts_frames_and_waits_for_partial_ones() {
        let mut fb = FrameBuffer::new(1024);
        let mut wire = BytesMut::new();
        put_length_prefix(&mut wire, 3);
        wire.extend_from_slice(b"abc");
        put_length_prefix(&mut wire, 200);
        wire.extend_from_slice(&[7u8; 100]);
        fb.read_buf().extend_from_slice(&wire);
        assert_eq!(fb.decode().unwrap().as_deref(), Some(&b"abc"[..]));
        assert_eq!(fb.decode().unwrap(), None);
        fb.read_buf().extend_from_slice(&[7u8; 100]);
        assert_eq!(fb.decode().unwrap().map(|b| b.len()), Some(200));
        assert!(fb.is_empty());
    }

    #[test]
    fn frame_buffer_refuses_oversized_prefix_without_payload() {
        let mut fb = FrameBuffer::new(1024);
        fb.read_buf().extend_from_slice(&length_prefix(1 << 30));
        assert!(matches!(fb.decode(), Err(FramingError::TooLarge { .. })));
    }

    #[test]
    fn zero_and_overlong_lengths_are_malformed() {
        assert_eq!(decode(&[0], 10), Err(FramingError::BadLength));
        assert_eq!(decode(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], u32::MAX), Err(FramingError::BadLength));
    }
}
