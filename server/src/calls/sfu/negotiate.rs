//! SDP negotiation in a room (docs/protocol.md §20.3.3, §20.3.4): publisher offers answered,
//! subscriber offers made one at a time (changes while one is outstanding fold into the next),
//! forwarded tracks attached to and removed from subscriber connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use confab_protocol::frames::{encode_server, event_frame};
use confab_protocol::v1::{self, PeerRole, event};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::RTCSessionDescription;

use super::engine::{PT_OPUS, PT_VP8, opus_codec, vp8_codec};
use super::forward::{Out, Relay, relay_feedback};
use super::leg::{Leg, LegOwner, OnTrack};
use super::room::{Cmd, Room, SubOut};
use super::{not_in_call, offered_tracks};
use crate::error::ServerError;

impl Room {
    /// Adds `relay` to participant `i`'s subscriber connection (negotiated later).
    pub(super) async fn attach(&mut self, i: usize, relay: Arc<Relay>) {
        let p = &mut self.participants[i];
        if p.outs.contains_key(&relay.id) {
            return;
        }
        let (codec, payload_type) =
            if relay.kind == RtpCodecKind::Audio { (opus_codec(), PT_OPUS) } else { (vp8_codec(), PT_VP8) };
        let ssrc = self.next_ssrc.fetch_add(1, Ordering::Relaxed);
        let encoding = RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec,
            ..Default::default()
        };
        // Stream id = the publisher's participant id; track id = the room-wide track id.
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            relay.participant_id.clone(),
            relay.id.clone(),
            relay.id.clone(),
            relay.kind,
            vec![encoding],
        )));
        let sender = match p.subscriber.pc.add_track(track.clone() as Arc<dyn TrackLocal>).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, track = %relay.id, "adding a track to a subscriber connection");
                return;
            }
        };
        let active = Arc::new(AtomicBool::new(false));
        relay.attach(Out {
            participant: p.id.clone(),
            track: track.clone(),
            ssrc,
            payload_type,
            sender: sender.clone(),
            active: active.clone(),
            state: p.subscriber.state.clone(),
        });
        tokio::spawn(relay_feedback(track, relay.clone()));
        p.outs.insert(relay.id.clone(), SubOut { relay, sender, active });
    }

    /// Sends participant `i` a SubscriberOffer, or marks that one is due after the outstanding one.
    pub(super) async fn negotiate(&mut self, i: usize) {
        let conv = self.wire;
        let p = &mut self.participants[i];
        if p.offering.is_some() {
            p.dirty = true;
            return;
        }
        if p.outs.is_empty() && p.subscriber.pc.local_description().await.is_none() {
            return; // nothing to carry yet
        }
        p.dirty = false;
        let offer = match p.subscriber.pc.create_offer(None).await {
            Ok(o) => o,
            Err(e) => return tracing::warn!(error = %e, "creating a subscriber offer"),
        };
        if let Err(e) = p.subscriber.pc.set_local_description(offer.clone()).await {
            return tracing::warn!(error = %e, "applying a subscriber offer");
        }
        p.offering = Some(p.outs.keys().cloned().collect());
        let ev = event::Event::SubscriberOffer(v1::SubscriberOffer { conversation_id: conv, sdp_offer: offer.sdp });
        self.sfu.devices.session(&p.session, encode_server(&event_frame(ev)));
    }

    /// §20.3.3
    pub(super) async fn publish(&mut self, session: &str, sdp: String) -> Result<String, ServerError> {
        let i = self.me(session)?;
        let invalid = |m: String| ServerError::invalid("publish.sdp_offer", m);
        let offer = parse_offer(&sdp)?;
        if self.participants[i].publisher.is_none() {
            let max = self.sfu.config.max_publishers as usize;
            if self.participants.iter().filter(|p| p.publisher.is_some()).count() >= max {
                return Err(ServerError::FailedPrecondition(format!("{max} participants already publish")));
            }
            let handle = self.handle.clone();
            let participant = self.participants[i].id.clone();
            let on_track: OnTrack =
                Box::new(move |track| handle.tell(Cmd::Track { participant: participant.clone(), track }));
            let owner = LegOwner { devices: &self.sfu.devices, session, conversation_id: self.wire };
            let leg = Leg::open(&self.sfu.engine, owner, PeerRole::Publisher, Some(on_track)).await.map_err(|e| {
                tracing::warn!(error = %e, "no media socket for a publisher connection");
                ServerError::Unavailable("no media port free".into())
            })?;
            let answered = negotiate_publisher(&leg, offer).await;
            if answered.is_err() {
                leg.close();
            } else {
                self.participants[i].publisher = Some(leg);
            }
            let answer = answered.map_err(invalid)?;
            if let Some(leg) = self.participants[i].publisher.as_mut() {
                leg.remote_applied().await;
            }
            return Ok(answer);
        }
        let leg = self.participants[i].publisher.as_ref().ok_or_else(not_in_call)?;
        let answer = match negotiate_publisher(leg, offer).await {
            Ok(answer) => answer,
            Err(e) => {
                // A failed set_remote_description is not atomic: undo a half-applied offer.
                if leg.pc.pending_remote_description().await.is_some()
                    && let Ok(rollback) = RTCSessionDescription::rollback(None)
                {
                    let _ = leg.pc.set_remote_description(rollback).await;
                }
                return Err(invalid(e));
            }
        };
        // Tracks the new offer no longer sends are unpublished.
        let still = offered_tracks(&sdp);
        let gone: Vec<Arc<Relay>> =
            self.participants[i].relays.iter().filter(|r| !still.contains(&r.client_track_id)).cloned().collect();
        self.participants[i].relays.retain(|r| still.contains(&r.client_track_id));
        self.unpublish(&gone).await;
        Ok(answer)
    }

    /// Removes relays from every subscriber connection, announces it and renegotiates.
    pub(super) async fn unpublish(&mut self, gone: &[Arc<Relay>]) {
        if gone.is_empty() {
            return;
        }
        for r in gone {
            r.detach_all();
            let ev = v1::TrackUnpublished {
                conversation_id: self.wire,
                track_id: r.id.clone(),
                participant_id: r.participant_id.clone(),
            };
            self.broadcast(Some(&r.participant_id), event::Event::TrackUnpublished(ev));
        }
        for i in 0..self.participants.len() {
            let p = &mut self.participants[i];
            let mut changed = false;
            for r in gone {
                if let Some(out) = p.outs.remove(&r.id) {
                    changed = true;
                    if let Err(e) = p.subscriber.pc.remove_track(&out.sender).await {
                        tracing::debug!(error = %e, "removing a track from a subscriber connection");
                    }
                }
            }
            if changed {
                self.negotiate(i).await;
            }
        }
    }

    /// §20.3.4
    pub(super) async fn answer(&mut self, session: &str, sdp: String) -> Result<(), ServerError> {
        let i = self.me(session)?;
        let invalid = |m: String| ServerError::invalid("subscriber_answer.sdp_answer", m);
        let p = &mut self.participants[i];
        let Some(offered) = p.offering.clone() else {
            return Err(ServerError::FailedPrecondition("no SubscriberOffer is waiting for an answer".into()));
        };
        let answer = parse_answer(sdp)?;
        p.subscriber.pc.set_remote_description(answer).await.map_err(|e| invalid(e.to_string()))?;
        p.offering = None;
        p.subscriber.remote_applied().await;
        for id in offered {
            if let Some(out) = p.outs.get(&id)
                && !out.active.swap(true, Ordering::AcqRel)
            {
                out.relay.request_keyframe(); // a subscriber starts receiving this track
            }
        }
        if p.dirty {
            self.negotiate(i).await;
        }
        Ok(())
    }
}

