//! Cases for reports of messages (docs/protocol.md §27): who may report, who is told, who may list
//! and resolve, and what the reporter learns. They use the run's shared accounts and look only at
//! the reports and notifications they made.

use anyhow::{Context, ensure};
use confab_protocol::v1::{self, ErrorCode, NotificationKind, ReportAction, ReportReason, ReportState, event};

use super::Target;
use super::common::*;

fn report(conv: u64, message_id: u64, note: &str) -> v1::ReportMessage {
    v1::ReportMessage { conversation_id: conv, message_id, reason: ReportReason::Spam as i32, note: note.into() }
}

/// The next live notification about report `id`.
async fn told(a: &mut Account, id: u64) -> anyhow::Result<v1::Notification> {
    next(&mut a.events, |e| match e {
        event::Event::Notification(n) if n.report_id == id => Some(n),
        _ => None,
    })
    .await
}

/// `a`'s inbox entries about report `id`.
async fn inbox_of(a: &Account, id: u64) -> anyhow::Result<Vec<v1::Notification>> {
    let all =
        call!(a.client, ListNotifications, v1::ListNotifications { before_id: 0, limit: 100, unread_only: false })?;
    Ok(all.notifications.into_iter().filter(|n| n.report_id == id).collect())
}

fn list(conv: u64, state: ReportState) -> v1::ListReports {
    v1::ListReports { conversation_id: conv, state: state as i32, before_id: 0, limit: 0 }
}

/// §27.2: a report reaches the group's owner and moderators, live and in their inbox, naming the
/// report, the message and the reporter; a plain member (the sender too) is told nothing.
pub(super) async fn report_reaches_moderators(t: Target) -> anyhow::Result<()> {
    let mut owner = account(&t, "rep-owner").await?;
    let mut moderator = account(&t, "rep-mod").await?;
    let sender = account(&t, "rep-sender").await?;
    let reporter = account(&t, "rep-reporter").await?;
    let conv = group(&owner, &[moderator.id, sender.id, reporter.id]).await?;
    let role = v1::SetRole { conversation_id: conv, user_id: moderator.id, role: v1::MemberRole::Moderator as i32 };
    call!(owner.client, SetRole, role)?;
    let m = send(&sender, conv, "r1", "buy cheap watches").await?;
    let id = call!(reporter.client, ReportMessage, report(conv, m.message_id, "spam again"))?.report_id;
    ensure!(id > 0, "no report id");
    for who in [&mut owner, &mut moderator] {
        let n = told(who, id).await?;
        ensure!(n.kind() == NotificationKind::Reported, "{n:?}");
        ensure!(n.conversation_id == conv && n.message_id == m.message_id && n.actor_id == reporter.id, "{n:?}");
        ensure!(!n.read && n.created_at_ms > 0 && n.report_action == 0, "{n:?}");
        let listed = inbox_of(who, id).await?;
        ensure!(listed.len() == 1 && listed[0].notification_id == n.notification_id, "{listed:?}");
    }
    for who in [&sender, &reporter] {
        let listed = inbox_of(who, id).await?;
        ensure!(listed.is_empty(), "a member who moderates nothing was told: {listed:?}");
    }
    Ok(())
}

/// §27.1, §12.1: a non-member's report is the same `NOT_FOUND` as one about a conversation that
/// does not exist; a message of another conversation is not found either, and a report needs a
/// reason.
pub(super) async fn non_member_report_is_not_found(t: Target) -> anyhow::Result<()> {
    let owner = account(&t, "rep-nm-owner").await?;
    let member = account(&t, "rep-nm-member").await?;
    let outsider = account(&t, "rep-nm-outsider").await?;
    let conv = group(&owner, &[member.id]).await?;
    let m = send(&owner, conv, "nm1", "members only").await?;
    let stranger =
        expect_code(call!(outsider.client, ReportMessage, report(conv, m.message_id, "")), ErrorCode::NotFound)?;
    let missing = expect_code(
        call!(outsider.client, ReportMessage, report(i64::MAX as u64, m.message_id, "")),
        ErrorCode::NotFound,
    )?;
    ensure!(stranger.message == missing.message, "{stranger:?} vs {missing:?}");
    let elsewhere = group(&member, &[]).await?;
    let e = expect_code(call!(member.client, ReportMessage, report(elsewhere, m.message_id, "")), ErrorCode::NotFound)?;
    ensure!(e.message != missing.message, "a member's own conversation exists: {e:?}");
    let unspecified = v1::ReportMessage { reason: ReportReason::Unspecified as i32, ..report(conv, m.message_id, "") };
    let e = expect_code(call!(member.client, ReportMessage, unspecified), ErrorCode::InvalidArgument)?;
    ensure!(e.field == "report_message.reason", "{e:?}");
    let long = report(conv, m.message_id, &"x".repeat(2_001));
    let e = expect_code(call!(member.client, ReportMessage, long), ErrorCode::InvalidArgument)?;
    ensure!(e.field == "report_message.note", "{e:?}");
    Ok(())
}

