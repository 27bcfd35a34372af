//! Metadata removal without re-encoding (`img-parts`): an image's container (JPEG segments, PNG
//! chunks, WebP RIFF chunks) is rewritten keeping only what the pixels need — the compressed
//! image data, the colour information (the ICC profile above all) and animation control — and
//! dropping EXIF (GPS, camera, times), XMP, comments, text chunks and anything unknown. The pixel
//! data is copied byte for byte. The same parsed container gives the EXIF orientation and the ICC
//! profile.
//!
//! Kept, by format (everything else is dropped):
//! - JPEG: every non-APPn, non-COM segment (tables, frame and scan headers, the scans), APP0
//!   (JFIF), APP2 `ICC_PROFILE` and APP14 (Adobe colour transform). Nothing after the end-of-image
//!   marker: phones append further images there (Multi-Picture Format depth and gain maps, each
//!   with EXIF of its own), and APPn/COM segments between progressive scans go too.
//! - PNG: IHDR, PLTE, IDAT, IEND, tRNS, the colour chunks (gAMA, cHRM, sRGB, iCCP, cICP, mDCV,
//!   cLLI, sBIT), bKGD, pHYs and the APNG chunks (acTL, fcTL, fdAT). tEXt/zTXt/iTXt (XMP lives in
//!   iTXt), eXIf, tIME, C2PA and private chunks go.
//! - WebP: VP8X (its EXIF and XMP flags cleared), VP8, VP8L, ALPH, ANIM, ANMF, ICCP.

use ::image::metadata::Orientation;
use img_parts::jpeg::{Jpeg, JpegSegment, markers};
use img_parts::png::Png;
use img_parts::riff::RiffContent;
use img_parts::webp::{CHUNK_VP8X, WebP};
use img_parts::{Bytes, ImageEXIF, ImageICC};

use super::ImageFormat;
use crate::media::content::ContentError;

/// PNG chunks that are kept (see the module doc).
const PNG_KEPT: &[&[u8; 4]] = &[
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"cICP", b"mDCV", b"cLLI",
    b"sBIT", b"bKGD", b"pHYs", b"acTL", b"fcTL", b"fdAT",
];

