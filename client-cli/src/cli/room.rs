//! `confab room …`: meeting rooms this account owns or moderates, and their invite links
//! (docs/protocol.md §25).

use std::time::Duration;

use anyhow::bail;
use clap::{Subcommand, ValueEnum};
use confab_protocol::client::Client;
use confab_protocol::frames::now_ms;
use confab_protocol::v1::{self, client_frame::Request, response};
use serde_json::json;

use super::output::datetime;
use crate::config::Settings;
use crate::session;

#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// Create a meeting room; you are its owner.
    Create {
        /// The room's name (1 to 100 characters).
        name: String,
        /// Guests and speakers wait in a lobby until a moderator admits them.
        #[arg(long)]
        lobby: bool,
        /// Participants publishing at once (default: the server's limit).
        #[arg(long)]
        max_publishers: Option<u32>,
        /// Participants at once (default: the server's limit).
        #[arg(long)]
        max_participants: Option<u32>,
        /// Close the room after this, e.g. 2h (default: never).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
        /// Close the room once nobody was in it this long, e.g. 10m (default: the server's).
        #[arg(long, value_parser = humantime::parse_duration)]
        empty_timeout: Option<Duration>,
        #[arg(long)]
        json: bool,
    },
    /// The rooms you own or moderate, newest first.
    List {
        /// Closed rooms too.
        #[arg(long)]
        closed: bool,
        #[arg(long)]
        json: bool,
    },
    /// A room's settings, who is in its call and who waits in its lobby.
    Show {
        room: String,
        #[arg(long)]
        json: bool,
    },
    /// An invite link for guests, speakers or moderators.
    Invite {
        room: String,
        #[arg(long, value_enum, default_value_t = Role::Speaker)]
        role: Role,
        /// How many may use it (default: unlimited).
        #[arg(long)]
        max_uses: Option<u32>,
        /// How long it works, e.g. 1d (default: the room's expiry, or 7 days; at most 30 days).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an invite: its link stops working and its guests leave.
    Revoke { room: String, invite: String },
    /// Close a room now: everyone in it is told, the call ends.
    Close { room: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Guest,
    Speaker,
    Moderator,
}

fn role_name(v: i32) -> &'static str {
    match v1::RoomRole::try_from(v).unwrap_or_default() {
        v1::RoomRole::Unspecified => "-",
        v1::RoomRole::Guest => "guest",
        v1::RoomRole::Speaker => "speaker",
        v1::RoomRole::Moderator => "moderator",
        v1::RoomRole::Owner => "owner",
    }
}