/// §27.3: a plain member neither lists nor resolves a conversation's reports (`NOT_FOUND`, as
/// for a conversation or report that does not exist); the owner lists it open, resolves it once,
/// and then finds it among the resolved ones.
pub(super) async fn member_cannot_list_or_resolve_reports(t: Target) -> anyhow::Result<()> {
    let owner = account(&t, "rep-l-owner").await?;
    let member = account(&t, "rep-l-member").await?;
    let reporter = account(&t, "rep-l-reporter").await?;
    let conv = group(&owner, &[member.id, reporter.id]).await?;
    let m = send(&member, conv, "l1", "something rude").await?;
    let id = call!(reporter.client, ReportMessage, report(conv, m.message_id, "rude"))?.report_id;
    let hidden = expect_code(call!(member.client, ListReports, list(conv, ReportState::Open)), ErrorCode::NotFound)?;
    let nowhere =
        expect_code(call!(member.client, ListReports, list(i64::MAX as u64, ReportState::Open)), ErrorCode::NotFound)?;
    ensure!(hidden.message == nowhere.message, "{hidden:?} vs {nowhere:?}");
    let everywhere = call!(member.client, ListReports, list(0, ReportState::Open))?;
    ensure!(everywhere.reports.iter().all(|r| r.report_id != id), "a member sees the report: {everywhere:?}");
    let resolve =
        |action: ReportAction| v1::ResolveReport { report_id: id, action: action as i32, note: "seen".into() };
    let refused =
        expect_code(call!(member.client, ResolveReport, resolve(ReportAction::Dismiss)), ErrorCode::NotFound)?;
    let missing = v1::ResolveReport { report_id: i64::MAX as u64, ..resolve(ReportAction::Dismiss) };
    let missing = expect_code(call!(member.client, ResolveReport, missing), ErrorCode::NotFound)?;
    ensure!(refused.message == missing.message, "{refused:?} vs {missing:?}");
    let open = call!(owner.client, ListReports, list(conv, ReportState::Unspecified))?;
    let r = open.reports.iter().find(|r| r.report_id == id).context("the owner does not see the report")?;
    ensure!(r.state() == ReportState::Open && r.reason() == ReportReason::Spam && r.note == "rude", "{r:?}");
    ensure!(r.reporter_id == reporter.id && r.sender_id == member.id && r.message_id == m.message_id, "{r:?}");
    let e = expect_code(
        call!(owner.client, ResolveReport, resolve(ReportAction::Unspecified)),
        ErrorCode::InvalidArgument,
    )?;
    ensure!(e.field == "resolve_report.action", "{e:?}");
    let done = call!(owner.client, ResolveReport, resolve(ReportAction::Dismiss))?.report.context("no report")?;
    ensure!(done.state() == ReportState::Resolved && done.action() == ReportAction::Dismiss, "{done:?}");
    ensure!(done.resolved_by == owner.id && done.resolved_at_ms > 0 && done.resolution_note == "seen", "{done:?}");
    expect_code(call!(owner.client, ResolveReport, resolve(ReportAction::Dismiss)), ErrorCode::FailedPrecondition)?;
    let open = call!(owner.client, ListReports, list(conv, ReportState::Open))?;
    ensure!(open.reports.iter().all(|r| r.report_id != id), "still open: {open:?}");
    let resolved = call!(owner.client, ListReports, list(conv, ReportState::Resolved))?;
    ensure!(resolved.reports.iter().any(|r| r.report_id == id && r.action() == ReportAction::Dismiss), "{resolved:?}");
    // The message stays: dismissing changes nothing else.
    let h = history(&member, conv).await?;
    ensure!(h.iter().any(|x| x.message_id == m.message_id && !x.deleted), "{h:?}");
    Ok(())
}

