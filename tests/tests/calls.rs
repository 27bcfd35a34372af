//! Peer-to-peer call signaling (docs/protocol.md §20.1-§20.2): invites to every device, the
//! first accept wins under concurrent accepts, reject, ringing timeout to a missed call in the log
//! and the notifications inbox, signals relayed only between the two parties, hangup reasons, and
//! a lost party ending the call — on both transports and both stores.

use std::time::Duration;

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::harness::{TestFn, TestServer, Transport};
use confab_conformance::util::{User, expect_code, group, new_user, next_matching, second_device};
use confab_protocol::v1::{self, CallMedia, CallOutcome, ErrorCode, HangupReason, call_signal, event};
use confab_server::config::Secret;

const TESTS: &[(&str, TestFn)] = confab_conformance::named_tests![
    first_accept_wins_under_concurrent_accepts,
    reject_ends_the_call,
    timeout_is_a_missed_call,
    signals_flow_between_the_parties_only,
    hangup_reasons_reach_the_other_party,
    a_lost_party_ends_the_call,
    group_rings_every_member_and_refuses_big_rooms,
];

confab_conformance::matrix_tests!(TESTS, |c| {
    c.calls.ring_timeout = Duration::from_secs(1);
    c.calls.reconnect_grace = Duration::from_millis(300);
    c.calls.max_ring_members = 4;
    c.calls.stun_urls = vec!["stun:stun.example.org:3478".into()];
    c.calls.turn_urls = vec!["turn:turn.example.org:3478?transport=udp".into()];
    c.calls.turn_secret = Some(Secret::new("turn secret"));
});

const WAIT: Duration = Duration::from_secs(5);

async fn direct(a: &User, b: &User) -> anyhow::Result<u64> {
    Ok(call!(a.client, CreateConversation, confab_conformance::util::direct(b.id))?.conversation_id)
}

async fn start(a: &User, conv: u64) -> anyhow::Result<v1::StartCallResult> {
    let r = call!(a.client, StartCall, v1::StartCall { conversation_id: conv, media: CallMedia::Video as i32 })?;
    ensure!(!r.call_id.is_empty() && !r.party_id.is_empty(), "{r:?}");
    Ok(r)
}

async fn invite(u: &mut User) -> anyhow::Result<v1::CallInvite> {
    next_matching(&mut u.events, WAIT, |e| match e {
        event::Event::CallInvite(i) => Some(i.clone()),
        _ => None,
    })
    .await
}

async fn ended(u: &mut User) -> anyhow::Result<v1::CallEnded> {
    next_matching(&mut u.events, WAIT, |e| match e {
        event::Event::CallEnded(x) => Some(x.clone()),
        _ => None,
    })
    .await
}

async fn summary(u: &mut User) -> anyhow::Result<v1::CallSummary> {
    next_matching(&mut u.events, WAIT, |e| match e {
        event::Event::ConversationEvent(v1::ConversationEvent {
            body: Some(v1::conversation_event::Body::CallEnded(s)),
            ..
        }) => Some(s.clone()),
        _ => None,
    })
    .await
}

