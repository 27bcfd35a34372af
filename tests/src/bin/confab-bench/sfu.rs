//! The SFU scenario: one publisher sends audio (50 packets/s) and video at a set bitrate through
//! the server's SFU to N subscribers, all WebRTC peers in this process on loopback. Reports loss,
//! send-to-receive latency p50/p99 (the payload carries its send time) and the server's CPU.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use confab_conformance::webrtc_peer::{GroupPeer, Rate};
use confab_protocol::client::Client;
use serde_json::json;

use crate::peer::{create_group, random_name, register};
use crate::probe::cpu_seconds;
use crate::stats::Samples;

/// Payload bytes of one video packet (about an MTU's worth after headers).
const VIDEO_LEN: usize = 1100;

async fn signed_in(
    url: &str,
    options: &confab_protocol::client::ConnectOptions,
    tag: &str,
) -> anyhow::Result<(Client, confab_protocol::client::Events, u64)> {
    let (c, events) = Client::connect(url, options.clone()).await?;
    let id = register(&c, &random_name(tag)).await?.me.context("AuthResult without me")?.user_id;
    Ok((c, events, id))
}

pub async fn run(
    url: &str,
    options: &confab_protocol::client::ConnectOptions,
    subscribers: usize,
    video_kbps: u32,
    duration: Duration,
    server_pid: Option<u32>,
) -> anyhow::Result<serde_json::Value> {
    eprintln!("SFU: signing in 1 publisher and {subscribers} subscribers");
    let (pc, pe, _) = signed_in(url, options, "sfupub").await?;
    let mut subs = Vec::with_capacity(subscribers);
    for i in 0..subscribers {
        subs.push(signed_in(url, options, &format!("sfusub{i}")).await?);
    }
    let ids: Vec<u64> = subs.iter().map(|s| s.2).collect();
    let conv = create_group(&pc, "sfu bench", &ids).await?;
    let joined = Instant::now();
    let mut peers = Vec::with_capacity(subscribers);
    for (i, (c, e, _)) in subs.into_iter().enumerate() {
        let (p, _) = GroupPeer::join(c, e, conv, (i % 200) as u8 + 2).await?;
        peers.push(p);
    }
    let (publisher, _) = GroupPeer::join(pc, pe, conv, 1).await?;
    // 2.5 Mbit/s of 1100-byte payloads is about 284 packets/s.
    let video_pps = (u64::from(video_kbps) * 1000 / (VIDEO_LEN as u64 * 8)).max(1) as u32;
    publisher.publish_at(Rate { video_pps, video_len: VIDEO_LEN }).await?;
    eprintln!(
        "SFU: {subscribers} joined in {:.1} s; publishing {video_kbps} kbit/s ({video_pps} video packets/s)",
        joined.elapsed().as_secs_f64()
    );
    // Warm-up: every subscriber receives both tracks.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = peers.iter().filter(|p| p.received().values().filter(|r| r.packets > 0).count() >= 2).count();
        if ready == peers.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {ready} of {} subscribers receive both tracks after 60 s", peers.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before: Vec<_> = peers.iter().map(|p| p.received()).collect();
    let cpu_before = server_pid.map(cpu_seconds).transpose()?;
    let started = Instant::now();
    let mut second = 0;
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        second += 1;
        let got: u64 = peers.iter().map(|p| p.received().values().map(|r| r.packets).sum::<u64>()).sum();
        eprintln!("[{second:>3}s] packets received by subscribers: {got}");
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = match (server_pid, cpu_before) {
        (Some(pid), Some(b)) => Some((cpu_seconds(pid)? - b) / seconds),
        _ => None,
    };
    let after: Vec<_> = peers.iter().map(|p| p.received()).collect();
    publisher.close().await;
    let (mut expected, mut received, mut corrupt, mut reordered) = (0u64, 0u64, 0u64, 0u64);
    let mut video_streams = 0;
    let mut lat = Samples::default();
    for (b, a) in before.iter().zip(&after) {
        for (id, r) in a {
            let start = b.get(id).map_or((r.first_marker, 0, 0), |x| (x.last_marker, x.packets, x.latencies_us.len()));
            expected += u64::from(r.last_marker.saturating_sub(start.0));
            received += r.packets - start.1;
            corrupt += r.corrupt;
            reordered += r.reordered;
            video_streams += usize::from(r.video);
            lat.0.extend(r.latencies_us[start.2.min(r.latencies_us.len())..].iter().map(|&v| u64::from(v)));
        }
    }
    for p in &peers {
        p.close().await;
    }
    let loss = if expected == 0 { 0.0 } else { expected.saturating_sub(received) as f64 / expected as f64 };
    Ok(json!({
        "scenario": "SFU",
        "url": url,
        "subscribers": subscribers,
        "video_kbps": video_kbps,
        "video_packets_per_second": video_pps,
        "subscriber_video_streams": video_streams,
        "seconds": seconds,
        "packets_expected": expected,
        "packets_received": received,
        "loss": loss,
        "corrupt": corrupt,
        "reordered": reordered,
        "latency_ms_p50": lat.percentile(0.50),
        "latency_ms_p99": lat.percentile(0.99),
        "server_cpu_cores": cpu,
    }))
}
