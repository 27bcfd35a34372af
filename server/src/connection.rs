//! The connection loop, the same for both transports: frames to envelopes, the handshake (§4),
//! concurrent requests bounded by max_requests_in_flight (§8), heartbeat and idle timeout (§7),
//! drain on shutdown (§7.3), and one writer task per connection that coalesces flushes.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use confab_protocol::CloseCode;
use confab_protocol::frames::{encode_server, response_frame};
use confab_protocol::text::{self, FrameTextError};
use confab_protocol::v1::{ClientFrame, client_frame::Request, response};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use prost::Message as _;
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::ServerError;
use crate::handlers;
use crate::limits::Permit;
use crate::metrics::TransportMetrics;
use crate::session::{Close, Outbox, OutboxEnds, Session, Transport};
use crate::state::AppState;
use crate::transport::{FrameReader, FrameWriter, ReadError};

/// What the transport knows about a new connection.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub transport: Transport,
    pub peer: SocketAddr,
    /// Hello must arrive before this instant.
    pub deadline: Instant,
    /// The admission slot, released when the last holder (the connection) ends.
    pub _permit: Arc<Permit>,
    /// The QUIC connection (transfer streams, §22.9); `None` over WebSocket.
    pub quic: Option<quinn::Connection>,
}

/// Metric label for a close code.
fn close_label(code: CloseCode) -> &'static str {
    match code {
        CloseCode::Unspecified => "unspecified",
        CloseCode::Normal => "normal",
        CloseCode::GoingAway => "going_away",
        CloseCode::ProtocolError => "protocol_error",
        CloseCode::UnsupportedData => "unsupported_data",
        CloseCode::InvalidFrame => "invalid_frame",
        CloseCode::PolicyViolation => "policy_violation",
        CloseCode::TooLarge => "too_large",
        CloseCode::InternalError => "internal_error",
        CloseCode::UnsupportedVersion => "unsupported_version",
        CloseCode::HandshakeTimeout => "handshake_timeout",
        CloseCode::IdleTimeout => "idle_timeout",
        CloseCode::SlowConsumer => "slow_consumer",
        CloseCode::SessionRevoked => "session_revoked",
        CloseCode::TooManyConnections => "too_many_connections",
    }
}

/// Serves one connection to its end.
pub(crate) async fn serve(state: AppState, reader: FrameReader, writer: FrameWriter, info: ConnInfo) {
    let tm = state.metrics().transport(info.transport.as_str()).clone();
    tm.accepted.inc();
    tm.connections.inc();
    let (key, id) = state.next_connection_id();
    let span = tracing::info_span!("conn", id = %id, transport = info.transport.as_str(), peer = %info.peer);
    run(state.clone(), reader, writer, info, key, id, tm.clone()).instrument(span).await;
    tm.connections.dec();
}

async fn run(
    state: AppState,
    mut reader: FrameReader,
    writer: FrameWriter,
    info: ConnInfo,
    key: u64,
    id: String,
    tm: TransportMetrics,
) {
    let limits = state.config().limits.clone();
    let (outbox, ends) = Outbox::new(limits.outbound_queue_frames as usize);
    let ends = Arc::new(ends);
    let writer_task = tokio::spawn(write_loop(writer, ends.clone(), tm.clone()));
    let max_transfers = state.config().media.max_transfers_per_connection;
    let ctx = Arc::new(
        Session::new(id, key, info.transport, info.peer, outbox.clone()).with_quic(info.quic.clone(), max_transfers),
    );

    // Boxed: the handshake's state (Hello, token checks, binding) lives only while it runs, instead
    // of sizing the task that an idle connection keeps for its whole life (W1).
    let close = match Box::pin(handshake(&state, &mut reader, &outbox, &info, &ctx, &tm)).await {
        Ok(()) => {
            tracing::debug!("handshake complete");
            if let Some(conn) = info.quic.clone() {
                state.tasks().spawn(handlers::media::serve_upload_streams(state.clone(), ctx.clone(), conn));
            }
            serve_requests(&state, &mut reader, &outbox, &ends, ctx.clone(), &tm).await
        }
        Err(close) => close,
    };
    // Detaching publishes SessionDetached: calls and presence follow from there.
    handlers::session::unbind(&state, &ctx);
    drop(ctx);
    let close = outbox.aborted().unwrap_or(close);
    state.metrics().closed(close_label(close.code));
    tracing::debug!(code = close.code as i32, reason = close.reason, "closing");
    // The close goes behind whatever is queued; if the queue is stuck, abort instead.
    outbox.finish(close);
    drop(outbox);
    drop(ends);
    if let Ok(writer) = writer_task.await {
        crate::transport::linger(reader, writer).await;
    }
}

