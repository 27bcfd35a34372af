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
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::RTCIceCandidateInit;
use webrtc::rtp_transceiver::RtpSender;

use super::forward::{Counters, Relay, Source};
use super::leg::{Leg, LegOwner};
use super::{Attendee, CallKey, Inner, Limits, announce_state, not_in_call};
use crate::calls::random_id;
use crate::error::ServerError;
use crate::metrics::SfuMetrics;
use crate::store::{RoomCloseReason, RoomRole, now_ms};

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
        who: Attendee,
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
    /// §20.3.10: `level` per [`super::simulcast::level_of`].
    Quality {
        session: String,
        track_id: String,
        level: u8,
        reply: Reply<()>,
    },
    /// §20.3.11
    RestartIce {
        session: String,
        role: PeerRole,
        reply: Reply<()>,
    },
    /// A publisher connection's remote track started flowing.
    Track {
        participant: String,
        track: Arc<dyn TrackRemote>,
    },
    /// §25.5: a moderator removes a participant; answers its session and user.
    Remove {
        participant_id: String,
        reason: RoomCloseReason,
        barred: bool,
        reply: Reply<(String, u64)>,
    },
    /// §25.5: a moderator mutes a participant's track (all of them when `track_id` is empty).
    Hold {
        participant_id: String,
        track_id: String,
        by: u64,
        reply: Reply<()>,
    },
    /// §25.1: who is in the room.
    Roster {
        reply: Reply<Vec<v1::Participant>>,
    },
    /// The room's limits changed (UpdateRoom).
    Limits(Limits),
    /// §25.6: the room closed: everyone is told and the call ends.
    Close(RoomCloseReason),
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
pub(super) struct SubOut {
    pub(super) relay: Arc<Relay>,
    pub(super) sender: Arc<dyn RtpSender>,
    pub(super) active: Arc<AtomicBool>,
    /// The layer this participant gets of the relay (§20.3.10).
    pub(super) choice: Arc<super::simulcast::Choice>,
}

pub(super) struct Participant {
    pub(super) id: String,
    pub(super) user: u64,
    pub(super) session: String,
    /// The name shown to the others (§25.3): the account's display name or the guest's.
    pub(super) name: String,
    /// The role in a meeting room; `None` in a conversation's call.
    pub(super) role: Option<RoomRole>,
    pub(super) publisher: Option<Leg>,
    pub(super) subscriber: Leg,
    /// This participant's published tracks.
    pub(super) relays: Vec<Arc<Relay>>,
    /// Others' tracks on this participant's subscriber connection, by relay id.
    pub(super) outs: HashMap<String, SubOut>,
    /// A SubscriberOffer is outstanding; `dirty`: tracks changed since it was made.
    pub(super) offering: Option<Vec<String>>,
    pub(super) dirty: bool,
    /// Simulcast adaptation of the subscriber connection (§20.3.10).
    pub(super) adapt: super::simulcast::Adapt,
    /// The next SubscriberOffer restarts ICE (§20.3.11).
    pub(super) ice_restart: bool,
}

impl Participant {
    fn wire(&self) -> v1::Participant {
        v1::Participant {
            participant_id: self.id.clone(),
            user_id: self.user,
            tracks: self.relays.iter().map(|r| wire_track(r)).collect(),
            display_name: self.name.clone(),
            role: self.role.map_or(0, i32::from),
        }
    }

    /// Whether this participant may publish: everyone in a conversation's call; a meeting room's
    /// speakers, moderators and owner (§25.2).
    pub(super) fn may_publish(&self) -> bool {
        self.role.is_none_or(RoomRole::publishes)
    }
}

pub(super) fn wire_track(r: &Relay) -> v1::Track {
    let kind = if r.kind == RtpCodecKind::Audio { TrackKind::Audio } else { TrackKind::Video };
    v1::Track {
        track_id: r.id.clone(),
        user_id: r.user_id,
        participant_id: r.participant_id.clone(),
        kind: kind as i32,
        muted: r.muted.load(Ordering::Relaxed),
    }
}

pub(super) struct Room {
    pub(super) sfu: Arc<Inner>,
    pub(super) key: CallKey,
    /// The conversation id as the wire has it (0 for a meeting room).
    pub(super) wire: u64,
    /// The meeting room's id (empty for a conversation's call).
    pub(super) room_id: String,
    pub(super) limits: Limits,
    pub(super) handle: RoomHandle,
    pub(super) participants: Vec<Participant>,
    pub(super) counters: Arc<Counters>,
    pub(super) next_ssrc: AtomicU32,
    pub(super) speakers: Vec<String>,
    /// The last ActiveSpeakers list sent (a joiner gets it when not empty).
    pub(super) speaker_levels: Vec<v1::Speaker>,
    pub(super) count: watch::Sender<u32>,
    pub(super) empty_since: Option<Instant>,
    /// What this room adds to the node's SFU gauges.
    gauges: Gauges,
}

