//! Request dispatch: one exhaustive match on the request oneof, one module per message family.
//! The match is the table of which requests are anonymous (§11: the handshake, sign-in and
//! recovery): [`route`] checks the caller of every other request once, without the store, and
//! [`authenticated`] hands it to the handler, so a handler that needs a caller cannot be reached
//! without one.

pub(crate) mod admin;
pub(crate) mod auth;
pub(crate) mod calls;
pub(crate) mod conversations;
pub(crate) mod forward;
pub(crate) mod media;
pub(crate) mod moderation;
pub(crate) mod push;
pub(crate) mod rooms;
pub(crate) mod search;
pub(crate) mod session;
pub(crate) mod social;

use confab_protocol::v1::{self, client_frame::Request, response};

use crate::error::ServerError;
use crate::session::{Caller, Guest, Session};
use crate::state::AppState;
use admin::AdminRequest;
use rooms::RoomScoped;

/// Handles one request after the handshake: [`route`], then the handler.
/// `request_id` is the frame's: answers that come on their own QUIC stream name it (§22.9).
pub(crate) async fn dispatch(
    state: &AppState,
    session: &Session,
    request_id: u64,
    request: Request,
) -> Result<response::Result, ServerError> {
    match route(session, request) {
        Routed::Done(result) => result,
        Routed::Anonymous(request) => anonymous(state, session, request).await,
        Routed::Authenticated(caller, request) => authenticated(state, session, &caller, request_id, request).await,
        Routed::Guest(guest, request) => rooms::from_guest(state, &guest, request).await,
    }
}

/// Where a request goes, decided without the store: answered at once (Hello again, Ping, or
/// `UNAUTHENTICATED` for a request that needs a caller the connection does not have), an
/// anonymous request (§11), or an authenticated one with its caller.
#[derive(Debug)]
pub(crate) enum Routed {
    Done(Result<response::Result, ServerError>),
    Anonymous(Anonymous),
    Authenticated(Caller, Authenticated),
    /// A room's guest's request about its room (§25.3).
    Guest(Guest, RoomScoped),
}

