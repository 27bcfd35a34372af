//! Media forwarding (docs/protocol.md §20.3.8): one reader task per published track fans RTP out
//! to one bounded queue per subscriber (dropping for a subscriber whose queue is full, so a slow
//! one cannot stall the others); one writer task per (track, subscriber) rewrites SSRC, payload
//! type and the audio-level extension id to that subscriber connection's values. Keyframe
//! requests go to the publisher at most once per second per track; audio levels feed the active
//! speaker list.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::shared::marshal::Unmarshal;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::RTCPeerConnectionState;
use webrtc::rtp_transceiver::RtpSender;

use super::engine::{AUDIO_LEVEL_URI, is_keyframe_request};
use crate::store::now_ms;

/// Packets queued per (track, subscriber) before that subscriber's packets are dropped.
const OUT_QUEUE: usize = 128;
/// Keyframe requests per track: at most one per this interval.
const KEYFRAME_INTERVAL: Duration = Duration::from_secs(1);
/// The SSRC the SFU puts as sender of the PLIs it sends.
const PLI_SENDER_SSRC: u32 = 0x5346_5500;

/// Packet counters of one room, for logs and tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub rtp_in: AtomicU64,
    pub rtp_out: AtomicU64,
    pub dropped: AtomicU64,
    pub keyframe_requests: AtomicU64,
}

/// One published track: its source and the subscribers it goes to.
pub struct Relay {
    /// The room-wide track id (participant id, ':', the publisher's own track id).
    pub id: String,
    /// The publisher's own track id (msid), which `SetMute` also accepts.
    pub client_track_id: String,
    pub participant_id: String,
    pub user_id: u64,
    pub kind: RtpCodecKind,
    pub ssrc: u32,
    pub muted: AtomicBool,
    /// Negotiated audio-level extension id on the publisher connection.
    audio_level_id: Option<u8>,
    /// Latest audio level (0 silence ..= 127 loudest) and when it was heard (ms).
    pub level: AtomicU8,
    pub heard_ms: AtomicU64,
    remote: Arc<dyn TrackRemote>,
    outs: Mutex<Vec<(String, mpsc::Sender<rtp::Packet>)>>,
    keyframe: Mutex<KeyframeGate>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("id", &self.id).field("ssrc", &self.ssrc).finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct KeyframeGate {
    last: Option<Instant>,
    pending: bool,
}

/// What is known of a new remote track when it starts flowing.
#[derive(Debug)]
pub struct Source {
    pub participant_id: String,
    pub user_id: u64,
    pub audio_level_id: Option<u8>,
}

impl Relay {
    /// Reads the track's metadata and starts its reader task.
    pub async fn start(src: Source, remote: Arc<dyn TrackRemote>, counters: Arc<Counters>) -> Option<Arc<Relay>> {
        let ssrc = *remote.ssrcs().await.first()?;
        let client_track_id = remote.track_id().await;
        let relay = Arc::new(Relay {
            id: format!("{}:{client_track_id}", src.participant_id),
            client_track_id,
            participant_id: src.participant_id,
            user_id: src.user_id,
            kind: remote.kind().await,
            ssrc,
            muted: AtomicBool::new(false),
            audio_level_id: src.audio_level_id,
            level: AtomicU8::new(0),
            heard_ms: AtomicU64::new(0),
            remote,
            outs: Mutex::new(Vec::new()),
            keyframe: Mutex::new(KeyframeGate::default()),
            counters,
        });
        tokio::spawn(read_publisher(relay.clone()));
        Some(relay)
    }

    fn outs(&self) -> std::sync::MutexGuard<'_, Vec<(String, mpsc::Sender<rtp::Packet>)>> {
        self.outs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops forwarding to `participant` (its writer task ends).
    pub fn detach(&self, participant: &str) {
        self.outs().retain(|(p, _)| p != participant);
    }

    /// Stops forwarding to everyone.
    pub fn detach_all(&self) {
        self.outs().clear();
    }

