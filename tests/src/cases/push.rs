//! Cases for push notifications' protocol part (docs/protocol.md §24): registering, listing and
//! unregistering targets per device, tokens shown in full only to their own device, a token
//! taken over by another account, a signed-out device losing its targets, the bounds of each
//! request, the notification settings and the ledger's pages. Delivery itself (providers, retries,
//! the ledger's states) needs fake provider servers: tests/tests/push.rs.

use anyhow::{Context, ensure};
use confab_protocol::v1::{self, ErrorCode};

use super::Target;
use super::common::*;

/// A WebPush endpoint no other run uses (never reached: nothing in these cases notifies).
fn endpoint() -> String {
    format!("https://push.example.net/up/{}", fresh_name("ep"))
}

fn webpush(token: &str) -> v1::RegisterPushTarget {
    v1::RegisterPushTarget { provider: v1::PushProvider::Webpush as i32, token: token.into(), ..Default::default() }
}

/// Whether the server sends through WebPush; when it does not, registering one is
/// FAILED_PRECONDITION (§24.1) and that is what the case checks instead.
async fn has_webpush(a: &Account) -> anyhow::Result<bool> {
    let list = a.client.list_push_targets(false).await?;
    Ok(list.providers.contains(&(v1::PushProvider::Webpush as i32)))
}

/// §24.1: a target registered by one device is listed for it with its token, for the account's
/// other devices with only the token's last 6 characters, not at all for another account (who
/// cannot unregister it: NOT_FOUND, as for a missing id); registering the same token again keeps
/// one target, a newer token of the same app replaces the older; unregistered, it is gone.
pub(super) async fn push_targets_are_per_device(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "ptA").await?;
    let b = account(&t, "ptB").await?;
    if !has_webpush(&a).await? {
        let r = a.client.register_push_target(webpush(&endpoint())).await;
        expect_code(r, ErrorCode::FailedPrecondition)?;
        return Ok(());
    }
    let token = endpoint();
    let target = a.client.register_push_target(webpush(&token)).await?;
    ensure!(target.token == token && target.enabled && target.session_id == a.auth.session_id, "{target:?}");
    let again = a.client.register_push_target(webpush(&token)).await?;
    ensure!(again.target_id == target.target_id, "registering the same token made a second target");
    // A newer token of the same device and app replaces the older one.
    let older = a.client.register_push_target(webpush(&endpoint())).await?;
    let newer = a.client.register_push_target(webpush(&endpoint())).await?;
    let listed = a.client.list_push_targets(false).await?.targets;
    ensure!(
        listed.iter().any(|x| x.target_id == newer.target_id) && listed.iter().all(|x| x.target_id != older.target_id),
        "a newer token did not replace the older one: {listed:?}"
    );
    a.client.unregister_push_target(newer.target_id).await?;
    let target = a.client.register_push_target(webpush(&token)).await?;
    let mine = a.client.list_push_targets(false).await?;
    let listed: Vec<_> = mine.targets.iter().filter(|x| x.target_id == target.target_id).collect();
    ensure!(listed.len() == 1 && listed[0].token == token, "this device's list: {:?}", mine.targets);
    let other_device = second_device(&t, &a, "second phone").await?;
    let all = other_device.client.list_push_targets(true).await?;
    let seen = all.targets.iter().find(|x| x.target_id == target.target_id).context("not listed for the account")?;
    ensure!(seen.token == token[token.len() - 6..], "another device sees {:?}", seen.token);
    ensure!(
        other_device.client.list_push_targets(false).await?.targets.iter().all(|x| x.target_id != target.target_id),
        "listed as the other device's own"
    );
    ensure!(b.client.list_push_targets(true).await?.targets.iter().all(|x| x.target_id != target.target_id));
    expect_code(b.client.unregister_push_target(target.target_id).await, ErrorCode::NotFound)?;
    expect_code(b.client.unregister_push_target(u64::MAX).await, ErrorCode::NotFound)?;
    a.client.unregister_push_target(target.target_id).await?;
    ensure!(a.client.list_push_targets(true).await?.targets.iter().all(|x| x.target_id != target.target_id));
    Ok(())
}

/// §24.1: a token registered by another account moves to it (the phone changed hands), and a
/// device that signs out loses its targets.
pub(super) async fn push_tokens_change_hands_and_leave_with_their_session(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "phA").await?;
    let b = account(&t, "phB").await?;
    if !has_webpush(&a).await? {
        return Ok(());
    }
    let token = endpoint();
    let first = a.client.register_push_target(webpush(&token)).await?;
    let taken = b.client.register_push_target(webpush(&token)).await?;
    ensure!(taken.session_id == b.auth.session_id, "{taken:?}");
    ensure!(
        a.client.list_push_targets(true).await?.targets.iter().all(|x| x.target_id != first.target_id),
        "the first account still lists a token another account registered since"
    );
    b.client.unregister_push_target(taken.target_id).await?;
    let phone = second_device(&t, &a, "soon signed out").await?;
    let own = phone.client.register_push_target(webpush(&endpoint())).await?;
    phone.client.logout().await?;
    let all = a.client.list_push_targets(true).await?;
    ensure!(all.targets.iter().all(|x| x.target_id != own.target_id), "the signed-out device's target is still listed");
    Ok(())
}

