//! Calls (docs/protocol.md §20): the service behind the call handlers. Peer-to-peer calls are a
//! state machine in memory ([`p2p::Registry`]) with a ringing timer per call and a reconnect
//! grace per party; their end goes into the conversation log through the ordered writer. The
//! registry sits behind this service so a bus can later route calls between nodes. Group calls
//! (§20.3) go through the integrated SFU ([`sfu::Sfu`]).

pub mod candidates;
pub mod ice;
pub mod p2p;
pub mod sfu;

use std::sync::{Arc, Mutex};

use confab_protocol::frames::{encode_server, event_frame};
use confab_protocol::v1::{self, CallMedia, HangupReason, call_signal, event};

use crate::access::{id, member_view};
use crate::bus::{Bus, DomainEvent, Subscriber};
use crate::config::CallsConfig;
use crate::error::ServerError;
use crate::hub::{Audience, Hub};
use crate::session::Caller;
use crate::store::{ConvKind, Store, UserId, WriteOp, now_ms};
use crate::writer::Writer;
use p2p::{Effects, Party, Registry};

/// Longest SDP accepted in a signal (bytes).
const MAX_SDP_BYTES: usize = 64 * 1024;
/// Longest ICE candidate line accepted (bytes).
const MAX_CANDIDATE_BYTES: usize = 2048;

struct Inner {
    config: CallsConfig,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    bus: Arc<dyn Bus>,
    writer: Writer,
    registry: Mutex<Registry>,
    sfu: sfu::Sfu,
    /// This node's name in a cluster: the owner part of the call ids it makes.
    node: Option<String>,
}

/// The calls service: a cheap-clone handle.
#[derive(Clone)]
pub struct Calls(Arc<Inner>);

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls").finish_non_exhaustive()
    }
}

/// An opaque random id (calls, parties, participants).
pub(crate) fn random_id(prefix: &str) -> String {
    let mut r = [0u8; 12];
    getrandom::fill(&mut r).expect("system randomness");
    format!("{prefix}{}", hex::encode(r))
}

impl Calls {
    /// `role` is this node's place in a cluster (`None` alone): ringing calls live on the node
    /// that started them, and their ids say which (see [`owner`](Self::owner)); group-call rooms
    /// on the node holding their lease. The SFU keeps its gauges in `metrics`.
    pub fn new(
        config: CallsConfig,
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        bus: Arc<dyn Bus>,
        writer: Writer,
        role: Option<sfu::ClusterRole>,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        let node = role.as_ref().map(|r| r.rpc.node().to_string());
        let sfu = sfu::Sfu::new(config.clone(), store.clone(), bus.clone(), role, metrics);
        let registry = Mutex::new(Registry::default());
        Self(Arc::new(Inner { config, store, hub, bus, writer, registry, sfu, node }))
    }

