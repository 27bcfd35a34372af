//! `confab admin delete-message|delete-conversation|quarantine|stats` (docs/protocol.md §26.6,
//! §26.7, §26.9).

use confab_protocol::client::Client;
use confab_protocol::v1;
use serde_json::{Value, json};

use super::super::table::{Table, count, fields, rfc3339};
use super::users::messages;
use super::{confirm, conversation_id};
use crate::format::plural;
use crate::media::human_size;

/// `confab admin delete-message CONV MESSAGE`.
pub async fn delete_message(client: &Client, conversation: &str, message_id: u64, json: bool) -> anyhow::Result<()> {
    let conversation_id = conversation_id(client, conversation).await?;
    let r = call!(client, AdminDeleteMessage, v1::AdminDeleteMessage { conversation_id, message_id });
    if json {
        println!(
            "{}",
            json!({"conversation_id": conversation_id, "message_id": message_id, "deleted": r.seq > 0, "seq": r.seq})
        );
    } else if r.seq > 0 {
        println!("deleted message {message_id} of conversation {conversation_id} (entry {})", r.seq);
    } else {
        println!("message {message_id} of conversation {conversation_id} was already deleted");
    }
    Ok(())
}

/// `confab admin delete-conversation CONV`.
pub async fn delete_conversation(client: &Client, conversation: &str, yes: bool, json: bool) -> anyhow::Result<()> {
    let conversation_id = conversation_id(client, conversation).await?;
    let question = format!(
        "Delete conversation {conversation_id}: remove every member and delete its messages? This cannot be undone."
    );
    confirm(question, yes).await?;
    let r = call!(client, AdminDeleteConversation, v1::AdminDeleteConversation { conversation_id });
    if json {
        println!(
            "{}",
            json!({"conversation_id": conversation_id, "members_removed": r.members_removed,
                "messages_deleted": r.messages_deleted})
        );
    } else {
        let members = plural(u64::from(r.members_removed), "member", "members");
        println!("deleted conversation {conversation_id}: {members} removed, {} deleted", messages(r.messages_deleted));
    }
    Ok(())
}

/// `confab admin quarantine MEDIA_ID`.
pub async fn quarantine(client: &Client, media_id: String, reason: Option<String>, json: bool) -> anyhow::Result<()> {
    let req = v1::AdminQuarantineMedia { media_id: media_id.clone(), reason: reason.unwrap_or_default() };
    let r = call!(client, AdminQuarantineMedia, req);
    if json {
        println!("{}", json!({"media_id": media_id, "quarantined": r.quarantined}));
    } else if r.quarantined {
        println!("quarantined {media_id}");
    } else {
        println!("{media_id} was already quarantined");
    }
    Ok(())
}

/// A day's UTC date, `2026-11-20`.
fn day(ms: u64) -> String {
    rfc3339(ms).as_str().and_then(|s| s.get(..10)).unwrap_or("-").to_string()
}

pub fn stats_json(s: &v1::ServerStats) -> Value {
    let days: Vec<Value> = s
        .messages_per_day
        .iter()
        .map(|d| json!({"day_start_ms": d.day_start_ms, "day": day(d.day_start_ms), "count": d.count}))
        .collect();
    json!({
        "connections": s.connections,
        "online_users": s.online_users,
        "users": s.users,
        "users_suspended": s.users_suspended,
        "users_deleted": s.users_deleted,
        "conversations": s.conversations,
        "messages": s.messages,
        "messages_per_day": days,
        "store_bytes": s.store_bytes,
        "media_bytes": s.media_bytes,
        "audit_entries": s.audit_entries,
    })
}

/// `confab admin stats`.
pub async fn stats(client: &Client, json: bool) -> anyhow::Result<()> {
    let s = call!(client, AdminGetStats, v1::AdminGetStats {});
    if json {
        println!("{}", stats_json(&s));
        return Ok(());
    }
    print!(
        "{}",
        fields(&[
            ("connections", format!("{} (this node)", count(u64::from(s.connections)))),
            ("online users", count(u64::from(s.online_users))),
            (
                "users",
                format!(
                    "{} ({} suspended, {} deleted)",
                    count(s.users),
                    count(s.users_suspended),
                    count(s.users_deleted)
                )
            ),
            ("conversations", count(s.conversations)),
            ("messages", count(s.messages)),
            ("store", human_size(s.store_bytes)),
            ("media", human_size(s.media_bytes)),
            ("audit entries", count(s.audit_entries)),
        ])
    );
    if !s.messages_per_day.is_empty() {
        let mut t = Table::new(&["DAY (UTC)", "MESSAGES"]);
        for d in &s.messages_per_day {
            t.row(vec![day(d.day_start_ms), count(d.count)]);
        }
        println!();
        t.print();
    }
    Ok(())
}
