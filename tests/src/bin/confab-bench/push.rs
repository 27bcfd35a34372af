//! The push scenario (issue 18): pushes per second sustained to a WebPush provider and the
//! latency from a message's commit to the provider receiving its push.
//!
//! The bench runs its own WebPush endpoint (a lean HTTP/1.1 server on 127.0.0.1:0 answering 201
//! and recording, for every POST, its arrival time and the `conversation_id` and `seq` of the
//! JSON body's `data`). R recipient accounts each register a WEBPUSH target at their own path of
//! it and disconnect: offline devices, pushed at once (§24.2; `push.ack_wait` does not apply).
//! S sender accounts share the recipients, each in a DM with its share (recipient i with sender
//! i mod S), and send 100-byte messages round robin over their DMs at a total rate ramped step
//! by step (as W3: a tick per message, at most `max_in_flight` sends waiting per sender, a tick
//! that finds them all waiting counted as missed). Every message makes exactly one push.
//!
//! A message's commit is taken as the moment its SendMessageResult reaches the sender (the server
//! answers after the commit); its push's latency is the endpoint's arrival time minus that, both
//! on this process's clock, matched by (conversation_id, seq). After each step's sending window
//! the step drains: until every acknowledged message's push arrived, or `drain_idle` passed
//! without a new one (or `drain_limit` in all); what has not arrived then is missing. A step
//! reports pushes received per second (its pushes over the time from its start to its last
//! push), p50/p99/max latency, and with `--metrics` the server's push and store figures over it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use confab_protocol::client::{Client, ConnectOptions};
use confab_protocol::v1::{self, client_frame::Request, response};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::media::account;
use crate::probe::{self, Probes};
use crate::stats::{Samples, now_ns, progress};

/// Accounts registered, targets registered and DMs created at once.
const SETUP_CONCURRENCY: usize = 16;
/// The latency bound of the best step.
const P99_BOUND_MS: f64 = 500.0;
/// A step whose p99 exceeds this ends the ramp: the server is past its limit, higher rates only
/// queue more.
const STOP_P99_MS: f64 = 5000.0;

/// What the push scenario does.
#[derive(Clone, Debug)]
pub struct Plan {
    pub recipients: usize,
    pub senders: usize,
    /// Total messages (= pushes) per second, one step each.
    pub rates: Vec<u32>,
    pub step: Duration,
    /// Sends a sender keeps in flight before it counts ticks as missed.
    pub max_in_flight: u64,
    /// A step's drain ends after this long without a push arriving.
    pub drain_idle: Duration,
    /// A step's drain ends after this long in any case.
    pub drain_limit: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The WebPush endpoint: every push that arrived, by (conversation, seq).
#[derive(Default)]
struct Arrivals {
    /// (conversation_id, seq) → (first arrival in ns on the stats clock, how many times).
    by_key: Mutex<HashMap<(u64, u64), (u64, u32)>>,
    /// Requests received (all of them, duplicates and unparsable ones included).
    total: Arc<AtomicU64>,
    /// Requests whose body had no conversation_id and seq.
    unparsable: AtomicU64,
}

impl Arrivals {
    fn record(&self, body: &[u8], at_ns: u64) {
        self.total.fetch_add(1, Ordering::Relaxed);
        match key_of(body) {
            Some(k) => {
                let mut m = lock(&self.by_key);
                let e = m.entry(k).or_insert((at_ns, 0));
                e.1 += 1;
            }
            None => {
                self.unparsable.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// (conversation_id, seq) from a WebPush body `{"data": {"conversation_id": "…", "seq": "…"}}`.
fn key_of(body: &[u8]) -> Option<(u64, u64)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let d = v.get("data")?;
    let num = |k: &str| d.get(k)?.as_str()?.parse::<u64>().ok();
    Some((num("conversation_id")?, num("seq")?))
}

/// Serves the endpoint on 127.0.0.1 (any port) until the returned task is aborted.
async fn start_endpoint(arrivals: Arc<Arrivals>) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.context("binding the WebPush endpoint")?;
    let base = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let arrivals = arrivals.clone();
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let arrivals = arrivals.clone();
                async move {
                    let post = request.method() == hyper::Method::POST;
                    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let status = if post {
                        arrivals.record(&body, now_ns());
                        201
                    } else {
                        405
                    };
                    let mut response = hyper::Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
                    Ok::<_, Infallible>(response)
                }
            });
            connections.spawn(async move {
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
            while connections.try_join_next().is_some() {}
        }
    });
    Ok((base, task))
}

