//! The serving half of forwarding (`crate::cluster::forward`): requests other nodes forward to
//! this one because it owns what they are about (a ringing call, a group-call room), run with
//! the caller the forwarding node authenticated, through the same handlers as a local request.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use confab_protocol::v1::{self, client_frame::Request, response};
use prost::Message as _;

use super::calls;
use crate::cluster::Service;
use crate::cluster::forward::{Forwarded, Forwarding};
use crate::error::ServerError;
use crate::state::AppState;

type Out = Result<response::Result, ServerError>;

/// Runs `request` on `node`, the owner of what it is about.
pub(crate) async fn to_owner(state: &AppState, node: &str, caller: &crate::session::Caller, request: Request) -> Out {
    match state.cluster() {
        Some(c) => crate::cluster::forward::to_owner(&c.rpc(), node, caller, request).await,
        None => Err(ServerError::NotFound("no such call".into())),
    }
}

/// Like [`to_owner`], telling an owner that is not running apart.
pub(crate) async fn try_owner(
    state: &AppState,
    node: &str,
    caller: &crate::session::Caller,
    request: Request,
) -> Result<response::Result, Forwarding> {
    match state.cluster() {
        Some(c) => crate::cluster::forward::try_owner(&c.rpc(), node, caller, request).await,
        None => Err(Forwarding::OwnerGone),
    }
}

/// Serves the requests other nodes forward to this one.
#[derive(Debug)]
pub(crate) struct Forwarder(pub AppState);

impl Service for Forwarder {
    fn call(&self, request: Bytes) -> Pin<Box<dyn Future<Output = Bytes> + Send>> {
        let state = self.0.clone();
        Box::pin(async move {
            let result = match serve(&state, request).await {
                Ok(r) => r,
                Err(e) => {
                    state.metrics().error(e.code());
                    response::Result::Error(e.to_wire())
                }
            };
            Bytes::from(v1::Response { request_id: 0, result: Some(result) }.encode_to_vec())
        })
    }
}

async fn serve(state: &AppState, bytes: Bytes) -> Out {
    let f =
        Forwarded::decode(bytes).map_err(|e| ServerError::Internal(format!("undecodable forwarded request: {e}")))?;
    let caller = f.caller();
    // Only what another node may own is served; anything else is the forwarding node's bug.
    match f.frame.and_then(|f| f.request) {
        Some(Request::RingCall(r)) => calls::ring(state, &caller, r).await,
        Some(Request::AcceptCall(r)) => calls::accept(state, &caller, r).await,
        Some(Request::RejectCall(r)) => calls::reject(state, &caller, r).await,
        Some(Request::HangupCall(r)) => calls::hangup(state, &caller, r).await,
        Some(Request::CallSignal(r)) => calls::signal(state, &caller, r).await,
        Some(Request::JoinCall(r)) => calls::join(state, &caller, r).await,
        Some(Request::Publish(r)) => calls::publish(state, &caller, r).await,
        Some(Request::SubscriberAnswer(r)) => calls::subscriber_answer(state, &caller, r).await,
        Some(Request::Trickle(r)) => calls::trickle(state, &caller, r).await,
        Some(Request::SetMute(r)) => calls::set_mute(state, &caller, r).await,
        Some(Request::LeaveCall(r)) => calls::leave(state, &caller, r).await,
        Some(Request::SetSubscribedQuality(r)) => calls::set_subscribed_quality(state, &caller, r).await,
        Some(Request::RestartIce(r)) => calls::restart_ice(state, &caller, r).await,
        _ => Err(ServerError::Unimplemented("not a request another node forwards".into())),
    }
}
