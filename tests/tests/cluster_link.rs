//! The cluster link between nodes (docs/architecture.md "Several nodes"): two nodes on one
//! PostgreSQL and one real nats-server; what one node commits or announces reaches the other's
//! connections live.

use std::time::Duration;

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::cluster::TestCluster;
use confab_conformance::harness::{TestServer, Transport};
use confab_conformance::util::{group, next_conv_event, next_matching, register, send, unique};
use confab_protocol::client::{Client, Events};
use confab_protocol::v1::{self, PresenceState, event};

/// Two nodes with a fast heartbeat and a short reconnect grace.
async fn two_nodes() -> anyhow::Result<TestCluster> {
    TestCluster::start_with(2, |c| {
        c.cluster.heartbeat_interval = Duration::from_millis(200);
        c.cluster.node_timeout = Duration::from_secs(1);
        c.calls.reconnect_grace = Duration::from_millis(300);
        c.calls.udp_port_min = 51500;
        c.calls.udp_port_max = 51899;
    })
    .await
}

fn node(c: &TestCluster, i: usize) -> anyhow::Result<&TestServer> {
    c.node(i).with_context(|| format!("node {i} is running"))
}

async fn user_on(s: &TestServer, prefix: &str) -> anyhow::Result<(Client, Events, u64, String)> {
    let (client, events, id, name, _) = user_with_token(s, prefix).await?;
    Ok((client, events, id, name))
}

