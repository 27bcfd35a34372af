//! The audit log (docs/operations.md "Audit log", migration 0018) on both stores: sign-ins,
//! failed sign-ins, password changes and ended sessions are recorded with the client's address in the same
//! transaction as what they record; the administrator flag's changes too; the hash chain
//! verifies, and names the entry after a row is altered or cut from the end in the database;
//! appends from two store handles at once (two nodes) form one intact chain.

use std::sync::Arc;

use anyhow::{Context, ensure};
use confab_conformance::harness::{TestFn, TestServer, Transport};
use confab_conformance::two_nodes::TwoNodes;
use confab_conformance::util::{PASSWORD, unique};
use confab_protocol::v1::{self, client_frame::Request};
use confab_server::store::{AuditAction, ChainBreak, NewAudit, Store, UserId};

// In this order: the second one tampers with the chain.
const TESTS: &[(&str, TestFn)] =
    confab_conformance::named_tests![ended_sessions_are_recorded, security_events_are_chained];

confab_conformance::matrix_tests!(TESTS);

async fn security_events_are_chained(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let name = unique("aud");
    let (c, _ev) = s.connect(t).await?;
    let phone = confab_conformance::util::unique_phone();
    let reg = v1::Register {
        username: name.clone(),
        password: PASSWORD.into(),
        device_name: "laptop".into(),
        phone: Some(phone.clone()),
        ..Default::default()
    };
    let me = c.register(reg).await?.me.context("a user")?.user_id;
    let (c2, _ev2) = s.connect(t).await?;
    ensure!(c2.login(&name, "not the password", "phone").await.is_err(), "a wrong password is refused");
    ensure!(c2.login(&name.to_uppercase(), "not the password", "phone").await.is_err());
    c2.login(&name, PASSWORD, "phone").await?;
    let change = v1::ChangePassword { current_password: PASSWORD.into(), new_password: "another long one".into() };
    c2.request(Request::ChangePassword(change)).await?;
    // A wrong sign-in code is a failed sign-in too, with the number as the target.
    let (c3, _ev3) = s.connect(t).await?;
    let ask = v1::RequestCode { phone: phone.clone(), purpose: v1::CodePurpose::SignIn as i32 };
    c3.request(Request::RequestCode(ask)).await?;
    let wrong = v1::VerifyCode { phone: phone.clone(), code: "000000".into(), device_name: "x".into(), username: None };
    ensure!(c3.request(Request::VerifyCode(wrong)).await.is_err(), "a wrong code is refused");
    let st = s.store();
    let log = st.audit_after(0, 100).await?;
    let mine: Vec<_> = log.iter().filter(|r| r.entry.target_user == Some(UserId(me as i64))).collect();
    let actions: Vec<AuditAction> = mine.iter().map(|r| r.entry.action).collect();
    use AuditAction::*;
    ensure!(actions == [SignIn, SignInFailed, SignInFailed, SignIn, PasswordChanged, SignInFailed], "{actions:?}");
    ensure!(mine[5].entry.target == phone, "{:?}", mine[5]);
    for r in &mine {
        ensure!(r.entry.client_addr == "127.0.0.1", "the client's address: {r:?}");
    }
    ensure!(mine[1].entry.target == name.to_lowercase() && mine[1].entry.actor.is_none(), "{:?}", mine[1]);
    ensure!(mine[4].entry.actor == Some(UserId(me as i64)), "the account changed its own password");
    // An unknown login name is recorded too, with no user.
    ensure!(c2.login("nobody-at-all", "whatever it is", "x").await.is_err());
    let last = st.audit_after(0, 100).await?.pop().context("an entry")?;
    ensure!(
        last.entry.action == SignInFailed && last.entry.target == "nobody-at-all" && last.entry.target_user.is_none()
    );
    // The administrator flag: set once (recorded), not twice.
    let grant =
        NewAudit { target_user: Some(UserId(me as i64)), client_addr: "cli".into(), ..NewAudit::new(AdminGranted, 1) };
    ensure!(st.set_server_admin(UserId(me as i64), true, &grant).await?);
    ensure!(!st.set_server_admin(UserId(me as i64), true, &grant).await?, "already one");
    ensure!(st.is_server_admin(UserId(me as i64)).await? && st.server_admins().await? == [UserId(me as i64)]);
    let report = st.verify_audit().await?;
    let n = report.head.seq;
    ensure!(report.broken.is_none() && report.entries == n as u64 && n >= 8, "{report:?}");
    // Cut from the end: the head names the missing entry.
    s.execute_sql("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)").await?;
    let report = st.verify_audit().await?;
    ensure!(report.broken == Some(ChainBreak::Head { last: n - 1, head: n }), "{report:?}");
    // Altered in the database: that entry is named.
    s.execute_sql("UPDATE audit_log SET client_addr = '10.0.0.9' WHERE seq = 2").await?;
    let report = st.verify_audit().await?;
    ensure!(report.broken == Some(ChainBreak::Altered { seq: 2 }) && report.entries == 1, "{report:?}");
    Ok(())
}

