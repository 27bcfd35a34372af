//! A webhook receiver standing in for an SMS or mail gateway: a server's code sender POSTs
//! one-time codes here, and tests (or the conformance runner's `--code-sink`) read them back. It
//! can fail on purpose to exercise the sender's retries.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// One delivered message.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub json: serde_json::Value,
    /// The X-Confab-Signature header matched the body.
    pub signature_ok: bool,
}

#[derive(Debug, Default)]
struct Shared {
    messages: Mutex<VecDeque<Delivered>>,
    fail_next: AtomicU32,
    requests: AtomicU32,
}

/// The receiver; stops when dropped.
#[derive(Debug)]
pub struct CodeInbox {
    pub addr: SocketAddr,
    /// The webhook secret bodies are checked against; without one, any body is accepted.
    pub secret: Option<String>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CodeInbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CodeInbox {
    /// A receiver on a free loopback port, checking signatures with a fixed test secret.
    pub async fn start() -> anyhow::Result<Self> {
        Self::bind("127.0.0.1:0".parse()?, Some("inbox-test-secret".into())).await
    }

    /// A receiver on `addr` (any path is accepted). With `secret`, a delivery counts as signed
    /// only when its `X-Confab-Signature` is the HMAC-SHA256 of the body under it.
    pub async fn bind(addr: SocketAddr, secret: Option<String>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (s, key) = (shared.clone(), secret.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, key) = (s.clone(), key.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (s, key) = (s.clone(), key.clone());
                        async move {
                            let sig = req
                                .headers()
                                .get("x-confab-signature")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            s.requests.fetch_add(1, Ordering::SeqCst);
                            let failing = s
                                .fail_next
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                                .is_ok();
                            let status = if failing {
                                500
                            } else {
                                let signature_ok = key.as_deref().is_none_or(|key| {
                                    let mut mac =
                                        <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes()).expect("hmac");
                                    mac.update(&body);
                                    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                                    sig.as_deref() == Some(expected.as_str())
                                });
                                let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                                s.messages.lock().expect("inbox").push_back(Delivered { json, signature_ok });
                                200
                            };
                            let mut r = hyper::Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Ok(Self { addr, secret, shared, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}/codes", self.addr)
    }

    /// The next `n` deliveries answer HTTP 500.
    pub fn fail_next(&self, n: u32) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// HTTP requests received, failed ones included.
    pub fn requests(&self) -> u32 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Waits for (and removes) the next message addressed to `to`.
    pub async fn next_for(&self, to: &str) -> anyhow::Result<Delivered> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                {
                    let mut q = self.shared.messages.lock().expect("inbox");
                    if let Some(i) = q.iter().position(|m| m.json["to"] == to) {
                        return q.remove(i).expect("present");
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .with_context(|| format!("no code delivered to {to}"))
    }

    /// The code of the next message to `to`.
    pub async fn code_for(&self, to: &str) -> anyhow::Result<String> {
        let m = self.next_for(to).await?;
        anyhow::ensure!(m.signature_ok, "bad webhook signature on {:?}", m.json);
        m.json["code"].as_str().map(str::to_string).context("message without code")
    }

    /// Messages not yet taken.
    pub fn pending(&self) -> usize {
        self.shared.messages.lock().expect("inbox").len()
    }
}
