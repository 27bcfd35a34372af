//! Lifecycle consequences (docs/protocol.md §21): one test per store-side cell of the table —
//! deleted messages and their pins, reactions and mentions; mention counts; blocking and groups;
//! channel previews; ownership after account deletion and in ownerless channels; notifications of
//! removed members — on both transports and both stores.

use std::time::Duration;

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::harness::{TestFn, TestServer, Transport};
use confab_conformance::util::{PASSWORD, User, expect_code, group, new_user, next_conv_event, next_matching, send};
use confab_protocol::v1::{self, ErrorCode, MemberRole, NotificationKind, conversation_event::Body, event};

const TESTS: &[(&str, TestFn)] = confab_conformance::named_tests![
    deleted_message_leaves_pins,
    deleted_message_shows_no_reactions,
    deleted_message_drops_its_mentions,
    mention_count_resets_after_read,
    blocked_user_cannot_add_the_blocker_to_a_group,
    blocked_user_cannot_create_a_group_with_the_blocker,
    blocked_user_mentions_notify_nobody,
    channel_preview_hidden_from_non_members,
    owner_deleting_account_passes_ownership,
    joining_an_ownerless_channel_makes_an_owner,
    removed_member_notifications_are_read,
    a_deleted_peer_cannot_be_written_to,
];

confab_conformance::matrix_tests!(TESTS);

const WAIT: Duration = Duration::from_secs(5);

fn mention(conv: u64, id: &str, text: &str, users: &[u64]) -> v1::SendMessage {
    v1::SendMessage { mention_user_ids: users.to_vec(), ..send(conv, id, text) }
}

async fn get(u: &User, conv: u64) -> anyhow::Result<v1::Conversation> {
    Ok(call!(u.client, GetConversation, v1::GetConversation { conversation_id: conv })?)
}

/// The conversation as ListConversations shows it to `u`.
async fn listed(u: &User, conv: u64) -> anyhow::Result<Option<v1::Conversation>> {
    let r = call!(u.client, ListConversations, v1::ListConversations { page_token: String::new(), limit: 100 })?;
    Ok(r.conversations.into_iter().find(|c| c.conversation_id == conv))
}

async fn inbox(u: &User) -> anyhow::Result<v1::ListNotificationsResult> {
    Ok(call!(u.client, ListNotifications, v1::ListNotifications { before_id: 0, limit: 100, unread_only: false })?)
}

async fn members(u: &User, conv: u64) -> anyhow::Result<Vec<v1::Member>> {
    let r = call!(u.client, ListMembers, v1::ListMembers { conversation_id: conv, after_user_id: 0, limit: 500 })?;
    Ok(r.members)
}

async fn history(u: &User, conv: u64) -> anyhow::Result<Vec<v1::Message>> {
    let r = call!(u.client, GetHistory, v1::GetHistory { conversation_id: conv, limit: 200, ..Default::default() })?;
    Ok(r.messages)
}

/// `u`'s whole log of `conv`, through Sync.
async fn log(u: &User, conv: u64) -> anyhow::Result<Vec<v1::ConversationEvent>> {
    let r = call!(u.client, Sync, v1::Sync { limit_per_conversation: 1000, ..Default::default() })?;
    let d = r.conversations.into_iter().find(|d| d.conversation_id == conv).context("no diff")?;
    Ok(d.events)
}

/// The next live entry of `conv` whose body `pick` accepts.
async fn entry(u: &mut User, conv: u64, pick: impl Fn(&Body) -> bool) -> anyhow::Result<v1::ConversationEvent> {
    next_matching(&mut u.events, WAIT, |e| match e {
        event::Event::ConversationEvent(c) if c.conversation_id == conv && c.body.as_ref().is_some_and(&pick) => {
            Some(c.clone())
        }
        _ => None,
    })
    .await
}

