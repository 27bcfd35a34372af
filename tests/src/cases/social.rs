//! Cases for presence, profiles, contacts, blocking and notifications (docs/protocol.md §17-§19,
//! with the last-seen setting of §15.4).

use anyhow::{Context, ensure};
use confab_protocol::v1::{self, ErrorCode, NotificationKind, PresenceState as P, event};

use super::Target;
use super::common::*;

/// The next PresenceChanged about `user` with `state`.
async fn presence(u: &mut Account, user: u64, state: P) -> anyhow::Result<v1::PresenceChanged> {
    next(&mut u.events, |e| match e {
        event::Event::PresenceChanged(p) if p.user_id == user && p.state() == state => Some(p),
        _ => None,
    })
    .await
}

async fn profile(viewer: &Account, user: u64) -> anyhow::Result<v1::UserProfile> {
    Ok(call!(viewer.client, GetUser, v1::GetUser { user_id: user })?)
}

fn set_presence(state: P) -> v1::SetPresence {
    v1::SetPresence { state: state as i32 }
}

/// §17: a user is ONLINE while any device is, AWAY when all connected devices are, OFFLINE with
/// last_seen_ms when none is connected; members of a shared conversation get PresenceChanged.
pub(super) async fn presence_follows_devices(t: Target) -> anyhow::Result<()> {
    let a = new_account(&t, "cfprA").await?;
    let mut b = account(&t, "cfprB").await?;
    group(&a, &[b.id]).await?;
    let a2 = second_device(&t, &a, "other").await?;
    ensure!(profile(&b, a.id).await?.presence() == P::Online);
    call!(a.client, SetPresence, set_presence(P::Away))?;
    ensure!(profile(&b, a.id).await?.presence() == P::Online, "one away device made the user away");
    call!(a2.client, SetPresence, set_presence(P::Away))?;
    let away = presence(&mut b, a.id, P::Away).await?;
    ensure!(away.last_seen_ms == 0, "{away:?}");
    call!(a2.client, SetPresence, set_presence(P::Online))?;
    presence(&mut b, a.id, P::Online).await?;
    expect_code(call!(a.client, SetPresence, set_presence(P::Offline)), ErrorCode::InvalidArgument)?;
    a.client.close().await;
    a2.client.close().await;
    let off = presence(&mut b, a.id, P::Offline).await?;
    ensure!(off.last_seen_ms > 0, "{off:?}");
    let p = profile(&b, a.id).await?;
    ensure!(p.presence() == P::Offline && p.last_seen_ms > 0, "{p:?}");
    Ok(())
}

/// §15.4, §17: with show_last_seen off, others see last_seen_ms 0, in events and profiles.
pub(super) async fn hidden_last_seen_stays_hidden(t: Target) -> anyhow::Result<()> {
    let a = new_account(&t, "cflsA").await?;
    let mut b = account(&t, "cflsB").await?;
    group(&a, &[b.id]).await?;
    let p = call!(a.client, SetPrivacy, v1::SetPrivacy { read_receipts: None, show_last_seen: Some(false) })?;
    ensure!(p.read_receipts && !p.show_last_seen, "{p:?}");
    a.client.close().await;
    let off = presence(&mut b, a.id, P::Offline).await?;
    ensure!(off.last_seen_ms == 0, "last seen shown despite the setting: {off:?}");
    let p = profile(&b, a.id).await?;
    ensure!(p.presence() == P::Offline && p.last_seen_ms == 0, "{p:?}");
    Ok(())
}

