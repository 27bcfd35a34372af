//! Group calls through the integrated SFU (docs/protocol.md §20.3), with real WebRTC peers on
//! loopback ([`GroupPeer`]): media from a publisher reaches every subscriber intact and in order,
//! a late subscriber makes the server ask the publisher for a keyframe, a leaving publisher's
//! tracks go from every subscriber, non-members cannot join, a malformed SDP is refused without
//! harming the room, mute and publisher limits, and a device gone longer than the reconnect grace
//! leaves.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::ensure;
use confab_conformance::call;
use confab_conformance::harness::{StoreKind, TestServer, Transport};
use confab_conformance::util::{User, expect_code, new_user, next_matching};
use confab_conformance::webrtc_peer::{GroupPeer, Received};
use confab_protocol::v1::{self, ErrorCode, event};

const WAIT: Duration = Duration::from_secs(10);

async fn server(max_publishers: u32, max_participants: u32) -> anyhow::Result<TestServer> {
    TestServer::start_with(StoreKind::Sqlite, |c| {
        c.calls.max_publishers = max_publishers;
        c.calls.max_participants = max_participants;
        c.calls.reconnect_grace = Duration::from_millis(300);
        c.calls.room_ttl = Duration::from_secs(2);
        // A range of its own per test server would be nicer; the SFU skips ports in use.
        c.calls.udp_port_min = 51000;
        c.calls.udp_port_max = 51399;
    })
    .await
}

async fn group(owner: &User, members: &[&User]) -> anyhow::Result<u64> {
    let ids: Vec<u64> = members.iter().map(|u| u.id).collect();
    Ok(call!(owner.client, CreateConversation, confab_conformance::util::group("sfu", &ids))?.conversation_id)
}

async fn peer(u: User, conv: u64, tag: u8) -> anyhow::Result<(GroupPeer, v1::JoinCallResult)> {
    GroupPeer::join(u.client, u.events, conv, tag).await
}

/// Both of `p`'s tracks arrived `min` times at `sub`, intact, in order, without gaps.
fn flowing(got: &HashMap<String, Received>, p: &GroupPeer, min: u64) -> bool {
    let mine: Vec<&Received> = got.values().filter(|r| r.stream_id == p.participant_id).collect();
    mine.len() == 2 && mine.iter().all(|r| r.packets >= min)
}

fn assert_clean(who: &str, got: &HashMap<String, Received>) -> anyhow::Result<()> {
    for (id, r) in got {
        ensure!(r.corrupt == 0 && r.gaps == 0 && r.reordered == 0, "{who} {id}: {r:?}");
        ensure!(r.video || r.packets == 0 || r.with_level > 0, "{who} {id}: audio level not forwarded: {r:?}");
    }
    Ok(())
}

