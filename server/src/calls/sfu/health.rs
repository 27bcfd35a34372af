//! Dead-media detection (docs/protocol.md §20.3.12): a connection that should carry media (a
//! publisher with tracks, a subscriber with negotiated tracks) but from which no RTP or RTCP came
//! for `calls.media_timeout`, or whose connection state is `failed`, is LOST; the server restarts
//! ICE on a subscriber connection (RESTARTING; the client restarts a publisher connection with a
//! new `Publish`); media back → CONNECTED; nothing back within a further `calls.media_timeout` →
//! FAILED, and the participant leaves the call.

use std::sync::atomic::Ordering;
use std::time::Duration;

use confab_protocol::frames::{encode_server, event_frame};
use confab_protocol::v1::{self, MediaState, PeerRole, event};
use tokio::time::Instant;
use webrtc::peer_connection::RTCPeerConnectionState;

use super::leg::Leg;
use super::room::Room;
use crate::store::now_ms;

/// Where a connection stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    #[default]
    Ok,
    /// Lost since this instant (and, on a subscriber connection, being restarted).
    Lost(Instant, u64),
}

/// A connection's media health, stepped by the room every tick.
#[derive(Debug, Default)]
pub(super) struct Health {
    phase: Phase,
    /// Since when the connection should carry media.
    carrying_since: Option<(Instant, u64)>,
}

/// What changed.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Lost,
    Recovered,
    Failed,
}

impl Health {
    fn step(&mut self, carrying: bool, heard_ms: u64, failed: bool, timeout: Duration) -> Option<Step> {
        let (now, now_ms) = (Instant::now(), now_ms().max(0) as u64);
        if !carrying {
            *self = Health::default();
            return None;
        }
        let (_, since_ms) = *self.carrying_since.get_or_insert((now, now_ms));
        match self.phase {
            Phase::Ok => {
                let quiet_ms = now_ms.saturating_sub(heard_ms.max(since_ms));
                if failed || quiet_ms >= timeout.as_millis() as u64 {
                    self.phase = Phase::Lost(now, now_ms);
                    return Some(Step::Lost);
                }
                None
            }
            Phase::Lost(at, at_ms) => {
                if heard_ms > at_ms && !failed {
                    self.phase = Phase::Ok;
                    return Some(Step::Recovered);
                }
                (now.saturating_duration_since(at) >= timeout).then_some(Step::Failed)
            }
        }
    }
}

fn failed(leg: &Leg) -> bool {
    *leg.state.borrow() == RTCPeerConnectionState::Failed
}

impl Room {
    /// Steps every participant's connections; a participant whose media failed leaves.
    pub(super) async fn check_media(&mut self) {
        let timeout = self.sfu.config.media_timeout;
        let mut gone = Vec::new();
        for i in 0..self.participants.len() {
            for role in [PeerRole::Publisher, PeerRole::Subscriber] {
                let p = &mut self.participants[i];
                let carrying = match role {
                    PeerRole::Publisher => !p.relays.is_empty(),
                    _ => p.outs.values().any(|o| o.active.load(Ordering::Acquire)),
                };
                let leg = match role {
                    PeerRole::Publisher => match p.publisher.as_mut() {
                        Some(l) => l,
                        None => continue,
                    },
                    _ => &mut p.subscriber,
                };
                let heard = leg.link.heard_ms.load(Ordering::Relaxed);
                let is_failed = failed(leg);
                let Some(step) = leg.health.step(carrying, heard, is_failed, timeout) else { continue };
                let session = p.session.clone();
                tracing::debug!(participant = %p.id, ?role, ?step, "media health");
                match step {
                    Step::Lost => {
                        self.media_state(&session, role, MediaState::Lost);
                        if role == PeerRole::Subscriber {
                            self.participants[i].ice_restart = true;
                            self.negotiate(i).await;
                            self.media_state(&session, role, MediaState::Restarting);
                        }
                    }
                    Step::Recovered => self.media_state(&session, role, MediaState::Connected),
                    Step::Failed => {
                        self.media_state(&session, role, MediaState::Failed);
                        if !gone.contains(&session) {
                            gone.push(session);
                        }
                    }
                }
            }
        }
        for session in gone {
            {
                let mut sessions = self.sfu.sessions();
                if sessions.get(&session).is_some_and(|s| s.0 == self.key) {
                    sessions.remove(&session);
                }
            }
            let _ = self.leave(&session).await;
        }
    }

    fn media_state(&self, session: &str, role: PeerRole, state: MediaState) {
        let ev = event::Event::MediaConnectionState(v1::MediaConnectionState {
            conversation_id: self.wire,
            room_id: self.room_id.clone(),
            role: role as i32,
            state: state as i32,
        });
        self.sfu.devices.session(session, encode_server(&event_frame(ev)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn silence_then_failure_or_recovery() {
        let t = Duration::from_millis(50);
        let mut h = Health::default();
        let now = || now_ms().max(0) as u64;
        assert_eq!(h.step(false, 0, false, t), None); // nothing expected yet
        assert_eq!(h.step(true, 0, false, t), None);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(h.step(true, 0, false, t), Some(Step::Lost));
        assert_eq!(h.step(true, 0, false, t), None);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(h.step(true, now(), false, t), Some(Step::Recovered));
        assert_eq!(h.step(true, now(), true, t), Some(Step::Lost)); // connection failed
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(h.step(true, 0, true, t), Some(Step::Failed));
    }
}
