//! What the fault tests of cluster_faults.rs share: the users and groups they spread over the
//! nodes, senders that retry on the next node until acknowledged, devices that follow their
//! connection from node to node, live listeners, and the checks against the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use confab_conformance::call;
use confab_conformance::cluster::TestCluster;
use confab_conformance::harness::{TestServer, Transport};
use confab_conformance::syncer::{ConvState, Device};
use confab_conformance::util::{group, msg_key, register, send, unique};
use confab_protocol::client::{Client, ClientError, ConnectOptions};
use confab_protocol::v1::{self, conversation_event::Body, event};
use confab_server::{Config, wire};

pub const WS: Transport = Transport::WebSocket;
/// Short cluster heartbeats, so a dead node is noticed within 1.4 s.
pub const HEARTBEAT: Duration = Duration::from_millis(200);
pub const NODE_TIMEOUT: Duration = Duration::from_secs(1);

pub fn short_beats(c: &mut Config) {
    c.cluster.heartbeat_interval = HEARTBEAT;
    c.cluster.node_timeout = NODE_TIMEOUT;
}

/// The flags of a process node of `cluster` with the short heartbeats.
pub fn process_args(cluster: &TestCluster, node_id: &str) -> Vec<OsString> {
    let mut args = cluster.process_args(node_id);
    for (flag, v) in [("--cluster-heartbeat-interval", HEARTBEAT), ("--node-timeout", NODE_TIMEOUT)] {
        args.extend([flag.into(), humantime::format_duration(v).to_string().into()]);
    }
    args
}

pub fn options(cluster: &TestCluster, token: Option<&str>) -> ConnectOptions {
    let mut o = cluster.options();
    o.request_timeout = Duration::from_secs(5);
    o.access_token = token.map(str::to_string);
    o
}

/// A registered user: id, access token, and the node its connections start on.
#[derive(Clone, Debug)]
pub struct Member {
    pub id: u64,
    pub token: String,
    pub home: usize,
}

/// Registers `n` users, the k-th on node `k % urls.len()`.
pub async fn register_users(
    cluster: &TestCluster,
    urls: &[String],
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<Member>> {
    let mut out = Vec::new();
    for k in 0..n {
        let home = k % urls.len();
        let (c, _e) = Client::connect(&urls[home], options(cluster, None)).await?;
        let auth = c.register(register(&unique(&format!("{prefix}{k}_")))).await?;
        out.push(Member { id: auth.me.context("me")?.user_id, token: auth.access_token, home });
        c.close().await;
    }
    Ok(out)
}

/// A group conversation of the test: its members and who sends in it (indexes into the users).
#[derive(Clone, Debug)]
pub struct Group {
    pub conv: u64,
    pub members: Vec<usize>,
    pub senders: Vec<usize>,
}

/// The groups of one of user `k`'s.
pub fn groups_of(groups: &[Group], k: usize) -> impl Iterator<Item = &Group> {
    groups.iter().filter(move |g| g.members.contains(&k))
}

/// The conversations user `k` sends in.
pub fn sends_in(groups: &[Group], k: usize) -> Vec<u64> {
    groups.iter().filter(|g| g.senders.contains(&k)).map(|g| g.conv).collect()
}

/// Four groups over six users (by index; user k is on node k % 3): {0,1,2,3}, {2,3,4,5} and
/// everyone, where every member sends, and an announcement group of everyone where only user 0
/// (node 0) sends, so the other nodes learn its entries over NATS only.
pub async fn four_groups(cluster: &TestCluster, urls: &[String], users: &[Member]) -> anyhow::Result<Vec<Group>> {
    let all: &[usize] = &[0, 1, 2, 3, 4, 5];
    let shapes: [(usize, &[usize], &[usize]); 4] =
        [(0, &[0, 1, 2, 3], &[0, 1, 2, 3]), (2, &[2, 3, 4, 5], &[2, 3, 4, 5]), (5, all, all), (0, all, &[0])];
    let mut out = Vec::new();
    for (owner, members, senders) in shapes {
        let u = &users[owner];
        let (c, _e) = Client::connect(&urls[u.home], options(cluster, Some(&u.token))).await?;
        let others: Vec<u64> = members.iter().filter(|m| **m != owner).map(|m| users[*m].id).collect();
        let conv = call!(c, CreateConversation, group("faults", &others))?.conversation_id;
        out.push(Group { conv, members: members.to_vec(), senders: senders.to_vec() });
        c.close().await;
    }
    Ok(out)
}

/// An acknowledged send.
#[derive(Clone, Debug)]
pub struct Ack {
    pub conv: u64,
    pub label: String,
    pub message_id: u64,
    pub at: Instant,
}

/// What the senders did.
#[derive(Debug, Default)]
pub struct Sent {
    pub acks: Mutex<Vec<Ack>>,
    /// Retries after a connection was lost, and how many of them found the message stored.
    pub retries: AtomicUsize,
    pub found_stored: AtomicUsize,
}

impl Sent {
    pub fn count(&self) -> usize {
        self.acks.lock().expect("lock").len()
    }
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().expect("lock").clone()
    }
}

