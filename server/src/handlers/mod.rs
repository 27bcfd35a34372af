//! Request dispatch: one exhaustive match on the request oneof, one module per message family.

pub(crate) mod session;

use confab_protocol::v1::client_frame::Request;
use confab_protocol::v1::response;

use crate::connection::ConnCtx;
use crate::error::ServerError;
use crate::state::AppState;

/// Handles one request after the handshake. Every request kind has an arm; there is no catch-all.
pub(crate) async fn dispatch(
    _state: &AppState,
    _ctx: &ConnCtx,
    request: Request,
) -> Result<response::Result, ServerError> {
    match request {
        Request::Hello(_) => Err(ServerError::FailedPrecondition(
            "Hello was already accepted on this connection".into(),
        )),
        Request::Ping(ping) => Ok(response::Result::Pong(session::ping(&ping))),
    }
}