/// Routes one request. Every request kind has an arm; there is no catch-all.
pub(crate) fn route(session: &Session, request: Request) -> Routed {
    let request = match request {
        Request::Hello(_) => {
            return Routed::Done(Err(ServerError::FailedPrecondition(
                "Hello was already accepted on this connection".into(),
            )));
        }
        Request::Ping(ping) => return Routed::Done(Ok(response::Result::Pong(session::ping(&ping)))),
        Request::Register(r) => return anonymous_unless_guest(session, Anonymous::Register(r)),
        Request::Login(r) => return anonymous_unless_guest(session, Anonymous::Login(r)),
        Request::RequestCode(r) => return anonymous_unless_guest(session, Anonymous::RequestCode(r)),
        Request::VerifyCode(r) => return anonymous_unless_guest(session, Anonymous::VerifyCode(r)),
        Request::Authenticate(r) => return anonymous_unless_guest(session, Anonymous::Authenticate(r)),
        Request::Refresh(r) => return anonymous_unless_guest(session, Anonymous::Refresh(r)),
        Request::RequestPasswordReset(r) => return anonymous_unless_guest(session, Anonymous::RequestPasswordReset(r)),
        Request::ResetPassword(r) => return anonymous_unless_guest(session, Anonymous::ResetPassword(r)),
        Request::Logout(r) => Authenticated::Logout(r),
        Request::ListSessions(r) => Authenticated::ListSessions(r),
        Request::RevokeSession(r) => Authenticated::RevokeSession(r),
        Request::ChangePassword(r) => Authenticated::ChangePassword(r),
        Request::GetMe(r) => Authenticated::GetMe(r),
        Request::UpdateProfile(r) => Authenticated::UpdateProfile(r),
        Request::DeleteAccount(r) => Authenticated::DeleteAccount(r),
        Request::CreateConversation(r) => Authenticated::CreateConversation(r),
        Request::GetConversation(r) => Authenticated::GetConversation(r),
        Request::ListConversations(r) => Authenticated::ListConversations(r),
        Request::JoinChannel(r) => Authenticated::JoinChannel(r),
        Request::LeaveConversation(r) => Authenticated::LeaveConversation(r),
        Request::AddMembers(r) => Authenticated::AddMembers(r),
        Request::RemoveMember(r) => Authenticated::RemoveMember(r),
        Request::ListMembers(r) => Authenticated::ListMembers(r),
        Request::DiscoverChannels(r) => Authenticated::DiscoverChannels(r),
        Request::SendMessage(r) => Authenticated::SendMessage(r),
        Request::EditMessage(r) => Authenticated::EditMessage(r),
        Request::DeleteMessage(r) => Authenticated::DeleteMessage(r),
        Request::GetHistory(r) => Authenticated::GetHistory(r),
        Request::Sync(r) => Authenticated::Sync(r),
        Request::Ack(r) => Authenticated::Ack(r),
        Request::UpdateConversation(r) => Authenticated::UpdateConversation(r),
        Request::SetRole(r) => Authenticated::SetRole(r),
        Request::TransferOwnership(r) => Authenticated::TransferOwnership(r),
        Request::PinMessage(r) => Authenticated::PinMessage(r),
        Request::UnpinMessage(r) => Authenticated::UnpinMessage(r),
        Request::ListPins(r) => Authenticated::ListPins(r),
        Request::React(r) => Authenticated::React(r),
        Request::Unreact(r) => Authenticated::Unreact(r),
        Request::MarkRead(r) => Authenticated::MarkRead(r),
        Request::GetReceipts(r) => Authenticated::GetReceipts(r),
        Request::SearchMessages(r) => Authenticated::SearchMessages(r),
        Request::SetTyping(r) => Authenticated::SetTyping(r),
        Request::SetPresence(r) => Authenticated::SetPresence(r),
        Request::GetPrivacy(r) => Authenticated::GetPrivacy(r),
        Request::SetPrivacy(r) => Authenticated::SetPrivacy(r),
        Request::GetUser(r) => Authenticated::GetUser(r),
        Request::GetUsers(r) => Authenticated::GetUsers(r),
        Request::SearchUsers(r) => Authenticated::SearchUsers(r),
        Request::AddContact(r) => Authenticated::AddContact(r),
        Request::RemoveContact(r) => Authenticated::RemoveContact(r),
        Request::ListContacts(r) => Authenticated::ListContacts(r),
        Request::Block(r) => Authenticated::Block(r),
        Request::Unblock(r) => Authenticated::Unblock(r),
        Request::ListBlocked(r) => Authenticated::ListBlocked(r),
        Request::ListNotifications(r) => Authenticated::ListNotifications(r),
        Request::MarkNotificationsRead(r) => Authenticated::MarkNotificationsRead(r),
        Request::GetIceServers(r) => Authenticated::Room(RoomScoped::GetIceServers(r)),
        Request::StartCall(r) => Authenticated::StartCall(r),
        Request::RingCall(r) => Authenticated::RingCall(r),
        Request::AcceptCall(r) => Authenticated::AcceptCall(r),
        Request::RejectCall(r) => Authenticated::RejectCall(r),
        Request::HangupCall(r) => Authenticated::HangupCall(r),
        Request::CallSignal(r) => Authenticated::CallSignal(r),
        Request::JoinCall(r) => Authenticated::Room(RoomScoped::JoinCall(r)),
        Request::Publish(r) => Authenticated::Room(RoomScoped::Publish(r)),
        Request::SubscriberAnswer(r) => Authenticated::Room(RoomScoped::SubscriberAnswer(r)),
        Request::Trickle(r) => Authenticated::Room(RoomScoped::Trickle(r)),
        Request::SetMute(r) => Authenticated::Room(RoomScoped::SetMute(r)),
        Request::LeaveCall(r) => Authenticated::Room(RoomScoped::LeaveCall(r)),
        Request::SetSubscribedQuality(r) => Authenticated::Room(RoomScoped::SetSubscribedQuality(r)),
        Request::RestartIce(r) => Authenticated::Room(RoomScoped::RestartIce(r)),
        Request::BeginUpload(r) => Authenticated::BeginUpload(r),
        Request::UploadChunk(r) => Authenticated::UploadChunk(r),
        Request::GetUpload(r) => Authenticated::GetUpload(r),
        Request::FinishUpload(r) => Authenticated::FinishUpload(r),
        Request::CancelUpload(r) => Authenticated::CancelUpload(r),
        Request::GetMedia(r) => Authenticated::GetMedia(r),
        Request::DownloadMedia(r) => Authenticated::DownloadMedia(r),
        Request::RegisterPushTarget(r) => Authenticated::RegisterPushTarget(r),
        Request::UnregisterPushTarget(r) => Authenticated::UnregisterPushTarget(r),
        Request::ListPushTargets(r) => Authenticated::ListPushTargets(r),
        Request::ListPushDeliveries(r) => Authenticated::ListPushDeliveries(r),
        Request::GetPushSettings(r) => Authenticated::GetPushSettings(r),
        Request::SetPushSettings(r) => Authenticated::SetPushSettings(r),
        Request::SetConversationPushSettings(r) => Authenticated::SetConversationPushSettings(r),
        Request::CreateRoom(r) => Authenticated::CreateRoom(r),
        Request::GetRoom(r) => Authenticated::Room(RoomScoped::GetRoom(r)),
        Request::ListRooms(r) => Authenticated::ListRooms(r),
        Request::UpdateRoom(r) => Authenticated::Room(RoomScoped::UpdateRoom(r)),
        Request::CloseRoom(r) => Authenticated::Room(RoomScoped::CloseRoom(r)),
        Request::CreateRoomInvite(r) => Authenticated::Room(RoomScoped::CreateRoomInvite(r)),
        Request::ListRoomInvites(r) => Authenticated::Room(RoomScoped::ListRoomInvites(r)),
        Request::RevokeRoomInvite(r) => Authenticated::Room(RoomScoped::RevokeRoomInvite(r)),
        Request::AnswerKnock(r) => Authenticated::Room(RoomScoped::AnswerKnock(r)),
        Request::RemoveParticipant(r) => Authenticated::Room(RoomScoped::RemoveParticipant(r)),
        Request::MuteParticipant(r) => Authenticated::Room(RoomScoped::MuteParticipant(r)),
        Request::ListSecurityEvents(r) => Authenticated::ListSecurityEvents(r),
        Request::AdminListUsers(r) => Authenticated::Admin(AdminRequest::ListUsers(r)),
        Request::AdminGetUser(r) => Authenticated::Admin(AdminRequest::GetUser(r)),
        Request::AdminSuspendUser(r) => Authenticated::Admin(AdminRequest::SuspendUser(r)),
        Request::AdminReactivateUser(r) => Authenticated::Admin(AdminRequest::ReactivateUser(r)),
        Request::AdminDeleteUser(r) => Authenticated::Admin(AdminRequest::DeleteUser(r)),
        Request::AdminRevokeSessions(r) => Authenticated::Admin(AdminRequest::RevokeSessions(r)),
        Request::AdminDeleteMessage(r) => Authenticated::Admin(AdminRequest::DeleteMessage(r)),
        Request::AdminDeleteConversation(r) => Authenticated::Admin(AdminRequest::DeleteConversation(r)),
        Request::AdminQuarantineMedia(r) => Authenticated::Admin(AdminRequest::QuarantineMedia(r)),
        Request::AdminSetUserLimits(r) => Authenticated::Admin(AdminRequest::SetUserLimits(r)),
        Request::AdminGetStats(r) => Authenticated::Admin(AdminRequest::GetStats(r)),
        Request::AdminListAudit(r) => Authenticated::Admin(AdminRequest::ListAudit(r)),
        Request::ReportMessage(r) => Authenticated::ReportMessage(r),
        Request::ListReports(r) => Authenticated::ListReports(r),
        Request::ResolveReport(r) => Authenticated::ResolveReport(r),
    };
    // A room's guest (§25.3) makes requests about its room only.
    if let Some(guest) = session.guest() {
        return match request {
            Authenticated::Room(r) => Routed::Guest(guest, r),
            other => {
                tracing::debug!(request = ?std::mem::discriminant(&other), "a guest's request outside its room");
                Routed::Done(Err(crate::rooms::rules::outside_room()))
            }
        };
    }
    match session.require_caller() {
        Ok(caller) => Routed::Authenticated(caller, request),
        Err(e) => Routed::Done(Err(e)),
    }
}

