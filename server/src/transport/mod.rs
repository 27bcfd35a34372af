//! Transports: bytes to frames. Each transport yields a [`FrameReader`] and a [`FrameWriter`]
//! for the transport-agnostic connection loop in `crate::connection`.

pub mod http;
pub mod quic;
pub mod web;

use bytes::Bytes;
use confab_protocol::CloseCode;
use confab_protocol::framing::{FrameBuffer, FramingError, length_prefix};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, error::CapacityError};

pub(crate) type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

pub use crate::session::Transport;

/// Why reading the next frame failed. Each maps to one close code (§6).
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Over max_frame_bytes: close 1009.
    TooLarge,
    /// A WebSocket text message: close 1003.
    Text,
    /// A text message or close reason that is not UTF-8: the WebSocket connection is failed
    /// (RFC 6455 §8.1) with close 1007 and no error frame.
    InvalidUtf8,
    /// A malformed length prefix: close 1007.
    BadLength,
    /// The transport broke or violated its own protocol; no close frame can be sent.
    Transport(String),
}

/// Inbound half of a connection. `next` is cancel-safe.
pub(crate) enum FrameReader {
    WebSocket(SplitStream<Ws>),
    Quic { recv: quinn::RecvStream, buf: FrameBuffer },
}

/// Outbound half of a connection.
pub(crate) enum FrameWriter {
    WebSocket(SplitSink<Ws, Message>),
    Quic { send: quinn::SendStream, conn: quinn::Connection },
}

impl FrameReader {
    /// The next frame; `Ok(None)` when the peer closed cleanly.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ReadError> {
        match self {
            Self::WebSocket(stream) => loop {
                if let Some(read) = ws_message(stream.next().await) {
                    return read;
                }
            },
            Self::Quic { recv, buf } => loop {
                match buf.decode() {
                    Ok(Some(frame)) => return Ok(Some(frame)),
                    Ok(None) => {}
                    Err(FramingError::TooLarge { .. }) => return Err(ReadError::TooLarge),
                    Err(FramingError::BadLength) => return Err(ReadError::BadLength),
                }
                match recv.read_buf(buf.read_buf()).await {
                    Ok(0) if buf.is_empty() => return Ok(None),
                    Ok(0) => {
                        return Err(ReadError::Transport("stream ended inside a frame".into()));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return match e.downcast::<quinn::ReadError>() {
                            Ok(quinn::ReadError::ConnectionLost(_) | quinn::ReadError::Reset(_)) => Ok(None),
                            Ok(other) => Err(ReadError::Transport(other.to_string())),
                            Err(e) => Err(ReadError::Transport(e.to_string())),
                        };
                    }
                }
            },
        }
    }
}

/// What one item of a WebSocket stream means for the connection loop (§2.1): `None` to read on
/// (pings, answered by tungstenite, and pongs), otherwise what [`FrameReader::next`] returns.
pub(crate) fn ws_message(
    item: Option<Result<Message, tungstenite::Error>>,
) -> Option<Result<Option<Bytes>, ReadError>> {
    Some(match item {
        None | Some(Ok(Message::Close(_))) => Ok(None),
        Some(Ok(Message::Binary(b))) => Ok(Some(b)),
        Some(Ok(Message::Text(_))) => Err(ReadError::Text),
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => return None,
        Some(Err(tungstenite::Error::Capacity(CapacityError::MessageTooLong { .. }))) => Err(ReadError::TooLarge),
        Some(Err(tungstenite::Error::Utf8(_))) => Err(ReadError::InvalidUtf8),
        Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => Ok(None),
        Some(Err(e)) => Err(ReadError::Transport(e.to_string())),
    })
}

/// Bytes of encoded WebSocket frames gathered before they are written to the socket. The
/// writer task flushes at the end of every batch, so this bounds one `write` call, not latency:
/// with 0, tungstenite wrote (one syscall) per frame, and fan-out paid a syscall per delivery.
pub(crate) const WS_WRITE_BUFFER: usize = 32 * 1024;

