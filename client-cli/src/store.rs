//! The TUI's model of the account: conversations with their loaded messages, unread and mention
//! counts, receipts watermarks, typing, presence and users. It only ever receives log entries in
//! order (the network actor guarantees it), merges history pages and conversation snapshots
//! without double counting, and knows nothing about the terminal.

use std::collections::{BTreeMap, HashMap};

use confab_protocol::v1::{self, ConversationKind, conversation_event::Body, user_update};

mod window;
pub use window::Gap;

/// A message as shown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Msg {
    pub id: u64,
    pub seq: u64,
    pub sender: u64,
    pub text: String,
    pub created_ms: u64,
    pub edited: bool,
    pub deleted: bool,
    pub reply_to: u64,
    pub mentions: Vec<u64>,
    pub reactions: Vec<v1::ReactionCount>,
    pub pinned: bool,
    pub attachments: Vec<v1::Attachment>,
    /// When the sender wrote it (Unix milliseconds, docs/protocol.md §13.2); 0 when not given,
    /// then `created_ms` is the time to show.
    pub written_ms: u64,
}

impl Msg {
    /// The time a message shows: when it was written (§13.2 `written_at_ms`) when its sender
    /// said, else when the server received it.
    pub fn shown_ms(&self) -> u64 {
        if self.written_ms != 0 { self.written_ms } else { self.created_ms }
    }
}

impl From<&v1::Message> for Msg {
    fn from(m: &v1::Message) -> Self {
        Self {
            id: m.message_id,
            seq: m.seq,
            sender: m.sender_id,
            text: m.text.clone(),
            created_ms: m.created_at_ms,
            edited: m.edited_at_ms != 0,
            deleted: m.deleted,
            reply_to: m.reply_to_message_id,
            mentions: m.mention_user_ids.clone(),
            reactions: merged_reactions(&m.reactions),
            pinned: m.pinned,
            attachments: m.attachments.clone(),
            written_ms: m.written_at_ms,
        }
    }
}

/// A message of ours the server has not stored yet (or refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub client_msg_id: String,
    pub text: String,
    pub reply_to: u64,
    pub created_ms: u64,
    pub attachments: Vec<v1::Attachment>,
    /// Known once the server answered; the entry itself replaces the pending copy.
    pub seq: Option<u64>,
    pub failed: Option<String>,
}

/// Delivery state of one of our messages (§15.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tick {
    Pending,
    Sent,
    Delivered,
    Read,
}

/// A conversation with what the device has loaded of it.
#[derive(Clone, Debug, Default)]
pub struct Conv {
    pub id: u64,
    pub kind: ConversationKind,
    pub title: String,
    pub peer: u64,
    pub member_count: u32,
    /// The topic (the conversation's description).
    pub description: String,
    pub my_role: v1::MemberRole,
    pub member: bool,
    pub head_seq: u64,
    pub last_activity_ms: u64,
    pub read_seq: u64,
    pub unread: u32,
    pub mentions: u32,
    /// The latest message, for the list preview.
    pub last: Option<Msg>,
    /// Loaded messages by seq.
    pub messages: BTreeMap<u64, Msg>,
    by_id: HashMap<u64, u64>,
    /// Edits and deletions of messages not loaded yet, applied when they load.
    orphans: HashMap<u64, (String, bool)>,
    /// Older messages exist below the oldest loaded one.
    pub has_older: bool,
    pub history_loaded: bool,
    pub loading: bool,
    /// Unloaded messages between a page around an old message (a search hit) and the newest.
    pub gap: Option<Gap>,
    pub pending: Vec<Pending>,
    /// Others typing: user → until (ms).
    pub typing: BTreeMap<u64, u64>,
    /// Others' (delivered, read) watermarks.
    pub watermarks: HashMap<u64, (u64, u64)>,
}

impl Conv {
    fn from_proto(c: &v1::Conversation) -> Self {
        let mut conv = Self { id: c.conversation_id, member: true, has_older: true, ..Default::default() };
        conv.update_meta(c);
        conv.head_seq = c.head_seq;
        conv.read_seq = c.my_read_seq;
        conv.unread = c.unread_count;
        conv.mentions = c.unread_mention_count;
        conv.last_activity_ms = c.last_activity_ms;
        conv.last = c.last_message.as_ref().map(Msg::from);
        conv
    }

