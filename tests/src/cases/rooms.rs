//! Cases for meeting rooms (docs/protocol.md §25), on the signalling wire only: rooms are found
//! by their owners and moderators only, invites run out and are revoked, a guest is confined to
//! its room, joins through the lobby, and is removed and barred by a moderator.

use anyhow::{Context, bail, ensure};
use confab_protocol::client::{Client, ClientError, Events};
use confab_protocol::v1::{self, ErrorCode, RoomRole, client_frame::Request, event, response};

use super::Target;
use super::common::{Account, account, code, next, req};

async fn create_room(a: &Account, lobby: bool) -> anyhow::Result<v1::Room> {
    let r = v1::CreateRoom { name: "conformance".into(), lobby, ..Default::default() };
    match req(&a.client, Request::CreateRoom(r)).await? {
        response::Result::CreateRoom(room) => Ok(room),
        other => bail!("expected Room, got {other:?}"),
    }
}

async fn invite(a: &Account, room: &str, role: RoomRole, max_uses: u32) -> anyhow::Result<v1::RoomInvite> {
    let r = v1::CreateRoomInvite { room_id: room.into(), role: role as i32, expires_at_ms: 0, max_uses };
    match req(&a.client, Request::CreateRoomInvite(r)).await? {
        response::Result::CreateRoomInvite(i) => Ok(i),
        other => bail!("expected RoomInvite, got {other:?}"),
    }
}

async fn guest(t: &Target, token: &str, name: &str) -> Result<(Client, Events), ClientError> {
    let mut o = t.options();
    o.room_token = Some(token.into());
    o.display_name = name.into();
    t.client_with(o).await
}

fn join(room: &str) -> Request {
    Request::JoinCall(v1::JoinCall { room_id: room.into(), conversation_id: 0 })
}

fn get(room: &str) -> Request {
    Request::GetRoom(v1::GetRoom { room_id: room.into() })
}

fn client_code<T>(r: Result<T, ClientError>) -> Option<ErrorCode> {
    r.err().and_then(|e| e.code())
}

/// §25.1: a room is created with a 128-bit id; a stranger, a malformed id and a missing room
/// all answer NOT_FOUND; bad fields are INVALID_ARGUMENT; its owner lists and updates it.
pub(super) async fn rooms_are_found_by_their_owners_only(t: Target) -> anyhow::Result<()> {
    let owner = account(&t, "cfrm").await?;
    let stranger = account(&t, "cfrm").await?;
    let room = create_room(&owner, false).await?;
    ensure!(room.room_id.len() == 32 && room.room_id.bytes().all(|b| b.is_ascii_hexdigit()), "{room:?}");
    ensure!(room.owner_id == owner.id);
    ensure!(code(req(&stranger.client, get(&room.room_id)).await) == Some(ErrorCode::NotFound));
    ensure!(code(req(&owner.client, get("nope")).await) == Some(ErrorCode::NotFound));
    ensure!(code(req(&owner.client, get(&"0".repeat(32))).await) == Some(ErrorCode::NotFound));
    ensure!(code(req(&stranger.client, join(&room.room_id)).await) == Some(ErrorCode::NotFound));
    let bad = v1::CreateRoom { name: " ".into(), ..Default::default() };
    ensure!(code(req(&owner.client, Request::CreateRoom(bad)).await) == Some(ErrorCode::InvalidArgument));
    let both = v1::JoinCall { room_id: room.room_id.clone(), conversation_id: 7 };
    ensure!(code(req(&owner.client, Request::JoinCall(both)).await) == Some(ErrorCode::InvalidArgument));
    let upd = v1::UpdateRoom { room_id: room.room_id.clone(), name: Some("renamed".into()), ..Default::default() };
    match req(&owner.client, Request::UpdateRoom(upd)).await? {
        response::Result::UpdateRoom(r) => ensure!(r.name == "renamed"),
        other => bail!("expected Room, got {other:?}"),
    }
    match req(&owner.client, Request::ListRooms(v1::ListRooms::default())).await? {
        response::Result::ListRooms(l) => ensure!(l.rooms.iter().any(|r| r.room_id == room.room_id)),
        other => bail!("expected ListRoomsResult, got {other:?}"),
    }
    let close = Request::CloseRoom(v1::CloseRoom { room_id: room.room_id.clone() });
    ensure!(matches!(req(&owner.client, close).await?, response::Result::CloseRoom(_)));
    ensure!(code(req(&owner.client, join(&room.room_id)).await) == Some(ErrorCode::FailedPrecondition));
    Ok(())
}

