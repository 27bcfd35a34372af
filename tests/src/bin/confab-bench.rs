//! `confab-bench`: a load generator on the Confab client library. It sends traffic only to the
//! address it is given, bounded in time and connections, prints progress each second, and ends
//! with a table (and, with --json, a JSON file). Scenarios so far: W1 idle connections, W4 durable
//! sends and W5 connection storm (docs/benchmarks.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use confab_protocol::client::{Client, ClientError, ConnectOptions, Trust};
use confab_protocol::v1::{self, ErrorCode, client_frame::Request, response};
use tokio::sync::Mutex;

/// Load generator for a Confab server.
#[derive(Debug, Parser)]
#[command(name = "confab-bench", version, about)]
struct Cli {
    /// Server URL: ws://HOST:PORT/v1/ws or quic://HOST:PORT.
    #[arg(long, global = true, default_value = "ws://127.0.0.1:7600/v1/ws")]
    url: String,
    /// Accept any server certificate (QUIC).
    #[arg(long, global = true)]
    insecure: bool,
    /// How long the measured phase runs.
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Write the results as JSON to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// W1: N authenticated idle connections; the server's RSS growth per connection.
    W1 {
        /// Connections to open and hold.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// The server's process id, to read its resident set size from /proc.
        #[arg(long)]
        server_pid: u32,
    },
    /// W4: concurrent senders, each in its own conversation; acknowledged sends per second.
    W4 {
        /// Concurrent sender connections.
        #[arg(long, default_value_t = 64)]
        senders: usize,
        /// Requests each sender keeps in flight.
        #[arg(long, default_value_t = 1)]
        pipeline: usize,
    },
    /// W5: connect + authenticate (token in Hello) + Sync, then close, from concurrent loops.
    W5 {
        /// Concurrent connecting loops.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
}

/// Latencies in microseconds, for percentiles.
#[derive(Default)]
struct Samples(Vec<u64>);

impl Samples {
    fn percentile(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i] as f64 / 1000.0
    }
}

fn options(cli: &Cli) -> ConnectOptions {
    let mut o = ConnectOptions { client_name: "confab-bench".into(), ..Default::default() };
    o.transport.trust = if cli.insecure { Trust::Insecure } else { Trust::SystemRoots };
    o.request_timeout = Duration::from_secs(30);
    o
}

