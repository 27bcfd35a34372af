//! Conversations, messages and sync (docs/protocol.md §12-§14): wire requests to the
//! conversations service and its results back to wire messages.

use confab_protocol::v1::{self, response::Result as R};

use crate::error::ServerError;
use crate::session::Caller;
use crate::state::AppState;
use crate::wire;

type Out = Result<R, ServerError>;

/// §12.2
pub(crate) async fn create(state: &AppState, a: &Caller, r: v1::CreateConversation) -> Out {
    let c = state.conversations().create(a, wire::conv_kind(r.kind), &r.title, &r.description, &r.member_ids).await?;
    Ok(R::CreateConversation(wire::conversation(&c, a.user_id)))
}

/// §12.1
pub(crate) async fn get(state: &AppState, a: &Caller, r: v1::GetConversation) -> Out {
    let c = state.conversations().get(a, r.conversation_id).await?;
    Ok(R::GetConversation(wire::conversation(&c, a.user_id)))
}

/// §12.3
pub(crate) async fn list(state: &AppState, a: &Caller, r: v1::ListConversations) -> Out {
    let (list, next) = state.conversations().list(a, &r.page_token, r.limit).await?;
    Ok(R::ListConversations(v1::ListConversationsResult {
        conversations: list.iter().map(|c| wire::conversation(c, a.user_id)).collect(),
        next_page_token: next,
    }))
}

/// §12.4
pub(crate) async fn join(state: &AppState, a: &Caller, r: v1::JoinChannel) -> Out {
    let c = state.conversations().join(a, r.conversation_id).await?;
    Ok(R::JoinChannel(wire::conversation(&c, a.user_id)))
}

/// §12.4
pub(crate) async fn leave(state: &AppState, a: &Caller, r: v1::LeaveConversation) -> Out {
    state.conversations().leave(a, r.conversation_id).await?;
    Ok(R::LeaveConversation(v1::LeaveConversationResult {}))
}

/// §12.5
pub(crate) async fn add_members(state: &AppState, a: &Caller, r: v1::AddMembers) -> Out {
    let seq = state.conversations().add_members(a, r.conversation_id, &r.user_ids).await?;
    Ok(R::AddMembers(v1::AddMembersResult { seq: wire::seq(seq) }))
}

/// §12.5
pub(crate) async fn remove_member(state: &AppState, a: &Caller, r: v1::RemoveMember) -> Out {
    let seq = state.conversations().remove_member(a, r.conversation_id, r.user_id).await?;
    Ok(R::RemoveMember(v1::RemoveMemberResult { seq: wire::seq(seq) }))
}

/// §12.6
pub(crate) async fn list_members(state: &AppState, a: &Caller, r: v1::ListMembers) -> Out {
    let page = state.conversations().members(a, r.conversation_id, r.after_user_id, r.limit).await?;
    Ok(R::ListMembers(v1::ListMembersResult {
        members: page.items.iter().map(wire::member).collect(),
        has_more: page.has_more,
    }))
}

/// §12.7
pub(crate) async fn discover(state: &AppState, a: &Caller, r: v1::DiscoverChannels) -> Out {
    let page = state.conversations().discover(a, &r.query, r.after_conversation_id, r.limit).await?;
    Ok(R::DiscoverChannels(v1::DiscoverChannelsResult {
        conversations: page.items.iter().map(|c| wire::conversation(c, a.user_id)).collect(),
        has_more: page.has_more,
    }))
}

/// §13.2
pub(crate) async fn send(state: &AppState, a: &Caller, r: v1::SendMessage) -> Out {
    let attachments = state.media().attachments(a, &r.attachments).await?;
    let sent = state
        .conversations()
        .send(
            a,
            r.conversation_id,
            &r.client_msg_id,
            &r.text,
            r.reply_to_message_id,
            &r.mention_user_ids,
            attachments,
            r.written_at_ms,
        )
        .await?;
    Ok(R::SendMessage(wire::sent(&sent)))
}

/// §13.3
pub(crate) async fn edit(state: &AppState, a: &Caller, r: v1::EditMessage) -> Out {
    let seq = state.conversations().edit(a, r.conversation_id, r.message_id, &r.text).await?;
    Ok(R::EditMessage(v1::EditMessageResult { seq: wire::seq(seq) }))
}

