//! Cases for receipts and typing (docs/protocol.md §15, §16): read watermarks, per-member receipt
//! states, ReceiptUpdated, the read-receipts privacy setting, and typing indicators.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use confab_protocol::v1::{self, ErrorCode, ReceiptState, event, user_update};

use super::Target;
use super::common::*;

/// The next ReceiptUpdated about `user` in `conv`.
async fn receipt(a: &mut Account, conv: u64, user: u64) -> anyhow::Result<v1::ReceiptUpdated> {
    next(&mut a.events, |e| match e {
        event::Event::ReceiptUpdated(r) if r.conversation_id == conv && r.user_id == user => Some(r),
        _ => None,
    })
    .await
}

fn mark(conv: u64, seq: u64) -> v1::MarkRead {
    v1::MarkRead { conversation_id: conv, seq }
}

/// §15.1, §15.3: MarkRead moves a watermark the sender sees as ReceiptUpdated.
pub(super) async fn read_marker_is_a_receipt_watermark(t: Target) -> anyhow::Result<()> {
    let mut a = account(&t, "cfrcA").await?;
    let b = account(&t, "cfrcB").await?;
    let conv = group(&a, &[b.id]).await?;
    let m = send(&a, conv, "r1", "read me").await?;
    let r = call!(b.client, MarkRead, mark(conv, m.seq))?;
    ensure!(r.read_seq == m.seq, "{r:?}");
    let e = receipt(&mut a, conv, b.id).await?;
    ensure!(e.read_seq == m.seq && e.delivered_seq >= m.seq, "reading implies delivery: {e:?}");
    Ok(())
}

/// §15.1, §14.2: the read watermark only moves forward (a lower seq answers the current value),
/// may not pass the head, reaches the reader's other devices as a ReadMarker, and drives
/// my_read_seq and unread_count.
pub(super) async fn read_watermark_only_moves_forward(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfrwA").await?;
    let b = account(&t, "cfrwB").await?;
    let mut b2 = second_device(&t, &b, "other").await?;
    let conv = group(&a, &[b.id]).await?;
    let m1 = send(&a, conv, "w1", "one").await?;
    let m2 = send(&a, conv, "w2", "two").await?;
    ensure!(get(&b, conv).await?.unread_count == 2, "two unread messages");
    expect_code(call!(b.client, MarkRead, mark(conv, m2.seq + 1)), ErrorCode::InvalidArgument)?;
    ensure!(call!(b.client, MarkRead, mark(conv, m2.seq))?.read_seq == m2.seq);
    let marker = user_entry(
        &mut b2.events,
        |u| matches!(u, user_update::Body::ReadMarker(r) if r.conversation_id == conv && r.seq == m2.seq),
    )
    .await;
    marker.context("the reader's other device did not get the ReadMarker")?;
    ensure!(call!(b.client, MarkRead, mark(conv, m1.seq))?.read_seq == m2.seq, "the watermark moved back");
    let seen = get(&b2, conv).await?;
    ensure!(seen.my_read_seq == m2.seq && seen.unread_count == 0, "{seen:?}");
    Ok(())
}

/// §15.2: every other member's state for the sender's message (SENT, DELIVERED after Ack, READ);
/// others are PERMISSION_DENIED, non-members and unknown messages NOT_FOUND.
pub(super) async fn receipts_show_each_members_state(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfgrA").await?;
    let b = account(&t, "cfgrB").await?;
    let c = account(&t, "cfgrC").await?;
    let d = account(&t, "cfgrD").await?;
    let x = account(&t, "cfgrX").await?;
    let conv = group(&a, &[b.id, c.id, d.id]).await?;
    let m = send(&a, conv, "gr1", "tick me").await?;
    call!(b.client, Ack, v1::Ack { conversation_id: conv, seq: m.seq })?;
    call!(c.client, MarkRead, mark(conv, m.seq))?;
    let ask = async |u: &Account, message_id: u64| {
        call!(u.client, GetReceipts, v1::GetReceipts { conversation_id: conv, message_id })
    };
    let mut got: Vec<(u64, ReceiptState)> =
        ask(&a, m.message_id).await?.receipts.iter().map(|r| (r.user_id, r.state())).collect();
    got.sort_unstable_by_key(|r| r.0);
    let mut want = vec![(b.id, ReceiptState::Delivered), (c.id, ReceiptState::Read), (d.id, ReceiptState::Sent)];
    want.sort_unstable_by_key(|r| r.0);
    ensure!(got == want, "{got:?}");
    expect_code(ask(&b, m.message_id).await, ErrorCode::PermissionDenied)?;
    expect_code(ask(&x, m.message_id).await, ErrorCode::NotFound)?;
    expect_code(ask(&a, u64::MAX >> 2).await, ErrorCode::NotFound)?;
    Ok(())
}