async fn first_accept_wins_under_concurrent_accepts(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "callA").await?;
    let b1 = new_user(s, t, "callB").await?;
    let b2 = second_device(s, t, &b1).await?;
    let b3 = second_device(s, t, &b1).await?;
    let conv = direct(&a, &b1).await?;
    let started = start(&a, conv).await?;
    ensure!(started.ice_servers.len() == 2, "STUN and TURN: {:?}", started.ice_servers);
    let turn = &started.ice_servers[1];
    ensure!(turn.username.ends_with(&format!(":{}", a.id)) && !turn.credential.is_empty(), "{turn:?}");
    let mut bs = [b1, b2, b3];
    for b in bs.iter_mut() {
        let inv = invite(b).await?;
        ensure!(inv.call_id == started.call_id && inv.caller_id == a.id && inv.conversation_id == conv, "{inv:?}");
        ensure!(inv.media == CallMedia::Video as i32 && inv.ring_deadline_ms > 0);
        call!(b.client, RingCall, v1::RingCall { call_id: inv.call_id.clone() })?;
    }
    let ringing = next_matching(&mut a.events, WAIT, |e| match e {
        event::Event::CallRinging(r) => Some(r.clone()),
        _ => None,
    })
    .await?;
    ensure!(ringing.user_id == bs[0].id);
    // All three devices accept at once: exactly one wins.
    let accepts = bs.iter().map(|b| {
        let (c, id) = (b.client.clone(), started.call_id.clone());
        tokio::spawn(async move { call!(c, AcceptCall, v1::AcceptCall { call_id: id }) })
    });
    let mut results = Vec::new();
    for h in accepts {
        results.push(h.await?);
    }
    let winners: Vec<usize> = (0..3).filter(|i| results[*i].is_ok()).collect();
    ensure!(winners.len() == 1, "one winner: {results:?}");
    let w = winners[0];
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(ok) => ensure!(ok.peer_party_id == started.party_id && !ok.ice_servers.is_empty(), "{ok:?}"),
            Err(e) => ensure!(e.code() == Some(ErrorCode::FailedPrecondition), "device {i}: {e}"),
        }
    }
    let accepted = next_matching(&mut a.events, WAIT, |e| match e {
        event::Event::CallAccepted(x) => Some(x.clone()),
        _ => None,
    })
    .await?;
    ensure!(accepted.user_id == bs[w].id && !accepted.party_id.is_empty());
    for (i, b) in bs.iter_mut().enumerate().filter(|(i, _)| *i != w) {
        next_matching(&mut b.events, WAIT, |e| matches!(e, event::Event::CallAnsweredElsewhere(_)).then_some(()))
            .await
            .with_context(|| format!("device {i} stops ringing"))?;
    }
    call!(a.client, HangupCall, v1::HangupCall { call_id: started.call_id.clone(), reason: 0 })?;
    let e = ended(&mut bs[w]).await?;
    ensure!(e.reason == HangupReason::UserHangup as i32 && e.by_user_id == a.id, "{e:?}");
    let sum = summary(&mut a).await?;
    ensure!(sum.outcome == CallOutcome::Answered as i32 && sum.answered_by == bs[w].id && sum.caller_id == a.id);
    Ok(())
}

async fn reject_ends_the_call(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "callA").await?;
    let mut b = new_user(s, t, "callB").await?;
    let conv = direct(&a, &b).await?;
    let started = start(&a, conv).await?;
    let inv = invite(&mut b).await?;
    call!(b.client, RejectCall, v1::RejectCall { call_id: inv.call_id.clone(), reason: 0 })?;
    let e = ended(&mut a).await?;
    ensure!(e.call_id == started.call_id && e.reason == HangupReason::Rejected as i32 && e.by_user_id == b.id);
    let sum = summary(&mut b).await?;
    ensure!(sum.outcome == CallOutcome::Rejected as i32 && sum.duration_ms == 0, "{sum:?}");
    // The call is over: accepting now finds nothing.
    expect_code(call!(b.client, AcceptCall, v1::AcceptCall { call_id: inv.call_id }), ErrorCode::NotFound)?;
    // Busy is a reason of its own.
    let again = start(&a, conv).await?;
    invite(&mut b).await?;
    call!(b.client, RejectCall, v1::RejectCall { call_id: again.call_id, reason: HangupReason::Busy as i32 })?;
    ensure!(ended(&mut a).await?.reason == HangupReason::Busy as i32);
    Ok(())
}

async fn timeout_is_a_missed_call(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "callA").await?;
    let mut b = new_user(s, t, "callB").await?;
    let conv = direct(&a, &b).await?;
    let started = start(&a, conv).await?;
    invite(&mut b).await?;
    // Nobody answers within the (test) ringing lifetime of 1 s.
    let e = ended(&mut b).await?;
    ensure!(e.call_id == started.call_id && e.reason == HangupReason::InviteTimeout as i32 && e.by_user_id == 0);
    ensure!(ended(&mut a).await?.reason == HangupReason::InviteTimeout as i32);
    let sum = summary(&mut a).await?;
    ensure!(sum.outcome == CallOutcome::Missed as i32 && sum.call_id == started.call_id, "{sum:?}");
    let n = next_matching(&mut b.events, WAIT, |e| match e {
        event::Event::Notification(n) => Some(*n),
        _ => None,
    })
    .await?;
    ensure!(n.kind == v1::NotificationKind::MissedCall as i32 && n.actor_id == a.id && n.conversation_id == conv);
    let inbox = call!(b.client, ListNotifications, v1::ListNotifications::default())?;
    ensure!(inbox.notifications.iter().any(|x| x.kind == v1::NotificationKind::MissedCall as i32), "{inbox:?}");
    // The missed call stays in the conversation's history for later devices (Sync).
    let sync = call!(b.client, Sync, v1::Sync::default())?;
    let stored = sync.conversations.iter().flat_map(|c| &c.events).any(|e| {
        matches!(&e.body, Some(v1::conversation_event::Body::CallEnded(x)) if x.outcome == CallOutcome::Missed as i32)
    });
    ensure!(stored, "missed call in the log: {sync:?}");
    Ok(())
}

