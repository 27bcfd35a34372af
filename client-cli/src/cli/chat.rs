//! Conversation and message subcommands.

use std::time::Duration;

use anyhow::{Context, bail};
use confab_protocol::client::{Client, ClientError};
use confab_protocol::v1::{self, ConversationKind};
use serde_json::json;

use super::output::{Names, conversation_json, conversation_line, message_json, message_line, receipt_name, role_name};
use super::{Command, media, optional_text, resolve, social, text_arg};
use crate::config::Settings;
use crate::format::plural;
use crate::net::{fetch_users, new_client_msg_id};
use crate::session;

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<()> {
    if let Command::Send { conversation, text, reply_to, files, json } = command {
        let text = if files.is_empty() { text_arg(text)? } else { optional_text(text, false)? };
        return send(settings, &conversation, text, reply_to, &files, json).await;
    }
    let c = session::connect(settings).await?;
    let client = &c.client;
    let result = dispatch(client, command).await;
    client.close().await;
    result
}

async fn dispatch(client: &Client, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Conversations { json } => conversations(client, json).await,
        Command::History { conversation, limit, before, json } => {
            history(client, &conversation, limit, before.unwrap_or(0), json).await
        }
        Command::CreateDm { user, json } => {
            let u = resolve::user(client, &user).await?;
            let req = v1::CreateConversation {
                kind: ConversationKind::Direct as i32,
                member_ids: vec![u.user_id],
                ..Default::default()
            };
            let c = call!(client, CreateConversation, req);
            print_created(client, &c, json).await
        }
        Command::CreateGroup { name, users, json } => {
            let mut ids = Vec::new();
            for u in &users {
                ids.push(resolve::user(client, u).await?.user_id);
            }
            let req = v1::CreateConversation {
                kind: ConversationKind::Group as i32,
                title: name,
                member_ids: ids,
                ..Default::default()
            };
            let c = call!(client, CreateConversation, req);
            print_created(client, &c, json).await
        }
        Command::CreateChannel { name, json } => {
            let req =
                v1::CreateConversation { kind: ConversationKind::Channel as i32, title: name, ..Default::default() };
            let c = call!(client, CreateConversation, req);
            print_created(client, &c, json).await
        }
        Command::Channels { query, json } => {
            let req = v1::DiscoverChannels { query, after_conversation_id: 0, limit: 100 };
            let r = call!(client, DiscoverChannels, req);
            let names = Names::default();
            for c in &r.conversations {
                if json {
                    println!("{}", conversation_json(c, &names, 0));
                } else {
                    let members = plural(u64::from(c.member_count), "member", "members");
                    println!("{:<8} {} ({members})", c.conversation_id, c.title);
                }
            }
            Ok(())
        }
        Command::Join { channel, json } => {
            let id = resolve::channel(client, &channel).await?;
            let c = call!(client, JoinChannel, v1::JoinChannel { conversation_id: id });
            print_created(client, &c, json).await
        }
        Command::Leave { conversation } => {
            let (c, names) = resolve::conversation(client, &conversation).await?;
            call!(client, LeaveConversation, v1::LeaveConversation { conversation_id: c.conversation_id });
            println!("left {}", names.conversation(c.conversation_id));
            Ok(())
        }
        Command::AddMember { conversation, users } => {
            let (c, _) = resolve::conversation(client, &conversation).await?;
            let mut ids = Vec::new();
            for u in &users {
                ids.push(resolve::user(client, u).await?.user_id);
            }
            let r = call!(client, AddMembers, v1::AddMembers { conversation_id: c.conversation_id, user_ids: ids });
            println!("added {} (seq {})", users.join(", "), r.seq);
            Ok(())
        }
        Command::RemoveMember { conversation, user } => {
            let (c, _) = resolve::conversation(client, &conversation).await?;
            let u = resolve::user(client, &user).await?;
            let req = v1::RemoveMember { conversation_id: c.conversation_id, user_id: u.user_id };
            let r = call!(client, RemoveMember, req);
            println!("removed {} (seq {})", u.username, r.seq);
            Ok(())
        }
        Command::Members { conversation, json } => members(client, &conversation, json).await,
        Command::Edit { conversation, message_id, text } => {
            let text = text_arg(text)?;
            let (c, _) = resolve::conversation(client, &conversation).await?;
            let req = v1::EditMessage { conversation_id: c.conversation_id, message_id, text };
            let r = call!(client, EditMessage, req);
            println!("edited #{message_id} (seq {})", r.seq);
            Ok(())
        }
        Command::Delete { conversation, message_id } => {
            let (c, _) = resolve::conversation(client, &conversation).await?;
            let r = call!(client, DeleteMessage, v1::DeleteMessage { conversation_id: c.conversation_id, message_id });
            println!("deleted #{message_id} (seq {})", r.seq);
            Ok(())
        }
        Command::React { conversation, message_id, emoji, remove } => {
            let (c, _) = resolve::conversation(client, &conversation).await?;
            let conversation_id = c.conversation_id;
            let seq = if remove {
                call!(client, Unreact, v1::Unreact { conversation_id, message_id, emoji: emoji.clone() }).seq
            } else {
                call!(client, React, v1::React { conversation_id, message_id, emoji: emoji.clone() }).seq
            };
            println!("{} {emoji} on #{message_id} (seq {seq})", if remove { "removed" } else { "reacted" });
            Ok(())
        }
        Command::Pins { conversation, json } => {
            let (c, _) = resolve::conversation(client, &conversation).await?;
            let r = call!(client, ListPins, v1::ListPins { conversation_id: c.conversation_id });
            print_messages(client, &r.messages, json).await
        }
        Command::MarkRead { conversation, seq } => {
            let (c, names) = resolve::conversation(client, &conversation).await?;
            let seq = seq.unwrap_or(c.head_seq);
            let r = call!(client, MarkRead, v1::MarkRead { conversation_id: c.conversation_id, seq });
            println!("{} read up to seq {}", names.conversation(c.conversation_id), r.read_seq);
            Ok(())
        }
        Command::Receipts { conversation, message_id, json } => {
            let (c, _) = resolve::conversation(client, &conversation).await?;
            let req = v1::GetReceipts { conversation_id: c.conversation_id, message_id };
            let r = call!(client, GetReceipts, req);
            let mut names = Names::default();
            names.add_users(&fetch_users(client, r.receipts.iter().map(|m| m.user_id).collect()).await?);
            for m in &r.receipts {
                if json {
                    println!(
                        "{}",
                        json!({"user_id": m.user_id, "username": names.user(m.user_id), "state": receipt_name(m.state())})
                    );
                } else {
                    println!("{:<24} {}", names.user(m.user_id), receipt_name(m.state()));
                }
            }
            Ok(())
        }
        other => social::run(client, other).await,
    }
}

