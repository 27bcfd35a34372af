//! Receipts, typing, presence, profiles, contacts, blocking and notifications
//! (docs/protocol.md §15-§19), on both transports and both stores.

use std::time::Duration;

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::harness::{TestFn, TestServer, Transport};
use confab_conformance::util::{User, expect_code, group, new_user, next_matching, second_device, send};
use confab_protocol::client::Events;
use confab_protocol::v1::{self, ErrorCode, PresenceState, ReceiptState, event, user_update};

const TESTS: &[(&str, TestFn)] = confab_conformance::named_tests![
    receipts_in_a_group_of_ten,
    read_markers_sync_across_devices,
    read_receipts_privacy_holds,
    typing_is_relayed_and_expires,
    presence_aggregates_devices,
    profiles_contacts_and_search,
    blocking_rules,
    notifications_inbox,
];

confab_conformance::matrix_tests!(TESTS, |c| c.limits.typing_ttl = Duration::from_millis(400));

/// Drains events for `wait`, collecting the matching ones.
async fn collect<T>(events: &mut Events, wait: Duration, pick: impl Fn(&event::Event) -> Option<T>) -> Vec<T> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let Some(e) = ev.event.as_ref().and_then(&pick) {
            out.push(e);
        }
    }
    out
}

fn receipts_of(e: &event::Event) -> Option<v1::ReceiptUpdated> {
    match e {
        event::Event::ReceiptUpdated(r) => Some(*r),
        _ => None,
    }
}

/// §15: ten members with several devices; the sender gets watermarks, not per-message events.
async fn receipts_in_a_group_of_ten(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut sender = new_user(s, t, "rcS").await?;
    let mut members: Vec<User> = Vec::new();
    for i in 0..9 {
        members.push(new_user(s, t, &format!("rc{i}_")).await?);
    }
    // Every member has a second device; the sender has one too.
    let mut second: Vec<User> = Vec::new();
    for m in &members {
        second.push(second_device(s, t, m).await?);
    }
    let mut sender2 = second_device(s, t, &sender).await?;
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let conv = call!(sender.client, CreateConversation, group("ten", &ids))?.conversation_id;
    let mut last = 0;
    let mut first = 0;
    for i in 0..5 {
        let r = call!(sender.client, SendMessage, send(conv, &format!("rc{i}"), "hello all"))?;
        if i == 0 {
            first = r.seq;
        }
        last = r.seq;
    }
    let _ = collect(&mut sender.events, Duration::from_millis(100), receipts_of).await;
    // Members 0-5 acknowledge everything on one of their devices (0-2 on the first, 3-5 on the
    // second); 0-2 read everything; 3 reads only the first message. Members 6-8 do nothing.
    for (i, m) in members.iter().enumerate().take(6) {
        let device = if i < 3 { &m.client } else { &second[i].client };
        call!(device, Ack, v1::Ack { conversation_id: conv, seq: last })?;
    }
    for m in members.iter().take(3) {
        call!(m.client, MarkRead, v1::MarkRead { conversation_id: conv, seq: last })?;
    }
    call!(members[3].client, MarkRead, v1::MarkRead { conversation_id: conv, seq: first })?;
    // A second device acking again moves nothing.
    call!(second[0].client, Ack, v1::Ack { conversation_id: conv, seq: last })?;
    let updates = collect(&mut sender.events, Duration::from_millis(400), receipts_of).await;
    ensure!(updates.len() == 6 + 3 + 1, "{} receipt events for 10 watermark moves: {updates:?}", updates.len());
    let on_second = collect(&mut sender2.events, Duration::from_millis(100), receipts_of).await;
    ensure!(on_second.len() == updates.len(), "the sender's other device got {} receipt events", on_second.len());
    let r = call!(
        sender.client,
        GetReceipts,
        v1::GetReceipts { conversation_id: conv, message_id: last_message_id(&sender, conv).await? }
    )?;
    ensure!(r.receipts.len() == 9, "{r:?}");
    let state = |u: u64| r.receipts.iter().find(|x| x.user_id == u).map(|x| x.state).unwrap_or(0);
    for (i, m) in members.iter().enumerate() {
        let want = match i {
            0..=2 => ReceiptState::Read,
            3..=5 => ReceiptState::Delivered,
            _ => ReceiptState::Sent,
        };
        ensure!(state(m.id) == want as i32, "member {i}: {} instead of {want:?}", state(m.id));
    }
    // Only the sender sees receipts.
    expect_code(
        call!(
            members[0].client,
            GetReceipts,
            v1::GetReceipts { conversation_id: conv, message_id: last_message_id(&sender, conv).await? }
        ),
        ErrorCode::PermissionDenied,
    )?;
    // Read markers never move back.
    let r = call!(members[0].client, MarkRead, v1::MarkRead { conversation_id: conv, seq: first })?;
    ensure!(r.read_seq == last, "{r:?}");
    let c = call!(members[0].client, GetConversation, v1::GetConversation { conversation_id: conv })?;
    ensure!(c.my_read_seq == last && c.unread_count == 0, "{c:?}");
    let c = call!(members[8].client, GetConversation, v1::GetConversation { conversation_id: conv })?;
    ensure!(c.my_read_seq == 0 && c.unread_count == 5, "{c:?}");
    Ok(())
}