/// §15.4: privacy settings default on and keep absent fields; with read receipts off, others
/// see read_seq 0 and at most DELIVERED, while the reader's own devices keep the watermark.
pub(super) async fn read_receipts_can_be_hidden(t: Target) -> anyhow::Result<()> {
    let mut a = account(&t, "cfpvA").await?;
    let b = new_account(&t, "cfpvB").await?;
    let p = call!(b.client, GetPrivacy, v1::GetPrivacy {})?;
    ensure!(p.read_receipts && p.show_last_seen, "defaults: {p:?}");
    let p = call!(b.client, SetPrivacy, v1::SetPrivacy { read_receipts: Some(false), show_last_seen: None })?;
    ensure!(!p.read_receipts && p.show_last_seen, "{p:?}");
    ensure!(call!(b.client, GetPrivacy, v1::GetPrivacy {})? == p, "not kept");
    let conv = group(&a, &[b.id]).await?;
    let m = send(&a, conv, "pv1", "secret reading").await?;
    call!(b.client, MarkRead, mark(conv, m.seq))?;
    let r = receipt(&mut a, conv, b.id).await?;
    ensure!(r.read_seq == 0 && r.delivered_seq == m.seq, "{r:?}");
    let g = call!(a.client, GetReceipts, v1::GetReceipts { conversation_id: conv, message_id: m.message_id })?;
    ensure!(g.receipts.len() == 1 && g.receipts[0].state() == ReceiptState::Delivered, "{g:?}");
    ensure!(get(&b, conv).await?.my_read_seq == m.seq, "the hidden watermark still works for its owner");
    Ok(())
}

/// §16: typing reaches the other members.
pub(super) async fn typing_reaches_members(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cftyA").await?;
    let mut b = account(&t, "cftyB").await?;
    let conv = group(&a, &[b.id]).await?;
    call!(a.client, SetTyping, v1::SetTyping { conversation_id: conv, typing: true })?;
    let e =
        next_event(&mut b.events, |e| matches!(e, event::Event::TypingChanged(x) if x.conversation_id == conv)).await?;
    ensure!(matches!(e, event::Event::TypingChanged(x) if x.typing && x.user_id == a.id && x.expires_in_ms > 0));
    Ok(())
}

/// The next TypingChanged in `conv`.
async fn typing(u: &mut Account, conv: u64) -> anyhow::Result<v1::TypingChanged> {
    next(&mut u.events, |e| match e {
        event::Event::TypingChanged(x) if x.conversation_id == conv => Some(x),
        _ => None,
    })
    .await
}

/// §16: typing stops explicitly or lapses after expires_in_ms without a refresh (the time of a
/// stopped indicator does not shorten the next one); turning it on is rate-limited (5 per
/// second); non-members get NOT_FOUND.
pub(super) async fn typing_stops_lapses_and_is_limited(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cftsA").await?;
    let mut b = account(&t, "cftsB").await?;
    let x = account(&t, "cftsX").await?;
    let conv = group(&a, &[b.id]).await?;
    let set =
        async |u: &Account, on: bool| call!(u.client, SetTyping, v1::SetTyping { conversation_id: conv, typing: on });
    set(&a, true).await?;
    let first = typing(&mut b, conv).await?;
    ensure!(first.typing && first.expires_in_ms > 0, "{first:?}");
    set(&a, false).await?;
    let off = typing(&mut b, conv).await?;
    ensure!(!off.typing && off.user_id == a.id, "{off:?}");
    // Part of the scenario, not a wait for the server: start again half-way through the stopped
    // indicator's time, which must not end the new one.
    tokio::time::sleep(Duration::from_millis(u64::from(first.expires_in_ms / 2))).await;
    set(&a, true).await?;
    let on = typing(&mut b, conv).await?;
    let since = Instant::now();
    let lapsed = typing(&mut b, conv).await.context("typing did not lapse")?;
    ensure!(on.typing && !lapsed.typing && lapsed.user_id == a.id, "{lapsed:?}");
    let min = u128::from(on.expires_in_ms) * 3 / 4;
    ensure!(since.elapsed().as_millis() >= min, "lapsed after {:?} of {} ms", since.elapsed(), on.expires_in_ms);
    let mut limited = None;
    for _ in 0..10 {
        if let Err(e) = set(&a, true).await {
            limited = Some(e);
            break;
        }
    }
    let e =
        expect_code::<()>(Err(limited.context("10 SetTyping at once were not rate-limited")?), ErrorCode::RateLimited)?;
    ensure!(e.retry_after_ms > 0, "{e}");
    expect_code(set(&x, true).await, ErrorCode::NotFound)?;
    Ok(())
}
