//! Files and media, shared by the subcommands and the TUI: a local file as an upload sees it
//! (name, MIME type guessed from the extension, size), safe names for downloaded files,
//! downloads into a file that appears whole or not at all, sizes for people, and attachments as
//! one line of text or JSON.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use confab_protocol::client::Client;
use confab_protocol::client::media::{UploadSpec, digest};
use confab_protocol::v1::{self, MediaPurpose};
use serde_json::{Value, json};

/// The type claimed for a file whose extension names none.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Longest file name the server keeps, in bytes.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Most attachments one message carries (docs/protocol.md §22.8).
pub const MAX_ATTACHMENTS: usize = 10;

/// A file to upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalFile {
    pub path: PathBuf,
    /// The name the others see: the path's last component.
    pub file_name: String,
    pub mime_type: String,
    pub size: u64,
}

impl LocalFile {
    /// Looks at `path`: it must be a regular file, not empty.
    pub fn inspect(path: &Path) -> anyhow::Result<Self> {
        let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        if !meta.is_file() {
            bail!("{}: not a file", path.display());
        }
        if meta.len() == 0 {
            bail!("{}: the file is empty", path.display());
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let file_name = safe_file_name(&name, "file");
        Ok(Self { path: path.to_path_buf(), file_name, mime_type: mime_for(path), size: meta.len() })
    }

    /// What BeginUpload is told (the SHA-256 is added by the upload).
    pub fn spec(&self, purpose: MediaPurpose) -> UploadSpec {
        UploadSpec { mime_type: self.mime_type.clone(), purpose, file_name: self.file_name.clone(), sha256: None }
    }
}

/// The MIME type of a file from its extension, `application/octet-stream` when it names none.
pub fn mime_for(path: &Path) -> String {
    mime_guess::from_path(path).first_raw().unwrap_or(OCTET_STREAM).to_string()
}

/// A name to create a file under: the last component of `name` (never a path), without control
/// characters, not hidden (a leading dot becomes `_`), at most 255 bytes with its extension
/// kept; `fallback` when nothing is left.
pub fn safe_file_name(name: &str, fallback: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut s: String = last.chars().filter(|c| !c.is_control()).collect();
    s = s.trim().to_string();
    if s.chars().all(|c| c == '.') {
        s.clear();
    }
    if s.starts_with('.') {
        s.replace_range(..1, "_");
    }
    if s.is_empty() {
        return fallback.to_string();
    }
    if s.len() > MAX_FILE_NAME_BYTES {
        let ext = Path::new(&s).extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
        let ext = if ext.len() > 16 { String::new() } else { ext };
        let mut stem_end = MAX_FILE_NAME_BYTES - ext.len();
        while !s.is_char_boundary(stem_end) {
            stem_end -= 1;
        }
        s = format!("{}{ext}", &s[..stem_end]);
    }
    s
}

/// `dir/name`, or `dir/stem (1).ext`, `dir/stem (2).ext`… when taken.
pub fn free_path(dir: &Path, name: &str, attempt: u32) -> PathBuf {
    if attempt == 0 {
        return dir.join(name);
    }
    let p = Path::new(name);
    let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    match p.extension() {
        Some(ext) => dir.join(format!("{stem} ({attempt}).{}", ext.to_string_lossy())),
        None => dir.join(format!("{stem} ({attempt})")),
    }
}

/// A size for people: `512 B`, `1.20 MiB`.
pub fn human_size(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// `name (type, size)`.
pub fn attachment_summary(a: &v1::Attachment) -> String {
    let name = if a.file_name.is_empty() { a.media_id.as_str() } else { a.file_name.as_str() };
    format!("{name} ({}, {})", a.mime_type, human_size(a.size))
}

/// An attachment for `--json` output.
pub fn attachment_json(a: &v1::Attachment) -> Value {
    json!({
        "media_id": a.media_id,
        "file_name": a.file_name,
        "mime_type": a.mime_type,
        "size": a.size,
        "width": a.width,
        "height": a.height,
        "duration_ms": a.duration_ms,
        "thumbnails": a.thumbnails,
    })
}

/// Whether the TUI can draw the attachment: one of the four image formats the server decodes.
pub fn is_image(mime: &str) -> bool {
    matches!(mime, "image/jpeg" | "image/png" | "image/webp" | "image/gif")
}

/// What to fetch for an inline preview of an attachment: `scale320`, else `crop96`, else the
/// original when it is a small image (the server makes no thumbnail at or above an image's own
/// size). `None`: no preview.
pub fn preview_source(a: &v1::Attachment) -> Option<&'static str> {
    if !is_image(&a.mime_type) {
        return None;
    }
    ["scale320", "crop96"].into_iter().find(|t| a.thumbnails.iter().any(|x| x == t)).or_else(|| {
        const SMALL: u64 = 1024 * 1024;
        (a.size <= SMALL).then_some("")
    })
}

/// Whether an existing file is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    /// Fail when the target exists.
    Refuse,
    Replace,
    /// Use the first free `name (N).ext` beside it.
    Rename,
}

