//! The cells of docs/protocol.md §21 that lifecycle.rs, call_lifecycle.rs and
//! social_lifecycle.rs do not cover: what a deletion does to the counts and the preview, what an
//! edit keeps, what a removal takes away from the removed member, that a revoked session's call
//! ends at once, and that a block leaves group calls alone — on both transports and both stores.

use std::time::Duration;

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::harness::{TestFn, TestServer, Transport};
use confab_conformance::util::{User, expect_code, group, new_user, next_matching, second_device, send};
use confab_protocol::v1::{self, CallMedia, ErrorCode, HangupReason, NotificationKind, event};

const TESTS: &[(&str, TestFn)] = confab_conformance::named_tests![
    a_deleted_message_leaves_the_counts_and_the_preview,
    an_edited_message_keeps_its_pin_reactions_and_mentions,
    a_removed_member_loses_the_conversation_but_its_content_stays,
    a_revoked_session_ends_its_call_at_once,
    a_block_leaves_group_calls_alone,
];

confab_conformance::matrix_tests!(TESTS, |c| c.calls.reconnect_grace = Duration::from_secs(30));

const WAIT: Duration = Duration::from_secs(5);

fn mention(conv: u64, id: &str, text: &str, users: &[u64]) -> v1::SendMessage {
    v1::SendMessage { mention_user_ids: users.to_vec(), ..send(conv, id, text) }
}

async fn get(u: &User, conv: u64) -> anyhow::Result<v1::Conversation> {
    Ok(call!(u.client, GetConversation, v1::GetConversation { conversation_id: conv })?)
}

async fn unread_mentions(u: &User) -> anyhow::Result<usize> {
    let r = call!(u.client, ListNotifications, v1::ListNotifications { before_id: 0, limit: 100, unread_only: true })?;
    Ok(r.notifications.iter().filter(|n| n.kind() == NotificationKind::Mentioned).count())
}

/// §21 message deleted × unread and mention counts, × channel previews: the deleted message
/// counts in neither `unread_count` nor `unread_mention_count`, and members see its tombstone as
/// `last_message`.
async fn a_deleted_message_leaves_the_counts_and_the_preview(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "lcA").await?;
    let b = new_user(s, t, "lcB").await?;
    let conv = call!(a.client, CreateConversation, group("counts", &[b.id]))?.conversation_id;
    call!(a.client, SendMessage, send(conv, "m1", "plain"))?;
    let m2 = call!(a.client, SendMessage, mention(conv, "m2", "hey", &[b.id]))?;
    let before = get(&b, conv).await?;
    ensure!(before.unread_count == 2 && before.unread_mention_count == 1, "{before:?}");
    call!(a.client, DeleteMessage, v1::DeleteMessage { conversation_id: conv, message_id: m2.message_id })?;
    let after = get(&b, conv).await?;
    ensure!(after.unread_count == 1 && after.unread_mention_count == 0, "{after:?}");
    let last = after.last_message.context("a member sees the newest message")?;
    ensure!(last.message_id == m2.message_id && last.deleted && last.text.is_empty(), "{last:?}");
    Ok(())
}

/// §21 message edited × pins, reactions, notifications, counts, previews: the edit keeps the
/// pin (with the new text), the reactions and the mention notification; counts do not move; the
/// preview shows the new text.
async fn an_edited_message_keeps_its_pin_reactions_and_mentions(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "lcA").await?;
    let b = new_user(s, t, "lcB").await?;
    let conv = call!(a.client, CreateConversation, group("edits", &[b.id]))?.conversation_id;
    let m = call!(a.client, SendMessage, mention(conv, "m1", "first", &[b.id]))?;
    call!(a.client, PinMessage, v1::PinMessage { conversation_id: conv, message_id: m.message_id })?;
    call!(b.client, React, v1::React { conversation_id: conv, message_id: m.message_id, emoji: "👍".into() })?;
    let before = get(&b, conv).await?;
    call!(
        a.client,
        EditMessage,
        v1::EditMessage { conversation_id: conv, message_id: m.message_id, text: "second".into() }
    )?;
    let pins = call!(b.client, ListPins, v1::ListPins { conversation_id: conv })?.messages;
    ensure!(pins.len() == 1 && pins[0].text == "second", "{pins:?}");
    let h = call!(b.client, GetHistory, v1::GetHistory { conversation_id: conv, limit: 50, ..Default::default() })?;
    let msg = h.messages.iter().find(|x| x.message_id == m.message_id).context("message")?;
    ensure!(msg.reactions.len() == 1 && msg.reactions[0].count == 1 && msg.pinned, "{msg:?}");
    ensure!(unread_mentions(&b).await? == 1, "the mention notification stays");
    let after = get(&b, conv).await?;
    ensure!(
        after.unread_count == before.unread_count && after.unread_mention_count == before.unread_mention_count,
        "{before:?} → {after:?}"
    );
    ensure!(after.last_message.context("preview")?.text == "second");
    Ok(())
}

