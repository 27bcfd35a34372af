//! Cases for the lifecycle consequences a client can observe (docs/protocol.md §21): what deleting
//! a message, reading, blocking, leaving, joining and deleting an account do to pins, reactions,
//! notifications, counts, membership, ownership and channel previews.

use anyhow::{Context, ensure};
use confab_protocol::v1::{self, ErrorCode, MemberRole, NotificationKind, conversation_event::Body, event};

use super::Target;
use super::common::*;

fn mention(conv: u64, id: &str, text: &str, users: &[u64]) -> v1::SendMessage {
    v1::SendMessage { mention_user_ids: users.to_vec(), ..message(conv, id, text) }
}

async fn inbox(a: &Account) -> anyhow::Result<v1::ListNotificationsResult> {
    Ok(call!(a.client, ListNotifications, v1::ListNotifications { before_id: 0, limit: 100, unread_only: false })?)
}

/// §21, §13.3: a deleted message leaves the pin list (`MessageUnpinned` by the deleter right after
/// `MessageDeleted`), shows no reactions, and its `MENTIONED` notification leaves the inbox.
pub(super) async fn deleting_a_message_clears_pin_reactions_and_mentions(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cflfdA").await?;
    let mut b = account(&t, "cflfdB").await?;
    let conv = group(&a, &[b.id]).await?;
    let m = call!(a.client, SendMessage, mention(conv, "d1", "@b pinned", &[b.id]))?;
    call!(a.client, PinMessage, v1::PinMessage { conversation_id: conv, message_id: m.message_id })?;
    call!(b.client, React, v1::React { conversation_id: conv, message_id: m.message_id, emoji: "👍".into() })?;
    let before = inbox(&b).await?;
    ensure!(before.notifications.iter().any(|n| n.message_id == m.message_id), "no mention to begin with");
    let d = call!(a.client, DeleteMessage, v1::DeleteMessage { conversation_id: conv, message_id: m.message_id })?;
    let deleted = entry(&mut b.events, conv, |x| matches!(x, Body::MessageDeleted(_))).await?;
    let unpinned = entry(&mut b.events, conv, |x| matches!(x, Body::MessageUnpinned(_))).await?;
    ensure!(deleted.seq == d.seq && unpinned.seq == d.seq + 1 && unpinned.actor_id == a.id, "{unpinned:?}");
    ensure!(call!(b.client, ListPins, v1::ListPins { conversation_id: conv })?.messages.is_empty(), "still pinned");
    let tomb = history(&b, conv).await?.into_iter().find(|x| x.message_id == m.message_id).context("tombstone")?;
    ensure!(tomb.deleted && tomb.reactions.is_empty() && !tomb.pinned, "{tomb:?}");
    let n = inbox(&b).await?;
    ensure!(n.notifications.iter().all(|x| x.message_id != m.message_id), "{n:?}");
    ensure!(
        n.unread_count + 1 == before.unread_count,
        "the count kept the mention: {} then {n:?}",
        before.unread_count
    );
    Ok(())
}

/// §21, §12.1, §15.1: `unread_mention_count` counts mentions after the read marker only; MarkRead
/// reads the mentions it passes.
pub(super) async fn mention_counts_start_at_the_read_marker(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cflfmA").await?;
    let b = account(&t, "cflfmB").await?;
    let conv = group(&a, &[b.id]).await?;
    let first = call!(a.client, SendMessage, mention(conv, "m1", "@b one", &[b.id]))?;
    ensure!(get(&b, conv).await?.unread_mention_count == 1);
    call!(b.client, MarkRead, v1::MarkRead { conversation_id: conv, seq: first.seq })?;
    let read = inbox(&b).await?;
    ensure!(read.notifications.iter().any(|n| n.message_id == first.message_id && n.read), "{read:?}");
    call!(a.client, SendMessage, mention(conv, "m2", "@b two", &[b.id]))?;
    let list = call!(b.client, ListConversations, v1::ListConversations::default())?;
    let c = list.conversations.iter().find(|c| c.conversation_id == conv).context("not listed")?;
    ensure!(c.unread_count == 1 && c.unread_mention_count == 1, "{c:?}");
    Ok(())
}

/// §21, §18: a blocked user can add the blocker neither to a new group nor to an existing one
/// (`NOT_FOUND` "no such user", as for an unknown user), and mentions the blocker without notifying.
pub(super) async fn blocked_users_cannot_add_or_notify_the_blocker(t: Target) -> anyhow::Result<()> {
    let a = new_account(&t, "cflfbA").await?;
    let b = account(&t, "cflfbB").await?;
    let c = account(&t, "cflfbC").await?;
    call!(a.client, Block, v1::Block { user_id: b.id })?;
    let create = |members: Vec<u64>| v1::CreateConversation {
        kind: v1::ConversationKind::Group as i32,
        title: "blocked".into(),
        member_ids: members,
        ..Default::default()
    };
    let e1 = expect_code(call!(b.client, CreateConversation, create(vec![a.id])), ErrorCode::NotFound)?;
    let e2 = expect_code(call!(b.client, CreateConversation, create(vec![u64::MAX >> 2])), ErrorCode::NotFound)?;
    ensure!(e1.message == e2.message, "{e1} / {e2}");
    let own = group(&b, &[c.id]).await?;
    let add = v1::AddMembers { conversation_id: own, user_ids: vec![a.id] };
    let e3 = expect_code(call!(b.client, AddMembers, add), ErrorCode::NotFound)?;
    ensure!(e3.message == e1.message, "{e3}");
    // In a group they share, B's mention reaches A as a message but not as a notification.
    let shared = group(&c, &[a.id, b.id]).await?;
    call!(b.client, SendMessage, mention(shared, "b1", "@a", &[a.id]))?;
    let n = inbox(&a).await?;
    ensure!(n.notifications.iter().all(|x| x.kind() != NotificationKind::Mentioned), "{n:?}");
    let view = get(&a, shared).await?;
    ensure!(view.unread_count == 1 && view.unread_mention_count == 0, "{view:?}");
    Ok(())
}

