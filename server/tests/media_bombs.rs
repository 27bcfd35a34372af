//! Decompression bombs (issue 15): a small file whose header claims 40,000 × 40,000 pixels is
//! refused by `probe` and `process` with `TooLarge`, and the heap never holds more than 1 MiB
//! during the call. The global allocator is `dhat`'s counting one (this crate forbids
//! `unsafe`, which a hand-written `GlobalAlloc` needs): its peak (`max_bytes`, the most bytes
//! live at once while the profiler runs) bounds the largest single allocation. It is the
//! allocator of this whole test binary, so this file holds nothing else; the tests take turns
//! (one profiler at a time), and each builds its input before the profiler starts.

use std::io::Cursor;
use std::sync::{Mutex, PoisonError};

use confab_server::media::content::{ContentError, ImageFormat};
use confab_server::media::image::{ImageLimits, probe, process};
use image::{DynamicImage, RgbImage, RgbaImage};
use img_parts::Bytes;
use img_parts::png::{Png, PngChunk};
use img_parts::riff::{RiffChunk, RiffContent};
use img_parts::webp::WebP;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// One profiler at a time.
static TURN: Mutex<()> = Mutex::new(());

const MIB: usize = 1 << 20;

/// The configured defaults: 32 MP, 16,384 pixels a side.
fn limits() -> ImageLimits {
    ImageLimits::new(32_000_000, 16_384)
}

/// Every test holds this for its whole body: the profiler counts every thread's allocations, so
/// nothing else (another test building its bomb) may allocate while one measures.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` under the profiler: its result and the heap's peak during it, in bytes (the caller
/// holds [`turn`]).
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let profiler = dhat::Profiler::builder().testing().build();
    let out = f();
    let peak = dhat::HeapStats::get().max_bytes;
    drop(profiler);
    (out, peak)
}

fn encode(image: DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// A PNG whose IHDR says 40,000 × 40,000 RGBA (valid CRCs: img-parts computes them) over the
/// IDAT of a 1×1 image: 69 bytes.
fn png_bomb() -> Vec<u8> {
    let mut png = Png::from_bytes(encode(RgbImage::new(1, 1).into(), image::ImageFormat::Png).into()).expect("png");
    let mut ihdr = 40_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&40_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    png.chunks_mut()[0] = PngChunk::new(*b"IHDR", Bytes::from(ihdr));
    png.encoder().bytes().to_vec()
}

/// A 16×16 JPEG whose frame header (SOF0: precision, height, width) says 40,000 × 40,000.
fn jpeg_bomb() -> Vec<u8> {
    let mut jpeg = encode(RgbImage::new(16, 16).into(), image::ImageFormat::Jpeg);
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("SOF0");
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0x9C, 0x40, 0x9C, 0x40]);
    jpeg
}

/// A 1×1 GIF whose logical screen (bytes 6–9, little-endian) is 40,000 × 40,000.
fn gif_bomb() -> Vec<u8> {
    let mut gif = encode(RgbaImage::new(1, 1).into(), image::ImageFormat::Gif);
    gif[6..10].copy_from_slice(&[0x40, 0x9C, 0x40, 0x9C]);
    gif
}

/// No limit on sides or pixels, only the decoders' allocation budget (64 MiB): what is left
/// when the size checks are configured away.
fn budget_only() -> ImageLimits {
    ImageLimits { max_pixels: u64::MAX, max_dimension: u32::MAX, max_alloc_bytes: 64 * MIB as u64 }
}

/// A 1×1 GIF whose first frame (its image descriptor: left, top, width, height, 16-bit
/// little-endian) says 40,000 × 40,000: a bomb the logical screen does not show.
fn gif_frame_bomb() -> Vec<u8> {
    let mut gif = encode(RgbaImage::new(1, 1).into(), image::ImageFormat::Gif);
    // Header (6), logical screen descriptor (7), global colour table if flagged, extensions
    // (0x21, label, sub-blocks ending in a 0 length), then the image descriptor (0x2C).
    let mut i = 13 + if gif[10] & 0x80 != 0 { 3 << ((gif[10] & 7) + 1) } else { 0 };
    while gif[i] == 0x21 {
        i += 2;
        while gif[i] != 0 {
            i += usize::from(gif[i]) + 1;
        }
        i += 1;
    }
    assert_eq!(gif[i], 0x2C, "image descriptor");
    gif[i + 5..i + 9].copy_from_slice(&[0x40, 0x9C, 0x40, 0x9C]);
    gif
}