async fn last_message_id(u: &User, conv: u64) -> anyhow::Result<u64> {
    let h = call!(u.client, GetHistory, v1::GetHistory { conversation_id: conv, limit: 1, ..Default::default() })?;
    Ok(h.messages.last().context("no message")?.message_id)
}

/// §15.1, §14.2: a read marker set on one device reaches the user's other devices.
async fn read_markers_sync_across_devices(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "rmA").await?;
    let mut a2 = second_device(s, t, &a).await?;
    let b = new_user(s, t, "rmB").await?;
    let conv = call!(b.client, CreateConversation, group("rm", &[a.id]))?.conversation_id;
    let m = call!(b.client, SendMessage, send(conv, "rm1", "read me"))?;
    let before = call!(a2.client, Sync, v1::Sync::default())?;
    call!(a.client, MarkRead, v1::MarkRead { conversation_id: conv, seq: m.seq })?;
    let marker = next_matching(&mut a2.events, Duration::from_secs(5), |e| match e {
        event::Event::UserUpdate(u) => match &u.body {
            Some(user_update::Body::ReadMarker(r)) => Some(*r),
            _ => None,
        },
        _ => None,
    })
    .await?;
    ensure!(marker.conversation_id == conv && marker.seq == m.seq, "{marker:?}");
    let after =
        call!(a2.client, Sync, v1::Sync { epoch: before.epoch, user_seq: before.user_seq, ..Default::default() })?;
    ensure!(
        after.user_updates.iter().any(|u| matches!(&u.body, Some(user_update::Body::ReadMarker(r)) if r.seq == m.seq)),
        "{after:?}"
    );
    Ok(())
}

/// §15.4: a member who hides read receipts shows as delivered, never read.
async fn read_receipts_privacy_holds(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "pvA").await?;
    let b = new_user(s, t, "pvB").await?;
    let p = call!(b.client, SetPrivacy, v1::SetPrivacy { read_receipts: Some(false), show_last_seen: None })?;
    ensure!(!p.read_receipts && p.show_last_seen, "{p:?}");
    let conv = call!(a.client, CreateConversation, group("pv", &[b.id]))?.conversation_id;
    let m = call!(a.client, SendMessage, send(conv, "pv1", "secret reading"))?;
    let _ = collect(&mut a.events, Duration::from_millis(100), receipts_of).await;
    call!(b.client, MarkRead, v1::MarkRead { conversation_id: conv, seq: m.seq })?;
    let r = next_matching(&mut a.events, Duration::from_secs(5), receipts_of).await?;
    ensure!(r.read_seq == 0 && r.delivered_seq == m.seq, "{r:?}");
    let g = call!(a.client, GetReceipts, v1::GetReceipts { conversation_id: conv, message_id: m.message_id })?;
    ensure!(g.receipts.len() == 1 && g.receipts[0].state == ReceiptState::Delivered as i32, "{g:?}");
    let mine = call!(b.client, GetConversation, v1::GetConversation { conversation_id: conv })?;
    ensure!(mine.my_read_seq == m.seq, "the hidden marker still works for its owner");
    Ok(())
}

