//! Conversations and messages (docs/protocol.md §12-§14) on both transports and both stores:
//! every request, authorization, pagination edges, idempotent retry, live delivery, sync.

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::harness::{TestFn, TestServer, Transport};
use confab_conformance::util::{expect_code, group, msg_key, new_user, next_conv_event, second_device, send};
use confab_protocol::v1::{self, ErrorCode, conversation_event::Body};

const TESTS: &[(&str, TestFn)] = confab_conformance::named_tests![
    direct_is_unique_per_pair,
    group_membership_is_owner_managed,
    channels_are_joined_left_and_discovered,
    send_edit_delete_and_history,
    history_pagination_edges,
    idempotent_send_retry,
    non_members_learn_nothing,
    live_events_reach_every_device,
    list_conversations_sorted_and_paginated,
    sync_returns_what_was_missed,
    sync_truncates_with_has_more,
    sync_with_another_epoch_requires_resync,
    ack_moves_forward,
    invalid_content_is_refused,
    reactions_counted_per_emoji,
    pins_listed_and_logged,
    settings_roles_and_ownership,
];

confab_conformance::matrix_tests!(TESTS);

/// §12.2: DIRECT has exactly two users, one conversation per pair, whoever creates it.
async fn direct_is_unique_per_pair(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "dA").await?;
    let b = new_user(s, t, "dB").await?;
    let dm = |peer: u64| v1::CreateConversation {
        kind: v1::ConversationKind::Direct as i32,
        member_ids: vec![peer],
        ..Default::default()
    };
    let c1 = call!(a.client, CreateConversation, dm(b.id))?;
    ensure!(
        c1.kind == v1::ConversationKind::Direct as i32 && c1.member_count == 2 && c1.peer_user_id == b.id,
        "{c1:?}"
    );
    let c2 = call!(b.client, CreateConversation, dm(a.id))?;
    ensure!(c2.conversation_id == c1.conversation_id, "a second DIRECT for the same pair");
    ensure!(c2.peer_user_id == a.id);
    let mut three = dm(b.id);
    three.member_ids.push(a.id + 1_000_000);
    expect_code(call!(a.client, CreateConversation, three), ErrorCode::NotFound)?;
    let c = new_user(s, t, "dC").await?;
    let mut two_others = dm(b.id);
    two_others.member_ids.push(c.id);
    expect_code(call!(a.client, CreateConversation, two_others), ErrorCode::InvalidArgument)?;
    expect_code(call!(a.client, CreateConversation, dm(999_999_999)), ErrorCode::NotFound)?;
    // A direct conversation cannot be left.
    let leave = v1::LeaveConversation { conversation_id: c1.conversation_id };
    expect_code(call!(a.client, LeaveConversation, leave), ErrorCode::FailedPrecondition)?;
    Ok(())
}

