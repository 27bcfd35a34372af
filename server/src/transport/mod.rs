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

/// The WebSocket settings of every connection (§2.1, §8): messages and frames up to
/// `max_frame_bytes`, refused on the frame header alone; no write buffering beyond one frame.
pub(crate) fn ws_config(limits: &crate::config::Limits) -> WebSocketConfig {
    let max = limits.max_frame_bytes as usize;
    WebSocketConfig::default()
        .read_buffer_size(limits.ws_read_buffer_bytes as usize)
        .write_buffer_size(0)
        .max_write_buffer_size(max + 64 * 1024)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

impl FrameWriter {
    /// Queues one encoded frame; bytes go out on [`flush`](Self::flush).
    pub async fn feed(&mut self, frame: Bytes) -> Result<(), String> {
        match self {
            Self::WebSocket(sink) => sink.feed(Message::Binary(frame)).await.map_err(|e| e.to_string()),
            Self::Quic { send, .. } => {
                let mut chunks = [length_prefix(frame.len()), frame];
                send.write_all_chunks(&mut chunks).await.map_err(|e| e.to_string())
            }
        }
    }

    pub async fn flush(&mut self) -> Result<(), String> {
        match self {
            Self::WebSocket(sink) => sink.flush().await.map_err(|e| e.to_string()),
            Self::Quic { .. } => Ok(()),
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