async fn conversations(client: &Client, json: bool) -> anyhow::Result<()> {
    let (convs, names) = resolve::conversations_with_names(client).await?;
    for c in &convs {
        // The server counts mentions after our read marker (§12.1).
        let m = c.unread_mention_count;
        if json {
            println!("{}", conversation_json(c, &names, m));
        } else {
            println!("{}", conversation_line(c, &names, m));
        }
    }
    Ok(())
}

/// A conversation just created or joined, with the names it shows: the peer of a DM and the
/// sender of its last message (which may be the caller, for a DM that already existed).
async fn print_created(client: &Client, c: &v1::Conversation, json: bool) -> anyhow::Result<()> {
    let mut names = Names::default();
    let mut ids: Vec<u64> = [c.peer_user_id, c.last_message.as_ref().map_or(0, |m| m.sender_id)]
        .into_iter()
        .filter(|id| *id != 0)
        .collect();
    ids.dedup();
    if !ids.is_empty() {
        names.add_users(&fetch_users(client, ids).await?);
    }
    if json {
        println!("{}", conversation_json(c, &names, 0));
    } else {
        println!("{}", conversation_line(c, &names, 0));
    }
    Ok(())
}

async fn print_messages(client: &Client, messages: &[v1::Message], json: bool) -> anyhow::Result<()> {
    let mut ids: Vec<u64> = messages.iter().map(|m| m.sender_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut names = Names::default();
    names.add_users(&fetch_users(client, ids).await?);
    for m in messages {
        if json {
            println!("{}", message_json(m, &names));
        } else {
            println!("{}", message_line(m, &names));
        }
    }
    Ok(())
}

async fn history(client: &Client, spec: &str, limit: u32, before_seq: u64, json: bool) -> anyhow::Result<()> {
    let (c, _) = resolve::conversation(client, spec).await?;
    let mut messages = Vec::new();
    let mut before = before_seq;
    // Pages of up to 200, newest first, until `limit` messages or the start.
    while (messages.len() as u32) < limit {
        let want = (limit - messages.len() as u32).min(200);
        let req = v1::GetHistory { conversation_id: c.conversation_id, before_seq: before, after_seq: 0, limit: want };
        let page = call!(client, GetHistory, req);
        let Some(first) = page.messages.first() else { break };
        before = first.seq;
        let mut page_msgs = page.messages;
        page_msgs.append(&mut messages);
        messages = page_msgs;
        if !page.has_more {
            break;
        }
    }
    print_messages(client, &messages, json).await
}

async fn members(client: &Client, spec: &str, json: bool) -> anyhow::Result<()> {
    let (c, _) = resolve::conversation(client, spec).await?;
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let req = v1::ListMembers { conversation_id: c.conversation_id, after_user_id: after, limit: 500 };
        let r = call!(client, ListMembers, req);
        after = r.members.last().map_or(after, |m| m.user_id);
        all.extend(r.members);
        if !r.has_more {
            break;
        }
    }
    let mut names = Names::default();
    names.add_users(&fetch_users(client, all.iter().map(|m| m.user_id).collect()).await?);
    for m in &all {
        if json {
            println!(
                "{}",
                json!({"user_id": m.user_id, "username": names.user(m.user_id), "role": role_name(m.role()),
                       "joined_at_ms": m.joined_at_ms})
            );
        } else {
            println!("{:<8} {:<24} {}", m.user_id, names.user(m.user_id), role_name(m.role()));
        }
    }
    Ok(())
}

