//! `confab admin audit`: the audit log with filters, newest first (docs/protocol.md §28.3), and
//! how an entry prints (shared with `confab security`, §28.4).

use std::collections::HashMap;

use confab_protocol::client::Client;
use confab_protocol::v1;
use serde_json::{Value, json};

use super::super::table::{Table, local, rfc3339};
use super::{conversation_id, target};
use crate::net::fetch_users;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Entries where this account acted (a username, #ID or an id).
    #[arg(long, value_name = "USER")]
    actor: Option<String>,
    /// Entries about this account.
    #[arg(long, value_name = "USER")]
    target: Option<String>,
    /// Entries about this conversation (an id).
    #[arg(long, value_name = "CONV")]
    conversation: Option<String>,
    /// Entries of this action (repeat for several): sign_in, sign_in_failed, account_suspended, …
    #[arg(long = "action", value_name = "NAME", value_parser = action_arg)]
    actions: Vec<v1::AuditAction>,
    /// Entries at or after this time: RFC 3339 (2026-11-30T10:00:00Z), a date (2026-11-30, local
    /// midnight) or a duration ago (24h, 7d).
    #[arg(long, value_name = "TIME", value_parser = since_arg)]
    since: Option<u64>,
    /// Entries with a seq below this (to page on).
    #[arg(long, value_name = "SEQ")]
    before: Option<u64>,
    /// At most this many (the server's pages are followed).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
    #[arg(long)]
    json: bool,
}

/// An action's name: the enum's without its prefix, in snake case (`sign_in_failed`).
pub fn action_name(a: v1::AuditAction) -> String {
    let n = a.as_str_name();
    n.strip_prefix("AUDIT_ACTION_").unwrap_or(n).to_ascii_lowercase()
}

fn action_names() -> Vec<String> {
    (1..).map_while(|i| v1::AuditAction::try_from(i).ok()).map(action_name).collect()
}

/// An action by name (`sign_in`, `SIGN-IN` alike).
pub fn action_arg(s: &str) -> Result<v1::AuditAction, String> {
    let upper = s.trim().to_ascii_uppercase().replace('-', "_");
    match v1::AuditAction::from_str_name(&format!("AUDIT_ACTION_{upper}")) {
        Some(a) if a != v1::AuditAction::Unspecified => Ok(a),
        _ => Err(format!("unknown action {s:?}: one of {}", action_names().join(", "))),
    }
}

fn since_arg(s: &str) -> Result<u64, String> {
    super::super::search::parse_when(s, chrono::Utc::now(), &chrono::Local)
}

