//! The actor's loop: connect (signed in), bootstrap, catch up with Sync, then apply live events
//! and serve commands until the connection ends; then back off and start again.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use confab_protocol::client::{Client, ClientError, Events, unexpected};
use confab_protocol::v1::{self, ErrorCode, client_frame::Request, event, response::Result as R, user_update};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::sync::{Live, SyncState};
use super::{Command, ConnState, NetOptions, Outgoing, Snapshot, Tag, Update, jitter};
use crate::config::Settings;
use crate::creds::Credentials;
use crate::session::{self, REFRESH_MARGIN_MS, now_ms};

/// Why the online loop returned.
enum Exit {
    Shutdown,
    Lost { reason: String, retry_after: Option<Duration> },
    SignedOut(String),
}

/// How a wait while offline ended.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    /// The delay passed.
    Elapsed,
    /// [`Command::Reconnect`]: try now, from the first backoff step.
    Reconnect,
    Shutdown,
}

/// An outbox entry: sent again with the same id until the server answers. Entries go one at a
/// time, in order.
#[derive(Debug)]
struct Pending {
    msg: Outgoing,
    in_flight: bool,
}

struct Actor {
    settings: Settings,
    opts: NetOptions,
    commands: mpsc::Receiver<Command>,
    up: mpsc::Sender<Update>,
    sync: SyncState,
    bootstrapped: bool,
    /// In the order queued.
    outbox: BTreeMap<u64, Pending>,
    next_outbox: u64,
}

pub(super) async fn run(
    settings: Settings,
    opts: NetOptions,
    commands: mpsc::Receiver<Command>,
    up: mpsc::Sender<Update>,
) {
    let mut a = Actor {
        settings,
        opts,
        commands,
        up,
        sync: SyncState::default(),
        bootstrapped: false,
        outbox: BTreeMap::new(),
        next_outbox: 0,
    };
    if a.opts.persist_outbox {
        for m in load_outbox(&a.settings) {
            a.queue(m.clone());
            // Shown as pending from the start, before any connection (a cached view has them).
            if !a.emit(Update::Queued(m)).await {
                return;
            }
        }
    }
    a.main().await;
}

/// The profile's file of unacknowledged sends.
const OUTBOX_FILE: &str = "outbox.json";

fn outbox_path(settings: &Settings) -> std::path::PathBuf {
    settings.profile_dir.join(OUTBOX_FILE)
}

/// Deletes the profile's outbox (signing out: its messages are the account's); returns how many
/// messages it held.
pub fn forget_outbox(settings: &Settings) -> anyhow::Result<usize> {
    let n = load_outbox(settings).len();
    match std::fs::remove_file(outbox_path(settings)) {
        Ok(()) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(anyhow::Error::from(e).context("removing the outbox")),
    }
}

/// Messages left unsent by an earlier run.
fn load_outbox(settings: &Settings) -> Vec<Outgoing> {
    std::fs::read_to_string(outbox_path(settings)).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default()
}

/// Whether a failed send may succeed when sent again.
fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Server(err) => matches!(
            err.code(),
            ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::RateLimited | ErrorCode::Unauthenticated
        ),
        _ => true,
    }
}

fn describe(e: &ClientError) -> String {
    match e {
        ClientError::Server(err) => err.message.clone(),
        other => other.to_string(),
    }
}

impl Actor {
    async fn emit(&self, u: Update) -> bool {
        self.up.send(u).await.is_ok()
    }

