//! Cases for media (docs/protocol.md §22): uploads resumed on another connection, the checks at
//! FinishUpload, downloads with ranges, EXIF GPS removed from images and thumbnails, attachments
//! and who may read them, avatars and conversation photos. They hold for any server's limits:
//! files stay under 2 MiB and the size refused is 2^62 bytes.

use std::io::Cursor;

use anyhow::{Context, ensure};
use bytes::Bytes;
use confab_protocol::client::media::UploadSpec;
use confab_protocol::v1::{self, ErrorCode, MediaPurpose, conversation_event::Body};
use sha2::{Digest, Sha256};

use super::Target;
use super::common::*;
use crate::media::{
    dimensions, download, has_metadata, jpeg_with_gps, octets, png, png_bomb, random_bytes, spec, upload,
};

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// §22.2: BeginUpload refuses before any byte: a size no server accepts (TOO_LARGE naming
/// `begin_upload.size`), zero, a malformed type, a SHA-256 of the wrong length, a path as name.
pub(super) async fn begin_upload_refuses_before_any_byte(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "mbA").await?;
    let e = expect_code(a.client.begin_upload(1 << 62, &octets()).await, ErrorCode::TooLarge)?;
    ensure!(e.field == "begin_upload.size", "{e:?}");
    expect_code(a.client.begin_upload(0, &octets()).await, ErrorCode::InvalidArgument)?;
    let e = expect_code(
        a.client.begin_upload(1, &spec("not a type", MediaPurpose::Attachment, "")).await,
        ErrorCode::InvalidArgument,
    )?;
    ensure!(e.field == "begin_upload.mime_type", "{e:?}");
    let e = expect_code(
        a.client.begin_upload(1, &spec("text/plain", MediaPurpose::Attachment, "../x")).await,
        ErrorCode::InvalidArgument,
    )?;
    ensure!(e.field == "begin_upload.file_name", "{e:?}");
    let r = v1::BeginUpload {
        size: 10,
        mime_type: "text/plain".into(),
        sha256: Bytes::from_static(b"abc"),
        purpose: MediaPurpose::Attachment as i32,
        file_name: String::new(),
    };
    ensure!(expect_code(call!(a.client, BeginUpload, r), ErrorCode::InvalidArgument)?.field == "begin_upload.sha256");
    let r = v1::BeginUpload { size: 10, mime_type: "text/plain".into(), ..Default::default() };
    ensure!(expect_code(call!(a.client, BeginUpload, r), ErrorCode::InvalidArgument)?.field == "begin_upload.purpose");
    Ok(())
}

/// §22.3-§22.5: chunks in any order, again, or wrong (offset off a boundary, wrong length); a
/// FinishUpload too early is FAILED_PRECONDITION; another connection of the account sees the
/// ranges held, sends the rest and finishes; a retried FinishUpload answers the same media;
/// another account's upload is NOT_FOUND; CancelUpload forgets it.
pub(super) async fn uploads_resume_on_another_connection(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "mrA").await?;
    let b = account(&t, "mrB").await?;
    let data = random_bytes(1_500_000);
    let sp = UploadSpec { sha256: Some(sha(&data)), ..octets() };
    let begun = a.client.begin_upload(data.len() as u64, &sp).await?;
    let chunk = begun.chunk_size as usize;
    ensure!(chunk > 0 && chunk < data.len(), "a chunk size below the file's: {chunk}");
    let chunks = data.len().div_ceil(chunk);
    let part = |i: usize| Bytes::copy_from_slice(&data[i * chunk..((i + 1) * chunk).min(data.len())]);
    let sent: Vec<usize> = (0..chunks).rev().step_by(2).collect();
    for &i in &sent {
        a.client.upload_chunk(&begun.upload_id, (i * chunk) as u64, part(i)).await?;
    }
    a.client.upload_chunk(&begun.upload_id, (sent[0] * chunk) as u64, part(sent[0])).await.context("a chunk again")?;
    let e = expect_code(
        a.client.upload_chunk(&begun.upload_id, 1, Bytes::from_static(b"x")).await,
        ErrorCode::InvalidArgument,
    )?;
    ensure!(e.field == "upload_chunk.offset", "{e:?}");
    let e = expect_code(
        a.client.upload_chunk(&begun.upload_id, 0, Bytes::from_static(b"x")).await,
        ErrorCode::InvalidArgument,
    )?;
    ensure!(e.field == "upload_chunk.data", "{e:?}");
    expect_code(a.client.finish_upload(&begun.upload_id).await, ErrorCode::FailedPrecondition)?;
    expect_code(b.client.get_upload(&begun.upload_id).await, ErrorCode::NotFound)?;
    let other = second_device(&t, &a, "resuming device").await?;
    let state = other.client.get_upload(&begun.upload_id).await?;
    let held: u64 = state.received.iter().map(|r| r.end - r.start).sum();
    let want: u64 = sent.iter().map(|&i| part(i).len() as u64).sum();
    ensure!(held == want && state.size == data.len() as u64, "held {held} of {want}: {:?}", state.received);
    let m = other.client.resume_upload(&begun.upload_id, &mut Cursor::new(data.clone()), &mut |_| {}).await?;
    ensure!(m.sha256.as_ref() == sha(&data) && m.size == data.len() as u64, "{m:?}");
    ensure!(a.client.finish_upload(&begun.upload_id).await? == m, "a retried FinishUpload answers the same media");
    ensure!(download(&a.client, &m.media_id, "", 0).await? == data, "the bytes differ");
    let gone = a.client.begin_upload(10, &octets()).await?;
    a.client.cancel_upload(&gone.upload_id).await?;
    expect_code(a.client.get_upload(&gone.upload_id).await, ErrorCode::NotFound)?;
    Ok(())
}