/// The WebSocket settings of every connection (§2.1, §8): messages and frames up to
/// `max_frame_bytes`, refused on the frame header alone; frames gathered up to
/// [`WS_WRITE_BUFFER`] bytes per socket write.
pub(crate) fn ws_config(limits: &crate::config::Limits) -> WebSocketConfig {
    let max = limits.max_frame_bytes as usize;
    WebSocketConfig::default()
        .read_buffer_size(limits.ws_read_buffer_bytes as usize)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_write_buffer_size(max + 64 * 1024 + WS_WRITE_BUFFER)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

impl FrameWriter {
    /// Writes encoded frames in order and flushes them: over WebSocket, gathered into socket
    /// writes of up to [`WS_WRITE_BUFFER`] bytes; over QUIC, one `write_all_chunks` of every
    /// frame behind its length prefix (§2.2). The `Bytes` are shared, never copied here.
    /// `frames` is left empty (its capacity kept for the next batch).
    pub async fn write_batch(&mut self, frames: &mut Vec<Bytes>) -> Result<(), String> {
        match self {
            Self::WebSocket(sink) => {
                for frame in frames.drain(..) {
                    sink.feed(Message::Binary(frame)).await.map_err(|e| e.to_string())?;
                }
                sink.flush().await.map_err(|e| e.to_string())
            }
            Self::Quic { send, .. } => {
                let mut chunks = quic_chunks(frames);
                send.write_all_chunks(&mut chunks).await.map_err(|e| e.to_string())
            }
        }
    }

    /// Closes with `code`. On QUIC, waits (bounded) for the peer to receive what was sent, since
    /// closing a QUIC connection discards unacknowledged stream data.
    pub async fn close(&mut self, code: CloseCode, reason: &str) {
        let wait = std::time::Duration::from_secs(2);
        match self {
            Self::WebSocket(sink) => {
                let frame = CloseFrame { code: (code as u16).into(), reason: reason.to_string().into() };
                let _ = tokio::time::timeout(wait, async {
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    let _ = sink.close().await;
                })
                .await;
            }
            Self::Quic { send, conn } => {
                let _ = send.finish();
                let _ = tokio::time::timeout(wait, send.stopped()).await;
                conn.close((code as u32).into(), reason.as_bytes());
            }
        }
    }

    /// Closes immediately, dropping anything unsent (slow consumers).
    pub async fn abort(&mut self, code: CloseCode, reason: &str) {
        match self {
            Self::WebSocket(sink) => {
                let frame = CloseFrame { code: (code as u16).into(), reason: reason.to_string().into() };
                let _ =
                    tokio::time::timeout(std::time::Duration::from_millis(200), sink.send(Message::Close(Some(frame))))
                        .await;
            }
            Self::Quic { conn, .. } => conn.close((code as u32).into(), reason.as_bytes()),
        }
    }
}

/// Each frame behind its §2.2 length prefix, in order, as chunks for one QUIC write.
pub(crate) fn quic_chunks(frames: &mut Vec<Bytes>) -> Vec<Bytes> {
    let mut chunks = Vec::with_capacity(frames.len() * 2);
    for frame in frames.drain(..) {
        chunks.push(length_prefix(frame.len()));
        chunks.push(frame);
    }
    chunks
}

/// After a WebSocket close, reads and discards what the client still sends until it closes too
/// (bounded). Dropping a TCP socket with unread bytes makes the kernel send RST, which can destroy
/// the close frame and error frame before the client reads them.
pub(crate) async fn linger(reader: FrameReader, writer: FrameWriter) {
    let (FrameReader::WebSocket(stream), FrameWriter::WebSocket(sink)) = (reader, writer) else {
        return;
    };
    let Ok(mut ws) = stream.reunite(sink) else {
        return;
    };
    let io = ws.get_mut();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let _ = tokio::io::AsyncWriteExt::shutdown(io).await;
        let mut scratch = [0u8; 4096];
        while let Ok(n) = io.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use confab_protocol::framing::FrameBuffer;
    use futures_util::SinkExt;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::{WS_WRITE_BUFFER, quic_chunks, ws_config};

    /// A socket that counts the writes it is given and keeps what they carried.
    #[derive(Default)]
    struct CountingIo {
        writes: Arc<AtomicUsize>,
        bytes: Vec<u8>,
    }

    impl AsyncRead for CountingIo {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for CountingIo {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.bytes.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_websocket_batch_goes_out_in_one_write_on_flush() {
        let io = CountingIo::default();
        let writes = io.writes.clone();
        let limits = crate::config::Limits::default();
        let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config(&limits))).await;
        // 40 delivery-sized frames: well under the write buffer, so nothing is written before
        // the flush, and the flush writes them together.
        for i in 0..40u8 {
            ws.feed(Message::Binary(Bytes::from(vec![i; 200]))).await.unwrap();
        }
        assert_eq!(writes.load(Ordering::Relaxed), 0, "frames were written before the flush");
        ws.flush().await.unwrap();
        assert_eq!(writes.load(Ordering::Relaxed), 1, "one flush of 40 frames took several writes");
        // Past the buffer, writes go out in buffer-sized pieces, not one per frame.
        let before = writes.load(Ordering::Relaxed);
        for _ in 0..200 {
            ws.feed(Message::Binary(Bytes::from(vec![7u8; 1000]))).await.unwrap();
        }
        ws.flush().await.unwrap();
        let taken = writes.load(Ordering::Relaxed) - before;
        let most = 200 * 1004 / WS_WRITE_BUFFER + 2;
        assert!(taken <= most, "200 frames of 1 KB took {taken} writes (at most {most} expected)");
        let bytes = ws.get_ref().bytes.len();
        assert_eq!(bytes, 40 * 204 + 200 * 1004, "bytes on the socket (4-byte headers, unmasked)");
    }

    #[test]
    fn quic_chunks_carry_every_frame_in_order_behind_its_prefix() {
        let frames: Vec<Bytes> = (0..5u8).map(|i| Bytes::from(vec![i; 100 * (i as usize + 1)])).collect();
        let chunks = quic_chunks(&mut frames.clone());
        assert_eq!(chunks.len(), 10);
        // Each frame is the same allocation that went in: shared, not copied.
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(chunks[2 * i + 1].as_ptr(), f.as_ptr());
        }
        let mut buf = FrameBuffer::new(1 << 20);
        for c in &chunks {
            buf.read_buf().extend_from_slice(c);
        }
        for f in &frames {
            assert_eq!(buf.decode().unwrap().as_ref(), Some(f));
        }
        assert_eq!(buf.decode().unwrap(), None);
    }
}