    async fn main(&mut self) {
        let mut attempt: u32 = 0;
        loop {
            if !self.emit(Update::Connection(ConnState::Connecting { attempt })).await {
                return;
            }
            let connected = tokio::time::timeout(Duration::from_secs(30), session::connect(&self.settings)).await;
            let exit = match connected {
                Err(_) => Exit::Lost { reason: "connect timed out".into(), retry_after: None },
                Ok(Err(e)) if session::is_auth_error(&e) => Exit::SignedOut(format!("{e:#}")),
                Ok(Err(e)) => Exit::Lost { reason: format!("{e:#}"), retry_after: None },
                Ok(Ok(c)) => {
                    attempt = 0;
                    self.online(c.client, c.events, c.creds).await
                }
            };
            let delay = match exit {
                Exit::Shutdown => return,
                Exit::SignedOut(reason) => {
                    let _ = self.emit(Update::Connection(ConnState::SignedOut(reason))).await;
                    while self.idle(None).await == Wake::Reconnect {}
                    return;
                }
                Exit::Lost { reason, retry_after } => {
                    attempt = attempt.saturating_add(1);
                    let base = self.opts.min_backoff.as_secs_f64() * 2f64.powi(attempt.min(16) as i32 - 1);
                    let backoff = base.min(self.opts.max_backoff.as_secs_f64());
                    let d = retry_after.unwrap_or_default().as_secs_f64().max(backoff);
                    let d = Duration::from_secs_f64(d * (0.75 + 0.5 * jitter()));
                    if !self.emit(Update::Connection(ConnState::Offline { reason, retry_in: d })).await {
                        return;
                    }
                    d
                }
            };
            match self.idle(Some(delay)).await {
                Wake::Elapsed => {}
                Wake::Reconnect => attempt = 0,
                Wake::Shutdown => return,
            }
        }
    }

    /// Serves commands while offline for `delay` (forever when `None`: signed out, where the
    /// caller ignores `Reconnect` and waits again); says how the wait ended.
    async fn idle(&mut self, delay: Option<Duration>) -> Wake {
        let sleep = async {
            match delay {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return Wake::Elapsed,
                cmd = self.commands.recv() => match cmd {
                    None | Some(Command::Shutdown) => return Wake::Shutdown,
                    Some(Command::Reconnect) => return Wake::Reconnect,
                    Some(Command::Send(m)) => self.queue(m),
                    Some(Command::Request { tag, .. }) => {
                        let _ = self.emit(Update::Reply { tag, result: Err("offline: not connected".into()) }).await;
                    }
                    Some(Command::History { .. }) => {}
                    Some(Command::Transfer(t)) => {
                        let _ = self.emit(Update::TransferDone { id: t.id, result: Err("offline: not connected".into()) }).await;
                    }
                },
            }
        }
    }

    fn queue(&mut self, msg: Outgoing) {
        self.next_outbox += 1;
        self.outbox.insert(self.next_outbox, Pending { msg, in_flight: false });
        self.save_outbox();
    }

    /// Writes the outbox (through a temporary file and a rename) when it is persisted.
    fn save_outbox(&self) {
        if !self.opts.persist_outbox {
            return;
        }
        let msgs: Vec<&Outgoing> = self.outbox.values().map(|p| &p.msg).collect();
        // Message text: private to the user, like the cache.
        let write =
            || crate::config::write_private(&self.settings.profile_dir, OUTBOX_FILE, &serde_json::to_vec(&msgs)?);
        if let Err(e) = write() {
            tracing::warn!("saving the outbox: {e:#}");
        }
    }

