//! Cases for conversations (docs/protocol.md §12.1-§12.7): what members and non-members see,
//! creation and its log, listing, channels joined, left and discovered, and group membership.

use anyhow::{Context, bail, ensure};
use confab_protocol::client::ClientError;
use confab_protocol::v1::{self, ConversationKind as Kind, ErrorCode, MemberRole, client_frame::Request};
use confab_protocol::v1::{conversation_event::Body, user_update};

use super::Target;
use super::common::*;

/// §12.1: a non-member gets NOT_FOUND, exactly as for a missing conversation.
pub(super) async fn non_members_get_not_found(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfnmA").await?;
    let x = account(&t, "cfnmX").await?;
    let conv = group(&a, &[]).await?;
    for target in [conv, u64::MAX >> 2] {
        for r in [
            Request::GetConversation(v1::GetConversation { conversation_id: target }),
            Request::GetHistory(v1::GetHistory { conversation_id: target, ..Default::default() }),
            Request::SendMessage(message(target, "nm", "x")),
            Request::ListMembers(v1::ListMembers { conversation_id: target, ..Default::default() }),
            Request::Ack(v1::Ack { conversation_id: target, seq: 1 }),
        ] {
            match req(&x.client, r).await {
                Err(ClientError::Server(e)) if e.code() == ErrorCode::NotFound => {
                    ensure!(e.message == "no such conversation", "{e}");
                }
                other => bail!("expected NOT_FOUND, got {other:?}"),
            }
        }
    }
    Ok(())
}

/// §12.1: GetConversation shows the caller's role, the member count and the head; the peer of a
/// DIRECT conversation; a channel to anyone, with no role from outside.
pub(super) async fn get_conversation_shows_the_callers_view(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfgcA").await?;
    let b = account(&t, "cfgcB").await?;
    let x = account(&t, "cfgcX").await?;
    let conv = group(&a, &[b.id]).await?;
    let (mine, theirs) = (get(&a, conv).await?, get(&b, conv).await?);
    ensure!(mine.kind() == Kind::Group && mine.title == "conformance" && mine.member_count == 2, "{mine:?}");
    ensure!(mine.head_seq == 2 && mine.created_at_ms > 0, "created and members added: {mine:?}");
    ensure!(mine.my_role() == MemberRole::Owner && theirs.my_role() == MemberRole::Member, "{mine:?} / {theirs:?}");
    ensure!(theirs.conversation_id == conv && theirs.head_seq == mine.head_seq, "{theirs:?}");
    let dm = direct(&a, b.id).await?;
    ensure!(dm.kind() == Kind::Direct && dm.member_count == 2 && dm.peer_user_id == b.id, "{dm:?}");
    ensure!(get(&b, dm.conversation_id).await?.peer_user_id == a.id, "the peer as seen by the other side");
    let ch = channel(&a, "conformance channel").await?;
    let outside = get(&x, ch).await?;
    ensure!(outside.kind() == Kind::Channel && outside.my_role() == MemberRole::Unspecified, "{outside:?}");
    Ok(())
}

/// §12.2: one DIRECT conversation per pair, whoever opens it.
pub(super) async fn direct_conversation_is_unique_per_pair(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfdA").await?;
    let b = account(&t, "cfdB").await?;
    let (x, y) = (direct(&a, b.id).await?, direct(&b, a.id).await?);
    ensure!(x.conversation_id == y.conversation_id, "two DIRECT conversations for one pair");
    Ok(())
}

