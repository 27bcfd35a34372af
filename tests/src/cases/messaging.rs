//! Cases for messages (docs/protocol.md §13 and the text limit of §8): text rules, idempotent
//! sends, replies and mentions, who sees `client_msg_id`, edits and deletions, history pages,
//! reactions and pins.

use anyhow::{Context, bail, ensure};
use confab_protocol::v1::{self, ErrorCode, conversation_event::Body};

use super::Target;
use super::common::*;

/// The default `max_message_text_bytes` (§13.1); servers do not announce it.
const MAX_TEXT_BYTES: usize = 16 * 1024;

/// The message `id` in `a`'s newest history page.
async fn message_in(a: &Account, conv: u64, id: u64) -> anyhow::Result<v1::Message> {
    history(a, conv).await?.into_iter().find(|m| m.message_id == id).context("message not in history")
}

/// §13.1, §8: text must be non-blank, without NUL, and at most 16 KiB (bytes) by default; the
/// refusal names the field.
pub(super) async fn message_text_is_checked(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cftxt").await?;
    let conv = group(&a, &[]).await?;
    for (i, text) in ["", " \n\t", "nul\0byte"].into_iter().enumerate() {
        let e = expect_code(
            call!(a.client, SendMessage, message(conv, &format!("t{i}"), text)),
            ErrorCode::InvalidArgument,
        )?;
        ensure!(e.field == "send_message.text", "{text:?}: {e:?}");
    }
    let half = "é".repeat(MAX_TEXT_BYTES / 2);
    for (i, text) in ["x".repeat(MAX_TEXT_BYTES + 1), format!("{half}x")].into_iter().enumerate() {
        match call!(a.client, SendMessage, message(conv, &format!("o{i}"), &text)) {
            Err(confab_protocol::client::ClientError::Server(e))
                if matches!(e.code(), ErrorCode::InvalidArgument | ErrorCode::TooLarge) =>
            {
                ensure!(e.field == "send_message.text", "{e:?}");
            }
            other => bail!("{} bytes of text: expected a refusal, got {other:?}", text.len()),
        }
    }
    let full = send(&a, conv, "full", &"x".repeat(MAX_TEXT_BYTES)).await?;
    send(&a, conv, "full2", &half).await.context("16 KiB of two-byte characters")?;
    ensure!(message_in(&a, conv, full.message_id).await?.text.len() == MAX_TEXT_BYTES, "text was cut");
    let edit =
        v1::EditMessage { conversation_id: conv, message_id: full.message_id, text: "y".repeat(MAX_TEXT_BYTES + 1) };
    let e = call!(a.client, EditMessage, edit).err().and_then(|e| match e {
        confab_protocol::client::ClientError::Server(e) => Some(e),
        _ => None,
    });
    ensure!(e.is_some_and(|e| e.field == "edit_message.text"), "an over-long edit was not refused on its text");
    Ok(())
}

/// §13.2: a retry with the same client_msg_id returns the original message, from any session of
/// the sender (an outbox survives a new sign-in) and whatever the UUID's letter case; the id is a
/// UUID and may not be reused for another conversation.
pub(super) async fn send_is_idempotent(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfidem").await?;
    let conv = group(&a, &[]).await?;
    let first = send(&a, conv, "once", "hello").await?;
    ensure!(!first.duplicate && first.message_id > 0 && first.created_at_ms > 0, "{first:?}");
    let again = send(&a, conv, "once", "hello").await?;
    ensure!(again.duplicate && again.message_id == first.message_id && again.seq == first.seq, "{again:?}");
    ensure!(get(&a, conv).await?.head_seq == first.seq, "the retry wrote an entry");
    // A retry after signing in again (a new session), spelled in capitals.
    let relogged = second_device(&t, &a, "after-login").await?;
    let upper = v1::SendMessage { client_msg_id: key(conv, "once").to_uppercase(), ..message(conv, "", "hello") };
    let retry = call!(relogged.client, SendMessage, upper)?;
    ensure!(retry.duplicate && retry.message_id == first.message_id, "a retry from a new session: {retry:?}");
    ensure!(get(&a, conv).await?.head_seq == first.seq, "the retry from a new session wrote an entry");
    let other = group(&a, &[]).await?;
    let reused = v1::SendMessage { client_msg_id: key(conv, "once"), ..message(other, "", "hello") };
    let e = expect_code(call!(a.client, SendMessage, reused), ErrorCode::InvalidArgument)?;
    ensure!(e.field == "send_message.client_msg_id", "{e:?}");
    let not_uuids = [
        String::new(),
        "once".into(),
        "00000000-0000-0000-0000-000000000000".into(),
        crate::util::msg_key("x").replace('-', ""),
        format!("{{{}}}", crate::util::msg_key("x")),
    ];
    for id in not_uuids {
        let bad = v1::SendMessage { client_msg_id: id.clone(), ..message(conv, "", "x") };
        let e = expect_code(call!(a.client, SendMessage, bad), ErrorCode::InvalidArgument)
            .with_context(|| format!("client_msg_id {id:?}"))?;
        ensure!(e.field == "send_message.client_msg_id", "{e:?}");
    }
    Ok(())
}