    async fn online(&mut self, client: Client, mut events: Events, mut creds: Credentials) -> Exit {
        let mut sends: JoinSet<(u64, Result<v1::SendMessageResult, ClientError>)> = JoinSet::new();
        if let Err(e) = self.catch_up(&client).await {
            return Exit::Lost { reason: format!("{e:#}"), retry_after: None };
        }
        if !self.emit(Update::Connection(ConnState::Online)).await {
            return Exit::Shutdown;
        }
        for p in self.outbox.values_mut() {
            p.in_flight = false;
        }
        self.flush_outbox(&client, &mut sends);
        let mut tick = tokio::time::interval(self.opts.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        let mut margin = refresh_margin(&creds);
        loop {
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else {
                        let info = events.close_info().unwrap_or_default();
                        if info.code == Some(v1::CloseCode::SessionRevoked as u32) {
                            return Exit::SignedOut(format!("session revoked: {}", info.reason));
                        }
                        return Exit::Lost { reason: info.to_string(), retry_after: None };
                    };
                    match self.on_event(&client, ev).await {
                        Ok(None) => {}
                        Ok(Some(exit)) => return exit,
                        Err(e) => return Exit::Lost { reason: format!("{e:#}"), retry_after: None },
                    }
                }
                cmd = self.commands.recv() => match cmd {
                    None | Some(Command::Shutdown) => {
                        self.send_acks(&client);
                        client.close().await;
                        return Exit::Shutdown;
                    }
                    Some(Command::Send(m)) => {
                        self.queue(m);
                        self.flush_outbox(&client, &mut sends);
                    }
                    // Connected already.
                    Some(Command::Reconnect) => {}
                    Some(Command::Request { tag, request }) => self.spawn_request(&client, tag, request),
                    Some(Command::History { conversation_id, before_seq, after_seq, limit }) => {
                        self.spawn_history(&client, conversation_id, before_seq, after_seq, limit);
                    }
                    Some(Command::Transfer(t)) => super::transfer::spawn(&client, &self.up, t),
                },
                Some(done) = sends.join_next() => {
                    if let Ok((key, result)) = done {
                        self.on_sent(key, result).await;
                        self.flush_outbox(&client, &mut sends);
                    }
                }
                _ = tick.tick() => {
                    ticks += 1;
                    self.send_acks(&client);
                    if ticks.is_multiple_of(5) {
                        self.flush_outbox(&client, &mut sends);
                    }
                    if !creds.access_valid(now_ms(), margin) {
                        match session::refresh(&self.settings, &client, &mut creds).await {
                            Ok(()) => margin = refresh_margin(&creds),
                            Err(e) if session::is_auth_error(&e) => return Exit::SignedOut(format!("{e:#}")),
                            Err(e) => tracing::debug!("refresh failed: {e:#}"),
                        }
                    }
                }
            }
        }
    }

    fn flush_outbox(
        &mut self,
        client: &Client,
        sends: &mut JoinSet<(u64, Result<v1::SendMessageResult, ClientError>)>,
    ) {
        // One at a time, oldest first: messages are stored in the order they were written.
        if self.outbox.values().any(|p| p.in_flight) {
            return;
        }
        if let Some((key, p)) = self.outbox.iter_mut().next() {
            p.in_flight = true;
            let key = *key;
            let m = &p.msg;
            let req = v1::SendMessage {
                conversation_id: m.conversation_id,
                client_msg_id: m.client_msg_id.clone(),
                text: m.text.clone(),
                reply_to_message_id: m.reply_to,
                mention_user_ids: m.mentions.clone(),
                attachments: m.attachments.iter().map(|a| a.to_proto()).collect(),
                written_at_ms: m.written_ms,
            };
            let client = client.clone();
            sends.spawn(async move {
                let r = match client.request(Request::SendMessage(req)).await {
                    Ok(R::SendMessage(r)) => Ok(r),
                    Ok(other) => Err(unexpected("SendMessageResult", &other)),
                    Err(e) => Err(e),
                };
                (key, r)
            });
        }
    }

    async fn on_sent(&mut self, key: u64, result: Result<v1::SendMessageResult, ClientError>) {
        let Some(p) = self.outbox.get_mut(&key) else { return };
        match result {
            Ok(result) => {
                let p = self.outbox.remove(&key).expect("present");
                self.save_outbox();
                let (conversation_id, client_msg_id) = (p.msg.conversation_id, p.msg.client_msg_id);
                self.emit(Update::Sent { conversation_id, client_msg_id, result }).await;
            }
            Err(e) if transient(&e) => p.in_flight = false,
            Err(e) => {
                let p = self.outbox.remove(&key).expect("present");
                self.save_outbox();
                let (conversation_id, client_msg_id) = (p.msg.conversation_id, p.msg.client_msg_id);
                self.emit(Update::SendFailed { conversation_id, client_msg_id, error: describe(&e) }).await;
            }
        }
    }

    fn send_acks(&mut self, client: &Client) {
        for (conversation_id, seq) in self.sync.take_acks() {
            let client = client.clone();
            tokio::spawn(async move {
                let _ = client.request(Request::Ack(v1::Ack { conversation_id, seq })).await;
            });
        }
    }

    fn spawn_request(&self, client: &Client, tag: Tag, request: Request) {
        let client = client.clone();
        let up = self.up.clone();
        tokio::spawn(async move {
            let result = client.request(request).await.map_err(|e| describe(&e));
            let _ = up.send(Update::Reply { tag, result }).await;
        });
    }

    fn spawn_history(&self, client: &Client, conversation_id: u64, before_seq: u64, after_seq: u64, limit: u32) {
        let client = client.clone();
        let up = self.up.clone();
        tokio::spawn(async move {
            let req = v1::GetHistory { conversation_id, before_seq, after_seq, limit };
            let u = match client.request(Request::GetHistory(req)).await {
                Ok(R::GetHistory(h)) => Update::History {
                    conversation_id,
                    before_seq,
                    after_seq,
                    messages: h.messages,
                    has_more: h.has_more,
                },
                Ok(other) => Update::Reply { tag: Tag::Quiet, result: Err(unexpected("history", &other).to_string()) },
                Err(e) => Update::Reply { tag: Tag::Quiet, result: Err(format!("history: {}", describe(&e))) },
            };
            let _ = up.send(u).await;
        });
    }

    fn spawn_conversation(&self, client: &Client, conversation_id: u64) {
        self.spawn_request(client, Tag::Refresh, Request::GetConversation(v1::GetConversation { conversation_id }));
    }

    /// Handles one live event; `Some` ends the connection.
    async fn on_event(&mut self, client: &Client, ev: v1::Event) -> anyhow::Result<Option<Exit>> {
        let Some(ev) = ev.event else { return Ok(None) };
        let u = match ev {
            event::Event::ConversationEvent(e) => match self.sync.live_event(&e) {
                Live::Apply => {
                    self.sync.advance(&e);
                    Update::Entry(e)
                }
                Live::Duplicate => return Ok(None),
                Live::Gap => {
                    self.catch_up(client).await?;
                    return Ok(None);
                }
            },
            event::Event::UserUpdate(u) => match self.sync.live_update(&u) {
                Live::Apply => {
                    self.sync.apply_update(&u);
                    self.after_user_update(client, &u);
                    Update::UserEntry(u)
                }
                Live::Duplicate => return Ok(None),
                Live::Gap => {
                    self.catch_up(client).await?;
                    return Ok(None);
                }
            },
            event::Event::ReceiptUpdated(r) => Update::Receipt(r),
            event::Event::TypingChanged(t) => Update::Typing(t),
            event::Event::PresenceChanged(p) => Update::Presence(p),
            event::Event::Notification(n) => Update::Notification(n),
            event::Event::SessionRevoked(s) => {
                return Ok(Some(Exit::SignedOut(format!("session revoked ({})", s.reason().as_str_name()))));
            }
            event::Event::GoAway(g) => {
                let after = Duration::from_millis(u64::from(g.reconnect_after_ms));
                return Ok(Some(Exit::Lost {
                    reason: format!("server going away: {}", g.message),
                    retry_after: Some(after),
                }));
            }
            // Events this client does not use (newer protocol minors add more, §3.3).
            #[allow(unreachable_patterns)]
            _ => return Ok(None),
        };
        if !self.emit(u).await {
            return Ok(Some(Exit::Shutdown));
        }
        Ok(None)
    }

    fn after_user_update(&self, client: &Client, u: &v1::UserUpdate) {
        if let Some(user_update::Body::AddedToConversation(a)) = &u.body {
            self.spawn_conversation(client, a.conversation_id);
        }
    }

    /// Catch-up (§14.6 steps 1-2): Sync until nothing is pending; bootstraps first when needed.
    async fn catch_up(&mut self, client: &Client) -> anyhow::Result<()> {
        loop {
            if !self.bootstrapped {
                self.bootstrap(client).await?;
            }
            let req = self.sync.request(500);
            let r = match client.request(Request::Sync(req)).await.context("sync")? {
                R::Sync(r) => r,
                other => return Err(unexpected("SyncResult", &other).into()),
            };
            let out = self.sync.apply_sync(r);
            if out.reset {
                self.bootstrapped = false;
                continue;
            }
            for u in out.user_updates {
                self.after_user_update(client, &u);
                self.emit(Update::UserEntry(u)).await;
            }
            for e in out.entries {
                self.emit(Update::Entry(e)).await;
            }
            if !out.more {
                return Ok(());
            }
        }
    }

    /// Learns the user log's head, lists the conversations, seeds the cursors at their heads and
    /// reports a snapshot, then the messages still in the outbox. The snapshot is the state as
    /// of now: only later changes are reported as entries (the user log is not replayed).
    async fn bootstrap(&mut self, client: &Client) -> anyhow::Result<()> {
        let me = client.me().await.context("GetMe")?;
        // The head first: what happens between it and the listing is reported by the catch-up
        // after the bootstrap (and applied idempotently), never lost.
        let (epoch, user_seq) = self.user_log_head(client).await?;
        let mut conversations = Vec::new();
        let mut page_token = String::new();
        loop {
            let req = v1::ListConversations { page_token: page_token.clone(), limit: 100 };
            let page = match client.request(Request::ListConversations(req)).await.context("ListConversations")? {
                R::ListConversations(p) => p,
                other => return Err(unexpected("ListConversationsResult", &other).into()),
            };
            conversations.extend(page.conversations);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        self.sync = SyncState { epoch, user_seq, ..Default::default() };
        for c in &conversations {
            self.sync.seed(c.conversation_id, c.head_seq);
        }
        let mut ids: HashSet<u64> = HashSet::new();
        for c in &conversations {
            ids.extend([c.peer_user_id].into_iter().filter(|id| *id != 0));
            if let Some(m) = &c.last_message {
                ids.insert(m.sender_id);
            }
        }
        let users = fetch_users(client, ids.into_iter().collect()).await?;
        self.bootstrapped = true;
        let snap = Snapshot { me, conversations, users };
        self.emit(Update::Snapshot(Box::new(snap))).await;
        // The snapshot replaced local state: what still waits to be sent is pending again.
        for p in self.outbox.values() {
            self.emit(Update::Queued(p.msg.clone())).await;
        }
        Ok(())
    }

    /// The database's epoch and the head of the user log (docs/protocol.md §14.3): one Sync with
    /// no cursors and one entry per conversation (the least it returns), its entries dropped —
    /// the listing that follows is the state, and only entries after this head are new. An epoch
    /// other than the one kept is taken, and asked again.
    async fn user_log_head(&mut self, client: &Client) -> anyhow::Result<(i64, u64)> {
        for _ in 0..2 {
            // Past any head: no user updates come back, only the head (§14.3, §14.6).
            let req = v1::Sync {
                epoch: self.sync.epoch,
                user_seq: u64::MAX,
                conversations: Vec::new(),
                limit_per_conversation: 1,
            };
            let r = match client.request(Request::Sync(req)).await.context("sync")? {
                R::Sync(r) => r,
                other => return Err(unexpected("SyncResult", &other).into()),
            };
            self.sync.epoch = r.epoch;
            if !r.resync_required {
                return Ok((r.epoch, r.user_seq));
            }
        }
        anyhow::bail!("the server asked for a resync twice in a row")
    }
}

/// Refresh this long before expiry: a minute, or a third of a short token's remaining life.
fn refresh_margin(creds: &Credentials) -> u64 {
    REFRESH_MARGIN_MS.min(creds.access_expires_at_ms.saturating_sub(now_ms()) / 3)
}

/// Profiles of `ids`, 100 per request.
pub async fn fetch_users(client: &Client, ids: Vec<u64>) -> anyhow::Result<Vec<v1::UserProfile>> {
    let mut users = Vec::new();
    for chunk in ids.chunks(100) {
        match client.request(Request::GetUsers(v1::GetUsers { user_ids: chunk.to_vec() })).await? {
            R::GetUsers(r) => users.extend(r.users),
            other => return Err(unexpected("GetUsersResult", &other).into()),
        }
    }
    Ok(users)
}
