//! Helpers shared by the cases that need accounts: shared accounts from the run's pool, throwaway
//! sign-ups that wait out rate limits, conversations and messages in one call, waiting for
//! events, and reading one-time codes.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use confab_protocol::client::{Client, ClientError, Events};
use confab_protocol::v1::{self, ErrorCode, client_frame::Request, conversation_event::Body, event, response};

pub(super) use crate::call;
pub(super) use crate::util::expect_code;

use super::Target;

/// How long a case waits for an event it expects.
pub(super) const WAIT: Duration = Duration::from_secs(10);

/// The password of every throwaway account.
pub(super) const PASSWORD: &str = "conformance password";

/// A throwaway signed-in account.
pub(super) struct Account {
    pub client: Client,
    pub events: Events,
    pub id: u64,
    pub name: String,
    pub auth: v1::AuthResult,
}

/// A name no other run uses: `prefix` and 12 random hex digits.
pub(super) fn fresh_name(prefix: &str) -> String {
    let mut r = [0u8; 6];
    let _ = getrandom::fill(&mut r);
    format!("{prefix}{}", hex::encode(r))
}

/// A phone number (E.164) no other run uses.
pub(super) fn fresh_phone() -> String {
    crate::util::unique_phone()
}

/// Evaluates the call expression (ending in `.await`) again while the server answers
/// RATE_LIMITED, after the `retry_after_ms` it names; at most 10 waits.
macro_rules! patiently {
    ($call:expr) => {{
        let mut waits = 0;
        loop {
            match $call {
                Err(confab_protocol::client::ClientError::Server(e))
                    if e.code() == confab_protocol::v1::ErrorCode::RateLimited && waits < 10 =>
                {
                    waits += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(e.retry_after_ms.clamp(1, 30_000))).await;
                }
                other => break other,
            }
        }
    }};
}
pub(super) use patiently;

/// A Register request for `name` with the shared password.
pub(super) fn registration(name: &str) -> v1::Register {
    v1::Register {
        username: name.into(),
        password: PASSWORD.into(),
        device_name: "conformance".into(),
        ..Default::default()
    }
}

/// Registers `r` on a new connection, waiting out RATE_LIMITED answers. Counts against the
/// case's [`super::pool::SIGN_UPS`].
pub(super) async fn account_with(t: &Target, r: v1::Register) -> anyhow::Result<Account> {
    t.pool.count_sign_up();
    let (client, events) = t.client().await?;
    let auth = patiently!(client.register(r.clone()).await)?;
    let me = auth.me.as_ref().context("AuthResult without me")?;
    let (id, name) = (me.user_id, me.username.clone());
    Ok(Account { client, events, id, name, auth })
}

/// Registers a new account with a fresh name starting with `prefix`: for cases that change the
/// account itself (its sessions, password, privacy, blocks, contacts, presence, notifications,
/// calls) or need one nobody else used. Counts against the case's [`super::pool::SIGN_UPS`].
pub(super) async fn new_account(t: &Target, prefix: &str) -> anyhow::Result<Account> {
    account_with(t, registration(&fresh_name(prefix))).await
}

/// Some signed-in user, on a new connection: one of the run's shared accounts
/// ([`super::pool::AccountPool`]), distinct from the ones the case took before (up to
/// [`super::pool::POOL_SIZE`]). Other cases used it before: look only at what this case made.
pub(super) async fn account(t: &Target, _role: &str) -> anyhow::Result<Account> {
    t.pool.lend(t).await
}

/// Another device (a new session) of `a`, signed in with the password.
pub(super) async fn second_device(t: &Target, a: &Account, device: &str) -> anyhow::Result<Account> {
    let (client, events) = t.client().await?;
    let auth = patiently!(client.login(&a.name, PASSWORD, device).await)?;
    Ok(Account { client, events, id: a.id, name: a.name.clone(), auth })
}

pub(super) async fn req(c: &Client, r: Request) -> Result<response::Result, ClientError> {
    c.request(r).await
}

/// The error code of a call, None when it succeeded.
pub(super) fn code(r: Result<response::Result, ClientError>) -> Option<ErrorCode> {
    r.err().and_then(|e| e.code())
}

fn create(kind: v1::ConversationKind, title: &str, members: &[u64]) -> v1::CreateConversation {
    v1::CreateConversation {
        kind: kind as i32,
        title: title.into(),
        member_ids: members.to_vec(),
        ..Default::default()
    }
}

/// A GROUP owned by `a` with `members`; returns its id.
pub(super) async fn group(a: &Account, members: &[u64]) -> anyhow::Result<u64> {
    Ok(call!(a.client, CreateConversation, create(v1::ConversationKind::Group, "conformance", members))?
        .conversation_id)
}

/// A CHANNEL owned by `a` titled `title`; returns its id.
pub(super) async fn channel(a: &Account, title: &str) -> anyhow::Result<u64> {
    Ok(call!(a.client, CreateConversation, create(v1::ConversationKind::Channel, title, &[]))?.conversation_id)
}

/// The DIRECT conversation of `a` with `peer`.
pub(super) async fn direct(a: &Account, peer: u64) -> Result<v1::Conversation, ClientError> {
    call!(a.client, CreateConversation, create(v1::ConversationKind::Direct, "", &[peer]))
}

