//! Cases for calls (docs/protocol.md §20): ICE servers, ringing calls from invite to the log
//! entry, the first accept winning, signals relayed between the two parties only.

use anyhow::{bail, ensure};
use confab_protocol::v1::{
    self, CallMedia, CallOutcome, ErrorCode, HangupReason, call_signal, client_frame::Request,
    conversation_event::Body, event, response,
};

use super::Target;
use super::common::{Account, account, code, direct, entry, new_account, next, req, second_device};

async fn start(a: &Account, conv: u64) -> anyhow::Result<v1::StartCallResult> {
    match req(&a.client, Request::StartCall(v1::StartCall { conversation_id: conv, media: CallMedia::Audio as i32 }))
        .await?
    {
        response::Result::StartCall(r) => {
            ensure!(!r.call_id.is_empty() && !r.party_id.is_empty() && r.ring_deadline_ms > 0, "{r:?}");
            Ok(r)
        }
        other => bail!("expected StartCallResult, got {other:?}"),
    }
}

async fn invite(a: &mut Account) -> anyhow::Result<v1::CallInvite> {
    next(&mut a.events, |e| match e {
        event::Event::CallInvite(i) => Some(i),
        _ => None,
    })
    .await
}

async fn ended(a: &mut Account) -> anyhow::Result<v1::CallEnded> {
    next(&mut a.events, |e| match e {
        event::Event::CallEnded(x) => Some(x),
        _ => None,
    })
    .await
}

async fn summary(a: &mut Account, conv: u64) -> anyhow::Result<v1::CallSummary> {
    match entry(&mut a.events, conv, |b| matches!(b, Body::CallEnded(_))).await?.body {
        Some(Body::CallEnded(s)) => Ok(s),
        other => bail!("expected a call entry, got {other:?}"),
    }
}

fn accept(id: &str) -> Request {
    Request::AcceptCall(v1::AcceptCall { call_id: id.into() })
}

fn hangup(id: &str, reason: HangupReason) -> Request {
    Request::HangupCall(v1::HangupCall { call_id: id.into(), reason: reason as i32 })
}

/// §20.1: the ICE server list, with TURN credentials in the TURN REST form when there is TURN.
pub(super) async fn ice_servers_are_listed(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfice").await?;
    let r = match req(&a.client, Request::GetIceServers(v1::GetIceServers {})).await? {
        response::Result::GetIceServers(r) => r,
        other => bail!("expected GetIceServersResult, got {other:?}"),
    };
    let now = confab_protocol::frames::now_ms();
    ensure!(r.expires_at_ms > now, "credentials expire in the future: {r:?}");
    for s in &r.ice_servers {
        ensure!(!s.urls.is_empty(), "{s:?}");
        for u in &s.urls {
            ensure!(["stun:", "stuns:", "turn:", "turns:"].iter().any(|p| u.starts_with(p)), "{u}");
        }
        if s.urls.iter().any(|u| u.starts_with("turn")) {
            let expected = format!("{}:{}", r.expires_at_ms / 1000, a.id);
            ensure!(s.username == expected && !s.credential.is_empty(), "TURN REST credentials: {s:?}");
        }
    }
    Ok(())
}

/// §20.2.1: only members may call; a call needs a media; unknown calls are NOT_FOUND.
pub(super) async fn strangers_cannot_call(t: Target) -> anyhow::Result<()> {
    let a = new_account(&t, "cfcallA").await?;
    let b = new_account(&t, "cfcallB").await?;
    let c = new_account(&t, "cfcallC").await?;
    let conv = direct(&a, b.id).await?.conversation_id;
    let from_c = v1::StartCall { conversation_id: conv, media: CallMedia::Video as i32 };
    ensure!(code(req(&c.client, Request::StartCall(from_c)).await) == Some(ErrorCode::NotFound));
    let no_media = v1::StartCall { conversation_id: conv, media: 0 };
    ensure!(code(req(&a.client, Request::StartCall(no_media)).await) == Some(ErrorCode::InvalidArgument));
    ensure!(code(req(&b.client, accept("call-that-never-was")).await) == Some(ErrorCode::NotFound));
    Ok(())
}

