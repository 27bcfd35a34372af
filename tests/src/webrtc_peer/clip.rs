//! Real VP8 for [`GroupPeer`]: a clip read from an IVF file (encoded elsewhere, e.g. by libvpx in
//! the aiortc peer) sent as RTP (RFC 7741) in a loop, back at its keyframe whenever the server
//! asks for one (PLI), beside Opus silence; and the check that a payload starts a VP8 keyframe.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use bytes::Bytes;
use rtc::media::io::ivf_reader::IVFReader;
use rtc::rtp;
use rtc::rtp::codec::vp8::Vp8Payloader;
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp::packetizer::Payloader;
use webrtc::media_stream::track_local::TrackLocal;

use super::GroupPeer;
use confab_server::calls::sfu::engine::{PT_OPUS, PT_VP8};

/// An Opus packet of 20 ms of silence (TOC 0xF8: CELT fullband, one 20 ms frame).
const OPUS_SILENCE: [u8; 3] = [0xF8, 0xFF, 0xFE];
/// Payload bytes per RTP packet, below any loopback MTU with headers and SRTP.
const MTU: usize = 1200;

/// The frames of a VP8 IVF file, in order (the first should be a keyframe).
pub fn read_ivf(path: &Path) -> anyhow::Result<Vec<Bytes>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (mut reader, header) = IVFReader::new(std::io::BufReader::new(file))?;
    ensure!(&header.four_cc == b"VP80", "{} is not VP8: {:?}", path.display(), header.four_cc);
    let mut frames = Vec::new();
    while let Ok((frame, _)) = reader.parse_next_frame() {
        frames.push(frame.freeze());
    }
    ensure!(frames.first().is_some_and(|f| is_vp8_keyframe(f)), "{} does not start with a keyframe", path.display());
    Ok(frames)
}

/// Whether a VP8 frame (RFC 6386 §9.1: the P bit of the frame tag is 0) is a keyframe.
fn is_vp8_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 == 0)
}

/// Whether an RTP payload starts a VP8 keyframe: S set and partition 0 in the payload descriptor
/// (RFC 7741 §4.2), then a keyframe tag.
pub(super) fn starts_vp8_keyframe(p: &[u8]) -> bool {
    let Some(&first) = p.first() else { return false };
    if first & 0x10 == 0 || first & 0x07 != 0 {
        return false;
    }
    let mut at = 1;
    if first & 0x80 != 0 {
        let Some(&x) = p.get(1) else { return false };
        at = 2;
        if x & 0x80 != 0 {
            at += if p.get(at).is_some_and(|b| b & 0x80 != 0) { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1;
        }
        if x & 0x30 != 0 {
            at += 1;
        }
    }
    p.get(at..).is_some_and(is_vp8_keyframe)
}

impl GroupPeer {
    /// Publishes `frames` (VP8, the first a keyframe) at `fps` in a loop, and Opus silence at
    /// 50 packets/s with an audio level. A PLI from the server sends the keyframe next. Returns
    /// the count of video frames sent so far.
    pub async fn publish_clip(&self, frames: Vec<Bytes>, fps: u32) -> anyhow::Result<Arc<AtomicU64>> {
        ensure!(!frames.is_empty() && fps > 0, "an empty clip");
        let (audio, video, keyframe_due) = self.open_publisher().await?;
        let base = 0x0100_0000 * u32::from(self.tag);
        let header = move |pt, ssrc, ts, seq: u16, marker| rtp::header::Header {
            version: 2,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            marker,
            ..Default::default()
        };
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut n: u32 = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let a = rtp::Packet {
                    header: header(PT_OPUS, base + 1, n.wrapping_mul(960), n as u16, false),
                    payload: Bytes::from_static(&OPUS_SILENCE),
                };
                let level = AudioLevelExtension { level: 30, voice: true };
                let _ = audio.write_rtp_with_extensions(a, &[HeaderExtension::AudioLevel(level)]).await;
            }
        });
        let (stop, sent) = (self.stop.clone(), Arc::new(AtomicU64::new(0)));
        let count = sent.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(fps)));
            let mut payloader = Vp8Payloader::default();
            payloader.enable_picture_id = true;
            let (mut seq, mut at) = (0u16, 0usize);
            let mut ts: u32 = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                if keyframe_due.swap(false, Ordering::Relaxed) {
                    at = 0;
                }
                let Ok(parts) = payloader.payload(MTU, &frames[at]) else { continue };
                let last = parts.len().saturating_sub(1);
                for (i, part) in parts.into_iter().enumerate() {
                    let v = rtp::Packet { header: header(PT_VP8, base + 2, ts, seq, i == last), payload: part };
                    let _ = video.write_rtp(v).await;
                    seq = seq.wrapping_add(1);
                }
                count.fetch_add(1, Ordering::Relaxed);
                ts = ts.wrapping_add(90_000 / fps);
                at = (at + 1) % frames.len();
            }
        });
        Ok(sent)
    }
}