    fn update_meta(&mut self, c: &v1::Conversation) {
        self.kind = c.kind();
        self.title = c.title.clone();
        self.description = c.description.clone();
        self.peer = c.peer_user_id;
        self.member_count = c.member_count;
        self.my_role = c.my_role();
    }

    pub fn message_by_id(&self, id: u64) -> Option<&Msg> {
        self.by_id.get(&id).and_then(|seq| self.messages.get(seq))
    }

    fn message_mut(&mut self, id: u64) -> Option<&mut Msg> {
        let seq = *self.by_id.get(&id)?;
        self.messages.get_mut(&seq)
    }

    fn insert(&mut self, mut m: Msg) {
        if let Some((text, deleted)) = self.orphans.remove(&m.id) {
            m.text = text;
            m.edited |= !deleted;
            m.deleted |= deleted;
        }
        self.by_id.insert(m.id, m.seq);
        self.messages.insert(m.seq, m);
    }

    /// The state of our message at `seq` from the others' watermarks.
    pub fn tick(&self, seq: u64) -> Tick {
        let others = (self.member_count.max(2) - 1) as usize;
        let known: Vec<(u64, u64)> = self.watermarks.values().copied().collect();
        let missing = others.saturating_sub(known.len());
        if missing == 0 && known.iter().all(|(_, r)| *r >= seq) {
            Tick::Read
        } else if missing == 0 && known.iter().all(|(d, r)| (*d).max(*r) >= seq) {
            Tick::Delivered
        } else {
            Tick::Sent
        }
    }

    /// Oldest loaded seq (for loading older history).
    pub fn oldest_seq(&self) -> Option<u64> {
        self.messages.keys().next().copied()
    }
}

/// What applying a log entry means for notifications.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// A new message from someone else.
    pub incoming: Option<Msg>,
    /// It mentions us.
    pub mentions_me: bool,
}

/// Everything the TUI shows.
#[derive(Clone, Debug, Default)]
pub struct Store {
    pub me: v1::Me,
    pub users: HashMap<u64, v1::UserProfile>,
    pub convs: HashMap<u64, Conv>,
}

impl Store {
    /// Replaces everything with a fresh snapshot (who I am, the conversations, the users the
    /// network actor fetched); loaded messages are dropped.
    pub fn reset(&mut self, me: &v1::Me, conversations: &[v1::Conversation], users: &[v1::UserProfile]) {
        self.me = me.clone();
        self.users.clear();
        self.add_users(users);
        self.convs = conversations.iter().map(|c| (c.conversation_id, Conv::from_proto(c))).collect();
    }

    pub fn add_users(&mut self, users: &[v1::UserProfile]) {
        for u in users {
            self.users.insert(u.user_id, u.clone());
        }
    }

    pub fn username(&self, id: u64) -> String {
        if id == self.me.user_id && !self.me.username.is_empty() {
            return self.me.username.clone();
        }
        self.users.get(&id).map_or_else(|| format!("user{id}"), |u| u.username.clone())
    }

    /// A conversation's display name: title, or `@peer` for a DM.
    pub fn conv_name(&self, c: &Conv) -> String {
        if c.kind == ConversationKind::Direct {
            format!("@{}", self.username(c.peer))
        } else if c.title.is_empty() {
            format!("#{}", c.id)
        } else {
            c.title.clone()
        }
    }

    pub fn presence(&self, user: u64) -> v1::PresenceState {
        self.users.get(&user).map_or(v1::PresenceState::Unspecified, |u| u.presence())
    }

    /// Conversations by most recent activity (ties by id), member ones only.
    pub fn ordered(&self) -> Vec<u64> {
        let mut v: Vec<&Conv> = self.convs.values().filter(|c| c.member).collect();
        v.sort_by(|a, b| b.last_activity_ms.cmp(&a.last_activity_ms).then(b.id.cmp(&a.id)));
        v.into_iter().map(|c| c.id).collect()
    }

