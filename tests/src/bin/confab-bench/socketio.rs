//! The adapter that lets the same generator drive the Socket.IO comparison peer
//! (tests/socketio-peer): a minimal Engine.IO 4 / Socket.IO 5 client over WebSocket — login over
//! HTTP for a JWT, connect with it in the handshake auth, emit with acknowledgements, events to a
//! callback — with one reader and one writer task per connection, like the Confab client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

type Acks = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// Called with (event name, first argument) for every event the server emits.
pub type OnEvent = Box<dyn Fn(&str, &Value) + Send + Sync>;

/// One connected Socket.IO client; dropping it closes the connection.
pub struct SioClient {
    out: mpsc::Sender<Message>,
    acks: Acks,
    next_id: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for SioClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// `POST /api/login` on the peer at `addr` (HOST:PORT): a token for `username`.
pub async fn login(addr: &str, username: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({ "username": username }).to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    let req = format!(
        "POST /api/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    s.take(64 * 1024).read_to_end(&mut resp).await?;
    let resp = String::from_utf8_lossy(&resp);
    let (head, body) = resp.split_once("\r\n\r\n").context("malformed HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("login refused: {}", head.lines().next().unwrap_or_default());
    }
    let v: Value = serde_json::from_str(body.trim()).context("login answer is not JSON")?;
    v["token"].as_str().map(str::to_owned).context("login answer without token")
}

/// Handles one Engine.IO packet from the server.
fn dispatch(text: &str, acks: &Acks, on_event: &OnEvent, out: &mpsc::Sender<Message>) -> bool {
    match text.as_bytes().first() {
        // Engine.IO ping: answer pong (try_send: a full queue means the writer is already busy).
        Some(b'2') => {
            let _ = out.try_send(Message::text("3"));
        }
        Some(b'1') => return false,
        Some(b'4') => {
            let rest = &text[1..];
            if let Some(payload) = rest.strip_prefix('2') {
                // EVENT: 42["name", arg]
                if let Ok(Value::Array(a)) = serde_json::from_str::<Value>(payload.trim_start_matches(char::is_numeric))
                    && let Some(name) = a.first().and_then(Value::as_str)
                {
                    on_event(name, a.get(1).unwrap_or(&Value::Null));
                }
            } else if let Some(payload) = rest.strip_prefix('3') {
                // ACK: 43<id>[arg]
                let digits = payload.find(|c: char| !c.is_ascii_digit()).unwrap_or(payload.len());
                if let Ok(id) = payload[..digits].parse::<u64>() {
                    let arg = serde_json::from_str::<Value>(&payload[digits..])
                        .ok()
                        .and_then(|v| v.get(0).cloned())
                        .unwrap_or(Value::Null);
                    if let Some(tx) = acks.lock().expect("acks").remove(&id) {
                        let _ = tx.send(arg);
                    }
                }
            } else if rest.starts_with('1') {
                return false;
            }
        }
        _ => {}
    }
    true
}

impl SioClient {
    /// Connects to the peer at `addr` with `token` and waits for the namespace CONNECT answer.
    pub async fn connect(addr: &str, token: &str, on_event: OnEvent) -> anyhow::Result<Self> {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.context("socket.io upgrade")?;
        let (mut sink, mut stream) = ws.split();
        // Engine.IO OPEN ("0{...}"), then our CONNECT with the token, then the server's "40{sid}".
        let mut connected = false;
        let mut sent_connect = false;
        while !connected {
            let msg = tokio::time::timeout(Duration::from_secs(30), stream.next())
                .await
                .context("socket.io handshake timed out")?
                .context("closed during the handshake")??;
            let Message::Text(t) = msg else { continue };
            if t.starts_with('0') && !sent_connect {
                let auth = serde_json::json!({ "token": token });
                sink.send(Message::text(format!("40{auth}"))).await?;
                sent_connect = true;
            } else if t.starts_with("40") {
                connected = true;
            } else if let Some(why) = t.strip_prefix("44") {
                bail!("socket.io connect refused: {why}");
            } else if t.as_str() == "2" {
                sink.send(Message::text("3")).await?;
            }
        }
        let (out, rx) = mpsc::channel::<Message>(1024);
        tokio::spawn(crate::ws_writer::write_queued(sink, rx));
        let acks: Acks = Arc::default();
        let (acks2, out2) = (acks.clone(), out.clone());
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                if let Message::Text(t) = msg
                    && !dispatch(t.as_str(), &acks2, &on_event, &out2)
                {
                    break;
                }
            }
            // Failing every pending ack: the connection is gone.
            acks2.lock().expect("acks").clear();
        });
        Ok(Self { out, acks, next_id: AtomicU64::new(1), reader })
    }

    /// Emits `event` with `arg` and waits for the server's acknowledgement.
    pub async fn emit_ack(&self, event: &str, arg: Value) -> anyhow::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks.lock().expect("acks").insert(id, tx);
        let packet = format!("42{id}{}", serde_json::json!([event, arg]));
        if self.out.send(Message::text(packet)).await.is_err() {
            self.acks.lock().expect("acks").remove(&id);
            bail!("connection closed");
        }
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => bail!("connection closed before the ack"),
            Err(_) => {
                self.acks.lock().expect("acks").remove(&id);
                bail!("no ack in 30 s")
            }
        }
    }

    /// Whether the reader still runs (the server has not closed the connection).
    pub fn is_open(&self) -> bool {
        !self.reader.is_finished()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatches_events_acks_and_pings() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let on: OnEvent = Box::new(move |name, v| s2.lock().unwrap().push(format!("{name}:{v}")));
        let acks: Acks = Arc::default();
        let (tx, rx) = oneshot::channel();
        acks.lock().unwrap().insert(7, tx);
        let (out, mut orx) = mpsc::channel(4);
        assert!(dispatch(r#"42["receive_message",{"text":"hi"}]"#, &acks, &on, &out));
        assert!(dispatch(r#"437[{"id":3}]"#, &acks, &on, &out));
        assert!(dispatch("2", &acks, &on, &out));
        assert!(!dispatch("41", &acks, &on, &out));
        assert_eq!(seen.lock().unwrap().as_slice(), [r#"receive_message:{"text":"hi"}"#]);
        assert_eq!(rx.blocking_recv().unwrap()["id"], 3);
        assert_eq!(orx.try_recv().unwrap(), Message::text("3"));
    }
}
