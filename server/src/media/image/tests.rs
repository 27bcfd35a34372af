//! Tests of image processing on real files made here with the `image` crate and `img-parts`.

use ::image::codecs::gif::GifEncoder;
use ::image::{Delay, Frame, GenericImageView, Rgb, RgbImage, Rgba, RgbaImage};
use img_parts::jpeg::{Jpeg, JpegSegment, markers};
use img_parts::png::{Png, PngChunk};
use img_parts::riff::{RiffChunk, RiffContent};
use img_parts::webp::WebP;
use img_parts::{Bytes, ImageEXIF, ImageICC};

use super::*;

fn limits() -> ImageLimits {
    ImageLimits::from_config(&MediaConfig::default())
}

fn encode(image: &DynamicImage, format: ::image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// A `width`×`height` picture: red on the left half, blue on the right, a green band on top.
fn picture(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        if y < height / 8 {
            Rgb([0, 200, 0])
        } else if x < width / 2 {
            Rgb([220, 20, 20])
        } else {
            Rgb([20, 20, 220])
        }
    })
}

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    encode(&picture(width, height).into(), ::image::ImageFormat::Jpeg)
}

/// GPS latitude 48° 51′ 29.56″ as three TIFF RATIONALs (little-endian numerator, denominator):
/// the bytes that must not survive anywhere.
const LATITUDE: [u8; 24] = [48, 0, 0, 0, 1, 0, 0, 0, 51, 0, 0, 0, 1, 0, 0, 0, 0x8c, 0x0b, 0, 0, 100, 0, 0, 0];
/// Longitude 2° 17′ 40.24″.
const LONGITUDE: [u8; 24] = [2, 0, 0, 0, 1, 0, 0, 0, 17, 0, 0, 0, 1, 0, 0, 0, 0xb8, 0x0f, 0, 0, 100, 0, 0, 0];

/// An EXIF block (a little-endian TIFF structure, what follows `Exif\0\0` in a JPEG APP1):
///
/// ```text
///   0  "II" 42 | offset of IFD0 = 8
///   8  IFD0, 2 entries: 0x0112 Orientation SHORT 1 = `orientation`
///                       0x8825 GPS IFD pointer LONG 1 = 38 | next IFD = 0
///  38  GPS IFD, 4 entries: 0x0001 GPSLatitudeRef ASCII 2 "N"
///                          0x0002 GPSLatitude RATIONAL 3 @ 92
///                          0x0003 GPSLongitudeRef ASCII 2 "E"
///                          0x0004 GPSLongitude RATIONAL 3 @ 116 | next IFD = 0
///  92  LATITUDE (24 bytes), 116 LONGITUDE (24 bytes); 140 bytes in all
/// ```
fn exif_with_gps(orientation: u16) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]) {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&value);
    }
    const SHORT: u16 = 3;
    const LONG: u16 = 4;
    const ASCII: u16 = 2;
    const RATIONAL: u16 = 5;
    let mut t = b"II\x2a\x00".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes());
    t.extend_from_slice(&2u16.to_le_bytes());
    let [o0, o1] = orientation.to_le_bytes();
    entry(&mut t, 0x0112, SHORT, 1, [o0, o1, 0, 0]);
    entry(&mut t, 0x8825, LONG, 1, 38u32.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(t.len(), 38);
    t.extend_from_slice(&4u16.to_le_bytes());
    entry(&mut t, 0x0001, ASCII, 2, *b"N\0\0\0");
    entry(&mut t, 0x0002, RATIONAL, 3, 92u32.to_le_bytes());
    entry(&mut t, 0x0003, ASCII, 2, *b"E\0\0\0");
    entry(&mut t, 0x0004, RATIONAL, 3, 116u32.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(t.len(), 92);
    t.extend_from_slice(&LATITUDE);
    t.extend_from_slice(&LONGITUDE);
    t
}

/// A made-up RGB ICC profile: 132 bytes whose header says `RGB ` at bytes 16–19.
fn icc_rgb() -> Vec<u8> {
    let mut icc = vec![0u8; 132];
    icc[..4].copy_from_slice(&132u32.to_be_bytes());
    icc[12..16].copy_from_slice(b"mntr");
    icc[16..20].copy_from_slice(b"RGB ");
    icc[20..24].copy_from_slice(b"XYZ ");
    icc[36..40].copy_from_slice(b"acsp");
    icc
}

/// A JPEG with an EXIF segment (and an ICC profile, an XMP packet and a comment) added.
fn jpeg_with_metadata(width: u32, height: u32, orientation: u16) -> Vec<u8> {
    let mut j = Jpeg::from_bytes(jpeg(width, height).into()).expect("parse jpeg");
    j.set_exif(Some(exif_with_gps(orientation).into()));
    j.set_icc_profile(Some(icc_rgb().into()));
    let xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta><exif:GPSLatitude>48,51.49N</exif:GPSLatitude></x:xmpmeta>";
    j.segments_mut().insert(1, JpegSegment::new_with_contents(markers::APP1, Bytes::from_static(xmp)));
    j.segments_mut().insert(1, JpegSegment::new_with_contents(markers::COM, Bytes::from_static(b"taken at home")));
    j.encoder().bytes().to_vec()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// No EXIF, no XMP, no GPS bytes, no comment.
fn assert_clean(what: &str, bytes: &[u8]) {
    for needle in
        [&b"Exif\0\0"[..], b"http://ns.adobe.com/xap", b"GPSLatitude", b"taken at home", &LATITUDE, &LONGITUDE]
    {
        assert!(!contains(bytes, needle), "{what} still holds {:?}", String::from_utf8_lossy(needle));
    }
}

fn decoded(bytes: &[u8]) -> DynamicImage {
    ::image::load_from_memory(bytes).expect("decodes")
}

/// Offset of the first scan's header (the SOS marker) in a JPEG.
fn scan_offset(bytes: &[u8]) -> usize {
    let j = Jpeg::from_bytes(Bytes::copy_from_slice(bytes)).expect("parse jpeg");
    2 + j.segments().iter().take_while(|s| s.marker() != markers::SOS).map(JpegSegment::len).sum::<usize>()
}

fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) < 40)
}

