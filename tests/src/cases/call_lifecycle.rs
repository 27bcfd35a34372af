//! Cases for the lifecycle cells of calls (docs/protocol.md §21): whoever stops being a member
//! stops ringing and cannot answer; a caller who leaves ends the ringing; a removed member leaves
//! the group call.

use anyhow::{bail, ensure};
use confab_protocol::v1::{self, CallMedia, ErrorCode, HangupReason, client_frame::Request, event, response};

use super::Target;
use super::common::{Account, account, code, group, next, req};

async fn start(a: &Account, conv: u64) -> anyhow::Result<String> {
    match req(&a.client, Request::StartCall(v1::StartCall { conversation_id: conv, media: CallMedia::Audio as i32 }))
        .await?
    {
        response::Result::StartCall(r) => Ok(r.call_id),
        other => bail!("expected StartCallResult, got {other:?}"),
    }
}

async fn invited(a: &mut Account, call_id: &str) -> anyhow::Result<()> {
    next(&mut a.events, |e| match e {
        event::Event::CallInvite(i) if i.call_id == call_id => Some(()),
        _ => None,
    })
    .await
}

async fn ended(a: &mut Account, call_id: &str) -> anyhow::Result<v1::CallEnded> {
    next(&mut a.events, |e| match e {
        event::Event::CallEnded(x) if x.call_id == call_id => Some(x),
        _ => None,
    })
    .await
}

async fn remove(owner: &Account, conv: u64, user: u64) -> anyhow::Result<()> {
    req(&owner.client, Request::RemoveMember(v1::RemoveMember { conversation_id: conv, user_id: user })).await?;
    Ok(())
}

/// §21 (member removed × ringing calls, §20.2): the removed callee gets CallEnded (CANCELLED)
/// and its AcceptCall is NOT_FOUND.
pub(super) async fn a_removed_callee_stops_ringing(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cflc").await?;
    let mut b = account(&t, "cflc").await?;
    let c = account(&t, "cflc").await?;
    let conv = group(&a, &[b.id, c.id]).await?;
    let call = start(&a, conv).await?;
    invited(&mut b, &call).await?;
    remove(&a, conv, b.id).await?;
    let e = ended(&mut b, &call).await?;
    ensure!(e.reason == HangupReason::Cancelled as i32, "{e:?}");
    let late = req(&b.client, Request::AcceptCall(v1::AcceptCall { call_id: call.clone() })).await;
    ensure!(code(late) == Some(ErrorCode::NotFound), "a removed member answered");
    Ok(())
}

/// §21 (member left × ringing calls): the caller leaving ends the call for everyone it rang.
pub(super) async fn a_caller_who_leaves_ends_the_ringing(t: Target) -> anyhow::Result<()> {
    let mut a = account(&t, "cflc").await?;
    let b = account(&t, "cflc").await?;
    let conv = group(&a, &[b.id]).await?;
    let call = start(&b, conv).await?;
    invited(&mut a, &call).await?;
    req(&b.client, Request::LeaveConversation(v1::LeaveConversation { conversation_id: conv })).await?;
    let e = ended(&mut a, &call).await?;
    ensure!(e.reason == HangupReason::Cancelled as i32 && e.by_user_id == b.id, "{e:?}");
    Ok(())
}

/// §21 (member removed × group calls, §20.3.7): the removed member's device leaves the call.
pub(super) async fn a_removed_member_leaves_the_group_call(t: Target) -> anyhow::Result<()> {
    let mut a = account(&t, "cflc").await?;
    let b = account(&t, "cflc").await?;
    let conv = group(&a, &[b.id]).await?;
    req(&a.client, Request::JoinCall(v1::JoinCall { room_id: Default::default(), conversation_id: conv })).await?;
    req(&b.client, Request::JoinCall(v1::JoinCall { room_id: Default::default(), conversation_id: conv })).await?;
    remove(&a, conv, b.id).await?;
    let gone = next(&mut a.events, |e| match e {
        event::Event::ParticipantLeft(p) if p.conversation_id == conv => Some(p.user_id),
        _ => None,
    })
    .await?;
    ensure!(gone == b.id, "ParticipantLeft for {gone}, expected {}", b.id);
    req(&a.client, Request::LeaveCall(v1::LeaveCall { room_id: Default::default(), conversation_id: conv })).await?;
    Ok(())
}