/// §12.2: titles and descriptions are checked, unknown users are NOT_FOUND, a channel starts with
/// its owner only; the log starts with ConversationCreated then MembersAdded, and every member's
/// user log gets AddedToConversation.
pub(super) async fn create_checks_fields_and_starts_the_log(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfcrA").await?;
    let b = account(&t, "cfcrB").await?;
    let c = account(&t, "cfcrC").await?;
    let make = async |kind: Kind, title: String, description: String, members: Vec<u64>| {
        call!(
            a.client,
            CreateConversation,
            v1::CreateConversation { kind: kind as i32, title, description, member_ids: members }
        )
    };
    for (title, description, field) in [
        (String::new(), String::new(), "create_conversation.title"),
        ("t".repeat(129), String::new(), "create_conversation.title"),
        ("ok".into(), "d".repeat(1025), "create_conversation.description"),
    ] {
        let e = expect_code(make(Kind::Group, title, description, vec![]).await, ErrorCode::InvalidArgument)?;
        ensure!(e.field == field, "{e:?}");
    }
    expect_code(make(Kind::Direct, String::new(), String::new(), vec![b.id, c.id]).await, ErrorCode::InvalidArgument)?;
    let e = expect_code(make(Kind::Group, "x".into(), String::new(), vec![u64::MAX >> 2]).await, ErrorCode::NotFound)?;
    ensure!(e.message == "no such user", "{e}");
    let ch = make(Kind::Channel, "é".repeat(128), "d".repeat(1024), vec![b.id]).await?;
    ensure!(ch.member_count == 1 && ch.my_role() == MemberRole::Owner && ch.head_seq == 1, "{ch:?}");
    let conv = group(&a, &[b.id, c.id]).await?;
    let log = log_of(&b, conv).await?;
    ensure!(log.len() == 2 && log[0].seq == 1 && log[1].seq == 2, "{log:?}");
    ensure!(log.iter().all(|e| e.actor_id == a.id && e.at_ms > 0), "{log:?}");
    match (&log[0].body, &log[1].body) {
        (Some(Body::Created(cr)), Some(Body::MembersAdded(m))) => {
            ensure!(cr.kind() == Kind::Group && cr.title == "conformance", "{cr:?}");
            let mut added = m.user_ids.clone();
            added.sort_unstable();
            let mut want = vec![b.id, c.id];
            want.sort_unstable();
            ensure!(added == want, "{m:?}");
        }
        other => bail!("expected ConversationCreated then MembersAdded, got {other:?}"),
    }
    for u in [&a, &b, &c] {
        let updates = call!(u.client, Sync, v1::Sync::default())?.user_updates;
        let added = updates
            .iter()
            .any(|x| matches!(&x.body, Some(user_update::Body::AddedToConversation(y)) if y.conversation_id == conv));
        ensure!(added, "no AddedToConversation for {}: {updates:?}", u.id);
    }
    Ok(())
}

/// §12.3: the caller's conversations, most recent activity first, in pages; with the last
/// message and the unread count; a made-up page token is INVALID_ARGUMENT.
pub(super) async fn list_conversations_pages_by_activity(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cflcA").await?;
    let b = new_account(&t, "cflcB").await?;
    let mut convs = Vec::new();
    for _ in 0..3 {
        convs.push(group(&a, &[b.id]).await?);
    }
    send(&a, convs[0], "lc1", "latest").await?;
    let list =
        async |page_token: String| call!(b.client, ListConversations, v1::ListConversations { page_token, limit: 2 });
    let first = list(String::new()).await?;
    ensure!(first.conversations.len() == 2 && !first.next_page_token.is_empty(), "{first:?}");
    let second = list(first.next_page_token.clone()).await?;
    ensure!(second.conversations.len() == 1 && second.next_page_token.is_empty(), "{second:?}");
    let all: Vec<_> = first.conversations.iter().chain(&second.conversations).collect();
    let mut ids: Vec<u64> = all.iter().map(|c| c.conversation_id).collect();
    ensure!(all.windows(2).all(|w| w[0].last_activity_ms >= w[1].last_activity_ms), "not by activity: {all:?}");
    ids.sort_unstable();
    ensure!(ids == convs, "pages {ids:?}, conversations {convs:?}");
    let busy = all.iter().find(|c| c.conversation_id == convs[0]).context("missing")?;
    ensure!(busy.last_message.as_ref().is_some_and(|m| m.text == "latest"), "{busy:?}");
    ensure!(busy.unread_count == 1 && busy.my_read_seq == 0, "{busy:?}");
    ensure!(get(&a, convs[0]).await?.unread_count == 0, "own messages count as unread");
    expect_code(list("not-a-server-token".into()).await, ErrorCode::InvalidArgument)?;
    Ok(())
}