/// §12.5, §12.6: groups are private; owners and admins add and remove members.
async fn group_membership_is_owner_managed(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let owner = new_user(s, t, "gO").await?;
    let m1 = new_user(s, t, "gM").await?;
    let m2 = new_user(s, t, "gN").await?;
    let g = call!(owner.client, CreateConversation, group("Team", &[m1.id]))?;
    ensure!(g.member_count == 2 && g.my_role == v1::MemberRole::Owner as i32 && g.head_seq == 2, "{g:?}");
    let conv = g.conversation_id;
    expect_code(
        call!(m1.client, AddMembers, v1::AddMembers { conversation_id: conv, user_ids: vec![m2.id] }),
        ErrorCode::PermissionDenied,
    )?;
    let r = call!(owner.client, AddMembers, v1::AddMembers { conversation_id: conv, user_ids: vec![m2.id, m1.id] })?;
    ensure!(r.seq == 3, "{r:?}");
    let members = call!(m2.client, ListMembers, v1::ListMembers { conversation_id: conv, ..Default::default() })?;
    ensure!(members.members.len() == 3 && !members.has_more, "{members:?}");
    let page = call!(m2.client, ListMembers, v1::ListMembers { conversation_id: conv, after_user_id: 0, limit: 2 })?;
    ensure!(page.members.len() == 2 && page.has_more, "{page:?}");
    let rest = call!(
        m2.client,
        ListMembers,
        v1::ListMembers { conversation_id: conv, after_user_id: page.members[1].user_id, limit: 2 }
    )?;
    ensure!(rest.members.len() == 1 && !rest.has_more, "{rest:?}");
    expect_code(
        call!(m1.client, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: m2.id }),
        ErrorCode::PermissionDenied,
    )?;
    call!(owner.client, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: m2.id })?;
    // A removed member learns nothing more: NOT_FOUND, like a missing conversation.
    expect_code(call!(m2.client, GetConversation, v1::GetConversation { conversation_id: conv }), ErrorCode::NotFound)?;
    expect_code(call!(m2.client, SendMessage, send(conv, "x", "hi")), ErrorCode::NotFound)?;
    expect_code(
        call!(m2.client, GetHistory, v1::GetHistory { conversation_id: conv, ..Default::default() }),
        ErrorCode::NotFound,
    )?;
    // A member leaves; when the owner leaves, ownership passes to the remaining member (§12.4).
    call!(m1.client, LeaveConversation, v1::LeaveConversation { conversation_id: conv })?;
    let g = call!(owner.client, GetConversation, v1::GetConversation { conversation_id: conv })?;
    ensure!(g.member_count == 1, "{g:?}");
    call!(owner.client, AddMembers, v1::AddMembers { conversation_id: conv, user_ids: vec![m1.id] })?;
    call!(owner.client, LeaveConversation, v1::LeaveConversation { conversation_id: conv })?;
    let g = call!(m1.client, GetConversation, v1::GetConversation { conversation_id: conv })?;
    ensure!(g.my_role == v1::MemberRole::Owner as i32 && g.member_count == 1, "ownership did not pass: {g:?}");
    Ok(())
}

/// §12.4, §12.7
async fn channels_are_joined_left_and_discovered(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let owner = new_user(s, t, "cO").await?;
    let reader = new_user(s, t, "cR").await?;
    let tag = confab_conformance::util::unique("chan");
    let mut create = group(&format!("{tag} Rust Lovers"), &[]);
    create.kind = v1::ConversationKind::Channel as i32;
    let ch = call!(owner.client, CreateConversation, create)?;
    let conv = ch.conversation_id;
    let found = call!(
        reader.client,
        DiscoverChannels,
        v1::DiscoverChannels { query: tag.to_uppercase(), ..Default::default() }
    )?;
    ensure!(found.conversations.iter().any(|c| c.conversation_id == conv && c.my_role == 0), "{found:?}");
    let none = call!(
        reader.client,
        DiscoverChannels,
        v1::DiscoverChannels { query: format!("{tag}%_"), ..Default::default() }
    )?;
    ensure!(none.conversations.is_empty(), "LIKE wildcards must be literal: {none:?}");
    // Seen from outside a channel is visible, but its history is for members.
    expect_code(
        call!(reader.client, GetHistory, v1::GetHistory { conversation_id: conv, ..Default::default() }),
        ErrorCode::NotFound,
    )?;
    let joined = call!(reader.client, JoinChannel, v1::JoinChannel { conversation_id: conv })?;
    ensure!(joined.member_count == 2 && joined.my_role == v1::MemberRole::Member as i32, "{joined:?}");
    let again = call!(reader.client, JoinChannel, v1::JoinChannel { conversation_id: conv })?;
    ensure!(again.head_seq == joined.head_seq, "joining twice wrote an event");
    call!(reader.client, SendMessage, send(conv, "c1", "hello channel"))?;
    call!(reader.client, LeaveConversation, v1::LeaveConversation { conversation_id: conv })?;
    expect_code(call!(reader.client, SendMessage, send(conv, "c2", "gone")), ErrorCode::NotFound)?;
    // A group cannot be joined: NOT_FOUND, as if it did not exist.
    let g = call!(owner.client, CreateConversation, group("secret", &[]))?;
    expect_code(
        call!(reader.client, JoinChannel, v1::JoinChannel { conversation_id: g.conversation_id }),
        ErrorCode::NotFound,
    )?;
    Ok(())
}

