//! The blob store contract (server/src/blobs/mod.rs), one suite run against both stores: the
//! filesystem store in a temporary directory and the S3 store on a real S3-compatible server
//! (SeaweedFS `weed mini`, tests/src/s3.rs). Plus what only the filesystem store has: its `tmp/`
//! cleared at open and strangers in its directories ignored.

use std::time::Instant;

use bytes::Bytes;
use confab_conformance::s3::S3Server;
use confab_server::blobs::fs::FsBlobs;
use confab_server::blobs::s3::S3Blobs;
use confab_server::blobs::{BlobError, BlobKey, BlobStore, PartInfo, UploadKey};
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use sha2::{Digest as _, Sha256};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// The big blob: 12 MiB in 256 KiB chunks, so S3 writes it as a multipart upload of three parts.
const BIG_CHUNK: usize = 256 * KIB;
const BIG_CHUNKS: usize = 48;

/// A content-addressed key for `bytes` at `generation`.
fn key_of(bytes: &[u8], generation: i64) -> BlobKey {
    BlobKey::new(&Sha256::digest(bytes).into(), generation)
}

/// Chunk `i` of the big blob: deterministic bytes that differ from chunk to chunk.
fn big_chunk(i: usize) -> Bytes {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 1);
    let mut out = Vec::with_capacity(BIG_CHUNK);
    while out.len() < BIG_CHUNK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(out)
}

fn big_stream() -> BoxStream<'static, Result<Bytes, BlobError>> {
    futures_util::stream::iter((0..BIG_CHUNKS).map(|i| Ok(big_chunk(i)))).boxed()
}

fn stream_of(chunks: Vec<&'static [u8]>) -> BoxStream<'static, Result<Bytes, BlobError>> {
    futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))).boxed()
}

fn upload(s: &str) -> UploadKey {
    UploadKey::parse(s).expect("a valid upload id")
}

/// Every promise of [`BlobStore`], in order on one empty store.
async fn contract(store: &dyn BlobStore) {
    parts(store).await;
    ranges_and_absence(store).await;
    listing_pages(store).await;
    big_blob(store).await;
    failed_write_leaves_nothing(store).await;
    assert_eq!(store.list_blobs(None, 100).await.unwrap(), vec![], "every blob was deleted");
}

/// Chunks of uploads: stored, replaced whole, listed by index, read, removed per upload.
async fn parts(store: &dyn BlobStore) {
    let (a, b) = (upload("up_a"), upload("up-b"));
    assert_eq!(store.parts(&a).await.unwrap(), vec![]);
    assert!(matches!(store.read_part(&a, 0).await, Err(BlobError::NotFound)));
    assert_eq!(store.uploads().await.unwrap(), vec![]);

    store.put_part(&a, 2, Bytes::from_static(b"cc")).await.unwrap();
    store.put_part(&a, 0, Bytes::from_static(b"aaa")).await.unwrap();
    store.put_part(&a, 10, Bytes::from_static(b"j")).await.unwrap();
    store.put_part(&a, 1, Bytes::from_static(b"bbbb")).await.unwrap();
    let want = |one: u64| {
        vec![
            PartInfo { index: 0, len: 3 },
            PartInfo { index: 1, len: one },
            PartInfo { index: 2, len: 2 },
            PartInfo { index: 10, len: 1 },
        ]
    };
    assert_eq!(store.parts(&a).await.unwrap(), want(4), "ascending by index (10 after 2)");
    assert_eq!(store.read_part(&a, 1).await.unwrap(), Bytes::from_static(b"bbbb"));
    store.put_part(&a, 1, Bytes::from_static(b"B")).await.unwrap();
    assert_eq!(store.parts(&a).await.unwrap(), want(1), "a chunk written again is replaced whole");
    assert_eq!(store.read_part(&a, 1).await.unwrap(), Bytes::from_static(b"B"));
    assert!(matches!(store.read_part(&a, 3).await, Err(BlobError::NotFound)));

    store.put_part(&b, 0, Bytes::from_static(b"other")).await.unwrap();
    assert_eq!(store.uploads().await.unwrap(), vec![b.clone(), a.clone()]);
    store.delete_upload(&a).await.unwrap();
    assert_eq!(store.parts(&a).await.unwrap(), vec![]);
    assert!(matches!(store.read_part(&a, 0).await, Err(BlobError::NotFound)));
    assert_eq!(store.uploads().await.unwrap(), vec![b.clone()], "the other upload is untouched");
    assert_eq!(store.read_part(&b, 0).await.unwrap(), Bytes::from_static(b"other"));
    store.delete_upload(&a).await.unwrap();
    store.delete_upload(&b).await.unwrap();
    assert_eq!(store.uploads().await.unwrap(), vec![]);
}

