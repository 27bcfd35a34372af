//! Cases for group calls through the SFU (docs/protocol.md §20.3), on the signalling wire only:
//! members join and others are refused as if the conversation did not exist, a malformed SDP
//! offer is an INVALID_ARGUMENT while a real one is answered, leaving is announced, and every
//! member hears the participant count.

use anyhow::{bail, ensure};
use confab_protocol::client::ClientError;
use confab_protocol::v1::{self, ErrorCode, client_frame::Request, event, response};

use super::Target;
use super::common::{Account, account, code, group, next, req};
use crate::webrtc_peer::GroupPeer;

async fn join(a: &Account, conv: u64) -> anyhow::Result<v1::JoinCallResult> {
    match req(&a.client, Request::JoinCall(v1::JoinCall { room_id: Default::default(), conversation_id: conv })).await?
    {
        response::Result::JoinCall(r) => {
            ensure!(!r.participant_id.is_empty(), "{r:?}");
            Ok(r)
        }
        other => bail!("expected JoinCallResult, got {other:?}"),
    }
}

async fn leave(a: &Account, conv: u64) -> anyhow::Result<()> {
    match req(&a.client, Request::LeaveCall(v1::LeaveCall { room_id: Default::default(), conversation_id: conv }))
        .await?
    {
        response::Result::LeaveCall(_) => Ok(()),
        other => bail!("expected LeaveCallResult, got {other:?}"),
    }
}

async fn join_as(u: &Account, conv: u64) -> Result<response::Result, ClientError> {
    req(&u.client, Request::JoinCall(v1::JoinCall { room_id: Default::default(), conversation_id: conv })).await
}

async fn call_state(a: &mut Account, conv: u64, participants: u32) -> anyhow::Result<()> {
    next(&mut a.events, |e| match e {
        event::Event::GroupCallState(s) if s.conversation_id == conv && s.participants == participants => Some(()),
        _ => None,
    })
    .await
}

/// §20.3.2: members join (the first join starts the call); a non-member gets NOT_FOUND exactly
/// like a missing conversation; a device already in the call gets FAILED_PRECONDITION.
pub(super) async fn only_members_join_a_group_call(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfgc").await?;
    let b = account(&t, "cfgc").await?;
    let stranger = account(&t, "cfgc").await?;
    let conv = group(&a, &[b.id]).await?;
    ensure!(code(join_as(&stranger, conv).await) == Some(ErrorCode::NotFound), "a non-member joined");
    ensure!(code(join_as(&stranger, u64::MAX >> 12).await) == Some(ErrorCode::NotFound));
    let first = join(&a, conv).await?;
    ensure!(first.participants.is_empty(), "{first:?}");
    let second = join(&b, conv).await?;
    ensure!(
        second.participants.len() == 1 && second.participants[0].participant_id == first.participant_id,
        "{second:?}"
    );
    ensure!(code(join_as(&a, conv).await) == Some(ErrorCode::FailedPrecondition), "joined twice");
    leave(&a, conv).await?;
    leave(&b, conv).await
}

/// §20.3.3: an offer that does not parse is INVALID_ARGUMENT on `publish.sdp_offer`; the room
/// is unaffected and a real offer is answered.
pub(super) async fn publish_refuses_a_malformed_offer(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfgc").await?;
    let conv = group(&a, &[]).await?;
    join(&a, conv).await?;
    let publish = |sdp: &str| {
        req(
            &a.client,
            Request::Publish(v1::Publish { room_id: Default::default(), conversation_id: conv, sdp_offer: sdp.into() }),
        )
    };
    for bad in ["this is not SDP", "v=0\r\n"] {
        match publish(bad).await {
            Err(ClientError::Server(err)) => {
                ensure!(err.code == ErrorCode::InvalidArgument as i32 && err.field == "publish.sdp_offer", "{err:?}");
            }
            Err(e) => bail!("expected INVALID_ARGUMENT, got {e}"),
            Ok(r) => bail!("a malformed offer was answered: {r:?}"),
        }
    }
    match publish(&GroupPeer::sample_offer().await?).await? {
        response::Result::Publish(r) => ensure!(r.sdp_answer.starts_with("v=0") && r.sdp_answer.contains("m=audio")),
        other => bail!("expected PublishResult, got {other:?}"),
    }
    leave(&a, conv).await
}

