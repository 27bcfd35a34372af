//! Push notifications (docs/protocol.md §24): targets, settings and the ledger, from the wire to
//! the push service.

use confab_protocol::v1::{self, response::Result as R};

use crate::error::ServerError;
use crate::session::Caller;
use crate::state::AppState;

/// §24.1
pub(crate) async fn register_target(state: &AppState, a: &Caller, r: v1::RegisterPushTarget) -> Result<R, ServerError> {
    let target = state.push().register(a, &r).await?;
    Ok(R::RegisterPushTarget(v1::RegisterPushTargetResult { target: Some(target) }))
}

/// §24.1
pub(crate) async fn unregister_target(
    state: &AppState,
    a: &Caller,
    r: v1::UnregisterPushTarget,
) -> Result<R, ServerError> {
    state.push().unregister(a, &r).await?;
    Ok(R::UnregisterPushTarget(v1::UnregisterPushTargetResult {}))
}

/// §24.1
pub(crate) async fn list_targets(state: &AppState, a: &Caller, r: v1::ListPushTargets) -> Result<R, ServerError> {
    Ok(R::ListPushTargets(state.push().list_targets(a, &r).await?))
}

/// §24.5
pub(crate) async fn list_deliveries(state: &AppState, a: &Caller, r: v1::ListPushDeliveries) -> Result<R, ServerError> {
    Ok(R::ListPushDeliveries(state.push().deliveries(a, &r).await?))
}

/// §24.3
pub(crate) async fn get_settings(state: &AppState, a: &Caller) -> Result<R, ServerError> {
    Ok(R::GetPushSettings(state.push().settings(a).await?))
}

/// §24.3
pub(crate) async fn set_settings(state: &AppState, a: &Caller, r: v1::SetPushSettings) -> Result<R, ServerError> {
    Ok(R::SetPushSettings(state.push().set_settings(a, &r).await?))
}

/// §24.3
pub(crate) async fn set_conversation_settings(
    state: &AppState,
    a: &Caller,
    r: v1::SetConversationPushSettings,
) -> Result<R, ServerError> {
    Ok(R::SetConversationPushSettings(state.push().set_conversation(a, &r).await?))
}
