//! The async client library: connect over WebSocket or QUIC, complete the handshake, correlate
//! responses with requests by id, keep the connection alive, and expose server events as a stream.
//!
//! Shape: [`Client`] is a cheap-clone handle. Behind it, a writer task owns the sending half
//! (bounded queue, coalesced flushes, heartbeat Pings) and a reader task owns the receiving half
//! (resolves pending requests, forwards events). Reading never waits on writing.

mod accounts;
pub mod media;
mod push;
mod search;
mod tls;
pub mod transport;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot, watch};

pub use tls::Trust;
pub use transport::{CloseInfo, Inbound, RawConnection, RawReceiver, RawSender, ServerUrl, TransportOptions};

use crate::frames::{client_frame, now_ms};
use crate::v1::{self, Event, Welcome, client_frame::Request, response, server_frame};

/// Everything that can go wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered the request with an error.
    #[error("server error: {0}")]
    Server(v1::Error),
    /// The connection is closed.
    #[error("{0}")]
    Closed(CloseInfo),
    #[error("transport: {0}")]
    Transport(String),
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
    #[error("request timed out")]
    Timeout,
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// The server's error code, when the server answered with an error.
    pub fn code(&self) -> Option<v1::ErrorCode> {
        match self {
            Self::Server(e) => Some(e.code()),
            _ => None,
        }
    }

    /// The server's finer cause (§5.1), `None` when there is none or this is not a server error.
    pub fn reason(&self) -> Option<v1::ErrorReason> {
        match self {
            Self::Server(e) if e.reason() != v1::ErrorReason::Unspecified => Some(e.reason()),
            _ => None,
        }
    }

    /// The request field the server's error names (INVALID_ARGUMENT, TOO_LARGE), if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Server(e) if !e.field.is_empty() => Some(&e.field),
            _ => None,
        }
    }
}

/// Options for [`Client::connect`].
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub transport: TransportOptions,
    pub client_name: String,
    pub client_version: String,
    pub capabilities: Vec<String>,
    /// Sent in Hello to authenticate the connection during the handshake.
    pub access_token: Option<String>,
    /// Sent in Hello to join as a meeting room's guest (docs/protocol.md §25.3): an invite token
    /// or a resume token; excludes `access_token`.
    pub room_token: Option<String>,
    /// The guest's display name, with `room_token`.
    pub display_name: String,
    /// How long a request may wait for its response.
    pub request_timeout: Duration,
    /// Events buffered for the application before the reader waits for it.
    pub event_buffer: usize,
    /// Frames queued for sending before callers wait.
    pub send_queue: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            transport: TransportOptions::default(),
            client_name: "confab-protocol".into(),
            client_version: env!("CARGO_PKG_VERSION").into(),
            capabilities: Vec::new(),
            access_token: None,
            room_token: None,
            display_name: String::new(),
            request_timeout: Duration::from_secs(30),
            event_buffer: 1024,
            send_queue: 256,
        }
    }
}

/// Builds the Hello for these options, speaking this crate's protocol version.
pub fn hello(opts: &ConnectOptions) -> v1::Hello {
    v1::Hello {
        protocol_major: crate::PROTOCOL_MAJOR,
        protocol_minor: crate::PROTOCOL_MINOR,
        client_name: opts.client_name.clone(),
        client_version: opts.client_version.clone(),
        capabilities: opts.capabilities.clone(),
        access_token: opts.access_token.clone().unwrap_or_default(),
        room_token: opts.room_token.clone().unwrap_or_default(),
        display_name: opts.display_name.clone(),
    }
}

type Pending = Mutex<HashMap<u64, oneshot::Sender<response::Result>>>;

#[derive(Debug)]
struct Shared {
    next_id: AtomicU64,
    pending: Pending,
    closed: watch::Sender<Option<CloseInfo>>,
    request_timeout: Duration,
    /// QUIC download streams waiting for their DownloadMedia response's reader, by request id
    /// (docs/protocol.md §22.9).
    downloads: Mutex<HashMap<u64, oneshot::Sender<media::IncomingDownload>>>,
}

enum Outgoing {
    Frame(Bytes),
    Close,
}