/// An anonymous request (§11), refused to a room's guest (§25.3).
fn anonymous_unless_guest(session: &Session, request: Anonymous) -> Routed {
    if session.guest().is_some() {
        return Routed::Done(Err(crate::rooms::rules::outside_room()));
    }
    Routed::Anonymous(request)
}

/// The requests served without a caller (§11: sign-in and recovery).
#[derive(Debug)]
pub(crate) enum Anonymous {
    Register(v1::Register),
    Login(v1::Login),
    RequestCode(v1::RequestCode),
    VerifyCode(v1::VerifyCode),
    Authenticate(v1::Authenticate),
    Refresh(v1::Refresh),
    RequestPasswordReset(v1::RequestPasswordReset),
    ResetPassword(v1::ResetPassword),
}

impl Anonymous {
    /// The field checks the accounts service runs before any rate limit, hash or store access
    /// (`INVALID_ARGUMENT` naming the field). Tokens and identifiers are checked against keys and
    /// the store, so `Authenticate`, `Refresh` and `RequestPasswordReset` have none here. Used by
    /// the fuzz target that drives a frame through the connection loop without a store.
    pub(crate) fn check_fields(&self) -> Result<(), ServerError> {
        use crate::auth::validate;
        match self {
            Self::Register(r) => validate::register(
                &r.username,
                &r.password,
                r.display_name.as_deref(),
                r.email.as_deref(),
                r.phone.as_deref(),
                &r.device_name,
            )
            .map(drop),
            Self::Login(r) => validate::login(&r.identifier, &r.password, &r.device_name),
            Self::RequestCode(r) => {
                auth::check_code_purpose(r)?;
                validate::phone("request_code.phone", &r.phone)
            }
            Self::VerifyCode(r) => {
                validate::verify_code(&r.phone, &r.code, &r.device_name, r.username.as_deref()).map(drop)
            }
            Self::ResetPassword(r) => validate::reset_password(&r.code, &r.new_password),
            Self::Authenticate(_) | Self::Refresh(_) | Self::RequestPasswordReset(_) => Ok(()),
        }
    }
}

