//! Cases for sync (docs/protocol.md §14): the user log, Sync with its pages, cursors and epoch,
//! Ack, and live delivery in seq order.

use anyhow::{Context, bail, ensure};
use confab_protocol::v1::{self, ErrorCode, ReceiptState, conversation_event::Body, event, user_update};

use super::Target;
use super::common::*;

fn cursor(conv: u64, seq: u64) -> v1::SyncCursor {
    v1::SyncCursor { conversation_id: conv, seq }
}

/// §14.2, §14.3: the user log is gapless and ascending: added, removed, added again, read
/// markers; Sync after a user_seq returns only what follows it.
pub(super) async fn user_log_is_gapless(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfulA").await?;
    let b = account(&t, "cfulB").await?;
    let conv = group(&a, &[]).await?;
    let add = async || call!(a.client, AddMembers, v1::AddMembers { conversation_id: conv, user_ids: vec![b.id] });
    add().await?;
    call!(a.client, RemoveMember, v1::RemoveMember { conversation_id: conv, user_id: b.id })?;
    add().await?;
    let m = send(&a, conv, "ul1", "hello").await?;
    call!(b.client, MarkRead, v1::MarkRead { conversation_id: conv, seq: m.seq })?;
    let all = call!(b.client, Sync, v1::Sync::default())?;
    let seqs: Vec<u64> = all.user_updates.iter().map(|u| u.user_seq).collect();
    ensure!(!seqs.is_empty() && seqs.windows(2).all(|w| w[1] == w[0] + 1), "not gapless: {seqs:?}");
    ensure!(all.user_seq == *seqs.last().unwrap_or(&0) && !all.has_more_updates, "{all:?}");
    let mine: Vec<&str> = all
        .user_updates
        .iter()
        .filter_map(|u| match &u.body {
            Some(user_update::Body::AddedToConversation(x)) if x.conversation_id == conv => Some("added"),
            Some(user_update::Body::RemovedFromConversation(x)) if x.conversation_id == conv => Some("removed"),
            Some(user_update::Body::ReadMarker(x)) if x.conversation_id == conv && x.seq == m.seq => Some("read"),
            _ => None,
        })
        .collect();
    ensure!(mine == ["added", "removed", "added", "read"], "{mine:?}");
    ensure!(all.user_updates.iter().all(|u| u.at_ms > 0), "{all:?}");
    let k = seqs[seqs.len() - 2];
    let rest = call!(b.client, Sync, v1::Sync { epoch: all.epoch, user_seq: k, ..Default::default() })?;
    ensure!(rest.user_updates.len() == 1 && rest.user_updates[0].user_seq == k + 1, "{rest:?}");
    Ok(())
}

/// §14.3: Sync returns the user log and the missed entries, contiguous and in order.
pub(super) async fn sync_returns_missed_entries_in_order(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfsyA").await?;
    let b = account(&t, "cfsyB").await?;
    let conv = group(&a, &[b.id]).await?;
    let last = send(&a, conv, "y2", "x").await?;
    let r = call!(b.client, Sync, v1::Sync::default())?;
    ensure!(!r.resync_required && r.epoch != 0);
    ensure!(
        r.user_updates.iter().any(
            |u| matches!(&u.body, Some(v1::user_update::Body::AddedToConversation(x)) if x.conversation_id == conv)
        )
    );
    let d = r.conversations.iter().find(|d| d.conversation_id == conv).context("no diff for the conversation")?;
    let seqs: Vec<u64> = d.events.iter().map(|e| e.seq).collect();
    ensure!(seqs == (1..=last.seq).collect::<Vec<_>>(), "{seqs:?}");
    ensure!(d.head_seq == last.seq && !d.has_more, "{d:?}");
    Ok(())
}

/// §14.3: limit_per_conversation pages a conversation with has_more; following the cursors
/// yields every entry once and in order; a cursor at the head gets no diff.
pub(super) async fn sync_pages_with_has_more(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfsp").await?;
    let conv = group(&a, &[]).await?;
    let mut head = 0;
    for i in 0..5 {
        head = send(&a, conv, &format!("sp{i}"), "x").await?.seq;
    }
    let (mut at, mut seen, mut rounds) = (0, Vec::new(), 0);
    loop {
        rounds += 1;
        ensure!(rounds <= 10, "Sync never finished");
        let r = call!(
            a.client,
            Sync,
            v1::Sync { conversations: vec![cursor(conv, at)], limit_per_conversation: 2, ..Default::default() }
        )?;
        let Some(d) = r.conversations.iter().find(|d| d.conversation_id == conv) else { break };
        ensure!(d.head_seq == head && !d.events.is_empty() && d.events.len() <= 2, "{d:?}");
        for e in &d.events {
            ensure!(e.seq == at + 1, "entry {} after cursor {at}", e.seq);
            at = e.seq;
            seen.push(e.seq);
        }
        ensure!(d.has_more == (at < head), "has_more {} at {at} of {head}", d.has_more);
    }
    ensure!(seen == (1..=head).collect::<Vec<_>>() && rounds == 4, "{seen:?} in {rounds} rounds");
    Ok(())
}

