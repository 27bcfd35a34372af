//! Fault tests of a cluster (issue 14; docs/architecture.md "Several nodes"), on a real
//! nats-server, real PostgreSQL and real nodes: a node killed with SIGKILL while clients send
//! (its clients move to another node; every acknowledged message is stored once and every
//! device converges; its users go offline for the others within node_timeout + 2 heartbeats),
//! and the NATS server stopped for 10 s under load (every acknowledged message still reaches
//! every member's device live, by the nodes' replay and gap fill, and a final sync agrees).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use confab_conformance::call;
use confab_conformance::cluster::TestCluster;
use confab_conformance::harness::{TestServer, Transport};
use confab_conformance::node_process::NodeProcess;
use confab_conformance::syncer::{ConvState, Device};
use confab_conformance::util::{direct, group, msg_key, next_matching, register, send, unique};
use confab_protocol::client::{Client, ClientError, ConnectOptions};
use confab_protocol::v1::{self, PresenceState, conversation_event::Body, event};
use confab_server::{Config, wire};

const WS: Transport = Transport::WebSocket;
/// Short cluster heartbeats, so a dead node is noticed within 1.4 s.
const HEARTBEAT: Duration = Duration::from_millis(200);
const NODE_TIMEOUT: Duration = Duration::from_secs(1);

/// The two tests share the machine's two cores: one at a time, so neither's timings carry the
/// other's load.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn short_beats(c: &mut Config) {
    c.cluster.heartbeat_interval = HEARTBEAT;
    c.cluster.node_timeout = NODE_TIMEOUT;
}

/// The flags of a process node of `cluster` with the short heartbeats.
fn process_args(cluster: &TestCluster, node_id: &str) -> Vec<OsString> {
    let mut args = cluster.process_args(node_id);
    for (flag, v) in [("--cluster-heartbeat-interval", HEARTBEAT), ("--node-timeout", NODE_TIMEOUT)] {
        args.extend([flag.into(), humantime::format_duration(v).to_string().into()]);
    }
    args
}

fn options(cluster: &TestCluster, token: Option<&str>) -> ConnectOptions {
    let mut o = cluster.options();
    o.request_timeout = Duration::from_secs(5);
    o.access_token = token.map(str::to_string);
    o
}

/// A registered user: id, access token, and the node its connections start on.
#[derive(Clone, Debug)]
struct Member {
    id: u64,
    token: String,
    home: usize,
}

