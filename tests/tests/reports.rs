//! Reports of messages (docs/protocol.md §27) on both stores and both transports: server
//! administrators are told of every report, also in a DIRECT conversation they are not in, and
//! resolve it there; two resolutions racing, one wins; REMOVE_SENDER deletes the message and
//! removes the sender as RemoveMember does, refused for the owner and to a moderator; each
//! resolution is audited in its commit and the chain stays intact; reports are rate-limited per
//! account (the server here allows 3 an hour).

use std::time::Duration;

use anyhow::{Context, ensure};
use confab_conformance::call;
use confab_conformance::harness::{TestFn, TestServer, Transport};
use confab_conformance::util::{User, direct, expect_code, group, new_user, next_matching, send};
use confab_protocol::v1::{
    self, ErrorCode, MemberRole, NotificationKind, ReportAction, ReportReason, ReportState, conversation_event::Body,
    event, user_update,
};
use confab_server::config::RateLimit;
use confab_server::store::{AuditAction, UserId};

const TESTS: &[(&str, TestFn)] = confab_conformance::named_tests![
    administrators_are_told_of_every_report,
    removing_the_sender,
    reports_are_rate_limited_per_account
];

/// Three reports per account, then one more an hour: no test here reports more than that but the
/// one about the limit.
fn three_an_hour(c: &mut confab_server::config::Config) {
    c.limits.reports_per_account = RateLimit::new(3, Duration::from_secs(3600));
}

confab_conformance::matrix_tests!(TESTS, three_an_hour);

const WAIT: Duration = Duration::from_secs(5);

/// A new server administrator (the flag set as the command line sets it).
async fn admin(s: &TestServer, t: Transport) -> anyhow::Result<User> {
    let a = new_user(s, t, "repadm").await?;
    s.grant_server_admin(a.id).await?;
    Ok(a)
}

fn report(conv: u64, message_id: u64) -> v1::ReportMessage {
    v1::ReportMessage { conversation_id: conv, message_id, reason: ReportReason::Abuse as i32, note: "look".into() }
}

fn resolve(report_id: u64, action: ReportAction) -> v1::ResolveReport {
    v1::ResolveReport { report_id, action: action as i32, note: String::new() }
}

fn list(conv: u64) -> v1::ListReports {
    v1::ListReports { conversation_id: conv, ..Default::default() }
}

/// The next live notification about report `id`.
async fn told(u: &mut User, id: u64) -> anyhow::Result<v1::Notification> {
    next_matching(&mut u.events, WAIT, |e| match e {
        event::Event::Notification(n) if n.report_id == id => Some(*n),
        _ => None,
    })
    .await
}

/// `u`'s inbox entries about report `id`.
async fn inbox_of(u: &User, id: u64) -> anyhow::Result<Vec<v1::Notification>> {
    let all =
        call!(u.client, ListNotifications, v1::ListNotifications { before_id: 0, limit: 100, unread_only: false })?;
    Ok(all.notifications.into_iter().filter(|n| n.report_id == id).collect())
}

