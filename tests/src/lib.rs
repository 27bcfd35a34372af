//! Confab conformance suite: the in-process test server harness and the conformance cases.
//!
//! Every case speaks only the wire, through `confab_protocol`'s client library, and names the
//! docs/protocol.md section it checks, so the same code runs in `cargo test` against
//! [`harness::TestServer`] and against any running implementation. For several nodes on one
//! database: [`cluster::TestCluster`] (in-process nodes), [`node_process::NodeProcess`] (a node in
//! its own process, for SIGKILL) and [`nats::NatsServer`] (the real NATS server linking them). For
//! the S3 blob store: [`s3::S3Server`] (a real S3-compatible server, SeaweedFS). For the meeting
//! page: [`browser::BrowserEnv`] (headless Chromium through web/tests/browser.mjs). For group calls
//! with an independent WebRTC stack: [`aiortc::AiortcPeer`] (tests/peers/aiortc_peer.py). The
//! layering check the server's and the terminal client's tests run: [`layering::check`].

pub mod aiortc;
pub mod browser;
pub mod cases;
pub mod cluster;
pub mod harness;
pub mod inbox;
pub mod layering;
pub mod media;
pub mod nats;
pub mod node_process;
pub mod pg;
pub mod proxy;
pub mod push_fakes;
pub mod s3;
pub mod scenario;
pub mod syncer;
pub mod two_nodes;
pub mod util;
pub mod vp8;
pub mod webrtc_peer;
pub mod wiretap;
