//! `confab report`, `reports`, `resolve` (docs/protocol.md §27: members report messages, the
//! conversation's moderators and the server's administrators resolve them) and `confab security`
//! (the account's own security events, §28.4).

use std::collections::HashMap;

use clap::ValueEnum;
use confab_protocol::client::{Client, ClientError};
use confab_protocol::v1::{self, ErrorCode};
use serde_json::{Value, json};

use super::admin::{action_name, conversation_id};
use super::optional_text;
use super::output::Names;
use super::table::{Table, local, rfc3339};
use crate::config::Settings;
use crate::net::fetch_users;
use crate::session;

/// Why a message is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Reason {
    Spam,
    /// Harassment, threats, hate.
    Abuse,
    /// Content against the law.
    Illegal,
    Other,
}

impl Reason {
    fn wire(self) -> v1::ReportReason {
        match self {
            Self::Spam => v1::ReportReason::Spam,
            Self::Abuse => v1::ReportReason::Abuse,
            Self::Illegal => v1::ReportReason::Illegal,
            Self::Other => v1::ReportReason::Other,
        }
    }
}

/// What to do about a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Action {
    /// Nothing: close the report.
    Dismiss,
    /// Delete the message.
    DeleteMessage,
    /// Delete the message and remove its sender from the conversation.
    RemoveSender,
}

impl Action {
    fn wire(self) -> v1::ReportAction {
        match self {
            Self::Dismiss => v1::ReportAction::Dismiss,
            Self::DeleteMessage => v1::ReportAction::DeleteMessage,
            Self::RemoveSender => v1::ReportAction::RemoveSender,
        }
    }
}

/// One of `confab report|reports|resolve|security`.
#[derive(Debug)]
pub enum ReportsCommand {
    Report { conversation: String, message: u64, reason: Reason, note: Vec<String>, json: bool },
    List { conversation: Option<String>, resolved: bool, limit: u32, json: bool },
    Resolve { report: u64, action: Action, note: Vec<String>, json: bool },
    Security { limit: u32, json: bool },
}

fn reason_name(r: v1::ReportReason) -> &'static str {
    match r {
        v1::ReportReason::Spam => "spam",
        v1::ReportReason::Abuse => "abuse",
        v1::ReportReason::Illegal => "illegal",
        v1::ReportReason::Other => "other",
        v1::ReportReason::Unspecified => "unspecified",
    }
}

fn action_word(a: v1::ReportAction) -> &'static str {
    match a {
        v1::ReportAction::Dismiss => "dismiss",
        v1::ReportAction::DeleteMessage => "delete_message",
        v1::ReportAction::RemoveSender => "remove_sender",
        v1::ReportAction::Unspecified => "",
    }
}

fn state_name(s: v1::ReportState) -> &'static str {
    match s {
        v1::ReportState::Open => "open",
        v1::ReportState::Resolved => "resolved",
        v1::ReportState::Unspecified => "unspecified",
    }
}

pub fn report_json(r: &v1::Report, names: &Names) -> Value {
    let name = |id: u64| if id == 0 { Value::Null } else { json!(names.user(id)) };
    json!({
        "report_id": r.report_id,
        "conversation_id": r.conversation_id,
        "message_id": r.message_id,
        "reporter_id": r.reporter_id,
        "reporter": name(r.reporter_id),
        "sender_id": r.sender_id,
        "sender": name(r.sender_id),
        "reason": reason_name(r.reason()),
        "note": r.note,
        "created_at_ms": r.created_at_ms,
        "created_at": rfc3339(r.created_at_ms),
        "state": state_name(r.state()),
        "resolved_by": r.resolved_by,
        "resolved_at_ms": r.resolved_at_ms,
        "resolved_at": rfc3339(r.resolved_at_ms),
        "action": if r.action() == v1::ReportAction::Unspecified { Value::Null } else { json!(action_word(r.action())) },
        "resolution_note": r.resolution_note,
    })
}

