//! Fault tests of a cluster (issue 14; docs/architecture.md "Several nodes"), on a real
//! nats-server, real PostgreSQL and real nodes: a node killed with SIGKILL while clients send
//! (its clients move to another node; every acknowledged message is stored once and every
//! device converges; its users go offline for the others within node_timeout + 2 heartbeats),
//! and the NATS server stopped for 10 s under load (every acknowledged message still reaches
//! every member's device live, by the nodes' replay and gap fill, and a final sync agrees).

#[path = "cluster_faults/support.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::cluster::TestCluster;
use confab_conformance::node_process::NodeProcess;
use confab_conformance::syncer::Device;
use confab_conformance::util::{direct, next_matching, register, unique};
use confab_protocol::client::Client;
use confab_protocol::v1::{self, PresenceState, event};
use support::*;

/// The two tests share the machine's two cores: one at a time, so neither's timings carry the
/// other's load.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