/// Reads of exact ranges; `Range` past the end; `NotFound` for what is absent; deletes that
/// may repeat.
async fn ranges_and_absence(store: &dyn BlobStore) {
    let bytes: &'static [u8] = b"hello, blob store";
    let n = bytes.len() as u64;
    let key = key_of(bytes, 1);
    let absent = key_of(b"never written", 1);
    assert!(matches!(store.blob_size(&absent).await, Err(BlobError::NotFound)));
    assert!(matches!(store.read_blob(&absent, 0..1).await, Err(BlobError::NotFound)));
    assert!(matches!(store.read_blob(&absent, 0..0).await, Err(BlobError::NotFound)));
    store.delete_blob(&absent).await.unwrap();

    let written = store.put_blob(&key, stream_of(vec![b"hello", b", ", b"", b"blob store"])).await.unwrap();
    assert_eq!(written, n);
    assert_eq!(store.blob_size(&key).await.unwrap(), n);
    assert_eq!(store.read_blob(&key, 0..n).await.unwrap(), Bytes::from_static(bytes));
    assert_eq!(store.read_blob(&key, 0..5).await.unwrap(), Bytes::from_static(b"hello"));
    assert_eq!(store.read_blob(&key, 7..11).await.unwrap(), Bytes::from_static(b"blob"));
    assert_eq!(store.read_blob(&key, n - 1..n).await.unwrap(), Bytes::from_static(b"e"));
    assert_eq!(store.read_blob(&key, n..n).await.unwrap(), Bytes::new(), "an empty range at the end");
    for past in [n - 2..n + 1, n..n + 1, n + 5..n + 9, n + 1..n + 1] {
        let got = store.read_blob(&key, past.clone()).await;
        assert!(matches!(&got, Err(BlobError::Range(r)) if *r == past), "{past:?}: {got:?}");
    }

    store.delete_blob(&key).await.unwrap();
    assert!(matches!(store.blob_size(&key).await, Err(BlobError::NotFound)));
    assert!(matches!(store.read_blob(&key, 0..1).await, Err(BlobError::NotFound)));
    store.delete_blob(&key).await.unwrap();
}

