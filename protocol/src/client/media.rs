//! Media for clients (docs/protocol.md §22): resumable uploads (chunks over WebSocket, one
//! bidirectional stream per missing range over QUIC, answered once stored), downloads with byte
//! ranges (pipelined chunks, or one unidirectional stream over QUIC), and the requests around them.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use super::{Client, ClientError, Shared, lock, unexpected};
use crate::framing;
use crate::v1::{self, client_frame::Request, response::Result as R};

/// Chunk requests an upload or download keeps in flight over WebSocket.
pub const WINDOW: usize = 4;

/// What BeginUpload needs besides the size.
#[derive(Clone, Debug, Default)]
pub struct UploadSpec {
    pub mime_type: String,
    pub purpose: v1::MediaPurpose,
    pub file_name: String,
    /// The file's SHA-256, checked by the server at FinishUpload.
    pub sha256: Option<[u8; 32]>,
}

/// A download stream the server opened for a DownloadMedia with `stream` (§22.9).
#[derive(Debug)]
pub struct IncomingDownload {
    pub header: v1::DownloadStream,
    pub recv: quinn::RecvStream,
}

/// Reads the stream header of each unidirectional stream the server opens and hands the stream
/// to the download waiting under its request id. Runs for the connection's life.
pub(super) async fn accept_downloads(conn: quinn::Connection, shared: Arc<Shared>) {
    accept_loop(&conn, &shared).await;
    // The connection is gone: downloads still waiting for their stream fail now.
    lock(&shared.downloads).clear();
}

async fn accept_loop(conn: &quinn::Connection, shared: &Arc<Shared>) {
    while let Ok(mut recv) = conn.accept_uni().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(header) = read_header(&mut recv).await else { return };
            if let Some(v1::stream_header::Target::Download(d)) = header.target
                && let Some(tx) = lock(&shared.downloads).remove(&d.request_id)
            {
                let _ = tx.send(IncomingDownload { header: d, recv });
            }
        });
    }
}

async fn read_header(recv: &mut quinn::RecvStream) -> Result<v1::StreamHeader, ClientError> {
    read_frame(recv).await
}

/// One length-prefixed message (at most 4 KiB) at the start of a transfer stream.
async fn read_frame<M: prost::Message + Default>(recv: &mut quinn::RecvStream) -> Result<M, ClientError> {
    let bad = |e: String| ClientError::Protocol(format!("transfer stream: {e}"));
    let mut len = framing::LengthDecoder::default();
    let n = loop {
        let mut b = [0u8; 1];
        recv.read_exact(&mut b).await.map_err(|e| bad(e.to_string()))?;
        if let Some(n) = len.push(b[0], 4096).map_err(|e| bad(e.to_string()))? {
            break n;
        }
    };
    let mut head = vec![0u8; n as usize];
    recv.read_exact(&mut head).await.map_err(|e| bad(e.to_string()))?;
    M::decode(head.as_slice()).map_err(|e| bad(e.to_string()))
}

/// SHA-256 and size of everything `source` holds, read from its start.
pub async fn digest<S: AsyncRead + AsyncSeek + Unpin>(source: &mut S) -> std::io::Result<([u8; 32], u64)> {
    source.seek(std::io::SeekFrom::Start(0)).await?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = source.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((h.finalize().into(), total))
}

/// The ranges of `size` bytes not in `held` (sorted, merged), as chunk-aligned half-open ranges.
pub fn missing(held: &[v1::ByteRange], size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    for r in held {
        if r.start > at {
            out.push((at, r.start));
        }
        at = at.max(r.end);
    }
    if at < size {
        out.push((at, size));
    }
    out
}

fn io(e: std::io::Error) -> ClientError {
    ClientError::Transport(format!("file: {e}"))
}

impl Client {
    /// §22.2
    pub async fn begin_upload(&self, size: u64, spec: &UploadSpec) -> Result<v1::BeginUploadResult, ClientError> {
        let r = v1::BeginUpload {
            size,
            mime_type: spec.mime_type.clone(),
            sha256: spec.sha256.map(|s| Bytes::copy_from_slice(&s)).unwrap_or_default(),
            purpose: spec.purpose as i32,
            file_name: spec.file_name.clone(),
        };
        match self.request(Request::BeginUpload(r)).await? {
            R::BeginUpload(b) => Ok(b),
            other => Err(unexpected("BeginUploadResult", &other)),
        }
    }

    /// §22.3: one chunk; the bytes the server holds after it.
    pub async fn upload_chunk(&self, upload_id: &str, offset: u64, data: Bytes) -> Result<u64, ClientError> {
        let r = v1::UploadChunk { upload_id: upload_id.to_string(), offset, data };
        match self.request(Request::UploadChunk(r)).await? {
            R::UploadChunk(c) => Ok(c.received_bytes),
            other => Err(unexpected("UploadChunkResult", &other)),
        }
    }