/// §16
async fn typing_is_relayed_and_expires(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "tyA").await?;
    let mut b = new_user(s, t, "tyB").await?;
    let conv = call!(a.client, CreateConversation, group("typing", &[b.id]))?.conversation_id;
    let typing = |on| v1::SetTyping { conversation_id: conv, typing: on };
    call!(a.client, SetTyping, typing(true))?;
    let pick = |e: &event::Event| match e {
        event::Event::TypingChanged(x) => Some(*x),
        _ => None,
    };
    let on = next_matching(&mut b.events, Duration::from_secs(5), pick).await?;
    ensure!(on.typing && on.user_id == a.id && on.expires_in_ms == 400, "{on:?}");
    let started = tokio::time::Instant::now();
    let off = next_matching(&mut b.events, Duration::from_secs(5), pick).await?;
    ensure!(!off.typing && off.user_id == a.id, "{off:?}");
    ensure!(started.elapsed() >= Duration::from_millis(250), "expired after {:?}", started.elapsed());
    // Explicit stop.
    call!(a.client, SetTyping, typing(true))?;
    next_matching(&mut b.events, Duration::from_secs(5), pick).await?;
    call!(a.client, SetTyping, typing(false))?;
    let stop = next_matching(&mut b.events, Duration::from_secs(5), pick).await?;
    ensure!(!stop.typing);
    // Rate-limited, and members only.
    let mut limited = false;
    for _ in 0..10 {
        if let Err(e) = call!(a.client, SetTyping, typing(true)) {
            ensure!(e.code() == Some(ErrorCode::RateLimited), "{e}");
            limited = true;
            break;
        }
    }
    ensure!(limited, "typing is not rate-limited");
    let x = new_user(s, t, "tyX").await?;
    expect_code(call!(x.client, SetTyping, typing(true)), ErrorCode::NotFound)?;
    Ok(())
}

fn presence_of(e: &event::Event, user: u64) -> Option<v1::PresenceChanged> {
    match e {
        event::Event::PresenceChanged(p) if p.user_id == user => Some(*p),
        _ => None,
    }
}

/// §17: online while any device is; away when all are; offline with last seen.
async fn presence_aggregates_devices(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut b = new_user(s, t, "prB").await?;
    let a = new_user(s, t, "prA").await?;
    let a2 = second_device(s, t, &a).await?;
    call!(a.client, CreateConversation, group("presence", &[b.id]))?;
    let get = |u: &User, id: u64| {
        let c = u.client.clone();
        async move { call!(c, GetUser, v1::GetUser { user_id: id }) }
    };
    ensure!(get(&b, a.id).await?.presence == PresenceState::Online as i32);
    // One device going away or offline does not change the user's presence.
    call!(a.client, SetPresence, v1::SetPresence { state: PresenceState::Away as i32 })?;
    ensure!(get(&b, a.id).await?.presence == PresenceState::Online as i32, "one away device made the user away");
    a.client.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    ensure!(get(&b, a.id).await?.presence == PresenceState::Online as i32, "one device offline made the user offline");
    call!(a2.client, SetPresence, v1::SetPresence { state: PresenceState::Away as i32 })?;
    let p = next_matching(&mut b.events, Duration::from_secs(5), |e| {
        presence_of(e, a.id).filter(|p| p.state == PresenceState::Away as i32)
    })
    .await?;
    ensure!(p.last_seen_ms == 0);
    a2.client.close().await;
    let p = next_matching(&mut b.events, Duration::from_secs(5), |e| {
        presence_of(e, a.id).filter(|p| p.state == PresenceState::Offline as i32)
    })
    .await?;
    ensure!(p.last_seen_ms > 0, "{p:?}");
    let prof = get(&b, a.id).await?;
    ensure!(prof.presence == PresenceState::Offline as i32 && prof.last_seen_ms > 0, "{prof:?}");
    // Strangers see no presence; a hidden last seen stays hidden.
    let x = new_user(s, t, "prX").await?;
    ensure!(get(&x, a.id).await?.presence == PresenceState::Unspecified as i32);
    let (c3, _e3) = s.connect(t).await?;
    c3.login(&a.name, confab_conformance::util::PASSWORD, "third").await?;
    call!(c3, SetPrivacy, v1::SetPrivacy { read_receipts: None, show_last_seen: Some(false) })?;
    c3.close().await;
    let p = next_matching(&mut b.events, Duration::from_secs(5), |e| {
        presence_of(e, a.id).filter(|p| p.state == PresenceState::Offline as i32)
    })
    .await?;
    ensure!(p.last_seen_ms == 0, "last seen shown despite the setting: {p:?}");
    ensure!(get(&b, a.id).await?.last_seen_ms == 0);
    Ok(())
}