/// §13.2-§13.4: the log records every change; history shows current state.
async fn send_edit_delete_and_history(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "mA").await?;
    let b = new_user(s, t, "mB").await?;
    let conv = call!(a.client, CreateConversation, group("msgs", &[b.id]))?.conversation_id;
    let m1 = call!(a.client, SendMessage, send(conv, "m1", "first"))?;
    let mut reply = send(conv, "m2", "reply @b");
    reply.reply_to_message_id = m1.message_id;
    reply.mention_user_ids = vec![b.id];
    let m2 = call!(b.client, SendMessage, reply)?;
    ensure!(m2.seq == m1.seq + 1, "gapless: {} then {}", m1.seq, m2.seq);
    let edit = |id, text: &str| v1::EditMessage { conversation_id: conv, message_id: id, text: text.into() };
    expect_code(call!(b.client, EditMessage, edit(m1.message_id, "hacked")), ErrorCode::PermissionDenied)?;
    let e = call!(a.client, EditMessage, edit(m1.message_id, "first, edited"))?;
    ensure!(e.seq == m2.seq + 1);
    let del = |id| v1::DeleteMessage { conversation_id: conv, message_id: id };
    // A member cannot delete the owner's message (moderation is for moderators and above, §12.8).
    expect_code(call!(b.client, DeleteMessage, del(m1.message_id)), ErrorCode::PermissionDenied)?;
    let d = call!(b.client, DeleteMessage, del(m2.message_id))?;
    ensure!(d.seq == e.seq + 1);
    expect_code(call!(b.client, EditMessage, edit(m2.message_id, "undelete")), ErrorCode::NotFound)?;
    expect_code(call!(b.client, DeleteMessage, del(m2.message_id)), ErrorCode::NotFound)?;
    let h = call!(b.client, GetHistory, v1::GetHistory { conversation_id: conv, ..Default::default() })?;
    ensure!(h.messages.len() == 2 && !h.has_more, "{h:?}");
    let (first, second) = (&h.messages[0], &h.messages[1]);
    ensure!(
        first.text == "first, edited"
            && first.edited_at_ms > 0
            && first.seq == m1.seq
            && first.client_msg_id.is_empty(),
        "{first:?}"
    );
    ensure!(second.deleted && second.text.is_empty() && second.reply_to_message_id == m1.message_id, "{second:?}");
    ensure!(second.client_msg_id == msg_key("m2"), "the sender sees its own client_msg_id");
    let bad_reply = v1::SendMessage { reply_to_message_id: 987_654_321, ..send(conv, "m3", "x") };
    let err = expect_code(call!(a.client, SendMessage, bad_reply), ErrorCode::InvalidArgument)?;
    ensure!(err.field == "send_message.reply_to_message_id", "{err}");
    Ok(())
}

/// §13.4: before/after, limits, has_more at both ends.
async fn history_pagination_edges(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "hA").await?;
    let conv = call!(a.client, CreateConversation, group("pages", &[]))?.conversation_id;
    let mut seqs = Vec::new();
    for i in 0..7 {
        seqs.push(call!(a.client, SendMessage, send(conv, &format!("p{i}"), &format!("message {i}")))?.seq);
    }
    let h =
        |before, after, limit| v1::GetHistory { conversation_id: conv, before_seq: before, after_seq: after, limit };
    let latest = call!(a.client, GetHistory, h(0, 0, 3))?;
    ensure!(latest.has_more && latest.messages.iter().map(|m| m.seq).collect::<Vec<_>>() == seqs[4..], "{latest:?}");
    let older = call!(a.client, GetHistory, h(latest.messages[0].seq, 0, 3))?;
    ensure!(older.has_more && older.messages.iter().map(|m| m.seq).collect::<Vec<_>>() == seqs[1..4]);
    let oldest = call!(a.client, GetHistory, h(older.messages[0].seq, 0, 3))?;
    ensure!(!oldest.has_more && oldest.messages.len() == 1 && oldest.messages[0].seq == seqs[0]);
    let fwd = call!(a.client, GetHistory, h(0, seqs[1], 4))?;
    ensure!(fwd.has_more && fwd.messages.iter().map(|m| m.seq).collect::<Vec<_>>() == seqs[2..6]);
    let tail = call!(a.client, GetHistory, h(0, seqs[5], 4))?;
    ensure!(!tail.has_more && tail.messages.len() == 1);
    let past_head = call!(a.client, GetHistory, h(0, seqs[6], 4))?;
    ensure!(past_head.messages.is_empty() && !past_head.has_more);
    let exact = call!(a.client, GetHistory, h(0, 0, 7))?;
    ensure!(exact.messages.len() == 7 && !exact.has_more, "a full last page has no more");
    expect_code(call!(a.client, GetHistory, h(0, 0, 201)), ErrorCode::InvalidArgument)?;
    expect_code(call!(a.client, GetHistory, h(5, 2, 10)), ErrorCode::InvalidArgument)?;
    Ok(())
}

