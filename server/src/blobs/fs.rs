//! The local-filesystem [`BlobStore`]: content-addressed files under one directory, every write a
//! temporary file made durable (fsync) and renamed into place, then the directory fsynced.
//!
//! Layout under the store's directory:
//! - `blobs/<first two hex chars of the key>/<key>`: finished blobs, sharded so no directory
//!   grows past a few thousand entries per million blobs;
//! - `uploads/<upload>/<index as 10 digits>`: the chunks of unfinished uploads;
//! - `tmp/`: files being written; emptied at [`FsBlobs::open`] (what a crash left half-written).

use std::io::ErrorKind;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use tokio::io::AsyncWriteExt as _;

use super::{BlobError, BlobKey, BlobStore, ListedBlob, PartInfo, UploadKey};
use crate::config::BlobBackend;

/// Blobs and upload chunks as files under one directory (one node only).
#[derive(Debug)]
pub struct FsBlobs {
    blobs: PathBuf,
    uploads: PathBuf,
    tmp: PathBuf,
}

impl FsBlobs {
    /// Opens (creating when missing) the store in `dir` and removes what `tmp/` holds from over
    /// [`STALE_TMP`] ago: a crash's leftovers, but not the files other nodes sharing the
    /// directory (a shared mount) are writing now.
    /// `Setup` errors name the directory that could not be made or cleared.
    pub async fn open(dir: &Path) -> Result<FsBlobs, BlobError> {
        let store = FsBlobs { blobs: dir.join("blobs"), uploads: dir.join("uploads"), tmp: dir.join("tmp") };
        let (blobs, uploads, tmp) = (store.blobs.clone(), store.uploads.clone(), store.tmp.clone());
        blocking(move || {
            for d in [&blobs, &uploads, &tmp] {
                std::fs::create_dir_all(d)
                    .map_err(|e| BlobError::Setup(format!("cannot create media directory {}: {e}", d.display())))?;
            }
            clear_dir(&tmp).map_err(|e| BlobError::Setup(format!("cannot clear {}: {e}", tmp.display())))
        })
        .await?;
        Ok(store)
    }

    fn blob_path(&self, key: &BlobKey) -> PathBuf {
        self.blobs.join(shard_of(key.as_str())).join(key.as_str())
    }

    fn upload_dir(&self, upload: &UploadKey) -> PathBuf {
        self.uploads.join(upload.as_str())
    }

    /// A fresh, unused name in `tmp/`.
    fn temp_path(&self) -> Result<PathBuf, BlobError> {
        let mut r = [0u8; 16];
        getrandom::fill(&mut r).map_err(|e| BlobError::Io(std::io::Error::other(e.to_string())))?;
        Ok(self.tmp.join(format!("{}.tmp", hex::encode(r))))
    }

    /// Moves the finished temporary file into `dir/name` (creating `dir` under `parent` when
    /// missing) and makes the rename durable. `dir` is made again if a concurrent
    /// [`BlobStore::delete_upload`] removed it between its creation and the rename.
    async fn install(&self, tmp: TempFile, parent: &Path, dir: &str, name: &str) -> Result<(), BlobError> {
        let (parent, dir, name) = (parent.to_path_buf(), parent.join(dir), name.to_string());
        blocking(move || {
            let target = dir.join(&name);
            let mut tries = 0;
            loop {
                ensure_dir(&parent, &dir)?;
                match std::fs::rename(tmp.path(), &target) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound && tries < 3 && tmp.path().exists() => tries += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            tmp.disarm();
            sync_dir(&dir)
        })
        .await
    }
}

#[async_trait::async_trait]
impl BlobStore for FsBlobs {
    fn backend(&self) -> BlobBackend {
        BlobBackend::Fs
    }

    async fn put_part(&self, upload: &UploadKey, index: u32, data: Bytes) -> Result<(), BlobError> {
        let tmp = TempFile::new(self.temp_path()?);
        let path = tmp.path().to_path_buf();
        blocking(move || {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
            f.write_all(&data)?;
            Ok(f.sync_all()?)
        })
        .await?;
        self.install(tmp, &self.uploads, upload.as_str(), &part_name(index)).await
    }