/// §21, §13.3, §13.6: a deleted message leaves the pin list; the deletion is followed by
/// `MessageUnpinned` by the deleter, live and in the log; unpinning it again is NOT_FOUND.
async fn deleted_message_leaves_pins(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "lpA").await?;
    let mut b = new_user(s, t, "lpB").await?;
    let c = new_user(s, t, "lpC").await?;
    let conv = call!(a.client, CreateConversation, group("pins", &[b.id, c.id]))?.conversation_id;
    let moderator = MemberRole::Moderator as i32;
    call!(a.client, SetRole, v1::SetRole { conversation_id: conv, user_id: c.id, role: moderator })?;
    let gone = call!(b.client, SendMessage, send(conv, "lp1", "pin me, then delete me"))?;
    let kept = call!(b.client, SendMessage, send(conv, "lp2", "stay pinned"))?;
    for m in [&gone, &kept] {
        call!(c.client, PinMessage, v1::PinMessage { conversation_id: conv, message_id: m.message_id })?;
    }
    // The owner deletes another member's message that a moderator pinned.
    let d = call!(a.client, DeleteMessage, v1::DeleteMessage { conversation_id: conv, message_id: gone.message_id })?;
    let deleted = entry(&mut b, conv, |x| matches!(x, Body::MessageDeleted(_))).await?;
    ensure!(deleted.seq == d.seq && deleted.actor_id == a.id, "{deleted:?}");
    let unpinned = next_conv_event(&mut b.events).await?;
    ensure!(
        unpinned.seq == d.seq + 1
            && unpinned.actor_id == a.id
            && matches!(&unpinned.body, Some(Body::MessageUnpinned(u)) if u.message_id == gone.message_id),
        "expected MessageUnpinned by the deleter right after MessageDeleted: {unpinned:?}"
    );
    let pins = call!(b.client, ListPins, v1::ListPins { conversation_id: conv })?.messages;
    ensure!(pins.len() == 1 && pins[0].message_id == kept.message_id, "{pins:?}");
    let unpin = v1::UnpinMessage { conversation_id: conv, message_id: gone.message_id };
    expect_code(call!(c.client, UnpinMessage, unpin), ErrorCode::NotFound)?;
    let entries = log(&c, conv).await?;
    let tail: Vec<_> = entries.iter().filter(|e| e.seq >= d.seq).collect();
    ensure!(tail.len() == 2, "{tail:?}");
    ensure!(matches!(&tail[0].body, Some(Body::MessageDeleted(x)) if x.message_id == gone.message_id), "{tail:?}");
    ensure!(matches!(&tail[1].body, Some(Body::MessageUnpinned(x)) if x.message_id == gone.message_id), "{tail:?}");
    // Deleting a message that is not pinned writes no MessageUnpinned.
    let plain = call!(b.client, SendMessage, send(conv, "lp3", "never pinned"))?;
    let d2 = call!(b.client, DeleteMessage, v1::DeleteMessage { conversation_id: conv, message_id: plain.message_id })?;
    ensure!(get(&b, conv).await?.head_seq == d2.seq, "an unpinned message's deletion wrote more than one entry");
    Ok(())
}

/// §21, §13.5: a deleted message shows no reactions in GetHistory and takes no new ones; other
/// messages keep theirs.
async fn deleted_message_shows_no_reactions(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "lrA").await?;
    let b = new_user(s, t, "lrB").await?;
    let conv = call!(a.client, CreateConversation, group("reactions", &[b.id]))?.conversation_id;
    let gone = call!(a.client, SendMessage, send(conv, "lr1", "react, then vanish"))?;
    let kept = call!(a.client, SendMessage, send(conv, "lr2", "keep my reactions"))?;
    let react = |m: u64, e: &str| v1::React { conversation_id: conv, message_id: m, emoji: e.into() };
    call!(b.client, React, react(gone.message_id, "👍"))?;
    call!(a.client, React, react(gone.message_id, "👍"))?;
    call!(b.client, React, react(gone.message_id, ":tada:"))?;
    call!(b.client, React, react(kept.message_id, "👍"))?;
    call!(a.client, DeleteMessage, v1::DeleteMessage { conversation_id: conv, message_id: gone.message_id })?;
    for viewer in [&a, &b] {
        let h = history(viewer, conv).await?;
        let g = h.iter().find(|m| m.message_id == gone.message_id).context("the tombstone is missing")?;
        ensure!(g.deleted && g.text.is_empty() && g.reactions.is_empty(), "{g:?}");
        let k = h.iter().find(|m| m.message_id == kept.message_id).context("the other message is missing")?;
        ensure!(k.reactions.len() == 1 && k.reactions[0].emoji == "👍" && k.reactions[0].count == 1, "{k:?}");
    }
    expect_code(call!(b.client, React, react(gone.message_id, "👍")), ErrorCode::NotFound)?;
    // The log keeps the reaction entries as they were (a client drops them at MessageDeleted).
    let emojis: Vec<String> = log(&b, conv)
        .await?
        .into_iter()
        .filter_map(|e| match e.body {
            Some(Body::ReactionAdded(r)) if r.message_id == gone.message_id => Some(r.emoji),
            _ => None,
        })
        .collect();
    ensure!(emojis == ["👍", "👍", "🎉"], "the shortcode is stored as its emoji: {emojis:?}");
    Ok(())
}