/// §13.2: a retry with the same client_msg_id returns the original; nothing is stored twice.
async fn idempotent_send_retry(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "iA").await?;
    let conv = call!(a.client, CreateConversation, group("idem", &[]))?.conversation_id;
    let first = call!(a.client, SendMessage, send(conv, "retry-me", "once"))?;
    ensure!(!first.duplicate);
    let again = call!(a.client, SendMessage, send(conv, "retry-me", "once"))?;
    ensure!(again.duplicate && again.message_id == first.message_id && again.seq == first.seq, "{again:?}");
    // Concurrent retries too.
    let (x, y) = tokio::join!(async { call!(a.client, SendMessage, send(conv, "race", "r")) }, async {
        call!(a.client, SendMessage, send(conv, "race", "r"))
    });
    let (x, y) = (x?, y?);
    ensure!(x.message_id == y.message_id && x.duplicate != y.duplicate, "{x:?} {y:?}");
    let h = call!(a.client, GetHistory, v1::GetHistory { conversation_id: conv, ..Default::default() })?;
    ensure!(h.messages.len() == 2, "{h:?}");
    // The key is the sender's, whatever the session (§13.2): a retry from another device, or
    // after signing in again, is the same message.
    let other = second_device(s, t, &a).await?;
    let o = call!(other.client, SendMessage, send(conv, "retry-me", "other device"))?;
    ensure!(o.duplicate && o.message_id == first.message_id, "{o:?}");
    Ok(())
}

/// §12.1: non-members get NOT_FOUND, the same as for a conversation that does not exist.
async fn non_members_learn_nothing(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "nA").await?;
    let x = new_user(s, t, "nX").await?;
    let conv = call!(a.client, CreateConversation, group("private", &[]))?.conversation_id;
    let m = call!(a.client, SendMessage, send(conv, "n1", "secret"))?;
    let missing = 9_999_999_999u64;
    for target in [conv, missing] {
        let e1 = expect_code(
            call!(x.client, GetConversation, v1::GetConversation { conversation_id: target }),
            ErrorCode::NotFound,
        )?;
        let e2 = expect_code(call!(x.client, SendMessage, send(target, "n2", "hi")), ErrorCode::NotFound)?;
        let e3 = expect_code(
            call!(x.client, GetHistory, v1::GetHistory { conversation_id: target, ..Default::default() }),
            ErrorCode::NotFound,
        )?;
        let e4 = expect_code(
            call!(x.client, ListMembers, v1::ListMembers { conversation_id: target, ..Default::default() }),
            ErrorCode::NotFound,
        )?;
        let e5 = expect_code(
            call!(
                x.client,
                EditMessage,
                v1::EditMessage { conversation_id: target, message_id: m.message_id, text: "x".into() }
            ),
            ErrorCode::NotFound,
        )?;
        let e6 = expect_code(call!(x.client, Ack, v1::Ack { conversation_id: target, seq: 1 }), ErrorCode::NotFound)?;
        for e in [&e1, &e2, &e3, &e4, &e5, &e6] {
            ensure!(e.message == "no such conversation", "{e}");
        }
    }
    let sync = call!(
        x.client,
        Sync,
        v1::Sync { conversations: vec![v1::SyncCursor { conversation_id: conv, seq: 0 }], ..Default::default() }
    )?;
    ensure!(sync.conversations.is_empty(), "sync leaked a conversation: {sync:?}");
    Ok(())
}

