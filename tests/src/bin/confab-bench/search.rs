//! The search scenario (issue 16): builds a generated store over the protocol (search_corpus.rs:
//! made-up words drawn Zipf-like, planted needles, Chinese sentences, identifiers), then has
//! search_measure.rs wait for the index and time each query shape as a probe user.
//!
//! Setup: an owner account creates every conversation (so it is a member of all of them and can
//! tell when the whole store is indexed), with its members among `senders` accounts and the probe
//! user in `probe_conversations` of them. Seeding: every sender on its own connection sends its
//! share of the messages in order (message i goes to conversation i mod C, its members taking
//! turns), with `in_flight` sends outstanding over all connections, so every conversation grows
//! at the same pace through the run. The owner and the probe are offline meanwhile; the senders'
//! deliveries to each other are discarded. A send that fails is retried with its client_msg_id,
//! so the store holds exactly the generated messages; each acknowledgement's created_at_ms is
//! kept for the date-range shape's ground truth.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use confab_protocol::client::{Client, ConnectOptions};
use confab_protocol::v1::{self, client_frame::Request, response};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::media::account;
use crate::peer::create_group;
use crate::search_corpus::{Corpus, Shape};
use crate::search_measure::{self, Measure};
use crate::stats::progress;

/// Attempts at one send before the run fails.
const SEND_ATTEMPTS: usize = 5;
/// Accounts registered, and conversations created, at once.
const SETUP_CONCURRENCY: usize = 16;

/// What the search scenario does.
#[derive(Clone, Debug)]
pub struct Plan {
    pub shape: Shape,
    /// Sends outstanding over all sender connections while seeding.
    pub in_flight: usize,
    /// Timed searches of each query shape.
    pub repetitions: usize,
    /// Longest wait for the index to catch up before the run fails.
    pub catch_up_limit: Duration,
}

/// An account that is offline during seeding: its user id and a refresh token to come back with.
pub struct Offline {
    pub user_id: u64,
    refresh_token: String,
}

impl Offline {
    /// A new connection signed in with the refresh token (which is replaced: it is single-use).
    pub async fn connect(&mut self, url: &str, opts: &ConnectOptions) -> anyhow::Result<Client> {
        let (c, _events) = Client::connect(url, opts.clone()).await?;
        let auth = c.refresh(&self.refresh_token).await.context("Refresh")?;
        self.refresh_token = auth.refresh_token;
        Ok(c)
    }
}

async fn offline_account(url: &str, opts: &ConnectOptions, tag: &str) -> anyhow::Result<Offline> {
    let (c, auth) = account(url, opts, tag).await?;
    c.close().await;
    let user_id = auth.me.as_ref().map(|m| m.user_id).context("AuthResult without me")?;
    Ok(Offline { user_id, refresh_token: auth.refresh_token })
}

/// The store as it was built: the senders' user ids by number and each message's created_at_ms.
pub struct Built {
    pub sender_ids: Vec<u64>,
    pub created_at_ms: Vec<u64>,
    pub seed_seconds: f64,
    pub setup_seconds: f64,
}

/// Runs the scenario against `url` and returns its JSON.
pub async fn run(url: &str, opts: &ConnectOptions, plan: &Plan) -> anyhow::Result<Value> {
    let generating = Instant::now();
    let shape = plan.shape;
    eprintln!(
        "search: generating {} messages in {} conversations ({} members each, {} senders, probe in {})",
        shape.messages, shape.conversations, shape.members_per_conversation, shape.senders, shape.probe_conversations
    );
    let corpus = Arc::new(Corpus::new(shape)?);
    let generate_seconds = generating.elapsed().as_secs_f64();
    let mut owner = offline_account(url, opts, "srcho").await?;
    let mut probe = offline_account(url, opts, "srchp").await?;
    let built = build(url, opts, plan, &corpus, &mut owner, probe.user_id).await?;
    let seeded_at = Instant::now();
    let owner_c = owner.connect(url, opts).await?;
    let probe_c = probe.connect(url, opts).await?;
    let m = Measure { corpus: &corpus, built: &built, probe: &probe_c, owner: &owner_c };
    let catch_up = m.catch_up(seeded_at, plan.catch_up_limit).await?;
    let shapes = m.shapes();
    let verified = m.verify(&shapes).await?;
    let timed = m.time(&shapes, plan.repetitions).await;
    owner_c.close().await;
    probe_c.close().await;
    let in_scope = corpus.plan.iter().filter(|p| corpus.probe_is_member(p.conversation as usize)).count();
    Ok(json!({
        "scenario": "search",
        "url": url,
        "conversations": shape.conversations,
        "messages": shape.messages,
        "members_per_conversation": shape.members_per_conversation,
        "senders": shape.senders,
        "probe_conversations": shape.probe_conversations,
        "probe_messages_in_scope": in_scope,
        "seed": shape.seed,
        "in_flight": plan.in_flight,
        "repetitions": plan.repetitions,
        "generate_seconds": generate_seconds,
        "setup_seconds": built.setup_seconds,
        "seed_seconds": built.seed_seconds,
        "seed_messages_per_second": shape.messages as f64 / built.seed_seconds,
        "index_catch_up": catch_up,
        "shapes": search_measure::shapes_json(&shapes, &verified, &timed),
        "all_hits_match": verified.iter().all(|v| v.matches()),
    }))
}

