//! The lifecycle cells of calls (docs/protocol.md §21): whoever stops being able to see a
//! conversation stops ringing in its calls and leaves its group call; a caller who leaves or
//! deletes the account ends the ringing; a revoked session leaves its calls at once — on both
//! transports and both stores. These consequences travel as domain events (server/src/bus.rs).

use std::time::Duration;

use anyhow::ensure;
use confab_conformance::call;
use confab_conformance::harness::{TestFn, TestServer, Transport};
use confab_conformance::util::{User, expect_code, group, new_user, next_matching, second_device};
use confab_protocol::v1::{self, CallMedia, CallOutcome, ErrorCode, HangupReason, event};

const TESTS: &[(&str, TestFn)] = confab_conformance::named_tests![
    a_removed_callee_stops_ringing_and_cannot_answer,
    a_caller_who_leaves_ends_the_ringing,
    a_deleted_caller_ends_the_ringing,
    an_answered_call_ends_when_a_party_is_removed,
    a_removed_member_leaves_the_group_call,
    a_revoked_session_leaves_the_group_call_at_once,
    a_block_stops_the_blockers_ringing,
    a_deleted_peer_cannot_be_called,
];

confab_conformance::matrix_tests!(TESTS, |c| {
    c.calls.ring_timeout = Duration::from_secs(30);
    // Long enough that a test passing proves the revocation did not wait for it.
    c.calls.reconnect_grace = Duration::from_secs(30);
});

const WAIT: Duration = Duration::from_secs(5);

async fn start(a: &User, conv: u64) -> anyhow::Result<v1::StartCallResult> {
    Ok(call!(a.client, StartCall, v1::StartCall { conversation_id: conv, media: CallMedia::Audio as i32 })?)
}

async fn invite(u: &mut User, call_id: &str) -> anyhow::Result<()> {
    next_matching(&mut u.events, WAIT, |e| match e {
        event::Event::CallInvite(i) if i.call_id == call_id => Some(()),
        _ => None,
    })
    .await
}

async fn ended(u: &mut User, call_id: &str) -> anyhow::Result<v1::CallEnded> {
    next_matching(&mut u.events, WAIT, |e| match e {
        event::Event::CallEnded(x) if x.call_id == call_id => Some(x.clone()),
        _ => None,
    })
    .await
}

async fn summary(u: &mut User, call_id: &str) -> anyhow::Result<v1::CallSummary> {
    next_matching(&mut u.events, WAIT, |e| match e {
        event::Event::ConversationEvent(v1::ConversationEvent {
            body: Some(v1::conversation_event::Body::CallEnded(s)),
            ..
        }) if s.call_id == call_id => Some(s.clone()),
        _ => None,
    })
    .await
}

/// A group of A, B and C in which A's call rings B and C.
struct Ringing {
    a: User,
    b: User,
    c: User,
    conv: u64,
    started: v1::StartCallResult,
}

async fn ringing_group(s: &TestServer, t: Transport) -> anyhow::Result<Ringing> {
    let a = new_user(s, t, "clA").await?;
    let mut b = new_user(s, t, "clB").await?;
    let mut c = new_user(s, t, "clC").await?;
    let conv = call!(a.client, CreateConversation, group("ring", &[b.id, c.id]))?.conversation_id;
    let started = start(&a, conv).await?;
    invite(&mut b, &started.call_id).await?;
    invite(&mut c, &started.call_id).await?;
    Ok(Ringing { a, b, c, conv, started })
}

async fn remove(owner: &User, conv: u64, user: u64) -> anyhow::Result<()> {
    call!(owner.client, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: user })?;
    Ok(())
}

