//! Media forwarding (docs/protocol.md §20.3.8): one reader task per published track fans RTP out
//! to one bounded queue per subscriber (dropping for a subscriber whose queue is full, so a slow
//! one cannot stall the others); one writer task per (track, subscriber) rewrites SSRC, payload
//! type and the audio-level extension id to that subscriber connection's values. A subscriber
//! gets a keyframe requested for it when its leg can first carry media (negotiated and its
//! connection connected, also again after a reconnect); its own PLI/FIR are passed on at most once
//! a second per leg; requests for one track within [`KEYFRAME_MERGE`] go to the publisher as one
//! PLI, sent after the last of them. Audio levels feed the active speaker list.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
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
use webrtc::rtp_transceiver::{RtpSender, RtpTransceiver};

use super::engine::{AUDIO_LEVEL_URI, MID_URI, is_keyframe_request};
use super::simulcast::{self, Admit, Choice, Forwarder, Layer};
use crate::store::now_ms;

/// Packets queued per (track, subscriber) before that subscriber's packets are dropped.
const OUT_QUEUE: usize = 128;
/// Keyframe requests for one track closer together than this go to the publisher as one PLI
/// (sent at the end of the interval, so after every request it stands for).
pub const KEYFRAME_MERGE: Duration = Duration::from_millis(100);
/// A subscriber's own keyframe requests (PLI/FIR) for one leg: at most one per this interval.
pub const SUBSCRIBER_KEYFRAME_INTERVAL: Duration = Duration::from_secs(1);
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
    /// A moderator muted the track (§25.5): nothing of it is forwarded until its publisher
    /// unmutes it.
    pub held: AtomicBool,
    /// Negotiated audio-level extension id on the publisher connection.
    audio_level_id: Option<u8>,
    /// Latest audio level (0 silence ..= 127 loudest) and when it was heard (ms).
    pub level: AtomicU8,
    pub heard_ms: AtomicU64,
    remote: Arc<dyn TrackRemote>,
    outs: Mutex<Vec<(String, mpsc::Sender<rtp::Packet>)>>,
    keyframe: Mutex<KeyframeGate>,
    counters: Arc<Counters>,
    /// Simulcast (§20.3.10): the level of each rid the publisher offered (empty without).
    ranks: Vec<(String, u8)>,
    /// The layers seen so far (one, of level HIGH, without simulcast).
    layers: Mutex<Vec<Arc<Layer>>>,
    /// When each layer was last asked for a keyframe.
    layer_plis: Mutex<Vec<(u32, Instant)>>,
    /// The track's codec is H.264 (else VP8 or audio), and its clock rate.
    h264: bool,
    clock_rate: u32,
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
    /// The rids of the track's `a=simulcast:send` list (§20.3.10); empty without simulcast.
    pub rids: Vec<String>,
}

/// A layer's keyframe request is repeated at most this often while a switch waits for it.
const LAYER_PLI_INTERVAL: Duration = Duration::from_millis(300);

impl Relay {
    /// Reads the track's metadata and starts its reader task.
    pub async fn start(src: Source, remote: Arc<dyn TrackRemote>, counters: Arc<Counters>) -> Option<Arc<Relay>> {
        let ssrc = *remote.ssrcs().await.first()?;
        let client_track_id = remote.track_id().await;
        let codec = remote.codec(ssrc).await.unwrap_or_default();
        let relay = Arc::new(Relay {
            id: format!("{}:{client_track_id}", src.participant_id),
            client_track_id,
            participant_id: src.participant_id,
            user_id: src.user_id,
            kind: remote.kind().await,
            ssrc,
            muted: AtomicBool::new(false),
            held: AtomicBool::new(false),
            audio_level_id: src.audio_level_id,
            level: AtomicU8::new(0),
            heard_ms: AtomicU64::new(0),
            remote,
            outs: Mutex::new(Vec::new()),
            keyframe: Mutex::new(KeyframeGate::default()),
            counters,
            ranks: simulcast::rank(&src.rids),
            layers: Mutex::new(Vec::new()),
            layer_plis: Mutex::new(Vec::new()),
            h264: codec.mime_type.eq_ignore_ascii_case("video/H264"),
            clock_rate: if codec.clock_rate == 0 { 90_000 } else { codec.clock_rate },
        });
        tokio::spawn(read_publisher(relay.clone()));
        Some(relay)
    }