async fn anonymous(state: &AppState, session: &Session, request: Anonymous) -> Result<response::Result, ServerError> {
    match request {
        Anonymous::Register(r) => auth::register(state, session, r).await,
        Anonymous::Login(r) => auth::login(state, session, r).await,
        Anonymous::RequestCode(r) => auth::request_code(state, session, r).await,
        Anonymous::VerifyCode(r) => auth::verify_code(state, session, r).await,
        Anonymous::Authenticate(r) => auth::authenticate(state, session, r).await,
        Anonymous::Refresh(r) => auth::refresh(state, session, r).await,
        Anonymous::RequestPasswordReset(r) => auth::request_password_reset(state, session, r).await,
        Anonymous::ResetPassword(r) => auth::reset_password(state, session, r).await,
    }
}

/// The requests that need an authenticated caller (everything but the anonymous ones above).
#[derive(Debug)]
pub(crate) enum Authenticated {
    Logout(v1::Logout),
    ListSessions(v1::ListSessions),
    RevokeSession(v1::RevokeSession),
    ChangePassword(v1::ChangePassword),
    GetMe(v1::GetMe),
    UpdateProfile(v1::UpdateProfile),
    DeleteAccount(v1::DeleteAccount),
    ListSecurityEvents(v1::ListSecurityEvents),
    CreateConversation(v1::CreateConversation),
    GetConversation(v1::GetConversation),
    ListConversations(v1::ListConversations),
    JoinChannel(v1::JoinChannel),
    LeaveConversation(v1::LeaveConversation),
    AddMembers(v1::AddMembers),
    RemoveMember(v1::RemoveMember),
    ListMembers(v1::ListMembers),
    DiscoverChannels(v1::DiscoverChannels),
    SendMessage(v1::SendMessage),
    EditMessage(v1::EditMessage),
    DeleteMessage(v1::DeleteMessage),
    GetHistory(v1::GetHistory),
    Sync(v1::Sync),
    Ack(v1::Ack),
    UpdateConversation(v1::UpdateConversation),
    SetRole(v1::SetRole),
    TransferOwnership(v1::TransferOwnership),
    PinMessage(v1::PinMessage),
    UnpinMessage(v1::UnpinMessage),
    ListPins(v1::ListPins),
    React(v1::React),
    Unreact(v1::Unreact),
    MarkRead(v1::MarkRead),
    GetReceipts(v1::GetReceipts),
    SearchMessages(v1::SearchMessages),
    SetTyping(v1::SetTyping),
    SetPresence(v1::SetPresence),
    GetPrivacy(v1::GetPrivacy),
    SetPrivacy(v1::SetPrivacy),
    GetUser(v1::GetUser),
    GetUsers(v1::GetUsers),
    SearchUsers(v1::SearchUsers),
    AddContact(v1::AddContact),
    RemoveContact(v1::RemoveContact),
    ListContacts(v1::ListContacts),
    Block(v1::Block),
    Unblock(v1::Unblock),
    ListBlocked(v1::ListBlocked),
    ListNotifications(v1::ListNotifications),
    MarkNotificationsRead(v1::MarkNotificationsRead),
    StartCall(v1::StartCall),
    RingCall(v1::RingCall),
    AcceptCall(v1::AcceptCall),
    RejectCall(v1::RejectCall),
    HangupCall(v1::HangupCall),
    CallSignal(v1::CallSignal),
    BeginUpload(v1::BeginUpload),
    UploadChunk(v1::UploadChunk),
    GetUpload(v1::GetUpload),
    FinishUpload(v1::FinishUpload),
    CancelUpload(v1::CancelUpload),
    GetMedia(v1::GetMedia),
    DownloadMedia(v1::DownloadMedia),
    RegisterPushTarget(v1::RegisterPushTarget),
    UnregisterPushTarget(v1::UnregisterPushTarget),
    ListPushTargets(v1::ListPushTargets),
    ListPushDeliveries(v1::ListPushDeliveries),
    GetPushSettings(v1::GetPushSettings),
    SetPushSettings(v1::SetPushSettings),
    SetConversationPushSettings(v1::SetConversationPushSettings),
    CreateRoom(v1::CreateRoom),
    ListRooms(v1::ListRooms),
    /// Requests about a room or a group call: a guest may make them too (§25.3).
    Room(RoomScoped),
    ReportMessage(v1::ReportMessage),
    ListReports(v1::ListReports),
    ResolveReport(v1::ResolveReport),
    /// A server administrator's requests (§26, §28.3): one gate for all of them.
    Admin(AdminRequest),
}

