//! The session layer: who is on a connection and how to reach it, below every service. A
//! [`Session`] is one connection's identity (its [`Caller`] once authenticated), its [`Outbox`]
//! and its close handle. Services receive a `&Caller` and never attach connections themselves;
//! this module imports no service.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use confab_protocol::CloseCode;
use tokio::sync::{mpsc, watch};

use crate::error::ServerError;
use crate::store::UserId;

/// Which transport a connection uses (docs/protocol.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket over TCP (§2.1).
    WebSocket,
    /// One bidirectional QUIC stream (§2.2).
    Quic,
}

impl Transport {
    /// The metric and log label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Quic => "quic",
        }
    }
}

/// The authenticated identity behind a request (§11.5): the user, the session (one device) and
/// when the access token that proved it expires (milliseconds since the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: UserId,
    pub session_id: String,
    pub expires_at_ms: u64,
}

/// A meeting room's guest (docs/protocol.md §25.3): a connection that said Hello with a room
/// token. It has no account and may only make requests about its room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guest {
    /// 16 lower-case hex digits; the same across the guest's reconnections (resume token).
    pub guest_id: String,
    pub room: crate::store::RoomId,
    pub role: crate::store::RoomRole,
    pub name: String,
    /// The invite the guest came through.
    pub invite_id: String,
}

impl Guest {
    /// The guest's device id: where the hub and the SFU address its frames.
    pub fn session_id(&self) -> String {
        format!("guest-{}", self.guest_id)
    }
}

/// Why and how a connection ends: a close code (§6) and a short reason for the peer.
#[derive(Clone, Copy, Debug)]
pub struct Close {
    pub code: CloseCode,
    pub reason: &'static str,
}

impl Close {
    pub const fn new(code: CloseCode, reason: &'static str) -> Self {
        Self { code, reason }
    }
}

/// What a connection's writer task receives.
#[derive(Debug)]
pub enum Outbound {
    /// An encoded frame, shared (fan-out encodes once).
    Frame(Bytes),
    /// Close after what is queued before it.
    Close(Close),
}

/// The sending side of a connection: a bounded queue to its writer task, an abort signal that
/// bypasses the queue, and a kick asking the connection loop to close after what is queued.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Outbound>,
    abort: Arc<watch::Sender<Option<Close>>>,
    kick: Arc<watch::Sender<Option<Close>>>,
    /// Bytes queued and not yet written to the transport, and the signal the writer gives after
    /// each write: bulk answers (media downloads) wait for room instead of piling up.
    pending: Arc<Pending>,
}

/// Bytes an outbox holds, and a wake-up for who waits for them to go.
#[derive(Debug, Default)]
pub struct Pending {
    bytes: std::sync::atomic::AtomicUsize,
    written: tokio::sync::Notify,
}

impl Pending {
    /// The writer wrote `n` bytes of queued frames.
    pub fn wrote(&self, n: usize) {
        self.bytes.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
        self.written.notify_waiters();
    }
}

/// The connection loop's ends of an [`Outbox`].
#[derive(Debug)]
pub struct OutboxEnds {
    /// The writer task's queue.
    pub rx: mpsc::Receiver<Outbound>,
    /// Set when the outbox overflowed: close at once.
    pub abort: watch::Receiver<Option<Close>>,
    /// Set by [`Outbox::kick`]: close after the queued frames.
    pub kick: watch::Receiver<Option<Close>>,
    /// The writer reports here what it wrote.
    pub pending: Arc<Pending>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("queued", &(self.tx.max_capacity() - self.tx.capacity())).finish()
    }
}

