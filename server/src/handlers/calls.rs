//! Calls (docs/protocol.md §20): wire requests to the calls service and back.

use confab_protocol::v1::{self, client_frame::Request, response::Result as R};

use super::forward;
use crate::calls::sfu::CallKey;
use crate::cluster::forward::Forwarding;
use crate::error::ServerError;
use crate::session::Caller;
use crate::state::AppState;

type Out = Result<R, ServerError>;

/// §20.1
pub(crate) fn get_ice_servers(state: &AppState, a: &Caller) -> Out {
    let (ice_servers, expires_at_ms) = state.calls().ice_servers(a);
    Ok(R::GetIceServers(v1::GetIceServersResult { ice_servers, expires_at_ms }))
}

/// §20.2.1
pub(crate) async fn start(state: &AppState, a: &Caller, r: v1::StartCall) -> Out {
    Ok(R::StartCall(state.calls().start(a, r.conversation_id, r.media).await?))
}

/// The node that owns call `call_id`, when another one does.
fn owner(state: &AppState, call_id: &str) -> Option<String> {
    state.calls().owner(call_id).map(str::to_string)
}

/// §20.2.2
pub(crate) async fn ring(state: &AppState, a: &Caller, r: v1::RingCall) -> Out {
    if let Some(node) = owner(state, &r.call_id) {
        return forward::to_owner(state, &node, a, Request::RingCall(r)).await;
    }
    state.calls().ring(a, &r.call_id)?;
    Ok(R::RingCall(v1::RingCallResult {}))
}

/// §20.2.3
pub(crate) async fn accept(state: &AppState, a: &Caller, r: v1::AcceptCall) -> Out {
    if let Some(node) = owner(state, &r.call_id) {
        return forward::to_owner(state, &node, a, Request::AcceptCall(r)).await;
    }
    Ok(R::AcceptCall(state.calls().accept(a, &r.call_id)?))
}

/// §20.2.4
pub(crate) async fn reject(state: &AppState, a: &Caller, r: v1::RejectCall) -> Out {
    if let Some(node) = owner(state, &r.call_id) {
        return forward::to_owner(state, &node, a, Request::RejectCall(r)).await;
    }
    state.calls().reject(a, &r.call_id, r.reason)?;
    Ok(R::RejectCall(v1::RejectCallResult {}))
}

/// §20.2.5
pub(crate) async fn hangup(state: &AppState, a: &Caller, r: v1::HangupCall) -> Out {
    if let Some(node) = owner(state, &r.call_id) {
        return forward::to_owner(state, &node, a, Request::HangupCall(r)).await;
    }
    state.calls().hangup(a, &r.call_id, r.reason)?;
    Ok(R::HangupCall(v1::HangupCallResult {}))
}

/// §20.2.6
pub(crate) async fn signal(state: &AppState, a: &Caller, r: v1::CallSignal) -> Out {
    if let Some(node) = owner(state, &r.call_id) {
        return forward::to_owner(state, &node, a, Request::CallSignal(r)).await;
    }
    state.calls().signal(a, r)?;
    Ok(R::CallSignal(v1::CallSignalResult {}))
}

/// §20.3.2: on the node holding the room (forwarded there when another node holds it; taken
/// over when that node does not answer).
pub(crate) async fn join(state: &AppState, a: &Caller, r: v1::JoinCall) -> Out {
    let sfu = state.calls().sfu();
    let mut holder = sfu.holder(a, r.conversation_id).await?;
    for _ in 0..2 {
        let Some(node) = holder else { break };
        match forward::try_owner(state, &node, a, Request::JoinCall(r.clone())).await {
            Ok(result) => {
                sfu.routed(a, r.conversation_id, &node);
                return Ok(result);
            }
            // Only a holder that is not running is taken over; a slow one keeps its room.
            Err(Forwarding::OwnerGone) => holder = sfu.take_over(r.conversation_id, &node).await?,
            Err(Forwarding::Failed(e)) => return Err(e),
        }
    }
    if holder.is_some() {
        return Err(ServerError::Unavailable("the group call is moving between servers; retry".into()));
    }
    Ok(R::JoinCall(sfu.join(a, r.conversation_id).await?))
}

/// The call of a conversation id.
fn conv_key(field: &'static str, conv: u64) -> Result<CallKey, ServerError> {
    Ok(CallKey::Conversation(crate::access::id(field, conv)?))
}

/// The node holding the room `a`'s device joined through this node, when it is another one.
fn room_elsewhere(state: &AppState, a: &Caller, conv: u64) -> Option<String> {
    state.calls().sfu().route(&a.session_id, conv)
}

