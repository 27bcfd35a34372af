//! One of a participant's two peer connections (docs/protocol.md §20.3.1, §20.3.5): its event
//! handler, which only forwards (server candidates to the device as `ServerTrickle`, connection
//! state into a watch channel, new remote tracks to the room through a callback that must not
//! block), and the client candidates queued until a remote description is applied.

use std::sync::Arc;

use bytes::Bytes;
use confab_protocol::frames::{encode_server, event_frame};
use confab_protocol::v1::{self, PeerRole, event};
use tokio::sync::watch;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCIceGatheringState, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState,
};

use super::Devices;
use super::engine::Engine;
use super::link::LinkStats;

/// Client candidates kept while the connection has no remote description.
const MAX_QUEUED_CANDIDATES: usize = 64;

pub(super) type OnTrack = Box<dyn Fn(Arc<dyn TrackRemote>) + Send + Sync>;

struct Handler {
    devices: Devices,
    session: String,
    conversation_id: u64,
    room_id: String,
    role: PeerRole,
    state: watch::Sender<RTCPeerConnectionState>,
    on_track: Option<OnTrack>,
    /// The first m-section's mid of the local description (the bundle's transport), for the
    /// `sdp_mid` of server candidates.
    first_mid: Arc<std::sync::Mutex<String>>,
}

impl Handler {
    fn trickle(&self, candidate: v1::IceCandidate) {
        let ev = v1::ServerTrickle {
            room_id: self.room_id.clone(),
            conversation_id: self.conversation_id,
            role: self.role as i32,
            candidate: Some(candidate),
        };
        let frame: Bytes = encode_server(&event_frame(event::Event::ServerTrickle(ev)));
        self.devices.session(&self.session, frame);
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, ev: RTCPeerConnectionIceEvent) {
        if let Ok(init) = ev.candidate.to_json() {
            // One bundled transport: every candidate belongs to the first m-section (§20.3.5).
            let first = self.first_mid.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            let sdp_mid = init.sdp_mid.filter(|m| !m.is_empty()).unwrap_or(first);
            self.trickle(v1::IceCandidate {
                candidate: init.candidate,
                sdp_mid,
                sdp_m_line_index: u32::from(init.sdp_mline_index.unwrap_or(0)),
            });
        }
    }
    async fn on_ice_gathering_state_change(&self, s: RTCIceGatheringState) {
        if s == RTCIceGatheringState::Complete {
            self.trickle(v1::IceCandidate::default()); // end of candidates
        }
    }
    async fn on_connection_state_change(&self, s: RTCPeerConnectionState) {
        self.state.send_replace(s);
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if let Some(f) = &self.on_track {
            f(track);
        }
    }
}

/// A peer connection of the SFU with one device.
pub(super) struct Leg {
    pub pc: Arc<dyn PeerConnection>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    /// What arrives on the connection (§20.3.10, §20.3.12).
    pub link: Arc<LinkStats>,
    /// Dead-media detection (§20.3.12).
    pub(super) health: super::health::Health,
    has_remote: bool,
    queued: Vec<RTCIceCandidateInit>,
    first_mid: Arc<std::sync::Mutex<String>>,
}

impl std::fmt::Debug for Leg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leg").field("state", &*self.state.borrow()).finish_non_exhaustive()
    }
}

/// Who a leg belongs to.
pub(super) struct LegOwner<'a> {
    pub devices: &'a Devices,
    pub session: &'a str,
    pub conversation_id: u64,
    /// The meeting room's id, or empty for a conversation's call.
    pub room_id: &'a str,
}

impl Leg {
    pub async fn open(
        engine: &Engine,
        owner: LegOwner<'_>,
        role: PeerRole,
        on_track: Option<OnTrack>,
    ) -> Result<Leg, String> {
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let handler = Arc::new(Handler {
            devices: owner.devices.clone(),
            session: owner.session.to_string(),
            conversation_id: owner.conversation_id,
            room_id: owner.room_id.to_string(),
            role,
            state: state_tx,
            on_track,
            first_mid: Arc::default(),
        });
        let first_mid = handler.first_mid.clone();
        let link = Arc::new(LinkStats::default());
        let pc = engine.build_tapped(handler, Some(link.clone())).await?;
        Ok(Leg { pc, state, link, health: Default::default(), has_remote: false, queued: Vec::new(), first_mid })
    }

    /// A local description is being applied: its first mid names the candidates gathered from
    /// now on.
    pub fn local_sdp_applied(&mut self, sdp: &str) {
        if let Some(mid) = sdp.lines().find_map(|l| l.trim().strip_prefix("a=mid:")) {
            *self.first_mid.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = mid.to_string();
        }
    }

    /// A remote description is applied: queued candidates go in.
    pub async fn remote_applied(&mut self) {
        self.has_remote = true;
        for c in std::mem::take(&mut self.queued) {
            if let Err(e) = self.pc.add_ice_candidate(c).await {
                tracing::debug!(error = %e, "queued ICE candidate refused");
            }
        }
    }

    /// Adds a client candidate now, or once a remote description is applied.
    ///
    /// Errors: a fixed text for the client (never the candidate or the stack's error, which is
    /// logged at debug): too many queued before the first offer/answer, or not usable (RFC 8839).
    pub async fn add_candidate(&mut self, c: RTCIceCandidateInit) -> Result<(), &'static str> {
        if !self.has_remote {
            if self.queued.len() >= MAX_QUEUED_CANDIDATES {
                return Err("too many candidates before the first offer/answer");
            }
            self.queued.push(c);
            return Ok(());
        }
        self.pc.add_ice_candidate(c).await.map_err(|e| {
            tracing::debug!(error = %e, "a client ICE candidate refused");
            "not a usable ICE candidate (RFC 8839 candidate-attribute)"
        })
    }

    /// Closes the connection in the background (it takes up to ~100 ms).
    pub fn close(self) {
        let pc = self.pc;
        tokio::spawn(async move {
            if let Err(e) = pc.close().await {
                tracing::debug!(error = %e, "closing a peer connection");
            }
        });
    }
}