    /// Merges a fresh copy of a conversation: its counts hold as of its head; entries we applied
    /// above that head are counted on top, so nothing counts twice.
    pub fn merge_conversation(&mut self, c: &v1::Conversation) {
        let me = self.me.user_id;
        let conv = self.convs.entry(c.conversation_id).or_insert_with(|| Conv::from_proto(c));
        conv.update_meta(c);
        conv.member = true;
        let newer: Vec<&Msg> = conv.messages.range(c.head_seq + 1..).map(|(_, m)| m).collect();
        let read = conv.read_seq.max(c.my_read_seq);
        let extra: Vec<&&Msg> = newer.iter().filter(|m| m.sender != me && !m.deleted && m.seq > read).collect();
        let extra_mentions = extra.iter().filter(|m| m.mentions.contains(&me)).count() as u32;
        conv.read_seq = read;
        conv.unread = if read >= conv.head_seq.max(c.head_seq) { 0 } else { c.unread_count + extra.len() as u32 };
        // The server counts mentions after the read marker (§12.1); ours above its head come on top.
        conv.mentions = if conv.unread == 0 { 0 } else { c.unread_mention_count + extra_mentions };
        if c.head_seq >= conv.head_seq {
            conv.head_seq = c.head_seq;
            conv.last_activity_ms = conv.last_activity_ms.max(c.last_activity_ms);
            if let Some(m) = &c.last_message {
                conv.last = Some(Msg::from(m));
            }
        }
    }

    /// Applies the next log entry of a conversation.
    pub fn apply_entry(&mut self, e: &v1::ConversationEvent) -> Applied {
        let me = self.me.user_id;
        let conv = self.convs.entry(e.conversation_id).or_insert_with(|| Conv {
            id: e.conversation_id,
            member: true,
            history_loaded: true,
            ..Default::default()
        });
        conv.head_seq = conv.head_seq.max(e.seq);
        let mut out = Applied::default();
        match &e.body {
            Some(Body::Created(c)) => {
                conv.kind = c.kind();
                conv.title = c.title.clone();
                conv.last_activity_ms = conv.last_activity_ms.max(e.at_ms);
            }
            Some(Body::MessagePosted(m)) => {
                let msg = Msg::from(m);
                conv.pending.retain(|p| p.seq != Some(msg.seq));
                // Whoever posted is done typing.
                conv.typing.remove(&msg.sender);
                conv.last_activity_ms = conv.last_activity_ms.max(m.created_at_ms.max(e.at_ms));
                conv.last = Some(msg.clone());
                if msg.sender != me && msg.seq > conv.read_seq {
                    conv.unread += 1;
                    out.mentions_me = msg.mentions.contains(&me);
                    if out.mentions_me {
                        conv.mentions += 1;
                    }
                    out.incoming = Some(msg.clone());
                }
                // Entries arrive in order, so what is loaded stays contiguous up to the head.
                conv.insert(msg);
            }
            Some(Body::MessageEdited(x)) => {
                match conv.message_mut(x.message_id) {
                    Some(m) => {
                        m.text = x.text.clone();
                        m.edited = true;
                    }
                    None => {
                        conv.orphans.insert(x.message_id, (x.text.clone(), false));
                    }
                }
                if let Some(l) = conv.last.as_mut().filter(|l| l.id == x.message_id) {
                    l.text = x.text.clone();
                    l.edited = true;
                }
            }
            Some(Body::MessageDeleted(x)) => {
                let read = conv.read_seq;
                match conv.message_mut(x.message_id) {
                    Some(m) => {
                        let was_unread = m.sender != me && m.seq > read && !m.deleted;
                        let mentioned = m.mentions.contains(&me);
                        m.text.clear();
                        m.deleted = true;
                        // A deleted message shows no reactions (§21) and no attachments.
                        m.reactions.clear();
                        m.attachments.clear();
                        if was_unread {
                            conv.unread = conv.unread.saturating_sub(1);
                            if mentioned {
                                conv.mentions = conv.mentions.saturating_sub(1);
                            }
                        }
                    }
                    None => {
                        conv.orphans.insert(x.message_id, (String::new(), true));
                    }
                }
                if let Some(l) = conv.last.as_mut().filter(|l| l.id == x.message_id) {
                    l.text.clear();
                    l.deleted = true;
                    l.attachments.clear();
                }
            }
            Some(Body::MembersAdded(x)) => conv.member_count += x.user_ids.len() as u32,
            Some(Body::MemberJoined(_)) => conv.member_count += 1,
            Some(Body::MemberLeft(v1::MemberLeft { user_id }))
            | Some(Body::MemberRemoved(v1::MemberRemoved { user_id })) => {
                conv.member_count = conv.member_count.saturating_sub(1);
                conv.watermarks.remove(user_id);
                if *user_id == me {
                    conv.member = false;
                }
            }
            Some(Body::Updated(x)) => conv.title = x.title.clone(),
            Some(Body::RoleChanged(x)) if x.user_id == me => conv.my_role = x.role(),
            Some(Body::OwnershipTransferred(x)) => {
                if x.to_user_id == me {
                    conv.my_role = v1::MemberRole::Owner;
                } else if x.from_user_id == me {
                    conv.my_role = v1::MemberRole::Admin;
                }
            }
            Some(Body::MessagePinned(x)) => {
                if let Some(m) = conv.message_mut(x.message_id) {
                    m.pinned = true;
                }
            }
            Some(Body::MessageUnpinned(x)) => {
                if let Some(m) = conv.message_mut(x.message_id) {
                    m.pinned = false;
                }
            }
            Some(Body::ReactionAdded(x)) => react(conv, x.message_id, &x.emoji, e.actor_id == me, 1),
            Some(Body::ReactionRemoved(x)) => react(conv, x.message_id, &x.emoji, e.actor_id == me, -1),
            _ => {}
        }
        out
    }

