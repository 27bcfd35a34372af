//! Printing for the subcommands: JSON objects (one per line for streams) and plain text.

use std::collections::HashMap;

use confab_protocol::v1::{self, conversation_event::Body, user_update};
use serde_json::{Value, json};

pub use crate::format::{datetime, kind_name, presence_name, preview_text, receipt_name, role_name, user_line};
use crate::media::{attachment_json, attachment_summary};

/// Names of users and conversations, for display.
#[derive(Debug, Default)]
pub struct Names {
    pub users: HashMap<u64, String>,
    pub conversations: HashMap<u64, String>,
}

impl Names {
    pub fn add_users(&mut self, users: &[v1::UserProfile]) {
        for u in users {
            self.users.insert(u.user_id, u.username.clone());
        }
    }

    pub fn user(&self, id: u64) -> String {
        self.users.get(&id).cloned().unwrap_or_else(|| format!("user{id}"))
    }

    /// A conversation's title, or for a DM the other member's username.
    pub fn add_conversation(&mut self, c: &v1::Conversation) {
        let name = conversation_name(c, self);
        self.conversations.insert(c.conversation_id, name);
    }

    pub fn conversation(&self, id: u64) -> String {
        self.conversations.get(&id).cloned().unwrap_or_else(|| format!("#{id}"))
    }
}

/// What a conversation is called: its title, or `@peer` for a DM.
pub fn conversation_name(c: &v1::Conversation, names: &Names) -> String {
    if c.kind() == v1::ConversationKind::Direct { format!("@{}", names.user(c.peer_user_id)) } else { c.title.clone() }
}

pub fn user_json(u: &v1::UserProfile) -> Value {
    json!({
        "user_id": u.user_id,
        "username": u.username,
        "display_name": u.display_name,
        "status_text": u.status_text,
        "presence": presence_name(u.presence()),
        "last_seen_ms": u.last_seen_ms,
        "deleted": u.deleted,
    })
}

pub fn message_json(m: &v1::Message, names: &Names) -> Value {
    json!({
        "conversation_id": m.conversation_id,
        "message_id": m.message_id,
        "seq": m.seq,
        "sender_id": m.sender_id,
        "sender": names.user(m.sender_id),
        "text": m.text,
        "created_at_ms": m.created_at_ms,
        "written_at_ms": m.written_at_ms,
        "edited_at_ms": m.edited_at_ms,
        "deleted": m.deleted,
        "reply_to_message_id": m.reply_to_message_id,
        "mention_user_ids": m.mention_user_ids,
        "reactions": m.reactions.iter().map(|r| json!({"emoji": r.emoji, "count": r.count, "me": r.me})).collect::<Vec<_>>(),
        "pinned": m.pinned,
        "attachments": m.attachments.iter().map(attachment_json).collect::<Vec<_>>(),
    })
}

pub fn message_line(m: &v1::Message, names: &Names) -> String {
    // When it was written, when the sender said (§13.2).
    let at = if m.written_at_ms != 0 { m.written_at_ms } else { m.created_at_ms };
    let mut s = format!("{} #{} {}: ", datetime(at), m.message_id, names.user(m.sender_id));
    if m.deleted {
        s.push_str("[deleted]");
    } else {
        s.push_str(&m.text);
    }
    if m.edited_at_ms != 0 && !m.deleted {
        s.push_str(" (edited)");
    }
    if m.reply_to_message_id != 0 {
        s.push_str(&format!(" (reply to #{})", m.reply_to_message_id));
    }
    if !m.reactions.is_empty() {
        let r: Vec<String> = m.reactions.iter().map(|r| format!("{} {}", r.emoji, r.count)).collect();
        s.push_str(&format!("  [{}]", r.join(", ")));
    }
    if !m.deleted {
        // A message of attachments only has no text after the name.
        s.truncate(s.trim_end().len());
        // One line per attachment, with the id `confab download` takes.
        for a in &m.attachments {
            s.push_str(&format!("\n    📎 {}  {}", attachment_summary(a), a.media_id));
        }
    }
    s
}

pub fn conversation_json(c: &v1::Conversation, names: &Names, mentions: u32) -> Value {
    json!({
        "conversation_id": c.conversation_id,
        "kind": kind_name(c.kind()),
        "name": conversation_name(c, names),
        "title": c.title,
        "description": c.description,
        "peer_user_id": c.peer_user_id,
        "member_count": c.member_count,
        "head_seq": c.head_seq,
        "last_activity_ms": c.last_activity_ms,
        "my_read_seq": c.my_read_seq,
        "unread_count": c.unread_count,
        "unread_mentions": mentions,
        "my_role": role_name(c.my_role()),
        "last_message": c.last_message.as_ref().map(|m| message_json(m, names)),
    })
}

pub fn conversation_line(c: &v1::Conversation, names: &Names, mentions: u32) -> String {
    let mut s = format!("{:<8} {:<8} {:<24}", c.conversation_id, kind_name(c.kind()), conversation_name(c, names));
    if c.unread_count > 0 {
        s.push_str(&format!(" {} unread", c.unread_count));
        if mentions > 0 {
            s.push_str(&format!(" ({mentions} @)"));
        }
    }
    if let Some(m) = &c.last_message {
        s.push_str(&format!("  {}: {}", names.user(m.sender_id), preview_text(m)));
    }
    s
}