/// §25.2, §25.3: an invite's token makes a guest of its role; max_uses runs out; a revoked
/// invite's token no longer works; tokens are shown once.
pub(super) async fn invites_run_out_and_are_revoked(t: Target) -> anyhow::Result<()> {
    let owner = account(&t, "cfrm").await?;
    let room = create_room(&owner, false).await?;
    let bad =
        v1::CreateRoomInvite { room_id: room.room_id.clone(), role: RoomRole::Owner as i32, ..Default::default() };
    ensure!(code(req(&owner.client, Request::CreateRoomInvite(bad)).await) == Some(ErrorCode::InvalidArgument));
    let once = invite(&owner, &room.room_id, RoomRole::Speaker, 1).await?;
    let (g, _ev) = guest(&t, &once.token, "Once").await?;
    let info = g.welcome().guest.clone().context("Welcome.guest")?;
    ensure!(info.room_id == room.room_id && info.role == RoomRole::Speaker as i32 && !info.resume_token.is_empty());
    ensure!(client_code(guest(&t, &once.token, "Twice").await) == Some(ErrorCode::FailedPrecondition));
    let other = invite(&owner, &room.room_id, RoomRole::Guest, 0).await?;
    let revoke = v1::RevokeRoomInvite { room_id: room.room_id.clone(), invite_id: other.invite_id.clone() };
    ensure!(matches!(
        req(&owner.client, Request::RevokeRoomInvite(revoke)).await?,
        response::Result::RevokeRoomInvite(_)
    ));
    ensure!(client_code(guest(&t, &other.token, "Late").await) == Some(ErrorCode::Unauthenticated));
    ensure!(client_code(guest(&t, "not.a.token", "X").await) == Some(ErrorCode::Unauthenticated));
    match req(&owner.client, Request::ListRoomInvites(v1::ListRoomInvites { room_id: room.room_id.clone() })).await? {
        response::Result::ListRoomInvites(l) => {
            ensure!(l.invites.len() == 2 && l.invites.iter().all(|i| i.token.is_empty()), "{l:?}");
        }
        other => bail!("expected ListRoomInvitesResult, got {other:?}"),
    }
    g.close().await;
    Ok(())
}

/// §25.3: a guest may make requests about its own room only; everything else, sign-in included,
/// is PERMISSION_DENIED.
pub(super) async fn a_guest_is_confined_to_its_room(t: Target) -> anyhow::Result<()> {
    let owner = account(&t, "cfrm").await?;
    let room = create_room(&owner, false).await?;
    let elsewhere = create_room(&owner, false).await?;
    let inv = invite(&owner, &room.room_id, RoomRole::Speaker, 0).await?;
    ensure!(client_code(guest(&t, &inv.token, "").await) == Some(ErrorCode::InvalidArgument), "a guest needs a name");
    let (g, _ev) = guest(&t, &inv.token, "Confined").await?;
    let denied = |r: Result<response::Result, ClientError>| code(r) == Some(ErrorCode::PermissionDenied);
    ensure!(denied(req(&g, Request::ListConversations(v1::ListConversations::default())).await));
    ensure!(denied(req(&g, Request::GetMe(v1::GetMe::default())).await));
    ensure!(denied(req(&g, Request::Login(v1::Login::default())).await));
    ensure!(denied(req(&g, Request::ListRooms(v1::ListRooms::default())).await));
    ensure!(denied(req(&g, get(&elsewhere.room_id)).await));
    ensure!(denied(req(&g, join(&elsewhere.room_id)).await));
    ensure!(denied(req(&g, Request::JoinCall(v1::JoinCall { room_id: String::new(), conversation_id: 1 })).await));
    match req(&g, get(&room.room_id)).await? {
        response::Result::GetRoom(r) => ensure!(r.role == RoomRole::Speaker as i32 && r.knocks.is_empty()),
        other => bail!("expected GetRoomResult, got {other:?}"),
    }
    g.close().await;
    Ok(())
}