/// WebP chunks that are kept.
const WEBP_KEPT: &[&[u8; 4]] = &[b"VP8X", b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF", b"ICCP"];

/// The XMP flag of a VP8X chunk's first byte (img-parts updates the ICC and EXIF flags itself).
const VP8X_XMP_FLAG: u8 = 0b0000_0100;

/// A parsed JPEG, PNG or WebP container.
#[derive(Debug)]
pub(super) enum Container {
    /// The parsed segments up to the first scan, and the whole file (the first scan's data and
    /// everything after it are its tail).
    Jpeg(Jpeg, Bytes),
    Png(Png),
    WebP(WebP),
}

impl Container {
    /// Parses the container of `bytes` (one copy of them is made).
    ///
    /// # Errors
    /// [`ContentError::Undecodable`] when the bytes are not a well-formed container of `format`;
    /// a GIF has none here (it is stored as it is).
    pub(super) fn parse(bytes: &[u8], format: ImageFormat) -> Result<Self, ContentError> {
        let b = Bytes::copy_from_slice(bytes);
        let bad = |e: img_parts::Error| ContentError::Undecodable(format!("{} container: {e}", format.mime()));
        Ok(match format {
            ImageFormat::Jpeg => Self::Jpeg(Jpeg::from_bytes(b.clone()).map_err(bad)?, b),
            ImageFormat::Png => Self::Png(Png::from_bytes(b).map_err(bad)?),
            ImageFormat::WebP => Self::WebP(WebP::from_bytes(b).map_err(bad)?),
            ImageFormat::Gif => return Err(ContentError::Undecodable("a GIF has no metadata container".into())),
        })
    }

    /// The EXIF orientation; `NoTransforms` when there is no EXIF, no orientation tag or an
    /// invalid one.
    pub(super) fn orientation(&self) -> Orientation {
        let exif = match self {
            Self::Jpeg(j, _) => j.exif(),
            Self::Png(p) => p.exif(),
            Self::WebP(w) => w.exif(),
        };
        exif.and_then(|e| Orientation::from_exif_chunk(&e)).unwrap_or(Orientation::NoTransforms)
    }

    /// The embedded ICC profile, if any.
    pub(super) fn icc_profile(&self) -> Option<Vec<u8>> {
        let icc = match self {
            Self::Jpeg(j, _) => j.icc_profile(),
            Self::Png(p) => p.icc_profile(),
            Self::WebP(w) => w.icc_profile(),
        };
        icc.map(|b| b.to_vec())
    }

    /// The file again, metadata dropped (see the module doc), image data unchanged.
    pub(super) fn strip(self) -> Vec<u8> {
        match self {
            Self::Jpeg(mut jpeg, whole) => {
                let segments = jpeg.segments_mut();
                segments.retain(keep_jpeg_segment);
                for segment in segments.iter_mut().filter(|s| s.has_entropy()) {
                    // The scan's entropy is the file's tail from after the scan header on.
                    let tail = whole.slice(whole.len() - (segment.len_with_entropy() - segment.len())..);
                    let scans = Bytes::from(primary_image_scans(&tail));
                    *segment = JpegSegment::new_with_entropy(segment.marker(), segment.contents().clone(), scans);
                }
                jpeg.encoder().bytes().to_vec()
            }
            Self::Png(mut png) => {
                png.chunks_mut().retain(|c| PNG_KEPT.contains(&&c.kind()));
                png.encoder().bytes().to_vec()
            }
            Self::WebP(mut webp) => {
                webp.chunks_mut().retain(|c| WEBP_KEPT.contains(&&c.id()));
                // Updates VP8X's EXIF flag (and drops VP8X when nothing extended is left).
                webp.set_exif(None);
                if let Some(vp8x) = webp.chunks_mut().iter_mut().find(|c| c.id() == CHUNK_VP8X)
                    && let RiffContent::Data(data) = vp8x.content_mut()
                    && data.first().is_some_and(|flags| flags & VP8X_XMP_FLAG != 0)
                {
                    let mut flags = data.to_vec();
                    flags[0] &= !VP8X_XMP_FLAG;
                    *data = Bytes::from(flags);
                }
                webp.encoder().bytes().to_vec()
            }
        }
    }
}

/// Whether a JPEG segment before the first scan is kept.
fn keep_jpeg_segment(segment: &JpegSegment) -> bool {
    match segment.marker() {
        markers::APP0 | markers::APP14 => true,
        markers::APP2 => segment.contents().starts_with(b"ICC_PROFILE\0"),
        markers::APP1 | markers::APP3..=markers::APP13 | markers::APP15 | markers::COM => false,
        _ => true,
    }
}

/// Whether a JPEG marker is followed by a 2-byte length (ITU T.81 B.1.1.4; as img-parts reads
/// them).
fn has_length(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF | 0xDA..=0xDF | 0xE0..=0xEF | 0xF0..=0xFD | markers::COM)
}

/// The first scan's data and what follows it up to and including the end-of-image marker, less
/// APPn and COM segments: what stays of a JPEG's tail. Entropy-coded data never holds a marker
/// (0xFF is followed by a stuffed 0x00 or a restart marker), so the first other marker ends it.
/// A file with no end-of-image marker (truncated) keeps its whole tail, less those segments.
pub(super) fn primary_image_scans(tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tail.len());
    let (mut kept_from, mut i) = (0, 0);
    while i + 1 < tail.len() {
        if tail[i] != 0xFF {
            i += 1;
            continue;
        }
        match tail[i + 1] {
            // Fill byte: the marker starts at the next 0xFF.
            0xFF => i += 1,
            markers::EOI => {
                out.extend_from_slice(&tail[kept_from..i + 2]);
                return out;
            }
            marker if has_length(marker) => {
                let Some(len) = tail.get(i + 2..i + 4).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))) else {
                    break;
                };
                let end = (i + 2 + len).min(tail.len());
                if matches!(marker, markers::APP0..=markers::APP15 | markers::COM) {
                    out.extend_from_slice(&tail[kept_from..i]);
                    kept_from = end;
                }
                i = end;
            }
            // Stuffed 0x00, restart markers, TEM: two bytes, no length.
            _ => i += 2,
        }
    }
    out.extend_from_slice(&tail[kept_from..]);
    out
}
