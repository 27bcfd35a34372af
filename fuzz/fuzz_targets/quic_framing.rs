//! QUIC stream framing (§2.2): the varint length prefix and `FrameBuffer`, with the stream cut
//! into reads of varying size and the frames checked against the bytes
//! (`confab_server::fuzzing::quic_framing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| confab_server::fuzzing::quic_framing(data));
