//! Cases for transports, envelopes, handshake, errors, close codes, heartbeat and limits
//! (docs/protocol.md §2-§8).

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use confab_protocol::client::ClientError;
use confab_protocol::frames::client_frame;
use confab_protocol::framing::length_prefix;
use confab_protocol::v1::{self, ClientFrame, CloseCode, ErrorCode, client_frame::Request, response, server_frame};
use prost::Message as _;

use super::*;

// ---- §2 transports -------------------------------------------------------------------------

/// §2.1: the upgrade without subprotocol confab.v1 is refused with HTTP 400.
pub(super) async fn ws_requires_subprotocol(t: Target) -> anyhow::Result<()> {
    let err = confab_protocol::client::transport::ws_upgrade_status(&t.next_url(), None).await?;
    ensure!(err == 400, "upgrade without subprotocol answered HTTP {err}, expected 400");
    let ok =
        confab_protocol::client::transport::ws_upgrade_status(&t.next_url(), Some(confab_protocol::WS_SUBPROTOCOL))
            .await?;
    ensure!(ok == 101, "upgrade with subprotocol answered HTTP {ok}, expected 101");
    Ok(())
}

/// §2.1: a text message gets an INVALID_ARGUMENT error and close 1003.
pub(super) async fn ws_text_message_closes_1003(t: Target) -> anyhow::Result<()> {
    let mut raw = handshaken(&t).await?;
    raw.sender.send_text("{\"hello\":1}").await?;
    let (frames, info) = until_closed(&mut raw).await?;
    expect_close(&info, CloseCode::UnsupportedData)?;
    let e = connection_error(&frames).context("no error frame before close")?;
    ensure!(e.code() == ErrorCode::InvalidArgument, "got {e}");
    Ok(())
}

/// §2.1, §8: a binary message one byte over max_frame_bytes gets TOO_LARGE and close 1009.
pub(super) async fn ws_oversized_message_closes_1009(t: Target) -> anyhow::Result<()> {
    let (client, _ev) = t.client().await?;
    let max = client.welcome().limits.unwrap_or_default().max_frame_bytes as usize;
    client.close().await;
    let mut raw = handshaken(&t).await?;
    raw.sender.send_unframed(Bytes::from(vec![0u8; max + 1])).await?;
    let (frames, info) = until_closed(&mut raw).await?;
    expect_close(&info, CloseCode::TooLarge)?;
    let e = connection_error(&frames).context("no error frame before close")?;
    ensure!(e.code() == ErrorCode::TooLarge, "got {e}");
    Ok(())
}

/// §2.1, §8: a frame header declaring 2^40 bytes is refused on the header alone.
pub(super) async fn ws_huge_declared_frame_closes_before_payload(t: Target) -> anyhow::Result<()> {
    // FIN + binary, MASK + 127 (64-bit length), 2^40, masking key. No payload follows.
    let mut header = vec![0x82u8, 0xFF];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    let (_, close) = tokio::time::timeout(
        WAIT,
        confab_protocol::client::transport::ws_send_raw_after_upgrade(&t.next_url(), &header),
    )
    .await
    .context("server waited for the payload instead of refusing the header")??;
    expect_close(&close.context("server dropped the connection without a close frame")?, CloseCode::TooLarge)
}

/// §2.1: a text frame whose payload is not UTF-8 (`ff fe`) fails the WebSocket connection as
/// RFC 6455 §8.1 requires: close 1007 at once, with no message before it.
pub(super) async fn ws_text_not_utf8_closes_1007(t: Target) -> anyhow::Result<()> {
    // FIN + text, MASK + length 2, masking key 1 2 3 4, then ff fe masked.
    let frame = [0x81u8, 0x82, 1, 2, 3, 4, 0xff ^ 1, 0xfe ^ 2];
    let (messages, close) = tokio::time::timeout(
        WAIT,
        confab_protocol::client::transport::ws_send_raw_after_upgrade(&t.next_url(), &frame),
    )
    .await
    .context("server did not react to a text frame that is not UTF-8")??;
    expect_close(&close.context("server dropped the connection without a close frame")?, CloseCode::InvalidFrame)?;
    ensure!(messages.is_empty(), "the server sent {} message(s) before failing the connection", messages.len());
    Ok(())
}

