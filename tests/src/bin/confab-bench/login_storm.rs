//! W6, the login storm: failed logins for unknown accounts from concurrent loops, each from its
//! own loopback source address (127.0.0.0/8), while the server's VmRSS is sampled from /proc.
//! Every failed login costs the server one argon2id verification (19 MiB of working memory);
//! the scenario fails when the RSS after the storm exceeds the baseline by more than the bound.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use confab_protocol::client::{Client, ConnectOptions};
use confab_protocol::v1::ErrorCode;

use crate::peer::random_name;
use crate::rss_kib;
use crate::stats::{Samples, progress};

/// What W6 does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Failed logins in all.
    pub logins: u64,
    /// Loops running at once, each from its own source address.
    pub concurrency: usize,
    /// The server's process id, whose VmRSS is read.
    pub server_pid: u32,
    /// Allowed growth of the RSS after the storm over the baseline, in MiB.
    pub max_growth_mib: u64,
    /// Wait after the last login before reading the RSS "after" (the allocator returns memory
    /// to the OS on its own schedule).
    pub settle: Duration,
}

/// The source address for loop `i`: 127.0.0.(10 + i) when the server is on IPv4 loopback, so the
/// per-address login limit (30 per 2 s by default) sees several clients, as in the reported case.
fn source(url: &str, i: usize) -> Option<IpAddr> {
    let authority = url.split_once("://")?.1.split('/').next()?;
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h).parse::<Ipv4Addr>().ok()?;
    let last = u8::try_from(10 + i % 240).ok()?;
    host.is_loopback().then_some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
}

/// Runs W6 against the Confab server at `url`.
pub async fn run(url: &str, opts: &ConnectOptions, plan: &Plan) -> anyhow::Result<serde_json::Value> {
    let baseline = rss_kib(plan.server_pid)?;
    eprintln!("W6: {} failed logins, {} at a time; server RSS {} KiB before", plan.logins, plan.concurrency, baseline);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (stop, peak, pid) = (stop.clone(), peak.clone(), plan.server_pid);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                if let Ok(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
            }
        })
    };
    let p = progress("failed logins", failed.clone(), stop.clone());
    let started = Instant::now();
    let mut lanes = tokio::task::JoinSet::new();
    for i in 0..plan.concurrency.max(1) {
        let mut o = opts.clone();
        o.transport.local_ip = source(url, i);
        let (url, next, failed, total) = (url.to_string(), next.clone(), failed.clone(), plan.logins);
        lanes.spawn(async move {
            let mut latencies = Samples::default();
            let mut client: Option<Client> = None;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let c = match &client {
                    Some(c) => c.clone(),
                    None => {
                        let (c, _events) = Client::connect(&url, o.clone()).await.context("connecting")?;
                        client = Some(c.clone());
                        c
                    }
                };
                let t = Instant::now();
                match c.login(&random_name("w6nobody"), "not-the-password", "bench").await {
                    Err(e) if e.code() == Some(ErrorCode::Unauthenticated) => {
                        latencies.0.push(t.elapsed().as_micros() as u64);
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => anyhow::bail!("a login for an unknown account succeeded"),
                    Err(e) => anyhow::bail!("login: expected UNAUTHENTICATED, got {e}"),
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut latencies = Samples::default();
    while let Some(r) = lanes.join_next().await {
        latencies.0.extend(r??.0);
    }
    let seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(plan.settle).await;
    let after = rss_kib(plan.server_pid)?;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    p.abort();
    let peak = peak.load(Ordering::Relaxed).max(after);
    let limit = baseline + plan.max_growth_mib * 1024;
    Ok(serde_json::json!({
        "scenario": "W6",
        "url": url,
        "logins": failed.load(Ordering::Relaxed),
        "concurrency": plan.concurrency,
        "seconds": seconds,
        "logins_per_second": failed.load(Ordering::Relaxed) as f64 / seconds,
        "login_ms_p50": latencies.percentile(0.5),
        "login_ms_p99": latencies.percentile(0.99),
        "server_rss_baseline_kib": baseline,
        "server_rss_peak_kib": peak,
        "server_rss_after_kib": after,
        "settle_ms": plan.settle.as_millis() as u64,
        "max_growth_kib": plan.max_growth_mib * 1024,
        "within_bound": after <= limit,
    }))
}