/// A connected, handshaken Confab client. Clone it freely; the connection closes when the last
/// clone is dropped or [`close`](Client::close) is called.
#[derive(Clone, Debug)]
pub struct Client {
    tx: mpsc::Sender<Outgoing>,
    shared: Arc<Shared>,
    welcome: Arc<Welcome>,
    /// The QUIC connection (transfer streams); `None` over WebSocket.
    quic: Option<quinn::Connection>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Frame(b) => write!(f, "Frame({} bytes)", b.len()),
            Self::Close => f.write_str("Close"),
        }
    }
}

/// The stream of server events of one connection. Drain it: when its buffer is full the reader
/// waits, and responses wait behind it. Drop it to discard events.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
    closed: watch::Receiver<Option<CloseInfo>>,
}

impl Events {
    /// The next event; `None` once the connection is closed and every event was taken.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is already buffered.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// How the connection ended, once it has.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.closed.borrow().clone()
    }
}

impl Client {
    /// Connects to `url`, sends Hello and waits for Welcome.
    pub async fn connect(url: &str, opts: ConnectOptions) -> Result<(Client, Events), ClientError> {
        let url = ServerUrl::parse(url)?;
        let mut raw = RawConnection::connect(&url, &opts.transport).await?;
        raw.send_frame(&client_frame(1, Request::Hello(hello(&opts)))).await?;
        let welcome = tokio::time::timeout(opts.request_timeout, async {
            loop {
                let frame = raw.recv_frame().await?;
                match frame.frame {
                    Some(server_frame::Frame::Response(r)) if r.request_id == 1 => {
                        return match r.result {
                            Some(response::Result::Welcome(w)) => Ok(w),
                            Some(response::Result::Error(e)) => Err(ClientError::Server(e)),
                            other => Err(ClientError::Protocol(format!("expected Welcome, got {other:?}"))),
                        };
                    }
                    // Anything else before Welcome is ignored.
                    _ => continue,
                }
            }
        })
        .await
        .map_err(|_| ClientError::Timeout)??;
        Ok(Self::start(raw, welcome, &opts))
    }

    fn start(raw: RawConnection, welcome: Welcome, opts: &ConnectOptions) -> (Client, Events) {
        let (closed_tx, closed_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(2),
            pending: Mutex::new(HashMap::new()),
            closed: closed_tx,
            request_timeout: opts.request_timeout,
            downloads: Mutex::new(HashMap::new()),
        });
        let quic = match &raw.sender {
            RawSender::Quic { conn, .. } => Some(conn.clone()),
            RawSender::WebSocket(_) => None,
        };
        if let Some(conn) = &quic {
            tokio::spawn(media::accept_downloads(conn.clone(), shared.clone()));
        }
        let limits = welcome.limits.unwrap_or_default();
        // Ping at the server's heartbeat interval; give up on a server silent for its idle timeout.
        let heartbeat = Duration::from_millis(u64::from(limits.heartbeat_interval_ms.max(50)));
        let idle = Duration::from_millis(u64::from(limits.idle_timeout_ms.max(500)));
        let (tx, rx) = mpsc::channel(opts.send_queue.max(1));
        let (ev_tx, ev_rx) = mpsc::channel(opts.event_buffer.max(1));
        tokio::spawn(writer(raw.sender, rx, shared.clone(), heartbeat));
        tokio::spawn(reader(raw.receiver, ev_tx, shared.clone(), idle));
        let client = Client { tx, shared, welcome: Arc::new(welcome), quic };
        (client, Events { rx: ev_rx, closed: closed_rx })
    }

    /// The QUIC connection under this client; `None` over WebSocket.
    pub fn quic(&self) -> Option<&quinn::Connection> {
        self.quic.as_ref()
    }

    /// The server's Welcome.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Sends a request and waits for its result. A server error becomes [`ClientError::Server`].
    pub async fn request(&self, request: Request) -> Result<response::Result, ClientError> {
        let id = self.next_request_id();
        self.request_as(id, request).await
    }

    /// A request id for [`request_as`](Self::request_as): for answers that also arrive elsewhere
    /// under it (a QUIC download stream, §22.9).
    pub fn next_request_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// [`request`](Self::request) with an id from [`next_request_id`](Self::next_request_id).
    pub async fn request_as(&self, id: u64, request: Request) -> Result<response::Result, ClientError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        lock(&self.shared.pending).insert(id, reply_tx);
        let bytes = Bytes::from(client_frame(id, request).encode_to_vec());
        if self.tx.send(Outgoing::Frame(bytes)).await.is_err() {
            lock(&self.shared.pending).remove(&id);
            return Err(self.closed_error());
        }
        match tokio::time::timeout(self.shared.request_timeout, reply_rx).await {
            Ok(Ok(response::Result::Error(e))) => Err(ClientError::Server(e)),
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => {
                lock(&self.shared.pending).remove(&id);
                Err(ClientError::Timeout)
            }
        }
    }

    /// Round trip: Ping, wait for Pong.
    pub async fn ping(&self) -> Result<v1::Pong, ClientError> {
        match self.request(Request::Ping(v1::Ping { client_time_ms: now_ms() })).await? {
            response::Result::Pong(p) => Ok(p),
            other => Err(unexpected("Pong", &other)),
        }
    }

    /// Closes the connection normally; pending requests fail with `Closed`.
    pub async fn close(&self) {
        let _ = self.tx.send(Outgoing::Close).await;
        let mut rx = self.shared.closed.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(Option::is_some)).await;
    }

    /// How the connection ended, once it has.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.shared.closed.borrow().clone()
    }

    fn closed_error(&self) -> ClientError {
        ClientError::Closed(self.close_info().unwrap_or_default())
    }
}

