//! Confab conformance suite: the in-process test server harness and the conformance cases.
//!
//! Every case speaks only the wire, through `confab_protocol`'s client library, and names the
//! docs/protocol.md section it checks, so the same code runs in `cargo test` against
//! [`harness::TestServer`] and against any running implementation. [`nats::NatsServer`] runs a
//! real NATS server for the multi-node tests.

pub mod cases;
pub mod harness;
pub mod inbox;
pub mod nats;
pub mod pg;
pub mod proxy;
pub mod syncer;
pub mod util;
pub mod webrtc_peer;