    /// The other node that owns ringing call `call_id`, if not this one. In a cluster a call id is
    /// `call-HEX.NODE`; the id is opaque to clients (§20.2).
    pub fn owner<'a>(&self, call_id: &'a str) -> Option<&'a str> {
        let (_, node) = call_id.rsplit_once('.')?;
        (Some(node) != self.0.node.as_deref() && crate::config::is_token(node)).then_some(node)
    }

    /// The group-call SFU (§20.3).
    pub fn sfu(&self) -> &sfu::Sfu {
        &self.0.sfu
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.0.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// §20.1
    pub fn ice_servers(&self, auth: &Caller) -> (Vec<v1::IceServer>, u64) {
        ice::ice_servers(&self.0.config, auth.user_id, now_ms())
    }

    /// Publishes the events of a transition (`CallEvents`, delivered by fan-out) and records an
    /// ended call (in the background: the log write must not hold up the request that ended it).
    fn apply(&self, fx: Effects) {
        self.publish_events(fx.events);
        if let Some(ended) = fx.ended {
            let writer = self.0.writer.clone();
            tokio::spawn(async move {
                let op = WriteOp::CallEnded {
                    conversation_id: ended.conversation,
                    caller: ended.caller,
                    record: ended.record,
                    missed_by: ended.missed_by,
                    now_ms: now_ms(),
                };
                if let Err(e) = writer.submit(op).await {
                    tracing::warn!(error = %e, "recording the end of a call");
                }
            });
        }
    }

    /// Call events for devices wherever they are connected, each encoded once.
    fn publish_events(&self, events: Vec<(Audience, event::Event)>) {
        if !events.is_empty() {
            let frames = events.into_iter().map(|(to, ev)| (to, encode_server(&event_frame(ev)))).collect();
            self.0.bus.publish(DomainEvent::Frames { frames, droppable: false });
        }
    }

    /// §20.2.1: rings every device of the conversation's other members.
    pub async fn start(&self, auth: &Caller, conv: u64, media: i32) -> Result<v1::StartCallResult, ServerError> {
        let conv = id("start_call.conversation_id", conv)?;
        if !matches!(CallMedia::try_from(media), Ok(CallMedia::Audio | CallMedia::Video)) {
            return Err(ServerError::invalid("start_call.media", "AUDIO or VIDEO"));
        }
        let view = member_view(self.0.store.as_ref(), auth.user_id, conv).await?;
        let limit = self.0.config.max_ring_members;
        let members = self.0.store.members(conv, UserId::default(), limit + 1).await?;
        if members.len() > limit as usize {
            return Err(ServerError::FailedPrecondition(format!(
                "conversations of more than {limit} members have group calls (JoinCall), not ringing"
            )));
        }
        // Members who blocked the caller are not rung; in a direct conversation the block refuses
        // the call, as it refuses messages (§18).
        let blockers = self.0.store.blockers(auth.user_id).await?;
        let others = members.iter().map(|m| m.user_id).filter(|u| *u != auth.user_id);
        let (blocked, callees): (Vec<_>, Vec<_>) = others.partition(|u| blockers.contains(u));
        // Nor can a deleted account be called (§21), as it cannot be written to.
        let peer_deleted = match view.peer_user_id.filter(|_| view.kind == ConvKind::Direct) {
            Some(peer) => self.0.store.users(&[peer]).await?.first().is_none_or(|u| u.deleted),
            None => false,
        };
        if (!blocked.is_empty() && view.kind == ConvKind::Direct) || peer_deleted {
            return Err(ServerError::PermissionDenied("you cannot call this user".into()));
        }
        if callees.is_empty() {
            return Err(ServerError::FailedPrecondition("nobody else to call in this conversation".into()));
        }
        let call_id = match &self.0.node {
            Some(node) => format!("{}.{node}", random_id("call-")),
            None => random_id("call-"),
        };
        let caller = Party { user: auth.user_id, session: auth.session_id.clone(), party_id: random_id("party-") };
        let party_id = caller.party_id.clone();
        let deadline = now_ms() + self.0.config.ring_timeout.as_millis() as i64;
        let rung = callees.clone();
        let fx = self.registry().start(&call_id, conv, media, caller, callees, deadline)?;
        self.apply(fx);
        // Devices without a live connection learn of it by push (§24).
        self.0.bus.publish(DomainEvent::CallInvited {
            call_id: call_id.clone(),
            conversation: conv,
            caller: auth.user_id,
            callees: rung.clone(),
            ring_deadline_ms: deadline,
        });
        // A removal that committed while the call was set up found no call to end: look again,
        // now that the call is registered (any later removal reaches it through the bus).
        let members: Vec<_> =
            self.0.store.members(conv, UserId::default(), limit + 1).await?.into_iter().map(|m| m.user_id).collect();
        for gone in rung.iter().chain([&auth.user_id]).filter(|u| !members.contains(u)) {
            self.member_gone(conv, *gone);
        }
        let this = self.clone();
        let (id2, ttl) = (call_id.clone(), self.0.config.ring_timeout);
        tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            let fx = this.registry().expire(&id2, now_ms());
            this.apply(fx);
        });
        let (ice_servers, _) = self.ice_servers(auth);
        Ok(v1::StartCallResult { call_id, party_id, ring_deadline_ms: deadline.max(0) as u64, ice_servers })
    }

    /// §20.2.2
    pub fn ring(&self, auth: &Caller, call_id: &str) -> Result<(), ServerError> {
        let fx = self.registry().ring(call_id, auth.user_id)?;
        self.apply(fx);
        Ok(())
    }

    /// §20.2.3
    pub fn accept(&self, auth: &Caller, call_id: &str) -> Result<v1::AcceptCallResult, ServerError> {
        let me = Party { user: auth.user_id, session: auth.session_id.clone(), party_id: random_id("party-") };
        let party_id = me.party_id.clone();
        let (peer_party_id, fx) = self.registry().accept(call_id, me, now_ms())?;
        self.apply(fx);
        let (ice_servers, _) = self.ice_servers(auth);
        Ok(v1::AcceptCallResult { party_id, peer_party_id, ice_servers })
    }

    /// §20.2.4
    pub fn reject(&self, auth: &Caller, call_id: &str, reason: i32) -> Result<(), ServerError> {
        let reason = HangupReason::try_from(reason).unwrap_or(HangupReason::Unspecified);
        let fx = self.registry().reject(call_id, auth.user_id, reason, now_ms())?;
        self.apply(fx);
        Ok(())
    }

    /// §20.2.5
    pub fn hangup(&self, auth: &Caller, call_id: &str, reason: i32) -> Result<(), ServerError> {
        let reason = HangupReason::try_from(reason)
            .map_err(|_| ServerError::invalid("hangup_call.reason", "not a HangupReason"))?;
        let fx = self.registry().hangup(call_id, auth.user_id, &auth.session_id, reason, now_ms())?;
        self.apply(fx);
        Ok(())
    }

    /// §20.2.6: relays an offer, answer or candidate to the other party's device.
    pub fn signal(&self, auth: &Caller, mut s: v1::CallSignal) -> Result<(), ServerError> {
        match &s.signal {
            None => return Err(ServerError::invalid("call_signal.signal", "an offer, answer or candidate")),
            Some(call_signal::Signal::SdpOffer(sdp) | call_signal::Signal::SdpAnswer(sdp)) => {
                if sdp.is_empty() || sdp.len() > MAX_SDP_BYTES {
                    return Err(ServerError::invalid("call_signal.sdp", format!("1..={MAX_SDP_BYTES} bytes")));
                }
            }
            Some(call_signal::Signal::IceCandidate(c)) => {
                if c.candidate.len() > MAX_CANDIDATE_BYTES || c.sdp_mid.len() > 64 {
                    return Err(ServerError::invalid("call_signal.ice_candidate", "too long"));
                }
            }
        }
        let (from, to_session) = self.registry().signal(&s.call_id, auth.user_id, &auth.session_id)?;
        s.from_party_id = from;
        self.publish_events(vec![(Audience::Session(to_session), event::Event::CallSignal(s))]);
        Ok(())
    }

    /// The last connection of `session` on some node closed: if the session takes part in a
    /// call, the call ends (a peer-to-peer call) or the device leaves (a group call, §20.3.7)
    /// unless the device is connected again, to any node, within the grace period.
    fn connection_closed(&self, session: &str) {
        let p2p = self.registry().in_call(session);
        let group = self.0.sfu.in_call(session);
        if !p2p && !group {
            return;
        }
        let this = self.clone();
        let session = session.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(this.0.config.reconnect_grace).await;
            if !this.0.hub.connected_anywhere(&session) {
                if p2p {
                    let fx = this.registry().session_lost(&session, now_ms());
                    this.apply(fx);
                }
                if group {
                    this.0.sfu.session_lost(&session);
                }
            }
        });
    }
}