/// §21, §19: the MENTIONED notifications of a deleted message leave the inbox and its count.
async fn deleted_message_drops_its_mentions(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "ldA").await?;
    let b = new_user(s, t, "ldB").await?;
    let conv = call!(a.client, CreateConversation, group("mentions", &[b.id]))?.conversation_id;
    let gone = call!(a.client, SendMessage, mention(conv, "ld1", "@b first", &[b.id]))?;
    let kept = call!(a.client, SendMessage, mention(conv, "ld2", "@b second", &[b.id]))?;
    let before = inbox(&b).await?;
    // ADDED_TO_CONVERSATION and two mentions.
    ensure!(before.unread_count == 3 && before.notifications.len() == 3, "{before:?}");
    ensure!(get(&b, conv).await?.unread_mention_count == 2);
    call!(a.client, DeleteMessage, v1::DeleteMessage { conversation_id: conv, message_id: gone.message_id })?;
    let after = inbox(&b).await?;
    ensure!(after.unread_count == 2 && after.notifications.len() == 2, "{after:?}");
    ensure!(after.notifications.iter().all(|n| n.message_id != gone.message_id), "{after:?}");
    ensure!(
        after.notifications.iter().any(|n| n.message_id == kept.message_id && n.kind() == NotificationKind::Mentioned),
        "{after:?}"
    );
    let c = get(&b, conv).await?;
    ensure!(c.unread_count == 1 && c.unread_mention_count == 1, "{c:?}");
    Ok(())
}

/// §21, §12.1, §15.1: mention counts count only mentions after the read marker; MarkRead reads the
/// MENTIONED notifications of the messages it covers, and only those.
async fn mention_count_resets_after_read(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "lmA").await?;
    let b = new_user(s, t, "lmB").await?;
    let conv = call!(a.client, CreateConversation, group("counts", &[b.id]))?.conversation_id;
    let first = call!(a.client, SendMessage, mention(conv, "lm1", "@b look", &[b.id]))?;
    let c = get(&b, conv).await?;
    ensure!(c.unread_count == 1 && c.unread_mention_count == 1, "{c:?}");
    ensure!(get(&a, conv).await?.unread_mention_count == 0, "the sender counts their own mention");
    call!(b.client, MarkRead, v1::MarkRead { conversation_id: conv, seq: first.seq })?;
    let c = get(&b, conv).await?;
    ensure!(c.unread_count == 0 && c.unread_mention_count == 0, "{c:?}");
    let n = inbox(&b).await?;
    let of = |n: &v1::ListNotificationsResult, m: u64| n.notifications.iter().find(|x| x.message_id == m).cloned();
    ensure!(of(&n, first.message_id).context("the mention is listed")?.read, "MarkRead left the mention unread");
    ensure!(n.unread_count == 1, "only ADDED_TO_CONVERSATION stays unread: {n:?}");
    let plain = call!(a.client, SendMessage, send(conv, "lm2", "no mention"))?;
    let second = call!(a.client, SendMessage, mention(conv, "lm3", "@b again", &[b.id]))?;
    let c = listed(&b, conv).await?.context("not listed")?;
    ensure!(c.unread_count == 2 && c.unread_mention_count == 1, "mentions before the marker still count: {c:?}");
    // Reading up to the plain message leaves the later mention unread.
    call!(b.client, MarkRead, v1::MarkRead { conversation_id: conv, seq: plain.seq })?;
    let c = listed(&b, conv).await?.context("not listed")?;
    ensure!(c.unread_count == 1 && c.unread_mention_count == 1, "{c:?}");
    let n = inbox(&b).await?;
    ensure!(!of(&n, second.message_id).context("the second mention is listed")?.read && n.unread_count == 2, "{n:?}");
    call!(b.client, MarkRead, v1::MarkRead { conversation_id: conv, seq: second.seq })?;
    ensure!(listed(&b, conv).await?.context("not listed")?.unread_mention_count == 0);
    ensure!(inbox(&b).await?.unread_count == 1);
    Ok(())
}

