//! Server administration on both stores and both transports (docs/protocol.md §26.3, §26.5,
//! §28.3): a suspended account's live connections get SessionRevoked and close within a second,
//! its sign-ins are refused with ACCOUNT_SUSPENDED (a wrong password still looks like any wrong
//! password) and its tokens are dead until it is reactivated; an administrator ends every
//! session of an account; the audit log is read with filters, the reads themselves recorded;
//! clearing the flag takes effect on the next request.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use confab_conformance::harness::{TestFn, TestServer, Transport};
use confab_conformance::util::{PASSWORD, unique};
use confab_protocol::client::{Client, ClientError, Events};
use confab_protocol::v1::response::Result as R;
use confab_protocol::v1::{self, ErrorCode, ErrorReason, SessionRevokedReason, client_frame::Request, event};
use confab_server::store::{AuditAction, NewAudit, UserId};

const TESTS: &[(&str, TestFn)] = confab_conformance::named_tests![
    suspension_closes_connections_and_refuses_sign_in,
    administrators_end_sessions_and_read_the_log,
];

confab_conformance::matrix_tests!(TESTS);

/// A new account signed in on a new connection: (client, events, user id, name, AuthResult).
async fn sign_up(
    s: &TestServer,
    t: Transport,
    prefix: &str,
) -> anyhow::Result<(Client, Events, u64, String, v1::AuthResult)> {
    let name = unique(prefix);
    let (c, ev) = s.connect(t).await?;
    let reg = v1::Register {
        username: name.clone(),
        password: PASSWORD.into(),
        device_name: "laptop".into(),
        ..Default::default()
    };
    let auth = c.register(reg).await?;
    let id = auth.me.as_ref().context("me")?.user_id;
    Ok((c, ev, id, name, auth))
}

/// Waits for SessionRevoked with `reason` and the close with 4004; returns how long it took.
async fn revoked_within(
    events: &mut Events,
    reason: SessionRevokedReason,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let got = tokio::time::timeout(limit, async {
        let mut seen = None;
        while let Some(e) = events.recv().await {
            if let Some(event::Event::SessionRevoked(r)) = e.event {
                seen = Some(r.reason());
            }
        }
        seen
    })
    .await
    .context("the connection was not closed in time")?;
    ensure!(got == Some(reason), "SessionRevoked reason {got:?}");
    let info = events.close_info().context("no close info")?;
    ensure!(info.code == Some(v1::CloseCode::SessionRevoked as u32), "closed with {info}");
    Ok(start.elapsed())
}

fn server_error(r: Result<impl std::fmt::Debug, ClientError>) -> anyhow::Result<v1::Error> {
    match r {
        Err(ClientError::Server(e)) => Ok(e),
        other => bail!("expected a server error, got {other:?}"),
    }
}

