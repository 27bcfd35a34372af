//! Cases for one-time codes (docs/protocol.md §11.4, §11.9, §11.12): phone sign-in and password
//! reset read the code the server sent from the target's code sink; the answers that must not
//! reveal whether an account exists, and the per-number rate limit, need no codes.
//!
//! Together they ask for 10 codes, the default burst per client IP, so a run against a server
//! with default limits does not wait.

use anyhow::{Context, ensure};
use confab_protocol::client::{Client, ClientError};
use confab_protocol::v1::{self, ErrorCode, SessionRevokedReason as Reason};

use super::Target;
use super::common::*;

fn request(phone: &str) -> v1::RequestCode {
    v1::RequestCode { phone: phone.into(), purpose: v1::CodePurpose::SignIn as i32 }
}

/// RequestCode, waiting out the per-IP limit.
async fn request_code(c: &Client, phone: &str) -> anyhow::Result<v1::RequestCodeResult> {
    Ok(patiently!(call!(c, RequestCode, request(phone)))?)
}

/// VerifyCode, waiting out the per-IP limit (a refused attempt does not count as a try).
async fn verify(c: &Client, phone: &str, code: &str, username: Option<&str>) -> Result<v1::AuthResult, ClientError> {
    let r = v1::VerifyCode {
        phone: phone.into(),
        code: code.into(),
        device_name: "conformance".into(),
        username: username.map(str::to_string),
    };
    patiently!(call!(c, VerifyCode, r.clone()))
}

/// A well-formed code other than `code`.
fn other_than(code: &str) -> anyhow::Result<String> {
    Ok(format!("{:06}", (code.parse::<u32>().context("a code is digits")? + 1) % 1_000_000))
}

/// Expects the one answer to every failed code check.
fn invalid_code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> anyhow::Result<()> {
    let e = expect_code(r, ErrorCode::Unauthenticated)?;
    ensure!(e.message == "invalid or expired code", "{e}");
    Ok(())
}

/// §11.4: the code sent to a new number creates an account (created, the given username, no
/// password) and signs the connection in; a later code signs in to the same account; wrong,
/// spent and never-sent codes all get the same UNAUTHENTICATED.
pub(super) async fn phone_sign_in_creates_then_signs_in(t: Target) -> anyhow::Result<()> {
    let phone = fresh_phone();
    let name = fresh_name("cfphone");
    let (c, _e) = t.client().await?;
    let r = request_code(&c, &phone).await?;
    ensure!(r.expires_in_ms == 10 * 60 * 1000 && r.max_attempts == 5, "{r:?}");
    let code = code_for(&t, &phone).await?;
    ensure!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()), "code {code:?}");
    invalid_code(verify(&c, &phone, &other_than(&code)?, Some(&name)).await)?;
    let created = verify(&c, &phone, &code, Some(&name)).await?;
    let me = created.me.clone().context("AuthResult without me")?;
    ensure!(created.created && me.username == name && me.phone == phone && !me.has_password, "{created:?}");
    ensure!(c.me().await?.user_id == me.user_id, "VerifyCode did not sign the connection in");
    let (c2, _e2) = t.client().await?;
    invalid_code(verify(&c2, &phone, &code, None).await).context("a spent code")?;
    invalid_code(verify(&c2, &fresh_phone(), &code, None).await).context("a code never sent")?;
    request_code(&c2, &phone).await?;
    let again = verify(&c2, &phone, &code_for(&t, &phone).await?, Some(&fresh_name("cfphone"))).await?;
    let me2 = again.me.context("AuthResult without me")?;
    ensure!(!again.created && me2.user_id == me.user_id && me2.username == name, "signed in elsewhere: {me2:?}");
    ensure!(again.session_id != created.session_id, "VerifyCode reused a session");
    Ok(())
}

/// §11.4: every try counts: after `max_attempts` wrong tries the right code is refused too.
pub(super) async fn phone_code_tries_are_limited(t: Target) -> anyhow::Result<()> {
    let phone = fresh_phone();
    let (c, _e) = t.client().await?;
    let r = request_code(&c, &phone).await?;
    let code = code_for(&t, &phone).await?;
    let wrong = other_than(&code)?;
    for i in 0..r.max_attempts {
        invalid_code(verify(&c, &phone, &wrong, None).await).with_context(|| format!("try {}", i + 1))?;
    }
    invalid_code(verify(&c, &phone, &code, None).await).context("the right code after every try was spent")?;
    Ok(())
}

