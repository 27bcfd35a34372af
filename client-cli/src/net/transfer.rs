//! Uploads and downloads for the TUI, each in its own task on the actor's connection: progress
//! comes as [`Update::Transfer`] (a few a second at most, dropped when the UI is behind), the
//! outcome as one [`Update::TransferDone`]. A transfer cut by a lost connection fails; the user
//! starts it again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use confab_protocol::client::Client;
use confab_protocol::v1::MediaPurpose;
use tokio::sync::mpsc;

use super::Update;
use crate::media::{LocalFile, Overwrite, download_to};

/// Least time between two progress reports of one transfer.
const PROGRESS_EVERY: Duration = Duration::from_millis(150);

/// A transfer the UI asked for; `id` is the UI's own number for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub id: u64,
    pub kind: TransferKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferKind {
    /// Upload a local file as an attachment.
    Upload { path: PathBuf },
    /// Download media (or a thumbnail: `crop96`, `scale320`, `scale800`).
    Download { media_id: String, thumbnail: String, sink: Sink },
}

/// Where downloaded bytes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// Kept in memory (previews).
    Memory,
    /// A file; when it exists: replaced, or the next free `name (N).ext` beside it.
    File { path: PathBuf, replace: bool },
}

/// What a finished transfer produced.
#[derive(Clone, Debug, PartialEq)]
pub enum Transferred {
    Uploaded(confab_protocol::v1::MediaInfo),
    Bytes(Vec<u8>),
    Saved(PathBuf),
}

/// Starts `t` on `client`; reports go to `up`.
pub(super) fn spawn(client: &Client, up: &mpsc::Sender<Update>, t: Transfer) {
    let (client, up) = (client.clone(), up.clone());
    tokio::spawn(async move {
        let id = t.id;
        let mut last = Instant::now() - PROGRESS_EVERY;
        let mut report = |done: u64, total: u64| {
            if last.elapsed() >= PROGRESS_EVERY || done == total {
                last = Instant::now();
                let _ = up.try_send(Update::Transfer { id, done, total });
            }
        };
        let result = run(&client, t.kind, &mut report).await.map_err(|e| format!("{e:#}"));
        let _ = up.send(Update::TransferDone { id, result }).await;
    });
}

async fn run(
    client: &Client,
    kind: TransferKind,
    report: &mut (dyn FnMut(u64, u64) + Send),
) -> anyhow::Result<Transferred> {
    match kind {
        TransferKind::Upload { path } => {
            let file = LocalFile::inspect(&path)?;
            let mut source = tokio::fs::File::open(&path).await?;
            let size = file.size;
            let info =
                client.upload(&mut source, &file.spec(MediaPurpose::Attachment), &mut |n| report(n, size)).await?;
            Ok(Transferred::Uploaded(info))
        }
        TransferKind::Download { media_id, thumbnail, sink: Sink::Memory } => {
            let mut out = Vec::new();
            client.download(&media_id, &thumbnail, 0, &mut out, report).await?;
            Ok(Transferred::Bytes(out))
        }
        TransferKind::Download { media_id, thumbnail, sink: Sink::File { path, replace } } => {
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            let overwrite = if replace { Overwrite::Replace } else { Overwrite::Rename };
            let (saved, _) = download_to(client, &media_id, &thumbnail, &path, overwrite, None, report).await?;
            Ok(Transferred::Saved(saved))
        }
    }
}
