//! Media (docs/protocol.md §22): uploads, downloads and the QUIC transfer streams, from the wire
//! to the media service and back.

use bytes::Bytes;
use confab_protocol::framing;
use confab_protocol::v1::{self, response::Result as R};
use prost::Message as _;

use crate::error::ServerError;
use crate::session::{Caller, Session};
use crate::state::AppState;

type Out = Result<R, ServerError>;

/// Bytes queued for a connection above which a download chunk waits before it is read: memory
/// per connection stays near this plus a chunk per request in flight, whatever the client reads.
const BULK_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// §22.2
pub(crate) async fn begin_upload(state: &AppState, a: &Caller, r: v1::BeginUpload) -> Out {
    Ok(R::BeginUpload(state.media().begin(a, &r).await?))
}

/// §22.3
pub(crate) async fn upload_chunk(state: &AppState, a: &Caller, r: v1::UploadChunk) -> Out {
    Ok(R::UploadChunk(state.media().chunk(a, r).await?))
}

/// §22.4
pub(crate) async fn get_upload(state: &AppState, a: &Caller, r: v1::GetUpload) -> Out {
    Ok(R::GetUpload(state.media().upload_state(a, &r.upload_id).await?))
}

/// §22.5
pub(crate) async fn finish_upload(state: &AppState, a: &Caller, r: v1::FinishUpload) -> Out {
    Ok(R::FinishUpload(state.media().finish(a, &r.upload_id).await?))
}

/// §22.4
pub(crate) async fn cancel_upload(state: &AppState, a: &Caller, r: v1::CancelUpload) -> Out {
    Ok(R::CancelUpload(state.media().cancel(a, &r.upload_id).await?))
}

/// §22.6
pub(crate) async fn get_media(state: &AppState, a: &Caller, r: v1::GetMedia) -> Out {
    Ok(R::GetMedia(state.media().get(a, &r.media_id).await?))
}

/// §22.7: the bytes in the response (at most one chunk), or, with `stream` on QUIC, the whole
/// range on a new unidirectional stream (§22.9) while the response says how long it is.
pub(crate) async fn download_media(
    state: &AppState,
    session: &Session,
    a: &Caller,
    request_id: u64,
    r: v1::DownloadMedia,
) -> Out {
    let media = state.media();
    if !r.stream {
        let cap = u64::from(media.config().chunk_bytes);
        let t = media.target(a, &r, Some(cap)).await?;
        // Read the chunk only once the client takes what is queued for it (§22.7).
        session.outbox.room_for_bulk(BULK_QUEUED_BYTES).await;
        let read = media.read(&t).await?;
        return Ok(R::DownloadMedia(v1::DownloadMediaResult {
            total_size: read.total_size,
            offset: read.offset,
            length: read.data.len() as u64,
            data: read.data,
            mime_type: read.mime_type,
        }));
    }
    let Some(conn) = session.quic().cloned() else {
        return Err(ServerError::FailedPrecondition(
            "download_media.stream needs QUIC; over WebSocket ask for the bytes in the response".into(),
        ));
    };
    let t = media.target(a, &r, None).await?;
    let permit = session.transfers().clone().try_acquire_owned().map_err(|_| {
        ServerError::FailedPrecondition(format!(
            "{} transfers already run on this connection",
            media.config().max_transfers_per_connection
        ))
    })?;
    let header = v1::StreamHeader {
        target: Some(v1::stream_header::Target::Download(v1::DownloadStream {
            request_id,
            media_id: r.media_id.clone(),
            thumbnail: r.thumbnail.clone(),
            offset: t.offset,
            length: t.length,
        })),
    };
    let result = v1::DownloadMediaResult {
        total_size: t.total_size,
        offset: t.offset,
        data: Bytes::new(),
        mime_type: t.mime_type.clone(),
        length: t.length,
    };
    let (media, chunk) = (media.clone(), u64::from(media.config().chunk_bytes));
    state.tasks().spawn(async move {
        let _permit = permit;
        if let Err(e) = send_download(&media, &conn, header, t, chunk).await {
            tracing::debug!(error = %e, "download stream ended early");
        }
    });
    Ok(R::DownloadMedia(result))
}

