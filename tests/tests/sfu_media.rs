//! Media behaviour of the integrated SFU (docs/protocol.md §20.3.8, §20.3.9) with real WebRTC
//! peers on loopback whose wire is tapped ([`confab_conformance::wiretap`]): every new subscriber
//! gets a keyframe once connected and the current active speakers, forwarded RTP carries the
//! subscriber m-line's mid, and publishers get congestion feedback.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::ensure;
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::util::{User, expect_code, new_user};
use confab_conformance::webrtc_peer::{GroupPeer, Received};
use confab_conformance::wiretap::RtcpKind;
use confab_protocol::v1::{self, ErrorCode, event};

const WAIT: Duration = Duration::from_secs(10);

async fn server() -> anyhow::Result<TestServer> {
    TestServer::start_with(StoreKind::Sqlite, |c| {
        c.calls.max_publishers = 4;
        c.calls.max_participants = 16;
        c.calls.reconnect_grace = Duration::from_millis(300);
        c.calls.room_ttl = Duration::from_secs(2);
        c.calls.udp_port_min = 51400;
        c.calls.udp_port_max = 51799;
    })
    .await
}

async fn group(owner: &User, members: &[&User]) -> anyhow::Result<u64> {
    let ids: Vec<u64> = members.iter().map(|u| u.id).collect();
    Ok(call!(owner.client, CreateConversation, confab_conformance::util::group("sfu", &ids))?.conversation_id)
}

async fn leave(p: &GroupPeer) -> anyhow::Result<()> {
    call!(p.client(), LeaveCall, v1::LeaveCall { room_id: Default::default(), conversation_id: p.conversation_id })?;
    p.close().await;
    Ok(())
}

/// `p`'s video as `sub` receives it.
fn video_of(got: &HashMap<String, Received>, p: &GroupPeer) -> Option<Received> {
    got.values().find(|r| r.stream_id == p.participant_id && r.video).cloned()
}

/// §20.3.8: every new subscriber gets a keyframe once its connection is connected (the SFU asks
/// the publisher then, per subscriber, not once a second per track), and gets the current active
/// speakers right after its join although the list did not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_joiner_gets_a_keyframe_after_connecting_and_the_current_speakers() -> anyhow::Result<()> {
    let s = server().await?;
    let t = Transport::WebSocket;
    let a = new_user(&s, t, "kfA").await?;
    let mut others = Vec::new();
    for i in 0..5 {
        others.push(new_user(&s, t, &format!("kf{i}")).await?);
    }
    let conv = group(&a, &others.iter().collect::<Vec<_>>()).await?;
    let (pa, _) = GroupPeer::join(a.client, a.events, conv, 1).await?;
    pa.publish().await?;
    let mut peers = Vec::new();
    let mut figures = Vec::new();
    for (i, u) in others.into_iter().enumerate() {
        let started = Instant::now();
        let (p, _) = GroupPeer::join(u.client, u.events, conv, 10 + i as u8).await?;
        // The speaker list A leads is sent to the joiner although it did not change.
        let speakers = p
            .next_event(WAIT, |e| match e {
                event::Event::ActiveSpeakers(s) if !s.speakers.is_empty() => Some(s.speakers.clone()),
                _ => None,
            })
            .await?;
        ensure!(speakers[0].participant_id == pa.participant_id, "joiner {i}: {speakers:?}");
        p.wait_received(WAIT, "a keyframe of A's video", |got| video_of(got, &pa).is_some_and(|r| r.keyframes > 0))
            .await?;
        let video = video_of(&p.received(), &pa).ok_or_else(|| anyhow::anyhow!("no video"))?;
        let keyframe = video.first_keyframe_at.ok_or_else(|| anyhow::anyhow!("no keyframe time"))?;
        let connected = p.connected_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner).unwrap_or(keyframe);
        let pli_after_connect = pa
            .pli_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|&&at| at >= started)
            .map(|&at| at.saturating_duration_since(connected))
            .min();
        figures.push((keyframe - started, keyframe.saturating_duration_since(connected), pli_after_connect));
        peers.push(p);
    }
    for (i, (join, connect, pli)) in figures.iter().enumerate() {
        println!(
            "joiner {i}: join → first keyframe {join:?}, connected → first keyframe {connect:?}, connected → PLI {pli:?}"
        );
    }
    for p in &peers {
        leave(p).await?;
    }
    leave(&pa).await?;
    s.stop().await
}

/// The m-sections of an SDP, each as its lines.
fn sections(sdp: &str) -> Vec<Vec<&str>> {
    sdp.split("\nm=").skip(1).map(|s| s.lines().map(str::trim).collect()).collect()
}

/// The mid the subscriber offer gives the m-line sending `ssrc`, and the `sdes:mid` extension id.
fn mid_of(sdp: &str, ssrc: u32) -> Option<(String, u8)> {
    let ext = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=extmap:").filter(|l| l.ends_with("urn:ietf:params:rtp-hdrext:sdes:mid")))
        .and_then(|l| l.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())?;
    let section = sections(sdp).into_iter().find(|s| s.iter().any(|l| l.starts_with(&format!("a=ssrc:{ssrc} "))))?;
    let mid = section.iter().find_map(|l| l.strip_prefix("a=mid:"))?;
    Some((mid.to_string(), ext))
}

