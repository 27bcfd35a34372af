//! Domain events and the bus that carries them: what one feature's committed change means for
//! the others. Writers publish after their change committed, in commit order; fan-out to
//! connections, presence, calls (and later push and search indexing) subscribe. The bus is a
//! trait: [`LocalBus`] delivers in process; a NATS bus can sit behind the same trait.

use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::error::ServerError;
use crate::hub::Audience;
use crate::session::Caller;
use crate::store::{Applied, ConvId, LogBody, RevokeReason, UserId};
use crate::wire;

/// A committed write as every node delivers it: its live frames encoded once, with where they
/// go, and the memberships it ended. Built by the writer on the committing node; another node
/// gets the same from the cluster link (`crate::cluster`) without the typed change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Live {
    /// Conversation log entries in seq order, delivered to `audience`.
    pub entries: Vec<SeqFrame>,
    /// Who receives `entries` and `receipts` live: the conversation's members (and a leaver).
    pub audience: Vec<UserId>,
    /// User log entries, each to its user; `seq` is the user-log seq.
    pub user_updates: Vec<UserFrame>,
    /// Receipt watermark changes, to `audience` (watermarks only grow: no seq).
    pub receipts: Vec<Bytes>,
    /// New inbox entries, each to its user (`seq` is 0).
    pub notifications: Vec<UserFrame>,
    /// `(conversation, user)` for every member who stopped being one (left, removed).
    pub members_gone: Vec<(ConvId, UserId)>,
    /// The changes this one caused in other conversations, delivered after it.
    pub cascade: Vec<Live>,
}

/// One conversation log entry's frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqFrame {
    pub conversation: ConvId,
    pub seq: i64,
    pub frame: Bytes,
}

/// A frame for one user; `seq` orders it in that user's log (0: not in a log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserFrame {
    pub user: UserId,
    pub seq: i64,
    pub frame: Bytes,
}

impl Live {
    /// Encodes `applied`'s live frames, each once.
    pub fn of(applied: &Applied) -> Self {
        let mut members_gone = Vec::new();
        for e in &applied.events {
            if let LogBody::Left(u) | LogBody::Removed(u) = e.body {
                members_gone.push((e.conversation_id, u));
            }
        }
        Self {
            entries: applied
                .events
                .iter()
                .map(|e| SeqFrame { conversation: e.conversation_id, seq: e.seq, frame: wire::event_frame_bytes(e) })
                .collect(),
            audience: applied.audience.clone(),
            user_updates: applied
                .user_updates
                .iter()
                .map(|u| UserFrame { user: u.user_id, seq: u.user_seq, frame: wire::user_update_frame_bytes(u) })
                .collect(),
            receipts: applied.receipts.iter().map(wire::receipt_frame_bytes).collect(),
            notifications: applied
                .notifications
                .iter()
                .map(|n| UserFrame { user: n.user_id, seq: 0, frame: wire::notification_frame_bytes(n) })
                .collect(),
            members_gone,
            cascade: applied.cascade.iter().map(Self::of).collect(),
        }
    }
}

/// A committed write: the typed change where it was committed, and its live frames.
#[derive(Debug)]
pub struct Commit {
    /// The change itself; `None` on the other nodes of a cluster. Subscribers that must act once
    /// per change in the whole cluster (push, search indexing) act where this is present.
    pub applied: Option<Applied>,
    pub live: Live,
}

impl Commit {
    /// A change committed on this node.
    pub fn local(applied: Applied) -> Self {
        let live = Live::of(&applied);
        Self { applied: Some(applied), live }
    }

    /// A change committed on another node.
    pub fn remote(live: Live) -> Self {
        Self { applied: None, live }
    }
}

