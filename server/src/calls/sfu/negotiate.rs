//! SDP negotiation in a room (docs/protocol.md §20.3.3, §20.3.4): publisher offers answered,
//! subscriber offers made one at a time (changes while one is outstanding fold into the next),
//! forwarded tracks attached to and removed from subscriber connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use confab_protocol::frames::{encode_server, event_frame};
use confab_protocol::v1::{self, PeerRole, event};
use rtc::peer_connection::configuration::RTCOfferOptions;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::RTCSessionDescription;
use webrtc::rtp_transceiver::RTCRtpTransceiverDirection;

use super::engine::{PT_OPUS, PT_VP8, opus_codec, vp8_codec};
use super::forward::{Out, Relay, relay_feedback};
use super::leg::{Leg, LegOwner, OnTrack};
use super::room::{Cmd, Room, SubOut};
use super::simulcast::{Choice, quality_of};
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
        // §20.3.4: a forwarded track is offered sendonly (so a freed one becomes inactive).
        let mut transceiver = None;
        for t in p.subscriber.pc.get_transceivers().await {
            if let Ok(Some(s)) = t.sender().await
                && s.id() == sender.id()
            {
                if let Err(e) = t.set_direction(RTCRtpTransceiverDirection::Sendonly).await {
                    tracing::debug!(error = %e, "making a subscriber transceiver sendonly");
                }
                transceiver = Some(t);
            }
        }
        let active = Arc::new(AtomicBool::new(false));
        let choice = Arc::new(Choice::default());
        let (devices, session, conversation_id, room_id, track_id) =
            (self.sfu.devices.clone(), p.session.clone(), self.wire, self.room_id.clone(), relay.id.clone());
        let notify = Box::new(move |level: u8| {
            let ev = event::Event::SubscribedQualityChanged(v1::SubscribedQualityChanged {
                conversation_id,
                room_id: room_id.clone(),
                track_id: track_id.clone(),
                quality: quality_of(level) as i32,
            });
            devices.session(&session, encode_server(&event_frame(ev)));
        });
        relay.attach(Out {
            transceiver,
            participant: p.id.clone(),
            track: track.clone(),
            ssrc,
            payload_type,
            sender: sender.clone(),
            active: active.clone(),
            state: p.subscriber.state.clone(),
            choice: choice.clone(),
            notify,
        });
        tokio::spawn(relay_feedback(track, relay.clone()));
        p.outs.insert(relay.id.clone(), SubOut { relay, sender, active, choice });
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
        let options = std::mem::take(&mut p.ice_restart).then_some(RTCOfferOptions { ice_restart: true });
        let offer = match p.subscriber.pc.create_offer(options).await {
            Ok(o) => o,
            Err(e) => return tracing::warn!(error = %e, "creating a subscriber offer"),
        };
        p.subscriber.local_sdp_applied(&offer.sdp);
        if let Err(e) = p.subscriber.pc.set_local_description(offer.clone()).await {
            return tracing::warn!(error = %e, "applying a subscriber offer");
        }
        p.offering = Some(p.outs.keys().cloned().collect());
        let ev = event::Event::SubscriberOffer(v1::SubscriberOffer {
            room_id: self.room_id.clone(),
            conversation_id: conv,
            sdp_offer: with_msid_semantic(offer.sdp),
        });
        self.sfu.devices.session(&p.session, encode_server(&event_frame(ev)));
    }

    /// §20.3.3
    pub(super) async fn publish(&mut self, session: &str, sdp: String) -> Result<String, ServerError> {
        let i = self.me(session)?;
        let invalid = |m: &'static str| ServerError::invalid("publish.sdp_offer", m);
        if !self.participants[i].may_publish() {
            return Err(ServerError::PermissionDenied("a guest of this room does not publish (§25.2)".into()));
        }
        let offer = parse_offer(&sdp)?;
        if self.participants[i].publisher.is_none() {
            let max = self.limits.max_publishers as usize;
            if self.participants.iter().filter(|p| p.publisher.is_some()).count() >= max {
                return Err(ServerError::FailedPrecondition(format!("{max} participants already publish")));
            }
            let handle = self.handle.clone();
            let participant = self.participants[i].id.clone();
            let on_track: OnTrack =
                Box::new(move |track| handle.tell(Cmd::Track { participant: participant.clone(), track }));
            let owner =
                LegOwner { devices: &self.sfu.devices, session, conversation_id: self.wire, room_id: &self.room_id };
            let leg = Leg::open(&self.sfu.engine, owner, PeerRole::Publisher, Some(on_track)).await.map_err(|e| {
                tracing::warn!(error = %e, "no media socket for a publisher connection");
                ServerError::Unavailable("no media port free".into())
            })?;
            let mut leg = leg;
            let answered = negotiate_publisher(&mut leg, offer).await;
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
        let leg = self.participants[i].publisher.as_mut().ok_or_else(not_in_call)?;
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
                room_id: self.room_id.clone(),
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

    /// §20.3.11: a SubscriberOffer with new ICE credentials (now, or after the outstanding one
    /// is answered); the publisher connection is restarted by the client's own offer.
    pub(super) async fn restart_ice(&mut self, session: &str, role: PeerRole) -> Result<(), ServerError> {
        let i = self.me(session)?;
        if role == PeerRole::Publisher {
            return Err(ServerError::FailedPrecondition(
                "the client restarts the publisher connection itself: send a Publish with an ICE-restart offer".into(),
            ));
        }
        let p = &mut self.participants[i];
        if p.outs.is_empty() && p.subscriber.pc.local_description().await.is_none() {
            return Err(ServerError::FailedPrecondition("the subscriber connection is not negotiated yet".into()));
        }
        p.ice_restart = true;
        if p.offering.is_some() {
            p.dirty = true;
            return Ok(());
        }
        self.negotiate(i).await;
        Ok(())
    }

    /// §20.3.4
    pub(super) async fn answer(&mut self, session: &str, sdp: String) -> Result<(), ServerError> {
        let i = self.me(session)?;
        let invalid = |m: &'static str| ServerError::invalid("subscriber_answer.sdp_answer", m);
        let p = &mut self.participants[i];
        let Some(offered) = p.offering.clone() else {
            return Err(ServerError::FailedPrecondition("no SubscriberOffer is waiting for an answer".into()));
        };
        let answer = parse_answer(sdp)?;
        if let Err(e) = p.subscriber.pc.set_remote_description(answer).await {
            tracing::debug!(error = %e, "a subscriber answer refused");
            return Err(invalid("does not answer the SubscriberOffer (m-sections, ICE or DTLS parameters)"));
        }
        p.offering = None;
        p.subscriber.remote_applied().await;
        // A leg negotiated on a connection already connected can carry media now: ask for a
        // keyframe for it. Otherwise its writer asks once the connection is connected (§20.3.8).
        for id in offered {
            if let Some(out) = p.outs.get(&id)
                && !out.active.swap(true, Ordering::AcqRel)
                && super::forward::connected(&p.subscriber.state)
            {
                out.relay.request_keyframe();
            }
        }
        if p.dirty {
            self.negotiate(i).await;
        }
        Ok(())
    }
}

/// Parses a publisher's SDP offer (§20.3.3) and checks it carries audio or video the SFU can
/// forward. Refuses with `INVALID_ARGUMENT` (`publish.sdp_offer`, a fixed message that echoes
/// nothing of the input) an offer the WebRTC stack cannot parse, one without an audio or video
/// m-section, and one with an audio or video m-section (not rejected) offering no codec the SFU
/// forwards ([`FORWARDED_CODECS`]).
pub(super) fn parse_offer(sdp: &str) -> Result<RTCSessionDescription, ServerError> {
    let invalid = |m: &'static str| ServerError::invalid("publish.sdp_offer", m);
    let offer = RTCSessionDescription::offer(sdp.to_string()).map_err(|e| {
        tracing::debug!(error = %e, "an unparsable publisher offer");
        invalid("not a parsable SDP offer")
    })?;
    if !sdp.contains("\nm=audio") && !sdp.contains("\nm=video") {
        return Err(invalid("the offer has no audio or video m-section"));
    }
    for section in sdp.split("\nm=").skip(1) {
        let mut words = section.split_whitespace();
        let (kind, port) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        if !matches!(kind, "audio" | "video") || port == "0" {
            continue;
        }
        let usable = section.lines().filter_map(|l| l.trim().strip_prefix("a=rtpmap:")).any(|m| {
            let codec = m.split_whitespace().nth(1).and_then(|c| c.split('/').next()).unwrap_or("");
            FORWARDED_CODECS.iter().any(|(k, c)| *k == kind && codec.eq_ignore_ascii_case(c))
        });
        if !usable {
            return Err(invalid(if kind == "audio" {
                "an audio m-section offers no codec the server forwards (Opus)"
            } else {
                "a video m-section offers no codec the server forwards (VP8)"
            }));
        }
    }
    Ok(offer)
}

/// The codecs the SFU forwards, by m-section kind (§20.3.3).
pub(super) const FORWARDED_CODECS: &[(&str, &str)] = &[("audio", "opus"), ("video", "VP8")];

/// `a=msid-semantic: WMS *` after the session's `t=` line when the stack left it out (its first
/// offer lacks it; JSEP §5.2.1 puts it in every description).
pub(super) fn with_msid_semantic(sdp: String) -> String {
    if sdp.contains("a=msid-semantic") {
        return sdp;
    }
    match sdp.find("\r\nt=").and_then(|t| sdp[t + 2..].find("\r\n").map(|e| t + 2 + e + 2)) {
        Some(at) => format!("{}a=msid-semantic: WMS *\r\n{}", &sdp[..at], &sdp[at..]),
        None => sdp,
    }
}

/// Parses a subscriber's SDP answer (§20.3.4); `INVALID_ARGUMENT` (`subscriber_answer.sdp_answer`)
/// when the WebRTC stack cannot parse it.
pub(super) fn parse_answer(sdp: String) -> Result<RTCSessionDescription, ServerError> {
    RTCSessionDescription::answer(sdp).map_err(|e| {
        tracing::debug!(error = %e, "an unparsable subscriber answer");
        ServerError::invalid("subscriber_answer.sdp_answer", "not a parsable SDP answer")
    })
}

/// Applies a publisher offer and answers it (trickle: the answer goes back at once).
/// Refusals carry a fixed message (the stack's error goes to the debug log only).
async fn negotiate_publisher(leg: &mut Leg, offer: RTCSessionDescription) -> Result<String, &'static str> {
    let fail = |what: &str, e: webrtc::error::Error| {
        tracing::debug!(error = %e, "{what}");
        "the offer cannot be applied (m-sections, ICE or DTLS parameters)"
    };
    leg.pc.set_remote_description(offer).await.map_err(|e| fail("applying a publisher offer", e))?;
    let answer = leg.pc.create_answer(None).await.map_err(|e| fail("answering a publisher offer", e))?;
    leg.local_sdp_applied(&answer.sdp);
    leg.pc.set_local_description(answer.clone()).await.map_err(|e| fail("applying a publisher answer", e))?;
    Ok(answer.sdp)
}