/// §21, §18, §12.5: a user blocked by A cannot add A to a group: NOT_FOUND "no such user", as for
/// an unknown user; nobody of the request is added; unblocking lifts it.
async fn blocked_user_cannot_add_the_blocker_to_a_group(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "baA").await?;
    let b = new_user(s, t, "baB").await?;
    let c = new_user(s, t, "baC").await?;
    let x = new_user(s, t, "baX").await?;
    call!(a.client, Block, v1::Block { user_id: b.id })?;
    let conv = call!(b.client, CreateConversation, group("adds", &[c.id]))?.conversation_id;
    let add = |users: Vec<u64>| v1::AddMembers { conversation_id: conv, user_ids: users };
    let blocked = expect_code(call!(b.client, AddMembers, add(vec![a.id])), ErrorCode::NotFound)?;
    let unknown = expect_code(call!(b.client, AddMembers, add(vec![999_999_999])), ErrorCode::NotFound)?;
    ensure!(blocked.message == unknown.message && blocked.message == "no such user", "{blocked} / {unknown}");
    expect_code(call!(b.client, AddMembers, add(vec![x.id, a.id])), ErrorCode::NotFound)?;
    let ids: Vec<u64> = members(&b, conv).await?.iter().map(|m| m.user_id).collect();
    ensure!(ids.len() == 2 && ids.contains(&b.id) && ids.contains(&c.id), "{ids:?}");
    ensure!(inbox(&a).await?.notifications.is_empty(), "the blocker was notified");
    ensure!(listed(&a, conv).await?.is_none(), "the blocker was added");
    // The blocker may still add the blocked user; unblocking lets B add A.
    let own = call!(a.client, CreateConversation, group("blocker adds", &[b.id]))?;
    ensure!(own.member_count == 2, "{own:?}");
    call!(a.client, Unblock, v1::Unblock { user_id: b.id })?;
    call!(b.client, AddMembers, add(vec![a.id]))?;
    ensure!(get(&a, conv).await?.my_role() == MemberRole::Member);
    Ok(())
}

/// §21, §18, §12.2: a user blocked by A cannot create a group with A in it; the answer is the one
/// for an unknown user, and nothing is created.
async fn blocked_user_cannot_create_a_group_with_the_blocker(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "bcA").await?;
    let b = new_user(s, t, "bcB").await?;
    let c = new_user(s, t, "bcC").await?;
    call!(a.client, Block, v1::Block { user_id: b.id })?;
    let blocked = expect_code(call!(b.client, CreateConversation, group("no", &[c.id, a.id])), ErrorCode::NotFound)?;
    let unknown =
        expect_code(call!(b.client, CreateConversation, group("no", &[c.id, 999_999_999])), ErrorCode::NotFound)?;
    ensure!(blocked.message == unknown.message && blocked.message == "no such user", "{blocked} / {unknown}");
    let r = call!(b.client, ListConversations, v1::ListConversations::default())?;
    ensure!(r.conversations.is_empty(), "a conversation was created: {r:?}");
    ensure!(inbox(&a).await?.notifications.is_empty() && inbox(&c).await?.notifications.is_empty());
    // Without the blocker the group is made.
    call!(b.client, CreateConversation, group("yes", &[c.id]))?;
    Ok(())
}