/// A 1×1 lossless WebP in the extended format, whose VP8X canvas (24-bit little-endian
/// width − 1 and height − 1) says 40,000 × 40,000.
fn webp_bomb() -> Vec<u8> {
    let mut webp = WebP::from_bytes(encode(RgbImage::new(1, 1).into(), image::ImageFormat::WebP).into()).expect("webp");
    let mut vp8x = vec![0u8; 4];
    vp8x.extend_from_slice(&39_999u32.to_le_bytes()[..3]);
    vp8x.extend_from_slice(&39_999u32.to_le_bytes()[..3]);
    webp.chunks_mut().insert(0, RiffChunk::new(*b"VP8X", RiffContent::Data(Bytes::from(vp8x))));
    webp.encoder().bytes().to_vec()
}

fn refused(format: ImageFormat, bytes: &[u8]) {
    assert!(bytes.len() < 1024, "{format:?} bomb is {} bytes", bytes.len());
    for (call, limits) in [("probe", limits()), ("process", limits()), ("process, budget only", budget_only())] {
        let (result, peak) = peak_heap(|| match call {
            "probe" => probe(bytes, format, &limits).map(|_| ()),
            _ => process(bytes, format, &limits).map(|_| ()),
        });
        match result {
            Err(ContentError::TooLarge { width: 40_000, height: 40_000, .. }) => {}
            other => panic!("{format:?} {call}: expected TooLarge 40000×40000, got {other:?}"),
        }
        eprintln!("{format:?} {call}: refused, heap peak {peak} bytes");
        assert!(peak < MIB, "{format:?} {call}: heap peak {peak} bytes");
    }
}

#[test]
fn a_png_claiming_40000_by_40000_is_refused_without_a_large_allocation() {
    let _turn = turn();
    refused(ImageFormat::Png, &png_bomb());
}

#[test]
fn a_jpeg_claiming_40000_by_40000_is_refused_without_a_large_allocation() {
    let _turn = turn();
    refused(ImageFormat::Jpeg, &jpeg_bomb());
}

#[test]
fn a_webp_claiming_40000_by_40000_is_refused_without_a_large_allocation() {
    let _turn = turn();
    refused(ImageFormat::WebP, &webp_bomb());
}

#[test]
fn a_gif_claiming_40000_by_40000_is_refused_without_a_large_allocation() {
    let _turn = turn();
    refused(ImageFormat::Gif, &gif_bomb());
}

#[test]
fn a_gif_frame_larger_than_its_screen_is_refused_without_a_large_allocation() {
    let _turn = turn();
    let bomb = gif_frame_bomb();
    assert_eq!(probe(&bomb, ImageFormat::Gif, &limits()).expect("the screen is 1×1"), (1, 1));
    let (result, peak) = peak_heap(|| process(&bomb, ImageFormat::Gif, &limits()).map(|_| ()));
    eprintln!("GIF frame bomb: {result:?}, heap peak {peak} bytes");
    assert!(matches!(result, Err(ContentError::TooLarge { .. })), "{result:?}");
    assert!(peak < MIB, "heap peak {peak} bytes");
}

/// The measure sees real allocations: processing a 1,000 × 1,000 image (3 MB of RGB pixels)
/// peaks above 3 MiB.
#[test]
fn the_counter_sees_a_real_decode() {
    let _turn = turn();
    let png =
        encode(RgbImage::from_fn(1000, 1000, |x, y| image::Rgb([x as u8, y as u8, 7])).into(), image::ImageFormat::Png);
    let (result, peak) = peak_heap(|| process(&png, ImageFormat::Png, &limits()).map(|p| p.thumbnails.len()));
    assert_eq!(result.expect("process"), 3);
    eprintln!("a 1000×1000 PNG: heap peak {peak} bytes");
    assert!(peak > 3 * MIB, "heap peak {peak} bytes");
}
