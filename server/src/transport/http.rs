//! The TCP listener: HTTP/1.1 for /healthz and /metrics, and the WebSocket upgrade on /v1/ws
//! (subprotocol confab.v1, no extensions) handing the socket to the connection loop (§2.1).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{FrameReader, FrameWriter, Transport};
use crate::connection::{self, ConnInfo};
use crate::limits::Refused;
use crate::state::AppState;

/// Accepts TCP connections until shutdown.
pub(crate) async fn serve(listener: TcpListener, state: AppState) {
    let shutdown = state.shutdown().clone();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let deadline = Instant::now() + state.config().limits.handshake_timeout;
        tokio::spawn(async move {
            let shutdown = state.shutdown().clone();
            let handshake_timeout = state.config().limits.handshake_timeout;
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(req, state, peer, deadline).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
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

type Body = Full<Bytes>;

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

async fn route(req: Request<Incoming>, state: AppState, peer: SocketAddr, deadline: Instant) -> Response<Body> {
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
        (_, confab_protocol::WS_PATH) => upgrade(req, state, peer, deadline),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// 200 when the store answers within 2 s and the server is not shutting down; 503 otherwise.
async fn healthz(state: &AppState) -> Response<Body> {
    if state.shutdown().is_cancelled() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    match tokio::time::timeout(Duration::from_secs(2), state.store().ping()).await {
        Ok(Ok(())) => text(StatusCode::OK, "ok\n"),
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

fn upgrade(req: Request<Incoming>, state: AppState, peer: SocketAddr, deadline: Instant) -> Response<Body> {
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
    let permit = match state.limiter().try_acquire(peer.ip()) {
        Ok(p) => p,
        Err(refused) => {
            state.metrics().closed(match refused {
                Refused::Total => "too_many_connections",
                Refused::PerIp => "too_many_connections_per_ip",
            });
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "too many connections\n");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return r;
        }
    };
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
        let info = ConnInfo { transport: Transport::WebSocket, peer, deadline, _permit: permit };
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