/// §22.5: a SHA-256 mismatch is INVALID_ARGUMENT and the upload stays (the right chunk mends
/// it); a type the bytes contradict is refused; unrecognized bytes keep their claimed type; an
/// avatar must be an image; a PNG whose header says 40,000 × 40,000 is refused.
pub(super) async fn finish_checks_hash_type_and_image_size(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "mfA").await?;
    let data = random_bytes(100_000);
    let begun = a.client.begin_upload(data.len() as u64, &UploadSpec { sha256: Some(sha(&data)), ..octets() }).await?;
    let chunk = begun.chunk_size as usize;
    let mut wrong = data.clone();
    wrong[data.len() - 1] ^= 1;
    for (i, c) in wrong.chunks(chunk).enumerate() {
        a.client.upload_chunk(&begun.upload_id, (i * chunk) as u64, Bytes::copy_from_slice(c)).await?;
    }
    let e = expect_code(a.client.finish_upload(&begun.upload_id).await, ErrorCode::InvalidArgument)?;
    ensure!(e.field == "begin_upload.sha256", "{e:?}");
    let last = (data.len() - 1) / chunk;
    a.client
        .upload_chunk(&begun.upload_id, (last * chunk) as u64, Bytes::copy_from_slice(&data[last * chunk..]))
        .await?;
    ensure!(a.client.finish_upload(&begun.upload_id).await?.sha256.as_ref() == sha(&data));

    let jpeg = jpeg_with_gps(64, 48, 1);
    let e = expect_code(
        upload(&a.client, &jpeg, &spec("image/png", MediaPurpose::Attachment, "")).await,
        ErrorCode::InvalidArgument,
    )?;
    ensure!(e.field == "begin_upload.mime_type" && e.message.contains("image/jpeg"), "{e:?}");
    let text = b"plain words".to_vec();
    expect_code(
        upload(&a.client, &text, &spec("image/png", MediaPurpose::Attachment, "")).await,
        ErrorCode::InvalidArgument,
    )?;
    let m = upload(&a.client, &text, &spec("text/plain", MediaPurpose::Attachment, "notes.txt")).await?;
    ensure!(m.mime_type == "text/plain" && m.file_name == "notes.txt" && m.thumbnails.is_empty(), "{m:?}");
    let e = expect_code(
        upload(&a.client, &text, &spec("text/plain", MediaPurpose::Avatar, "")).await,
        ErrorCode::InvalidArgument,
    )?;
    ensure!(e.field == "begin_upload.purpose", "{e:?}");
    let m = upload(&a.client, &png(40, 30), &octets()).await?;
    ensure!(m.mime_type == "image/png" && (m.width, m.height) == (40, 30), "{m:?}");
    let e = expect_code(
        upload(&a.client, &png_bomb(), &spec("image/png", MediaPurpose::Attachment, "")).await,
        ErrorCode::InvalidArgument,
    )?;
    ensure!(e.message.contains("40000"), "{e:?}");
    Ok(())
}