/// §18
async fn profiles_contacts_and_search(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "pcA").await?;
    let tag = confab_conformance::util::unique("zq");
    let mut found_ids = Vec::new();
    for i in 0..3 {
        let (c, _e) = s.connect(t).await?;
        let mut r = confab_conformance::util::register(&format!("{tag}{i}"));
        r.display_name = Some(format!("Display {tag}"));
        let auth = c.register(r).await?;
        found_ids.push(auth.me.context("me")?.user_id);
    }
    let page = call!(
        a.client,
        SearchUsers,
        v1::SearchUsers { query: tag.to_uppercase(), page_token: String::new(), limit: 2 }
    )?;
    ensure!(page.users.len() == 2 && !page.next_page_token.is_empty(), "{page:?}");
    let rest = call!(
        a.client,
        SearchUsers,
        v1::SearchUsers { query: tag.clone(), page_token: page.next_page_token.clone(), limit: 2 }
    )?;
    ensure!(rest.users.len() == 1 && rest.next_page_token.is_empty(), "{rest:?}");
    let by_name =
        call!(a.client, SearchUsers, v1::SearchUsers { query: format!("display {tag}"), ..Default::default() })?;
    ensure!(by_name.users.len() == 3, "display-name prefix: {by_name:?}");
    expect_code(call!(a.client, SearchUsers, v1::SearchUsers::default()), ErrorCode::InvalidArgument)?;
    let users = call!(a.client, GetUsers, v1::GetUsers { user_ids: vec![found_ids[0], 999_999_999, found_ids[1]] })?;
    ensure!(users.users.len() == 2, "{users:?}");
    expect_code(call!(a.client, GetUser, v1::GetUser { user_id: 999_999_999 }), ErrorCode::NotFound)?;
    // A contact sees presence without sharing a conversation.
    call!(a.client, AddContact, v1::AddContact { user_id: found_ids[0] })?;
    let contacts = call!(a.client, ListContacts, v1::ListContacts {})?;
    ensure!(contacts.users.len() == 1 && contacts.users[0].user_id == found_ids[0]);
    expect_code(call!(a.client, AddContact, v1::AddContact { user_id: 999_999_999 }), ErrorCode::NotFound)?;
    call!(a.client, RemoveContact, v1::RemoveContact { user_id: found_ids[0] })?;
    ensure!(call!(a.client, ListContacts, v1::ListContacts {})?.users.is_empty());
    Ok(())
}