fn ms(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The page that opens a meeting link: the server's HTTP address (from its WebSocket URL).
fn link(server: &str, room: &str, token: &str) -> String {
    let base = server
        .strip_suffix("/v1/ws")
        .unwrap_or(server)
        .replacen("wss://", "https://", 1)
        .replacen("ws://", "http://", 1);
    format!("{base}/call/{room}#token={token}")
}

fn room_json(r: &v1::Room) -> serde_json::Value {
    json!({"room_id": r.room_id, "name": r.name, "owner_id": r.owner_id, "lobby": r.lobby, "locked": r.locked,
        "max_publishers": r.max_publishers, "max_participants": r.max_participants,
        "expires_at_ms": r.expires_at_ms, "empty_timeout_ms": r.empty_timeout_ms,
        "moderator_ids": r.moderator_ids, "created_at_ms": r.created_at_ms, "closed_at_ms": r.closed_at_ms})
}

fn room_line(r: &v1::Room) -> String {
    let state = if r.closed_at_ms > 0 { format!("closed {}", datetime(r.closed_at_ms)) } else { "open".into() };
    let lobby = if r.lobby { "  lobby" } else { "" };
    format!("{}  {}  {state}{lobby}", r.room_id, r.name)
}

pub async fn run(settings: &Settings, command: RoomCommand) -> anyhow::Result<()> {
    let c = session::connect(settings).await?;
    let result = execute(&c.client, &settings.server, command).await;
    c.client.close().await;
    result
}

async fn execute(client: &Client, server: &str, command: RoomCommand) -> anyhow::Result<()> {
    match command {
        RoomCommand::Create { name, lobby, max_publishers, max_participants, expires_in, empty_timeout, json } => {
            let r = v1::CreateRoom {
                name,
                lobby,
                max_publishers: max_publishers.unwrap_or(0),
                max_participants: max_participants.unwrap_or(0),
                empty_timeout_ms: ms(empty_timeout),
                expires_at_ms: expires_in.map_or(0, |d| now_ms() + ms(Some(d))),
                moderator_ids: Vec::new(),
            };
            let response::Result::CreateRoom(room) = client.request(Request::CreateRoom(r)).await? else {
                bail!("unexpected answer to CreateRoom");
            };
            if json {
                println!("{}", room_json(&room));
            } else {
                println!("{}", room_line(&room));
            }
        }
        RoomCommand::List { closed, json } => {
            let r = v1::ListRooms { include_closed: closed };
            let response::Result::ListRooms(l) = client.request(Request::ListRooms(r)).await? else {
                bail!("unexpected answer to ListRooms");
            };
            for room in &l.rooms {
                if json {
                    println!("{}", room_json(room));
                } else {
                    println!("{}", room_line(room));
                }
            }
            if l.rooms.is_empty() && !json {
                println!("no rooms");
            }
        }
        RoomCommand::Show { room, json } => {
            let response::Result::GetRoom(g) = client.request(Request::GetRoom(v1::GetRoom { room_id: room })).await?
            else {
                bail!("unexpected answer to GetRoom");
            };
            let r = g.room.unwrap_or_default();
            if json {
                let people: Vec<_> = g
                    .participants
                    .iter()
                    .map(|p| {
                        json!({"participant_id": p.participant_id, "user_id": p.user_id, "display_name": p.display_name,
                        "role": role_name(p.role), "publishing": p.publishing})
                    })
                    .collect();
                let knocks: Vec<_> = g
                    .knocks
                    .iter()
                    .map(|k| json!({"participant_id": k.participant_id, "display_name": k.display_name, "role": role_name(k.role)}))
                    .collect();
                println!(
                    "{}",
                    json!({"room": room_json(&r), "role": role_name(g.role), "participants": people, "knocks": knocks})
                );
            } else {
                println!("{}  (you: {})", room_line(&r), role_name(g.role));
                for p in &g.participants {
                    let publishing = if p.publishing { "  publishing" } else { "" };
                    println!("  in call  {}  {}{publishing}", p.display_name, role_name(p.role));
                }
                for k in &g.knocks {
                    println!("  knocks   {}  {}  ({})", k.display_name, role_name(k.role), k.participant_id);
                }
            }
        }
        RoomCommand::Invite { room, role, max_uses, expires_in, json } => {
            let role = match role {
                Role::Guest => v1::RoomRole::Guest,
                Role::Speaker => v1::RoomRole::Speaker,
                Role::Moderator => v1::RoomRole::Moderator,
            };
            let r = v1::CreateRoomInvite {
                room_id: room.clone(),
                role: role as i32,
                max_uses: max_uses.unwrap_or(0),
                expires_at_ms: expires_in.map_or(0, |d| now_ms() + ms(Some(d))),
            };
            let response::Result::CreateRoomInvite(i) = client.request(Request::CreateRoomInvite(r)).await? else {
                bail!("unexpected answer to CreateRoomInvite");
            };
            let url = link(server, &room, &i.token);
            if json {
                println!(
                    "{}",
                    json!({"invite_id": i.invite_id, "room_id": i.room_id, "role": role_name(i.role), "token": i.token,
                        "link": url, "expires_at_ms": i.expires_at_ms, "max_uses": i.max_uses})
                );
            } else {
                println!("{url}");
                println!("invite {} for a {} until {}", i.invite_id, role_name(i.role), datetime(i.expires_at_ms));
            }
        }
        RoomCommand::Revoke { room, invite } => {
            let r = v1::RevokeRoomInvite { room_id: room, invite_id: invite };
            client.request(Request::RevokeRoomInvite(r)).await?;
            println!("revoked");
        }
        RoomCommand::Close { room } => {
            client.request(Request::CloseRoom(v1::CloseRoom { room_id: room })).await?;
            println!("closed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::link;

    #[test]
    fn links_open_the_servers_meeting_page() {
        assert_eq!(link("ws://127.0.0.1:7600/v1/ws", "ab", "t"), "http://127.0.0.1:7600/call/ab#token=t");
        assert_eq!(link("wss://chat.example/v1/ws", "ab", "t"), "https://chat.example/call/ab#token=t");
    }
}
