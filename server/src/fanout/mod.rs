//! Live delivery, a bus subscriber: each committed change's frames (encoded once, by the writer
//! or by the node that committed it) queued to every connection of its audience on this node
//! (§14.5), in commit order; frames for call state and typing to their audience (§16, §20.2);
//! revoked sessions' connections told and closed (§11.7). In a cluster the log entries go
//! through a [`Sequencer`] that drops what was delivered already and fills gaps from the store.

mod sequencer;

use std::sync::Arc;

use crate::bus::{DomainEvent, Live, Subscriber};
use crate::hub::Hub;
use crate::metrics::ClusterMetrics;
use crate::store::Store;
pub use sequencer::Sequencer;

/// After a node stopped, lanes with an entry this recent are read up to the store's head. The
/// node was silent for the node timeout before it was declared down; the window covers that and
/// more (a lane idle longer needs a later entry, or the client's own sync, to show a gap).
const CATCH_UP_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Delivers committed changes to live connections.
#[derive(Debug)]
pub struct Fanout {
    hub: Arc<Hub>,
    /// `None` on a single node: its writer publishes in commit order, nothing to reorder.
    sequencer: Option<Sequencer>,
}

impl Fanout {
    /// Fan-out for a server alone: entries are delivered as published.
    pub fn single(hub: Arc<Hub>) -> Self {
        Self { hub, sequencer: None }
    }

    /// Fan-out for a node of a cluster: entries from every node are delivered once each, in
    /// seq order per conversation and per user log, gaps filled from `store`.
    pub fn clustered(hub: Arc<Hub>, store: Arc<dyn Store>, metrics: ClusterMetrics) -> Self {
        Self { sequencer: Some(Sequencer::new(hub.clone(), store, metrics)), hub }
    }

    /// Cascades after the change that caused them.
    fn deliver(&self, live: &Live) {
        let hub = &self.hub;
        match &self.sequencer {
            Some(seq) => seq.deliver(live),
            None => {
                for e in &live.entries {
                    hub.deliver(&live.audience, &e.frame);
                }
                for u in &live.user_updates {
                    hub.deliver(&[u.user], &u.frame);
                }
            }
        }
        for r in &live.receipts {
            hub.deliver(&live.audience, r);
        }
        for n in &live.notifications {
            hub.deliver(&[n.user], &n.frame);
        }
        for c in &live.cascade {
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
            DomainEvent::Committed(commit) => self.deliver(&commit.live),
            DomainEvent::SessionsRevoked { sessions, reason } => {
                for s in sessions {
                    self.hub.revoke(s, *reason);
                }
            }
            DomainEvent::Frames { frames, droppable } => {
                for (to, frame) in frames {
                    self.hub.deliver_to(to, frame, *droppable);
                }
            }
            // What it committed last may not have reached NATS: read it from the store.
            DomainEvent::NodeDown { .. } => {
                if let Some(seq) = &self.sequencer {
                    seq.catch_up_recent(CATCH_UP_WINDOW);
                }
            }
            DomainEvent::AccountDeleted { .. }
            | DomainEvent::CallInvited { .. }
            | DomainEvent::UserBlocked { .. }
            | DomainEvent::SessionAttached { .. }
            | DomainEvent::SessionDetached { .. }
            | DomainEvent::PresenceChanged { .. } => {}
        }
    }
}
