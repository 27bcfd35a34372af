//! Live connections by session: where session revocation reaches the sockets it must close.
//! This is the in-process end of fan-out; a bus can later carry the same calls between nodes.

use std::collections::HashMap;
use std::sync::Mutex;

use confab_protocol::CloseCode;
use confab_protocol::frames::{encode_server, event_frame};
use confab_protocol::v1::{self, event};

use crate::connection::{Close, Outbox};
use crate::store::RevokeReason;

/// Connections attached to each session, keyed by connection number.
#[derive(Debug, Default)]
pub struct Hub {
    sessions: Mutex<HashMap<String, HashMap<u64, Outbox>>>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u64, Outbox>>> {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers connection `key` as authenticated for `session`.
    pub(crate) fn attach(&self, session: &str, key: u64, outbox: Outbox) {
        self.lock().entry(session.to_string()).or_default().insert(key, outbox);
    }

    pub(crate) fn detach(&self, session: &str, key: u64) {
        let mut map = self.lock();
        if let Some(conns) = map.get_mut(session) {
            conns.remove(&key);
            if conns.is_empty() {
                map.remove(session);
            }
        }
    }

    /// Tells every live connection of `session` it was revoked (one encoded event shared by all),
    /// then closes them with SESSION_REVOKED. Returns how many were closed.
    pub(crate) fn revoke(&self, session: &str, reason: RevokeReason) -> usize {
        let Some(conns) = self.lock().remove(session) else { return 0 };
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
        self.lock().get(session).map_or(0, HashMap::len)
    }
}
