//! Delivering one-time codes: the [`Sender`] trait with a log sender (development: the code is
//! printed in the server log) and a webhook sender (a JSON POST to an SMS or mail gateway, signed
//! with HMAC-SHA256). Deliveries run in a background task behind a bounded queue and are retried;
//! failures are logged without the code.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::mpsc;

/// One code to deliver.
#[derive(Clone, Serialize)]
pub struct CodeMessage {
    /// "sign_in" or "password_reset".
    pub purpose: &'static str,
    /// "sms" or "email".
    pub channel: &'static str,
    /// Phone number or email address.
    pub to: String,
    pub code: String,
    pub expires_at_ms: u64,
}

impl std::fmt::Debug for CodeMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeMessage")
            .field("purpose", &self.purpose)
            .field("channel", &self.channel)
            .field("to", &mask(&self.to))
            .field("code", &"[REDACTED]")
            .finish()
    }
}

/// The destination with most characters hidden, for logs.
pub fn mask(to: &str) -> String {
    let n = to.chars().count();
    to.chars().enumerate().map(|(i, c)| if i < 3 || i + 2 >= n || c == '@' { c } else { '*' }).collect()
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

/// Delivers codes.
#[async_trait::async_trait]
pub trait Sender: Send + Sync + std::fmt::Debug {
    async fn send(&self, message: &CodeMessage) -> Result<(), SendError>;
}

/// Development sender: writes the code to the server log at WARN, under target `confab::dev_codes`.
#[derive(Debug, Default)]
pub struct LogSender;

#[async_trait::async_trait]
impl Sender for LogSender {
    async fn send(&self, m: &CodeMessage) -> Result<(), SendError> {
        tracing::warn!(
            target: "confab::dev_codes",
            purpose = m.purpose,
            channel = m.channel,
            to = %m.to,
            code = %m.code,
            "one-time code (log sender: development only, set code_sender = \"webhook\" in production)"
        );
        Ok(())
    }
}

/// POSTs each code as JSON to a URL; `X-Confab-Signature: sha256=<hex HMAC of the body>` when a
/// secret is configured. Any 2xx answer is success.
#[derive(Debug)]
pub struct WebhookSender {
    url: url::Url,
    secret: Option<String>,
    tls: Arc<rustls::ClientConfig>,
}

impl WebhookSender {
    pub fn new(url: &str, secret: Option<String>) -> Result<Self, SendError> {
        let url = url::Url::parse(url).map_err(|e| SendError(format!("webhook URL: {e}")))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SendError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { url, secret, tls: Arc::new(tls) })
    }

    async fn post(&self, body: Bytes) -> Result<u16, SendError> {
        let host = self.url.host_str().ok_or_else(|| SendError("webhook URL has no host".into()))?.to_string();
        let port = self.url.port_or_known_default().unwrap_or(80);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| SendError(format!("connect: {e}")))?;
        let target = match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_string(),
        };
        let mut req = hyper::Request::post(target)
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, concat!("confab-server/", env!("CARGO_PKG_VERSION")));
        if let Some(secret) = &self.secret {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
            mac.update(&body);
            req = req.header("x-confab-signature", format!("sha256={}", hex::encode(mac.finalize().into_bytes())));
        }
        let req = req.body(Full::new(body)).map_err(|e| SendError(e.to_string()))?;
        let status = if self.url.scheme() == "https" {
            let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| SendError(e.to_string()))?;
            let stream = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| SendError(format!("tls: {e}")))?;
            send_on(TokioIo::new(stream), req).await?
        } else {
            send_on(TokioIo::new(tcp), req).await?
        };
        Ok(status)
    }
}

async fn send_on<T>(io: T, req: hyper::Request<Full<Bytes>>) -> Result<u16, SendError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| SendError(e.to_string()))?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| SendError(e.to_string()))?;
    let status = resp.status().as_u16();
    // Read (and drop) the body so the exchange completes.
    let _ = resp.into_body().collect().await;
    driver.abort();
    Ok(status)
}

