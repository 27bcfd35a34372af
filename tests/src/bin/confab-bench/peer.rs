//! The system under test, seen by the room and storm scenarios: Confab (over WebSocket or QUIC,
//! through the client library), the Socket.IO comparison peer or the Bun comparison peer
//! (through their adapters). Each offers
//! the same three things: sign a member in, make a room of members, send a message to a room —
//! and reports every message delivered to a member to one callback. Confab may be several nodes
//! of one cluster: members are spread over their URLs by a slot number (round robin).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use confab_protocol::client::{Client, ClientError, ConnectOptions, Trust};
use confab_protocol::v1::{self, ErrorCode, client_frame::Request, conversation_event::Body, event, response};

use crate::bun::BunClient;
use crate::socketio::SioClient;

/// Called with the text of every message delivered to a member.
pub type OnDelivery = Arc<dyn Fn(&str) + Send + Sync>;

/// Where the traffic goes.
#[derive(Clone)]
pub enum Peer {
    /// One URL per node; a member's slot picks its node.
    Confab {
        urls: Vec<String>,
        /// Boxed: the options are far larger than the other variant.
        options: Box<ConnectOptions>,
    },
    SocketIo {
        addr: String,
    },
    /// The Bun relay (tests/bun-peer), or the ceiling relay (`login` false: it speaks the same
    /// protocol and takes any token).
    Bun {
        addr: String,
        login: bool,
    },
}

/// A signed-in member, with its deliveries flowing to the callback.
pub enum Member {
    Confab { client: Client, id: u64, _receiver: tokio::task::JoinHandle<()> },
    SocketIo { client: SioClient, name: String },
    Bun { client: BunClient, name: String },
}

/// A room: a Confab group conversation or a Socket.IO room.
#[derive(Clone, Debug)]
pub enum Room {
    Confab(u64),
    SocketIo(String),
    Bun(String),
}

pub fn random_name(tag: &str) -> String {
    let mut r = [0u8; 6];
    let _ = getrandom::fill(&mut r);
    format!("bench{tag}{}", hex::encode(r))
}

