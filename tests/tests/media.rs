//! Media (docs/protocol.md §22) on both transports and both stores: resumable uploads cut at
//! random chunk boundaries and resumed on a new connection, downloads with ranges, the checks at
//! FinishUpload (size, SHA-256, type, image limits, metadata), attachments and who may read them,
//! avatars and conversation photos, and the collector.

use std::io::Cursor;

use anyhow::{Context, ensure};
use bytes::Bytes;
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestFn, TestServer, Transport};
use confab_conformance::media::{dimensions, has_metadata, jpeg_with_gps, png, png_bomb, random_bytes};
use confab_conformance::util::{expect_code, group, new_user, second_device, send};
use confab_protocol::client::media::UploadSpec;
use confab_protocol::client::{Client, ClientError};
use confab_protocol::v1::{self, ErrorCode, MediaPurpose};
use sha2::{Digest, Sha256};

const TESTS: &[(&str, TestFn)] = confab_conformance::named_tests![
    upload_and_download_with_ranges,
    resume_at_random_chunk_boundaries_on_a_new_connection,
    sha256_mismatch_is_refused_and_can_be_mended,
    over_the_limit_is_refused_at_begin,
    claimed_type_must_match_the_bytes,
    decompression_bomb_is_refused,
    exif_gps_is_stripped_from_the_image_and_its_thumbnails,
    attachments_are_read_by_members_only,
    avatars_and_conversation_photos,
    a_deleted_account_loses_its_avatar,
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

fn spec(mime: &str, purpose: MediaPurpose, name: &str) -> UploadSpec {
    UploadSpec { mime_type: mime.into(), purpose, file_name: name.into(), sha256: None }
}

async fn upload(c: &Client, bytes: &[u8], spec: &UploadSpec) -> Result<v1::MediaInfo, ClientError> {
    c.upload(&mut Cursor::new(bytes.to_vec()), spec, &mut |_| {}).await
}

async fn download(c: &Client, media_id: &str, thumbnail: &str, offset: u64) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    c.download(media_id, thumbnail, offset, &mut out, &mut |_, _| {}).await?;
    Ok(out)
}

/// §22.2-§22.7: a 1.3 MB file in 64 KiB chunks, back whole (a stream on QUIC, pipelined chunks on
/// WebSocket) and from the middle; single ranges; GetMedia.
async fn upload_and_download_with_ranges(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "mdA").await?;
    let data = random_bytes(1_300_001);
    let m = upload(&a.client, &data, &spec("application/octet-stream", MediaPurpose::Attachment, "blob.bin")).await?;
    ensure!(m.size == data.len() as u64 && m.sha256.as_ref() == <[u8; 32]>::from(Sha256::digest(&data)), "{m:?}");
    ensure!(m.file_name == "blob.bin" && m.mime_type == "application/octet-stream", "{m:?}");
    ensure!(download(&a.client, &m.media_id, "", 0).await? == data, "whole download differs");
    ensure!(download(&a.client, &m.media_id, "", 777_777).await? == data[777_777..], "tail download differs");
    let r = a.client.download_range(&m.media_id, "", 100, 1000).await?;
    ensure!(r.total_size == data.len() as u64 && r.offset == 100 && r.data.as_ref() == &data[100..1100], "{r:?}");
    let last = a.client.download_range(&m.media_id, "", data.len() as u64 - 1, 0).await?;
    ensure!(last.data.as_ref() == &data[data.len() - 1..], "last byte");
    let end = a.client.download_range(&m.media_id, "", data.len() as u64, 0).await?;
    ensure!(end.data.is_empty() && end.length == 0, "at the end: nothing");
    let past = a.client.download_range(&m.media_id, "", data.len() as u64 + 1, 0).await;
    ensure!(expect_code(past, ErrorCode::InvalidArgument)?.field == "download_media.offset");
    let big = a.client.download_range(&m.media_id, "", 0, 0).await?;
    ensure!(big.length == 64 * 1024, "one chunk per response: {}", big.length);
    ensure!(a.client.get_media(&m.media_id).await? == m, "GetMedia is what FinishUpload said");
    // Identical bytes are stored once: a second upload of them gets the same blob.
    let again =
        upload(&a.client, &data, &spec("application/octet-stream", MediaPurpose::Attachment, "copy.bin")).await?;
    ensure!(again.media_id != m.media_id && again.sha256 == m.sha256);
    Ok(())
}

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

