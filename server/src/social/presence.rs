//! Presence announcements (docs/protocol.md §17) in order, per user. Changes are queued by user
//! on a few shards, each worked by one task: a user's announcements never overtake each other,
//! each announces the hub's state *when it is sent* to the audience allowed *then*, and a burst of
//! changes for one user coalesces into one announcement. Memory is bounded by the users with a
//! change pending or online.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use confab_protocol::frames::{encode_server, event_frame};
use confab_protocol::v1::{self, event};
use tokio::sync::Notify;

use crate::hub::{Hub, Presence};
use crate::store::{Store, UserId, now_ms};

/// Shards of the announcer: users are spread over them by id.
const SHARDS: usize = 4;

/// The `PresenceChanged` event, encoded once.
pub(super) fn presence_frame(user: UserId, state: Presence, last_seen_ms: i64) -> Bytes {
    encode_server(&event_frame(event::Event::PresenceChanged(v1::PresenceChanged {
        user_id: crate::wire::user(user),
        state: state.wire(),
        last_seen_ms: last_seen_ms.max(0) as u64,
    })))
}

/// What a shard does next for one user.
#[derive(Debug)]
enum Job {
    /// The user's presence may have changed: announce the hub's current state if it differs
    /// from the last one announced.
    Announce(UserId),
    /// The user blocked `blocked`: unless `blocked` may still see it, tell them the user is
    /// offline (no last-seen time).
    Blocked { blocker: UserId, blocked: UserId },
    /// The user's account was deleted: `audience` (who saw them before) sees them offline.
    Deleted { user: UserId, audience: Vec<UserId> },
}

impl Job {
    fn user(&self) -> UserId {
        match self {
            Self::Announce(u) | Self::Blocked { blocker: u, .. } | Self::Deleted { user: u, .. } => *u,
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Users with an `Announce` queued: a second one adds nothing.
    pending: HashSet<UserId>,
}

#[derive(Debug, Default)]
struct Shard {
    queue: Mutex<Queue>,
    wake: Notify,
}

/// Cheap-clone handle to the announcer's shards.
#[derive(Clone, Debug)]
pub(super) struct Announcer {
    shards: Arc<[Shard]>,
}

impl Announcer {
    /// Starts one worker task per shard; they end with the runtime.
    pub(super) fn start(store: Arc<dyn Store>, hub: Arc<Hub>) -> Self {
        let shards: Arc<[Shard]> = (0..SHARDS).map(|_| Shard::default()).collect();
        for i in 0..SHARDS {
            let worker = Worker { store: store.clone(), hub: hub.clone(), announced: HashMap::new() };
            tokio::spawn(worker.run(shards.clone(), i));
        }
        Self { shards }
    }

    fn push(&self, job: Job) {
        let shard = &self.shards[job.user().0.unsigned_abs() as usize % SHARDS];
        {
            let mut q = shard.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if let Job::Announce(u) = job
                && !q.pending.insert(u)
            {
                return;
            }
            q.jobs.push_back(job);
        }
        shard.wake.notify_one();
    }

    /// `user`'s presence may have changed.
    pub(super) fn changed(&self, user: UserId) {
        self.push(Job::Announce(user));
    }

    /// `blocker` blocked `blocked` (§18, §21).
    pub(super) fn blocked(&self, blocker: UserId, blocked: UserId) {
        self.push(Job::Blocked { blocker, blocked });
    }

    /// `user`'s account was deleted; `audience` saw their presence before (§21).
    pub(super) fn deleted(&self, user: UserId, audience: Vec<UserId>) {
        self.push(Job::Deleted { user, audience });
    }
}

/// One shard's worker: the last state announced for each of its users who is not offline.
struct Worker {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    announced: HashMap<UserId, Presence>,
}

impl Worker {
    async fn run(mut self, shards: Arc<[Shard]>, i: usize) {
        let shard = &shards[i];
        loop {
            let job = {
                let mut q = shard.queue.lock().unwrap_or_else(PoisonError::into_inner);
                let job = q.jobs.pop_front();
                if let Some(Job::Announce(u)) = &job {
                    q.pending.remove(u);
                }
                job
            };
            match job {
                Some(job) => self.work(job).await,
                None => shard.wake.notified().await,
            }
        }
    }

    async fn work(&mut self, job: Job) {
        match job {
            Job::Announce(user) => self.announce(user).await,
            Job::Blocked { blocker, blocked } => {
                if let Ok(audience) = self.store.presence_audience(blocker).await
                    && !audience.contains(&blocked)
                {
                    self.hub.deliver(&[blocked], &presence_frame(blocker, Presence::Offline, 0));
                }
            }
            Job::Deleted { user, audience } => {
                // Nothing more is announced for a deleted account.
                self.announced.remove(&user);
                self.hub.deliver(&audience, &presence_frame(user, Presence::Offline, 0));
            }
        }
    }

    /// Tells everyone allowed to see it that `user` is now in the hub's current state. Going
    /// offline records last seen; it is shown only when the user allows it (§15.4).
    async fn announce(&mut self, user: UserId) {
        let state = self.hub.presence(user);
        let before = self.announced.get(&user).copied();
        // Nothing changed since the last announcement; or offline and never announced online
        // (already told, or a deleted account).
        if before == Some(state) || (before.is_none() && state == Presence::Offline) {
            return;
        }
        if state == Presence::Offline {
            self.announced.remove(&user);
        } else {
            self.announced.insert(user, state);
        }
        let now = now_ms();
        if state == Presence::Offline
            && let Err(e) = self.store.set_last_seen(user, now).await
            && !e.is_unavailable()
        {
            tracing::warn!(error = %e, "recording last seen");
        }
        let shows = match self.store.users(&[user]).await {
            Ok(u) => u.first().is_some_and(|u| u.show_last_seen && !u.deleted),
            Err(_) => false,
        };
        match self.store.presence_audience(user).await {
            Ok(audience) => {
                let last_seen = if shows && state == Presence::Offline { now } else { 0 };
                self.hub.deliver(&audience, &presence_frame(user, state, last_seen));
            }
            // During shutdown the store closes before the last connections finish: nothing to tell.
            Err(e) if e.is_unavailable() => tracing::debug!(error = %e, "presence audience"),
            Err(e) => tracing::warn!(error = %e, "presence audience"),
        }
    }
}
