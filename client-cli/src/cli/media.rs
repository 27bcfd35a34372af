//! `send --file`'s uploads, `download` and `avatar`: files go up in chunks with a progress bar
//! on stderr (none with `--json` or when stderr is not a terminal) and resume on a new
//! connection after a transient failure; downloads land in a file whole or not at all.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use confab_protocol::client::media::digest;
use confab_protocol::client::{Client, ClientError};
use confab_protocol::v1::{self, MediaPurpose};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::config::Settings;
use crate::media::{LocalFile, Overwrite, download_to, human_size, safe_file_name};
use crate::session::{self, Connected};

/// Attempts at an upload, resumed where the server stopped, before giving up.
const ATTEMPTS: u32 = 3;

/// A byte progress bar on stderr, drawn only on a terminal; hidden when `quiet`.
pub fn bar(total: u64, label: &str, quiet: bool) -> ProgressBar {
    let target = if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
    let pb = ProgressBar::with_draw_target(Some(total), target);
    let style = ProgressStyle::with_template("{msg:24!} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}")
        .expect("valid template");
    pb.set_style(style.progress_chars("█▉▊▋▌▍▎▏ "));
    pb.set_message(label.to_string());
    pb
}

/// Whether a failure may pass on a new connection.
fn transient(e: &ClientError) -> bool {
    matches!(e, ClientError::Closed(_) | ClientError::Timeout | ClientError::Transport(_))
        || matches!(e, ClientError::Server(s) if s.code() == v1::ErrorCode::Unavailable)
}

/// The connection in `conn`, made when there is none.
async fn client<'a>(settings: &Settings, conn: &'a mut Option<Connected>) -> anyhow::Result<&'a Client> {
    if conn.is_none() {
        *conn = Some(session::connect(settings).await?);
    }
    Ok(&conn.as_ref().expect("connected").client)
}

/// Uploads `file` (BeginUpload with its SHA-256, the chunks, FinishUpload). A transient failure
/// reconnects and sends what the server lacks (GetUpload), up to [`ATTEMPTS`] times.
pub async fn upload(
    settings: &Settings,
    conn: &mut Option<Connected>,
    file: &LocalFile,
    purpose: MediaPurpose,
    quiet: bool,
) -> anyhow::Result<v1::MediaInfo> {
    let what = || format!("uploading {}", file.path.display());
    let mut source = tokio::fs::File::open(&file.path).await.with_context(what)?;
    let (sha, size) = digest(&mut source).await.with_context(what)?;
    let spec = confab_protocol::client::media::UploadSpec { sha256: Some(sha), ..file.spec(purpose) };
    let pb = bar(size, &file.file_name, quiet);
    let mut upload_id: Option<String> = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let c = client(settings, conn).await?;
        let result: Result<v1::MediaInfo, ClientError> = async {
            let state = match &upload_id {
                Some(id) => c.get_upload(id).await?,
                None => {
                    let b = c.begin_upload(size, &spec).await?;
                    upload_id = Some(b.upload_id.clone());
                    v1::UploadState {
                        upload_id: b.upload_id,
                        size,
                        chunk_size: b.chunk_size,
                        received: Vec::new(),
                        expires_at_ms: b.expires_at_ms,
                        purpose: purpose as i32,
                        mime_type: spec.mime_type.clone(),
                    }
                }
            };
            c.upload_missing(&state, &mut source, &mut |n| pb.set_position(n)).await?;
            c.finish_upload(&state.upload_id).await
        }
        .await;
        match result {
            Ok(m) => {
                pb.finish_with_message(format!("{} ✓", file.file_name));
                return Ok(m);
            }
            Err(e) if transient(&e) && attempt < ATTEMPTS => {
                pb.suspend(|| eprintln!("confab: {e}; resuming the upload of {}", file.file_name));
                if let Some(c) = conn.take() {
                    c.client.close().await;
                }
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            Err(e) => {
                pb.abandon();
                return Err(e).with_context(what);
            }
        }
    }
}

/// The files of `send --file`, checked before anything is uploaded.
pub fn inspect_all(paths: &[PathBuf]) -> anyhow::Result<Vec<LocalFile>> {
    if paths.len() > crate::media::MAX_ATTACHMENTS {
        bail!("at most {} files per message", crate::media::MAX_ATTACHMENTS);
    }
    paths.iter().map(|p| LocalFile::inspect(p)).collect()
}

