//! The integrated SFU (docs/protocol.md §20.3): group-call rooms by conversation, and the calls of
//! meeting rooms (§25), keyed by [`CallKey`]. Each room is an actor ([`room`]) owning its
//! participants, peer connections and forwarding; this service checks membership of
//! conversations (the rooms service checks meeting rooms' rights), finds or starts the room and
//! talks to it through its cheap-clone handle. In a
//! cluster each room lives on the node that holds its lease ([`cluster`]); frames for devices go
//! through the bus, since a participant may be connected to another node.

mod adapt;
mod cluster;
pub mod engine;
mod forward;
mod health;
mod leg;
mod link;
mod negotiate;
mod room;
mod seats;
mod simulcast;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use confab_protocol::frames::{encode_server, event_frame};
use confab_protocol::v1::{self, PeerRole, event};
use tokio::sync::watch;
use webrtc::peer_connection::RTCIceCandidateInit;

use crate::access::{id, member_view};
use crate::bus::{Bus, DomainEvent};
use crate::config::CallsConfig;
use crate::error::ServerError;
use crate::hub::Audience;
use crate::metrics::{Metrics, SfuMetrics};
use crate::session::Caller;
use crate::store::{ConvId, RoomCloseReason, RoomId, RoomRole, Store, UserId, now_ms};
pub use cluster::ClusterRole;
use engine::Engine;
use room::{Cmd, Gone, RoomHandle};
use seats::Seats;

/// Longest SDP accepted (bytes).
const MAX_SDP_BYTES: usize = 64 * 1024;
/// Longest ICE candidate line accepted (bytes).
const MAX_CANDIDATE_BYTES: usize = 2048;

pub(crate) struct Inner {
    config: CallsConfig,
    store: Arc<dyn Store>,
    devices: Devices,
    /// In a cluster: this node's leases and the devices it routes to rooms held elsewhere.
    cluster: Option<cluster::SfuCluster>,
    engine: Engine,
    rooms: Mutex<HashMap<CallKey, RoomHandle>>,
    /// Each device in a group call: the call and the device's user (0 for a guest).
    sessions: Mutex<HashMap<String, (CallKey, UserId)>>,
    /// Each participant of a room on this node, both ways.
    pids: Mutex<Seats>,
    /// This node's SFU gauges, kept by the room actors (`room::Gauges`).
    gauges: SfuMetrics,
}

/// Which call a room carries: a conversation's (§20.3) or a meeting room's (§25).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CallKey {
    Conversation(ConvId),
    Meeting(RoomId),
}

impl CallKey {
    /// The wire's `(conversation_id, room_id)` pair of events about this call.
    pub fn wire(&self) -> (u64, String) {
        match self {
            Self::Conversation(c) => (crate::wire::conv(*c), String::new()),
            Self::Meeting(r) => (0, r.as_str().to_string()),
        }
    }
}

impl std::fmt::Display for CallKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Conversation(c) => write!(f, "conversation {c}"),
            Self::Meeting(r) => write!(f, "room {r}"),
        }
    }
}

/// Who joins a call: the device (session) frames go to, its account (0 for a guest), the name
/// the others see, and the role in a meeting room (`None` in a conversation's call).
#[derive(Clone, Debug)]
pub struct Attendee {
    pub session: String,
    pub user: u64,
    pub name: String,
    pub role: Option<RoomRole>,
}

/// How many may take part in a call and publish in it at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_publishers: u32,
    pub max_participants: u32,
}

/// Where the SFU's frames for devices go: the bus, so a device connected to another node of a
/// cluster gets them too.
#[derive(Clone)]
pub(crate) struct Devices(Arc<dyn Bus>);

impl Devices {
    /// Every connection of one device (session), wherever it is connected.
    pub(crate) fn session(&self, session: &str, frame: bytes::Bytes) {
        let frames = vec![(Audience::Session(session.to_string()), frame)];
        self.0.publish(DomainEvent::Frames { frames, droppable: false });
    }

    /// Every connection of these users.
    pub(crate) fn users(&self, users: Vec<UserId>, frame: bytes::Bytes) {
        self.0.publish(DomainEvent::Frames { frames: vec![(Audience::Users(users), frame)], droppable: false });
    }
}

impl Inner {
    fn rooms(&self) -> MutexGuard<'_, HashMap<CallKey, RoomHandle>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
    fn pids(&self) -> MutexGuard<'_, Seats> {
        self.pids.lock().unwrap_or_else(PoisonError::into_inner)
    }
    fn sessions(&self) -> MutexGuard<'_, HashMap<String, (CallKey, UserId)>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The SFU service: a cheap-clone handle.