    /// §22.4
    pub async fn get_upload(&self, upload_id: &str) -> Result<v1::UploadState, ClientError> {
        match self.request(Request::GetUpload(v1::GetUpload { upload_id: upload_id.to_string() })).await? {
            R::GetUpload(s) => Ok(s),
            other => Err(unexpected("UploadState", &other)),
        }
    }

    /// §22.5
    pub async fn finish_upload(&self, upload_id: &str) -> Result<v1::MediaInfo, ClientError> {
        match self.request(Request::FinishUpload(v1::FinishUpload { upload_id: upload_id.to_string() })).await? {
            R::FinishUpload(f) => {
                f.media.ok_or_else(|| ClientError::Protocol("FinishUploadResult without media".into()))
            }
            other => Err(unexpected("FinishUploadResult", &other)),
        }
    }

    /// §22.4
    pub async fn cancel_upload(&self, upload_id: &str) -> Result<(), ClientError> {
        match self.request(Request::CancelUpload(v1::CancelUpload { upload_id: upload_id.to_string() })).await? {
            R::CancelUpload(_) => Ok(()),
            other => Err(unexpected("CancelUploadResult", &other)),
        }
    }

    /// §22.6
    pub async fn get_media(&self, media_id: &str) -> Result<v1::MediaInfo, ClientError> {
        match self.request(Request::GetMedia(v1::GetMedia { media_id: media_id.to_string() })).await? {
            R::GetMedia(m) => Ok(m),
            other => Err(unexpected("MediaInfo", &other)),
        }
    }

    /// §22.7: one range in the response (at most the server's chunk size comes back).
    pub async fn download_range(
        &self,
        media_id: &str,
        thumbnail: &str,
        offset: u64,
        length: u64,
    ) -> Result<v1::DownloadMediaResult, ClientError> {
        let r = v1::DownloadMedia {
            media_id: media_id.to_string(),
            thumbnail: thumbnail.to_string(),
            offset,
            length,
            stream: false,
        };
        match self.request(Request::DownloadMedia(r)).await? {
            R::DownloadMedia(d) => Ok(d),
            other => Err(unexpected("DownloadMediaResult", &other)),
        }
    }

    /// Sends whatever of `source` (of `state.size` bytes) the server does not hold yet, as
    /// GetUpload reported it: over QUIC one stream per missing range, over WebSocket chunk
    /// requests, [`WINDOW`] in flight. `progress` gets the bytes sent so far.
    pub async fn upload_missing<S: AsyncRead + AsyncSeek + Unpin>(
        &self,
        state: &v1::UploadState,
        source: &mut S,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), ClientError> {
        let chunk = u64::from(state.chunk_size.max(1));
        let mut sent = state.received.iter().map(|r| r.end - r.start).sum::<u64>();
        progress(sent);
        for (start, end) in missing(&state.received, state.size) {
            let start = start / chunk * chunk;
            source.seek(std::io::SeekFrom::Start(start)).await.map_err(io)?;
            if let Some(conn) = &self.quic {
                let (mut send, mut recv) = conn.open_bi().await.map_err(|e| ClientError::Transport(e.to_string()))?;
                let header = v1::StreamHeader {
                    target: Some(v1::stream_header::Target::Upload(v1::UploadStream {
                        upload_id: state.upload_id.clone(),
                        offset: start,
                    })),
                }
                .encode_to_vec();
                let w = |e: quinn::WriteError| ClientError::Transport(format!("upload stream: {e}"));
                send.write_all(&framing::length_prefix(header.len())).await.map_err(w)?;
                send.write_all(&header).await.map_err(w)?;
                let mut buf = vec![0u8; chunk as usize];
                let mut at = start;
                while at < end {
                    let n = (end - at).min(chunk) as usize;
                    source.read_exact(&mut buf[..n]).await.map_err(io)?;
                    if send.write_all(&buf[..n]).await.is_err() {
                        // The server stopped reading: its answer says why.
                        break;
                    }
                    at += n as u64;
                    sent += n as u64;
                    progress(sent);
                }
                let _ = send.finish();
                // One UploadStreamResult, once the server stored every byte (§22.9).
                let answer: v1::UploadStreamResult = read_frame(&mut recv).await?;
                if let Some(e) = answer.error {
                    return Err(ClientError::Server(e));
                }
            } else {
                let mut inflight = futures_util::stream::FuturesOrdered::new();
                let mut at = start;
                while at < end || !inflight.is_empty() {
                    while at < end && inflight.len() < WINDOW {
                        let n = (end - at).min(chunk) as usize;
                        let mut buf = vec![0u8; n];
                        source.read_exact(&mut buf).await.map_err(io)?;
                        let (client, id, offset) = (self.clone(), state.upload_id.clone(), at);
                        inflight.push_back(async move {
                            client.upload_chunk(&id, offset, Bytes::from(buf)).await.map(|_| n as u64)
                        });
                        at += n as u64;
                    }
                    if let Some(done) = futures_util::StreamExt::next(&mut inflight).await {
                        sent += done?;
                        progress(sent);
                    }
                }
            }
        }
        Ok(())
    }

