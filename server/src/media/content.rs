//! What uploaded bytes are: the claimed media type normalized, the real type sniffed from the
//! first bytes (`infer`), and the check that the two agree before anything is stored or decoded.
//!
//! The rule ([`check_claim`]): bytes the sniffer recognizes are stored under the sniffed type,
//! and the claim must say the same (or `application/octet-stream`, "I don't know"). A few claims
//! that name the same bytes more precisely than the sniffer can are accepted as claimed (see
//! [`compatible`]): `audio/webm` for a WebM voice note, a `.docx` type for what the first bytes
//! show as a ZIP archive, `image/svg+xml` for XML, `text/plain` for any text. Bytes the sniffer
//! does not recognize keep the claimed type, unless the claim is one whose magic number the
//! sniffer checks for (claiming `image/png` for bytes that are not PNG is a mismatch). Only the
//! four image formats the server decodes ([`ImageFormat`]) are ever treated as images.

/// Bytes of a file's start that sniffing reads.
pub const SNIFF_BYTES: usize = 8192;

/// The stored type of bytes nothing recognizes and nobody named.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The image formats the server decodes (for thumbnails, EXIF orientation and metadata); every
/// other image type is stored as it is, like any file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Jpeg,
    Png,
    WebP,
    Gif,
}

impl ImageFormat {
    /// The media type: `image/jpeg`, `image/png`, `image/webp`, `image/gif`.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::WebP => "image/webp",
            Self::Gif => "image/gif",
        }
    }

    /// The format of a normalized media type, if it is one of the four.
    pub fn from_mime(mime: &str) -> Option<Self> {
        match mime {
            "image/jpeg" => Some(Self::Jpeg),
            "image/png" => Some(Self::Png),
            "image/webp" => Some(Self::WebP),
            "image/gif" => Some(Self::Gif),
            _ => None,
        }
    }
}

/// What the server does with a file: decode it (images of the four formats), or store it as it
/// is (video, audio, everything else).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Image(ImageFormat),
    Video,
    Audio,
    Other,
}

impl MediaKind {
    /// The kind of a normalized media type: the four image formats → `Image`, `video/*` →
    /// `Video`, `audio/*` → `Audio`, anything else (other images included) → `Other`.
    pub fn of(mime: &str) -> Self {
        if let Some(format) = ImageFormat::from_mime(mime) {
            Self::Image(format)
        } else if mime.starts_with("video/") {
            Self::Video
        } else if mime.starts_with("audio/") {
            Self::Audio
        } else {
            Self::Other
        }
    }
}

/// A media type (normalized, without parameters) and what it means for the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sniffed {
    pub mime: String,
    pub kind: MediaKind,
}

impl Sniffed {
    fn new(mime: String) -> Self {
        let kind = MediaKind::of(&mime);
        Self { mime, kind }
    }
}

/// Why content was refused. The messages name what was wrong, for the uploader.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The claimed type is not a `type/subtype` media type.
    #[error("not a media type: {0:?}")]
    BadMimeType(String),
    /// The bytes are not what the uploader said they are. `actual` is the sniffed type, or
    /// `application/octet-stream` when the bytes are nothing the sniffer knows.
    #[error("the file was declared {claimed} but its content is {actual}")]
    Mismatch { claimed: String, actual: String },
    /// An image whose header claims more than the limits allow; refused before decoding.
    #[error(
        "image of {width}×{height} pixels is too large (at most {max_dimension} pixels a side and \
         {max_pixels} pixels in all, within {max_alloc_bytes} bytes decoded)"
    )]
    TooLarge { width: u32, height: u32, max_dimension: u32, max_pixels: u64, max_alloc_bytes: u64 },
    /// An image of an accepted format that could not be read.
    #[error("the image could not be decoded: {0}")]
    Undecodable(String),
    /// A decoded image could not be written again (a server-side failure, not the file's).
    #[error("the image could not be encoded: {0}")]
    Encode(String),
}

/// Registered top-level types (RFC 6838 §4.2, IANA), less `example`.
const TOP_LEVEL_TYPES: &[&str] =
    &["application", "audio", "font", "haptics", "image", "message", "model", "multipart", "text", "video"];