/// What one step saw on the sending side.
#[derive(Default)]
struct Step {
    attempted: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    missed: AtomicU64,
    /// (conversation_id, seq, acknowledgement time in ns) of every acknowledged message.
    acks: Mutex<Vec<(u64, u64, u64)>>,
}

impl Step {
    fn in_flight(&self) -> bool {
        self.attempted.load(Ordering::Relaxed)
            > self.acked.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    /// How many acknowledged messages' pushes arrived.
    fn arrived(&self, arrivals: &Arrivals) -> usize {
        let acks = lock(&self.acks);
        let m = lock(&arrivals.by_key);
        acks.iter().filter(|(c, s, _)| m.contains_key(&(*c, *s))).count()
    }
}

/// Runs the scenario against `url` and returns its JSON. `probes` (the server's CPU, its
/// /metrics) are sampled around every step, sending window and drain together.
pub async fn run(url: &str, opts: &ConnectOptions, plan: &Plan, probes: &Probes) -> anyhow::Result<Value> {
    let arrivals = Arc::new(Arrivals::default());
    let (base, endpoint) = start_endpoint(arrivals.clone()).await?;
    let r = measure(url, opts, plan, probes, &arrivals, &base).await;
    endpoint.abort();
    r
}

async fn measure(
    url: &str,
    opts: &ConnectOptions,
    plan: &Plan,
    probes: &Probes,
    arrivals: &Arc<Arrivals>,
    base: &str,
) -> anyhow::Result<Value> {
    eprintln!(
        "push: {} offline recipients with WebPush targets at {base}, {} senders in DMs with them",
        plan.recipients, plan.senders
    );
    let setup = Instant::now();
    let recipients = register_recipients(url, opts, base, plan.recipients).await?;
    let senders: Vec<(Client, u64)> = futures_util::stream::iter(0..plan.senders)
        .map(|k| async move {
            let (c, auth) = account(url, opts, &format!("pushs{k}")).await?;
            anyhow::Ok((c, auth.me.as_ref().map(|m| m.user_id).context("AuthResult without me")?))
        })
        .buffered(SETUP_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let convs: Vec<u64> = futures_util::stream::iter(recipients.iter().enumerate())
        .map(|(i, &r)| {
            let c = senders[i % senders.len()].0.clone();
            async move { dm(&c, r).await }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let mut lanes: Vec<(Client, Vec<u64>)> = senders.iter().map(|(c, _)| (c.clone(), Vec::new())).collect();
    for (i, conv) in convs.iter().enumerate() {
        lanes[i % plan.senders].1.push(*conv);
    }
    // The recipients' connections are closed: let the server see them gone before the ramp.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let setup_secs = setup.elapsed().as_secs_f64();
    eprintln!("push: set up in {setup_secs:.1} s; ramping {:?} messages/s, {:?} per step", plan.rates, plan.step);

    let steps: Arc<Vec<Step>> = Arc::new(plan.rates.iter().map(|_| Step::default()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let p = progress("pushes received", arrivals.total.clone(), stop.clone());
    let mut rows = Vec::new();
    let mut best: Option<Value> = None;
    let mut stopped_because = Value::Null;
    let ramp_from = probes.sample().await?;
    let ramp_metrics_from = server_metrics(probes).await?;
    for (k, &rate) in plan.rates.iter().enumerate() {
        let from = probes.sample().await?;
        let metrics_from = server_metrics(probes).await?;
        eprintln!("push: step {} at {rate} messages/s", k + 1);
        let started = Instant::now();
        let started_ns = now_ns();
        send_step(&lanes, &steps, k, rate, plan).await;
        let window_secs = started.elapsed().as_secs_f64();
        let drain_secs = drain(&steps[k], arrivals, plan).await;
        let to = probes.sample().await?;
        let metrics_to = server_metrics(probes).await?;
        let mut row = step_row(&steps[k], arrivals, rate, started_ns, window_secs, drain_secs);
        if !probes.is_empty() {
            let st = &steps[k];
            let pushes = row["pushes"].as_u64().unwrap_or(0);
            row["costs"] = probes.cost(&from, &to, pushes, st.acked.load(Ordering::Relaxed));
            row["server"] = metrics_delta(&metrics_from, &metrics_to);
        }
        let (p99, missing) = (row["latency_ms_p99"].as_f64().unwrap_or(0.0), row["missing"].as_u64().unwrap_or(0));
        eprintln!(
            "push: step {} target {rate}/s: {:.0} pushes/s, {} of {} arrived, p50 {:.1} ms, p99 {p99:.1} ms (drained in {drain_secs:.1} s)",
            k + 1,
            row["pushes_per_second"].as_f64().unwrap_or(0.0),
            row["pushes"],
            row["acked"],
            row["latency_ms_p50"].as_f64().unwrap_or(0.0),
        );
        let good = p99 <= P99_BOUND_MS && missing == 0 && row["pushes"].as_u64().unwrap_or(0) > 0;
        if good && best.as_ref().is_none_or(|b| b["pushes_per_second"].as_f64() < row["pushes_per_second"].as_f64()) {
            best = Some(row.clone());
        }
        let (attempted, missed) = (steps[k].attempted.load(Ordering::Relaxed), steps[k].missed.load(Ordering::Relaxed));
        let reason = if missed > (attempted + missed) / 10 {
            Some(format!("senders saturated at {rate} messages/s ({missed} ticks missed)"))
        } else if missing > 0 {
            Some(format!("{missing} pushes missing after the drain at {rate} messages/s"))
        } else if p99 > STOP_P99_MS {
            Some(format!("p99 {p99:.0} ms at {rate} messages/s"))
        } else {
            None
        };
        rows.push(row);
        if let Some(reason) = reason {
            eprintln!("push: {reason}; stopping the ramp");
            stopped_because = json!(reason);
            break;
        }
    }
    let ramp_to = probes.sample().await?;
    let ramp_metrics_to = server_metrics(probes).await?;
    stop.store(true, Ordering::Relaxed);
    p.abort();
    for (c, _) in senders {
        c.close().await;
    }
    let pushes: u64 = rows.iter().filter_map(|r| r["pushes"].as_u64()).sum();
    let messages: u64 = rows.iter().filter_map(|r| r["acked"].as_u64()).sum();
    let (ramp_costs, ramp_server) = if probes.is_empty() {
        (Value::Null, Value::Null)
    } else {
        (probes.cost(&ramp_from, &ramp_to, pushes, messages), metrics_delta(&ramp_metrics_from, &ramp_metrics_to))
    };
    Ok(json!({
        "scenario": "push",
        "url": url,
        "provider": "webpush",
        "recipients": plan.recipients,
        "senders": plan.senders,
        "conversation_kind": "direct",
        "pushes_per_message": 1,
        "step_seconds": plan.step.as_secs_f64(),
        "max_in_flight_per_sender": plan.max_in_flight,
        "drain_idle_seconds": plan.drain_idle.as_secs_f64(),
        "setup_seconds": setup_secs,
        "requests_received": arrivals.total.load(Ordering::Relaxed),
        "requests_unparsable": arrivals.unparsable.load(Ordering::Relaxed),
        "best_step_with_p99_le_500ms_and_none_missing": best,
        "ramp_stopped_because": stopped_because,
        "costs_over_ramp": ramp_costs,
        "server_over_ramp": ramp_server,
        "steps": rows,
    }))
}

/// Registers `n` accounts, each registering a WEBPUSH target at `base/r/<i>`, then closes their
/// connections; their user ids.
async fn register_recipients(url: &str, opts: &ConnectOptions, base: &str, n: usize) -> anyhow::Result<Vec<u64>> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let p = progress("recipients registered", done.clone(), stop.clone());
    let made: Vec<anyhow::Result<u64>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let done = done.clone();
            async move {
                let (c, auth) = account(url, opts, &format!("pushr{i}")).await?;
                let t = v1::RegisterPushTarget {
                    provider: v1::PushProvider::Webpush as i32,
                    token: format!("{base}/r/{i}"),
                    ..Default::default()
                };
                c.register_push_target(t).await.context("RegisterPushTarget")?;
                c.close().await;
                done.fetch_add(1, Ordering::Relaxed);
                auth.me.as_ref().map(|m| m.user_id).context("AuthResult without me")
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    stop.store(true, Ordering::Relaxed);
    p.abort();
    made.into_iter().collect()
}

async fn dm(c: &Client, other: u64) -> anyhow::Result<u64> {
    let r = v1::CreateConversation {
        kind: v1::ConversationKind::Direct as i32,
        member_ids: vec![other],
        ..Default::default()
    };
    match c.request(Request::CreateConversation(r)).await? {
        response::Result::CreateConversation(x) => Ok(x.conversation_id),
        other => anyhow::bail!("CreateConversation answered {other:?}"),
    }
}

/// One step's sending window: each sender ticks at its share of `rate`, staggered, and sends the
/// next of its DMs (round robin) on each tick unless `max_in_flight` of its sends are waiting.
async fn send_step(lanes: &[(Client, Vec<u64>)], steps: &Arc<Vec<Step>>, k: usize, rate: u32, plan: &Plan) {
    let step_end = Instant::now() + plan.step;
    let interval = Duration::from_secs_f64(lanes.len() as f64 / f64::from(rate.max(1)));
    let mut tasks = Vec::with_capacity(lanes.len());
    for (s, (client, convs)) in lanes.iter().enumerate() {
        let (client, convs, steps) = (client.clone(), convs.clone(), steps.clone());
        let max_in_flight = plan.max_in_flight;
        let offset = interval.mul_f64(s as f64 / lanes.len() as f64);
        tasks.push(tokio::spawn(async move {
            let in_flight = Arc::new(AtomicU64::new(0));
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut next = 0usize;
            loop {
                tick.tick().await;
                if Instant::now() >= step_end {
                    break;
                }
                let st = &steps[k];
                if in_flight.load(Ordering::Relaxed) >= max_in_flight || convs.is_empty() {
                    st.missed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let conv = convs[next % convs.len()];
                next += 1;
                st.attempted.fetch_add(1, Ordering::Relaxed);
                in_flight.fetch_add(1, Ordering::Relaxed);
                let (client, steps, in_flight) = (client.clone(), steps.clone(), in_flight.clone());
                tokio::spawn(async move {
                    let req = v1::SendMessage {
                        conversation_id: conv,
                        client_msg_id: confab_protocol::frames::new_client_msg_id(),
                        text: "x".repeat(100),
                        ..Default::default()
                    };
                    let r = client.request(Request::SendMessage(req)).await;
                    let at = now_ns();
                    let st = &steps[k];
                    match r {
                        Ok(response::Result::SendMessage(m)) => {
                            lock(&st.acks).push((conv, m.seq, at));
                            st.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            st.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                });
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Waits for the step's pushes: until every acknowledged message's push arrived (and no send is
/// still waiting), `drain_idle` without a new arrival, or `drain_limit`. Its length in seconds.
async fn drain(st: &Step, arrivals: &Arrivals, plan: &Plan) -> f64 {
    let started = Instant::now();
    let mut last = (arrivals.total.load(Ordering::Relaxed), Instant::now());
    loop {
        let done = !st.in_flight() && st.arrived(arrivals) >= st.acked.load(Ordering::Relaxed) as usize;
        if done || last.1.elapsed() >= plan.drain_idle || started.elapsed() >= plan.drain_limit {
            return started.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = arrivals.total.load(Ordering::Relaxed);
        if now != last.0 || st.in_flight() {
            last = (now, Instant::now());
        }
    }
}

/// A step's figures: its pushes matched to its acknowledgements.
fn step_row(st: &Step, arrivals: &Arrivals, rate: u32, started_ns: u64, window_secs: f64, drain_secs: f64) -> Value {
    let acks = lock(&st.acks).clone();
    let by_key = lock(&arrivals.by_key);
    let mut lat = Samples::default();
    let (mut pushes, mut duplicates, mut before_ack, mut last_ns) = (0u64, 0u64, 0u64, started_ns);
    let mut in_window = 0u64;
    let window_end = started_ns + (window_secs * 1e9) as u64;
    for (c, s, ack) in &acks {
        let Some(&(at, n)) = by_key.get(&(*c, *s)) else { continue };
        pushes += 1;
        duplicates += u64::from(n.saturating_sub(1));
        if at < *ack {
            before_ack += 1;
        }
        lat.0.push(at.saturating_sub(*ack) / 1000);
        last_ns = last_ns.max(at);
        if at <= window_end {
            in_window += 1;
        }
    }
    let acked = acks.len() as u64;
    let span = (last_ns.saturating_sub(started_ns) as f64 / 1e9).max(window_secs);
    json!({
        "target_messages_per_second": rate,
        "sent": st.attempted.load(Ordering::Relaxed),
        "acked": acked,
        "failed": st.failed.load(Ordering::Relaxed),
        "missed_ticks": st.missed.load(Ordering::Relaxed),
        "acked_per_second": acked as f64 / window_secs,
        "pushes": pushes,
        "missing": acked - pushes,
        "duplicates": duplicates,
        "arrived_before_ack": before_ack,
        // The step's pushes over the time from its start to its last push (at least its window).
        "pushes_per_second": pushes as f64 / span,
        "pushes_in_window_per_second": in_window as f64 / window_secs,
        "seconds_to_last_push": last_ns.saturating_sub(started_ns) as f64 / 1e9,
        "window_seconds": window_secs,
        "drain_seconds": drain_secs,
        "latency_ms_p50": lat.percentile(0.50),
        "latency_ms_p90": lat.percentile(0.90),
        "latency_ms_p99": lat.percentile(0.99),
        "latency_ms_max": lat.percentile(1.0),
    })
}

/// The server's push figures from its /metrics page (the first `--metrics` URL; none without).
type Metrics = HashMap<String, f64>;

/// Histograms whose sum and count are kept: name and label filter.
const HISTOGRAMS: [(&str, &str); 7] = [
    ("push_delay", "confab_push_delay_seconds"),
    ("push_provider", "confab_push_provider_duration_seconds"),
    ("claim_push_deliveries", "op=\"claim_push_deliveries\""),
    ("finish_push_delivery", "op=\"finish_push_delivery\""),
    ("plan_push_pass", "op=\"plan_push_pass\""),
    ("apply_batch", "op=\"apply_batch\""),
    ("send_message", "kind=\"send_message\""),
];

async fn server_metrics(probes: &Probes) -> anyhow::Result<Metrics> {
    let Some(url) = probes.metrics.first() else { return Ok(Metrics::new()) };
    Ok(parse_metrics(&probe::http_get(url).await?))
}

fn parse_metrics(page: &str) -> Metrics {
    let mut m = Metrics::new();
    for l in page.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = l.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        if let Some(rest) = name.strip_prefix("confab_pushes_total{") {
            let state = rest.split(',').find_map(|kv| kv.strip_prefix("state=\"")).and_then(|s| s.split('"').next());
            if let Some(state) = state {
                *m.entry(format!("pushes.{state}")).or_default() += value;
            }
            continue;
        }
        for (key, filter) in HISTOGRAMS {
            let metric = name.split('{').next().unwrap_or_default();
            if !(name.contains(filter) || metric.starts_with(filter)) {
                continue;
            }
            let part = if metric.ends_with("_sum") {
                "sum"
            } else if metric.ends_with("_count") {
                "count"
            } else {
                continue;
            };
            if filter.starts_with("op=") && !metric.starts_with("confab_store_duration_seconds") {
                continue;
            }
            *m.entry(format!("{key}.{part}")).or_default() += value;
        }
    }
    m
}

/// Between two readings: how many of each operation and their mean duration in ms, and the
/// pushes by state.
fn metrics_delta(from: &Metrics, to: &Metrics) -> Value {
    let d = |k: &str| to.get(k).copied().unwrap_or(0.0) - from.get(k).copied().unwrap_or(0.0);
    let mut out = serde_json::Map::new();
    for (key, _) in HISTOGRAMS {
        let (count, sum) = (d(&format!("{key}.count")), d(&format!("{key}.sum")));
        let mean = if count > 0.0 { json!(sum * 1000.0 / count) } else { Value::Null };
        out.insert(key.to_owned(), json!({ "count": count, "mean_ms": mean, "total_seconds": sum }));
    }
    let mut states = serde_json::Map::new();
    for k in to.keys().filter_map(|k| k.strip_prefix("pushes.")) {
        states.insert(k.to_owned(), json!(d(&format!("pushes.{k}"))));
    }
    out.insert("pushes".into(), Value::Object(states));
    Value::Object(out)
}

/// The push table.
pub fn print_tables(result: &Value) {
    let Some(steps) = result["steps"].as_array() else { return };
    println!();
    println!(
        "{:>8} {:>7} {:>7} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8} {:>10} {:>10}",
        "msgs/s",
        "acked",
        "pushes",
        "missing",
        "pushes/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "drain s",
        "claim ms",
        "claims"
    );
    for st in steps {
        let f = |k: &str| st[k].as_f64().unwrap_or(0.0);
        let claim = &st["server"]["claim_push_deliveries"];
        let claim_ms = claim["mean_ms"].as_f64().map_or("-".to_owned(), |v| format!("{v:.2}"));
        let claims = claim["count"].as_f64().map_or("-".to_owned(), |v| format!("{v:.0}"));
        println!(
            "{:>8} {:>7} {:>7} {:>8} {:>8.0} {:>9.1} {:>9.1} {:>9.1} {:>8.1} {claim_ms:>10} {claims:>10}",
            st["target_messages_per_second"].as_u64().unwrap_or(0),
            st["acked"].as_u64().unwrap_or(0),
            st["pushes"].as_u64().unwrap_or(0),
            st["missing"].as_u64().unwrap_or(0),
            f("pushes_per_second"),
            f("latency_ms_p50"),
            f("latency_ms_p99"),
            f("latency_ms_max"),
            f("drain_seconds"),
        );
    }
    match result.get("best_step_with_p99_le_500ms_and_none_missing").filter(|b| !b.is_null()) {
        Some(b) => println!(
            "best step with p99 <= 500 ms and no push missing: {} msgs/s ({:.0} pushes/s)",
            b["target_messages_per_second"],
            b["pushes_per_second"].as_f64().unwrap_or(0.0)
        ),
        None => println!("no step had p99 <= 500 ms with every push arriving"),
    }
    if let Some(r) = result["ramp_stopped_because"].as_str() {
        println!("ramp stopped: {r}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_push_body() {
        let body = br#"{"data":{"v":"1","kind":"message","conversation_id":"42","seq":"7","sender_id":"3"}}"#;
        assert_eq!(key_of(body), Some((42, 7)));
        assert_eq!(key_of(br#"{"data":{"conversation_id":"42"}}"#), None);
        assert_eq!(key_of(b"not json"), None);
    }

    #[test]
    fn reads_the_push_metrics() {
        let page = "# TYPE confab_push_delay_seconds histogram\n\
                    confab_push_delay_seconds_sum 1.5\nconfab_push_delay_seconds_count 3\n\
                    confab_push_delay_seconds_bucket{le=\"0.001\"} 1\n\
                    confab_push_provider_duration_seconds_sum{provider=\"webpush\"} 0.25\n\
                    confab_push_provider_duration_seconds_count{provider=\"webpush\"} 5\n\
                    confab_store_duration_seconds_sum{op=\"claim_push_deliveries\"} 0.1\n\
                    confab_store_duration_seconds_count{op=\"claim_push_deliveries\"} 10\n\
                    confab_pushes_total{provider=\"webpush\",state=\"sent\"} 4\n";
        let m = parse_metrics(page);
        assert_eq!(m.get("push_delay.sum"), Some(&1.5));
        assert_eq!(m.get("push_delay.count"), Some(&3.0));
        assert_eq!(m.get("push_provider.count"), Some(&5.0));
        assert_eq!(m.get("claim_push_deliveries.count"), Some(&10.0));
        assert_eq!(m.get("pushes.sent"), Some(&4.0));
        let d = metrics_delta(&Metrics::new(), &m);
        assert_eq!(d["claim_push_deliveries"]["mean_ms"], 10.0);
        assert_eq!(d["pushes"]["sent"], 4.0);
    }
}
