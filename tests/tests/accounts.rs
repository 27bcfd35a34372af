//! Every accounts request (docs/protocol.md §11), on both transports and both stores.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use confab_conformance::harness::{TestFn, TestServer, Transport};
use confab_conformance::util::{PASSWORD, err_code, expect_code, expect_revoked, register, unique, unique_phone};
use confab_protocol::client::Client;
use confab_protocol::v1::{self, ErrorCode, client_frame::Request, response::Result as R};

const TESTS: &[(&str, TestFn)] = confab_conformance::named_tests![
    register_signs_in_and_validates,
    login_by_username_or_email,
    phone_code_signs_up_then_in,
    authenticate_and_hello_token,
    refresh_rotates_and_signs_in,
    logout_closes_the_sessions_other_connections,
    list_and_revoke_sessions,
    change_password_revokes_other_sessions,
    password_reset_by_code,
    get_me_and_update_profile,
    delete_account_removes_personal_data,
    requests_need_authentication,
];

confab_conformance::matrix_tests!(TESTS);

async fn connect(s: &TestServer, t: Transport) -> anyhow::Result<(Client, confab_protocol::client::Events)> {
    s.connect(t).await
}

/// §11.2
async fn register_signs_in_and_validates(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let (c, _ev) = connect(s, t).await?;
    let name = unique("Reg");
    let mut r = register(&name);
    r.email = Some(format!("{name}@example.org"));
    r.display_name = Some("Reggie".into());
    let a = c.register(r).await?;
    let me = a.me.context("no me")?;
    ensure!(me.username == name && me.display_name == "Reggie" && me.has_password, "{me:?}");
    ensure!(!a.session_id.is_empty() && !a.access_token.is_empty() && a.refresh_token.starts_with("cfr1_"));
    ensure!(a.access_token_expires_at_ms > confab_protocol::frames::now_ms(), "access token already expired");
    ensure!(a.refresh_token_expires_at_ms > a.access_token_expires_at_ms);
    ensure!(c.me().await?.user_id == me.user_id, "connection not signed in");
    // Unique case-insensitively, for the username and the email.
    let (c2, _e2) = connect(s, t).await?;
    let e = expect_code(c2.register(register(&name.to_uppercase())).await.map(|_| ()), ErrorCode::AlreadyExists)?;
    ensure!(e.message.contains("username"), "{e}");
    let mut dup = register(&unique("Other"));
    dup.email = Some(format!("{}@EXAMPLE.org", name.to_uppercase()));
    let e = expect_code(c2.register(dup).await.map(|_| ()), ErrorCode::AlreadyExists)?;
    ensure!(e.message.contains("email"), "{e}");
    let e = expect_code(c2.register(register("x")).await.map(|_| ()), ErrorCode::InvalidArgument)?;
    ensure!(e.field == "register.username", "{e}");
    let mut short = register(&unique("short"));
    short.password = "1234567".into();
    let e = expect_code(c2.register(short).await.map(|_| ()), ErrorCode::InvalidArgument)?;
    ensure!(e.field == "register.password", "{e}");
    let mut bad_phone = register(&unique("phone"));
    bad_phone.phone = Some("0612".into());
    ensure!(err_code(c2.register(bad_phone).await)? == ErrorCode::InvalidArgument);
    Ok(())
}

/// §11.3
async fn login_by_username_or_email(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let (c, _ev) = connect(s, t).await?;
    let name = unique("Log");
    let mut r = register(&name);
    r.email = Some(format!("{name}@example.org"));
    let user_id = c.register(r).await?.me.context("me")?.user_id;
    let (c2, _e2) = connect(s, t).await?;
    let a = c2.login(&name.to_lowercase(), PASSWORD, "phone").await?;
    ensure!(a.me.as_ref().map(|m| m.user_id) == Some(user_id));
    let (c3, _e3) = connect(s, t).await?;
    let b = c3.login(&format!("{}@Example.ORG", name.to_uppercase()), PASSWORD, "tablet").await?;
    ensure!(b.session_id != a.session_id, "each login is its own session");
    let wrong = expect_code(c3.login(&name, "not the password", "x").await, ErrorCode::Unauthenticated)?;
    let unknown = expect_code(c3.login(&unique("nobody"), PASSWORD, "x").await, ErrorCode::Unauthenticated)?;
    ensure!(wrong.message == unknown.message, "unknown account distinguishable: {wrong} / {unknown}");
    Ok(())
}

