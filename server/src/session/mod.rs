//! The session layer: who is on a connection and how to reach it, below every service. A
//! [`Session`] is one connection's identity (its [`Caller`] once authenticated), its [`Outbox`]
//! and its close handle. Services receive a `&Caller` and never attach connections themselves;
//! this module imports no service.

mod outbox;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use confab_protocol::CloseCode;
pub use outbox::{Outbound, Outbox, OutboxEnds};

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