/// §2.2, §8: a length prefix over the limit closes the connection at once, payload never sent.
pub(super) async fn quic_huge_declared_length_closes_before_payload(t: Target) -> anyhow::Result<()> {
    let mut raw = handshaken(&t).await?;
    raw.sender.send_unframed(length_prefix(1 << 31)).await?;
    let (frames, info) = until_closed(&mut raw).await?;
    expect_close(&info, CloseCode::TooLarge)?;
    let e = connection_error(&frames).context("no error frame before close")?;
    ensure!(e.code() == ErrorCode::TooLarge, "got {e}");
    Ok(())
}

/// §2.2: a zero length prefix is malformed: close 1007.
pub(super) async fn quic_malformed_length_prefix_closes_1007(t: Target) -> anyhow::Result<()> {
    let mut raw = handshaken(&t).await?;
    raw.sender.send_unframed(Bytes::from_static(&[0x00])).await?;
    let (_, info) = until_closed(&mut raw).await?;
    expect_close(&info, CloseCode::InvalidFrame)
}

// ---- §3 envelopes -------------------------------------------------------------------------

/// §3.2: request_id 0 is refused with INVALID_ARGUMENT naming the field; the connection stays.
pub(super) async fn zero_request_id_is_refused(t: Target) -> anyhow::Result<()> {
    let mut raw = handshaken(&t).await?;
    raw.send_frame(&client_frame(0, Request::Ping(v1::Ping { client_time_ms: 1 }))).await?;
    let e = expect_error(&mut raw, 0, ErrorCode::InvalidArgument).await?;
    ensure!(e.field == "request_id", "field was {:?}", e.field);
    raw.send_frame(&client_frame(5, Request::Ping(v1::Ping { client_time_ms: 1 }))).await?;
    ensure!(matches!(response_to(&mut raw, 5).await?, response::Result::Pong(_)));
    Ok(())
}

// ---- §4 handshake -------------------------------------------------------------------------

/// §4.2: Welcome carries version, negotiated protocol, limits and a connection id.
pub(super) async fn handshake_returns_welcome(t: Target) -> anyhow::Result<()> {
    let mut raw = t.raw().await?;
    raw.send_frame(&client_frame(1, hello(1, 0))).await?;
    let response::Result::Welcome(w) = response_to(&mut raw, 1).await? else { bail!("expected Welcome") };
    ensure!(!w.server_version.is_empty(), "empty server_version");
    ensure!((w.protocol_major, w.protocol_minor) == (1, 0), "negotiated {}.{}", w.protocol_major, w.protocol_minor);
    let l = w.limits.context("Welcome without limits")?;
    ensure!(l.max_frame_bytes >= 1024, "max_frame_bytes {}", l.max_frame_bytes);
    ensure!(l.max_requests_in_flight >= 1, "max_requests_in_flight {}", l.max_requests_in_flight);
    ensure!(l.heartbeat_interval_ms > 0 && l.idle_timeout_ms > l.heartbeat_interval_ms, "heartbeat {l:?}");
    ensure!(!w.connection_id.is_empty(), "empty connection_id");
    ensure!(w.server_time_ms > 0, "no server_time_ms");
    // Connection ids are distinct.
    let mut other = t.raw().await?;
    other.send_frame(&client_frame(1, hello(1, 0))).await?;
    let response::Result::Welcome(w2) = response_to(&mut other, 1).await? else { bail!("expected Welcome") };
    ensure!(w2.connection_id != w.connection_id, "two connections share id {}", w.connection_id);
    Ok(())
}

