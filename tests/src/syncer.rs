//! A model client for the sync guarantees (docs/protocol.md §14.6): it applies conversation
//! events strictly in seq order, detects gaps in live events and fills them with Sync, and
//! counts what it applied, so tests can prove every device converges with each event once.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use confab_protocol::client::{Client, ConnectOptions, Events};
use confab_protocol::v1::{self, conversation_event::Body, event, user_update};

use crate::call;

/// A message as a device knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub text: String,
    pub deleted: bool,
}

/// One conversation on a device: the applied prefix of its log, reduced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConvState {
    /// Whether the user is a member now. A removed member keeps the log it has: if added back,
    /// it continues from its cursor.
    pub member: bool,
    /// The highest seq applied; every seq up to it was applied exactly once, in order.
    pub cursor: u64,
    /// The user's read watermark, as synced from any of their devices.
    pub read: u64,
    pub messages: BTreeMap<u64, Msg>,
}

impl ConvState {
    /// Applies the next entry of the log; refuses anything but cursor + 1.
    pub fn apply(&mut self, e: &v1::ConversationEvent) -> anyhow::Result<()> {
        ensure!(e.seq == self.cursor + 1, "applying seq {} after {}", e.seq, self.cursor);
        self.cursor = e.seq;
        match &e.body {
            Some(Body::MessagePosted(m)) => {
                self.messages.insert(m.message_id, Msg { text: m.text.clone(), deleted: m.deleted });
            }
            Some(Body::MessageEdited(x)) => {
                if let Some(m) = self.messages.get_mut(&x.message_id) {
                    m.text = x.text.clone();
                }
            }
            Some(Body::MessageDeleted(x)) => {
                if let Some(m) = self.messages.get_mut(&x.message_id) {
                    m.text.clear();
                    m.deleted = true;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// What happened to a live event.
#[derive(Debug, PartialEq, Eq)]
enum Live {
    Applied,
    Duplicate,
    Gap,
}

/// A device of a user: a connection that comes and goes, and local state that persists.
#[allow(missing_debug_implementations)]
pub struct Device {
    pub name: String,
    url: String,
    opts: ConnectOptions,
    conn: Option<(Client, Events)>,
    pub epoch: i64,
    pub user_seq: u64,
    pub convs: BTreeMap<u64, ConvState>,
    /// Live events ignored because already applied (at-least-once delivery).
    pub duplicates: u64,
    /// Syncs run, for reporting.
    pub syncs: u64,
}

impl Device {
    /// A device that authenticates with `access_token` in Hello on each connect.
    pub fn new(name: &str, url: &str, mut opts: ConnectOptions, access_token: &str) -> Self {
        opts.access_token = Some(access_token.to_string());
        Self {
            name: name.to_string(),
            url: url.to_string(),
            opts,
            conn: None,
            epoch: 0,
            user_seq: 0,
            convs: BTreeMap::new(),
            duplicates: 0,
            syncs: 0,
        }
    }

    /// Where the next connect goes (e.g. through a fault-injecting proxy).
    pub fn set_url(&mut self, url: &str) {
        self.url = url.to_string();
    }

    pub fn connected(&self) -> bool {
        self.conn.as_ref().is_some_and(|(c, _)| c.close_info().is_none())
    }

    pub fn client(&self) -> anyhow::Result<&Client> {
        self.conn.as_ref().map(|(c, _)| c).context("device offline")
    }

    /// The conversations the device shows: those the user is a member of.
    pub fn member_conversations(&self) -> Vec<u64> {
        self.convs.iter().filter(|(_, c)| c.member).map(|(id, _)| *id).collect()
    }

    /// Connects and catches up.
    pub async fn connect(&mut self) -> anyhow::Result<()> {
        let (c, e) = Client::connect(&self.url, self.opts.clone()).await?;
        self.conn = Some((c, e));
        self.sync().await
    }

    /// Drops the connection; whatever is sent meanwhile must come back through Sync.
    pub async fn disconnect(&mut self) {
        if let Some((c, _)) = self.conn.take() {
            c.close().await;
        }
    }

    /// Sync until nothing more is pending.
    pub async fn sync(&mut self) -> anyhow::Result<()> {
        loop {
            self.syncs += 1;
            let cursors =
                self.convs.iter().map(|(id, s)| v1::SyncCursor { conversation_id: *id, seq: s.cursor }).collect();
            let req = v1::Sync {
                epoch: self.epoch,
                user_seq: self.user_seq,
                conversations: cursors,
                limit_per_conversation: 7,
            };
            let r = call!(self.client()?, Sync, req)?;
            if r.resync_required {
                self.convs.clear();
                self.user_seq = 0;
                self.epoch = r.epoch;
                continue;
            }
            self.epoch = r.epoch;
            for u in &r.user_updates {
                self.apply_update(u)?;
            }
            let mut more = r.has_more_updates;
            for d in &r.conversations {
                let state = self.convs.entry(d.conversation_id).or_default();
                for e in &d.events {
                    state
                        .apply(e)
                        .with_context(|| format!("{}: sync of conversation {}", self.name, d.conversation_id))?;
                }
                more |= d.has_more;
            }
            if !more {
                return Ok(());
            }
        }
    }

    fn apply_update(&mut self, u: &v1::UserUpdate) -> anyhow::Result<Live> {
        if u.user_seq <= self.user_seq {
            return Ok(Live::Duplicate);
        }
        if u.user_seq != self.user_seq + 1 {
            return Ok(Live::Gap);
        }
        self.user_seq = u.user_seq;
        match &u.body {
            Some(user_update::Body::AddedToConversation(a)) => {
                self.convs.entry(a.conversation_id).or_default().member = true;
            }
            Some(user_update::Body::RemovedFromConversation(r)) => {
                if let Some(c) = self.convs.get_mut(&r.conversation_id) {
                    c.member = false;
                }
            }
            Some(user_update::Body::ReadMarker(r)) => {
                if let Some(c) = self.convs.get_mut(&r.conversation_id) {
                    c.read = c.read.max(r.seq);
                }
            }
            None => bail!("user update without body"),
        }
        Ok(Live::Applied)
    }

    fn apply_live(&mut self, e: &v1::ConversationEvent) -> anyhow::Result<Live> {
        let state = self.convs.entry(e.conversation_id).or_default();
        if e.seq <= state.cursor {
            return Ok(Live::Duplicate);
        }
        if e.seq != state.cursor + 1 {
            return Ok(Live::Gap);
        }
        state.apply(e)?;
        Ok(Live::Applied)
    }

    /// Applies buffered live events; a gap triggers Sync. Waits up to `quiet` for more.
    pub async fn drain(&mut self, quiet: Duration) -> anyhow::Result<()> {
        loop {
            let next = match self.conn.as_mut() {
                Some((_, events)) => match tokio::time::timeout(quiet, events.recv()).await {
                    Ok(Some(ev)) => ev,
                    Ok(None) => {
                        self.conn = None;
                        return Ok(());
                    }
                    Err(_) => return Ok(()),
                },
                None => return Ok(()),
            };
            let outcome = match &next.event {
                Some(event::Event::ConversationEvent(e)) => self.apply_live(e)?,
                Some(event::Event::UserUpdate(u)) => self.apply_update(u)?,
                _ => Live::Applied,
            };
            match outcome {
                Live::Applied => {}
                Live::Duplicate => self.duplicates += 1,
                Live::Gap => self.sync().await?,
            }
        }
    }
}