/// §13.2: a reply points at a message of the same conversation; mentions are carried, at most 64.
pub(super) async fn replies_and_mentions_are_checked(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfrep").await?;
    let b = account(&t, "cfrepB").await?;
    let conv = group(&a, &[b.id]).await?;
    let other = group(&a, &[]).await?;
    let parent = send(&a, conv, "p", "parent").await?;
    let elsewhere = send(&a, other, "e", "elsewhere").await?;
    let reply = v1::SendMessage {
        reply_to_message_id: parent.message_id,
        mention_user_ids: vec![b.id],
        ..message(conv, "r", "reply")
    };
    let r = call!(a.client, SendMessage, reply)?;
    let m = message_in(&b, conv, r.message_id).await?;
    ensure!(m.reply_to_message_id == parent.message_id && m.mention_user_ids == vec![b.id], "{m:?}");
    let bad = v1::SendMessage { reply_to_message_id: elsewhere.message_id, ..message(conv, "r2", "reply") };
    let e = expect_code(call!(a.client, SendMessage, bad), ErrorCode::InvalidArgument)?;
    ensure!(e.field == "send_message.reply_to_message_id", "{e:?}");
    let many = v1::SendMessage { mention_user_ids: (1..=65).collect(), ..message(conv, "r3", "everyone") };
    expect_code(call!(a.client, SendMessage, many), ErrorCode::InvalidArgument)?;
    Ok(())
}

/// §13.2: `written_at_ms` (when the sender wrote the message) is stored clamped to
/// `[created_at_ms - 24 h, created_at_ms]`, 0 staying 0, and comes back the same in history, Sync,
/// the live entry and the conversation's last message; a retry keeps the original. Times are
/// taken from the server's own `created_at_ms`, so a skewed test clock changes nothing.
pub(super) async fn written_at_is_kept_within_a_day_before_receipt(t: Target) -> anyhow::Result<()> {
    const DAY: u64 = 24 * 60 * 60 * 1000;
    let a = account(&t, "cfwrA").await?;
    let mut b = account(&t, "cfwrB").await?;
    let conv = group(&a, &[b.id]).await?;
    let server_now = send(&a, conv, "w-ref", "reference").await?.created_at_ms;
    let with = |id: &str, written_at_ms: u64| v1::SendMessage { written_at_ms, ..message(conv, id, id) };
    let cases: [(&str, u64); 4] = [
        ("w-none", 0),
        ("w-10min", server_now - 10 * 60 * 1000),
        ("w-48h", server_now - 2 * DAY),
        ("w-future", server_now + 60 * 60 * 1000),
    ];
    let mut want = Vec::new();
    for (id, written) in cases {
        let r = call!(a.client, SendMessage, with(id, written))?;
        let expected = match id {
            "w-10min" => written,
            "w-48h" => r.created_at_ms - DAY,
            "w-future" => r.created_at_ms,
            _ => 0,
        };
        want.push((r.message_id, id, expected));
        // Live, to the other member, from the send's own commit.
        let e =
            entry(&mut b.events, conv, |x| matches!(x, Body::MessagePosted(m) if m.message_id == r.message_id)).await?;
        match e.body {
            Some(Body::MessagePosted(m)) => ensure!(m.written_at_ms == expected, "{id} live: {m:?}"),
            other => bail!("{other:?}"),
        }
    }
    // A retry with another time stores nothing and changes nothing.
    let retry = call!(a.client, SendMessage, with("w-10min", server_now - 5 * 60 * 1000))?;
    ensure!(retry.duplicate, "{retry:?}");
    let history = history(&b, conv).await?;
    let log = log_of(&b, conv).await?;
    for (message_id, id, expected) in &want {
        let h = history.iter().find(|m| m.message_id == *message_id).context("in history")?;
        ensure!(h.written_at_ms == *expected, "{id} in history: {} wanted {expected}", h.written_at_ms);
        let posted = log.iter().find_map(|e| match &e.body {
            Some(Body::MessagePosted(m)) if m.message_id == *message_id => Some(m),
            _ => None,
        });
        ensure!(posted.is_some_and(|m| m.written_at_ms == *expected), "{id} in Sync: {posted:?}");
    }
    let last = get(&b, conv).await?.last_message.context("a last message")?;
    // The last one sent (the future one, so its value is the non-zero created_at_ms).
    ensure!(last.message_id == want[3].0 && last.written_at_ms == want[3].2, "the last message: {last:?}");
    Ok(())
}