async fn request_code(c: &Client, phone: &str) -> anyhow::Result<v1::RequestCodeResult> {
    let r = v1::RequestCode { phone: phone.into(), purpose: v1::CodePurpose::SignIn as i32 };
    match c.request(Request::RequestCode(r)).await? {
        R::RequestCode(x) => Ok(x),
        other => anyhow::bail!("unexpected {other:?}"),
    }
}

async fn verify_code(c: &Client, phone: &str, code: &str, username: Option<String>) -> anyhow::Result<v1::AuthResult> {
    let r = v1::VerifyCode { phone: phone.into(), code: code.into(), device_name: "phone".into(), username };
    match c.request(Request::VerifyCode(r)).await? {
        R::VerifyCode(x) => Ok(x),
        other => anyhow::bail!("unexpected {other:?}"),
    }
}

/// §11.4
async fn phone_code_signs_up_then_in(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let (c, _ev) = connect(s, t).await?;
    let phone = unique_phone();
    let r = request_code(&c, &phone).await?;
    ensure!(r.expires_in_ms == 600_000 && r.max_attempts == 5, "{r:?}");
    let code = s.inbox.code_for(&phone).await?;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    ensure!(err_code(verify_code(&c, &phone, wrong, None).await.map_err(into_client))? == ErrorCode::Unauthenticated);
    let name = unique("ph");
    let a = verify_code(&c, &phone, &code, Some(name.clone())).await?;
    let me = a.me.clone().context("me")?;
    ensure!(a.created && me.phone == phone && me.username == name && !me.has_password, "{a:?}");
    // The code is spent.
    ensure!(err_code(verify_code(&c, &phone, &code, None).await.map_err(into_client))? == ErrorCode::Unauthenticated);
    // Signing in again with a new code reaches the same account.
    let (c2, _e2) = connect(s, t).await?;
    request_code(&c2, &phone).await?;
    let code = s.inbox.code_for(&phone).await?;
    let b = verify_code(&c2, &phone, &code, None).await?;
    ensure!(!b.created && b.me.map(|m| m.user_id) == Some(me.user_id), "second sign-in created another account");
    ensure!(err_code(request_code(&c2, "12345").await.map_err(into_client))? == ErrorCode::InvalidArgument);
    Ok(())
}

/// Recovers the client error inside an anyhow error, for `err_code`.
fn into_client(e: anyhow::Error) -> confab_protocol::client::ClientError {
    match e.downcast::<confab_protocol::client::ClientError>() {
        Ok(c) => c,
        Err(e) => confab_protocol::client::ClientError::Protocol(e.to_string()),
    }
}

/// §11.5, §4.4
async fn authenticate_and_hello_token(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let (c, _ev) = connect(s, t).await?;
    let a = c.register(register(&unique("auth"))).await?;
    let (c2, _e2) = connect(s, t).await?;
    let info = c2.authenticate(&a.access_token).await?;
    ensure!(info.session_id == a.session_id && Some(info.user_id) == a.me.as_ref().map(|m| m.user_id), "{info:?}");
    ensure!(c2.me().await?.user_id == info.user_id);
    let mut opts = s.options();
    opts.access_token = Some(a.access_token.clone());
    let (c3, _e3) = Client::connect(&s.url(t), opts).await?;
    let w = c3.welcome().auth.clone().context("Welcome without auth")?;
    ensure!(w.session_id == a.session_id);
    ensure!(c3.me().await?.user_id == info.user_id);
    expect_code(c2.authenticate("garbage").await, ErrorCode::Unauthenticated)?;
    Ok(())
}

/// §11.6
async fn refresh_rotates_and_signs_in(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let (c, _ev) = connect(s, t).await?;
    let a = c.register(register(&unique("ref"))).await?;
    let (c2, _e2) = connect(s, t).await?;
    let b = c2.refresh(&a.refresh_token).await?;
    ensure!(b.session_id == a.session_id, "refresh keeps the session");
    ensure!(b.refresh_token != a.refresh_token && !b.access_token.is_empty());
    ensure!(c2.me().await?.user_id == b.me.context("me")?.user_id, "refresh did not sign the connection in");
    let c_new = c2.refresh(&b.refresh_token).await?;
    ensure!(c_new.refresh_token != b.refresh_token);
    let (c3, _e3) = connect(s, t).await?;
    c3.authenticate(&c_new.access_token).await?;
    expect_code(c3.refresh("cfr1_notatoken").await, ErrorCode::Unauthenticated)?;
    Ok(())
}