#[derive(Clone)]
pub struct Sfu(Arc<Inner>);

impl std::fmt::Debug for Sfu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sfu").field("rooms", &self.0.rooms().len()).finish_non_exhaustive()
    }
}

fn not_in_call() -> ServerError {
    ServerError::FailedPrecondition("this device is not in the conversation's group call (JoinCall first)".into())
}

fn check_sdp(field: &'static str, sdp: &str) -> Result<(), ServerError> {
    if sdp.is_empty() || sdp.len() > MAX_SDP_BYTES {
        return Err(ServerError::invalid(field, format!("1..={MAX_SDP_BYTES} bytes of SDP")));
    }
    Ok(())
}

impl Sfu {
    /// `role` is this node's place in a cluster (`None` alone); the rooms keep their gauges in
    /// `metrics`.
    pub fn new(
        config: CallsConfig,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        role: Option<ClusterRole>,
        metrics: &Metrics,
    ) -> Self {
        let engine = Engine::new(config.media_bind, config.media_public_ip, config.udp_port_min, config.udp_port_max);
        let sfu = Self(Arc::new(Inner {
            config,
            store,
            devices: Devices(bus),
            cluster: role.map(cluster::SfuCluster::new),
            engine,
            rooms: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            pids: Mutex::default(),
            gauges: metrics.sfu().clone(),
        }));
        if sfu.0.cluster.is_some() {
            tokio::spawn(cluster::renew_leases(Arc::downgrade(&sfu.0)));
        }
        sfu
    }

    /// Whether `session` takes part in a group call.
    pub fn in_call(&self, session: &str) -> bool {
        self.0.sessions().contains_key(session) || self.is_routed(session)
    }

    /// The server's limits for a conversation's call.
    fn default_limits(&self) -> Limits {
        Limits { max_publishers: self.0.config.max_publishers, max_participants: self.0.config.max_participants }
    }

    /// The room of `key`, started with `limits` if there is none.
    fn room(&self, key: &CallKey, limits: Limits) -> RoomHandle {
        let mut rooms = self.0.rooms();
        if let Some(h) = rooms.get(key).filter(|h| !h.is_closed()) {
            return h.clone();
        }
        let h = room::spawn(self.0.clone(), key.clone(), limits);
        rooms.insert(key.clone(), h.clone());
        h
    }

    /// The room `session` is in for `key`.
    fn my_room(&self, session: &str, key: &CallKey) -> Result<RoomHandle, ServerError> {
        if self.0.sessions().get(session).map(|s| &s.0) != Some(key) {
            return Err(not_in_call());
        }
        self.0.rooms().get(key).cloned().ok_or_else(not_in_call)
    }

    /// Seats `who` in the call `key` (started with `limits` when it is not running).
    async fn seat(
        &self,
        key: &CallKey,
        who: Attendee,
        limits: Limits,
    ) -> Result<(String, Vec<v1::Participant>), ServerError> {
        {
            let mut sessions = self.0.sessions();
            if sessions.contains_key(&who.session) {
                return Err(ServerError::FailedPrecondition("this device is already in a group call".into()));
            }
            sessions.insert(who.session.clone(), (key.clone(), UserId(i64::try_from(who.user).unwrap_or(0))));
        }
        // A room that closes (TTL) between lookup and join answers Gone: take a fresh one.
        let mut result = Err(Gone);
        for _ in 0..3 {
            let who = who.clone();
            result = self.room(key, limits).ask(|reply| Cmd::Join { who, reply }).await;
            if result.is_ok() {
                break;
            }
        }
        let joined = result.unwrap_or_else(|_| Err(ServerError::Unavailable("the call room is restarting".into())));
        if joined.is_err() {
            self.0.sessions().remove(&who.session);
        }
        joined
    }

