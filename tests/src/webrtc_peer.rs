//! A group-call participant for tests (docs/protocol.md §20.3), built on the same `webrtc` crate
//! as the server's SFU and signalling only through the Confab client library: JoinCall, Publish,
//! SubscriberAnswer and Trickle out; SubscriberOffer and ServerTrickle handled as they come. It
//! publishes synthetic RTP (Opus PT 111, VP8 PT 96) whose payload starts with a u32 sequence
//! marker and its send time, and checks what it receives for order, gaps, integrity and latency.
//! A PLI at the publisher marks its next video packet a keyframe (a flag in the payload), so a
//! subscriber can tell when its first keyframe came; a [`Tap`] records each connection's wire.

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
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::call;
pub use crate::wiretap::Tap;

mod restart;
mod simulcast;
pub use restart::ufrag;
pub use simulcast::{RawPacket, simulcast_payload};
mod clip;
pub use clip::read_ivf;

mod marks;
pub use marks::*;

type Stats = Arc<StdMutex<HashMap<String, Received>>>;

/// Every packet of every received track (by the server's track id), and the tracks themselves
/// (to send receiver RTCP on).
#[derive(Clone, Default)]
struct Taps {
    raw: Arc<StdMutex<HashMap<String, Vec<RawPacket>>>>,
    remotes: Arc<StdMutex<HashMap<String, Arc<dyn TrackRemote>>>>,
}

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
    /// When the connection last became connected.
    connected: Option<Arc<StdMutex<Option<Instant>>>>,
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
    async fn on_connection_state_change(&self, s: RTCPeerConnectionState) {
        if let (Some(at), RTCPeerConnectionState::Connected) = (&self.connected, s) {
            *at.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        }
    }
}

/// How a [`GroupPeer`] behaves beyond the defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerOptions {
    /// Drop the first arrival of every inbound video packet whose sequence number is a multiple
    /// of this, so the peer NACKs it ([`Tap`]). The tap sits after SRTP decryption, whose replay
    /// check then refuses the retransmission: this provokes NACKs, it cannot count repairs.
    pub drop_video_every: Option<u16>,
}