/// Sessions ended by a logout, by RevokeSession, and by a refresh token presented twice: each
/// recorded with the session it ended (§11.6, §11.7).
async fn ended_sessions_are_recorded(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let name = unique("end");
    let (c1, _e1) = s.connect(t).await?;
    let reg = v1::Register {
        username: name.clone(),
        password: PASSWORD.into(),
        device_name: "laptop".into(),
        ..Default::default()
    };
    let r1 = c1.register(reg).await?;
    let me = UserId(r1.me.context("me")?.user_id as i64);
    let (c2, _e2) = s.connect(t).await?;
    let s2 = c2.login(&name, PASSWORD, "phone").await?.session_id;
    c1.request(Request::RevokeSession(v1::RevokeSession { session_id: s2.clone() })).await?;
    // The register's refresh token, spent once, then again: the session is revoked.
    let (c3, _e3) = s.connect(t).await?;
    c3.refresh(&r1.refresh_token).await?;
    let (c4, _e4) = s.connect(t).await?;
    ensure!(c4.refresh(&r1.refresh_token).await.is_err(), "a spent refresh token is refused");
    let (c5, _e5) = s.connect(t).await?;
    let s3 = c5.login(&name, PASSWORD, "tablet").await?.session_id;
    c5.logout().await?;
    let log = s.store().audit_after(0, 1_000).await?;
    let mine: Vec<_> = log.iter().filter(|r| r.entry.target_user == Some(me)).map(|r| &r.entry).collect();
    use AuditAction::*;
    let got: Vec<(AuditAction, &str)> = mine.iter().map(|e| (e.action, e.target.as_str())).collect();
    let want = [
        (SignIn, r1.session_id.as_str()),
        (SignIn, s2.as_str()),
        (SessionRevoked, s2.as_str()),
        (RefreshReused, r1.session_id.as_str()),
        (SignIn, s3.as_str()),
        (LoggedOut, s3.as_str()),
    ];
    ensure!(got == want, "{got:?}");
    ensure!(mine.iter().all(|e| e.client_addr == "127.0.0.1"), "{mine:?}");
    // The account acted, but for the reuse: whoever presented the token is not known.
    ensure!(mine[2].actor == Some(me) && mine[5].actor == Some(me) && mine[3].actor.is_none(), "{mine:?}");
    Ok(())
}

/// 2 × `per_node` appends racing on two handles of one database: one gapless, intact chain.
async fn racing_appends(nodes: &[Arc<dyn Store>; 2], per_node: usize) {
    let before = nodes[0].verify_audit().await.expect("verify").head.seq;
    let mut tasks = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for k in 0..per_node {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                let e = NewAudit { target: format!("node{i}-{k}"), ..NewAudit::new(AuditAction::SignInFailed, 1) };
                node.append_audit(&e).await.expect("append")
            }));
        }
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.expect("task"));
    }
    seqs.sort_unstable();
    let want: Vec<i64> = (before + 1..=before + 2 * per_node as i64).collect();
    assert_eq!(seqs, want, "gapless, each seq once");
    let report = nodes[1].verify_audit().await.expect("verify");
    assert_eq!(report.broken, None, "{report:?}");
    assert_eq!(report.entries, want.len() as u64 + before as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_postgres_nodes_appending_at_once_keep_one_chain() {
    let two = TwoNodes::postgres().await;
    racing_appends(&two.nodes, 40).await;
    two.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sqlite_handles_appending_at_once_keep_one_chain() {
    let two = TwoNodes::sqlite().await;
    racing_appends(&two.nodes, 40).await;
    two.close().await;
}