    fn outs(&self) -> std::sync::MutexGuard<'_, Vec<(String, mpsc::Sender<rtp::Packet>)>> {
        self.outs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the publisher sends this track in several simulcast layers (§20.3.10).
    pub fn simulcast(&self) -> bool {
        self.ranks.len() > 1
    }

    /// The layers seen so far.
    pub fn layers(&self) -> Vec<Arc<Layer>> {
        self.layers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The layer to forward for `level` ([`simulcast::pick`]).
    fn pick(&self, level: u8, now_ms: u64) -> Option<(u32, u8)> {
        simulcast::pick(&self.layers.lock().unwrap_or_else(std::sync::PoisonError::into_inner), level, now_ms)
    }

    /// The layer of a packet from an SSRC not seen before: its rid's level, or HIGH without
    /// simulcast; `None` for a rid the offer did not list (or beyond the third).
    async fn new_layer(&self, ssrc: u32) -> Option<Arc<Layer>> {
        let (rid, level) = if self.ranks.is_empty() {
            (String::new(), simulcast::HIGH)
        } else {
            let rid = self.remote.rid(ssrc).await?;
            let level = self.ranks.iter().find(|(r, _)| *r == rid)?.1;
            (rid, level)
        };
        tracing::debug!(track = %self.id, rid = %rid, level, ssrc, "simulcast layer");
        let layer = Arc::new(Layer { ssrc, level, bps: AtomicU64::new(0), heard_ms: AtomicU64::new(0) });
        let mut layers = self.layers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        layers.retain(|l| l.level != level || self.ranks.is_empty()); // a layer's new SSRC replaces it
        layers.push(layer.clone());
        Some(layer)
    }

    /// Asks the publisher for a keyframe on one layer (a pending switch), at most every 300 ms.
    pub fn layer_keyframe(self: &Arc<Self>, ssrc: u32) {
        {
            let mut g = self.layer_plis.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            match g.iter_mut().find(|(s, _)| *s == ssrc) {
                Some((_, at)) if now.saturating_duration_since(*at) < LAYER_PLI_INTERVAL => return,
                Some((_, at)) => *at = now,
                None => g.push((ssrc, now)),
            }
        }
        let me = self.clone();
        tokio::spawn(async move {
            let pli = PictureLossIndication { sender_ssrc: PLI_SENDER_SSRC, media_ssrc: ssrc };
            if me.remote.write_rtcp(vec![Box::new(pli)]).await.is_ok() {
                me.counters.keyframe_requests.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// Stops forwarding to `participant` (its writer task ends).
    pub fn detach(&self, participant: &str) {
        self.outs().retain(|(p, _)| p != participant);
    }

    /// Stops forwarding to everyone.
    pub fn detach_all(&self) {
        self.outs().clear();
    }

    /// Asks the publisher for a keyframe: now, or at the end of the [`KEYFRAME_MERGE`] interval
    /// since the last PLI (requests meanwhile merge into that one).
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
            let wait = g.last.map_or(Duration::ZERO, |l| (l + KEYFRAME_MERGE).saturating_duration_since(now));
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
            // Every layer of a simulcast track: subscribers may be on any of them.
            let mut ssrcs: Vec<u32> = me.layers().iter().map(|l| l.ssrc).collect();
            if ssrcs.is_empty() {
                ssrcs.push(me.ssrc);
            }
            let plis: Vec<Box<dyn rtc::rtcp::Packet>> = ssrcs
                .into_iter()
                .map(|media_ssrc| {
                    Box::new(PictureLossIndication { sender_ssrc: PLI_SENDER_SSRC, media_ssrc })
                        as Box<dyn rtc::rtcp::Packet>
                })
                .collect();
            if me.remote.write_rtcp(plis).await.is_ok() {
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
        tokio::spawn(write_subscriber(rx, out, self.clone()));
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
    /// The layer this subscriber gets (§20.3.10).
    pub choice: Arc<Choice>,
    /// Tells the subscriber the level it now receives of a simulcast track.
    pub notify: Box<dyn Fn(u8) + Send + Sync>,
    /// The leg's transceiver on the subscriber connection (for its mid).
    pub transceiver: Option<Arc<dyn RtpTransceiver>>,
}

/// The header extensions a leg's writer sets, with the ids negotiated on the subscriber
/// connection (the server offered them): read once the leg is negotiated.
#[derive(Clone, Debug, Default)]
pub struct LegExtensions {
    pub audio_level: Option<u8>,
    /// RFC 8843 `sdes:mid`: the subscriber m-line's mid, so a receiver re-binds an m-line reused
    /// for a new track with a new SSRC.
    pub mid: Option<(u8, Bytes)>,
    /// RFC 8852 `sdes:rtp-stream-id`: none yet; the hook for forwarding one simulcast layer under
    /// its rid.
    pub rid: Option<(u8, Bytes)>,
}

impl LegExtensions {
    async fn read(out: &Out) -> Self {
        let params = out.sender.get_parameters().await.ok();
        let id = |uri: &str| {
            params
                .as_ref()
                .and_then(|p| p.rtp_parameters.header_extensions.iter().find(|e| e.uri == uri).map(|e| e.id as u8))
        };
        let (audio_level, mid_id) = (id(AUDIO_LEVEL_URI), id(MID_URI));
        let mid = match &out.transceiver {
            Some(t) => t.mid().await.ok().flatten(),
            None => None,
        };
        Self { audio_level, mid: mid_id.zip(mid.map(Bytes::from)), rid: None }
    }
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Out").field("participant", &self.participant).field("ssrc", &self.ssrc).finish_non_exhaustive()
    }
}

/// The reader of one published track: fans out, never awaiting a subscriber.
async fn read_publisher(relay: Arc<Relay>) {
    // Per layer: its SSRC, and the bytes of the current one-second window and when it began.
    let mut known: Vec<(u32, Arc<Layer>, u64, Instant)> = Vec::new();
    let mut unknown: Vec<(u32, Instant)> = Vec::new();
    while let Some(ev) = relay.remote.poll().await {
        let TrackRemoteEvent::OnRtpPacket(pkt) = ev else { continue };
        relay.counters.rtp_in.fetch_add(1, Ordering::Relaxed);
        let ssrc = pkt.header.ssrc;
        let now = Instant::now();
        let at = match known.iter().position(|k| k.0 == ssrc) {
            Some(at) => at,
            None => {
                // A rid may be resolved a moment after its first packet: look again each second.
                if unknown.iter().any(|(s, t)| *s == ssrc && now.saturating_duration_since(*t) < Duration::from_secs(1))
                {
                    continue;
                }
                let Some(layer) = relay.new_layer(ssrc).await else {
                    unknown.retain(|(s, _)| *s != ssrc);
                    unknown.push((ssrc, now));
                    continue;
                };
                known.retain(|k| k.1.level != layer.level || relay.ranks.is_empty());
                known.push((ssrc, layer, 0, now));
                known.len() - 1
            }
        };
        let k = &mut known[at];
        k.2 += (pkt.payload.len() + 12) as u64;
        let window = now.saturating_duration_since(k.3);
        if window >= Duration::from_secs(1) {
            k.1.bps.store(k.2 * 8 * 1000 / (window.as_millis() as u64).max(1), Ordering::Relaxed);
            (k.2, k.3) = (0, now);
        }
        k.1.heard_ms.store(now_ms().max(0) as u64, Ordering::Relaxed);
        if let Some(level) = relay.audio_level_id.and_then(|id| pkt.header.get_extension(id))
            && let Ok(l) = AudioLevelExtension::unmarshal(&mut level.clone())
        {
            relay.level.store(127u8.saturating_sub(l.level.min(127)), Ordering::Relaxed);
            relay.heard_ms.store(now_ms().max(0) as u64, Ordering::Relaxed);
        }
        if relay.held.load(Ordering::Relaxed) {
            continue;
        }
        for (_, tx) in relay.outs().iter() {
            if tx.try_send(pkt.clone()).is_err() {
                relay.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    tracing::debug!(track = %relay.id, "published track ended");
}

/// Whether the subscriber connection of a leg is connected.
pub fn connected(state: &watch::Receiver<RTCPeerConnectionState>) -> bool {
    *state.borrow() == RTCPeerConnectionState::Connected
}

/// The writer of one (track, subscriber) leg. When the leg's connection becomes connected while
/// the leg is negotiated (`active`), it asks for a keyframe for this subscriber; the room does
/// the same when a leg is negotiated on a connection already connected (§20.3.8).
async fn write_subscriber(mut rx: mpsc::Receiver<rtp::Packet>, mut out: Out, relay: Arc<Relay>) {
    let (level_in, counters) = (relay.audio_level_id, relay.counters.clone());
    let mut ext: Option<LegExtensions> = None;
    let gate = relay.simulcast() && relay.kind == RtpCodecKind::Video;
    let mut fwd = Forwarder::new(gate, relay.clock_rate);
    let mut watching = true;
    loop {
        let mut pkt = tokio::select! {
            pkt = rx.recv() => match pkt {
                Some(pkt) => pkt,
                None => break,
            },
            changed = out.state.changed(), if watching => {
                if changed.is_err() {
                    watching = false; // the connection is gone; the leg ends with its detach
                } else if connected(&out.state) && out.active.load(Ordering::Acquire) {
                    relay.request_keyframe();
                }
                continue;
            }
        };
        if !out.active.load(Ordering::Acquire) || !connected(&out.state) {
            continue;
        }
        let target = relay.pick(out.choice.target.load(Ordering::Relaxed), now_ms().max(0) as u64);
        let keyframe = gate && simulcast::is_keyframe(relay.h264, &pkt.payload);
        match fwd.admit(target, keyframe, &mut pkt, Instant::now()) {
            Admit::Forward(switched) => {
                if let Some(level) = switched {
                    report(&out, &relay, level);
                }
            }
            Admit::Drop => continue,
            Admit::NeedKeyframe(ssrc) => {
                relay.layer_keyframe(ssrc);
                continue;
            }
            Admit::Stopped => {
                report(&out, &relay, simulcast::OFF);
                continue;
            }
        }
        if ext.is_none() {
            ext = Some(LegExtensions::read(&out).await);
        }
        let ext = ext.as_ref().map_or_else(LegExtensions::default, Clone::clone);
        let level = level_in.and_then(|id| pkt.header.get_extension(id));
        pkt.header.extension = false;
        pkt.header.extension_profile = 0;
        pkt.header.extensions.clear();
        pkt.header.extensions_padding = 0;
        if let (Some(id), Some(v)) = (ext.audio_level, level) {
            let _ = pkt.header.set_extension(id, v);
        }
        for (id, v) in [ext.mid, ext.rid].into_iter().flatten() {
            let _ = pkt.header.set_extension(id, v);
        }
        pkt.header.ssrc = out.ssrc;
        pkt.header.payload_type = out.payload_type;
        if out.track.write_rtp(pkt).await.is_ok() {
            counters.rtp_out.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Tells the subscriber the level it now gets of a simulcast track (§20.3.10), once per change.
fn report(out: &Out, relay: &Relay, level: u8) {
    if out.choice.sent.swap(level, Ordering::Relaxed) != level && relay.simulcast() {
        (out.notify)(level);
    }
}

/// Keyframe requests (PLI/FIR) a subscriber sends about one forwarded track go to its publisher,
/// at most one per [`SUBSCRIBER_KEYFRAME_INTERVAL`] (a subscriber asking more often waits for the
/// keyframe already asked for). Ends when the track is removed from the subscriber connection or
/// that connection closes.
pub async fn relay_feedback(track: Arc<TrackLocalStaticRTP>, relay: Arc<Relay>) {
    let mut last: Option<Instant> = None;
    while let Some(ev) = track.poll().await {
        if let TrackLocalEvent::OnRtcpPacket(pkts) = ev
            && pkts.iter().any(|p| is_keyframe_request(p.as_ref()))
            && last.is_none_or(|l| l.elapsed() >= SUBSCRIBER_KEYFRAME_INTERVAL)
        {
            last = Some(Instant::now());
            relay.request_keyframe();
        }
    }
}