/// §21, §18, §19: in a shared group a blocked user's message reaches the blocker, but its mention
/// of the blocker notifies nothing and does not count; others it mentions are notified.
async fn blocked_user_mentions_notify_nobody(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "bmA").await?;
    let b = new_user(s, t, "bmB").await?;
    let c = new_user(s, t, "bmC").await?;
    let d = new_user(s, t, "bmD").await?;
    let conv = call!(c.client, CreateConversation, group("shared", &[a.id, b.id, d.id]))?.conversation_id;
    call!(a.client, Block, v1::Block { user_id: b.id })?;
    let from_b = call!(b.client, SendMessage, mention(conv, "bm1", "@a @d hello", &[a.id, d.id]))?;
    let posted = entry(&mut a, conv, |x| matches!(x, Body::MessagePosted(m) if m.sender_id == b.id)).await?;
    ensure!(posted.seq == from_b.seq, "the blocked user's message did not reach the blocker: {posted:?}");
    let from_c = call!(c.client, SendMessage, mention(conv, "bm2", "@a hello", &[a.id]))?;
    // The first mention the blocker hears of is C's.
    let n = next_matching(&mut a.events, WAIT, |e| match e {
        event::Event::Notification(n) if n.kind() == NotificationKind::Mentioned => Some(*n),
        _ => None,
    })
    .await?;
    ensure!(n.message_id == from_c.message_id && n.actor_id == c.id, "{n:?}");
    let mine = inbox(&a).await?;
    ensure!(mine.notifications.iter().all(|n| n.actor_id != b.id), "{mine:?}");
    let theirs = inbox(&d).await?;
    ensure!(
        theirs
            .notifications
            .iter()
            .any(|n| n.message_id == from_b.message_id && n.kind() == NotificationKind::Mentioned),
        "the blocked user's mention of someone else was lost: {theirs:?}"
    );
    let view = get(&a, conv).await?;
    ensure!(view.unread_count == 2 && view.unread_mention_count == 1, "{view:?}");
    ensure!(get(&d, conv).await?.unread_mention_count == 1);
    Ok(())
}

/// §21, §12.1, §12.7: a non-member of a channel sees no message content: no last_message, no
/// counts, in GetConversation and DiscoverChannels; joining shows it.
async fn channel_preview_hidden_from_non_members(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "cpA").await?;
    let x = new_user(s, t, "cpX").await?;
    let title = confab_conformance::util::unique("preview");
    let req = v1::CreateConversation {
        kind: v1::ConversationKind::Channel as i32,
        title: title.clone(),
        ..Default::default()
    };
    let ch = call!(a.client, CreateConversation, req)?.conversation_id;
    call!(a.client, SendMessage, mention(ch, "cp1", "members only @x", &[x.id]))?;
    let outside = get(&x, ch).await?;
    ensure!(outside.last_message.is_none(), "GetConversation leaks content: {outside:?}");
    ensure!(outside.unread_count == 0 && outside.unread_mention_count == 0, "{outside:?}");
    ensure!(outside.my_role() == MemberRole::Unspecified && outside.title == title, "{outside:?}");
    let inside = get(&a, ch).await?;
    ensure!(inside.last_message.as_ref().is_some_and(|m| m.text == "members only @x"), "{inside:?}");
    let discover = |u: &User| {
        let c = u.client.clone();
        let q = v1::DiscoverChannels { query: title.clone(), after_conversation_id: 0, limit: 10 };
        async move { call!(c, DiscoverChannels, q) }
    };
    let found = discover(&x).await?.conversations;
    ensure!(found.len() == 1 && found[0].conversation_id == ch, "{found:?}");
    ensure!(found[0].last_message.is_none() && found[0].unread_count == 0, "DiscoverChannels leaks content: {found:?}");
    let own = discover(&a).await?.conversations;
    ensure!(own.len() == 1 && own[0].last_message.is_some(), "members see the preview: {own:?}");
    expect_code(
        call!(x.client, GetHistory, v1::GetHistory { conversation_id: ch, ..Default::default() }),
        ErrorCode::NotFound,
    )?;
    let joined = call!(x.client, JoinChannel, v1::JoinChannel { conversation_id: ch })?;
    ensure!(joined.last_message.as_ref().is_some_and(|m| m.text == "members only @x"), "{joined:?}");
    Ok(())
}

