//! Live connections by session and by user on this node: where fan-out, presence and session
//! revocation reach sockets. It knows connections only through their [`Outbox`]; which frames to
//! send is decided by the bus subscribers above it. In a cluster it also holds what the other
//! nodes said about their users' presence, so a user's presence is the same everywhere.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use confab_protocol::CloseCode;
use prometheus_client::metrics::counter::Counter;

use crate::metrics::Metrics;
use crate::session::{Close, Outbox};
use crate::store::{RevokeReason, UserId};
use bytes::Bytes;

#[derive(Debug, Default)]
struct Maps {
    sessions: HashMap<String, HashMap<u64, Outbox>>,
    /// Each session's user.
    session_users: HashMap<String, UserId>,
    users: HashMap<UserId, HashMap<u64, Outbox>>,
    /// Each authenticated connection's (device's) presence state.
    presence: HashMap<UserId, HashMap<u64, Presence>>,
    /// Each user's presence over their devices on other nodes, by node (never `Offline`).
    remote: HashMap<UserId, HashMap<String, Presence>>,
    /// Sessions (devices) connected to other nodes, with those nodes and the session's user.
    remote_sessions: HashMap<String, (UserId, HashSet<String>)>,
}

/// A user's or a device's presence (§17; same numbers as the wire enum `PresenceState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Presence {
    Online = 1,
    Away = 2,
    Offline = 3,
}

impl Presence {
    /// The wire value.
    pub fn wire(self) -> i32 {
        self as i32
    }

    /// The state with this wire number.
    pub fn from_wire(v: i32) -> Option<Self> {
        match v {
            3 => Some(Self::Offline),
            v => Self::settable(v),
        }
    }

    /// A state a device may set itself to (ONLINE or AWAY); `None` for anything else.
    pub fn settable(v: i32) -> Option<Self> {
        match v {
            1 => Some(Self::Online),
            2 => Some(Self::Away),
            _ => None,
        }
    }
}

/// A user's presence over their devices: online if any device is, away if all are, else offline.
fn aggregate(devices: Option<&HashMap<u64, Presence>>) -> Presence {
    combine(devices.into_iter().flat_map(HashMap::values).copied())
}

/// Online if any state is, away if all are, offline when there are none.
fn combine(states: impl Iterator<Item = Presence>) -> Presence {
    let mut out = Presence::Offline;
    for s in states {
        match s {
            Presence::Online => return Presence::Online,
            Presence::Away => out = Presence::Away,
            Presence::Offline => {}
        }
    }
    out
}

/// Who a frame goes to on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Every connection of these users.
    Users(Vec<UserId>),
    /// Every connection of one session (one device).
    Session(String),
    /// Every connection of these users except those of one session.
    UsersExcept(Vec<UserId>, String),
}

/// What forgetting a node removed.
#[derive(Debug, Default)]
pub struct Forgotten {
    /// Users whose presence it reported.
    pub users: Vec<UserId>,
    /// Sessions it had connected, with their users.
    pub sessions: Vec<(UserId, String)>,
}

/// What detaching a connection changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detached {
    /// The user's new presence, when it changed.
    pub presence: Option<Presence>,
    /// Connections the session still has on this node.
    pub remaining: usize,
}

/// Authenticated connections, by session and by user, keyed by connection number.
#[derive(Debug, Default)]
pub struct Hub {
    maps: Mutex<Maps>,
    /// Frames queued to connections (`confab_deliveries_total`; registered nowhere when the hub
    /// was made with `default()`).
    deliveries: Counter,
}

impl Hub {
    /// An empty hub counting its deliveries in `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self { maps: Mutex::default(), deliveries: metrics.deliveries().clone() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers connection `key` as authenticated for `session` of `user` (online). Returns the
    /// user's new presence when it changed.
    pub fn attach(&self, session: &str, user: UserId, key: u64, outbox: Outbox) -> Option<Presence> {
        let mut m = self.lock();
        m.sessions.entry(session.to_string()).or_default().insert(key, outbox.clone());
        m.session_users.insert(session.to_string(), user);
        m.users.entry(user).or_default().insert(key, outbox);
        let before = aggregate(m.presence.get(&user));
        m.presence.entry(user).or_default().insert(key, Presence::Online);
        let after = aggregate(m.presence.get(&user));
        (before != after).then_some(after)
    }

    /// Sets one device's presence (ONLINE or AWAY); returns the user's new presence when it changed.
    pub fn set_presence(&self, user: UserId, key: u64, state: Presence) -> Option<Presence> {
        let mut m = self.lock();
        let before = aggregate(m.presence.get(&user));
        let devices = m.presence.get_mut(&user)?;
        devices.get_mut(&key).map(|s| *s = state)?;
        let after = aggregate(m.presence.get(&user));
        (before != after).then_some(after)
    }