/// §21 member removed × ringing calls: the removed callee's devices get CallEnded (CANCELLED),
/// their AcceptCall is NOT_FOUND, the call rings on for the others, and the summary names who
/// really answered.
async fn a_removed_callee_stops_ringing_and_cannot_answer(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let Ringing { mut a, mut b, c, conv, started } = ringing_group(s, t).await?;
    remove(&a, conv, b.id).await?;
    let stop = ended(&mut b, &started.call_id).await?;
    ensure!(stop.reason == HangupReason::Cancelled as i32, "{stop:?}");
    let late = call!(b.client, AcceptCall, v1::AcceptCall { call_id: started.call_id.clone() });
    expect_code(late, ErrorCode::NotFound)?;
    let ok = call!(c.client, AcceptCall, v1::AcceptCall { call_id: started.call_id.clone() })?;
    ensure!(ok.peer_party_id == started.party_id, "{ok:?}");
    call!(a.client, HangupCall, v1::HangupCall { call_id: started.call_id.clone(), reason: 0 })?;
    let s = summary(&mut a, &started.call_id).await?;
    ensure!(s.outcome == CallOutcome::Answered as i32 && s.answered_by == c.id, "{s:?}");
    Ok(())
}

/// §21 member left × ringing calls: a caller who leaves ends the ringing for everyone
/// (CANCELLED, by the caller); the conversation is free for a new call.
async fn a_caller_who_leaves_ends_the_ringing(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "clA").await?;
    let b = new_user(s, t, "clB").await?;
    let mut c = new_user(s, t, "clC").await?;
    let conv = call!(a.client, CreateConversation, group("ring", &[b.id, c.id]))?.conversation_id;
    let started = start(&b, conv).await?;
    invite(&mut a, &started.call_id).await?;
    invite(&mut c, &started.call_id).await?;
    call!(b.client, LeaveConversation, v1::LeaveConversation { conversation_id: conv })?;
    for u in [&mut a, &mut c] {
        let e = ended(u, &started.call_id).await?;
        ensure!(e.reason == HangupReason::Cancelled as i32 && e.by_user_id == b.id, "{e:?}");
    }
    let late = call!(c.client, AcceptCall, v1::AcceptCall { call_id: started.call_id.clone() });
    expect_code(late, ErrorCode::NotFound)?;
    let s = summary(&mut a, &started.call_id).await?;
    ensure!(s.outcome == CallOutcome::Cancelled as i32 && s.answered_by == 0, "{s:?}");
    start(&a, conv).await?;
    Ok(())
}

/// §21 account deleted × ringing calls: the callee stops ringing at once, cannot accept, and is
/// free to call again.
async fn a_deleted_caller_ends_the_ringing(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "clA").await?;
    let mut b = new_user(s, t, "clB").await?;
    let c = new_user(s, t, "clC").await?;
    let conv = call!(a.client, CreateConversation, confab_conformance::util::direct(b.id))?.conversation_id;
    let started = start(&a, conv).await?;
    invite(&mut b, &started.call_id).await?;
    call!(a.client, DeleteAccount, v1::DeleteAccount { password: confab_conformance::util::PASSWORD.into() })?;
    let e = ended(&mut b, &started.call_id).await?;
    ensure!(e.reason == HangupReason::Cancelled as i32 && e.by_user_id == a.id, "{e:?}");
    let late = call!(b.client, AcceptCall, v1::AcceptCall { call_id: started.call_id.clone() });
    expect_code(late, ErrorCode::NotFound)?;
    let other = call!(b.client, CreateConversation, confab_conformance::util::direct(c.id))?.conversation_id;
    start(&b, other).await?;
    Ok(())
}

/// §21 member removed × an answered call: the call ends (USER_HANGUP, by the removed member) and
/// signals stop; both devices are free.
async fn an_answered_call_ends_when_a_party_is_removed(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "clA").await?;
    let mut b = new_user(s, t, "clB").await?;
    let conv = call!(a.client, CreateConversation, group("talk", &[b.id]))?.conversation_id;
    let started = start(&a, conv).await?;
    invite(&mut b, &started.call_id).await?;
    call!(b.client, AcceptCall, v1::AcceptCall { call_id: started.call_id.clone() })?;
    remove(&a, conv, b.id).await?;
    let b_id = b.id;
    for u in [&mut a, &mut b] {
        let e = ended(u, &started.call_id).await?;
        ensure!(e.reason == HangupReason::UserHangup as i32 && e.by_user_id == b_id, "{e:?}");
    }
    let signal = v1::CallSignal {
        call_id: started.call_id.clone(),
        signal: Some(v1::call_signal::Signal::SdpOffer("v=0".into())),
        ..Default::default()
    };
    expect_code(call!(b.client, CallSignal, signal), ErrorCode::NotFound)?;
    let s = summary(&mut a, &started.call_id).await?;
    ensure!(s.outcome == CallOutcome::Answered as i32, "{s:?}");
    Ok(())
}

