//! `confab tail`: the network actor's stream, printed. Entries come exactly once and in order
//! per conversation, across reconnects (the actor syncs). Lines wait until the names they show
//! are known, so the output stays in order.

use std::collections::{HashSet, VecDeque};

use anyhow::bail;
use confab_protocol::v1::{self, client_frame::Request, conversation_event::Body, response::Result as R};
use serde_json::json;

use super::output::{Names, entry_json, entry_line, presence_name, user_entry_json};
use super::resolve;
use crate::config::Settings;
use crate::net::{self, Command, ConnState, NetHandle, NetOptions, Tag, Update};
use crate::session;

struct Tail {
    names: Names,
    filter: Option<u64>,
    json: bool,
    mark_read: bool,
    me: u64,
    queue: VecDeque<Update>,
    in_flight: u32,
    asked_users: HashSet<u64>,
    asked_convs: HashSet<u64>,
    net: NetHandle,
}

pub async fn tail(settings: Settings, conversation: Option<String>, mark_read: bool, json: bool) -> anyhow::Result<()> {
    // Fail fast when not signed in or the conversation is unknown.
    let c = session::connect(&settings).await?;
    let filter = match &conversation {
        Some(spec) => Some(resolve::conversation(&c.client, spec).await?.0.conversation_id),
        None => None,
    };
    c.client.close().await;
    let (net, mut updates) = net::spawn(settings, NetOptions { persist_outbox: false, ..Default::default() });
    let mut t = Tail {
        names: Names::default(),
        filter,
        json,
        mark_read,
        me: 0,
        queue: VecDeque::new(),
        in_flight: 0,
        asked_users: HashSet::new(),
        asked_convs: HashSet::new(),
        net,
    };
    loop {
        tokio::select! {
            u = updates.recv() => {
                let Some(u) = u else { bail!("the network task stopped") };
                t.on_update(u)?;
            }
            _ = tokio::signal::ctrl_c() => {
                let _ = t.net.send(Command::Shutdown).await;
                return Ok(());
            }
        }
    }
}