/// §13.1, §14.5: the author's other devices get the live MessagePosted too, with an empty
/// client_msg_id (one shared encoding); history and Sync show the id to the sender's account
/// only.
pub(super) async fn client_msg_id_is_shown_to_the_sender_only(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfcid").await?;
    let mut a2 = second_device(&t, &a, "other").await?;
    let mut b = account(&t, "cfcidB").await?;
    let conv = group(&a, &[b.id]).await?;
    let sent = send(&a, conv, "my-id", "hello").await?;
    for events in [&mut a2.events, &mut b.events] {
        let e = entry(events, conv, |x| matches!(x, Body::MessagePosted(_))).await?;
        match e.body {
            Some(Body::MessagePosted(m)) => {
                ensure!(m.message_id == sent.message_id && m.client_msg_id.is_empty() && e.seq == sent.seq, "{m:?}");
            }
            other => bail!("{other:?}"),
        }
    }
    ensure!(
        message_in(&a2, conv, sent.message_id).await?.client_msg_id == key(conv, "my-id"),
        "hidden from the sender"
    );
    ensure!(message_in(&b, conv, sent.message_id).await?.client_msg_id.is_empty(), "shown to another member");
    let posted = log_of(&a, conv).await?.into_iter().find_map(|e| match e.body {
        Some(Body::MessagePosted(m)) if m.message_id == sent.message_id => Some(m),
        _ => None,
    });
    ensure!(posted.is_some_and(|m| m.client_msg_id == key(conv, "my-id")), "Sync hides the id from the sender");
    Ok(())
}

/// §13.3: the sender edits and deletes (PERMISSION_DENIED for others); each is a log entry
/// pointing at its target; a deleted message keeps its id and seq but loses its text, in history
/// and in the earlier entries; editing or deleting it again is NOT_FOUND.
pub(super) async fn edit_and_delete_are_log_entries(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfedA").await?;
    let mut b = account(&t, "cfedB").await?;
    let conv = group(&a, &[b.id]).await?;
    let m = send(&a, conv, "ed1", "first").await?;
    let edit = |c: &Account, text: &str| {
        let r = v1::EditMessage { conversation_id: conv, message_id: m.message_id, text: text.into() };
        let c = c.client.clone();
        async move { call!(c, EditMessage, r) }
    };
    let delete = |c: &Account| {
        let r = v1::DeleteMessage { conversation_id: conv, message_id: m.message_id };
        let c = c.client.clone();
        async move { call!(c, DeleteMessage, r) }
    };
    let edited = edit(&a, "second").await?;
    let e = entry(&mut b.events, conv, |x| matches!(x, Body::MessageEdited(_))).await?;
    ensure!(e.seq == edited.seq && e.actor_id == a.id, "{e:?}");
    ensure!(matches!(&e.body, Some(Body::MessageEdited(x)) if x.message_id == m.message_id && x.text == "second"));
    let now = message_in(&b, conv, m.message_id).await?;
    ensure!(now.text == "second" && now.edited_at_ms > 0 && now.seq == m.seq && !now.deleted, "{now:?}");
    expect_code(edit(&b, "not mine").await, ErrorCode::PermissionDenied)?;
    expect_code(delete(&b).await, ErrorCode::PermissionDenied)?;
    let deleted = delete(&a).await?;
    let e = entry(&mut b.events, conv, |x| matches!(x, Body::MessageDeleted(_))).await?;
    ensure!(e.seq == deleted.seq && matches!(&e.body, Some(Body::MessageDeleted(x)) if x.message_id == m.message_id));
    let gone = message_in(&b, conv, m.message_id).await?;
    ensure!(gone.deleted && gone.text.is_empty() && gone.seq == m.seq, "{gone:?}");
    for e in log_of(&b, conv).await? {
        match e.body {
            Some(Body::MessagePosted(p)) if p.message_id == m.message_id => ensure!(p.text.is_empty(), "{p:?}"),
            Some(Body::MessageEdited(x)) if x.message_id == m.message_id => ensure!(x.text.is_empty(), "{x:?}"),
            _ => {}
        }
    }
    expect_code(edit(&a, "again").await, ErrorCode::NotFound)?;
    expect_code(delete(&a).await, ErrorCode::NotFound)?;
    Ok(())
}

