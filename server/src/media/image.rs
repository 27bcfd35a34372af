//! What is stored of an image of the four decoded formats: the original with its EXIF
//! orientation applied and its metadata stripped, and thumbnails. Pure, synchronous and
//! CPU-heavy: the caller runs it off the async runtime, a bounded number at a time.
//!
//! - Size limits are checked from the header before anything is decoded ([`probe`]): a
//!   decompression bomb (a tiny file claiming 40,000 × 40,000 pixels) is refused without
//!   allocating anything proportional to its claim, and every decoder runs under
//!   `image::Limits` (largest side, bytes allocated) as well.
//! - The stored original ([`ProcessedImage::original`]): EXIF orientation applied (width and height
//!   are those after rotation), EXIF (GPS above all), XMP, comments and text chunks stripped, the
//!   ICC profile kept. With no orientation to apply (none, or 1) the container is rewritten
//!   without re-encoding (`strip`: pixel data byte for byte); otherwise the decoded image is
//!   rotated and re-encoded in its format: JPEG at quality 90, PNG, and WebP lossless (the only
//!   WebP the `image` crate writes: no further loss, a larger file than a lossy original; an
//!   animated WebP or APNG with an orientation to apply keeps its first frame only). A GIF is
//!   stored as it is (GIF has no EXIF; a GIF's XMP or comment extensions stay) and its
//!   thumbnails come from the first frame.
//! - Thumbnails ([`Rendition`]): `crop96` (always: 96 × 96, the centred square scaled, small
//!   images scaled up), `scale320` and `scale800` (within N × N, aspect kept, only when the
//!   image is larger than N on a side: never scaled up). JPEG at quality 80, or PNG when the
//!   image has transparent pixels. They are encoded from pixels, so they carry no EXIF or XMP;
//!   an RGB ICC profile of the original goes with them (colour, not metadata: a Display P3
//!   photo's thumbnail would look washed out without it).

mod strip;

use std::io::Cursor;

use ::image::codecs::gif::GifDecoder;
use ::image::codecs::jpeg::{JpegDecoder, JpegEncoder};
use ::image::codecs::png::{PngDecoder, PngEncoder};
use ::image::codecs::webp::{WebPDecoder, WebPEncoder};
use ::image::imageops::FilterType;
use ::image::metadata::Orientation;
use ::image::{DynamicImage, ImageDecoder, ImageEncoder, ImageError};

pub use super::content::{ContentError, ImageFormat};
use crate::config::MediaConfig;
use strip::Container;

/// JPEG quality of a re-encoded (rotated) original.
pub const ORIGINAL_JPEG_QUALITY: u8 = 90;
/// JPEG quality of thumbnails.
pub const THUMBNAIL_JPEG_QUALITY: u8 = 80;
/// Side of the `crop96` thumbnail, in pixels.
pub const CROP_SIDE: u32 = 96;
/// The scaled thumbnails: name and the side of the square they fit in, in pixels.
pub const SCALED: &[(&str, u32)] = &[("scale320", 320), ("scale800", 800)];

/// How large an image may be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLimits {
    /// Width × height, at most.
    pub max_pixels: u64,
    /// Width and height, each at most, in pixels.
    pub max_dimension: u32,
    /// Bytes a decoder may allocate (`image::Limits::max_alloc`): the decoded pixels (up to 8
    /// bytes a pixel for 16-bit RGBA) and its working buffers.
    pub max_alloc_bytes: u64,
}

impl ImageLimits {
    /// Limits for images of at most `max_pixels` and `max_dimension` a side, with a decoder
    /// budget of 8 bytes a pixel (an 8-bit RGBA image and as much again for the decoder's
    /// buffers, or a 16-bit RGBA image).
    pub fn new(max_pixels: u64, max_dimension: u32) -> Self {
        Self { max_pixels, max_dimension, max_alloc_bytes: max_pixels.saturating_mul(8) }
    }

    /// [`ImageLimits::new`] with the configured `max_image_pixels` and `max_image_dimension`.
    pub fn from_config(config: &MediaConfig) -> Self {
        Self::new(config.max_image_pixels, config.max_image_dimension)
    }

