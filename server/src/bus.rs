//! Domain events and the bus that carries them: what one feature's committed change means for
//! the others. Writers publish after their change committed, in commit order; fan-out to
//! connections, presence, calls (and later push and search indexing) subscribe. The bus is a
//! trait: [`LocalBus`] delivers in process; a NATS bus can sit behind the same trait.

use std::sync::{Arc, RwLock};

use crate::error::ServerError;
use crate::hub::{Audience, Presence};
use crate::session::Caller;
use crate::store::{Applied, ConvId, LogBody, LogEvent, RevokeReason, UserId};
use confab_protocol::v1;

/// Something that happened, after it was made durable (or, for sessions and presence, after the
/// hub changed).
#[derive(Clone, Debug)]
pub enum DomainEvent {
    /// A write of the batched writer committed: its conversation log entries (typed: posted,
    /// edited, deleted, members added, removed, left, roles and ownership, pins, reactions,
    /// calls), the user-log entries, receipts, notifications, revoked sessions, and the changes it
    /// caused in other conversations (`Applied::cascade`). One event per write, in commit order.
    Committed(Arc<Applied>),
    /// An account was deleted (§11.11); published after the deletion's `Committed`.
    /// `audience` is who could see the user's presence just before (§17): the deletion took the
    /// user out of the groups that made many of them co-members.
    AccountDeleted { user: UserId, audience: Vec<UserId> },
    /// `blocker` blocked `blocked` (§18).
    UserBlocked { blocker: UserId, blocked: UserId },
    /// Sessions ended by revocation (§11.7); their connections must close.
    SessionsRevoked { sessions: Vec<String>, reason: RevokeReason },
    /// A connection (hub key `key`) authenticated as `caller`.
    SessionAttached { caller: Caller, key: u64 },
    /// A connection of `caller` closed or changed identity; `remaining` is how many connections
    /// that session still has on this node.
    SessionDetached { caller: Caller, key: u64, remaining: usize },
    /// A user's presence over their devices on this node changed (§17).
    PresenceChanged { user: UserId, state: Presence },
    /// A call's state changed (§20.2): invites, ringing, accepted, answered elsewhere, ended,
    /// and the signals relayed between its two parties, each with who it goes to.
    CallEvents { events: Vec<(Audience, v1::event::Event)> },
}

impl DomainEvent {
    /// Calls `f` for every conversation log entry this event carries, cascades included, in
    /// commit order.
    pub fn for_each_entry(&self, mut f: impl FnMut(&LogEvent)) {
        fn walk(a: &Applied, f: &mut impl FnMut(&LogEvent)) {
            a.events.iter().for_each(&mut *f);
            for c in &a.cascade {
                walk(c, f);
            }
        }
        if let Self::Committed(a) = self {
            walk(a, &mut f);
        }
    }

    /// The members who stopped being members through this event: `(conversation, user)` for
    /// every `Left` and `Removed` entry. Allocates nothing when there are none (a post).
    pub fn members_gone(&self) -> Vec<(ConvId, UserId)> {
        let mut out = Vec::new();
        self.for_each_entry(|e| {
            if let LogBody::Left(u) | LogBody::Removed(u) = e.body {
                out.push((e.conversation_id, u));
            }
        });
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

#[cfg(test)]
mod tests {
    use super::*;
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
        let e = DomainEvent::Committed(Arc::new(applied));
        assert_eq!(e.members_gone(), [(ConvId(1), UserId(5)), (ConvId(2), UserId(9))]);
    }
}