/// Registers the senders, creates the conversations and sends every message.
async fn build(
    url: &str,
    opts: &ConnectOptions,
    plan: &Plan,
    corpus: &Arc<Corpus>,
    owner: &mut Offline,
    probe_id: u64,
) -> anyhow::Result<Built> {
    let shape = corpus.shape;
    let setup = Instant::now();
    let (senders, sender_ids) = register_senders(url, opts, shape.senders).await?;
    let conversation_ids = create_conversations(url, opts, corpus, owner, probe_id, &sender_ids).await?;
    let setup_seconds = setup.elapsed().as_secs_f64();
    eprintln!("search: set up in {setup_seconds:.1} s; seeding {} messages", shape.messages);

    let created: Arc<Vec<AtomicU64>> = Arc::new((0..shape.messages).map(|_| AtomicU64::new(0)).collect());
    let conv_ids = Arc::new(conversation_ids);
    let mut by_sender: Vec<Vec<u64>> = vec![Vec::new(); shape.senders];
    for (i, p) in corpus.plan.iter().enumerate() {
        by_sender[p.sender as usize].push(i as u64);
    }
    let per_sender = plan.in_flight.div_ceil(shape.senders).max(1);
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let p = progress("messages seeded", sent.clone(), stop.clone());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (client, mine) in senders.into_iter().zip(by_sender) {
        let (corpus, conv_ids, created, sent) = (corpus.clone(), conv_ids.clone(), created.clone(), sent.clone());
        tasks.spawn(async move {
            let mut sends = futures_util::stream::iter(mine)
                .map(|i| {
                    let conv = conv_ids[corpus.plan[i as usize].conversation as usize];
                    send(&client, conv, corpus.text(i), i)
                })
                .buffer_unordered(per_sender);
            while let Some(r) = sends.next().await {
                let (i, at) = r?;
                created[i as usize].store(at, Ordering::Relaxed);
                sent.fetch_add(1, Ordering::Relaxed);
            }
            drop(sends);
            client.close().await;
            anyhow::Ok(())
        });
    }
    let mut failed = None;
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r.map_err(anyhow::Error::from).and_then(|r| r) {
            failed.get_or_insert(e);
        }
    }
    stop.store(true, Ordering::Relaxed);
    p.abort();
    if let Some(e) = failed {
        return Err(e.context("seeding"));
    }
    let seed_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "search: seeded {} messages in {seed_seconds:.1} s ({:.0}/s)",
        shape.messages,
        shape.messages as f64 / seed_seconds
    );
    let created_at_ms = created.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    Ok(Built { sender_ids, created_at_ms, seed_seconds, setup_seconds })
}

/// One message, retried with the same client_msg_id until acknowledged: its number and the
/// created_at_ms the server gave it.
async fn send(client: &Client, conversation_id: u64, text: String, i: u64) -> anyhow::Result<(u64, u64)> {
    let req = v1::SendMessage {
        conversation_id,
        client_msg_id: confab_protocol::frames::new_client_msg_id(),
        text,
        ..Default::default()
    };
    let mut last = None;
    for _ in 0..SEND_ATTEMPTS {
        match client.request(Request::SendMessage(req.clone())).await {
            Ok(response::Result::SendMessage(r)) => return Ok((i, r.created_at_ms)),
            Ok(other) => bail!("SendMessage answered {other:?}"),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no attempt"), anyhow::Error::from))
        .with_context(|| format!("message {i} failed {SEND_ATTEMPTS} times"))
}

/// Runs `make(k)` for k in `0..n`, `SETUP_CONCURRENCY` at a time, with a progress line per
/// second counting those done; results in order.
async fn counted<T, F, Fut>(label: &'static str, n: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let p = progress(label, done.clone(), stop.clone());
    let made: Vec<T> = futures_util::stream::iter(0..n)
        .map(|k| {
            let (fut, done) = (make(k), done.clone());
            async move {
                let r = fut.await;
                done.fetch_add(1, Ordering::Relaxed);
                r
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    stop.store(true, Ordering::Relaxed);
    p.abort();
    made
}

async fn register_senders(url: &str, opts: &ConnectOptions, n: usize) -> anyhow::Result<(Vec<Client>, Vec<u64>)> {
    let made =
        counted("senders registered", n, |k| async move { account(url, opts, &format!("srchs{k}")).await }).await;
    let mut clients = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    for r in made {
        let (c, auth) = r?;
        ids.push(auth.me.as_ref().map(|m| m.user_id).context("AuthResult without me")?);
        clients.push(c);
    }
    Ok((clients, ids))
}

async fn create_conversations(
    url: &str,
    opts: &ConnectOptions,
    corpus: &Corpus,
    owner: &mut Offline,
    probe_id: u64,
    sender_ids: &[u64],
) -> anyhow::Result<Vec<u64>> {
    let c = owner.connect(url, opts).await?;
    let made = counted("conversations created", corpus.shape.conversations, |k| {
        let mut members: Vec<u64> = corpus.members[k].iter().map(|&s| sender_ids[s as usize]).collect();
        if corpus.probe_is_member(k) {
            members.push(probe_id);
        }
        let c = c.clone();
        async move { create_group(&c, &format!("search bench {k}"), &members).await }
    })
    .await;
    c.close().await;
    made.into_iter().collect()
}