impl Outbox {
    /// A new outbox holding at most `capacity` frames, and the connection loop's ends of it.
    pub fn new(capacity: usize) -> (Self, OutboxEnds) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let (abort_tx, abort) = watch::channel(None);
        let (kick_tx, kick) = watch::channel(None);
        let pending = Arc::new(Pending::default());
        (
            Self { tx, abort: Arc::new(abort_tx), kick: Arc::new(kick_tx), pending: pending.clone() },
            OutboxEnds { rx, abort, kick, pending },
        )
    }

    /// Waits until fewer than `limit` bytes are queued for this connection: a bulk answer (a
    /// media chunk) is read only when the client is taking what came before, so a client that
    /// does not read costs at most `limit` plus one answer per request in flight.
    pub async fn room_for_bulk(&self, limit: usize) {
        loop {
            let written = self.pending.written.notified();
            if self.pending.bytes.load(std::sync::atomic::Ordering::Relaxed) < limit || self.tx.is_closed() {
                return;
            }
            written.await;
        }
    }

    /// Queues an encoded frame without waiting. A full queue means the client is not reading:
    /// the connection is closed as a slow consumer and `false` returned.
    pub fn push(&self, frame: Bytes) -> bool {
        let n = frame.len();
        // Counted before the writer can see it, so its subtraction never comes first.
        self.pending.bytes.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        match self.tx.try_send(Outbound::Frame(frame)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.pending.bytes.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
                self.abort.send_if_modified(|slot| {
                    slot.get_or_insert(Close::new(CloseCode::SlowConsumer, "outbound queue full; reconnect and sync"));
                    true
                });
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.pending.bytes.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues a frame that may be lost (typing): dropped, without closing anything, when the queue
    /// is more than half full, so it never displaces what matters.
    pub fn push_droppable(&self, frame: Bytes) -> bool {
        if self.tx.capacity() < self.tx.max_capacity() / 2 {
            return false;
        }
        let n = frame.len();
        self.pending.bytes.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        let sent = self.tx.try_send(Outbound::Frame(frame)).is_ok();
        if !sent {
            self.pending.bytes.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
        }
        sent
    }

    /// The close the outbox forced (a slow consumer), if any.
    pub fn aborted(&self) -> Option<Close> {
        *self.abort.borrow()
    }

    /// Asks the connection to close with `close` once the frames queued so far are sent.
    pub fn kick(&self, close: Close) {
        self.kick.send_replace(Some(close));
    }

    /// Queues the final close behind whatever is queued; aborts when the queue is stuck.
    pub fn finish(&self, close: Close) {
        if self.tx.try_send(Outbound::Close(close)).is_err() {
            self.abort.send_replace(Some(close));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One connection as requests see it: its ids, peer, outbox, the client's name from Hello and
/// its [`Caller`] once authenticated.
#[derive(Debug)]
pub struct Session {
    /// The connection id announced in Welcome (§4.2).
    pub id: String,
    /// Numeric id, unique per process: the hub's key for this connection.
    pub key: u64,
    pub transport: Transport,
    pub peer: SocketAddr,
    pub outbox: Outbox,
    client_name: Mutex<String>,
    caller: Mutex<Option<Caller>>,
    guest: Mutex<Option<Guest>>,
    close_after: Mutex<Option<Close>>,
    /// The QUIC connection, for the transfer streams of §22.9; `None` over WebSocket.
    quic: Option<quinn::Connection>,
    /// Transfers (QUIC download streams) this connection may run at once.
    transfers: Arc<tokio::sync::Semaphore>,
}

impl Session {
    pub fn new(id: String, key: u64, transport: Transport, peer: SocketAddr, outbox: Outbox) -> Self {
        Self {
            id,
            key,
            transport,
            peer,
            outbox,
            client_name: Mutex::new(String::new()),
            caller: Mutex::new(None),
            guest: Mutex::new(None),
            close_after: Mutex::new(None),
            quic: None,
            transfers: Arc::new(tokio::sync::Semaphore::new(4)),
        }
    }

    /// Over QUIC: the connection the transfer streams open on, and how many may run at once.
    pub fn with_quic(mut self, conn: Option<quinn::Connection>, max_transfers: u32) -> Self {
        self.quic = conn;
        self.transfers = Arc::new(tokio::sync::Semaphore::new(max_transfers as usize));
        self
    }

    /// The QUIC connection, when the session runs over QUIC.
    pub fn quic(&self) -> Option<&quinn::Connection> {
        self.quic.as_ref()
    }

    /// The permits for concurrent transfer streams.
    pub fn transfers(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.transfers
    }

    /// The client software named in Hello.
    pub fn client_name(&self) -> String {
        lock(&self.client_name).clone()
    }

    pub fn set_client_name(&self, name: &str) {
        *lock(&self.client_name) = name.to_string();
    }

    /// The connection's caller, if authenticated (expired or not).
    pub fn caller(&self) -> Option<Caller> {
        lock(&self.caller).clone()
    }

    /// The caller of a request: UNAUTHENTICATED without one or once the access token expired.
    pub fn require_caller(&self) -> Result<Caller, ServerError> {
        match self.caller() {
            None => Err(ServerError::Unauthenticated("authenticate first (§11.5)".into())),
            Some(a) if a.expires_at_ms <= confab_protocol::frames::now_ms() => {
                Err(ServerError::Unauthenticated("access token expired: Refresh, then Authenticate".into()))
            }
            Some(a) => Ok(a),
        }
    }

    /// Replaces the caller; returns the previous one. Only the edge that binds sessions to the
    /// hub calls this.
    pub fn set_caller(&self, caller: Option<Caller>) -> Option<Caller> {
        std::mem::replace(&mut *lock(&self.caller), caller)
    }

    /// The connection's guest identity, when Hello carried a room token (§25.3).
    pub fn guest(&self) -> Option<Guest> {
        lock(&self.guest).clone()
    }

    /// Replaces the guest identity; only the handshake edge calls this.
    pub fn set_guest(&self, guest: Option<Guest>) -> Option<Guest> {
        std::mem::replace(&mut *lock(&self.guest), guest)
    }

    /// Closes the connection with `close` after the current response (which is queued first).
    pub fn close_after_response(&self, close: Close) {
        *lock(&self.close_after) = Some(close);
    }

    /// The close asked for by [`close_after_response`](Self::close_after_response), once.
    pub fn take_close_after(&self) -> Option<Close> {
        lock(&self.close_after).take()
    }
}