fn offer(call_id: &str, sdp: &str) -> v1::CallSignal {
    v1::CallSignal {
        call_id: call_id.into(),
        signal: Some(call_signal::Signal::SdpOffer(sdp.into())),
        ..Default::default()
    }
}

async fn signal(u: &mut User) -> anyhow::Result<v1::CallSignal> {
    next_matching(&mut u.events, WAIT, |e| match e {
        event::Event::CallSignal(x) => Some(x.clone()),
        _ => None,
    })
    .await
}

async fn signals_flow_between_the_parties_only(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "callA").await?;
    let mut b = new_user(s, t, "callB").await?;
    let mut b2 = second_device(s, t, &b).await?;
    let c = new_user(s, t, "callC").await?;
    let conv = direct(&a, &b).await?;
    // A stranger learns nothing about the conversation.
    let stranger = call!(c.client, StartCall, v1::StartCall { conversation_id: conv, media: CallMedia::Audio as i32 });
    expect_code(stranger, ErrorCode::NotFound)?;
    let started = start(&a, conv).await?;
    let id = started.call_id.clone();
    // Before the answer there is no peer to signal.
    expect_code(call!(a.client, CallSignal, offer(&id, "v=0 early")), ErrorCode::FailedPrecondition)?;
    invite(&mut b).await?;
    invite(&mut b2).await?;
    let acc = call!(b.client, AcceptCall, v1::AcceptCall { call_id: id.clone() })?;
    call!(a.client, CallSignal, offer(&id, "v=0 offer"))?;
    let got = signal(&mut b).await?;
    ensure!(got.from_party_id == started.party_id, "{got:?}");
    ensure!(got.signal == Some(call_signal::Signal::SdpOffer("v=0 offer".into())));
    let answer = v1::CallSignal {
        call_id: id.clone(),
        signal: Some(call_signal::Signal::SdpAnswer("v=0 answer".into())),
        ..Default::default()
    };
    call!(b.client, CallSignal, answer)?;
    let cand = v1::CallSignal {
        call_id: id.clone(),
        signal: Some(call_signal::Signal::IceCandidate(v1::IceCandidate {
            candidate: "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host".into(),
            sdp_mid: "0".into(),
            sdp_m_line_index: 0,
        })),
        ..Default::default()
    };
    call!(b.client, CallSignal, cand.clone())?;
    let first = signal(&mut a).await?;
    ensure!(first.from_party_id == acc.party_id && matches!(first.signal, Some(call_signal::Signal::SdpAnswer(_))));
    ensure!(matches!(signal(&mut a).await?.signal, Some(call_signal::Signal::IceCandidate(_))), "candidate relayed");
    // B's other device is not a party; C is not in the call at all; nothing is relayed for them.
    expect_code(call!(b2.client, CallSignal, cand.clone()), ErrorCode::PermissionDenied)?;
    expect_code(call!(c.client, CallSignal, cand), ErrorCode::NotFound)?;
    expect_code(
        call!(b2.client, HangupCall, v1::HangupCall { call_id: id.clone(), reason: 0 }),
        ErrorCode::PermissionDenied,
    )?;
    let empty = v1::CallSignal { call_id: id.clone(), ..Default::default() };
    expect_code(call!(a.client, CallSignal, empty), ErrorCode::InvalidArgument)?;
    let leaked = next_matching(&mut b2.events, Duration::from_millis(300), |e| {
        matches!(e, event::Event::CallSignal(_)).then_some(())
    })
    .await;
    ensure!(leaked.is_err(), "the non-party device saw a signal");
    call!(a.client, HangupCall, v1::HangupCall { call_id: id, reason: 0 })?;
    Ok(())
}

