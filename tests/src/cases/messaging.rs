//! Cases for accounts, conversations, messages, sync, receipts and typing (docs/protocol.md
//! §11-§16), creating their own throwaway accounts. A server's registration rate limit is
//! respected: a RATE_LIMITED answer is waited out and retried.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use confab_protocol::client::{Client, ClientError, Events};
use confab_protocol::v1::{self, ErrorCode, client_frame::Request, conversation_event::Body, event, response};

use super::Target;

/// A throwaway signed-in account.
struct Account {
    client: Client,
    events: Events,
    id: u64,
    name: String,
    auth: v1::AuthResult,
}

const PASSWORD: &str = "conformance password";

fn fresh_name(prefix: &str) -> String {
    let mut r = [0u8; 6];
    let _ = getrandom::fill(&mut r);
    format!("{prefix}{}", hex::encode(r))
}

/// Registers a new account, waiting out RATE_LIMITED answers.
async fn account(t: &Target, prefix: &str) -> anyhow::Result<Account> {
    let (client, events) = t.client().await?;
    let name = fresh_name(prefix);
    for _ in 0..10 {
        let r = v1::Register {
            username: name.clone(),
            password: PASSWORD.into(),
            device_name: "conformance".into(),
            ..Default::default()
        };
        match client.register(r).await {
            Ok(auth) => {
                let id = auth.me.as_ref().context("AuthResult without me")?.user_id;
                return Ok(Account { client, events, id, name, auth });
            }
            Err(ClientError::Server(e)) if e.code() == ErrorCode::RateLimited => {
                tokio::time::sleep(Duration::from_millis(e.retry_after_ms.clamp(1, 10_000))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!("registration stayed rate-limited")
}

async fn req(c: &Client, r: Request) -> Result<response::Result, ClientError> {
    c.request(r).await
}

fn code(r: Result<response::Result, ClientError>) -> Option<ErrorCode> {
    r.err().and_then(|e| e.code())
}

async fn group(a: &Account, members: &[u64]) -> anyhow::Result<u64> {
    match req(
        &a.client,
        Request::CreateConversation(v1::CreateConversation {
            kind: v1::ConversationKind::Group as i32,
            title: "conformance".into(),
            member_ids: members.to_vec(),
            ..Default::default()
        }),
    )
    .await?
    {
        response::Result::CreateConversation(c) => Ok(c.conversation_id),
        other => bail!("expected Conversation, got {other:?}"),
    }
}

async fn send(a: &Account, conv: u64, id: &str, text: &str) -> anyhow::Result<v1::SendMessageResult> {
    let r =
        v1::SendMessage { conversation_id: conv, client_msg_id: id.into(), text: text.into(), ..Default::default() };
    match req(&a.client, Request::SendMessage(r)).await? {
        response::Result::SendMessage(s) => Ok(s),
        other => bail!("expected SendMessageResult, got {other:?}"),
    }
}

async fn next_event(events: &mut Events, pick: impl Fn(&event::Event) -> bool) -> anyhow::Result<event::Event> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Some(v1::Event { event: Some(e) }) if pick(&e) => return Ok(e),
                Some(_) => continue,
                None => bail!("connection closed"),
            }
        }
    })
    .await
    .context("expected event did not arrive")?
}

/// §11.2: Register creates the account and signs the connection in.
pub(super) async fn register_signs_the_connection_in(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfreg").await?;
    ensure!(!a.auth.access_token.is_empty() && !a.auth.refresh_token.is_empty() && !a.auth.session_id.is_empty());
    let me = a.client.me().await?;
    ensure!(me.user_id == a.id && me.username == a.name, "{me:?}");
    Ok(())
}

/// §11.3: a wrong password and an unknown account answer the same UNAUTHENTICATED.
pub(super) async fn wrong_password_is_unauthenticated(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfpw").await?;
    let wrong = a.client.login(&a.name, "not the password", "x").await;
    let unknown = a.client.login(&fresh_name("cfnone"), PASSWORD, "x").await;
    match (wrong, unknown) {
        (Err(ClientError::Server(w)), Err(ClientError::Server(u)))
            if w.code() == ErrorCode::Unauthenticated && u.code() == ErrorCode::Unauthenticated =>
        {
            ensure!(w.message == u.message, "the answers differ: {w} / {u}");
            Ok(())
        }
        (w, u) => bail!("expected UNAUTHENTICATED twice, got {w:?} / {u:?}"),
    }
}