/// §14.5: every connected device of every member, the sender's other devices included, gets the
/// event with its seq.
async fn live_events_reach_every_device(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "lA").await?;
    let mut a2 = second_device(s, t, &a).await?;
    let mut b = new_user(s, t, "lB").await?;
    let g = call!(a.client, CreateConversation, group("live", &[b.id]))?;
    let sent = call!(a.client, SendMessage, send(g.conversation_id, "l1", "ping"))?;
    for (who, ev) in [("sender", &mut a.events), ("sender's other device", &mut a2.events), ("member", &mut b.events)] {
        let mut got = None;
        for _ in 0..4 {
            let e = next_conv_event(ev).await.with_context(|| who.to_string())?;
            if e.seq == sent.seq {
                got = Some(e);
                break;
            }
        }
        let e = got.with_context(|| format!("{who}: no event with seq {}", sent.seq))?;
        ensure!(e.conversation_id == g.conversation_id, "{who}");
        match e.body {
            Some(Body::MessagePosted(m)) => {
                ensure!(m.text == "ping" && m.message_id == sent.message_id, "{who}: {m:?}")
            }
            other => anyhow::bail!("{who}: {other:?}"),
        }
    }
    Ok(())
}

/// §12.3: by last activity, paginated, with last message and unread count.
async fn list_conversations_sorted_and_paginated(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "sA").await?;
    let b = new_user(s, t, "sB").await?;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(call!(a.client, CreateConversation, group(&format!("c{i}"), &[b.id]))?.conversation_id);
    }
    call!(b.client, SendMessage, send(ids[0], "s1", "bump the oldest"))?;
    let page = call!(a.client, ListConversations, v1::ListConversations { page_token: String::new(), limit: 2 })?;
    ensure!(page.conversations.len() == 2 && !page.next_page_token.is_empty(), "{page:?}");
    ensure!(page.conversations[0].conversation_id == ids[0], "most recent activity first");
    let top = &page.conversations[0];
    ensure!(
        top.unread_count == 1 && top.last_message.as_ref().map(|m| m.text.as_str()) == Some("bump the oldest"),
        "{top:?}"
    );
    let rest = call!(
        a.client,
        ListConversations,
        v1::ListConversations { page_token: page.next_page_token.clone(), limit: 2 }
    )?;
    ensure!(rest.conversations.len() == 1 && rest.next_page_token.is_empty(), "{rest:?}");
    let seen: Vec<u64> = page.conversations.iter().chain(&rest.conversations).map(|c| c.conversation_id).collect();
    ensure!(seen == vec![ids[0], ids[2], ids[1]], "{seen:?}");
    expect_code(
        call!(a.client, ListConversations, v1::ListConversations { page_token: "junk".into(), limit: 2 }),
        ErrorCode::InvalidArgument,
    )?;
    Ok(())
}

/// §14.3: after being away, Sync returns the user log and every missed event in order.
async fn sync_returns_what_was_missed(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "yA").await?;
    let b = new_user(s, t, "yB").await?;
    let first = call!(b.client, Sync, v1::Sync::default())?;
    let g = call!(a.client, CreateConversation, group("sync", &[b.id]))?;
    call!(a.client, SendMessage, send(g.conversation_id, "y1", "one"))?;
    let two = call!(a.client, SendMessage, send(g.conversation_id, "y2", "two"))?;
    let r = call!(b.client, Sync, v1::Sync { epoch: first.epoch, user_seq: first.user_seq, ..Default::default() })?;
    ensure!(!r.resync_required && r.epoch == first.epoch);
    ensure!(r.user_updates.len() == 1 && r.user_seq == first.user_seq + 1, "{r:?}");
    let d = r.conversations.iter().find(|d| d.conversation_id == g.conversation_id).context("no diff")?;
    let seqs: Vec<u64> = d.events.iter().map(|e| e.seq).collect();
    ensure!(seqs == (1..=two.seq).collect::<Vec<_>>() && !d.has_more && d.head_seq == two.seq, "{seqs:?}");
    // From a cursor in the middle: only what follows.
    let r = call!(
        b.client,
        Sync,
        v1::Sync {
            epoch: first.epoch,
            user_seq: r.user_seq,
            conversations: vec![v1::SyncCursor { conversation_id: g.conversation_id, seq: two.seq - 1 }],
            ..Default::default()
        }
    )?;
    ensure!(r.user_updates.is_empty());
    let d = r.conversations.iter().find(|d| d.conversation_id == g.conversation_id).context("no diff")?;
    ensure!(d.events.len() == 1 && d.events[0].seq == two.seq, "{d:?}");
    // Up to date: nothing.
    let r = call!(
        b.client,
        Sync,
        v1::Sync {
            epoch: first.epoch,
            user_seq: r.user_seq,
            conversations: vec![v1::SyncCursor { conversation_id: g.conversation_id, seq: two.seq }],
            ..Default::default()
        }
    )?;
    ensure!(r.conversations.iter().all(|d| d.conversation_id != g.conversation_id), "{r:?}");
    Ok(())
}

