//! The receiving half of the cluster link: one task reads the events subject and hands each other
//! node's events to this node's subscribers in that node's `pub_seq` order, once each. A skipped
//! number holds what follows while the missing events are replayed by their publisher; when that
//! is impossible (the publisher is gone or its ring moved on), this node's connections are closed
//! with 4003 so their clients resync, and every node sends its presence table again. Heartbeats
//! keep track of who is alive.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::codec::{self, Body, Envelope, Received, ReplayReply, ReplayRequest, TableWantedMsg};
use super::{ClusterBus, LinkState, Subjects};
use crate::bus::DomainEvent;
use crate::hub::Forgotten;
use crate::metrics::ClusterMetrics;
use crate::session::Caller;
use crate::store::UserId;

/// Events held behind a gap before giving up on it.
const MAX_HELD: usize = 50_000;
/// Replay attempts that brought nothing before giving up on a gap (and at least the node timeout).
const MAX_REPLAY_FAILURES: u32 = 3;
/// Nodes declared down remembered (by name) in case they are heard again.
const MAX_TOMBSTONES: usize = 1_000;

/// What one other node (one incarnation of it) has sent us.
#[derive(Debug)]
struct Peer {
    incarnation: u64,
    /// The next `pub_seq` to hand to subscribers.
    next: u64,
    /// The highest `pub_seq` known to exist (from events and heartbeats).
    known: u64,
    held: BTreeMap<u64, Envelope>,
    heard: Instant,
    replaying: bool,
    /// Replay attempts that brought nothing, since `failing_since`.
    failures: u32,
    failing_since: Option<Instant>,
    /// No new replay request before this (after a failed one).
    retry_at: Option<Instant>,
}

/// What is remembered of a node declared down, should it turn out alive (same incarnation).
#[derive(Debug, Clone, Copy)]
struct Tombstone {
    incarnation: u64,
    next: u64,
}

/// A replay's answer, back in the receiving task.
struct Replayed {
    node: String,
    incarnation: u64,
    answer: Result<ReplayReply, String>,
}

pub(super) struct Setup {
    pub client: async_nats::Client,
    pub subjects: Subjects,
    pub node: String,
    pub bus: Arc<ClusterBus>,
    pub metrics: ClusterMetrics,
    pub link: Arc<LinkState>,
    pub node_timeout: Duration,
    pub check_every: Duration,
}

pub(super) struct Receiver {
    s: Setup,
    peers: HashMap<String, Peer>,
    tombstones: HashMap<String, Tombstone>,
    replayed_tx: mpsc::Sender<Replayed>,
    replayed_rx: mpsc::Receiver<Replayed>,
}

impl Receiver {
    pub(super) fn new(s: Setup) -> Self {
        let (replayed_tx, replayed_rx) = mpsc::channel(64);
        Self { s, peers: HashMap::new(), tombstones: HashMap::new(), replayed_tx, replayed_rx }
    }