/// §17, §18: strangers see no presence; the user's contacts do, and get PresenceChanged;
/// contacts are added, listed and removed; adding an unknown user is NOT_FOUND.
pub(super) async fn contacts_see_presence(t: Target) -> anyhow::Result<()> {
    let a = new_account(&t, "cfctA").await?;
    let mut x = account(&t, "cfctX").await?;
    let stranger = profile(&x, a.id).await?;
    ensure!(stranger.presence() == P::Unspecified && stranger.last_seen_ms == 0, "{stranger:?}");
    call!(a.client, AddContact, v1::AddContact { user_id: x.id })?;
    let listed = call!(a.client, ListContacts, v1::ListContacts {})?.users;
    ensure!(listed.len() == 1 && listed[0].user_id == x.id && listed[0].username == x.name, "{listed:?}");
    ensure!(profile(&x, a.id).await?.presence() == P::Online, "a contact does not see presence");
    call!(a.client, SetPresence, set_presence(P::Away))?;
    presence(&mut x, a.id, P::Away).await?;
    expect_code(call!(a.client, AddContact, v1::AddContact { user_id: u64::MAX >> 2 }), ErrorCode::NotFound)?;
    call!(a.client, RemoveContact, v1::RemoveContact { user_id: x.id })?;
    ensure!(call!(a.client, ListContacts, v1::ListContacts {})?.users.is_empty(), "still listed");
    ensure!(profile(&x, a.id).await?.presence() == P::Unspecified, "a removed contact still sees presence");
    Ok(())
}

/// §18: GetUser (NOT_FOUND if unknown), GetUsers (unknown ids left out), SearchUsers (username or
/// display-name prefix, case-insensitive, no wildcards, by username, in pages).
pub(super) async fn profiles_and_search(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfsuA").await?;
    let tag = fresh_name("cfSu_");
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = v1::Register { display_name: Some(format!("Shown {tag}")), ..registration(&format!("{tag}{i}")) };
        ids.push(account_with(&t, r).await?.id);
    }
    let search = async |query: String, page_token: String, limit: u32| {
        call!(a.client, SearchUsers, v1::SearchUsers { query, page_token, limit })
    };
    let first = search(tag.to_uppercase(), String::new(), 2).await?;
    let names: Vec<&str> = first.users.iter().map(|u| u.username.as_str()).collect();
    ensure!(names == [format!("{tag}0"), format!("{tag}1")] && !first.next_page_token.is_empty(), "{first:?}");
    let rest = search(tag.clone(), first.next_page_token.clone(), 2).await?;
    ensure!(rest.users.len() == 1 && rest.users[0].user_id == ids[2] && rest.next_page_token.is_empty(), "{rest:?}");
    let shown = search(format!("shown {tag}"), String::new(), 0).await?;
    ensure!(shown.users.len() == 3, "display-name prefix: {shown:?}");
    let wild = search(tag.replace('_', "%"), String::new(), 0).await?;
    ensure!(wild.users.iter().all(|u| !ids.contains(&u.user_id)), "wildcards matched: {wild:?}");
    for bad in [String::new(), "q".repeat(65)] {
        expect_code(search(bad, String::new(), 0).await, ErrorCode::InvalidArgument)?;
    }
    let p = profile(&a, ids[0]).await?;
    ensure!(p.username == format!("{tag}0") && p.display_name == format!("Shown {tag}") && !p.deleted, "{p:?}");
    expect_code(call!(a.client, GetUser, v1::GetUser { user_id: u64::MAX >> 2 }), ErrorCode::NotFound)?;
    let some = call!(a.client, GetUsers, v1::GetUsers { user_ids: vec![ids[0], u64::MAX >> 2, ids[1]] })?;
    let mut got: Vec<u64> = some.users.iter().map(|u| u.user_id).collect();
    got.sort_unstable();
    ensure!(got == ids[..2], "{some:?}");
    Ok(())
}

