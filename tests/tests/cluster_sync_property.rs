//! The sync property test (tests/tests/sync_property.rs, docs/protocol.md §14.6) across a
//! cluster (issue 14): the same random interleavings of sends, edits, deletes, membership changes,
//! disconnects, reconnects and syncs, with the devices spread over the three nodes of a
//! `TestCluster` (a device that reconnects picks a node at random) and random node restarts
//! during the run. Afterwards every device holds exactly the stored log of every conversation it
//! belongs to, each entry applied once, in seq order, with no gap. Scenarios come from seeds; a
//! failure names its seed.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::cluster::TestCluster;
use confab_conformance::harness::Transport;
use confab_conformance::scenario::{Rng, Sent, pick_live};
use confab_conformance::syncer::{ConvState, Device};
use confab_conformance::util::{PASSWORD, direct, group, new_user, send};
use confab_protocol::v1;
use confab_server::wire;

/// The devices and which node each one is (or was last) connected to.
struct Fleet {
    devices: Vec<Device>,
    at: Vec<usize>,
}

impl Fleet {
    /// Connects device `i` to node `node`.
    async fn connect(&mut self, cluster: &TestCluster, t: Transport, i: usize, node: usize) -> anyhow::Result<()> {
        self.devices[i].set_url(&cluster.url(node, t));
        self.at[i] = node;
        self.devices[i].connect().await.with_context(|| format!("device{i} connecting to node-{node}"))
    }
}

