//! Live delivery, a bus subscriber: each committed change's frames encoded once and queued to
//! every connection of its audience on this node (§14.5), in commit order; call events to their
//! audience (§20.2); revoked sessions' connections told and closed (§11.7).

use std::sync::Arc;

use confab_protocol::frames::{encode_server, event_frame};

use crate::bus::{DomainEvent, Subscriber};
use crate::hub::Hub;
use crate::store::Applied;
use crate::wire;

/// Delivers committed changes to live connections.
#[derive(Debug)]
pub struct Fanout {
    hub: Arc<Hub>,
}

impl Fanout {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// Each entry encoded once, shared by every member's connections; cascades after the change
    /// that caused them.
    fn deliver(&self, applied: &Applied) {
        let hub = &self.hub;
        for e in &applied.events {
            hub.deliver(&applied.audience, &wire::event_frame_bytes(e));
        }
        for u in &applied.user_updates {
            hub.deliver(&[u.user_id], &wire::user_update_frame_bytes(u));
        }
        for r in &applied.receipts {
            hub.deliver(&applied.audience, &wire::receipt_frame_bytes(r));
        }
        for n in &applied.notifications {
            hub.deliver(&[n.user_id], &wire::notification_frame_bytes(n));
        }
        for c in &applied.cascade {
            self.deliver(c);
        }
    }
}

impl Subscriber for Fanout {
    fn name(&self) -> &'static str {
        "fanout"
    }

    fn handle(&self, event: &DomainEvent) {
        match event {
            DomainEvent::Committed(applied) => self.deliver(applied),
            DomainEvent::SessionsRevoked { sessions, reason } => {
                for s in sessions {
                    self.hub.revoke(s, *reason);
                }
            }
            DomainEvent::CallEvents { events } => {
                for (to, event) in events {
                    self.hub.deliver_to(to, &encode_server(&event_frame(event.clone())));
                }
            }
            DomainEvent::AccountDeleted { .. }
            | DomainEvent::UserBlocked { .. }
            | DomainEvent::SessionAttached { .. }
            | DomainEvent::SessionDetached { .. }
            | DomainEvent::PresenceChanged { .. } => {}
        }
    }
}
