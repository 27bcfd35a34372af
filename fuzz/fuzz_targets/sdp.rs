//! The SFU's SDP paths (§20.3.3, §20.3.4): the size check, parsing as a publisher offer with the
//! media check and offered track ids, and parsing as a subscriber answer
//! (`confab_server::fuzzing::sdp`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| confab_server::fuzzing::sdp(data));