/// §14.3: a large gap comes in pages marked has_more; following them yields every event once.
async fn sync_truncates_with_has_more(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "tA").await?;
    let conv = call!(a.client, CreateConversation, group("trunc", &[]))?.conversation_id;
    for i in 0..9 {
        call!(a.client, SendMessage, send(conv, &format!("t{i}"), "x"))?;
    }
    let mut cursor = 0;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = call!(
            a.client,
            Sync,
            v1::Sync {
                conversations: vec![v1::SyncCursor { conversation_id: conv, seq: cursor }],
                limit_per_conversation: 4,
                ..Default::default()
            }
        )?;
        let Some(d) = r.conversations.iter().find(|d| d.conversation_id == conv) else { break };
        pages += 1;
        ensure!(d.events.len() <= 4);
        seen.extend(d.events.iter().map(|e| e.seq));
        cursor = d.events.last().map_or(cursor, |e| e.seq);
        if !d.has_more {
            break;
        }
    }
    ensure!(pages == 3 && seen == (1..=10).collect::<Vec<_>>(), "{pages} pages, {seen:?}");
    Ok(())
}

/// §14.3: cursors from another database are answered with resync_required.
async fn sync_with_another_epoch_requires_resync(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "eA").await?;
    let r = call!(a.client, Sync, v1::Sync::default())?;
    ensure!(r.epoch != 0 && !r.resync_required);
    let r2 = call!(a.client, Sync, v1::Sync { epoch: r.epoch ^ 1, user_seq: 5, ..Default::default() })?;
    ensure!(
        r2.resync_required && r2.epoch == r.epoch && r2.conversations.is_empty() && r2.user_updates.is_empty(),
        "{r2:?}"
    );
    Ok(())
}

/// §14.4
async fn ack_moves_forward(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "kA").await?;
    let conv = call!(a.client, CreateConversation, group("ack", &[]))?.conversation_id;
    let m = call!(a.client, SendMessage, send(conv, "k1", "x"))?;
    call!(a.client, Ack, v1::Ack { conversation_id: conv, seq: m.seq })?;
    call!(a.client, Ack, v1::Ack { conversation_id: conv, seq: 1 })?;
    let acked = s.store().acked(&a.auth.session_id, confab_server::store::ConvId(conv as i64)).await?;
    ensure!(acked == m.seq as i64, "ack moved backwards to {acked}");
    expect_code(call!(a.client, Ack, v1::Ack { conversation_id: conv, seq: m.seq + 5 }), ErrorCode::InvalidArgument)?;
    Ok(())
}

/// §13.1: empty, oversized or malformed content is INVALID_ARGUMENT.
async fn invalid_content_is_refused(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "vA").await?;
    let conv = call!(a.client, CreateConversation, group("valid", &[]))?.conversation_id;
    for (msg, field) in [
        (send(conv, "v1", ""), "send_message.text"),
        (send(conv, "v2", "   "), "send_message.text"),
        (send(conv, "v3", &"x".repeat(16 * 1024 + 1)), "send_message.text"),
        (send(conv, "v4", "nul\0byte"), "send_message.text"),
        (v1::SendMessage { client_msg_id: String::new(), ..send(conv, "", "no id") }, "send_message.client_msg_id"),
        (v1::SendMessage { client_msg_id: "k".repeat(36), ..send(conv, "", "no uuid") }, "send_message.client_msg_id"),
    ] {
        let e = expect_code(call!(a.client, SendMessage, msg), ErrorCode::InvalidArgument)?;
        ensure!(e.field == field, "{e}");
    }
    call!(a.client, SendMessage, send(conv, "v5", &"é".repeat(8 * 1024)))?;
    expect_code(call!(a.client, CreateConversation, group("", &[])), ErrorCode::InvalidArgument)?;
    expect_code(call!(a.client, CreateConversation, v1::CreateConversation::default()), ErrorCode::InvalidArgument)?;
    Ok(())
}