    /// Applies the next entry of the user's log. True when the conversation's counts should be
    /// fetched again (a read marker below the head).
    pub fn apply_user_entry(&mut self, u: &v1::UserUpdate) -> Option<u64> {
        match &u.body {
            Some(user_update::Body::ReadMarker(r)) => {
                let conv = self.convs.get_mut(&r.conversation_id)?;
                conv.read_seq = conv.read_seq.max(r.seq);
                if conv.read_seq >= conv.head_seq {
                    conv.unread = 0;
                    conv.mentions = 0;
                    None
                } else {
                    Some(r.conversation_id)
                }
            }
            Some(user_update::Body::RemovedFromConversation(r)) => {
                if let Some(c) = self.convs.get_mut(&r.conversation_id) {
                    c.member = false;
                }
                None
            }
            Some(user_update::Body::AddedToConversation(a)) => {
                if let Some(c) = self.convs.get_mut(&a.conversation_id) {
                    c.member = true;
                }
                None
            }
            None => None,
            #[allow(unreachable_patterns)]
            Some(_) => None,
        }
    }

    /// Marks the conversation read up to its head locally; returns that head.
    pub fn mark_read_local(&mut self, conversation_id: u64) -> Option<u64> {
        let conv = self.convs.get_mut(&conversation_id)?;
        conv.unread = 0;
        conv.mentions = 0;
        if conv.read_seq >= conv.head_seq {
            return None;
        }
        conv.read_seq = conv.head_seq;
        Some(conv.head_seq)
    }

    pub fn receipt(&mut self, r: &v1::ReceiptUpdated) {
        if r.user_id == self.me.user_id {
            return;
        }
        if let Some(conv) = self.convs.get_mut(&r.conversation_id) {
            let w = conv.watermarks.entry(r.user_id).or_default();
            w.0 = w.0.max(r.delivered_seq).max(r.read_seq);
            w.1 = w.1.max(r.read_seq);
        }
    }

    /// Seeds watermarks from GetReceipts of our message at `seq`.
    pub fn seed_receipts(&mut self, conversation_id: u64, seq: u64, receipts: &[v1::MemberReceipt]) {
        let Some(conv) = self.convs.get_mut(&conversation_id) else { return };
        for r in receipts {
            let w = conv.watermarks.entry(r.user_id).or_default();
            match r.state() {
                v1::ReceiptState::Read => {
                    w.0 = w.0.max(seq);
                    w.1 = w.1.max(seq);
                }
                v1::ReceiptState::Delivered => w.0 = w.0.max(seq),
                _ => {}
            }
        }
    }

