//! Simulcast for the test peer (docs/protocol.md §20.3.10): a publisher sending one video track
//! in several rid layers (RFC 8853) whose VP8-shaped payloads carry the layer and a marker, with
//! keyframes every two seconds and on a PLI for the layer; and, for subscribers, the raw log of
//! what arrived (sequence number, timestamp, layer, keyframe) and REMB to send back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use confab_protocol::v1::{self, PeerRole};
use confab_server::calls::sfu::engine::{PT_VP8, vp8_codec};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use tokio::sync::mpsc;
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::RTCSessionDescription;

use super::{GroupPeer, Handler, Leg, Taps, pump_candidates};
use crate::call;

const SDES_MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const SDES_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
/// Packets kept per received track.
const RAW_MAX: usize = 50_000;

/// One received packet as the subscriber saw it.
#[derive(Clone, Copy, Debug)]
pub struct RawPacket {
    pub seq: u16,
    pub ts: u32,
    /// The publisher's layer index (255: not a simulcast payload).
    pub layer: u8,
    pub marker: u32,
    pub key: bool,
    pub at: Instant,
}

/// `[VP8 descriptor: S][VP8 header: key or not][layer][marker u32][pattern…]`, `len` bytes.
pub fn simulcast_payload(layer: u8, marker: u32, key: bool, len: usize) -> Bytes {
    let len = len.max(7);
    let mut b = BytesMut::with_capacity(len);
    b.put_u8(0x10);
    b.put_u8(if key { 0x00 } else { 0x01 });
    b.put_u8(layer);
    b.put_u32(marker);
    b.resize(len, layer);
    b.freeze()
}

pub(super) fn log_raw(taps: &Taps, id: &str, pkt: &rtp::Packet) {
    let p = &pkt.payload;
    let (layer, marker, key) = if p.len() >= 7 && p[0] == 0x10 && p[1] <= 1 {
        (p[2], u32::from_be_bytes([p[3], p[4], p[5], p[6]]), p[1] == 0)
    } else {
        (255, 0, false)
    };
    let mut raw = taps.raw.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let log = raw.entry(id.to_string()).or_default();
    if log.len() < RAW_MAX {
        let (seq, ts) = (pkt.header.sequence_number, pkt.header.timestamp);
        log.push(RawPacket { seq, ts, layer, marker, key, at: Instant::now() });
    }
}

impl GroupPeer {
    /// Publishes one video track `{tag}-sim` in the given layers (rid, payload bytes), lowest
    /// first, 50 packets/s each; returns the SSRC of each layer.
    pub async fn publish_simulcast(&self, layers: &[(&str, usize)]) -> anyhow::Result<Vec<u32>> {
        let (cand_tx, cand_rx) = mpsc::channel(64);
        let pc = self
            .engine
            .build(Arc::new(Handler { cands: cand_tx, tracks: None, connected: None }))
            .await
            .map_err(anyhow::Error::msg)?;
        let base = 0x0100_0000 * u32::from(self.tag) + 0x100;
        let ssrcs: Vec<u32> = (0..layers.len() as u32).map(|i| base + i).collect();
        let encodings = layers
            .iter()
            .zip(&ssrcs)
            .map(|((rid, _), &ssrc)| RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    rid: (*rid).to_string(),
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: vp8_codec(),
                ..Default::default()
            })
            .collect();
        let id = format!("{}-sim", self.tag);
        let stream = format!("peer{}", self.tag);
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            stream,
            id.clone(),
            id,
            RtpCodecKind::Video,
            encodings,
        )));
        let sender = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await?;
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer.clone()).await?;
        let mid = offer
            .sdp
            .lines()
            .find_map(|l| l.trim().strip_prefix("a=mid:"))
            .context("no a=mid in the offer")?
            .to_string();
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
        let params = sender.get_parameters().await?;
        let ext = |uri: &str| params.rtp_parameters.header_extensions.iter().find(|e| e.uri == uri).map(|e| e.id as u8);
        let (mid_id, rid_id) =
            (ext(SDES_MID).context("mid not negotiated")?, ext(SDES_RID).context("rid not negotiated")?);

        // A PLI for a layer makes its next packet a keyframe.
        let want_key: Arc<Vec<AtomicBool>> = Arc::new(ssrcs.iter().map(|_| AtomicBool::new(false)).collect());
        let (t, wk, s) = (track.clone(), want_key.clone(), ssrcs.clone());
        tokio::spawn(async move {
            while let Some(TrackLocalEvent::OnRtcpPacket(pkts)) = t.poll().await {
                for p in pkts {
                    if let Some(pli) = p.as_any().downcast_ref::<PictureLossIndication>()
                        && let Some(i) = s.iter().position(|&x| x == pli.media_ssrc)
                    {
                        wk[i].store(true, Ordering::Relaxed);
                    }
                }
            }
        });
        let sizes: Vec<(String, usize)> = layers.iter().map(|(r, n)| ((*r).to_string(), *n)).collect();
        let (stop, s) = (self.stop.clone(), ssrcs.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut marker: u32 = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                marker += 1;
                for (i, (rid, len)) in sizes.iter().enumerate() {
                    let key = marker % 100 == 1 || want_key[i].swap(false, Ordering::Relaxed);
                    let mut header = rtp::header::Header {
                        version: 2,
                        payload_type: PT_VP8,
                        // Each layer its own sequence space, as a browser's encoder has.
                        sequence_number: (marker as u16).wrapping_add(1000 * i as u16),
                        timestamp: marker.wrapping_mul(1800).wrapping_add(7777 * i as u32),
                        ssrc: s[i],
                        marker: true,
                        ..Default::default()
                    };
                    let _ = header.set_extension(mid_id, Bytes::from(mid.clone().into_bytes()));
                    let _ = header.set_extension(rid_id, Bytes::from(rid.clone().into_bytes()));
                    let pkt = rtp::Packet { header, payload: simulcast_payload(i as u8, marker, key, *len) };
                    let _ = track.write_rtp(pkt).await;
                }
            }
        });
        Ok(ssrcs)
    }

    /// Every packet received so far on `track_id`.
    pub fn raw(&self, track_id: &str) -> Vec<RawPacket> {
        self.taps
            .raw
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(track_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Every received track's raw log.
    pub fn raw_all(&self) -> HashMap<String, Vec<RawPacket>> {
        self.taps.raw.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Sends a REMB (the receiver's bandwidth estimate, bits/s) on the subscriber connection.
    pub async fn send_remb(&self, track_id: &str, bps: u64) -> anyhow::Result<()> {
        let remote = self
            .taps
            .remotes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(track_id)
            .cloned()
            .context("no such received track")?;
        let ssrcs = remote.ssrcs().await;
        let remb = ReceiverEstimatedMaximumBitrate { sender_ssrc: 0x7e57_0001, bitrate: bps as f32, ssrcs };
        remote.write_rtcp(vec![Box::new(remb)]).await?;
        Ok(())
    }
}
