//! What nodes say to each other over NATS: protobuf messages (prost, declared here; field numbers
//! are never reused or renumbered, so nodes of neighbouring versions understand each other during
//! a rolling upgrade) and their conversion from and to domain events. Client frames travel as the
//! bytes the committing node encoded once; a receiving node queues them as they are.

use bytes::Bytes;

use crate::bus::{Commit, DomainEvent, Live, SeqFrame, UserFrame};
use crate::hub::{Audience, Presence};
use crate::store::{ConvId, RevokeReason, UserId};

/// One message on the cluster's events subject.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Envelope {
    /// The publishing node.
    #[prost(string, tag = "1")]
    pub node: String,
    /// Random per start of that node: a restart is a new incarnation with its own counter.
    #[prost(uint64, tag = "2")]
    pub incarnation: u64,
    /// The publishing incarnation's event counter, from 1, gapless; 0 for heartbeats.
    #[prost(uint64, tag = "3")]
    pub pub_seq: u64,
    #[prost(oneof = "Body", tags = "10, 11, 12, 13, 14, 15, 16, 17, 18, 19")]
    pub body: Option<Body>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Body {
    #[prost(message, tag = "10")]
    Committed(LiveMsg),
    #[prost(message, tag = "11")]
    AccountDeleted(AccountDeletedMsg),
    #[prost(message, tag = "12")]
    UserBlocked(UserBlockedMsg),
    #[prost(message, tag = "13")]
    SessionsRevoked(SessionsRevokedMsg),
    /// The user's presence over the publishing node's devices.
    #[prost(message, tag = "14")]
    Presence(PresenceMsg),
    #[prost(message, tag = "15")]
    Frames(FramesMsg),
    #[prost(message, tag = "16")]
    Heartbeat(HeartbeatMsg),
    /// The publishing node's whole presence table, in chunks (for a node that just joined).
    #[prost(message, tag = "17")]
    PresenceTable(PresenceTableMsg),
    /// A node lost track of the others' presence: every node publishes its table again.
    #[prost(message, tag = "18")]
    TableWanted(TableWantedMsg),
    /// A session (device) got its first connection on the publishing node, or lost its last.
    #[prost(message, tag = "19")]
    Session(SessionMsg),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionMsg {
    #[prost(int64, tag = "1")]
    pub user: i64,
    #[prost(string, tag = "2")]
    pub session: String,
    #[prost(bool, tag = "3")]
    pub connected: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LiveMsg {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<SeqFrameMsg>,
    #[prost(int64, repeated, tag = "2")]
    pub audience: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub user_updates: Vec<UserFrameMsg>,
    #[prost(bytes = "bytes", repeated, tag = "4")]
    pub receipts: Vec<Bytes>,
    #[prost(message, repeated, tag = "5")]
    pub notifications: Vec<UserFrameMsg>,
    #[prost(message, repeated, tag = "6")]
    pub members_gone: Vec<MemberGoneMsg>,
    #[prost(message, repeated, tag = "7")]
    pub cascade: Vec<LiveMsg>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SeqFrameMsg {
    #[prost(int64, tag = "1")]
    pub conversation: i64,
    #[prost(int64, tag = "2")]
    pub seq: i64,
    #[prost(bytes = "bytes", tag = "3")]
    pub frame: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UserFrameMsg {
    #[prost(int64, tag = "1")]
    pub user: i64,
    #[prost(int64, tag = "2")]
    pub seq: i64,
    #[prost(bytes = "bytes", tag = "3")]
    pub frame: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MemberGoneMsg {
    #[prost(int64, tag = "1")]
    pub conversation: i64,
    #[prost(int64, tag = "2")]
    pub user: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AccountDeletedMsg {
    #[prost(int64, tag = "1")]
    pub user: i64,
    #[prost(int64, repeated, tag = "2")]
    pub audience: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UserBlockedMsg {
    #[prost(int64, tag = "1")]
    pub blocker: i64,
    #[prost(int64, tag = "2")]
    pub blocked: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionsRevokedMsg {
    #[prost(string, repeated, tag = "1")]
    pub sessions: Vec<String>,
    #[prost(int32, tag = "2")]
    pub reason: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PresenceMsg {
    #[prost(int64, tag = "1")]
    pub user: i64,
    /// Wire `PresenceState`: ONLINE, AWAY or OFFLINE (no device on the publishing node).
    #[prost(int32, tag = "2")]
    pub state: i32,
}

/// Who a frame goes to: users, one session, or users except one session.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AudienceFrameMsg {
    #[prost(int64, repeated, tag = "1")]
    pub users: Vec<i64>,
    /// Set alone: that session's connections. Set with `users`: everyone but that session.
    #[prost(string, tag = "2")]
    pub session: String,
    #[prost(bytes = "bytes", tag = "3")]
    pub frame: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FramesMsg {
    #[prost(message, repeated, tag = "1")]
    pub frames: Vec<AudienceFrameMsg>,
    #[prost(bool, tag = "2")]
    pub droppable: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HeartbeatMsg {
    /// The last `pub_seq` this incarnation assigned: a receiver behind it lost events.
    #[prost(uint64, tag = "1")]
    pub published: u64,
    /// The node is shutting down: its devices are gone now, not after the node timeout.
    #[prost(bool, tag = "2")]
    pub leaving: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PresenceTableMsg {
    /// The first chunk: forget what this node said before.
    #[prost(bool, tag = "1")]
    pub first: bool,
    #[prost(int64, repeated, tag = "2")]
    pub users: Vec<i64>,
    #[prost(int32, repeated, tag = "3")]
    pub states: Vec<i32>,
    /// Sessions connected to the publishing node (in the first chunk).
    #[prost(message, repeated, tag = "4")]
    pub sessions: Vec<SessionMsg>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TableWantedMsg {}

/// Asks a node for events it published again (on its replay subject).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReplayRequest {
    #[prost(uint64, tag = "1")]
    pub incarnation: u64,
    /// Inclusive range of `pub_seq`.
    #[prost(uint64, tag = "2")]
    pub from: u64,
    #[prost(uint64, tag = "3")]
    pub to: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReplayReply {
    /// The range is no longer (or was never) kept: the asker must resync.
    #[prost(bool, tag = "1")]
    pub gone: bool,
    /// Encoded [`Envelope`]s from `from` on, in order; maybe fewer than asked (size cap).
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub envelopes: Vec<Bytes>,
}

fn ids(users: &[UserId]) -> Vec<i64> {
    users.iter().map(|u| u.0).collect()
}

fn users(ids: &[i64]) -> Vec<UserId> {
    ids.iter().copied().map(UserId).collect()
}

impl LiveMsg {
    fn of(l: &Live) -> Self {
        let user_frame = |u: &UserFrame| UserFrameMsg { user: u.user.0, seq: u.seq, frame: u.frame.clone() };
        Self {
            entries: l
                .entries
                .iter()
                .map(|e| SeqFrameMsg { conversation: e.conversation.0, seq: e.seq, frame: e.frame.clone() })
                .collect(),
            audience: ids(&l.audience),
            user_updates: l.user_updates.iter().map(user_frame).collect(),
            receipts: l.receipts.clone(),
            notifications: l.notifications.iter().map(user_frame).collect(),
            members_gone: l.members_gone.iter().map(|(c, u)| MemberGoneMsg { conversation: c.0, user: u.0 }).collect(),
            cascade: l.cascade.iter().map(Self::of).collect(),
        }
    }

    fn into_live(self) -> Live {
        let user_frame = |u: UserFrameMsg| UserFrame { user: UserId(u.user), seq: u.seq, frame: u.frame };
        Live {
            entries: self
                .entries
                .into_iter()
                .map(|e| SeqFrame { conversation: ConvId(e.conversation), seq: e.seq, frame: e.frame })
                .collect(),
            audience: users(&self.audience),
            user_updates: self.user_updates.into_iter().map(user_frame).collect(),
            receipts: self.receipts,
            notifications: self.notifications.into_iter().map(user_frame).collect(),
            members_gone: self.members_gone.into_iter().map(|m| (ConvId(m.conversation), UserId(m.user))).collect(),
            cascade: self.cascade.into_iter().map(Self::into_live).collect(),
        }
    }
}

fn audience_msg(to: &Audience, frame: &Bytes) -> AudienceFrameMsg {
    let (users, session) = match to {
        Audience::Users(u) => (ids(u), String::new()),
        Audience::Session(s) => (Vec::new(), s.clone()),
        Audience::UsersExcept(u, s) => (ids(u), s.clone()),
    };
    AudienceFrameMsg { users, session, frame: frame.clone() }
}

fn audience(m: &AudienceFrameMsg) -> Audience {
    match (m.users.is_empty(), m.session.is_empty()) {
        (true, false) => Audience::Session(m.session.clone()),
        (false, false) => Audience::UsersExcept(users(&m.users), m.session.clone()),
        _ => Audience::Users(users(&m.users)),
    }
}

/// The body another node needs for `event`; `None` for events that stay on this node.
/// `local_presence` is this node's own presence of a user (for `PresenceChanged`).
pub fn body_of(event: &DomainEvent, local_presence: impl Fn(UserId) -> Presence) -> Option<Body> {
    Some(match event {
        DomainEvent::Committed(c) => Body::Committed(LiveMsg::of(&c.live)),
        DomainEvent::AccountDeleted { user, audience } => {
            Body::AccountDeleted(AccountDeletedMsg { user: user.0, audience: ids(audience) })
        }
        DomainEvent::UserBlocked { blocker, blocked } => {
            Body::UserBlocked(UserBlockedMsg { blocker: blocker.0, blocked: blocked.0 })
        }
        DomainEvent::SessionsRevoked { sessions, reason } => {
            Body::SessionsRevoked(SessionsRevokedMsg { sessions: sessions.clone(), reason: *reason as i32 })
        }
        DomainEvent::PresenceChanged { user } => {
            Body::Presence(PresenceMsg { user: user.0, state: local_presence(*user).wire() })
        }
        DomainEvent::Frames { frames, droppable } => Body::Frames(FramesMsg {
            frames: frames.iter().map(|(to, f)| audience_msg(to, f)).collect(),
            droppable: *droppable,
        }),
        DomainEvent::SessionAttached { caller, .. } => {
            Body::Session(SessionMsg { user: caller.user_id.0, session: caller.session_id.clone(), connected: true })
        }
        DomainEvent::SessionDetached { caller, remaining: 0, .. } => {
            Body::Session(SessionMsg { user: caller.user_id.0, session: caller.session_id.clone(), connected: false })
        }
        DomainEvent::SessionDetached { .. } | DomainEvent::NodeDown { .. } | DomainEvent::CallInvited { .. } => {
            return None;
        }
    })
}

/// What a received body means on this node.
#[derive(Debug)]
pub enum Received {
    /// An event for this node's subscribers.
    Event(DomainEvent),
    /// The publishing node's presence of `user`.
    Presence(UserId, Presence),
    /// A chunk of the publishing node's presence table and connected sessions.
    Table {
        first: bool,
        entries: Vec<(UserId, Presence)>,
        sessions: Vec<(UserId, String)>,
    },
    /// A session got its first connection on the publishing node, or lost its last.
    Session {
        user: UserId,
        session: String,
        connected: bool,
    },
    TableWanted,
    Heartbeat,
    /// Nothing this version understands (a newer node's message).
    Unknown,
}

/// Decodes a body into what it means here.
pub fn received(body: Option<Body>) -> Received {
    let Some(body) = body else { return Received::Unknown };
    Received::Event(match body {
        Body::Committed(l) => DomainEvent::Committed(std::sync::Arc::new(Commit::remote(l.into_live()))),
        Body::AccountDeleted(m) => DomainEvent::AccountDeleted { user: UserId(m.user), audience: users(&m.audience) },
        Body::UserBlocked(m) => DomainEvent::UserBlocked { blocker: UserId(m.blocker), blocked: UserId(m.blocked) },
        Body::SessionsRevoked(m) => match RevokeReason::from_wire(m.reason) {
            Some(reason) => DomainEvent::SessionsRevoked { sessions: m.sessions, reason },
            None => return Received::Unknown,
        },
        Body::Presence(m) => {
            return match Presence::from_wire(m.state) {
                Some(p) => Received::Presence(UserId(m.user), p),
                None => Received::Unknown,
            };
        }
        Body::Frames(m) => DomainEvent::Frames {
            frames: m.frames.iter().map(|f| (audience(f), f.frame.clone())).collect(),
            droppable: m.droppable,
        },
        Body::Heartbeat(_) => return Received::Heartbeat,
        Body::PresenceTable(t) => {
            let entries = t
                .users
                .iter()
                .zip(&t.states)
                .filter_map(|(u, s)| Some((UserId(*u), Presence::from_wire(*s)?)))
                .collect();
            let sessions = t.sessions.into_iter().map(|s| (UserId(s.user), s.session)).collect();
            return Received::Table { first: t.first, entries, sessions };
        }
        Body::TableWanted(_) => return Received::TableWanted,
        Body::Session(s) => {
            return Received::Session { user: UserId(s.user), session: s.session, connected: s.connected };
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn a_commit_crosses_unchanged() {
        let live = Live {
            entries: vec![SeqFrame { conversation: ConvId(7), seq: 3, frame: Bytes::from_static(b"entry") }],
            audience: vec![UserId(1), UserId(2)],
            user_updates: vec![UserFrame { user: UserId(2), seq: 9, frame: Bytes::from_static(b"upd") }],
            receipts: vec![Bytes::from_static(b"rcpt")],
            notifications: vec![UserFrame { user: UserId(1), seq: 0, frame: Bytes::from_static(b"n") }],
            members_gone: vec![(ConvId(7), UserId(3))],
            cascade: vec![Live { audience: vec![UserId(5)], ..Default::default() }],
        };
        let event = DomainEvent::Committed(std::sync::Arc::new(Commit::remote(live.clone())));
        let env =
            Envelope { node: "a".into(), incarnation: 1, pub_seq: 1, body: body_of(&event, |_| Presence::Offline) };
        let back = Envelope::decode(env.encode_to_vec().as_slice()).expect("decodes");
        match received(back.body) {
            Received::Event(DomainEvent::Committed(c)) => {
                assert_eq!(c.live, live);
                assert!(c.applied.is_none(), "the typed change stays where it was committed");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn audiences_cross_unchanged() {
        for to in [
            Audience::Users(vec![UserId(1)]),
            Audience::Session("s".into()),
            Audience::UsersExcept(vec![UserId(1), UserId(2)], "s".into()),
        ] {
            assert_eq!(audience(&audience_msg(&to, &Bytes::new())), to);
        }
    }

    #[test]
    fn only_a_sessions_first_and_last_connection_cross() {
        let caller = crate::session::Caller { user_id: UserId(1), session_id: "s".into(), expires_at_ms: 0 };
        assert!(
            body_of(&DomainEvent::SessionAttached { caller: caller.clone(), key: 1 }, |_| Presence::Online).is_some()
        );
        let detached = |remaining| DomainEvent::SessionDetached { caller: caller.clone(), key: 1, remaining };
        assert!(body_of(&detached(0), |_| Presence::Online).is_some());
        assert!(body_of(&detached(1), |_| Presence::Online).is_none(), "the session is still connected here");
        assert!(body_of(&DomainEvent::NodeDown { node: "b".into(), incarnation: 1 }, |_| Presence::Online).is_none());
    }
}