#[test]
fn orientation_6_is_applied_and_gps_is_gone_from_the_original_and_every_thumbnail() {
    let input = jpeg_with_metadata(1000, 500, 6);
    assert!(contains(&input, &LATITUDE) && contains(&input, b"Exif\0\0"), "the test file holds GPS");
    let out = process(&input, ImageFormat::Jpeg, &limits()).expect("process");
    // 90° clockwise: 1000×500 shows as 500×1000.
    assert_eq!((out.width, out.height), (500, 1000));
    assert_eq!(out.mime, "image/jpeg");
    assert_clean("original", &out.original);
    let stored = decoded(&out.original).to_rgb8();
    assert_eq!(stored.dimensions(), (500, 1000));
    // The green band on top is now on the right; the red left half is now the top.
    assert!(close(stored.get_pixel(490, 500).0, [0, 200, 0]), "{:?}", stored.get_pixel(490, 500));
    assert!(close(stored.get_pixel(200, 250).0, [220, 20, 20]), "{:?}", stored.get_pixel(200, 250));
    assert!(close(stored.get_pixel(200, 750).0, [20, 20, 220]), "{:?}", stored.get_pixel(200, 750));
    // Re-encoded with the ICC profile kept.
    let parsed = Jpeg::from_bytes(out.original.clone().into()).expect("parse");
    assert_eq!(parsed.icc_profile().as_deref(), Some(&icc_rgb()[..]));
    assert!(parsed.exif().is_none());
    let names: Vec<_> = out.thumbnails.iter().map(|t| (t.name, t.width, t.height)).collect();
    assert_eq!(names, [("crop96", 96, 96), ("scale320", 160, 320), ("scale800", 400, 800)]);
    for t in &out.thumbnails {
        assert_clean(t.name, &t.bytes);
        assert_eq!(decoded(&t.bytes).dimensions(), (t.width, t.height));
    }
}

#[test]
fn orientation_1_strips_without_re_encoding() {
    let input = jpeg_with_metadata(320, 240, 1);
    let out = process(&input, ImageFormat::Jpeg, &limits()).expect("process");
    assert_eq!((out.width, out.height), (320, 240));
    assert_clean("original", &out.original);
    // The scans, from the first scan header to the end, are the input's byte for byte.
    assert_eq!(out.original[scan_offset(&out.original)..], input[scan_offset(&input)..]);
    assert_eq!(decoded(&out.original).to_rgb8(), decoded(&input).to_rgb8());
    let parsed = Jpeg::from_bytes(out.original.clone().into()).expect("parse");
    assert_eq!(parsed.icc_profile().as_deref(), Some(&icc_rgb()[..]), "the ICC profile is kept");
    let kept: Vec<u8> =
        parsed.segments().iter().map(JpegSegment::marker).filter(|m| (0xE0..=0xEF).contains(m)).collect();
    assert_eq!(kept, [markers::APP0, markers::APP2], "JFIF and ICC only");
    for t in &out.thumbnails {
        assert_clean(t.name, &t.bytes);
    }
    // No orientation at all: the same.
    let plain = jpeg(64, 48);
    let out = process(&plain, ImageFormat::Jpeg, &limits()).expect("process");
    assert_eq!(out.original[scan_offset(&out.original)..], plain[scan_offset(&plain)..]);
}

