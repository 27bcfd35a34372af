//! Requests about something another node of the cluster owns (a ringing call, §20.2; later an SFU
//! room, §20.3): the node the client is connected to forwards the request with its caller to the
//! owner, which runs the same handler and answers; the client gets the owner's result or error as
//! if its own node had answered.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use confab_protocol::v1::{self, client_frame::Request, response};
use prost::Message as _;

use super::calls;
use crate::cluster::Service;
use crate::error::ServerError;
use crate::session::Caller;
use crate::state::AppState;

/// The RPC service name (`{prefix}.rpc.{node}.forward`).
pub(crate) const SERVICE: &str = "forward";

type Out = Result<response::Result, ServerError>;

/// A request forwarded to its owner, with the caller its node authenticated.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Forwarded {
    #[prost(int64, tag = "1")]
    pub user: i64,
    #[prost(string, tag = "2")]
    pub session: String,
    #[prost(int64, tag = "3")]
    pub expires_at_ms: i64,
    /// The request as the client sent it (request id 0).
    #[prost(message, optional, tag = "4")]
    pub frame: Option<v1::ClientFrame>,
}

/// Runs `request` on `node`, the owner of what it is about.
///
/// # Errors
/// The owner's own error; `UNAVAILABLE` when the owner does not answer (it stopped: a retry
/// reaches whatever replaced it).
pub(crate) async fn to_owner(state: &AppState, node: &str, caller: &Caller, request: Request) -> Out {
    let Some(cluster) = state.cluster() else {
        return Err(ServerError::NotFound("no such call".into()));
    };
    let forwarded = Forwarded {
        user: caller.user_id.0,
        session: caller.session_id.clone(),
        expires_at_ms: caller.expires_at_ms as i64,
        frame: Some(v1::ClientFrame { request_id: 0, request: Some(request) }),
    };
    let answer = cluster.rpc().request(node, SERVICE, Bytes::from(forwarded.encode_to_vec())).await.map_err(|e| {
        tracing::debug!(error = %e, "forwarding to the owner");
        ServerError::Unavailable("the server that holds this call is unreachable; retry".into())
    })?;
    let response = v1::Response::decode(answer)
        .map_err(|e| ServerError::Internal(format!("undecodable answer from node {node}: {e}")))?;
    match response.result {
        Some(response::Result::Error(e)) => Err(ServerError::Relayed(e)),
        Some(result) => Ok(result),
        None => Err(ServerError::Internal(format!("empty answer from node {node}"))),
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
    let caller = Caller {
        user_id: crate::store::UserId(f.user),
        session_id: f.session,
        expires_at_ms: f.expires_at_ms.max(0) as u64,
    };
    // Only what another node may own is served; anything else is the forwarding node's bug.
    match f.frame.and_then(|f| f.request) {
        Some(Request::RingCall(r)) => calls::ring(state, &caller, r).await,
        Some(Request::AcceptCall(r)) => calls::accept(state, &caller, r).await,
        Some(Request::RejectCall(r)) => calls::reject(state, &caller, r).await,
        Some(Request::HangupCall(r)) => calls::hangup(state, &caller, r).await,
        Some(Request::CallSignal(r)) => calls::signal(state, &caller, r).await,
        _ => Err(ServerError::Unimplemented("not a request another node forwards".into())),
    }
}
