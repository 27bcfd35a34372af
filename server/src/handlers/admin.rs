//! Server administration and the audit log (docs/protocol.md §26, §28): the administrator's
//! requests, refused to everyone else with one `NOT_FOUND` before any field is read (§26.1).

use confab_protocol::v1::{self, response::Result as R};

use crate::error::ServerError;
use crate::session::{Caller, Session};
use crate::state::AppState;

type Out = Result<R, ServerError>;

/// The requests only a server administrator may make (§26).
#[derive(Debug)]
pub(crate) enum AdminRequest {
    ListUsers(v1::AdminListUsers),
    GetUser(v1::AdminGetUser),
    SuspendUser(v1::AdminSuspendUser),
    ReactivateUser(v1::AdminReactivateUser),
    DeleteUser(v1::AdminDeleteUser),
    RevokeSessions(v1::AdminRevokeSessions),
    DeleteMessage(v1::AdminDeleteMessage),
    DeleteConversation(v1::AdminDeleteConversation),
    QuarantineMedia(v1::AdminQuarantineMedia),
    SetUserLimits(v1::AdminSetUserLimits),
    GetStats(v1::AdminGetStats),
    ListAudit(v1::AdminListAudit),
}

/// Checks the caller is a server administrator (read from the store on every request, so a
/// revoked flag takes effect at once), then runs the request. Anyone else gets the same
/// `NOT_FOUND` for every one of them, whatever its fields, and nothing changes (§26.1).
pub(crate) async fn handle(state: &AppState, session: &Session, caller: &Caller, r: AdminRequest) -> Out {
    let admin = state.admin().acting(caller, session.peer.ip().to_string()).await?;
    Ok(match r {
        AdminRequest::ListUsers(r) => R::AdminListUsers(admin.list_users(r).await?),
        AdminRequest::GetUser(r) => R::AdminGetUser(admin.get_user(r).await?),
        AdminRequest::SuspendUser(r) => R::AdminSuspendUser(admin.suspend(r).await?),
        AdminRequest::ReactivateUser(r) => R::AdminReactivateUser(admin.reactivate(r).await?),
        AdminRequest::DeleteUser(r) => R::AdminDeleteUser(admin.delete_user(r).await?),
        AdminRequest::RevokeSessions(r) => R::AdminRevokeSessions(admin.revoke_sessions(r).await?),
        AdminRequest::DeleteMessage(r) => R::AdminDeleteMessage(admin.delete_message(r).await?),
        AdminRequest::DeleteConversation(r) => R::AdminDeleteConversation(admin.delete_conversation(r).await?),
        AdminRequest::QuarantineMedia(r) => R::AdminQuarantineMedia(admin.quarantine_media(r).await?),
        AdminRequest::SetUserLimits(r) => R::AdminSetUserLimits(admin.set_user_limits(r).await?),
        AdminRequest::GetStats(_) => R::AdminGetStats(admin.stats().await?),
        AdminRequest::ListAudit(r) => R::AdminListAudit(admin.list_audit(r).await?),
    })
}
