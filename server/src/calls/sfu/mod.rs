//! The integrated SFU (docs/protocol.md §20.3): group-call rooms by conversation. Each room is an
//! actor ([`room`]) owning its participants, peer connections and forwarding; this service checks
//! membership, finds or starts the room and talks to it through its cheap-clone handle. In a
//! cluster each room lives on the node that holds its lease ([`cluster`]); frames for devices go
//! through the bus, since a participant may be connected to another node.

mod cluster;
pub mod engine;
mod forward;
mod leg;
mod negotiate;
mod room;

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
use crate::session::Caller;
use crate::store::{ConvId, Store, UserId, now_ms};
pub use cluster::ClusterRole;
use engine::Engine;
use room::{Cmd, Gone, RoomHandle};

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
    rooms: Mutex<HashMap<ConvId, RoomHandle>>,
    /// The group call each session (device) is in.
    /// Each device in a group call: the call's conversation and the device's user.
    sessions: Mutex<HashMap<String, (ConvId, UserId)>>,
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
    fn rooms(&self) -> MutexGuard<'_, HashMap<ConvId, RoomHandle>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
    fn sessions(&self) -> MutexGuard<'_, HashMap<String, (ConvId, UserId)>> {
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
    /// `role` is this node's place in a cluster (`None` alone).
    pub fn new(config: CallsConfig, store: Arc<dyn Store>, bus: Arc<dyn Bus>, role: Option<ClusterRole>) -> Self {
        let engine = Engine::new(config.media_bind, config.media_public_ip, config.udp_port_min, config.udp_port_max);
        let sfu = Self(Arc::new(Inner {
            config,
            store,
            devices: Devices(bus),
            cluster: role.map(cluster::SfuCluster::new),
            engine,
            rooms: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
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

    /// The room of `conv`, started if there is none.
    fn room(&self, conv: ConvId) -> RoomHandle {
        let mut rooms = self.0.rooms();
        if let Some(h) = rooms.get(&conv).filter(|h| !h.is_closed()) {
            return h.clone();
        }
        let h = room::spawn(self.0.clone(), conv);
        rooms.insert(conv, h.clone());
        h
    }

    /// The room `session` is in for `conv`.
    fn my_room(&self, session: &str, conv: ConvId) -> Result<RoomHandle, ServerError> {
        if self.0.sessions().get(session).map(|s| s.0) != Some(conv) {
            return Err(not_in_call());
        }
        self.0.rooms().get(&conv).cloned().ok_or_else(not_in_call)
    }

    /// §20.3.2
    pub async fn join(&self, auth: &Caller, conv: u64) -> Result<v1::JoinCallResult, ServerError> {
        let conv = id("join_call.conversation_id", conv)?;
        member_view(self.0.store.as_ref(), auth.user_id, conv).await?;
        {
            let mut sessions = self.0.sessions();
            if sessions.contains_key(&auth.session_id) {
                return Err(ServerError::FailedPrecondition("this device is already in a group call".into()));
            }
            sessions.insert(auth.session_id.clone(), (conv, auth.user_id));
        }
        // A room that closes (TTL) between lookup and join answers Gone: take a fresh one.
        let mut result = Err(Gone);
        for _ in 0..3 {
            let (user, session) = (crate::wire::user(auth.user_id), auth.session_id.clone());
            result = self.room(conv).ask(|reply| Cmd::Join { user, session, reply }).await;
            if result.is_ok() {
                break;
            }
        }
        let joined = result.unwrap_or_else(|_| Err(ServerError::Unavailable("the call room is restarting".into())));
        match joined {
            Ok((participant_id, participants)) => {
                // A removal that committed during the join found no seat to free: look again now
                // that the seat exists (any later removal reaches it through the bus).
                if let Err(e) = member_view(self.0.store.as_ref(), auth.user_id, conv).await {
                    self.member_gone(conv, auth.user_id);
                    return Err(e);
                }
                let (ice_servers, _) = super::ice::ice_servers(&self.0.config, auth.user_id, now_ms());
                Ok(v1::JoinCallResult { participant_id, participants, ice_servers })
            }
            Err(e) => {
                self.0.sessions().remove(&auth.session_id);
                Err(e)
            }
        }
    }

    /// §20.3.3
    pub async fn publish(&self, auth: &Caller, r: v1::Publish) -> Result<v1::PublishResult, ServerError> {
        let conv = id("publish.conversation_id", r.conversation_id)?;
        check_sdp("publish.sdp_offer", &r.sdp_offer)?;
        let session = auth.session_id.clone();
        let sdp = r.sdp_offer;
        let sdp_answer = self.my_room(&session, conv)?.ask(|reply| Cmd::Publish { session, sdp, reply }).await??;
        Ok(v1::PublishResult { sdp_answer })
    }

    /// §20.3.4
    pub async fn subscriber_answer(&self, auth: &Caller, r: v1::SubscriberAnswer) -> Result<(), ServerError> {
        let conv = id("subscriber_answer.conversation_id", r.conversation_id)?;
        check_sdp("subscriber_answer.sdp_answer", &r.sdp_answer)?;
        let session = auth.session_id.clone();
        let sdp = r.sdp_answer;
        self.my_room(&session, conv)?.ask(|reply| Cmd::Answer { session, sdp, reply }).await?
    }

    /// §20.3.5
    pub async fn trickle(&self, auth: &Caller, r: v1::Trickle) -> Result<(), ServerError> {
        let conv = id("trickle.conversation_id", r.conversation_id)?;
        let role = match PeerRole::try_from(r.role) {
            Ok(role @ (PeerRole::Publisher | PeerRole::Subscriber)) => role,
            _ => return Err(ServerError::invalid("trickle.role", "PUBLISHER or SUBSCRIBER")),
        };
        let c = r.candidate.unwrap_or_default();
        if c.candidate.len() > MAX_CANDIDATE_BYTES || c.sdp_mid.len() > 64 {
            return Err(ServerError::invalid("trickle.candidate", "too long"));
        }
        let room = self.my_room(&auth.session_id, conv)?;
        if c.candidate.is_empty() {
            return Ok(()); // end of candidates: nothing to do on this stack
        }
        let candidate = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: Some(c.sdp_mid),
            sdp_mline_index: Some(u16::try_from(c.sdp_m_line_index).unwrap_or(0)),
            ..Default::default()
        };
        let session = auth.session_id.clone();
        room.ask(|reply| Cmd::Trickle { session, role, candidate, reply }).await?
    }

    /// §20.3.6
    pub async fn set_mute(&self, auth: &Caller, r: v1::SetMute) -> Result<(), ServerError> {
        let conv = id("set_mute.conversation_id", r.conversation_id)?;
        if r.track_id.is_empty() {
            return Err(ServerError::invalid("set_mute.track_id", "required"));
        }
        let (session, track_id, muted) = (auth.session_id.clone(), r.track_id, r.muted);
        self.my_room(&session, conv)?.ask(|reply| Cmd::Mute { session, track_id, muted, reply }).await?
    }

    /// §20.3.7
    pub async fn leave(&self, auth: &Caller, conv: u64) -> Result<(), ServerError> {
        let conv = id("leave_call.conversation_id", conv)?;
        let room = self.my_room(&auth.session_id, conv)?;
        self.0.sessions().remove(&auth.session_id);
        let session = auth.session_id.clone();
        room.ask(|reply| Cmd::Leave { session, reply: Some(reply) }).await?
    }

    /// §20.3.7: the device stayed away longer than the reconnect grace (or its session was
    /// revoked): it leaves its group call, here or on the node holding the room.
    pub fn session_lost(&self, session: &str) {
        self.leave_routed(session);
        let Some((conv, _)) = self.0.sessions().remove(session) else { return };
        let room = self.0.rooms().get(&conv).cloned();
        if let Some(room) = room {
            room.tell(Cmd::Leave { session: session.to_string(), reply: None });
        }
    }

    /// `user` stopped being a member of `conv`: each of their devices leaves its group call at
    /// once (the others get ParticipantLeft, §20.3.7).
    pub fn member_gone(&self, conv: ConvId, user: UserId) {
        self.forget_routes(|r| r.conversation == conv && r.user == user);
        let seats: Vec<String> =
            self.0.sessions().iter().filter(|(_, s)| **s == (conv, user)).map(|(k, _)| k.clone()).collect();
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

/// GroupCallState to every member of the conversation, latest count first (changes coalesce).
pub(super) async fn announce_state(sfu: Arc<Inner>, conv: ConvId, mut count: watch::Receiver<u32>) {
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
