//! Media fixtures for tests (docs/protocol.md §22): random files, a JPEG carrying EXIF GPS and an
//! orientation, a PNG whose header claims 40,000 × 40,000 pixels, and checks that stored images
//! carry no metadata.

use std::io::Cursor;

use bytes::Bytes;
use confab_protocol::client::media::UploadSpec;
use confab_protocol::client::{Client, ClientError};
use confab_protocol::v1::{self, MediaPurpose};
use image::{DynamicImage, ImageFormat, RgbImage};
use img_parts::ImageEXIF;
use img_parts::jpeg::Jpeg;
use img_parts::png::{Png, PngChunk};

/// GPS latitude 48° 51′ 29.56″ as three TIFF RATIONALs: bytes that must survive nowhere.
pub const LATITUDE: [u8; 24] = [48, 0, 0, 0, 1, 0, 0, 0, 51, 0, 0, 0, 1, 0, 0, 0, 0x8c, 0x0b, 0, 0, 100, 0, 0, 0];

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    for c in v.chunks_mut(4096) {
        let _ = getrandom::fill(c);
    }
    v
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// A `width` × `height` picture with a gradient (so thumbnails have something to show).
pub fn picture(width: u32, height: u32) -> DynamicImage {
    RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])).into()
}

/// A PNG of `width` × `height`.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    encode(&picture(width, height), ImageFormat::Png)
}

/// An EXIF block (little-endian TIFF): Orientation = `orientation` and a GPS IFD with
/// latitude N [`LATITUDE`] (see server/src/media/image/tests.rs for the layout).
fn exif_with_gps(orientation: u16) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]) {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&value);
    }
    let mut t = b"II\x2a\x00".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes());
    t.extend_from_slice(&2u16.to_le_bytes());
    let [o0, o1] = orientation.to_le_bytes();
    entry(&mut t, 0x0112, 3, 1, [o0, o1, 0, 0]);
    entry(&mut t, 0x8825, 4, 1, 38u32.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(&2u16.to_le_bytes());
    entry(&mut t, 0x0001, 2, 2, *b"N\0\0\0");
    entry(&mut t, 0x0002, 5, 3, 68u32.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(&LATITUDE);
    t
}

/// A `width` × `height` JPEG with an EXIF segment holding Orientation = `orientation` and GPS.
pub fn jpeg_with_gps(width: u32, height: u32, orientation: u16) -> Vec<u8> {
    let mut j = Jpeg::from_bytes(encode(&picture(width, height), ImageFormat::Jpeg).into()).expect("jpeg");
    j.set_exif(Some(exif_with_gps(orientation).into()));
    j.encoder().bytes().to_vec()
}

/// A 1×1 PNG whose IHDR says 40,000 × 40,000 (a decompression bomb's header).
pub fn png_bomb() -> Vec<u8> {
    let mut p = Png::from_bytes(png(1, 1).into()).expect("png");
    let mut ihdr = 40_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&40_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    p.chunks_mut()[0] = PngChunk::new(*b"IHDR", Bytes::from(ihdr));
    p.encoder().bytes().to_vec()
}

/// Whether `bytes` (a JPEG) carries an EXIF segment, or anywhere the GPS latitude bytes.
pub fn has_metadata(bytes: &[u8]) -> bool {
    let exif = Jpeg::from_bytes(Bytes::copy_from_slice(bytes)).is_ok_and(|j| j.exif().is_some());
    exif || bytes.windows(LATITUDE.len()).any(|w| w == LATITUDE) || bytes.windows(6).any(|w| w == b"Exif\0\0")
}

/// Width and height of an encoded image.
pub fn dimensions(bytes: &[u8]) -> (u32, u32) {
    image::load_from_memory(bytes).map(|i| (i.width(), i.height())).unwrap_or((0, 0))
}

/// What BeginUpload needs, without a SHA-256.
pub fn spec(mime: &str, purpose: MediaPurpose, name: &str) -> UploadSpec {
    UploadSpec { mime_type: mime.into(), purpose, file_name: name.into(), sha256: None }
}

/// An attachment of bytes whose type is not claimed.
pub fn octets() -> UploadSpec {
    spec("application/octet-stream", MediaPurpose::Attachment, "")
}

/// Uploads `bytes` whole (docs/protocol.md §22.2-§22.5).
pub async fn upload(c: &Client, bytes: &[u8], spec: &UploadSpec) -> Result<v1::MediaInfo, ClientError> {
    c.upload(&mut Cursor::new(bytes.to_vec()), spec, &mut |_| {}).await
}

/// Downloads a media item or thumbnail from `offset` to its end (§22.7).
pub async fn download(c: &Client, media_id: &str, thumbnail: &str, offset: u64) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    c.download(media_id, thumbnail, offset, &mut out, &mut |_, _| {}).await?;
    Ok(out)
}
