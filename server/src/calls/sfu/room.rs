//! A group-call room (docs/protocol.md §20.3): an actor task owning the participants, their two
//! peer connections each and the published tracks, driven by a bounded command channel. Requests
//! and webrtc events are commands; nothing else touches the room's state.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use confab_protocol::frames::{encode_server, event_frame};
use confab_protocol::v1::{self, PeerRole, TrackKind, event};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{RTCIceCandidateInit, RTCSessionDescription};
use webrtc::rtp_transceiver::RtpSender;

use super::engine::{PT_OPUS, PT_VP8, opus_codec, vp8_codec};
use super::forward::{Counters, Out, Relay, Source, relay_feedback};
use super::leg::{Leg, LegOwner, OnTrack};
use super::{Inner, announce_state, not_in_call, offered_tracks, random_id};
use crate::error::ServerError;
use crate::store::{ConvId, now_ms};

/// Commands queued per room.
const QUEUE: usize = 256;
/// How often the active speakers are computed (so at most twice a second).
const SPEAKER_TICK: Duration = Duration::from_millis(500);
/// A level older than this is silence.
const SPEAKER_FRESH_MS: u64 = 1000;
const MAX_SPEAKERS: usize = 3;

type Reply<T> = oneshot::Sender<Result<T, ServerError>>;

/// The room closed before it could answer.
#[derive(Debug)]
pub(super) struct Gone;

pub(super) enum Cmd {
    Join {
        user: u64,
        session: String,
        reply: Reply<(String, Vec<v1::Participant>)>,
    },
    Publish {
        session: String,
        sdp: String,
        reply: Reply<String>,
    },
    Answer {
        session: String,
        sdp: String,
        reply: Reply<()>,
    },
    Trickle {
        session: String,
        role: PeerRole,
        candidate: RTCIceCandidateInit,
        reply: Reply<()>,
    },
    Mute {
        session: String,
        track_id: String,
        muted: bool,
        reply: Reply<()>,
    },
    Leave {
        session: String,
        reply: Option<Reply<()>>,
    },
    /// A publisher connection's remote track started flowing.
    Track {
        participant: String,
        track: Arc<dyn TrackRemote>,
    },
    Shutdown,
}

/// The room's handle: cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct RoomHandle {
    tx: mpsc::Sender<Cmd>,
}

impl RoomHandle {
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Sends a request and waits for its answer.
    pub async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<Result<T, ServerError>, Gone> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| Gone)?;
        rx.await.map_err(|_| Gone)
    }

    /// Sends without waiting (from synchronous code and webrtc callbacks).
    pub fn tell(&self, cmd: Cmd) {
        if let Err(mpsc::error::TrySendError::Full(cmd)) = self.tx.try_send(cmd) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(cmd).await;
            });
        }
    }
}

/// What a subscriber connection carries of one relay.
struct SubOut {
    relay: Arc<Relay>,
    sender: Arc<dyn RtpSender>,
    active: Arc<AtomicBool>,
}

struct Participant {
    id: String,
    user: u64,
    session: String,
    publisher: Option<Leg>,
    subscriber: Leg,
    /// This participant's published tracks.
    relays: Vec<Arc<Relay>>,
    /// Others' tracks on this participant's subscriber connection, by relay id.
    outs: HashMap<String, SubOut>,
    /// A SubscriberOffer is outstanding; `dirty`: tracks changed since it was made.
    offering: Option<Vec<String>>,
    dirty: bool,
}

impl Participant {
    fn wire(&self) -> v1::Participant {
        v1::Participant {
            participant_id: self.id.clone(),
            user_id: self.user,
            tracks: self.relays.iter().map(|r| wire_track(r)).collect(),
        }
    }
}

fn wire_track(r: &Relay) -> v1::Track {
    let kind = if r.kind == RtpCodecKind::Audio { TrackKind::Audio } else { TrackKind::Video };
    v1::Track {
        track_id: r.id.clone(),
        user_id: r.user_id,
        participant_id: r.participant_id.clone(),
        kind: kind as i32,
        muted: r.muted.load(Ordering::Relaxed),
    }
}

struct Room {
    sfu: Arc<Inner>,
    conv: ConvId,
    /// `conv` as the wire has it.
    wire: u64,
    handle: RoomHandle,
    participants: Vec<Participant>,
    counters: Arc<Counters>,
    next_ssrc: AtomicU32,
    speakers: Vec<String>,
    count: watch::Sender<u32>,
    empty_since: Option<Instant>,
}

