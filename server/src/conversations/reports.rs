//! Reports of messages (docs/protocol.md §27): a member reports a message; the conversation's
//! moderators and the server's administrators list and resolve reports; the reporter is told.
//! Validation here, the decisions in `store::rules::reports`, the writes through the batched
//! writer (their notifications travel the bus like every other commit's).

use super::{Conversations, id};
use crate::access::not_found;
use crate::error::ServerError;
use crate::page::{Slice, page_limit};
use crate::session::Caller;
use crate::store::rules::{ConvFacts, reports};
use crate::store::{
    ConvId, OpResult, RateBucket, ReportAction, ReportFilter, ReportId, ReportReason, ReportRec, ReportScope,
    ReportState, WriteOp, now_ms,
};

/// Unix µs, the clock of the store's rate buckets.
fn now_us() -> i64 {
    now_ms().saturating_mul(1000)
}

/// Longest note of a report or a resolution, in bytes (§27.1, §27.3).
pub const MAX_NOTE_BYTES: usize = 2_000;

fn no_such_report() -> ServerError {
    ServerError::NotFound("no such report".into())
}

fn check_note(field: &'static str, note: &str) -> Result<(), ServerError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(ServerError::invalid(field, format!("at most {MAX_NOTE_BYTES} bytes")));
    }
    Ok(())
}

impl Conversations {
    /// §27.1: reports a message of a conversation the caller is a member of; returns the report's
    /// id (the earlier one when the caller reported this message before). `reason` and the note
    /// as the wire carries them.
    ///
    /// Each report, a repeat included, takes a token from the reporter's bucket
    /// (`limits.reports_per_account`, kept in the store so every node counts the same), after
    /// the request is found well-formed.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for missing ids, an unspecified or unknown reason, a note over 2,000
    /// bytes, or the caller's own message; `RATE_LIMITED` (with the wait) when the reporter's
    /// bucket is empty; `NOT_FOUND` for a conversation the caller is not a member of (as for one
    /// that does not exist) or a message not live in it.
    pub async fn report(
        &self,
        auth: &Caller,
        conv: u64,
        message_id: u64,
        reason: i32,
        note: &str,
    ) -> Result<ReportId, ServerError> {
        let conversation_id = id("report_message.conversation_id", conv)?;
        let message_id = id("report_message.message_id", message_id)?;
        let reason = ReportReason::try_from(reason)
            .map_err(|_| ServerError::invalid("report_message.reason", "SPAM, ABUSE, ILLEGAL or OTHER"))?;
        check_note("report_message.note", note)?;
        let bucket = RateBucket { kind: "report_account", key_hash: auth.user_id.0.to_be_bytes().to_vec() };
        self.store().take_rate_token(&bucket, self.0.report_rate, now_us()).await?.map_err(ServerError::RateLimited)?;
        let op = WriteOp::ReportMessage {
            conversation_id,
            message_id,
            reporter: auth.user_id,
            reason,
            note: note.to_string(),
            now_ms: now_ms(),
        };
        match self.0.writer.submit(op).await?.result {
            Some(OpResult::Reported(id)) => Ok(id),
            _ => Err(ServerError::Internal("report returned no report".into())),
        }
    }

    /// §27.3: the reports the caller may act on, newest first: one conversation's (`conv`) for
    /// its moderators and the server's administrators, or (`conv` 0) those of every group and
    /// channel the caller moderates, every report for an administrator. `state` 0 means open.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for an unknown state; `NOT_FOUND` for a conversation whose reports the
    /// caller may not see (as for one that does not exist).
    pub async fn list_reports(
        &self,
        auth: &Caller,
        conv: u64,
        state: i32,
        before_id: u64,
        limit: u32,
    ) -> Result<Slice<ReportRec>, ServerError> {
        let state = match state {
            0 => ReportState::Open,
            s => {
                ReportState::try_from(s).map_err(|_| ServerError::invalid("list_reports.state", "OPEN or RESOLVED"))?
            }
        };
        let server_admin = self.store().is_server_admin(auth.user_id).await?;
        let scope = match conv {
            0 if server_admin => ReportScope::All,
            0 => ReportScope::ModeratedBy { user: auth.user_id, lowest: reports::LOWEST_MODERATOR },
            c => {
                let conv: ConvId = id("list_reports.conversation_id", c)?;
                let facts = self.store().conversation(auth.user_id, conv).await?.map(|v| ConvFacts {
                    kind: v.kind,
                    role: v.my_role,
                    head_seq: v.head_seq,
                });
                if !reports::may_act(facts, server_admin) {
                    return Err(not_found());
                }
                ReportScope::Conversation(conv)
            }
        };
        let before = (before_id != 0).then(|| ReportId(i64::try_from(before_id).unwrap_or(i64::MAX)));
        let limit = page_limit(limit, 50, 100);
        let list = self.store().reports(&ReportFilter { scope, state, before }, limit + 1).await?;
        Ok(Slice::cut(list, limit))
    }

    /// §27.3: resolves an open report the caller may act on with `action` (the wire's number);
    /// the reporter is told (§27.4) and the resolution audited with `client_addr`.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a missing id, an unspecified or unknown action, a note over 2,000
    /// bytes; `NOT_FOUND` for a report the caller may not act on (as for one that does not exist);
    /// `FAILED_PRECONDITION` for a resolved report, removing the owner, a DIRECT conversation's
    /// sender, or oneself; `PERMISSION_DENIED` for a removal RemoveMember would refuse the caller.
    pub async fn resolve_report(
        &self,
        auth: &Caller,
        client_addr: String,
        report_id: u64,
        action: i32,
        note: &str,
    ) -> Result<ReportRec, ServerError> {
        let report_id: ReportId = id("resolve_report.report_id", report_id)?;
        let action = ReportAction::try_from(action)
            .map_err(|_| ServerError::invalid("resolve_report.action", "DISMISS, DELETE_MESSAGE or REMOVE_SENDER"))?;
        check_note("resolve_report.note", note)?;
        // What a report names never changes: read here, it tells the writer which rows it locks.
        let report = self.store().report(report_id).await?.ok_or_else(no_such_report)?;
        let op = WriteOp::ResolveReport {
            report_id,
            conversation_id: report.conversation_id,
            sender: report.sender_id,
            reporter: report.reporter_id,
            actor: auth.user_id,
            action,
            note: note.to_string(),
            client_addr,
            now_ms: now_ms(),
        };
        match self.0.writer.submit(op).await?.result {
            Some(OpResult::Resolved(r)) => Ok(*r),
            _ => Err(ServerError::Internal("resolution returned no report".into())),
        }
    }
}
