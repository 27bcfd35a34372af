//! Domain → wire for the services' own result types: issued sessions (§11), profiles and privacy
//! (§15.4, §18), and Sync answers (§14.3). A child of `wire` one layer above the services (their
//! types are its input), so `wire` itself stays below the writer and fan-out that share its
//! encoded frames.

use confab_protocol::v1;

use crate::auth::Issued;
use crate::conversations::SyncOut;
use crate::hub::Presence;
use crate::social::{Privacy, Profile};
use crate::store::UserId;

/// The answer to a sign-in that issued a session (§11.2-§11.4, §11.6).
pub fn auth_result(i: Issued) -> v1::AuthResult {
    v1::AuthResult {
        me: Some(super::me(&i.user)),
        session_id: i.session_id,
        access_token: i.access_token,
        access_token_expires_at_ms: i.access_expires_at_ms,
        refresh_token: i.refresh_token,
        refresh_token_expires_at_ms: i.refresh_expires_at_ms,
        created: i.created,
    }
}

/// A user's profile as the viewer may see it (§18).
pub fn profile(p: &Profile) -> v1::UserProfile {
    let u = &p.user;
    v1::UserProfile {
        user_id: super::user(u.id),
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        status_text: u.status_text.clone(),
        avatar_ref: u.avatar_ref.clone(),
        presence: p.presence.map_or(0, Presence::wire),
        last_seen_ms: p.last_seen_ms.max(0) as u64,
        deleted: u.deleted,
    }
}

/// Privacy settings (§15.4).
pub fn privacy(p: Privacy) -> v1::PrivacySettings {
    v1::PrivacySettings { read_receipts: p.read_receipts, show_last_seen: p.show_last_seen }
}

/// A Sync answer as `viewer` sees it (their own `client_msg_id`s kept, §14.3).
pub fn sync(out: &SyncOut, viewer: UserId) -> v1::SyncResult {
    v1::SyncResult {
        epoch: out.epoch,
        resync_required: out.resync_required,
        user_seq: out.user_seq as u64,
        user_updates: out.user_updates.iter().map(super::user_update).collect(),
        has_more_updates: out.has_more_updates,
        conversations: out
            .diffs
            .iter()
            .map(|d| v1::ConversationDiff {
                conversation_id: super::conv(d.conversation_id),
                head_seq: d.head_seq as u64,
                events: d.events.iter().map(|e| super::event(e, Some(viewer))).collect(),
                has_more: d.has_more,
            })
            .collect(),
    }
}