    async fn parts(&self, upload: &UploadKey) -> Result<Vec<PartInfo>, BlobError> {
        let dir = self.upload_dir(upload);
        blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut parts = Vec::new();
            for entry in entries {
                let entry = entry?;
                let Some(index) = entry.file_name().to_str().and_then(parse_part_name) else { continue };
                match entry.metadata() {
                    Ok(m) if m.is_file() => parts.push(PartInfo { index, len: m.len() }),
                    Ok(_) => {}
                    // Replaced or deleted while listing.
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            parts.sort_by_key(|p| p.index);
            Ok(parts)
        })
        .await
    }

    async fn read_part(&self, upload: &UploadKey, index: u32) -> Result<Bytes, BlobError> {
        let path = self.upload_dir(upload).join(part_name(index));
        tokio::fs::read(&path).await.map(Bytes::from).map_err(not_found)
    }

    async fn delete_upload(&self, upload: &UploadKey) -> Result<(), BlobError> {
        let (dir, uploads) = (self.upload_dir(upload), self.uploads.clone());
        blocking(move || {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            sync_dir(&uploads)
        })
        .await
    }

    async fn uploads(&self) -> Result<Vec<UploadKey>, BlobError> {
        let uploads = self.uploads.clone();
        blocking(move || {
            let mut keys = Vec::new();
            for entry in std::fs::read_dir(&uploads)? {
                let entry = entry?;
                if entry.file_type()?.is_dir()
                    && let Some(key) = entry.file_name().to_str().and_then(UploadKey::parse)
                {
                    keys.push(key);
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
    }

    async fn put_blob(
        &self,
        key: &BlobKey,
        mut data: BoxStream<'static, Result<Bytes, BlobError>>,
    ) -> Result<u64, BlobError> {
        let tmp = TempFile::new(self.temp_path()?);
        let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(tmp.path()).await?;
        let mut size = 0u64;
        while let Some(chunk) = data.next().await {
            let chunk = chunk?;
            file.write_all(&chunk).await?;
            size += chunk.len() as u64;
        }
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        self.install(tmp, &self.blobs, shard_of(key.as_str()), key.as_str()).await?;
        Ok(size)
    }

    async fn read_blob(&self, key: &BlobKey, range: Range<u64>) -> Result<Bytes, BlobError> {
        let path = self.blob_path(key);
        blocking(move || {
            use std::io::{Read as _, Seek as _, SeekFrom};
            let mut f = std::fs::File::open(&path).map_err(not_found)?;
            let size = f.metadata()?.len();
            if range.start > range.end || range.end > size {
                return Err(BlobError::Range(range));
            }
            let len = usize::try_from(range.end - range.start).map_err(|_| BlobError::Range(range.clone()))?;
            let mut buf = vec![0u8; len];
            f.seek(SeekFrom::Start(range.start))?;
            f.read_exact(&mut buf)?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn blob_size(&self, key: &BlobKey) -> Result<u64, BlobError> {
        Ok(tokio::fs::metadata(self.blob_path(key)).await.map_err(not_found)?.len())
    }

    async fn delete_blob(&self, key: &BlobKey) -> Result<(), BlobError> {
        let path = self.blob_path(key);
        blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            path.parent().map_or(Ok(()), sync_dir)
        })
        .await
    }

    async fn list_blobs(&self, after: Option<&BlobKey>, limit: usize) -> Result<Vec<ListedBlob>, BlobError> {
        let (blobs, after) = (self.blobs.clone(), after.cloned());
        blocking(move || {
            let mut shards = Vec::new();
            for entry in std::fs::read_dir(&blobs)? {
                let entry = entry?;
                let Ok(name) = entry.file_name().into_string() else { continue };
                if is_shard_name(&name) && entry.file_type()?.is_dir() {
                    shards.push(name);
                }
            }
            shards.sort();
            let after_shard = after.as_ref().map(|a| shard_of(a.as_str()).to_string());
            let mut out = Vec::new();
            for shard in shards {
                if out.len() >= limit {
                    break;
                }
                if after_shard.as_ref().is_some_and(|a| &shard < a) {
                    continue;
                }
                let entries = match std::fs::read_dir(blobs.join(&shard)) {
                    Ok(e) => e,
                    // Removed while listing (never by this store, but by hand perhaps).
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                let mut found = Vec::new();
                for entry in entries {
                    let entry = entry?;
                    let Some(key) = entry.file_name().to_str().and_then(BlobKey::parse) else { continue };
                    if shard_of(key.as_str()) != shard || after.as_ref().is_some_and(|a| &key <= a) {
                        continue;
                    }
                    match entry.metadata() {
                        Ok(m) if m.is_file() => found.push(ListedBlob { key, modified_ms: unix_ms(&m) }),
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                found.sort_by(|a, b| a.key.cmp(&b.key));
                out.extend(found.into_iter().take(limit - out.len()));
            }
            Ok(out)
        })
        .await
    }
}

/// A file in `tmp/` that is removed when dropped unless [`TempFile::disarm`]ed (renamed into
/// place): a failed or abandoned write leaves nothing behind.
#[derive(Debug)]
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    fn new(path: PathBuf) -> Self {
        Self { path, armed: true }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Runs blocking filesystem work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| BlobError::Io(std::io::Error::other(e.to_string())))?
}

/// Creates `dir` (a child of `parent`) when missing; a new directory's entry is made durable by
/// fsyncing `parent`.
fn ensure_dir(parent: &Path, dir: &Path) -> Result<(), BlobError> {
    match std::fs::create_dir(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Makes the entries of `dir` (renames, removals) durable.
fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    Ok(std::fs::File::open(dir)?.sync_all()?)
}

/// Removes everything inside `dir`.
/// Age past which a temporary file is a crash's leftover (a write takes seconds).
pub const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(3600);

fn clear_dir(dir: &Path) -> std::io::Result<()> {
    let now = std::time::SystemTime::now();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let age = entry.metadata()?.modified().ok().and_then(|m| now.duration_since(m).ok());
        if age.is_some_and(|a| a < STALE_TMP) {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn not_found(e: std::io::Error) -> BlobError {
    if e.kind() == ErrorKind::NotFound { BlobError::NotFound } else { BlobError::Io(e) }
}

/// The shard directory of a key: its first two characters (hex for a [`BlobKey`]).
fn shard_of(key: &str) -> &str {
    key.get(..2).unwrap_or(key)
}

fn is_shard_name(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A chunk's file name: its index as 10 digits, so names sort as indexes do.
fn part_name(index: u32) -> String {
    format!("{index:010}")
}

fn parse_part_name(name: &str) -> Option<u32> {
    (name.len() == 10 && name.bytes().all(|b| b.is_ascii_digit())).then(|| name.parse().ok()).flatten()
}

fn unix_ms(m: &std::fs::Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_sort_as_indexes_and_strangers_are_skipped() {
        assert_eq!(part_name(7), "0000000007");
        assert_eq!(parse_part_name(&part_name(u32::MAX)), Some(u32::MAX));
        assert!(part_name(9) < part_name(10));
        for bad in ["7", "000000000x", "99999999999", "9999999999", "0000000007.tmp"] {
            assert_eq!(parse_part_name(bad), None, "{bad}");
        }
        assert!(is_shard_name("0f") && !is_shard_name("0F") && !is_shard_name("tmp"));
    }

    #[tokio::test]
    async fn an_abandoned_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobs::open(dir.path()).await.unwrap();
        let key = BlobKey::new(&[1; 32], 1);
        let failing = futures_util::stream::iter([Ok(Bytes::from_static(b"abc")), Err(BlobError::NotFound)]).boxed();
        assert!(matches!(store.put_blob(&key, failing).await, Err(BlobError::NotFound)));
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert!(matches!(store.blob_size(&key).await, Err(BlobError::NotFound)));
    }
}