/// §4.1: any request before Hello gets FAILED_PRECONDITION; Hello still works afterwards.
pub(super) async fn request_before_hello_is_refused(t: Target) -> anyhow::Result<()> {
    let mut raw = t.raw().await?;
    raw.send_frame(&client_frame(7, Request::Ping(v1::Ping { client_time_ms: 1 }))).await?;
    expect_error(&mut raw, 7, ErrorCode::FailedPrecondition).await?;
    raw.send_frame(&client_frame(8, hello(1, 0))).await?;
    ensure!(matches!(response_to(&mut raw, 8).await?, response::Result::Welcome(_)), "no Welcome after refusal");
    Ok(())
}

/// §4.1: an unsupported major gets UNSUPPORTED_VERSION, then close 4000.
pub(super) async fn unsupported_major_is_refused_and_closed(t: Target) -> anyhow::Result<()> {
    let mut raw = t.raw().await?;
    raw.send_frame(&client_frame(1, hello(2, 0))).await?;
    let (frames, info) = until_closed(&mut raw).await?;
    let err = frames.iter().find_map(|f| match &f.frame {
        Some(server_frame::Frame::Response(v1::Response {
            request_id: 1,
            result: Some(response::Result::Error(e)),
        })) => Some(e.clone()),
        _ => None,
    });
    let err = err.context("no error response to Hello")?;
    ensure!(err.code() == ErrorCode::UnsupportedVersion, "got {err}");
    expect_close(&info, CloseCode::UnsupportedVersion)
}

/// §4.2, §9: a client speaking a newer minor is answered with the server's minor.
pub(super) async fn minor_version_is_negotiated_down(t: Target) -> anyhow::Result<()> {
    let mut raw = t.raw().await?;
    raw.send_frame(&client_frame(1, hello(1, 999))).await?;
    let response::Result::Welcome(w) = response_to(&mut raw, 1).await? else { bail!("expected Welcome") };
    ensure!(w.protocol_major == 1, "major {}", w.protocol_major);
    ensure!(w.protocol_minor < 999, "server claims minor 999");
    Ok(())
}

/// §4.1: an over-long Hello field is INVALID_ARGUMENT naming it; a correct Hello follows.
pub(super) async fn invalid_hello_field_is_refused(t: Target) -> anyhow::Result<()> {
    let mut raw = t.raw().await?;
    let mut h = v1::Hello { protocol_major: 1, client_name: "x".repeat(65), ..Default::default() };
    raw.send_frame(&client_frame(1, Request::Hello(h.clone()))).await?;
    let e = expect_error(&mut raw, 1, ErrorCode::InvalidArgument).await?;
    ensure!(e.field == "hello.client_name", "field {:?}", e.field);
    h.client_name = "ok".into();
    raw.send_frame(&client_frame(2, Request::Hello(h))).await?;
    ensure!(matches!(response_to(&mut raw, 2).await?, response::Result::Welcome(_)));
    Ok(())
}

/// §4.4: a token the server did not issue gets UNAUTHENTICATED.
pub(super) async fn unknown_access_token_is_unauthenticated(t: Target) -> anyhow::Result<()> {
    let mut o = t.options();
    o.access_token = Some("not-a-token".into());
    match t.client_with(o).await {
        Err(ClientError::Server(e)) if e.code() == ErrorCode::Unauthenticated => Ok(()),
        Err(e) => bail!("expected UNAUTHENTICATED, got {e}"),
        Ok(_) => bail!("a made-up token was accepted"),
    }
}

/// §4.1: Hello after Welcome is FAILED_PRECONDITION.
pub(super) async fn second_hello_is_refused(t: Target) -> anyhow::Result<()> {
    let mut raw = handshaken(&t).await?;
    raw.send_frame(&client_frame(2, hello(1, 0))).await?;
    expect_error(&mut raw, 2, ErrorCode::FailedPrecondition).await?;
    Ok(())
}

// ---- §5 errors ----------------------------------------------------------------------------