/// Maps a read failure to the error frame (if any) and close it causes.
fn read_failure(e: ReadError) -> (Option<ServerError>, Close) {
    match e {
        ReadError::TooLarge => (
            Some(ServerError::TooLarge { field: "frame", message: "frame exceeds max_frame_bytes".into() }),
            Close::new(CloseCode::TooLarge, "frame too large"),
        ),
        ReadError::Text => (
            Some(ServerError::invalid("frame", "text messages are not allowed; send binary frames")),
            Close::new(CloseCode::UnsupportedData, "text message"),
        ),
        // RFC 6455 §8.1: the connection is failed, no further message; the reason says why.
        ReadError::InvalidUtf8 => (None, Close::new(CloseCode::InvalidFrame, "invalid UTF-8")),
        ReadError::BadLength => (
            Some(ServerError::invalid("frame", "malformed length prefix")),
            Close::new(CloseCode::InvalidFrame, "malformed length prefix"),
        ),
        ReadError::Transport(e) => {
            tracing::debug!(error = %e, "transport error");
            (None, Close::new(CloseCode::ProtocolError, "transport error"))
        }
    }
}

/// Reads one frame, checks it against the text rules (§5.4) and decodes it. `Ok(None)`: the frame
/// broke the rules and was answered with INVALID_ARGUMENT naming the field; the connection reads
/// on. `Err` carries the close to perform; the error frame, if any, is already queued.
async fn next_frame(
    state: &AppState,
    reader: &mut FrameReader,
    outbox: &Outbox,
    tm: &TransportMetrics,
) -> Result<Option<ClientFrame>, Close> {
    match decode_frame(read_frame(state, reader, outbox, tm).await?) {
        Ok(frame) => Ok(Some(frame)),
        Err(Refusal::Text(request_id, e)) => {
            respond(state, outbox, request_id, Err(e));
            Ok(None)
        }
        Err(Refusal::Undecodable(e)) => {
            respond(state, outbox, 0, Err(e));
            Err(Close::new(CloseCode::InvalidFrame, "undecodable frame"))
        }
    }
}

/// Reads one frame's bytes.
async fn read_frame(
    state: &AppState,
    reader: &mut FrameReader,
    outbox: &Outbox,
    tm: &TransportMetrics,
) -> Result<Bytes, Close> {
    let bytes = match reader.next().await {
        Ok(Some(b)) => b,
        Ok(None) => return Err(Close::new(CloseCode::Normal, "")),
        Err(e) => {
            let (err, close) = read_failure(e);
            if let Some(err) = err {
                respond(state, outbox, 0, Err(err));
            }
            return Err(close);
        }
    };
    tm.frames_in.inc();
    tm.bytes_in.inc_by(bytes.len() as u64);
    Ok(bytes)
}

/// Why a frame's bytes go no further than decoding.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// A string field breaks the text rules (§5.4): answer this request id; the connection reads on.
    Text(u64, ServerError),
    /// Not a `ClientFrame` (§3.1): answer with request id 0 and close with 1007 (§5.3).
    Undecodable(ServerError),
}