/// §18: a user B blocked by A cannot open a DIRECT conversation with A (NOT_FOUND, as for an
/// unknown user) or send in one (PERMISSION_DENIED), does not see A's presence and does not find
/// A; A can still write; unblocking restores it.
pub(super) async fn blocking_prevents_what_it_promises(t: Target) -> anyhow::Result<()> {
    let a = new_account(&t, "cfblA").await?;
    let b = account(&t, "cfblB").await?;
    let c = new_account(&t, "cfblC").await?;
    let dm = direct(&a, b.id).await?.conversation_id;
    ensure!(profile(&b, a.id).await?.presence() == P::Online);
    call!(a.client, Block, v1::Block { user_id: b.id })?;
    call!(c.client, Block, v1::Block { user_id: b.id })?;
    let listed = call!(a.client, ListBlocked, v1::ListBlocked {})?.users;
    ensure!(listed.len() == 1 && listed[0].user_id == b.id, "{listed:?}");
    let e = expect_code(call!(b.client, SendMessage, message(dm, "bl1", "hello?")), ErrorCode::PermissionDenied)?;
    ensure!(e.message == "you cannot send to this conversation", "{e}");
    send(&a, dm, "bl2", "I still can").await?;
    let blocked = expect_code(direct(&b, c.id).await, ErrorCode::NotFound)?;
    let unknown = expect_code(direct(&b, u64::MAX >> 2).await, ErrorCode::NotFound)?;
    ensure!(blocked.message == unknown.message && blocked.message == "no such user", "{blocked} / {unknown}");
    ensure!(profile(&b, a.id).await?.presence() == P::Unspecified, "presence shown to a blocked user");
    let found = call!(b.client, SearchUsers, v1::SearchUsers { query: a.name.clone(), ..Default::default() })?;
    ensure!(found.users.iter().all(|u| u.user_id != a.id), "the blocker shows in search: {found:?}");
    call!(a.client, Unblock, v1::Unblock { user_id: b.id })?;
    ensure!(call!(a.client, ListBlocked, v1::ListBlocked {})?.users.is_empty());
    send(&b, dm, "bl3", "me too, again").await.context("still blocked after Unblock")?;
    Ok(())
}

/// §19: MENTIONED (not for mentioning oneself), ADDED_TO_CONVERSATION and ROLE_CHANGED arrive
/// live and in the inbox, newest first, in pages; MarkNotificationsRead marks up to an id.
pub(super) async fn notifications_inbox(t: Target) -> anyhow::Result<()> {
    let a = new_account(&t, "cfnoA").await?;
    let mut b = new_account(&t, "cfnoB").await?;
    let note = |e: event::Event| match e {
        event::Event::Notification(n) => Some(n),
        _ => None,
    };
    let conv = group(&a, &[]).await?;
    call!(a.client, AddMembers, v1::AddMembers { conversation_id: conv, user_ids: vec![b.id] })?;
    let added = next(&mut b.events, note).await?;
    ensure!(added.kind() == NotificationKind::AddedToConversation && added.actor_id == a.id, "{added:?}");
    ensure!(added.conversation_id == conv && !added.read && added.created_at_ms > 0, "{added:?}");
    let m = v1::SendMessage { mention_user_ids: vec![b.id, a.id], ..message(conv, "n1", "hey") };
    let sent = call!(a.client, SendMessage, m)?;
    let mention = next(&mut b.events, note).await?;
    ensure!(mention.kind() == NotificationKind::Mentioned && mention.message_id == sent.message_id, "{mention:?}");
    let role = v1::SetRole { conversation_id: conv, user_id: b.id, role: v1::MemberRole::Moderator as i32 };
    call!(a.client, SetRole, role)?;
    let changed = next(&mut b.events, note).await?;
    ensure!(changed.kind() == NotificationKind::RoleChanged && changed.role() == v1::MemberRole::Moderator);
    let list = async |before_id: u64, limit: u32, unread_only: bool| {
        call!(b.client, ListNotifications, v1::ListNotifications { before_id, limit, unread_only })
    };
    let all = list(0, 0, false).await?;
    let ids: Vec<u64> = all.notifications.iter().map(|n| n.notification_id).collect();
    let want = vec![changed.notification_id, mention.notification_id, added.notification_id];
    ensure!(ids == want && all.unread_count == 3 && !all.has_more, "{all:?}");
    let page = list(changed.notification_id, 1, false).await?;
    ensure!(page.notifications.len() == 1 && page.has_more, "{page:?}");
    ensure!(page.notifications[0].notification_id == mention.notification_id, "{page:?}");
    let r = call!(b.client, MarkNotificationsRead, v1::MarkNotificationsRead { up_to_id: mention.notification_id })?;
    ensure!(r.unread_count == 1, "{r:?}");
    let unread = list(0, 0, true).await?;
    let unread: Vec<u64> = unread.notifications.iter().map(|n| n.notification_id).collect();
    ensure!(unread == [changed.notification_id], "{unread:?}");
    let own = call!(a.client, ListNotifications, v1::ListNotifications::default())?;
    ensure!(own.notifications.is_empty(), "mentioning oneself made a notification: {own:?}");
    Ok(())
}
