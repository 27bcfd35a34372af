//! One WebSocket message's bytes as a `ClientFrame` (§3): decode, the envelope checks, routing
//! without a caller and the anonymous requests' field checks, without a store
//! (`confab_server::fuzzing::client_frame`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| confab_server::fuzzing::client_frame(data));
