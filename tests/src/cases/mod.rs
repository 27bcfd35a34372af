//! Conformance cases. Each speaks only the wire and cites the docs/protocol.md section it checks;
//! each runs against any server given its URL and how to trust it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use confab_protocol::client::{
    Client, CloseInfo, ConnectOptions, Inbound, RawConnection, ServerUrl, TransportOptions, Trust,
};
use confab_protocol::frames::client_frame;
use confab_protocol::v1::{self, CloseCode, ErrorCode, client_frame::Request, event, response, server_frame};
use prost::Message as _;

/// Where a case runs.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub trust: Trust,
}

impl Target {
    pub fn is_websocket(&self) -> bool {
        self.url.starts_with("ws")
    }

    pub fn options(&self) -> ConnectOptions {
        let mut o = ConnectOptions { client_name: "confab-conformance".into(), ..Default::default() };
        o.transport = TransportOptions { trust: self.trust.clone(), ..Default::default() };
        o
    }

    pub async fn raw(&self) -> anyhow::Result<RawConnection> {
        Ok(RawConnection::connect(&ServerUrl::parse(&self.url)?, &self.options().transport).await?)
    }

    pub async fn client(&self) -> anyhow::Result<(Client, confab_protocol::client::Events)> {
        Ok(Client::connect(&self.url, self.options()).await?)
    }
}

type CaseFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Transports a case applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applies {
    Both,
    WebSocketOnly,
    QuicOnly,
}

/// One conformance case.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub name: &'static str,
    /// The docs/protocol.md section it checks, e.g. "§4.2".
    pub section: &'static str,
    pub applies: Applies,
    pub run: fn(Target) -> CaseFuture,
}

impl Case {
    pub fn applies_to(&self, target: &Target) -> bool {
        match self.applies {
            Applies::Both => true,
            Applies::WebSocketOnly => target.is_websocket(),
            Applies::QuicOnly => !target.is_websocket(),
        }
    }
}

macro_rules! case {
    ($module:ident :: $name:ident, $section:literal, $applies:ident) => {
        Case {
            name: stringify!($name),
            section: $section,
            applies: Applies::$applies,
            run: |t| Box::pin($module::$name(t)),
        }
    };
}

mod messaging;
mod session;

/// Every case, in protocol.md order.
pub fn all() -> Vec<Case> {
    vec![
        case!(session::ws_requires_subprotocol, "§2.1", WebSocketOnly),
        case!(session::ws_text_message_closes_1003, "§2.1", WebSocketOnly),
        case!(session::ws_oversized_message_closes_1009, "§2.1", WebSocketOnly),
        case!(session::ws_huge_declared_frame_closes_before_payload, "§2.1", WebSocketOnly),
        case!(session::quic_huge_declared_length_closes_before_payload, "§2.2", QuicOnly),
        case!(session::quic_malformed_length_prefix_closes_1007, "§2.2", QuicOnly),
        case!(session::zero_request_id_is_refused, "§3.2", Both),
        case!(session::handshake_returns_welcome, "§4.2", Both),
        case!(session::request_before_hello_is_refused, "§4.1", Both),
        case!(session::unsupported_major_is_refused_and_closed, "§4.1", Both),
        case!(session::minor_version_is_negotiated_down, "§4.2", Both),
        case!(session::invalid_hello_field_is_refused, "§4.1", Both),
        case!(session::unknown_access_token_is_unauthenticated, "§4.4", Both),
        case!(session::second_hello_is_refused, "§4.1", Both),
        case!(session::unknown_request_is_unimplemented, "§5.2", Both),
        case!(session::undecodable_frame_closes_1007, "§6", Both),
        case!(session::ping_echoes_client_time, "§7.1", Both),
        case!(session::pipelined_requests_all_answered, "§8", Both),
        case!(messaging::register_signs_the_connection_in, "§11.2", Both),
        case!(messaging::wrong_password_is_unauthenticated, "§11.3", Both),
        case!(messaging::token_authenticates_another_connection, "§11.5", Both),
        case!(messaging::refresh_rotates_and_reuse_revokes, "§11.6", Both),
        case!(messaging::requests_need_authentication, "§11.1", Both),
        case!(messaging::direct_conversation_is_unique_per_pair, "§12.2", Both),
        case!(messaging::non_members_get_not_found, "§12.1", Both),
        case!(messaging::send_is_idempotent, "§13.2", Both),
        case!(messaging::live_events_carry_gapless_seqs, "§14.5", Both),
        case!(messaging::sync_returns_missed_entries_in_order, "§14.3", Both),
        case!(messaging::read_marker_is_a_receipt_watermark, "§15.3", Both),
        case!(messaging::typing_reaches_members, "§16", Both),
    ]
}

