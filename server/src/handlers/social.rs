//! Receipts, typing, presence, privacy, profiles, contacts, blocking and notifications
//! (docs/protocol.md §15-§19): wire requests to the services and back.

use confab_protocol::v1::{self, response::Result as R};

use crate::error::ServerError;
use crate::session::{Caller, Session};
use crate::state::AppState;
use crate::wire;

type Out = Result<R, ServerError>;

use wire::results::{privacy, profile};

/// §15.1
pub(crate) async fn mark_read(state: &AppState, a: &Caller, r: v1::MarkRead) -> Out {
    let read_seq = state.conversations().mark_read(a, r.conversation_id, r.seq).await?;
    Ok(R::MarkRead(v1::MarkReadResult { read_seq: wire::seq(read_seq) }))
}

/// §15.2
pub(crate) async fn get_receipts(state: &AppState, a: &Caller, r: v1::GetReceipts) -> Out {
    let list = state.conversations().receipts(a, r.conversation_id, r.message_id).await?;
    Ok(R::GetReceipts(v1::GetReceiptsResult { receipts: list.iter().map(wire::member_receipt).collect() }))
}

/// §15.4
pub(crate) async fn get_privacy(state: &AppState, a: &Caller) -> Out {
    Ok(R::GetPrivacy(privacy(state.social().privacy(a).await?)))
}

/// §15.4
pub(crate) async fn set_privacy(state: &AppState, a: &Caller, r: v1::SetPrivacy) -> Out {
    Ok(R::SetPrivacy(privacy(state.social().set_privacy(a, r.read_receipts, r.show_last_seen).await?)))
}

/// §16
pub(crate) async fn set_typing(state: &AppState, a: &Caller, r: v1::SetTyping) -> Out {
    state.social().set_typing(a, r.conversation_id, r.typing).await?;
    Ok(R::SetTyping(v1::SetTypingResult {}))
}

/// §17
pub(crate) async fn set_presence(state: &AppState, session: &Session, a: &Caller, r: v1::SetPresence) -> Out {
    state.social().set_presence(a, session.key, r.state)?;
    Ok(R::SetPresence(v1::SetPresenceResult {}))
}

/// §18
pub(crate) async fn get_user(state: &AppState, a: &Caller, r: v1::GetUser) -> Out {
    let list = state.social().users(a, &[r.user_id]).await?;
    let p = list.first().ok_or_else(|| ServerError::NotFound("no such user".into()))?;
    Ok(R::GetUser(profile(p)))
}

/// §18
pub(crate) async fn get_users(state: &AppState, a: &Caller, r: v1::GetUsers) -> Out {
    let list = state.social().users(a, &r.user_ids).await?;
    Ok(R::GetUsers(v1::GetUsersResult { users: list.iter().map(profile).collect() }))
}

/// §18
pub(crate) async fn search_users(state: &AppState, a: &Caller, r: v1::SearchUsers) -> Out {
    let (list, next) = state.social().search(a, &r.query, &r.page_token, r.limit).await?;
    Ok(R::SearchUsers(v1::SearchUsersResult { users: list.iter().map(profile).collect(), next_page_token: next }))
}

/// §18
pub(crate) async fn add_contact(state: &AppState, a: &Caller, r: v1::AddContact) -> Out {
    state.social().add_contact(a, r.user_id).await?;
    Ok(R::AddContact(v1::Done {}))
}

/// §18
pub(crate) async fn remove_contact(state: &AppState, a: &Caller, r: v1::RemoveContact) -> Out {
    state.social().remove_contact(a, r.user_id).await?;
    Ok(R::RemoveContact(v1::Done {}))
}

/// §18
pub(crate) async fn list_contacts(state: &AppState, a: &Caller) -> Out {
    Ok(R::ListContacts(v1::ContactsResult { users: state.social().contacts(a).await?.iter().map(profile).collect() }))
}

/// §18
pub(crate) async fn block(state: &AppState, a: &Caller, r: v1::Block) -> Out {
    state.social().block(a, r.user_id).await?;
    Ok(R::Block(v1::Done {}))
}

/// §18
pub(crate) async fn unblock(state: &AppState, a: &Caller, r: v1::Unblock) -> Out {
    state.social().unblock(a, r.user_id).await?;
    Ok(R::Unblock(v1::Done {}))
}

/// §18
pub(crate) async fn list_blocked(state: &AppState, a: &Caller) -> Out {
    Ok(R::ListBlocked(v1::ContactsResult { users: state.social().blocked(a).await?.iter().map(profile).collect() }))
}

/// §19
pub(crate) async fn list_notifications(state: &AppState, a: &Caller, r: v1::ListNotifications) -> Out {
    let inbox = state.social().notifications(a, r.before_id, r.limit, r.unread_only).await?;
    Ok(R::ListNotifications(v1::ListNotificationsResult {
        notifications: inbox.page.items.iter().map(wire::notification).collect(),
        has_more: inbox.page.has_more,
        unread_count: wire::count(inbox.unread_count),
    }))
}

/// §19
pub(crate) async fn mark_notifications_read(state: &AppState, a: &Caller, r: v1::MarkNotificationsRead) -> Out {
    let unread = state.social().mark_notifications_read(a, r.up_to_id).await?;
    Ok(R::MarkNotificationsRead(v1::MarkNotificationsReadResult { unread_count: wire::count(unread) }))
}
