//! A group-call participant for tests (docs/protocol.md §20.3), built on the same `webrtc` crate
//! as the server's SFU and signalling only through the Confab client library: JoinCall, Publish,
//! SubscriberAnswer and Trickle out; SubscriberOffer and ServerTrickle handled as they come. It
//! publishes synthetic RTP (Opus PT 111, VP8 PT 96) whose payload starts with a u32 sequence
//! marker and its send time, and checks what it receives for order, gaps, integrity and latency.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use confab_protocol::client::{Client, Events};
use confab_protocol::v1::{self, PeerRole, event};
use confab_server::calls::sfu::engine::{Engine, PT_OPUS, PT_VP8, opus_codec, vp8_codec};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use tokio::sync::{Mutex, mpsc};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent, RTCSessionDescription,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::call;

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

/// `[marker u32][tag][video?][sent ns u64][len u16][pattern…]`, `len` bytes in all (at least 16).
pub fn payload(marker: u32, tag: u8, video: bool, len: usize) -> Bytes {
    let len = len.max(HEADER_LEN);
    let mut b = BytesMut::with_capacity(len);
    b.put_u32(marker);
    b.put_u8(tag);
    b.put_u8(u8::from(video));
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
    if p.len() != usize::from(len) || p[5] > 1 {
        return None;
    }
    let intact = p.iter().enumerate().skip(HEADER_LEN).all(|(i, &x)| x == (marker as u8).wrapping_add(i as u8));
    intact.then_some(Marked { marker, tag: p[4], video: p[5] == 1, sent_ns })
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
    pub first_marker: u32,
    pub last_marker: u32,
    pub gaps: u64,
    pub reordered: u64,
    pub corrupt: u64,
    /// Audio packets that carried the audio-level extension.
    pub with_level: u64,
    /// Send-to-receive time of every packet, microseconds.
    pub latencies_us: Vec<u32>,
}

impl Received {
    /// Packets missing between the first and the last marker seen, as a share of those expected.
    pub fn loss(&self) -> f64 {
        let expected = u64::from(self.last_marker.saturating_sub(self.first_marker)) + 1;
        if self.packets == 0 { 1.0 } else { expected.saturating_sub(self.packets) as f64 / expected as f64 }
    }
}

type Stats = Arc<StdMutex<HashMap<String, Received>>>;

/// One of the peer's connections and the server candidates waiting for its remote description.
struct Leg {
    pc: Arc<dyn PeerConnection>,
    has_remote: bool,
    queued: Vec<RTCIceCandidateInit>,
}

impl Leg {
    async fn remote_applied(&mut self) {
        self.has_remote = true;
        for c in std::mem::take(&mut self.queued) {
            let _ = self.pc.add_ice_candidate(c).await;
        }
    }
}

struct Handler {
    cands: mpsc::Sender<RTCIceCandidateInit>,
    tracks: Option<mpsc::Sender<Arc<dyn TrackRemote>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, ev: RTCPeerConnectionIceEvent) {
        if let Ok(init) = ev.candidate.to_json() {
            let _ = self.cands.try_send(init);
        }
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if let Some(tx) = &self.tracks {
            let _ = tx.try_send(track);
        }
    }
}

/// A participant of a group call.
pub struct GroupPeer {
    pub participant_id: String,
    pub conversation_id: u64,
    pub tag: u8,
    client: Client,
    engine: Arc<Engine>,
    subscriber: Arc<Mutex<Leg>>,
    publisher: Arc<Mutex<Option<Leg>>>,
    events: Mutex<mpsc::Receiver<event::Event>>,
    received: Stats,
    /// `sender_ssrc` of every PLI the publisher got on its video track.
    pub plis: Arc<StdMutex<Vec<u32>>>,
    /// SubscriberOffers answered.
    pub offers: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    tracks: StdMutex<Vec<Arc<TrackLocalStaticRTP>>>,
    /// The publisher connection's senders: audio, video.
    senders: StdMutex<Vec<Arc<dyn RtpSender>>>,
}