    /// Asks the publisher for a keyframe: now, or once the 1 s interval since the last is over.
    pub fn request_keyframe(self: &Arc<Self>) {
        if self.kind != RtpCodecKind::Video {
            return;
        }
        let wait = {
            let mut g = self.keyframe.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if g.pending {
                return;
            }
            let now = Instant::now();
            let wait = g.last.map_or(Duration::ZERO, |l| (l + KEYFRAME_INTERVAL).saturating_duration_since(now));
            g.pending = true;
            wait
        };
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            {
                let mut g = me.keyframe.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                g.pending = false;
                g.last = Some(Instant::now());
            }
            let pli = PictureLossIndication { sender_ssrc: PLI_SENDER_SSRC, media_ssrc: me.ssrc };
            if me.remote.write_rtcp(vec![Box::new(pli)]).await.is_ok() {
                me.counters.keyframe_requests.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// Starts forwarding to one subscriber connection through `track`. Packets go out only while
    /// `active` (its negotiation is complete) and the connection is connected: writes before DTLS
    /// is up would be dropped by the stack anyway.
    pub fn attach(self: &Arc<Self>, out: Out) {
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        self.outs().push((out.participant.clone(), tx));
        tokio::spawn(write_subscriber(rx, out, self.audio_level_id, self.counters.clone()));
    }
}

/// One (track, subscriber) leg.
pub struct Out {
    pub participant: String,
    pub track: Arc<TrackLocalStaticRTP>,
    pub ssrc: u32,
    pub payload_type: u8,
    /// Read once the leg is negotiated, for the audio-level extension id.
    pub sender: Arc<dyn RtpSender>,
    pub active: Arc<AtomicBool>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Out").field("participant", &self.participant).field("ssrc", &self.ssrc).finish_non_exhaustive()
    }
}

/// The reader of one published track: fans out, never awaiting a subscriber.
async fn read_publisher(relay: Arc<Relay>) {
    while let Some(ev) = relay.remote.poll().await {
        let TrackRemoteEvent::OnRtpPacket(pkt) = ev else { continue };
        relay.counters.rtp_in.fetch_add(1, Ordering::Relaxed);
        if let Some(level) = relay.audio_level_id.and_then(|id| pkt.header.get_extension(id))
            && let Ok(l) = AudioLevelExtension::unmarshal(&mut level.clone())
        {
            relay.level.store(127u8.saturating_sub(l.level.min(127)), Ordering::Relaxed);
            relay.heard_ms.store(now_ms().max(0) as u64, Ordering::Relaxed);
        }
        for (_, tx) in relay.outs().iter() {
            if tx.try_send(pkt.clone()).is_err() {
                relay.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    tracing::debug!(track = %relay.id, "published track ended");
}

/// The writer of one (track, subscriber) leg; also starts the leg's RTCP reader.
async fn write_subscriber(
    mut rx: mpsc::Receiver<rtp::Packet>,
    out: Out,
    level_in: Option<u8>,
    counters: Arc<Counters>,
) {
    let mut level_out: Option<Option<u8>> = None;
    while let Some(mut pkt) = rx.recv().await {
        if !out.active.load(Ordering::Acquire) || *out.state.borrow() != RTCPeerConnectionState::Connected {
            continue;
        }
        if level_out.is_none() {
            // The server offered this leg, so the id is its own; read it once negotiated.
            let params = out.sender.get_parameters().await.ok();
            level_out = Some(params.and_then(|p| {
                p.rtp_parameters.header_extensions.iter().find(|e| e.uri == AUDIO_LEVEL_URI).map(|e| e.id as u8)
            }));
        }
        let level = level_in.and_then(|id| pkt.header.get_extension(id));
        pkt.header.extension = false;
        pkt.header.extension_profile = 0;
        pkt.header.extensions.clear();
        pkt.header.extensions_padding = 0;
        if let (Some(Some(id)), Some(v)) = (level_out, level) {
            let _ = pkt.header.set_extension(id, v);
        }
        pkt.header.ssrc = out.ssrc;
        pkt.header.payload_type = out.payload_type;
        if out.track.write_rtp(pkt).await.is_ok() {
            counters.rtp_out.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Keyframe requests (PLI/FIR) a subscriber sends about one forwarded track go to its publisher.
/// Ends when the track is removed from the subscriber connection or that connection closes.
pub async fn relay_feedback(track: Arc<TrackLocalStaticRTP>, relay: Arc<Relay>) {
    while let Some(ev) = track.poll().await {
        if let TrackLocalEvent::OnRtcpPacket(pkts) = ev
            && pkts.iter().any(|p| is_keyframe_request(p.as_ref()))
        {
            relay.request_keyframe();
        }
    }
}
