//! Requests about something another node owns (a ringing call, §20.2; a group-call room,
//! §20.3): the node a client is connected to forwards the request, with the caller it
//! authenticated, to the owner's `forward` service (served by `handlers::forward`), which runs the
//! same handler and answers; the client gets the owner's result or error as if from its own node.

use bytes::Bytes;
use confab_protocol::v1::{self, client_frame::Request, response};
use prost::Message as _;

use super::{Rpc, RpcError};
use crate::error::ServerError;
use crate::session::Caller;
use crate::store::UserId;

/// The RPC service name (`{prefix}.rpc.{node}.forward`).
pub const SERVICE: &str = "forward";

/// A request forwarded to its owner, with the caller its node authenticated.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Forwarded {
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

impl Forwarded {
    /// The caller the forwarding node authenticated.
    pub fn caller(&self) -> Caller {
        Caller {
            user_id: UserId(self.user),
            session_id: self.session.clone(),
            expires_at_ms: self.expires_at_ms.max(0) as u64,
        }
    }
}

/// Why a forwarded request has no result.
#[derive(Debug)]
pub enum Forwarding {
    /// The owner answered with an error, or could not be reached in time.
    Failed(ServerError),
    /// The owner is not running (nobody serves its subject): what it owned may be taken over.
    OwnerGone,
}

impl From<Forwarding> for ServerError {
    fn from(f: Forwarding) -> Self {
        match f {
            Forwarding::Failed(e) => e,
            Forwarding::OwnerGone => ServerError::Unavailable("the server holding this call stopped; retry".into()),
        }
    }
}

/// Runs `request` as `caller` on `node`, the owner of what it is about.
///
/// # Errors
/// The owner's own error (`ServerError::Relayed`); `UNAVAILABLE` when the owner does not answer
/// (it stopped, or NATS is down: a retry reaches whatever replaced it).
pub async fn to_owner(
    rpc: &Rpc,
    node: &str,
    caller: &Caller,
    request: Request,
) -> Result<response::Result, ServerError> {
    Ok(try_owner(rpc, node, caller, request).await?)
}

/// Like [`to_owner`], telling an owner that is not running apart ([`Forwarding::OwnerGone`]).
pub async fn try_owner(
    rpc: &Rpc,
    node: &str,
    caller: &Caller,
    request: Request,
) -> Result<response::Result, Forwarding> {
    let forwarded = Forwarded {
        user: caller.user_id.0,
        session: caller.session_id.clone(),
        expires_at_ms: caller.expires_at_ms as i64,
        frame: Some(v1::ClientFrame { request_id: 0, request: Some(request) }),
    };
    let failed = Forwarding::Failed;
    let answer = match rpc.request(node, SERVICE, Bytes::from(forwarded.encode_to_vec())).await {
        Ok(a) => a,
        Err(RpcError::NoResponders { .. }) => return Err(Forwarding::OwnerGone),
        Err(e) => {
            tracing::debug!(error = %e, "forwarding to the owner");
            return Err(failed(ServerError::Unavailable("the server holding this call is unreachable; retry".into())));
        }
    };
    let response = v1::Response::decode(answer)
        .map_err(|e| failed(ServerError::Internal(format!("undecodable answer from node {node}: {e}"))))?;
    match response.result {
        Some(response::Result::Error(e)) => Err(failed(ServerError::Relayed(e))),
        Some(result) => Ok(result),
        None => Err(failed(ServerError::Internal(format!("empty answer from node {node}")))),
    }
}