    /// §20.3.2
    pub async fn join(&self, auth: &Caller, conv: u64) -> Result<v1::JoinCallResult, ServerError> {
        let conv = id("join_call.conversation_id", conv)?;
        member_view(self.0.store.as_ref(), auth.user_id, conv).await?;
        let name = match self.0.store.user(auth.user_id).await {
            Ok(Some(u)) if !u.display_name.is_empty() => u.display_name,
            Ok(Some(u)) => u.username,
            _ => String::new(),
        };
        let who =
            Attendee { session: auth.session_id.clone(), user: crate::wire::user(auth.user_id), name, role: None };
        let key = CallKey::Conversation(conv);
        match self.seat(&key, who, self.default_limits()).await {
            Ok((participant_id, participants)) => {
                // A removal that committed during the join found no seat to free: look again now
                // that the seat exists (any later removal reaches it through the bus).
                if let Err(e) = member_view(self.0.store.as_ref(), auth.user_id, conv).await {
                    self.member_gone(conv, auth.user_id);
                    return Err(e);
                }
                let (ice_servers, _) = super::ice::ice_servers(&self.0.config, auth.user_id, now_ms());
                Ok(v1::JoinCallResult { participant_id, participants, ice_servers, in_lobby: false })
            }
            Err(e) => Err(e),
        }
    }

    /// The call of a request's `conversation_id` or `room_id` (exactly one of them set).
    pub fn key_of(field: &'static str, conversation_id: u64, room_id: &str) -> Result<CallKey, ServerError> {
        match (conversation_id, room_id.is_empty()) {
            (0, false) => {
                RoomId::parse(room_id).map(CallKey::Meeting).ok_or_else(|| ServerError::NotFound("no such room".into()))
            }
            (c, true) => Ok(CallKey::Conversation(id(field, c)?)),
            (_, false) => Err(ServerError::invalid(field, "set conversation_id or room_id, not both")),
        }
    }

    /// §20.3.3
    pub async fn publish(
        &self,
        session: &str,
        key: &CallKey,
        r: v1::Publish,
    ) -> Result<v1::PublishResult, ServerError> {
        check_sdp("publish.sdp_offer", &r.sdp_offer)?;
        let (session, sdp) = (session.to_string(), r.sdp_offer);
        let sdp_answer = self.my_room(&session, key)?.ask(|reply| Cmd::Publish { session, sdp, reply }).await??;
        Ok(v1::PublishResult { sdp_answer })
    }

    /// §20.3.4
    pub async fn subscriber_answer(
        &self,
        session: &str,
        key: &CallKey,
        r: v1::SubscriberAnswer,
    ) -> Result<(), ServerError> {
        check_sdp("subscriber_answer.sdp_answer", &r.sdp_answer)?;
        let (session, sdp) = (session.to_string(), r.sdp_answer);
        self.my_room(&session, key)?.ask(|reply| Cmd::Answer { session, sdp, reply }).await?
    }

