//! Guests (docs/protocol.md §25.3): invite tokens turned into guests at Hello, and resume tokens
//! that bring the same guest back with its role and lobby admission.

use confab_protocol::v1;

use super::{Rooms, now};
use crate::auth::tokens::{RoomClaims, Tokens};
use crate::error::ServerError;
use crate::session::Guest;
use crate::store::{Barred, InviteRec, InviteUse, RoomId, RoomRole};

/// How long a resume token lasts (capped by the invite's expiry).
const RESUME_MS: u64 = 12 * 3_600_000;
/// Longest guest display name, in characters.
const MAX_GUEST_NAME_CHARS: usize = 64;

/// `n` random bytes as lower-case hex.
pub(super) fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the OS random source works");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn bad_token() -> ServerError {
    ServerError::Unauthenticated("invalid, expired or revoked room token".into())
}

/// The signed token of `invite` (§25.2).
pub(super) fn invite_token(tokens: &Tokens, invite: &InviteRec) -> Result<String, ServerError> {
    let claims = RoomClaims {
        iss: String::new(),
        aud: String::new(),
        sub: "invite".into(),
        room: invite.room.to_string(),
        role: invite.role.into(),
        inv: invite.id.clone(),
        gid: String::new(),
        name: String::new(),
        iat: now() / 1000,
        exp: invite.expires_at_ms / 1000,
    };
    tokens.issue_room(claims).map_err(ServerError::from)
}

fn check_display_name(name: &str) -> Result<String, ServerError> {
    let name = name.trim();
    let n = name.chars().count();
    if n == 0 || n > MAX_GUEST_NAME_CHARS {
        return Err(ServerError::invalid("hello.display_name", "1..=64 characters with a room token"));
    }
    Ok(name.to_string())
}

/// §25.3: the guest a Hello's room token makes, and its Welcome.guest.
pub(super) async fn enter(
    rooms: &Rooms,
    token: &str,
    display_name: &str,
) -> Result<(Guest, v1::GuestInfo), ServerError> {
    let store = rooms.0.store.as_ref();
    let tokens = rooms.0.auth.tokens();
    let now = now();
    let claims = tokens.verify_room(token, now).map_err(|_| bad_token())?;
    let room = RoomId::parse(&claims.room).ok_or_else(bad_token)?;
    let role = RoomRole::try_from(claims.role).map_err(|_| bad_token())?;
    let guest = match claims.sub.as_str() {
        "invite" => {
            let name = check_display_name(display_name)?;
            match store.use_room_invite(&room, &claims.inv, now).await? {
                InviteUse::Used(_) => {}
                InviteUse::Exhausted => {
                    return Err(ServerError::FailedPrecondition("this invite has been used up".into()));
                }
                InviteUse::Refused => return Err(bad_token()),
            }
            Guest { guest_id: random_hex(8), room, role, name, invite_id: claims.inv.clone() }
        }
        "guest" if !claims.gid.is_empty() => {
            // The same guest again: its invite must still stand, the room be open, nobody barred.
            let invite = store.room_invite(&room, &claims.inv).await?.ok_or_else(bad_token)?;
            let open = store.meeting_room(&room).await?.is_some_and(|r| r.is_open());
            if invite.revoked_at_ms.is_some() || invite.expires_at_ms <= now || !open {
                return Err(bad_token());
            }
            Guest { guest_id: claims.gid.clone(), room, role, name: claims.name.clone(), invite_id: claims.inv.clone() }
        }
        _ => return Err(bad_token()),
    };
    let bars = [Barred::Guest(guest.guest_id.clone()), Barred::Invite(guest.invite_id.clone())];
    if store.barred_from_room(&guest.room, &bars).await? {
        return Err(bad_token());
    }
    // A resume token never outlives the first one (12 hours from the invite's use) nor the invite:
    // coming back does not extend it.
    let resume_exp = match claims.sub.as_str() {
        "invite" => (now + RESUME_MS).min(claims.exp.saturating_mul(1000)),
        _ => claims.exp.saturating_mul(1000),
    };
    let resume = RoomClaims {
        iss: String::new(),
        aud: String::new(),
        sub: "guest".into(),
        room: guest.room.to_string(),
        role: guest.role.into(),
        inv: guest.invite_id.clone(),
        gid: guest.guest_id.clone(),
        name: guest.name.clone(),
        iat: now / 1000,
        exp: resume_exp / 1000,
    };
    let resume_token = tokens.issue_room(resume).map_err(ServerError::from)?;
    let info = v1::GuestInfo {
        guest_id: guest.guest_id.clone(),
        room_id: guest.room.to_string(),
        role: guest.role.into(),
        display_name: guest.name.clone(),
        resume_token,
        resume_expires_at_ms: resume_exp / 1000 * 1000,
    };
    Ok((guest, info))
}
