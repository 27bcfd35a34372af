//! The media scenario's latency phases: member A sends 100-byte stamped messages at a fixed rate
//! to a group that member B receives, first with nothing else on A's connection (the baseline),
//! then while A uploads a large file back to back on the same connection (the same `Client`),
//! then while another connection of A's account uploads it (the control: the same load on the
//! server and the machine, without sharing A's connection). Over QUIC the upload has a stream of its own beside the control stream; over WebSocket its
//! chunks share the one ordered connection with the messages (head-of-line blocking). Each phase
//! reports send-to-deliver latency at B and A's acknowledgement latency (SendMessageResult).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use confab_protocol::client::{Client, ConnectOptions};
use confab_protocol::v1::{self, client_frame::Request, conversation_event::Body, event, response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::media::{Moved, connection, timed_upload};
use crate::peer::{create_group, random_name, register};
use crate::stats::{Samples, now_ns, stamp_of, stamped_text};

/// Phase tags carried in the messages: no uploads, uploads on the sender's connection, uploads
/// on another connection.
const BASELINE: u16 = 0;
const SAME: u16 = 1;
const OTHER: u16 = 2;

/// Deliveries at B, by phase tag.
#[derive(Default)]
struct Deliveries {
    count: [AtomicU64; 3],
    latencies_us: Mutex<[Vec<u64>; 3]>,
}

impl Deliveries {
    fn on(&self, text: &str) {
        let now = now_ns();
        let Some((sent, tag)) = stamp_of(text) else { return };
        let Some(count) = self.count.get(usize::from(tag)) else { return };
        count.fetch_add(1, Ordering::Relaxed);
        let us = now.saturating_sub(sent) / 1000;
        self.latencies_us.lock().expect("latencies")[usize::from(tag)].push(us);
    }
}

/// What one sending phase did.
struct Sent {
    sent: u64,
    acked: u64,
    failed: u64,
    ack_us: Samples,
    seconds: f64,
}

/// Sends a stamped message with `tag` to `conv` every 1/`rate` s (each send its own task, so a
/// slow acknowledgement does not slow the rate) until `until` completes; then waits for every
/// acknowledgement.
async fn send_at_rate(
    client: &Client,
    conv: u64,
    rate: u32,
    tag: u16,
    until: impl std::future::Future<Output = ()>,
) -> Sent {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    let mut set = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut sent = 0;
    tokio::pin!(until);
    loop {
        tokio::select! {
            biased;
            () = &mut until => break,
            _ = tick.tick() => {
                sent += 1;
                let c = client.clone();
                set.spawn(async move {
                    let t = Instant::now();
                    let req = v1::SendMessage {
                        conversation_id: conv,
                        client_msg_id: confab_protocol::frames::new_client_msg_id(),
                        text: stamped_text(100, tag),
                        ..Default::default()
                    };
                    match c.request(Request::SendMessage(req)).await {
                        Ok(response::Result::SendMessage(_)) => Some(t.elapsed().as_micros() as u64),
                        _ => None,
                    }
                });
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let (mut acked, mut failed, mut ack_us) = (0, 0, Samples::default());
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Some(us)) => {
                acked += 1;
                ack_us.0.push(us);
            }
            _ => failed += 1,
        }
    }
    Sent { sent, acked, failed, ack_us, seconds }
}

/// Waits until B has every acknowledged message of `tag`, or 5 s pass without a new one.
async fn settle(d: &Deliveries, tag: u16, acked: u64) {
    let count = &d.count[usize::from(tag)];
    let mut last = (count.load(Ordering::Relaxed), Instant::now());
    while last.0 < acked && last.1.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = count.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
}

fn phase_json(s: &mut Sent, d: &Deliveries, tag: u16) -> Value {
    let mut lat = Samples(std::mem::take(&mut d.latencies_us.lock().expect("latencies")[usize::from(tag)]));
    json!({
        "seconds": s.seconds,
        "sent": s.sent,
        "acked": s.acked,
        "failed": s.failed,
        "delivered": d.count[usize::from(tag)].load(Ordering::Relaxed),
        "delivery_ms_p50": lat.percentile(0.50),
        "delivery_ms_p99": lat.percentile(0.99),
        "delivery_ms_max": lat.percentile(1.0),
        "ack_ms_p50": s.ack_us.percentile(0.50),
        "ack_ms_p99": s.ack_us.percentile(0.99),
    })
}

/// What every phase shares: who sends where at which rate, the file and how long to upload it.
struct Phases<'a> {
    sender: &'a Client,
    conv: u64,
    rate: u32,
    data: &'a Bytes,
    sha: [u8; 32],
    at_least: Duration,
    moved: &'a Moved,
    deliveries: &'a Deliveries,
}