#[test]
fn images_appended_after_the_end_and_segments_after_the_scan_are_dropped() {
    // A phone's Multi-Picture file: the primary image, then a second JPEG with EXIF of its own.
    let mut input = jpeg_with_metadata(64, 48, 1);
    let tail = jpeg_with_metadata(16, 16, 1);
    // An APP1 between the scan data and the end-of-image marker (as between progressive scans).
    let eoi = input.len() - 2;
    let mut app1 = vec![0xFF, markers::APP1];
    app1.extend_from_slice(&(2 + 6 + 24u16).to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&LATITUDE);
    input.splice(eoi..eoi, app1);
    input.extend_from_slice(&tail);
    let out = process(&input, ImageFormat::Jpeg, &limits()).expect("process");
    assert_clean("original", &out.original);
    assert!(out.original.ends_with(&[0xFF, markers::EOI]));
    assert_eq!(decoded(&out.original).to_rgb8(), decoded(&jpeg(64, 48)).to_rgb8());
}

#[test]
fn the_tail_scanner_keeps_scans_and_restart_markers_up_to_the_end() {
    let tail = [
        0x01, 0xFF, 0x00, 0x02, 0xFF, 0xD0, 0x03, // data, stuffed byte, restart marker
        0xFF, 0xFE, 0x00, 0x04, b'h', b'i', // COM: dropped
        0xFF, 0xC4, 0x00, 0x03, 0xAA, // DHT (a progressive file's next table): kept
        0xFF, 0xFF, 0xD9, // fill byte, end of image
        0xFF, 0xD8, 0xFF, 0xE1, // another image: dropped
    ];
    assert_eq!(
        strip::primary_image_scans(&tail),
        [0x01, 0xFF, 0x00, 0x02, 0xFF, 0xD0, 0x03, 0xFF, 0xC4, 0x00, 0x03, 0xAA, 0xFF, 0xFF, 0xD9]
    );
    // Truncated: no end marker, a segment cut short.
    assert_eq!(strip::primary_image_scans(&[0x05, 0xFF, 0xE1, 0x00]), [0x05, 0xFF, 0xE1, 0x00]);
}

#[test]
fn png_text_exif_and_xmp_chunks_are_dropped_and_the_image_data_kept() {
    let rgba = RgbaImage::from_fn(300, 200, |x, _| Rgba([200, 100, 50, if x < 10 { 0 } else { 255 }]));
    let plain = encode(&rgba.into(), ::image::ImageFormat::Png);
    let mut png = Png::from_bytes(plain.clone().into()).expect("parse png");
    png.set_exif(Some(exif_with_gps(1).into()));
    let n = png.chunks().len();
    png.chunks_mut().insert(n - 1, PngChunk::new(*b"tEXt", Bytes::from_static(b"Comment\0taken at home")));
    let xmp = b"XML:com.adobe.xmp\0\0\0\0\0<x:xmpmeta xmlns:x=\"http://ns.adobe.com/xap/1.0/\">GPSLatitude</x:xmpmeta>";
    png.chunks_mut().insert(1, PngChunk::new(*b"iTXt", Bytes::from_static(xmp)));
    png.chunks_mut().insert(1, PngChunk::new(*b"tIME", Bytes::from_static(b"\x07\xea\x01\x02\x03\x04\x05")));
    let input = png.encoder().bytes().to_vec();
    let out = process(&input, ImageFormat::Png, &limits()).expect("process");
    assert_clean("original", &out.original);
    let kinds = |b: &[u8]| -> Vec<[u8; 4]> {
        Png::from_bytes(Bytes::copy_from_slice(b)).expect("png").chunks().iter().map(PngChunk::kind).collect()
    };
    assert_eq!(kinds(&out.original), kinds(&plain), "the chunks the encoder wrote, no more");
    assert_eq!(out.original, plain, "byte for byte what the encoder wrote");
    // Transparent pixels: PNG thumbnails.
    assert!(out.thumbnails.iter().all(|t| t.mime == "image/png"), "{:?}", out.thumbnails);
    let names: Vec<_> = out.thumbnails.iter().map(|t| (t.name, t.width, t.height)).collect();
    assert_eq!(names, [("crop96", 96, 96)]);
    assert!(decoded(&out.thumbnails[0].bytes).color().has_alpha());
}