/// `before` and `after` as JSON: the object when they hold one, `null` when empty.
fn state_json(s: &str) -> Value {
    if s.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

pub fn entry_json(e: &v1::AuditEntry) -> Value {
    json!({
        "seq": e.seq,
        "at_ms": e.at_ms,
        "at": rfc3339(e.at_ms),
        "actor_id": e.actor_id,
        "action": action_name(e.action()),
        "target_user_id": e.target_user_id,
        "target_conversation_id": e.target_conversation_id,
        "target_message_id": e.target_message_id,
        "target": e.target,
        "before": state_json(&e.before),
        "after": state_json(&e.after),
        "client_addr": e.client_addr,
        "hash": hex::encode(&e.hash),
    })
}

/// What an entry was on, in a few words: `alice`, `conv 4 msg 17`, the target string.
pub fn entry_target(e: &v1::AuditEntry, names: &HashMap<u64, String>) -> String {
    let mut parts = Vec::new();
    if e.target_user_id != 0 {
        parts.push(name(names, e.target_user_id));
    }
    if e.target_conversation_id != 0 {
        parts.push(format!("conv {}", e.target_conversation_id));
    }
    if e.target_message_id != 0 {
        parts.push(format!("msg {}", e.target_message_id));
    }
    if !e.target.is_empty() {
        parts.push(e.target.clone());
    }
    parts.join(" ")
}

fn name(names: &HashMap<u64, String>, id: u64) -> String {
    names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"))
}

/// `before → after`, or whichever there is.
fn change(e: &v1::AuditEntry) -> String {
    match (e.before.is_empty(), e.after.is_empty()) {
        (true, true) => String::new(),
        (true, false) => e.after.clone(),
        (false, true) => format!("{} →", e.before),
        (false, false) => format!("{} → {}", e.before, e.after),
    }
}

/// Usernames of the users the entries name (ids the server does not know stay `#ID`).
async fn names_of(client: &Client, entries: &[v1::AuditEntry]) -> HashMap<u64, String> {
    let mut ids: Vec<u64> = entries.iter().flat_map(|e| [e.actor_id, e.target_user_id]).filter(|id| *id != 0).collect();
    ids.sort_unstable();
    ids.dedup();
    let users = fetch_users(client, ids).await.unwrap_or_default();
    users.into_iter().filter(|u| !u.username.is_empty()).map(|u| (u.user_id, u.username)).collect()
}

/// Runs `confab admin audit`.
pub async fn run(client: &Client, args: AuditArgs) -> anyhow::Result<()> {
    let actor_id = match &args.actor {
        Some(u) => target(client, u).await?.user_id,
        None => 0,
    };
    let target_user_id = match &args.target {
        Some(u) => target(client, u).await?.user_id,
        None => 0,
    };
    let target_conversation_id = match &args.conversation {
        Some(c) => conversation_id(client, c).await?,
        None => 0,
    };
    let mut entries: Vec<v1::AuditEntry> = Vec::new();
    let mut before_seq = args.before.unwrap_or(0);
    let mut head: Option<(u64, Vec<u8>)> = None;
    let mut has_more = true;
    while has_more && entries.len() < args.limit as usize {
        let req = v1::AdminListAudit {
            actor_id,
            target_user_id,
            target_conversation_id,
            actions: args.actions.iter().map(|a| *a as i32).collect(),
            since_ms: args.since.unwrap_or(0),
            before_seq,
            limit: (args.limit as usize - entries.len()).min(100) as u32,
        };
        let page = call!(client, AdminListAudit, req);
        head.get_or_insert((page.head_seq, page.head_hash.to_vec()));
        has_more = page.has_more;
        match page.entries.last() {
            Some(last) => before_seq = last.seq,
            None => has_more = false,
        }
        entries.extend(page.entries);
    }
    entries.truncate(args.limit as usize);
    let (head_seq, head_hash) = head.unwrap_or_default();
    if args.json {
        let list: Vec<Value> = entries.iter().map(entry_json).collect();
        println!(
            "{}",
            json!({"entries": list, "has_more": has_more, "head_seq": head_seq, "head_hash": hex::encode(&head_hash)})
        );
        return Ok(());
    }
    let names = names_of(client, &entries).await;
    let mut t = Table::new(&["SEQ", "TIME", "ACTION", "ACTOR", "TARGET", "ADDRESS", "CHANGE"]);
    for e in &entries {
        let actor = if e.actor_id == 0 { "-".to_string() } else { name(&names, e.actor_id) };
        t.row(vec![
            e.seq.to_string(),
            local(e.at_ms),
            action_name(e.action()),
            actor,
            entry_target(e, &names),
            e.client_addr.clone(),
            change(e),
        ]);
    }
    if t.is_empty() {
        println!("no entries");
    } else {
        t.print();
    }
    if has_more && let Some(last) = entries.last() {
        println!("(more before seq {0}: --before {0})", last.seq);
    }
    println!("head: entry {head_seq} hash {}", hex::encode(&head_hash));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip() {
        let names = action_names();
        assert_eq!(names.len(), 24, "{names:?}");
        assert_eq!(names[0], "sign_in");
        for n in &names {
            assert_eq!(&action_name(action_arg(n).expect("known")), n);
        }
        assert_eq!(action_arg("Account-Suspended"), Ok(v1::AuditAction::AccountSuspended));
        let err = action_arg("nope").expect_err("unknown");
        assert!(err.contains("sign_in_failed"), "{err}");
        assert!(action_arg("unspecified").is_err());
    }

    #[test]
    fn entries_in_json_keep_ids_and_both_times() {
        let e = v1::AuditEntry {
            seq: 7,
            at_ms: 1_795_165_200_000,
            actor_id: 1,
            action: v1::AuditAction::LimitsChanged as i32,
            target_user_id: 2,
            before: String::new(),
            after: r#"{"messages_per_minute":30}"#.into(),
            hash: vec![0xab; 32].into(),
            ..Default::default()
        };
        let v = entry_json(&e);
        assert_eq!(v["action"], "limits_changed");
        assert_eq!(v["at"], "2026-11-20T09:00:00.000Z");
        assert_eq!(v["before"], Value::Null);
        assert_eq!(v["after"]["messages_per_minute"], 30);
        assert_eq!(v["hash"].as_str().map(str::len), Some(64));
        let names = HashMap::from([(2, "bob".to_string())]);
        assert_eq!(entry_target(&e, &names), "bob");
        assert_eq!(change(&e), r#"{"messages_per_minute":30}"#);
    }
}
