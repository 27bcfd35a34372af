//! Cases for accounts, sessions and tokens without one-time codes (docs/protocol.md §11.1-§11.3,
//! §11.5-§11.8, §11.10-§11.12): registration rules, sign-in and its rate limit, tokens, sessions,
//! password change, profile and account deletion, each on throwaway accounts.

use anyhow::{Context, bail, ensure};
use confab_protocol::client::ClientError;
use confab_protocol::frames::client_frame;
use confab_protocol::v1::{self, ErrorCode, SessionRevokedReason as Reason, client_frame::Request, event};
use confab_protocol::v1::{response, server_frame};

use super::common::*;
use super::{Target, expect_close, signed_in_raw, until_closed};

/// §11.2: Register creates the account and signs the connection in.
pub(super) async fn register_signs_the_connection_in(t: Target) -> anyhow::Result<()> {
    let a = new_account(&t, "cfreg").await?;
    ensure!(!a.auth.access_token.is_empty() && !a.auth.refresh_token.is_empty() && !a.auth.session_id.is_empty());
    ensure!(a.auth.access_token_expires_at_ms > 0 && a.auth.refresh_token_expires_at_ms > 0, "{:?}", a.auth);
    let me = a.client.me().await?;
    ensure!(me.user_id == a.id && me.username == a.name, "{me:?}");
    Ok(())
}

/// The error field of a refused registration.
async fn refused_field(t: &Target, r: v1::Register) -> anyhow::Result<String> {
    let (c, _e) = t.client().await?;
    let e = expect_code(patiently!(c.register(r.clone()).await), ErrorCode::InvalidArgument)?;
    Ok(e.field)
}

/// §11.1, §11.2: fields breaking the rules are INVALID_ARGUMENT naming the field; a taken
/// username (case-insensitively), email or phone is ALREADY_EXISTS naming what is taken.
pub(super) async fn register_checks_fields_and_uniqueness(t: Target) -> anyhow::Result<()> {
    let name = fresh_name("cfrv");
    let bad = |f: fn(&mut v1::Register)| {
        let mut r = registration(&fresh_name("cfrv"));
        f(&mut r);
        r
    };
    for (r, field) in [
        (bad(|r| r.username = "ab".into()), "register.username"),
        (bad(|r| r.username = format!("_{}", r.username)), "register.username"),
        (bad(|r| r.username = "deleted-123".into()), "register.username"),
        (bad(|r| r.password = "short".into()), "register.password"),
        (bad(|r| r.email = Some("not-an-address".into())), "register.email"),
        (bad(|r| r.phone = Some("+0612345678".into())), "register.phone"),
        (bad(|r| r.display_name = Some("bell\u{7}".into())), "register.display_name"),
        (bad(|r| r.device_name = "d".repeat(65)), "register.device_name"),
    ] {
        let got = refused_field(&t, r.clone()).await?;
        ensure!(got == field, "{r:?}: field {got:?}, expected {field:?}");
    }
    let (email, phone) = (format!("{name}@example.org"), fresh_phone());
    let mut first = registration(&name);
    first.email = Some(email.clone());
    first.phone = Some(phone.clone());
    account_with(&t, first).await?;
    let (c, _e) = t.client().await?;
    for (r, taken) in [
        (registration(&name.to_uppercase()), "username"),
        (v1::Register { email: Some(email.to_uppercase()), ..registration(&fresh_name("cfrv")) }, "email"),
        (v1::Register { phone: Some(phone.clone()), ..registration(&fresh_name("cfrv")) }, "phone"),
    ] {
        t.pool.count_sign_up();
        let e = expect_code(patiently!(c.register(r.clone()).await), ErrorCode::AlreadyExists)?;
        ensure!(e.message.contains(taken), "the message does not name the {taken}: {e}");
    }
    Ok(())
}