/// A SendMessage request.
/// The idempotency key (§13.2) labelled `id` for conversation `conv`: the conversation is part of
/// it, so cases sharing a pooled account never reuse each other's keys.
pub(super) fn key(conv: u64, id: &str) -> String {
    crate::util::msg_key(&format!("{conv}/{id}"))
}

pub(super) fn message(conv: u64, id: &str, text: &str) -> v1::SendMessage {
    v1::SendMessage { conversation_id: conv, client_msg_id: key(conv, id), text: text.into(), ..Default::default() }
}

pub(super) async fn send(a: &Account, conv: u64, id: &str, text: &str) -> anyhow::Result<v1::SendMessageResult> {
    Ok(call!(a.client, SendMessage, message(conv, id, text))?)
}

pub(super) async fn get(a: &Account, conv: u64) -> Result<v1::Conversation, ClientError> {
    call!(a.client, GetConversation, v1::GetConversation { conversation_id: conv })
}

/// The newest page of history (up to 200 messages).
pub(super) async fn history(a: &Account, conv: u64) -> anyhow::Result<Vec<v1::Message>> {
    let h = call!(a.client, GetHistory, v1::GetHistory { conversation_id: conv, limit: 200, ..Default::default() })?;
    Ok(h.messages)
}

/// Every member of `conv`, as `a` sees them.
pub(super) async fn members(a: &Account, conv: u64) -> anyhow::Result<Vec<v1::Member>> {
    let r = call!(a.client, ListMembers, v1::ListMembers { conversation_id: conv, after_user_id: 0, limit: 500 })?;
    Ok(r.members)
}

/// The role of `user` in `conv`, None when not a member.
pub(super) async fn role_of(a: &Account, conv: u64, user: u64) -> anyhow::Result<Option<v1::MemberRole>> {
    Ok(members(a, conv).await?.iter().find(|m| m.user_id == user).map(|m| m.role()))
}

/// `a`'s whole log of `conv`, from a Sync with no cursors.
pub(super) async fn log_of(a: &Account, conv: u64) -> anyhow::Result<Vec<v1::ConversationEvent>> {
    let r = call!(a.client, Sync, v1::Sync { limit_per_conversation: 1000, ..Default::default() })?;
    let d = r.conversations.into_iter().find(|d| d.conversation_id == conv).context("no diff for the conversation")?;
    ensure!(!d.has_more, "the log did not fit one Sync");
    Ok(d.events)
}

/// The next event `pick` maps to Some, skipping the others.
pub(super) async fn next<T>(events: &mut Events, mut pick: impl FnMut(event::Event) -> Option<T>) -> anyhow::Result<T> {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Some(v1::Event { event: Some(e) }) => {
                    if let Some(x) = pick(e) {
                        return Ok(x);
                    }
                }
                Some(_) => continue,
                None => bail!("connection closed ({:?})", events.close_info()),
            }
        }
    })
    .await
    .context("expected event did not arrive")?
}

/// The next event for which `pick` is true.
pub(super) async fn next_event(
    events: &mut Events,
    pick: impl Fn(&event::Event) -> bool,
) -> anyhow::Result<event::Event> {
    next(events, |e| pick(&e).then_some(e)).await
}

/// The next live entry of `conv` whose body `pick` accepts.
pub(super) async fn entry(
    events: &mut Events,
    conv: u64,
    pick: impl Fn(&Body) -> bool,
) -> anyhow::Result<v1::ConversationEvent> {
    next(events, |e| match e {
        event::Event::ConversationEvent(c) if c.conversation_id == conv && c.body.as_ref().is_some_and(&pick) => {
            Some(c)
        }
        _ => None,
    })
    .await
}

/// The next live user-log entry whose body `pick` accepts.
pub(super) async fn user_entry(
    events: &mut Events,
    pick: impl Fn(&v1::user_update::Body) -> bool,
) -> anyhow::Result<v1::UserUpdate> {
    next(events, |e| match e {
        event::Event::UserUpdate(u) if u.body.as_ref().is_some_and(&pick) => Some(u),
        _ => None,
    })
    .await
}

/// Expects `SessionRevoked { session_id, reason }`, then the connection closed with 4004 (§11.1).
pub(super) async fn expect_revoked(
    events: &mut Events,
    session_id: &str,
    reason: v1::SessionRevokedReason,
) -> anyhow::Result<()> {
    let r = next(events, |e| match e {
        event::Event::SessionRevoked(r) => Some(r),
        _ => None,
    })
    .await?;
    ensure!(r.session_id == session_id && r.reason() == reason, "expected {reason:?} for {session_id}, got {r:?}");
    tokio::time::timeout(WAIT, async { while events.recv().await.is_some() {} })
        .await
        .context("connection not closed after SessionRevoked")?;
    let info = events.close_info().context("no close info")?;
    ensure!(info.code == Some(v1::CloseCode::SessionRevoked as u32), "closed with {info}");
    Ok(())
}

/// The one-time code the server sent to `to` (a phone number or email address).
pub(super) async fn code_for(t: &Target, to: &str) -> anyhow::Result<String> {
    t.codes.as_ref().context("this case needs a code sink (--code-sink)")?.code_for(to).await
}
