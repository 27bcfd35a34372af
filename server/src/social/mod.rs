//! Typing, presence, privacy, profiles, contacts, blocking and the notifications inbox
//! (docs/protocol.md §15.4, §16-§19). Typing and presence are ephemeral and live in memory (the
//! hub); the rest is in the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use confab_protocol::frames::{encode_server, event_frame};
use confab_protocol::v1::{self, event};

mod presence;

use crate::access::id;
use crate::bus::{Bus, DomainEvent, Subscriber, to_completion};
use crate::config::RateLimit;
use crate::error::ServerError;
use crate::hub::{Audience, Hub, Presence};
use crate::page::{Slice, page_limit};
use crate::ratelimit::Limiter;
use crate::session::Caller;
use crate::store::{ConvId, NotificationRec, Store, User, UserId, now_ms};
use presence::Announcer;

/// Typing state per (conversation, user): a generation number, so an expiry timer only fires if
/// no refresh came after it. Generations are unique across stops, so the timer of an indicator
/// that was stopped never ends a later one early.
#[derive(Debug, Default)]
struct Typing {
    generations: Mutex<HashMap<(ConvId, UserId), u64>>,
    next: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    bus: Arc<dyn Bus>,
    announcer: Announcer,
    typing: Typing,
    typing_limit: Limiter,
    typing_ttl: Duration,
}

/// Cheap-clone handle to the social service.
#[derive(Clone, Debug)]
pub struct Social(Arc<Inner>);

/// A user's privacy settings (§15.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Privacy {
    pub read_receipts: bool,
    pub show_last_seen: bool,
}

/// A page of the notifications inbox, and how many of the whole inbox are unread (§19).
#[derive(Debug)]
pub struct Inbox {
    pub page: Slice<NotificationRec>,
    pub unread_count: i64,
}

/// A user's profile as a viewer may see it.
#[derive(Debug)]
pub struct Profile {
    pub user: User,
    /// None when the viewer may not see presence.
    pub presence: Option<Presence>,
    pub last_seen_ms: i64,
}

impl Social {
    pub fn new(store: Arc<dyn Store>, hub: Arc<Hub>, bus: Arc<dyn Bus>, typing_ttl: Duration) -> Self {
        Self(Arc::new(Inner {
            announcer: Announcer::start(store.clone(), hub.clone()),
            store,
            hub,
            bus,
            typing: Typing::default(),
            typing_limit: Limiter::new(RateLimit::new(5, Duration::from_secs(1))),
            typing_ttl,
        }))
    }

    fn store(&self) -> &dyn Store {
        self.0.store.as_ref()
    }

    fn typing_frame(&self, conv: ConvId, user: UserId, typing: bool) -> Bytes {
        encode_server(&event_frame(event::Event::TypingChanged(v1::TypingChanged {
            conversation_id: crate::wire::conv(conv),
            user_id: crate::wire::user(user),
            typing,
            expires_in_ms: if typing { self.0.typing_ttl.as_millis() as u32 } else { 0 },
        })))
    }

    /// Tells `to`, wherever they are connected, that `user` started or stopped typing; droppable.
    fn typing_to(&self, to: Audience, conv: ConvId, user: UserId, typing: bool) {
        let frames = vec![(to, self.typing_frame(conv, user, typing))];
        self.0.bus.publish(DomainEvent::Frames { frames, droppable: true });
    }

