//! Meeting rooms (docs/protocol.md §25) and the group-call requests that name a room: the
//! requests a room's guest may make, and the ones accounts make about rooms. A group-call request
//! with a `conversation_id` goes to the conversation's call (`super::calls`), from accounts only.

use confab_protocol::v1::{self, response::Result as R};

use super::calls;
use crate::calls::sfu::{CallKey, Sfu};
use crate::error::ServerError;
use crate::rooms::{Principal, rules::outside_room};
use crate::session::{Caller, Guest};
use crate::state::AppState;

type Out = Result<R, ServerError>;

/// The requests about a room or its call: what a guest may make (§25.3).
#[derive(Debug)]
pub(crate) enum RoomScoped {
    GetIceServers(v1::GetIceServers),
    JoinCall(v1::JoinCall),
    Publish(v1::Publish),
    SubscriberAnswer(v1::SubscriberAnswer),
    Trickle(v1::Trickle),
    SetMute(v1::SetMute),
    LeaveCall(v1::LeaveCall),
    SetSubscribedQuality(v1::SetSubscribedQuality),
    RestartIce(v1::RestartIce),
    GetRoom(v1::GetRoom),
    UpdateRoom(v1::UpdateRoom),
    CloseRoom(v1::CloseRoom),
    CreateRoomInvite(v1::CreateRoomInvite),
    ListRoomInvites(v1::ListRoomInvites),
    RevokeRoomInvite(v1::RevokeRoomInvite),
    AnswerKnock(v1::AnswerKnock),
    RemoveParticipant(v1::RemoveParticipant),
    MuteParticipant(v1::MuteParticipant),
}

/// A room request from an account: the group-call ones naming a conversation go to its call.
pub(crate) async fn from_account(state: &AppState, a: &Caller, r: RoomScoped) -> Out {
    match r {
        RoomScoped::GetIceServers(_) => calls::get_ice_servers(state, a),
        RoomScoped::JoinCall(r) if r.room_id.is_empty() => calls::join(state, a, r).await,
        RoomScoped::Publish(r) if r.room_id.is_empty() => calls::publish(state, a, r).await,
        RoomScoped::SubscriberAnswer(r) if r.room_id.is_empty() => calls::subscriber_answer(state, a, r).await,
        RoomScoped::Trickle(r) if r.room_id.is_empty() => calls::trickle(state, a, r).await,
        RoomScoped::SetMute(r) if r.room_id.is_empty() => calls::set_mute(state, a, r).await,
        RoomScoped::LeaveCall(r) if r.room_id.is_empty() => calls::leave(state, a, r).await,
        RoomScoped::SetSubscribedQuality(r) if r.room_id.is_empty() => calls::set_subscribed_quality(state, a, r).await,
        RoomScoped::RestartIce(r) if r.room_id.is_empty() => calls::restart_ice(state, a, r).await,
        other => meeting(state, &Principal::Account(a), &a.session_id, other).await,
    }
}

/// A guest's request: its own room's only.
pub(crate) async fn from_guest(state: &AppState, g: &Guest, r: RoomScoped) -> Out {
    let conversation = match &r {
        RoomScoped::JoinCall(r) => r.conversation_id,
        RoomScoped::Publish(r) => r.conversation_id,
        RoomScoped::SubscriberAnswer(r) => r.conversation_id,
        RoomScoped::Trickle(r) => r.conversation_id,
        RoomScoped::SetMute(r) => r.conversation_id,
        RoomScoped::LeaveCall(r) => r.conversation_id,
        RoomScoped::SetSubscribedQuality(r) => r.conversation_id,
        RoomScoped::RestartIce(r) => r.conversation_id,
        RoomScoped::GetIceServers(_)
        | RoomScoped::GetRoom(_)
        | RoomScoped::UpdateRoom(_)
        | RoomScoped::CloseRoom(_)
        | RoomScoped::CreateRoomInvite(_)
        | RoomScoped::ListRoomInvites(_)
        | RoomScoped::RevokeRoomInvite(_)
        | RoomScoped::AnswerKnock(_)
        | RoomScoped::RemoveParticipant(_)
        | RoomScoped::MuteParticipant(_) => 0,
    };
    if conversation != 0 {
        return Err(outside_room());
    }
    meeting(state, &Principal::Guest(g), &g.session_id(), r).await
}

/// The key of a meeting room's call for a principal: a guest's own room only.
fn meeting_key(
    who: &Principal<'_>,
    field: &'static str,
    conversation_id: u64,
    room_id: &str,
) -> Result<CallKey, ServerError> {
    if let Principal::Guest(g) = who
        && g.room.as_str() != room_id
    {
        return Err(outside_room());
    }
    Sfu::key_of(field, conversation_id, room_id)
}

