//! Raw connections: one Confab frame stream over WebSocket or QUIC, with no request tracking.
//! The [`Client`](super::Client) is built on this; the conformance suite also uses it directly
//! to send what a well-behaved client never would (text messages, bad lengths, garbage).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::ClientError;
use super::tls::{self, Trust};
use crate::framing::{FrameBuffer, length_prefix};
use crate::v1::{ClientFrame, ServerFrame};
use crate::{QUIC_ALPN, WS_SUBPROTOCOL};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where to connect, parsed from `ws://`, `wss://` or `quic://` URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerUrl {
    /// A full WebSocket URL, e.g. `ws://127.0.0.1:7600/v1/ws`.
    WebSocket(String),
    /// `quic://host:port`.
    Quic { host: String, port: u16 },
}

impl ServerUrl {
    pub fn parse(s: &str) -> Result<Self, ClientError> {
        let url = url::Url::parse(s).map_err(|e| ClientError::Config(format!("bad URL {s:?}: {e}")))?;
        match url.scheme() {
            "ws" | "wss" => Ok(Self::WebSocket(s.to_string())),
            "quic" => {
                let host = url
                    .host_str()
                    .ok_or_else(|| ClientError::Config(format!("{s:?} has no host")))?
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let port = url.port().unwrap_or(7601);
                Ok(Self::Quic { host, port })
            }
            other => Err(ClientError::Config(format!("unsupported scheme {other:?}: use ws://, wss:// or quic://"))),
        }
    }

    /// Short transport name: "websocket" or "quic".
    pub fn transport(&self) -> &'static str {
        match self {
            Self::WebSocket(_) => "websocket",
            Self::Quic { .. } => "quic",
        }
    }
}

/// How a connection ended, as reported by the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloseInfo {
    /// WebSocket close code or QUIC application error code; `None` when the peer vanished.
    pub code: Option<u32>,
    pub reason: String,
}

impl std::fmt::Display for CloseInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(c) => {
                let name = i32::try_from(c)
                    .ok()
                    .and_then(|c| crate::CloseCode::try_from(c).ok())
                    .map(|c| c.as_str_name())
                    .unwrap_or("unknown");
                write!(f, "closed with code {c} ({name})")?;
            }
            None => write!(f, "connection lost")?,
        }
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}

/// What arrives on a raw connection.
#[derive(Debug)]
pub enum Inbound {
    /// One encoded ServerFrame.
    Frame(Bytes),
    /// The connection is closed; nothing more will arrive.
    Closed(CloseInfo),
}

/// Connection parameters shared by raw connections and the client.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    pub trust: Trust,
    /// Largest frame accepted from the server.
    pub max_frame_bytes: u32,
    pub connect_timeout: std::time::Duration,
    /// Source address to connect from (port chosen by the OS); `None` lets the OS pick. Loopback
    /// has all of 127.0.0.0/8, so tests and benchmarks use it to appear as several clients.
    pub local_ip: Option<std::net::IpAddr>,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            trust: Trust::default(),
            max_frame_bytes: 16 * 1024 * 1024,
            connect_timeout: std::time::Duration::from_secs(10),
            local_ip: None,
        }
    }
}

/// A connected frame stream, not yet split.
#[derive(Debug)]
pub struct RawConnection {
    pub sender: RawSender,
    pub receiver: RawReceiver,
}

/// The sending half of a raw connection.
#[derive(Debug)]
pub enum RawSender {
    WebSocket(SplitSink<Ws, Message>),
    Quic { send: quinn::SendStream, conn: quinn::Connection, _endpoint: quinn::Endpoint },
}

/// The receiving half of a raw connection. `recv` is cancel-safe.
#[derive(Debug)]
pub enum RawReceiver {
    WebSocket(SplitStream<Ws>),
    Quic { recv: quinn::RecvStream, conn: quinn::Connection, buf: FrameBuffer },
}

impl RawConnection {
    /// Connects the transport named by `url`. No Confab frame is exchanged yet.
    pub async fn connect(url: &ServerUrl, opts: &TransportOptions) -> Result<Self, ClientError> {
        tokio::time::timeout(opts.connect_timeout, Self::connect_inner(url, opts))
            .await
            .map_err(|_| ClientError::Transport("connect timed out".into()))?
    }