/// Stops node `n` and starts it again; waits (bounded) until the devices it served saw their
/// connections end. Returns how long the restart took.
async fn restart(cluster: &mut TestCluster, fleet: &Fleet, n: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    cluster.stop_node(n).await?;
    cluster.restart_node(n).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while fleet.devices.iter().zip(&fleet.at).any(|(d, at)| *at == n && d.connected()) {
        ensure!(Instant::now() < deadline, "devices of node-{n} still connected after its restart");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(started.elapsed())
}

async fn scenario(cluster: &mut TestCluster, t: Transport, seed: u64, steps: usize) -> anyhow::Result<String> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let nodes = cluster.len();
    let a = new_user(cluster.node(0).context("node-0")?, t, "cpA").await?;
    let b = new_user(cluster.node(1 % nodes).context("node-1")?, t, "cpB").await?;
    let c = new_user(cluster.node(2 % nodes).context("node-2")?, t, "cpC").await?;
    let group = call!(a.client, CreateConversation, group("prop", &[b.id, c.id]))?.conversation_id;
    let dm = call!(a.client, CreateConversation, direct(b.id))?.conversation_id;
    // Devices: A has two (the second with its own session), B and C one each.
    let (a2c, _) = cluster.connect(1 % nodes, t).await?;
    let a2 = a2c.login(&a.name, PASSWORD, "A phone").await?;
    let users = [a.id, a.id, b.id, c.id];
    let tokens = [&a.auth.access_token, &a2.access_token, &b.auth.access_token, &c.auth.access_token];
    let mut fleet = Fleet { devices: Vec::new(), at: Vec::new() };
    for (i, token) in tokens.iter().enumerate() {
        fleet.devices.push(Device::new(&format!("device{i}"), &cluster.url(0, t), cluster.options(), token));
        fleet.at.push(0);
        fleet.connect(cluster, t, i, i % nodes).await?;
    }
    drop((a, b, a2c));
    // At least one restart per scenario, at a seeded step; more at random.
    let forced = steps / 4 + rng.below(steps / 2);
    let mut restarts = Vec::new();
    let mut sent: Vec<Sent> = Vec::new();
    let mut c_in_group = true;
    let mut n = 0u64;
    for step in 0..steps {
        if step == forced || rng.below(100) < 2 {
            let node = rng.below(nodes);
            restarts.push((node, restart(cluster, &fleet, node).await?));
            continue;
        }
        let i = rng.below(fleet.devices.len());
        let user = users[i];
        let roll = rng.below(100);
        if !fleet.devices[i].connected() {
            let node = rng.below(nodes);
            fleet.connect(cluster, t, i, node).await?;
            continue;
        }
        let d = &mut fleet.devices[i];
        match roll {
            0..=44 => {
                let mut convs = vec![group];
                if user != c.id {
                    convs.push(dm);
                }
                if user == c.id && !c_in_group {
                    continue;
                }
                let conv = convs[rng.below(convs.len())];
                n += 1;
                let r = call!(
                    d.client()?,
                    SendMessage,
                    send(conv, &format!("c{seed}-{n}"), &format!("message {n} from device{i}"))
                )?;
                sent.push(Sent { conv, message_id: r.message_id, sender: user, deleted: false });
            }
            45..=56 => {
                if user == c.id && !c_in_group {
                    continue;
                }
                let Some(k) = pick_live(&sent, user, &mut rng) else { continue };
                call!(
                    d.client()?,
                    EditMessage,
                    v1::EditMessage {
                        conversation_id: sent[k].conv,
                        message_id: sent[k].message_id,
                        text: format!("edited by device{i} at step {n}"),
                    }
                )?;
            }
            57..=63 => {
                if user == c.id && !c_in_group {
                    continue;
                }
                let Some(k) = pick_live(&sent, user, &mut rng) else { continue };
                call!(
                    d.client()?,
                    DeleteMessage,
                    v1::DeleteMessage { conversation_id: sent[k].conv, message_id: sent[k].message_id }
                )?;
                sent[k].deleted = true;
            }
            64..=77 => d.disconnect().await,
            78..=85 => d.drain(Duration::from_millis(5)).await?,
            86..=91 => d.sync().await?,
            _ => {
                // Membership churn: A removes C from the group, or adds C back.
                if !fleet.devices[0].connected() {
                    let node = rng.below(nodes);
                    fleet.connect(cluster, t, 0, node).await?;
                }
                let owner = fleet.devices[0].client()?;
                if c_in_group {
                    call!(owner, RemoveMember, v1::RemoveMember { conversation_id: group, user_id: c.id })?;
                } else {
                    call!(owner, AddMembers, v1::AddMembers { conversation_id: group, user_ids: vec![c.id] })?;
                }
                c_in_group = !c_in_group;
            }
        }
    }
    // Quiesce: everyone online, caught up, live queues drained.
    for i in 0..fleet.devices.len() {
        if !fleet.devices[i].connected() {
            let node = rng.below(nodes);
            fleet.connect(cluster, t, i, node).await?;
        }
    }
    for d in &mut fleet.devices {
        d.drain(Duration::from_millis(150)).await?;
        d.sync().await?;
    }
    // Compare with the store.
    let store = cluster.node(0).context("node-0")?.store().clone();
    let mut summary = Vec::new();
    for (i, d) in fleet.devices.iter().enumerate() {
        let mut heads = store.heads(confab_server::store::UserId(users[i] as i64)).await?;
        heads.sort_unstable();
        let expected_convs: Vec<u64> = heads.iter().map(|(c, _)| wire::conv(*c)).collect();
        let got_convs = d.member_conversations();
        ensure!(
            got_convs == expected_convs,
            "seed {seed} {}: conversations {got_convs:?}, stored {expected_convs:?}",
            d.name
        );
        for (conv, head) in heads {
            let mut truth = ConvState::default();
            for e in store.events_after(conv, 0, 100_000).await? {
                truth.apply(&wire::event(&e, None))?;
            }
            ensure!(truth.cursor == head as u64, "store head {head} but log ends at {}", truth.cursor);
            let mine = &d.convs[&wire::conv(conv)];
            ensure!(
                mine.cursor == truth.cursor,
                "seed {seed} {}: conversation {conv} at {} of {}",
                d.name,
                mine.cursor,
                truth.cursor
            );
            ensure!(mine.messages == truth.messages, "seed {seed} {}: conversation {conv} messages differ", d.name);
        }
        summary.push(format!("{}: {} syncs, {} duplicates", d.name, d.syncs, d.duplicates));
    }
    ensure!(sent.len() > steps / 5, "seed {seed}: scenario sent only {} messages", sent.len());
    ensure!(!restarts.is_empty(), "seed {seed}: no node restarted");
    Ok(format!(
        "seed {seed} ({t:?}): {} messages; restarts (node, took) {restarts:?}; {}",
        sent.len(),
        summary.join("; ")
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_spread_over_nodes_converge_across_node_restarts() {
    let mut cluster = TestCluster::start_with(3, |c| {
        c.cluster.heartbeat_interval = Duration::from_millis(200);
        c.cluster.node_timeout = Duration::from_secs(1);
    })
    .await
    .expect("start cluster");
    let seeds = [
        (Transport::WebSocket, 41),
        (Transport::WebSocket, 42),
        (Transport::WebSocket, 43),
        (Transport::Quic, 51),
        (Transport::Quic, 52),
    ];
    for (t, seed) in seeds {
        match scenario(&mut cluster, t, seed, 120).await {
            Ok(summary) => eprintln!("{summary}"),
            Err(e) => panic!("{t:?} seed {seed}: {e:#}"),
        }
    }
    cluster.stop().await.expect("stop cluster");
}