/// §11.5: an access token authenticates another connection, in Hello and with Authenticate.
pub(super) async fn token_authenticates_another_connection(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cftok").await?;
    let (c, _e) = t.client().await?;
    let info = c.authenticate(&a.auth.access_token).await?;
    ensure!(info.user_id == a.id && info.session_id == a.auth.session_id, "{info:?}");
    let mut o = t.options();
    o.access_token = Some(a.auth.access_token.clone());
    let (c2, _e2) = Client::connect(&t.url, o).await?;
    ensure!(c2.welcome().auth.as_ref().is_some_and(|w| w.user_id == a.id), "Welcome.auth missing");
    ensure!(
        code(req(&c, Request::Authenticate(v1::Authenticate { access_token: "nope".into() })).await)
            == Some(ErrorCode::Unauthenticated)
    );
    Ok(())
}

/// §11.6: Refresh rotates; presenting a spent refresh token revokes the session.
pub(super) async fn refresh_rotates_and_reuse_revokes(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfref").await?;
    let (c, _e) = t.client().await?;
    let b = c.refresh(&a.auth.refresh_token).await?;
    ensure!(b.refresh_token != a.auth.refresh_token && b.session_id == a.auth.session_id);
    let (d, _e2) = t.client().await?;
    ensure!(
        matches!(d.refresh(&a.auth.refresh_token).await, Err(ClientError::Server(e)) if e.code() == ErrorCode::Unauthenticated)
    );
    let (f, _e3) = t.client().await?;
    ensure!(
        matches!(f.refresh(&b.refresh_token).await, Err(ClientError::Server(e)) if e.code() == ErrorCode::Unauthenticated),
        "session survived reuse"
    );
    Ok(())
}

/// §11.1: requests other than sign-in need an authenticated connection.
pub(super) async fn requests_need_authentication(t: Target) -> anyhow::Result<()> {
    let (c, _e) = t.client().await?;
    for r in [
        Request::GetMe(v1::GetMe {}),
        Request::ListConversations(v1::ListConversations::default()),
        Request::Sync(v1::Sync::default()),
        Request::SendMessage(v1::SendMessage {
            conversation_id: 1,
            client_msg_id: "x".into(),
            text: "x".into(),
            ..Default::default()
        }),
    ] {
        let kind = r.kind();
        ensure!(code(req(&c, r).await) == Some(ErrorCode::Unauthenticated), "{kind} without authentication");
    }
    Ok(())
}

/// §12.2: one DIRECT conversation per pair, whoever opens it.
pub(super) async fn direct_conversation_is_unique_per_pair(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfdA").await?;
    let b = account(&t, "cfdB").await?;
    let dm = |peer| {
        Request::CreateConversation(v1::CreateConversation {
            kind: v1::ConversationKind::Direct as i32,
            member_ids: vec![peer],
            ..Default::default()
        })
    };
    let (x, y) = (req(&a.client, dm(b.id)).await?, req(&b.client, dm(a.id)).await?);
    match (x, y) {
        (response::Result::CreateConversation(x), response::Result::CreateConversation(y)) => {
            ensure!(x.conversation_id == y.conversation_id, "two DIRECT conversations for one pair");
            Ok(())
        }
        other => bail!("unexpected {other:?}"),
    }
}