// ---- helpers ------------------------------------------------------------------------------

const WAIT: Duration = Duration::from_secs(10);

pub fn hello(major: u32, minor: u32) -> Request {
    Request::Hello(v1::Hello {
        protocol_major: major,
        protocol_minor: minor,
        client_name: "confab-conformance".into(),
        client_version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    })
}

/// Waits for the response to `request_id`, skipping events.
pub async fn response_to(raw: &mut RawConnection, request_id: u64) -> anyhow::Result<response::Result> {
    tokio::time::timeout(WAIT, async {
        loop {
            let frame = raw.recv_frame().await?;
            if let Some(server_frame::Frame::Response(r)) = frame.frame {
                ensure!(r.request_id == request_id, "expected response to {request_id}, got one to {}", r.request_id);
                return r.result.context("response without result");
            }
        }
    })
    .await
    .context("no response in time")?
}

/// Expects an error response with `code` to `request_id`.
pub async fn expect_error(raw: &mut RawConnection, request_id: u64, code: ErrorCode) -> anyhow::Result<v1::Error> {
    match response_to(raw, request_id).await? {
        response::Result::Error(e) => {
            ensure!(e.code() == code, "expected {}, got {e}", code.as_str_name());
            ensure!(!e.message.is_empty(), "error without a message");
            Ok(e)
        }
        other => bail!("expected {} error, got {other:?}", code.as_str_name()),
    }
}

/// Reads until the connection closes; returns the frames seen before and the close.
pub async fn until_closed(raw: &mut RawConnection) -> anyhow::Result<(Vec<v1::ServerFrame>, CloseInfo)> {
    tokio::time::timeout(WAIT, async {
        let mut frames = Vec::new();
        loop {
            match raw.receiver.recv().await? {
                Inbound::Frame(b) => frames.push(v1::ServerFrame::decode(b)?),
                Inbound::Closed(info) => return Ok((frames, info)),
            }
        }
    })
    .await
    .context("connection not closed in time")?
}

pub fn expect_close(info: &CloseInfo, code: CloseCode) -> anyhow::Result<()> {
    ensure!(info.code == Some(code as u32), "expected close {} ({}), got {info}", code as u32, code.as_str_name());
    Ok(())
}

/// The error in a connection-level response (request_id 0) among `frames`.
fn connection_error(frames: &[v1::ServerFrame]) -> Option<&v1::Error> {
    frames.iter().find_map(|f| match &f.frame {
        Some(server_frame::Frame::Response(v1::Response {
            request_id: 0,
            result: Some(response::Result::Error(e)),
        })) => Some(e),
        _ => None,
    })
}

pub async fn handshaken(t: &Target) -> anyhow::Result<RawConnection> {
    let mut raw = t.raw().await?;
    raw.send_frame(&client_frame(1, hello(1, 0))).await?;
    match response_to(&mut raw, 1).await? {
        response::Result::Welcome(_) => Ok(raw),
        other => bail!("expected Welcome, got {other:?}"),
    }
}

/// The GoAway event, if `ev` is one.
pub fn as_go_away(ev: &v1::Event) -> Option<&v1::GoAway> {
    match &ev.event {
        Some(event::Event::GoAway(g)) => Some(g),
        _ => None,
    }
}