async fn meeting(state: &AppState, who: &Principal<'_>, session: &str, r: RoomScoped) -> Out {
    let rooms = state.rooms();
    let sfu = state.calls().sfu();
    Ok(match r {
        RoomScoped::GetIceServers(_) => {
            if let Principal::Guest(g) = who {
                rooms.check_guest(g).await?;
            }
            let (ice_servers, expires_at_ms) =
                crate::calls::ice::ice_servers(&state.config().calls, who.user_id_typed(), crate::store::now_ms());
            R::GetIceServers(v1::GetIceServersResult { ice_servers, expires_at_ms })
        }
        RoomScoped::JoinCall(r) => {
            meeting_key(who, "join_call.room_id", r.conversation_id, &r.room_id)?;
            R::JoinCall(rooms.join(who, session, &r).await?)
        }
        RoomScoped::Publish(r) => {
            let key = meeting_key(who, "publish.room_id", r.conversation_id, &r.room_id)?;
            R::Publish(sfu.publish(session, &key, r).await?)
        }
        RoomScoped::SubscriberAnswer(r) => {
            let key = meeting_key(who, "subscriber_answer.room_id", r.conversation_id, &r.room_id)?;
            sfu.subscriber_answer(session, &key, r).await?;
            R::SubscriberAnswer(v1::SubscriberAnswerResult {})
        }
        RoomScoped::Trickle(r) => {
            let key = meeting_key(who, "trickle.room_id", r.conversation_id, &r.room_id)?;
            sfu.trickle(session, &key, r).await?;
            R::Trickle(v1::TrickleResult {})
        }
        RoomScoped::SetMute(r) => {
            let key = meeting_key(who, "set_mute.room_id", r.conversation_id, &r.room_id)?;
            sfu.set_mute(session, &key, r).await?;
            R::SetMute(v1::SetMuteResult {})
        }
        RoomScoped::LeaveCall(r) => {
            let key = meeting_key(who, "leave_call.room_id", r.conversation_id, &r.room_id)?;
            sfu.leave(session, &key).await?;
            R::LeaveCall(v1::LeaveCallResult {})
        }
        RoomScoped::SetSubscribedQuality(r) => {
            let key = meeting_key(who, "set_subscribed_quality.room_id", r.conversation_id, &r.room_id)?;
            return calls::subscribed_quality_in(state, session, &key, r).await;
        }
        RoomScoped::RestartIce(r) => {
            let key = meeting_key(who, "restart_ice.room_id", r.conversation_id, &r.room_id)?;
            return calls::restart_ice_in(state, session, &key, r).await;
        }
        RoomScoped::GetRoom(r) => R::GetRoom(rooms.get(who, session, r).await?),
        RoomScoped::UpdateRoom(r) => R::UpdateRoom(rooms.update(who, r).await?),
        RoomScoped::CloseRoom(r) => {
            rooms.close(who, r).await?;
            R::CloseRoom(v1::CloseRoomResult {})
        }
        RoomScoped::CreateRoomInvite(r) => R::CreateRoomInvite(rooms.create_invite(who, r).await?),
        RoomScoped::ListRoomInvites(r) => R::ListRoomInvites(rooms.list_invites(who, r).await?),
        RoomScoped::RevokeRoomInvite(r) => {
            rooms.revoke_invite(who, r).await?;
            R::RevokeRoomInvite(v1::RevokeRoomInviteResult {})
        }
        RoomScoped::AnswerKnock(r) => {
            rooms.answer_knock(who, r).await?;
            R::AnswerKnock(v1::AnswerKnockResult {})
        }
        RoomScoped::RemoveParticipant(r) => {
            rooms.remove(who, r).await?;
            R::RemoveParticipant(v1::RemoveParticipantResult {})
        }
        RoomScoped::MuteParticipant(r) => {
            rooms.mute(who, r).await?;
            R::MuteParticipant(v1::MuteParticipantResult {})
        }
    })
}

/// §25.1: CreateRoom (accounts only).
pub(crate) async fn create_room(state: &AppState, a: &Caller, r: v1::CreateRoom) -> Out {
    Ok(R::CreateRoom(state.rooms().create(a, r).await?))
}

/// §25.1: ListRooms (accounts only).
pub(crate) async fn list_rooms(state: &AppState, a: &Caller, r: v1::ListRooms) -> Out {
    Ok(R::ListRooms(state.rooms().list(a, r).await?))
}
