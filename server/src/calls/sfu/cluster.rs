//! Group-call rooms in a cluster (docs/operations.md "Several nodes"): each room lives on the node
//! holding its lease in the store (`RoomLeaseStore`: expiry and a fencing token). A JoinCall on
//! another node is forwarded to the holder (the handlers do that, `crate::cluster::forward`) and
//! that node remembers the route for the device's later requests; media flows to the holder's
//! UDP ports, which its SDP answers name. The holder renews its leases; one it lost (taken over
//! while it could not renew) closes its room. When the holder stops, whichever node removes its
//! leases tells the conversations' members the call ended (`GroupCallState` 0), and the next
//! JoinCall starts the room on a live node.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use confab_protocol::frames::{encode_server, event_frame};
use confab_protocol::v1::{self, client_frame::Request, event};

use super::{Inner, Sfu};
use crate::access::{id, member_view};
use crate::cluster::Rpc;
use crate::error::ServerError;
use crate::session::Caller;
use crate::store::{ConvId, UserId, now_ms};

/// This node's place in a cluster, for the SFU.
#[derive(Clone, Debug)]
pub struct ClusterRole {
    pub rpc: Rpc,
    /// This run of the node (`NODE@INCARNATION`, `crate::cluster::Cluster::holder`): leases are
    /// held by a run, so a restarted node does not mistake its former run's rooms for its own.
    pub holder: String,
    /// How long a room lease lasts without renewal.
    pub lease_ttl: Duration,
    /// How often held leases are renewed.
    pub renew_every: Duration,
}

/// A device of this node in a room another node holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Route {
    pub conversation: ConvId,
    pub user: UserId,
    pub node: String,
}

pub(super) struct SfuCluster {
    role: ClusterRole,
    /// The rooms this node holds: their fencing tokens and when this node took them.
    held: Mutex<HashMap<ConvId, Held>>,
    /// Devices (sessions) of this node in rooms held elsewhere.
    routes: Mutex<HashMap<String, Route>>,
    /// The server is stopping: its leases stay for the other nodes to end (they tell the members).
    pub(super) stopping: std::sync::atomic::AtomicBool,
}

#[derive(Clone, Copy, Debug)]
struct Held {
    fencing: i64,
    since: std::time::Instant,
}

/// A lease claimed for a JoinCall whose room never started (the join failed) is released after this.
const ROOMLESS_GRACE: Duration = Duration::from_secs(10);