/// §27.2, §27.3: every server administrator is told of a report, also of a DIRECT conversation
/// they are not in (which has no moderators), lists it, and resolves it there; the members are
/// not told. In a group the owner and the administrators are told; of the two resolving at once,
/// one wins.
async fn administrators_are_told_of_every_report(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut adm = admin(s, t).await?;
    let mut sender = new_user(s, t, "repsnd").await?;
    let mut reporter = new_user(s, t, "reprep").await?;
    let dm = call!(reporter.client, CreateConversation, direct(sender.id))?.conversation_id;
    let m = call!(sender.client, SendMessage, send(dm, "dm1", "threat"))?;
    let id = call!(reporter.client, ReportMessage, report(dm, m.message_id))?.report_id;
    let n = told(&mut adm, id).await?;
    ensure!(n.kind() == NotificationKind::Reported && n.actor_id == reporter.id && n.conversation_id == dm, "{n:?}");
    ensure!(inbox_of(&sender, id).await?.is_empty() && inbox_of(&reporter, id).await?.is_empty(), "a member was told");
    // The administrator lists it (not a member), the members may not.
    let listed = call!(adm.client, ListReports, list(dm))?;
    ensure!(listed.reports.iter().any(|r| r.report_id == id && r.state() == ReportState::Open), "{listed:?}");
    let all = call!(adm.client, ListReports, list(0))?;
    ensure!(all.reports.iter().any(|r| r.report_id == id), "{all:?}");
    expect_code(call!(reporter.client, ListReports, list(dm)), ErrorCode::NotFound)?;
    expect_code(call!(sender.client, ResolveReport, resolve(id, ReportAction::Dismiss)), ErrorCode::NotFound)?;
    // Nobody is removed from a DIRECT conversation; the message is deleted, by the administrator.
    let e = expect_code(
        call!(adm.client, ResolveReport, resolve(id, ReportAction::RemoveSender)),
        ErrorCode::FailedPrecondition,
    )?;
    ensure!(e.message.contains("groups and channels"), "{e:?}");
    let done = call!(adm.client, ResolveReport, resolve(id, ReportAction::DeleteMessage))?.report.context("report")?;
    ensure!(done.resolved_by == adm.id && done.action() == ReportAction::DeleteMessage, "{done:?}");
    let deleted = next_matching(&mut sender.events, WAIT, |e| match e {
        event::Event::ConversationEvent(c) if matches!(c.body, Some(Body::MessageDeleted(_))) => Some(c.clone()),
        _ => None,
    })
    .await?;
    ensure!(deleted.conversation_id == dm && deleted.actor_id == adm.id, "{deleted:?}");
    let outcome = told(&mut reporter, id).await?;
    ensure!(outcome.kind() == NotificationKind::ReportResolved && outcome.actor_id == adm.id, "{outcome:?}");
    ensure!(outcome.report_action() == ReportAction::DeleteMessage, "{outcome:?}");

    // A group: its owner and the administrator are told; resolving at once, one wins.
    let mut owner = new_user(s, t, "repown").await?;
    let conv = call!(owner.client, CreateConversation, group("reported", &[sender.id, reporter.id]))?.conversation_id;
    let m = call!(sender.client, SendMessage, send(conv, "g1", "spam"))?;
    let id = call!(reporter.client, ReportMessage, report(conv, m.message_id))?.report_id;
    told(&mut owner, id).await?;
    told(&mut adm, id).await?;
    let (a, b) =
        tokio::join!(async { call!(owner.client, ResolveReport, resolve(id, ReportAction::Dismiss)) }, async {
            call!(adm.client, ResolveReport, resolve(id, ReportAction::Dismiss))
        },);
    ensure!(a.is_ok() != b.is_ok(), "one resolution wins: {a:?} {b:?}");
    let loser = if a.is_ok() { b } else { a };
    expect_code(loser, ErrorCode::FailedPrecondition)?;
    ensure!(told(&mut reporter, id).await?.kind() == NotificationKind::ReportResolved);
    ensure!(inbox_of(&reporter, id).await?.len() == 1, "the reporter is told once");
    Ok(())
}