/// One log entry as JSON (for `tail --json`).
pub fn entry_json(e: &v1::ConversationEvent, names: &Names) -> Value {
    let base = |kind: &str| {
        json!({
            "type": kind,
            "conversation_id": e.conversation_id,
            "conversation": names.conversation(e.conversation_id),
            "seq": e.seq,
            "actor_id": e.actor_id,
            "actor": names.user(e.actor_id),
            "at_ms": e.at_ms,
        })
    };
    match &e.body {
        Some(Body::MessagePosted(m)) => {
            let mut v = base("message");
            v["message"] = message_json(m, names);
            v
        }
        Some(Body::MessageEdited(x)) => {
            let mut v = base("edited");
            v["message_id"] = json!(x.message_id);
            v["text"] = json!(x.text);
            v
        }
        Some(Body::MessageDeleted(x)) => {
            let mut v = base("deleted");
            v["message_id"] = json!(x.message_id);
            v
        }
        Some(Body::ReactionAdded(x)) => {
            let mut v = base("reaction_added");
            v["message_id"] = json!(x.message_id);
            v["emoji"] = json!(x.emoji);
            v
        }
        Some(Body::ReactionRemoved(x)) => {
            let mut v = base("reaction_removed");
            v["message_id"] = json!(x.message_id);
            v["emoji"] = json!(x.emoji);
            v
        }
        Some(Body::MembersAdded(x)) => {
            let mut v = base("members_added");
            v["user_ids"] = json!(x.user_ids);
            v
        }
        Some(b) => {
            let mut v = base("other");
            v["body"] = json!(format!("{b:?}"));
            v
        }
        None => base("unknown"),
    }
}

/// One log entry as text (for `tail`).
pub fn entry_line(e: &v1::ConversationEvent, names: &Names) -> String {
    let conv = names.conversation(e.conversation_id);
    let who = names.user(e.actor_id);
    match &e.body {
        Some(Body::MessagePosted(m)) => format!("[{conv}] {}", message_line(m, names)),
        Some(Body::MessageEdited(x)) => format!("[{conv}] {who} edited #{}: {}", x.message_id, x.text),
        Some(Body::MessageDeleted(x)) => format!("[{conv}] {who} deleted #{}", x.message_id),
        Some(Body::ReactionAdded(x)) => format!("[{conv}] {who} reacted {} to #{}", x.emoji, x.message_id),
        Some(Body::ReactionRemoved(x)) => format!("[{conv}] {who} removed {} from #{}", x.emoji, x.message_id),
        Some(Body::Created(c)) => format!("[{conv}] {who} created the conversation {}", c.title),
        Some(Body::MembersAdded(x)) => {
            let added: Vec<String> = x.user_ids.iter().map(|u| names.user(*u)).collect();
            format!("[{conv}] {who} added {}", added.join(", "))
        }
        Some(Body::MemberJoined(x)) => format!("[{conv}] {} joined", names.user(x.user_id)),
        Some(Body::MemberLeft(x)) => format!("[{conv}] {} left", names.user(x.user_id)),
        Some(Body::MemberRemoved(x)) => format!("[{conv}] {who} removed {}", names.user(x.user_id)),
        Some(Body::MessagePinned(x)) => format!("[{conv}] {who} pinned #{}", x.message_id),
        Some(Body::MessageUnpinned(x)) => format!("[{conv}] {who} unpinned #{}", x.message_id),
        Some(Body::Updated(x)) => format!("[{conv}] {who} updated the conversation: {}", x.title),
        Some(Body::RoleChanged(x)) => {
            format!("[{conv}] {who} made {} {}", names.user(x.user_id), role_name(x.role()))
        }
        Some(Body::OwnershipTransferred(x)) => {
            format!("[{conv}] {} transferred ownership to {}", names.user(x.from_user_id), names.user(x.to_user_id))
        }
        None => format!("[{conv}] (unknown entry {})", e.seq),
        #[allow(unreachable_patterns)]
        Some(_) => format!("[{conv}] (entry {})", e.seq),
    }
}

/// A user-log entry as JSON.
pub fn user_entry_json(u: &v1::UserUpdate) -> Value {
    match &u.body {
        Some(user_update::Body::AddedToConversation(a)) => {
            json!({"type": "added_to_conversation", "user_seq": u.user_seq, "conversation_id": a.conversation_id})
        }
        Some(user_update::Body::RemovedFromConversation(r)) => {
            json!({"type": "removed_from_conversation", "user_seq": u.user_seq, "conversation_id": r.conversation_id})
        }
        Some(user_update::Body::ReadMarker(r)) => {
            json!({"type": "read_marker", "user_seq": u.user_seq, "conversation_id": r.conversation_id, "seq": r.seq})
        }
        None => json!({"type": "unknown", "user_seq": u.user_seq}),
        #[allow(unreachable_patterns)]
        Some(_) => json!({"type": "unknown", "user_seq": u.user_seq}),
    }
}