/// The answer to a refused report request, in words.
fn hint(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Server(s)) if s.code() == ErrorCode::NotFound && s.message == "no such report" => {
            anyhow::anyhow!("no such report (or you are not a moderator of its conversation)")
        }
        Some(ClientError::Server(s)) if s.code() == ErrorCode::Unimplemented => {
            anyhow::anyhow!("this server does not offer reports: {}", s.message)
        }
        _ => e,
    }
}

/// Runs one of `confab report|reports|resolve|security`.
pub async fn run(settings: &Settings, command: ReportsCommand) -> anyhow::Result<()> {
    // Standard input is read before connecting.
    let command = match command {
        ReportsCommand::Report { conversation, message, reason, note, json } => {
            ReportsCommand::Report { conversation, message, reason, note: vec![optional_text(note, false)?], json }
        }
        ReportsCommand::Resolve { report, action, note, json } => {
            ReportsCommand::Resolve { report, action, note: vec![optional_text(note, false)?], json }
        }
        other => other,
    };
    let c = session::connect(settings).await?;
    let result = execute(&c.client, command).await;
    c.client.close().await;
    result.map_err(hint)
}

async fn execute(client: &Client, command: ReportsCommand) -> anyhow::Result<()> {
    match command {
        ReportsCommand::Report { conversation, message, reason, note, json } => {
            let conversation_id = conversation_id(client, &conversation).await?;
            let req = v1::ReportMessage {
                conversation_id,
                message_id: message,
                reason: reason.wire() as i32,
                note: note.concat(),
            };
            let r = call!(client, ReportMessage, req);
            if json {
                println!(
                    "{}",
                    json!({"report_id": r.report_id, "conversation_id": conversation_id, "message_id": message,
                        "reason": reason_name(reason.wire())})
                );
            } else {
                println!("reported message {message} (report {}); the conversation's moderators are told", r.report_id);
            }
        }
        ReportsCommand::List { conversation, resolved, limit, json } => {
            let conversation_id = match &conversation {
                Some(c) => conversation_id(client, c).await?,
                None => 0,
            };
            list(client, conversation_id, resolved, limit, json).await?;
        }
        ReportsCommand::Resolve { report, action, note, json } => {
            let req = v1::ResolveReport { report_id: report, action: action.wire() as i32, note: note.concat() };
            let r = call!(client, ResolveReport, req).report.unwrap_or_default();
            if json {
                let names = names_of(client, std::slice::from_ref(&r)).await;
                println!("{}", report_json(&r, &names));
            } else {
                let done = match r.action() {
                    v1::ReportAction::Dismiss => "dismissed".to_string(),
                    v1::ReportAction::DeleteMessage => format!("message {} deleted", r.message_id),
                    v1::ReportAction::RemoveSender => {
                        format!("message {} deleted and its sender removed", r.message_id)
                    }
                    v1::ReportAction::Unspecified => "resolved".to_string(),
                };
                println!("resolved report {}: {done}", r.report_id);
            }
        }
        ReportsCommand::Security { limit, json } => security(client, limit, json).await?,
    }
    Ok(())
}

/// Usernames and the names of the account's own conversations, for the reports shown.
async fn names_of(client: &Client, reports: &[v1::Report]) -> Names {
    let mut ids: Vec<u64> = reports.iter().flat_map(|r| [r.reporter_id, r.sender_id, r.resolved_by]).collect();
    ids.retain(|id| *id != 0);
    ids.sort_unstable();
    ids.dedup();
    let mut names = Names::default();
    names.add_users(&fetch_users(client, ids).await.unwrap_or_default());
    names
}

