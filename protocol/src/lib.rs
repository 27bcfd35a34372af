//! Confab protocol v1: generated message types, version constants, framing, and the client library.
//!
//! docs/protocol.md is the normative description; this crate is its Rust rendering. Everything in
//! the workspace that speaks the wire (server, `confab` CLI, conformance suite, load generator)
//! goes through this crate.

/// Generated protobuf types of package `confab.v1`.
#[allow(missing_debug_implementations, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/confab.v1.rs"));
}

pub mod frames;
pub mod framing;
pub mod schema;
pub mod text;

#[cfg(feature = "client")]
pub mod client;

/// Protocol major version this crate speaks (§9).
pub const PROTOCOL_MAJOR: u32 = 1;
/// Highest protocol minor version this crate speaks (§9).
pub const PROTOCOL_MINOR: u32 = 0;
/// WebSocket path of the v1 endpoint (§2.1).
pub const WS_PATH: &str = "/v1/ws";
/// WebSocket subprotocol a client must offer (§2.1).
pub const WS_SUBPROTOCOL: &str = "confab.v1";
/// QUIC ALPN identifier (§2.2).
pub const QUIC_ALPN: &[u8] = b"confab/1";
/// Default limit on an encoded frame, in bytes (§8).
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 1024 * 1024;

pub use v1::{ClientFrame, CloseCode, ErrorCode, ServerFrame};