/// Something that happened, after it was made durable (or, for sessions and presence, after the
/// hub changed). In a cluster (`crate::cluster`) every event but the session ones also reaches
/// the other nodes' subscribers, in the order this node published them.
#[derive(Clone, Debug)]
pub enum DomainEvent {
    /// A write of the batched writer committed: its conversation log entries (posted, edited,
    /// deleted, members added, removed, left, roles and ownership, pins, reactions, calls), the
    /// user-log entries, receipts, notifications, and the changes it caused in other
    /// conversations (cascades). One event per write, in commit order.
    Committed(Arc<Commit>),
    /// An account was deleted (§11.11); published after the deletion's `Committed`.
    /// `audience` is who could see the user's presence just before (§17): the deletion took the
    /// user out of the groups that made many of them co-members.
    AccountDeleted { user: UserId, audience: Vec<UserId> },
    /// `blocker` blocked `blocked` (§18).
    UserBlocked { blocker: UserId, blocked: UserId },
    /// Sessions ended by revocation (§11.7); their connections must close, on every node.
    SessionsRevoked { sessions: Vec<String>, reason: RevokeReason },
    /// A connection (hub key `key`) of this node authenticated as `caller`. Not sent to other nodes.
    SessionAttached { caller: Caller, key: u64 },
    /// A connection of `caller` on this node closed or changed identity; `remaining` is how many
    /// connections that session still has on this node. Not sent to other nodes.
    SessionDetached { caller: Caller, key: u64, remaining: usize },
    /// A user's presence may have changed (§17): the hub's aggregate over their devices, on this
    /// node and (in a cluster) the others, is what gets announced.
    PresenceChanged { user: UserId },
    /// Encoded frames for connections wherever they are: call state (§20.2), call signals,
    /// typing (§16). `droppable` frames never close a connection whose queue is full.
    Frames { frames: Vec<(Audience, Bytes)>, droppable: bool },
    /// A call started ringing (§20.2.1): its callees' devices with push targets are pushed, high
    /// priority (§24.2). Only on the node that started it.
    CallInvited { call_id: String, conversation: ConvId, caller: UserId, callees: Vec<UserId>, ring_deadline_ms: i64 },
    /// Another node of the cluster stopped (its heartbeat stopped or it said goodbye): its
    /// devices are gone. Only ever published by the cluster link on this node.
    NodeDown { node: String, incarnation: u64 },
}

impl DomainEvent {
    /// The members who stopped being members through this event: `(conversation, user)` for
    /// every `Left` and `Removed` entry, cascades included. Allocates nothing when there are none.
    pub fn members_gone(&self) -> Vec<(ConvId, UserId)> {
        fn walk(l: &Live, out: &mut Vec<(ConvId, UserId)>) {
            out.extend_from_slice(&l.members_gone);
            for c in &l.cascade {
                walk(c, out);
            }
        }
        let mut out = Vec::new();
        if let Self::Committed(c) = self {
            walk(&c.live, &mut out);
        }
        out
    }
}

/// Runs a durable change and the events it publishes to the end, even when the request that
/// started it is dropped (its client went away mid-request): a committed change is always
/// announced. Panics in `work` propagate.
///
/// # Errors
/// `work`'s own error; `UNAVAILABLE` when the runtime is shutting down.
pub async fn to_completion<T: Send + 'static>(
    work: impl Future<Output = Result<T, ServerError>> + Send + 'static,
) -> Result<T, ServerError> {
    match tokio::spawn(work).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(ServerError::Unavailable("the server is shutting down".into())),
    }
}

/// A subscriber: called for every event, in publication order, on the publisher's thread. It
/// must not block: anything slow goes to its own bounded queue or a tracked task.
pub trait Subscriber: Send + Sync + 'static {
    /// A name for logs.
    fn name(&self) -> &'static str;
    /// Reacts to one event.
    fn handle(&self, event: &DomainEvent);
}

/// Where domain events are published and subscribed to.
pub trait Bus: Send + Sync + std::fmt::Debug + 'static {
    /// Hands `event` to every subscriber, in subscription order; returns when they all have it.
    fn publish(&self, event: DomainEvent);
    /// Adds a subscriber for every later event.
    fn subscribe(&self, subscriber: Arc<dyn Subscriber>);
}

/// The in-process bus: subscribers are called synchronously, so events keep the order in which
/// they were published (the writer publishes in commit order).
#[derive(Default)]
pub struct LocalBus {
    subscribers: RwLock<Vec<Arc<dyn Subscriber>>>,
}

impl std::fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.subscribers().iter().map(|s| s.name()).collect();
        f.debug_struct("LocalBus").field("subscribers", &names).finish()
    }
}