/// §22.5: a SHA-256 that does not match is INVALID_ARGUMENT, and the upload stays: the right bytes
/// sent again finish it.
async fn sha256_mismatch_is_refused_and_can_be_mended(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "mdS").await?;
    let data = random_bytes(100_000);
    let sha: [u8; 32] = Sha256::digest(&data).into();
    let sp = UploadSpec { sha256: Some(sha), ..spec("application/octet-stream", MediaPurpose::Attachment, "") };
    let begun = a.client.begin_upload(data.len() as u64, &sp).await?;
    let mut wrong = data.clone();
    wrong[70_000] ^= 1;
    for (i, c) in wrong.chunks(64 * 1024).enumerate() {
        a.client.upload_chunk(&begun.upload_id, (i * 64 * 1024) as u64, Bytes::copy_from_slice(c)).await?;
    }
    let e = expect_code(a.client.finish_upload(&begun.upload_id).await, ErrorCode::InvalidArgument)?;
    ensure!(e.field == "begin_upload.sha256", "{e:?}");
    a.client.upload_chunk(&begun.upload_id, 64 * 1024, Bytes::copy_from_slice(&data[64 * 1024..])).await?;
    let m = a.client.finish_upload(&begun.upload_id).await?;
    ensure!(m.sha256.as_ref() == sha.as_slice());
    let bad = a.client.begin_upload(10, &UploadSpec { sha256: None, ..sp.clone() }).await?;
    a.client.cancel_upload(&bad.upload_id).await?;
    expect_code(a.client.get_upload(&bad.upload_id).await, ErrorCode::NotFound)?;
    let short = v1::BeginUpload {
        size: 10,
        mime_type: "text/plain".into(),
        sha256: Bytes::from_static(b"abc"),
        purpose: MediaPurpose::Attachment as i32,
        ..Default::default()
    };
    let r = call!(a.client, BeginUpload, short);
    ensure!(expect_code(r, ErrorCode::InvalidArgument)?.field == "begin_upload.sha256");
    Ok(())
}

/// §22.2: a size over the limit, then over the quota, is refused at BeginUpload, before any byte.
async fn over_the_limit_is_refused_at_begin(s: &TestServer, t: Transport) -> anyhow::Result<()> {
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

/// §22.5: the sniffed type must be the claimed one; an avatar must be an image.
async fn claimed_type_must_match_the_bytes(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "mdT").await?;
    let jpeg = jpeg_with_gps(64, 48, 1);
    let e = expect_code(
        upload(&a.client, &jpeg, &spec("image/png", MediaPurpose::Attachment, "")).await,
        ErrorCode::InvalidArgument,
    )?;
    ensure!(e.field == "begin_upload.mime_type" && e.message.contains("image/jpeg"), "{e:?}");
    let text = b"just some words, nothing else".to_vec();
    expect_code(
        upload(&a.client, &text, &spec("image/png", MediaPurpose::Attachment, "")).await,
        ErrorCode::InvalidArgument,
    )?;
    let m = upload(&a.client, &text, &spec("text/plain", MediaPurpose::Attachment, "notes.txt")).await?;
    ensure!(m.mime_type == "text/plain" && m.thumbnails.is_empty());
    let e = expect_code(
        upload(&a.client, &text, &spec("text/plain", MediaPurpose::Avatar, "")).await,
        ErrorCode::InvalidArgument,
    )?;
    ensure!(e.field == "begin_upload.purpose", "{e:?}");
    let m = upload(&a.client, &png(40, 30), &spec("application/octet-stream", MediaPurpose::Attachment, "")).await?;
    ensure!(m.mime_type == "image/png" && (m.width, m.height) == (40, 30), "{m:?}");
    Ok(())
}