/// Registers `n` users, the k-th on node `k % urls.len()`.
async fn register_users(cluster: &TestCluster, urls: &[String], prefix: &str, n: usize) -> anyhow::Result<Vec<Member>> {
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
struct Group {
    conv: u64,
    members: Vec<usize>,
    senders: Vec<usize>,
}

/// The groups of one of user `k`'s.
fn groups_of(groups: &[Group], k: usize) -> impl Iterator<Item = &Group> {
    groups.iter().filter(move |g| g.members.contains(&k))
}

/// The conversations user `k` sends in.
fn sends_in(groups: &[Group], k: usize) -> Vec<u64> {
    groups.iter().filter(|g| g.senders.contains(&k)).map(|g| g.conv).collect()
}

/// Four groups over six users (by index; user k is on node k % 3): {0,1,2,3}, {2,3,4,5} and
/// everyone, where every member sends, and an announcement group of everyone where only user 0
/// (node 0) sends, so the other nodes learn its entries over NATS only.
async fn four_groups(cluster: &TestCluster, urls: &[String], users: &[Member]) -> anyhow::Result<Vec<Group>> {
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
struct Ack {
    conv: u64,
    label: String,
    message_id: u64,
    at: Instant,
}

/// What the senders did.
#[derive(Debug, Default)]
struct Sent {
    acks: Mutex<Vec<Ack>>,
    /// Retries after a connection was lost, and how many of them found the message stored.
    retries: AtomicUsize,
    found_stored: AtomicUsize,
}

impl Sent {
    fn count(&self) -> usize {
        self.acks.lock().expect("lock").len()
    }
    fn acks(&self) -> Vec<Ack> {
        self.acks.lock().expect("lock").clone()
    }
}

/// How a sender sends.
#[derive(Clone, Debug)]
struct Plan {
    urls: Vec<String>,
    /// Messages per sender, unless `stop` comes first.
    count: usize,
    /// Time between sends.
    pace: Option<Duration>,
    stop: Arc<AtomicBool>,
}

/// Sender `stream` of user `k`, on a connection of its own: messages one after the other, round
/// robin over the user's conversations, each retried with the same client_msg_id until
/// acknowledged; a lost connection moves it to the next node's URL.
fn spawn_sender(
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
async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !cond() {
        ensure!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Each conversation's log as the store holds it.
async fn truth(node: &TestServer, convs: &[u64]) -> anyhow::Result<BTreeMap<u64, ConvState>> {
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
fn check_devices(devices: &[Device], groups: &[Group], truth: &BTreeMap<u64, ConvState>) -> anyhow::Result<()> {
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
async fn lost_and_duplicated(
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
fn spawn_device(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_node_under_concurrent_sends() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = TestCluster::start_with(2, short_beats).await?;
    let mut victim =
        NodeProcess::spawn(env!("CARGO_BIN_EXE_confab-test-server"), "node-p", process_args(&cluster, "node-p"))
            .await?;
    let urls = vec![cluster.url(0, WS), cluster.url(1, WS), victim.url(WS)];
    let users = register_users(&cluster, &urls, "kn", 6).await?;
    let groups = four_groups(&cluster, &urls, &users).await?;

    // X is connected only to the node that dies; Y, on node 0, shares a conversation with X.
    let (x, _xe) = Client::connect(&urls[2], options(&cluster, None)).await?;
    let x_id = x.register(register(&unique("knX"))).await?.me.context("me")?.user_id;
    let (y, mut ye) = Client::connect(&urls[0], options(&cluster, None)).await?;
    let y_id = y.register(register(&unique("knY"))).await?.me.context("me")?.user_id;
    call!(x, CreateConversation, direct(y_id))?;
    let online_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = call!(y, GetUsers, v1::GetUsers { user_ids: vec![x_id] })?;
        if got.users.first().is_some_and(|u| u.presence == PresenceState::Online as i32) {
            break;
        }
        ensure!(Instant::now() < online_deadline, "node 0 never saw X online on node-p: {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (stop, moves, sent) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(Sent::default()));
    let mut devices = Vec::new();
    for (k, u) in users.iter().enumerate() {
        let mut d = Device::new(&format!("device{k}"), &urls[u.home], options(&cluster, Some(&u.token)), &u.token);
        d.connect().await?;
        devices.push(spawn_device(d, u.home, urls.clone(), stop.clone(), moves.clone()));
    }
    // Two senders per user, each on its own connection: 12 sends in flight, 4 of them on node-p.
    const STREAMS: usize = 2;
    const PER_SENDER: usize = 30;
    const TOTAL: usize = 6 * STREAMS * PER_SENDER;
    let plan = Plan { urls: urls.clone(), count: PER_SENDER, pace: None, stop: Arc::new(AtomicBool::new(false)) };
    let mut senders = Vec::new();
    for (k, u) in users.iter().enumerate() {
        let convs = sends_in(&groups, k);
        for stream in 0..STREAMS {
            let o = options(&cluster, Some(&u.token));
            senders.push(spawn_sender((k, stream), u.clone(), convs.clone(), o, plan.clone(), sent.clone()));
        }
    }

    // Mid-stream: a third of the messages acknowledged.
    wait_until("a third of the sends acknowledged", Duration::from_secs(30), || sent.count() >= TOTAL / 3).await?;
    let acked_before = sent.count();
    let killed = Instant::now();
    victim.kill9()?;
    let offline = next_matching(&mut ye, Duration::from_secs(10), |e| match e {
        event::Event::PresenceChanged(p) if p.user_id == x_id && p.state == PresenceState::Offline as i32 => Some(()),
        _ => None,
    })
    .await
    .map(|()| killed.elapsed())
    .context("Y (node 0) is never told X (only on the killed node) went offline")?;

    for s in senders {
        s.await??;
    }
    stop.store(true, Ordering::Relaxed);
    let mut finals = Vec::new();
    for d in devices {
        finals.push(d.await??);
    }
    // Quiesce: every device online on a live node, drained and synced.
    for d in &mut finals {
        if !d.connected() {
            d.set_url(&urls[0]);
            d.connect().await?;
        }
        d.drain(Duration::from_millis(150)).await?;
        d.sync().await?;
    }
    let node0 = cluster.node(0).context("node 0")?;
    let convs: Vec<u64> = groups.iter().map(|g| g.conv).collect();
    let truth = truth(node0, &convs).await?;
    check_devices(&finals, &groups, &truth)?;
    let acks = sent.acks();
    let (lost, duplicated, unexpected) = lost_and_duplicated(&urls[1], &cluster, &users, &groups, &acks).await?;
    let bound = NODE_TIMEOUT + 2 * HEARTBEAT;
    eprintln!(
        "sigkill under sends: {} acknowledged ({acked_before} before the kill), lost {lost}, duplicated {duplicated}, \
         {} resent after a lost connection ({} of them had been stored), {} device moves; X offline for Y after \
         {offline:?} (bound {bound:?}); syncs per device: {:?}",
        acks.len(),
        sent.retries.load(Ordering::Relaxed),
        sent.found_stored.load(Ordering::Relaxed),
        moves.load(Ordering::Relaxed),
        finals.iter().map(|d| d.syncs).collect::<Vec<_>>(),
    );
    ensure!(acks.len() == TOTAL, "{} of {TOTAL} sends acknowledged", acks.len());
    ensure!(lost == 0 && duplicated == 0, "lost {lost}, duplicated {duplicated}");
    ensure!(unexpected == 0, "{unexpected} stored messages were never sent");
    ensure!(truth.values().map(|t| t.messages.len()).sum::<usize>() == acks.len(), "the store holds other messages");
    ensure!(offline <= bound, "X went offline for Y after {offline:?}, beyond node_timeout + 2 heartbeats ({bound:?})");
    drop(victim);
    cluster.stop().await
}

/// What one device received live: the arrival time of every message, and whether its live stream
/// stayed in seq order without a hole (the nodes' sequencers promise both).
#[derive(Debug, Default)]
struct LiveLog {
    arrivals: HashMap<u64, Instant>,
    last_seq: HashMap<u64, u64>,
    out_of_order: usize,
    holes: usize,
    /// How its connection ended each time it did (then it reconnects; what it missed is not live).
    closes: Vec<String>,
}

/// A device that only listens: records each MessagePosted as it arrives, reconnecting to the same
/// node if its connection is closed.
fn spawn_listener(
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
async fn cluster_metrics(node: &TestServer) -> anyhow::Result<String> {
    let (_, body) = node.http_get("/metrics").await?;
    Ok(body.lines().filter_map(|l| l.strip_prefix("confab_cluster_")).collect::<Vec<_>>().join(", "))
}

/// Waits (bounded polling) until every node's NATS link is up again; returns when each came up.
async fn links_up(cluster: &TestCluster, since: Instant) -> anyhow::Result<Vec<Duration>> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stopped_for_10_s_under_load() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start_with(3, short_beats).await?;
    let urls = cluster.urls(WS);
    let users = register_users(&cluster, &urls, "nd", 6).await?;
    let groups = four_groups(&cluster, &urls, &users).await?;
    let stop_listening = Arc::new(AtomicBool::new(false));
    let mut listeners = Vec::new();
    for u in &users {
        listeners.push(spawn_listener(urls[u.home].clone(), options(&cluster, Some(&u.token)), stop_listening.clone()));
    }
    // Every user sends every 60 ms on a connection of its own (about 100 messages/s in all), before,
    // during and just after the outage.
    let sent = Arc::new(Sent::default());
    let plan = Plan {
        urls: urls.clone(),
        count: usize::MAX,
        pace: Some(Duration::from_millis(60)),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let mut senders = Vec::new();
    for (k, u) in users.iter().enumerate() {
        let convs = sends_in(&groups, k);
        senders.push(spawn_sender(
            (k, 0),
            u.clone(),
            convs,
            options(&cluster, Some(&u.token)),
            plan.clone(),
            sent.clone(),
        ));
    }
    wait_until("sending before the outage", Duration::from_secs(20), || sent.count() >= 60).await?;
    cluster.nats().stop()?;
    let stopped = Instant::now();
    let acked_at_stop = sent.count();
    // The outage itself (the scenario, not a wait for readiness).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let acked_in_outage = sent.count() - acked_at_stop;
    cluster.nats().start_again().await?;
    let back = Instant::now();
    let relinked = links_up(&cluster, back).await?;
    wait_until("sending after the outage", Duration::from_secs(20), || {
        sent.count() >= acked_at_stop + acked_in_outage + 60
    })
    .await?;
    plan.stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await??;
    }
    let acks = sent.acks();
    // Every acknowledged message reaches every member's device live.
    let expected: Vec<Vec<u64>> = (0..users.len())
        .map(|k| {
            acks.iter().filter(|a| groups_of(&groups, k).any(|g| g.conv == a.conv)).map(|a| a.message_id).collect()
        })
        .collect();
    let missing = |listeners: &[(Arc<Mutex<LiveLog>>, _)]| -> usize {
        listeners
            .iter()
            .zip(&expected)
            .map(|((log, _), want)| {
                let l = log.lock().expect("lock");
                want.iter().filter(|m| !l.arrivals.contains_key(m)).count()
            })
            .sum()
    };
    let all_live =
        wait_until("every acknowledged message live on every member's device", Duration::from_secs(30), || {
            missing(&listeners) == 0
        })
        .await;
    let mut report = Vec::new();
    let mut last = Duration::ZERO;
    for (k, ((log, _), want)) in listeners.iter().zip(&expected).enumerate() {
        let l = log.lock().expect("lock");
        let missed = want.iter().filter(|m| !l.arrivals.contains_key(m)).count();
        let (ooo, holes, closes) = (l.out_of_order, l.holes, &l.closes);
        for a in acks.iter().filter(|a| a.at < back && want.contains(&a.message_id)) {
            if let Some(t) = l.arrivals.get(&a.message_id) {
                last = last.max(t.saturating_duration_since(back));
            }
        }
        report.push(format!(
            "device{k} (node {}): {missed} missing, {ooo} out of order, {holes} holes, closes {closes:?}",
            users[k].home
        ));
    }
    let mut metrics = Vec::new();
    for i in 0..cluster.len() {
        metrics.push(format!("node-{i}: {}", cluster_metrics(cluster.node(i).context("node")?).await?));
    }
    eprintln!(
        "NATS stopped {:?}: {} acknowledged ({acked_at_stop} before, {acked_in_outage} during the outage); the nodes' \
         links were up again after {relinked:?}; the last device had every message acknowledged before NATS came back \
         {last:?} after it did\n  {}\n  {}",
        back - stopped,
        acks.len(),
        report.join("\n  "),
        metrics.join("\n  "),
    );
    all_live?;
    for (log, _) in &listeners {
        let l = log.lock().expect("lock");
        ensure!(l.out_of_order == 0 && l.holes == 0, "a live stream out of order or with a hole: {l:?}");
        ensure!(l.closes.is_empty(), "a device's connection was closed: {:?}", l.closes);
    }
    stop_listening.store(true, Ordering::Relaxed);
    for (_, task) in listeners {
        task.await??;
    }
    // Then a final sync agrees: fresh devices, one per user on its node, sync from nothing.
    let node0 = cluster.node(0).context("node 0")?;
    let convs: Vec<u64> = groups.iter().map(|g| g.conv).collect();
    let truth = truth(node0, &convs).await?;
    let mut devices = Vec::new();
    for (k, u) in users.iter().enumerate() {
        let mut d = Device::new(&format!("device{k}"), &urls[u.home], options(&cluster, Some(&u.token)), &u.token);
        d.connect().await?;
        devices.push(d);
    }
    check_devices(&devices, &groups, &truth)?;
    let (lost, duplicated, unexpected) = lost_and_duplicated(&urls[1], &cluster, &users, &groups, &acks).await?;
    ensure!(
        lost == 0 && duplicated == 0 && unexpected == 0,
        "lost {lost}, duplicated {duplicated}, unexpected {unexpected}"
    );
    cluster.stop().await
}
