//! Small constructors and codecs for the envelopes, shared by the server and the client library.

use bytes::Bytes;
use prost::Message;

use crate::v1::{self, ClientFrame, ErrorCode, ServerFrame, client_frame, event, response, server_frame};

/// Encodes a server frame once; the returned bytes are shared by every connection they go to.
pub fn encode_server(frame: &ServerFrame) -> Bytes {
    Bytes::from(frame.encode_to_vec())
}

/// Encodes a client frame.
pub fn encode_client(frame: &ClientFrame) -> Bytes {
    Bytes::from(frame.encode_to_vec())
}

/// A ServerFrame carrying the response to `request_id`.
pub fn response_frame(request_id: u64, result: response::Result) -> ServerFrame {
    ServerFrame { frame: Some(server_frame::Frame::Response(v1::Response { request_id, result: Some(result) })) }
}

/// A ServerFrame carrying an event.
pub fn event_frame(ev: event::Event) -> ServerFrame {
    ServerFrame { frame: Some(server_frame::Frame::Event(v1::Event { event: Some(ev) })) }
}

/// A ClientFrame carrying a request.
pub fn client_frame(request_id: u64, request: client_frame::Request) -> ClientFrame {
    ClientFrame { request_id, request: Some(request) }
}

impl v1::Error {
    /// An error with a code and a human message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code: code as i32, message: message.into(), ..Default::default() }
    }
}

impl std::fmt::Display for v1::Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code().as_str_name(), self.message)?;
        if !self.field.is_empty() {
            write!(f, " (field {})", self.field)?;
        }
        if self.retry_after_ms > 0 {
            write!(f, " (retry after {} ms)", self.retry_after_ms)?;
        }
        if self.reason() != v1::ErrorReason::Unspecified {
            write!(f, " ({})", self.reason().as_str_name())?;
        }
        Ok(())
    }
}

impl std::error::Error for v1::Error {}