/// §21, §11.11, §12.4: the owner deleting their account leaves every group and channel as
/// LeaveConversation does: ownership passes, the member count drops, the new owner adds members
/// and transfers ownership; DIRECT conversations keep the deleted user; its inbox is emptied.
async fn owner_deleting_account_passes_ownership(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "odA").await?;
    let mut b = new_user(s, t, "odB").await?;
    let c = new_user(s, t, "odC").await?;
    let e = new_user(s, t, "odE").await?;
    let g = call!(a.client, CreateConversation, group("owned", &[b.id, c.id]))?.conversation_id;
    call!(a.client, SetRole, v1::SetRole { conversation_id: g, user_id: c.id, role: MemberRole::Admin as i32 })?;
    let channel = v1::CreateConversation {
        kind: v1::ConversationKind::Channel as i32,
        title: confab_conformance::util::unique("owned"),
        ..Default::default()
    };
    let ch = call!(a.client, CreateConversation, channel)?.conversation_id;
    call!(b.client, JoinChannel, v1::JoinChannel { conversation_id: ch })?;
    let dm = call!(a.client, CreateConversation, confab_conformance::util::direct(b.id))?.conversation_id;
    call!(b.client, SendMessage, mention(g, "od1", "@a hi", &[a.id]))?;
    ensure!(inbox(&a).await?.unread_count == 1);
    call!(a.client, DeleteAccount, v1::DeleteAccount { password: PASSWORD.into() })?;
    // Live, in commit order: the ownership passes to the admin, then the owner leaves.
    let passed = entry(&mut b, g, |x| matches!(x, Body::OwnershipTransferred(_))).await?;
    ensure!(
        matches!(&passed.body, Some(Body::OwnershipTransferred(o)) if o.from_user_id == a.id && o.to_user_id == c.id),
        "{passed:?}"
    );
    let left = entry(&mut b, g, |x| matches!(x, Body::MemberLeft(_))).await?;
    ensure!(
        left.seq == passed.seq + 1 && matches!(&left.body, Some(Body::MemberLeft(m)) if m.user_id == a.id),
        "{left:?}"
    );
    let roles: Vec<(u64, MemberRole)> = members(&b, g).await?.iter().map(|m| (m.user_id, m.role())).collect();
    ensure!(roles.len() == 2 && roles.contains(&(c.id, MemberRole::Owner)), "{roles:?}");
    ensure!(get(&b, g).await?.member_count == 2);
    call!(c.client, AddMembers, v1::AddMembers { conversation_id: g, user_ids: vec![e.id] })?;
    ensure!(get(&e, g).await?.member_count == 3);
    call!(c.client, TransferOwnership, v1::TransferOwnership { conversation_id: g, user_id: b.id })?;
    ensure!(get(&b, g).await?.my_role() == MemberRole::Owner);
    // The channel's only other member owns it now.
    let view = get(&b, ch).await?;
    ensure!(view.my_role() == MemberRole::Owner && view.member_count == 1, "{view:?}");
    // The DIRECT conversation keeps the deleted peer.
    let direct = get(&b, dm).await?;
    ensure!(direct.member_count == 2 && direct.peer_user_id == a.id, "{direct:?}");
    ensure!(call!(b.client, GetUser, v1::GetUser { user_id: a.id })?.deleted);
    let (left_inbox, unread) =
        s.store().notifications(confab_server::store::UserId(a.id as i64), i64::MAX, 100, false).await?;
    ensure!(left_inbox.is_empty() && unread == 0, "the deleted user's inbox stays: {left_inbox:?}");
    Ok(())
}