/// Uploads the file on `uploader` back to back until at least `at_least` has passed (one upload
/// at least) while the sender sends messages tagged `tag`; then waits for them.
async fn loaded_phase(p: &Phases<'_>, uploader: &Client, tag: u16) -> anyhow::Result<Value> {
    let Phases { sender, conv, rate, data, sha, at_least, moved, deliveries } = *p;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let uploads = async {
        let started = Instant::now();
        let mut each = Vec::new();
        let result = loop {
            match timed_upload(uploader, data, sha, moved).await {
                Ok(t) => each.push(t.seconds),
                Err(e) => break Err(e),
            }
            if started.elapsed() >= at_least {
                break Ok((each, started.elapsed().as_secs_f64()));
            }
        };
        let _ = done_tx.send(());
        result
    };
    let (uploaded, mut sent) = tokio::join!(
        uploads,
        send_at_rate(sender, conv, rate, tag, async {
            let _ = done_rx.await;
        })
    );
    let (each, upload_seconds) = uploaded.context("uploads during a loaded phase")?;
    settle(deliveries, tag, sent.acked).await;
    let mut v = phase_json(&mut sent, deliveries, tag);
    let bytes = data.len() as u64 * each.len() as u64;
    if let Some(m) = v.as_object_mut() {
        m.insert("uploads".into(), json!(each.len()));
        m.insert("upload_seconds_each".into(), json!(each));
        m.insert("upload_mib_per_s".into(), json!(bytes as f64 / (1024.0 * 1024.0) / upload_seconds.max(1e-9)));
    }
    Ok(v)
}

/// Runs the three phases: the baseline for `at_least`; then `data` uploaded back to back (for at
/// least `at_least`) on the sender's own connection; then the same uploads on another connection
/// of the same account (the control: what a busy server and machine cost without sharing the
/// connection). Messages at `rate` throughout. Sender A is a new connection of the account
/// `auth`; receiver B a new account in a group with it.
pub async fn run(
    url: &str,
    opts: &ConnectOptions,
    auth: &v1::AuthResult,
    data: &Bytes,
    rate: u32,
    at_least: Duration,
    moved: &Moved,
) -> anyhow::Result<Value> {
    let client = &connection(url, opts, auth).await?;
    let other = &connection(url, opts, auth).await?;
    let deliveries = Arc::new(Deliveries::default());
    let (b, mut events) = Client::connect(url, opts.clone()).await?;
    let b_id = register(&b, &random_name("medialB")).await?.me.context("AuthResult without me")?.user_id;
    let d = deliveries.clone();
    let receiver = tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if let Some(event::Event::ConversationEvent(ce)) = ev.event
                && let Some(Body::MessagePosted(m)) = ce.body
            {
                d.on(&m.text);
            }
        }
    });
    let conv = create_group(client, "media latency", &[b_id]).await?;
    let sha: [u8; 32] = Sha256::digest(data).into();

    eprintln!("media latency: {rate} messages/s for {at_least:?} without uploads (baseline)");
    let mut base = send_at_rate(client, conv, rate, BASELINE, tokio::time::sleep(at_least)).await;
    settle(&deliveries, BASELINE, base.acked).await;
    let baseline = phase_json(&mut base, &deliveries, BASELINE);

    let size = data.len();
    eprintln!("media latency: {rate} messages/s while uploading {size} bytes back to back on the same connection");
    let phases = Phases { sender: client, conv, rate, data, sha, at_least, moved, deliveries: &deliveries };
    let during = loaded_phase(&phases, client, SAME).await?;
    eprintln!("media latency: {rate} messages/s while another connection uploads {size} bytes back to back");
    let elsewhere = loaded_phase(&phases, other, OTHER).await?;
    receiver.abort();

    let ratio = |phase: &Value, k: &str| {
        let b = baseline[k].as_f64().unwrap_or(0.0);
        if b > 0.0 { json!(phase[k].as_f64().unwrap_or(0.0) / b) } else { Value::Null }
    };
    Ok(json!({
        "rate": rate,
        "upload_bytes": size,
        "delivery_p50_ratio": ratio(&during, "delivery_ms_p50"),
        "delivery_p99_ratio": ratio(&during, "delivery_ms_p99"),
        "elsewhere_delivery_p99_ratio": ratio(&elsewhere, "delivery_ms_p99"),
        "baseline": baseline,
        "during_uploads": during,
        "during_uploads_elsewhere": elsewhere,
    }))
}

/// The three phases side by side.
pub fn print_table(latency: &Value) {
    if !latency.is_object() {
        return;
    }
    println!(
        "messages at {}/s from the uploader's connection to another member ({} byte uploads):",
        latency["rate"], latency["upload_bytes"]
    );
    println!(
        "{:<20} {:>7} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "phase", "sent", "failed", "delivered", "p50 ms", "p99 ms", "max ms", "ack p50", "ack p99"
    );
    let phases = [
        ("baseline", "baseline"),
        ("uploads, same conn", "during_uploads"),
        ("uploads, other conn", "during_uploads_elsewhere"),
    ];
    for (name, k) in phases {
        let p = &latency[k];
        let f = |k: &str| p[k].as_f64().unwrap_or(0.0);
        println!(
            "{name:<20} {:>7} {:>7} {:>10} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
            p["sent"].as_u64().unwrap_or(0),
            p["failed"].as_u64().unwrap_or(0),
            p["delivered"].as_u64().unwrap_or(0),
            f("delivery_ms_p50"),
            f("delivery_ms_p99"),
            f("delivery_ms_max"),
            f("ack_ms_p50"),
            f("ack_ms_p99"),
        );
    }
    for (name, k, r) in [
        ("same connection", "during_uploads", "delivery_p99_ratio"),
        ("other connection", "during_uploads_elsewhere", "elsewhere_delivery_p99_ratio"),
    ] {
        let d = &latency[k];
        println!(
            "uploads on the {name}: {} at {:.1} MiB/s; delivery p99 {:.2}x the baseline's",
            d["uploads"],
            d["upload_mib_per_s"].as_f64().unwrap_or(0.0),
            latency[r].as_f64().unwrap_or(0.0)
        );
    }
}
