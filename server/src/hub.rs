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

    /// Registers connection `key` as authenticated for `session` of `user`.
    pub(crate) fn attach(&self, session: &str, user: UserId, key: u64, outbox: Outbox) {
        let mut m = self.lock();
        m.sessions.entry(session.to_string()).or_default().insert(key, outbox.clone());
        m.users.entry(user).or_default().insert(key, outbox);
    }

    pub(crate) fn detach(&self, session: &str, user: UserId, key: u64) {
        let mut m = self.lock();
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
