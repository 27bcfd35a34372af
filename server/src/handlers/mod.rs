//! Request dispatch: one exhaustive match on the request oneof, one module per message family.

pub(crate) mod auth;
pub(crate) mod session;

use confab_protocol::v1::client_frame::Request;
use confab_protocol::v1::response;

use crate::connection::ConnCtx;
use crate::error::ServerError;
use crate::state::AppState;

/// Handles one request after the handshake. Every request kind has an arm; there is no catch-all.
pub(crate) async fn dispatch(
    state: &AppState,
    ctx: &ConnCtx,
    request: Request,
) -> Result<response::Result, ServerError> {
    match request {
        Request::Hello(_) => {
            Err(ServerError::FailedPrecondition("Hello was already accepted on this connection".into()))
        }
        Request::Ping(ping) => Ok(response::Result::Pong(session::ping(&ping))),
        Request::Register(r) => auth::register(state, ctx, r).await,
        Request::Login(r) => auth::login(state, ctx, r).await,
        Request::RequestCode(r) => auth::request_code(state, ctx, r).await,
        Request::VerifyCode(r) => auth::verify_code(state, ctx, r).await,
        Request::Authenticate(r) => auth::authenticate(state, ctx, r).await,
        Request::Refresh(r) => auth::refresh(state, ctx, r).await,
        Request::Logout(_) => auth::logout(state, ctx).await,
        Request::ListSessions(_) => auth::list_sessions(state, ctx).await,
        Request::RevokeSession(r) => auth::revoke_session(state, ctx, r).await,
        Request::ChangePassword(r) => auth::change_password(state, ctx, r).await,
        Request::RequestPasswordReset(r) => auth::request_password_reset(state, ctx, r).await,
        Request::ResetPassword(r) => auth::reset_password(state, ctx, r).await,
        Request::GetMe(_) => auth::get_me(state, ctx).await,
        Request::UpdateProfile(r) => auth::update_profile(state, ctx, r).await,
        Request::DeleteAccount(r) => auth::delete_account(state, ctx, r).await,
    }
}
