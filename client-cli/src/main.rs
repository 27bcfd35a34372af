//! `confab`: the Confab terminal client. This release has `ping`; the chat subcommands and the
//! TUI build on the same client library.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use confab_protocol::client::{Client, ConnectOptions, Trust};

/// Confab terminal client.
#[derive(Debug, Parser)]
#[command(name = "confab", version, about)]
struct Cli {
    /// Server URL: ws://HOST:PORT/v1/ws, wss://…, or quic://HOST:PORT.
    #[arg(long, short, env = "CONFAB_SERVER", default_value = "ws://127.0.0.1:7600/v1/ws", global = true)]
    server: String,
    /// Trust exactly this server certificate (PEM or DER), e.g. confab-data/quic-cert.pem.
    #[arg(long, env = "CONFAB_CERT", value_name = "FILE", global = true, conflicts_with = "insecure")]
    cert: Option<PathBuf>,
    /// Accept any server certificate. For development only.
    #[arg(long, global = true)]
    insecure: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect, print the server's Welcome and the round-trip time.
    Ping {
        /// Round trips to measure.
        #[arg(long, short = 'n', default_value_t = 3)]
        count: u32,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("confab: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let trust = match (&cli.cert, cli.insecure) {
        (Some(path), _) => Trust::pinned_from_file(path)?,
        (None, true) => Trust::Insecure,
        (None, false) => Trust::SystemRoots,
    };
    let mut opts = ConnectOptions { client_name: "confab-cli".into(), ..Default::default() };
    opts.transport.trust = trust;
    match cli.command {
        Command::Ping { count, json } => ping(&cli.server, opts, count, json).await,
    }
}

async fn ping(server: &str, opts: ConnectOptions, count: u32, json: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let (client, _events) = Client::connect(server, opts).await.with_context(|| format!("connecting to {server}"))?;
    let connect = started.elapsed();
    let mut rtts = Vec::new();
    for _ in 0..count.max(1) {
        let t = Instant::now();
        client.ping().await.context("ping")?;
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
