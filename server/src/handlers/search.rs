//! Message search (docs/protocol.md §23): SearchMessages, from the wire to the search service.

use confab_protocol::v1::{self, response::Result as R};

use crate::error::ServerError;
use crate::session::Caller;
use crate::state::AppState;

/// §23
pub(crate) async fn search_messages(state: &AppState, a: &Caller, r: v1::SearchMessages) -> Result<R, ServerError> {
    Ok(R::SearchMessages(state.search().search(a, &r).await?))
}