async fn suspension_closes_connections_and_refuses_sign_in(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let (admin, _ae, admin_id, _, _) = sign_up(s, t, "adm").await?;
    s.grant_server_admin(admin_id).await?;
    let (bob, mut bob_events, bob_id, bob_name, bob_auth) = sign_up(s, t, "sus").await?;
    let (bob2, mut bob2_events) = s.connect(t).await?;
    bob2.login(&bob_name, PASSWORD, "phone").await?;
    let r = admin
        .request(Request::AdminSuspendUser(v1::AdminSuspendUser { user_id: bob_id, reason: "spam waves".into() }))
        .await?;
    let R::AdminSuspendUser(done) = r else { bail!("got {r:?}") };
    ensure!(done.sessions_revoked == 2 && done.suspended_at_ms > 0, "{done:?}");
    // Both live connections are told and closed, well within a second of the answer.
    for ev in [&mut bob_events, &mut bob2_events] {
        let took = revoked_within(ev, SessionRevokedReason::Suspended, Duration::from_secs(1)).await?;
        ensure!(took < Duration::from_secs(1), "took {took:?}");
    }
    drop((bob, bob2));
    // Sign-in: the right password is refused with the reason; a wrong one looks like any other.
    let (c, _e) = s.connect(t).await?;
    let e = server_error(c.login(&bob_name, PASSWORD, "again").await)?;
    ensure!(e.code() == ErrorCode::PermissionDenied && e.reason() == ErrorReason::AccountSuspended, "{e}");
    let e = server_error(c.login(&bob_name, "not the password", "again").await)?;
    ensure!(e.code() == ErrorCode::Unauthenticated && e.reason() == ErrorReason::Unspecified, "{e}");
    // Old tokens are dead.
    let e = server_error(c.refresh(&bob_auth.refresh_token).await)?;
    ensure!(e.code() == ErrorCode::Unauthenticated, "refresh: {e}");
    let e = server_error(c.authenticate(&bob_auth.access_token).await)?;
    ensure!(e.code() == ErrorCode::Unauthenticated, "access token: {e}");
    // Suspending again changes nothing and keeps the first time.
    let r = admin
        .request(Request::AdminSuspendUser(v1::AdminSuspendUser { user_id: bob_id, reason: String::new() }))
        .await?;
    let R::AdminSuspendUser(again) = r else { bail!("got {r:?}") };
    ensure!(again.sessions_revoked == 0 && again.suspended_at_ms == done.suspended_at_ms, "{again:?}");
    // Reactivated: signs in again.
    let r = admin.request(Request::AdminReactivateUser(v1::AdminReactivateUser { user_id: bob_id })).await?;
    ensure!(matches!(r, R::AdminReactivateUser(v1::AdminReactivateUserResult { reactivated: true })), "{r:?}");
    let (c, _e) = s.connect(t).await?;
    c.login(&bob_name, PASSWORD, "back").await?;
    // Refusals: own account, unknown account, over-long reason.
    let own = admin
        .request(Request::AdminSuspendUser(v1::AdminSuspendUser { user_id: admin_id, reason: String::new() }))
        .await;
    ensure!(server_error(own)?.code() == ErrorCode::FailedPrecondition);
    let none = admin
        .request(Request::AdminSuspendUser(v1::AdminSuspendUser { user_id: 1 << 40, reason: String::new() }))
        .await;
    ensure!(server_error(none)?.code() == ErrorCode::NotFound);
    let long = v1::AdminSuspendUser { user_id: bob_id, reason: "x".repeat(501) };
    let e = server_error(admin.request(Request::AdminSuspendUser(long)).await)?;
    ensure!(e.code() == ErrorCode::InvalidArgument && e.field == "admin_suspend_user.reason", "{e}");
    // The log: one suspension (the repeat is not recorded) and one reactivation, by the admin.
    let log = s.store().audit_after(0, 1000).await?;
    let about_bob: Vec<_> = log
        .iter()
        .filter(|r| r.entry.target_user == Some(UserId(bob_id as i64)))
        .filter(|r| matches!(r.entry.action, AuditAction::AccountSuspended | AuditAction::AccountReactivated))
        .collect();
    ensure!(about_bob.len() == 2, "{about_bob:?}");
    ensure!(
        about_bob[0].entry.action == AuditAction::AccountSuspended && about_bob[0].entry.after.contains("spam waves")
    );
    ensure!(
        about_bob.iter().all(|r| r.entry.actor == Some(UserId(admin_id as i64)) && r.entry.client_addr == "127.0.0.1")
    );
    let report = s.store().verify_audit().await?;
    ensure!(report.broken.is_none(), "{report:?}");
    Ok(())
}