impl SfuCluster {
    pub(super) fn new(role: ClusterRole) -> Self {
        Self {
            role,
            held: Mutex::new(HashMap::new()),
            routes: Mutex::new(HashMap::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn held(&self) -> MutexGuard<'_, HashMap<ConvId, Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn routes(&self) -> MutexGuard<'_, HashMap<String, Route>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn node(&self) -> &str {
        self.role.rpc.node()
    }

    fn holder(&self) -> &str {
        &self.role.holder
    }

    fn ttl_ms(&self) -> i64 {
        self.role.lease_ttl.as_millis() as i64
    }
}

impl Sfu {
    /// §20.3.2 in a cluster: the node holding `conv`'s room when it is another one; this node
    /// takes the room when nobody holds it. Members only (`NOT_FOUND` like a missing
    /// conversation). Always `None` on a single node.
    pub async fn holder(&self, auth: &Caller, conv: u64) -> Result<Option<String>, ServerError> {
        let Some(c) = &self.0.cluster else { return Ok(None) };
        let conv = id("join_call.conversation_id", conv)?;
        member_view(self.0.store.as_ref(), auth.user_id, conv).await?;
        if c.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ServerError::Unavailable("this server is stopping; retry".into()));
        }
        let keep = c.held().contains_key(&conv);
        let mut lease = self.0.store.claim_room(conv, c.holder(), now_ms(), c.ttl_ms(), None, keep).await?;
        if lease.node != c.holder() && crate::cluster::node_of(&lease.node) == c.node() {
            // Held by this node's former run (it restarted): not running any more.
            let gone = Some((lease.node.as_str(), lease.fencing));
            lease = self.0.store.claim_room(conv, c.holder(), now_ms(), c.ttl_ms(), gone, false).await?;
        }
        Ok(self.held_or_other(conv, lease))
    }

    /// The holder `node` of `conv`'s room is not running: takes the room over if a run of `node`
    /// still holds it. Returns the holder afterwards (`None`: this node).
    pub async fn take_over(&self, conv: u64, node: &str) -> Result<Option<String>, ServerError> {
        let Some(c) = &self.0.cluster else { return Ok(None) };
        let conv = id("join_call.conversation_id", conv)?;
        let lease = self.0.store.room_lease(conv).await?;
        let gone =
            lease.as_ref().filter(|l| crate::cluster::node_of(&l.node) == node).map(|l| (l.node.as_str(), l.fencing));
        let lease = self.0.store.claim_room(conv, c.holder(), now_ms(), c.ttl_ms(), gone, false).await?;
        if lease.node == c.holder() {
            tracing::warn!(conversation = %conv, from = node, "took over a group-call room whose node did not answer");
        }
        Ok(self.held_or_other(conv, lease))
    }

    fn held_or_other(&self, conv: ConvId, lease: crate::store::RoomLease) -> Option<String> {
        let c = self.0.cluster.as_ref()?;
        if lease.node == c.holder() {
            let mut held = c.held();
            let since = held
                .get(&conv)
                .filter(|h| h.fencing == lease.fencing)
                .map_or_else(std::time::Instant::now, |h| h.since);
            held.insert(conv, Held { fencing: lease.fencing, since });
            None
        } else {
            Some(crate::cluster::node_of(&lease.node).to_string())
        }
    }

    /// The node holding the room `session` joined through this node, for `conv`.
    pub fn route(&self, session: &str, conv: u64) -> Option<String> {
        let c = self.0.cluster.as_ref()?;
        c.routes().get(session).filter(|r| crate::wire::conv(r.conversation) == conv).map(|r| r.node.clone())
    }

    /// `auth`'s device joined `conv`'s room on `node` through this node.
    pub fn routed(&self, auth: &Caller, conv: u64, node: &str) {
        let (Some(c), Ok(conversation)) = (&self.0.cluster, id("join_call.conversation_id", conv)) else { return };
        let route = Route { conversation, user: auth.user_id, node: node.to_string() };
        c.routes().insert(auth.session_id.clone(), route);
    }

    /// `session` left the room it was routed to.
    pub fn unroute(&self, session: &str) {
        if let Some(c) = &self.0.cluster {
            c.routes().remove(session);
        }
    }

    pub(super) fn is_routed(&self, session: &str) -> bool {
        self.0.cluster.as_ref().is_some_and(|c| c.routes().contains_key(session))
    }

    pub(super) fn forget_routes(&self, pick: impl Fn(&Route) -> bool) {
        if let Some(c) = &self.0.cluster {
            c.routes().retain(|_, r| !pick(r));
        }
    }

    /// A routed device is gone: its seat on the holder is freed (LeaveCall forwarded).
    pub(super) fn leave_routed(&self, session: &str) {
        let Some(c) = &self.0.cluster else { return };
        let Some(route) = c.routes().remove(session) else { return };
        let rpc = c.role.rpc.clone();
        let caller = Caller { user_id: route.user, session_id: session.to_string(), expires_at_ms: 0 };
        let leave = Request::LeaveCall(v1::LeaveCall {
            room_id: String::new(),
            conversation_id: crate::wire::conv(route.conversation),
        });
        tokio::spawn(async move {
            if let Err(e) = crate::cluster::forward::to_owner(&rpc, &route.node, &caller, leave).await {
                tracing::debug!(error = %e, "leaving a group call held by another node");
            }
        });
    }

    /// Another node's run `incarnation` stopped: its rooms end. This node's devices in them are
    /// told at once (`GroupCallState` 0); of the nodes doing this at once, the one that removes a
    /// room's lease tells the conversation's members. Only expired leases are removed (a node
    /// declared down by mistake keeps renewing its own), tried again until they expire.
    pub fn node_down(&self, node: &str, incarnation: u64) {
        let Some(c) = &self.0.cluster else { return };
        let mut gone = Vec::new();
        c.routes().retain(|session, r| {
            if r.node == node {
                gone.push((session.clone(), r.conversation));
            }
            r.node != node
        });
        for (session, conv) in gone {
            let ev = event::Event::GroupCallState(v1::GroupCallState {
                conversation_id: crate::wire::conv(conv),
                participants: 0,
            });
            self.0.devices.session(&session, encode_server(&event_frame(ev)));
        }
        let (inner, holder, ttl) = (self.0.clone(), crate::cluster::holder_name(node, incarnation), c.role.lease_ttl);
        tokio::spawn(async move {
            for attempt in 0..3 {
                if attempt > 0 {
                    tokio::time::sleep(ttl).await;
                }
                match inner.store.drop_node_rooms(&holder, now_ms()).await {
                    Ok(leases) => end_rooms(&inner, &holder, leases).await,
                    Err(e) => tracing::warn!(error = %e, holder, "ending the rooms of a stopped node"),
                }
            }
        });
    }

    /// The server is stopping: its leases expire now (the others end its rooms and tell their
    /// members) and it takes no new room.
    pub async fn expire_leases(&self) {
        let Some(c) = &self.0.cluster else { return };
        c.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Err(e) = self.0.store.expire_rooms(c.holder()).await {
            tracing::warn!(error = %e, "expiring this node's room leases (they expire by themselves)");
        }
    }
}

/// Tells the members of each room whose lease was removed that its call ended.
async fn end_rooms(inner: &Inner, holder: &str, leases: Vec<crate::store::RoomLease>) {
    for lease in leases {
        tracing::info!(conversation = %lease.conversation, holder, "group call ended: its node stopped");
        let members = match inner.store.members(lease.conversation, UserId::default(), 100_000).await {
            Ok(m) => m.into_iter().map(|m| m.user_id).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "listing members for GroupCallState");
                continue;
            }
        };
        let ev = event::Event::GroupCallState(v1::GroupCallState {
            conversation_id: crate::wire::conv(lease.conversation),
            participants: 0,
        });
        inner.devices.users(members, encode_server(&event_frame(ev)));
    }
}