/// §21 member removed × unread counts, receipts, channel previews, pins and reactions: the
/// conversation leaves the removed member's list and GetConversation is NOT_FOUND; their receipts
/// leave GetReceipts; their messages, pins and reactions stay for the others.
async fn a_removed_member_loses_the_conversation_but_its_content_stays(
    s: &TestServer,
    t: Transport,
) -> anyhow::Result<()> {
    let a = new_user(s, t, "lcA").await?;
    let b = new_user(s, t, "lcB").await?;
    let c = new_user(s, t, "lcC").await?;
    let conv = call!(a.client, CreateConversation, group("removal", &[b.id, c.id]))?.conversation_id;
    let ma = call!(a.client, SendMessage, send(conv, "a1", "from a"))?;
    let m = call!(b.client, SendMessage, send(conv, "b1", "from b"))?;
    call!(a.client, PinMessage, v1::PinMessage { conversation_id: conv, message_id: m.message_id })?;
    call!(b.client, React, v1::React { conversation_id: conv, message_id: m.message_id, emoji: "🎉".into() })?;
    call!(b.client, MarkRead, v1::MarkRead { conversation_id: conv, seq: m.seq })?;
    let receipts = v1::GetReceipts { conversation_id: conv, message_id: ma.message_id };
    let r = call!(a.client, GetReceipts, receipts)?;
    ensure!(r.receipts.iter().any(|x| x.user_id == b.id), "B's receipt is there first: {r:?}");
    call!(a.client, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: b.id })?;
    expect_code(call!(b.client, GetConversation, v1::GetConversation { conversation_id: conv }), ErrorCode::NotFound)?;
    let list = call!(b.client, ListConversations, v1::ListConversations { page_token: String::new(), limit: 100 })?;
    ensure!(list.conversations.iter().all(|x| x.conversation_id != conv), "still listed for the removed member");
    let r = call!(a.client, GetReceipts, receipts)?;
    ensure!(r.receipts.iter().all(|x| x.user_id != b.id), "the removed member's receipt stayed: {r:?}");
    let h = call!(c.client, GetHistory, v1::GetHistory { conversation_id: conv, limit: 50, ..Default::default() })?;
    let msg = h.messages.iter().find(|x| x.message_id == m.message_id).context("their message stays")?;
    ensure!(msg.pinned && msg.reactions.len() == 1, "{msg:?}");
    Ok(())
}

/// §21 session revoked × ringing calls: an answered call of a revoked device ends at once with
/// CONNECTION_LOST, without the reconnect grace (30 s here).
async fn a_revoked_session_ends_its_call_at_once(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "lcA").await?;
    let b = new_user(s, t, "lcB").await?;
    let mut b2 = second_device(s, t, &b).await?;
    let conv = call!(a.client, CreateConversation, confab_conformance::util::direct(b.id))?.conversation_id;
    let started = call!(a.client, StartCall, v1::StartCall { conversation_id: conv, media: CallMedia::Audio as i32 })?;
    next_matching(&mut b2.events, WAIT, |e| match e {
        event::Event::CallInvite(i) if i.call_id == started.call_id => Some(()),
        _ => None,
    })
    .await?;
    call!(b2.client, AcceptCall, v1::AcceptCall { call_id: started.call_id.clone() })?;
    call!(b.client, RevokeSession, v1::RevokeSession { session_id: b2.auth.session_id.clone() })?;
    let e = next_matching(&mut a.events, WAIT, |e| match e {
        event::Event::CallEnded(x) if x.call_id == started.call_id => Some(x.clone()),
        _ => None,
    })
    .await?;
    ensure!(e.reason == HangupReason::ConnectionLost as i32, "{e:?}");
    Ok(())
}

/// §21 user blocked × group calls: unchanged — both still join the shared group's call.
async fn a_block_leaves_group_calls_alone(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "lcA").await?;
    let b = new_user(s, t, "lcB").await?;
    let conv = call!(a.client, CreateConversation, group("room", &[b.id]))?.conversation_id;
    call!(a.client, Block, v1::Block { user_id: b.id })?;
    call!(a.client, JoinCall, v1::JoinCall { room_id: Default::default(), conversation_id: conv })?;
    let joined = call!(b.client, JoinCall, v1::JoinCall { room_id: Default::default(), conversation_id: conv })?;
    ensure!(joined.participants.len() == 1, "the blocked member sees the blocker in the call: {joined:?}");
    Ok(())
}
