//! Media (docs/protocol.md §22) beyond the conformance cases (tests/src/cases/media.rs, run by
//! tests/tests/conformance.rs): what needs the server's configuration or internals — the size
//! limit and quota, uploads cut at random chunk boundaries, the collector, a server restart
//! in the middle of an upload, and the media cases on a real S3-compatible store.

use std::io::Cursor;

use anyhow::{Context, ensure};
use bytes::Bytes;
use confab_conformance::harness::{StoreKind, TestFn, TestServer, Transport};
use confab_conformance::media::{download, octets, png, random_bytes, spec, upload};
use confab_conformance::util::{expect_code, group, new_user, second_device, send};
use confab_conformance::{call, cases};
use confab_protocol::client::media::UploadSpec;
use confab_protocol::v1::{self, ErrorCode, MediaPurpose};
use sha2::{Digest, Sha256};

const TESTS: &[(&str, TestFn)] = confab_conformance::named_tests![
    resume_at_random_chunk_boundaries_on_a_new_connection,
    over_the_limit_and_the_quota_are_refused_at_begin,
    collector_removes_exactly_the_unreferenced,
];

/// Chunks of 64 KiB so small files have many; the collector's grace is zero so a pass removes
/// whatever nothing references (the loop itself stays an hour away: passes run when asked).
fn tweak(c: &mut confab_server::Config) {
    c.media.chunk_bytes = 64 * 1024;
    c.media.max_upload_bytes = 8 * 1024 * 1024;
    c.media.quota_bytes_per_user = 16 * 1024 * 1024;
    c.media.gc_grace = std::time::Duration::ZERO;
    c.media.gc_interval = std::time::Duration::from_secs(3600);
}

confab_conformance::matrix_tests!(TESTS, tweak);

/// §22.4: chunks sent in a random order and cut at a random boundary; a new connection asks what
/// the server holds, sends the rest (streams on QUIC), and finishes. A FinishUpload before then is
/// FAILED_PRECONDITION; a retried FinishUpload answers the same media.
async fn resume_at_random_chunk_boundaries_on_a_new_connection(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "mdR").await?;
    let chunk = 64 * 1024usize;
    for round in 0..3 {
        let data = random_bytes(10 * chunk + 1234 * (round + 1));
        let sha: [u8; 32] = Sha256::digest(&data).into();
        let sp = UploadSpec { sha256: Some(sha), ..spec("application/octet-stream", MediaPurpose::Attachment, "") };
        let begun = a.client.begin_upload(data.len() as u64, &sp).await?;
        ensure!(begun.chunk_size as usize == chunk);
        let chunks = data.len().div_ceil(chunk);
        let mut order: Vec<usize> = (0..chunks).collect();
        let mut r = [0u8; 16];
        getrandom::fill(&mut r).map_err(|e| anyhow::anyhow!("random: {e}"))?;
        for i in (1..order.len()).rev() {
            order.swap(i, usize::from(r[i % 16]) % (i + 1));
        }
        let cut = 1 + usize::from(r[0]) % (chunks - 1);
        for &i in &order[..cut] {
            let end = ((i + 1) * chunk).min(data.len());
            a.client
                .upload_chunk(&begun.upload_id, (i * chunk) as u64, Bytes::copy_from_slice(&data[i * chunk..end]))
                .await?;
        }
        // A chunk again is accepted; a wrong offset or length is not.
        let i = order[0];
        let end = ((i + 1) * chunk).min(data.len());
        a.client
            .upload_chunk(&begun.upload_id, (i * chunk) as u64, Bytes::copy_from_slice(&data[i * chunk..end]))
            .await?;
        let bad = a.client.upload_chunk(&begun.upload_id, 1, Bytes::from_static(b"x")).await;
        ensure!(expect_code(bad, ErrorCode::InvalidArgument)?.field == "upload_chunk.offset");
        let short = a.client.upload_chunk(&begun.upload_id, 0, Bytes::from_static(b"x")).await;
        ensure!(expect_code(short, ErrorCode::InvalidArgument)?.field == "upload_chunk.data");
        let early = a.client.finish_upload(&begun.upload_id).await;
        expect_code(early, ErrorCode::FailedPrecondition)?;
        // A new connection (another device of the same account) resumes.
        let b = second_device(s, t, &a).await?;
        let state = b.client.get_upload(&begun.upload_id).await?;
        let held: u64 = state.received.iter().map(|r| r.end - r.start).sum();
        let expect: u64 = order[..cut].iter().map(|&i| (((i + 1) * chunk).min(data.len()) - i * chunk) as u64).sum();
        ensure!(held == expect, "round {round}: server holds {held}, sent {expect}: {:?}", state.received);
        let m = b.client.resume_upload(&begun.upload_id, &mut Cursor::new(data.clone()), &mut |_| {}).await?;
        ensure!(m.sha256.as_ref() == sha.as_slice() && m.size == data.len() as u64);
        ensure!(b.client.finish_upload(&begun.upload_id).await? == m, "a retried FinishUpload answers the same");
        ensure!(download(&a.client, &m.media_id, "", 0).await? == data, "round {round}: bytes differ");
    }
    Ok(())
}