/// Five blobs listed two at a time with `after`, in key order; the same key written twice is
/// one blob.
async fn listing_pages(store: &dyn BlobStore) {
    let started_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let contents: [&'static [u8]; 5] = [b"one", b"two", b"three", b"four", b"five"];
    let mut keys: Vec<BlobKey> = contents.iter().zip(1..).map(|(c, g)| key_of(c, g)).collect();
    for (c, k) in contents.iter().zip(&keys) {
        assert_eq!(store.put_blob(k, stream_of(vec![c])).await.unwrap(), c.len() as u64);
    }
    // Written again: the same bytes under the same key replace it, never a second object.
    assert_eq!(store.put_blob(&keys[2], stream_of(vec![contents[2]])).await.unwrap(), 5);
    keys.sort();

    let mut pages = Vec::new();
    let mut after: Option<BlobKey> = None;
    loop {
        let page = store.list_blobs(after.as_ref(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2, "{page:?}");
        after = page.last().map(|b| b.key.clone());
        pages.push(page.into_iter().map(|b| b.key).collect::<Vec<_>>());
    }
    let want: Vec<Vec<BlobKey>> = keys.chunks(2).map(<[BlobKey]>::to_vec).collect();
    assert_eq!(pages, want, "pages of 2 in key order, `after` exclusive");

    let all = store.list_blobs(None, 100).await.unwrap();
    assert_eq!(all.iter().map(|b| b.key.clone()).collect::<Vec<_>>(), keys, "one object per key");
    for b in &all {
        // Object stores keep seconds; a clock step aside, modified is about now.
        assert!((started_ms - 5_000..started_ms + 60_000).contains(&b.modified_ms), "{b:?} vs {started_ms}");
    }
    assert_eq!(store.list_blobs(Some(&keys[4]), 2).await.unwrap(), vec![], "nothing after the last key");
    assert_eq!(store.list_blobs(None, 0).await.unwrap(), vec![]);
    for k in &keys {
        store.delete_blob(k).await.unwrap();
    }
}

/// A 12 MiB blob from 48 chunks (a multipart upload on S3) reads back exactly, whole and in
/// ranges across part boundaries.
async fn big_blob(store: &dyn BlobStore) {
    let mut hash = Sha256::new();
    for i in 0..BIG_CHUNKS {
        hash.update(big_chunk(i));
    }
    let sha: [u8; 32] = hash.finalize().into();
    let key = BlobKey::new(&sha, 7);
    let size = (BIG_CHUNK * BIG_CHUNKS) as u64;
    assert_eq!(store.put_blob(&key, big_stream()).await.unwrap(), size);
    assert_eq!(store.blob_size(&key).await.unwrap(), size);

    let mut back = Sha256::new();
    let mut at = 0u64;
    while at < size {
        let end = (at + MIB as u64 + 12_345).min(size);
        let got = store.read_blob(&key, at..end).await.unwrap();
        assert_eq!(got.len() as u64, end - at);
        back.update(&got);
        at = end;
    }
    assert_eq!(<[u8; 32]>::from(back.finalize()), sha, "the bytes read back hash as written");

    // Across the 5 MiB boundary of S3 parts, and across two chunks of the stream.
    let five = 5 * MIB as u64;
    let got = store.read_blob(&key, five - 10..five + 10).await.unwrap();
    let chunk = big_chunk(five as usize / BIG_CHUNK - 1);
    let next = big_chunk(five as usize / BIG_CHUNK);
    assert_eq!(&got[..10], &chunk[BIG_CHUNK - 10..]);
    assert_eq!(&got[10..], &next[..10]);
    let last = store.read_blob(&key, size - 1..size).await.unwrap();
    assert_eq!(last[0], big_chunk(BIG_CHUNKS - 1)[BIG_CHUNK - 1]);
    assert!(matches!(store.read_blob(&key, size - 1..size + 1).await, Err(BlobError::Range(_))));

    // Written again from a stream chunked differently: still one blob of the same bytes.
    let whole: Vec<Bytes> = (0..BIG_CHUNKS).map(big_chunk).collect();
    let rechunked: Vec<Bytes> = whole.concat().chunks(3 * MIB + 1).map(Bytes::copy_from_slice).collect();
    let again = futures_util::stream::iter(rechunked.into_iter().map(Ok)).boxed();
    assert_eq!(store.put_blob(&key, again).await.unwrap(), size);
    let listed = store.list_blobs(None, 100).await.unwrap();
    assert_eq!(listed.iter().map(|b| &b.key).collect::<Vec<_>>(), vec![&key]);
    assert_eq!(store.read_blob(&key, size - 3..size).await.unwrap(), whole[BIG_CHUNKS - 1].slice(BIG_CHUNK - 3..));
    store.delete_blob(&key).await.unwrap();
    assert!(matches!(store.blob_size(&key).await, Err(BlobError::NotFound)));
}

/// A stream that fails after 6 MiB (past the first S3 part) leaves no blob behind.
async fn failed_write_leaves_nothing(store: &dyn BlobStore) {
    let key = key_of(b"half written", 1);
    let chunks = (0..24).map(|i| Ok(big_chunk(i))).chain([Err(BlobError::Remote("the client went away".into()))]);
    let got = store.put_blob(&key, futures_util::stream::iter(chunks).boxed()).await;
    assert!(matches!(&got, Err(BlobError::Remote(m)) if m == "the client went away"), "{got:?}");
    assert!(matches!(store.blob_size(&key).await, Err(BlobError::NotFound)));
    assert_eq!(store.list_blobs(None, 100).await.unwrap(), vec![]);
}

#[tokio::test]
async fn the_filesystem_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobs::open(dir.path()).await.unwrap();
    contract(&store).await;
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no temporary file is left");
}

#[tokio::test]
async fn the_s3_store_keeps_the_contract_on_a_real_s3_server() {
    let t = Instant::now();
    let server = S3Server::start().await.unwrap();
    let started = t.elapsed();
    let store = S3Blobs::open(&server.config()).await.unwrap();
    let t = Instant::now();
    contract(&store).await;
    let rss = server
        .pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
        .unwrap_or_default();
    eprintln!("weed mini: ready in {started:?}; contract in {:?}; {rss}", t.elapsed());

    // Keys live under the prefix: a second store with another prefix on the same bucket sees
    // none of the first one's blobs.
    let key = key_of(b"prefixed", 1);
    store.put_blob(&key, stream_of(vec![b"prefixed"])).await.unwrap();
    let other =
        S3Blobs::open(&confab_server::config::S3Config { prefix: "node-b/".into(), ..server.config() }).await.unwrap();
    assert_eq!(other.list_blobs(None, 10).await.unwrap(), vec![]);
    assert!(matches!(other.blob_size(&key).await, Err(BlobError::NotFound)));
    other.put_blob(&key, stream_of(vec![b"prefixed"])).await.unwrap();
    other.delete_blob(&key).await.unwrap();
    assert_eq!(store.blob_size(&key).await.unwrap(), 8, "deleting under one prefix leaves the other");
}

#[tokio::test]
async fn s3_open_fails_early_naming_the_bucket() {
    let server = S3Server::start().await.unwrap();
    let missing = confab_server::config::S3Config { bucket: "no-such-bucket".into(), ..server.config() };
    let err = S3Blobs::open(&missing).await.unwrap_err();
    assert!(matches!(&err, BlobError::Setup(m) if m.contains("no-such-bucket")), "{err}");
    let wrong = confab_server::config::S3Config {
        secret_access_key: Some(confab_server::config::Secret::new("wrong")),
        ..server.config()
    };
    let err = S3Blobs::open(&wrong).await.unwrap_err();
    assert!(matches!(&err, BlobError::Setup(m) if m.contains(server.bucket())), "{err}");
}

#[tokio::test]
async fn the_filesystem_store_clears_stale_tmp_at_open_and_ignores_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobs::open(dir.path()).await.unwrap();
    let key = key_of(b"real", 1);
    store.put_blob(&key, stream_of(vec![b"real"])).await.unwrap();
    store.put_part(&upload("u1"), 0, Bytes::from_static(b"x")).await.unwrap();
    drop(store);

    // What a crash leaves: a half-written blob in tmp/ (named like a key, even) and a directory.
    let stray_key = key_of(b"stray", 1);
    std::fs::write(dir.path().join("tmp").join(stray_key.as_str()), b"half").unwrap();
    std::fs::create_dir(dir.path().join("tmp/junk")).unwrap();
    std::fs::write(dir.path().join("tmp/junk/x"), b"x").unwrap();
    // Two hours old, past the store's threshold; a fresh file (another node's write in progress
    // on a shared mount) stays.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for p in [dir.path().join("tmp").join(stray_key.as_str()), dir.path().join("tmp/junk")] {
        std::fs::File::open(&p).unwrap().set_modified(old).unwrap();
    }
    std::fs::write(dir.path().join("tmp/in-progress.tmp"), b"someone else's").unwrap();
    // Strangers: files that are not keys, a key in the wrong shard, a directory that is no shard,
    // an upload directory that is no upload id.
    let shard = dir.path().join("blobs").join(&key.as_str()[..2]);
    std::fs::write(shard.join("notes.txt"), b"?").unwrap();
    std::fs::write(shard.join(format!("{key}.tmp")), b"?").unwrap();
    let elsewhere = if stray_key.as_str().starts_with("00") { "01" } else { "00" };
    std::fs::create_dir_all(dir.path().join("blobs").join(elsewhere)).unwrap();
    std::fs::write(dir.path().join("blobs").join(elsewhere).join(stray_key.as_str()), b"?").unwrap();
    std::fs::create_dir_all(dir.path().join("blobs/tmp")).unwrap();
    std::fs::write(dir.path().join("blobs/tmp").join(stray_key.as_str()), b"?").unwrap();
    std::fs::create_dir_all(dir.path().join("uploads/not an id")).unwrap();
    std::fs::write(dir.path().join("uploads/u1/0000000001.tmp"), b"?").unwrap();

    let store = FsBlobs::open(dir.path()).await.unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("in-progress.tmp")], "stale leftovers go, a fresh file stays");
    let listed = store.list_blobs(None, 100).await.unwrap();
    assert_eq!(listed.into_iter().map(|b| b.key).collect::<Vec<_>>(), vec![key.clone()]);
    assert!(store.list_blobs(Some(&key), 100).await.unwrap().is_empty());
    assert_eq!(store.uploads().await.unwrap(), vec![upload("u1")]);
    assert_eq!(store.parts(&upload("u1")).await.unwrap(), vec![PartInfo { index: 0, len: 1 }]);
    assert_eq!(store.read_blob(&key, 0..4).await.unwrap(), Bytes::from_static(b"real"));
}