/// A signed-in client, registered with a fresh name (RATE_LIMITED answers are waited out).
async fn account(cli: &Cli, tag: &str) -> anyhow::Result<(Client, v1::AuthResult)> {
    let (c, _events) = Client::connect(&cli.url, options(cli)).await?;
    let mut r = [0u8; 6];
    getrandom::fill(&mut r).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let name = format!("bench{tag}{}", hex::encode(r));
    loop {
        let req = v1::Register {
            username: name.clone(),
            password: "bench password".into(),
            device_name: "bench".into(),
            ..Default::default()
        };
        match c.register(req).await {
            Ok(a) => return Ok((c, a)),
            Err(ClientError::Server(e)) if e.code() == ErrorCode::RateLimited => {
                tokio::time::sleep(Duration::from_millis(e.retry_after_ms.max(1))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Prints one progress line per second until `stop`.
fn progress(label: &'static str, count: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut second = 0;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            second += 1;
            let now = count.load(Ordering::Relaxed);
            eprintln!("[{second:>3}s] {label}: {} /s (total {now})", now - last);
            last = now;
        }
    })
}

async fn w4(cli: &Cli, senders: usize, pipeline: usize) -> anyhow::Result<serde_json::Value> {
    eprintln!("W4: preparing {senders} senders");
    let mut clients = Vec::new();
    for i in 0..senders {
        let (c, _) = account(cli, &format!("w4s{i}")).await?;
        let conv = match c
            .request(Request::CreateConversation(v1::CreateConversation {
                kind: v1::ConversationKind::Group as i32,
                title: "bench".into(),
                ..Default::default()
            }))
            .await?
        {
            response::Result::CreateConversation(x) => x.conversation_id,
            other => anyhow::bail!("unexpected {other:?}"),
        };
        clients.push((c, conv));
    }
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Samples::default()));
    let p = progress("acknowledged sends", acked.clone(), stop.clone());
    let started = Instant::now();
    let deadline = started + cli.duration;
    let mut tasks = Vec::new();
    for (i, (c, conv)) in clients.into_iter().enumerate() {
        for lane in 0..pipeline {
            let (c, acked, errors, samples) = (c.clone(), acked.clone(), errors.clone(), samples.clone());
            tasks.push(tokio::spawn(async move {
                let mut local = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let t = Instant::now();
                    let req = v1::SendMessage {
                        conversation_id: conv,
                        client_msg_id: format!("{i}-{lane}-{n}"),
                        text: "x".repeat(100),
                        ..Default::default()
                    };
                    match c.request(Request::SendMessage(req)).await {
                        Ok(_) => {
                            local.push(t.elapsed().as_micros() as u64);
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                samples.lock().await.0.extend(local);
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = p.await;
    let secs = started.elapsed().as_secs_f64();
    let mut s = samples.lock().await;
    let total = acked.load(Ordering::Relaxed);
    Ok(serde_json::json!({
        "scenario": "W4",
        "url": cli.url,
        "senders": senders,
        "pipeline": pipeline,
        "seconds": secs,
        "acknowledged": total,
        "errors": errors.load(Ordering::Relaxed),
        "sends_per_second": total as f64 / secs,
        "ack_ms_p50": s.percentile(0.50),
        "ack_ms_p99": s.percentile(0.99),
    }))
}

/// Resident set size of a process, in KiB, from /proc.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

async fn w1(cli: &Cli, connections: usize, server_pid: u32) -> anyhow::Result<serde_json::Value> {
    let (_c, auth) = account(cli, "w1").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(server_pid)?;
    let opened = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let p = progress("connections opened", opened.clone(), stop.clone());
    let mut held = Vec::with_capacity(connections);
    let mut o = options(cli);
    o.access_token = Some(auth.access_token.clone());
    for chunk in (0..connections).collect::<Vec<_>>().chunks(50) {
        let mut set = tokio::task::JoinSet::new();
        for _ in chunk {
            let (url, o) = (cli.url.clone(), o.clone());
            set.spawn(async move { Client::connect(&url, o).await });
        }
        while let Some(r) = set.join_next().await {
            held.push(r??);
            opened.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Hold them idle for the measured period (the client library keeps them alive with Pings).
    tokio::time::sleep(cli.duration).await;
    let after = rss_kib(server_pid)?;
    stop.store(true, Ordering::Relaxed);
    let _ = p.await;
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / connections as f64;
    drop(held);
    Ok(serde_json::json!({
        "scenario": "W1",
        "url": cli.url,
        "connections": connections,
        "server_rss_before_kib": before,
        "server_rss_after_kib": after,
        "bytes_per_connection": per,
    }))
}

async fn w5(cli: &Cli, concurrency: usize) -> anyhow::Result<serde_json::Value> {
    let (_c, auth) = account(cli, "w5").await?;
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Samples::default()));
    let p = progress("connect+auth+sync", done.clone(), stop.clone());
    let started = Instant::now();
    let deadline = started + cli.duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let mut o = options(cli);
        o.access_token = Some(auth.access_token.clone());
        let (url, done, errors, samples) = (cli.url.clone(), done.clone(), errors.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = async {
                    let (c, _e) = Client::connect(&url, o.clone()).await?;
                    c.request(Request::Sync(v1::Sync::default())).await?;
                    c.close().await;
                    Ok::<_, ClientError>(())
                }
                .await;
                match ok {
                    Ok(()) => {
                        local.push(t.elapsed().as_micros() as u64);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            samples.lock().await.0.extend(local);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = p.await;
    let secs = started.elapsed().as_secs_f64();
    let total = done.load(Ordering::Relaxed);
    let mut s = samples.lock().await;
    Ok(serde_json::json!({
        "scenario": "W5",
        "url": cli.url,
        "concurrency": concurrency,
        "seconds": secs,
        "completed": total,
        "errors": errors.load(Ordering::Relaxed),
        "per_second": total as f64 / secs,
        "ms_p50": s.percentile(0.50),
        "ms_p99": s.percentile(0.99),
    }))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async {
        match cli.scenario {
            Scenario::W1 { connections, server_pid } => w1(&cli, connections, server_pid).await,
            Scenario::W4 { senders, pipeline } => w4(&cli, senders, pipeline.max(1)).await,
            Scenario::W5 { concurrency } => w5(&cli, concurrency.max(1)).await,
        }
    })?;
    println!("{:<24} value", "metric");
    if let Some(map) = result.as_object() {
        for (k, v) in map {
            println!("{k:<24} {v}");
        }
    }
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