/// Other names of one type → the name the server stores. The sniffer's own names are mapped
/// through the same table, so a claim and a sniff that mean the same thing compare equal.
const ALIASES: &[(&str, &str)] = &[
    ("image/jpg", "image/jpeg"),
    ("image/pjpeg", "image/jpeg"),
    ("image/x-png", "image/png"),
    ("image/x-icon", "image/vnd.microsoft.icon"),
    ("audio/mp3", "audio/mpeg"),
    ("audio/x-mp3", "audio/mpeg"),
    ("audio/mpeg3", "audio/mpeg"),
    ("audio/x-mpeg", "audio/mpeg"),
    ("audio/x-wav", "audio/wav"),
    ("audio/wave", "audio/wav"),
    ("audio/vnd.wave", "audio/wav"),
    ("audio/x-pn-wav", "audio/wav"),
    ("audio/x-flac", "audio/flac"),
    ("audio/m4a", "audio/mp4"),
    ("audio/x-m4a", "audio/mp4"),
    ("audio/x-aac", "audio/aac"),
    ("audio/x-midi", "audio/midi"),
    ("audio/mid", "audio/midi"),
    ("audio/x-aiff", "audio/aiff"),
    ("video/avi", "video/x-msvideo"),
    ("video/msvideo", "video/x-msvideo"),
    ("application/x-zip-compressed", "application/zip"),
    ("application/x-zip", "application/zip"),
    ("application/x-gzip", "application/gzip"),
    ("application/x-rar-compressed", "application/vnd.rar"),
    ("application/x-rar", "application/vnd.rar"),
    ("application/x-pdf", "application/pdf"),
    ("application/x-sqlite3", "application/vnd.sqlite3"),
];

/// Containers and the more precise types of what they hold: the sniffer reading a file's first
/// bytes may see only the container (a `.docx` is a ZIP archive whose telling entry can lie past
/// [`SNIFF_BYTES`]), or only one of the things a container can hold (a WebM with no video track
/// is still `video/webm` to it). Either name, claimed for the other, is accepted.
const CONTAINERS: &[(&str, &[&str])] = &[
    (
        "application/zip",
        &[
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            "application/vnd.oasis.opendocument.text",
            "application/vnd.oasis.opendocument.spreadsheet",
            "application/vnd.oasis.opendocument.presentation",
            "application/vnd.oasis.opendocument.graphics",
            "application/epub+zip",
            "application/java-archive",
            "application/vnd.android.package-archive",
        ],
    ),
    (
        "application/x-ole-storage",
        &[
            "application/msword",
            "application/vnd.ms-excel",
            "application/vnd.ms-powerpoint",
            "application/vnd.ms-outlook",
            "application/x-msi",
        ],
    ),
    ("text/xml", &["application/xml"]),
];

/// Types that name the same bytes to the sniffer: any one claimed for another is accepted.
const SAME_BYTES: &[&[&str]] = &[
    &["video/mp4", "audio/mp4", "video/x-m4v"],
    &["video/webm", "audio/webm"],
    &["video/x-matroska", "audio/x-matroska"],
    &["audio/ogg", "audio/opus", "video/ogg", "application/ogg"],
    &["image/heif", "image/heic", "image/heif-sequence", "image/heic-sequence"],
];

/// Types the sniffer knows but cannot be relied on to recognize: text formats it spots only by
/// some leading tags, and formats with no mandatory magic number (an MP3 or AAC stream may start
/// with frame-sync bytes it does not check for; a PEM certificate is text). Claimed for bytes it
/// did not recognize, they are taken as claimed.
const WEAKLY_SNIFFED: &[&str] = &[
    "text/html",
    "text/xml",
    "text/x-shellscript",
    "audio/mpeg",
    "audio/aac",
    "application/x-x509-ca-cert",
    "application/x-tar",
    "application/x-mobipocket-ebook",
];

