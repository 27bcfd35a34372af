//! `confab ping`: the server's Welcome and round-trip times.

use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::session::connect_anonymous;

pub async fn ping(settings: &Settings, count: u32, json: bool) -> anyhow::Result<()> {
    let server = &settings.server;
    let started = Instant::now();
    let (client, _events) = connect_anonymous(settings).await?;
    let connect = started.elapsed();
    let mut rtts = Vec::new();
    for _ in 0..count.max(1) {
        let t = Instant::now();
        client.ping().await?;
        rtts.push(t.elapsed());
    }
    client.close().await;
    let w = client.welcome();
    let l = w.limits.unwrap_or_default();
    let min = rtts.iter().min().copied().unwrap_or_default();
    let avg = rtts.iter().sum::<Duration>() / rtts.len() as u32;
    if json {
        let v = serde_json::json!({
            "server": server,
            "server_version": w.server_version,
            "protocol": format!("{}.{}", w.protocol_major, w.protocol_minor),
            "connection_id": w.connection_id,
            "capabilities": w.capabilities,
            "limits": {
                "max_frame_bytes": l.max_frame_bytes,
                "max_requests_in_flight": l.max_requests_in_flight,
                "heartbeat_interval_ms": l.heartbeat_interval_ms,
                "idle_timeout_ms": l.idle_timeout_ms,
            },
            "connect_ms": connect.as_secs_f64() * 1e3,
            "rtt_ms": rtts.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>(),
        });
        println!("{v}");
    } else {
        println!("server        {server}");
        println!("server version {}", w.server_version);
        println!("protocol      {}.{}", w.protocol_major, w.protocol_minor);
        println!("connection    {}", w.connection_id);
        println!("capabilities  {}", w.capabilities.join(", "));
        println!(
            "limits        max_frame_bytes={} max_requests_in_flight={} heartbeat_interval={}ms idle_timeout={}ms",
            l.max_frame_bytes, l.max_requests_in_flight, l.heartbeat_interval_ms, l.idle_timeout_ms
        );
        println!("connect       {:.2} ms", connect.as_secs_f64() * 1e3);
        println!(
            "rtt           min {:.3} ms, avg {:.3} ms over {}",
            min.as_secs_f64() * 1e3,
            avg.as_secs_f64() * 1e3,
            rtts.len()
        );
    }
    Ok(())
}
