//! Push's wire shapes (docs/protocol.md §24): stored targets, deliveries and settings as the
//! protocol's messages, and the protocol's enums as the store's.

use confab_protocol::v1;

use crate::store::{DeliveryRec, DeliveryState, PushKind, PushLevel, PushProvider, PushSettingsRec, TargetRec};

/// Characters of a token shown to the account's other devices.
const TOKEN_HINT_CHARS: usize = 6;

pub(super) fn provider(v: i32) -> Option<PushProvider> {
    match v1::PushProvider::try_from(v).ok()? {
        v1::PushProvider::Unspecified => None,
        v1::PushProvider::Webpush => Some(PushProvider::WebPush),
        v1::PushProvider::Fcm => Some(PushProvider::Fcm),
        v1::PushProvider::Apns => Some(PushProvider::Apns),
        v1::PushProvider::Expo => Some(PushProvider::Expo),
    }
}

pub(super) fn provider_wire(p: PushProvider) -> v1::PushProvider {
    match p {
        PushProvider::WebPush => v1::PushProvider::Webpush,
        PushProvider::Fcm => v1::PushProvider::Fcm,
        PushProvider::Apns => v1::PushProvider::Apns,
        PushProvider::Expo => v1::PushProvider::Expo,
    }
}

pub(super) fn level(v: i32) -> Option<PushLevel> {
    match v1::PushLevel::try_from(v).ok()? {
        v1::PushLevel::Unspecified => None,
        v1::PushLevel::All => Some(PushLevel::All),
        v1::PushLevel::DirectAndMentions => Some(PushLevel::DirectAndMentions),
        v1::PushLevel::Mentions => Some(PushLevel::Mentions),
        v1::PushLevel::None => Some(PushLevel::Nothing),
    }
}

pub(super) fn level_wire(l: PushLevel) -> v1::PushLevel {
    match l {
        PushLevel::All => v1::PushLevel::All,
        PushLevel::DirectAndMentions => v1::PushLevel::DirectAndMentions,
        PushLevel::Mentions => v1::PushLevel::Mentions,
        PushLevel::Nothing => v1::PushLevel::None,
    }
}

pub(super) fn kind_wire(k: PushKind) -> v1::PushKind {
    match k {
        PushKind::Message => v1::PushKind::Message,
        PushKind::Mention => v1::PushKind::Mention,
        PushKind::CallInvite => v1::PushKind::CallInvite,
        PushKind::AddedToConversation => v1::PushKind::AddedToConversation,
    }
}

fn state_wire(s: DeliveryState) -> v1::PushDeliveryState {
    match s {
        DeliveryState::Queued => v1::PushDeliveryState::Queued,
        DeliveryState::Sent => v1::PushDeliveryState::Sent,
        DeliveryState::Failed => v1::PushDeliveryState::Failed,
        DeliveryState::Dropped => v1::PushDeliveryState::Dropped,
        DeliveryState::Expired => v1::PushDeliveryState::Expired,
    }
}

fn ms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A target as `viewer_session` sees it: the token in full only to its own device.
pub(super) fn target(t: &TargetRec, viewer_session: &str) -> v1::PushTarget {
    let token = if t.session == viewer_session {
        t.token.clone()
    } else {
        let n = t.token.chars().count();
        t.token.chars().skip(n.saturating_sub(TOKEN_HINT_CHARS)).collect()
    };
    v1::PushTarget {
        target_id: ms(t.id),
        provider: provider_wire(t.provider) as i32,
        token,
        app_id: t.app_id.clone(),
        voip: t.voip,
        session_id: t.session.clone(),
        enabled: t.disabled_at_ms.is_none(),
        disabled_reason: t.disabled_reason.clone(),
        created_at_ms: ms(t.created_at_ms),
        disabled_at_ms: t.disabled_at_ms.map_or(0, ms),
    }
}

pub(super) fn delivery(d: &DeliveryRec) -> v1::PushDelivery {
    v1::PushDelivery {
        delivery_id: ms(d.id),
        target_id: ms(d.target_id),
        session_id: d.session.clone(),
        provider: provider_wire(d.provider) as i32,
        kind: kind_wire(d.kind) as i32,
        conversation_id: ms(d.conversation.0),
        seq: ms(d.seq),
        call_id: d.call_id.clone(),
        state: state_wire(d.state) as i32,
        attempts: u32::try_from(d.attempts).unwrap_or(u32::MAX),
        provider_status: u32::try_from(d.provider_status).unwrap_or(0),
        detail: d.detail.clone(),
        created_at_ms: ms(d.created_at_ms),
        updated_at_ms: ms(d.updated_at_ms),
        sent_at_ms: d.sent_at_ms.map_or(0, ms),
        next_attempt_at_ms: if d.state == DeliveryState::Queued { ms(d.due_at_ms) } else { 0 },
    }
}

pub(super) fn settings(s: &PushSettingsRec) -> v1::PushSettings {
    v1::PushSettings {
        level: level_wire(s.level) as i32,
        preview: s.preview,
        conversations: s
            .conversations
            .iter()
            .map(|c| v1::ConversationPushSetting {
                conversation_id: ms(c.conversation.0),
                level: level_wire(c.level) as i32,
                until_ms: ms(c.until_ms),
            })
            .collect(),
    }
}