impl Inner {
    /// A room closed: its lease is released (if this node still holds it).
    pub(super) fn room_ended(&self, conv: ConvId) {
        let Some(c) = &self.cluster else { return };
        if c.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let Some(Held { fencing, .. }) = c.held().remove(&conv) else { return };
        let (store, holder) = (self.store.clone(), c.holder().to_string());
        tokio::spawn(async move {
            if let Err(e) = store.release_room(conv, &holder, fencing).await {
                tracing::debug!(error = %e, "releasing a room lease (it expires by itself)");
            }
        });
    }
}

/// Renews the leases of the rooms this node holds; a room whose lease was taken over closes
/// (only the holder runs a room). Ends with the SFU.
pub(super) async fn renew_leases(sfu: Weak<Inner>) {
    let every = match sfu.upgrade().and_then(|s| s.cluster.as_ref().map(|c| c.role.renew_every)) {
        Some(d) => d,
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = sfu.upgrade() else { return };
        let Some(c) = &inner.cluster else { return };
        // Leases of rooms that never started (their JoinCall failed) are released.
        let roomless: Vec<ConvId> = {
            let rooms = inner.rooms();
            let held = c.held();
            held.iter()
                .filter(|(conv, h)| {
                    h.since.elapsed() > ROOMLESS_GRACE
                        && rooms
                            .get(&super::CallKey::Conversation(**conv))
                            .is_none_or(super::room::RoomHandle::is_closed)
                })
                .map(|(conv, _)| *conv)
                .collect()
        };
        for conv in roomless {
            inner.room_ended(conv);
        }
        let held: Vec<(ConvId, i64)> = c.held().iter().map(|(k, v)| (*k, v.fencing)).collect();
        if held.is_empty() {
            continue;
        }
        if c.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let renewed = match inner.store.renew_rooms(c.holder(), &held, now_ms(), c.ttl_ms()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "renewing group-call room leases");
                continue;
            }
        };
        for (conv, fencing) in held.into_iter().filter(|(conv, _)| !renewed.contains(conv)) {
            let lost = c.held().get(&conv).is_some_and(|h| h.fencing == fencing);
            if lost {
                c.held().remove(&conv);
                tracing::warn!(conversation = %conv, "group-call room lease taken over by another node: room closed");
                let room = inner.rooms().remove(&super::CallKey::Conversation(conv));
                if let Some(room) = room {
                    room.tell(super::room::Cmd::Shutdown);
                }
            }
        }
    }
}