    async fn connect_inner(url: &ServerUrl, opts: &TransportOptions) -> Result<Self, ClientError> {
        match url {
            ServerUrl::WebSocket(u) => {
                let mut request =
                    u.as_str().into_client_request().map_err(|e| ClientError::Config(format!("bad URL: {e}")))?;
                request
                    .headers_mut()
                    .insert("sec-websocket-protocol", tungstenite::http::HeaderValue::from_static(WS_SUBPROTOCOL));
                let limit = opts.max_frame_bytes as usize;
                let config = WebSocketConfig::default()
                    .read_buffer_size(16 * 1024)
                    .max_message_size(Some(limit))
                    .max_frame_size(Some(limit));
                let connector = if u.starts_with("wss:") {
                    Some(Connector::Rustls(Arc::new(tls::client_config(&opts.trust, &[])?)))
                } else {
                    None
                };
                let (ws, response) = match opts.local_ip {
                    None => tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector)
                        .await
                        .map_err(|e| ClientError::Transport(format!("websocket connect: {e}")))?,
                    Some(ip) => {
                        let stream = tcp_from(ip, request.uri()).await?;
                        tokio_tungstenite::client_async_tls_with_config(request, stream, Some(config), connector)
                            .await
                            .map_err(|e| ClientError::Transport(format!("websocket connect: {e}")))?
                    }
                };
                let proto = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
                if proto != Some(WS_SUBPROTOCOL) {
                    return Err(ClientError::Transport(format!(
                        "server did not accept subprotocol {WS_SUBPROTOCOL} (got {proto:?})"
                    )));
                }
                let (sink, stream) = ws.split();
                Ok(Self { sender: RawSender::WebSocket(sink), receiver: RawReceiver::WebSocket(stream) })
            }
            ServerUrl::Quic { host, port } => {
                let addr = resolve(host, *port).await?;
                let bind = match opts.local_ip {
                    Some(ip) => SocketAddr::new(ip, 0),
                    None if addr.is_ipv6() => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
                    None => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
                };
                let mut endpoint =
                    quinn::Endpoint::client(bind).map_err(|e| ClientError::Transport(format!("quic socket: {e}")))?;
                endpoint.set_default_client_config(quic_client_config(&opts.trust)?);
                let conn = endpoint
                    .connect(addr, host)
                    .map_err(|e| ClientError::Transport(format!("quic connect: {e}")))?
                    .await
                    .map_err(|e| ClientError::Transport(format!("quic connect: {e}")))?;
                let (send, recv) =
                    conn.open_bi().await.map_err(|e| ClientError::Transport(format!("quic stream: {e}")))?;
                Ok(Self {
                    sender: RawSender::Quic { send, conn: conn.clone(), _endpoint: endpoint },
                    receiver: RawReceiver::Quic { recv, conn, buf: FrameBuffer::new(opts.max_frame_bytes) },
                })
            }
        }
    }

    /// Sends one frame.
    pub async fn send_frame(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.sender.send(Bytes::from(frame.encode_to_vec())).await
    }

    /// Receives the next frame, decoded; `Err(Closed)` once the connection is closed.
    pub async fn recv_frame(&mut self) -> Result<ServerFrame, ClientError> {
        self.receiver.recv_frame().await
    }
}

impl RawSender {
    /// Sends one encoded frame: a binary WebSocket message, or a length-prefixed QUIC frame.
    pub async fn send(&mut self, payload: Bytes) -> Result<(), ClientError> {
        self.feed(payload).await?;
        self.flush().await
    }

    /// Queues one frame without flushing; call [`flush`](Self::flush) after a batch.
    pub async fn feed(&mut self, payload: Bytes) -> Result<(), ClientError> {
        match self {
            Self::WebSocket(sink) => sink.feed(Message::Binary(payload)).await.map_err(ws_err),
            Self::Quic { send, .. } => {
                let mut chunks = [length_prefix(payload.len()), payload];
                send.write_all_chunks(&mut chunks).await.map_err(|e| ClientError::Transport(e.to_string()))
            }
        }
    }

    pub async fn flush(&mut self) -> Result<(), ClientError> {
        match self {
            Self::WebSocket(sink) => sink.flush().await.map_err(ws_err),
            Self::Quic { .. } => Ok(()),
        }
    }

    /// Sends a WebSocket text message (a protocol violation, for tests).
    pub async fn send_text(&mut self, text: &str) -> Result<(), ClientError> {
        match self {
            Self::WebSocket(sink) => sink.send(Message::text(text)).await.map_err(ws_err),
            Self::Quic { .. } => Err(ClientError::Config("QUIC has no text messages".into())),
        }
    }