    /// §16: tells the conversation's connected members (not this device); droppable.
    pub async fn set_typing(&self, auth: &Caller, conv: u64, typing: bool) -> Result<(), ServerError> {
        let conv = id("set_typing.conversation_id", conv)?;
        // Membership is checked once, on the member list read below (a non-member, like a missing
        // conversation, is NOT_FOUND).
        if typing {
            self.0.typing_limit.take(&format!("{}:{conv}", auth.user_id)).map_err(ServerError::RateLimited)?;
        }
        // The indicator is registered before the member list is read: a removal committed
        // before the read shows in the list (and the indicator is withdrawn here), one committed
        // after it finds the indicator and ends it (`member_gone`).
        let key = (conv, auth.user_id);
        let generation = {
            let mut g = self.0.typing.generations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if typing {
                let n = self.0.typing.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                g.insert(key, n);
                Some(n)
            } else {
                g.remove(&key);
                None
            }
        };
        let members: Vec<UserId> = match self.store().members(conv, UserId::default(), 100_000).await {
            Ok(m) if m.iter().any(|m| m.user_id == auth.user_id) => m.into_iter().map(|m| m.user_id).collect(),
            read => {
                self.0.typing.generations.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key);
                read?;
                return Err(ServerError::NotFound("no such conversation".into()));
            }
        };
        let except = auth.session_id.clone();
        self.typing_to(Audience::UsersExcept(members.clone(), except.clone()), conv, auth.user_id, typing);
        if let Some(generation) = generation {
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(this.0.typing_ttl).await;
                let expired = {
                    let mut g = this.0.typing.generations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if g.get(&key) == Some(&generation) {
                        g.remove(&key);
                        true
                    } else {
                        false
                    }
                };
                if expired {
                    this.typing_to(Audience::UsersExcept(members, except), conv, key.1, false);
                }
            });
        }
        Ok(())
    }

    /// §17: this device's state (ONLINE or AWAY).
    pub fn set_presence(&self, auth: &Caller, device: u64, state: i32) -> Result<(), ServerError> {
        let state =
            Presence::settable(state).ok_or_else(|| ServerError::invalid("set_presence.state", "ONLINE or AWAY"))?;
        if self.0.hub.set_presence(auth.user_id, device, state).is_some() {
            self.0.bus.publish(DomainEvent::PresenceChanged { user: auth.user_id });
        }
        Ok(())
    }

    /// §15.4
    pub async fn privacy(&self, auth: &Caller) -> Result<Privacy, ServerError> {
        let u = self.store().users(&[auth.user_id]).await?;
        let u = u.first().ok_or_else(|| ServerError::Unauthenticated("account gone".into()))?;
        Ok(Privacy { read_receipts: u.read_receipts, show_last_seen: u.show_last_seen })
    }

    /// §15.4
    pub async fn set_privacy(
        &self,
        auth: &Caller,
        read: Option<bool>,
        last_seen: Option<bool>,
    ) -> Result<Privacy, ServerError> {
        self.store().set_privacy(auth.user_id, read, last_seen).await?;
        self.privacy(auth).await
    }

    async fn profile(&self, viewer: UserId, user: User) -> Result<Profile, ServerError> {
        let visible = viewer == user.id || self.store().presence_audience(user.id).await?.contains(&viewer);
        let presence = visible.then(|| self.0.hub.presence(user.id));
        let last_seen_ms = if visible && user.show_last_seen && !user.deleted && presence == Some(Presence::Offline) {
            user.last_seen_at_ms.unwrap_or(0)
        } else {
            0
        };
        Ok(Profile { user, presence, last_seen_ms })
    }

    /// §18: profiles, with presence where allowed. Unknown ids are left out.
    pub async fn users(&self, auth: &Caller, ids: &[u64]) -> Result<Vec<Profile>, ServerError> {
        if ids.len() > 100 {
            return Err(ServerError::invalid("get_users.user_ids", "at most 100"));
        }
        let ids: Vec<UserId> = ids.iter().filter_map(|u| i64::try_from(*u).ok()).map(UserId).collect();
        let mut out = Vec::new();
        for u in self.store().users(&ids).await? {
            out.push(self.profile(auth.user_id, u).await?);
        }
        Ok(out)
    }

    /// §18: prefix search; the page token is the last username.
    pub async fn search(
        &self,
        auth: &Caller,
        query: &str,
        token: &str,
        limit: u32,
    ) -> Result<(Vec<Profile>, String), ServerError> {
        let q = query.trim();
        if q.is_empty() || q.chars().count() > 64 {
            return Err(ServerError::invalid("search_users.query", "1 to 64 characters"));
        }
        let limit = match limit {
            0 => 20,
            n => n.min(100),
        };
        let mut users = self.store().search_users(auth.user_id, q, token, limit + 1).await?;
        let more = users.len() > limit as usize;
        users.truncate(limit as usize);
        let next =
            if more { users.last().map(|u| u.username.to_lowercase()).unwrap_or_default() } else { String::new() };
        let mut out = Vec::new();
        for u in users {
            out.push(self.profile(auth.user_id, u).await?);
        }
        Ok((out, next))
    }

    /// §18
    pub async fn add_contact(&self, auth: &Caller, user: u64) -> Result<(), ServerError> {
        let user = id("add_contact.user_id", user)?;
        if user == auth.user_id {
            return Err(ServerError::invalid("add_contact.user_id", "not yourself"));
        }
        if !self.store().add_contact(auth.user_id, user, now_ms()).await? {
            return Err(ServerError::NotFound("no such user".into()));
        }
        Ok(())
    }

    pub async fn remove_contact(&self, auth: &Caller, user: u64) -> Result<(), ServerError> {
        Ok(self.store().remove_contact(auth.user_id, id("remove_contact.user_id", user)?).await?)
    }

    pub async fn contacts(&self, auth: &Caller) -> Result<Vec<Profile>, ServerError> {
        let mut out = Vec::new();
        for u in self.store().contacts(auth.user_id).await? {
            out.push(self.profile(auth.user_id, u).await?);
        }
        Ok(out)
    }

    /// §18: blocking.
    pub async fn block(&self, auth: &Caller, user: u64) -> Result<(), ServerError> {
        let user = id("block.user_id", user)?;
        if user == auth.user_id {
            return Err(ServerError::invalid("block.user_id", "not yourself"));
        }
        let (this, blocker) = (self.clone(), auth.user_id);
        to_completion(async move {
            if !this.store().block(blocker, user, now_ms()).await? {
                return Err(ServerError::NotFound("no such user".into()));
            }
            this.0.bus.publish(DomainEvent::UserBlocked { blocker, blocked: user });
            Ok(())
        })
        .await
    }

    pub async fn unblock(&self, auth: &Caller, user: u64) -> Result<(), ServerError> {
        Ok(self.store().unblock(auth.user_id, id("unblock.user_id", user)?).await?)
    }

    pub async fn blocked(&self, auth: &Caller) -> Result<Vec<Profile>, ServerError> {
        Ok(self
            .store()
            .blocked_users(auth.user_id)
            .await?
            .into_iter()
            .map(|user| Profile { user, presence: None, last_seen_ms: 0 })
            .collect())
    }

    /// §19
    pub async fn notifications(
        &self,
        auth: &Caller,
        before: u64,
        limit: u32,
        unread_only: bool,
    ) -> Result<Inbox, ServerError> {
        let limit = page_limit(limit, 50, 200);
        let before = if before == 0 { i64::MAX } else { before.min(i64::MAX as u64) as i64 };
        let (list, unread_count) = self.store().notifications(auth.user_id, before, limit + 1, unread_only).await?;
        Ok(Inbox { page: Slice::cut(list, limit), unread_count })
    }

    /// §19
    pub async fn mark_notifications_read(&self, auth: &Caller, up_to: u64) -> Result<i64, ServerError> {
        Ok(self.store().mark_notifications_read(auth.user_id, up_to.min(i64::MAX as u64) as i64).await?)
    }
}

