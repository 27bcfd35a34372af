//! `confab-bench`: a load generator on the Confab client library. It sends traffic only to the
//! address it is given, bounded in time and connections, prints progress each second, and ends
//! with a table (and, with --json, a JSON file). Scenarios W1-W6 (docs/benchmarks.md); W2, W3 and
//! W5 also drive the Socket.IO and Bun comparison peers through adapters (`--url
//! socketio://HOST:PORT`, `--url bun://HOST:PORT`).
//! W2 and W3 also spread their members over the nodes of a cluster (`--url` once per node) and
//! sample what each step costs outside the generator (`--cpu`, `--metrics`, `--nats-monitor`).
//! `media`: upload and download throughput against a loopback TCP copy, concurrent uploads with
//! the server's RSS, and message latency during an upload on the same connection.
//! `search`: a generated store seeded over the protocol, the index's catch-up time, and latency
//! percentiles per query shape for a user in some of its conversations.
//! `push`: pushes per second sustained to a WebPush endpoint the bench runs itself, and the
//! latency from a message's commit to the endpoint receiving its push, over a ramp of rates.

mod bun;
mod ceiling;
mod login_storm;
mod media;
mod media_latency;
mod peer;
mod probe;
mod push;
mod rooms;
mod search;
mod search_corpus;
mod search_measure;
mod sfu;
mod sfu_measure;
mod sfu_rooms;
mod socketio;
mod stats;
mod ws_writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use confab_protocol::client::{Client, ConnectOptions, Trust};
use confab_protocol::v1::{self, client_frame::Request, response};

use peer::Peer;
use stats::{closed_loops, progress};