    /// Writes bytes straight onto the QUIC stream with no length prefix (for tests that send
    /// malformed prefixes). On WebSocket, sends them as one binary message.
    pub async fn send_unframed(&mut self, bytes: Bytes) -> Result<(), ClientError> {
        match self {
            Self::WebSocket(sink) => sink.send(Message::Binary(bytes)).await.map_err(ws_err),
            Self::Quic { send, .. } => send.write_all(&bytes).await.map_err(|e| ClientError::Transport(e.to_string())),
        }
    }

    /// Closes the connection normally.
    pub async fn close(&mut self) -> Result<(), ClientError> {
        match self {
            Self::WebSocket(sink) => {
                let frame = CloseFrame { code: WsCloseCode::Normal, reason: "".into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                sink.close().await.or_else(ignore_closed)
            }
            Self::Quic { send, conn, .. } => {
                let _ = send.finish();
                conn.close(1000u32.into(), b"");
                Ok(())
            }
        }
    }
}

impl RawReceiver {
    /// Receives the next frame or the close. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Inbound, ClientError> {
        match self {
            Self::WebSocket(stream) => loop {
                match stream.next().await {
                    None => return Ok(Inbound::Closed(CloseInfo::default())),
                    Some(Ok(Message::Binary(b))) => return Ok(Inbound::Frame(b)),
                    Some(Ok(Message::Close(frame))) => {
                        let info = frame
                            .map(|f| CloseInfo { code: Some(u16::from(f.code).into()), reason: f.reason.to_string() })
                            .unwrap_or_default();
                        return Ok(Inbound::Closed(info));
                    }
                    Some(Ok(Message::Text(_))) => {
                        return Err(ClientError::Protocol("server sent a text message".into()));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => {
                        return Ok(Inbound::Closed(CloseInfo::default()));
                    }
                    Some(Err(tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ))) => return Ok(Inbound::Closed(CloseInfo::default())),
                    Some(Err(e)) => return Err(ws_err(e)),
                }
            },
            Self::Quic { recv, conn, buf } => loop {
                if let Some(frame) = buf.decode().map_err(|e| ClientError::Protocol(e.to_string()))? {
                    return Ok(Inbound::Frame(frame));
                }
                match recv.read_buf(buf.read_buf()).await {
                    Ok(0) => {
                        // The server finished its stream; its close code follows.
                        let err = tokio::time::timeout(std::time::Duration::from_secs(5), conn.closed()).await.ok();
                        return Ok(Inbound::Closed(err.map(quic_close_info).unwrap_or_default()));
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        let err = match e.downcast::<quinn::ReadError>() {
                            Ok(quinn::ReadError::ConnectionLost(c)) => c,
                            _ => conn.close_reason().unwrap_or(quinn::ConnectionError::LocallyClosed),
                        };
                        return Ok(Inbound::Closed(quic_close_info(err)));
                    }
                }
            },
        }
    }

    /// Receives and decodes the next frame; a close becomes [`ClientError::Closed`].
    pub async fn recv_frame(&mut self) -> Result<ServerFrame, ClientError> {
        match self.recv().await? {
            Inbound::Frame(b) => {
                ServerFrame::decode(b).map_err(|e| ClientError::Protocol(format!("undecodable frame: {e}")))
            }
            Inbound::Closed(info) => Err(ClientError::Closed(info)),
        }
    }
}

/// The QUIC client configuration for `trust`, built once per trust per process and then shared:
/// rustls keeps its TLS 1.3 session tickets in the configuration, so every later connection to a
/// server this process has met resumes its session (RFC 8446 §2.2: no certificate chain sent or
/// verified, no signature) instead of a full handshake, and the platform's roots are read once.
fn quic_client_config(trust: &Trust) -> Result<quinn::ClientConfig, ClientError> {
    static CONFIGS: std::sync::Mutex<Vec<(Trust, quinn::ClientConfig)>> = std::sync::Mutex::new(Vec::new());
    let mut configs = CONFIGS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, c)) = configs.iter().find(|(t, _)| t == trust) {
        return Ok(c.clone());
    }
    let tls = tls::client_config(trust, &[QUIC_ALPN])?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| ClientError::Config(format!("quic tls: {e}")))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(0u8.into());
    // The server opens one unidirectional stream per streamed download (§22.9).
    transport.max_concurrent_uni_streams(16u8.into());
    config.transport_config(Arc::new(transport));
    // A handful of trusts per process at most (a pinned certificate per server).
    if configs.len() >= 16 {
        configs.remove(0);
    }
    configs.push((trust.clone(), config.clone()));
    Ok(config)
}

