//! The synthetic media of the test peers: payloads that start with a sequence marker, a tag and
//! their send time, the sending rate, and what a receiver counts of them ([`Received`]).

use super::*;

/// Synthetic payload sizes at the default rate.
pub const AUDIO_LEN: usize = 160;
pub const VIDEO_LEN: usize = 1000;
/// Bytes before the pattern: marker, tag, video flag, send time, length.
const HEADER_LEN: usize = 16;

/// Nanoseconds on this process's clock (publishers and subscribers of one process share it).
pub fn clock_ns() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// `[marker u32][tag][flags: 1 video, 2 keyframe][sent ns u64][len u16][pattern…]`, `len` bytes
/// in all (at least 16).
pub fn payload(marker: u32, tag: u8, video: bool, len: usize) -> Bytes {
    payload_with(marker, tag, u8::from(video), len)
}

/// [`payload`] with the flags byte given: bit 0 video, bit 1 keyframe.
pub fn payload_with(marker: u32, tag: u8, flags: u8, len: usize) -> Bytes {
    let len = len.max(HEADER_LEN);
    let mut b = BytesMut::with_capacity(len);
    b.put_u32(marker);
    b.put_u8(tag);
    b.put_u8(flags);
    b.put_u64(clock_ns());
    b.put_u16(len as u16);
    for i in HEADER_LEN..len {
        b.put_u8((marker as u8).wrapping_add(i as u8));
    }
    b.freeze()
}

/// What an intact payload carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marked {
    pub marker: u32,
    pub tag: u8,
    pub video: bool,
    /// Sent as a keyframe (the first video packet after a PLI).
    pub keyframe: bool,
    pub sent_ns: u64,
}

/// The marks of an intact payload (every byte where [`payload`] put it).
pub fn check(p: &[u8]) -> Option<Marked> {
    if p.len() < HEADER_LEN {
        return None;
    }
    let marker = u32::from_be_bytes(p[0..4].try_into().ok()?);
    let sent_ns = u64::from_be_bytes(p[6..14].try_into().ok()?);
    let len = u16::from_be_bytes(p[14..16].try_into().ok()?);
    if p.len() != usize::from(len) || p[5] > 3 {
        return None;
    }
    let intact = p.iter().enumerate().skip(HEADER_LEN).all(|(i, &x)| x == (marker as u8).wrapping_add(i as u8));
    intact.then_some(Marked { marker, tag: p[4], video: p[5] & 1 == 1, keyframe: p[5] & 2 == 2, sent_ns })
}

/// How fast [`GroupPeer::publish_at`] sends.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Video packets per second and their payload size (audio: 50/s of 160 bytes).
    pub video_pps: u32,
    pub video_len: usize,
}

impl Default for Rate {
    fn default() -> Self {
        Self { video_pps: 50, video_len: VIDEO_LEN }
    }
}

/// What arrived on one received track.
#[derive(Clone, Debug, Default)]
pub struct Received {
    pub stream_id: String,
    pub video: bool,
    pub tag: u8,
    pub packets: u64,
    /// Every RTP packet that arrived, with this module's payload or not (e.g. a browser's).
    pub rtp: u64,
    pub first_marker: u32,
    pub last_marker: u32,
    pub gaps: u64,
    pub reordered: u64,
    pub corrupt: u64,
    /// Audio packets that carried the audio-level extension.
    pub with_level: u64,
    /// Send-to-receive time of every packet, microseconds.
    pub latencies_us: Vec<u32>,
    /// Video packets that start a VP8 keyframe (RFC 7741), for media from real encoders.
    pub vp8_keyframes: u64,
    /// Keyframes received, and when the first came.
    pub keyframes: u64,
    pub first_keyframe_at: Option<Instant>,
    /// Distinct markers received (a retransmitted packet counts once).
    pub distinct: u64,
    pub(super) seen: std::collections::HashSet<u32>,
}

impl Received {
    /// Packets missing between the first and the last marker seen, as a share of those expected
    /// (a packet that arrived twice counts once).
    pub fn loss(&self) -> f64 {
        let expected = u64::from(self.last_marker.saturating_sub(self.first_marker)) + 1;
        if self.packets == 0 { 1.0 } else { expected.saturating_sub(self.distinct) as f64 / expected as f64 }
    }
}

/// A local track with a fixed SSRC.
pub fn local_track(stream: &str, id: &str, kind: RtpCodecKind, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    let codec = if kind == RtpCodecKind::Audio { opus_codec() } else { vp8_codec() };
    let encoding = RTCRtpEncodingParameters {
        rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
        codec,
        ..Default::default()
    };
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(stream.into(), id.into(), id.into(), kind, vec![encoding])))
}

/// Reads one received track into `stats`.
pub(super) async fn read_track(track: Arc<dyn TrackRemote>, stats: Stats, taps: Taps) {
    let id = track.track_id().await;
    let stream_id = track.stream_id().await;
    let video = track.kind().await == RtpCodecKind::Video;
    let lock = || stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    lock().insert(id.clone(), Received { stream_id, video, ..Default::default() });
    taps.remotes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.clone(), track.clone());
    while let Some(ev) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(pkt) = ev else { continue };
        simulcast::log_raw(&taps, &id, &pkt);
        let mut g = lock();
        let Some(st) = g.get_mut(&id) else { return };
        st.rtp += 1;
        if video && clip::starts_vp8_keyframe(&pkt.payload) {
            st.vp8_keyframes += 1;
        }
        let Some(Marked { marker, tag, video: is_video, keyframe, sent_ns }) = check(&pkt.payload) else {
            st.corrupt += 1;
            continue;
        };
        if keyframe {
            st.keyframes += 1;
            st.first_keyframe_at.get_or_insert_with(Instant::now);
        }
        if st.seen.insert(marker) {
            st.distinct += 1;
        }
        st.latencies_us.push((clock_ns().saturating_sub(sent_ns) / 1000).min(u64::from(u32::MAX)) as u32);
        if st.packets == 0 {
            st.first_marker = marker;
            st.tag = tag;
        } else if marker > st.last_marker + 1 {
            st.gaps += 1;
        } else if marker <= st.last_marker {
            st.reordered += 1;
        }
        if is_video != video || tag != st.tag {
            st.corrupt += 1;
        }
        if !video && pkt.header.extension {
            st.with_level += 1;
        }
        st.last_marker = st.last_marker.max(marker);
        st.packets += 1;
    }
}