/// One room's share of the SFU gauges: counted as a room from its start until it is dropped,
/// its participants and published tracks brought up to date by its actor after every command
/// and tick, all taken back when the room is dropped.
struct Gauges {
    sfu: SfuMetrics,
    participants: i64,
    tracks: i64,
}

impl Gauges {
    fn new(sfu: SfuMetrics) -> Self {
        sfu.rooms.inc();
        Self { sfu, participants: 0, tracks: 0 }
    }

    fn set(&mut self, participants: i64, tracks: i64) {
        self.sfu.participants.inc_by(participants - self.participants);
        self.sfu.forwarded_tracks.inc_by(tracks - self.tracks);
        (self.participants, self.tracks) = (participants, tracks);
    }
}

impl Drop for Gauges {
    fn drop(&mut self) {
        self.set(0, 0);
        self.sfu.rooms.dec();
    }
}

static ROOM_SEQ: AtomicU64 = AtomicU64::new(1);

/// Starts the call `key` with `limits`.
pub(super) fn spawn(sfu: Arc<Inner>, key: CallKey, limits: Limits) -> RoomHandle {
    let (tx, rx) = mpsc::channel(QUEUE);
    let handle = RoomHandle { tx };
    let (count, count_rx) = watch::channel(0);
    tokio::spawn(announce_state(sfu.clone(), key.clone(), count_rx));
    let seq = ROOM_SEQ.fetch_add(1, Ordering::Relaxed);
    let (wire, room_id) = key.wire();
    let sfu_gauges = sfu.gauges.clone();
    let room = Room {
        sfu,
        key,
        wire,
        room_id,
        limits,
        handle: handle.clone(),
        participants: Vec::new(),
        counters: Arc::new(Counters::default()),
        next_ssrc: AtomicU32::new(0x1000_0000u32.wrapping_add((seq as u32) << 16)),
        speakers: Vec::new(),
        speaker_levels: Vec::new(),
        count,
        empty_since: Some(Instant::now()),
        gauges: Gauges::new(sfu_gauges),
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
                    Some(Cmd::Close(reason)) => {
                        let ev = v1::RoomClosed { room_id: self.room_id.clone(), reason: reason.into() };
                        self.broadcast(None, event::Event::RoomClosed(ev));
                        let mut rooms = self.sfu.rooms();
                        if rooms.get(&self.key).is_some_and(|h| h.tx.same_channel(&self.handle.tx)) {
                            rooms.remove(&self.key);
                        }
                        break;
                    }
                    Some(cmd) => self.handle(cmd).await,
                },
                _ = tick.tick() => {
                    self.speakers();
                    for i in 0..self.participants.len() {
                        self.adapt(i);
                    }
                    self.check_media().await;
                }
                _ = async { tokio::time::sleep_until(expiry.unwrap_or_else(Instant::now)).await }, if expiry.is_some() => {
                    let mut rooms = self.sfu.rooms();
                    if rooms.get(&self.key).is_some_and(|h| h.tx.same_channel(&self.handle.tx)) {
                        rooms.remove(&self.key);
                    }
                    break;
                }
            }
            let tracks = self.participants.iter().map(|p| p.relays.len()).sum::<usize>();
            self.gauges.set(self.participants.len() as i64, tracks as i64);
        }
        // Commands still queued are dropped: their senders see Gone.
        rx.close();
        for p in std::mem::take(&mut self.participants) {
            self.sfu.pids().unseat(&p.id);
            let mut sessions = self.sfu.sessions();
            if sessions.get(&p.session).is_some_and(|s| s.0 == self.key) {
                sessions.remove(&p.session);
            }
            drop(sessions);
            for r in &p.relays {
                r.detach_all();
            }
            p.subscriber.close();
            if let Some(l) = p.publisher {
                l.close();
            }
        }
        self.count.send_if_modified(|c| std::mem::replace(c, 0) != 0);
        if let CallKey::Conversation(conv) = self.key {
            self.sfu.room_ended(conv);
        }
        tracing::debug!(
            call = %self.key,
            forwarded = self.counters.rtp_out.load(Ordering::Relaxed),
            "room closed"
        );
    }

    async fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Join { who, reply } => {
                let session = who.session.clone();
                let r = self.join(who).await;
                let joined = r.is_ok();
                let _ = reply.send(r);
                if let Some(i) = self.index(&session) {
                    if joined && !self.speaker_levels.is_empty() {
                        // §20.3.8: who speaks now, without waiting for the list to change.
                        let ev = event::Event::ActiveSpeakers(v1::ActiveSpeakers {
                            room_id: self.room_id.clone(),
                            conversation_id: self.wire,
                            speakers: self.speaker_levels.clone(),
                        });
                        self.sfu.devices.session(&session, encode_server(&event_frame(ev)));
                    }
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
            Cmd::Remove { participant_id, reason, barred, reply } => {
                let _ = reply.send(self.remove(&participant_id, reason, barred).await);
            }
            Cmd::Hold { participant_id, track_id, by, reply } => {
                let _ = reply.send(self.hold(&participant_id, &track_id, by));
            }
            Cmd::Roster { reply } => {
                let _ = reply.send(Ok(self.participants.iter().map(Participant::wire).collect()));
            }
            Cmd::Limits(limits) => self.limits = limits,
            Cmd::Quality { session, track_id, level, reply } => {
                let _ = reply.send(self.set_quality(&session, &track_id, level));
            }
            Cmd::RestartIce { session, role, reply } => {
                let _ = reply.send(self.restart_ice(&session, role).await);
            }
            Cmd::Close(_) | Cmd::Shutdown => {}
        }
    }

    fn index(&self, session: &str) -> Option<usize> {
        self.participants.iter().position(|p| p.session == session)
    }

    pub(super) fn me(&self, session: &str) -> Result<usize, ServerError> {
        self.index(session).ok_or_else(not_in_call)
    }

    /// Sends an event to every participant's device except `except`.
    pub(super) fn broadcast(&self, except: Option<&str>, ev: event::Event) {
        let frame: Bytes = encode_server(&event_frame(ev));
        for p in self.participants.iter().filter(|p| Some(p.id.as_str()) != except) {
            self.sfu.devices.session(&p.session, frame.clone());
        }
    }

    fn count_changed(&mut self) {
        let n = self.participants.len() as u32;
        self.count.send_if_modified(|c| std::mem::replace(c, n) != n);
        self.empty_since = self.participants.is_empty().then(Instant::now);
    }

    /// §20.3.2
    async fn join(&mut self, who: Attendee) -> Result<(String, Vec<v1::Participant>), ServerError> {
        let session = who.session.as_str();
        if self.index(session).is_some() {
            return Err(ServerError::FailedPrecondition("this device is already in the call".into()));
        }
        let max = self.limits.max_participants as usize;
        if self.participants.len() >= max {
            return Err(ServerError::FailedPrecondition(format!("the call is full ({max} participants)")));
        }
        let owner =
            LegOwner { devices: &self.sfu.devices, session, conversation_id: self.wire, room_id: &self.room_id };
        let subscriber = Leg::open(&self.sfu.engine, owner, PeerRole::Subscriber, None).await.map_err(|e| {
            tracing::warn!(error = %e, "no media socket for a subscriber connection");
            ServerError::Unavailable("no media port free".into())
        })?;
        let me = Participant {
            id: random_id("pt-"),
            user: who.user,
            session: session.to_string(),
            name: who.name,
            role: who.role,
            publisher: None,
            subscriber,
            relays: Vec::new(),
            outs: HashMap::new(),
            offering: None,
            dirty: false,
            adapt: Default::default(),
            ice_restart: false,
        };
        let others: Vec<v1::Participant> = self.participants.iter().map(Participant::wire).collect();
        let relays: Vec<Arc<Relay>> = self.participants.iter().flat_map(|p| p.relays.iter().cloned()).collect();
        let id = me.id.clone();
        let ev = event::Event::ParticipantJoined(v1::ParticipantJoined {
            room_id: self.room_id.clone(),
            conversation_id: self.wire,
            participant: Some(me.wire()),
        });
        self.broadcast(None, ev);
        self.sfu.pids().seat(&me.id, &me.session, me.user);
        self.participants.push(me);
        let i = self.participants.len() - 1;
        for r in relays {
            self.attach(i, r).await;
        }
        self.count_changed();
        Ok((id, others))
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
        leg.add_candidate(c).await.map_err(|e: &'static str| ServerError::invalid("trickle.candidate", e))
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
        if !muted {
            // The publisher unmuted a track a moderator muted: forwarding resumes (§25.5).
            relay.held.store(false, Ordering::Relaxed);
        }
        let ev = v1::TrackMuted {
            room_id: self.room_id.clone(),
            conversation_id: self.wire,
            track_id: relay.id.clone(),
            muted,
        };
        let from = p.id.clone();
        self.broadcast(Some(&from), event::Event::TrackMuted(ev));
        Ok(())
    }

    /// §20.3.7
    pub(super) async fn leave(&mut self, session: &str) -> Result<(), ServerError> {
        let i = self.me(session)?;
        // The service already took the session out of its map (it may be joining elsewhere now).
        let p = self.participants.remove(i);
        self.sfu.pids().unseat(&p.id);
        for out in p.outs.values() {
            out.relay.detach(&p.id);
        }
        p.subscriber.close();
        if let Some(l) = p.publisher {
            l.close();
        }
        self.unpublish(&p.relays).await;
        let ev = v1::ParticipantLeft {
            room_id: self.room_id.clone(),
            conversation_id: self.wire,
            participant_id: p.id.clone(),
            user_id: p.user,
        };
        self.broadcast(None, event::Event::ParticipantLeft(ev));
        self.count_changed();
        Ok(())
    }

    /// §25.5: a moderator makes participant `id` leave; it and the others are told why.
    async fn remove(&mut self, id: &str, reason: RoomCloseReason, barred: bool) -> Result<(String, u64), ServerError> {
        let Some(p) = self.participants.iter().find(|p| p.id == id) else {
            return Err(ServerError::NotFound("no such participant in this room".into()));
        };
        let (session, user) = (p.session.clone(), p.user);
        let ev = v1::ParticipantRemoved {
            room_id: self.room_id.clone(),
            participant_id: id.to_string(),
            reason: reason.into(),
            barred,
        };
        self.broadcast(None, event::Event::ParticipantRemoved(ev));
        {
            let mut sessions = self.sfu.sessions();
            if sessions.get(&session).is_some_and(|s| s.0 == self.key) {
                sessions.remove(&session);
            }
        }
        self.leave(&session).await?;
        Ok((session, user))
    }

    /// §25.5: a moderator (`by`) mutes participant `id`'s track `track_id` (every track when
    /// empty): the track is marked muted and nothing of it is forwarded until its publisher
    /// unmutes it.
    fn hold(&mut self, id: &str, track_id: &str, by: u64) -> Result<(), ServerError> {
        let Some(p) = self.participants.iter().find(|p| p.id == id) else {
            return Err(ServerError::NotFound("no such participant in this room".into()));
        };
        let held: Vec<Arc<Relay>> = p
            .relays
            .iter()
            .filter(|r| track_id.is_empty() || r.id == track_id || r.client_track_id == track_id)
            .cloned()
            .collect();
        if held.is_empty() && !track_id.is_empty() {
            return Err(ServerError::NotFound("no such track of that participant".into()));
        }
        for relay in held {
            relay.muted.store(true, Ordering::Relaxed);
            relay.held.store(true, Ordering::Relaxed);
            let muted = v1::TrackMuted {
                room_id: self.room_id.clone(),
                conversation_id: self.wire,
                track_id: relay.id.clone(),
                muted: true,
            };
            self.broadcast(None, event::Event::TrackMuted(muted));
            let ev = v1::ParticipantMuted {
                room_id: self.room_id.clone(),
                participant_id: id.to_string(),
                track_id: relay.id.clone(),
                by_user_id: by,
            };
            self.broadcast(None, event::Event::ParticipantMuted(ev));
        }
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
        let rids = match leg.pc.remote_description().await {
            Some(d) => super::simulcast::offered_rids(&d.sdp, &track_id),
            None => Vec::new(),
        };
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
        let src = Source { participant_id: p.id.clone(), user_id: p.user, audio_level_id, rids };
        let Some(relay) = Relay::start(src, track, self.counters.clone()).await else { return };
        self.participants[i].relays.push(relay.clone());
        let ev = v1::TrackPublished {
            room_id: self.room_id.clone(),
            conversation_id: self.wire,
            track: Some(wire_track(&relay)),
        };
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
        let speakers: Vec<v1::Speaker> = loud
            .iter()
            .map(|(level, p)| v1::Speaker { participant_id: p.id.clone(), user_id: p.user, level: *level })
            .collect();
        self.speakers = order;
        self.speaker_levels = speakers.clone();
        self.broadcast(
            None,
            event::Event::ActiveSpeakers(v1::ActiveSpeakers {
                room_id: self.room_id.clone(),
                conversation_id: self.wire,
                speakers,
            }),
        );
    }
}