/// §20.2.3: every device rings; the first accept wins; the others stop ringing.
pub(super) async fn first_accept_wins(t: Target) -> anyhow::Result<()> {
    let mut a = new_account(&t, "cfcallA").await?;
    let mut b1 = new_account(&t, "cfcallB").await?;
    let mut b2 = second_device(&t, &b1, "second").await?;
    let conv = direct(&a, b1.id).await?.conversation_id;
    let b_id = b1.id;
    let started = start(&a, conv).await?;
    for b in [&mut b1, &mut b2] {
        let inv = invite(b).await?;
        ensure!(inv.call_id == started.call_id && inv.caller_id == a.id && inv.conversation_id == conv, "{inv:?}");
        req(&b.client, Request::RingCall(v1::RingCall { call_id: inv.call_id })).await?;
    }
    next(&mut a.events, |e| matches!(e, event::Event::CallRinging(_)).then_some(())).await?;
    let (r1, r2) = tokio::join!(req(&b1.client, accept(&started.call_id)), req(&b2.client, accept(&started.call_id)));
    let (winner, loser) = match (r1, r2) {
        (Ok(response::Result::AcceptCall(w)), Err(e)) => {
            ensure!(e.code() == Some(ErrorCode::FailedPrecondition), "{e}");
            (w, &mut b2)
        }
        (Err(e), Ok(response::Result::AcceptCall(w))) => {
            ensure!(e.code() == Some(ErrorCode::FailedPrecondition), "{e}");
            (w, &mut b1)
        }
        other => bail!("exactly one accept must win: {other:?}"),
    };
    ensure!(winner.peer_party_id == started.party_id && !winner.party_id.is_empty());
    let acc = next(&mut a.events, |e| match e {
        event::Event::CallAccepted(x) => Some(x),
        _ => None,
    })
    .await?;
    ensure!(acc.party_id == winner.party_id && acc.user_id == b_id, "{acc:?}");
    next(&mut loser.events, |e| matches!(e, event::Event::CallAnsweredElsewhere(_)).then_some(())).await?;
    req(&a.client, hangup(&started.call_id, HangupReason::UserHangup)).await?;
    let e = ended(&mut b1).await?;
    ensure!(e.reason == HangupReason::UserHangup as i32 && e.by_user_id == a.id, "{e:?}");
    let s = summary(&mut a, conv).await?;
    ensure!(s.outcome == CallOutcome::Answered as i32 && s.answered_by == b_id && s.caller_id == a.id, "{s:?}");
    Ok(())
}

/// §20.2.4, §20.2.5, §20.2.7: a declined call and a cancelled call end, each with its entry.
pub(super) async fn reject_and_cancel_end_the_call(t: Target) -> anyhow::Result<()> {
    let mut a = new_account(&t, "cfcallA").await?;
    let mut b = new_account(&t, "cfcallB").await?;
    let conv = direct(&a, b.id).await?.conversation_id;
    let first = start(&a, conv).await?;
    invite(&mut b).await?;
    req(&b.client, Request::RejectCall(v1::RejectCall { call_id: first.call_id.clone(), reason: 0 })).await?;
    let e = ended(&mut a).await?;
    ensure!(e.call_id == first.call_id && e.reason == HangupReason::Rejected as i32 && e.by_user_id == b.id);
    ensure!(summary(&mut a, conv).await?.outcome == CallOutcome::Rejected as i32);
    let second = start(&a, conv).await?;
    invite(&mut b).await?;
    req(&a.client, hangup(&second.call_id, HangupReason::Unspecified)).await?;
    ensure!(ended(&mut b).await?.reason == HangupReason::Cancelled as i32);
    ensure!(summary(&mut b, conv).await?.outcome == CallOutcome::Cancelled as i32);
    Ok(())
}

/// §20.2.6: signals go from one party's device to the other's, and nowhere else.
pub(super) async fn signals_flow_between_the_parties_only(t: Target) -> anyhow::Result<()> {
    let mut a = new_account(&t, "cfcallA").await?;
    let mut b = new_account(&t, "cfcallB").await?;
    let b2 = second_device(&t, &b, "second").await?;
    let conv = direct(&a, b.id).await?.conversation_id;
    let started = start(&a, conv).await?;
    invite(&mut b).await?;
    let mine = match req(&b.client, accept(&started.call_id)).await? {
        response::Result::AcceptCall(r) => r,
        other => bail!("expected AcceptCallResult, got {other:?}"),
    };
    let offer = |sdp: &str| {
        Request::CallSignal(v1::CallSignal {
            call_id: started.call_id.clone(),
            signal: Some(call_signal::Signal::SdpOffer(sdp.into())),
            ..Default::default()
        })
    };
    req(&a.client, offer("v=0 conformance")).await?;
    let got = next(&mut b.events, |e| match e {
        event::Event::CallSignal(s) => Some(s),
        _ => None,
    })
    .await?;
    ensure!(got.from_party_id == started.party_id, "{got:?}");
    ensure!(got.signal == Some(call_signal::Signal::SdpOffer("v=0 conformance".into())), "relayed unchanged");
    ensure!(code(req(&b2.client, offer("v=0 other device")).await) == Some(ErrorCode::PermissionDenied));
    let answer = Request::CallSignal(v1::CallSignal {
        call_id: started.call_id.clone(),
        signal: Some(call_signal::Signal::SdpAnswer("v=0 answer".into())),
        ..Default::default()
    });
    req(&b.client, answer).await?;
    let back = next(&mut a.events, |e| match e {
        event::Event::CallSignal(s) => Some(s),
        _ => None,
    })
    .await?;
    ensure!(back.from_party_id == mine.party_id && matches!(back.signal, Some(call_signal::Signal::SdpAnswer(_))));
    req(&b.client, hangup(&started.call_id, HangupReason::IceFailed)).await?;
    ensure!(ended(&mut a).await?.reason == HangupReason::IceFailed as i32);
    Ok(())
}