/// §11.7 Logout
async fn logout_closes_the_sessions_other_connections(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let (c, _ev) = connect(s, t).await?;
    let a = c.register(register(&unique("out"))).await?;
    let (c2, mut e2) = connect(s, t).await?;
    c2.authenticate(&a.access_token).await?;
    let started = Instant::now();
    c.logout().await?;
    expect_revoked(&mut e2).await?;
    ensure!(started.elapsed() < Duration::from_secs(1), "other connection closed after {:?}", started.elapsed());
    expect_code(c.me().await, ErrorCode::Unauthenticated)?;
    let (c3, _e3) = connect(s, t).await?;
    expect_code(c3.authenticate(&a.access_token).await, ErrorCode::Unauthenticated)?;
    expect_code(c3.refresh(&a.refresh_token).await, ErrorCode::Unauthenticated)?;
    Ok(())
}

/// §11.7 ListSessions, RevokeSession
async fn list_and_revoke_sessions(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let name = unique("sess");
    let (c, _ev) = connect(s, t).await?;
    let a = c.register(register(&name)).await?;
    let (c2, mut e2) = connect(s, t).await?;
    let b = c2.login(&name, PASSWORD, "second device").await?;
    let list = c.sessions().await?;
    ensure!(list.len() == 2, "{list:?}");
    ensure!(list.iter().filter(|x| x.current).count() == 1, "{list:?}");
    ensure!(list.iter().any(|x| x.session_id == b.session_id && x.device_name == "second device" && !x.current));
    let revoke = |id: &str| Request::RevokeSession(v1::RevokeSession { session_id: id.into() });
    let started = Instant::now();
    c.request(revoke(&b.session_id)).await?;
    expect_revoked(&mut e2).await?;
    ensure!(started.elapsed() < Duration::from_secs(1), "revoked connection closed after {:?}", started.elapsed());
    ensure!(c.sessions().await?.len() == 1);
    expect_code(c.request(revoke("0123456789abcdef")).await, ErrorCode::NotFound)?;
    expect_code(c.request(revoke(&a.session_id)).await, ErrorCode::FailedPrecondition)?;
    // Someone else's session is NOT_FOUND, exactly like a missing one.
    let (o, _eo) = connect(s, t).await?;
    let other = o.register(register(&unique("other"))).await?;
    let e = expect_code(c.request(revoke(&other.session_id)).await, ErrorCode::NotFound)?;
    ensure!(e.message == "no such session", "{e}");
    ensure!(o.me().await.is_ok(), "another user's session was touched");
    Ok(())
}

/// §11.8
async fn change_password_revokes_other_sessions(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let name = unique("chg");
    let (c, _ev) = connect(s, t).await?;
    c.register(register(&name)).await?;
    let (c2, mut e2) = connect(s, t).await?;
    c2.login(&name, PASSWORD, "other").await?;
    let change = |cur: &str, new: &str| {
        Request::ChangePassword(v1::ChangePassword { current_password: cur.into(), new_password: new.into() })
    };
    expect_code(c.request(change("wrong password", "new password 1")).await, ErrorCode::PermissionDenied)?;
    expect_code(c.request(change(PASSWORD, "short")).await, ErrorCode::InvalidArgument)?;
    match c.request(change(PASSWORD, "new password 1")).await? {
        R::ChangePassword(r) => ensure!(r.revoked_sessions == 1, "{r:?}"),
        other => anyhow::bail!("unexpected {other:?}"),
    }
    expect_revoked(&mut e2).await?;
    ensure!(c.me().await.is_ok(), "the changing session must stay signed in");
    let (c3, _e3) = connect(s, t).await?;
    expect_code(c3.login(&name, PASSWORD, "x").await, ErrorCode::Unauthenticated)?;
    c3.login(&name, "new password 1", "x").await?;
    Ok(())
}