/// Where `download` writes: `-o PATH` (into it when it is a directory), else the media's file
/// name (made safe) in the current directory; a thumbnail's name says which one.
fn output_path(info: &v1::MediaInfo, thumbnail: &str, mime: &str, out: Option<&Path>) -> PathBuf {
    let mut name = safe_file_name(&info.file_name, &info.media_id);
    if !thumbnail.is_empty() {
        let stem = Path::new(&name).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let ext = match mime {
            // Thumbnails are JPEG or PNG; mime_guess lists `jfif` first for JPEG.
            "image/jpeg" => "jpg",
            "image/png" => "png",
            other => mime_guess::get_mime_extensions_str(other).and_then(|e| e.first().copied()).unwrap_or("bin"),
        };
        name = safe_file_name(&format!("{stem}.{thumbnail}.{ext}"), &info.media_id);
    }
    match out {
        Some(p) if p.is_dir() => p.join(name),
        Some(p) => p.to_path_buf(),
        None => PathBuf::from(name),
    }
}

/// `confab download MEDIA_ID [-o PATH] [--thumbnail NAME] [--force]`.
pub async fn download(
    settings: &Settings,
    media_id: &str,
    out: Option<PathBuf>,
    thumbnail: Option<String>,
    force: bool,
    json: bool,
) -> anyhow::Result<()> {
    let c = session::connect(settings).await?;
    let result = download_with(&c.client, media_id, out, thumbnail.unwrap_or_default(), force, json).await;
    c.client.close().await;
    result
}

async fn download_with(
    client: &Client,
    media_id: &str,
    out: Option<PathBuf>,
    thumbnail: String,
    force: bool,
    json: bool,
) -> anyhow::Result<()> {
    let info = client.get_media(media_id).await.with_context(|| format!("media {media_id}"))?;
    let (size, mime) = if thumbnail.is_empty() {
        (info.size, info.mime_type.clone())
    } else {
        let Some(t) = info.thumbnails.iter().find(|t| t.name == thumbnail) else {
            let names: Vec<&str> = info.thumbnails.iter().map(|t| t.name.as_str()).collect();
            let has = if names.is_empty() { "none".to_string() } else { names.join(", ") };
            bail!("media {media_id} has no thumbnail {thumbnail:?} (it has: {has})");
        };
        (t.size, t.mime_type.clone())
    };
    if out.as_deref() == Some(Path::new("-")) {
        let pb = bar(size, &info.file_name, json);
        let mut stdout = tokio::io::stdout();
        client
            .download(media_id, &thumbnail, 0, &mut stdout, &mut |n, total| {
                pb.set_length(total);
                pb.set_position(n);
            })
            .await
            .context("download")?;
        pb.finish_and_clear();
        return Ok(());
    }
    let target = output_path(&info, &thumbnail, &mime, out.as_deref());
    let overwrite = if force { Overwrite::Replace } else { Overwrite::Refuse };
    // Originals are checked against their SHA-256; thumbnails carry none.
    let sha = if thumbnail.is_empty() { Some(info.sha256.as_ref()) } else { None };
    let pb = bar(size, &safe_file_name(&info.file_name, media_id), json);
    let (path, n) = download_to(client, media_id, &thumbnail, &target, overwrite, sha, &mut |n, total| {
        pb.set_length(total);
        pb.set_position(n);
    })
    .await
    .inspect_err(|_| pb.abandon())?;
    pb.finish_and_clear();
    if json {
        println!(
            "{}",
            json!({"media_id": media_id, "thumbnail": thumbnail, "path": path, "size": n, "mime_type": mime,
                   "file_name": info.file_name})
        );
    } else {
        println!("saved {} ({mime}, {})", path.display(), human_size(n));
    }
    Ok(())
}

/// `confab avatar PATH`: uploads the image as an avatar and sets it; `--clear` removes it.
pub async fn avatar(settings: &Settings, path: Option<PathBuf>, clear: bool, json: bool) -> anyhow::Result<()> {
    let file = match (&path, clear) {
        (Some(_), true) => bail!("give an image or --clear, not both"),
        (None, false) => bail!("give the image to use (or --clear)"),
        (Some(p), false) => Some(LocalFile::inspect(p)?),
        (None, true) => None,
    };
    let mut conn = None;
    let media_id = match &file {
        Some(f) => upload(settings, &mut conn, f, MediaPurpose::Avatar, json).await?.media_id,
        None => String::new(),
    };
    let c = client(settings, &mut conn).await?;
    let req = v1::UpdateProfile { avatar_ref: Some(media_id.clone()), ..Default::default() };
    let me = match c.request(v1::client_frame::Request::UpdateProfile(req)).await.context("UpdateProfile")? {
        v1::response::Result::UpdateProfile(me) => me,
        other => return Err(confab_protocol::client::unexpected("UpdateProfile", &other).into()),
    };
    c.close().await;
    if json {
        println!("{}", json!({"user_id": me.user_id, "username": me.username, "avatar_ref": me.avatar_ref}));
    } else if me.avatar_ref.is_empty() {
        println!("avatar removed");
    } else {
        println!("avatar set ({})", me.avatar_ref);
    }
    Ok(())
}