async fn participants(u: &mut User, conv: u64, n: u32) -> anyhow::Result<()> {
    next_matching(&mut u.events, WAIT, |e| match e {
        event::Event::GroupCallState(s) if s.conversation_id == conv && s.participants == n => Some(()),
        _ => None,
    })
    .await
}

async fn left(u: &mut User, conv: u64) -> anyhow::Result<u64> {
    next_matching(&mut u.events, WAIT, |e| match e {
        event::Event::ParticipantLeft(p) if p.conversation_id == conv => Some(p.user_id),
        _ => None,
    })
    .await
}

/// §21 member removed × group calls: the removed member's device leaves the call at once (the
/// others get ParticipantLeft), and it cannot join again.
async fn a_removed_member_leaves_the_group_call(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "clA").await?;
    let b = new_user(s, t, "clB").await?;
    let conv = call!(a.client, CreateConversation, group("room", &[b.id]))?.conversation_id;
    call!(a.client, JoinCall, v1::JoinCall { room_id: Default::default(), conversation_id: conv })?;
    call!(b.client, JoinCall, v1::JoinCall { room_id: Default::default(), conversation_id: conv })?;
    participants(&mut a, conv, 2).await?;
    remove(&a, conv, b.id).await?;
    ensure!(left(&mut a, conv).await? == b.id, "the removed member left");
    participants(&mut a, conv, 1).await?;
    expect_code(
        call!(b.client, JoinCall, v1::JoinCall { room_id: Default::default(), conversation_id: conv }),
        ErrorCode::NotFound,
    )?;
    Ok(())
}

/// §21 session revoked × group calls: a revoked device leaves at once, without waiting for the
/// reconnect grace (30 s here).
async fn a_revoked_session_leaves_the_group_call_at_once(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "clA").await?;
    let b = new_user(s, t, "clB").await?;
    let b2 = second_device(s, t, &b).await?;
    let conv = call!(a.client, CreateConversation, group("room", &[b.id]))?.conversation_id;
    call!(a.client, JoinCall, v1::JoinCall { room_id: Default::default(), conversation_id: conv })?;
    call!(b2.client, JoinCall, v1::JoinCall { room_id: Default::default(), conversation_id: conv })?;
    participants(&mut a, conv, 2).await?;
    let revoke = v1::RevokeSession { session_id: b2.auth.session_id.clone() };
    call!(b.client, RevokeSession, revoke)?;
    ensure!(left(&mut a, conv).await? == b.id, "the revoked device left");
    participants(&mut a, conv, 1).await?;
    Ok(())
}

/// §21 user blocked × ringing calls: a call the blocked user placed stops ringing the blocker at
/// once (CallEnded CANCELLED); the blocker cannot answer it; it rings on for the others.
async fn a_block_stops_the_blockers_ringing(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let Ringing { a, mut b, c, conv: _, started } = ringing_group(s, t).await?;
    call!(b.client, Block, v1::Block { user_id: a.id })?;
    let e = ended(&mut b, &started.call_id).await?;
    ensure!(e.reason == HangupReason::Cancelled as i32, "{e:?}");
    expect_code(call!(b.client, AcceptCall, v1::AcceptCall { call_id: started.call_id.clone() }), ErrorCode::NotFound)?;
    call!(c.client, AcceptCall, v1::AcceptCall { call_id: started.call_id.clone() })?;
    Ok(())
}

/// §21 account deleted × DIRECT conversations: a deleted account cannot be called, as it cannot
/// be written to (PERMISSION_DENIED).
async fn a_deleted_peer_cannot_be_called(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "clA").await?;
    let b = new_user(s, t, "clB").await?;
    let conv = call!(a.client, CreateConversation, confab_conformance::util::direct(b.id))?.conversation_id;
    call!(b.client, DeleteAccount, v1::DeleteAccount { password: confab_conformance::util::PASSWORD.into() })?;
    let r = call!(a.client, StartCall, v1::StartCall { conversation_id: conv, media: CallMedia::Audio as i32 });
    expect_code(r, ErrorCode::PermissionDenied)?;
    Ok(())
}
