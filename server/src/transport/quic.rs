//! The QUIC listener (ALPN confab/1): admission (caps, address validation under load), the
//! handshake deadline, and the one bidirectional control stream handed to the connection loop (§2.2).

use std::sync::Arc;
use std::time::Duration;

use confab_protocol::CloseCode;
use confab_protocol::framing::FrameBuffer;
use tokio::time::Instant;

use super::{FrameReader, FrameWriter, Transport};
use crate::connection::{self, ConnInfo};
use crate::state::AppState;

/// Accepts QUIC connections until shutdown.
pub(crate) async fn serve(endpoint: quinn::Endpoint, state: AppState) {
    let shutdown = state.shutdown().clone();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = shutdown.cancelled() => break,
        };
        let peer = incoming.remote_address();
        let permit = match state.limiter().try_acquire(peer.ip()) {
            Ok(p) => Arc::new(p),
            Err(refused) => {
                state.metrics().closed(refused.metric_label());
                incoming.refuse();
                continue;
            }
        };
        if state.limiter().under_pressure() && !incoming.remote_address_validated() && incoming.may_retry() {
            // Under load, make the client prove its address before we spend a handshake on it.
            let _ = incoming.retry();
            continue;
        }
        let deadline = Instant::now() + state.config().limits.handshake_timeout;
        let state2 = state.clone();
        state.tasks().spawn(async move {
            let state = state2;
            let conn = match tokio::time::timeout_at(deadline, async { incoming.accept()?.await }).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "quic handshake failed");
                    return;
                }
                Err(_) => {
                    state.metrics().closed("handshake_timeout");
                    return;
                }
            };
            // The client opens the control stream by sending Hello on it (§2.2).
            let (send, recv) = match tokio::time::timeout_at(deadline, conn.accept_bi()).await {
                Ok(Ok(streams)) => streams,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "quic connection ended before its control stream");
                    return;
                }
                Err(_) => {
                    state.metrics().closed("handshake_timeout");
                    conn.close((CloseCode::HandshakeTimeout as u32).into(), b"no Hello within the handshake deadline");
                    return;
                }
            };
            let reader = FrameReader::Quic { recv, buf: FrameBuffer::new(state.config().limits.max_frame_bytes) };
            let writer = FrameWriter::Quic { send, conn: conn.clone() };
            let info =
                ConnInfo { transport: Transport::Quic, peer, deadline, _permit: permit, quic: Some(conn.clone()) };
            connection::serve(state, reader, writer, info).await;
            // Let the close reach the peer before the connection is dropped.
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.closed()).await;
        });
    }
}