    pub(super) async fn run(mut self, mut sub: async_nats::Subscriber, shutdown: CancellationToken) {
        let mut check = tokio::time::interval(self.s.check_every);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                m = sub.next() => match m {
                    Some(m) => match Envelope::decode(m.payload) {
                        Ok(env) => self.envelope(env),
                        Err(e) => tracing::warn!(error = %e, "undecodable cluster message"),
                    },
                    None => return,
                },
                Some(r) = self.replayed_rx.recv() => self.replayed(r),
                _ = check.tick() => self.check_liveness(),
            }
        }
    }

    fn envelope(&mut self, env: Envelope) {
        if env.node == self.s.node {
            return;
        }
        let now = Instant::now();
        let hb = match &env.body {
            Some(Body::Heartbeat(h)) => Some(h.clone()),
            _ => None,
        };
        let fresh = match self.peers.get(&env.node) {
            Some(p) if p.incarnation == env.incarnation => false,
            Some(_) => {
                // The node restarted: its old devices are gone; its new life counts from 1.
                self.node_down(&env.node.clone());
                self.add_peer(&env, 1, now);
                true
            }
            None => match self.tombstones.remove(&env.node) {
                // Declared down, yet alive (this node or that one was cut off from NATS): what it
                // published meanwhile is replayed, and everyone sends their tables again.
                Some(t) if t.incarnation == env.incarnation => {
                    tracing::info!(node = %env.node, "cluster node heard again");
                    self.add_peer(&env, t.next, now);
                    self.s.bus.out.send(Body::TableWanted(TableWantedMsg {}));
                    false
                }
                _ => {
                    // First heard: what it published before is history this node never had to
                    // deliver.
                    let first = hb.as_ref().map_or(env.pub_seq, |h| h.published + 1);
                    self.add_peer(&env, first.max(1), now);
                    true
                }
            },
        };
        if fresh {
            // It must learn who is online here.
            self.s.bus.send_table();
        }
        let node = env.node.clone();
        let Some(peer) = self.peers.get_mut(&node) else { return };
        peer.heard = now;
        if let Some(h) = hb {
            peer.known = peer.known.max(h.published);
            if h.leaving {
                self.node_down(&node);
                return;
            }
        } else if env.pub_seq < peer.next {
            self.s.metrics.duplicates_dropped.inc();
            return;
        } else if env.pub_seq == peer.next {
            peer.next += 1;
            peer.known = peer.known.max(env.pub_seq);
            self.dispatch(&node, env);
        } else {
            peer.known = peer.known.max(env.pub_seq);
            peer.held.insert(env.pub_seq, env);
        }
        self.drain(&node);
    }

    fn add_peer(&mut self, env: &Envelope, next: u64, now: Instant) {
        tracing::info!(node = %env.node, "cluster node heard");
        let peer = Peer {
            incarnation: env.incarnation,
            next,
            known: next - 1,
            held: BTreeMap::new(),
            heard: now,
            replaying: false,
            failures: 0,
            failing_since: None,
            retry_at: None,
        };
        self.peers.insert(env.node.clone(), peer);
        self.count_peers();
    }

    /// Hands over what became next in line, then asks for a replay if a gap remains.
    fn drain(&mut self, node: &str) {
        loop {
            let Some(peer) = self.peers.get_mut(node) else { return };
            while peer.held.first_key_value().is_some_and(|(s, _)| *s < peer.next) {
                peer.held.pop_first();
                self.s.metrics.duplicates_dropped.inc();
            }
            match peer.held.first_key_value() {
                Some((s, _)) if *s == peer.next => {
                    let Some((_, env)) = peer.held.pop_first() else { return };
                    peer.next += 1;
                    self.dispatch(node, env);
                }
                _ => break,
            }
        }
        let Some(peer) = self.peers.get_mut(node) else { return };
        if peer.held.len() > MAX_HELD {
            self.give_up(node);
            return;
        }
        let waiting = peer.retry_at.is_some_and(|t| t > Instant::now());
        if peer.known >= peer.next && !peer.replaying && !waiting {
            let to = peer.held.first_key_value().map_or(peer.known, |(s, _)| s - 1);
            peer.replaying = true;
            let req = ReplayRequest { incarnation: peer.incarnation, from: peer.next, to };
            let (client, subject, tx) = (self.s.client.clone(), self.s.subjects.replay(node), self.replayed_tx.clone());
            let (node, incarnation) = (node.to_string(), peer.incarnation);
            tokio::spawn(async move {
                let answer = match client.request(subject, Bytes::from(req.encode_to_vec())).await {
                    Ok(m) => ReplayReply::decode(m.payload).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let _ = tx.send(Replayed { node, incarnation, answer }).await;
            });
        }
    }

    fn replayed(&mut self, r: Replayed) {
        let Some(peer) = self.peers.get_mut(&r.node) else { return };
        if peer.incarnation != r.incarnation {
            return;
        }
        peer.replaying = false;
        let before = peer.next;
        match r.answer {
            Ok(answer) if !answer.gone => {
                for bytes in answer.envelopes {
                    match Envelope::decode(bytes) {
                        Ok(env) if env.pub_seq >= peer.next => {
                            self.s.metrics.replayed.inc();
                            peer.held.insert(env.pub_seq, env);
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "undecodable replayed event"),
                    }
                }
            }
            Ok(_) => {
                tracing::warn!(node = %r.node, "events to replay are gone: this node's clients resync");
                self.give_up(&r.node);
                return;
            }
            Err(e) => tracing::debug!(node = %r.node, error = %e, "replay request failed"),
        }
        let node = r.node;
        let progressed = {
            let held = &self.peers[&node].held;
            held.first_key_value().is_some_and(|(s, _)| *s == before)
        };
        let (every, timeout) = (self.s.check_every, self.s.node_timeout);
        if let Some(peer) = self.peers.get_mut(&node) {
            if progressed {
                peer.failures = 0;
                peer.failing_since = None;
                peer.retry_at = None;
            } else {
                // Tried again at the next liveness check, up to the node timeout: a peer briefly
                // unreachable (its link reconnecting) is not a reason to resync everyone.
                peer.failures += 1;
                let since = *peer.failing_since.get_or_insert_with(Instant::now);
                peer.retry_at = Some(Instant::now() + every);
                if peer.failures >= MAX_REPLAY_FAILURES && since.elapsed() >= timeout {
                    self.give_up(&node);
                    return;
                }
            }
        }
        self.drain(&node);
    }

    /// The gap cannot be filled: skip it, have this node's clients resync (§8: 4003), and have
    /// every node send its presence table again.
    fn give_up(&mut self, node: &str) {
        let Some(peer) = self.peers.get_mut(node) else { return };
        peer.next = peer.held.first_key_value().map_or(peer.known + 1, |(s, _)| *s);
        peer.replaying = false;
        peer.failures = 0;
        peer.failing_since = None;
        peer.retry_at = None;
        self.s.metrics.resyncs.inc();
        let closed = self.s.bus.hub.resync(None);
        tracing::warn!(node, closed, "lost events of another node: connections closed to resync");
        self.forgot(self.s.bus.hub.forget_node(node));
        self.s.bus.out.send(Body::TableWanted(TableWantedMsg {}));
        self.drain(node);
    }

    fn dispatch(&mut self, node: &str, env: Envelope) {
        self.s.metrics.received.inc();
        let bus = &self.s.bus;
        match codec::received(env.body) {
            Received::Event(e) => bus.deliver_local(e),
            Received::Presence(user, state) => {
                if bus.hub.set_remote_presence(node, user, state) {
                    bus.deliver_local(DomainEvent::PresenceChanged { user });
                }
            }
            Received::Table { first, entries, sessions } => {
                for (user, session) in &sessions {
                    bus.hub.set_remote_session(node, *user, session, true);
                }
                if first {
                    // The table replaces what the node said before; a session it no longer
                    // reports (they follow in later chunks) waits out the reconnect grace.
                    let mut gone = bus.hub.forget_node(node);
                    for (user, state) in entries {
                        bus.hub.set_remote_presence(node, user, state);
                        gone.users.push(user);
                    }
                    gone.users.sort_unstable();
                    gone.users.dedup();
                    self.forgot(gone);
                } else {
                    for (user, state) in entries {
                        if bus.hub.set_remote_presence(node, user, state) {
                            bus.deliver_local(DomainEvent::PresenceChanged { user });
                        }
                    }
                }
            }
            Received::Session { user, session, connected } => {
                bus.hub.set_remote_session(node, user, &session, connected);
                if !connected {
                    self.session_gone(user, session);
                }
            }
            Received::TableWanted => bus.send_table(),
            Received::Heartbeat | Received::Unknown => {}
        }
    }

    /// Nodes not heard from within the node timeout are down, unless this node's own link was
    /// down meanwhile (then nobody could have been heard).
    fn check_liveness(&mut self) {
        let timeout = self.s.node_timeout;
        let gapped: Vec<String> =
            self.peers.iter().filter(|(_, p)| p.known >= p.next).map(|(n, _)| n.clone()).collect();
        for node in gapped {
            self.drain(&node);
        }
        if self.s.link.up_for().is_none_or(|up| up < timeout) {
            return;
        }
        let dead: Vec<String> =
            self.peers.iter().filter(|(_, p)| p.heard.elapsed() > timeout).map(|(n, _)| n.clone()).collect();
        for node in dead {
            tracing::warn!(node = %node, "cluster node not heard within the node timeout: down");
            self.node_down(&node);
        }
    }

    fn count_peers(&self) {
        self.s.metrics.peers.set(self.peers.len() as i64);
    }

    fn node_down(&mut self, node: &str) {
        // What it published and this node did not get yet: what is held is delivered, what is
        // missing cannot be asked for any more — this node's clients resync.
        if let Some(peer) = self.peers.get(node)
            && (peer.known >= peer.next || !peer.held.is_empty())
        {
            self.give_up(node);
        }
        let Some(peer) = self.peers.remove(node) else { return };
        if self.tombstones.len() >= MAX_TOMBSTONES {
            self.tombstones.clear();
        }
        let tombstone = Tombstone { incarnation: peer.incarnation, next: peer.next };
        self.tombstones.insert(node.to_string(), tombstone);
        self.count_peers();
        self.forgot(self.s.bus.hub.forget_node(node));
        self.s.bus.deliver_local(DomainEvent::NodeDown { node: node.to_string(), incarnation: peer.incarnation });
    }

    /// What another node reported is gone: its users' presence may have changed, and its
    /// sessions lost their connections there.
    fn forgot(&self, gone: Forgotten) {
        for user in gone.users {
            self.s.bus.deliver_local(DomainEvent::PresenceChanged { user });
        }
        for (user, session) in gone.sessions {
            self.session_gone(user, session);
        }
    }

    /// A session lost its last connection on another node (its calls wait out the reconnect
    /// grace, then end unless it is connected again somewhere).
    fn session_gone(&self, user: UserId, session: String) {
        let caller = Caller { user_id: user, session_id: session, expires_at_ms: 0 };
        self.s.bus.deliver_local(DomainEvent::SessionDetached { caller, key: 0, remaining: 0 });
    }
}
