//! `confab-fuzz-seeds DIR`: writes the seed corpora of the cargo-fuzz targets (fuzz/, see
//! docs/operations.md) into `DIR/<target>/`: every request kind as a real `ClientFrame`, some with
//! valid fields, wrapped as WebSocket frames and as QUIC length-prefixed streams, and SDP offers and
//! answers from the WebRTC stack the SFU uses. The committed corpora under fuzz/corpus were made
//! by this; re-running it adds nothing the fuzzer has not seen.

use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use confab_conformance::webrtc_peer::GroupPeer;
use confab_protocol::frames::{client_frame, encode_client};
use confab_protocol::framing::put_length_prefix;
use confab_protocol::v1::{self, ClientFrame, client_frame::Request};
use prost::Message as _;

/// Writes the fuzz targets' seed corpora.
#[derive(Debug, Parser)]
#[command(name = "confab-fuzz-seeds", version, about)]
struct Cli {
    /// The corpus directory (fuzz/corpus); one subdirectory per target is created.
    dir: PathBuf,
}

/// Every request kind with empty fields: field numbers 10..=400 of `ClientFrame`, kept when they
/// decode as a known request.
fn every_request_kind() -> Vec<Bytes> {
    let mut out = Vec::new();
    for field in 10u32..=400 {
        let mut b = vec![0x08, 0x01]; // request_id = 1
        prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut b);
        b.push(0);
        if ClientFrame::decode(&b[..]).is_ok_and(|f| f.request.is_some()) {
            out.push(Bytes::from(b));
        }
    }
    out
}

/// Requests with fields that pass validation, so the fuzzer starts past the first checks.
fn filled_requests(sdp: &str) -> Vec<Bytes> {
    let requests = [
        Request::Hello(v1::Hello { protocol_major: 1, client_name: "fuzz".into(), ..Default::default() }),
        Request::Ping(v1::Ping { client_time_ms: 1 }),
        Request::Register(v1::Register {
            username: "alice".into(),
            password: "correct horse".into(),
            display_name: Some("Alice".into()),
            email: Some("alice@example.org".into()),
            phone: Some("+33612345678".into()),
            device_name: "laptop".into(),
        }),
        Request::Login(v1::Login {
            identifier: "alice".into(),
            password: "correct horse".into(),
            device_name: "laptop".into(),
        }),
        Request::RequestCode(v1::RequestCode { phone: "+33612345678".into(), purpose: 1 }),
        Request::VerifyCode(v1::VerifyCode {
            phone: "+33612345678".into(),
            code: "123456".into(),
            device_name: "phone".into(),
            username: Some("bob".into()),
        }),
        Request::ResetPassword(v1::ResetPassword {
            identifier: "alice".into(),
            code: "123456".into(),
            new_password: "battery staple".into(),
        }),
        Request::SendMessage(v1::SendMessage {
            conversation_id: 7,
            text: "hello".into(),
            client_msg_id: "m1".into(),
            ..Default::default()
        }),
        Request::Publish(v1::Publish { room_id: Default::default(), conversation_id: 7, sdp_offer: sdp.to_string() }),
    ];
    requests.into_iter().enumerate().map(|(i, r)| encode_client(&client_frame(i as u64 + 1, r))).collect()
}

/// A masked client WebSocket frame (RFC 6455 §5.2) with FIN set.
fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn write_all(dir: &Path, target: &str, seeds: &[Vec<u8>]) -> anyhow::Result<()> {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(d.join(format!("seed-{i:03}")), s)?;
    }
    println!("{target}: {} seeds", seeds.len());
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let offer = GroupPeer::sample_offer().await?;
    let frames: Vec<Bytes> = every_request_kind().into_iter().chain(filled_requests(&offer)).collect();

    write_all(&cli.dir, "client_frame", &frames.iter().map(|f| f.to_vec()).collect::<Vec<_>>())?;

    let mut ws: Vec<Vec<u8>> = frames.iter().map(|f| ws_frame(0x2, f)).collect();
    ws.push([ws_frame(0x9, b"ping"), ws_frame(0x2, &frames[0])].concat());
    ws.push(ws_frame(0x1, b"{\"hello\":1}"));
    ws.push(ws_frame(0x1, &[0xff, 0xfe]));
    ws.push(ws_frame(0x8, &[0x03, 0xe8, b'b', b'y', b'e']));
    // A binary message in two fragments: no FIN, then a continuation with FIN.
    let (a, b) = frames[0].split_at(frames[0].len() / 2);
    let mut first = ws_frame(0x2, a);
    first[0] &= 0x7f;
    ws.push([first, ws_frame(0x0, b)].concat());
    write_all(&cli.dir, "ws_framing", &ws)?;

    // Knob byte: limit 1 MiB-ish, reads of 1 byte (0x0f) and of 106 bytes (0xff).
    let mut stream = Vec::new();
    for f in &frames {
        put_length_prefix(&mut stream, f.len());
        stream.extend_from_slice(f);
    }
    let quic = vec![
        [&[0x0f][..], &stream].concat(),
        [&[0xff][..], &stream].concat(),
        vec![0x0f, 0x00],
        vec![0x0f, 0xff, 0xff, 0xff, 0xff, 0x0f],
    ];
    write_all(&cli.dir, "quic_framing", &quic)?;

    let answer = offer.replace("a=sendrecv", "a=recvonly").replace("a=setup:actpass", "a=setup:active");
    write_all(&cli.dir, "sdp", &[offer.into_bytes(), answer.into_bytes()])?;
    Ok(())
}