#[async_trait::async_trait]
impl Sender for WebhookSender {
    async fn send(&self, m: &CodeMessage) -> Result<(), SendError> {
        let body = serde_json::to_vec(m).map_err(|e| SendError(e.to_string()))?;
        let status = tokio::time::timeout(Duration::from_secs(5), self.post(Bytes::from(body)))
            .await
            .map_err(|_| SendError("timed out".into()))??;
        if (200..300).contains(&status) { Ok(()) } else { Err(SendError(format!("HTTP {status}"))) }
    }
}

/// Queues deliveries for a background task that retries each up to three times.
#[derive(Clone, Debug)]
pub struct Delivery {
    tx: mpsc::Sender<CodeMessage>,
}

/// Waits between tries.
const BACKOFF: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(1)];

impl Delivery {
    /// Starts the delivery task. It ends when every `Delivery` handle is dropped.
    pub fn start(sender: Arc<dyn Sender>) -> Self {
        let (tx, mut rx) = mpsc::channel::<CodeMessage>(1024);
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let sender = sender.clone();
                // Each delivery retries on its own, so one slow gateway call does not hold the rest.
                tokio::spawn(async move { deliver(sender.as_ref(), &m).await });
            }
        });
        Self { tx }
    }

    /// Queues a code. A full queue drops it (logged): the user asks again.
    pub fn enqueue(&self, m: CodeMessage) {
        if let Err(e) = self.tx.try_send(m) {
            let m = match e {
                mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m,
            };
            tracing::error!(purpose = m.purpose, to = %mask(&m.to), "code delivery queue full; code dropped");
        }
    }
}

async fn deliver(sender: &dyn Sender, m: &CodeMessage) {
    for attempt in 1..=BACKOFF.len() + 1 {
        match sender.send(m).await {
            Ok(()) => {
                tracing::debug!(purpose = m.purpose, channel = m.channel, to = %mask(&m.to), attempt, "code delivered");
                return;
            }
            Err(e) => {
                let last = attempt > BACKOFF.len();
                tracing::warn!(
                    purpose = m.purpose,
                    channel = m.channel,
                    to = %mask(&m.to),
                    attempt,
                    error = %e,
                    "code delivery failed{}",
                    if last { "; giving up" } else { "; retrying" }
                );
                if let Some(wait) = BACKOFF.get(attempt - 1) {
                    tokio::time::sleep(*wait).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails `failures` times, then succeeds.
    #[derive(Debug)]
    struct Flaky {
        failures: u32,
        calls: AtomicU32,
    }

    #[async_trait::async_trait]
    impl Sender for Flaky {
        async fn send(&self, _m: &CodeMessage) -> Result<(), SendError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.failures { Err(SendError("HTTP 502".into())) } else { Ok(()) }
        }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_deliveries_are_retried_and_logged_without_the_code() {
        let logs = Captured::default();
        let w = logs.clone();
        let subscriber =
            tracing_subscriber::fmt().with_writer(move || w.clone()).with_max_level(tracing::Level::DEBUG).finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let m = CodeMessage {
            purpose: "sign_in",
            channel: "sms",
            to: "+33612345678".into(),
            code: "493817".into(),
            expires_at_ms: 1,
        };
        let flaky = Flaky { failures: 2, calls: AtomicU32::new(0) };
        deliver(&flaky, &m).await;
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3, "two failures, then a success");
        let always = Flaky { failures: u32::MAX, calls: AtomicU32::new(0) };
        deliver(&always, &m).await;
        assert_eq!(always.calls.load(Ordering::SeqCst), 3, "gives up after three tries");
        let text = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("utf8");
        assert!(text.contains("code delivery failed"), "{text}");
        assert!(text.contains("giving up"), "{text}");
        assert!(text.contains("+33*******78"), "{text}");
        assert!(!text.contains("493817"), "the code leaked into the log:\n{text}");
        assert!(!text.contains("+33612345678"), "the full number leaked into the log:\n{text}");
    }

    #[test]
    fn debug_and_mask_hide_the_code_and_most_of_the_destination() {
        let m = CodeMessage {
            purpose: "sign_in",
            channel: "sms",
            to: "+33612345678".into(),
            code: "493817".into(),
            expires_at_ms: 1,
        };
        let d = format!("{m:?}");
        assert!(!d.contains("493817"), "{d}");
        assert!(!d.contains("+33612345678"), "{d}");
        assert_eq!(mask("+33612345678"), "+33*******78");
    }
}