/// §12.4: JoinChannel (MemberJoined, AddedToConversation; again changes nothing; not for groups)
/// and LeaveConversation (MemberLeft, RemovedFromConversation; not for DIRECT).
pub(super) async fn channels_are_joined_and_left(t: Target) -> anyhow::Result<()> {
    let mut a = account(&t, "cfjnA").await?;
    let mut b = account(&t, "cfjnB").await?;
    let ch = channel(&a, "conformance channel").await?;
    let joined = call!(b.client, JoinChannel, v1::JoinChannel { conversation_id: ch })?;
    ensure!(joined.my_role() == MemberRole::Member && joined.member_count == 2, "{joined:?}");
    let e = entry(&mut a.events, ch, |b| matches!(b, Body::MemberJoined(_))).await?;
    ensure!(matches!(e.body, Some(Body::MemberJoined(j)) if j.user_id == b.id) && e.actor_id == b.id, "{e:?}");
    user_entry(&mut b.events, |u| matches!(u, user_update::Body::AddedToConversation(x) if x.conversation_id == ch))
        .await?;
    let head = get(&a, ch).await?.head_seq;
    call!(b.client, JoinChannel, v1::JoinChannel { conversation_id: ch })?;
    ensure!(get(&a, ch).await?.head_seq == head, "joining again wrote an entry");
    let g = group(&a, &[]).await?;
    expect_code(call!(b.client, JoinChannel, v1::JoinChannel { conversation_id: g }), ErrorCode::NotFound)?;
    call!(b.client, LeaveConversation, v1::LeaveConversation { conversation_id: ch })?;
    let e = entry(&mut a.events, ch, |b| matches!(b, Body::MemberLeft(_))).await?;
    ensure!(matches!(e.body, Some(Body::MemberLeft(l)) if l.user_id == b.id) && e.seq == head + 1, "{e:?}");
    user_entry(
        &mut b.events,
        |u| matches!(u, user_update::Body::RemovedFromConversation(x) if x.conversation_id == ch),
    )
    .await?;
    expect_code(
        call!(b.client, GetHistory, v1::GetHistory { conversation_id: ch, ..Default::default() }),
        ErrorCode::NotFound,
    )
    .context("history after leaving")?;
    ensure!(get(&b, ch).await?.my_role() == MemberRole::Unspecified, "still a member after leaving");
    let dm = direct(&a, b.id).await?.conversation_id;
    let leave_dm = call!(a.client, LeaveConversation, v1::LeaveConversation { conversation_id: dm });
    expect_code(leave_dm, ErrorCode::FailedPrecondition)?;
    Ok(())
}

/// §12.4: an owner leaving hands ownership first (OwnershipTransferred, then MemberLeft) to the
/// highest role, then among equals to the lowest user id; the last member may leave.
pub(super) async fn owner_leaving_passes_ownership(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfolA").await?;
    let mut b = account(&t, "cfolB").await?;
    let c = account(&t, "cfolC").await?;
    let d = account(&t, "cfolD").await?;
    let conv = group(&a, &[b.id, c.id, d.id]).await?;
    call!(a.client, SetRole, v1::SetRole { conversation_id: conv, user_id: c.id, role: MemberRole::Admin as i32 })?;
    let leave = async |u: &Account| call!(u.client, LeaveConversation, v1::LeaveConversation { conversation_id: conv });
    leave(&a).await?;
    let moved = entry(&mut b.events, conv, |x| matches!(x, Body::OwnershipTransferred(_))).await?;
    let left = entry(&mut b.events, conv, |x| matches!(x, Body::MemberLeft(_))).await?;
    ensure!(
        matches!(moved.body, Some(Body::OwnershipTransferred(o)) if o.from_user_id == a.id && o.to_user_id == c.id),
        "ownership went elsewhere: {moved:?}"
    );
    ensure!(left.seq == moved.seq + 1 && matches!(left.body, Some(Body::MemberLeft(l)) if l.user_id == a.id));
    ensure!(role_of(&b, conv, c.id).await? == Some(MemberRole::Owner));
    leave(&c).await?;
    let moved = entry(&mut b.events, conv, |x| matches!(x, Body::OwnershipTransferred(_))).await?;
    let heir = b.id.min(d.id);
    ensure!(matches!(moved.body, Some(Body::OwnershipTransferred(o)) if o.to_user_id == heir), "{moved:?}");
    leave(&b).await?;
    leave(&d).await.context("the last member could not leave")?;
    Ok(())
}

/// §12.5: AddMembers (groups only; MembersAdded; current members skipped, then the head) and
/// RemoveMember (MemberRemoved; the removed user becomes a non-member); both reach user logs.
pub(super) async fn members_are_added_and_removed(t: Target) -> anyhow::Result<()> {
    let mut a = account(&t, "cfamA").await?;
    let mut b = account(&t, "cfamB").await?;
    let mut c = account(&t, "cfamC").await?;
    let conv = group(&a, &[]).await?;
    let add = async |users: Vec<u64>, conv: u64| {
        call!(a.client, AddMembers, v1::AddMembers { conversation_id: conv, user_ids: users })
    };
    let added = add(vec![b.id, c.id], conv).await?;
    let e = entry(&mut a.events, conv, |x| matches!(x, Body::MembersAdded(_))).await?;
    ensure!(e.seq == added.seq, "{e:?} / {added:?}");
    for u in [&mut b, &mut c] {
        let pick =
            |x: &user_update::Body| matches!(x, user_update::Body::AddedToConversation(y) if y.conversation_id == conv);
        user_entry(&mut u.events, pick).await?;
    }
    let again = add(vec![b.id], conv).await?;
    ensure!(again.seq == added.seq && get(&a, conv).await?.head_seq == added.seq, "nobody new, yet {again:?}");
    expect_code(add(vec![], conv).await, ErrorCode::InvalidArgument)?;
    expect_code(add(vec![u64::MAX >> 2], conv).await, ErrorCode::NotFound)?;
    let ch = channel(&a, "conformance channel").await?;
    expect_code(add(vec![b.id], ch).await, ErrorCode::FailedPrecondition)?;
    let removed = call!(a.client, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: c.id })?;
    let e = entry(&mut b.events, conv, |x| matches!(x, Body::MemberRemoved(_))).await?;
    ensure!(e.seq == removed.seq && matches!(e.body, Some(Body::MemberRemoved(r)) if r.user_id == c.id), "{e:?}");
    user_entry(
        &mut c.events,
        |x| matches!(x, user_update::Body::RemovedFromConversation(y) if y.conversation_id == conv),
    )
    .await?;
    let e = expect_code(get(&c, conv).await, ErrorCode::NotFound)?;
    ensure!(e.message == "no such conversation", "{e}");
    call!(b.client, JoinChannel, v1::JoinChannel { conversation_id: ch })?;
    call!(a.client, RemoveMember, v1::RemoveMember { conversation_id: ch, user_id: b.id })?;
    ensure!(get(&b, ch).await?.my_role() == MemberRole::Unspecified, "still in the channel");
    Ok(())
}