/// §27.4, §27.3: resolving with DELETE_MESSAGE deletes the message for every member
/// (`MessageDeleted` by the resolver) and tells the reporter, live and in the inbox, what was done
/// and by whom.
pub(super) async fn resolution_is_told_to_the_reporter(t: Target) -> anyhow::Result<()> {
    let owner = account(&t, "rep-r-owner").await?;
    let mut sender = account(&t, "rep-r-sender").await?;
    let mut reporter = account(&t, "rep-r-reporter").await?;
    let conv = group(&owner, &[sender.id, reporter.id]).await?;
    let m = send(&sender, conv, "d1", "something awful").await?;
    let id = call!(reporter.client, ReportMessage, report(conv, m.message_id, ""))?.report_id;
    let r = v1::ResolveReport { report_id: id, action: ReportAction::DeleteMessage as i32, note: "removed".into() };
    let done = call!(owner.client, ResolveReport, r)?.report.context("no report")?;
    ensure!(done.action() == ReportAction::DeleteMessage && done.state() == ReportState::Resolved, "{done:?}");
    let deleted = entry(
        &mut sender.events,
        conv,
        |b| matches!(b, v1::conversation_event::Body::MessageDeleted(d) if d.message_id == m.message_id),
    )
    .await?;
    ensure!(deleted.actor_id == owner.id, "{deleted:?}");
    let tomb = history(&sender, conv).await?.into_iter().find(|x| x.message_id == m.message_id).context("tombstone")?;
    ensure!(tomb.deleted && tomb.text.is_empty(), "{tomb:?}");
    let n = told(&mut reporter, id).await?;
    ensure!(n.kind() == NotificationKind::ReportResolved && n.report_action() == ReportAction::DeleteMessage, "{n:?}");
    ensure!(n.actor_id == owner.id && n.conversation_id == conv && n.message_id == m.message_id, "{n:?}");
    let listed = inbox_of(&reporter, id).await?;
    ensure!(listed.len() == 1 && listed[0].notification_id == n.notification_id, "{listed:?}");
    Ok(())
}

/// §27.1: reporting a message again answers the same report and tells nobody again; another
/// member's report of it is another report.
pub(super) async fn repeat_report_answers_the_same_id(t: Target) -> anyhow::Result<()> {
    let mut owner = account(&t, "rep-x-owner").await?;
    let sender = account(&t, "rep-x-sender").await?;
    let reporter = account(&t, "rep-x-reporter").await?;
    let other = account(&t, "rep-x-other").await?;
    let conv = group(&owner, &[sender.id, reporter.id, other.id]).await?;
    let m = send(&sender, conv, "x1", "reported twice").await?;
    let first = call!(reporter.client, ReportMessage, report(conv, m.message_id, "once"))?.report_id;
    let again = call!(reporter.client, ReportMessage, report(conv, m.message_id, "twice"))?.report_id;
    ensure!(first == again, "a repeat made report {again} after {first}");
    let second = call!(other.client, ReportMessage, report(conv, m.message_id, ""))?.report_id;
    ensure!(second != first, "another member's report is another report");
    // Told once of each report.
    told(&mut owner, first).await?;
    told(&mut owner, second).await?;
    ensure!(inbox_of(&owner, first).await?.len() == 1, "told of the repeat");
    let open = call!(owner.client, ListReports, list(conv, ReportState::Open))?;
    let r = open.reports.iter().find(|r| r.report_id == first).context("report listed")?;
    ensure!(r.note == "once", "the repeat changed the report: {r:?}");
    let ids: Vec<u64> = open.reports.iter().map(|r| r.report_id).collect();
    ensure!(ids == [second, first], "newest first: {ids:?}");
    Ok(())
}