    pub fn typing(&mut self, t: &v1::TypingChanged, now_ms: u64) {
        if t.user_id == self.me.user_id {
            return;
        }
        if let Some(conv) = self.convs.get_mut(&t.conversation_id) {
            if t.typing {
                let ttl = if t.expires_in_ms == 0 { 5_000 } else { u64::from(t.expires_in_ms) };
                conv.typing.insert(t.user_id, now_ms + ttl);
            } else {
                conv.typing.remove(&t.user_id);
            }
        }
    }

    /// Drops typing indicators that lapsed.
    pub fn expire(&mut self, now_ms: u64) {
        for c in self.convs.values_mut() {
            c.typing.retain(|_, until| *until > now_ms);
        }
    }

    pub fn presence_changed(&mut self, p: &v1::PresenceChanged) {
        if let Some(u) = self.users.get_mut(&p.user_id) {
            u.presence = p.state;
            u.last_seen_ms = p.last_seen_ms;
        }
    }

    pub fn add_pending(&mut self, conversation_id: u64, p: Pending) {
        if let Some(c) = self.convs.get_mut(&conversation_id) {
            c.pending.push(p);
        }
    }

    /// The server stored a pending message: drop it if its entry is already here.
    pub fn sent(&mut self, conversation_id: u64, client_msg_id: &str, seq: u64) {
        if let Some(c) = self.convs.get_mut(&conversation_id) {
            let applied = c.messages.contains_key(&seq);
            c.pending.retain_mut(|p| {
                if p.client_msg_id == client_msg_id {
                    p.seq = Some(seq);
                    !applied
                } else {
                    true
                }
            });
        }
    }

    pub fn send_failed(&mut self, conversation_id: u64, client_msg_id: &str, error: &str) {
        if let Some(c) = self.convs.get_mut(&conversation_id) {
            for p in c.pending.iter_mut().filter(|p| p.client_msg_id == client_msg_id) {
                p.failed = Some(error.to_string());
            }
        }
    }

    /// User ids shown somewhere whose profile is unknown.
    pub fn unknown_users(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = Vec::new();
        for c in self.convs.values() {
            ids.extend([c.peer].into_iter().filter(|p| *p != 0));
            ids.extend(c.last.as_ref().map(|m| m.sender));
            ids.extend(c.messages.values().map(|m| m.sender));
            ids.extend(c.typing.keys());
        }
        ids.sort_unstable();
        ids.dedup();
        ids.retain(|id| *id != 0 && *id != self.me.user_id && !self.users.contains_key(id));
        ids
    }
}

/// Reactions counted by their canonical emoji: two spellings of one emoji are one count.
fn merged_reactions(rs: &[v1::ReactionCount]) -> Vec<v1::ReactionCount> {
    let mut out: Vec<v1::ReactionCount> = Vec::with_capacity(rs.len());
    for r in rs {
        let emoji = crate::emoji::canonical(&r.emoji);
        match out.iter_mut().find(|o| o.emoji == emoji) {
            Some(o) => {
                o.count += r.count;
                o.me |= r.me;
            }
            None => out.push(v1::ReactionCount { emoji, ..r.clone() }),
        }
    }
    out
}

fn react(conv: &mut Conv, message_id: u64, emoji: &str, mine: bool, delta: i32) {
    let Some(m) = conv.message_mut(message_id) else { return };
    let emoji = crate::emoji::canonical(emoji);
    match m.reactions.iter_mut().find(|r| r.emoji == emoji) {
        Some(r) => {
            r.count = r.count.saturating_add_signed(delta);
            if mine {
                r.me = delta > 0;
            }
        }
        None if delta > 0 => m.reactions.push(v1::ReactionCount { emoji, count: 1, me: mine }),
        None => {}
    }
    m.reactions.retain(|r| r.count > 0);
}