/// §22.2: a size over the limit, then over the quota, is refused at BeginUpload, before any byte.
async fn over_the_limit_and_the_quota_are_refused_at_begin(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "mdL").await?;
    let sp = spec("video/mp4", MediaPurpose::Attachment, "film.mp4");
    let e = expect_code(a.client.begin_upload(8 * 1024 * 1024 + 1, &sp).await, ErrorCode::TooLarge)?;
    ensure!(e.field == "begin_upload.size", "{e:?}");
    // Two pending uploads of 8 MiB fill the 16 MiB quota; a third byte is over it.
    let one = a.client.begin_upload(8 * 1024 * 1024, &sp).await?;
    let two = a.client.begin_upload(8 * 1024 * 1024, &sp).await?;
    let e = expect_code(a.client.begin_upload(1, &sp).await, ErrorCode::TooLarge)?;
    ensure!(e.message.contains("quota"), "{e:?}");
    a.client.cancel_upload(&one.upload_id).await?;
    let three = a.client.begin_upload(1, &sp).await?;
    for u in [&two.upload_id, &three.upload_id] {
        a.client.cancel_upload(u).await?;
    }
    expect_code(a.client.begin_upload(0, &sp).await, ErrorCode::InvalidArgument)?;
    let e = expect_code(
        a.client.begin_upload(1, &spec("not a type", MediaPurpose::Attachment, "")).await,
        ErrorCode::InvalidArgument,
    )?;
    ensure!(e.field == "begin_upload.mime_type");
    let e = expect_code(
        a.client.begin_upload(1, &spec("text/plain", MediaPurpose::Attachment, "a/b")).await,
        ErrorCode::InvalidArgument,
    )?;
    ensure!(e.field == "begin_upload.file_name");
    Ok(())
}

