//! ICE restarts and dead-media detection in group calls (docs/protocol.md §20.3.11, §20.3.12),
//! with real WebRTC peers on loopback: RestartIce SUBSCRIBER brings a SubscriberOffer with new ICE
//! credentials and media goes on; RestartIce PUBLISHER is refused, and a Publish whose offer
//! restarts ICE is answered with new credentials and media goes on; a peer whose subscriber
//! connection stops (signalling still up) is LOST, RESTARTING, then FAILED and leaves, and so is
//! a publisher whose transport closes without LeaveCall.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::ensure;
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::util::{User, expect_code, new_user};
use confab_conformance::webrtc_peer::{GroupPeer, Received};
use confab_protocol::v1::{self, ErrorCode, MediaState, PeerRole, event};

const WAIT: Duration = Duration::from_secs(10);

async fn server(media_timeout: Duration) -> anyhow::Result<TestServer> {
    TestServer::start_with(StoreKind::Sqlite, |c| {
        c.calls.udp_port_min = 51600;
        c.calls.udp_port_max = 51799;
        c.calls.media_timeout = media_timeout;
    })
    .await
}

async fn group(owner: &User, members: &[&User]) -> anyhow::Result<u64> {
    let ids: Vec<u64> = members.iter().map(|u| u.id).collect();
    Ok(call!(owner.client, CreateConversation, confab_conformance::util::group("restart", &ids))?.conversation_id)
}

fn packets(got: &HashMap<String, Received>, from: &GroupPeer) -> u64 {
    got.values().filter(|r| r.stream_id == from.participant_id).map(|r| r.packets).sum()
}

/// Waits until `sub` got `n` more packets of `from`'s tracks.
async fn more_media(sub: &GroupPeer, from: &GroupPeer, n: u64, what: &str) -> anyhow::Result<()> {
    let now = packets(&sub.received(), from);
    sub.wait_received(WAIT, what, |got| packets(got, from) >= now + n).await
}

fn restart(conv: u64, role: PeerRole) -> v1::RestartIce {
    v1::RestartIce { conversation_id: conv, room_id: String::new(), role: role as i32 }
}

async fn media_state(p: &GroupPeer, role: PeerRole, state: MediaState) -> anyhow::Result<()> {
    p.next_event(WAIT, |e| match e {
        event::Event::MediaConnectionState(m) if m.role == role as i32 && m.state == state as i32 => Some(()),
        _ => None,
    })
    .await
}