/// §22.5: a PNG whose header says 40,000 × 40,000 is refused from its header (the unit test
/// server/tests/media_bombs.rs measures that nothing large is allocated).
async fn decompression_bomb_is_refused(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "mdB").await?;
    let e = expect_code(
        upload(&a.client, &png_bomb(), &spec("image/png", MediaPurpose::Attachment, "")).await,
        ErrorCode::InvalidArgument,
    )?;
    ensure!(e.message.contains("40000"), "{e:?}");
    Ok(())
}

/// §22.5-§22.6: EXIF orientation applied, GPS gone from the stored JPEG and every thumbnail.
async fn exif_gps_is_stripped_from_the_image_and_its_thumbnails(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "mdE").await?;
    for orientation in [1u16, 6] {
        let jpeg = jpeg_with_gps(1000, 500, orientation);
        ensure!(has_metadata(&jpeg), "the fixture carries EXIF GPS");
        let m = upload(&a.client, &jpeg, &spec("image/jpeg", MediaPurpose::Attachment, "photo.jpg")).await?;
        let want = if orientation == 6 { (500, 1000) } else { (1000, 500) };
        ensure!((m.width, m.height) == want, "orientation {orientation}: {m:?}");
        let stored = download(&a.client, &m.media_id, "", 0).await?;
        ensure!(!has_metadata(&stored), "the stored original carries metadata");
        ensure!(dimensions(&stored) == want);
        let names: Vec<&str> = m.thumbnails.iter().map(|t| t.name.as_str()).collect();
        ensure!(names == ["crop96", "scale320", "scale800"], "{names:?}");
        for th in &m.thumbnails {
            let bytes = download(&a.client, &m.media_id, &th.name, 0).await?;
            ensure!(!has_metadata(&bytes), "thumbnail {} carries metadata", th.name);
            ensure!(dimensions(&bytes) == (th.width, th.height) && bytes.len() as u64 == th.size, "{th:?}");
        }
        let e = expect_code(a.client.download_range(&m.media_id, "scale9000", 0, 0).await, ErrorCode::NotFound)?;
        ensure!(e.message.contains("thumbnail"));
    }
    Ok(())
}