/// §11.4, §11.12: RequestCode answers the same whether or not a number has an account, refuses a
/// malformed number naming the field, and after the default 3 requests for one number the next
/// is RATE_LIMITED with retry_after_ms.
pub(super) async fn code_requests_answer_alike_and_are_limited(t: Target) -> anyhow::Result<()> {
    let taken = fresh_phone();
    account_with(&t, v1::Register { phone: Some(taken.clone()), ..registration(&fresh_name("cfcode")) }).await?;
    let (c, _e) = t.client().await?;
    let e = expect_code(call!(c, RequestCode, request("12345")), ErrorCode::InvalidArgument)?;
    ensure!(e.field == "request_code.phone", "{e:?}");
    let phone = fresh_phone();
    let known = request_code(&c, &taken).await?;
    let unknown = request_code(&c, &phone).await?;
    ensure!(known == unknown, "the answers differ: {known:?} / {unknown:?}");
    request_code(&c, &phone).await?;
    request_code(&c, &phone).await?;
    let e = expect_code(call!(c, RequestCode, request(&phone)), ErrorCode::RateLimited)?;
    ensure!(e.retry_after_ms > 0, "RATE_LIMITED without retry_after_ms: {e}");
    Ok(())
}

/// §11.9: a reset code goes to the account's email; the request answers alike for unknown
/// accounts; ResetPassword with a wrong code or identifier gets the one UNAUTHENTICATED answer;
/// with the right code it sets the password, ends every session (PASSWORD_RESET) and signs in
/// nobody.
pub(super) async fn password_reset_by_code(t: Target) -> anyhow::Result<()> {
    let name = fresh_name("cfreset");
    let email = format!("{name}@example.org");
    let mut a = account_with(&t, v1::Register { email: Some(email.clone()), ..registration(&name) }).await?;
    let mut a2 = second_device(&t, &a, "other").await?;
    let (c, _e) = t.client().await?;
    let ask = async |identifier: String| {
        let r = v1::RequestPasswordReset { identifier };
        patiently!(call!(c, RequestPasswordReset, r.clone()))
    };
    let known = ask(name.clone()).await?;
    let unknown = ask(fresh_name("cfnobody")).await?;
    ensure!(known == unknown && known.expires_in_ms > 0, "the answers differ: {known:?} / {unknown:?}");
    let code = code_for(&t, &email).await?;
    let reset = |identifier: &str, code: &str, password: &str| v1::ResetPassword {
        identifier: identifier.into(),
        code: code.into(),
        new_password: password.into(),
    };
    let e = expect_code(call!(c, ResetPassword, reset(&name, "12", "reset password 1")), ErrorCode::InvalidArgument)?;
    ensure!(e.field == "reset_password.code", "{e:?}");
    invalid_code(call!(c, ResetPassword, reset(&name, &other_than(&code)?, "reset password 1")))?;
    invalid_code(call!(c, ResetPassword, reset(&fresh_name("cfnobody"), &code, "reset password 1")))?;
    patiently!(call!(c, ResetPassword, reset(&name, &code, "reset password 1")))?;
    expect_revoked(&mut a.events, &a.auth.session_id, Reason::PasswordReset).await?;
    expect_revoked(&mut a2.events, &a2.auth.session_id, Reason::PasswordReset).await?;
    expect_code(c.me().await, ErrorCode::Unauthenticated).context("ResetPassword signed the connection in")?;
    invalid_code(call!(c, ResetPassword, reset(&name, &code, "reset password 2"))).context("a spent code")?;
    expect_code(patiently!(c.login(&name, PASSWORD, "x").await), ErrorCode::Unauthenticated)?;
    let r = patiently!(c.login(&email, "reset password 1", "x").await)?;
    ensure!(r.me.is_some_and(|m| m.user_id == a.id), "signed in to another account");
    Ok(())
}