    /// Uploads `source` whole: BeginUpload (with its SHA-256), the bytes, FinishUpload.
    pub async fn upload<S: AsyncRead + AsyncSeek + Unpin>(
        &self,
        source: &mut S,
        spec: &UploadSpec,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<v1::MediaInfo, ClientError> {
        let (sha, size) = digest(source).await.map_err(io)?;
        let spec = UploadSpec { sha256: Some(sha), ..spec.clone() };
        let begun = self.begin_upload(size, &spec).await?;
        let state = v1::UploadState {
            upload_id: begun.upload_id.clone(),
            size,
            chunk_size: begun.chunk_size,
            received: Vec::new(),
            expires_at_ms: begun.expires_at_ms,
            purpose: spec.purpose as i32,
            mime_type: spec.mime_type.clone(),
        };
        self.upload_missing(&state, source, progress).await?;
        self.finish_upload(&begun.upload_id).await
    }

    /// Resumes upload `upload_id` from `source` (the same file): what the server lacks, then
    /// FinishUpload.
    pub async fn resume_upload<S: AsyncRead + AsyncSeek + Unpin>(
        &self,
        upload_id: &str,
        source: &mut S,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<v1::MediaInfo, ClientError> {
        let state = self.get_upload(upload_id).await?;
        self.upload_missing(&state, source, progress).await?;
        self.finish_upload(upload_id).await
    }

    /// Downloads a media item (or a thumbnail) from `offset` to its end into `sink`: over QUIC on
    /// one stream, over WebSocket as chunk requests, [`WINDOW`] in flight. Returns the bytes
    /// written; `progress` gets (written, total).
    pub async fn download<W: AsyncWrite + Unpin>(
        &self,
        media_id: &str,
        thumbnail: &str,
        offset: u64,
        sink: &mut W,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<u64, ClientError> {
        let wr = |e: std::io::Error| ClientError::Transport(format!("writing: {e}"));
        if self.quic.is_some() {
            let id = self.next_request_id();
            let (tx, rx) = oneshot::channel();
            lock(&self.shared.downloads).insert(id, tx);
            let r = v1::DownloadMedia {
                media_id: media_id.to_string(),
                thumbnail: thumbnail.to_string(),
                offset,
                length: 0,
                stream: true,
            };
            let answer = match self.request_as(id, Request::DownloadMedia(r)).await {
                Ok(R::DownloadMedia(d)) => d,
                Ok(other) => {
                    lock(&self.shared.downloads).remove(&id);
                    return Err(unexpected("DownloadMediaResult", &other));
                }
                Err(e) => {
                    lock(&self.shared.downloads).remove(&id);
                    return Err(e);
                }
            };
            let mut incoming = tokio::time::timeout(self.shared.request_timeout, rx)
                .await
                .map_err(|_| {
                    lock(&self.shared.downloads).remove(&id);
                    ClientError::Timeout
                })?
                .map_err(|_| self.closed_error())?;
            let mut written = 0u64;
            while let Some(c) = incoming
                .recv
                .read_chunk(1024 * 1024, true)
                .await
                .map_err(|e| ClientError::Transport(format!("download stream: {e}")))?
            {
                sink.write_all(&c.bytes).await.map_err(wr)?;
                written += c.bytes.len() as u64;
                progress(written, answer.total_size);
            }
            if written != answer.length {
                return Err(ClientError::Transport(format!(
                    "download stream ended after {written} of {} bytes",
                    answer.length
                )));
            }
            sink.flush().await.map_err(wr)?;
            return Ok(written);
        }
        let first = self.download_range(media_id, thumbnail, offset, 0).await?;
        let total = first.total_size;
        let chunk = first.length.max(1);
        sink.write_all(&first.data).await.map_err(wr)?;
        let mut written = first.length;
        progress(written, total);
        let mut next = offset + first.length;
        let mut inflight = futures_util::stream::FuturesOrdered::new();
        while next < total || !inflight.is_empty() {
            while next < total && inflight.len() < WINDOW {
                let (client, m, t, at) = (self.clone(), media_id.to_string(), thumbnail.to_string(), next);
                inflight.push_back(async move { client.download_range(&m, &t, at, chunk).await });
                next += chunk.min(total - next);
            }
            if let Some(r) = futures_util::StreamExt::next(&mut inflight).await {
                let r = r?;
                sink.write_all(&r.data).await.map_err(wr)?;
                written += r.length;
                progress(written, total);
            }
        }
        sink.flush().await.map_err(wr)?;
        Ok(written)
    }
}