/// §13.5: one reaction per (user, message, emoji); history shows counts and mine; log entries.
async fn reactions_counted_per_emoji(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut a = new_user(s, t, "rA").await?;
    let b = new_user(s, t, "rB").await?;
    let conv = call!(a.client, CreateConversation, group("reacts", &[b.id]))?.conversation_id;
    let m = call!(b.client, SendMessage, send(conv, "r1", "react to me"))?;
    let react = |e: &str| v1::React { conversation_id: conv, message_id: m.message_id, emoji: e.into() };
    let r1 = call!(a.client, React, react("👍"))?;
    ensure!(r1.seq == m.seq + 1, "{r1:?}");
    let again = call!(a.client, React, react("👍"))?;
    ensure!(again.seq == r1.seq, "a repeated reaction wrote an entry");
    call!(b.client, React, react("👍"))?;
    call!(b.client, React, react("👨‍👩‍👧"))?;
    call!(b.client, React, react(":tada:"))?;
    for bad in ["", "ab", "👍👍", "a", " ", ":Bad:", "::"] {
        let e = expect_code(call!(a.client, React, react(bad)), ErrorCode::InvalidArgument)?;
        ensure!(e.field == "react.emoji", "{bad:?}: {e}");
    }
    let h = call!(a.client, GetHistory, v1::GetHistory { conversation_id: conv, ..Default::default() })?;
    let msg = h.messages.iter().find(|x| x.message_id == m.message_id).context("message")?;
    let thumbs = msg.reactions.iter().find(|r| r.emoji == "👍").context("👍")?;
    ensure!(thumbs.count == 2 && thumbs.me, "{:?}", msg.reactions);
    ensure!(msg.reactions.len() == 3 && msg.reactions.iter().filter(|r| r.me).count() == 1, "{:?}", msg.reactions);
    call!(a.client, Unreact, v1::Unreact { conversation_id: conv, message_id: m.message_id, emoji: "👍".into() })?;
    let h = call!(a.client, GetHistory, v1::GetHistory { conversation_id: conv, ..Default::default() })?;
    let msg = h.messages.iter().find(|x| x.message_id == m.message_id).context("message")?;
    ensure!(msg.reactions.iter().any(|r| r.emoji == "👍" && r.count == 1 && !r.me), "{:?}", msg.reactions);
    let mut kinds = Vec::new();
    for _ in 0..12 {
        let e = next_conv_event(&mut a.events).await?;
        if e.seq > m.seq {
            kinds.push(e.body);
        }
        if kinds.len() == 5 {
            break;
        }
    }
    ensure!(matches!(kinds.last(), Some(Some(Body::ReactionRemoved(_)))), "{kinds:?}");
    ensure!(kinds.iter().filter(|k| matches!(k, Some(Body::ReactionAdded(_)))).count() == 4, "{kinds:?}");
    Ok(())
}

/// §13.6
async fn pins_listed_and_logged(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let a = new_user(s, t, "piA").await?;
    let b = new_user(s, t, "piB").await?;
    let dm = call!(
        a.client,
        CreateConversation,
        v1::CreateConversation {
            kind: v1::ConversationKind::Direct as i32,
            member_ids: vec![b.id],
            ..Default::default()
        }
    )?
    .conversation_id;
    let m1 = call!(a.client, SendMessage, send(dm, "p1", "one"))?;
    let m2 = call!(a.client, SendMessage, send(dm, "p2", "two"))?;
    // Both members of a direct conversation may pin.
    call!(b.client, PinMessage, v1::PinMessage { conversation_id: dm, message_id: m1.message_id })?;
    call!(a.client, PinMessage, v1::PinMessage { conversation_id: dm, message_id: m2.message_id })?;
    let pins = call!(b.client, ListPins, v1::ListPins { conversation_id: dm })?;
    ensure!(
        pins.messages.iter().map(|m| m.message_id).collect::<Vec<_>>() == vec![m2.message_id, m1.message_id],
        "{pins:?}"
    );
    ensure!(pins.messages.iter().all(|m| m.pinned));
    let u = call!(b.client, UnpinMessage, v1::UnpinMessage { conversation_id: dm, message_id: m1.message_id })?;
    let u2 = call!(b.client, UnpinMessage, v1::UnpinMessage { conversation_id: dm, message_id: m1.message_id })?;
    ensure!(u.seq == u2.seq, "unpinning twice wrote an entry");
    let pins = call!(a.client, ListPins, v1::ListPins { conversation_id: dm })?;
    ensure!(pins.messages.len() == 1, "{pins:?}");
    let x = new_user(s, t, "piX").await?;
    expect_code(call!(x.client, ListPins, v1::ListPins { conversation_id: dm }), ErrorCode::NotFound)?;
    expect_code(
        call!(a.client, PinMessage, v1::PinMessage { conversation_id: dm, message_id: 987_654_321 }),
        ErrorCode::NotFound,
    )?;
    Ok(())
}