fn quic_close_info(err: quinn::ConnectionError) -> CloseInfo {
    match err {
        quinn::ConnectionError::ApplicationClosed(c) => CloseInfo {
            code: u32::try_from(c.error_code.into_inner()).ok(),
            reason: String::from_utf8_lossy(&c.reason).into_owned(),
        },
        other => CloseInfo { code: None, reason: other.to_string() },
    }
}

fn ws_err(e: tungstenite::Error) -> ClientError {
    ClientError::Transport(format!("websocket: {e}"))
}

fn ignore_closed(e: tungstenite::Error) -> Result<(), ClientError> {
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => Ok(()),
        e => Err(ws_err(e)),
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, ClientError> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| ClientError::Transport(format!("resolving {host}: {e}")))?
        .next()
        .ok_or_else(|| ClientError::Transport(format!("{host} has no address")))
}

/// A TCP connection to the host and port of `uri` (default port 80, or 443 for wss) from source
/// address `ip`, with Nagle off.
async fn tcp_from(ip: std::net::IpAddr, uri: &tungstenite::http::Uri) -> Result<TcpStream, ClientError> {
    let host = uri.host().ok_or_else(|| ClientError::Config("URL has no host".into()))?;
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("wss") { 443 } else { 80 });
    let addr = resolve(host.trim_start_matches('[').trim_end_matches(']'), port).await?;
    let socket = if addr.is_ipv6() { tokio::net::TcpSocket::new_v6() } else { tokio::net::TcpSocket::new_v4() }
        .map_err(|e| ClientError::Transport(format!("tcp socket: {e}")))?;
    socket.bind(SocketAddr::new(ip, 0)).map_err(|e| ClientError::Transport(format!("binding {ip}: {e}")))?;
    let stream =
        socket.connect(addr).await.map_err(|e| ClientError::Transport(format!("connecting to {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Opens a TCP connection, completes the WebSocket upgrade, then writes `bytes` raw onto the
/// socket and reports how the server reacts: the data messages it sent before closing (binary or
/// text, as bytes) and its close frame (`None` when it dropped the connection without one). For
/// tests of malformed WebSocket framing (e.g. a header declaring a huge payload that never comes,
/// or a text frame that is not UTF-8). Plain `ws://` only.
pub async fn ws_send_raw_after_upgrade(
    url: &str,
    bytes: &[u8],
) -> Result<(Vec<Bytes>, Option<CloseInfo>), ClientError> {
    let mut request = url.into_client_request().map_err(|e| ClientError::Config(e.to_string()))?;
    request.headers_mut().insert("sec-websocket-protocol", tungstenite::http::HeaderValue::from_static(WS_SUBPROTOCOL));
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.map_err(ws_err)?;
    let MaybeTlsStream::Plain(tcp) = ws.get_mut() else {
        return Err(ClientError::Config("raw writes need ws://".into()));
    };
    tcp.write_all(bytes).await.map_err(|e| ClientError::Transport(e.to_string()))?;
    tcp.flush().await.map_err(|e| ClientError::Transport(e.to_string()))?;
    let mut messages = Vec::new();
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(f))) => {
                let close = CloseInfo {
                    code: f.as_ref().map(|f| u16::from(f.code).into()),
                    reason: f.map(|f| f.reason.to_string()).unwrap_or_default(),
                };
                return Ok((messages, Some(close)));
            }
            Some(Ok(Message::Binary(b))) => messages.push(b),
            Some(Ok(Message::Text(t))) => messages.push(Bytes::from(t)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Ok((messages, None)),
        }
    }
}

/// Sends a WebSocket upgrade request for `url` (plain `ws://`) offering `subprotocol`, and
/// returns the HTTP status of the answer. For tests of the upgrade rules.
pub async fn ws_upgrade_status(url: &str, subprotocol: Option<&str>) -> Result<u16, ClientError> {
    let u = url::Url::parse(url).map_err(|e| ClientError::Config(e.to_string()))?;
    let host = u.host_str().ok_or_else(|| ClientError::Config("no host".into()))?.to_string();
    let port = u.port().unwrap_or(80);
    let mut s = TcpStream::connect((host.as_str(), port)).await.map_err(|e| ClientError::Transport(e.to_string()))?;
    let proto = subprotocol.map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n")).unwrap_or_default();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{proto}\r\n",
        u.path()
    );
    s.write_all(req.as_bytes()).await.map_err(|e| ClientError::Transport(e.to_string()))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") && head.len() < 1024 {
        let n = s.read(&mut byte).await.map_err(|e| ClientError::Transport(e.to_string()))?;
        if n == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| ClientError::Protocol("no HTTP status line".into()))
}