async fn administrators_end_sessions_and_read_the_log(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let (admin, _ae, admin_id, _, _) = sign_up(s, t, "adm").await?;
    s.grant_server_admin(admin_id).await?;
    let (_carol, mut carol_events, carol_id, carol_name, _) = sign_up(s, t, "car").await?;
    let r = admin.request(Request::AdminRevokeSessions(v1::AdminRevokeSessions { user_id: carol_id })).await?;
    ensure!(matches!(r, R::AdminRevokeSessions(v1::AdminRevokeSessionsResult { sessions_revoked: 1 })), "{r:?}");
    revoked_within(&mut carol_events, SessionRevokedReason::Revoked, Duration::from_secs(5)).await?;
    // Carol may sign in again, and sees the administrator's revocation among her security events.
    let (carol, _ce) = s.connect(t).await?;
    carol.login(&carol_name, PASSWORD, "again").await?;
    let r = carol.request(Request::ListSecurityEvents(v1::ListSecurityEvents::default())).await?;
    let R::ListSecurityEvents(mine) = r else { bail!("got {r:?}") };
    let actions: Vec<_> = mine.events.iter().map(|e| e.action()).collect();
    use v1::AuditAction as A;
    ensure!(actions == [A::SignIn, A::SessionsRevoked, A::SignIn], "{actions:?}");
    // Who ended them, and from where, is the administrators' to know (§28.4).
    ensure!(mine.events[1].actor_id == 0 && mine.events[1].client_addr.is_empty(), "{:?}", mine.events[1]);
    ensure!(mine.events[0].client_addr == "127.0.0.1", "{:?}", mine.events[0]);
    // The administrator reads the log about carol, filtered by action, newest first.
    let list = |f: v1::AdminListAudit| admin.request(Request::AdminListAudit(f));
    let r = list(v1::AdminListAudit { target_user_id: carol_id, ..Default::default() }).await?;
    let R::AdminListAudit(page) = r else { bail!("got {r:?}") };
    let actions: Vec<_> = page.entries.iter().map(|e| e.action()).collect();
    // Its own read comes first: recorded before it is made.
    ensure!(actions == [A::AdminViewed, A::SignIn, A::SessionsRevoked, A::SignIn], "{actions:?}");
    ensure!(page.head_seq >= page.entries[0].seq && page.head_hash.len() == 32, "{page:?}");
    let r = list(v1::AdminListAudit {
        target_user_id: carol_id,
        actions: vec![A::SignIn as i32],
        limit: 1,
        ..Default::default()
    })
    .await?;
    let R::AdminListAudit(one) = r else { bail!("got {r:?}") };
    ensure!(one.entries.len() == 1 && one.has_more && one.entries[0].action() == A::SignIn, "{one:?}");
    let r = list(v1::AdminListAudit {
        target_user_id: carol_id,
        actions: vec![A::SignIn as i32],
        before_seq: one.entries[0].seq,
        ..Default::default()
    })
    .await?;
    let R::AdminListAudit(rest) = r else { bail!("got {r:?}") };
    ensure!(rest.entries.len() == 1 && !rest.has_more && rest.entries[0].seq < one.entries[0].seq, "{rest:?}");
    let r = list(v1::AdminListAudit { actor_id: admin_id, actions: vec![A::AdminViewed as i32], ..Default::default() })
        .await?;
    let R::AdminListAudit(views) = r else { bail!("got {r:?}") };
    ensure!(views.entries.len() == 4 && views.entries.iter().all(|e| e.target == "admin_list_audit"), "{views:?}");
    let bad = list(v1::AdminListAudit { actions: vec![99], ..Default::default() }).await;
    ensure!(server_error(bad)?.field == "admin_list_audit.actions");
    // Clearing the flag takes effect on the next request: the same NOT_FOUND as for anyone.
    let entry = NewAudit::new(AuditAction::AdminRevoked, confab_protocol::frames::now_ms() as i64);
    ensure!(s.store().set_server_admin(UserId(admin_id as i64), false, &entry).await?);
    let e = server_error(list(v1::AdminListAudit::default()).await)?;
    ensure!(e.code() == ErrorCode::NotFound && e.message == "not found", "{e}");
    ensure!(s.store().verify_audit().await?.broken.is_none());
    Ok(())
}