/// §27.3, §12.5, §28.1: REMOVE_SENDER deletes the message and removes the sender as RemoveMember
/// does (`MessageDeleted`, `MemberRemoved`, the sender's user log), audited in the same commit
/// with the resolver's address; a moderator may not remove, nobody removes the owner.
async fn removing_the_sender(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let adm = admin(s, t).await?;
    let mut owner = new_user(s, t, "repo").await?;
    let moderator = new_user(s, t, "repm").await?;
    let mut sender = new_user(s, t, "reps").await?;
    let reporter = new_user(s, t, "repr").await?;
    let members = [moderator.id, sender.id, reporter.id];
    let conv = call!(owner.client, CreateConversation, group("removals", &members))?.conversation_id;
    let role = v1::SetRole { conversation_id: conv, user_id: moderator.id, role: MemberRole::Moderator as i32 };
    call!(owner.client, SetRole, role)?;
    let m = call!(sender.client, SendMessage, send(conv, "s1", "awful"))?;
    let id = call!(reporter.client, ReportMessage, report(conv, m.message_id))?.report_id;
    // A moderator lists and may delete, but not remove.
    ensure!(call!(moderator.client, ListReports, list(conv))?.reports.iter().any(|r| r.report_id == id));
    expect_code(
        call!(moderator.client, ResolveReport, resolve(id, ReportAction::RemoveSender)),
        ErrorCode::PermissionDenied,
    )?;
    // The owner cannot be removed, not even by an administrator; nothing changed.
    let own = call!(owner.client, SendMessage, send(conv, "o1", "the owner's"))?;
    let against_owner = call!(reporter.client, ReportMessage, report(conv, own.message_id))?.report_id;
    let e = expect_code(
        call!(adm.client, ResolveReport, resolve(against_owner, ReportAction::RemoveSender)),
        ErrorCode::FailedPrecondition,
    )?;
    ensure!(e.message.contains("owner"), "{e:?}");
    let still = call!(owner.client, ListReports, list(conv))?;
    ensure!(still.reports.iter().map(|r| r.report_id).collect::<Vec<_>>() == [against_owner, id], "{still:?}");

    let before = s.store().audit_head().await?.seq;
    let done = call!(owner.client, ResolveReport, resolve(id, ReportAction::RemoveSender))?.report.context("report")?;
    ensure!(done.action() == ReportAction::RemoveSender && done.state() == ReportState::Resolved, "{done:?}");
    let deleted = next_matching(&mut owner.events, WAIT, |e| match e {
        event::Event::ConversationEvent(c)
            if c.conversation_id == conv
                && matches!(&c.body, Some(Body::MessageDeleted(d)) if d.message_id == m.message_id) =>
        {
            Some(c.clone())
        }
        _ => None,
    })
    .await?;
    ensure!(deleted.actor_id == owner.id, "{deleted:?}");
    let removed = next_matching(&mut owner.events, WAIT, |e| match e {
        event::Event::ConversationEvent(c) if c.conversation_id == conv => Some(c.clone()),
        _ => None,
    })
    .await?;
    ensure!(removed.seq == deleted.seq + 1, "{removed:?}");
    ensure!(matches!(&removed.body, Some(Body::MemberRemoved(r)) if r.user_id == sender.id), "{removed:?}");
    next_matching(&mut sender.events, WAIT, |e| match e {
        event::Event::UserUpdate(u) => match &u.body {
            Some(user_update::Body::RemovedFromConversation(r)) if r.conversation_id == conv => Some(()),
            _ => None,
        },
        _ => None,
    })
    .await?;
    let left =
        call!(owner.client, ListMembers, v1::ListMembers { conversation_id: conv, after_user_id: 0, limit: 100 })?;
    ensure!(left.members.iter().all(|x| x.user_id != sender.id) && left.members.len() == 3, "{left:?}");
    expect_code(
        call!(sender.client, GetHistory, v1::GetHistory { conversation_id: conv, limit: 10, ..Default::default() }),
        ErrorCode::NotFound,
    )?;

    // Audited in the commit: the deletion, the removal, then the resolution, with the address.
    let log = s.store().audit_after(before, 100).await?;
    let mine: Vec<_> =
        log.iter().map(|r| &r.entry).filter(|e| e.target_conversation.map(|c| c.0) == Some(conv as i64)).collect();
    let actions: Vec<AuditAction> = mine.iter().map(|e| e.action).collect();
    ensure!(
        actions == [AuditAction::MessageDeleted, AuditAction::MemberRemoved, AuditAction::ReportResolved],
        "{actions:?}"
    );
    let resolved = mine[2];
    ensure!(resolved.target == id.to_string() && resolved.after == r#"{"action":"remove_sender"}"#, "{resolved:?}");
    ensure!(resolved.actor == Some(UserId(owner.id as i64)) && resolved.target_user == Some(UserId(sender.id as i64)));
    ensure!(resolved.target_message.map(|m| m.0) == Some(m.message_id as i64), "{resolved:?}");
    ensure!(mine.iter().all(|e| e.client_addr == "127.0.0.1"), "{mine:?}");
    let chain = s.store().verify_audit().await?;
    ensure!(chain.broken.is_none() && chain.entries == chain.head.seq as u64, "{chain:?}");
    Ok(())
}

/// §27.1: every well-formed report takes a token of the reporter's bucket, a repeat and a
/// non-member's `NOT_FOUND` included; with none left, `RATE_LIMITED` with the wait, nothing is
/// stored and nobody is told. Another member's bucket is their own.
async fn reports_are_rate_limited_per_account(s: &TestServer, t: Transport) -> anyhow::Result<()> {
    let mut owner = new_user(s, t, "rlo").await?;
    let sender = new_user(s, t, "rls").await?;
    let reporter = new_user(s, t, "rlr").await?;
    let other = new_user(s, t, "rlx").await?;
    let conv =
        call!(owner.client, CreateConversation, group("limited", &[sender.id, reporter.id, other.id]))?.conversation_id;
    let elsewhere = call!(sender.client, CreateConversation, group("not theirs", &[owner.id]))?.conversation_id;
    let m1 = call!(sender.client, SendMessage, send(conv, "l1", "one"))?.message_id;
    let m2 = call!(sender.client, SendMessage, send(conv, "l2", "two"))?.message_id;
    let hidden = call!(sender.client, SendMessage, send(elsewhere, "l3", "three"))?.message_id;

    let first = call!(reporter.client, ReportMessage, report(conv, m1))?.report_id;
    ensure!(
        call!(reporter.client, ReportMessage, report(conv, m1))?.report_id == first,
        "a repeat answers the same id"
    );
    expect_code(call!(reporter.client, ReportMessage, report(elsewhere, hidden)), ErrorCode::NotFound)?;
    // A malformed report is refused before the bucket: it costs nothing.
    expect_code(call!(reporter.client, ReportMessage, report(conv, 0)), ErrorCode::InvalidArgument)?;
    let e = expect_code(call!(reporter.client, ReportMessage, report(conv, m2)), ErrorCode::RateLimited)?;
    ensure!(e.retry_after_ms > 3_000_000 && e.retry_after_ms <= 3_600_000, "a token an hour: {e:?}");

    // Nothing stored for m2, nobody told: the owner's queue and live events hold the first only.
    let queue = call!(owner.client, ListReports, list(conv))?;
    ensure!(queue.reports.iter().map(|r| r.report_id).collect::<Vec<_>>() == [first], "{queue:?}");
    told(&mut owner, first).await?;
    let second = call!(other.client, ReportMessage, report(conv, m2))?.report_id;
    // The first notification about m2 the owner gets is the other member's report.
    let n = next_matching(&mut owner.events, WAIT, |e| match e {
        event::Event::Notification(n) if n.message_id == m2 => Some(*n),
        _ => None,
    })
    .await?;
    ensure!(n.report_id == second && n.actor_id == other.id, "{n:?}");
    Ok(())
}