#[test]
fn webp_exif_and_xmp_chunks_are_dropped_and_their_flags_cleared() {
    let plain = encode(&picture(120, 80).into(), ::image::ImageFormat::WebP);
    let mut webp = WebP::from_bytes(plain.clone().into()).expect("parse webp");
    webp.set_icc_profile(Some(icc_rgb().into()));
    webp.set_exif(Some(exif_with_gps(1).into()));
    let xmp = Bytes::from_static(b"<x:xmpmeta>GPSLatitude</x:xmpmeta>");
    webp.chunks_mut().push(RiffChunk::new(*b"XMP ", RiffContent::Data(xmp)));
    // img-parts leaves the XMP flag to us: set it as a writer would.
    if let Some(RiffContent::Data(d)) =
        webp.chunks_mut().iter_mut().find(|c| c.id() == *b"VP8X").map(RiffChunk::content_mut)
    {
        let mut flags = d.to_vec();
        flags[0] |= 0b0000_0100;
        *d = flags.into();
    }
    let input = webp.encoder().bytes().to_vec();
    let out = process(&input, ImageFormat::WebP, &limits()).expect("process");
    assert_clean("original", &out.original);
    let stored = WebP::from_bytes(out.original.clone().into()).expect("parse");
    let ids: Vec<[u8; 4]> = stored.chunks().iter().map(RiffChunk::id).collect();
    assert_eq!(ids, [*b"VP8X", *b"ICCP", *b"VP8L"]);
    let flags = stored.chunks()[0].content().data().expect("VP8X data")[0];
    assert_eq!(flags, 0b0010_0000, "ICC only: no EXIF or XMP flag");
    assert_eq!(decoded(&out.original).to_rgb8(), picture(120, 80));
}

#[test]
fn webp_and_png_orientation_is_applied_too() {
    let mut webp = WebP::from_bytes(encode(&picture(60, 40).into(), ::image::ImageFormat::WebP).into()).expect("webp");
    webp.set_exif(Some(exif_with_gps(8).into()));
    let out = process(&webp.encoder().bytes(), ImageFormat::WebP, &limits()).expect("process");
    assert_eq!((out.width, out.height), (40, 60));
    assert_clean("original", &out.original);
    // 270° clockwise, losslessly: the red left half is now the bottom.
    let stored = decoded(&out.original).to_rgb8();
    assert_eq!(stored.get_pixel(20, 50).0, [220, 20, 20]);
    assert_eq!(stored.get_pixel(2, 30).0, [0, 200, 0]);
    let mut png = Png::from_bytes(encode(&picture(60, 40).into(), ::image::ImageFormat::Png).into()).expect("png");
    png.set_exif(Some(exif_with_gps(3).into()));
    let out = process(&png.encoder().bytes(), ImageFormat::Png, &limits()).expect("process");
    assert_eq!((out.width, out.height), (60, 40));
    assert_clean("original", &out.original);
    assert_eq!(decoded(&out.original).to_rgb8().get_pixel(30, 38).0, [0, 200, 0], "rotated 180°");
}

#[test]
fn thumbnails_fit_their_box_and_are_never_scaled_up() {
    let out = process(&jpeg(1000, 500), ImageFormat::Jpeg, &limits()).expect("process");
    let sizes: Vec<_> = out.thumbnails.iter().map(|t| (t.name, t.width, t.height, t.mime.as_str())).collect();
    assert_eq!(
        sizes,
        [("crop96", 96, 96, "image/jpeg"), ("scale320", 320, 160, "image/jpeg"), ("scale800", 800, 400, "image/jpeg")]
    );
    for t in &out.thumbnails {
        assert_eq!(decoded(&t.bytes).dimensions(), (t.width, t.height), "{}", t.name);
        assert_eq!(&t.bytes[..3], b"\xff\xd8\xff");
    }
    // The crop is the centre: blue right of the middle, red left of it.
    let crop = decoded(&out.thumbnails[0].bytes).to_rgb8();
    assert!(close(crop.get_pixel(20, 60).0, [220, 20, 20]) && close(crop.get_pixel(76, 60).0, [20, 20, 220]));
    let out = process(&jpeg(200, 100), ImageFormat::Jpeg, &limits()).expect("process");
    let sizes: Vec<_> = out.thumbnails.iter().map(|t| (t.name, t.width, t.height)).collect();
    assert_eq!(sizes, [("crop96", 96, 96)]);
    // Smaller than the crop: scaled up to 96 × 96 all the same.
    let out = process(&jpeg(40, 20), ImageFormat::Jpeg, &limits()).expect("process");
    assert_eq!((out.thumbnails.len(), out.thumbnails[0].width, out.thumbnails[0].height), (1, 96, 96));
    // Exactly 800 wide: scale320 only.
    let out = process(&jpeg(800, 300), ImageFormat::Jpeg, &limits()).expect("process");
    let sizes: Vec<_> = out.thumbnails.iter().map(|t| (t.name, t.width, t.height)).collect();
    assert_eq!(sizes, [("crop96", 96, 96), ("scale320", 320, 120)]);
}