/// §24.1, §24.5: each request's bounds, refused with INVALID_ARGUMENT naming the field.
pub(super) async fn push_requests_are_bounded(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "pbA").await?;
    let field = |r: anyhow::Result<v1::Error>, name: &str| -> anyhow::Result<()> {
        let e = r?;
        ensure!(e.field == name, "the error names {:?}, not {name}", e.field);
        Ok(())
    };
    let mut r = webpush(&endpoint());
    r.provider = 0;
    field(
        expect_code(a.client.register_push_target(r).await, ErrorCode::InvalidArgument),
        "register_push_target.provider",
    )?;
    let mut r = webpush(&endpoint());
    r.provider = 99;
    field(
        expect_code(a.client.register_push_target(r).await, ErrorCode::InvalidArgument),
        "register_push_target.provider",
    )?;
    field(
        expect_code(a.client.register_push_target(webpush("")).await, ErrorCode::InvalidArgument),
        "register_push_target.token",
    )?;
    let long = format!("https://push.example.net/{}", "x".repeat(4096));
    field(
        expect_code(a.client.register_push_target(webpush(&long)).await, ErrorCode::InvalidArgument),
        "register_push_target.token",
    )?;
    let mut r = webpush(&endpoint());
    r.app_id = "a".repeat(257);
    field(
        expect_code(a.client.register_push_target(r).await, ErrorCode::InvalidArgument),
        "register_push_target.app_id",
    )?;
    let mut r = webpush(&endpoint());
    r.voip = true;
    field(
        expect_code(a.client.register_push_target(r).await, ErrorCode::InvalidArgument),
        "register_push_target.voip",
    )?;
    field(
        expect_code(a.client.list_push_deliveries(0, 101).await, ErrorCode::InvalidArgument),
        "list_push_deliveries.limit",
    )?;
    let page = a.client.list_push_deliveries(0, 0).await?;
    ensure!(page.deliveries.len() <= 50, "a default page holds {}", page.deliveries.len());
    let mut s = v1::SetPushSettings { level: 99, ..Default::default() };
    field(expect_code(a.client.set_push_settings(s).await, ErrorCode::InvalidArgument), "set_push_settings.level")?;
    s.level = 0;
    a.client.set_push_settings(s).await?;
    Ok(())
}

/// §24.3: the account's level and preview (ALL and off until changed), a conversation's own
/// level with an end, removed again with UNSPECIFIED; a conversation the caller is not in is
/// NOT_FOUND, as one that does not exist.
pub(super) async fn push_settings_per_account_and_conversation(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "psA").await?;
    let b = account(&t, "psB").await?;
    let conv = group(&a, &[]).await?;
    let set = |level: v1::PushLevel, preview: Option<bool>| v1::SetPushSettings { level: level as i32, preview };
    let s = a.client.set_push_settings(set(v1::PushLevel::Mentions, Some(true))).await?;
    ensure!(s.level == v1::PushLevel::Mentions as i32 && s.preview, "{s:?}");
    let s = a.client.set_push_settings(set(v1::PushLevel::Unspecified, None)).await?;
    ensure!(s.level == v1::PushLevel::Mentions as i32 && s.preview, "an unset field changed: {s:?}");
    let s = a.client.set_push_settings(set(v1::PushLevel::All, Some(false))).await?;
    ensure!(s.level == v1::PushLevel::All as i32 && !s.preview, "{s:?}");
    let later = now_ms() + 3_600_000;
    let own =
        v1::SetConversationPushSettings { conversation_id: conv, level: v1::PushLevel::None as i32, until_ms: later };
    let stored = a.client.set_conversation_push_settings(own).await?;
    ensure!(stored.level == v1::PushLevel::None as i32 && stored.until_ms == later, "{stored:?}");
    let s = a.client.push_settings().await?;
    ensure!(
        s.conversations.iter().any(|c| c.conversation_id == conv && c.level == v1::PushLevel::None as i32),
        "{s:?}"
    );
    let past = v1::SetConversationPushSettings { until_ms: 1, ..own };
    let e = expect_code(a.client.set_conversation_push_settings(past).await, ErrorCode::InvalidArgument)?;
    ensure!(e.field == "set_conversation_push_settings.until_ms", "{e:?}");
    let outsider = expect_code(b.client.set_conversation_push_settings(own).await, ErrorCode::NotFound)?;
    let missing = v1::SetConversationPushSettings { conversation_id: u64::from(u32::MAX) * 1024, ..own };
    let nothing = expect_code(b.client.set_conversation_push_settings(missing).await, ErrorCode::NotFound)?;
    ensure!(outsider.message == nothing.message, "a non-member learns more than about a missing conversation");
    let cleared = v1::SetConversationPushSettings { conversation_id: conv, level: 0, until_ms: 0 };
    a.client.set_conversation_push_settings(cleared).await?;
    ensure!(a.client.push_settings().await?.conversations.iter().all(|c| c.conversation_id != conv));
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