impl std::fmt::Debug for GroupPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupPeer").field("participant_id", &self.participant_id).finish_non_exhaustive()
    }
}

fn ice(c: RTCIceCandidateInit) -> v1::IceCandidate {
    v1::IceCandidate {
        candidate: c.candidate,
        sdp_mid: c.sdp_mid.unwrap_or_default(),
        sdp_m_line_index: u32::from(c.sdp_mline_index.unwrap_or(0)),
    }
}

/// Sends a connection's candidates as Trickle (started once the server has the remote side).
fn pump_candidates(client: Client, conv: u64, role: PeerRole, mut rx: mpsc::Receiver<RTCIceCandidateInit>) {
    tokio::spawn(async move {
        while let Some(c) = rx.recv().await {
            let t = v1::Trickle { conversation_id: conv, role: role as i32, candidate: Some(ice(c)) };
            if call!(client, Trickle, t).is_err() {
                return;
            }
        }
    });
}

impl GroupPeer {
    /// Joins the group call of `conv` on `client`, taking over its event stream: signalling
    /// events are handled here, the others are kept for [`GroupPeer::next_event`].
    pub async fn join(
        client: Client,
        mut events: Events,
        conv: u64,
        tag: u8,
    ) -> anyhow::Result<(GroupPeer, v1::JoinCallResult)> {
        let engine = Arc::new(Engine::new([127, 0, 0, 1].into(), None, 0, 0));
        let (cand_tx, cand_rx) = mpsc::channel(64);
        let (track_tx, mut track_rx) = mpsc::channel::<Arc<dyn TrackRemote>>(64);
        let handler = Arc::new(Handler { cands: cand_tx, tracks: Some(track_tx) });
        let pc = engine.build(handler).await.map_err(anyhow::Error::msg)?;
        let subscriber = Arc::new(Mutex::new(Leg { pc, has_remote: false, queued: Vec::new() }));
        let received: Stats = Arc::default();
        let stats = received.clone();
        tokio::spawn(async move {
            while let Some(track) = track_rx.recv().await {
                tokio::spawn(read_track(track, stats.clone()));
            }
        });
        let joined = call!(client, JoinCall, v1::JoinCall { conversation_id: conv })?;
        let (ev_tx, ev_rx) = mpsc::channel(1024);
        let publisher: Arc<Mutex<Option<Leg>>> = Arc::default();
        let offers = Arc::new(AtomicU32::new(0));
        let (sub, publ, c, n) = (subscriber.clone(), publisher.clone(), client.clone(), offers.clone());
        let mut cand_rx = Some(cand_rx);
        tokio::spawn(async move {
            while let Some(v1::Event { event: Some(e) }) = events.recv().await {
                match e {
                    event::Event::SubscriberOffer(o) if o.conversation_id == conv => {
                        let mut leg = sub.lock().await;
                        let Ok(answer) = answer_offer(&leg.pc, o.sdp_offer).await else { continue };
                        let r = v1::SubscriberAnswer { conversation_id: conv, sdp_answer: answer };
                        if call!(c, SubscriberAnswer, r).is_ok() {
                            leg.remote_applied().await;
                            n.fetch_add(1, Ordering::Relaxed);
                            if let Some(rx) = cand_rx.take() {
                                pump_candidates(c.clone(), conv, PeerRole::Subscriber, rx);
                            }
                        }
                    }
                    event::Event::ServerTrickle(t) if t.conversation_id == conv => {
                        let Some(cand) = t.candidate.filter(|c| !c.candidate.is_empty()) else { continue };
                        let init = RTCIceCandidateInit {
                            candidate: cand.candidate,
                            sdp_mid: Some(cand.sdp_mid),
                            sdp_mline_index: Some(cand.sdp_m_line_index as u16),
                            ..Default::default()
                        };
                        if t.role == PeerRole::Subscriber as i32 {
                            add_or_queue(&mut *sub.lock().await, init).await;
                        } else if let Some(leg) = publ.lock().await.as_mut() {
                            add_or_queue(leg, init).await;
                        }
                    }
                    other => {
                        let _ = ev_tx.try_send(other);
                    }
                }
            }
        });
        let peer = GroupPeer {
            participant_id: joined.participant_id.clone(),
            conversation_id: conv,
            tag,
            client,
            engine,
            subscriber,
            publisher,
            events: Mutex::new(ev_rx),
            received,
            plis: Arc::default(),
            offers,
            stop: Arc::new(AtomicBool::new(false)),
            tracks: StdMutex::new(Vec::new()),
            senders: StdMutex::new(Vec::new()),
        };
        Ok((peer, joined))
    }