/// §12.1: a non-member gets NOT_FOUND, exactly as for a missing conversation.
pub(super) async fn non_members_get_not_found(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfnmA").await?;
    let x = account(&t, "cfnmX").await?;
    let conv = group(&a, &[]).await?;
    for target in [conv, u64::MAX >> 2] {
        for r in [
            Request::GetConversation(v1::GetConversation { conversation_id: target }),
            Request::GetHistory(v1::GetHistory { conversation_id: target, ..Default::default() }),
            Request::SendMessage(v1::SendMessage {
                conversation_id: target,
                client_msg_id: "nm".into(),
                text: "x".into(),
                ..Default::default()
            }),
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

/// §13.2: a retry with the same client_msg_id returns the original message.
pub(super) async fn send_is_idempotent(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfidem").await?;
    let conv = group(&a, &[]).await?;
    let first = send(&a, conv, "once", "hello").await?;
    let again = send(&a, conv, "once", "hello").await?;
    ensure!(again.duplicate && again.message_id == first.message_id && again.seq == first.seq, "{again:?}");
    Ok(())
}

/// §14.5, §14.1: live entries reach every member with consecutive seqs.
pub(super) async fn live_events_carry_gapless_seqs(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfliveA").await?;
    let mut b = account(&t, "cfliveB").await?;
    let conv = group(&a, &[b.id]).await?;
    let s1 = send(&a, conv, "l1", "one").await?;
    let s2 = send(&a, conv, "l2", "two").await?;
    ensure!(s2.seq == s1.seq + 1, "seqs {} then {}", s1.seq, s2.seq);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let ev =
            next_event(&mut b.events, |e| matches!(e, event::Event::ConversationEvent(c) if c.conversation_id == conv))
                .await?;
        if let event::Event::ConversationEvent(v1::ConversationEvent {
            seq, body: Some(Body::MessagePosted(m)), ..
        }) = ev
        {
            seen.push((seq, m.text));
        }
    }
    ensure!(seen == vec![(s1.seq, "one".to_string()), (s2.seq, "two".to_string())], "{seen:?}");
    Ok(())
}

/// §14.3: Sync returns the user log and the missed entries, contiguous and in order.
pub(super) async fn sync_returns_missed_entries_in_order(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cfsyA").await?;
    let b = account(&t, "cfsyB").await?;
    let conv = group(&a, &[b.id]).await?;
    let last = send(&a, conv, "y2", "x").await?;
    let r = match req(&b.client, Request::Sync(v1::Sync::default())).await? {
        response::Result::Sync(r) => r,
        other => bail!("unexpected {other:?}"),
    };
    ensure!(!r.resync_required && r.epoch != 0);
    ensure!(
        r.user_updates.iter().any(
            |u| matches!(&u.body, Some(v1::user_update::Body::AddedToConversation(x)) if x.conversation_id == conv)
        )
    );
    let d = r.conversations.iter().find(|d| d.conversation_id == conv).context("no diff for the conversation")?;
    let seqs: Vec<u64> = d.events.iter().map(|e| e.seq).collect();
    ensure!(seqs == (1..=last.seq).collect::<Vec<_>>(), "{seqs:?}");
    Ok(())
}

/// §15.1, §15.3: MarkRead moves a watermark the sender sees as ReceiptUpdated.
pub(super) async fn read_marker_is_a_receipt_watermark(t: Target) -> anyhow::Result<()> {
    let mut a = account(&t, "cfrcA").await?;
    let b = account(&t, "cfrcB").await?;
    let conv = group(&a, &[b.id]).await?;
    let m = send(&a, conv, "r1", "read me").await?;
    match req(&b.client, Request::MarkRead(v1::MarkRead { conversation_id: conv, seq: m.seq })).await? {
        response::Result::MarkRead(r) => ensure!(r.read_seq == m.seq, "{r:?}"),
        other => bail!("unexpected {other:?}"),
    }
    let e = next_event(
        &mut a.events,
        |e| matches!(e, event::Event::ReceiptUpdated(r) if r.user_id == b.id && r.read_seq >= m.seq),
    )
    .await?;
    ensure!(matches!(e, event::Event::ReceiptUpdated(r) if r.conversation_id == conv));
    Ok(())
}

/// §16: typing reaches the other members.
pub(super) async fn typing_reaches_members(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cftyA").await?;
    let mut b = account(&t, "cftyB").await?;
    let conv = group(&a, &[b.id]).await?;
    req(&a.client, Request::SetTyping(v1::SetTyping { conversation_id: conv, typing: true })).await?;
    let e =
        next_event(&mut b.events, |e| matches!(e, event::Event::TypingChanged(x) if x.conversation_id == conv)).await?;
    ensure!(matches!(e, event::Event::TypingChanged(x) if x.typing && x.user_id == a.id && x.expires_in_ms > 0));
    Ok(())
}