/// `@name` words of `text` that name members of the conversation.
async fn mentions(client: &Client, conversation_id: u64, text: &str) -> anyhow::Result<Vec<u64>> {
    let wanted: Vec<String> = text
        .split_whitespace()
        .filter_map(|w| w.strip_prefix('@'))
        .map(|w| w.trim_end_matches(|c: char| !c.is_alphanumeric() && c != '_').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let req = v1::ListMembers { conversation_id, after_user_id: 0, limit: 500 };
    let r = call!(client, ListMembers, req);
    let users = fetch_users(client, r.members.iter().map(|m| m.user_id).collect()).await?;
    Ok(users.iter().filter(|u| wanted.contains(&u.username.to_lowercase())).map(|u| u.user_id).collect())
}

/// Uploads the files, then sends with one idempotency key, reconnecting and sending again on
/// transient failures.
async fn send(
    settings: &Settings,
    spec: &str,
    text: String,
    reply_to: Option<u64>,
    files: &[std::path::PathBuf],
    json: bool,
) -> anyhow::Result<()> {
    // Written now: uploads and retries that follow do not change when (§13.2).
    let written_at_ms = session::now_ms();
    let files = media::inspect_all(files)?;
    let mut conn = None;
    if !files.is_empty() {
        // The conversation is checked before any byte goes up.
        let c = session::connect(settings).await?;
        resolve::conversation(&c.client, spec).await?;
        conn = Some(c);
    }
    let mut attachments = Vec::new();
    for f in &files {
        let m = media::upload(settings, &mut conn, f, v1::MediaPurpose::Attachment, json).await?;
        attachments.push(v1::Attachment { media_id: m.media_id, file_name: f.file_name.clone(), ..Default::default() });
    }
    let client_msg_id = new_client_msg_id();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let c = match conn.take() {
            Some(c) => c,
            None => session::connect(settings).await?,
        };
        let client = &c.client;
        let (conv, names) = resolve::conversation(client, spec).await?;
        let mentions = mentions(client, conv.conversation_id, &text).await?;
        let req = v1::SendMessage {
            conversation_id: conv.conversation_id,
            client_msg_id: client_msg_id.clone(),
            text: text.clone(),
            reply_to_message_id: reply_to.unwrap_or(0),
            mention_user_ids: mentions,
            attachments: attachments.clone(),
            written_at_ms,
        };
        match client.request(v1::client_frame::Request::SendMessage(req)).await {
            Ok(v1::response::Result::SendMessage(r)) => {
                client.close().await;
                if json {
                    let media: Vec<&str> = attachments.iter().map(|a| a.media_id.as_str()).collect();
                    println!(
                        "{}",
                        json!({"conversation_id": conv.conversation_id, "message_id": r.message_id, "seq": r.seq,
                               "created_at_ms": r.created_at_ms, "client_msg_id": client_msg_id, "duplicate": r.duplicate,
                               "media_ids": media})
                    );
                } else {
                    let files = match attachments.len() {
                        0 => String::new(),
                        n => format!(" with {}", plural(n as u64, "file", "files")),
                    };
                    let to = names.conversation(conv.conversation_id);
                    println!("sent #{}{files} to {to} (seq {})", r.message_id, r.seq);
                }
                return Ok(());
            }
            Ok(other) => bail!("unexpected answer {other:?}"),
            Err(e @ (ClientError::Closed(_) | ClientError::Timeout | ClientError::Transport(_))) if attempt < 3 => {
                eprintln!("confab: {e}; sending again");
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            }
            Err(e) => return Err(e).context("send"),
        }
    }
}
