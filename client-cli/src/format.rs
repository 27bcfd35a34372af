//! How the client names things for people: roles, presence, receipts, times, one-line users and
//! message previews. A leaf below the subcommands and the full-screen client, which both print
//! them.

use chrono::{Local, TimeZone};
use confab_protocol::v1;

/// A conversation kind as one word (`dm`, `group`, `channel`).
pub fn kind_name(k: v1::ConversationKind) -> &'static str {
    match k {
        v1::ConversationKind::Direct => "dm",
        v1::ConversationKind::Group => "group",
        v1::ConversationKind::Channel => "channel",
        v1::ConversationKind::Unspecified => "?",
        #[allow(unreachable_patterns)]
        _ => "?",
    }
}

/// A member role as one word; empty when unspecified.
pub fn role_name(r: v1::MemberRole) -> &'static str {
    match r {
        v1::MemberRole::Owner => "owner",
        v1::MemberRole::Admin => "admin",
        v1::MemberRole::Moderator => "moderator",
        v1::MemberRole::Member => "member",
        v1::MemberRole::Unspecified => "",
        #[allow(unreachable_patterns)]
        _ => "",
    }
}

/// A presence state as one word (`unknown` when unspecified).
pub fn presence_name(p: v1::PresenceState) -> &'static str {
    match p {
        v1::PresenceState::Online => "online",
        v1::PresenceState::Away => "away",
        v1::PresenceState::Offline => "offline",
        v1::PresenceState::Unspecified => "unknown",
        #[allow(unreachable_patterns)]
        _ => "unknown",
    }
}

/// A receipt state as one word.
pub fn receipt_name(s: v1::ReceiptState) -> &'static str {
    match s {
        v1::ReceiptState::Sent => "sent",
        v1::ReceiptState::Delivered => "delivered",
        v1::ReceiptState::Read => "read",
        v1::ReceiptState::Unspecified => "unknown",
        #[allow(unreachable_patterns)]
        _ => "unknown",
    }
}

/// A count with its noun, in English: `plural(1, "member", "members")` is `1 member`, any other
/// count (0 included) takes `many`: `0 members`, `2 members`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Local date and time of a Unix-millisecond timestamp.
pub fn datetime(ms: u64) -> String {
    match Local.timestamp_millis_opt(ms as i64).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M").to_string(),
        None => ms.to_string(),
    }
}

/// A user as one line: id, username, (display name) and presence when known.
pub fn user_line(u: &v1::UserProfile) -> String {
    let mut s = format!("{:<8} {}", u.user_id, u.username);
    if !u.display_name.is_empty() {
        s.push_str(&format!(" ({})", u.display_name));
    }
    if u.presence() != v1::PresenceState::Unspecified {
        s.push_str(&format!("  {}", presence_name(u.presence())));
    }
    s
}

/// A message's first line for previews: its text, or its first attachment's name.
pub fn preview_text(m: &v1::Message) -> String {
    if m.deleted {
        return "[deleted]".to_string();
    }
    match (m.text.lines().next(), m.attachments.first()) {
        (Some(t), _) if !t.is_empty() => t.to_string(),
        (_, Some(a)) => format!("📎 {}", a.file_name),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::plural;

    #[test]
    fn one_takes_the_singular_and_every_other_count_the_plural() {
        assert_eq!(plural(1, "member", "members"), "1 member");
        assert_eq!(plural(0, "member", "members"), "0 members");
        assert_eq!(plural(2, "entry", "entries"), "2 entries");
    }
}