/// Parses a publisher's SDP offer (§20.3.3) and checks it carries audio or video. Refuses with
/// `INVALID_ARGUMENT` (`publish.sdp_offer`) an offer the WebRTC stack cannot parse or one without
/// an audio or video m-section.
pub(super) fn parse_offer(sdp: &str) -> Result<RTCSessionDescription, ServerError> {
    let invalid = |m: String| ServerError::invalid("publish.sdp_offer", m);
    let offer =
        RTCSessionDescription::offer(sdp.to_string()).map_err(|e| invalid(format!("not a usable SDP offer: {e}")))?;
    if !sdp.contains("\nm=audio") && !sdp.contains("\nm=video") {
        return Err(invalid("the offer has no audio or video".into()));
    }
    Ok(offer)
}

/// Parses a subscriber's SDP answer (§20.3.4); `INVALID_ARGUMENT` (`subscriber_answer.sdp_answer`)
/// when the WebRTC stack cannot parse it.
pub(super) fn parse_answer(sdp: String) -> Result<RTCSessionDescription, ServerError> {
    RTCSessionDescription::answer(sdp)
        .map_err(|e| ServerError::invalid("subscriber_answer.sdp_answer", format!("not a usable SDP answer: {e}")))
}

/// Applies a publisher offer and answers it (trickle: the answer goes back at once).
async fn negotiate_publisher(leg: &Leg, offer: RTCSessionDescription) -> Result<String, String> {
    leg.pc.set_remote_description(offer).await.map_err(|e| e.to_string())?;
    let answer = leg.pc.create_answer(None).await.map_err(|e| e.to_string())?;
    leg.pc.set_local_description(answer.clone()).await.map_err(|e| e.to_string())?;
    Ok(answer.sdp)
}