    /// The `image` crate's limits: largest side and allocation budget.
    fn decoder_limits(&self) -> ::image::Limits {
        let mut limits = ::image::Limits::default();
        limits.max_image_width = Some(self.max_dimension);
        limits.max_image_height = Some(self.max_dimension);
        limits.max_alloc = Some(self.max_alloc_bytes);
        limits
    }

    fn too_large(&self, width: u32, height: u32) -> ContentError {
        ContentError::TooLarge {
            width,
            height,
            max_dimension: self.max_dimension,
            max_pixels: self.max_pixels,
            max_alloc_bytes: self.max_alloc_bytes,
        }
    }

    /// Refuses a size over the limits (and an empty image).
    fn check(&self, width: u32, height: u32) -> Result<(), ContentError> {
        if width == 0 || height == 0 {
            return Err(ContentError::Undecodable(format!("the header says {width}×{height} pixels")));
        }
        let pixels = u64::from(width) * u64::from(height);
        if width > self.max_dimension || height > self.max_dimension || pixels > self.max_pixels {
            return Err(self.too_large(width, height));
        }
        Ok(())
    }

    /// A decoder's error: over a limit → `TooLarge` (the size known), else `Undecodable`.
    fn decode_error(&self, error: ImageError, width: u32, height: u32) -> ContentError {
        match error {
            ImageError::Limits(_) => self.too_large(width, height),
            other => ContentError::Undecodable(other.to_string()),
        }
    }
}

/// What is stored of an image: the original (oriented, stripped) and its thumbnails.
#[derive(Clone, Debug)]
pub struct ProcessedImage {
    /// The file to store, in the format it came in.
    pub original: Vec<u8>,
    /// Its media type: that of the format it came in (`image/jpeg`, …).
    pub mime: String,
    /// Width and height of the original as shown, in pixels (after the EXIF orientation).
    pub width: u32,
    pub height: u32,
    /// `crop96`, then those of `scale320` and `scale800` the size calls for.
    pub thumbnails: Vec<Rendition>,
}

/// One thumbnail.
#[derive(Clone, Debug)]
pub struct Rendition {
    /// `crop96`, `scale320` or `scale800`.
    pub name: &'static str,
    pub bytes: Vec<u8>,
    /// `image/jpeg` or `image/png`.
    pub mime: String,
    /// In pixels.
    pub width: u32,
    pub height: u32,
}

/// A decoder that has read an image's header, under the limits.
struct Opened<'a> {
    decoder: Box<dyn ImageDecoder + 'a>,
    width: u32,
    height: u32,
}

/// Width and height of the image in `bytes`, as its header says (before any EXIF
/// orientation), in pixels. Reads the header only: no pixel data is decoded and nothing
/// proportional to the claimed size is allocated.
///
/// # Errors
/// [`ContentError::TooLarge`] when the size is over `limits` (a side, the pixel count, or the
/// decoded bytes); [`ContentError::Undecodable`] when the header cannot be read as `format`.
pub fn probe(bytes: &[u8], format: ImageFormat, limits: &ImageLimits) -> Result<(u32, u32), ContentError> {
    open(bytes, format, limits).map(|o| (o.width, o.height))
}

/// Reads the header and sets the decoder's limits, refusing sizes over the limits before any
/// pixel is decoded.
fn open<'a>(bytes: &'a [u8], format: ImageFormat, limits: &ImageLimits) -> Result<Opened<'a>, ContentError> {
    let reader = Cursor::new(bytes);
    let undecodable = |e: ImageError| ContentError::Undecodable(e.to_string());
    let mut decoder: Box<dyn ImageDecoder + 'a> = match format {
        ImageFormat::Png => {
            // The PNG decoder applies limits as it reads the header and then says only that one
            // was hit: read the size first, for the message.
            let (width, height) = png_header_size(bytes)?;
            limits.check(width, height)?;
            Box::new(
                PngDecoder::with_limits(reader, limits.decoder_limits())
                    .map_err(|e| limits.decode_error(e, width, height))?,
            )
        }
        // The JPEG decoder copies the (already bounded) file: its size, not the claimed one.
        ImageFormat::Jpeg => Box::new(JpegDecoder::new(reader).map_err(undecodable)?),
        ImageFormat::WebP => Box::new(WebPDecoder::new(reader).map_err(undecodable)?),
        ImageFormat::Gif => Box::new(GifDecoder::new(reader).map_err(undecodable)?),
    };
    let (width, height) = decoder.dimensions();
    limits.check(width, height)?;
    // The pixels come out of the decoder's budget, as in `image::ImageReader::decode`.
    let mut budget = limits.decoder_limits();
    budget.reserve(decoder.total_bytes()).map_err(|_| limits.too_large(width, height))?;
    decoder.set_limits(budget).map_err(|e| limits.decode_error(e, width, height))?;
    Ok(Opened { decoder, width, height })
}

