//! The ceiling: the physical minimum of a scenario on this machine, to state Confab as a fraction
//! of it. `ceiling-relay` is a WebSocket relay that speaks the Bun peer's binary protocol
//! (tests/bun-peer: JOIN, SEND, ACK, MSG) and does nothing else — no login, no storage, no
//! checks beyond the frame's shape: one tokio task reading and one writing per connection, each
//! MSG encoded once and its bytes shared by every recipient's queue, writes coalesced per
//! connection (32 KiB per socket write). The generator drives it as `ceiling://HOST:PORT`.
//! `ceiling-w4` is W4's minimum: acknowledged durable inserts of 100-byte messages on the same
//! PostgreSQL, group-committed (every waiting sender's row in one multi-row INSERT per commit).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::stats::Samples;

type Rooms = Arc<Mutex<HashMap<Bytes, Vec<(u64, mpsc::Sender<Message>)>>>>;

/// Frames a connection may have queued before the relay drops it (a slow consumer).
const QUEUE: usize = 8192;

/// Serves the relay on `listen` until the process is killed; prints the bound address.
pub async fn relay(listen: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    println!("ceiling relay listening on {}", listener.local_addr()?);
    let rooms: Rooms = Arc::default();
    let next = AtomicU64::new(1);
    let ids = Arc::new(AtomicU64::new(1));
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let conn = next.fetch_add(1, Ordering::Relaxed);
        let (rooms, ids) = (rooms.clone(), ids.clone());
        tokio::spawn(async move {
            let config = WebSocketConfig::default().write_buffer_size(32 * 1024);
            let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await else { return };
            let (sink, mut stream) = ws.split();
            let (tx, rx) = mpsc::channel::<Message>(QUEUE);
            let writer = tokio::spawn(crate::ws_writer::write_queued(sink, rx));
            let mut joined: Vec<Bytes> = Vec::new();
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Binary(b) = msg else { continue };
                if b.len() < 5 {
                    break;
                }
                let req = &b[1..5];
                match b[0] {
                    0x01 => {
                        let room = b.slice(5..);
                        rooms.lock().expect("rooms").entry(room.clone()).or_default().push((conn, tx.clone()));
                        joined.push(room);
                        let _ = tx.try_send(Message::Binary(ack(req, 0)));
                    }
                    0x02 if b.len() >= 7 => {
                        let n = u16::from_le_bytes([b[5], b[6]]) as usize;
                        let Some(room) = b.get(7..7 + n) else { break };
                        let id = ids.fetch_add(1, Ordering::Relaxed);
                        let mut out = BytesMut::with_capacity(1 + 8 + 8 + 2 + 2 + b.len());
                        out.put_u8(0x82);
                        out.put_u64_le(id);
                        out.put_u64_le(0);
                        out.put_u16_le(0);
                        out.put_u16_le(n as u16);
                        out.put_slice(room);
                        out.put_slice(&b[7 + n..]);
                        let frame = Message::Binary(out.freeze());
                        {
                            let rooms = rooms.lock().expect("rooms");
                            for (_, member) in rooms.get(room).into_iter().flatten() {
                                let _ = member.try_send(frame.clone());
                            }
                        }
                        let _ = tx.try_send(Message::Binary(ack(req, id)));
                    }
                    _ => break,
                }
            }
            {
                let mut rooms = rooms.lock().expect("rooms");
                for room in joined {
                    if let Some(members) = rooms.get_mut(&room) {
                        members.retain(|(c, _)| *c != conn);
                    }
                }
            }
            drop(tx);
            let _ = writer.await;
        });
    }
}

fn ack(req: &[u8], id: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(13);
    b.put_u8(0x81);
    b.put_slice(req);
    b.put_u64_le(id);
    b.freeze()
}

/// One sender's row, waiting for its commit.
struct Pending {
    conversation: i64,
    seq: i64,
    done: oneshot::Sender<()>,
}

/// W4's minimum on the PostgreSQL at `database`: `senders` loops, each inserting 100-byte
/// messages into its own conversation and waiting for the commit, for `duration`; one committer
/// takes every waiting row (up to 512) into one multi-row INSERT per transaction. Acknowledged
/// inserts per second and the latency of each, as JSON.
pub async fn w4(database: &str, senders: usize, duration: Duration) -> anyhow::Result<serde_json::Value> {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(database).await?;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS ceiling_w4_messages; \
         CREATE TABLE ceiling_w4_messages (conversation bigint NOT NULL, seq bigint NOT NULL, sender bigint NOT NULL, \
         text text NOT NULL, created_at bigint NOT NULL, PRIMARY KEY (conversation, seq))",
    )
    .execute(&pool)
    .await?;
    let (tx, mut rx) = mpsc::channel::<Pending>(senders * 2);
    let committer = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let text = "x".repeat(100);
            let mut batches = 0u64;
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 512 {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let convs: Vec<i64> = batch.iter().map(|p| p.conversation).collect();
                let seqs: Vec<i64> = batch.iter().map(|p| p.seq).collect();
                let texts: Vec<&str> = batch.iter().map(|_| text.as_str()).collect();
                let now = confab_protocol::frames::now_ms() as i64;
                let r = sqlx::query(
                    "INSERT INTO ceiling_w4_messages (conversation, seq, sender, text, created_at) \
                     SELECT c, s, c, t, $4 FROM UNNEST($1::bigint[], $2::bigint[], $3::text[]) AS u(c, s, t)",
                )
                .bind(&convs)
                .bind(&seqs)
                .bind(&texts)
                .bind(now)
                .execute(&pool)
                .await;
                if r.is_err() {
                    return (batches, r.map(drop));
                }
                batches += 1;
                for p in batch {
                    let _ = p.done.send(());
                }
            }
            (batches, Ok(()))
        })
    };
    let acked = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let end = Instant::now() + duration;
    let started = Instant::now();
    let mut loops = Vec::new();
    for s in 0..senders {
        let (tx, acked, latencies) = (tx.clone(), acked.clone(), latencies.clone());
        loops.push(tokio::spawn(async move {
            let mut seq = 1i64;
            let mut mine = Vec::new();
            while Instant::now() < end {
                let (done, wait) = oneshot::channel();
                let t0 = Instant::now();
                if tx.send(Pending { conversation: s as i64 + 1, seq, done }).await.is_err() || wait.await.is_err() {
                    break;
                }
                mine.push(t0.elapsed().as_micros() as u64);
                acked.fetch_add(1, Ordering::Relaxed);
                seq += 1;
            }
            latencies.lock().expect("latencies").extend(mine);
        }));
    }
    drop(tx);
    for l in loops {
        l.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let (batches, r) = committer.await?;
    r.context("the ceiling's insert failed")?;
    sqlx::raw_sql("DROP TABLE ceiling_w4_messages").execute(&pool).await?;
    let n = acked.load(Ordering::Relaxed);
    let mut s = Samples(std::mem::take(&mut *latencies.lock().expect("latencies")));
    Ok(json!({
        "scenario": "ceiling-w4",
        "senders": senders,
        "seconds": secs,
        "acked": n,
        "acked_per_second": n as f64 / secs,
        "commits": batches,
        "rows_per_commit": if batches == 0 { 0.0 } else { n as f64 / batches as f64 },
        "latency_ms_p50": s.percentile(0.50),
        "latency_ms_p99": s.percentile(0.99),
    }))
}