/// A new user on `s`, with the access token of its session.
async fn user_with_token(s: &TestServer, prefix: &str) -> anyhow::Result<(Client, Events, u64, String, String)> {
    let (client, events) = s.connect(Transport::WebSocket).await?;
    let name = unique(prefix);
    let auth = client.register(register(&name)).await?;
    Ok((client, events, auth.me.context("me")?.user_id, name, auth.access_token))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_node_commits_reaches_the_other() -> anyhow::Result<()> {
    let two = two_nodes().await?;
    let (a, mut ae, _a_id, _) = user_on(node(&two, 0)?, "clA").await?;
    let (b, mut be, b_id, _) = user_on(node(&two, 1)?, "clB").await?;
    let conv = call!(a, CreateConversation, group("across", &[b_id]))?.conversation_id;
    let _ = next_conv_event(&mut be).await.context("B sees the group created on node 0")?;
    for i in 0..20 {
        let (who, id) = if i % 2 == 0 { (&a, "a") } else { (&b, "b") };
        call!(who, SendMessage, send(conv, &format!("{id}{i}"), "hello"))?;
    }
    // Both devices see every entry once, in seq order, whichever node committed it.
    for events in [&mut ae, &mut be] {
        let mut seqs = Vec::new();
        while seqs.len() < 20 {
            let e = next_conv_event(events).await?;
            if e.conversation_id == conv && matches!(e.body, Some(v1::conversation_event::Body::MessagePosted(_))) {
                seqs.push(e.seq);
            }
        }
        ensure!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "in order, once each: {seqs:?}");
    }
    // Typing on node 1 reaches node 0.
    call!(b, SetTyping, v1::SetTyping { conversation_id: conv, typing: true })?;
    next_matching(&mut ae, Duration::from_secs(3), |e| match e {
        event::Event::TypingChanged(t) if t.user_id == b_id && t.typing => Some(()),
        _ => None,
    })
    .await
    .context("typing across nodes")?;
    // Each node has heard the other (its events came through): /metrics says so, as /healthz does.
    for i in 0..2 {
        let (_, text) = node(&two, i)?.http_get("/metrics").await?;
        ensure!(text.lines().any(|l| l == "confab_cluster_peers 1"), "one other node heard:\n{text}");
        let (_, health) = node(&two, i)?.http_get("/healthz").await?;
        ensure!(health.contains("1 other node(s) heard"), "{health}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_revocation_cross_nodes() -> anyhow::Result<()> {
    let two = two_nodes().await?;
    let (a, mut ae, _a_id, _) = user_on(node(&two, 0)?, "prA").await?;
    let (b, mut be, b_id, b_name) = user_on(node(&two, 1)?, "prB").await?;
    call!(a, CreateConversation, group("presence", &[b_id]))?;
    // B's presence, held on node 1, shows on node 0.
    call!(b, SetPresence, v1::SetPresence { state: PresenceState::Away as i32 })?;
    next_matching(&mut ae, Duration::from_secs(3), |e| match e {
        event::Event::PresenceChanged(p) if p.user_id == b_id && p.state == PresenceState::Away as i32 => Some(()),
        _ => None,
    })
    .await
    .context("B away, seen from node 0")?;
    let users = call!(a, GetUsers, v1::GetUsers { user_ids: vec![b_id] })?;
    ensure!(users.users[0].presence == PresenceState::Away as i32, "profile presence across nodes: {users:?}");
    // B signs in on node 0 too, and revokes its node-1 session from there: node 1 closes it.
    let (b0, _b0e) = node(&two, 0)?.connect(Transport::WebSocket).await?;
    b0.login(&b_name, confab_conformance::util::PASSWORD, "second").await?;
    let sessions = call!(b0, ListSessions, v1::ListSessions {})?;
    let other = sessions.sessions.iter().find(|s| !s.current).context("node-1 session")?;
    let started = tokio::time::Instant::now();
    call!(b0, RevokeSession, v1::RevokeSession { session_id: other.session_id.clone() })?;
    next_matching(&mut be, Duration::from_secs(1), |e| matches!(e, event::Event::SessionRevoked(_)).then_some(()))
        .await
        .context("SessionRevoked on node 1 within 1 s")?;
    tokio::time::timeout(Duration::from_secs(1), async { while be.recv().await.is_some() {} })
        .await
        .context("node 1 closes the revoked connection")?;
    ensure!(started.elapsed() < Duration::from_secs(1), "closed within 1 s: {:?}", started.elapsed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_call_spans_nodes() -> anyhow::Result<()> {
    let two = two_nodes().await?;
    let (a, mut ae, a_id, _) = user_on(node(&two, 0)?, "caA").await?;
    let (b, mut be, b_id, _) = user_on(node(&two, 1)?, "caB").await?;
    let conv = call!(a, CreateConversation, confab_conformance::util::direct(b_id))?.conversation_id;
    let started = call!(a, StartCall, v1::StartCall { conversation_id: conv, media: v1::CallMedia::Audio as i32 })?;
    let call_id = started.call_id.clone();
    let invite = next_matching(&mut be, Duration::from_secs(3), |e| match e {
        event::Event::CallInvite(i) => Some(i.clone()),
        _ => None,
    })
    .await
    .context("the invite reaches node 1")?;
    ensure!(invite.call_id == call_id && invite.caller_id == a_id);
    // Everything B does goes to node 0, which holds the call.
    call!(b, RingCall, v1::RingCall { call_id: call_id.clone() })?;
    next_matching(&mut ae, Duration::from_secs(3), |e| matches!(e, event::Event::CallRinging(_)).then_some(()))
        .await
        .context("ringing, told on node 0")?;
    let accepted = call!(b, AcceptCall, v1::AcceptCall { call_id: call_id.clone() })?;
    ensure!(accepted.peer_party_id == started.party_id, "{accepted:?}");
    next_matching(&mut ae, Duration::from_secs(3), |e| matches!(e, event::Event::CallAccepted(_)).then_some(()))
        .await?;
    let offer = |sdp: &str| v1::CallSignal {
        call_id: call_id.clone(),
        signal: Some(v1::call_signal::Signal::SdpOffer(sdp.into())),
        ..Default::default()
    };
    call!(b, CallSignal, offer("v=0 from b"))?;
    call!(a, CallSignal, offer("v=0 from a"))?;
    for (events, from) in [(&mut ae, &accepted.party_id), (&mut be, &started.party_id)] {
        let got = next_matching(events, Duration::from_secs(3), |e| match e {
            event::Event::CallSignal(s) => Some(s.from_party_id.clone()),
            _ => None,
        })
        .await?;
        ensure!(&got == from, "signal from the other party: {got} vs {from}");
    }
    // A second accept, from node 1, is the owner's answer: already answered.
    let again = b.request(v1::client_frame::Request::AcceptCall(v1::AcceptCall { call_id: call_id.clone() })).await;
    confab_conformance::util::expect_code(again, v1::ErrorCode::FailedPrecondition)?;
    call!(b, HangupCall, v1::HangupCall { call_id, reason: 0 })?;
    next_matching(&mut ae, Duration::from_secs(3), |e| matches!(e, event::Event::CallEnded(_)).then_some(())).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_call_spans_nodes_and_survives_its_node() -> anyhow::Result<()> {
    use confab_conformance::webrtc_peer::GroupPeer;
    let mut two = two_nodes().await?;
    let (a, ae, a_id, _) = user_on(node(&two, 0)?, "gcA").await?;
    let (b, be, b_id, _) = user_on(node(&two, 1)?, "gcB").await?;
    let (c, mut ce, c_id, _) = user_on(node(&two, 1)?, "gcC").await?;
    let conv = call!(a, CreateConversation, group("sfu across", &[b_id, c_id]))?.conversation_id;
    let _ = a_id;
    // A's JoinCall makes node 0 the room's holder; B's, on node 1, is forwarded there.
    let (pa, _) = GroupPeer::join(a, ae, conv, 1).await?;
    let (pb, joined) = GroupPeer::join(b, be, conv, 2).await?;
    ensure!(joined.participants.iter().any(|p| p.participant_id == pa.participant_id), "{joined:?}");
    pa.publish().await?;
    pb.publish().await?;
    let both = |got: &std::collections::HashMap<String, confab_conformance::webrtc_peer::Received>,
                from: &GroupPeer| {
        got.values().filter(|r| r.stream_id == from.participant_id && r.packets >= 25).count() == 2
    };
    pb.wait_received(Duration::from_secs(15), "A's media at B (node 1)", |g| both(g, &pa)).await?;
    pa.wait_received(Duration::from_secs(15), "B's media at A (node 0)", |g| both(g, &pb)).await?;
    // Node 0 stops: the call's participants (and members) on node 1 are told it ended...
    two.stop_node(0).await?;
    pb.next_event(Duration::from_secs(10), |e| match e {
        event::Event::GroupCallState(g) if g.conversation_id == conv && g.participants == 0 => Some(()),
        _ => None,
    })
    .await
    .context("B told the call ended")?;
    next_matching(&mut ce, Duration::from_secs(10), |e| match e {
        event::Event::GroupCallState(g) if g.conversation_id == conv && g.participants == 0 => Some(()),
        _ => None,
    })
    .await
    .context("C told the call ended")?;
    // ...and the next JoinCall starts the room on node 1.
    let (pc, joined) = GroupPeer::join(c, ce, conv, 3).await?;
    ensure!(joined.participants.is_empty(), "a fresh room: {joined:?}");
    pc.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_gone_from_another_node_ends_the_call_after_the_grace() -> anyhow::Result<()> {
    let two = two_nodes().await?;
    let (a, mut ae, _a_id, _) = user_on(node(&two, 0)?, "lgA").await?;
    let (b, mut be, b_id, b_name, token) = user_with_token(node(&two, 1)?, "lgB").await?;
    let conv = call!(a, CreateConversation, confab_conformance::util::direct(b_id))?.conversation_id;
    let media = v1::CallMedia::Audio as i32;
    // First call: B's device drops from node 1 and comes back on node 0 within the grace — the
    // call (held by node 0) goes on.
    let started = call!(a, StartCall, v1::StartCall { conversation_id: conv, media })?;
    next_matching(&mut be, Duration::from_secs(3), |e| matches!(e, event::Event::CallInvite(_)).then_some(())).await?;
    call!(b, AcceptCall, v1::AcceptCall { call_id: started.call_id.clone() })?;
    drop((b, be));
    let (b0, _b0e) = node(&two, 0)?.connect(Transport::WebSocket).await?;
    call!(b0, Authenticate, v1::Authenticate { access_token: token })?;
    let ended =
        next_matching(&mut ae, Duration::from_secs(1), |e| matches!(e, event::Event::CallEnded(_)).then_some(()));
    ensure!(ended.await.is_err(), "the call ended although B's device came back on another node in time");
    call!(a, HangupCall, v1::HangupCall { call_id: started.call_id, reason: 0 })?;
    // Second call: B's device on node 1 drops for good — the call ends CONNECTION_LOST.
    let (b1, mut b1e) = node(&two, 1)?.connect(Transport::WebSocket).await?;
    b1.login(&b_name, confab_conformance::util::PASSWORD, "again").await?;
    drop(b0);
    let started = call!(a, StartCall, v1::StartCall { conversation_id: conv, media })?;
    next_matching(&mut b1e, Duration::from_secs(3), |e| matches!(e, event::Event::CallInvite(_)).then_some(())).await?;
    call!(b1, AcceptCall, v1::AcceptCall { call_id: started.call_id.clone() })?;
    drop((b1, b1e));
    let reason = next_matching(&mut ae, Duration::from_secs(5), |e| match e {
        event::Event::CallEnded(c) if c.call_id == started.call_id => Some(c.reason),
        _ => None,
    })
    .await
    .context("the call ends after the grace")?;
    ensure!(reason == v1::HangupReason::ConnectionLost as i32, "reason {reason}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_show_the_link() -> anyhow::Result<()> {
    let two = two_nodes().await?;
    let (a, _ae, _, _) = user_on(node(&two, 0)?, "mtA").await?;
    let (_b, mut be, b_id, _) = user_on(node(&two, 1)?, "mtB").await?;
    let conv = call!(a, CreateConversation, group("metrics", &[b_id]))?.conversation_id;
    call!(a, SendMessage, send(conv, "m1", "counted"))?;
    next_matching(&mut be, Duration::from_secs(3), |e| match e {
        event::Event::ConversationEvent(c)
            if matches!(c.body, Some(v1::conversation_event::Body::MessagePosted(_))) =>
        {
            Some(())
        }
        _ => None,
    })
    .await?;
    let (status, body) = node(&two, 1)?.http_get("/healthz").await?;
    ensure!(status == 200 && body.contains("nats: connected") && body.contains("1 other node"), "{status} {body}");
    let counter = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let (_, m0) = node(&two, 0)?.http_get("/metrics").await?;
    let (_, m1) = node(&two, 1)?.http_get("/metrics").await?;
    ensure!(counter(&m0, "confab_cluster_published_total") >= 2.0, "node 0 published: {m0}");
    ensure!(counter(&m1, "confab_cluster_received_total") >= 2.0, "node 1 received: {m1}");
    let (up, peers) = (counter(&m1, "confab_cluster_link_up"), counter(&m1, "confab_cluster_peers"));
    ensure!(up == 1.0 && peers == 1.0, "link_up {up}, peers {peers}: {m1}");
    // The message was committed by node 0's writer and delivered live by node 1's hub.
    ensure!(counter(&m1, "confab_deliveries_total") >= 1.0, "node 1 delivered nothing: {m1}");
    ensure!(counter(&m0, "confab_writer_batch_size_count") >= 1.0, "node 0 committed no batch: {m0}");
    ensure!(counter(&m0, "confab_writer_batch_duration_seconds_count") >= 1.0, "no batch duration: {m0}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_fails_to_start_leaves_the_cluster() -> anyhow::Result<()> {
    let mut two = two_nodes().await?;
    let nats_url = two.nats().url();
    let keys = tempfile::tempdir()?;
    let bad_key = keys.path().join("not-a-key.pem");
    std::fs::write(&bad_key, "not a key")?;
    // It connects to NATS (and starts its heartbeat), then fails on its signing key.
    let failed = TestServer::start_on(two.database_url(), |c| {
        c.cluster.nats_url = Some(confab_server::config::NatsUrl::new(nats_url));
        c.cluster.node_id = Some("node-broken".into());
        c.cluster.heartbeat_interval = Duration::from_millis(200);
        c.cluster.node_timeout = Duration::from_secs(1);
        c.auth.signing_key_path = Some(bad_key);
    })
    .await;
    ensure!(failed.is_err(), "a bad signing key stops the start");
    // Its heartbeats stopped with it: once a node timeout and a few heartbeats have passed (absence
    // takes a wait to see), the running nodes hear one other node, not two.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, text) = node(&two, 0)?.http_get("/metrics").await?;
    ensure!(text.lines().any(|l| l == "confab_cluster_peers 1"), "the broken node is still heard:\n{text}");
    let (_, health) = node(&two, 0)?.http_get("/healthz").await?;
    ensure!(health.contains("1 other node(s) heard"), "{health}");
    Ok(())
}
