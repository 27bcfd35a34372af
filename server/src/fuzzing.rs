//! Store-free entry points for the cargo-fuzz targets in `fuzz/` (docs/operations.md, Fuzzing):
//! the server's own code paths from untrusted bytes up to the first store access. Not a supported
//! API; hidden from the documentation and free to change with the targets.

use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use confab_protocol::frames::{encode_server, response_frame};
use confab_protocol::framing::FrameBuffer;
use confab_protocol::v1::response;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};

use crate::config::Limits;
use crate::connection::{Refusal, admit, decode_frame};
use crate::error::ServerError;
use crate::handlers::{Routed, route};
use crate::session::{Outbox, Session, Transport};
use crate::transport::{ReadError, ws_config, ws_message};

/// One WebSocket message's bytes through the connection loop after Welcome, on a connection
/// without a caller: decode (§3.1), the envelope checks (§3.2, §3.4), routing (every request that
/// needs a caller is refused, §11), the field checks of the anonymous requests, and the encoding
/// of the response. Panics only on a bug, including a request that reaches a handler needing a
/// caller.
pub fn client_frame(bytes: &[u8]) {
    let (outbox, _ends) = Outbox::new(1);
    let session =
        Session::new("fuzz".into(), 0, Transport::WebSocket, SocketAddr::from((Ipv4Addr::LOCALHOST, 1)), outbox);
    let (request_id, result) = match decode_frame(Bytes::copy_from_slice(bytes)).map_err(refused).and_then(admit) {
        Err((request_id, e)) => (request_id, Err(e)),
        Ok((request_id, request)) => {
            let _ = request.kind();
            match route(&session, request) {
                Routed::Done(result) => (request_id, result),
                Routed::Anonymous(request) => match request.check_fields() {
                    Ok(()) => return, // the next step is the store
                    Err(e) => (request_id, Err(e)),
                },
                Routed::Authenticated(..) => panic!("a request reached an authenticated handler without a caller"),
                Routed::Guest(..) => panic!("a request reached a guest's handler on a connection without a guest"),
            }
        }
    };
    let result = result.unwrap_or_else(|e: ServerError| response::Result::Error(e.to_wire()));
    let _ = encode_server(&response_frame(request_id, result));
}

/// Bytes a client sends after the WebSocket upgrade, read by tungstenite with the server's
/// settings (§2.1, §8) and classified as the connection loop does; every binary message goes on
/// to [`client_frame`]. Stops where the connection would close.
pub fn websocket(bytes: &[u8]) {
    let io = Wire { input: std::io::Cursor::new(bytes) };
    let mut ws = WebSocket::from_raw_socket(io, Role::Server, Some(ws_config(&Limits::default())));
    loop {
        match ws_message(Some(ws.read())) {
            None => {}
            Some(Ok(Some(frame))) => client_frame(&frame),
            Some(Ok(None) | Err(ReadError::Text | ReadError::InvalidUtf8 | ReadError::TooLarge)) => return,
            Some(Err(ReadError::BadLength)) => panic!("a WebSocket message reported a QUIC length error"),
            Some(Err(ReadError::Transport(_))) => return,
        }
    }
}

/// The SDP a `Publish` offer and a `SubscriberAnswer` go through before a peer connection sees
/// them (§20.3.3, §20.3.4): the size check, parsing as an offer with the media check and the
/// offered track ids, and parsing as an answer.
pub fn sdp(bytes: &[u8]) {
    let Ok(sdp) = std::str::from_utf8(bytes) else { return };
    crate::calls::sfu::fuzz_sdp(sdp);
}

/// QUIC stream framing (§2.2): the varint length prefix and [`FrameBuffer`]. The first byte
/// picks the frame limit and the read size, the rest is the stream, delivered in reads of that
/// size as the QUIC reader does. Checks every frame cut against prost's varint decoder (a length
/// may be encoded in more bytes than needed, as protobuf allows): non-empty, within the limit,
/// exactly the bytes after its prefix; and that what is left when the stream ends is an
/// unfinished frame. Stops at the first error, where the connection closes (1009 or 1007).
pub fn quic_framing(data: &[u8]) {
    let Some((&knob, stream)) = data.split_first() else { return };
    let limit = 1 + u32::from(knob & 0x0f) * 4099;
    let chunk = 1 + usize::from(knob >> 4) * 7;
    let mut buf = FrameBuffer::new(limit);
    let (mut fed, mut at) = (0, 0);
    for piece in stream.chunks(chunk) {
        buf.read_buf().extend_from_slice(piece);
        fed += piece.len();
        loop {
            match buf.decode() {
                Ok(Some(frame)) => {
                    let mut rest = &stream[at..fed];
                    let len =
                        prost::encoding::decode_varint(&mut rest).expect("a frame was cut without a valid length");
                    let start = fed - rest.len();
                    assert_eq!(frame.len() as u64, len, "frame length differs from its prefix");
                    assert!(!frame.is_empty() && frame.len() <= limit as usize, "frame of {} bytes", frame.len());
                    assert_eq!(
                        &frame[..],
                        &stream[start..start + frame.len()],
                        "frame is not the bytes after its prefix"
                    );
                    at = start + frame.len();
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    assert_eq!(buf.is_empty(), at == fed, "leftover bytes do not match the frames cut");
}

/// A client's byte stream: reads from the fuzz input, discards what the server writes.
#[derive(Debug)]
struct Wire<'a> {
    input: std::io::Cursor<&'a [u8]>,
}

impl std::io::Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl std::io::Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The request id a refused frame is answered under, and the error.
fn refused(r: Refusal) -> (u64, ServerError) {
    match r {
        Refusal::Text(request_id, e) => (request_id, e),
        Refusal::Undecodable(e) => (0, e),
    }
}