/// docs/operations.md "Media": one pass removes exactly what nothing references — an unattached
/// upload, the media of a deleted message, a cleared avatar — and keeps an attachment, an avatar,
/// a photo; blobs shared by a kept item stay.
async fn collector_removes_exactly_the_unreferenced(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    // Passes of other tests' leftovers first, so this one counts only its own.
    s.media.collect_once().await?;
    let a = new_user(s, t, "mgA").await?;
    let b = new_user(s, t, "mgB").await?;
    let conv = call!(a.client, CreateConversation, group("gc", &[b.id]))?.conversation_id;
    let at = |m: &v1::MediaInfo| v1::Attachment { media_id: m.media_id.clone(), ..Default::default() };
    let kept_attachment =
        upload(&a.client, &random_bytes(70_000), &spec("application/octet-stream", MediaPurpose::Attachment, ""))
            .await?;
    call!(
        a.client,
        SendMessage,
        v1::SendMessage { attachments: vec![at(&kept_attachment)], ..send(conv, "g1", "kept") }
    )?;
    let unattached =
        upload(&a.client, &random_bytes(50_000), &spec("application/octet-stream", MediaPurpose::Attachment, ""))
            .await?;
    let deleted =
        upload(&a.client, &random_bytes(30_000), &spec("application/octet-stream", MediaPurpose::Attachment, ""))
            .await?;
    let gone =
        call!(a.client, SendMessage, v1::SendMessage { attachments: vec![at(&deleted)], ..send(conv, "g2", "") })?;
    call!(a.client, DeleteMessage, v1::DeleteMessage { conversation_id: conv, message_id: gone.message_id })?;
    let avatar = upload(&a.client, &png(50, 50), &spec("image/png", MediaPurpose::Avatar, "")).await?;
    call!(
        a.client,
        UpdateProfile,
        v1::UpdateProfile { avatar_ref: Some(avatar.media_id.clone()), ..Default::default() }
    )?;
    let old_avatar = upload(&b.client, &png(51, 51), &spec("image/png", MediaPurpose::Avatar, "")).await?;
    // The same bytes as the kept attachment, unattached: its media goes, the shared blob stays.
    let twin = upload(
        &b.client,
        &download(&a.client, &kept_attachment.media_id, "", 0).await?,
        &spec("application/octet-stream", MediaPurpose::Attachment, ""),
    )
    .await?;
    let pending = a.client.begin_upload(100, &spec("text/plain", MediaPurpose::Attachment, "")).await?;
    a.client.upload_chunk(&pending.upload_id, 0, Bytes::from(vec![b'x'; 100])).await?;
    let report = s.media.collect_once().await?;
    // unattached, deleted, old_avatar (with its 2 thumbnails' blobs: crop96 only, 51 px) and twin.
    ensure!(report.media == 4, "{report:?}");
    for m in [&kept_attachment, &avatar] {
        a.client.get_media(&m.media_id).await.with_context(|| format!("{} was kept", m.media_id))?;
    }
    for m in [&unattached, &deleted] {
        expect_code(a.client.get_media(&m.media_id).await, ErrorCode::NotFound)?;
    }
    expect_code(b.client.get_media(&old_avatar.media_id).await, ErrorCode::NotFound)?;
    expect_code(b.client.get_media(&twin.media_id).await, ErrorCode::NotFound)?;
    ensure!(download(&b.client, &kept_attachment.media_id, "", 0).await?.len() == 70_000, "the shared blob stays");
    // Blobs: unattached, deleted, old_avatar and its crop96 thumbnail; not the twin's (shared).
    ensure!(report.blobs == 4, "{report:?}");
    // The pending upload (not expired) is left alone.
    ensure!(a.client.get_upload(&pending.upload_id).await?.received.len() == 1);
    ensure!(s.media.collect_once().await?.media == 0, "a second pass finds nothing");
    Ok(())
}

