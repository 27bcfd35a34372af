//! Reports (docs/protocol.md §27): a member reports a message; the conversation's moderators and
//! the server's administrators list and resolve reports; the reporter is told.

use confab_protocol::v1::{self, response::Result as R};

use crate::error::ServerError;
use crate::session::{Caller, Session};
use crate::state::AppState;
use crate::wire;

type Out = Result<R, ServerError>;

/// §27.1
pub(crate) async fn report_message(state: &AppState, caller: &Caller, r: v1::ReportMessage) -> Out {
    let id = state.conversations().report(caller, r.conversation_id, r.message_id, r.reason, &r.note).await?;
    Ok(R::ReportMessage(v1::ReportMessageResult { report_id: id.0 as u64 }))
}

/// §27.3
pub(crate) async fn list_reports(state: &AppState, caller: &Caller, r: v1::ListReports) -> Out {
    let page = state.conversations().list_reports(caller, r.conversation_id, r.state, r.before_id, r.limit).await?;
    Ok(R::ListReports(v1::ListReportsResult {
        reports: page.items.iter().map(wire::report).collect(),
        has_more: page.has_more,
    }))
}

/// §27.3, §27.4
pub(crate) async fn resolve_report(state: &AppState, session: &Session, caller: &Caller, r: v1::ResolveReport) -> Out {
    let addr = session.peer.ip().to_string();
    let report = state.conversations().resolve_report(caller, addr, r.report_id, r.action, &r.note).await?;
    Ok(R::ResolveReport(v1::ResolveReportResult { report: Some(wire::report(&report)) }))
}
