//! The adapter that lets the same generator drive the Bun comparison peer (tests/bun-peer): login
//! over HTTP for a JWT (the Socket.IO peer's endpoint), a WebSocket with the token in the query,
//! and the peer's little-endian binary messages — JOIN and SEND with a request number, ACK, MSG
//! and ERR — with one reader and one writer task per connection, like the Confab client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{BufMut, BytesMut};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

const JOIN: u8 = 0x01;
const SEND: u8 = 0x02;
const ACK: u8 = 0x81;
const MSG: u8 = 0x82;
const ERR: u8 = 0x83;

/// What a request came back with: the message id of an ACK, or `None` for ERR.
type Acks = Arc<Mutex<HashMap<u32, oneshot::Sender<Option<u64>>>>>;

/// Called with the text of every MSG the peer delivers.
pub type OnMessage = Box<dyn Fn(&str) + Send + Sync>;

/// One connected client of the Bun peer; dropping it closes the connection.
pub struct BunClient {
    out: mpsc::Sender<Message>,
    acks: Acks,
    next_req: AtomicU32,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for BunClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The text of a MSG: `0x82 u64 id, u64 at, u16 n, sender, u16 n, room, text`.
fn message_text(b: &[u8]) -> Option<&str> {
    let mut at = 17;
    for _ in 0..2 {
        let n = u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize;
        at += 2 + n;
    }
    std::str::from_utf8(b.get(at..)?).ok()
}

/// Handles one binary message from the peer.
fn dispatch(b: &[u8], acks: &Acks, on: &OnMessage) {
    match b.first() {
        Some(&MSG) => {
            if let Some(t) = message_text(b) {
                on(t);
            }
        }
        Some(&ACK) | Some(&ERR) if b.len() >= 5 => {
            let req = u32::from_le_bytes(b[1..5].try_into().expect("4 bytes"));
            let id =
                (b[0] == ACK).then(|| b.get(5..13).map(|x| u64::from_le_bytes(x.try_into().expect("8")))).flatten();
            if let Some(tx) = acks.lock().expect("acks").remove(&req) {
                let _ = tx.send(id);
            }
        }
        _ => {}
    }
}

impl BunClient {
    /// Connects to the peer at `addr` (HOST:PORT) with `token`.
    pub async fn connect(addr: &str, token: &str, on: OnMessage) -> anyhow::Result<Self> {
        let url = format!("ws://{addr}/ws?token={token}");
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.context("bun peer upgrade")?;
        let (sink, mut stream) = ws.split();
        let (out, rx) = mpsc::channel::<Message>(1024);
        tokio::spawn(crate::ws_writer::write_queued(sink, rx));
        let acks: Acks = Arc::default();
        let acks2 = acks.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                if let Message::Binary(b) = msg {
                    dispatch(&b, &acks2, &on);
                }
            }
            acks2.lock().expect("acks").clear();
        });
        Ok(Self { out, acks, next_req: AtomicU32::new(1), reader })
    }

    /// Sends one request (`kind`, then its body) and waits for its ACK: the message id (0 for
    /// JOIN). An ERR answer is an error.
    async fn request(&self, kind: u8, body: &[u8]) -> anyhow::Result<u64> {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks.lock().expect("acks").insert(req, tx);
        let mut b = BytesMut::with_capacity(5 + body.len());
        b.put_u8(kind);
        b.put_u32_le(req);
        b.put_slice(body);
        if self.out.send(Message::Binary(b.freeze())).await.is_err() {
            self.acks.lock().expect("acks").remove(&req);
            bail!("connection closed");
        }
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(Some(id))) => Ok(id),
            Ok(Ok(None)) => bail!("request refused by the peer"),
            Ok(Err(_)) => bail!("connection closed before the ack"),
            Err(_) => {
                self.acks.lock().expect("acks").remove(&req);
                bail!("no ack in 30 s")
            }
        }
    }

    /// Subscribes to `room`.
    pub async fn join(&self, room: &str) -> anyhow::Result<()> {
        self.request(JOIN, room.as_bytes()).await.map(drop)
    }

    /// Publishes `text` to `room` (the sender must have joined it); the message id.
    pub async fn send(&self, room: &str, text: &str) -> anyhow::Result<u64> {
        let len = u16::try_from(room.len()).context("room name too long")?;
        let mut body = Vec::with_capacity(2 + room.len() + text.len());
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(room.as_bytes());
        body.extend_from_slice(text.as_bytes());
        self.request(SEND, &body).await
    }

    /// Whether the reader still runs (the peer has not closed the connection).
    pub fn is_open(&self) -> bool {
        !self.reader.is_finished()
    }
}

/// A MSG as the peer encodes it, for the tests.
#[cfg(test)]
fn encode_message(id: u64, sender: &str, room: &str, text: &str) -> bytes::Bytes {
    let mut b = BytesMut::new();
    b.put_u8(MSG);
    b.put_u64_le(id);
    b.put_u64_le(0);
    b.put_u16_le(sender.len() as u16);
    b.put_slice(sender.as_bytes());
    b.put_u16_le(room.len() as u16);
    b.put_slice(room.as_bytes());
    b.put_slice(text.as_bytes());
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatches_messages_acks_and_refusals() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let on: OnMessage = Box::new(move |t| s2.lock().unwrap().push(t.to_owned()));
        let acks: Acks = Arc::default();
        let (tx, rx) = oneshot::channel();
        let (tx2, rx2) = oneshot::channel();
        acks.lock().unwrap().insert(7, tx);
        acks.lock().unwrap().insert(8, tx2);
        dispatch(&encode_message(3, "ann", "room-1", "hello there"), &acks, &on);
        let mut a = vec![ACK];
        a.extend_from_slice(&7u32.to_le_bytes());
        a.extend_from_slice(&42u64.to_le_bytes());
        dispatch(&a, &acks, &on);
        let mut e = vec![ERR];
        e.extend_from_slice(&8u32.to_le_bytes());
        dispatch(&e, &acks, &on);
        // Truncated messages are ignored, not a panic.
        dispatch(&encode_message(4, "ann", "room-1", "x")[..20], &acks, &on);
        assert_eq!(seen.lock().unwrap().as_slice(), ["hello there"]);
        assert_eq!(rx.blocking_recv().unwrap(), Some(42));
        assert_eq!(rx2.blocking_recv().unwrap(), None);
    }
}