/// §22.4 after a server restart: chunks acknowledged before the restart are held after it, on
/// both transports; the rest is sent and the file finishes whole.
async fn resume_after_restart(kind: StoreKind) -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    let db = match kind {
        StoreKind::Postgres => Some(confab_conformance::pg::TestDatabase::create().await?),
        StoreKind::Sqlite => None,
    };
    let start = || async {
        let dir = data_dir.path().to_path_buf();
        match &db {
            Some(db) => {
                TestServer::start_on(&db.url, |c| {
                    tweak(c);
                    c.data_dir = dir;
                })
                .await
            }
            None => {
                TestServer::start_with(kind, |c| {
                    tweak(c);
                    c.data_dir = dir;
                })
                .await
            }
        }
    };
    for t in [Transport::WebSocket, Transport::Quic] {
        let s = start().await?;
        let a = new_user(&s, t, "mrA").await?;
        let data = random_bytes(9 * 64 * 1024 + 99);
        let begun = a
            .client
            .begin_upload(data.len() as u64, &spec("application/octet-stream", MediaPurpose::Attachment, ""))
            .await?;
        for i in [0usize, 3, 4, 9] {
            let end = ((i + 1) * 64 * 1024).min(data.len());
            a.client
                .upload_chunk(
                    &begun.upload_id,
                    (i * 64 * 1024) as u64,
                    Bytes::copy_from_slice(&data[i * 64 * 1024..end]),
                )
                .await?;
        }
        let name = a.name.clone();
        drop(a);
        s.stop().await?;
        let s = start().await?;
        let (client, _events) = s.connect(t).await?;
        client.login(&name, confab_conformance::util::PASSWORD, "after restart").await?;
        let state = client.get_upload(&begun.upload_id).await?;
        let held: u64 = state.received.iter().map(|r| r.end - r.start).sum();
        ensure!(held == 3 * 64 * 1024 + 99, "{t:?}: held after restart {:?}", state.received);
        let m = client.resume_upload(&begun.upload_id, &mut Cursor::new(data.clone()), &mut |_| {}).await?;
        ensure!(download(&client, &m.media_id, "", 0).await? == data, "{t:?}: bytes differ");
        s.stop().await?;
    }
    if let Some(db) = db {
        db.drop_db().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_uploads_resume_after_a_restart() {
    resume_after_restart(StoreKind::Sqlite).await.expect("resume after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_uploads_resume_after_a_restart() {
    resume_after_restart(StoreKind::Postgres).await.expect("resume after restart");
}

/// The media conformance cases (docs/protocol.md §22) with the blobs on a real S3-compatible
/// server (SeaweedFS), on both transports, plus the collector (the S3 store's own contract is
/// tests/tests/blob_store.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_media_chapter_on_s3_storage() {
    let s3 = confab_conformance::s3::S3Server::start().await.expect("S3 server");
    let config = s3.config();
    let s = TestServer::start_with(StoreKind::Sqlite, |c| {
        tweak(c);
        c.media.store = confab_server::config::BlobBackend::S3;
        c.media.s3 = config;
    })
    .await
    .expect("server on S3");
    let mut failures = Vec::new();
    for t in [Transport::WebSocket, Transport::Quic] {
        let target = s.target(t);
        for case in cases::all().into_iter().filter(|c| c.section.contains("§22") && c.applies_to(&target)) {
            if let Err(e) = (case.run)(target.clone()).await {
                failures.push(format!("{} ({}) on {t:?}: {e:#}", case.name, case.section));
            }
        }
        if let Err(e) = collector_removes_exactly_the_unreferenced(&s, t).await {
            failures.push(format!("collector on {t:?}: {e:#}"));
        }
    }
    s.stop().await.expect("stop");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A file whose reading fails after `limit` bytes: a client cut off in the middle of a stream.
struct FailsAfter {
    inner: Cursor<Vec<u8>>,
    limit: u64,
}

impl tokio::io::AsyncRead for FailsAfter {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let left = self.limit.saturating_sub(self.inner.position());
        if left == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("the file went away")));
        }
        let take = (buf.remaining() as u64).min(left) as usize;
        let mut part = tokio::io::ReadBuf::new(buf.initialize_unfilled_to(take));
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, &mut part);
        let n = part.filled().len();
        buf.advance(n);
        r
    }
}

impl tokio::io::AsyncSeek for FailsAfter {
    fn start_seek(mut self: std::pin::Pin<&mut Self>, position: std::io::SeekFrom) -> std::io::Result<()> {
        std::pin::Pin::new(&mut self.inner).start_seek(position)
    }

    fn poll_complete(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<u64>> {
        std::pin::Pin::new(&mut self.inner).poll_complete(cx)
    }
}

/// §22.9: a QUIC upload stream cut in the middle of a chunk keeps every whole chunk before the
/// cut and nothing of the partial one; the upload resumes from there on a new stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_quic_upload_stream_keeps_its_whole_chunks() {
    let s = TestServer::start_with(StoreKind::Sqlite, tweak).await.expect("server");
    let a = new_user(&s, Transport::Quic, "mcA").await.expect("user");
    let chunk = 64 * 1024u64;
    let data = random_bytes(10 * chunk as usize + 5);
    let begun = a.client.begin_upload(data.len() as u64, &octets()).await.expect("begin");
    let state = a.client.get_upload(&begun.upload_id).await.expect("state");
    let mut cut = FailsAfter { inner: Cursor::new(data.clone()), limit: 3 * chunk + chunk / 2 };
    let r = a.client.upload_missing(&state, &mut cut, &mut |_| {}).await;
    assert!(r.is_err(), "the read failure surfaces: {r:?}");
    // The server stores what the stream brought as it arrives: wait (bounded) for the three whole
    // chunks, and check it never holds more.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let held = loop {
        let state = a.client.get_upload(&begun.upload_id).await.expect("state");
        let held: u64 = state.received.iter().map(|r| r.end - r.start).sum();
        if held >= 3 * chunk || tokio::time::Instant::now() > deadline {
            break state.received;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(held, vec![v1::ByteRange { start: 0, end: 3 * chunk }], "whole chunks only");
    let m =
        a.client.resume_upload(&begun.upload_id, &mut Cursor::new(data.clone()), &mut |_| {}).await.expect("resume");
    assert_eq!(download(&a.client, &m.media_id, "", 0).await.expect("download"), data);
    s.stop().await.expect("stop");
}