async fn left(p: &GroupPeer, who: &GroupPeer) -> anyhow::Result<()> {
    p.next_event(WAIT, |e| match e {
        event::Event::ParticipantLeft(l) if l.participant_id == who.participant_id => Some(()),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restarts_on_both_connections_keep_media_flowing() -> anyhow::Result<()> {
    let s = server(Duration::from_secs(10)).await?;
    let t = Transport::WebSocket;
    let a = new_user(&s, t, "iceA").await?;
    let b = new_user(&s, t, "iceB").await?;
    let conv = group(&a, &[&b]).await?;
    let (pa, _) = GroupPeer::join(a.client, a.events, conv, 1).await?;
    let (pb, _) = GroupPeer::join(b.client, b.events, conv, 2).await?;
    pa.publish().await?;
    more_media(&pb, &pa, 50, "A's media at B").await?;

    // Subscriber: a new offer with new ICE credentials; media goes on once it is answered.
    let before = pb.subscriber_server_ufrag().await.unwrap_or_default();
    call!(pb.client(), RestartIce, restart(conv, PeerRole::Subscriber))?;
    let deadline = Instant::now() + WAIT;
    let after = loop {
        let now = pb.subscriber_server_ufrag().await.unwrap_or_default();
        if now != before {
            break now;
        }
        ensure!(Instant::now() < deadline, "no restart offer (ufrag still {before})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    ensure!(!before.is_empty() && !after.is_empty(), "{before:?} → {after:?}");
    more_media(&pb, &pa, 50, "A's media at B after the subscriber restart").await?;

    // Publisher: refused; the client restarts it with its own offer, which the server takes.
    expect_code(call!(pa.client(), RestartIce, restart(conv, PeerRole::Publisher)), ErrorCode::FailedPrecondition)?;
    let (before, after) = pa.restart_publisher_ice().await?;
    ensure!(!after.is_empty() && before != after, "server ufrag {before:?} → {after:?}");
    more_media(&pb, &pa, 50, "A's media at B after the publisher restart").await?;

    expect_code(call!(pb.client(), RestartIce, restart(conv, PeerRole::Unspecified)), ErrorCode::InvalidArgument)?;
    for p in [&pa, &pb] {
        p.close().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_media_stops_is_restarted_then_leaves() -> anyhow::Result<()> {
    let s = server(Duration::from_millis(1000)).await?;
    let t = Transport::WebSocket;
    let a = new_user(&s, t, "deadA").await?;
    let b = new_user(&s, t, "deadB").await?;
    let c = new_user(&s, t, "deadC").await?;
    let conv = group(&a, &[&b, &c]).await?;
    let (pa, _) = GroupPeer::join(a.client, a.events, conv, 1).await?;
    let (pb, _) = GroupPeer::join(b.client, b.events, conv, 2).await?;
    let (pc, _) = GroupPeer::join(c.client, c.events, conv, 3).await?;
    pa.publish().await?;
    more_media(&pb, &pa, 50, "A's media at B").await?;
    more_media(&pc, &pa, 50, "A's media at C").await?;

    // B's receiving connection dies while its signalling stays up.
    let stopped = Instant::now();
    pb.close_subscriber().await;
    media_state(&pb, PeerRole::Subscriber, MediaState::Lost).await?;
    println!("B's subscriber connection LOST after {:?}", stopped.elapsed());
    media_state(&pb, PeerRole::Subscriber, MediaState::Restarting).await?;
    media_state(&pb, PeerRole::Subscriber, MediaState::Failed).await?;
    left(&pa, &pb).await?;
    left(&pc, &pb).await?;
    expect_code(call!(pb.client(), RestartIce, restart(conv, PeerRole::Subscriber)), ErrorCode::FailedPrecondition)?;
    // C, still receiving, is untouched.
    more_media(&pc, &pa, 50, "A's media at C after B left").await?;

    // A's transport closes without LeaveCall: its publisher connection is lost, then A leaves.
    pa.close().await;
    media_state(&pa, PeerRole::Publisher, MediaState::Lost).await?;
    media_state(&pa, PeerRole::Publisher, MediaState::Failed).await?;
    left(&pc, &pa).await?;
    pc.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_candidates_the_server_cannot_reach_are_dropped() -> anyhow::Result<()> {
    let s = server(Duration::from_secs(10)).await?;
    let a = new_user(&s, Transport::WebSocket, "candA").await?;
    let conv = group(&a, &[]).await?;
    let (pa, _) = GroupPeer::join(a.client, a.events, conv, 1).await?;
    pa.publish().await?;
    let trickle = |candidate: &str| v1::Trickle {
        conversation_id: conv,
        room_id: String::new(),
        role: PeerRole::Publisher as i32,
        candidate: Some(v1::IceCandidate { candidate: candidate.into(), sdp_mid: "0".into(), sdp_m_line_index: 0 }),
    };
    // The server binds 127.0.0.1: link-local, multicast, IPv6 and mDNS names are dropped, even
    // malformed (TrickleResult, nothing reaches the stack).
    for addr in ["169.254.10.1", "fe80::1", "224.0.0.251", "2001:db8::1", "0d5c2b7e-6b1f.local"] {
        call!(pa.client(), Trickle, trickle(&format!("candidate:1 1 udp not-a-priority {addr} 9 typ host")))?;
    }
    // A reachable one is taken; a malformed reachable one gets to the stack and is refused.
    call!(pa.client(), Trickle, trickle("candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"))?;
    expect_code(
        call!(pa.client(), Trickle, trickle("candidate:1 1 udp not-a-priority 127.0.0.1 9 typ host")),
        ErrorCode::InvalidArgument,
    )?;
    pa.close().await;
    Ok(())
}