/// §5.2: a request kind the server does not know is answered UNIMPLEMENTED, never silence.
pub(super) async fn unknown_request_is_unimplemented(t: Target) -> anyhow::Result<()> {
    let mut raw = handshaken(&t).await?;
    // A ClientFrame with request_id 9 and field 999 (a request from the future), length 3 bytes.
    let mut bytes = ClientFrame { request_id: 9, request: None }.encode_to_vec();
    bytes.extend_from_slice(&[0xBA, 0x3E, 0x03, b'a', b'b', b'c']);
    raw.sender.send(Bytes::from(bytes)).await?;
    expect_error(&mut raw, 9, ErrorCode::Unimplemented).await?;
    raw.send_frame(&client_frame(10, Request::Ping(v1::Ping::default()))).await?;
    ensure!(matches!(response_to(&mut raw, 10).await?, response::Result::Pong(_)), "connection unusable after");
    Ok(())
}

// ---- §6 close codes -----------------------------------------------------------------------

/// §6: bytes that are not a ClientFrame get INVALID_ARGUMENT (request_id 0) and close 1007.
pub(super) async fn undecodable_frame_closes_1007(t: Target) -> anyhow::Result<()> {
    let mut raw = handshaken(&t).await?;
    raw.sender.send(Bytes::from_static(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F])).await?;
    let (frames, info) = until_closed(&mut raw).await?;
    expect_close(&info, CloseCode::InvalidFrame)?;
    let e = connection_error(&frames).context("no error frame before close")?;
    ensure!(e.code() == ErrorCode::InvalidArgument, "got {e}");
    Ok(())
}

// ---- §7 heartbeat -------------------------------------------------------------------------

/// §7.1: Pong echoes client_time_ms and carries the server clock.
pub(super) async fn ping_echoes_client_time(t: Target) -> anyhow::Result<()> {
    let mut raw = handshaken(&t).await?;
    raw.send_frame(&client_frame(3, Request::Ping(v1::Ping { client_time_ms: 123_456 }))).await?;
    let response::Result::Pong(p) = response_to(&mut raw, 3).await? else { bail!("expected Pong") };
    ensure!(p.client_time_ms == 123_456, "echoed {}", p.client_time_ms);
    ensure!(p.server_time_ms > 0, "no server time");
    Ok(())
}

// ---- §8 limits ----------------------------------------------------------------------------

/// §8: many more requests than max_requests_in_flight, sent without waiting, are all answered.
pub(super) async fn pipelined_requests_all_answered(t: Target) -> anyhow::Result<()> {
    let (client, _ev) = t.client().await?;
    let n = client.welcome().limits.unwrap_or_default().max_requests_in_flight as usize * 4;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let c = client.clone();
        set.spawn(async move { c.ping().await });
    }
    let mut answered = 0;
    while let Some(r) = set.join_next().await {
        r??;
        answered += 1;
    }
    ensure!(answered == n, "{answered} of {n} answered");
    client.close().await;
    Ok(())
}

/// §3.2, §8: three times max_requests_in_flight requests, written without reading, are each
/// answered exactly once under their own id (back-pressure, never an error).
pub(super) async fn in_flight_limit_is_back_pressure(t: Target) -> anyhow::Result<()> {
    let mut raw = t.raw().await?;
    raw.send_frame(&client_frame(1, hello(1, 0))).await?;
    let response::Result::Welcome(w) = response_to(&mut raw, 1).await? else { bail!("expected Welcome") };
    let n = u64::from(w.limits.unwrap_or_default().max_requests_in_flight) * 3;
    for id in 2..n + 2 {
        raw.send_frame(&client_frame(id, Request::Ping(v1::Ping { client_time_ms: id * 7 }))).await?;
    }
    let mut seen = std::collections::HashSet::new();
    tokio::time::timeout(WAIT, async {
        while (seen.len() as u64) < n {
            let Some(server_frame::Frame::Response(r)) = raw.recv_frame().await?.frame else { continue };
            match r.result {
                Some(response::Result::Pong(p)) => {
                    ensure!(p.client_time_ms == r.request_id * 7, "response {} carries another Pong", r.request_id);
                    ensure!(seen.insert(r.request_id), "request {} answered twice", r.request_id);
                }
                other => bail!("request {} answered {other:?}", r.request_id),
            }
        }
        Ok(())
    })
    .await
    .with_context(|| format!("{} of {n} requests answered in time", seen.len()))??;
    Ok(())
}