/// §22.8, §22.10: a message of attachments only; members read the media, a non-member gets the
/// NOT_FOUND of an unknown id, and so does a member once removed, and everyone once the message
/// is deleted (but the uploader).
async fn attachments_are_read_by_members_only(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "maA").await?;
    let mut b = new_user(s, t, "maB").await?;
    let c = new_user(s, t, "maC").await?;
    let m = upload(&a.client, &png(300, 200), &spec("image/png", MediaPurpose::Attachment, "map.png")).await?;
    let conv = call!(a.client, CreateConversation, group("media", &[b.id]))?.conversation_id;
    let attachment = v1::Attachment { media_id: m.media_id.clone(), duration_ms: 0, ..Default::default() };
    let sent = call!(
        a.client,
        SendMessage,
        v1::SendMessage { attachments: vec![attachment.clone()], ..send(conv, "ma1", "") }
    )?;
    // Live delivery and history carry the attachment, filled in by the server.
    let posted =
        confab_conformance::util::next_matching(&mut b.events, std::time::Duration::from_secs(5), |e| match e {
            v1::event::Event::ConversationEvent(ev) => match &ev.body {
                Some(v1::conversation_event::Body::MessagePosted(msg)) => Some(msg.clone()),
                _ => None,
            },
            _ => None,
        })
        .await
        .context("the message reaches b")?;
    let att = posted.attachments.first().context("posted with its attachment")?;
    ensure!(att.media_id == m.media_id && att.file_name == "map.png" && att.mime_type == "image/png", "{att:?}");
    ensure!((att.width, att.height) == (300, 200) && att.thumbnails == ["crop96"], "{att:?}");
    let h = call!(b.client, GetHistory, v1::GetHistory { conversation_id: conv, limit: 10, ..Default::default() })?;
    ensure!(h.messages.iter().any(|x| x.message_id == sent.message_id && x.attachments.len() == 1));
    ensure!(download(&b.client, &m.media_id, "crop96", 0).await?.len() as u64 == m.thumbnails[0].size);
    b.client.get_media(&m.media_id).await?;
    // Not a member: the same NOT_FOUND as an id that does not exist.
    let unknown = expect_code(c.client.get_media("m00000000000000000000000000000000").await, ErrorCode::NotFound)?;
    let hidden = expect_code(c.client.get_media(&m.media_id).await, ErrorCode::NotFound)?;
    ensure!(unknown == hidden, "{unknown:?} vs {hidden:?}");
    expect_code(c.client.download_range(&m.media_id, "", 0, 0).await, ErrorCode::NotFound)?;
    // c cannot attach what it cannot read.
    let conv_c = call!(c.client, CreateConversation, group("c's", &[a.id]))?.conversation_id;
    let r = call!(
        c.client,
        SendMessage,
        v1::SendMessage { attachments: vec![attachment.clone()], ..send(conv_c, "mc1", "") }
    );
    expect_code(r, ErrorCode::NotFound)?;
    // Too many attachments; text of only spaces with an attachment.
    let many = vec![attachment.clone(); 11];
    let r = call!(a.client, SendMessage, v1::SendMessage { attachments: many, ..send(conv, "ma2", "") });
    ensure!(expect_code(r, ErrorCode::InvalidArgument)?.field == "send_message.attachments");
    // b removed: no longer reads it.
    call!(a.client, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: b.id })?;
    expect_code(b.client.get_media(&m.media_id).await, ErrorCode::NotFound)?;
    let _ = a.events.try_recv();
    // Deleted message: only the uploader still reads it.
    call!(a.client, AddMembers, v1::AddMembers { conversation_id: conv, user_ids: vec![b.id] })?;
    b.client.get_media(&m.media_id).await?;
    call!(a.client, DeleteMessage, v1::DeleteMessage { conversation_id: conv, message_id: sent.message_id })?;
    expect_code(b.client.get_media(&m.media_id).await, ErrorCode::NotFound)?;
    a.client.get_media(&m.media_id).await?;
    Ok(())
}