/// §21, §12.4: the last member (the owner) leaves a channel; the next to join becomes OWNER
/// (`MemberJoined`, then `RoleChanged` to OWNER) and can update it; later joiners are members.
/// §28.1: that OWNER role is audited once, as an automatic role change by the joiner.
async fn joining_an_ownerless_channel_makes_an_owner(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "ocA").await?;
    let x = new_user(s, t, "ocX").await?;
    let y = new_user(s, t, "ocY").await?;
    let req = v1::CreateConversation {
        kind: v1::ConversationKind::Channel as i32,
        title: confab_conformance::util::unique("ownerless"),
        ..Default::default()
    };
    let ch = call!(a.client, CreateConversation, req)?.conversation_id;
    call!(a.client, LeaveConversation, v1::LeaveConversation { conversation_id: ch })?;
    ensure!(get(&x, ch).await?.member_count == 0);
    let before = s.store().audit_head().await?.seq;
    let joined = call!(x.client, JoinChannel, v1::JoinChannel { conversation_id: ch })?;
    ensure!(joined.my_role() == MemberRole::Owner && joined.member_count == 1, "{joined:?}");
    let entries = log(&x, ch).await?;
    let n = entries.len();
    ensure!(n >= 2, "{entries:?}");
    ensure!(
        matches!(&entries[n - 2].body, Some(Body::MemberJoined(j)) if j.user_id == x.id)
            && matches!(&entries[n - 1].body, Some(Body::RoleChanged(r))
                if r.user_id == x.id && r.role() == MemberRole::Owner)
            && entries[n - 1].actor_id == x.id,
        "{:?}",
        &entries[n - 2..]
    );
    let update = v1::UpdateConversation { conversation_id: ch, title: Some("revived".into()), ..Default::default() };
    ensure!(call!(x.client, UpdateConversation, update)?.title == "revived");
    let later = call!(y.client, JoinChannel, v1::JoinChannel { conversation_id: ch })?;
    ensure!(later.my_role() == MemberRole::Member && later.member_count == 2, "{later:?}");
    let owners = members(&y, ch).await?.iter().filter(|m| m.role() == MemberRole::Owner).count();
    ensure!(owners == 1, "{owners} owners");
    let audited: Vec<_> = s
        .store()
        .audit_after(before, 1000)
        .await?
        .into_iter()
        .map(|r| r.entry)
        .filter(|e| e.target_conversation.map(|c| c.0) == Some(ch as i64))
        .collect();
    ensure!(audited.len() == 1, "{audited:?}");
    let e = &audited[0];
    ensure!(e.action == confab_server::store::AuditAction::RoleChanged && e.target == "automatic", "{e:?}");
    let joiner = Some(confab_server::store::UserId(x.id as i64));
    ensure!(e.actor == joiner && e.target_user == joiner, "{e:?}");
    ensure!(e.before == r#"{"role":null}"# && e.after == r#"{"role":"owner"}"#, "{e:?}");
    Ok(())
}

/// §21, §12.5, §19: a removed member's (and a leaver's) notifications of that conversation are
/// read; their other notifications are untouched.
async fn removed_member_notifications_are_read(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "rnA").await?;
    let b = new_user(s, t, "rnB").await?;
    let g1 = call!(a.client, CreateConversation, group("removed", &[b.id]))?.conversation_id;
    let g2 = call!(a.client, CreateConversation, group("left", &[b.id]))?.conversation_id;
    call!(a.client, SendMessage, mention(g1, "rn1", "@b one", &[b.id]))?;
    call!(a.client, SendMessage, mention(g1, "rn2", "@b two", &[b.id]))?;
    call!(a.client, SetRole, v1::SetRole { conversation_id: g1, user_id: b.id, role: MemberRole::Moderator as i32 })?;
    call!(a.client, SendMessage, mention(g2, "rn3", "@b three", &[b.id]))?;
    ensure!(inbox(&b).await?.unread_count == 6, "2 added, 3 mentions, 1 role change");
    call!(a.client, RemoveMember, v1::RemoveMember { conversation_id: g1, user_id: b.id })?;
    let n = inbox(&b).await?;
    ensure!(n.unread_count == 2 && n.notifications.len() == 6, "{n:?}");
    ensure!(n.notifications.iter().all(|x| x.read == (x.conversation_id == g1)), "{n:?}");
    call!(b.client, LeaveConversation, v1::LeaveConversation { conversation_id: g2 })?;
    let n = inbox(&b).await?;
    ensure!(n.unread_count == 0 && n.notifications.iter().all(|x| x.read), "{n:?}");
    Ok(())
}

/// §21 account deleted × DIRECT conversations (§13.2): the conversation stays, with its history,
/// but nobody can write to a deleted account (the same refusal as a block).
async fn a_deleted_peer_cannot_be_written_to(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "lcA").await?;
    let b = new_user(s, t, "lcB").await?;
    let conv = call!(a.client, CreateConversation, confab_conformance::util::direct(b.id))?.conversation_id;
    call!(a.client, SendMessage, send(conv, "before", "hello"))?;
    call!(b.client, DeleteAccount, v1::DeleteAccount { password: PASSWORD.into() })?;
    expect_code(call!(a.client, SendMessage, send(conv, "after", "still there?")), ErrorCode::PermissionDenied)?;
    let h = history(&a, conv).await?;
    ensure!(h.len() == 1 && h[0].text == "hello", "{h:?}");
    Ok(())
}