/// §22.6-§22.7: the whole file (one stream over QUIC, chunk requests over WebSocket), from the
/// middle, single ranges, the last byte, nothing at the end, an offset past it; GetMedia; the same
/// bytes uploaded twice are two media items with one SHA-256.
pub(super) async fn downloads_take_byte_ranges(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "mdA").await?;
    let data = random_bytes(1_300_001);
    let m = upload(&a.client, &data, &spec("application/octet-stream", MediaPurpose::Attachment, "blob.bin")).await?;
    ensure!(m.size == data.len() as u64 && m.sha256.as_ref() == sha(&data) && m.file_name == "blob.bin", "{m:?}");
    ensure!(download(&a.client, &m.media_id, "", 0).await? == data, "whole download differs");
    ensure!(download(&a.client, &m.media_id, "", 777_777).await? == data[777_777..], "tail download differs");
    let r = a.client.download_range(&m.media_id, "", 100, 1000).await?;
    ensure!(r.total_size == data.len() as u64 && r.offset == 100 && r.data.as_ref() == &data[100..1100], "{r:?}");
    let n = data.len() as u64;
    ensure!(a.client.download_range(&m.media_id, "", n - 1, 0).await?.data.as_ref() == &data[data.len() - 1..]);
    let end = a.client.download_range(&m.media_id, "", n, 0).await?;
    ensure!(end.data.is_empty() && end.length == 0, "{end:?}");
    let past = a.client.download_range(&m.media_id, "", n + 1, 0).await;
    ensure!(expect_code(past, ErrorCode::InvalidArgument)?.field == "download_media.offset");
    ensure!(a.client.get_media(&m.media_id).await? == m, "GetMedia is what FinishUpload said");
    let again = upload(&a.client, &data, &octets()).await?;
    ensure!(again.media_id != m.media_id && again.sha256 == m.sha256);
    if t.is_websocket() {
        let r = v1::DownloadMedia { media_id: m.media_id.clone(), stream: true, ..Default::default() };
        expect_code(call!(a.client, DownloadMedia, r), ErrorCode::FailedPrecondition)?;
    }
    Ok(())
}

/// §22.5-§22.6: EXIF orientation applied and GPS gone from the stored JPEG and every thumbnail;
/// thumbnails are the sizes MediaInfo says; an unknown thumbnail name is NOT_FOUND.
pub(super) async fn images_lose_their_metadata_and_get_thumbnails(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "meA").await?;
    for orientation in [1u16, 6] {
        let jpeg = jpeg_with_gps(1000, 500, orientation);
        ensure!(has_metadata(&jpeg), "the fixture carries EXIF GPS");
        let m = upload(&a.client, &jpeg, &spec("image/jpeg", MediaPurpose::Attachment, "photo.jpg")).await?;
        let want = if orientation == 6 { (500, 1000) } else { (1000, 500) };
        ensure!((m.width, m.height) == want, "orientation {orientation}: {m:?}");
        let stored = download(&a.client, &m.media_id, "", 0).await?;
        ensure!(!has_metadata(&stored) && dimensions(&stored) == want, "the stored original");
        let names: Vec<&str> = m.thumbnails.iter().map(|t| t.name.as_str()).collect();
        ensure!(names == ["crop96", "scale320", "scale800"], "{names:?}");
        for th in &m.thumbnails {
            let bytes = download(&a.client, &m.media_id, &th.name, 0).await?;
            ensure!(!has_metadata(&bytes), "thumbnail {} carries metadata", th.name);
            ensure!(dimensions(&bytes) == (th.width, th.height) && bytes.len() as u64 == th.size, "{th:?}");
        }
        let e = expect_code(a.client.download_range(&m.media_id, "scale9000", 0, 0).await, ErrorCode::NotFound)?;
        ensure!(e.message.contains("thumbnail"), "{e:?}");
    }
    Ok(())
}