/// §11.3: a wrong password and an unknown account answer the same UNAUTHENTICATED.
pub(super) async fn wrong_password_is_unauthenticated(t: Target) -> anyhow::Result<()> {
    let a = new_account(&t, "cfpw").await?;
    let wrong = patiently!(a.client.login(&a.name, "not the password", "x").await);
    let unknown = patiently!(a.client.login(&fresh_name("cfnone"), PASSWORD, "x").await);
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

/// §11.3: the identifier is a username or an email, case-insensitively; each login is a new
/// session; successful logins do not use up the account's attempt budget.
pub(super) async fn login_by_username_or_email(t: Target) -> anyhow::Result<()> {
    let name = fresh_name("cfLogin");
    let email = format!("{name}@Example.org");
    let a = account_with(&t, v1::Register { email: Some(email.clone()), ..registration(&name) }).await?;
    let (c, _e) = t.client().await?;
    let mut sessions = vec![a.auth.session_id.clone()];
    for identifier in [name.to_uppercase(), email.to_lowercase(), name.clone()] {
        let r = patiently!(c.login(&identifier, PASSWORD, "again").await)?;
        ensure!(r.me.as_ref().is_some_and(|m| m.user_id == a.id) && !r.created, "{identifier}: {r:?}");
        ensure!(!sessions.contains(&r.session_id), "login reused a session");
        sessions.push(r.session_id);
    }
    // More successes than the default budget of 5 attempts: none is refused.
    for _ in 0..4 {
        patiently!(c.login(&name, PASSWORD, "again").await)?;
    }
    let e = expect_code(patiently!(c.login(&name, "not the password", "x").await), ErrorCode::Unauthenticated)?;
    ensure!(e.message == "wrong username, email or password", "{e}");
    Ok(())
}

/// §11.3, §11.12: after the default 5 failed attempts on an account the next is RATE_LIMITED with
/// retry_after_ms, even with the right password. (The per-IP limit, which a busy runner may hit
/// first, is waited out for the first 5.)
pub(super) async fn login_attempts_are_rate_limited(t: Target) -> anyhow::Result<()> {
    let a = new_account(&t, "cfbrute").await?;
    let (c, _e) = t.client().await?;
    for i in 0..5 {
        let e = expect_code(patiently!(c.login(&a.name, "wrong password", "x").await), ErrorCode::Unauthenticated);
        e.with_context(|| format!("attempt {}", i + 1))?;
    }
    let e = expect_code(c.login(&a.name, "wrong password", "x").await, ErrorCode::RateLimited)?;
    ensure!(e.retry_after_ms > 0, "RATE_LIMITED without retry_after_ms: {e}");
    let e = expect_code(c.login(&a.name, PASSWORD, "x").await, ErrorCode::RateLimited)?;
    ensure!(e.retry_after_ms > 0, "{e}");
    Ok(())
}

/// §11.5: an access token authenticates another connection, in Hello and with Authenticate.
pub(super) async fn token_authenticates_another_connection(t: Target) -> anyhow::Result<()> {
    let a = account(&t, "cftok").await?;
    let (c, _e) = t.client().await?;
    let info = c.authenticate(&a.auth.access_token).await?;
    ensure!(info.user_id == a.id && info.session_id == a.auth.session_id, "{info:?}");
    let mut o = t.options();
    o.access_token = Some(a.auth.access_token.clone());
    let (c2, _e2) = t.client_with(o).await?;
    ensure!(c2.welcome().auth.as_ref().is_some_and(|w| w.user_id == a.id), "Welcome.auth missing");
    ensure!(
        code(req(&c, Request::Authenticate(v1::Authenticate { access_token: "nope".into() })).await)
            == Some(ErrorCode::Unauthenticated)
    );
    Ok(())
}

/// §11.6: Refresh rotates; presenting a spent refresh token revokes the session, and its live
/// connections get SessionRevoked (REFRESH_REUSED) and close 4004.
pub(super) async fn refresh_rotates_and_reuse_revokes(t: Target) -> anyhow::Result<()> {
    let mut a = new_account(&t, "cfref").await?;
    let (c, mut c_events) = t.client().await?;
    let b = c.refresh(&a.auth.refresh_token).await?;
    ensure!(b.refresh_token != a.auth.refresh_token && b.session_id == a.auth.session_id);
    ensure!(c.me().await?.user_id == a.id, "Refresh did not authenticate the connection");
    let (d, _e2) = t.client().await?;
    expect_code(d.refresh(&a.auth.refresh_token).await, ErrorCode::Unauthenticated)?;
    expect_revoked(&mut a.events, &a.auth.session_id, Reason::RefreshReused).await?;
    expect_revoked(&mut c_events, &a.auth.session_id, Reason::RefreshReused).await?;
    let (f, _e3) = t.client().await?;
    expect_code(f.refresh(&b.refresh_token).await, ErrorCode::Unauthenticated).context("session survived reuse")?;
    Ok(())
}

/// §11.1: requests other than sign-in need an authenticated connection.
pub(super) async fn requests_need_authentication(t: Target) -> anyhow::Result<()> {
    let (c, _e) = t.client().await?;
    for r in [
        Request::GetMe(v1::GetMe {}),
        Request::ListSessions(v1::ListSessions {}),
        Request::ListConversations(v1::ListConversations::default()),
        Request::Sync(v1::Sync::default()),
        Request::SendMessage(message(1, "x", "x")),
        Request::GetUser(v1::GetUser { user_id: 1 }),
        Request::ListNotifications(v1::ListNotifications::default()),
    ] {
        let kind = r.kind();
        ensure!(code(req(&c, r).await) == Some(ErrorCode::Unauthenticated), "{kind} without authentication");
    }
    Ok(())
}

/// §11.7: Logout ends the session: this connection stays open but unauthenticated, the session's
/// other connections get SessionRevoked (LOGGED_OUT) and close 4004, its tokens stop working.
pub(super) async fn logout_ends_the_session(t: Target) -> anyhow::Result<()> {
    let a = new_account(&t, "cfout").await?;
    let (other, mut other_events) = t.client().await?;
    other.authenticate(&a.auth.access_token).await?;
    a.client.logout().await?;
    expect_revoked(&mut other_events, &a.auth.session_id, Reason::LoggedOut).await?;
    expect_code(a.client.me().await, ErrorCode::Unauthenticated)?;
    a.client.ping().await.context("the connection did not stay open")?;
    let (c, _e) = t.client().await?;
    expect_code(c.authenticate(&a.auth.access_token).await, ErrorCode::Unauthenticated)?;
    expect_code(c.refresh(&a.auth.refresh_token).await, ErrorCode::Unauthenticated)?;
    Ok(())
}

/// §11.7: ListSessions shows the live sessions, most recently seen first, marking the current
/// one; RevokeSession ends another (REVOKED), refuses the own session (FAILED_PRECONDITION) and
/// answers NOT_FOUND for unknown, ended and foreign sessions.
pub(super) async fn sessions_are_listed_and_revoked(t: Target) -> anyhow::Result<()> {
    let a = new_account(&t, "cfses").await?;
    let mut a2 = second_device(&t, &a, "second device").await?;
    let x = account(&t, "cfsesX").await?;
    let list = a.client.sessions().await?;
    ensure!(list.len() == 2, "{list:?}");
    ensure!(list.windows(2).all(|w| w[0].last_seen_at_ms >= w[1].last_seen_at_ms), "not most recent first: {list:?}");
    let me = list.iter().find(|s| s.session_id == a.auth.session_id).context("own session missing")?;
    let other = list.iter().find(|s| s.session_id == a2.auth.session_id).context("second session missing")?;
    ensure!(me.current && !other.current, "{list:?}");
    ensure!(other.device_name == "second device" && other.created_at_ms > 0, "{other:?}");
    let revoke = |id: &str| Request::RevokeSession(v1::RevokeSession { session_id: id.into() });
    ensure!(code(req(&a.client, revoke(&a.auth.session_id)).await) == Some(ErrorCode::FailedPrecondition));
    ensure!(code(req(&a.client, revoke("no-such-session")).await) == Some(ErrorCode::NotFound));
    ensure!(code(req(&a.client, revoke(&x.auth.session_id)).await) == Some(ErrorCode::NotFound));
    req(&a.client, revoke(&a2.auth.session_id)).await?;
    expect_revoked(&mut a2.events, &a2.auth.session_id, Reason::Revoked).await?;
    let left = a.client.sessions().await?;
    ensure!(left.len() == 1 && left[0].session_id == a.auth.session_id, "{left:?}");
    ensure!(code(req(&a.client, revoke(&a2.auth.session_id)).await) == Some(ErrorCode::NotFound));
    x.client.me().await.context("another user's session was touched")?;
    Ok(())
}

/// §11.8: a wrong current password is PERMISSION_DENIED; a change ends every other session
/// (PASSWORD_CHANGED) and keeps this one; only the new password signs in.
pub(super) async fn change_password_ends_other_sessions(t: Target) -> anyhow::Result<()> {
    let a = new_account(&t, "cfchpw").await?;
    let mut a2 = second_device(&t, &a, "other").await?;
    let change = |current: &str, new: &str| {
        Request::ChangePassword(v1::ChangePassword { current_password: current.into(), new_password: new.into() })
    };
    ensure!(
        code(req(&a.client, change("wrong password", "brand new password")).await) == Some(ErrorCode::PermissionDenied)
    );
    let e = expect_code(req(&a.client, change(PASSWORD, "short")).await, ErrorCode::InvalidArgument)?;
    ensure!(e.field == "change_password.new_password", "{e:?}");
    match req(&a.client, change(PASSWORD, "brand new password")).await? {
        response::Result::ChangePassword(r) => ensure!(r.revoked_sessions == 1, "{r:?}"),
        other => bail!("expected ChangePasswordResult, got {other:?}"),
    }
    expect_revoked(&mut a2.events, &a2.auth.session_id, Reason::PasswordChanged).await?;
    ensure!(a.client.me().await?.user_id == a.id, "this session ended too");
    let (c, _e) = t.client().await?;
    expect_code(patiently!(c.login(&a.name, PASSWORD, "x").await), ErrorCode::Unauthenticated)?;
    patiently!(c.login(&a.name, "brand new password", "x").await)?;
    Ok(())
}

/// §11.10, §18: GetMe shows the account; UpdateProfile leaves absent fields, clears with an empty
/// string, and refuses over-long text (characters, not bytes) or control characters.
pub(super) async fn profile_is_read_and_updated(t: Target) -> anyhow::Result<()> {
    let name = fresh_name("cfprof");
    let (email, phone) = (format!("{name}@example.org"), fresh_phone());
    let r = v1::Register {
        display_name: Some("Ada".into()),
        email: Some(email.clone()),
        phone: Some(phone.clone()),
        ..registration(&name)
    };
    let a = account_with(&t, r).await?;
    let me = a.client.me().await?;
    ensure!(me.username == name && me.display_name == "Ada" && me.email == email && me.phone == phone, "{me:?}");
    ensure!(me.has_password && me.created_at_ms > 0 && me.status_text.is_empty(), "{me:?}");
    let update = async |d: Option<String>, s: Option<String>| {
        call!(a.client, UpdateProfile, v1::UpdateProfile { display_name: d, status_text: s, avatar_ref: None })
    };
    let me = update(None, Some("é".repeat(140))).await?;
    ensure!(me.display_name == "Ada" && me.status_text == "é".repeat(140), "{me:?}");
    let me = update(Some(String::new()), None).await?;
    ensure!(me.display_name.is_empty() && me.status_text == "é".repeat(140), "{me:?}");
    for (d, s, field) in [
        (None, Some("x".repeat(141)), "update_profile.status_text"),
        (Some("x".repeat(65)), None, "update_profile.display_name"),
        (Some("tab\there".to_string()), None, "update_profile.display_name"),
    ] {
        let e = expect_code(update(d, s).await, ErrorCode::InvalidArgument)?;
        ensure!(e.field == field, "{e:?}");
    }
    let b = account(&t, "cfprofB").await?;
    let seen = call!(b.client, GetUser, v1::GetUser { user_id: a.id })?;
    ensure!(seen.username == name && seen.status_text == "é".repeat(140) && !seen.deleted, "{seen:?}");
    Ok(())
}

/// §11.11: a wrong password is PERMISSION_DENIED; deletion sends SessionRevoked (ACCOUNT_DELETED)
/// before the response and closes with 4004; the username is freed; posted content stays, shown
/// as from `deleted-<user_id>` with no display name.
pub(super) async fn delete_account_removes_personal_data(t: Target) -> anyhow::Result<()> {
    let name = fresh_name("cfdel");
    let mut a = account_with(&t, v1::Register { display_name: Some("Gone".into()), ..registration(&name) }).await?;
    let b = account(&t, "cfdelB").await?;
    let conv = group(&a, &[b.id]).await?;
    let posted = send(&a, conv, "d1", "before deletion").await?;
    let delete = |p: &str| Request::DeleteAccount(v1::DeleteAccount { password: p.into() });
    ensure!(code(req(&a.client, delete("wrong password")).await) == Some(ErrorCode::PermissionDenied));
    let mut raw = signed_in_raw(&t, &a.auth.access_token).await?;
    raw.send_frame(&client_frame(3, delete(PASSWORD))).await?;
    let (frames, info) = until_closed(&mut raw).await?;
    expect_close(&info, v1::CloseCode::SessionRevoked)?;
    let revoked = frames.iter().position(|f| {
        matches!(&f.frame, Some(server_frame::Frame::Event(v1::Event { event: Some(event::Event::SessionRevoked(r)) }))
            if r.reason() == Reason::AccountDeleted)
    });
    let answered = frames.iter().position(|f| {
        matches!(&f.frame, Some(server_frame::Frame::Response(r))
            if r.request_id == 3 && matches!(r.result, Some(response::Result::DeleteAccount(_))))
    });
    match (revoked, answered) {
        (Some(r), Some(d)) => ensure!(r < d, "the response came before SessionRevoked"),
        _ => bail!("expected SessionRevoked and the DeleteAccount response, got {frames:?}"),
    }
    expect_revoked(&mut a.events, &a.auth.session_id, Reason::AccountDeleted).await?;
    let gone = call!(b.client, GetUser, v1::GetUser { user_id: a.id })?;
    ensure!(gone.deleted && gone.username == format!("deleted-{}", a.id) && gone.display_name.is_empty(), "{gone:?}");
    let kept = history(&b, conv).await?;
    ensure!(
        kept.iter().any(|m| m.message_id == posted.message_id && m.sender_id == a.id && m.text == "before deletion"),
        "the deleted user's message left the conversation: {kept:?}"
    );
    let (c, _e) = t.client().await?;
    expect_code(c.refresh(&a.auth.refresh_token).await, ErrorCode::Unauthenticated)?;
    let again = account_with(&t, registration(&name)).await.context("the username was not freed")?;
    ensure!(again.id != a.id, "the new account reuses the deleted user id");
    Ok(())
}
