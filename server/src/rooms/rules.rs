//! Who may do what in a meeting room (docs/protocol.md §25.2): plain functions over roles.

use crate::error::ServerError;
use crate::session::{Caller, Guest};
use crate::store::{Barred, RoomRec, RoomRole, UserId};

/// Who makes a room request: an account or a room's guest.
#[derive(Clone, Copy, Debug)]
pub enum Principal<'a> {
    Account(&'a Caller),
    Guest(&'a Guest),
}

impl Principal<'_> {
    /// The account's id on the wire; 0 for a guest.
    pub fn user_id(&self) -> u64 {
        match self {
            Self::Account(a) => crate::wire::user(a.user_id),
            Self::Guest(_) => 0,
        }
    }

    /// The account's id; `UserId(0)` for a guest.
    pub fn user_id_typed(&self) -> UserId {
        match self {
            Self::Account(a) => a.user_id,
            Self::Guest(_) => UserId(0),
        }
    }

    /// The bars that would keep this principal out of a room.
    pub fn bars(&self) -> Vec<Barred> {
        match self {
            Self::Account(a) => vec![Barred::User(a.user_id)],
            Self::Guest(g) => vec![Barred::Guest(g.guest_id.clone()), Barred::Invite(g.invite_id.clone())],
        }
    }
}

/// A guest's request about anything but its room (§25.3).
pub fn outside_room() -> ServerError {
    ServerError::PermissionDenied("a room's guest may only make requests about that room (§25.3)".into())
}

/// The principal's role in `room`: an account's as owner or moderator (`None` otherwise: the
/// room is NOT_FOUND for it), a guest's from its token (its own room only).
pub fn role_in(who: &Principal, room: &RoomRec) -> Option<RoomRole> {
    match who {
        Principal::Account(a) => room.account_role(a.user_id),
        Principal::Guest(g) => (g.room == room.id).then_some(g.role),
    }
}

/// Owner only (CloseRoom, the owner's settings).
pub fn owner_only(role: RoomRole) -> Result<(), ServerError> {
    if role == RoomRole::Owner {
        Ok(())
    } else {
        Err(ServerError::PermissionDenied("only the room's owner may do that".into()))
    }
}

/// Moderators and the owner.
pub fn moderator_only(role: RoomRole) -> Result<(), ServerError> {
    if role.moderates() {
        Ok(())
    } else {
        Err(ServerError::PermissionDenied("only the room's moderators may do that".into()))
    }
}

/// UpdateRoom: moderators change `lobby` and `locked`; the owner everything.
pub fn may_update(role: RoomRole, owner_fields: bool) -> Result<(), ServerError> {
    if owner_fields { owner_only(role) } else { moderator_only(role) }
}

/// RemoveParticipant: moderators remove anyone but the owner.
pub fn may_remove(role: RoomRole, target_user: Option<UserId>, owner: UserId) -> Result<(), ServerError> {
    moderator_only(role)?;
    if target_user == Some(owner) {
        return Err(ServerError::PermissionDenied("the room's owner cannot be removed".into()));
    }
    Ok(())
}

/// A room's timing fields: `empty_timeout_ms` 0 or 1 s..7 days; `expires_at_ms` 0 or in the
/// future, at most `max_ahead_ms` ahead.
pub fn check_timing(
    prefix: &str,
    empty_timeout_ms: u64,
    expires_at_ms: u64,
    now_ms: u64,
    max_ahead_ms: u64,
) -> Result<(), ServerError> {
    if empty_timeout_ms != 0 && !(1000..=7 * 86_400_000).contains(&empty_timeout_ms) {
        return Err(ServerError::invalid(format!("{prefix}.empty_timeout_ms"), "0, or 1000..=604800000 ms"));
    }
    if expires_at_ms != 0 && (expires_at_ms <= now_ms || expires_at_ms > now_ms + max_ahead_ms) {
        return Err(ServerError::invalid(
            format!("{prefix}.expires_at_ms"),
            "0, or a time in the future at most a year ahead",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RoomId;

    fn room() -> RoomRec {
        RoomRec {
            id: RoomId::random(),
            name: "r".into(),
            owner: UserId(1),
            max_publishers: 0,
            max_participants: 0,
            empty_timeout_ms: 0,
            expires_at_ms: 0,
            lobby: false,
            locked: false,
            moderators: vec![UserId(2)],
            created_at_ms: 0,
            empty_since_ms: None,
            closed_at_ms: None,
            close_reason: None,
        }
    }

    fn caller(id: i64) -> Caller {
        Caller { user_id: UserId(id), session_id: "s".into(), expires_at_ms: u64::MAX }
    }

    #[test]
    fn roles_of_accounts_and_guests() {
        let r = room();
        let (owner, moderator, stranger) = (caller(1), caller(2), caller(3));
        assert_eq!(role_in(&Principal::Account(&owner), &r), Some(RoomRole::Owner));
        assert_eq!(role_in(&Principal::Account(&moderator), &r), Some(RoomRole::Moderator));
        assert_eq!(role_in(&Principal::Account(&stranger), &r), None, "a stranger finds no room");
        let mine = Guest {
            guest_id: "g".into(),
            room: r.id.clone(),
            role: RoomRole::Speaker,
            name: "n".into(),
            invite_id: "i".into(),
        };
        let other = Guest { room: RoomId::random(), ..mine.clone() };
        assert_eq!(role_in(&Principal::Guest(&mine), &r), Some(RoomRole::Speaker));
        assert_eq!(role_in(&Principal::Guest(&other), &r), None);
    }

    #[test]
    fn what_each_role_may_do() {
        for role in [RoomRole::Guest, RoomRole::Speaker] {
            assert!(moderator_only(role).is_err());
            assert!(may_update(role, false).is_err());
        }
        assert!(RoomRole::Speaker.publishes() && !RoomRole::Guest.publishes());
        assert!(moderator_only(RoomRole::Moderator).is_ok());
        assert!(may_update(RoomRole::Moderator, false).is_ok());
        assert!(may_update(RoomRole::Moderator, true).is_err(), "a moderator changes only lobby and locked");
        assert!(may_update(RoomRole::Owner, true).is_ok());
        assert!(owner_only(RoomRole::Moderator).is_err());
        assert!(may_remove(RoomRole::Moderator, Some(UserId(1)), UserId(1)).is_err(), "nobody removes the owner");
        assert!(may_remove(RoomRole::Moderator, Some(UserId(3)), UserId(1)).is_ok());
    }

    #[test]
    fn timing_bounds() {
        assert!(check_timing("x", 0, 0, 1000, 10).is_ok());
        assert!(check_timing("x", 999, 0, 1000, 10).is_err());
        assert!(check_timing("x", 1000, 0, 1000, 10).is_ok());
        assert!(check_timing("x", 0, 1000, 1000, 10).is_err(), "not in the past or now");
        assert!(check_timing("x", 0, 1005, 1000, 10).is_ok());
        assert!(check_timing("x", 0, 1011, 1000, 10).is_err(), "not too far ahead");
    }
}