/// §22.8, §22.10: a message of attachments only, filled in by the server in the live event,
/// history and the conversation's last message; members read the media, a non-member gets the NOT_FOUND of an unknown id and cannot
/// attach it; at most 10; a removed member, and everyone but the uploader once the message is
/// deleted, no longer read it.
pub(super) async fn attachments_are_read_by_members_only(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "maA").await?;
    let mut b = account(&t, "maB").await?;
    let c = account(&t, "maC").await?;
    let m = upload(&a.client, &png(300, 200), &spec("image/png", MediaPurpose::Attachment, "map.png")).await?;
    let conv = group(&a, &[b.id]).await?;
    let attachment = v1::Attachment { media_id: m.media_id.clone(), ..Default::default() };
    let sent = call!(
        a.client,
        SendMessage,
        v1::SendMessage { attachments: vec![attachment.clone()], ..message(conv, "ma1", "") }
    )?;
    let posted =
        entry(&mut b.events, conv, |x| matches!(x, Body::MessagePosted(p) if p.message_id == sent.message_id)).await?;
    let Some(Body::MessagePosted(posted)) = posted.body else { unreachable!("matched above") };
    let att = posted.attachments.first().context("posted with its attachment")?;
    ensure!(att.media_id == m.media_id && att.file_name == "map.png" && att.mime_type == "image/png", "{att:?}");
    ensure!((att.width, att.height) == (300, 200) && att.size == m.size && att.thumbnails == ["crop96"], "{att:?}");
    ensure!(history(&b, conv).await?.iter().any(|x| x.message_id == sent.message_id && x.attachments.len() == 1));
    let last = get(&b, conv).await?.last_message.context("a last message")?;
    ensure!(last.attachments.len() == 1 && last.attachments[0].media_id == m.media_id, "{last:?}");
    ensure!(download(&b.client, &m.media_id, "crop96", 0).await?.len() as u64 == m.thumbnails[0].size);
    let unknown = expect_code(c.client.get_media("m00000000000000000000000000000000").await, ErrorCode::NotFound)?;
    let hidden = expect_code(c.client.get_media(&m.media_id).await, ErrorCode::NotFound)?;
    ensure!(unknown == hidden, "{unknown:?} vs {hidden:?}");
    expect_code(c.client.download_range(&m.media_id, "", 0, 0).await, ErrorCode::NotFound)?;
    let conv_c = group(&c, &[a.id]).await?;
    let r = call!(
        c.client,
        SendMessage,
        v1::SendMessage { attachments: vec![attachment.clone()], ..message(conv_c, "mc1", "") }
    );
    expect_code(r, ErrorCode::NotFound)?;
    let r = call!(
        a.client,
        SendMessage,
        v1::SendMessage { attachments: vec![attachment.clone(); 11], ..message(conv, "ma2", "") }
    );
    ensure!(expect_code(r, ErrorCode::InvalidArgument)?.field == "send_message.attachments");
    call!(a.client, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: b.id })?;
    expect_code(b.client.get_media(&m.media_id).await, ErrorCode::NotFound)?;
    call!(a.client, AddMembers, v1::AddMembers { conversation_id: conv, user_ids: vec![b.id] })?;
    b.client.get_media(&m.media_id).await?;
    call!(a.client, DeleteMessage, v1::DeleteMessage { conversation_id: conv, message_id: sent.message_id })?;
    expect_code(b.client.get_media(&m.media_id).await, ErrorCode::NotFound)?;
    a.client.get_media(&m.media_id).await?;
    Ok(())
}