impl LocalBus {
    fn subscribers(&self) -> Vec<Arc<dyn Subscriber>> {
        self.subscribers.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl Bus for LocalBus {
    fn publish(&self, event: DomainEvent) {
        for s in self.subscribers() {
            s.handle(&event);
        }
    }

    fn subscribe(&self, subscriber: Arc<dyn Subscriber>) {
        self.subscribers.write().unwrap_or_else(std::sync::PoisonError::into_inner).push(subscriber);
    }
}

/// A subscriber's bounded queue to its own task, for work that must not block the publisher.
/// `post` never blocks: what does not fit is dropped and the queue remembers it (`overflowed`),
/// so a subscriber whose source of truth is durable (the logs) catches up by a sweep instead.
/// The receiving end is taken once, by the task that serves it.
pub struct Mailbox<T> {
    tx: tokio::sync::mpsc::Sender<T>,
    rx: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<T>>>,
    overflow: std::sync::atomic::AtomicBool,
    wake: tokio::sync::Notify,
}

impl<T> std::fmt::Debug for Mailbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox").field("queued", &(self.tx.max_capacity() - self.tx.capacity())).finish()
    }
}

impl<T> Mailbox<T> {
    /// A queue of `capacity` items.
    pub fn new(capacity: usize) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        Self {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            overflow: std::sync::atomic::AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Queues `item`; when the queue is full, drops it and wakes the serving task (see
    /// [`Mailbox::overflowed`]).
    pub fn post(&self, item: T) {
        if self.tx.try_send(item).is_err() {
            self.overflow.store(true, std::sync::atomic::Ordering::Release);
            self.wake.notify_one();
        }
    }

    /// Queues `item`, waiting for room; `false` when nobody serves the queue any more.
    pub async fn send(&self, item: T) -> bool {
        self.tx.send(item).await.is_ok()
    }

    /// The receiving end, for the one task that serves the queue (`None` once taken).
    pub fn take_receiver(&self) -> Option<tokio::sync::mpsc::Receiver<T>> {
        self.rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    /// Resolves when an item was dropped for lack of room.
    pub async fn dropped(&self) {
        self.wake.notified().await;
    }

    /// Whether an item was dropped since the last call (and forgets it).
    pub fn overflowed(&self) -> bool {
        self.overflow.swap(false, std::sync::atomic::Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LogEvent;
    use std::sync::Mutex;

    struct Recorder(&'static str, Arc<Mutex<Vec<String>>>);

    impl Subscriber for Recorder {
        fn name(&self) -> &'static str {
            self.0
        }
        fn handle(&self, event: &DomainEvent) {
            if let DomainEvent::AccountDeleted { user, .. } = event {
                self.1.lock().unwrap().push(format!("{}:{user}", self.0));
            }
        }
    }

    #[test]
    fn every_subscriber_sees_every_event_in_publication_order() {
        let bus = LocalBus::default();
        let log = Arc::new(Mutex::new(Vec::new()));
        bus.subscribe(Arc::new(Recorder("a", log.clone())));
        bus.subscribe(Arc::new(Recorder("b", log.clone())));
        for user in 1..=3 {
            bus.publish(DomainEvent::AccountDeleted { user: UserId(user), audience: Vec::new() });
        }
        assert_eq!(*log.lock().unwrap(), ["a:1", "b:1", "a:2", "b:2", "a:3", "b:3"]);
    }

    #[test]
    fn members_gone_walks_cascades() {
        let entry = |conv, body| LogEvent { conversation_id: conv, seq: 1, actor_id: UserId(9), at_ms: 0, body };
        let applied = Applied {
            events: vec![entry(ConvId(1), LogBody::Removed(UserId(5)))],
            cascade: vec![Applied { events: vec![entry(ConvId(2), LogBody::Left(UserId(9)))], ..Default::default() }],
            ..Default::default()
        };
        let e = DomainEvent::Committed(Arc::new(Commit::local(applied)));
        assert_eq!(e.members_gone(), [(ConvId(1), UserId(5)), (ConvId(2), UserId(9))]);
    }

    #[tokio::test]
    async fn a_full_mailbox_drops_and_remembers_it() {
        let m = Mailbox::new(1);
        m.post(1);
        m.post(2);
        assert!(m.overflowed());
        assert!(!m.overflowed(), "forgotten once told");
        let mut rx = m.take_receiver().expect("receiver");
        assert_eq!(rx.recv().await, Some(1));
        assert!(m.take_receiver().is_none(), "taken once");
        assert!(m.send(3).await);
        assert_eq!(rx.recv().await, Some(3));
    }
}