/// §20.3.3
pub(crate) async fn publish(state: &AppState, a: &Caller, r: v1::Publish) -> Out {
    if let Some(node) = room_elsewhere(state, a, r.conversation_id) {
        return forward::to_owner(state, &node, a, Request::Publish(r)).await;
    }
    let key = conv_key("publish.conversation_id", r.conversation_id)?;
    Ok(R::Publish(state.calls().sfu().publish(&a.session_id, &key, r).await?))
}

/// §20.3.4
pub(crate) async fn subscriber_answer(state: &AppState, a: &Caller, r: v1::SubscriberAnswer) -> Out {
    if let Some(node) = room_elsewhere(state, a, r.conversation_id) {
        return forward::to_owner(state, &node, a, Request::SubscriberAnswer(r)).await;
    }
    let key = conv_key("subscriber_answer.conversation_id", r.conversation_id)?;
    state.calls().sfu().subscriber_answer(&a.session_id, &key, r).await?;
    Ok(R::SubscriberAnswer(v1::SubscriberAnswerResult {}))
}

/// §20.3.5
pub(crate) async fn trickle(state: &AppState, a: &Caller, r: v1::Trickle) -> Out {
    if let Some(node) = room_elsewhere(state, a, r.conversation_id) {
        return forward::to_owner(state, &node, a, Request::Trickle(r)).await;
    }
    let key = conv_key("trickle.conversation_id", r.conversation_id)?;
    state.calls().sfu().trickle(&a.session_id, &key, r).await?;
    Ok(R::Trickle(v1::TrickleResult {}))
}

/// §20.3.6
pub(crate) async fn set_mute(state: &AppState, a: &Caller, r: v1::SetMute) -> Out {
    if let Some(node) = room_elsewhere(state, a, r.conversation_id) {
        return forward::to_owner(state, &node, a, Request::SetMute(r)).await;
    }
    let key = conv_key("set_mute.conversation_id", r.conversation_id)?;
    state.calls().sfu().set_mute(&a.session_id, &key, r).await?;
    Ok(R::SetMute(v1::SetMuteResult {}))
}

/// §20.3.7
pub(crate) async fn leave(state: &AppState, a: &Caller, r: v1::LeaveCall) -> Out {
    if let Some(node) = room_elsewhere(state, a, r.conversation_id) {
        state.calls().sfu().unroute(&a.session_id);
        return forward::to_owner(state, &node, a, Request::LeaveCall(r)).await;
    }
    let key = conv_key("leave_call.conversation_id", r.conversation_id)?;
    state.calls().sfu().leave(&a.session_id, &key).await?;
    Ok(R::LeaveCall(v1::LeaveCallResult {}))
}

/// §20.3.10 (simulcast layer choice).
pub(crate) async fn set_subscribed_quality(state: &AppState, a: &Caller, r: v1::SetSubscribedQuality) -> Out {
    if let Some(node) = room_elsewhere(state, a, r.conversation_id) {
        return forward::to_owner(state, &node, a, Request::SetSubscribedQuality(r)).await;
    }
    let key = conv_key("set_subscribed_quality.conversation_id", r.conversation_id)?;
    subscribed_quality_in(state, &a.session_id, &key, r).await
}

/// §20.3.11 (ICE restart).
pub(crate) async fn restart_ice(state: &AppState, a: &Caller, r: v1::RestartIce) -> Out {
    if let Some(node) = room_elsewhere(state, a, r.conversation_id) {
        return forward::to_owner(state, &node, a, Request::RestartIce(r)).await;
    }
    let key = conv_key("restart_ice.conversation_id", r.conversation_id)?;
    restart_ice_in(state, &a.session_id, &key, r).await
}

/// §20.3.10 in the call `key` (a conversation's or a meeting room's).
pub(crate) async fn subscribed_quality_in(
    state: &AppState,
    session: &str,
    key: &CallKey,
    r: v1::SetSubscribedQuality,
) -> Out {
    state.calls().sfu().set_subscribed_quality(session, key, r).await?;
    Ok(R::SetSubscribedQuality(v1::SetSubscribedQualityResult {}))
}

/// §20.3.11 in the call `key`.
pub(crate) async fn restart_ice_in(state: &AppState, session: &str, key: &CallKey, r: v1::RestartIce) -> Out {
    state.calls().sfu().restart_ice(session, key, r).await?;
    Ok(R::RestartIce(v1::RestartIceResult {}))
}