/// Runs the handler of a request that needs a caller, with the caller [`route`] checked
/// (`UNAUTHENTICATED` without a live access token, §11.5).
async fn authenticated(
    state: &AppState,
    session: &Session,
    caller: &Caller,
    request_id: u64,
    request: Authenticated,
) -> Result<response::Result, ServerError> {
    match request {
        Authenticated::Logout(_) => auth::logout(state, session, caller).await,
        Authenticated::ListSessions(_) => auth::list_sessions(state, caller).await,
        Authenticated::RevokeSession(r) => auth::revoke_session(state, session, caller, r).await,
        Authenticated::ChangePassword(r) => auth::change_password(state, session, caller, r).await,
        Authenticated::GetMe(_) => auth::get_me(state, caller).await,
        Authenticated::UpdateProfile(r) => auth::update_profile(state, caller, r).await,
        Authenticated::DeleteAccount(r) => auth::delete_account(state, session, caller, r).await,
        Authenticated::ListSecurityEvents(r) => auth::list_security_events(state, caller, r).await,
        Authenticated::CreateConversation(r) => conversations::create(state, caller, r).await,
        Authenticated::GetConversation(r) => conversations::get(state, caller, r).await,
        Authenticated::ListConversations(r) => conversations::list(state, caller, r).await,
        Authenticated::JoinChannel(r) => conversations::join(state, caller, r).await,
        Authenticated::LeaveConversation(r) => conversations::leave(state, caller, r).await,
        Authenticated::AddMembers(r) => conversations::add_members(state, caller, r).await,
        Authenticated::RemoveMember(r) => conversations::remove_member(state, caller, r).await,
        Authenticated::ListMembers(r) => conversations::list_members(state, caller, r).await,
        Authenticated::DiscoverChannels(r) => conversations::discover(state, caller, r).await,
        Authenticated::SendMessage(r) => conversations::send(state, caller, r).await,
        Authenticated::EditMessage(r) => conversations::edit(state, caller, r).await,
        Authenticated::DeleteMessage(r) => conversations::delete(state, caller, r).await,
        Authenticated::GetHistory(r) => conversations::history(state, caller, r).await,
        Authenticated::Sync(r) => conversations::sync(state, caller, r).await,
        Authenticated::Ack(r) => conversations::ack(state, caller, r).await,
        Authenticated::UpdateConversation(r) => conversations::update(state, caller, r).await,
        Authenticated::SetRole(r) => conversations::set_role(state, caller, r).await,
        Authenticated::TransferOwnership(r) => conversations::transfer_ownership(state, caller, r).await,
        Authenticated::PinMessage(r) => conversations::pin(state, caller, r).await,
        Authenticated::UnpinMessage(r) => conversations::unpin(state, caller, r).await,
        Authenticated::ListPins(r) => conversations::list_pins(state, caller, r).await,
        Authenticated::React(r) => conversations::react(state, caller, r).await,
        Authenticated::Unreact(r) => conversations::unreact(state, caller, r).await,
        Authenticated::MarkRead(r) => social::mark_read(state, caller, r).await,
        Authenticated::GetReceipts(r) => social::get_receipts(state, caller, r).await,
        Authenticated::SearchMessages(r) => search::search_messages(state, caller, r).await,
        Authenticated::SetTyping(r) => social::set_typing(state, caller, r).await,
        Authenticated::SetPresence(r) => social::set_presence(state, session, caller, r).await,
        Authenticated::GetPrivacy(_) => social::get_privacy(state, caller).await,
        Authenticated::SetPrivacy(r) => social::set_privacy(state, caller, r).await,
        Authenticated::GetUser(r) => social::get_user(state, caller, r).await,
        Authenticated::GetUsers(r) => social::get_users(state, caller, r).await,
        Authenticated::SearchUsers(r) => social::search_users(state, caller, r).await,
        Authenticated::AddContact(r) => social::add_contact(state, caller, r).await,
        Authenticated::RemoveContact(r) => social::remove_contact(state, caller, r).await,
        Authenticated::ListContacts(_) => social::list_contacts(state, caller).await,
        Authenticated::Block(r) => social::block(state, caller, r).await,
        Authenticated::Unblock(r) => social::unblock(state, caller, r).await,
        Authenticated::ListBlocked(_) => social::list_blocked(state, caller).await,
        Authenticated::ListNotifications(r) => social::list_notifications(state, caller, r).await,
        Authenticated::MarkNotificationsRead(r) => social::mark_notifications_read(state, caller, r).await,
        Authenticated::StartCall(r) => calls::start(state, caller, r).await,
        Authenticated::RingCall(r) => calls::ring(state, caller, r).await,
        Authenticated::AcceptCall(r) => calls::accept(state, caller, r).await,
        Authenticated::RejectCall(r) => calls::reject(state, caller, r).await,
        Authenticated::HangupCall(r) => calls::hangup(state, caller, r).await,
        Authenticated::CallSignal(r) => calls::signal(state, caller, r).await,
        Authenticated::BeginUpload(r) => media::begin_upload(state, caller, r).await,
        Authenticated::UploadChunk(r) => media::upload_chunk(state, caller, r).await,
        Authenticated::GetUpload(r) => media::get_upload(state, caller, r).await,
        Authenticated::FinishUpload(r) => media::finish_upload(state, caller, r).await,
        Authenticated::CancelUpload(r) => media::cancel_upload(state, caller, r).await,
        Authenticated::GetMedia(r) => media::get_media(state, caller, r).await,
        Authenticated::DownloadMedia(r) => media::download_media(state, session, caller, request_id, r).await,
        Authenticated::RegisterPushTarget(r) => push::register_target(state, caller, r).await,
        Authenticated::UnregisterPushTarget(r) => push::unregister_target(state, caller, r).await,
        Authenticated::ListPushTargets(r) => push::list_targets(state, caller, r).await,
        Authenticated::ListPushDeliveries(r) => push::list_deliveries(state, caller, r).await,
        Authenticated::GetPushSettings(_) => push::get_settings(state, caller).await,
        Authenticated::SetPushSettings(r) => push::set_settings(state, caller, r).await,
        Authenticated::SetConversationPushSettings(r) => push::set_conversation_settings(state, caller, r).await,
        Authenticated::CreateRoom(r) => rooms::create_room(state, caller, r).await,
        Authenticated::ListRooms(r) => rooms::list_rooms(state, caller, r).await,
        Authenticated::Room(r) => rooms::from_account(state, caller, r).await,
        Authenticated::ReportMessage(r) => moderation::report_message(state, caller, r).await,
        Authenticated::ListReports(r) => moderation::list_reports(state, caller, r).await,
        Authenticated::ResolveReport(r) => moderation::resolve_report(state, session, caller, r).await,
        Authenticated::Admin(r) => admin::handle(state, session, caller, r).await,
    }
}
