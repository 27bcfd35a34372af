//! Calls (docs/protocol.md §20): wire requests to the calls service and back.

use confab_protocol::v1::{self, response::Result as R};

use crate::connection::ConnCtx;
use crate::error::ServerError;
use crate::state::AppState;

type Out = Result<R, ServerError>;

/// §20.1
pub(crate) fn get_ice_servers(state: &AppState, ctx: &ConnCtx) -> Out {
    let auth = ctx.require_auth()?;
    let (ice_servers, expires_at_ms) = state.calls().ice_servers(&auth);
    Ok(R::GetIceServers(v1::GetIceServersResult { ice_servers, expires_at_ms }))
}

/// §20.2.1
pub(crate) async fn start(state: &AppState, ctx: &ConnCtx, r: v1::StartCall) -> Out {
    let auth = ctx.require_auth()?;
    Ok(R::StartCall(state.calls().start(&auth, r.conversation_id, r.media).await?))
}

/// §20.2.2
pub(crate) fn ring(state: &AppState, ctx: &ConnCtx, r: v1::RingCall) -> Out {
    state.calls().ring(&ctx.require_auth()?, &r.call_id)?;
    Ok(R::RingCall(v1::RingCallResult {}))
}

/// §20.2.3
pub(crate) fn accept(state: &AppState, ctx: &ConnCtx, r: v1::AcceptCall) -> Out {
    Ok(R::AcceptCall(state.calls().accept(&ctx.require_auth()?, &r.call_id)?))
}

/// §20.2.4
pub(crate) fn reject(state: &AppState, ctx: &ConnCtx, r: v1::RejectCall) -> Out {
    state.calls().reject(&ctx.require_auth()?, &r.call_id, r.reason)?;
    Ok(R::RejectCall(v1::RejectCallResult {}))
}

/// §20.2.5
pub(crate) fn hangup(state: &AppState, ctx: &ConnCtx, r: v1::HangupCall) -> Out {
    state.calls().hangup(&ctx.require_auth()?, &r.call_id, r.reason)?;
    Ok(R::HangupCall(v1::HangupCallResult {}))
}

/// §20.2.6
pub(crate) fn signal(state: &AppState, ctx: &ConnCtx, r: v1::CallSignal) -> Out {
    state.calls().signal(&ctx.require_auth()?, r)?;
    Ok(R::CallSignal(v1::CallSignalResult {}))
}

/// §20.3.2
pub(crate) async fn join(state: &AppState, ctx: &ConnCtx, r: v1::JoinCall) -> Out {
    let auth = ctx.require_auth()?;
    Ok(R::JoinCall(state.calls().sfu().join(&auth, r.conversation_id).await?))
}

/// §20.3.3
pub(crate) async fn publish(state: &AppState, ctx: &ConnCtx, r: v1::Publish) -> Out {
    let auth = ctx.require_auth()?;
    Ok(R::Publish(state.calls().sfu().publish(&auth, r).await?))
}

/// §20.3.4
pub(crate) async fn subscriber_answer(state: &AppState, ctx: &ConnCtx, r: v1::SubscriberAnswer) -> Out {
    let auth = ctx.require_auth()?;
    state.calls().sfu().subscriber_answer(&auth, r).await?;
    Ok(R::SubscriberAnswer(v1::SubscriberAnswerResult {}))
}

/// §20.3.5
pub(crate) async fn trickle(state: &AppState, ctx: &ConnCtx, r: v1::Trickle) -> Out {
    let auth = ctx.require_auth()?;
    state.calls().sfu().trickle(&auth, r).await?;
    Ok(R::Trickle(v1::TrickleResult {}))
}

/// §20.3.6
pub(crate) async fn set_mute(state: &AppState, ctx: &ConnCtx, r: v1::SetMute) -> Out {
    let auth = ctx.require_auth()?;
    state.calls().sfu().set_mute(&auth, r).await?;
    Ok(R::SetMute(v1::SetMuteResult {}))
}

/// §20.3.7
pub(crate) async fn leave(state: &AppState, ctx: &ConnCtx, r: v1::LeaveCall) -> Out {
    let auth = ctx.require_auth()?;
    state.calls().sfu().leave(&auth, r.conversation_id).await?;
    Ok(R::LeaveCall(v1::LeaveCallResult {}))
}