/// §20.3.7: LeaveCall is announced to the others as ParticipantLeft.
pub(super) async fn leaving_is_announced(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfgc").await?;
    let mut b = account(&t, "cfgc").await?;
    let conv = group(&a, &[b.id]).await?;
    let me = join(&a, conv).await?;
    join(&b, conv).await?;
    leave(&a, conv).await?;
    let left = next(&mut b.events, |e| match e {
        event::Event::ParticipantLeft(l) if l.conversation_id == conv => Some(l),
        _ => None,
    })
    .await?;
    ensure!(left.participant_id == me.participant_id && left.user_id == a.id, "{left:?}");
    ensure!(
        code(
            req(&a.client, Request::LeaveCall(v1::LeaveCall { room_id: Default::default(), conversation_id: conv }))
                .await
        ) == Some(ErrorCode::FailedPrecondition),
        "left twice"
    );
    leave(&b, conv).await
}

/// §20.3.2: every member of the conversation, in the call or not, gets GroupCallState when the
/// number of participants changes, down to 0.
pub(super) async fn members_hear_the_participant_count(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfgc").await?;
    let b = account(&t, "cfgc").await?;
    let mut watcher = account(&t, "cfgc").await?;
    let conv = group(&a, &[b.id, watcher.id]).await?;
    join(&a, conv).await?;
    call_state(&mut watcher, conv, 1).await?;
    join(&b, conv).await?;
    call_state(&mut watcher, conv, 2).await?;
    leave(&a, conv).await?;
    call_state(&mut watcher, conv, 1).await?;
    leave(&b, conv).await?;
    call_state(&mut watcher, conv, 0).await
}

/// §20.3.10: SetSubscribedQuality outside the call is FAILED_PRECONDITION; in the call, a track
/// the device does not receive is NOT_FOUND and a missing quality INVALID_ARGUMENT.
pub(super) async fn subscribed_quality_needs_the_call_and_a_known_track(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfgc").await?;
    let conv = group(&a, &[]).await?;
    let set = |track: &str, quality: v1::VideoQuality| {
        req(
            &a.client,
            Request::SetSubscribedQuality(v1::SetSubscribedQuality {
                conversation_id: conv,
                room_id: String::new(),
                track_id: track.into(),
                quality: quality as i32,
            }),
        )
    };
    ensure!(code(set("x:cam", v1::VideoQuality::Low).await) == Some(ErrorCode::FailedPrecondition), "not in call");
    join(&a, conv).await?;
    ensure!(code(set("x:cam", v1::VideoQuality::Low).await) == Some(ErrorCode::NotFound), "unknown track");
    ensure!(code(set("x:cam", v1::VideoQuality::Unspecified).await) == Some(ErrorCode::InvalidArgument));
    leave(&a, conv).await
}

/// §20.3.11: RestartIce PUBLISHER is FAILED_PRECONDITION (the client restarts that connection
/// with a Publish), as is any RestartIce outside the call; an unspecified role is INVALID_ARGUMENT.
pub(super) async fn restart_ice_of_the_publisher_is_the_clients(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfgc").await?;
    let conv = group(&a, &[]).await?;
    let restart = |role: v1::PeerRole| {
        req(
            &a.client,
            Request::RestartIce(v1::RestartIce { conversation_id: conv, room_id: String::new(), role: role as i32 }),
        )
    };
    ensure!(code(restart(v1::PeerRole::Subscriber).await) == Some(ErrorCode::FailedPrecondition), "not in call");
    join(&a, conv).await?;
    ensure!(code(restart(v1::PeerRole::Publisher).await) == Some(ErrorCode::FailedPrecondition), "publisher");
    ensure!(code(restart(v1::PeerRole::Unspecified).await) == Some(ErrorCode::InvalidArgument), "no role");
    leave(&a, conv).await
}