async fn hangup_reasons_reach_the_other_party(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "callA").await?;
    let mut b = new_user(s, t, "callB").await?;
    let conv = direct(&a, &b).await?;
    for reason in [HangupReason::IceFailed, HangupReason::ClientError, HangupReason::UserHangup] {
        let started = start(&a, conv).await?;
        invite(&mut b).await?;
        call!(b.client, AcceptCall, v1::AcceptCall { call_id: started.call_id.clone() })?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        call!(b.client, HangupCall, v1::HangupCall { call_id: started.call_id.clone(), reason: reason as i32 })?;
        let e = ended(&mut a).await?;
        ensure!(e.reason == reason as i32 && e.by_user_id == b.id, "{reason:?}: {e:?}");
        let sum = summary(&mut a).await?;
        ensure!(sum.outcome == CallOutcome::Answered as i32 && sum.duration_ms >= 20, "{sum:?}");
    }
    // The caller cancelling while it rings.
    let started = start(&a, conv).await?;
    invite(&mut b).await?;
    call!(a.client, HangupCall, v1::HangupCall { call_id: started.call_id, reason: 0 })?;
    ensure!(ended(&mut b).await?.reason == HangupReason::Cancelled as i32);
    ensure!(summary(&mut b).await?.outcome == CallOutcome::Cancelled as i32);
    Ok(())
}

async fn a_lost_party_ends_the_call(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "callA").await?;
    let mut b = new_user(s, t, "callB").await?;
    let conv = direct(&a, &b).await?;
    let started = start(&a, conv).await?;
    invite(&mut b).await?;
    call!(b.client, AcceptCall, v1::AcceptCall { call_id: started.call_id.clone() })?;
    b.client.close().await;
    let e = ended(&mut a).await?;
    ensure!(e.reason == HangupReason::ConnectionLost as i32 && e.call_id == started.call_id, "{e:?}");
    Ok(())
}

async fn group_rings_every_member_and_refuses_big_rooms(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "callA").await?;
    let mut b = new_user(s, t, "callB").await?;
    let mut c = new_user(s, t, "callC").await?;
    let conv = call!(a.client, CreateConversation, group("call group", &[b.id, c.id]))?.conversation_id;
    let started = start(&a, conv).await?;
    invite(&mut b).await?;
    invite(&mut c).await?;
    // One declining leaves the call ringing for the other; the call continues.
    call!(b.client, RejectCall, v1::RejectCall { call_id: started.call_id.clone(), reason: 0 })?;
    ensure!(ended(&mut b).await?.reason == HangupReason::Rejected as i32);
    let acc = call!(c.client, AcceptCall, v1::AcceptCall { call_id: started.call_id.clone() })?;
    ensure!(acc.peer_party_id == started.party_id);
    expect_code(
        call!(a.client, StartCall, v1::StartCall { conversation_id: conv, media: 1 }),
        ErrorCode::FailedPrecondition,
    )?;
    call!(c.client, HangupCall, v1::HangupCall { call_id: started.call_id, reason: 0 })?;
    ensure!(ended(&mut a).await?.by_user_id == c.id);
    // Above max_ring_members (4 in this test) a conversation uses group calls instead.
    let mut ids = vec![b.id, c.id];
    for _ in 0..3 {
        ids.push(new_user(s, t, "callX").await?.id);
    }
    let big = call!(a.client, CreateConversation, group("call group", &ids))?.conversation_id;
    let refused = call!(a.client, StartCall, v1::StartCall { conversation_id: big, media: CallMedia::Audio as i32 });
    expect_code(refused, ErrorCode::FailedPrecondition)?;
    expect_code(
        call!(a.client, StartCall, v1::StartCall { conversation_id: conv, media: 0 }),
        ErrorCode::InvalidArgument,
    )?;
    let ice = call!(a.client, GetIceServers, v1::GetIceServers {})?;
    ensure!(ice.ice_servers.len() == 2 && ice.expires_at_ms > 0, "{ice:?}");
    Ok(())
}
