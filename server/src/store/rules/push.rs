//! Who is pushed what (docs/protocol.md §24.3, §24.2): the notification level that applies, what
//! each level lets through, and, when a delivery's time comes, whether it is still worth sending.
//! Plain functions, tested alone in `rules/tests.rs`.

use crate::store::conv_types::ConvKind;
use crate::store::push_types::{ConvPushSetting, DueDelivery, PushKind, PushLevel};

/// The level that applies to one conversation for one user: the conversation's own while it
/// holds (`until_ms` 0 or in the future), else the account's — except that a CHANNEL without a
/// level of its own notifies only mentions when the account says ALL (a broadcast to thousands
/// is not a reason to wake each of them).
pub fn effective_level(account: PushLevel, own: Option<ConvPushSetting>, kind: ConvKind, now_ms: i64) -> PushLevel {
    match own {
        Some(s) if s.until_ms == 0 || s.until_ms > now_ms => s.level,
        _ if kind == ConvKind::Channel && account == PushLevel::All => PushLevel::Mentions,
        _ => account,
    }
}

/// Whether `level` lets a push of `kind` in a conversation of `conv` through.
pub fn notifies(level: PushLevel, kind: PushKind, conv: ConvKind) -> bool {
    match level {
        PushLevel::All => true,
        PushLevel::DirectAndMentions => kind.is_personal() || conv == ConvKind::Direct,
        PushLevel::Mentions => kind.is_personal(),
        PushLevel::Nothing => false,
    }
}

/// What becomes of a claimed delivery before anything is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Not needed any more: the reason goes to the ledger (state DROPPED).
    Drop(&'static str),
    /// Too late (state EXPIRED).
    Expire,
}

/// Decides a delivery whose time has come: dropped when the device signed out, the target was
/// disabled, the device acknowledged the entry (it has it), the user left, the message was
/// deleted or its sender blocked, the target moved to another device, or the settings no longer
/// let it through; expired past its `expires_at_ms`; otherwise sent.
pub fn verdict(d: &DueDelivery, now_ms: i64) -> Verdict {
    let level = d.conv_kind.map(|k| (effective_level(d.account_level, d.own_level, k, now_ms), k));
    if d.session_ended {
        Verdict::Drop("the device signed out")
    } else if d.target.disabled_at_ms.is_some() {
        Verdict::Drop("the target was disabled")
    } else if d.target.user != d.user || d.target.session != d.session {
        Verdict::Drop("the token was registered again by another device")
    } else if d.kind != PushKind::CallInvite && d.acked_seq >= d.seq {
        Verdict::Drop("acknowledged by the device")
    } else if !d.member {
        Verdict::Drop("no longer a member")
    } else if d.message_deleted {
        Verdict::Drop("the message was deleted")
    } else if d.sender_blocked {
        Verdict::Drop("the sender is blocked")
    } else if !level.is_some_and(|(l, k)| notifies(l, d.kind, k)) {
        Verdict::Drop("the settings changed")
    } else if now_ms >= d.expires_at_ms {
        Verdict::Expire
    } else {
        Verdict::Send
    }
}