/// Width and height from a PNG's IHDR chunk, which the format puts first, right after the
/// 8-byte signature: length (4), type `IHDR` (4), width and height (4 each, big-endian).
fn png_header_size(bytes: &[u8]) -> Result<(u32, u32), ContentError> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    match bytes.get(..24) {
        Some(h) if h.starts_with(SIGNATURE) && &h[12..16] == b"IHDR" => {
            Ok((u32::from_be_bytes([h[16], h[17], h[18], h[19]]), u32::from_be_bytes([h[20], h[21], h[22], h[23]])))
        }
        _ => Err(ContentError::Undecodable("not a PNG: no IHDR chunk first".into())),
    }
}

/// Decodes the (first frame of the) image.
fn decode(opened: Opened<'_>, limits: &ImageLimits) -> Result<DynamicImage, ContentError> {
    let (width, height) = (opened.width, opened.height);
    DynamicImage::from_decoder(opened.decoder).map_err(|e| limits.decode_error(e, width, height))
}

/// [`probe`], then decode (under `image::Limits`), apply the EXIF orientation, strip metadata
/// and make the thumbnails: everything the module doc describes.
///
/// # Errors
/// Those of [`probe`]; [`ContentError::Undecodable`] for a file that fails to decode;
/// [`ContentError::Encode`] if re-encoding fails.
pub fn process(bytes: &[u8], format: ImageFormat, limits: &ImageLimits) -> Result<ProcessedImage, ContentError> {
    let opened = open(bytes, format, limits)?;
    let (image, original, icc) = match format {
        ImageFormat::Gif => (decode(opened, limits)?, bytes.to_vec(), None),
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP => {
            let container = Container::parse(bytes, format)?;
            let orientation = container.orientation();
            let icc = container.icc_profile();
            let mut image = decode(opened, limits)?;
            let original = if orientation == Orientation::NoTransforms {
                container.strip()
            } else {
                drop(container);
                image.apply_orientation(orientation);
                encode_original(&image, format, icc.as_deref())?
            };
            (image, original, icc)
        }
    };
    let thumbnails = thumbnails(&image, icc.as_deref())?;
    Ok(ProcessedImage {
        original,
        mime: format.mime().to_string(),
        width: image.width(),
        height: image.height(),
        thumbnails,
    })
}

/// The colour space an ICC profile describes (bytes 16–19 of its header: `RGB `, `GRAY`,
/// `CMYK`, …).
fn icc_space(icc: &[u8]) -> Option<&[u8]> {
    icc.get(16..20)
}

/// Re-encodes a rotated original in its format, with its ICC profile when that describes the
/// pixels written (a CMYK JPEG's profile does not fit the RGB pixels it was decoded to).
fn encode_original(image: &DynamicImage, format: ImageFormat, icc: Option<&[u8]>) -> Result<Vec<u8>, ContentError> {
    let gray = matches!(image.color().channel_count(), 1 | 2);
    let fits = |icc: &&[u8]| icc_space(icc) == Some(if gray { b"GRAY" } else { b"RGB " });
    let icc = icc.filter(fits);
    let mut out = Vec::new();
    match format {
        ImageFormat::Jpeg => {
            let pixels = if gray { DynamicImage::ImageLuma8(image.to_luma8()) } else { image.to_rgb8().into() };
            write(&pixels, JpegEncoder::new_with_quality(&mut out, ORIGINAL_JPEG_QUALITY), icc)?;
        }
        ImageFormat::Png => write(image, PngEncoder::new(&mut out), icc)?,
        ImageFormat::WebP => {
            let icc = icc.filter(|_| !gray);
            let pixels: DynamicImage =
                if image.color().has_alpha() { image.to_rgba8().into() } else { image.to_rgb8().into() };
            write(&pixels, WebPEncoder::new_lossless(&mut out), icc)?;
        }
        ImageFormat::Gif => return Err(ContentError::Encode("a GIF is never re-encoded".into())),
    }
    Ok(out)
}