/// Checks one frame's bytes against the text rules (§5.4), then decodes them (§3.1). The error
/// never quotes the decoder (§5.1).
pub(crate) fn decode_frame(bytes: Bytes) -> Result<ClientFrame, Refusal> {
    let undecodable = || Refusal::Undecodable(ServerError::invalid("frame", "not a ClientFrame (§3.1)"));
    match text::check_client_frame(&bytes) {
        Ok(()) => ClientFrame::decode(bytes).map_err(|_| undecodable()),
        Err(FrameTextError::Field { request_id, field, fault }) => {
            Err(Refusal::Text(request_id, ServerError::invalid(field, fault.to_string())))
        }
        Err(FrameTextError::Malformed) => Err(undecodable()),
    }
}

/// The envelope checks of a frame after Welcome: `request_id` 0 is refused (§3.2) and a request
/// the server does not know is `UNIMPLEMENTED` (§3.4, §5.2). `Err` carries the id to answer and
/// the error; the connection stays open.
pub(crate) fn admit(frame: ClientFrame) -> Result<(u64, Request), (u64, ServerError)> {
    if frame.request_id == 0 {
        return Err((0, ServerError::invalid("request_id", "request_id must be non-zero")));
    }
    match frame.request {
        Some(request) => Ok((frame.request_id, request)),
        // A request added in a later protocol version, or garbage in an unknown field.
        None => {
            Err((frame.request_id, ServerError::Unimplemented("this server does not implement that request".into())))
        }
    }
}

/// Queues the response to `request_id`, encoded once.
fn respond(state: &AppState, outbox: &Outbox, request_id: u64, result: Result<response::Result, ServerError>) {
    let result = result.unwrap_or_else(|e| {
        state.metrics().error(e.code());
        response::Result::Error(e.to_wire())
    });
    outbox.push(encode_server(&response_frame(request_id, result)));
}

/// Waits for Hello (§4.1); everything else before it is refused.
async fn handshake(
    state: &AppState,
    reader: &mut FrameReader,
    outbox: &Outbox,
    info: &ConnInfo,
    ctx: &Session,
    tm: &TransportMetrics,
) -> Result<(), Close> {
    loop {
        let frame = tokio::select! {
            r = tokio::time::timeout_at(info.deadline, next_frame(state, reader, outbox, tm)) => match r {
                Ok(Ok(Some(frame))) => frame,
                Ok(Ok(None)) => continue,
                Ok(Err(close)) => return Err(close),
                Err(_) => return Err(Close::new(CloseCode::HandshakeTimeout, "no Hello within the handshake deadline")),
            },
            _ = state.shutdown().cancelled() => return Err(Close::new(CloseCode::GoingAway, "server shutting down")),
        };
        if frame.request_id == 0 {
            respond(state, outbox, 0, Err(ServerError::invalid("request_id", "request_id must be non-zero")));
            continue;
        }
        let started = Instant::now();
        match frame.request {
            Some(Request::Hello(hello)) => {
                let result = handlers::session::hello(state, ctx, &hello).await;
                state.metrics().request("hello", started.elapsed());
                match result {
                    Ok(welcome) => {
                        respond(state, outbox, frame.request_id, Ok(response::Result::Welcome(welcome)));
                        return Ok(());
                    }
                    Err(e @ ServerError::UnsupportedVersion(_)) => {
                        respond(state, outbox, frame.request_id, Err(e));
                        return Err(Close::new(CloseCode::UnsupportedVersion, "unsupported protocol version"));
                    }
                    Err(e) => respond(state, outbox, frame.request_id, Err(e)),
                }
            }
            _ => respond(
                state,
                outbox,
                frame.request_id,
                Err(ServerError::FailedPrecondition("the first request must be Hello (§4.1)".into())),
            ),
        }
    }
}