async fn list(client: &Client, conversation_id: u64, resolved: bool, limit: u32, json: bool) -> anyhow::Result<()> {
    let state = if resolved { v1::ReportState::Resolved } else { v1::ReportState::Open };
    let mut reports = Vec::new();
    let mut before_id = 0;
    let mut has_more = true;
    while has_more && reports.len() < limit as usize {
        let req = v1::ListReports {
            conversation_id,
            state: state as i32,
            before_id,
            limit: (limit as usize - reports.len()).min(100) as u32,
        };
        let page = call!(client, ListReports, req);
        has_more = page.has_more;
        match page.reports.last() {
            Some(last) => before_id = last.report_id,
            None => has_more = false,
        }
        reports.extend(page.reports);
    }
    reports.truncate(limit as usize);
    let mut names = names_of(client, &reports).await;
    if json {
        let list: Vec<Value> = reports.iter().map(|r| report_json(r, &names)).collect();
        println!("{}", json!({"reports": list, "has_more": has_more}));
        return Ok(());
    }
    if let Ok((convs, _)) = super::resolve::conversations_with_names(client).await {
        let peers: Vec<u64> = convs.iter().map(|c| c.peer_user_id).filter(|id| *id != 0).collect();
        names.add_users(&fetch_users(client, peers).await.unwrap_or_default());
        for c in &convs {
            names.add_conversation(c);
        }
    }
    let mut header = vec!["ID", "TIME", "CONVERSATION", "MESSAGE", "SENDER", "REPORTER", "REASON", "NOTE"];
    if resolved {
        header.extend(["ACTION", "BY", "RESOLVED"]);
    }
    let mut t = Table::new(&header);
    for r in &reports {
        let mut row = vec![
            r.report_id.to_string(),
            local(r.created_at_ms),
            names.conversation(r.conversation_id),
            r.message_id.to_string(),
            names.user(r.sender_id),
            names.user(r.reporter_id),
            reason_name(r.reason()).to_string(),
            one_line(&r.note),
        ];
        if resolved {
            row.extend([action_word(r.action()).to_string(), names.user(r.resolved_by), local(r.resolved_at_ms)]);
        }
        t.row(row);
    }
    if t.is_empty() {
        println!("{}", if resolved { "no resolved reports" } else { "no open reports" });
    } else {
        t.print();
    }
    Ok(())
}

/// A note on one line, at most 60 characters.
fn one_line(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 60 { format!("{}…", flat.chars().take(59).collect::<String>()) } else { flat }
}

/// `confab security`: the account's security events, newest first, with each session's device
/// where the session is still live.
async fn security(client: &Client, limit: u32, json: bool) -> anyhow::Result<()> {
    let mut events = Vec::new();
    let mut before_seq = 0;
    let mut has_more = true;
    while has_more && events.len() < limit as usize {
        let req = v1::ListSecurityEvents { before_seq, limit: (limit as usize - events.len()).min(100) as u32 };
        let page = call!(client, ListSecurityEvents, req);
        has_more = page.has_more;
        match page.events.last() {
            Some(last) => before_seq = last.seq,
            None => has_more = false,
        }
        events.extend(page.events);
    }
    events.truncate(limit as usize);
    let sessions: HashMap<String, v1::Session> =
        client.sessions().await?.into_iter().map(|s| (s.session_id.clone(), s)).collect();
    let device = |e: &v1::AuditEntry| sessions.get(&e.target).map(|s| s.device_name.clone());
    if json {
        let list: Vec<Value> = events
            .iter()
            .map(|e| {
                json!({"seq": e.seq, "at_ms": e.at_ms, "at": rfc3339(e.at_ms), "action": action_name(e.action()),
                    "target": e.target, "device": device(e), "current": sessions.get(&e.target).is_some_and(|s| s.current),
                    "client_addr": e.client_addr})
            })
            .collect();
        println!("{}", json!({"events": list, "has_more": has_more}));
        return Ok(());
    }
    let mut t = Table::new(&["TIME", "ACTION", "DEVICE / SESSION", "ADDRESS"]);
    for e in &events {
        let what = match (device(e), sessions.get(&e.target).is_some_and(|s| s.current)) {
            (Some(d), true) => format!("{d} (this session)"),
            (Some(d), false) => format!("{d} ({})", e.target),
            (None, _) if e.target.is_empty() => "-".to_string(),
            (None, _) => e.target.clone(),
        };
        let addr = if e.client_addr.is_empty() { "-".to_string() } else { e.client_addr.clone() };
        t.row(vec![local(e.at_ms), action_name(e.action()), what, addr]);
    }
    if t.is_empty() {
        println!("no security events");
    } else {
        t.print();
    }
    if has_more {
        println!("(more: --limit {})", limit.saturating_mul(2));
    }
    Ok(())
}