/// §25.4, §25.7: in a room with a lobby a guest knocks, a moderator admits it, and it joins.
pub(super) async fn a_guest_joins_through_the_lobby(t: Target) -> anyhow::Result<()> {
    // A meeting's lobby and call live on one node (§25.4): every connection goes there.
    let t = t.one_node();
    let mut owner = account(&t, "cfrm").await?;
    let room = create_room(&owner, true).await?;
    let inv = invite(&owner, &room.room_id, RoomRole::Speaker, 0).await?;
    let (g, mut gev) = guest(&t, &inv.token, "Knocker").await?;
    let knocked = match req(&g, join(&room.room_id)).await? {
        response::Result::JoinCall(r) => r,
        other => bail!("expected JoinCallResult, got {other:?}"),
    };
    ensure!(knocked.in_lobby, "{knocked:?}");
    let rid = room.room_id.clone();
    let knock = next(&mut owner.events, |e| match e {
        event::Event::RoomKnock(k) if k.room_id == rid => k.knock,
        _ => None,
    })
    .await?;
    ensure!(knock.display_name == "Knocker");
    let answer =
        v1::AnswerKnock { room_id: room.room_id.clone(), participant_id: knock.participant_id.clone(), admit: true };
    ensure!(code(req(&g, Request::AnswerKnock(answer.clone())).await) == Some(ErrorCode::PermissionDenied));
    ensure!(matches!(req(&owner.client, Request::AnswerKnock(answer)).await?, response::Result::AnswerKnock(_)));
    let admitted = next(&mut gev, |e| match e {
        event::Event::LobbyDecision(d) => Some(d.admitted),
        _ => None,
    })
    .await?;
    ensure!(admitted);
    match req(&g, join(&room.room_id)).await? {
        response::Result::JoinCall(r) => ensure!(!r.in_lobby && !r.participant_id.is_empty(), "{r:?}"),
        other => bail!("expected JoinCallResult, got {other:?}"),
    }
    g.close().await;
    Ok(())
}

/// §25.5: a moderator removes a guest with a bar: it is told, and neither its resume token nor
/// its invite lets it back.
pub(super) async fn a_removed_guest_is_barred(t: Target) -> anyhow::Result<()> {
    // A meeting's lobby and call live on one node (§25.4): every connection goes there.
    let t = t.one_node();
    let owner = account(&t, "cfrm").await?;
    let room = create_room(&owner, false).await?;
    let inv = invite(&owner, &room.room_id, RoomRole::Guest, 0).await?;
    let (g, mut gev) = guest(&t, &inv.token, "Heckler").await?;
    let info = g.welcome().guest.clone().context("Welcome.guest")?;
    let seat = match req(&g, join(&room.room_id)).await? {
        response::Result::JoinCall(r) => r.participant_id,
        other => bail!("expected JoinCallResult, got {other:?}"),
    };
    let remove = v1::RemoveParticipant { room_id: room.room_id.clone(), participant_id: seat.clone(), bar: true };
    ensure!(matches!(
        req(&owner.client, Request::RemoveParticipant(remove)).await?,
        response::Result::RemoveParticipant(_)
    ));
    let removed = next(&mut gev, |e| match e {
        event::Event::ParticipantRemoved(r) if r.participant_id == seat => Some(r),
        _ => None,
    })
    .await?;
    ensure!(removed.barred && removed.reason == v1::RoomCloseReason::Removed as i32);
    ensure!(code(req(&g, join(&room.room_id)).await) == Some(ErrorCode::PermissionDenied));
    ensure!(client_code(guest(&t, &info.resume_token, "").await) == Some(ErrorCode::Unauthenticated));
    ensure!(client_code(guest(&t, &inv.token, "Again").await) == Some(ErrorCode::Unauthenticated));
    g.close().await;
    Ok(())
}