/// §13.4: pages of messages in ascending seq, before or after a cursor, with has_more; both
/// cursors at once are INVALID_ARGUMENT.
pub(super) async fn history_pages_both_ways(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfhist").await?;
    let conv = group(&a, &[]).await?;
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(send(&a, conv, &format!("h{i}"), &format!("message {i}")).await?.seq);
    }
    let page = |before_seq: u64, after_seq: u64, limit: u32| {
        let r = v1::GetHistory { conversation_id: conv, before_seq, after_seq, limit };
        let c = a.client.clone();
        async move {
            let h = call!(c, GetHistory, r)?;
            Ok::<_, anyhow::Error>((h.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), h.has_more))
        }
    };
    ensure!(page(0, 0, 2).await? == (seqs[3..].to_vec(), true), "latest page");
    ensure!(page(seqs[3], 0, 2).await? == (seqs[1..3].to_vec(), true), "before");
    ensure!(page(seqs[1], 0, 2).await? == (seqs[..1].to_vec(), false), "oldest");
    ensure!(page(0, seqs[0], 2).await? == (seqs[1..3].to_vec(), true), "after");
    ensure!(page(0, seqs[2], 2).await? == (seqs[3..].to_vec(), false), "newest after");
    ensure!(page(0, 0, 0).await? == (seqs.clone(), false), "the default limit");
    let both = v1::GetHistory { conversation_id: conv, before_seq: seqs[4], after_seq: seqs[0], limit: 2 };
    expect_code(call!(a.client, GetHistory, both), ErrorCode::InvalidArgument)?;
    Ok(())
}

/// §13.5: one reaction per (user, message, emoji); repeats and absent removals write nothing;
/// history counts per emoji with `me`; emoji are one emoji or a known :shortcode:, stored as the
/// emoji.
pub(super) async fn reactions_are_counted_per_emoji(t: Target) -> anyhow::Result<()> {
    let mut a = account(&t, "cfreA").await?;
    let b = account(&t, "cfreB").await?;
    let x = account(&t, "cfreX").await?;
    let conv = group(&a, &[b.id]).await?;
    let m = send(&a, conv, "re1", "react to me").await?;
    let react = |u: &Account, emoji: &str, add: bool| {
        let (c, id) = (u.client.clone(), m.message_id);
        let emoji = emoji.to_string();
        async move {
            let r = if add {
                call!(c, React, v1::React { conversation_id: conv, message_id: id, emoji })
            } else {
                call!(c, Unreact, v1::Unreact { conversation_id: conv, message_id: id, emoji })
            };
            r.map(|r| r.seq)
        }
    };
    let first = react(&b, "👍", true).await?;
    let e = entry(&mut a.events, conv, |x| matches!(x, Body::ReactionAdded(_))).await?;
    ensure!(e.seq == first && e.actor_id == b.id, "{e:?}");
    ensure!(matches!(&e.body, Some(Body::ReactionAdded(r)) if r.message_id == m.message_id && r.emoji == "👍"));
    ensure!(react(&b, "👍", true).await? == first, "a repeated reaction wrote an entry");
    for emoji in ["👍", ":tada:", "👨‍👩‍👧", "❤️"] {
        react(&a, emoji, true).await.with_context(|| format!("{emoji:?}"))?;
    }
    let counts = |m: v1::Message| m.reactions.into_iter().map(|r| (r.emoji, r.count, r.me)).collect::<Vec<_>>();
    let mine = counts(message_in(&a, conv, m.message_id).await?);
    let theirs = counts(message_in(&b, conv, m.message_id).await?);
    ensure!(
        mine.len() == 4 && mine.contains(&("👍".into(), 2, true)) && mine.contains(&("🎉".into(), 1, true)),
        "{mine:?}"
    );
    ensure!(theirs.contains(&("👍".into(), 2, true)) && theirs.contains(&("🎉".into(), 1, false)), "{theirs:?}");
    for bad in ["", "ab", "7", " ", "👍👍", ":Tada:", "::", &format!(":{}:", "a".repeat(33))] {
        let e = expect_code(react(&b, bad, true).await, ErrorCode::InvalidArgument)?;
        ensure!(e.field == "react.emoji", "{bad:?}: {e:?}");
    }
    let head = get(&a, conv).await?.head_seq;
    ensure!(react(&b, ":tada:", false).await? == head, "removing an absent reaction wrote an entry");
    let removed = react(&b, "👍", false).await?;
    let e = entry(&mut a.events, conv, |x| matches!(x, Body::ReactionRemoved(_))).await?;
    ensure!(e.seq == removed && e.actor_id == b.id && removed == head + 1, "{e:?}");
    expect_code(react(&x, "👍", true).await, ErrorCode::NotFound)?;
    Ok(())
}