/// Load generator for a Confab server.
#[derive(Debug, Parser)]
#[command(name = "confab-bench", version, about)]
struct Cli {
    /// Server URL: ws://HOST:PORT/v1/ws or quic://HOST:PORT (Confab), socketio://HOST:PORT or
    /// bun://HOST:PORT (the Socket.IO and Bun comparison peers; W2, W3 and W5 only). W2 and W3 take it once per node of a
    /// cluster (one transport) and spread their members over the nodes, round robin.
    #[arg(long, global = true, default_value = "ws://127.0.0.1:7600/v1/ws", action = clap::ArgAction::Append)]
    url: Vec<String>,
    /// W2/W3/push: a process whose CPU time (with its children's) is sampled around every step,
    /// as LABEL=PID (repeatable: each node, nats-server, the PostgreSQL postmaster).
    #[arg(long, global = true, value_name = "LABEL=PID", value_parser = probe::labelled_pid)]
    cpu: Vec<(String, u32)>,
    /// W2/W3/push: a node's metrics URL (http://HOST:PORT/metrics, repeatable); the
    /// confab_cluster_* counters and store operations are sampled around every step (push: also
    /// the push delay, provider and store durations of the first URL's server).
    #[arg(long, global = true, value_name = "URL")]
    metrics: Vec<String>,
    /// W2/W3: nats-server's monitoring URL (http://HOST:PORT, its -m port); its message and byte
    /// counters (/varz) are sampled around every step.
    #[arg(long, global = true, value_name = "URL")]
    nats_monitor: Option<String>,
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
    /// W2: one group of M members; senders post 100-byte messages at a ramped rate; deliveries
    /// per second and send-to-deliver latency per step.
    W2 {
        /// Members of the room (each its own account and connection).
        #[arg(long, default_value_t = 200)]
        members: usize,
        /// Members that send (the rate is spread over them).
        #[arg(long, default_value_t = 8)]
        senders: usize,
        /// Messages per second, one ramp step each.
        #[arg(long, default_value = "10,50,100,200,500,1000", value_parser = rates)]
        rates: Rates,
        /// Length of each ramp step.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        step: Duration,
    },
    /// W3: N clients in groups of 10, one sender per group; the total rate ramps as in W2.
    W3 {
        /// Clients in all (each its own account and connection).
        #[arg(long, default_value_t = 500)]
        clients: usize,
        /// Members per group.
        #[arg(long, default_value_t = 10)]
        group_size: usize,
        /// Messages per second in all groups together, one ramp step each.
        #[arg(long, default_value = "100,500,1000,2000,4000", value_parser = rates)]
        rates: Rates,
        /// Length of each ramp step.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        step: Duration,
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
    /// SFU: one publisher (audio + video at --video-kbps) to N subscribers through the server's
    /// SFU; loss, send-to-receive latency, server and generator CPU. The server's
    /// calls.max_participants must be at least N + 1 and its UDP port range hold 2 per peer.
    Sfu {
        /// Subscribers (each its own connection and WebRTC peer in this process).
        #[arg(long, default_value_t = 25)]
        subscribers: usize,
        /// Video bitrate of the publisher.
        #[arg(long, default_value_t = 2500)]
        video_kbps: u32,
        /// The server's process id, to read its CPU time from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
        /// In a meeting room (§25), the subscribers guests on one invite, instead of a group
        /// conversation of accounts.
        #[arg(long)]
        room: bool,
    },
    /// SFU rooms: R meeting rooms of S guests each, all publishing audio and video, each asking
    /// for its room speaker's video at HIGH and the others' at LOW; loss, send-to-receive
    /// latency, server and generator CPU. The server's calls.max_publishers must be at least S.
    SfuRooms {
        /// Meeting rooms.
        #[arg(long, default_value_t = 10)]
        rooms: usize,
        /// Participants per room (2-200), every one publishing.
        #[arg(long, default_value_t = 10)]
        size: usize,
        /// Video bitrate of each publisher (one layer).
        #[arg(long, default_value_t = 500)]
        video_kbps: u32,
        /// The server's process id, to read its CPU time from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// W6: failed logins for unknown accounts from concurrent loops (each from its own loopback
    /// source address); the server's RSS before, at its peak and after. Fails when the RSS after
    /// exceeds the baseline by more than --max-growth-mib.
    W6 {
        /// Failed logins in all.
        #[arg(long, default_value_t = 200)]
        logins: u64,
        /// Loops logging in at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// The server's process id, to read its resident set size from /proc.
        #[arg(long)]
        server_pid: u32,
        /// Allowed RSS growth after the storm, in MiB.
        #[arg(long, default_value_t = 64)]
        max_growth_mib: u64,
        /// Wait after the last login before reading the RSS.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        settle: Duration,
    },
    /// W5: connect + authenticate + subscribe (Confab: token in Hello, then Sync; Socket.IO: token
    /// in the handshake, then join a room), then close, from concurrent loops.
    W5 {
        /// Concurrent connecting loops.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Media: upload and download throughput for each size over the transport of --url, beside a
    /// plain loopback TCP copy of the same bytes (the ceiling); --concurrent uploads of the
    /// largest size with the server's RSS; message latency at --rate while the largest size is
    /// uploaded back to back (for at least --duration) on the sender's own connection, beside the
    /// same without uploads. The server's max_upload_bytes must admit the largest size.
    Media {
        /// File sizes (bytes, or with KiB, MiB, GiB), comma-separated.
        #[arg(long, default_value = "10MiB,100MiB", value_parser = media::sizes)]
        sizes: media::Sizes,
        /// Uploads of the largest size at once (each on its own connection of one account); 0 skips.
        #[arg(long, default_value_t = 4)]
        concurrent: usize,
        /// Messages per second in the latency phases; 0 skips them.
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// The server's process id, to sample its resident set size from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Search: seeds a generated store over the protocol (Zipf-like made-up words, a common word
    /// in ~7% of messages, a rare word, a phrase, Chinese sentences, identifiers), waits until the
    /// index caught up, then times each query shape as a user in some of the conversations.
    /// Defaults: 1,000,000 messages in 1,000 conversations, the probe user in 50; --quick: 20,000
    /// messages in 100 conversations, the probe in 10.
    Search {
        /// Small sizes for a smoke run (any size given explicitly still applies).
        #[arg(long)]
        quick: bool,
        /// Conversations in the store [default: 1000; --quick 100].
        #[arg(long)]
        conversations: Option<usize>,
        /// Messages in all [default: 1000000; --quick 20000].
        #[arg(long)]
        messages: Option<u64>,
        /// Members of each conversation, drawn from the senders (the owner and the probe besides).
        #[arg(long, default_value_t = 5)]
        members_per_conversation: usize,
        /// Sender accounts, each on its own connection while seeding [default: 200; --quick 20].
        #[arg(long)]
        senders: Option<usize>,
        /// Conversations the probe user (who searches) is a member of [default: 50; --quick 10].
        #[arg(long)]
        probe_conversations: Option<usize>,
        /// Sends outstanding over all sender connections while seeding.
        #[arg(long, default_value_t = 256)]
        in_flight: usize,
        /// Timed searches of each query shape [default: 200; --quick 20].
        #[arg(long)]
        repetitions: Option<usize>,
        /// The corpus's seed (the same seed, the same messages).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Longest wait for the index to catch up after seeding.
        #[arg(long, default_value = "30min", value_parser = humantime::parse_duration)]
        catch_up_limit: Duration,
    },
    /// Push: R offline recipients with WebPush targets at an endpoint this process runs, S
    /// senders in DMs with them sending at a ramped total rate (one push per message); per step
    /// pushes per second received, commit-to-endpoint latency p50/p99, pushes missing after the
    /// step's drain. The server must allow http and loopback WebPush endpoints
    /// ([push.webpush] allow_http, allow_private_addresses).
    Push {
        /// Recipient accounts (each one offline device with one WebPush target).
        #[arg(long, default_value_t = 200)]
        recipients: usize,
        /// Sender accounts (each connected, in DMs with its share of the recipients).
        #[arg(long, default_value_t = 20)]
        senders: usize,
        /// Messages (= pushes) per second in all, one ramp step each.
        #[arg(long, default_value = "100,200,500,1000,2000", value_parser = rates)]
        rates: Rates,
        /// Length of each ramp step's sending window.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        step: Duration,
        /// Sends each sender keeps in flight before it counts ticks as missed.
        #[arg(long, default_value_t = 16)]
        max_in_flight: u64,
        /// A step's drain ends after this long without a push arriving.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        drain_idle: Duration,
        /// A step's drain ends after this long in any case.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        drain_limit: Duration,
    },
    /// The ceiling of W2, W3 and W5: a relay speaking the Bun peer's protocol with nothing but
    /// the fan-out (no login, no storage); serves on --listen until killed and prints the
    /// address. The generator drives it with `--url ceiling://HOST:PORT`.
    CeilingRelay {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// The ceiling of W4: acknowledged durable inserts of 100-byte messages on the PostgreSQL at
    /// --database (a table of its own, dropped after), group-committed, from --senders loops
    /// for --duration.
    CeilingW4 {
        /// PostgreSQL URL.
        #[arg(long)]
        database: String,
        /// Concurrent sending loops (each waits for its commit).
        #[arg(long, default_value_t = 64)]
        senders: usize,
    },
}

impl Cli {
    /// The (first) server URL: the one every scenario but W2 and W3 uses.
    fn url(&self) -> &str {
        &self.url[0]
    }

    fn probes(&self) -> probe::Probes {
        probe::Probes { cpu: self.cpu.clone(), metrics: self.metrics.clone(), nats_monitor: self.nats_monitor.clone() }
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
    let (c, _events) = Client::connect(cli.url(), options(cli)).await?;
    let auth = peer::register(&c, &peer::random_name(tag)).await?;
    Ok((c, auth))
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
    let mut lanes = Vec::new();
    for (c, conv) in clients {
        for _ in 0..pipeline {
            let c = c.clone();
            lanes.push(move |_: u64| {
                let c = c.clone();
                async move {
                    let req = v1::SendMessage {
                        conversation_id: conv,
                        client_msg_id: confab_protocol::frames::new_client_msg_id(),
                        text: "x".repeat(100),
                        ..Default::default()
                    };
                    c.request(Request::SendMessage(req)).await.is_ok()
                }
            });
        }
    }
    let r = closed_loops("acknowledged sends", lanes, cli.duration).await;
    Ok(serde_json::json!({
        "scenario": "W4",
        "url": cli.url(),
        "senders": senders,
        "pipeline": pipeline,
        "seconds": r.seconds,
        "acknowledged": r.done,
        "errors": r.errors,
        "sends_per_second": r.done as f64 / r.seconds,
        "ack_ms_p50": r.p50_ms,
        "ack_ms_p99": r.p99_ms,
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
            let (url, o) = (cli.url().to_owned(), o.clone());
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
    p.abort();
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / connections as f64;
    drop(held);
    Ok(serde_json::json!({
        "scenario": "W1",
        "url": cli.url(),
        "connections": connections,
        "server_rss_before_kib": before,
        "server_rss_after_kib": after,
        "bytes_per_connection": per,
    }))
}

async fn w5(cli: &Cli, concurrency: usize) -> anyhow::Result<serde_json::Value> {
    let peer = Peer::from_url(cli.url(), cli.insecure);
    let token = Arc::new(peer.credential().await?);
    let lanes: Vec<_> = (0..concurrency)
        .map(|_| {
            let (peer, token) = (peer.clone(), token.clone());
            move |_: u64| {
                let (peer, token) = (peer.clone(), token.clone());
                async move { peer.connect_auth_subscribe(&token).await.is_ok() }
            }
        })
        .collect();
    let r = closed_loops("connect+auth+subscribe", lanes, cli.duration).await;
    Ok(serde_json::json!({
        "scenario": "W5",
        "peer": peer.name(),
        "url": cli.url(),
        "concurrency": concurrency,
        "seconds": r.seconds,
        "completed": r.done,
        "errors": r.errors,
        "per_second": r.done as f64 / r.seconds,
        "ms_p50": r.p50_ms,
        "ms_p99": r.p99_ms,
    }))
}

/// Ramp steps in messages per second, from a comma-separated list ("100,200,500").
#[derive(Clone, Debug)]
struct Rates(Vec<u32>);

fn rates(s: &str) -> Result<Rates, String> {
    let v: Result<Vec<u32>, _> = s.split(',').map(|r| r.trim().parse::<u32>()).collect();
    match v {
        Ok(v) if !v.is_empty() && v.iter().all(|&r| r > 0) => Ok(Rates(v)),
        _ => Err(format!("expected positive rates separated by commas, got {s:?}")),
    }
}

/// The result as a table: one row per scalar metric, then the ramp steps (if any) one per row.
fn print_table(result: &serde_json::Value) {
    println!("{:<44} value", "metric");
    let Some(map) = result.as_object() else { return };
    for (k, v) in map.iter().filter(|(_, v)| !v.is_array() && !v.is_object()) {
        println!("{k:<44} {v}");
    }
    if map.get("scenario").is_some_and(|s| s == "media") {
        media::print_tables(result);
        return;
    }
    if map.get("scenario").is_some_and(|s| s == "search") {
        search_measure::print_tables(result);
        return;
    }
    if map.get("scenario").is_some_and(|s| s == "push") {
        push::print_tables(result);
        return;
    }
    let Some(steps) = map.get("steps").and_then(|s| s.as_array()) else { return };
    println!();
    println!(
        "{:>10} {:>8} {:>10} {:>13} {:>10} {:>9} {:>9} {:>12} {:>12}",
        "msgs/s", "acked", "delivered", "deliveries/s", "ratio", "p50 ms", "p99 ms", "cpu us/dlv", "dlv/cpu-s"
    );
    for st in steps {
        let f = |k: &str| st[k].as_f64().unwrap_or(0.0);
        let cpu = st["cpu_us_per_delivery"].as_f64().map_or("-".to_owned(), |v| format!("{v:.2}"));
        let per_cpu = st["deliveries_per_cpu_second"].as_f64().map_or("-".to_owned(), |v| format!("{v:.0}"));
        println!(
            "{:>10} {:>8} {:>10} {:>13.0} {:>10.4} {:>9.2} {:>9.2} {cpu:>12} {per_cpu:>12}",
            // As numbers: a JSON value's Display ignores the column width.
            st["target_messages_per_second"].as_u64().unwrap_or(0),
            st["acked"].as_u64().unwrap_or(0),
            st["deliveries"].as_u64().unwrap_or(0),
            f("deliveries_per_second"),
            f("delivered_ratio"),
            f("latency_ms_p50"),
            f("latency_ms_p99"),
        );
    }
    if let Some(best) = map.get("best_step_with_p99_le_50ms_and_all_delivered").filter(|b| !b.is_null()) {
        println!("best step with p99 <= 50 ms and every delivery: {} msgs/s", best["target_messages_per_second"]);
    }
    if let Some(c) = map.get("costs_over_ramp") {
        println!(
            "over the ramp ({:.1} s, {} deliveries, {} messages): CPU {} s = {} us per delivery = {} deliveries \
             per CPU-second; generator {:.2} s; load average {}",
            c["seconds"].as_f64().unwrap_or(0.0),
            c["deliveries"],
            c["messages"],
            c["cpu_seconds"],
            c["cpu_us_per_delivery"],
            c["deliveries_per_cpu_second"].as_f64().map_or("-".to_owned(), |v| format!("{v:.0}")),
            c["generator_cpu_seconds"].as_f64().unwrap_or(0.0),
            c["load_average_1m"],
        );
        if c["cluster"].as_object().is_some_and(|m| !m.is_empty())
            || c["nats"].as_object().is_some_and(|m| !m.is_empty())
        {
            println!("  cluster counters {}; nats-server {}", c["cluster"], c["nats"]);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.url.len() > 1 && !matches!(cli.scenario, Scenario::W2 { .. } | Scenario::W3 { .. }) {
        anyhow::bail!("several --url (the nodes of a cluster) are for W2 and W3 only");
    }
    if !cli.probes().is_empty() && !matches!(cli.scenario, Scenario::W2 { .. } | Scenario::W3 { .. }) {
        let push = matches!(cli.scenario, Scenario::Push { .. });
        if !push || cli.nats_monitor.is_some() {
            anyhow::bail!("--cpu and --metrics are for W2, W3 and push only, --nats-monitor for W2 and W3");
        }
    }
    if ["socketio://", "bun://", "ceiling://"].iter().any(|p| cli.url().starts_with(p))
        && matches!(
            cli.scenario,
            Scenario::W1 { .. }
                | Scenario::W4 { .. }
                | Scenario::W6 { .. }
                | Scenario::Sfu { .. }
                | Scenario::SfuRooms { .. }
                | Scenario::Media { .. }
                | Scenario::Search { .. }
                | Scenario::Push { .. }
        )
    {
        anyhow::bail!(
            "W1, W4, W6, the SFU ones, media, search and push measure Confab only; the Socket.IO and Bun peers run W2, W3 and W5"
        );
    }
    // W1 and the storms hold a descriptor per connection: the soft limit (often 1,024) goes up to
    // the hard one, before any other thread exists.
    if let Err(e) = confab_server::limits::DescriptorLimit::raise_soft_to_hard() {
        eprintln!("could not raise the open-file limit: {e}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async {
        match &cli.scenario {
            Scenario::W1 { connections, server_pid } => w1(&cli, *connections, *server_pid).await,
            Scenario::W4 { senders, pipeline } => w4(&cli, *senders, (*pipeline).max(1)).await,
            Scenario::W2 { members, senders, rates, step } => {
                let plan = rooms::Plan {
                    scenario: "W2",
                    groups: 1,
                    members_per_group: (*members).max(2),
                    senders_per_group: (*senders).clamp(1, (*members).max(2)),
                    rates: rates.0.clone(),
                    step: *step,
                    max_in_flight: 64,
                };
                rooms::run(&Peer::from_urls(&cli.url, cli.insecure)?, &plan, &cli.probes()).await
            }
            Scenario::W3 { clients, group_size, rates, step } => {
                let size = (*group_size).max(2);
                let plan = rooms::Plan {
                    scenario: "W3",
                    groups: (clients / size).max(1),
                    members_per_group: size,
                    senders_per_group: 1,
                    rates: rates.0.clone(),
                    step: *step,
                    max_in_flight: 16,
                };
                rooms::run(&Peer::from_urls(&cli.url, cli.insecure)?, &plan, &cli.probes()).await
            }
            Scenario::W5 { concurrency } => w5(&cli, (*concurrency).max(1)).await,
            Scenario::W6 { logins, concurrency, server_pid, max_growth_mib, settle } => {
                let plan = login_storm::Plan {
                    logins: *logins,
                    concurrency: (*concurrency).max(1),
                    server_pid: *server_pid,
                    max_growth_mib: *max_growth_mib,
                    settle: *settle,
                };
                login_storm::run(cli.url(), &options(&cli), &plan).await
            }
            Scenario::Media { sizes, concurrent, rate, server_pid } => {
                let plan = media::Plan {
                    sizes: sizes.0.clone(),
                    concurrent: *concurrent,
                    rate: *rate,
                    latency_for: cli.duration,
                    server_pid: *server_pid,
                };
                media::run(cli.url(), &options(&cli), &plan).await
            }
            Scenario::Search {
                quick,
                conversations,
                messages,
                members_per_conversation,
                senders,
                probe_conversations,
                in_flight,
                repetitions,
                seed,
                catch_up_limit,
            } => {
                let pick = |given: Option<usize>, full: usize, small: usize| {
                    given.unwrap_or(if *quick { small } else { full })
                };
                let plan = search::Plan {
                    shape: search_corpus::Shape {
                        conversations: pick(*conversations, 1000, 100),
                        messages: messages.unwrap_or(if *quick { 20_000 } else { 1_000_000 }),
                        members_per_conversation: *members_per_conversation,
                        senders: pick(*senders, 200, 20),
                        probe_conversations: pick(*probe_conversations, 50, 10),
                        seed: *seed,
                    },
                    in_flight: (*in_flight).max(1),
                    repetitions: pick(*repetitions, 200, 20),
                    catch_up_limit: *catch_up_limit,
                };
                search::run(cli.url(), &options(&cli), &plan).await
            }
            Scenario::Push { recipients, senders, rates, step, max_in_flight, drain_idle, drain_limit } => {
                let plan = push::Plan {
                    recipients: (*recipients).max(1),
                    senders: (*senders).clamp(1, (*recipients).max(1)),
                    rates: rates.0.clone(),
                    step: *step,
                    max_in_flight: (*max_in_flight).max(1),
                    drain_idle: *drain_idle,
                    drain_limit: *drain_limit,
                };
                push::run(cli.url(), &options(&cli), &plan, &cli.probes()).await
            }
            Scenario::Sfu { subscribers, video_kbps, server_pid, room } => {
                let plan = sfu::Plan {
                    subscribers: (*subscribers).max(1),
                    video_kbps: (*video_kbps).max(1),
                    duration: cli.duration,
                    server_pid: *server_pid,
                    room: *room,
                };
                sfu::run(cli.url(), &options(&cli), &plan).await
            }
            Scenario::SfuRooms { rooms, size, video_kbps, server_pid } => {
                let plan = sfu_rooms::Plan {
                    rooms: *rooms,
                    size: *size,
                    video_kbps: (*video_kbps).max(1),
                    duration: cli.duration,
                    server_pid: *server_pid,
                };
                sfu_rooms::run(cli.url(), &options(&cli), &plan).await
            }
            Scenario::CeilingRelay { listen } => ceiling::relay(listen).await.map(|()| serde_json::Value::Null),
            Scenario::CeilingW4 { database, senders } => ceiling::w4(database, (*senders).max(1), cli.duration).await,
        }
    })?;
    let mut result = result;
    if matches!(cli.scenario, Scenario::W2 { .. } | Scenario::W3 { .. })
        && let Some(m) = result.as_object_mut()
    {
        m.insert("urls".into(), serde_json::json!(cli.url));
    }
    print_table(&result);
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if result["within_bound"] == false {
        anyhow::bail!("the server's RSS after the run exceeds the bound (see the table above)");
    }
    Ok(())
}
