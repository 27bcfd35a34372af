//! What the SFU scenarios measure, the same way for each: a warm-up until every receiving peer
//! has packets on every track it should get, then a measured phase over which the loss (markers
//! that never arrived), the send-to-receive latency of every packet (the payload's send time on
//! the generator's one clock), the server's CPU (its /proc, when its pid is given) and the
//! generator's own CPU are taken.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use confab_conformance::webrtc_peer::{GroupPeer, Received};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::probe::cpu_seconds;
use crate::stats::Samples;

/// At most this many peers set up at once (connect, Hello, JoinCall).
pub const JOIN_CONCURRENCY: usize = 8;

/// Runs `make(i)` for `0..n` with at most [`JOIN_CONCURRENCY`] at once, results in order.
pub async fn in_parallel<T, F, Fut>(n: usize, make: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut done: Vec<(usize, T)> = futures_util::stream::iter((0..n).map(|i| {
        let f = make(i);
        async move { f.await.map(|t| (i, t)) }
    }))
    .buffer_unordered(JOIN_CONCURRENCY)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<anyhow::Result<_>>()?;
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, t)| t).collect())
}

/// Waits up to `limit` until every peer receives packets on at least `tracks` of its tracks;
/// how many do in the end.
pub async fn warm_up(peers: &[&GroupPeer], tracks: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let ready =
            peers.iter().filter(|p| p.received_counts().values().filter(|r| r.packets > 0).count() >= tracks).count();
        if ready == peers.len() || Instant::now() > deadline {
            return ready;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The figures of one measured phase.
#[derive(Default)]
pub struct Measured {
    pub seconds: f64,
    /// Server cores busy on average (CPU seconds / wall seconds), when its pid was given.
    pub server_cpu: Option<f64>,
    /// The generator's (this process's) cores busy on average.
    pub generator_cpu: f64,
    pub expected: u64,
    pub received: u64,
    pub corrupt: u64,
    pub reordered: u64,
    pub audio_streams: usize,
    pub video_streams: usize,
    pub latency: Samples,
}

impl Measured {
    /// Markers missing as a share of those expected.
    pub fn loss(&self) -> f64 {
        if self.expected == 0 { 0.0 } else { self.expected.saturating_sub(self.received) as f64 / self.expected as f64 }
    }

    /// The figures as JSON fields (latencies in ms, CPU in cores).
    pub fn json(&mut self) -> Value {
        json!({
            "seconds": self.seconds,
            "subscriber_audio_streams": self.audio_streams,
            "subscriber_video_streams": self.video_streams,
            "packets_expected": self.expected,
            "packets_received": self.received,
            "packets_per_second": self.received as f64 / self.seconds.max(1e-9),
            "loss": self.loss(),
            "corrupt": self.corrupt,
            "reordered": self.reordered,
            "latency_ms_p50": self.latency.percentile(0.50),
            "latency_ms_p99": self.latency.percentile(0.99),
            "latency_ms_max": self.latency.percentile(1.0),
            "server_cpu_cores": self.server_cpu,
            "generator_cpu_cores": self.generator_cpu,
        })
    }
}

/// Measures what `peers` receive over `duration`, printing the packets received each second.
pub async fn measure(peers: &[&GroupPeer], duration: Duration, server_pid: Option<u32>) -> anyhow::Result<Measured> {
    let total = |snap: &[HashMap<String, Received>]| -> u64 {
        snap.iter().map(|m| m.values().map(|r| r.packets).sum::<u64>()).sum()
    };
    for p in peers {
        p.clear_latencies();
    }
    let before: Vec<_> = peers.iter().map(|p| p.received_counts()).collect();
    let me = std::process::id();
    let (server_before, gen_before) = (server_pid.map(cpu_seconds).transpose()?, cpu_seconds(me)?);
    let started = Instant::now();
    let (mut second, mut last) = (0, total(&before));
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        second += 1;
        let now = total(&peers.iter().map(|p| p.received_counts()).collect::<Vec<_>>());
        eprintln!("[{second:>3}s] packets received by subscribers: {} /s (total {now})", now - last);
        last = now;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut m = Measured { seconds, generator_cpu: (cpu_seconds(me)? - gen_before) / seconds, ..Default::default() };
    if let (Some(pid), Some(b)) = (server_pid, server_before) {
        m.server_cpu = Some((cpu_seconds(pid)? - b) / seconds);
    }
    let after: Vec<_> = peers.iter().map(|p| p.received()).collect();
    for (b, a) in before.iter().zip(&after) {
        for (id, r) in a {
            // A track that started within the phase counts from its first marker.
            let (from, got) = b.get(id).map_or((r.first_marker.saturating_sub(1), 0), |x| (x.last_marker, x.packets));
            m.expected += u64::from(r.last_marker.saturating_sub(from));
            m.received += r.packets - got;
            m.corrupt += r.corrupt - b.get(id).map_or(0, |x| x.corrupt);
            m.reordered += r.reordered - b.get(id).map_or(0, |x| x.reordered);
            if r.video {
                m.video_streams += 1;
            } else {
                m.audio_streams += 1;
            }
            m.latency.0.extend(r.latencies_us.iter().map(|&v| u64::from(v)));
        }
    }
    Ok(m)
}
