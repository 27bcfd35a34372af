//! WebSocket framing (§2.1): the bytes a client sends after the upgrade, read by tungstenite with
//! the server's settings and classified as the connection loop does; binary messages go on
//! through decode, envelope checks and routing (`confab_server::fuzzing::websocket`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| confab_server::fuzzing::websocket(data));
