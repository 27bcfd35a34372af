//! The TCP listener: HTTP/1.1 for /healthz, /metrics and the meeting page (/call/…, `web`), and
//! the WebSocket upgrade on /v1/ws (subprotocol confab.v1, no extensions) handing the socket to
//! the connection loop (§2.1).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{FrameReader, FrameWriter, Transport};
use crate::connection::{self, ConnInfo};
use crate::limits::Permit;
use crate::state::AppState;

/// Accepts TCP connections until shutdown. Admission (the global and per-address caps) is
/// decided here, before a byte is read: a refused socket gets a best-effort 503 and is closed at
/// once; an admitted one holds its permit until its HTTP connection ends or, once upgraded, until
/// its WebSocket connection ends. A connection must complete its upgrade (and then send Hello)
/// within the handshake timeout; one that stays silent is dropped when it expires.
pub(crate) async fn serve(listener: TcpListener, state: AppState) {
    let shutdown = state.shutdown().clone();
    let mut backoff = AcceptBackoff::default();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => {
                    backoff.recovered();
                    x
                }
                Err(e) => {
                    let Some(pause) = backoff.failed(&e) else { continue };
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => continue,
                        _ = shutdown.cancelled() => break,
                    }
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let permit = match state.limiter().try_acquire(peer.ip()) {
            Ok(p) => Arc::new(p),
            Err(refused) => {
                state.metrics().closed(refused.metric_label());
                refuse(&stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let deadline = Instant::now() + state.config().limits.handshake_timeout;
        tokio::spawn(async move {
            let shutdown = state.shutdown().clone();
            let handshake_timeout = state.config().limits.handshake_timeout;
            let svc = hyper::service::service_fn(move |req| {
                let (state, permit) = (state.clone(), permit.clone());
                async move { Ok::<_, Infallible>(route(req, state, peer, deadline, permit).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                // Runs from the first read, so it also bounds a connection that never sends a byte.
                .header_read_timeout(handshake_timeout)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                }
            }
        });
    }
}

/// Answers a refused connection without waiting: a 503 if the socket takes it at once (it
/// always can on a fresh connection), then the socket is closed when the caller drops it.
fn refuse(stream: &TcpStream) {
    const ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nConnection: close\r\n\
        Content-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\n\r\ntoo many connections\n";
    let _ = stream.try_write(ANSWER);
}

/// Pauses after failed accepts. Running out of descriptors or kernel memory (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM) fails every accept until connections close, so the listener waits 10 ms,
/// doubling to 1 s, and logs once per episode instead of spinning and logging per error. Errors
/// about one aborted connection are not the listener's problem: the next accept follows at once.
#[derive(Debug, Default)]
struct AcceptBackoff {
    pause: Option<Duration>,
    errors: u64,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    /// How long to wait before the next accept, or `None` to accept again at once.
    fn failed(&mut self, e: &std::io::Error) -> Option<Duration> {
        use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted, WouldBlock};
        if matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock) {
            return None;
        }
        self.errors += 1;
        let pause = match self.pause {
            None => {
                tracing::warn!(error = %e, "accept failing; backing off until it succeeds");
                Self::FIRST
            }
            Some(p) => (p * 2).min(Self::MAX),
        };
        self.pause = Some(pause);
        Some(pause)
    }

    /// An accept succeeded: ends an episode of failures.
    fn recovered(&mut self) {
        if self.pause.take().is_some() {
            tracing::warn!(failed_accepts = self.errors, "accept succeeds again");
            self.errors = 0;
        }
    }
}

type Body = Full<Bytes>;

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    text_owned(status, body.to_string())
}

fn text_owned(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

async fn route(
    req: Request<Incoming>,
    state: AppState,
    peer: SocketAddr,
    deadline: Instant,
    permit: Arc<Permit>,
) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => healthz(&state).await,
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(state.metrics().render())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            r
        }
        (_, confab_protocol::WS_PATH) => upgrade(req, state, peer, deadline, permit),
        (m, p) if p.starts_with(super::web::PREFIX) => super::web::answer(m, p),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// 200 when the store answers within 2 s and the server is not shutting down; 503 otherwise.
/// A node of a cluster adds a line on its NATS link (`nats: connected …` or `nats:
/// disconnected …`); a node cut off from NATS still answers 200: it serves its own connections,
/// and the other nodes' events reach them when the link is back (docs/operations.md).
async fn healthz(state: &AppState) -> Response<Body> {
    if state.shutdown().is_cancelled() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    match tokio::time::timeout(Duration::from_secs(2), state.store().ping()).await {
        Ok(Ok(())) => match state.cluster() {
            Some(c) => text_owned(StatusCode::OK, format!("ok\n{}\n", c.health().1)),
            None => text(StatusCode::OK, "ok\n"),
        },
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: store failed");
            text(StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n")
        }
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "store timed out\n"),
    }
}

fn header_has_token(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn upgrade(
    req: Request<Incoming>,
    state: AppState,
    peer: SocketAddr,
    deadline: Instant,
    permit: Arc<Permit>,
) -> Response<Body> {
    if req.method() != Method::GET
        || !header_has_token(&req, header::CONNECTION, "upgrade")
        || !header_has_token(&req, header::UPGRADE, "websocket")
    {
        return text(StatusCode::UPGRADE_REQUIRED, "this endpoint speaks WebSocket only (see docs/protocol.md §2.1)\n");
    }
    if req.headers().get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        let mut r = text(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13\n");
        r.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return r;
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    if !header_has_token(&req, header::SEC_WEBSOCKET_PROTOCOL, confab_protocol::WS_SUBPROTOCOL) {
        return text(StatusCode::BAD_REQUEST, "offer the WebSocket subprotocol confab.v1 (docs/protocol.md §2.1)\n");
    }
    if state.shutdown().is_cancelled() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    let accept = derive_accept_key(key.as_bytes());
    let ws_config = super::ws_config(&state.config().limits);
    let tasks = state.tasks().clone();
    tasks.spawn(async move {
        let upgraded = match tokio::time::timeout_at(deadline, hyper::upgrade::on(req)).await {
            Ok(Ok(u)) => u,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
            Err(_) => return,
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config)).await;
        let (sink, stream) = ws.split();
        let info = ConnInfo { transport: Transport::WebSocket, peer, deadline, _permit: permit, quic: None };
        connection::serve(state, FrameReader::WebSocket(stream), FrameWriter::WebSocket(sink), info).await;
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(confab_protocol::WS_SUBPROTOCOL));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets_on_success() {
        let mut b = AcceptBackoff::default();
        let emfile = std::io::Error::from_raw_os_error(24); // EMFILE on Linux and the BSDs
        let pauses: Vec<_> = (0..9).map(|_| b.failed(&emfile).expect("backs off")).collect();
        let ms: Vec<_> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.recovered();
        assert_eq!(b.failed(&emfile), Some(AcceptBackoff::FIRST), "a new episode starts over");
        let aborted = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert_eq!(b.failed(&aborted), None, "one aborted connection is no reason to pause");
    }
}