static ROOM_SEQ: AtomicU64 = AtomicU64::new(1);

/// Starts the room of `conv`.
pub(super) fn spawn(sfu: Arc<Inner>, conv: ConvId) -> RoomHandle {
    let (tx, rx) = mpsc::channel(QUEUE);
    let handle = RoomHandle { tx };
    let (count, count_rx) = watch::channel(0);
    tokio::spawn(announce_state(sfu.clone(), conv, count_rx));
    let seq = ROOM_SEQ.fetch_add(1, Ordering::Relaxed);
    let room = Room {
        sfu,
        conv,
        wire: conv as u64,
        handle: handle.clone(),
        participants: Vec::new(),
        counters: Arc::new(Counters::default()),
        next_ssrc: AtomicU32::new(0x1000_0000u32.wrapping_add((seq as u32) << 16)),
        speakers: Vec::new(),
        count,
        empty_since: Some(Instant::now()),
    };
    tokio::spawn(room.run(rx));
    handle
}

impl Room {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut tick = tokio::time::interval(SPEAKER_TICK);
        let ttl = self.sfu.config.room_ttl;
        loop {
            let expiry = self.empty_since.map(|t| t + ttl);
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Shutdown) | None => break,
                    Some(cmd) => self.handle(cmd).await,
                },
                _ = tick.tick() => self.speakers(),
                _ = async { tokio::time::sleep_until(expiry.unwrap_or_else(Instant::now)).await }, if expiry.is_some() => {
                    let mut rooms = self.sfu.rooms();
                    if rooms.get(&self.conv).is_some_and(|h| h.tx.same_channel(&self.handle.tx)) {
                        rooms.remove(&self.conv);
                    }
                    break;
                }
            }
        }
        // Commands still queued are dropped: their senders see Gone.
        rx.close();
        for p in std::mem::take(&mut self.participants) {
            self.sfu.sessions().remove(&p.session);
            for r in &p.relays {
                r.detach_all();
            }
            p.subscriber.close();
            if let Some(l) = p.publisher {
                l.close();
            }
        }
        self.count.send_if_modified(|c| std::mem::replace(c, 0) != 0);
        tracing::debug!(
            conversation = self.conv,
            forwarded = self.counters.rtp_out.load(Ordering::Relaxed),
            "room closed"
        );
    }

    async fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Join { user, session, reply } => {
                let r = self.join(user, &session).await;
                let _ = reply.send(r);
                if let Some(i) = self.index(&session) {
                    self.negotiate(i).await;
                }
            }
            Cmd::Publish { session, sdp, reply } => {
                let _ = reply.send(self.publish(&session, sdp).await);
            }
            Cmd::Answer { session, sdp, reply } => {
                let _ = reply.send(self.answer(&session, sdp).await);
            }
            Cmd::Trickle { session, role, candidate, reply } => {
                let _ = reply.send(self.trickle(&session, role, candidate).await);
            }
            Cmd::Mute { session, track_id, muted, reply } => {
                let _ = reply.send(self.mute(&session, &track_id, muted));
            }
            Cmd::Leave { session, reply } => {
                let r = self.leave(&session).await;
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            Cmd::Track { participant, track } => self.track(&participant, track).await,
            Cmd::Shutdown => {}
        }
    }

    fn index(&self, session: &str) -> Option<usize> {
        self.participants.iter().position(|p| p.session == session)
    }

    fn me(&self, session: &str) -> Result<usize, ServerError> {
        self.index(session).ok_or_else(not_in_call)
    }

    /// Sends an event to every participant's device except `except`.
    fn broadcast(&self, except: Option<&str>, ev: event::Event) {
        let frame: Bytes = encode_server(&event_frame(ev));
        for p in self.participants.iter().filter(|p| Some(p.id.as_str()) != except) {
            self.sfu.hub.deliver_session(&p.session, &frame);
        }
    }

    fn count_changed(&mut self) {
        let n = self.participants.len() as u32;
        self.count.send_if_modified(|c| std::mem::replace(c, n) != n);
        self.empty_since = self.participants.is_empty().then(Instant::now);
    }

    /// §20.3.2
    async fn join(&mut self, user: u64, session: &str) -> Result<(String, Vec<v1::Participant>), ServerError> {
        if self.index(session).is_some() {
            return Err(ServerError::FailedPrecondition("this device is already in the call".into()));
        }
        let max = self.sfu.config.max_participants as usize;
        if self.participants.len() >= max {
            return Err(ServerError::FailedPrecondition(format!("the call is full ({max} participants)")));
        }
        let owner = LegOwner { hub: &self.sfu.hub, session, conversation_id: self.wire };
        let subscriber = Leg::open(&self.sfu.engine, owner, PeerRole::Subscriber, None).await.map_err(|e| {
            tracing::warn!(error = %e, "no media socket for a subscriber connection");
            ServerError::Unavailable("no media port free".into())
        })?;
        let me = Participant {
            id: random_id("pt-"),
            user,
            session: session.to_string(),
            publisher: None,
            subscriber,
            relays: Vec::new(),
            outs: HashMap::new(),
            offering: None,
            dirty: false,
        };
        let others: Vec<v1::Participant> = self.participants.iter().map(Participant::wire).collect();
        let relays: Vec<Arc<Relay>> = self.participants.iter().flat_map(|p| p.relays.iter().cloned()).collect();
        let id = me.id.clone();
        let ev = event::Event::ParticipantJoined(v1::ParticipantJoined {
            conversation_id: self.wire,
            participant: Some(me.wire()),
        });
        self.broadcast(None, ev);
        self.participants.push(me);
        let i = self.participants.len() - 1;
        for r in relays {
            self.attach(i, r).await;
        }
        self.count_changed();
        Ok((id, others))
    }

    /// Adds `relay` to participant `i`'s subscriber connection (negotiated later).
    async fn attach(&mut self, i: usize, relay: Arc<Relay>) {
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
    async fn negotiate(&mut self, i: usize) {
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
        self.sfu.hub.deliver_session(&p.session, &encode_server(&event_frame(ev)));
    }

    /// §20.3.3
    async fn publish(&mut self, session: &str, sdp: String) -> Result<String, ServerError> {
        let i = self.me(session)?;
        let invalid = |m: String| ServerError::invalid("publish.sdp_offer", m);
        let offer =
            RTCSessionDescription::offer(sdp.clone()).map_err(|e| invalid(format!("not a usable SDP offer: {e}")))?;
        if !sdp.contains("\nm=audio") && !sdp.contains("\nm=video") {
            return Err(invalid("the offer has no audio or video".into()));
        }
        if self.participants[i].publisher.is_none() {
            let max = self.sfu.config.max_publishers as usize;
            if self.participants.iter().filter(|p| p.publisher.is_some()).count() >= max {
                return Err(ServerError::FailedPrecondition(format!("{max} participants already publish")));
            }
            let handle = self.handle.clone();
            let participant = self.participants[i].id.clone();
            let on_track: OnTrack =
                Box::new(move |track| handle.tell(Cmd::Track { participant: participant.clone(), track }));
            let owner = LegOwner { hub: &self.sfu.hub, session, conversation_id: self.wire };
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
    async fn unpublish(&mut self, gone: &[Arc<Relay>]) {
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
    async fn answer(&mut self, session: &str, sdp: String) -> Result<(), ServerError> {
        let i = self.me(session)?;
        let invalid = |m: String| ServerError::invalid("subscriber_answer.sdp_answer", m);
        let p = &mut self.participants[i];
        let Some(offered) = p.offering.clone() else {
            return Err(ServerError::FailedPrecondition("no SubscriberOffer is waiting for an answer".into()));
        };
        let answer =
            RTCSessionDescription::answer(sdp).map_err(|e| invalid(format!("not a usable SDP answer: {e}")))?;
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

    /// §20.3.5
    async fn trickle(&mut self, session: &str, role: PeerRole, c: RTCIceCandidateInit) -> Result<(), ServerError> {
        let i = self.me(session)?;
        let p = &mut self.participants[i];
        let leg = match role {
            PeerRole::Publisher => p
                .publisher
                .as_mut()
                .ok_or_else(|| ServerError::FailedPrecondition("no publisher connection yet (Publish first)".into()))?,
            _ => &mut p.subscriber,
        };
        leg.add_candidate(c).await.map_err(|e| ServerError::invalid("trickle.candidate", e))
    }

    /// §20.3.6
    fn mute(&mut self, session: &str, track_id: &str, muted: bool) -> Result<(), ServerError> {
        let i = self.me(session)?;
        let p = &self.participants[i];
        let relay = p
            .relays
            .iter()
            .find(|r| r.id == track_id || r.client_track_id == track_id)
            .ok_or_else(|| ServerError::NotFound("no such track of yours in this call".into()))?;
        relay.muted.store(muted, Ordering::Relaxed);
        let ev = v1::TrackMuted { conversation_id: self.wire, track_id: relay.id.clone(), muted };
        let from = p.id.clone();
        self.broadcast(Some(&from), event::Event::TrackMuted(ev));
        Ok(())
    }

    /// §20.3.7
    async fn leave(&mut self, session: &str) -> Result<(), ServerError> {
        let i = self.me(session)?;
        let p = self.participants.remove(i);
        self.sfu.sessions().remove(session);
        for out in p.outs.values() {
            out.relay.detach(&p.id);
        }
        p.subscriber.close();
        if let Some(l) = p.publisher {
            l.close();
        }
        self.unpublish(&p.relays).await;
        let ev = v1::ParticipantLeft { conversation_id: self.wire, participant_id: p.id.clone(), user_id: p.user };
        self.broadcast(None, event::Event::ParticipantLeft(ev));
        self.count_changed();
        Ok(())
    }

    /// A publisher's track started flowing: forward it to everyone else.
    async fn track(&mut self, participant: &str, track: Arc<dyn TrackRemote>) {
        let Some(i) = self.participants.iter().position(|p| p.id == participant) else { return };
        let p = &self.participants[i];
        let Some(leg) = &p.publisher else { return };
        let track_id = track.track_id().await;
        if p.relays.iter().any(|r| r.client_track_id == track_id) {
            return;
        }
        let mut audio_level_id = None;
        for r in leg.pc.get_receivers().await {
            if r.track().track_id().await == track_id
                && let Ok(params) = r.get_parameters().await
            {
                audio_level_id = params
                    .rtp_parameters
                    .header_extensions
                    .iter()
                    .find(|e| e.uri == super::engine::AUDIO_LEVEL_URI)
                    .map(|e| e.id as u8);
            }
        }
        let src = Source { participant_id: p.id.clone(), user_id: p.user, audio_level_id };
        let Some(relay) = Relay::start(src, track, self.counters.clone()).await else { return };
        self.participants[i].relays.push(relay.clone());
        let ev = v1::TrackPublished { conversation_id: self.wire, track: Some(wire_track(&relay)) };
        self.broadcast(Some(participant), event::Event::TrackPublished(ev));
        for j in (0..self.participants.len()).filter(|&j| j != i) {
            self.attach(j, relay.clone()).await;
            self.negotiate(j).await;
        }
    }

    /// §20.3.8: the loudest participants, when their order changes.
    fn speakers(&mut self) {
        let now = now_ms().max(0) as u64;
        let mut loud: Vec<(u32, &Participant)> = self
            .participants
            .iter()
            .filter_map(|p| {
                let level = p
                    .relays
                    .iter()
                    .filter(|r| r.kind == RtpCodecKind::Audio && !r.muted.load(Ordering::Relaxed))
                    .filter(|r| now.saturating_sub(r.heard_ms.load(Ordering::Relaxed)) < SPEAKER_FRESH_MS)
                    .map(|r| u32::from(r.level.load(Ordering::Relaxed)))
                    .max()?;
                (level > 0).then_some((level, p))
            })
            .collect();
        loud.sort_by_key(|l| std::cmp::Reverse(l.0));
        loud.truncate(MAX_SPEAKERS);
        let order: Vec<String> = loud.iter().map(|(_, p)| p.id.clone()).collect();
        if order == self.speakers {
            return;
        }
        let speakers = loud
            .iter()
            .map(|(level, p)| v1::Speaker { participant_id: p.id.clone(), user_id: p.user, level: *level })
            .collect();
        self.speakers = order;
        self.broadcast(None, event::Event::ActiveSpeakers(v1::ActiveSpeakers { conversation_id: self.wire, speakers }));
    }
}

/// Applies a publisher offer and answers it (trickle: the answer goes back at once).
async fn negotiate_publisher(leg: &Leg, offer: RTCSessionDescription) -> Result<String, String> {
    leg.pc.set_remote_description(offer).await.map_err(|e| e.to_string())?;
    let answer = leg.pc.create_answer(None).await.map_err(|e| e.to_string())?;
    leg.pc.set_local_description(answer.clone()).await.map_err(|e| e.to_string())?;
    Ok(answer.sdp)
}