    /// The client this peer signals through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// An SDP offer with one audio and one video track, from a throw-away connection.
    pub async fn sample_offer() -> anyhow::Result<String> {
        let engine = Engine::new([127, 0, 0, 1].into(), None, 0, 0);
        let (tx, _rx) = mpsc::channel(64);
        let pc = engine.build(Arc::new(Handler { cands: tx, tracks: None })).await.map_err(anyhow::Error::msg)?;
        for (id, kind, ssrc) in [("a", RtpCodecKind::Audio, 1u32), ("v", RtpCodecKind::Video, 2)] {
            pc.add_track(local_track("sample", id, kind, ssrc) as Arc<dyn TrackLocal>).await?;
        }
        let offer = pc.create_offer(None).await?;
        pc.close().await?;
        Ok(offer.sdp)
    }

    /// Publishes an audio and a video track (`{tag}-audio`, `{tag}-video`) and starts sending
    /// 50 packets/s on each.
    pub async fn publish(&self) -> anyhow::Result<()> {
        self.publish_at(Rate::default()).await
    }

    /// Publishes an audio track (50 packets/s) and a video track at `rate`.
    pub async fn publish_at(&self, rate: Rate) -> anyhow::Result<()> {
        let (cand_tx, cand_rx) = mpsc::channel(64);
        let pc =
            self.engine.build(Arc::new(Handler { cands: cand_tx, tracks: None })).await.map_err(anyhow::Error::msg)?;
        let stream = format!("peer{}", self.tag);
        let base = 0x0100_0000 * u32::from(self.tag);
        let audio = local_track(&stream, &format!("{}-audio", self.tag), RtpCodecKind::Audio, base + 1);
        let video = local_track(&stream, &format!("{}-video", self.tag), RtpCodecKind::Video, base + 2);
        let a = pc.add_track(audio.clone() as Arc<dyn TrackLocal>).await?;
        let v = pc.add_track(video.clone() as Arc<dyn TrackLocal>).await?;
        self.senders.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend([a, v]);
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer.clone()).await?;
        *self.publisher.lock().await = Some(Leg { pc: pc.clone(), has_remote: false, queued: Vec::new() });
        let r =
            call!(self.client, Publish, v1::Publish { conversation_id: self.conversation_id, sdp_offer: offer.sdp })?;
        pc.set_remote_description(RTCSessionDescription::answer(r.sdp_answer)?).await?;
        if let Some(leg) = self.publisher.lock().await.as_mut() {
            leg.remote_applied().await;
        }
        pump_candidates(self.client.clone(), self.conversation_id, PeerRole::Publisher, cand_rx);
        self.tracks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend([audio.clone(), video.clone()]);
        let plis = self.plis.clone();
        let v = video.clone();
        tokio::spawn(async move {
            while let Some(TrackLocalEvent::OnRtcpPacket(pkts)) = v.poll().await {
                for p in pkts {
                    if let Some(pli) = p.as_any().downcast_ref::<PictureLossIndication>() {
                        plis.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(pli.sender_ssrc);
                    }
                }
            }
        });
        let header = move |pt, ssrc, ts, seq: u32| rtp::header::Header {
            version: 2,
            payload_type: pt,
            sequence_number: seq as u16,
            timestamp: ts,
            ssrc,
            ..Default::default()
        };
        let (stop, tag) = (self.stop.clone(), self.tag);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut marker: u32 = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                marker += 1;
                let a = rtp::Packet {
                    header: header(PT_OPUS, base + 1, marker.wrapping_mul(960), marker),
                    payload: payload(marker, tag, false, AUDIO_LEN),
                };
                let level = AudioLevelExtension { level: 20 + (marker % 40) as u8, voice: true };
                let _ = audio.write_rtp_with_extensions(a, &[HeaderExtension::AudioLevel(level)]).await;
            }
        });
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let period = Duration::from_secs_f64(1.0 / f64::from(rate.video_pps.max(1)));
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut marker: u32 = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                marker += 1;
                let v = rtp::Packet {
                    header: header(PT_VP8, base + 2, marker.wrapping_mul(90_000 / rate.video_pps.max(1)), marker),
                    payload: payload(marker, tag, true, rate.video_len),
                };
                let _ = video.write_rtp(v).await;
            }
        });
        Ok(())
    }

    /// Stops publishing the video track: removes it and re-offers with `Publish` (§20.3.3).
    pub async fn unpublish_video(&self) -> anyhow::Result<()> {
        let sender = self.senders.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(1).cloned();
        let guard = self.publisher.lock().await;
        let (Some(sender), Some(leg)) = (sender, guard.as_ref()) else { bail!("not publishing") };
        let pc = leg.pc.clone();
        drop(guard);
        pc.remove_track(&sender).await?;
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer.clone()).await?;
        let r =
            call!(self.client, Publish, v1::Publish { conversation_id: self.conversation_id, sdp_offer: offer.sdp })?;
        pc.set_remote_description(RTCSessionDescription::answer(r.sdp_answer)?).await?;
        Ok(())
    }

    /// A snapshot of what arrived, by the server's track id.
    pub fn received(&self) -> HashMap<String, Received> {
        self.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// PLIs seen at this publisher so far.
    pub fn pli_count(&self) -> usize {
        self.plis.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Waits up to `wait` for `cond` over the received tracks.
    pub async fn wait_received(
        &self,
        wait: Duration,
        what: &str,
        cond: impl Fn(&HashMap<String, Received>) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + wait;
        while !cond(&self.received()) {
            if Instant::now() > deadline {
                bail!("{what}: not within {wait:?}; got {:?}", self.received());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// The next non-signalling event for which `pick` returns something, within `wait`.
    pub async fn next_event<T>(&self, wait: Duration, pick: impl Fn(&event::Event) -> Option<T>) -> anyhow::Result<T> {
        let mut rx = self.events.lock().await;
        tokio::time::timeout(wait, async {
            loop {
                match rx.recv().await {
                    Some(e) => {
                        if let Some(x) = pick(&e) {
                            return Ok(x);
                        }
                    }
                    None => bail!("connection closed"),
                }
            }
        })
        .await
        .context("expected event did not come")?
    }

    /// Stops sending and closes both connections (without LeaveCall).
    pub async fn close(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(leg) = self.publisher.lock().await.take() {
            let _ = leg.pc.close().await;
        }
        let _ = self.subscriber.lock().await.pc.close().await;
    }
}

async fn add_or_queue(leg: &mut Leg, c: RTCIceCandidateInit) {
    if leg.has_remote {
        let _ = leg.pc.add_ice_candidate(c).await;
    } else {
        leg.queued.push(c);
    }
}

async fn answer_offer(pc: &Arc<dyn PeerConnection>, sdp: String) -> anyhow::Result<String> {
    pc.set_remote_description(RTCSessionDescription::offer(sdp)?).await?;
    let answer = pc.create_answer(None).await?;
    pc.set_local_description(answer.clone()).await?;
    Ok(answer.sdp)
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
async fn read_track(track: Arc<dyn TrackRemote>, stats: Stats) {
    let id = track.track_id().await;
    let stream_id = track.stream_id().await;
    let video = track.kind().await == RtpCodecKind::Video;
    let lock = || stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    lock().insert(id.clone(), Received { stream_id, video, ..Default::default() });
    while let Some(ev) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(pkt) = ev else { continue };
        let mut g = lock();
        let Some(st) = g.get_mut(&id) else { return };
        let Some(Marked { marker, tag, video: is_video, sent_ns }) = check(&pkt.payload) else {
            st.corrupt += 1;
            continue;
        };
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