impl Tail {
    fn on_update(&mut self, u: Update) -> anyhow::Result<()> {
        match u {
            Update::Connection(state) => self.connection(&state)?,
            Update::Snapshot(s) => {
                self.me = s.me.user_id;
                self.names.users.insert(s.me.user_id, s.me.username.clone());
                self.names.add_users(&s.users);
                for c in &s.conversations {
                    self.names.add_conversation(c);
                }
            }
            Update::Reply { tag: Tag::Users | Tag::Refresh, result } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                match result {
                    Ok(R::GetUsers(r)) => self.names.add_users(&r.users),
                    Ok(R::GetConversation(c)) => {
                        if c.peer_user_id != 0 && !self.names.users.contains_key(&c.peer_user_id) {
                            self.ask_users(vec![c.peer_user_id]);
                        }
                        self.names.add_conversation(&c);
                    }
                    _ => {}
                }
            }
            Update::Entry(_)
            | Update::UserEntry(_)
            | Update::Receipt(_)
            | Update::Typing(_)
            | Update::Presence(_)
            | Update::Notification(_) => self.queue.push_back(u),
            _ => {}
        }
        self.flush();
        Ok(())
    }

    fn connection(&self, state: &ConnState) -> anyhow::Result<()> {
        let (name, detail) = match state {
            ConnState::Connecting { attempt } => ("connecting", format!("attempt {}", attempt + 1)),
            ConnState::Online => ("online", String::new()),
            ConnState::Offline { reason, retry_in } => {
                ("offline", format!("{reason}; reconnecting in {:.1} s", retry_in.as_secs_f64()))
            }
            ConnState::SignedOut(reason) => bail!("{reason}"),
        };
        if self.json {
            println!("{}", json!({"type": "connection", "state": name, "detail": detail}));
        } else if name != "connecting" {
            eprintln!("-- {name} {detail}");
        }
        Ok(())
    }

    fn conv_of(u: &Update) -> Option<u64> {
        match u {
            Update::Entry(e) => Some(e.conversation_id),
            Update::Receipt(r) => Some(r.conversation_id),
            Update::Typing(t) => Some(t.conversation_id),
            _ => None,
        }
    }

    /// Users and conversations an update shows by name.
    fn needs(u: &Update) -> (Vec<u64>, Vec<u64>) {
        let mut users = Vec::new();
        match u {
            Update::Entry(e) => {
                users.push(e.actor_id);
                match &e.body {
                    Some(Body::MessagePosted(m)) => users.push(m.sender_id),
                    Some(Body::MembersAdded(m)) => users.extend(&m.user_ids),
                    Some(Body::MemberJoined(m)) => users.push(m.user_id),
                    Some(Body::MemberLeft(m)) => users.push(m.user_id),
                    Some(Body::MemberRemoved(m)) => users.push(m.user_id),
                    _ => {}
                }
            }
            Update::Receipt(r) => users.push(r.user_id),
            Update::Typing(t) => users.push(t.user_id),
            Update::Presence(p) => users.push(p.user_id),
            _ => {}
        }
        (users, Self::conv_of(u).into_iter().collect())
    }

    fn ask_users(&mut self, ids: Vec<u64>) {
        let ids: Vec<u64> = ids.into_iter().filter(|id| self.asked_users.insert(*id)).collect();
        if !ids.is_empty() {
            let req = Request::GetUsers(v1::GetUsers { user_ids: ids });
            if self.net.try_send(Command::Request { tag: Tag::Users, request: req }).is_ok() {
                self.in_flight += 1;
            }
        }
    }

    fn flush(&mut self) {
        while let Some(front) = self.queue.front() {
            if self.filter.is_some() && Self::conv_of(front).is_some_and(|c| Some(c) != self.filter) {
                self.queue.pop_front();
                continue;
            }
            let (users, convs) = Self::needs(front);
            let users: Vec<u64> = users.into_iter().filter(|u| *u != 0 && !self.names.users.contains_key(u)).collect();
            let convs: Vec<u64> = convs.into_iter().filter(|c| !self.names.conversations.contains_key(c)).collect();
            self.ask_users(users.clone());
            for c in &convs {
                if self.asked_convs.insert(*c) {
                    let req = Request::GetConversation(v1::GetConversation { conversation_id: *c });
                    if self.net.try_send(Command::Request { tag: Tag::Refresh, request: req }).is_ok() {
                        self.in_flight += 1;
                    }
                }
            }
            if (!users.is_empty() || !convs.is_empty()) && self.in_flight > 0 {
                return;
            }
            let u = self.queue.pop_front().expect("front");
            self.print(&u);
        }
    }

    fn print(&self, u: &Update) {
        match u {
            Update::Entry(e) => {
                if self.json {
                    println!("{}", entry_json(e, &self.names));
                } else {
                    println!("{}", entry_line(e, &self.names));
                }
                if self.mark_read
                    && let Some(Body::MessagePosted(m)) = &e.body
                    && m.sender_id != self.me
                {
                    let req = Request::MarkRead(v1::MarkRead { conversation_id: e.conversation_id, seq: e.seq });
                    let _ = self.net.try_send(Command::Request { tag: Tag::Quiet, request: req });
                }
            }
            Update::UserEntry(x) if self.json => println!("{}", user_entry_json(x)),
            Update::Receipt(r) => {
                let (conv, who) = (self.names.conversation(r.conversation_id), self.names.user(r.user_id));
                if self.json {
                    println!(
                        "{}",
                        json!({"type": "receipt", "conversation_id": r.conversation_id, "conversation": conv,
                               "user_id": r.user_id, "user": who, "delivered_seq": r.delivered_seq, "read_seq": r.read_seq})
                    );
                } else {
                    println!("[{conv}] {who}: delivered up to seq {}, read up to seq {}", r.delivered_seq, r.read_seq);
                }
            }
            Update::Typing(t) if self.json => println!(
                "{}",
                json!({"type": "typing", "conversation_id": t.conversation_id, "user_id": t.user_id,
                       "user": self.names.user(t.user_id), "typing": t.typing})
            ),
            Update::Presence(p) if self.json => println!(
                "{}",
                json!({"type": "presence", "user_id": p.user_id, "user": self.names.user(p.user_id),
                       "state": presence_name(p.state()), "last_seen_ms": p.last_seen_ms})
            ),
            Update::Notification(n) if self.json => println!(
                "{}",
                json!({"type": "notification", "notification_id": n.notification_id, "kind": n.kind().as_str_name(),
                       "conversation_id": n.conversation_id, "message_id": n.message_id, "actor_id": n.actor_id})
            ),
            _ => {}
        }
    }
}