/// Writes one download stream: its header, then the range chunk by chunk (one chunk in memory).
async fn send_download(
    media: &crate::media::Media,
    conn: &quinn::Connection,
    header: v1::StreamHeader,
    t: crate::media::Target,
    chunk: u64,
) -> Result<(), String> {
    let mut send = conn.open_uni().await.map_err(|e| e.to_string())?;
    let head = header.encode_to_vec();
    send.write_all(&framing::length_prefix(head.len())).await.map_err(|e| e.to_string())?;
    send.write_all(&head).await.map_err(|e| e.to_string())?;
    let mut at = t.offset;
    let end = t.offset + t.length;
    while at < end {
        let n = chunk.min(end - at);
        let part = crate::media::Target { offset: at, length: n, ..t.clone() };
        let read = match media.read(&part).await {
            Ok(r) => r,
            Err(e) => {
                // A reset, not an end: the client must not take what came for the whole range.
                let _ = send.reset(1u8.into());
                return Err(e.to_string());
            }
        };
        send.write_chunk(read.data).await.map_err(|e| e.to_string())?;
        at += n;
    }
    send.finish().map_err(|e| e.to_string())?;
    let _ = send.stopped().await;
    Ok(())
}

/// §22.9: serves the bidirectional streams a QUIC client opens to upload, for as long as the
/// connection lives (the first bidirectional stream, the control stream, was taken before); at
/// most `max_transfers_per_connection` at once (the QUIC stream limit). Each is answered with one
/// UploadStreamResult once its bytes are stored.
pub(crate) async fn serve_upload_streams(state: AppState, session: std::sync::Arc<Session>, conn: quinn::Connection) {
    loop {
        let (send, recv) = tokio::select! {
            r = conn.accept_bi() => match r {
                Ok(pair) => pair,
                Err(_) => return,
            },
            _ = state.shutdown().cancelled() => return,
        };
        let (state2, session2) = (state.clone(), session.clone());
        state.tasks().spawn(async move {
            let (mut send, mut recv) = (send, recv);
            let answer = match receive_upload(&state2, &session2, &mut recv).await {
                Ok(received_bytes) => v1::UploadStreamResult { received_bytes, error: None },
                Err(e) => {
                    tracing::debug!(error = %e, "upload stream refused");
                    let _ = recv.stop(0u8.into());
                    v1::UploadStreamResult { received_bytes: 0, error: Some(e.to_wire()) }
                }
            };
            let body = answer.encode_to_vec();
            let _ = send.write_all(&framing::length_prefix(body.len())).await;
            let _ = send.write_all(&body).await;
            let _ = send.finish();
            let _ = send.stopped().await;
        });
    }
}

async fn read_header(recv: &mut quinn::RecvStream) -> Result<v1::StreamHeader, ServerError> {
    const MAX_HEADER: u32 = 4096;
    let bad = |m: String| ServerError::invalid("stream_header", m);
    let mut len = framing::LengthDecoder::default();
    let n = loop {
        let mut b = [0u8; 1];
        recv.read_exact(&mut b).await.map_err(|e| bad(e.to_string()))?;
        if let Some(n) = len.push(b[0], MAX_HEADER).map_err(|e| bad(e.to_string()))? {
            break n;
        }
    };
    let mut head = vec![0u8; n as usize];
    recv.read_exact(&mut head).await.map_err(|e| bad(e.to_string()))?;
    v1::StreamHeader::decode(head.as_slice()).map_err(|_| bad("undecodable stream header".into()))
}

/// Stores an upload stream's bytes; the bytes of the file held afterwards.
async fn receive_upload(state: &AppState, session: &Session, recv: &mut quinn::RecvStream) -> Result<u64, ServerError> {
    let header = read_header(recv).await?;
    let Some(v1::stream_header::Target::Upload(h)) = header.target else {
        return Err(ServerError::invalid("stream_header", "a client's stream carries an upload"));
    };
    let caller = session.require_caller()?;
    let media = state.media();
    let mut sink = media.sink(&caller, &h).await?;
    let chunk = sink.chunk_size();
    while let Some(c) =
        recv.read_chunk(chunk, true).await.map_err(|e| ServerError::Unavailable(format!("upload stream: {e}")))?
    {
        sink.push(c.bytes).await?;
    }
    sink.finish();
    media.received(&caller, &h.upload_id).await
}