/// A participant of a group call.
pub struct GroupPeer {
    pub participant_id: String,
    pub conversation_id: u64,
    /// The meeting room's id (§25), or empty for a conversation's call.
    pub room_id: String,
    pub tag: u8,
    client: Client,
    engine: Arc<Engine>,
    subscriber: Arc<Mutex<Leg>>,
    publisher: Arc<Mutex<Option<Leg>>>,
    events: Mutex<mpsc::Receiver<event::Event>>,
    received: Stats,
    taps: Taps,
    /// `sender_ssrc` of every PLI the publisher got on its video track.
    pub plis: Arc<StdMutex<Vec<u32>>>,
    /// SubscriberOffers answered.
    pub offers: Arc<AtomicU32>,
    /// The last SubscriberOffer's SDP.
    pub last_offer: Arc<StdMutex<String>>,
    /// Every ServerTrickle candidate (not end-of-candidates) as it came.
    pub server_candidates: Arc<StdMutex<Vec<v1::IceCandidate>>>,
    /// When the subscriber connection became connected (the latest time).
    pub connected_at: Arc<StdMutex<Option<Instant>>>,
    /// What this peer's connections saw on the wire.
    pub tap: Tap,
    /// When each PLI reached the publisher's video track.
    pub pli_at: Arc<StdMutex<Vec<Instant>>>,
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
fn pump_candidates(
    client: Client,
    conv: u64,
    room: String,
    role: PeerRole,
    mut rx: mpsc::Receiver<RTCIceCandidateInit>,
) {
    tokio::spawn(async move {
        while let Some(c) = rx.recv().await {
            let t = v1::Trickle {
                room_id: room.clone(),
                conversation_id: conv,
                role: role as i32,
                candidate: Some(ice(c)),
            };
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
        events: Events,
        conv: u64,
        tag: u8,
    ) -> anyhow::Result<(GroupPeer, v1::JoinCallResult)> {
        Self::join_call(client, events, conv, String::new(), tag, PeerOptions::default()).await
    }

    /// Joins meeting room `room`'s call (§25.3) like [`GroupPeer::join`]; the caller must not
    /// wait in a lobby (an account that moderates it, a guest admitted, or a room without one).
    pub async fn join_room(
        client: Client,
        events: Events,
        room: &str,
        tag: u8,
    ) -> anyhow::Result<(GroupPeer, v1::JoinCallResult)> {
        Self::join_call(client, events, 0, room.to_string(), tag, PeerOptions::default()).await
    }

    /// [`GroupPeer::join`] with options.
    pub async fn join_with(
        client: Client,
        events: Events,
        conv: u64,
        tag: u8,
        opts: PeerOptions,
    ) -> anyhow::Result<(GroupPeer, v1::JoinCallResult)> {
        Self::join_call(client, events, conv, String::new(), tag, opts).await
    }

    async fn join_call(
        client: Client,
        mut events: Events,
        conv: u64,
        room: String,
        tag: u8,
        opts: PeerOptions,
    ) -> anyhow::Result<(GroupPeer, v1::JoinCallResult)> {
        let tap = Tap::new(opts.drop_video_every);
        let engine = Arc::new(Engine::new([127, 0, 0, 1].into(), None, 0, 0).with_interceptors(tap.hook()));
        let (cand_tx, cand_rx) = mpsc::channel(64);
        let (track_tx, mut track_rx) = mpsc::channel::<Arc<dyn TrackRemote>>(64);
        let connected_at: Arc<StdMutex<Option<Instant>>> = Arc::default();
        let handler =
            Arc::new(Handler { cands: cand_tx, tracks: Some(track_tx), connected: Some(connected_at.clone()) });
        let pc = engine.build(handler).await.map_err(anyhow::Error::msg)?;
        let subscriber = Arc::new(Mutex::new(Leg { pc, has_remote: false, queued: Vec::new() }));
        let received: Stats = Arc::default();
        let taps = Taps::default();
        let (stats, t) = (received.clone(), taps.clone());
        tokio::spawn(async move {
            while let Some(track) = track_rx.recv().await {
                tokio::spawn(read_track(track, stats.clone(), t.clone()));
            }
        });
        let joined = call!(client, JoinCall, v1::JoinCall { room_id: room.clone(), conversation_id: conv })?;
        let (ev_tx, ev_rx) = mpsc::channel(1024);
        let publisher: Arc<Mutex<Option<Leg>>> = Arc::default();
        let offers = Arc::new(AtomicU32::new(0));
        anyhow::ensure!(!joined.in_lobby, "the peer waits in the room's lobby");
        let last_offer: Arc<StdMutex<String>> = Arc::default();
        let (sub, publ, c, n) = (subscriber.clone(), publisher.clone(), client.clone(), offers.clone());
        let r2 = room.clone();
        let offer_log = last_offer.clone();
        let server_candidates: Arc<StdMutex<Vec<v1::IceCandidate>>> = Arc::default();
        let cand_log = server_candidates.clone();
        let mut cand_rx = Some(cand_rx);
        tokio::spawn(async move {
            while let Some(v1::Event { event: Some(e) }) = events.recv().await {
                match e {
                    event::Event::SubscriberOffer(o) if o.conversation_id == conv && o.room_id == r2 => {
                        *offer_log.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = o.sdp_offer.clone();
                        let mut leg = sub.lock().await;
                        let Ok(answer) = answer_offer(&leg.pc, o.sdp_offer).await else { continue };
                        let r = v1::SubscriberAnswer { room_id: r2.clone(), conversation_id: conv, sdp_answer: answer };
                        if call!(c, SubscriberAnswer, r).is_ok() {
                            leg.remote_applied().await;
                            n.fetch_add(1, Ordering::Relaxed);
                            if let Some(rx) = cand_rx.take() {
                                pump_candidates(c.clone(), conv, r2.clone(), PeerRole::Subscriber, rx);
                            }
                        }
                    }
                    event::Event::ServerTrickle(t) if t.conversation_id == conv && t.room_id == r2 => {
                        let Some(cand) = t.candidate.filter(|c| !c.candidate.is_empty()) else { continue };
                        cand_log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(cand.clone());
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
            room_id: room,
            tag,
            client,
            engine,
            subscriber,
            publisher,
            events: Mutex::new(ev_rx),
            received,
            taps,
            plis: Arc::default(),
            offers,
            last_offer,
            server_candidates,
            connected_at,
            tap,
            pli_at: Arc::default(),
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
        let pc = engine
            .build(Arc::new(Handler { cands: tx, tracks: None, connected: None }))
            .await
            .map_err(anyhow::Error::msg)?;
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
        self.publish_with(rate, None).await
    }

    /// Publishes an audio track and, as its video, the VP8 frame `keyframe` (a keyframe, so
    /// every one decodes) `fps` times a second, packetized as RFC 7741 says: what a browser
    /// decodes (tests/data/vp8-keyframe-160x120.bin). Receivers see real VP8, not this module's
    /// marked payloads.
    pub async fn publish_vp8(&self, keyframe: Bytes, fps: u32) -> anyhow::Result<()> {
        self.publish_with(Rate { video_pps: fps, video_len: 0 }, Some(keyframe)).await
    }

    /// Opens the publisher connection with an audio and a video track (`{tag}-audio`,
    /// `{tag}-video`, SSRCs `tag·2²⁴ + 1` and `+ 2`), negotiated with `Publish`; PLIs on the video
    /// track are counted in [`GroupPeer::plis`]. Returns the tracks to write to and the flag a PLI
    /// raises (set at first: a stream starts with a keyframe).
    async fn open_publisher(
        &self,
    ) -> anyhow::Result<(Arc<TrackLocalStaticRTP>, Arc<TrackLocalStaticRTP>, Arc<AtomicBool>)> {
        let (cand_tx, cand_rx) = mpsc::channel(64);
        let pc = self
            .engine
            .build(Arc::new(Handler { cands: cand_tx, tracks: None, connected: None }))
            .await
            .map_err(anyhow::Error::msg)?;
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
        let r = call!(
            self.client,
            Publish,
            v1::Publish { room_id: self.room_id.clone(), conversation_id: self.conversation_id, sdp_offer: offer.sdp }
        )?;
        pc.set_remote_description(RTCSessionDescription::answer(r.sdp_answer)?).await?;
        if let Some(leg) = self.publisher.lock().await.as_mut() {
            leg.remote_applied().await;
        }
        pump_candidates(self.client.clone(), self.conversation_id, self.room_id.clone(), PeerRole::Publisher, cand_rx);
        self.tracks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend([audio.clone(), video.clone()]);
        let (plis, pli_at) = (self.plis.clone(), self.pli_at.clone());
        let keyframe_due = Arc::new(AtomicBool::new(true)); // a stream starts with a keyframe
        let (v, due) = (video.clone(), keyframe_due.clone());
        tokio::spawn(async move {
            while let Some(TrackLocalEvent::OnRtcpPacket(pkts)) = v.poll().await {
                for p in pkts {
                    if let Some(pli) = p.as_any().downcast_ref::<PictureLossIndication>() {
                        plis.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(pli.sender_ssrc);
                        pli_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Instant::now());
                        due.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok((audio, video, keyframe_due))
    }

    /// Publishes an audio track (50 packets/s) and, at `rate`, a video track of marked payloads or,
    /// with `vp8`, that VP8 frame.
    async fn publish_with(&self, rate: Rate, vp8: Option<Bytes>) -> anyhow::Result<()> {
        let (audio, video, keyframe_due) = self.open_publisher().await?;
        let base = 0x0100_0000 * u32::from(self.tag);
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
            let mut seq: u16 = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                marker += 1;
                if let Some(frame) = &vp8 {
                    let h = header(PT_VP8, base + 2, marker.wrapping_mul(90_000 / rate.video_pps.max(1)), 0);
                    for p in crate::vp8::packetize(frame, &h, &mut seq) {
                        let _ = video.write_rtp(p).await;
                    }
                    continue;
                }
                let flags = if keyframe_due.swap(false, Ordering::Relaxed) { 3 } else { 1 };
                let v = rtp::Packet {
                    header: header(PT_VP8, base + 2, marker.wrapping_mul(90_000 / rate.video_pps.max(1)), marker),
                    payload: payload_with(marker, tag, flags, rate.video_len),
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
        let r = call!(
            self.client,
            Publish,
            v1::Publish { room_id: self.room_id.clone(), conversation_id: self.conversation_id, sdp_offer: offer.sdp }
        )?;
        pc.set_remote_description(RTCSessionDescription::answer(r.sdp_answer)?).await?;
        Ok(())
    }

    /// A snapshot of what arrived, by the server's track id.
    pub fn received(&self) -> HashMap<String, Received> {
        self.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// [`GroupPeer::received`] without the latencies: cheap enough to take every second.
    pub fn received_counts(&self) -> HashMap<String, Received> {
        let mut g = self.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let copy = |r: &mut Received| {
            let latencies = std::mem::take(&mut r.latencies_us);
            let c = r.clone();
            r.latencies_us = latencies;
            c
        };
        g.iter_mut().map(|(k, r)| (k.clone(), copy(r))).collect()
    }

    /// Forgets the latencies recorded so far (where a measurement starts).
    pub fn clear_latencies(&self) {
        let mut g = self.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        g.values_mut().for_each(|r| r.latencies_us.clear());
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