    /// A user's presence over all their devices: on this node and, in a cluster, on the others.
    pub fn presence(&self, user: UserId) -> Presence {
        let m = self.lock();
        let remote = m.remote.get(&user).into_iter().flat_map(HashMap::values).copied();
        combine(remote.chain([aggregate(m.presence.get(&user))]))
    }

    /// A user's presence over their devices on this node only (what this node tells the others).
    pub fn local_presence(&self, user: UserId) -> Presence {
        aggregate(self.lock().presence.get(&user))
    }

    /// Every user with a device here and their presence over this node's devices.
    pub fn local_presence_table(&self) -> Vec<(UserId, Presence)> {
        let m = self.lock();
        m.presence.iter().map(|(u, d)| (*u, aggregate(Some(d)))).filter(|(_, p)| *p != Presence::Offline).collect()
    }

    /// What node `node` says about `user`'s devices there (`Offline`: none). Returns whether the
    /// user's presence over all nodes changed.
    pub fn set_remote_presence(&self, node: &str, user: UserId, state: Presence) -> bool {
        let before = self.presence(user);
        {
            let mut m = self.lock();
            if state == Presence::Offline {
                if let Some(nodes) = m.remote.get_mut(&user) {
                    nodes.remove(node);
                    if nodes.is_empty() {
                        m.remote.remove(&user);
                    }
                }
            } else {
                m.remote.entry(user).or_default().insert(node.to_string(), state);
            }
        }
        self.presence(user) != before
    }

    /// What node `node` says about `session` (of `user`): connected there or not any more.
    pub fn set_remote_session(&self, node: &str, user: UserId, session: &str, connected: bool) {
        let mut m = self.lock();
        if connected {
            m.remote_sessions
                .entry(session.to_string())
                .or_insert_with(|| (user, HashSet::new()))
                .1
                .insert(node.into());
        } else if let Some((_, nodes)) = m.remote_sessions.get_mut(session) {
            nodes.remove(node);
            if nodes.is_empty() {
                m.remote_sessions.remove(session);
            }
        }
    }

    /// Whether `session` has a connection on this node or (in a cluster) on another.
    pub fn connected_anywhere(&self, session: &str) -> bool {
        let m = self.lock();
        m.sessions.get(session).is_some_and(|c| !c.is_empty()) || m.remote_sessions.contains_key(session)
    }

    /// Sessions connected to this node, with their users (what a node joining the cluster learns).
    pub fn local_sessions(&self) -> Vec<(UserId, String)> {
        self.lock().session_users.iter().map(|(s, u)| (*u, s.clone())).collect()
    }

    /// Forgets everything node `node` said (it stopped, or restarted and will say it again).
    pub fn forget_node(&self, node: &str) -> Forgotten {
        let mut m = self.lock();
        let mut users = Vec::new();
        m.remote.retain(|user, nodes| {
            if nodes.remove(node).is_some() {
                users.push(*user);
            }
            !nodes.is_empty()
        });
        let mut sessions = Vec::new();
        m.remote_sessions.retain(|session, (user, nodes)| {
            if nodes.remove(node) {
                sessions.push((*user, session.clone()));
            }
            !nodes.is_empty()
        });
        Forgotten { users, sessions }
    }

    /// Unregisters a connection: the user's new presence when it changed, and how many
    /// connections the session keeps.
    /// Attaches a meeting-room guest's connection (§25.3): reachable as `Audience::Session`, with
    /// no user and no presence.
    pub fn attach_guest(&self, session: &str, key: u64, outbox: Outbox) {
        self.lock().sessions.entry(session.to_string()).or_default().insert(key, outbox);
    }

    /// Detaches a guest's connection; answers how many connections the session still has here.
    pub fn detach_guest(&self, session: &str, key: u64) -> usize {
        let mut m = self.lock();
        let Some(conns) = m.sessions.get_mut(session) else { return 0 };
        conns.remove(&key);
        let remaining = conns.len();
        if remaining == 0 {
            m.sessions.remove(session);
        }
        remaining
    }

    pub fn detach(&self, session: &str, user: UserId, key: u64) -> Detached {
        let mut m = self.lock();
        let before = aggregate(m.presence.get(&user));
        if let Some(devices) = m.presence.get_mut(&user) {
            devices.remove(&key);
            if devices.is_empty() {
                m.presence.remove(&user);
            }
        }
        let after = aggregate(m.presence.get(&user));
        let mut remaining = 0;
        if let Some(conns) = m.sessions.get_mut(session) {
            conns.remove(&key);
            remaining = conns.len();
            if conns.is_empty() {
                m.sessions.remove(session);
                m.session_users.remove(session);
            }
        }
        if let Some(conns) = m.users.get_mut(&user) {
            conns.remove(&key);
            if conns.is_empty() {
                m.users.remove(&user);
            }
        }
        Detached { presence: (before != after).then_some(after), remaining }
    }