/// §22.10: an avatar is read by anyone signed in; a group's photo by its members, a channel's by
/// anyone. Only an image uploaded by the caller for that purpose may be set.
async fn avatars_and_conversation_photos(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "mvA").await?;
    let b = new_user(s, t, "mvB").await?;
    let c = new_user(s, t, "mvC").await?;
    let avatar = upload(&a.client, &png(128, 128), &spec("image/png", MediaPurpose::Avatar, "")).await?;
    let me = call!(
        a.client,
        UpdateProfile,
        v1::UpdateProfile { avatar_ref: Some(avatar.media_id.clone()), ..Default::default() }
    )?;
    ensure!(me.avatar_ref == avatar.media_id);
    let seen = call!(c.client, GetUser, v1::GetUser { user_id: a.id })?;
    ensure!(seen.avatar_ref == avatar.media_id, "{seen:?}");
    download(&c.client, &avatar.media_id, "crop96", 0).await?;
    // Someone else's media, or an attachment, cannot be one's avatar.
    let r = call!(
        b.client,
        UpdateProfile,
        v1::UpdateProfile { avatar_ref: Some(avatar.media_id.clone()), ..Default::default() }
    );
    expect_code(r, ErrorCode::NotFound)?;
    let att = upload(&b.client, &png(10, 10), &spec("image/png", MediaPurpose::Attachment, "")).await?;
    let r = call!(
        b.client,
        UpdateProfile,
        v1::UpdateProfile { avatar_ref: Some(att.media_id.clone()), ..Default::default() }
    );
    ensure!(expect_code(r, ErrorCode::InvalidArgument)?.field == "update_profile.avatar_ref");
    // A group's photo: b (member) reads it, c does not.
    let photo = upload(&a.client, &png(64, 64), &spec("image/png", MediaPurpose::ConversationPhoto, "")).await?;
    let conv = call!(a.client, CreateConversation, group("photo", &[b.id]))?.conversation_id;
    let upd =
        v1::UpdateConversation { conversation_id: conv, photo_ref: Some(photo.media_id.clone()), ..Default::default() };
    ensure!(call!(a.client, UpdateConversation, upd)?.photo_ref == photo.media_id);
    b.client.get_media(&photo.media_id).await?;
    expect_code(c.client.get_media(&photo.media_id).await, ErrorCode::NotFound)?;
    // A channel's photo: anyone.
    let chan = call!(
        a.client,
        CreateConversation,
        v1::CreateConversation {
            kind: v1::ConversationKind::Channel as i32,
            title: "mv-chan".into(),
            ..Default::default()
        }
    )?
    .conversation_id;
    let photo2 = upload(&a.client, &png(64, 64), &spec("image/png", MediaPurpose::ConversationPhoto, "")).await?;
    let upd = v1::UpdateConversation {
        conversation_id: chan,
        photo_ref: Some(photo2.media_id.clone()),
        ..Default::default()
    };
    call!(a.client, UpdateConversation, upd)?;
    c.client.get_media(&photo2.media_id).await?;
    // Clearing the avatar: others no longer read it.
    call!(a.client, UpdateProfile, v1::UpdateProfile { avatar_ref: Some(String::new()), ..Default::default() })?;
    expect_code(c.client.get_media(&avatar.media_id).await, ErrorCode::NotFound)?;
    Ok(())
}

/// §21 account deleted × media: the avatar is cleared and no longer readable by others.
async fn a_deleted_account_loses_its_avatar(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "mxA").await?;
    let b = new_user(s, t, "mxB").await?;
    let avatar = upload(&a.client, &png(64, 64), &spec("image/png", MediaPurpose::Avatar, "")).await?;
    call!(a.client, UpdateProfile, v1::UpdateProfile { avatar_ref: Some(avatar.media_id.clone()), ..Default::default() })?;
    b.client.get_media(&avatar.media_id).await?;
    call!(a.client, DeleteAccount, v1::DeleteAccount { password: confab_conformance::util::PASSWORD.into() })?;
    ensure!(call!(b.client, GetUser, v1::GetUser { user_id: a.id })?.avatar_ref.is_empty(), "avatar cleared");
    expect_code(b.client.get_media(&avatar.media_id).await, ErrorCode::NotFound)?;
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
            Some(db) => TestServer::start_on(&db.url, |c| { tweak(c); c.data_dir = dir; }).await,
            None => TestServer::start_with(kind, |c| { tweak(c); c.data_dir = dir; }).await,
        }
    };
    for t in [Transport::WebSocket, Transport::Quic] {
        let s = start().await?;
        let a = new_user(&s, t, "mrA").await?;
        let data = random_bytes(9 * 64 * 1024 + 99);
        let begun = a.client.begin_upload(data.len() as u64, &spec("application/octet-stream", MediaPurpose::Attachment, "")).await?;
        for i in [0usize, 3, 4, 9] {
            let end = ((i + 1) * 64 * 1024).min(data.len());
            a.client.upload_chunk(&begun.upload_id, (i * 64 * 1024) as u64, Bytes::copy_from_slice(&data[i * 64 * 1024..end])).await?;
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

/// The whole chapter again with the blobs on a real S3-compatible server (SeaweedFS), on both
/// transports (the S3 store's own contract is tests/tests/blob_store.rs).
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
        for (name, test) in TESTS {
            if let Err(e) = test(&s, t).await {
                failures.push(format!("{name} on {t:?}: {e:#}"));
            }
        }
    }
    s.stop().await.expect("stop");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