impl Social {
    /// Whoever left a conversation stops typing in it at once: the others see it end.
    fn member_gone(&self, conv: ConvId, user: UserId) {
        let was_typing = {
            let mut g = self.0.typing.generations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            g.remove(&(conv, user)).is_some()
        };
        if !was_typing {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Ok(members) = this.store().members(conv, UserId::default(), 100_000).await {
                let members: Vec<UserId> = members.into_iter().map(|m| m.user_id).collect();
                this.typing_to(Audience::Users(members), conv, user, false);
            }
        });
    }
}

/// Presence and typing follow sessions, membership and blocks.
impl Subscriber for Social {
    fn name(&self) -> &'static str {
        "social"
    }

    fn handle(&self, event: &DomainEvent) {
        match event {
            // Announced in order per user, with the state and audience of when it is sent.
            DomainEvent::PresenceChanged { user } => self.0.announcer.changed(*user),
            // A blocked user stops seeing the blocker's presence (§18): told offline, no last seen.
            DomainEvent::UserBlocked { blocker, blocked } => self.0.announcer.blocked(*blocker, *blocked),
            DomainEvent::Committed(_) => {
                for (conv, user) in event.members_gone() {
                    self.member_gone(conv, user);
                }
            }
            // Everyone who saw the user sees them go offline, with no last-seen time.
            DomainEvent::AccountDeleted { user, audience } => self.0.announcer.deleted(*user, audience.clone()),
            // The node's devices are gone: the cluster link told the hub; announce who changed.
            DomainEvent::NodeDown { .. } => {}
            DomainEvent::SessionsRevoked { .. }
            | DomainEvent::SessionAttached { .. }
            | DomainEvent::SessionDetached { .. }
            | DomainEvent::CallInvited { .. }
            | DomainEvent::Frames { .. } => {}
        }
    }
}
