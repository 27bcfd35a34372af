//! A node that stops answering for longer than the node timeout without dying (paused with
//! SIGSTOP: a frozen VM, a long stall) and then carries on (issue 14; docs/architecture.md
//! "Several nodes"). The other nodes declare it down, so its users go offline for theirs; when it
//! is heard again its users must come back online there, and messages flow both ways live again.
//! The paused node keeps a longer node timeout than the others, so it does not in turn declare
//! them down when it resumes: the one-sided case, which with equal timeouts also happens whenever
//! it reads their buffered heartbeats before its own liveness check runs.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::cluster::TestCluster;
use confab_conformance::harness::Transport;
use confab_conformance::node_process::NodeProcess;
use confab_conformance::util::{direct, next_conv_event, next_matching, register, send, unique};
use confab_protocol::client::{Client, Events};
use confab_protocol::v1::{self, PresenceState, event};

const HEARTBEAT: Duration = Duration::from_millis(200);
const NODE_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends `signal` (STOP, CONT) to the process.
fn signal(node: &NodeProcess, signal: &str) -> anyhow::Result<()> {
    let pid = node.pid().context("the node is not running")?.to_string();
    let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().context("running kill")?;
    ensure!(status.success(), "kill -{signal} {pid}: {status}");
    Ok(())
}

/// The next PresenceChanged of `user` on `events`, within 10 s.
async fn presence_of(events: &mut Events, user: u64) -> anyhow::Result<i32> {
    next_matching(events, Duration::from_secs(10), |e| match e {
        event::Event::PresenceChanged(p) if p.user_id == user => Some(p.state),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_comes_back_with_its_users_online() -> anyhow::Result<()> {
    let cluster = TestCluster::start_with(1, |c| {
        c.cluster.heartbeat_interval = HEARTBEAT;
        c.cluster.node_timeout = NODE_TIMEOUT;
    })
    .await?;
    let mut args = cluster.process_args("node-p");
    args.extend(["--cluster-heartbeat-interval".into(), "200ms".into(), "--node-timeout".into(), "10s".into()]);
    let node_p = NodeProcess::spawn(env!("CARGO_BIN_EXE_confab-test-server"), "node-p", args).await?;
    // X only on node-p, Y on node-0, in a direct conversation.
    let (x, mut xe) = Client::connect(&node_p.url(Transport::WebSocket), cluster.options()).await?;
    let x_id = x.register(register(&unique("paX"))).await?.me.context("me")?.user_id;
    let (y, mut ye) = cluster.connect(0, Transport::WebSocket).await?;
    let y_id = y.register(register(&unique("paY"))).await?.me.context("me")?.user_id;
    let conv = call!(x, CreateConversation, direct(y_id))?.conversation_id;
    next_conv_event(&mut ye).await.context("Y sees the conversation")?;
    next_conv_event(&mut xe).await.context("X sees the conversation")?;
    let presence_seen_by_y = async || -> anyhow::Result<i32> {
        let got = call!(y, GetUsers, v1::GetUsers { user_ids: vec![x_id] })?;
        Ok(got.users.first().context("X's profile")?.presence)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while presence_seen_by_y().await? != PresenceState::Online as i32 {
        ensure!(Instant::now() < deadline, "node-0 never saw X online");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // node-p freezes: node-0 declares it down, X goes offline for Y.
    signal(&node_p, "STOP")?;
    let paused = Instant::now();
    let state = presence_of(&mut ye, x_id).await.context("X offline for Y while node-p is paused")?;
    ensure!(state == PresenceState::Offline as i32, "X's state for Y: {state}");
    let offline_after = paused.elapsed();
    call!(y, SendMessage, send(conv, "while-paused", "sent while node-p is paused"))?;
    // The pause outlasts the node timeout (the scenario, not a wait for readiness).
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&node_p, "CONT")?;
    let resumed = Instant::now();

    // node-p carries on: X gets what Y sent meanwhile, and is online for Y again.
    let e = next_conv_event(&mut xe).await.context("X gets Y's message sent during the pause")?;
    ensure!(e.conversation_id == conv, "{e:?}");
    let state = presence_of(&mut ye, x_id).await.context("X online again for Y once node-p is heard again")?;
    ensure!(state == PresenceState::Online as i32, "X's state for Y after the pause: {state}");
    let online_after = resumed.elapsed();
    ensure!(presence_seen_by_y().await? == PresenceState::Online as i32, "X's profile for Y after the pause");
    // And messages flow live both ways.
    call!(x, SendMessage, send(conv, "after-x", "from node-p after the pause"))?;
    let e = next_conv_event(&mut ye).await.context("Y gets X's message after the pause")?;
    ensure!(e.conversation_id == conv, "{e:?}");
    call!(y, SendMessage, send(conv, "after-y", "from node-0 after the pause"))?;
    let e = next_conv_event(&mut xe).await.context("X gets Y's message after the pause")?;
    ensure!(e.conversation_id == conv, "{e:?}");
    eprintln!("node paused: X offline for Y after {offline_after:?}; online again {online_after:?} after the resume");
    drop(node_p);
    cluster.stop().await
}