/// Checks that every packet `sub` got from `ssrc` carried its m-line's mid; returns how many.
fn mid_tagged(sub: &GroupPeer, ssrc: u32) -> anyhow::Result<usize> {
    let offer = sub.last_offer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let (mid, ext) = mid_of(&offer, ssrc).ok_or_else(|| anyhow::anyhow!("no m-line sends {ssrc}: {offer}"))?;
    let log = sub.tap.log();
    let mine: Vec<_> = log.rtp_in.iter().filter(|r| r.conn == 0 && r.ssrc == ssrc).collect();
    ensure!(!mine.is_empty(), "no packet of {ssrc}");
    for r in &mine {
        let got = r.extensions.iter().find(|(id, _)| *id == ext).map(|(_, v)| v.clone());
        ensure!(got.as_deref() == Some(mid.as_bytes()), "packet {} of {ssrc}: mid {got:?}, want {mid}", r.seq);
    }
    Ok(mine.len())
}

/// §20.3.4, §20.3.5, §20.3.8, §20.3.9: the subscriber offer's session and directions, server
/// candidates' mid, the mid header extension on forwarded RTP (also on an m-line reused after a
/// publisher left and another joined), and congestion feedback at the publisher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_sdp_candidates_mid_extension_and_publisher_feedback() -> anyhow::Result<()> {
    let s = server().await?;
    let t = Transport::WebSocket;
    let a = new_user(&s, t, "sdpA").await?;
    let b = new_user(&s, t, "sdpB").await?;
    let c = new_user(&s, t, "sdpC").await?;
    let conv = group(&a, &[&b, &c]).await?;
    let (pa, _) = GroupPeer::join(a.client, a.events, conv, 1).await?;
    let (pb, _) = GroupPeer::join(b.client, b.events, conv, 2).await?;
    pa.publish().await?;
    pb.wait_received(WAIT, "A's video", |got| video_of(got, &pa).is_some_and(|r| r.packets >= 50)).await?;

    // The first SubscriberOffer: msid-semantic, forwarded tracks sendonly.
    let offer = pb.last_offer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    ensure!(offer.contains("a=msid-semantic: WMS *") || offer.contains("a=msid-semantic:WMS *"), "{offer}");
    for section in sections(&offer) {
        if section.iter().any(|l| l.starts_with("a=msid:")) {
            ensure!(section.contains(&"a=sendonly"), "a forwarded track not sendonly: {section:?}");
        }
    }
    // Server candidates name the bundle's first mid.
    let first_mid = sections(&offer)[0].iter().find_map(|l| l.strip_prefix("a=mid:")).unwrap_or("").to_string();
    {
        let cands = pb.server_candidates.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        ensure!(!cands.is_empty(), "no server candidate");
        for cand in cands.iter() {
            ensure!(!cand.sdp_mid.is_empty(), "{cand:?}");
        }
        ensure!(cands.iter().any(|c| c.sdp_mid == first_mid && c.sdp_m_line_index == 0), "{cands:?} vs {first_mid}");
    }
    // Forwarded RTP carries the m-line's mid (audio and video).
    let ssrcs: Vec<u32> = {
        let log = pb.tap.log();
        let mut v: Vec<u32> = log.rtp_in.iter().filter(|r| r.conn == 0).map(|r| r.ssrc).collect();
        v.sort();
        v.dedup();
        v
    };
    ensure!(ssrcs.len() == 2, "{ssrcs:?}");
    for ssrc in &ssrcs {
        mid_tagged(&pb, *ssrc)?;
    }
    // The publisher gets congestion feedback (transport-cc) on its connection.
    let deadline = Instant::now() + WAIT;
    loop {
        let twcc = pa.tap.log().rtcp_in.iter().filter(|r| r.conn == 1 && r.kind == RtcpKind::TransportCc).count();
        let remb = pa.tap.log().rtcp_in.iter().filter(|r| r.conn == 1 && r.kind == RtcpKind::Remb).count();
        if twcc + remb > 0 {
            println!("publisher feedback: {twcc} TransportLayerCC, {remb} REMB");
            break;
        }
        ensure!(Instant::now() < deadline, "no congestion feedback at the publisher");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A leaves: its m-lines are freed (inactive); C joins and publishes: B gets C's media, on
    // m-lines that carry their mid.
    let offers = pb.offers.load(std::sync::atomic::Ordering::Relaxed);
    leave(&pa).await?;
    let deadline = Instant::now() + WAIT;
    while pb.offers.load(std::sync::atomic::Ordering::Relaxed) <= offers {
        ensure!(Instant::now() < deadline, "no SubscriberOffer after A left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let offer = pb.last_offer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    for section in sections(&offer) {
        ensure!(!section.contains(&"a=recvonly") && !section.contains(&"a=sendrecv"), "{section:?}");
    }
    ensure!(sections(&offer).iter().any(|s| s.contains(&"a=inactive")), "no freed m-line inactive: {offer}");
    let (pc, _) = GroupPeer::join(c.client, c.events, conv, 3).await?;
    pc.publish().await?;
    pb.wait_received(WAIT, "C's video", |got| video_of(got, &pc).is_some_and(|r| r.packets >= 50)).await?;
    pb.wait_received(WAIT, "C's audio", |got| {
        got.values().any(|r| r.stream_id == pc.participant_id && !r.video && r.packets >= 50)
    })
    .await?;
    let new: Vec<u32> = {
        let log = pb.tap.log();
        let mut v: Vec<u32> =
            log.rtp_in.iter().filter(|r| r.conn == 0 && !ssrcs.contains(&r.ssrc)).map(|r| r.ssrc).collect();
        v.sort();
        v.dedup();
        v
    };
    ensure!(new.len() == 2, "{new:?}");
    for ssrc in &new {
        mid_tagged(&pb, *ssrc)?;
    }
    let offer = pb.last_offer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    println!("m-sections after A left and C published: {}", sections(&offer).len());
    leave(&pc).await?;
    leave(&pb).await?;
    s.stop().await
}

/// Bytes no refusal may echo.
const MARK: &str = "ZQXJ7731";

/// §20.3.3–§20.3.5: malformed SDP and candidates, and an offer whose audio has no codec the SFU
/// forwards (PCMU only), are refused with INVALID_ARGUMENT naming the field, with a short message
/// that echoes nothing of the input; the call goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_field_and_echo_no_input() -> anyhow::Result<()> {
    let s = server().await?;
    let t = Transport::WebSocket;
    let a = new_user(&s, t, "badA").await?;
    let b = new_user(&s, t, "badB").await?;
    let conv = group(&a, &[&b]).await?;
    let (pa, _) = GroupPeer::join(a.client, a.events, conv, 1).await?;
    let sample = GroupPeer::sample_offer().await?;
    let check = |e: v1::Error, field: &str| -> anyhow::Result<()> {
        ensure!(e.field == field, "{e:?}");
        ensure!(!e.message.contains(MARK) && e.message.len() < 200, "the message echoes input: {e:?}");
        Ok(())
    };
    let pcmu = sample.replace("opus/48000/2", "PCMU/8000");
    let offers = [
        format!("v=0\r\n{MARK}\r\n"),
        format!("{MARK}{sample}"),
        sample.replace("a=ice-ufrag:", &format!("a=x-{MARK}:")),
        pcmu.clone(),
    ];
    for (i, bad) in offers.iter().enumerate() {
        let r = call!(
            pa.client(),
            Publish,
            v1::Publish { room_id: Default::default(), conversation_id: conv, sdp_offer: bad.clone() }
        );
        let e = expect_code(r, ErrorCode::InvalidArgument).map_err(|e| anyhow::anyhow!("offer {i}: {e}"))?;
        check(e, "publish.sdp_offer")?;
    }
    // The PCMU-only refusal says what is missing.
    let r = call!(
        pa.client(),
        Publish,
        v1::Publish { room_id: Default::default(), conversation_id: conv, sdp_offer: pcmu }
    );
    let e = expect_code(r, ErrorCode::InvalidArgument)?;
    ensure!(e.message.contains("Opus"), "{e:?}");

    // A real publish, then malformed candidates on the publisher connection.
    pa.publish().await?;
    for cand in
        [format!("candidate:{MARK}"), format!("candidate:1 1 UDP {MARK} 127.0.0.1 9 typ host"), MARK.to_string()]
    {
        let tr = v1::Trickle {
            room_id: Default::default(),
            conversation_id: conv,
            role: v1::PeerRole::Publisher as i32,
            candidate: Some(v1::IceCandidate { candidate: cand, sdp_mid: "0".into(), sdp_m_line_index: 0 }),
        };
        let e = expect_code(call!(pa.client(), Trickle, tr), ErrorCode::InvalidArgument)?;
        check(e, "trickle.candidate")?;
    }
    // A malformed answer to a real SubscriberOffer.
    let mut b = b;
    call!(b.client, JoinCall, v1::JoinCall { room_id: Default::default(), conversation_id: conv })?;
    let offer = confab_conformance::util::next_matching(&mut b.events, WAIT, |e| match e {
        event::Event::SubscriberOffer(o) => Some(o.sdp_offer.clone()),
        _ => None,
    })
    .await?;
    for bad in [MARK.to_string(), offer.replace("a=ice-ufrag:", &format!("a=x-{MARK}:")), format!("v=0\r\n{MARK}")] {
        let r = call!(
            b.client,
            SubscriberAnswer,
            v1::SubscriberAnswer { room_id: Default::default(), conversation_id: conv, sdp_answer: bad }
        );
        check(expect_code(r, ErrorCode::InvalidArgument)?, "subscriber_answer.sdp_answer")?;
    }
    call!(b.client, LeaveCall, v1::LeaveCall { room_id: Default::default(), conversation_id: conv })?;
    leave(&pa).await?;
    s.stop().await
}