/// Writes `image` with `encoder`, the ICC profile attached when given.
fn write(image: &DynamicImage, mut encoder: impl ImageEncoder, icc: Option<&[u8]>) -> Result<(), ContentError> {
    if let Some(icc) = icc {
        encoder.set_icc_profile(icc.to_vec()).map_err(|e| ContentError::Encode(e.to_string()))?;
    }
    image.write_with_encoder(encoder).map_err(|e| ContentError::Encode(e.to_string()))
}

/// `crop96`, then `scale320` and `scale800` when the image is larger than that on a side.
/// Each scaled rendition is made from the next larger one (fast integer area averaging), and the
/// crop from the smallest whose shorter side still covers 96 pixels.
fn thumbnails(image: &DynamicImage, icc: Option<&[u8]>) -> Result<Vec<Rendition>, ContentError> {
    let larger_than = |img: &DynamicImage, side: u32| img.width() > side || img.height() > side;
    // Largest first, each from the previous.
    let mut scaled: Vec<(&'static str, DynamicImage)> = Vec::new();
    for &(name, side) in SCALED.iter().rev() {
        if larger_than(image, side) {
            let source = scaled.last().map_or(image, |(_, s)| s);
            scaled.push((name, source.thumbnail(side, side)));
        }
    }
    let crop_source =
        scaled.iter().rev().map(|(_, s)| s).find(|s| s.width().min(s.height()) >= CROP_SIDE).unwrap_or(image);
    let side = crop_source.width().min(crop_source.height());
    let square = crop_source.crop_imm((crop_source.width() - side) / 2, (crop_source.height() - side) / 2, side, side);
    let crop = if side > CROP_SIDE {
        square.thumbnail_exact(CROP_SIDE, CROP_SIDE)
    } else {
        square.resize_exact(CROP_SIDE, CROP_SIDE, FilterType::CatmullRom)
    };
    // Transparency is judged on the largest thumbnail (an 800-pixel one at most).
    let translucent = translucent(scaled.first().map_or(image, |(_, s)| s));
    let icc = icc.filter(|icc| icc_space(icc) == Some(b"RGB "));
    let mut out = vec![encode_rendition("crop96", &crop, translucent, icc)?];
    for (name, img) in scaled.iter().rev() {
        out.push(encode_rendition(name, img, translucent, icc)?);
    }
    Ok(out)
}

/// Whether some pixel is not fully opaque.
fn translucent(image: &DynamicImage) -> bool {
    match image {
        DynamicImage::ImageLumaA8(i) => i.pixels().any(|p| p.0[1] < u8::MAX),
        DynamicImage::ImageRgba8(i) => i.pixels().any(|p| p.0[3] < u8::MAX),
        DynamicImage::ImageLumaA16(i) => i.pixels().any(|p| p.0[1] < u16::MAX),
        DynamicImage::ImageRgba16(i) => i.pixels().any(|p| p.0[3] < u16::MAX),
        other if other.color().has_alpha() => other.to_rgba8().pixels().any(|p| p.0[3] < u8::MAX),
        _ => false,
    }
}

/// A thumbnail as PNG (RGBA) when `translucent`, else as JPEG (RGB).
fn encode_rendition(
    name: &'static str,
    image: &DynamicImage,
    translucent: bool,
    icc: Option<&[u8]>,
) -> Result<Rendition, ContentError> {
    let mut bytes = Vec::new();
    let mime = if translucent {
        write(&image.to_rgba8().into(), PngEncoder::new(&mut bytes), icc)?;
        ImageFormat::Png.mime()
    } else {
        write(&image.to_rgb8().into(), JpegEncoder::new_with_quality(&mut bytes, THUMBNAIL_JPEG_QUALITY), icc)?;
        ImageFormat::Jpeg.mime()
    };
    Ok(Rendition { name, bytes, mime: mime.to_string(), width: image.width(), height: image.height() })
}

#[cfg(test)]
mod tests;