/// §21, §12.1, §12.7: a channel seen from outside shows no message content, in GetConversation as
/// in DiscoverChannels.
pub(super) async fn channels_show_outsiders_no_content(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cflfpA").await?;
    let x = account(&t, "cflfpX").await?;
    let title = fresh_name("cflfp");
    let ch = channel(&a, &title).await?;
    send(&a, ch, "p1", "for members").await?;
    let outside = get(&x, ch).await?;
    ensure!(outside.last_message.is_none() && outside.unread_count == 0, "{outside:?}");
    let q = v1::DiscoverChannels { query: title, after_conversation_id: 0, limit: 10 };
    let found = call!(x.client, DiscoverChannels, q)?.conversations;
    ensure!(found.len() == 1 && found[0].last_message.is_none(), "{found:?}");
    ensure!(get(&a, ch).await?.last_message.is_some(), "members see the last message");
    Ok(())
}

/// §21, §11.11: deleting the owner's account passes ownership and lowers the member count, so the
/// new owner can add members again; the DIRECT conversation keeps the deleted peer.
pub(super) async fn account_deletion_leaves_groups_and_channels(t: Target) -> anyhow::Result<()> {
    let a = new_account(&t, "cflfxA").await?;
    let mut b = account(&t, "cflfxB").await?;
    let c = account(&t, "cflfxC").await?;
    let conv = group(&a, &[b.id]).await?;
    let dm = direct(&a, b.id).await?.conversation_id;
    call!(a.client, DeleteAccount, v1::DeleteAccount { password: PASSWORD.into() })?;
    let left = entry(&mut b.events, conv, |x| matches!(x, Body::MemberLeft(_))).await?;
    ensure!(matches!(&left.body, Some(Body::MemberLeft(l)) if l.user_id == a.id), "{left:?}");
    let view = get(&b, conv).await?;
    ensure!(view.my_role() == MemberRole::Owner && view.member_count == 1, "{view:?}");
    call!(b.client, AddMembers, v1::AddMembers { conversation_id: conv, user_ids: vec![c.id] })?;
    ensure!(role_of(&b, conv, c.id).await? == Some(MemberRole::Member));
    let direct = get(&b, dm).await?;
    ensure!(direct.member_count == 2 && direct.peer_user_id == a.id, "{direct:?}");
    Ok(())
}

/// §21, §12.4: whoever joins a channel its last member left becomes its OWNER.
pub(super) async fn an_ownerless_channel_is_owned_by_its_next_joiner(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cflfoA").await?;
    let mut x = account(&t, "cflfoX").await?;
    let ch = channel(&a, &fresh_name("cflfo")).await?;
    call!(a.client, LeaveConversation, v1::LeaveConversation { conversation_id: ch })?;
    let joined = call!(x.client, JoinChannel, v1::JoinChannel { conversation_id: ch })?;
    ensure!(joined.my_role() == MemberRole::Owner && joined.member_count == 1, "{joined:?}");
    let role = next(&mut x.events, |e| match e {
        event::Event::ConversationEvent(c) if c.conversation_id == ch => match c.body {
            Some(Body::RoleChanged(r)) => Some(r),
            _ => None,
        },
        _ => None,
    })
    .await?;
    ensure!(role.user_id == x.id && role.role() == MemberRole::Owner, "{role:?}");
    let update = v1::UpdateConversation { conversation_id: ch, title: Some(fresh_name("cflfo")), ..Default::default() };
    call!(x.client, UpdateConversation, update)?;
    Ok(())
}

/// §21, §19: leaving a conversation, or being removed from it, marks its notifications read.
pub(super) async fn leaving_reads_the_conversations_notifications(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cflfnA").await?;
    let b = new_account(&t, "cflfnB").await?;
    let left = group(&a, &[b.id]).await?;
    let removed = group(&a, &[b.id]).await?;
    for (conv, id) in [(left, "n1"), (removed, "n2")] {
        call!(a.client, SendMessage, mention(conv, id, "@b", &[b.id]))?;
    }
    ensure!(inbox(&b).await?.unread_count == 4, "two added, two mentioned");
    call!(b.client, LeaveConversation, v1::LeaveConversation { conversation_id: left })?;
    call!(a.client, RemoveMember, v1::RemoveMember { conversation_id: removed, user_id: b.id })?;
    let n = inbox(&b).await?;
    ensure!(n.unread_count == 0 && n.notifications.len() == 4 && n.notifications.iter().all(|x| x.read), "{n:?}");
    Ok(())
}
