//! Small helpers shared by the integration tests.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use confab_protocol::client::{ClientError, Events};
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