/// Lowercases, strips parameters (`; charset=…`) and surrounding space, checks the
/// `type/subtype` syntax (RFC 6838 §4.2 restricted names: 1–127 characters, a letter or digit
/// first, then letters, digits and `!#$&-^_.+`, and a registered top-level type) and maps
/// aliases (`image/jpg` → `image/jpeg`, …).
///
/// # Errors
/// [`ContentError::BadMimeType`] for anything else.
pub fn normalize_mime(claimed: &str) -> Result<String, ContentError> {
    let bad = || ContentError::BadMimeType(claimed.chars().take(200).collect());
    let essence = claimed.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let (top, sub) = essence.split_once('/').ok_or_else(bad)?;
    if !TOP_LEVEL_TYPES.contains(&top) || !restricted_name(sub) {
        return Err(bad());
    }
    Ok(canonical(&essence).to_string())
}

/// RFC 6838 §4.2 `restricted-name` (already lowercased).
fn restricted_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 127
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
}

/// The stored name of a lowercased type without parameters.
fn canonical(mime: &str) -> &str {
    ALIASES.iter().find(|(alias, _)| *alias == mime).map_or(mime, |(_, name)| name)
}

/// What the bytes are, from their first [`SNIFF_BYTES`] (longer input is cut), or `None` when
/// the sniffer recognizes nothing. The type is normalized like a claim ([`normalize_mime`]).
pub fn sniff(head: &[u8]) -> Option<Sniffed> {
    let head = &head[..head.len().min(SNIFF_BYTES)];
    let found = infer::get(head)?;
    // infer names all web fonts `application/font-woff` and TrueType and OpenType both
    // `application/font-sfnt`; the extension tells them apart.
    let mime = match found.extension() {
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        // and an Embedded OpenType font `application/octet-stream`.
        "eot" => "application/vnd.ms-fontobject",
        _ => canonical(found.mime_type()),
    };
    Some(Sniffed::new(mime.to_string()))
}

/// Whether claiming `claimed` for bytes sniffed as `sniffed` (both normalized, different) is
/// accepted: the container and what it holds ([`CONTAINERS`]), names of the same bytes
/// ([`SAME_BYTES`]), any XML type (`+xml`) for XML, and `text/plain` for any text.
fn compatible(sniffed: &str, claimed: &str) -> bool {
    let contains = CONTAINERS.iter().any(|(container, held)| {
        (*container == sniffed && held.contains(&claimed)) || (*container == claimed && held.contains(&sniffed))
    });
    let same = SAME_BYTES.iter().any(|group| group.contains(&sniffed) && group.contains(&claimed));
    let xml = sniffed == "text/xml" && claimed.ends_with("+xml");
    let text = claimed == "text/plain" && sniffed.starts_with("text/");
    contains || same || xml || text
}

/// Whether the sniffer would have recognized bytes of type `mime` (normalized): it knows the
/// type (under this name or one mapping to it) and the type has a magic number it checks.
fn sniffable(mime: &str) -> bool {
    let known = infer::is_mime_supported(mime)
        || ALIASES.iter().any(|(alias, name)| *name == mime && infer::is_mime_supported(alias))
        || matches!(mime, "font/woff" | "font/woff2" | "font/ttf" | "font/otf" | "application/vnd.ms-fontobject");
    known && mime != OCTET_STREAM && !WEAKLY_SNIFFED.contains(&mime)
}