/// Downloads a media item (or a thumbnail) to `target`: into a temporary file beside it that
/// takes the target's name once complete (and checked against `sha256` when given), so a
/// failed download leaves nothing behind. Returns the path written and the byte count.
pub async fn download_to(
    client: &Client,
    media_id: &str,
    thumbnail: &str,
    target: &Path,
    overwrite: Overwrite,
    sha256: Option<&[u8]>,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> anyhow::Result<(PathBuf, u64)> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if overwrite == Overwrite::Refuse && target.exists() {
        bail!("{} exists: choose another path with -o, or --force to replace it", target.display());
    }
    let tmp = tempfile::Builder::new()
        .prefix(".confab-download-")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    let mut file = tokio::fs::File::from_std(tmp.reopen().context("opening the temporary file")?);
    let n = client.download(media_id, thumbnail, 0, &mut file, progress).await.context("download")?;
    file.sync_all().await.context("writing the file")?;
    if let Some(want) = sha256.filter(|s| !s.is_empty()) {
        let (got, _) = digest(&mut file).await.context("reading the download back")?;
        if got.as_slice() != want {
            bail!("the downloaded bytes do not match the media's SHA-256");
        }
    }
    drop(file);
    let path = persist(tmp, &dir, target, overwrite)?;
    Ok((path, n))
}

fn persist(
    mut tmp: tempfile::NamedTempFile,
    dir: &Path,
    target: &Path,
    overwrite: Overwrite,
) -> anyhow::Result<PathBuf> {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "download".into());
    for attempt in 0.. {
        let path = if overwrite == Overwrite::Rename { free_path(dir, &name, attempt) } else { target.to_path_buf() };
        let result = match overwrite {
            Overwrite::Replace => tmp.persist(&path),
            Overwrite::Refuse | Overwrite::Rename => tmp.persist_noclobber(&path),
        };
        match result {
            Ok(_) => return Ok(path),
            Err(e)
                if e.error.kind() == ErrorKind::AlreadyExists && overwrite == Overwrite::Rename && attempt < 1000 =>
            {
                tmp = e.file;
            }
            Err(e) if e.error.kind() == ErrorKind::AlreadyExists => {
                bail!("{} exists: choose another path with -o, or --force to replace it", path.display())
            }
            Err(e) => return Err(e.error).with_context(|| format!("writing {}", path.display())),
        }
    }
    unreachable!("the loop returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_server_never_leave_the_directory() {
        assert_eq!(safe_file_name("report.pdf", "x"), "report.pdf");
        assert_eq!(safe_file_name("../../etc/passwd", "x"), "passwd");
        assert_eq!(safe_file_name("..\\..\\boot.ini", "x"), "boot.ini");
        assert_eq!(safe_file_name("..", "m1"), "m1");
        assert_eq!(safe_file_name("", "m1"), "m1");
        assert_eq!(safe_file_name("dir/", "m1"), "m1");
        assert_eq!(safe_file_name(".bashrc", "x"), "_bashrc");
        assert_eq!(safe_file_name("a\u{1b}[31mred\n.txt", "x"), "a[31mred.txt");
        let long = format!("{}.jpeg", "é".repeat(200));
        let s = safe_file_name(&long, "x");
        assert!(s.len() <= MAX_FILE_NAME_BYTES && s.ends_with(".jpeg"), "{s}");
    }

    #[test]
    fn types_come_from_the_extension() {
        assert_eq!(mime_for(Path::new("a/b/photo.PNG")), "image/png");
        assert_eq!(mime_for(Path::new("notes.txt")), "text/plain");
        assert_eq!(mime_for(Path::new("blob")), OCTET_STREAM);
        assert_eq!(free_path(Path::new("/d"), "a.tar", 2), Path::new("/d/a (2).tar"));
        assert_eq!(free_path(Path::new("/d"), "README", 1), Path::new("/d/README (1)"));
    }

    #[test]
    fn previews_prefer_scale320_then_crop96_then_small_originals() {
        let a = |mime: &str, size: u64, thumbs: &[&str]| v1::Attachment {
            mime_type: mime.into(),
            size,
            thumbnails: thumbs.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(preview_source(&a("image/png", 5_000_000, &["crop96", "scale320", "scale800"])), Some("scale320"));
        assert_eq!(preview_source(&a("image/png", 5_000_000, &["crop96"])), Some("crop96"));
        assert_eq!(preview_source(&a("image/gif", 2_000, &[])), Some(""));
        assert_eq!(preview_source(&a("image/png", 5_000_000, &[])), None);
        assert_eq!(preview_source(&a("application/pdf", 2_000, &[])), None);
        assert_eq!(
            attachment_summary(&v1::Attachment { file_name: "a.pdf".into(), ..a("application/pdf", 1536, &[]) }),
            "a.pdf (application/pdf, 1.50 KiB)"
        );
    }
}
