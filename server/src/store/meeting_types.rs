//! Domain types of meeting rooms (docs/protocol.md §25): rooms, their invites, and who is barred.

use super::conv_types::{UnknownValue, numbered};
use super::types::UserId;

/// A meeting room's id: 32 lower-case hex digits (128 random bits).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(String);

impl RoomId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).expect("the OS random source works");
        Self(b.iter().map(|x| format!("{x:02x}")).collect())
    }

    /// `s` when it has the shape of a room id (32 lower-case hex digits).
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RoomId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What someone may do in a room (wire `RoomRole`, §25.2); ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoomRole {
    /// Watches and listens.
    Guest = 1,
    /// Also publishes.
    Speaker = 2,
    /// Also moderates and bypasses the lobby.
    Moderator = 3,
    /// Also updates and closes the room.
    Owner = 4,
}

numbered!(RoomRole, "room role", [Guest, Speaker, Moderator, Owner]);

impl RoomRole {
    /// Whether this role may publish tracks.
    pub fn publishes(self) -> bool {
        self >= Self::Speaker
    }

    /// Whether this role moderates (admits, mutes, removes, locks, invites).
    pub fn moderates(self) -> bool {
        self >= Self::Moderator
    }
}

/// Why a room closed, or a participant had to leave (wire `RoomCloseReason`, §25.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoomCloseReason {
    Closed = 1,
    Expired = 2,
    Empty = 3,
    Removed = 4,
    Denied = 5,
    Revoked = 6,
}

numbered!(RoomCloseReason, "room close reason", [Closed, Expired, Empty, Removed, Denied, Revoked]);

/// A meeting room as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomRec {
    pub id: RoomId,
    pub name: String,
    pub owner: UserId,
    /// 0: the server's default.
    pub max_publishers: u32,
    /// 0: the server's default.
    pub max_participants: u32,
    /// Milliseconds; 0: the server's default.
    pub empty_timeout_ms: u64,
    /// Milliseconds since the epoch; 0: never.
    pub expires_at_ms: u64,
    pub lobby: bool,
    pub locked: bool,
    pub moderators: Vec<UserId>,
    pub created_at_ms: u64,
    /// Since when nobody has been in the room (its creation at first); `None` while someone is.
    pub empty_since_ms: Option<u64>,
    pub closed_at_ms: Option<u64>,
    pub close_reason: Option<RoomCloseReason>,
}

impl RoomRec {
    /// `user`'s role as an account: owner, moderator, or none.
    pub fn account_role(&self, user: UserId) -> Option<RoomRole> {
        if self.owner == user {
            Some(RoomRole::Owner)
        } else if self.moderators.contains(&user) {
            Some(RoomRole::Moderator)
        } else {
            None
        }
    }

    pub fn is_open(&self) -> bool {
        self.closed_at_ms.is_none()
    }
}

/// The settings UpdateRoom changes; `None` leaves one as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomChange {
    pub name: Option<String>,
    pub max_publishers: Option<u32>,
    pub max_participants: Option<u32>,
    pub empty_timeout_ms: Option<u64>,
    pub expires_at_ms: Option<u64>,
    pub lobby: Option<bool>,
    pub locked: Option<bool>,
    pub moderators: Option<Vec<UserId>>,
}

/// An invite as stored; the token itself is never stored (it is signed, §25.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteRec {
    /// 16 lower-case hex digits.
    pub id: String,
    pub room: RoomId,
    pub role: RoomRole,
    pub expires_at_ms: u64,
    /// 0: unlimited.
    pub max_uses: u32,
    pub uses: u32,
    pub created_by: UserId,
    pub created_at_ms: u64,
    pub revoked_at_ms: Option<u64>,
}

/// What using an invite found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InviteUse {
    /// Counted: one more use.
    Used(InviteRec),
    /// No such invite in that room, or revoked, expired, or barred.
    Refused,
    /// Every use is taken.
    Exhausted,
}

/// Who a bar keeps out of a room.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Barred {
    User(UserId),
    Guest(String),
    Invite(String),
}

impl Barred {
    /// The stored (kind, subject) pair.
    pub fn parts(&self) -> (&'static str, String) {
        match self {
            Self::User(u) => ("user", u.0.to_string()),
            Self::Guest(g) => ("guest", g.clone()),
            Self::Invite(i) => ("invite", i.clone()),
        }
    }
}