/// How a sender sends.
#[derive(Clone, Debug)]
pub struct Plan {
    pub urls: Vec<String>,
    /// Messages per sender, unless `stop` comes first.
    pub count: usize,
    /// Time between sends.
    pub pace: Option<Duration>,
    pub stop: Arc<AtomicBool>,
}

/// Sender `stream` of user `k`, on a connection of its own: messages one after the other, round
/// robin over the user's conversations, each retried with the same client_msg_id until
/// acknowledged; a lost connection moves it to the next node's URL.
pub fn spawn_sender(
    (k, stream): (usize, usize),
    user: Member,
    convs: Vec<u64>,
    opts: ConnectOptions,
    plan: Plan,
    sent: Arc<Sent>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let urls = plan.urls;
        let mut at = user.home;
        let mut client: Option<Client> = None;
        for n in 0..plan.count {
            if plan.stop.load(Ordering::Relaxed) {
                break;
            }
            if let Some(p) = plan.pace {
                tokio::time::sleep(p).await;
            }
            let label = format!("u{k}s{stream}-{n}-{}", user.id);
            let conv = convs[(n + stream) % convs.len()];
            let mut failures = 0;
            let (message_id, duplicate) = loop {
                ensure!(failures < 40, "user {k}: {label} not acknowledged after {failures} tries");
                let c = match &client {
                    Some(c) if c.close_info().is_none() => c.clone(),
                    _ => match Client::connect(&urls[at], opts.clone()).await {
                        Ok((c, _events)) => {
                            client = Some(c.clone());
                            c
                        }
                        Err(_) => {
                            failures += 1;
                            at = (at + 1) % urls.len();
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    },
                };
                match call!(c, SendMessage, send(conv, &label, &format!("message {label}"))) {
                    Ok(r) => break (r.message_id, r.duplicate),
                    Err(ClientError::Server(e)) => bail!("user {k}: {label} refused: {e:?}"),
                    Err(_) => {
                        // The node went away (or did not answer): the next node, same client_msg_id.
                        failures += 1;
                        client = None;
                        at = (at + 1) % urls.len();
                    }
                }
            };
            if failures > 0 {
                sent.retries.fetch_add(1, Ordering::Relaxed);
                sent.found_stored.fetch_add(usize::from(duplicate), Ordering::Relaxed);
            }
            sent.acks.lock().expect("lock").push(Ack { conv, label, message_id, at: Instant::now() });
        }
        Ok(())
    })
}