/// §11.9
async fn password_reset_by_code(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let name = unique("rst");
    let email = format!("{name}@example.org");
    let (c, mut ev) = connect(s, t).await?;
    let mut r = register(&name);
    r.email = Some(email.clone());
    c.register(r).await?;
    let (anon, _ea) = connect(s, t).await?;
    let ask = |id: &str| Request::RequestPasswordReset(v1::RequestPasswordReset { identifier: id.into() });
    let known = anon.request(ask(&name)).await?;
    let unknown = anon.request(ask(&unique("ghost"))).await?;
    ensure!(known == unknown, "reset answers differ for unknown accounts: {known:?} / {unknown:?}");
    let delivered = s.inbox.next_for(&email).await?;
    ensure!(
        delivered.json["purpose"] == "password_reset" && delivered.json["channel"] == "email" && delivered.signature_ok
    );
    let code = delivered.json["code"].as_str().context("code")?.to_string();
    let reset = |code: &str, pw: &str| {
        Request::ResetPassword(v1::ResetPassword {
            identifier: name.clone(),
            code: code.into(),
            new_password: pw.into(),
        })
    };
    let wrong = if code == "000000" { "111111" } else { "000000" };
    expect_code(anon.request(reset(wrong, "brand new password")).await, ErrorCode::Unauthenticated)?;
    anon.request(reset(&code, "brand new password")).await?;
    expect_revoked(&mut ev).await?;
    expect_code(anon.request(reset(&code, "another password")).await, ErrorCode::Unauthenticated)?;
    anon.login(&email, "brand new password", "x").await?;
    Ok(())
}

/// §11.10
async fn get_me_and_update_profile(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let (c, _ev) = connect(s, t).await?;
    c.register(register(&unique("prof"))).await?;
    let up = |d: Option<&str>, st: Option<&str>| {
        Request::UpdateProfile(v1::UpdateProfile {
            display_name: d.map(Into::into),
            status_text: st.map(Into::into),
            avatar_ref: None,
        })
    };
    match c.request(up(Some("Zoé"), Some("at lunch"))).await? {
        R::UpdateProfile(m) => ensure!(m.display_name == "Zoé" && m.status_text == "at lunch", "{m:?}"),
        other => anyhow::bail!("unexpected {other:?}"),
    }
    c.request(up(None, Some(""))).await?;
    let me = c.me().await?;
    ensure!(me.display_name == "Zoé" && me.status_text.is_empty(), "{me:?}");
    let e = expect_code(c.request(up(Some(&"x".repeat(65)), None)).await, ErrorCode::InvalidArgument)?;
    ensure!(e.field == "update_profile.display_name", "{e}");
    expect_code(c.request(up(None, Some(&"x".repeat(141)))).await, ErrorCode::InvalidArgument)?;
    Ok(())
}

/// §11.11
async fn delete_account_removes_personal_data(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let name = unique("del");
    let (c, mut ev) = connect(s, t).await?;
    let mut r = register(&name);
    r.email = Some(format!("{name}@example.org"));
    let user_id = c.register(r).await?.me.context("me")?.user_id;
    let (c2, mut e2) = connect(s, t).await?;
    c2.login(&name, PASSWORD, "other").await?;
    let del = |pw: &str| Request::DeleteAccount(v1::DeleteAccount { password: pw.into() });
    expect_code(c.request(del("wrong password")).await, ErrorCode::PermissionDenied)?;
    c.request(del(PASSWORD)).await?;
    expect_revoked(&mut ev).await?;
    expect_revoked(&mut e2).await?;
    let (c3, _e3) = connect(s, t).await?;
    expect_code(c3.login(&name, PASSWORD, "x").await, ErrorCode::Unauthenticated)?;
    let user = s
        .store()
        .user(confab_server::store::UserId(user_id as i64))
        .await?
        .context("the account row stays for past messages")?;
    ensure!(user.deleted && user.email.is_none() && user.display_name.is_empty() && !user.has_password, "{user:?}");
    ensure!(user.username == format!("deleted-{user_id}"), "{user:?}");
    // The username is free again.
    c3.register(register(&name)).await?;
    Ok(())
}

/// §11.1: everything but sign-in needs an authenticated connection.
async fn requests_need_authentication(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let (c, _ev) = connect(s, t).await?;
    for req in [
        Request::GetMe(v1::GetMe {}),
        Request::Logout(v1::Logout {}),
        Request::ListSessions(v1::ListSessions {}),
        Request::RevokeSession(v1::RevokeSession { session_id: "x".into() }),
        Request::ChangePassword(v1::ChangePassword::default()),
        Request::UpdateProfile(v1::UpdateProfile::default()),
        Request::DeleteAccount(v1::DeleteAccount::default()),
    ] {
        let kind = req.kind();
        ensure!(err_code(c.request(req).await)? == ErrorCode::Unauthenticated, "{kind} without authentication");
    }
    Ok(())
}
