//! Small helpers shared by the integration tests.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use confab_protocol::client::{Client, ClientError, Events};
use confab_protocol::v1::{self, CloseCode, ErrorCode, event};

/// The password every test account uses.
pub const PASSWORD: &str = "correct horse battery";

/// A username no other test in this process uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let mut r = [0u8; 3];
    let _ = getrandom::fill(&mut r);
    format!("{prefix}{}_{}", N.fetch_add(1, Ordering::Relaxed), hex::encode(r))
}

/// A phone number no other test in this process uses.
pub fn unique_phone() -> String {
    let mut r = [0u8; 4];
    let _ = getrandom::fill(&mut r);
    format!("+336{:08}", u32::from_le_bytes(r) % 100_000_000)
}

/// A Register request for `username` with the test password.
pub fn register(username: &str) -> v1::Register {
    v1::Register {
        username: username.into(),
        password: PASSWORD.into(),
        device_name: "test device".into(),
        ..Default::default()
    }
}

/// The error code of a failed call, or an error when it succeeded.
pub fn err_code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> anyhow::Result<ErrorCode> {
    match r {
        Err(ClientError::Server(e)) => Ok(e.code()),
        Err(other) => bail!("expected a server error, got {other}"),
        Ok(v) => bail!("expected an error, got {v:?}"),
    }
}

/// Expects the call to fail with `code`; returns the error.
pub fn expect_code<T: std::fmt::Debug>(r: Result<T, ClientError>, code: ErrorCode) -> anyhow::Result<v1::Error> {
    match r {
        Err(ClientError::Server(e)) if e.code() == code => Ok(e),
        Err(other) => bail!("expected {}, got {other}", code.as_str_name()),
        Ok(v) => bail!("expected {}, got {v:?}", code.as_str_name()),
    }
}

/// Waits for SessionRevoked then the close with SESSION_REVOKED; returns how long it took.
pub async fn expect_revoked(events: &mut Events) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .context("no SessionRevoked within 5 s")?
        .context("closed without SessionRevoked")?;
    ensure!(matches!(ev.event, Some(event::Event::SessionRevoked(_))), "expected SessionRevoked, got {ev:?}");
    let rest = tokio::time::timeout(Duration::from_secs(5), events.recv()).await.context("not closed within 5 s")?;
    ensure!(rest.is_none(), "more events after SessionRevoked: {rest:?}");
    let info = events.close_info().context("no close info")?;
    ensure!(info.code == Some(CloseCode::SessionRevoked as u32), "closed with {info}");
    Ok(start.elapsed())
}

/// Sends a request and unwraps the result variant of the same name:
/// `call!(client, SendMessage, v1::SendMessage { .. })` → `Result<v1::SendMessageResult, ClientError>`.
#[macro_export]
macro_rules! call {
    ($c:expr, $variant:ident, $req:expr) => {{
        match $c.request(confab_protocol::v1::client_frame::Request::$variant($req)).await {
            Ok(confab_protocol::v1::response::Result::$variant(r)) => Ok(r),
            Ok(other) => Err(confab_protocol::client::unexpected(stringify!($variant), &other)),
            Err(e) => Err(e),
        }
    }};
}

/// A signed-in client with its events and identity.
#[allow(missing_debug_implementations)]
pub struct User {
    pub client: confab_protocol::client::Client,
    pub events: Events,
    pub id: u64,
    pub name: String,
    pub auth: v1::AuthResult,
}

/// Registers a fresh user on a new connection.
pub async fn new_user(
    s: &crate::harness::TestServer,
    t: crate::harness::Transport,
    prefix: &str,
) -> anyhow::Result<User> {
    let (client, events) = s.connect(t).await?;
    let name = unique(prefix);
    let auth = client.register(register(&name)).await?;
    let id = auth.me.as_ref().context("me")?.user_id;
    Ok(User { client, events, id, name, auth })
}

/// Another device (session) of `u`, signed in with its password.
pub async fn second_device(
    s: &crate::harness::TestServer,
    t: crate::harness::Transport,
    u: &User,
) -> anyhow::Result<User> {
    let (client, events) = s.connect(t).await?;
    let auth = client.login(&u.name, PASSWORD, "second device").await?;
    Ok(User { client, events, id: u.id, name: u.name.clone(), auth })
}

/// The next ConversationEvent from `events` within 5 s, skipping other events.
pub async fn next_conv_event(events: &mut Events) -> anyhow::Result<v1::ConversationEvent> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Some(v1::Event { event: Some(event::Event::ConversationEvent(e)) }) => return Ok(e),
                Some(_) => continue,
                None => bail!("connection closed"),
            }
        }
    })
    .await
    .context("no conversation event within 5 s")?
}

/// The next event for which `pick` returns something, within `wait`, skipping others.
pub async fn next_matching<T>(
    events: &mut Events,
    wait: Duration,
    pick: impl Fn(&event::Event) -> Option<T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(wait, async {
        loop {
            match events.recv().await {
                Some(v1::Event { event: Some(e) }) => {
                    if let Some(x) = pick(&e) {
                        return Ok(x);
                    }
                }
                Some(_) => continue,
                None => bail!("connection closed"),
            }
        }
    })
    .await
    .context("expected event did not come")?
}

/// A CreateConversation for a group titled `title` with `members` (besides the creator).
pub fn group(title: &str, members: &[u64]) -> v1::CreateConversation {
    v1::CreateConversation {
        kind: v1::ConversationKind::Group as i32,
        title: title.into(),
        member_ids: members.to_vec(),
        ..Default::default()
    }
}

/// A CreateConversation for the direct conversation with `peer`.
pub fn direct(peer: u64) -> v1::CreateConversation {
    v1::CreateConversation { kind: v1::ConversationKind::Direct as i32, member_ids: vec![peer], ..Default::default() }
}

/// The idempotency key (§13.2) a test names `label`: a UUID derived from the label (version 5),
/// so the same label is the same key and tests can read as "m1", "m2".
pub fn msg_key(label: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, label.as_bytes()).hyphenated().to_string()
}

/// A SendMessage of `text` with the client id labelled `id` ([`msg_key`]).
pub fn send(conv: u64, id: &str, text: &str) -> v1::SendMessage {
    v1::SendMessage { conversation_id: conv, client_msg_id: msg_key(id), text: text.into(), ..Default::default() }
}

/// RequestCode for signing in with `phone` (§11.4), the raw result.
pub async fn request_code(c: &Client, phone: &str) -> Result<v1::response::Result, ClientError> {
    c.request(v1::client_frame::Request::RequestCode(v1::RequestCode {
        phone: phone.into(),
        purpose: v1::CodePurpose::SignIn as i32,
    }))
    .await
}

/// VerifyCode with `phone` and `code` (§11.4), the raw result.
pub async fn verify_code(c: &Client, phone: &str, code: &str) -> Result<v1::response::Result, ClientError> {
    c.request(v1::client_frame::Request::VerifyCode(v1::VerifyCode {
        phone: phone.into(),
        code: code.into(),
        device_name: "x".into(),
        username: None,
    }))
    .await
}