type InFlight =
    Pin<Box<dyn Future<Output = (u64, &'static str, Instant, Result<response::Result, ServerError>)> + Send>>;

/// The main loop after Welcome.
async fn serve_requests(
    state: &AppState,
    reader: &mut FrameReader,
    outbox: &Outbox,
    ends: &OutboxEnds,
    ctx: Arc<Session>,
    tm: &TransportMetrics,
) -> Close {
    let limits = &state.config().limits;
    let max_in_flight = limits.max_requests_in_flight as usize;
    let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    let mut draining = false;
    let mut last_rx = Instant::now();
    loop {
        if draining && in_flight.is_empty() {
            return Close::new(CloseCode::GoingAway, "server shutting down");
        }
        tokio::select! {
            biased;
            _ = ends.aborted() => return Close::new(CloseCode::SlowConsumer, "outbound queue full"),
            close = ends.kicked() => {
                // Requests that already finished (a committed send) are answered before the
                // close, so a client never retries what was done.
                while let Some(Some((request_id, kind, started, result))) = in_flight.next().now_or_never() {
                    state.metrics().request(kind, started.elapsed());
                    respond(state, outbox, request_id, result);
                }
                return close;
            }
            _ = state.shutdown().cancelled(), if !draining => {
                draining = true;
                outbox.push(state.go_away_frame());
            }
            Some((request_id, kind, started, result)) = in_flight.next(), if !in_flight.is_empty() => {
                state.metrics().request(kind, started.elapsed());
                respond(state, outbox, request_id, result);
                if let Some(close) = ctx.take_close_after() {
                    return close;
                }
                // While reading is paused at the in-flight cap the client cannot be heard, so
                // the idle clock restarts when work completes rather than running on.
                last_rx = Instant::now();
            }
            frame = next_frame(state, reader, outbox, tm), if !draining && in_flight.len() < max_in_flight => {
                last_rx = Instant::now();
                let frame = match frame {
                    Ok(Some(f)) => f,
                    Ok(None) => continue,
                    Err(close) => return close,
                };
                let (request_id, request) = match admit(frame) {
                    Ok(admitted) => admitted,
                    Err((request_id, e)) => {
                        respond(state, outbox, request_id, Err(e));
                        continue;
                    }
                };
                let kind = request.kind();
                let (state, ctx) = (state.clone(), ctx.clone());
                in_flight.push(Box::pin(async move {
                    let started = Instant::now();
                    let result = handlers::dispatch(&state, &ctx, request_id, request).await;
                    (request_id, kind, started, result)
                }));
            }
            _ = tokio::time::sleep_until(last_rx + limits.idle_timeout), if !draining && in_flight.len() < max_in_flight => {
                return Close::new(CloseCode::IdleTimeout, "nothing received within the idle timeout");
            }
        }
    }
}

/// Most frames written before one flush.
const MAX_BATCH: usize = 64;

/// The writer task: takes what is queued (up to [`MAX_BATCH`] frames under one lock), feeds every
/// frame, flushes once per batch. Each batch has a buffer of its own, so an idle connection holds
/// none (W1).
async fn write_loop(mut w: FrameWriter, ends: Arc<OutboxEnds>, tm: TransportMetrics) -> FrameWriter {
    loop {
        let mut batch: Vec<Bytes> = Vec::new();
        let close = tokio::select! {
            biased;
            _ = ends.aborted() => break,
            close = ends.take(&mut batch, MAX_BATCH) => close,
        };
        if !batch.is_empty() {
            let n: usize = batch.iter().map(Bytes::len).sum();
            tm.frames_out.inc_by(batch.len() as u64);
            tm.bytes_out.inc_by(n as u64);
            let write = async {
                w.write_batch(&mut batch).await?;
                ends.wrote(n);
                Ok::<(), String>(())
            };
            let failed = tokio::select! {
                biased;
                _ = ends.aborted() => true,
                r = write => r.is_err(),
            };
            if failed {
                break;
            }
        }
        if let Some(c) = close {
            w.close(c.code, c.reason).await;
            return w;
        }
    }
    let c = ends.abort_now().unwrap_or(Close::new(CloseCode::InternalError, "write failed"));
    w.abort(c.code, c.reason).await;
    w
}