/// §12.8: settings, roles and ownership are log entries; announcement-only holds.
async fn settings_roles_and_ownership(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let o = new_user(s, t, "stO").await?;
    let m = new_user(s, t, "stM").await?;
    let conv = call!(o.client, CreateConversation, group("settings", &[m.id]))?.conversation_id;
    let spec = confab_protocol::client::media::UploadSpec {
        mime_type: "image/png".into(),
        purpose: v1::MediaPurpose::ConversationPhoto,
        ..Default::default()
    };
    let photo =
        o.client.upload(&mut std::io::Cursor::new(confab_conformance::media::png(8, 8)), &spec, &mut |_| {}).await?;
    let c = call!(
        o.client,
        UpdateConversation,
        v1::UpdateConversation {
            conversation_id: conv,
            title: Some("Renamed".into()),
            description: Some("about".into()),
            photo_ref: Some(photo.media_id.clone()),
            announcement_only: Some(true),
        }
    )?;
    ensure!(
        c.title == "Renamed" && c.description == "about" && c.photo_ref == photo.media_id && c.announcement_only,
        "{c:?}"
    );
    expect_code(call!(m.client, SendMessage, send(conv, "st1", "may I?")), ErrorCode::PermissionDenied)?;
    call!(o.client, SetRole, v1::SetRole { conversation_id: conv, user_id: m.id, role: v1::MemberRole::Admin as i32 })?;
    call!(m.client, SendMessage, send(conv, "st2", "now I may"))?;
    expect_code(
        call!(
            o.client,
            SetRole,
            v1::SetRole { conversation_id: conv, user_id: m.id, role: v1::MemberRole::Owner as i32 }
        ),
        ErrorCode::InvalidArgument,
    )?;
    call!(o.client, TransferOwnership, v1::TransferOwnership { conversation_id: conv, user_id: m.id })?;
    let mine = call!(o.client, GetConversation, v1::GetConversation { conversation_id: conv })?;
    let theirs = call!(m.client, GetConversation, v1::GetConversation { conversation_id: conv })?;
    ensure!(mine.my_role == v1::MemberRole::Admin as i32 && theirs.my_role == v1::MemberRole::Owner as i32);
    // The new owner outranks the old one.
    expect_code(
        call!(o.client, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: m.id }),
        ErrorCode::PermissionDenied,
    )?;
    let sync = call!(o.client, Sync, v1::Sync::default())?;
    let d = sync.conversations.iter().find(|d| d.conversation_id == conv).context("diff")?;
    let has = |f: fn(&Option<Body>) -> bool| d.events.iter().any(|e| f(&e.body));
    ensure!(has(|b| matches!(b, Some(Body::Updated(_)))), "no ConversationUpdated entry");
    ensure!(has(|b| matches!(b, Some(Body::RoleChanged(_)))), "no RoleChanged entry");
    ensure!(has(|b| matches!(b, Some(Body::OwnershipTransferred(_)))), "no OwnershipTransferred entry");
    let x = new_user(s, t, "stX").await?;
    let e = expect_code(
        call!(x.client, UpdateConversation, v1::UpdateConversation { conversation_id: conv, ..Default::default() }),
        ErrorCode::NotFound,
    )?;
    ensure!(e.message == "no such conversation");
    Ok(())
}