/// §13.6: pins are log entries (repeating writes nothing); ListPins shows them most recently
/// pinned first, members only; history marks them.
pub(super) async fn pins_are_listed_most_recent_first(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfpinA").await?;
    let mut b = account(&t, "cfpinB").await?;
    let x = account(&t, "cfpinX").await?;
    let conv = group(&a, &[b.id]).await?;
    let older = send(&a, conv, "p1", "older").await?;
    let newer = send(&a, conv, "p2", "newer").await?;
    let pin = |id: u64, on: bool| {
        let c = a.client.clone();
        async move {
            let r = if on {
                call!(c, PinMessage, v1::PinMessage { conversation_id: conv, message_id: id })
            } else {
                call!(c, UnpinMessage, v1::UnpinMessage { conversation_id: conv, message_id: id })
            };
            r.map(|r| r.seq)
        }
    };
    let pins = |u: &Account| {
        let c = u.client.clone();
        async move { call!(c, ListPins, v1::ListPins { conversation_id: conv }) }
    };
    let first = pin(newer.message_id, true).await?;
    let e = entry(&mut b.events, conv, |x| matches!(x, Body::MessagePinned(_))).await?;
    ensure!(e.seq == first && matches!(&e.body, Some(Body::MessagePinned(p)) if p.message_id == newer.message_id));
    let second = pin(older.message_id, true).await?;
    ensure!(pin(older.message_id, true).await? == second, "pinning again wrote an entry");
    let listed: Vec<_> = pins(&b).await?.messages.into_iter().map(|m| (m.message_id, m.pinned)).collect();
    ensure!(
        listed == vec![(older.message_id, true), (newer.message_id, true)],
        "not most recently pinned first: {listed:?}"
    );
    ensure!(message_in(&b, conv, newer.message_id).await?.pinned, "history does not mark the pin");
    let unpinned = pin(newer.message_id, false).await?;
    let e = entry(&mut b.events, conv, |x| matches!(x, Body::MessageUnpinned(_))).await?;
    ensure!(e.seq == unpinned && matches!(&e.body, Some(Body::MessageUnpinned(p)) if p.message_id == newer.message_id));
    ensure!(pin(newer.message_id, false).await? == unpinned, "unpinning again wrote an entry");
    let listed: Vec<u64> = pins(&b).await?.messages.iter().map(|m| m.message_id).collect();
    ensure!(listed == vec![older.message_id], "{listed:?}");
    ensure!(!message_in(&b, conv, newer.message_id).await?.pinned);
    expect_code(pins(&x).await, ErrorCode::NotFound)?;
    Ok(())
}

/// §13.2: sends pipelined on one connection (written back to back, before any answer) are stored
/// in the order they were sent.
pub(super) async fn pipelined_sends_keep_their_order(t: Target) -> anyhow::Result<()> {
    use confab_protocol::frames::client_frame;
    use confab_protocol::v1::{client_frame::Request, response, server_frame};
    let a = account(&t, "cfpipe").await?;
    let conv = group(&a, &[]).await?;
    let mut raw = super::signed_in_raw(&t, &a.auth.access_token).await?;
    let n = 40u64;
    for i in 0..n {
        let m = message(conv, &format!("pipe-{i}"), &format!("pipelined {i}"));
        raw.sender.feed(prost::Message::encode_to_vec(&client_frame(100 + i, Request::SendMessage(m))).into()).await?;
    }
    raw.sender.flush().await?;
    let mut seqs = std::collections::BTreeMap::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while (seqs.len() as u64) < n {
            if let Some(server_frame::Frame::Response(r)) = raw.recv_frame().await?.frame {
                match r.result {
                    Some(response::Result::SendMessage(s)) => seqs.insert(r.request_id, s.seq),
                    other => bail!("request {}: {other:?}", r.request_id),
                };
            }
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .context("not every pipelined send was answered")??;
    let in_order: Vec<u64> = seqs.values().copied().collect();
    ensure!(in_order.windows(2).all(|w| w[0] < w[1]), "seqs by request order: {in_order:?}");
    Ok(())
}