/// §18: a blocked user cannot open or send in a DIRECT conversation with the blocker, does not
/// see their presence, and learns nothing beyond a generic error.
async fn blocking_rules(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "blA").await?;
    let b = new_user(s, t, "blB").await?;
    let dm = |peer| v1::CreateConversation {
        kind: v1::ConversationKind::Direct as i32,
        member_ids: vec![peer],
        ..Default::default()
    };
    let existing = call!(a.client, CreateConversation, dm(b.id))?.conversation_id;
    ensure!(call!(b.client, GetUser, v1::GetUser { user_id: a.id })?.presence == PresenceState::Online as i32);
    call!(a.client, Block, v1::Block { user_id: b.id })?;
    let listed = call!(a.client, ListBlocked, v1::ListBlocked {})?;
    ensure!(listed.users.iter().any(|u| u.user_id == b.id));
    let e = expect_code(call!(b.client, SendMessage, send(existing, "bl1", "hello?")), ErrorCode::PermissionDenied)?;
    ensure!(e.message == "you cannot send to this conversation", "{e}");
    // A fresh pair: the blocked user cannot open one, and sees the same error as for no user.
    let c = new_user(s, t, "blC").await?;
    call!(c.client, Block, v1::Block { user_id: b.id })?;
    let e1 = expect_code(call!(b.client, CreateConversation, dm(c.id)), ErrorCode::NotFound)?;
    let e2 = expect_code(call!(b.client, CreateConversation, dm(999_999_999)), ErrorCode::NotFound)?;
    ensure!(e1.message == e2.message, "{e1} / {e2}");
    ensure!(
        call!(b.client, GetUser, v1::GetUser { user_id: a.id })?.presence == PresenceState::Unspecified as i32,
        "presence leaked to a blocked user"
    );
    let search = call!(b.client, SearchUsers, v1::SearchUsers { query: a.name.clone(), ..Default::default() })?;
    ensure!(search.users.is_empty(), "the blocker shows in the blocked user's search");
    // The blocker can still write; unblocking restores everything.
    call!(a.client, SendMessage, send(existing, "bl2", "I can"))?;
    call!(a.client, Unblock, v1::Unblock { user_id: b.id })?;
    call!(b.client, SendMessage, send(existing, "bl3", "me too, again"))?;
    Ok(())
}

/// §19: mentioned, added, role changed; live and listed; marked read.
async fn notifications_inbox(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "nA").await?;
    let mut b = new_user(s, t, "nB").await?;
    let pick = |e: &event::Event| match e {
        event::Event::Notification(n) => Some(*n),
        _ => None,
    };
    let conv = call!(a.client, CreateConversation, group("notify", &[]))?.conversation_id;
    call!(a.client, AddMembers, v1::AddMembers { conversation_id: conv, user_ids: vec![b.id] })?;
    let added = next_matching(&mut b.events, Duration::from_secs(5), pick).await?;
    ensure!(added.kind == v1::NotificationKind::AddedToConversation as i32 && added.actor_id == a.id, "{added:?}");
    let mut m = send(conv, "n1", "hey @b");
    m.mention_user_ids = vec![b.id, a.id];
    let sent = call!(a.client, SendMessage, m)?;
    let mention = next_matching(&mut b.events, Duration::from_secs(5), pick).await?;
    ensure!(
        mention.kind == v1::NotificationKind::Mentioned as i32 && mention.message_id == sent.message_id,
        "{mention:?}"
    );
    call!(
        a.client,
        SetRole,
        v1::SetRole { conversation_id: conv, user_id: b.id, role: v1::MemberRole::Moderator as i32 }
    )?;
    let role = next_matching(&mut b.events, Duration::from_secs(5), pick).await?;
    ensure!(
        role.kind == v1::NotificationKind::RoleChanged as i32 && role.role == v1::MemberRole::Moderator as i32,
        "{role:?}"
    );
    let list = call!(b.client, ListNotifications, v1::ListNotifications::default())?;
    ensure!(list.notifications.len() == 3 && list.unread_count == 3 && !list.has_more, "{list:?}");
    ensure!(list.notifications[0].notification_id == role.notification_id, "newest first");
    let page = call!(
        b.client,
        ListNotifications,
        v1::ListNotifications { before_id: role.notification_id, limit: 1, unread_only: false }
    )?;
    ensure!(page.notifications.len() == 1 && page.has_more, "{page:?}");
    let r = call!(b.client, MarkNotificationsRead, v1::MarkNotificationsRead { up_to_id: mention.notification_id })?;
    ensure!(r.unread_count == 1, "{r:?}");
    let unread = call!(b.client, ListNotifications, v1::ListNotifications { unread_only: true, ..Default::default() })?;
    ensure!(
        unread.notifications.len() == 1 && unread.notifications[0].kind == v1::NotificationKind::RoleChanged as i32
    );
    // The sender mentioning themselves gets nothing.
    let own = call!(a.client, ListNotifications, v1::ListNotifications::default())?;
    ensure!(own.notifications.is_empty(), "{own:?}");
    Ok(())
}