/// Registers `name` on a Confab connection, waiting out RATE_LIMITED answers.
pub async fn register(client: &Client, name: &str) -> anyhow::Result<v1::AuthResult> {
    loop {
        let req = v1::Register {
            username: name.to_owned(),
            password: "bench password".into(),
            device_name: "bench".into(),
            ..Default::default()
        };
        match client.register(req).await {
            Ok(a) => return Ok(a),
            Err(ClientError::Server(e)) if e.code() == ErrorCode::RateLimited => {
                tokio::time::sleep(Duration::from_millis(e.retry_after_ms.max(1))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Creates a group of `members` (any number: the first 256 at creation, the rest by AddMembers).
pub async fn create_group(client: &Client, title: &str, members: &[u64]) -> anyhow::Result<u64> {
    let mut chunks = members.chunks(256);
    let create = v1::CreateConversation {
        kind: v1::ConversationKind::Group as i32,
        title: title.into(),
        member_ids: chunks.next().unwrap_or_default().to_vec(),
        ..Default::default()
    };
    let conv = match client.request(Request::CreateConversation(create)).await? {
        response::Result::CreateConversation(c) => c.conversation_id,
        other => bail!("unexpected {other:?}"),
    };
    for chunk in chunks {
        client.request(Request::AddMembers(v1::AddMembers { conversation_id: conv, user_ids: chunk.to_vec() })).await?;
    }
    Ok(conv)
}

impl Peer {
    /// `ws://…/v1/ws` or `quic://…` for Confab; `socketio://HOST:PORT` or `bun://HOST:PORT` for
    /// the comparison peers, `ceiling://HOST:PORT` for the ceiling relay (`ceiling-relay`).
    pub fn from_url(url: &str, insecure: bool) -> Self {
        Self::from_urls(&[url.to_owned()], insecure).expect("one URL")
    }

    /// As [`Peer::from_url`], with one URL per node of a Confab cluster (the same transport on
    /// each); the Socket.IO peer takes exactly one.
    pub fn from_urls(urls: &[String], insecure: bool) -> anyhow::Result<Self> {
        let first = urls.first().context("no URL")?;
        if let Some(addr) = first.strip_prefix("socketio://") {
            anyhow::ensure!(urls.len() == 1, "the Socket.IO peer is one process: give one --url");
            return Ok(Peer::SocketIo { addr: addr.trim_end_matches('/').to_owned() });
        }
        if let Some(addr) = first.strip_prefix("bun://") {
            anyhow::ensure!(urls.len() == 1, "the Bun peer is one process: give one --url");
            return Ok(Peer::Bun { addr: addr.trim_end_matches('/').to_owned(), login: true });
        }
        if let Some(addr) = first.strip_prefix("ceiling://") {
            anyhow::ensure!(urls.len() == 1, "the ceiling relay is one process: give one --url");
            return Ok(Peer::Bun { addr: addr.trim_end_matches('/').to_owned(), login: false });
        }
        let scheme = |u: &str| u.split("://").next().unwrap_or_default().to_owned();
        anyhow::ensure!(
            urls.iter().all(|u| scheme(u) == scheme(first)),
            "several --url must all be of one transport: {urls:?}"
        );
        let mut options = ConnectOptions { client_name: "confab-bench".into(), ..Default::default() };
        options.transport.trust = if insecure { Trust::Insecure } else { Trust::SystemRoots };
        options.request_timeout = Duration::from_secs(30);
        Ok(Peer::Confab { urls: urls.to_vec(), options: Box::new(options) })
    }

    /// How many nodes members are spread over.
    pub fn nodes(&self) -> usize {
        match self {
            Peer::Confab { urls, .. } => urls.len(),
            Peer::SocketIo { .. } | Peer::Bun { .. } => 1,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Peer::Confab { urls, .. } if urls[0].starts_with("quic") => "confab-quic",
            Peer::Confab { .. } => "confab-ws",
            Peer::SocketIo { .. } => "socketio",
            Peer::Bun { login: true, .. } => "bun",
            Peer::Bun { login: false, .. } => "ceiling",
        }
    }

    /// A fresh account (Confab: Register, waiting out RATE_LIMITED; Socket.IO: login), its
    /// connection (Confab: to node `slot` modulo the nodes), and its deliveries flowing to `on`.
    pub async fn member(&self, slot: usize, tag: &str, on: OnDelivery) -> anyhow::Result<Member> {
        let name = random_name(tag);
        match self {
            Peer::Confab { urls, options } => {
                let url = &urls[slot % urls.len()];
                let (client, mut events) = Client::connect(url, (**options).clone()).await?;
                let id = register(&client, &name).await?.me.context("AuthResult without me")?.user_id;
                let receiver = tokio::spawn(async move {
                    while let Some(ev) = events.recv().await {
                        if let Some(event::Event::ConversationEvent(ce)) = ev.event
                            && let Some(Body::MessagePosted(m)) = ce.body
                        {
                            on(&m.text);
                        }
                    }
                });
                Ok(Member::Confab { client, id, _receiver: receiver })
            }
            Peer::SocketIo { addr } => {
                let token = crate::socketio::login(addr, &name).await?;
                let client = SioClient::connect(
                    addr,
                    &token,
                    Box::new(move |ev, arg| {
                        if ev == "receive_message"
                            && let Some(t) = arg["text"].as_str()
                        {
                            on(t);
                        }
                    }),
                )
                .await?;
                Ok(Member::SocketIo { client, name })
            }
            Peer::Bun { addr, login } => {
                let token = if *login { crate::socketio::login(addr, &name).await? } else { name.clone() };
                let client = BunClient::connect(addr, &token, Box::new(move |t| on(t))).await?;
                Ok(Member::Bun { client, name })
            }
        }
    }

    /// A credential for the storm to reuse: a Confab access token or a Socket.IO JWT.
    pub async fn credential(&self) -> anyhow::Result<String> {
        let name = random_name("storm");
        match self {
            Peer::Confab { urls, options } => {
                let (client, _events) = Client::connect(&urls[0], (**options).clone()).await?;
                Ok(register(&client, &name).await?.access_token)
            }
            Peer::SocketIo { addr } | Peer::Bun { addr, login: true } => crate::socketio::login(addr, &name).await,
            Peer::Bun { login: false, .. } => Ok(name),
        }
    }

    /// One storm iteration: connect, authenticate with `token` in the handshake, subscribe
    /// (Confab: one Sync; Socket.IO: join a room), close.
    pub async fn connect_auth_subscribe(&self, token: &str) -> anyhow::Result<()> {
        match self {
            Peer::Confab { urls, options } => {
                let mut o = (**options).clone();
                o.access_token = Some(token.to_owned());
                let (c, _events) = Client::connect(&urls[0], o).await?;
                c.request(Request::Sync(v1::Sync::default())).await?;
                c.close().await;
            }
            Peer::SocketIo { addr } => {
                let c = SioClient::connect(addr, token, Box::new(|_, _| {})).await?;
                let ack = c.emit_ack("join_room", "storm".into()).await?;
                anyhow::ensure!(ack["ok"] == true, "join_room refused: {ack}");
            }
            Peer::Bun { addr, .. } => {
                let c = BunClient::connect(addr, token, Box::new(|_| {})).await?;
                c.join("storm").await?;
            }
        }
        Ok(())
    }

    /// Makes a room of `members` (the first one creates it) and waits until all are in it.
    pub async fn room(&self, members: &[Member]) -> anyhow::Result<Room> {
        let owner = members.first().context("a room needs a member")?;
        match owner {
            Member::Confab { client, .. } => {
                let ids: Vec<u64> = members[1..]
                    .iter()
                    .map(|m| match m {
                        Member::Confab { id, .. } => Ok(*id),
                        Member::SocketIo { .. } | Member::Bun { .. } => bail!("mixed peers"),
                    })
                    .collect::<anyhow::Result<_>>()?;
                let conv = create_group(client, "bench room", &ids).await?;
                Ok(Room::Confab(conv))
            }
            Member::SocketIo { name, .. } => {
                let room = format!("room-{name}");
                for m in members {
                    let Member::SocketIo { client, .. } = m else { bail!("mixed peers") };
                    let ack = client.emit_ack("join_room", room.clone().into()).await?;
                    anyhow::ensure!(ack["ok"] == true, "join_room refused: {ack}");
                }
                Ok(Room::SocketIo(room))
            }
            Member::Bun { name, .. } => {
                let room = format!("room-{name}");
                for m in members {
                    let Member::Bun { client, .. } = m else { bail!("mixed peers") };
                    client.join(&room).await?;
                }
                Ok(Room::Bun(room))
            }
        }
    }
}

impl Member {
    /// Sends `text` to `room` and waits for the server's acknowledgement (Confab: after commit).
    pub async fn send(&self, room: &Room, client_msg_id: String, text: String) -> anyhow::Result<()> {
        match (self, room) {
            (Member::Confab { client, .. }, Room::Confab(conv)) => {
                let req = v1::SendMessage { conversation_id: *conv, client_msg_id, text, ..Default::default() };
                match client.request(Request::SendMessage(req)).await? {
                    response::Result::SendMessage(_) => Ok(()),
                    other => bail!("unexpected {other:?}"),
                }
            }
            (Member::SocketIo { client, .. }, Room::SocketIo(room)) => {
                let ack = client.emit_ack("send_message", serde_json::json!({ "room": room, "text": text })).await?;
                anyhow::ensure!(ack.get("id").is_some(), "send refused: {ack}");
                Ok(())
            }
            (Member::Bun { client, .. }, Room::Bun(room)) => client.send(room, &text).await.map(drop),
            _ => bail!("mixed peers"),
        }
    }

    /// Whether the server still holds the connection open.
    pub fn is_open(&self) -> bool {
        match self {
            Member::Confab { client, .. } => client.close_info().is_none(),
            Member::SocketIo { client, .. } => client.is_open(),
            Member::Bun { client, .. } => client.is_open(),
        }
    }
}