/// §22.10, §11.10, §12.8: an avatar in use is read by anyone signed in, a group's photo by its
/// members, a channel's by anyone; only one's own image of that purpose may be set; a cleared
/// avatar is the uploader's alone again.
pub(super) async fn avatars_and_photos_are_read_by_who_sees_them(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "mvA").await?;
    let b = account(&t, "mvB").await?;
    let c = account(&t, "mvC").await?;
    let avatar = upload(&a.client, &png(128, 128), &spec("image/png", MediaPurpose::Avatar, "")).await?;
    let set = |id: &str| v1::UpdateProfile { avatar_ref: Some(id.to_string()), ..Default::default() };
    ensure!(call!(a.client, UpdateProfile, set(&avatar.media_id))?.avatar_ref == avatar.media_id);
    ensure!(call!(c.client, GetUser, v1::GetUser { user_id: a.id })?.avatar_ref == avatar.media_id);
    download(&c.client, &avatar.media_id, "crop96", 0).await?;
    expect_code(call!(b.client, UpdateProfile, set(&avatar.media_id)), ErrorCode::NotFound)?;
    let att = upload(&b.client, &png(10, 10), &octets()).await?;
    let e = expect_code(call!(b.client, UpdateProfile, set(&att.media_id)), ErrorCode::InvalidArgument)?;
    ensure!(e.field == "update_profile.avatar_ref", "{e:?}");
    let photo = upload(&a.client, &png(64, 64), &spec("image/png", MediaPurpose::ConversationPhoto, "")).await?;
    let conv = group(&a, &[b.id]).await?;
    let upd =
        v1::UpdateConversation { conversation_id: conv, photo_ref: Some(photo.media_id.clone()), ..Default::default() };
    ensure!(call!(a.client, UpdateConversation, upd)?.photo_ref == photo.media_id);
    b.client.get_media(&photo.media_id).await?;
    expect_code(c.client.get_media(&photo.media_id).await, ErrorCode::NotFound)?;
    let chan = channel(&a, &fresh_name("mv-chan")).await?;
    let photo2 = upload(&a.client, &png(64, 64), &spec("image/png", MediaPurpose::ConversationPhoto, "")).await?;
    let upd = v1::UpdateConversation {
        conversation_id: chan,
        photo_ref: Some(photo2.media_id.clone()),
        ..Default::default()
    };
    call!(a.client, UpdateConversation, upd)?;
    c.client.get_media(&photo2.media_id).await?;
    call!(a.client, UpdateProfile, set(""))?;
    expect_code(c.client.get_media(&avatar.media_id).await, ErrorCode::NotFound)?;
    a.client.get_media(&avatar.media_id).await?;
    Ok(())
}

/// §21 account deleted × media: the avatar is cleared and no longer readable by others.
pub(super) async fn a_deleted_account_loses_its_avatar(t: Target) -> anyhow::Result<()> {
    let a = new_account(&t, "mxA").await?;
    let b = account(&t, "mxB").await?;
    let avatar = upload(&a.client, &png(64, 64), &spec("image/png", MediaPurpose::Avatar, "")).await?;
    call!(
        a.client,
        UpdateProfile,
        v1::UpdateProfile { avatar_ref: Some(avatar.media_id.clone()), ..Default::default() }
    )?;
    b.client.get_media(&avatar.media_id).await?;
    call!(a.client, DeleteAccount, v1::DeleteAccount { password: PASSWORD.into() })?;
    ensure!(call!(b.client, GetUser, v1::GetUser { user_id: a.id })?.avatar_ref.is_empty(), "avatar cleared");
    expect_code(b.client.get_media(&avatar.media_id).await, ErrorCode::NotFound)?;
    Ok(())
}

/// §22.9: over QUIC an upload stream is answered once its bytes are stored (FinishUpload right
/// after needs nothing else), a stream naming another account's upload is answered with an
/// error, and a streamed download names its request.
pub(super) async fn quic_transfer_streams(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "mqA").await?;
    let b = account(&t, "mqB").await?;
    let data = random_bytes(700_000);
    let begun = a.client.begin_upload(data.len() as u64, &octets()).await?;
    let state = b.client.get_upload(&begun.upload_id).await;
    expect_code(state, ErrorCode::NotFound)?;
    let fake = v1::UploadState {
        upload_id: begun.upload_id.clone(),
        size: data.len() as u64,
        chunk_size: begun.chunk_size,
        ..Default::default()
    };
    let refused = b.client.upload_missing(&fake, &mut Cursor::new(data.clone()), &mut |_| {}).await;
    expect_code(refused, ErrorCode::NotFound).context("another account's upload stream")?;
    let state = a.client.get_upload(&begun.upload_id).await?;
    a.client.upload_missing(&state, &mut Cursor::new(data.clone()), &mut |_| {}).await?;
    let m = a.client.finish_upload(&begun.upload_id).await.context("finish right after the stream's answer")?;
    let mut got = Vec::new();
    let n = a.client.download(&m.media_id, "", 1000, &mut got, &mut |_, _| {}).await?;
    ensure!(n == data.len() as u64 - 1000 && got == data[1000..], "streamed download");
    Ok(())
}