#[test]
fn an_animated_gif_is_stored_as_it_is_with_thumbnails_from_its_first_frame() {
    let frame = |c: [u8; 4]| {
        Frame::from_parts(RgbaImage::from_pixel(400, 300, Rgba(c)), 0, 0, Delay::from_numer_denom_ms(100, 1))
    };
    let mut input = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut input);
        encoder.encode_frames([frame([230, 0, 0, 255]), frame([0, 0, 230, 255])]).expect("encode gif");
    }
    let out = process(&input, ImageFormat::Gif, &limits()).expect("process");
    assert_eq!(out.original, input, "unchanged");
    assert_eq!((out.width, out.height, out.mime.as_str()), (400, 300, "image/gif"));
    let sizes: Vec<_> = out.thumbnails.iter().map(|t| (t.name, t.width, t.height, t.mime.as_str())).collect();
    assert_eq!(sizes, [("crop96", 96, 96, "image/jpeg"), ("scale320", 320, 240, "image/jpeg")], "opaque: JPEG");
    for t in &out.thumbnails {
        let px = decoded(&t.bytes).to_rgb8().get_pixel(10, 10).0;
        assert!(close(px, [230, 0, 0]), "{}: the first (red) frame, got {px:?}", t.name);
    }
}

/// An animated WebP made by hand from two lossless stills: VP8X (animation flag, canvas), ANIM
/// (background, loop count), then one ANMF per frame (x/2, y/2, width − 1, height − 1,
/// duration: 24-bit little-endian each; a flags byte; the frame's VP8L chunk), and an EXIF chunk.
fn animated_webp(width: u32, height: u32, colours: &[[u8; 3]]) -> Vec<u8> {
    let le24 = |v: u32| v.to_le_bytes()[..3].to_vec();
    let mut vp8x = vec![0b0000_1010, 0, 0, 0];
    vp8x.extend(le24(width - 1));
    vp8x.extend(le24(height - 1));
    let data = |id: &[u8; 4], d: Vec<u8>| RiffChunk::new(*id, RiffContent::Data(d.into()));
    let mut chunks = vec![data(b"VP8X", vp8x), data(b"ANIM", vec![0, 0, 0, 0, 0, 0])];
    for colour in colours {
        let still = encode(&RgbImage::from_pixel(width, height, Rgb(*colour)).into(), ::image::ImageFormat::WebP);
        let still = WebP::from_bytes(still.into()).expect("webp");
        let vp8l = still.chunk_by_id(*b"VP8L").expect("lossless").clone().encoder().bytes();
        let mut frame = [le24(0), le24(0), le24(width - 1), le24(height - 1), le24(100)].concat();
        frame.push(0);
        frame.extend_from_slice(&vp8l);
        chunks.push(data(b"ANMF", frame));
    }
    chunks.push(data(b"EXIF", exif_with_gps(1)));
    let riff = RiffChunk::new(*b"RIFF", RiffContent::List { kind: Some(*b"WEBP"), subchunks: chunks });
    riff.encoder().bytes().to_vec()
}