impl Calls {
    /// Revoked sessions cannot come back: their calls end (CONNECTION_LOST) and their devices
    /// leave group calls at once, without the reconnect grace.
    fn sessions_revoked(&self, sessions: &[String]) {
        for s in sessions {
            let fx = self.registry().session_lost(s, now_ms());
            self.apply(fx);
            self.0.sfu.session_lost(s);
        }
    }

    /// Whoever stops being a member stops ringing, ends the call they are a party to, and leaves
    /// the conversation's group call (docs/protocol.md §21).
    fn member_gone(&self, conv: crate::store::ConvId, user: crate::store::UserId) {
        let fx = self.registry().member_gone(conv, user, now_ms());
        self.apply(fx);
        self.0.sfu.member_gone(conv, user);
    }

    /// A deleted account ends every call it is in (§21).
    fn user_gone(&self, user: crate::store::UserId) {
        let effects = self.registry().user_gone(user, now_ms());
        for fx in effects {
            self.apply(fx);
        }
        self.0.sfu.user_gone(user);
    }
}

/// Calls follow membership, accounts and sessions.
impl Subscriber for Calls {
    fn name(&self) -> &'static str {
        "calls"
    }

    fn handle(&self, event: &DomainEvent) {
        match event {
            DomainEvent::Committed(_) => {
                for (conv, user) in event.members_gone() {
                    self.member_gone(conv, user);
                }
            }
            DomainEvent::AccountDeleted { user, .. } => self.user_gone(*user),
            DomainEvent::SessionsRevoked { sessions, .. } => self.sessions_revoked(sessions),
            DomainEvent::SessionDetached { caller, remaining: 0, .. } => self.connection_closed(&caller.session_id),
            DomainEvent::UserBlocked { blocker, blocked } => {
                let effects = self.registry().blocked(*blocker, *blocked, now_ms());
                for fx in effects {
                    self.apply(fx);
                }
            }
            DomainEvent::SessionDetached { .. }
            | DomainEvent::SessionAttached { .. }
            | DomainEvent::PresenceChanged { .. }
            | DomainEvent::CallInvited { .. }
            | DomainEvent::Frames { .. } => {}
            // Its rooms end; calls it held are gone with it (their devices' rings time out).
            DomainEvent::NodeDown { node, incarnation } => self.0.sfu.node_down(node, *incarnation),
        }
    }
}
