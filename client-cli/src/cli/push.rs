//! `confab push …`: this account's push targets and deliveries, and its notification settings
//! (docs/protocol.md §24).

use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use confab_protocol::client::Client;
use confab_protocol::v1;
use serde_json::json;

use super::output::datetime;
use super::resolve;
use crate::config::Settings;
use crate::session;

#[derive(Debug, Subcommand)]
pub enum PushCommand {
    /// Push targets: this device's, or with --all every device's of the account.
    Targets {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// The account's push deliveries, newest first: state, attempts, the provider's answer.
    Deliveries {
        /// At most this many (1 to 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show the notification settings, or change the account's level and preview.
    Settings {
        /// all, dms (direct messages and mentions), mentions, none.
        #[arg(long, value_enum)]
        level: Option<Level>,
        /// Whether pushes show the sender and the text (never while the server encrypts at rest).
        #[arg(long)]
        preview: Option<bool>,
        #[arg(long)]
        json: bool,
    },
    /// Give one conversation its own level (mute it: --level none), optionally for a while.
    Mute {
        conversation: String,
        #[arg(long, value_enum, default_value_t = Level::None)]
        level: Level,
        /// For how long, e.g. 8h (default: until unmuted).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
    },
    /// Back to the account's level in a conversation.
    Unmute { conversation: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Level {
    All,
    Dms,
    Mentions,
    None,
}

impl Level {
    fn wire(self) -> v1::PushLevel {
        match self {
            Self::All => v1::PushLevel::All,
            Self::Dms => v1::PushLevel::DirectAndMentions,
            Self::Mentions => v1::PushLevel::Mentions,
            Self::None => v1::PushLevel::None,
        }
    }
}

fn level_name(v: i32) -> &'static str {
    match v1::PushLevel::try_from(v).unwrap_or_default() {
        v1::PushLevel::Unspecified => "account",
        v1::PushLevel::All => "all",
        v1::PushLevel::DirectAndMentions => "dms",
        v1::PushLevel::Mentions => "mentions",
        v1::PushLevel::None => "none",
    }
}

fn provider_name(v: i32) -> &'static str {
    match v1::PushProvider::try_from(v).unwrap_or_default() {
        v1::PushProvider::Unspecified => "?",
        v1::PushProvider::Webpush => "webpush",
        v1::PushProvider::Fcm => "fcm",
        v1::PushProvider::Apns => "apns",
        v1::PushProvider::Expo => "expo",
    }
}

fn state_name(v: i32) -> &'static str {
    match v1::PushDeliveryState::try_from(v).unwrap_or_default() {
        v1::PushDeliveryState::Unspecified => "?",
        v1::PushDeliveryState::Queued => "queued",
        v1::PushDeliveryState::Sent => "sent",
        v1::PushDeliveryState::Failed => "failed",
        v1::PushDeliveryState::Dropped => "dropped",
        v1::PushDeliveryState::Expired => "expired",
    }
}

pub async fn run(settings: &Settings, command: PushCommand) -> anyhow::Result<()> {
    let c = session::connect(settings).await?;
    let result = execute(&c.client, command).await;
    c.client.close().await;
    result
}

async fn execute(client: &Client, command: PushCommand) -> anyhow::Result<()> {
    match command {
        PushCommand::Targets { all, json } => {
            let r = client.list_push_targets(all).await?;
            for t in &r.targets {
                let state = if t.enabled { "enabled".to_string() } else { format!("disabled: {}", t.disabled_reason) };
                if json {
                    let v = json!({"target_id": t.target_id, "provider": provider_name(t.provider), "token": t.token,
                        "app_id": t.app_id, "voip": t.voip, "session_id": t.session_id, "enabled": t.enabled,
                        "disabled_reason": t.disabled_reason, "created_at_ms": t.created_at_ms});
                    println!("{v}");
                } else {
                    println!(
                        "{:>6}  {:<8} {}{}  {}",
                        t.target_id,
                        provider_name(t.provider),
                        t.token,
                        if t.voip { " (voip)" } else { "" },
                        state
                    );
                }
            }
            if !json && r.targets.is_empty() {
                let names: Vec<&str> = r.providers.iter().map(|p| provider_name(*p)).collect();
                println!("no push targets (this server sends through: {})", names.join(", "));
            }
        }
        PushCommand::Deliveries { limit, json } => {
            let r = client.list_push_deliveries(0, limit.clamp(1, 100)).await?;
            for d in &r.deliveries {
                if json {
                    let v = json!({"delivery_id": d.delivery_id, "target_id": d.target_id, "provider": provider_name(d.provider),
                        "conversation_id": d.conversation_id, "seq": d.seq, "call_id": d.call_id, "state": state_name(d.state),
                        "attempts": d.attempts, "provider_status": d.provider_status, "detail": d.detail,
                        "created_at_ms": d.created_at_ms, "sent_at_ms": d.sent_at_ms});
                    println!("{v}");
                } else {
                    println!(
                        "{}  {:<7} {:<8} conv {} seq {}  attempts {}  {} {}",
                        datetime(d.created_at_ms),
                        state_name(d.state),
                        provider_name(d.provider),
                        d.conversation_id,
                        d.seq,
                        d.attempts,
                        d.provider_status,
                        d.detail
                    );
                }
            }
        }
        PushCommand::Settings { level, preview, json } => {
            let s = if level.is_some() || preview.is_some() {
                let r = v1::SetPushSettings { level: level.map_or(0, |l| l.wire() as i32), preview };
                client.set_push_settings(r).await?
            } else {
                client.push_settings().await?
            };
            if json {
                let convs: Vec<_> = s
                    .conversations
                    .iter()
                    .map(|c| json!({"conversation_id": c.conversation_id, "level": level_name(c.level), "until_ms": c.until_ms}))
                    .collect();
                println!("{}", json!({"level": level_name(s.level), "preview": s.preview, "conversations": convs}));
            } else {
                println!("level {}  preview {}", level_name(s.level), if s.preview { "on" } else { "off" });
                for c in &s.conversations {
                    let until =
                        if c.until_ms == 0 { String::new() } else { format!(" until {}", datetime(c.until_ms)) };
                    println!("  conversation {}: {}{until}", c.conversation_id, level_name(c.level));
                }
            }
        }
        PushCommand::Mute { conversation, level, duration } => {
            let (conv, _) = resolve::conversation(client, &conversation).await?;
            let until_ms = duration.map_or(0, |d| session::now_ms() + d.as_millis() as u64);
            let r = v1::SetConversationPushSettings {
                conversation_id: conv.conversation_id,
                level: level.wire() as i32,
                until_ms,
            };
            client.set_conversation_push_settings(r).await?;
            println!("{}: {}", conversation, level_name(level.wire() as i32));
        }
        PushCommand::Unmute { conversation } => {
            let (conv, _) = resolve::conversation(client, &conversation).await?;
            let r = v1::SetConversationPushSettings { conversation_id: conv.conversation_id, level: 0, until_ms: 0 };
            client.set_conversation_push_settings(r).await?;
            println!("{conversation}: the account's level");
        }
    }
    Ok(())
}
