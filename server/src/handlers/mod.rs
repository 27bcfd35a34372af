//! Request dispatch: one exhaustive match on the request oneof, one module per message family.

pub(crate) mod auth;
pub(crate) mod calls;
pub(crate) mod conversations;
pub(crate) mod session;
pub(crate) mod social;

use confab_protocol::v1::client_frame::Request;
use confab_protocol::v1::response;

use crate::connection::ConnCtx;
use crate::error::ServerError;
use crate::state::AppState;

/// Handles one request after the handshake. Every request kind has an arm; there is no catch-all.
pub(crate) async fn dispatch(
    state: &AppState,
    ctx: &ConnCtx,
    request: Request,
) -> Result<response::Result, ServerError> {
    match request {
        Request::Hello(_) => {
            Err(ServerError::FailedPrecondition("Hello was already accepted on this connection".into()))
        }
        Request::Ping(ping) => Ok(response::Result::Pong(session::ping(&ping))),
        Request::Register(r) => auth::register(state, ctx, r).await,
        Request::Login(r) => auth::login(state, ctx, r).await,
        Request::RequestCode(r) => auth::request_code(state, ctx, r).await,
        Request::VerifyCode(r) => auth::verify_code(state, ctx, r).await,
        Request::Authenticate(r) => auth::authenticate(state, ctx, r).await,
        Request::Refresh(r) => auth::refresh(state, ctx, r).await,
        Request::Logout(_) => auth::logout(state, ctx).await,
        Request::ListSessions(_) => auth::list_sessions(state, ctx).await,
        Request::RevokeSession(r) => auth::revoke_session(state, ctx, r).await,
        Request::ChangePassword(r) => auth::change_password(state, ctx, r).await,
        Request::RequestPasswordReset(r) => auth::request_password_reset(state, ctx, r).await,
        Request::ResetPassword(r) => auth::reset_password(state, ctx, r).await,
        Request::GetMe(_) => auth::get_me(state, ctx).await,
        Request::UpdateProfile(r) => auth::update_profile(state, ctx, r).await,
        Request::DeleteAccount(r) => auth::delete_account(state, ctx, r).await,
        Request::CreateConversation(r) => conversations::create(state, ctx, r).await,
        Request::GetConversation(r) => conversations::get(state, ctx, r).await,
        Request::ListConversations(r) => conversations::list(state, ctx, r).await,
        Request::JoinChannel(r) => conversations::join(state, ctx, r).await,
        Request::LeaveConversation(r) => conversations::leave(state, ctx, r).await,
        Request::AddMembers(r) => conversations::add_members(state, ctx, r).await,
        Request::RemoveMember(r) => conversations::remove_member(state, ctx, r).await,
        Request::ListMembers(r) => conversations::list_members(state, ctx, r).await,
        Request::DiscoverChannels(r) => conversations::discover(state, ctx, r).await,
        Request::SendMessage(r) => conversations::send(state, ctx, r).await,
        Request::EditMessage(r) => conversations::edit(state, ctx, r).await,
        Request::DeleteMessage(r) => conversations::delete(state, ctx, r).await,
        Request::GetHistory(r) => conversations::history(state, ctx, r).await,
        Request::Sync(r) => conversations::sync(state, ctx, r).await,
        Request::Ack(r) => conversations::ack(state, ctx, r).await,
        Request::UpdateConversation(r) => conversations::update(state, ctx, r).await,
        Request::SetRole(r) => conversations::set_role(state, ctx, r).await,
        Request::TransferOwnership(r) => conversations::transfer_ownership(state, ctx, r).await,
        Request::PinMessage(r) => conversations::pin(state, ctx, r).await,
        Request::UnpinMessage(r) => conversations::unpin(state, ctx, r).await,
        Request::ListPins(r) => conversations::list_pins(state, ctx, r).await,
        Request::React(r) => conversations::react(state, ctx, r).await,
        Request::Unreact(r) => conversations::unreact(state, ctx, r).await,
        Request::MarkRead(r) => social::mark_read(state, ctx, r).await,
        Request::GetReceipts(r) => social::get_receipts(state, ctx, r).await,
        Request::SetTyping(r) => social::set_typing(state, ctx, r).await,
        Request::SetPresence(r) => social::set_presence(state, ctx, r).await,
        Request::GetPrivacy(_) => social::get_privacy(state, ctx).await,
        Request::SetPrivacy(r) => social::set_privacy(state, ctx, r).await,
        Request::GetUser(r) => social::get_user(state, ctx, r).await,
        Request::GetUsers(r) => social::get_users(state, ctx, r).await,
        Request::SearchUsers(r) => social::search_users(state, ctx, r).await,
        Request::AddContact(r) => social::add_contact(state, ctx, r).await,
        Request::RemoveContact(r) => social::remove_contact(state, ctx, r).await,
        Request::ListContacts(_) => social::list_contacts(state, ctx).await,
        Request::Block(r) => social::block(state, ctx, r).await,
        Request::Unblock(r) => social::unblock(state, ctx, r).await,
        Request::ListBlocked(_) => social::list_blocked(state, ctx).await,
        Request::ListNotifications(r) => social::list_notifications(state, ctx, r).await,
        Request::MarkNotificationsRead(r) => social::mark_notifications_read(state, ctx, r).await,
        Request::GetIceServers(_) => calls::get_ice_servers(state, ctx),
        Request::StartCall(r) => calls::start(state, ctx, r).await,
        Request::RingCall(r) => calls::ring(state, ctx, r),
        Request::AcceptCall(r) => calls::accept(state, ctx, r),
        Request::RejectCall(r) => calls::reject(state, ctx, r),
        Request::HangupCall(r) => calls::hangup(state, ctx, r),
        Request::CallSignal(r) => calls::signal(state, ctx, r),
        Request::JoinCall(r) => calls::join(state, ctx, r).await,
        Request::Publish(r) => calls::publish(state, ctx, r).await,
        Request::SubscriberAnswer(r) => calls::subscriber_answer(state, ctx, r).await,
        Request::Trickle(r) => calls::trickle(state, ctx, r).await,
        Request::SetMute(r) => calls::set_mute(state, ctx, r).await,
        Request::LeaveCall(r) => calls::leave(state, ctx, r).await,
    }
}
