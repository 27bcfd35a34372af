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

/// Client candidates kept while the connection has no remote description.
const MAX_QUEUED_CANDIDATES: usize = 64;

pub(super) type OnTrack = Box<dyn Fn(Arc<dyn TrackRemote>) + Send + Sync>;

struct Handler {
    devices: Devices,
    session: String,
    conversation_id: u64,
    role: PeerRole,
    state: watch::Sender<RTCPeerConnectionState>,
    on_track: Option<OnTrack>,
}

impl Handler {
    fn trickle(&self, candidate: v1::IceCandidate) {
        let ev = v1::ServerTrickle {
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
            self.trickle(v1::IceCandidate {
                candidate: init.candidate,
                sdp_mid: init.sdp_mid.unwrap_or_default(),
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
    has_remote: bool,
    queued: Vec<RTCIceCandidateInit>,
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
            role,
            state: state_tx,
            on_track,
        });
        let pc = engine.build(handler).await?;
        Ok(Leg { pc, state, has_remote: false, queued: Vec::new() })
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
    pub async fn add_candidate(&mut self, c: RTCIceCandidateInit) -> Result<(), String> {
        if !self.has_remote {
            if self.queued.len() >= MAX_QUEUED_CANDIDATES {
                return Err(format!("more than {MAX_QUEUED_CANDIDATES} candidates before the first offer/answer"));
            }
            self.queued.push(c);
            return Ok(());
        }
        self.pc.add_ice_candidate(c).await.map_err(|e| e.to_string())
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