/// §13.3
pub(crate) async fn delete(state: &AppState, a: &Caller, r: v1::DeleteMessage) -> Out {
    let seq = state.conversations().delete(a, r.conversation_id, r.message_id).await?;
    Ok(R::DeleteMessage(v1::DeleteMessageResult { seq: wire::seq(seq) }))
}

/// §13.4
pub(crate) async fn history(state: &AppState, a: &Caller, r: v1::GetHistory) -> Out {
    let page = state.conversations().history(a, r.conversation_id, r.before_seq, r.after_seq, r.limit).await?;
    Ok(R::GetHistory(v1::GetHistoryResult {
        messages: page.items.iter().map(|m| wire::message(m, a.user_id)).collect(),
        has_more: page.has_more,
    }))
}

/// §14.3
pub(crate) async fn sync(state: &AppState, a: &Caller, r: v1::Sync) -> Out {
    let cursors: Vec<(u64, u64)> = r.conversations.iter().map(|c| (c.conversation_id, c.seq)).collect();
    let out = state.conversations().sync(a, r.epoch, r.user_seq, &cursors, r.limit_per_conversation).await?;
    Ok(R::Sync(wire::results::sync(&out, a.user_id)))
}

/// §14.4
pub(crate) async fn ack(state: &AppState, a: &Caller, r: v1::Ack) -> Out {
    state.conversations().ack(a, r.conversation_id, r.seq).await?;
    Ok(R::Ack(v1::AckResult {}))
}

/// §12.8
pub(crate) async fn update(state: &AppState, a: &Caller, r: v1::UpdateConversation) -> Out {
    if let Some(photo) = &r.photo_ref {
        let purpose = crate::store::MediaPurpose::ConversationPhoto;
        state.media().own_image(a, photo, purpose, "update_conversation.photo_ref").await?;
    }
    let c = state
        .conversations()
        .update(a, r.conversation_id, r.title, r.description, r.photo_ref, r.announcement_only)
        .await?;
    Ok(R::UpdateConversation(wire::conversation(&c, a.user_id)))
}

/// §12.8
pub(crate) async fn set_role(state: &AppState, a: &Caller, r: v1::SetRole) -> Out {
    let seq = state.conversations().set_role(a, r.conversation_id, r.user_id, wire::role(r.role)).await?;
    Ok(R::SetRole(v1::SetRoleResult { seq: wire::seq(seq) }))
}

/// §12.8
pub(crate) async fn transfer_ownership(state: &AppState, a: &Caller, r: v1::TransferOwnership) -> Out {
    let seq = state.conversations().transfer_ownership(a, r.conversation_id, r.user_id).await?;
    Ok(R::TransferOwnership(v1::TransferOwnershipResult { seq: wire::seq(seq) }))
}

/// §13.6
pub(crate) async fn pin(state: &AppState, a: &Caller, r: v1::PinMessage) -> Out {
    let seq = state.conversations().pin(a, r.conversation_id, r.message_id, true).await?;
    Ok(R::PinMessage(v1::PinResult { seq: wire::seq(seq) }))
}

/// §13.6
pub(crate) async fn unpin(state: &AppState, a: &Caller, r: v1::UnpinMessage) -> Out {
    let seq = state.conversations().pin(a, r.conversation_id, r.message_id, false).await?;
    Ok(R::UnpinMessage(v1::PinResult { seq: wire::seq(seq) }))
}

/// §13.6
pub(crate) async fn list_pins(state: &AppState, a: &Caller, r: v1::ListPins) -> Out {
    let pins = state.conversations().pins(a, r.conversation_id).await?;
    Ok(R::ListPins(v1::ListPinsResult { messages: pins.iter().map(|m| wire::message(m, a.user_id)).collect() }))
}

/// §13.5
pub(crate) async fn react(state: &AppState, a: &Caller, r: v1::React) -> Out {
    let seq = state.conversations().react(a, r.conversation_id, r.message_id, &r.emoji, true).await?;
    Ok(R::React(v1::ReactResult { seq: wire::seq(seq) }))
}

/// §13.5
pub(crate) async fn unreact(state: &AppState, a: &Caller, r: v1::Unreact) -> Out {
    let seq = state.conversations().react(a, r.conversation_id, r.message_id, &r.emoji, false).await?;
    Ok(R::Unreact(v1::ReactResult { seq: wire::seq(seq) }))
}