    /// Connections attached to this node now: accounts' and meeting-room guests' (§26.9).
    pub fn connection_count(&self) -> usize {
        self.lock().sessions.values().map(HashMap::len).sum()
    }

    /// Accounts with a connection on this node or, as the other nodes said, on another (§26.9).
    pub fn online_user_count(&self) -> usize {
        let m = self.lock();
        m.users.len() + m.remote.keys().filter(|u| !m.users.contains_key(u)).count()
    }

    /// Each of `users`' connections as this node knows them (§26.2): its own here, plus one per
    /// session another node said is connected there (a node tells sessions, not connections).
    pub fn connections_of(&self, users: &[UserId]) -> Vec<u32> {
        let m = self.lock();
        let mut remote: HashMap<UserId, usize> = users.iter().map(|u| (*u, 0)).collect();
        for (user, nodes) in m.remote_sessions.values() {
            if let Some(n) = remote.get_mut(user) {
                *n += nodes.len();
            }
        }
        users
            .iter()
            .map(|u| {
                let here = m.users.get(u).map_or(0, HashMap::len);
                u32::try_from(here + remote.get(u).copied().unwrap_or(0)).unwrap_or(u32::MAX)
            })
            .collect()
    }

    /// Whether any of these users has a connection on this node.
    pub fn any_connected(&self, users: &[UserId]) -> bool {
        let m = self.lock();
        users.iter().any(|u| m.users.contains_key(u))
    }

    /// Queues one encoded frame to every connection of these users, without waiting: a full queue
    /// closes that connection as a slow consumer (it resyncs). Returns the deliveries made.
    pub fn deliver(&self, users: &[UserId], frame: &Bytes) -> usize {
        let m = self.lock();
        let mut n = 0;
        for u in users {
            if let Some(conns) = m.users.get(u) {
                for outbox in conns.values() {
                    n += usize::from(outbox.push(frame.clone()));
                }
            }
        }
        drop(m);
        self.deliveries.inc_by(n as u64);
        n
    }

    /// Queues one encoded frame to an [`Audience`]; returns the deliveries made. A `droppable`
    /// frame (typing) is skipped for a connection whose queue is filling instead of closing it.
    pub fn deliver_to(&self, to: &Audience, frame: &Bytes, droppable: bool) -> usize {
        let push = |o: &Outbox| if droppable { o.push_droppable(frame.clone()) } else { o.push(frame.clone()) };
        let m = self.lock();
        let users = match to {
            Audience::Session(s) => {
                let n = m.sessions.get(s).map_or(0, |conns| conns.values().map(|o| usize::from(push(o))).sum());
                drop(m);
                self.deliveries.inc_by(n as u64);
                return n;
            }
            Audience::Users(users) | Audience::UsersExcept(users, _) => users,
        };
        let skip = match to {
            Audience::UsersExcept(_, s) => m.sessions.get(s),
            _ => None,
        };
        let mut n = 0;
        for u in users {
            for (key, outbox) in m.users.get(u).into_iter().flatten() {
                if !skip.is_some_and(|s| s.contains_key(key)) {
                    n += usize::from(push(outbox));
                }
            }
        }
        drop(m);
        self.deliveries.inc_by(n as u64);
        n
    }

    /// Tells every live connection of `session` it was revoked (one encoded event shared by all),
    /// then closes them with SESSION_REVOKED. Returns how many were closed.
    pub fn revoke(&self, session: &str, reason: RevokeReason) -> usize {
        let conns = {
            let mut m = self.lock();
            m.session_users.remove(session);
            m.sessions.remove(session)
        };
        let Some(conns) = conns else { return 0 };
        let bytes = crate::wire::session_revoked_frame_bytes(session, reason);
        for outbox in conns.values() {
            let pushed = outbox.push(bytes.clone());
            self.deliveries.inc_by(u64::from(pushed));
            outbox.kick(Close::new(CloseCode::SessionRevoked, "session revoked"));
        }
        conns.len()
    }

    /// Closes every connection of these users (all of this node's connections when `users` is
    /// `None`) with 4003 SLOW_CONSUMER, after the frames already queued: their clients reconnect
    /// and resync (§8). For when this node cannot prove it delivered everything live. Returns
    /// how many were closed.
    pub fn resync(&self, users: Option<&[UserId]>) -> usize {
        let close = || Close::new(CloseCode::SlowConsumer, "live delivery interrupted; reconnect and sync");
        let m = self.lock();
        let mut n = 0;
        let mut kick = |conns: &HashMap<u64, Outbox>| {
            for outbox in conns.values() {
                outbox.kick(close());
                n += 1;
            }
        };
        match users {
            Some(users) => users.iter().filter_map(|u| m.users.get(u)).for_each(&mut kick),
            None => m.users.values().for_each(&mut kick),
        }
        n
    }
}