async fn track_published(p: &GroupPeer) -> anyhow::Result<v1::Track> {
    p.next_event(WAIT, |e| match e {
        event::Event::TrackPublished(t) => t.track.clone(),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_reaches_subscribers_late_join_asks_keyframe_and_leaving_removes_tracks() -> anyhow::Result<()> {
    let s = server(4, 8).await?;
    let t = Transport::WebSocket;
    let a = new_user(&s, t, "sfuA").await?;
    let b = new_user(&s, t, "sfuB").await?;
    let c = new_user(&s, t, "sfuC").await?;
    let d = new_user(&s, t, "sfuD").await?;
    let conv = group(&a, &[&b, &c, &d]).await?;

    let (pa, joined) = peer(a, conv, 1).await?;
    ensure!(joined.participants.is_empty() && !joined.participant_id.is_empty(), "{joined:?}");
    let (pb, joined) = peer(b, conv, 2).await?;
    ensure!(joined.participants.len() == 1 && joined.participants[0].participant_id == pa.participant_id);
    let who = pa
        .next_event(WAIT, |e| match e {
            event::Event::ParticipantJoined(j) => j.participant.clone(),
            _ => None,
        })
        .await?;
    ensure!(who.participant_id == pb.participant_id, "{who:?}");
    pb.next_event(WAIT, |e| match e {
        event::Event::GroupCallState(g) if g.conversation_id == conv && g.participants == 2 => Some(()),
        _ => None,
    })
    .await?;
    let (pc, _) = peer(c, conv, 3).await?;

    // (1) A's audio and video reach B and C intact and in order.
    let started = std::time::Instant::now();
    pa.publish().await?;
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tr = track_published(&pb).await?;
        ensure!(tr.participant_id == pa.participant_id, "{tr:?}");
        kinds.push(tr.kind);
    }
    kinds.sort();
    ensure!(kinds == [v1::TrackKind::Audio as i32, v1::TrackKind::Video as i32], "{kinds:?}");
    for sub in [&pb, &pc] {
        sub.wait_received(WAIT, "A's tracks", |got| flowing(got, &pa, 50)).await?;
    }
    println!("first 50 packets at 2 subscribers after {:?}", started.elapsed());
    // A's audio carries levels: A is the active speaker.
    let speakers = pb
        .next_event(WAIT, |e| match e {
            event::Event::ActiveSpeakers(s) if !s.speakers.is_empty() => Some(s.speakers.clone()),
            _ => None,
        })
        .await?;
    ensure!(speakers[0].participant_id == pa.participant_id && speakers[0].level > 0, "{speakers:?}");

    // (2) A late subscriber makes the server ask A for a keyframe.
    let plis_before = pa.pli_count();
    let late = std::time::Instant::now();
    let (pd, joined) = peer(d, conv, 4).await?;
    ensure!(joined.participants.iter().any(|p| p.participant_id == pa.participant_id && p.tracks.len() == 2));
    pd.wait_received(WAIT, "A's first packets at the late subscriber", |got| flowing(got, &pa, 1)).await?;
    println!("late join to first packets: {:?}", late.elapsed());
    pd.wait_received(WAIT, "A's tracks at the late subscriber", |got| flowing(got, &pa, 25)).await?;
    let deadline = std::time::Instant::now() + WAIT;
    while pa.pli_count() <= plis_before {
        ensure!(std::time::Instant::now() < deadline, "no PLI at the publisher after a late join");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (name, sub) in [("B", &pb), ("C", &pc), ("D", &pd)] {
        assert_clean(name, &sub.received())?;
    }

    // SetMute → TrackMuted at the others.
    call!(
        pa.client(),
        SetMute,
        v1::SetMute { room_id: Default::default(), conversation_id: conv, track_id: "1-audio".into(), muted: true }
    )?;
    let muted = pc
        .next_event(WAIT, |e| match e {
            event::Event::TrackMuted(m) => Some(m.clone()),
            _ => None,
        })
        .await?;
    ensure!(muted.muted && muted.track_id.starts_with(&pa.participant_id), "{muted:?}");
    expect_code(
        call!(
            pa.client(),
            SetMute,
            v1::SetMute { room_id: Default::default(), conversation_id: conv, track_id: "nope".into(), muted: true }
        ),
        ErrorCode::NotFound,
    )?;

    // A re-offers without its video: only that track is unpublished; audio keeps flowing.
    pa.unpublish_video().await?;
    let gone = pb
        .next_event(WAIT, |e| match e {
            event::Event::TrackUnpublished(u) => Some(u.clone()),
            _ => None,
        })
        .await?;
    ensure!(gone.track_id == format!("{}:1-video", pa.participant_id), "{gone:?}");
    let audio_id = format!("{}:1-audio", pa.participant_id);
    let audio_now = pb.received().get(&audio_id).map_or(0, |r| r.packets);
    pb.wait_received(WAIT, "A's audio after the video went", |got| {
        got.get(&audio_id).is_some_and(|r| r.packets > audio_now + 10)
    })
    .await?;
    for sub in [&pc, &pd] {
        sub.next_event(WAIT, |e| match e {
            event::Event::TrackUnpublished(u) if u.track_id == gone.track_id => Some(()),
            _ => None,
        })
        .await?;
    }

    // (3) A leaves: its tracks are unpublished everywhere, a new offer follows, packets stop.
    let offers_before: Vec<u32> =
        [&pb, &pc, &pd].iter().map(|p| p.offers.load(std::sync::atomic::Ordering::Relaxed)).collect();
    call!(pa.client(), LeaveCall, v1::LeaveCall { room_id: Default::default(), conversation_id: conv })?;
    pa.close().await;
    for sub in [&pb, &pc, &pd] {
        {
            let gone = sub
                .next_event(WAIT, |e| match e {
                    event::Event::TrackUnpublished(u) => Some(u.clone()),
                    _ => None,
                })
                .await?;
            ensure!(gone.participant_id == pa.participant_id && gone.track_id == audio_id, "{gone:?}");
        }
        let left = sub
            .next_event(WAIT, |e| match e {
                event::Event::ParticipantLeft(l) => Some(l.clone()),
                _ => None,
            })
            .await?;
        ensure!(left.participant_id == pa.participant_id);
    }
    for (i, sub) in [&pb, &pc, &pd].iter().enumerate() {
        let deadline = std::time::Instant::now() + WAIT;
        while sub.offers.load(std::sync::atomic::Ordering::Relaxed) <= offers_before[i] {
            ensure!(std::time::Instant::now() < deadline, "no SubscriberOffer after the publisher left");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let count = |p: &GroupPeer| -> u64 { p.received().values().map(|r| r.packets).sum() };
    tokio::time::sleep(Duration::from_millis(300)).await; // packets in flight
    let before = count(&pb);
    tokio::time::sleep(Duration::from_millis(700)).await;
    ensure!(count(&pb) == before, "packets still arrive after the publisher left");
    for (name, sub) in [("B", &pb), ("C", &pc), ("D", &pd)] {
        assert_clean(name, &sub.received())?;
        println!("{name} received {:?}", sub.received().values().map(|r| r.packets).collect::<Vec<_>>());
    }
    for p in [&pb, &pc, &pd] {
        call!(p.client(), LeaveCall, v1::LeaveCall { room_id: Default::default(), conversation_id: conv })?;
        p.close().await;
    }
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_malformed_sdp_and_publisher_limit() -> anyhow::Result<()> {
    let s = server(1, 8).await?;
    let t = Transport::WebSocket;
    let a = new_user(&s, t, "sfuA").await?;
    let b = new_user(&s, t, "sfuB").await?;
    let outsider = new_user(&s, t, "sfuX").await?;
    let mut c = new_user(&s, t, "sfuC").await?;
    let conv = group(&a, &[&b, &c]).await?;

    // (4) Not a member: NOT_FOUND, as for a missing conversation.
    expect_code(
        call!(outsider.client, JoinCall, v1::JoinCall { room_id: Default::default(), conversation_id: conv }),
        ErrorCode::NotFound,
    )?;
    expect_code(
        call!(outsider.client, JoinCall, v1::JoinCall { room_id: Default::default(), conversation_id: 999_999 }),
        ErrorCode::NotFound,
    )?;

    let (pa, _) = peer(a, conv, 1).await?;
    let (pb, _) = peer(b, conv, 2).await?;
    // Joining twice from one device is refused.
    expect_code(
        call!(pa.client(), JoinCall, v1::JoinCall { room_id: Default::default(), conversation_id: conv }),
        ErrorCode::FailedPrecondition,
    )?;

    // (5) Malformed SDP: INVALID_ARGUMENT naming the field, no panic, the room still works.
    let sample = GroupPeer::sample_offer().await?;
    let cut = sample.replace("a=ice-ufrag", "a=x-ufrag").replace("a=fingerprint", "a=x-fingerprint");
    for bad in ["", "junk", "v=0\r\n", "\u{0}\u{1}binary", cut.as_str()] {
        let e = expect_code(
            call!(
                pa.client(),
                Publish,
                v1::Publish { room_id: Default::default(), conversation_id: conv, sdp_offer: bad.into() }
            ),
            ErrorCode::InvalidArgument,
        )?;
        ensure!(e.field == "publish.sdp_offer", "{e:?}");
    }
    let e = expect_code(
        call!(
            pb.client(),
            SubscriberAnswer,
            v1::SubscriberAnswer { room_id: Default::default(), conversation_id: conv, sdp_answer: "junk".into() }
        ),
        ErrorCode::FailedPrecondition, // no offer outstanding yet
    )?;
    ensure!(!e.message.is_empty());
    pa.publish().await?;
    pb.wait_received(WAIT, "A's tracks after the refused offers", |got| flowing(got, &pa, 25)).await?;
    assert_clean("B", &pb.received())?;

    // A malformed answer to a real SubscriberOffer: INVALID_ARGUMENT, and the offer stays open.
    call!(c.client, JoinCall, v1::JoinCall { room_id: Default::default(), conversation_id: conv })?;
    let offer = next_matching(&mut c.events, WAIT, |e| match e {
        event::Event::SubscriberOffer(o) => Some(o.sdp_offer.clone()),
        _ => None,
    })
    .await?;
    ensure!(offer.contains("m=audio") && offer.contains("m=video"), "{offer}");
    let half = offer.replace("a=ice-ufrag", "a=x-ufrag").replace("a=fingerprint", "a=x-fingerprint");
    for bad in ["junk", "v=0\r\n", half.as_str()] {
        let answer =
            v1::SubscriberAnswer { room_id: Default::default(), conversation_id: conv, sdp_answer: bad.into() };
        let e = expect_code(call!(c.client, SubscriberAnswer, answer), ErrorCode::InvalidArgument)?;
        ensure!(e.field == "subscriber_answer.sdp_answer", "{e:?}");
    }
    call!(c.client, LeaveCall, v1::LeaveCall { room_id: Default::default(), conversation_id: conv })?;
    pb.wait_received(WAIT, "A's tracks after the refused answers", |got| flowing(got, &pa, 75)).await?;
    assert_clean("B", &pb.received())?;

    // max_publishers = 1: B may not publish too.
    expect_code(
        call!(
            pb.client(),
            Publish,
            v1::Publish { room_id: Default::default(), conversation_id: conv, sdp_offer: sample }
        ),
        ErrorCode::FailedPrecondition,
    )?;
    // Not in the call: Publish/Trickle/SetMute/LeaveCall are refused.
    expect_code(
        call!(outsider.client, LeaveCall, v1::LeaveCall { room_id: Default::default(), conversation_id: conv }),
        ErrorCode::FailedPrecondition,
    )?;
    for p in [&pa, &pb] {
        call!(p.client(), LeaveCall, v1::LeaveCall { room_id: Default::default(), conversation_id: conv })?;
        p.close().await;
    }
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_refuses_and_a_device_gone_past_the_grace_leaves() -> anyhow::Result<()> {
    let s = server(2, 2).await?;
    let t = Transport::WebSocket;
    let mut a = new_user(&s, t, "sfuA").await?;
    let b = new_user(&s, t, "sfuB").await?;
    let c = new_user(&s, t, "sfuC").await?;
    let conv = group(&a, &[&b, &c]).await?;
    call!(a.client, JoinCall, v1::JoinCall { room_id: Default::default(), conversation_id: conv })?;
    let joined = call!(b.client, JoinCall, v1::JoinCall { room_id: Default::default(), conversation_id: conv })?;
    // max_participants = 2: the room is full.
    expect_code(
        call!(c.client, JoinCall, v1::JoinCall { room_id: Default::default(), conversation_id: conv }),
        ErrorCode::FailedPrecondition,
    )?;
    b.client.close().await;
    // reconnect_grace is 300 ms here.
    let left = next_matching(&mut a.events, WAIT, |e| match e {
        event::Event::ParticipantLeft(l) => Some(l.clone()),
        _ => None,
    })
    .await?;
    ensure!(left.participant_id == joined.participant_id && left.user_id == b.id, "{left:?}");
    next_matching(&mut a.events, WAIT, |e| match e {
        event::Event::GroupCallState(g) if g.participants == 1 => Some(()),
        _ => None,
    })
    .await?;
    call!(a.client, LeaveCall, v1::LeaveCall { room_id: Default::default(), conversation_id: conv })?;
    next_matching(&mut a.events, WAIT, |e| match e {
        event::Event::GroupCallState(g) if g.participants == 0 => Some(()),
        _ => None,
    })
    .await?;
    s.stop().await
}