impl client_frame::Request {
    /// Stable snake_case name of the request kind, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello(_) => "hello",
            Self::Ping(_) => "ping",
            Self::Register(_) => "register",
            Self::Login(_) => "login",
            Self::RequestCode(_) => "request_code",
            Self::VerifyCode(_) => "verify_code",
            Self::Authenticate(_) => "authenticate",
            Self::Refresh(_) => "refresh",
            Self::Logout(_) => "logout",
            Self::ListSessions(_) => "list_sessions",
            Self::RevokeSession(_) => "revoke_session",
            Self::ChangePassword(_) => "change_password",
            Self::RequestPasswordReset(_) => "request_password_reset",
            Self::ResetPassword(_) => "reset_password",
            Self::GetMe(_) => "get_me",
            Self::UpdateProfile(_) => "update_profile",
            Self::DeleteAccount(_) => "delete_account",
            Self::CreateConversation(_) => "create_conversation",
            Self::GetConversation(_) => "get_conversation",
            Self::ListConversations(_) => "list_conversations",
            Self::JoinChannel(_) => "join_channel",
            Self::LeaveConversation(_) => "leave_conversation",
            Self::AddMembers(_) => "add_members",
            Self::RemoveMember(_) => "remove_member",
            Self::ListMembers(_) => "list_members",
            Self::DiscoverChannels(_) => "discover_channels",
            Self::SendMessage(_) => "send_message",
            Self::EditMessage(_) => "edit_message",
            Self::DeleteMessage(_) => "delete_message",
            Self::GetHistory(_) => "get_history",
            Self::Sync(_) => "sync",
            Self::Ack(_) => "ack",
            Self::UpdateConversation(_) => "update_conversation",
            Self::SetRole(_) => "set_role",
            Self::TransferOwnership(_) => "transfer_ownership",
            Self::PinMessage(_) => "pin_message",
            Self::UnpinMessage(_) => "unpin_message",
            Self::ListPins(_) => "list_pins",
            Self::React(_) => "react",
            Self::Unreact(_) => "unreact",
            Self::MarkRead(_) => "mark_read",
            Self::GetReceipts(_) => "get_receipts",
            Self::SearchMessages(_) => "search_messages",
            Self::SetTyping(_) => "set_typing",
            Self::SetPresence(_) => "set_presence",
            Self::GetPrivacy(_) => "get_privacy",
            Self::SetPrivacy(_) => "set_privacy",
            Self::GetUser(_) => "get_user",
            Self::GetUsers(_) => "get_users",
            Self::SearchUsers(_) => "search_users",
            Self::AddContact(_) => "add_contact",
            Self::RemoveContact(_) => "remove_contact",
            Self::ListContacts(_) => "list_contacts",
            Self::Block(_) => "block",
            Self::Unblock(_) => "unblock",
            Self::ListBlocked(_) => "list_blocked",
            Self::ListNotifications(_) => "list_notifications",
            Self::MarkNotificationsRead(_) => "mark_notifications_read",
            Self::StartCall(_) => "start_call",
            Self::RingCall(_) => "ring_call",
            Self::AcceptCall(_) => "accept_call",
            Self::RejectCall(_) => "reject_call",
            Self::HangupCall(_) => "hangup_call",
            Self::CallSignal(_) => "call_signal",
            Self::GetIceServers(_) => "get_ice_servers",
            Self::JoinCall(_) => "join_call",
            Self::Publish(_) => "publish",
            Self::SubscriberAnswer(_) => "subscriber_answer",
            Self::Trickle(_) => "trickle",
            Self::SetMute(_) => "set_mute",
            Self::LeaveCall(_) => "leave_call",
            Self::BeginUpload(_) => "begin_upload",
            Self::UploadChunk(_) => "upload_chunk",
            Self::GetUpload(_) => "get_upload",
            Self::FinishUpload(_) => "finish_upload",
            Self::CancelUpload(_) => "cancel_upload",
            Self::GetMedia(_) => "get_media",
            Self::DownloadMedia(_) => "download_media",
            Self::RegisterPushTarget(_) => "register_push_target",
            Self::UnregisterPushTarget(_) => "unregister_push_target",
            Self::ListPushTargets(_) => "list_push_targets",
            Self::ListPushDeliveries(_) => "list_push_deliveries",
            Self::GetPushSettings(_) => "get_push_settings",
            Self::SetPushSettings(_) => "set_push_settings",
            Self::SetConversationPushSettings(_) => "set_conversation_push_settings",
            Self::SetSubscribedQuality(_) => "set_subscribed_quality",
            Self::RestartIce(_) => "restart_ice",
            Self::CreateRoom(_) => "create_room",
            Self::GetRoom(_) => "get_room",
            Self::ListRooms(_) => "list_rooms",
            Self::UpdateRoom(_) => "update_room",
            Self::CloseRoom(_) => "close_room",
            Self::CreateRoomInvite(_) => "create_room_invite",
            Self::ListRoomInvites(_) => "list_room_invites",
            Self::RevokeRoomInvite(_) => "revoke_room_invite",
            Self::AnswerKnock(_) => "answer_knock",
            Self::RemoveParticipant(_) => "remove_participant",
            Self::MuteParticipant(_) => "mute_participant",
            Self::ListSecurityEvents(_) => "list_security_events",
            Self::AdminListUsers(_) => "admin_list_users",
            Self::AdminGetUser(_) => "admin_get_user",
            Self::AdminSuspendUser(_) => "admin_suspend_user",
            Self::AdminReactivateUser(_) => "admin_reactivate_user",
            Self::AdminDeleteUser(_) => "admin_delete_user",
            Self::AdminRevokeSessions(_) => "admin_revoke_sessions",
            Self::AdminDeleteMessage(_) => "admin_delete_message",
            Self::AdminDeleteConversation(_) => "admin_delete_conversation",
            Self::AdminQuarantineMedia(_) => "admin_quarantine_media",
            Self::AdminSetUserLimits(_) => "admin_set_user_limits",
            Self::AdminGetStats(_) => "admin_get_stats",
            Self::AdminListAudit(_) => "admin_list_audit",
            Self::ReportMessage(_) => "report_message",
            Self::ListReports(_) => "list_reports",
            Self::ResolveReport(_) => "resolve_report",
        }
    }
}

/// A fresh idempotency key for SendMessage (§13.2): a random (version 4) UUID, hyphenated.
pub fn new_client_msg_id() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// Milliseconds since the Unix epoch, for the *_time_ms fields.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
