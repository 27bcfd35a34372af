//! The lifecycle cells of typing and presence (docs/protocol.md §21): whoever leaves or is
//! removed stops typing at once; a blocked user sees the blocker go offline; a revoked session's
//! device stops counting in its user's presence — on both transports and both stores.

use std::time::Duration;

use anyhow::ensure;
use confab_conformance::call;
use confab_conformance::harness::{TestFn, TestServer, Transport};
use confab_conformance::util::{User, group, new_user, next_matching, second_device};
use confab_protocol::v1::{self, PresenceState, event};

const TESTS: &[(&str, TestFn)] = confab_conformance::named_tests![
    a_removed_member_stops_typing_at_once,
    a_member_who_leaves_stops_typing_at_once,
    a_blocked_user_sees_the_blocker_offline,
    revoking_a_session_drops_its_device_from_presence,
    a_deleted_account_goes_offline_for_its_group,
    presence_settles_on_the_last_state,
];

// Far longer than any wait below: a test that passes shows the consequence, not the expiry.
confab_conformance::matrix_tests!(TESTS, |c| c.limits.typing_ttl = Duration::from_secs(60));

const WAIT: Duration = Duration::from_secs(5);

async fn typing(u: &mut User, conv: u64, who: u64, on: bool) -> anyhow::Result<()> {
    next_matching(&mut u.events, WAIT, |e| match e {
        event::Event::TypingChanged(t) if t.conversation_id == conv && t.user_id == who && t.typing == on => Some(()),
        _ => None,
    })
    .await
}

async fn presence(u: &mut User, who: u64, state: PresenceState) -> anyhow::Result<v1::PresenceChanged> {
    next_matching(&mut u.events, WAIT, |e| match e {
        event::Event::PresenceChanged(p) if p.user_id == who && p.state == state as i32 => Some(*p),
        _ => None,
    })
    .await
}

/// §21 member removed × typing (§16): the others see the indicator end when the member goes.
async fn a_removed_member_stops_typing_at_once(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "tyA").await?;
    let b = new_user(s, t, "tyB").await?;
    let conv = call!(a.client, CreateConversation, group("typing", &[b.id]))?.conversation_id;
    call!(b.client, SetTyping, v1::SetTyping { conversation_id: conv, typing: true })?;
    typing(&mut a, conv, b.id, true).await?;
    call!(a.client, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: b.id })?;
    typing(&mut a, conv, b.id, false).await
}

/// §21 member left × typing (§16).
async fn a_member_who_leaves_stops_typing_at_once(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "tyA").await?;
    let b = new_user(s, t, "tyB").await?;
    let conv = call!(a.client, CreateConversation, group("typing", &[b.id]))?.conversation_id;
    call!(b.client, SetTyping, v1::SetTyping { conversation_id: conv, typing: true })?;
    typing(&mut a, conv, b.id, true).await?;
    call!(b.client, LeaveConversation, v1::LeaveConversation { conversation_id: conv })?;
    typing(&mut a, conv, b.id, false).await
}

/// §21 user blocked × presence (§17, §18): B saw A online through a shared group; once A blocks
/// B, B is told A is offline, without a last-seen time, and GetUser shows no presence.
async fn a_blocked_user_sees_the_blocker_offline(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "prA").await?;
    let mut b = new_user(s, t, "prB").await?;
    call!(a.client, CreateConversation, group("seen", &[b.id]))?;
    let p = call!(b.client, GetUser, v1::GetUser { user_id: a.id })?;
    ensure!(p.presence == PresenceState::Online as i32, "B sees A online first: {p:?}");
    call!(a.client, Block, v1::Block { user_id: b.id })?;
    let off = presence(&mut b, a.id, PresenceState::Offline).await?;
    ensure!(off.last_seen_ms == 0, "{off:?}");
    let p = call!(b.client, GetUser, v1::GetUser { user_id: a.id })?;
    ensure!(p.presence == PresenceState::Unspecified as i32, "{p:?}");
    Ok(())
}

/// §21 session revoked × presence (§17): a revoked device no longer counts. B's first device is
/// AWAY and the second ONLINE (B is online); revoking the second leaves B away.
async fn revoking_a_session_drops_its_device_from_presence(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "prA").await?;
    let b = new_user(s, t, "prB").await?;
    call!(a.client, CreateConversation, group("seen", &[b.id]))?;
    let b2 = second_device(s, t, &b).await?;
    call!(b.client, SetPresence, v1::SetPresence { state: PresenceState::Away as i32 })?;
    let p = call!(a.client, GetUser, v1::GetUser { user_id: b.id })?;
    ensure!(p.presence == PresenceState::Online as i32, "online through the second device: {p:?}");
    call!(b.client, RevokeSession, v1::RevokeSession { session_id: b2.auth.session_id.clone() })?;
    presence(&mut a, b.id, PresenceState::Away).await?;
    Ok(())
}

/// §21 account deleted × presence (§17): the members of a group the user was in see them go
/// offline (no last-seen time), though leaving the group made them strangers.
async fn a_deleted_account_goes_offline_for_its_group(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "prA").await?;
    let mut b = new_user(s, t, "prB").await?;
    call!(a.client, CreateConversation, group("seen", &[b.id]))?;
    let p = call!(b.client, GetUser, v1::GetUser { user_id: a.id })?;
    ensure!(p.presence == PresenceState::Online as i32, "{p:?}");
    call!(a.client, DeleteAccount, v1::DeleteAccount { password: confab_conformance::util::PASSWORD.into() })?;
    let off = presence(&mut b, a.id, PresenceState::Offline).await?;
    ensure!(off.last_seen_ms == 0, "{off:?}");
    Ok(())
}

/// §17: announcements of one user keep their order: after a burst of AWAY/ONLINE changes, the
/// last `PresenceChanged` an observer gets is the user's final state.
async fn presence_settles_on_the_last_state(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "prA").await?;
    let b = new_user(s, t, "prB").await?;
    call!(a.client, CreateConversation, group("seen", &[b.id]))?;
    for i in 0..20 {
        let state = if i % 2 == 0 { PresenceState::Away } else { PresenceState::Online };
        call!(b.client, SetPresence, v1::SetPresence { state: state as i32 })?;
    }
    call!(b.client, SetPresence, v1::SetPresence { state: PresenceState::Away as i32 })?;
    // The final state arrives; whatever else arrives after it must be the same state.
    presence(&mut a, b.id, PresenceState::Away).await?;
    let mut last = PresenceState::Away as i32;
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(500), a.events.recv()).await {
        if let Some(event::Event::PresenceChanged(p)) = ev.event
            && p.user_id == b.id
        {
            last = p.state;
        }
    }
    ensure!(last == PresenceState::Away as i32, "settled on {last}, expected AWAY");
    let p = call!(a.client, GetUser, v1::GetUser { user_id: b.id })?;
    ensure!(p.presence == PresenceState::Away as i32, "{p:?}");
    Ok(())
}