/// §12.6: members by ascending user id, in pages; members (and anyone, for a channel) may list.
pub(super) async fn list_members_pages(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cflmA").await?;
    let b = account(&t, "cflmB").await?;
    let c = account(&t, "cflmC").await?;
    let x = account(&t, "cflmX").await?;
    let conv = group(&a, &[b.id, c.id]).await?;
    let page = async |u: &Account, conv: u64, after: u64| {
        call!(u.client, ListMembers, v1::ListMembers { conversation_id: conv, after_user_id: after, limit: 2 })
    };
    let first = page(&b, conv, 0).await?;
    ensure!(first.members.len() == 2 && first.has_more, "{first:?}");
    let second = page(&b, conv, first.members[1].user_id).await?;
    ensure!(second.members.len() == 1 && !second.has_more, "{second:?}");
    let all: Vec<_> = first.members.iter().chain(&second.members).collect();
    let mut want = vec![a.id, b.id, c.id];
    want.sort_unstable();
    ensure!(all.iter().map(|m| m.user_id).collect::<Vec<_>>() == want, "{all:?}");
    for m in &all {
        let role = if m.user_id == a.id { MemberRole::Owner } else { MemberRole::Member };
        ensure!(m.role() == role && m.joined_at_ms > 0, "{m:?}");
    }
    expect_code(page(&x, conv, 0).await, ErrorCode::NotFound)?;
    let ch = channel(&a, "conformance channel").await?;
    let outside = page(&x, ch, 0).await?;
    ensure!(outside.members.len() == 1 && outside.members[0].user_id == a.id, "{outside:?}");
    Ok(())
}

/// §12.7: channels (only) whose title starts with the query, case-insensitively and without
/// wildcards, by ascending id in pages.
pub(super) async fn discover_channels_by_title_prefix(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfdcA").await?;
    let x = account(&t, "cfdcX").await?;
    let prefix = fresh_name("CfDisc_");
    let one = channel(&a, &format!("{prefix} one")).await?;
    let two = channel(&a, &format!("{prefix} two")).await?;
    call!(
        a.client,
        CreateConversation,
        v1::CreateConversation { kind: Kind::Group as i32, title: format!("{prefix} group"), ..Default::default() }
    )?;
    let find = async |query: String, after: u64, limit: u32| {
        call!(x.client, DiscoverChannels, v1::DiscoverChannels { query, after_conversation_id: after, limit })
    };
    let first = find(prefix.to_lowercase(), 0, 1).await?;
    ensure!(first.conversations.len() == 1 && first.has_more, "{first:?}");
    ensure!(first.conversations[0].conversation_id == one.min(two), "not by ascending id: {first:?}");
    ensure!(first.conversations[0].my_role() == MemberRole::Unspecified, "{first:?}");
    let rest = find(prefix.to_uppercase(), first.conversations[0].conversation_id, 1).await?;
    ensure!(rest.conversations.len() == 1 && !rest.has_more, "{rest:?}");
    ensure!(rest.conversations[0].conversation_id == one.max(two), "{rest:?}");
    let all = find(prefix.clone(), 0, 0).await?;
    ensure!(all.conversations.len() == 2 && !all.has_more, "the group was discovered: {all:?}");
    let wild = find(prefix.replace('_', "%"), 0, 0).await?;
    ensure!(wild.conversations.iter().all(|c| c.conversation_id != one && c.conversation_id != two), "{wild:?}");
    let wild = find(format!("_{}", &prefix[1..]), 0, 0).await?;
    ensure!(wild.conversations.iter().all(|c| c.conversation_id != one && c.conversation_id != two), "{wild:?}");
    Ok(())
}
