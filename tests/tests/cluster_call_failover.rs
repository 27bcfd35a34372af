//! A group call across two nodes whose holder dies with SIGKILL (issue 14; docs/protocol.md
//! §20.3, docs/architecture.md "Several nodes"): node A (its own process) holds the SFU room,
//! a participant on node B is forwarded there and media flows both ways; A is killed: the
//! participants and members on B are told the call ended, and the next JoinCall on B opens a
//! fresh room there (its lease in the store names B) where media flows again.

use std::collections::HashMap;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::cluster::TestCluster;
use confab_conformance::harness::Transport;
use confab_conformance::node_process::NodeProcess;
use confab_conformance::util::{group, next_matching, register, unique};
use confab_conformance::webrtc_peer::{GroupPeer, Received};
use confab_protocol::client::{Client, Events};
use confab_protocol::v1::event;
use sqlx::Connection;

const HEARTBEAT: Duration = Duration::from_millis(200);
const NODE_TIMEOUT: Duration = Duration::from_secs(1);
/// Each node's SFU ports, apart (B runs in this process, A in its own).
const B_PORTS: (u16, u16) = (52600, 52799);
const A_PORTS: (u16, u16) = (52800, 52999);

/// Packets of both of `from`'s tracks have arrived (at least 25 each).
fn both_tracks(got: &HashMap<String, Received>, from: &GroupPeer) -> bool {
    got.values().filter(|r| r.stream_id == from.participant_id && r.packets >= 25).count() == 2
}

async fn user_at(url: &str, cluster: &TestCluster, prefix: &str) -> anyhow::Result<(Client, Events, u64)> {
    let (client, events) = Client::connect(url, cluster.options()).await?;
    let auth = client.register(register(&unique(prefix))).await?;
    Ok((client, events, auth.me.context("me")?.user_id))
}

/// The node whose run holds `conv`'s room lease (the lease names `NODE@INCARNATION`).
async fn room_holder(cluster: &TestCluster, conv: u64) -> anyhow::Result<Option<String>> {
    let mut db = sqlx::PgConnection::connect(cluster.database_url()).await?;
    let node: Option<String> = sqlx::query_scalar("SELECT node FROM call_rooms WHERE conversation_id = $1")
        .bind(conv as i64)
        .fetch_optional(&mut db)
        .await?;
    db.close().await?;
    Ok(node.map(|n| confab_server::cluster::node_of(&n).to_string()))
}

/// The GroupCallState telling that `conv`'s call has no participant left.
fn call_over(conv: u64) -> impl Fn(&event::Event) -> Option<()> {
    move |e| match e {
        event::Event::GroupCallState(g) if g.conversation_id == conv && g.participants == 0 => Some(()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_of_a_group_call_is_killed() -> anyhow::Result<()> {
    let cluster = TestCluster::start_with(1, |c| {
        c.cluster.heartbeat_interval = HEARTBEAT;
        c.cluster.node_timeout = NODE_TIMEOUT;
        (c.calls.udp_port_min, c.calls.udp_port_max) = B_PORTS;
    })
    .await?;
    let mut args = cluster.process_args("node-a");
    for (flag, value) in [
        ("--cluster-heartbeat-interval", humantime::format_duration(HEARTBEAT).to_string()),
        ("--node-timeout", humantime::format_duration(NODE_TIMEOUT).to_string()),
        ("--udp-port-min", A_PORTS.0.to_string()),
        ("--udp-port-max", A_PORTS.1.to_string()),
    ] {
        args.extend([OsString::from(flag), value.into()]);
    }
    let mut node_a = NodeProcess::spawn(env!("CARGO_BIN_EXE_confab-test-server"), "node-a", args).await?;
    let (a_url, b_url) = (node_a.url(Transport::WebSocket), cluster.url(0, Transport::WebSocket));
    let b_id = cluster.node_id(0).to_string();

    // P1 on A, P2, M (a member who stays out) and S (a later subscriber) on B.
    let (p1c, p1e, _) = user_at(&a_url, &cluster, "fo1_").await?;
    let (p2c, p2e, p2_id) = user_at(&b_url, &cluster, "fo2_").await?;
    let (mc, mut me, m_id) = user_at(&b_url, &cluster, "foM_").await?;
    let (sc, se, s_id) = user_at(&b_url, &cluster, "foS_").await?;
    let conv = call!(p1c, CreateConversation, group("failover", &[p2_id, m_id, s_id]))?.conversation_id;

    // P1 joins first: A holds the room. P2's JoinCall on B is forwarded to A.
    let (p1, _) = GroupPeer::join(p1c, p1e, conv, 1).await?;
    let (p2, joined) = GroupPeer::join(p2c, p2e, conv, 2).await?;
    ensure!(joined.participants.iter().any(|p| p.participant_id == p1.participant_id), "{joined:?}");
    ensure!(room_holder(&cluster, conv).await?.as_deref() == Some("node-a"), "A holds the room");
    p1.publish().await?;
    p2.publish().await?;
    let media = Instant::now();
    p2.wait_received(Duration::from_secs(15), "P1's media at P2 (on B)", |g| both_tracks(g, &p1)).await?;
    p1.wait_received(Duration::from_secs(15), "P2's media at P1 (on A)", |g| both_tracks(g, &p2)).await?;
    let media_took = media.elapsed();

    // A dies without a word: P2 and M, on B, are told the call is over.
    let killed = Instant::now();
    node_a.kill9()?;
    p2.next_event(Duration::from_secs(10), call_over(conv)).await.context("P2 (on B) told the call ended")?;
    let p2_told = killed.elapsed();
    next_matching(&mut me, Duration::from_secs(10), call_over(conv)).await.context("M (on B) told the call ended")?;
    let m_told = killed.elapsed();
    p2.close().await;
    p1.close().await;

    // The next JoinCall, M's on B, opens a fresh room held by B; S joins it and gets M's media.
    let rejoin = Instant::now();
    let (pm, joined) = GroupPeer::join(mc, me, conv, 3).await.context("JoinCall on B after A died")?;
    ensure!(joined.participants.is_empty(), "a fresh room: {joined:?}");
    let rejoin_took = rejoin.elapsed();
    ensure!(room_holder(&cluster, conv).await?.as_deref() == Some(b_id.as_str()), "B holds the new room");
    pm.publish().await?;
    let (ps, joined) = GroupPeer::join(sc, se, conv, 4).await?;
    ensure!(joined.participants.iter().any(|p| p.participant_id == pm.participant_id), "{joined:?}");
    ps.wait_received(Duration::from_secs(15), "M's media at S (both on B)", |g| both_tracks(g, &pm)).await?;
    let over_b = ps.received();
    let m_tracks: Vec<&Received> = over_b.values().filter(|r| r.stream_id == pm.participant_id).collect();
    ensure!(m_tracks.iter().all(|r| r.corrupt == 0), "corrupt packets: {m_tracks:?}");
    eprintln!(
        "group call failover: media both ways across nodes after {media_took:?}; holder killed: P2 told after \
         {p2_told:?}, M after {m_told:?} (node_timeout {NODE_TIMEOUT:?}, heartbeat {HEARTBEAT:?}); the new JoinCall \
         on B took {rejoin_took:?}; {} packets of M's at S",
        m_tracks.iter().map(|r| r.packets).sum::<u64>()
    );
    ps.close().await;
    pm.close().await;
    drop(node_a);
    cluster.stop().await
}
