//! Requests from one node to a service on another, over NATS request/reply: how a request about
//! something another node owns (a ringing call, an SFU room) reaches its owner. A service is
//! served on `{prefix}.rpc.{node}.{service}`; the payloads are the services' own protobuf.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

/// How long a request waits for the owner's answer.
pub(super) const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request to another node got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Nobody serves it: the node is not running (NATS answers at once).
    #[error("node {node} is not running")]
    NoResponders { node: String },
    /// It did not answer in time, or the request could not be sent.
    #[error("node {node} did not answer: {reason}")]
    Unreachable { node: String, reason: String },
}

/// A service other nodes may call: takes a request's bytes, answers bytes.
pub trait Service: Send + Sync + 'static {
    fn call(&self, request: Bytes) -> Pin<Box<dyn Future<Output = Bytes> + Send>>;
}

/// Cheap-clone handle for calling other nodes.
#[derive(Clone, Debug)]
pub struct Rpc {
    client: async_nats::Client,
    prefix: String,
    node: String,
}

impl Rpc {
    pub(super) fn new(client: async_nats::Client, prefix: String, node: String) -> Self {
        Self { client, prefix, node }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn subject(&self, node: &str, service: &str) -> String {
        format!("{}.rpc.{node}.{service}", self.prefix)
    }

    /// Sends `request` to `service` on `node` and waits (at most 5 s) for its answer.
    ///
    /// # Errors
    /// [`RpcError::NoResponders`] when `node` does not run; [`RpcError::Unreachable`] when it
    /// does not answer within 5 s or NATS is down.
    pub async fn request(&self, node: &str, service: &str, request: Bytes) -> Result<Bytes, RpcError> {
        let unreachable = |reason: String| RpcError::Unreachable { node: node.to_string(), reason };
        let request = async_nats::Request::new().payload(request).timeout(Some(TIMEOUT));
        match self.client.send_request(self.subject(node, service), request).await {
            Ok(m) => Ok(m.payload),
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                Err(RpcError::NoResponders { node: node.to_string() })
            }
            Err(e) => Err(unreachable(e.to_string())),
        }
    }

    /// Serves `service` on this node until `shutdown`; each request runs in its own task.
    pub(super) async fn serve(
        &self,
        service: &str,
        handler: Arc<dyn Service>,
        shutdown: CancellationToken,
    ) -> Result<(), async_nats::SubscribeError> {
        let mut sub = self.client.subscribe(self.subject(&self.node, service)).await?;
        let client = self.client.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    () = shutdown.cancelled() => return,
                    m = sub.next() => match m { Some(m) => m, None => return },
                };
                let Some(reply) = msg.reply else { continue };
                let (handler, client) = (handler.clone(), client.clone());
                tokio::spawn(async move {
                    let answer = handler.call(msg.payload).await;
                    if let Err(e) = client.publish(reply, answer).await {
                        tracing::debug!(error = %e, "answering another node");
                    }
                });
            }
        });
        Ok(())
    }
}