#[test]
fn an_animated_webp_keeps_its_frames_and_loses_its_exif() {
    let input = animated_webp(400, 300, &[[230, 0, 0], [0, 0, 230]]);
    assert!(contains(&input, &LATITUDE));
    let out = process(&input, ImageFormat::WebP, &limits()).expect("process");
    assert_clean("original", &out.original);
    let stored = WebP::from_bytes(out.original.clone().into()).expect("parse");
    let ids: Vec<[u8; 4]> = stored.chunks().iter().map(RiffChunk::id).collect();
    assert_eq!(ids, [*b"VP8X", *b"ANIM", *b"ANMF", *b"ANMF"]);
    assert_eq!(stored.chunks()[0].content().data().expect("VP8X")[0], 0b0000_0010, "animation flag only");
    assert_eq!((out.width, out.height), (400, 300));
    // (The decoder blends each frame onto the canvas: 230 may come back as 229.)
    assert!(close(decoded(&out.original).to_rgb8().get_pixel(0, 0).0, [230, 0, 0]));
    assert_eq!(
        stored.chunks()[2..].iter().map(|c| c.clone().encoder().bytes()).collect::<Vec<_>>(),
        WebP::from_bytes(input.clone().into()).expect("input").chunks()[2..4]
            .iter()
            .map(|c| c.clone().encoder().bytes())
            .collect::<Vec<_>>(),
        "the frames byte for byte"
    );
    for t in &out.thumbnails {
        let px = decoded(&t.bytes).to_rgb8().get_pixel(10, 10).0;
        assert!(close(px, [230, 0, 0]), "{}: the first (red) frame, got {px:?}", t.name);
    }
}

/// A PNG whose IHDR says `width`×`height` RGBA, with an empty IDAT (CRCs computed by img-parts).
pub(crate) fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut png = Png::from_bytes(encode(&picture(1, 1).into(), ::image::ImageFormat::Png).into()).expect("png");
    png.chunks_mut()[0] = PngChunk::new(*b"IHDR", ihdr.into());
    png.encoder().bytes().to_vec()
}

fn too_large(result: Result<impl std::fmt::Debug, ContentError>) -> (u32, u32) {
    match result {
        Err(ContentError::TooLarge { width, height, .. }) => (width, height),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn sizes_over_the_limits_are_refused_from_the_header() {
    let bomb = png_claiming(40_000, 40_000);
    assert_eq!(too_large(probe(&bomb, ImageFormat::Png, &limits())), (40_000, 40_000));
    assert_eq!(too_large(process(&bomb, ImageFormat::Png, &limits())), (40_000, 40_000));
    // Sides within the limit, too many pixels in all.
    assert_eq!(too_large(probe(&png_claiming(10_000, 10_000), ImageFormat::Png, &limits())), (10_000, 10_000));
    // Generous sides and pixels, a small decoding budget.
    let budget = ImageLimits { max_pixels: u64::MAX, max_dimension: u32::MAX, max_alloc_bytes: 1 << 20 };
    assert_eq!(too_large(probe(&png_claiming(1000, 1000), ImageFormat::Png, &budget)), (1000, 1000));
    assert_eq!(too_large(probe(&jpeg(600, 600), ImageFormat::Jpeg, &budget)), (600, 600));
    let message = probe(&bomb, ImageFormat::Png, &limits()).unwrap_err().to_string();
    assert!(message.contains("40000×40000") && message.contains("16384"), "{message}");
    // Within the limits: the header's size.
    assert_eq!(probe(&jpeg(300, 200), ImageFormat::Jpeg, &limits()).expect("probe"), (300, 200));
    assert_eq!(probe(&png_claiming(300, 200), ImageFormat::Png, &limits()).expect("probe"), (300, 200));
}

#[test]
fn files_that_are_not_what_they_claim_are_undecodable() {
    let jpeg = jpeg(32, 32);
    for (bytes, format) in [
        (&jpeg[..], ImageFormat::Png),
        (&b"GIF89a"[..], ImageFormat::Gif),
        (&jpeg[..40], ImageFormat::Jpeg),
        (&b"RIFF"[..], ImageFormat::WebP),
    ] {
        match process(bytes, format, &limits()) {
            Err(ContentError::Undecodable(_)) => {}
            other => panic!("{format:?}: {other:?}"),
        }
    }
    // A valid header over a truncated body: the header is enough for probe.
    let cut = &jpeg[..scan_offset(&jpeg) + 20];
    assert_eq!(probe(cut, ImageFormat::Jpeg, &limits()).expect("probe"), (32, 32));
    // The decoder is lenient, as browsers are: the missing part decodes as grey, and the stored
    // file is the truncated one.
    let out = process(cut, ImageFormat::Jpeg, &limits()).expect("a truncated JPEG is shown in part");
    assert_eq!((out.width, out.height, out.original.len()), (32, 32, cut.len()));
}