/// §14.3: cursors from another database (a different non-zero epoch) get resync_required and
/// nothing else, with the server's epoch.
pub(super) async fn another_epoch_requires_resync(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfep").await?;
    group(&a, &[]).await?;
    let first = call!(a.client, Sync, v1::Sync::default())?;
    ensure!(first.epoch != 0 && !first.resync_required, "{first:?}");
    let same = call!(a.client, Sync, v1::Sync { epoch: first.epoch, ..Default::default() })?;
    ensure!(!same.resync_required && same.epoch == first.epoch, "{same:?}");
    let other = if first.epoch == i64::MAX { 1 } else { first.epoch + 1 };
    let r = call!(a.client, Sync, v1::Sync { epoch: other, ..Default::default() })?;
    ensure!(r.resync_required && r.epoch == first.epoch, "{r:?}");
    ensure!(r.user_updates.is_empty() && r.conversations.is_empty(), "more than resync_required: {r:?}");
    Ok(())
}

/// §14.3: a cursor skips what the client has; cursors of conversations the caller is not a
/// member of are ignored.
pub(super) async fn sync_ignores_foreign_cursors(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cffcA").await?;
    let x = account(&t, "cffcX").await?;
    let conv = group(&a, &[]).await?;
    let m = send(&a, conv, "fc1", "x").await?;
    let theirs = group(&x, &[]).await?;
    let r = call!(
        a.client,
        Sync,
        v1::Sync { conversations: vec![cursor(conv, m.seq - 1), cursor(theirs, 0)], ..Default::default() }
    )?;
    ensure!(r.conversations.iter().all(|d| d.conversation_id != theirs), "a foreign conversation leaked: {r:?}");
    let d = r.conversations.iter().find(|d| d.conversation_id == conv).context("no diff")?;
    ensure!(d.events.len() == 1 && d.events[0].seq == m.seq, "{d:?}");
    Ok(())
}

/// §14.4: Ack only moves forward (a lower seq is accepted), not past the head, members only, and
/// moves the delivered watermark the sender sees (§15).
pub(super) async fn ack_moves_the_delivered_watermark(t: Target) -> anyhow::Result<()> {
    let mut a = account(&t, "cfackA").await?;
    let b = account(&t, "cfackB").await?;
    let x = account(&t, "cfackX").await?;
    let conv = group(&a, &[b.id]).await?;
    let m = send(&a, conv, "ak1", "deliver me").await?;
    let ack = |u: &Account, seq: u64| {
        let c = u.client.clone();
        async move { call!(c, Ack, v1::Ack { conversation_id: conv, seq }) }
    };
    expect_code(ack(&b, m.seq + 1).await, ErrorCode::InvalidArgument)?;
    expect_code(ack(&x, 1).await, ErrorCode::NotFound)?;
    ack(&b, m.seq).await?;
    let r = next(&mut a.events, |e| match e {
        event::Event::ReceiptUpdated(r) if r.conversation_id == conv && r.user_id == b.id => Some(r),
        _ => None,
    })
    .await?;
    ensure!(r.delivered_seq == m.seq && r.read_seq == 0, "{r:?}");
    ack(&b, 1).await.context("a lower seq is accepted")?;
    let g = call!(a.client, GetReceipts, v1::GetReceipts { conversation_id: conv, message_id: m.message_id })?;
    ensure!(g.receipts.len() == 1 && g.receipts[0].state() == ReceiptState::Delivered, "{g:?}");
    Ok(())
}

/// §14.5, §14.1: live entries reach every member with consecutive seqs, in order.
pub(super) async fn live_events_carry_gapless_seqs(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfliveA").await?;
    let mut b = account(&t, "cfliveB").await?;
    let conv = group(&a, &[b.id]).await?;
    let s1 = send(&a, conv, "l1", "one").await?;
    let s2 = send(&a, conv, "l2", "two").await?;
    ensure!(s2.seq == s1.seq + 1, "seqs {} then {}", s1.seq, s2.seq);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let e = entry(&mut b.events, conv, |x| matches!(x, Body::MessagePosted(_))).await?;
        match e.body {
            Some(Body::MessagePosted(m)) => seen.push((e.seq, m.text)),
            other => bail!("{other:?}"),
        }
    }
    ensure!(seen == vec![(s1.seq, "one".to_string()), (s2.seq, "two".to_string())], "{seen:?}");
    Ok(())
}