    /// §20.3.5
    pub async fn trickle(&self, session: &str, key: &CallKey, r: v1::Trickle) -> Result<(), ServerError> {
        let role = match PeerRole::try_from(r.role) {
            Ok(role @ (PeerRole::Publisher | PeerRole::Subscriber)) => role,
            _ => return Err(ServerError::invalid("trickle.role", "PUBLISHER or SUBSCRIBER")),
        };
        let c = r.candidate.unwrap_or_default();
        if c.candidate.len() > MAX_CANDIDATE_BYTES || c.sdp_mid.len() > 64 {
            return Err(ServerError::invalid("trickle.candidate", "too long"));
        }
        let room = self.my_room(session, key)?;
        if c.candidate.is_empty() {
            return Ok(()); // end of candidates: nothing to do on this stack
        }
        // §20.3.5: a candidate the server cannot reach is dropped, not refused.
        if let Some(addr) = super::candidates::address(&c.candidate)
            && let Err(why) =
                super::candidates::check(addr, self.0.config.media_bind, &self.0.config.allowed_candidate_networks)
        {
            tracing::debug!(?why, "client ICE candidate dropped");
            return Ok(());
        }
        let candidate = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: Some(c.sdp_mid),
            sdp_mline_index: Some(u16::try_from(c.sdp_m_line_index).unwrap_or(0)),
            ..Default::default()
        };
        let session = session.to_string();
        room.ask(|reply| Cmd::Trickle { session, role, candidate, reply }).await?
    }

    /// §20.3.6
    pub async fn set_mute(&self, session: &str, key: &CallKey, r: v1::SetMute) -> Result<(), ServerError> {
        if r.track_id.is_empty() {
            return Err(ServerError::invalid("set_mute.track_id", "required"));
        }
        let (session, track_id, muted) = (session.to_string(), r.track_id, r.muted);
        self.my_room(&session, key)?.ask(|reply| Cmd::Mute { session, track_id, muted, reply }).await?
    }

    /// §20.3.10: the highest simulcast layer this device wants of one video track it receives.
    pub async fn set_subscribed_quality(
        &self,
        session: &str,
        key: &CallKey,
        r: v1::SetSubscribedQuality,
    ) -> Result<(), ServerError> {
        if r.track_id.is_empty() || r.track_id.len() > 256 {
            return Err(ServerError::invalid("set_subscribed_quality.track_id", "1..=256 bytes"));
        }
        let level = simulcast::level_of(r.quality)
            .ok_or_else(|| ServerError::invalid("set_subscribed_quality.quality", "LOW, MEDIUM, HIGH or OFF"))?;
        let (session, track_id) = (session.to_string(), r.track_id);
        self.my_room(&session, key)?.ask(|reply| Cmd::Quality { session, track_id, level, reply }).await?
    }

    /// §20.3.11: SUBSCRIBER gets a SubscriberOffer with new ICE credentials; PUBLISHER is
    /// `FAILED_PRECONDITION` (the client restarts it with a new Publish offer).
    pub async fn restart_ice(&self, session: &str, key: &CallKey, r: v1::RestartIce) -> Result<(), ServerError> {
        let role = match PeerRole::try_from(r.role) {
            Ok(role @ (PeerRole::Publisher | PeerRole::Subscriber)) => role,
            _ => return Err(ServerError::invalid("restart_ice.role", "PUBLISHER or SUBSCRIBER")),
        };
        let session = session.to_string();
        self.my_room(&session, key)?.ask(|reply| Cmd::RestartIce { session, role, reply }).await?
    }

    /// §20.3.7
    pub async fn leave(&self, session: &str, key: &CallKey) -> Result<(), ServerError> {
        let room = self.my_room(session, key)?;
        self.0.sessions().remove(session);
        let session = session.to_string();
        room.ask(|reply| Cmd::Leave { session, reply: Some(reply) }).await?
    }

    /// §25.3: seats `who` in meeting room `room`'s call (the rooms service checked its rights).
    pub async fn join_meeting(
        &self,
        room: &RoomId,
        who: Attendee,
        limits: Limits,
    ) -> Result<v1::JoinCallResult, ServerError> {
        let key = CallKey::Meeting(room.clone());
        let user = UserId(i64::try_from(who.user).unwrap_or(0));
        let (participant_id, participants) = self.seat(&key, who, limits).await?;
        let (ice_servers, _) = super::ice::ice_servers(&self.0.config, user, now_ms());
        Ok(v1::JoinCallResult { participant_id, participants, ice_servers, in_lobby: false })
    }

    /// §25.1: who is in meeting room `room`'s call (empty when it is not running).
    pub async fn roster(&self, room: &RoomId) -> Vec<v1::Participant> {
        let handle = self.0.rooms().get(&CallKey::Meeting(room.clone())).cloned();
        match handle {
            Some(h) => h.ask(|reply| Cmd::Roster { reply }).await.ok().and_then(Result::ok).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// The meeting room `session` is in, if any.
    pub fn meeting_of(&self, session: &str) -> Option<RoomId> {
        match self.0.sessions().get(session).map(|s| s.0.clone()) {
            Some(CallKey::Meeting(r)) => Some(r),
            _ => None,
        }
    }

    /// §25.5: a moderator removes participant `participant_id`; answers its session and user.
    pub async fn remove_participant(
        &self,
        room: &RoomId,
        participant_id: String,
        reason: RoomCloseReason,
        barred: bool,
    ) -> Result<(String, u64), ServerError> {
        let handle = self.0.rooms().get(&CallKey::Meeting(room.clone())).cloned();
        let h = handle.ok_or_else(|| ServerError::NotFound("no such participant in this room".into()))?;
        h.ask(|reply| Cmd::Remove { participant_id, reason, barred, reply }).await?
    }

    /// §25.5: a moderator (`by`) mutes a participant's track (every track when `track_id` is empty).
    pub async fn hold_track(
        &self,
        room: &RoomId,
        participant_id: String,
        track_id: String,
        by: u64,
    ) -> Result<(), ServerError> {
        let handle = self.0.rooms().get(&CallKey::Meeting(room.clone())).cloned();
        let h = handle.ok_or_else(|| ServerError::NotFound("no such participant in this room".into()))?;
        h.ask(|reply| Cmd::Hold { participant_id, track_id, by, reply }).await?
    }

    /// UpdateRoom changed a running meeting room's limits.
    pub fn set_limits(&self, room: &RoomId, limits: Limits) {
        if let Some(h) = self.0.rooms().get(&CallKey::Meeting(room.clone())) {
            h.tell(Cmd::Limits(limits));
        }
    }

    /// §25.6: meeting room `room` closed: everyone in its call is told and the call ends.
    pub fn close_meeting(&self, room: &RoomId, reason: RoomCloseReason) {
        if let Some(h) = self.0.rooms().get(&CallKey::Meeting(room.clone())) {
            h.tell(Cmd::Close(reason));
        }
    }

    /// Where frames for devices go.
    pub(crate) fn devices(&self) -> &Devices {
        &self.0.devices
    }

    /// The session of participant `pid` (of a room on this node).
    pub fn participant_session(&self, pid: &str) -> Option<String> {
        self.0.pids().of_pid(pid).map(|p| p.0.clone())
    }

    /// The user of participant `pid` (0 for a guest).
    pub fn participant_user(&self, pid: &str) -> Option<u64> {
        self.0.pids().of_pid(pid).map(|p| p.1)
    }

    /// The participant id of `session`'s seat, if it has one on this node.
    pub fn participant_of(&self, session: &str) -> Option<String> {
        self.0.pids().of_session(session).cloned()
    }

    /// The meeting rooms whose calls run on this node.
    pub fn meeting_rooms(&self) -> Vec<RoomId> {
        self.0
            .rooms()
            .keys()
            .filter_map(|k| match k {
                CallKey::Meeting(r) => Some(r.clone()),
                CallKey::Conversation(_) => None,
            })
            .collect()
    }

    /// Sessions in meeting room `room`'s call.
    pub fn meeting_sessions(&self, room: &RoomId) -> Vec<String> {
        let key = CallKey::Meeting(room.clone());
        self.0.sessions().iter().filter(|(_, s)| s.0 == key).map(|(k, _)| k.clone()).collect()
    }

    /// §20.3.7: the device stayed away longer than the reconnect grace (or its session was
    /// revoked): it leaves its group call, here or on the node holding the room.
    pub fn session_lost(&self, session: &str) {
        self.leave_routed(session);
        let Some((key, _)) = self.0.sessions().remove(session) else { return };
        let room = self.0.rooms().get(&key).cloned();
        if let Some(room) = room {
            room.tell(Cmd::Leave { session: session.to_string(), reply: None });
        }
    }

    /// `user` stopped being a member of `conv`: each of their devices leaves its group call at
    /// once (the others get ParticipantLeft, §20.3.7).
    pub fn member_gone(&self, conv: ConvId, user: UserId) {
        self.forget_routes(|r| r.conversation == conv && r.user == user);
        let key = CallKey::Conversation(conv);
        let seats: Vec<String> =
            self.0.sessions().iter().filter(|(_, s)| s.0 == key && s.1 == user).map(|(k, _)| k.clone()).collect();
        for session in seats {
            self.session_lost(&session);
        }
    }

    /// `user`'s account was deleted: every device of theirs leaves its group call.
    pub fn user_gone(&self, user: UserId) {
        self.forget_routes(|r| r.user == user);
        let seats: Vec<String> =
            self.0.sessions().iter().filter(|(_, s)| s.1 == user).map(|(k, _)| k.clone()).collect();
        for session in seats {
            self.session_lost(&session);
        }
    }

    /// Server shutdown: every room closes its connections.
    pub fn shutdown(&self) {
        if let Some(c) = &self.0.cluster {
            c.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let rooms: Vec<RoomHandle> = self.0.rooms().drain().map(|(_, h)| h).collect();
        self.0.sessions().clear();
        for room in rooms {
            room.tell(Cmd::Shutdown);
        }
    }
}

/// A conversation's call: GroupCallState to every member of the conversation, latest count first
/// (changes coalesce). A meeting room's: whether anyone is in it, for its empty timeout (§25.6).
pub(super) async fn announce_state(sfu: Arc<Inner>, key: CallKey, mut count: watch::Receiver<u32>) {
    let conv = match key {
        CallKey::Conversation(conv) => conv,
        CallKey::Meeting(room) => return meeting_state(sfu, room, count).await,
    };
    while count.changed().await.is_ok() {
        let participants = *count.borrow_and_update();
        let mut members = Vec::new();
        let mut after = UserId::default();
        loop {
            match sfu.store.members(conv, after, 1000).await {
                Ok(page) if !page.is_empty() => {
                    after = page.last().map_or(after, |m| m.user_id);
                    members.extend(page.iter().map(|m| m.user_id));
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "listing members for GroupCallState");
                    break;
                }
            }
        }
        let ev =
            event::Event::GroupCallState(v1::GroupCallState { conversation_id: crate::wire::conv(conv), participants });
        sfu.devices.users(members, encode_server(&event_frame(ev)));
    }
}

/// Keeps a meeting room's `empty_since_ms` current while its call runs (and once it ends).
async fn meeting_state(sfu: Arc<Inner>, room: RoomId, mut count: watch::Receiver<u32>) {
    let mut empty = true;
    loop {
        let ended = count.changed().await.is_err();
        let now_empty = ended || *count.borrow_and_update() == 0;
        if now_empty != empty {
            empty = now_empty;
            let since = empty.then(|| now_ms().max(0) as u64);
            if let Err(e) = sfu.store.set_meeting_room_empty(&room, since).await {
                tracing::warn!(error = %e, room = %room, "recording whether a meeting room is empty");
            }
        }
        if ended {
            break;
        }
    }
}

/// Track ids a (publisher) offer still sends: `a=msid` of m-sections that are not recvonly,
/// inactive or rejected.
pub(super) fn offered_tracks(sdp: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    for section in sdp.split("\nm=").skip(1) {
        let rejected = section.split_whitespace().nth(1) == Some("0");
        let lines = || section.lines().map(str::trim);
        if rejected || lines().any(|l| l == "a=recvonly" || l == "a=inactive") {
            continue;
        }
        for l in lines() {
            if let Some(track) = l.strip_prefix("a=msid:").and_then(|m| m.split_whitespace().nth(1)) {
                out.insert(track.to_string());
            }
        }
    }
    out
}

/// The store-free SDP checks of `Publish` and `SubscriberAnswer`, for the fuzz target `sdp`
/// (`crate::fuzzing::sdp`).
pub(crate) fn fuzz_sdp(sdp: &str) {
    if check_sdp("publish.sdp_offer", sdp).is_err() {
        return;
    }
    if negotiate::parse_offer(sdp).is_ok() {
        let _ = offered_tracks(sdp);
    }
    let _ = negotiate::parse_answer(sdp.to_string());
}

impl From<Gone> for ServerError {
    fn from(_: Gone) -> Self {
        not_in_call()
    }
}

#[cfg(test)]
mod tests {
    use super::offered_tracks;

    /// Every `ServerError::invalid(field, message)` of the call services: its message may not
    /// carry an error value or the input (house rule: a short fixed text naming what is wrong).
    #[test]
    fn invalid_argument_messages_echo_no_error_or_input() {
        let sources = [
            ("calls/mod.rs", include_str!("../mod.rs")),
            ("calls/p2p.rs", include_str!("../p2p.rs")),
            ("calls/ice.rs", include_str!("../ice.rs")),
            ("sfu/mod.rs", include_str!("mod.rs")),
            ("sfu/room.rs", include_str!("room.rs")),
            ("sfu/negotiate.rs", include_str!("negotiate.rs")),
            ("sfu/leg.rs", include_str!("leg.rs")),
            ("sfu/forward.rs", include_str!("forward.rs")),
            ("sfu/cluster.rs", include_str!("cluster.rs")),
        ];
        let needle = ["ServerError::", "invalid("].concat();
        let mut calls = 0;
        for (file, src) in sources {
            for (at, _) in src.match_indices(&needle) {
                let rest = &src[at + needle.len()..];
                let mut depth = 1;
                let end = rest
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .map_or(rest.len(), |(i, _)| i);
                let args = &rest[..end];
                calls += 1;
                for bad in ["{e}", "{e:", "e.to_string()", ", e)", "{sdp", "{c", "{r."] {
                    assert!(!args.contains(bad), "{file}: invalid({args}) carries {bad}");
                }
                // A passed-through message only from a closure taking `&'static str`.
                let before = &src[at.saturating_sub(40)..at];
                let literal_only = before.contains("&'static str|");
                assert!(
                    !(args.ends_with(", e") || args.ends_with(", m")) || literal_only,
                    "{file}: invalid({args}) passes a value through"
                );
            }
        }
        assert!(calls >= 8, "found only {calls} calls: the scan is broken");
    }

    #[test]
    fn offered_tracks_skip_sections_that_no_longer_send() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\na=msid:s mic\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\na=msid:s cam\r\n\
            m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=msid:s old\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendrecv\r\na=msid:s screen\r\n";
        let mut got: Vec<String> = offered_tracks(sdp).into_iter().collect();
        got.sort();
        assert_eq!(got, ["mic", "screen"]);
        assert!(offered_tracks("junk").is_empty());
    }
}