/// The type the server stores for bytes starting with `head` (their first [`SNIFF_BYTES`], or
/// all of a shorter file) that the uploader said were `claimed`:
/// - recognized bytes: the sniffed type, which the claim must equal, or be
///   `application/octet-stream`; a claim [`compatible`] with the sniffed type is kept as
///   claimed;
/// - unrecognized bytes: the claimed type, unless the sniffer would have recognized that type
///   (then a mismatch with `application/octet-stream` as the actual type).
///
/// The kind follows from the final type ([`MediaKind::of`]).
///
/// # Errors
/// [`ContentError::BadMimeType`] for a claim that is no media type; [`ContentError::Mismatch`]
/// when the bytes are not what was claimed.
pub fn check_claim(claimed: &str, head: &[u8]) -> Result<Sniffed, ContentError> {
    let claimed = normalize_mime(claimed)?;
    match sniff(head) {
        Some(sniffed) if sniffed.mime == claimed || claimed == OCTET_STREAM => Ok(sniffed),
        Some(sniffed) if compatible(&sniffed.mime, &claimed) => Ok(Sniffed::new(claimed)),
        Some(sniffed) => Err(ContentError::Mismatch { claimed, actual: sniffed.mime }),
        None if sniffable(&claimed) => Err(ContentError::Mismatch { claimed, actual: OCTET_STREAM.to_string() }),
        None => Ok(Sniffed::new(claimed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(format: ::image::ImageFormat) -> Vec<u8> {
        let img = ::image::DynamicImage::ImageRgb8(::image::RgbImage::from_pixel(8, 8, ::image::Rgb([200, 10, 10])));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).expect("encode");
        out.into_inner()
    }

    /// An MP4 file's first box: `ftyp`, major brand `isom`, compatible `isom iso2 mp41`.
    const MP4_HEAD: &[u8] = b"\0\0\0\x1cftypisom\0\0\x02\0isomiso2mp41\0\0\0\x08free";

    fn mismatch(claimed: &str, head: &[u8]) -> (String, String) {
        match check_claim(claimed, head) {
            Err(ContentError::Mismatch { claimed, actual }) => (claimed, actual),
            other => panic!("{claimed}: expected a mismatch, got {other:?}"),
        }
    }

    #[test]
    fn a_claim_that_the_bytes_contradict_is_a_mismatch() {
        let jpeg = encoded(::image::ImageFormat::Jpeg);
        let png = encoded(::image::ImageFormat::Png);
        assert_eq!(mismatch("image/png", &jpeg), ("image/png".into(), "image/jpeg".into()));
        assert_eq!(mismatch("application/pdf", &png), ("application/pdf".into(), "image/png".into()));
        // Bytes the sniffer does not know, claimed as a type whose magic number it checks.
        let text = b"just some words, nothing more\n";
        assert_eq!(mismatch("image/png", text), ("image/png".into(), OCTET_STREAM.into()));
        assert_eq!(mismatch("video/mp4", text), ("video/mp4".into(), OCTET_STREAM.into()));
        assert_eq!(mismatch("image/jpeg", &png[..0]), ("image/jpeg".into(), OCTET_STREAM.into()));
        let message = ContentError::Mismatch { claimed: "image/png".into(), actual: "image/jpeg".into() };
        assert_eq!(message.to_string(), "the file was declared image/png but its content is image/jpeg");
    }

    #[test]
    fn agreeing_claims_give_the_sniffed_type_and_kind() {
        let text = b"just some words, nothing more\n";
        assert_eq!(
            check_claim("text/plain", text).unwrap(),
            Sniffed { mime: "text/plain".into(), kind: MediaKind::Other }
        );
        let png = encoded(::image::ImageFormat::Png);
        let stored = check_claim("application/octet-stream", &png).unwrap();
        assert_eq!(stored, Sniffed { mime: "image/png".into(), kind: MediaKind::Image(ImageFormat::Png) });
        let mp4 = check_claim("video/mp4", MP4_HEAD).unwrap();
        assert_eq!(mp4, Sniffed { mime: "video/mp4".into(), kind: MediaKind::Video });
        let jpeg = encoded(::image::ImageFormat::Jpeg);
        assert_eq!(check_claim("IMAGE/JPG", &jpeg).unwrap().kind, MediaKind::Image(ImageFormat::Jpeg));
        assert_eq!(
            check_claim("image/gif", &encoded(::image::ImageFormat::Gif)).unwrap().kind,
            MediaKind::Image(ImageFormat::Gif)
        );
        assert_eq!(
            check_claim("image/webp", &encoded(::image::ImageFormat::WebP)).unwrap().kind,
            MediaKind::Image(ImageFormat::WebP)
        );
        // Unknown bytes keep the claimed type; nothing claimed, nothing known: octet-stream.
        let blob = [0x13u8, 0x37, 0, 1, 2, 3];
        assert_eq!(check_claim("application/x-confab-test", &blob).unwrap().kind, MediaKind::Other);
        assert_eq!(check_claim(OCTET_STREAM, &blob).unwrap().mime, OCTET_STREAM);
        // Only the first SNIFF_BYTES count: a PNG signature later on is not looked at.
        let mut late = vec![b' '; SNIFF_BYTES];
        late.extend_from_slice(&png);
        assert_eq!(check_claim("text/plain", &late).unwrap().mime, "text/plain");
    }

    #[test]
    fn precise_claims_for_what_the_sniffer_sees_coarsely_are_kept() {
        // A voice note recorded by a browser: WebM with one audio track.
        // Its EBML header (DocType `webm`), then the start of the Segment (the sniffer wants
        // more than 256 bytes).
        let mut webm = vec![
            0x1a, 0x45, 0xdf, 0xa3, 0x9f, 0x42, 0x86, 0x81, 0x01, 0x42, 0xf7, 0x81, 0x01, 0x42, 0xf2, 0x81, 0x04, 0x42,
            0xf3, 0x81, 0x08, 0x42, 0x82, 0x84, b'w', b'e', b'b', b'm', 0x42, 0x87, 0x81, 0x04, 0x42, 0x85, 0x81, 0x02,
            0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        webm.resize(300, 0xec);
        assert_eq!(sniff(&webm).unwrap().mime, "video/webm");
        let voice = check_claim("audio/webm;codecs=opus", &webm).unwrap();
        assert_eq!(voice, Sniffed { mime: "audio/webm".into(), kind: MediaKind::Audio });
        // A ZIP whose first entry does not say it is a Word document.
        let zip = b"PK\x03\x04\x14\0\0\0\x08\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x09\0\0\0docProps/";
        assert_eq!(sniff(zip).unwrap().mime, "application/zip");
        let docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
        assert_eq!(check_claim(docx, zip).unwrap().mime, docx);
        let xml = b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"/>";
        assert_eq!(
            check_claim("image/svg+xml", xml).unwrap(),
            Sniffed { mime: "image/svg+xml".into(), kind: MediaKind::Other }
        );
        assert_eq!(check_claim("text/plain", b"<html><body>hi</body></html>").unwrap().mime, "text/plain");
        // HTML without one of the tags the sniffer looks for is still HTML.
        assert_eq!(check_claim("text/html", b"<section>hi</section>").unwrap().mime, "text/html");
        // But a WebM is no ZIP, and an image type is never taken on trust.
        assert_eq!(mismatch(docx, &webm).1, "video/webm");
        assert_eq!(mismatch("image/png", xml).1, "text/xml");
    }

    #[test]
    fn media_types_are_normalized_or_refused() {
        assert_eq!(normalize_mime("IMAGE/JPEG; charset=x").unwrap(), "image/jpeg");
        assert_eq!(normalize_mime("  image/jpg ").unwrap(), "image/jpeg");
        assert_eq!(normalize_mime("audio/x-wav").unwrap(), "audio/wav");
        assert_eq!(normalize_mime("application/vnd.api+json").unwrap(), "application/vnd.api+json");
        for garbage in [
            "",
            "image",
            "image/",
            "/png",
            "image/png/x",
            "ima ge/png",
            "image/p ng",
            "x-foo/bar",
            "image/.png",
            "imáge/png",
            "text/plain\u{0}",
            &format!("image/{}", "a".repeat(128)),
        ] {
            match normalize_mime(garbage) {
                Err(ContentError::BadMimeType(_)) => {}
                other => panic!("{garbage:?}: {other:?}"),
            }
            assert!(matches!(check_claim(garbage, b"abc"), Err(ContentError::BadMimeType(_))), "{garbage:?}");
        }
    }

    #[test]
    fn sniffed_fonts_and_aliases_use_the_stored_names() {
        assert_eq!(sniff(b"wOF2\0\x01\0\0").map(|s| s.mime), Some("font/woff2".into()));
        assert_eq!(sniff(b"RIFF\x24\0\0\0WAVEfmt ").map(|s| s.mime), Some("audio/wav".into()));
        assert_eq!(check_claim("audio/x-wav", b"RIFF\x24\0\0\0WAVEfmt ").unwrap().kind, MediaKind::Audio);
        assert!(sniff(b"").is_none());
    }
}