/// The error for a response of the wrong kind.
pub fn unexpected(expected: &str, got: &response::Result) -> ClientError {
    ClientError::Protocol(format!("expected {expected}, got {got:?}"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn writer(mut sender: RawSender, mut rx: mpsc::Receiver<Outgoing>, shared: Arc<Shared>, heartbeat: Duration) {
    let mut tick = tokio::time::interval(heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut wrote = false;
    loop {
        tokio::select! {
            item = rx.recv() => {
                let Some(Outgoing::Frame(bytes)) = item else { break };
                if sender.feed(bytes).await.is_err() { break; }
                // Coalesce whatever else is queued into one flush.
                let mut close = false;
                while let Ok(item) = rx.try_recv() {
                    match item {
                        Outgoing::Frame(b) => if sender.feed(b).await.is_err() { close = true; break; },
                        Outgoing::Close => { close = true; break; }
                    }
                }
                if sender.flush().await.is_err() || close { break; }
                wrote = true;
            }
            _ = tick.tick() => {
                if !wrote {
                    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                    let ping = client_frame(id, Request::Ping(v1::Ping { client_time_ms: now_ms() }));
                    if sender.send(Bytes::from(ping.encode_to_vec())).await.is_err() { break; }
                }
                wrote = false;
            }
            _ = closed(&shared) => break,
        }
    }
    let _ = sender.close().await;
}

async fn closed(shared: &Shared) {
    let mut rx = shared.closed.subscribe();
    let _ = rx.wait_for(Option::is_some).await;
}

async fn reader(mut receiver: RawReceiver, events: mpsc::Sender<Event>, shared: Arc<Shared>, idle: Duration) {
    let info = loop {
        let next = match tokio::time::timeout(idle, receiver.recv()).await {
            Ok(Ok(next)) => next,
            Ok(Err(e)) => {
                break CloseInfo { code: None, reason: e.to_string() };
            }
            Err(_) => {
                break CloseInfo { code: None, reason: "server silent past the idle timeout".into() };
            }
        };
        let bytes = match next {
            Inbound::Frame(b) => b,
            Inbound::Closed(info) => break info,
        };
        let frame = match v1::ServerFrame::decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                break CloseInfo { code: None, reason: format!("undecodable frame from server: {e}") };
            }
        };
        match frame.frame {
            Some(server_frame::Frame::Response(r)) => {
                let waiter = lock(&shared.pending).remove(&r.request_id);
                if let (Some(w), Some(result)) = (waiter, r.result) {
                    let _ = w.send(result);
                }
            }
            Some(server_frame::Frame::Event(e)) if !events.is_closed() => {
                let _ = events.send(e).await;
            }
            Some(server_frame::Frame::Event(_)) => {}
            None => {}
        }
    };
    tracing::debug!(%info, "connection ended");
    lock(&shared.pending).clear();
    shared.closed.send_replace(Some(info));
}
