//! Live connections by session: where session revocation reaches the sockets it must close.
//! This is the in-process end of fan-out; a bus can later carry the same calls between nodes.

use std::collections::HashMap;
use std::sync::Mutex;

use confab_protocol::CloseCode;
use confab_protocol::frames::{encode_server, event_frame};
use confab_protocol::v1::{self, event};

use crate::connection::{Close, Outbox};
use crate::store::{RevokeReason, UserId};
use bytes::Bytes;

#[derive(Debug, Default)]
struct Maps {
    sessions: HashMap<String, HashMap<u64, Outbox>>,
    users: HashMap<UserId, HashMap<u64, Outbox>>,
    /// Each authenticated connection's (device's) presence state.
    presence: HashMap<UserId, HashMap<u64, i32>>,
}

/// Presence states (same numbers as the wire enum).
pub const ONLINE: i32 = 1;
pub const AWAY: i32 = 2;
pub const OFFLINE: i32 = 3;

/// A user's presence over their devices: online if any device is, away if all are, else offline.
fn aggregate(devices: Option<&HashMap<u64, i32>>) -> i32 {
    match devices {
        Some(d) if d.values().any(|s| *s == ONLINE) => ONLINE,
        Some(d) if !d.is_empty() => AWAY,
        _ => OFFLINE,
    }
}

/// Authenticated connections, by session and by user, keyed by connection number.
#[derive(Debug, Default)]
pub struct Hub {
    maps: Mutex<Maps>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers connection `key` as authenticated for `session` of `user` (online). Returns the
    /// user's new presence when it changed.
    pub(crate) fn attach(&self, session: &str, user: UserId, key: u64, outbox: Outbox) -> Option<i32> {
        let mut m = self.lock();
        m.sessions.entry(session.to_string()).or_default().insert(key, outbox.clone());
        m.users.entry(user).or_default().insert(key, outbox);
        let before = aggregate(m.presence.get(&user));
        m.presence.entry(user).or_default().insert(key, ONLINE);
        let after = aggregate(m.presence.get(&user));
        (before != after).then_some(after)
    }

    /// Sets one device's presence (ONLINE or AWAY); returns the user's new presence when it changed.
    pub(crate) fn set_presence(&self, user: UserId, key: u64, state: i32) -> Option<i32> {
        let mut m = self.lock();
        let before = aggregate(m.presence.get(&user));
        let devices = m.presence.get_mut(&user)?;
        devices.get_mut(&key).map(|s| *s = state)?;
        let after = aggregate(m.presence.get(&user));
        (before != after).then_some(after)
    }

    /// A user's presence on this node.
    pub fn presence(&self, user: UserId) -> i32 {
        aggregate(self.lock().presence.get(&user))
    }

    /// Unregisters a connection; returns the user's new presence when it changed.
    pub(crate) fn detach(&self, session: &str, user: UserId, key: u64) -> Option<i32> {
        let mut m = self.lock();
        let before = aggregate(m.presence.get(&user));
        if let Some(devices) = m.presence.get_mut(&user) {
            devices.remove(&key);
            if devices.is_empty() {
                m.presence.remove(&user);
            }
        }
        let after = aggregate(m.presence.get(&user));
        if let Some(conns) = m.sessions.get_mut(session) {
            conns.remove(&key);
            if conns.is_empty() {
                m.sessions.remove(session);
            }
        }
        if let Some(conns) = m.users.get_mut(&user) {
            conns.remove(&key);
            if conns.is_empty() {
                m.users.remove(&user);
            }
        }
        (before != after).then_some(after)
    }

    /// Like [`deliver`](Self::deliver) for frames that may be lost (typing), skipping connection
    /// `except` and never closing a connection whose queue is filling.
    pub(crate) fn deliver_droppable(&self, users: &[UserId], frame: &Bytes, except: u64) -> usize {
        let m = self.lock();
        let mut n = 0;
        for u in users {
            if let Some(conns) = m.users.get(u) {
                for (key, outbox) in conns {
                    if *key != except {
                        n += usize::from(outbox.push_droppable(frame.clone()));
                    }
                }
            }
        }
        n
    }

    /// Queues one encoded frame to every connection of these users, without waiting: a full queue
    /// closes that connection as a slow consumer (it resyncs). Returns the deliveries made.
    pub(crate) fn deliver(&self, users: &[UserId], frame: &Bytes) -> usize {
        let m = self.lock();
        let mut n = 0;
        for u in users {
            if let Some(conns) = m.users.get(u) {
                for outbox in conns.values() {
                    n += usize::from(outbox.push(frame.clone()));
                }
            }
        }
        n
    }

    /// Queues one encoded frame to every connection of one session (one device).
    pub(crate) fn deliver_session(&self, session: &str, frame: &Bytes) -> usize {
        let m = self.lock();
        m.sessions.get(session).map_or(0, |conns| conns.values().map(|o| usize::from(o.push(frame.clone()))).sum())
    }

    /// Like [`deliver`](Self::deliver), skipping the connections of session `except`.
    pub(crate) fn deliver_except_session(&self, users: &[UserId], except: &str, frame: &Bytes) -> usize {
        let m = self.lock();
        let skip = m.sessions.get(except);
        let mut n = 0;
        for u in users {
            for (key, outbox) in m.users.get(u).into_iter().flatten() {
                if !skip.is_some_and(|s| s.contains_key(key)) {
                    n += usize::from(outbox.push(frame.clone()));
                }
            }
        }
        n
    }

    /// Tells every live connection of `session` it was revoked (one encoded event shared by all),
    /// then closes them with SESSION_REVOKED. Returns how many were closed.
    pub(crate) fn revoke(&self, session: &str, reason: RevokeReason) -> usize {
        let Some(conns) = self.lock().sessions.remove(session) else { return 0 };
        let bytes = encode_server(&event_frame(event::Event::SessionRevoked(v1::SessionRevoked {
            session_id: session.to_string(),
            reason: reason as i32,
        })));
        for outbox in conns.values() {
            outbox.push(bytes.clone());
            outbox.kick(Close::new(CloseCode::SessionRevoked, "session revoked"));
        }
        conns.len()
    }

    /// Connections attached to `session` (for tests and metrics).
    pub fn connections(&self, session: &str) -> usize {
        self.lock().sessions.get(session).map_or(0, HashMap::len)
    }
}