/// Waits (bounded polling) until `cond` holds.
pub async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !cond() {
        ensure!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Each conversation's log as the store holds it.
pub async fn truth(node: &TestServer, convs: &[u64]) -> anyhow::Result<BTreeMap<u64, ConvState>> {
    let mut out = BTreeMap::new();
    for conv in convs {
        let mut t = ConvState::default();
        for e in node.store().events_after(confab_server::store::ConvId(*conv as i64), 0, 100_000).await? {
            t.apply(&wire::event(&e, None))?;
        }
        out.insert(*conv, t);
    }
    Ok(out)
}

/// Every device holds exactly the stored log of every group its user is in.
pub fn check_devices(devices: &[Device], groups: &[Group], truth: &BTreeMap<u64, ConvState>) -> anyhow::Result<()> {
    for (k, d) in devices.iter().enumerate() {
        for conv in groups_of(groups, k).map(|g| g.conv) {
            let mine = d.convs.get(&conv).with_context(|| format!("{}: conversation {conv} missing", d.name))?;
            let t = &truth[&conv];
            ensure!(mine.cursor == t.cursor, "{}: conversation {conv} at seq {} of {}", d.name, mine.cursor, t.cursor);
            ensure!(mine.messages == t.messages, "{}: conversation {conv} differs from the store", d.name);
        }
    }
    Ok(())
}

/// Lost and duplicated acknowledged messages, counted by client_msg_id in each conversation's
/// history as each sender reads it (the key is shown to its sender only).
pub async fn lost_and_duplicated(
    url: &str,
    cluster: &TestCluster,
    users: &[Member],
    groups: &[Group],
    acks: &[Ack],
) -> anyhow::Result<(usize, usize, usize)> {
    let mut stored: HashMap<(u64, String), Vec<u64>> = HashMap::new();
    for (k, u) in users.iter().enumerate() {
        let (c, _e) = Client::connect(url, options(cluster, Some(&u.token))).await?;
        for conv in groups_of(groups, k).map(|g| g.conv) {
            let mut before = 0;
            loop {
                let page = call!(
                    c,
                    GetHistory,
                    v1::GetHistory { conversation_id: conv, before_seq: before, limit: 200, ..Default::default() }
                )?;
                for m in page.messages.iter().filter(|m| m.sender_id == u.id) {
                    stored.entry((conv, m.client_msg_id.clone())).or_default().push(m.message_id);
                }
                match (page.has_more, page.messages.first()) {
                    (true, Some(m)) => before = m.seq,
                    _ => break,
                }
            }
        }
        c.close().await;
    }
    let (mut lost, mut duplicated) = (0, 0);
    for a in acks {
        match stored.get(&(a.conv, msg_key(&a.label))).map(Vec::as_slice) {
            None | Some([]) => lost += 1,
            Some([one]) => {
                ensure!(*one == a.message_id, "{}: acknowledged as {} but stored as {one}", a.label, a.message_id)
            }
            Some(many) => duplicated += many.len() - 1,
        }
    }
    let acked: BTreeSet<(u64, String)> = acks.iter().map(|a| (a.conv, msg_key(&a.label))).collect();
    let unexpected = stored.keys().filter(|k| !acked.contains(*k)).count();
    Ok((lost, duplicated, unexpected))
}

/// A live device of user `k`: applies events, syncs on gaps, and when its node goes away moves to
/// the next node's URL (syncing there). Stops when `stop` is set and hands the device back.
pub fn spawn_device(
    mut d: Device,
    home: usize,
    urls: Vec<String>,
    stop: Arc<AtomicBool>,
    moves: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<anyhow::Result<Device>> {
    tokio::spawn(async move {
        let mut at = home;
        while !stop.load(Ordering::Relaxed) {
            if !d.connected() {
                d.set_url(&urls[at]);
                if d.connect().await.is_err() && !d.connected() {
                    at = (at + 1) % urls.len();
                    moves.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
            match d.drain(Duration::from_millis(50)).await {
                Ok(()) => {}
                // A sync that failed because the connection went away; anything else is a bug.
                Err(_) if !d.connected() => {}
                Err(e) => return Err(e.context(format!("{} on {}", d.name, urls[at]))),
            }
            if !d.connected() {
                at = (at + 1) % urls.len();
                moves.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(d)
    })
}

/// What one device received live: the arrival time of every message, and whether its live stream
/// stayed in seq order without a hole (the nodes' sequencers promise both).
#[derive(Debug, Default)]
pub struct LiveLog {
    pub arrivals: HashMap<u64, Instant>,
    pub last_seq: HashMap<u64, u64>,
    pub out_of_order: usize,
    pub holes: usize,
    /// How its connection ended each time it did (then it reconnects; what it missed is not live).
    pub closes: Vec<String>,
}

/// A device that only listens: records each MessagePosted as it arrives, reconnecting to the same
/// node if its connection is closed.
pub fn spawn_listener(
    url: String,
    opts: ConnectOptions,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<LiveLog>>, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let log: Arc<Mutex<LiveLog>> = Arc::default();
    let out = log.clone();
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let (_client, mut events) = Client::connect(&url, opts.clone()).await.context("listener connect")?;
            while !stop.load(Ordering::Relaxed) {
                let ev = match tokio::time::timeout(Duration::from_millis(100), events.recv()).await {
                    Err(_) => continue,
                    Ok(None) => {
                        let why = events.close_info().map_or_else(|| "no close info".into(), |i| i.to_string());
                        log.lock().expect("lock").closes.push(why);
                        break;
                    }
                    Ok(Some(ev)) => ev,
                };
                let Some(event::Event::ConversationEvent(e)) = ev.event else { continue };
                let now = Instant::now();
                let mut l = log.lock().expect("lock");
                let last = l.last_seq.insert(e.conversation_id, e.seq).unwrap_or(0);
                if e.seq <= last {
                    l.out_of_order += 1;
                } else if last != 0 && e.seq != last + 1 {
                    l.holes += 1;
                }
                if let Some(Body::MessagePosted(m)) = &e.body {
                    l.arrivals.entry(m.message_id).or_insert(now);
                }
            }
        }
        Ok(())
    });
    (out, task)
}

/// The `confab_cluster_*` metrics of a node's /metrics, on one line.
pub async fn cluster_metrics(node: &TestServer) -> anyhow::Result<String> {
    let (_, body) = node.http_get("/metrics").await?;
    Ok(body.lines().filter_map(|l| l.strip_prefix("confab_cluster_")).collect::<Vec<_>>().join(", "))
}

/// Waits (bounded polling) until every node's NATS link is up again; returns when each came up.
pub async fn links_up(cluster: &TestCluster, since: Instant) -> anyhow::Result<Vec<Duration>> {
    let mut up = vec![None; cluster.len()];
    while up.iter().any(Option::is_none) {
        ensure!(since.elapsed() < Duration::from_secs(30), "NATS links not back within 30 s: {up:?}");
        for (i, slot) in up.iter_mut().enumerate().filter(|(_, s)| s.is_none()) {
            let (_, body) = cluster.node(i).context("node")?.http_get("/metrics").await?;
            if body.lines().any(|l| l == "confab_cluster_link_up 1") {
                *slot = Some(since.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(up.into_iter().flatten().collect())
}
