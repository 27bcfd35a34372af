//! The TUI's state and how network updates change it. Key handling is in `input.rs`, drawing
//! in `render/`. The app never touches the network or the terminal: it queues [`Effect`]s that
//! the run loop carries out, which keeps it testable.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use chrono::FixedOffset;
use confab_protocol::v1::{self, ConversationKind, client_frame::Request};

use super::composer::Composer;
use super::keymap::Keymap;
use super::media::{Previews, TransferView};
use super::search::SearchView;
use crate::config::{MediaConfig, NotifyConfig};
use crate::net::{Command, ConnState, Tag, Update};
use crate::store::{Msg, Store};

/// Something for the run loop to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Net(Command),
    Bell,
    Desktop {
        title: String,
        body: String,
    },
    /// Sign in (or register) and start the network task.
    Login {
        username: String,
        password: String,
        register: bool,
    },
    /// The mute list, the drafts or the open conversation changed: persist the TUI state.
    SaveState,
    /// Open a downloaded attachment with the configured program.
    Open(PathBuf),
    /// Open a link of a message with the configured program.
    OpenUrl(String),
    /// Put a text on the clipboard (through the terminal: OSC 52).
    Copy(String),
    /// Leave the screen for `$VISUAL`/`$EDITOR` on this text; what it saves goes to the
    /// composer ([`App::editor_done`]).
    Editor(String),
}

#[derive(Clone, Debug)]
pub enum Screen {
    Login(LoginForm),
    Main,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    List,
    Messages,
    Composer,
}

pub use super::overlay::{ListItem, LoginForm, Overlay, PromptKind};

/// What a `Tag::Ui` request was for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Created or joined: open it.
    Open,
    Search,
    Pins(u64),
    Members(u64),
    Receipts {
        conversation_id: u64,
        seq: u64,
    },
    /// A username looked up for a DM.
    DmWith(String),
    /// Usernames looked up one by one for a new group.
    Group {
        title: String,
        remaining: Vec<String>,
        ids: Vec<u64>,
    },
    AddMember {
        conversation_id: u64,
        name: String,
    },
    Join(String),
    /// A page of the message search numbered so (answers to older searches are dropped).
    MessageSearch(u64),
    /// Names for Tab in a prompt, asked when it held this text.
    Complete(String),
}

/// A conversation to reopen at start (the last one open), and the message selected in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reopen {
    pub conversation_id: u64,
    pub selected: Option<u64>,
}

/// Where the "new messages" divider goes: after the seq the read marker was at when the
/// conversation was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Divider {
    pub conversation_id: u64,
    pub after_seq: u64,
}

/// The messages on screen: the first and last seq shown, and how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown {
    pub first: u64,
    pub last: u64,
    pub count: usize,
}

/// A message by its conversation and seq.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageAt {
    pub conversation_id: u64,
    pub seq: u64,
}

/// The whole TUI state.
#[derive(Debug)]
pub struct App {
    pub screen: Screen,
    pub store: Store,
    pub conn: ConnState,
    pub profile: String,
    pub server: String,
    pub keymap: Keymap,
    pub focus: Focus,
    pub open: Option<u64>,
    /// The conversation under the list cursor (followed when the list re-sorts).
    pub list_id: Option<u64>,
    pub filter: String,
    pub filtering: bool,
    /// Selected message (seq); `None` follows the newest.
    pub selected: Option<u64>,
    /// What is written in the open conversation.
    pub composer: Composer,
    /// The other conversations' drafts (`drafts.rs`).
    pub drafts: HashMap<u64, Composer>,
    /// The open conversation's draft, set aside while one of its messages is edited.
    pub set_aside: Option<Composer>,
    /// The conversation to reopen when the conversations arrive (the last one open before a
    /// restart), with the message that was selected.
    pub reopen: Option<Reopen>,
    pub overlay: Overlay,
    pub status: Option<(String, u64)>,
    pub effects: Vec<Effect>,
    pub quit: bool,
    pub now_ms: u64,
    pub tz: FixedOffset,
    pub time_format: String,
    pub history_page: u32,
    pub muted: BTreeSet<u64>,
    pub notify: NotifyConfig,
    /// Height of the message pane at the last draw (for paging).
    pub view_height: Cell<u16>,
    /// The messages the message pane showed at the last draw (what a page is).
    pub view_shown: Cell<Option<Shown>>,
    /// The message at the top of the message pane at the last draw (conversation, seq): the view
    /// scrolls only as far as the selection needs.
    pub view_anchor: Cell<Option<MessageAt>>,
    /// The "new messages" divider of the open conversation.
    pub divider: Option<Divider>,
    /// When offline: the time of the next attempt (the status bar counts down to it).
    pub retry_at_ms: u64,
    pub(crate) requests: HashMap<u64, Purpose>,
    next_request: u64,
    users_asked: HashSet<u64>,
    pub(crate) typing_sent: Option<(u64, u64)>,
    /// The last search in the open conversation's messages, offered (selected) by the next.
    pub(crate) last_search: String,
    /// The search across conversations: kept while its overlay is closed, shown again by its key.
    pub message_search: Option<SearchView>,
    /// Uploads and downloads under way, by the number given to the network task.
    pub transfers: BTreeMap<u64, TransferView>,
    pub(crate) next_transfer: u64,
    pub previews: Previews,
    /// Relative paths in the attach prompt start here.
    pub cwd: PathBuf,
    /// `[media]`: where the save key writes (resolved at each save, so a ~/Downloads made
    /// meanwhile counts).
    pub media: MediaConfig,
    /// Where attachments are downloaded to be opened.
    pub open_dir: PathBuf,
    /// `[ui] hyperlinks`: links in messages are terminal hyperlinks (OSC 8).
    pub hyperlinks: bool,
}

impl App {
    pub fn new(profile: &str, server: &str, keymap: Keymap, signed_in: bool) -> Self {
        Self {
            screen: if signed_in { Screen::Main } else { Screen::Login(LoginForm::default()) },
            store: Store::default(),
            conn: ConnState::Connecting { attempt: 0 },
            profile: profile.to_string(),
            server: server.to_string(),
            keymap,
            focus: Focus::List,
            open: None,
            list_id: None,
            filter: String::new(),
            filtering: false,
            selected: None,
            composer: Composer::default(),
            drafts: HashMap::new(),
            set_aside: None,
            reopen: None,
            overlay: Overlay::None,
            status: None,
            effects: Vec::new(),
            quit: false,
            now_ms: 0,
            tz: FixedOffset::east_opt(0).expect("utc"),
            time_format: "%H:%M".into(),
            history_page: 50,
            muted: BTreeSet::new(),
            notify: NotifyConfig::default(),
            view_height: Cell::new(20),
            view_shown: Cell::new(None),
            view_anchor: Cell::new(None),
            divider: None,
            retry_at_ms: 0,
            requests: HashMap::new(),
            next_request: 0,
            users_asked: HashSet::new(),
            typing_sent: None,
            last_search: String::new(),
            message_search: None,
            transfers: BTreeMap::new(),
            next_transfer: 0,
            previews: Previews::default(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            media: MediaConfig::default(),
            open_dir: std::env::temp_dir().join("confab-open"),
            hyperlinks: false,
        }
    }

    /// Shows a line in the status bar for a few seconds, or until [`done`](Self::done).
    pub fn say(&mut self, s: impl Into<String>) {
        self.status = Some((s.into(), self.now_ms + 6_000));
    }

    /// Something the user asked for succeeded: a line about an earlier one (an error, "not
    /// sent") is out of date.
    pub(crate) fn done(&mut self) {
        self.status = None;
    }

    /// A user's presence as far as this client knows it: unknown while it is not online (what
    /// it last heard may be stale).
    pub fn presence(&self, user: u64) -> v1::PresenceState {
        match self.conn {
            ConnState::Online => self.store.presence(user),
            _ => v1::PresenceState::Unspecified,
        }
    }

    pub(crate) fn net(&mut self, c: Command) {
        self.effects.push(Effect::Net(c));
    }

    pub(crate) fn request(&mut self, purpose: Purpose, request: Request) {
        self.next_request += 1;
        self.requests.insert(self.next_request, purpose);
        self.net(Command::Request { tag: Tag::Ui(self.next_request), request });
    }

    pub(crate) fn quiet(&mut self, request: Request) {
        self.net(Command::Request { tag: Tag::Quiet, request });
    }

    /// The conversations in the list, filtered.
    pub fn visible(&self) -> Vec<u64> {
        let f = self.filter.to_lowercase();
        self.store
            .ordered()
            .into_iter()
            .filter(|id| {
                f.is_empty()
                    || self.store.convs.get(id).is_some_and(|c| self.store.conv_name(c).to_lowercase().contains(&f))
            })
            .collect()
    }

    /// Index of the list cursor in [`visible`](Self::visible).
    pub fn list_index(&self) -> usize {
        let v = self.visible();
        self.list_id.and_then(|id| v.iter().position(|c| *c == id)).unwrap_or(0)
    }

    /// Moves the list cursor to an index of the visible list.
    pub fn select_index(&mut self, i: usize) {
        self.list_id = self.visible().get(i).copied();
    }

    /// Opens a conversation: loads its latest page and marks it read.
    pub fn open_conversation(&mut self, id: u64) {
        if self.open != Some(id) {
            self.done();
        }
        self.show_conversation(id);
        self.selected = None;
        let page = self.history_page;
        if let Some(c) = self.store.convs.get_mut(&id)
            && (!c.history_loaded || (c.gap.is_some() && !c.newest_loaded()))
            && !c.loading
        {
            c.loading = true;
            self.net(Command::History { conversation_id: id, before_seq: 0, after_seq: 0, limit: page });
        }
    }

    /// Shows a conversation in the message pane and marks it read.
    pub(crate) fn show_conversation(&mut self, id: u64) {
        self.place_divider(id);
        self.swap_draft(id);
        self.open = Some(id);
        self.focus = Focus::Messages;
        self.list_id = Some(id);
        self.mark_read(id);
    }

    fn mark_read(&mut self, id: u64) {
        if let Some(seq) = self.store.mark_read_local(id) {
            self.quiet(Request::MarkRead(v1::MarkRead { conversation_id: id, seq }));
        }
    }

    /// Loads the page below the oldest loaded message, once.
    pub fn load_older(&mut self, id: u64) {
        let page = self.history_page;
        if let Some(c) = self.store.convs.get_mut(&id)
            && c.has_older
            && !c.loading
        {
            c.loading = true;
            let before_seq = c.oldest_seq().unwrap_or(0);
            self.net(Command::History { conversation_id: id, before_seq, after_seq: 0, limit: page });
        }
    }

    /// Handles one report of the network task.
    pub fn on_update(&mut self, u: Update) {
        match u {
            Update::Connection(s) => {
                if let ConnState::Offline { retry_in, .. } = &s {
                    self.retry_at_ms = self.now_ms + retry_in.as_millis() as u64;
                }
                if let ConnState::SignedOut(reason) = &s {
                    self.screen = Screen::Login(LoginForm { error: Some(reason.clone()), ..Default::default() });
                }
                if s == ConnState::Online {
                    self.previews.retry_failed();
                    if self.status.as_ref().is_some_and(|(line, _)| line == "reconnecting…") {
                        self.done();
                    }
                }
                self.conn = s;
            }
            Update::Snapshot(s) => {
                self.store.reset(&s.me, &s.conversations, &s.users);
                self.screen = Screen::Main;
                // The first list after a start: back where the user was.
                if self.reopen_last() {
                    return;
                }
                if let Some(id) = self.open {
                    if self.store.convs.contains_key(&id) {
                        // A fresh list (a reconnect, the server's after the cache's): the same
                        // view, at the selected message (loaded again around it).
                        match self.selected {
                            Some(seq) => self.open_at(id, seq),
                            None => self.open_conversation(id),
                        }
                    } else {
                        self.open = None;
                    }
                }
            }
            Update::Entry(e) => self.on_entry(&e),
            Update::UserEntry(u) => {
                if let Some(id) = self.store.apply_user_entry(&u) {
                    self.net(Command::Request {
                        tag: Tag::Refresh,
                        request: Request::GetConversation(v1::GetConversation { conversation_id: id }),
                    });
                }
            }
            Update::History { conversation_id, before_seq, after_seq, messages, has_more } => {
                self.store.merge_history(conversation_id, before_seq, after_seq, &messages, has_more);
                self.snap_selection(conversation_id);
                let me = self.store.me.user_id;
                if let Some(m) = messages.iter().rev().find(|m| m.sender_id == me && !m.deleted) {
                    let (conversation_id, message_id, seq) = (conversation_id, m.message_id, m.seq);
                    let req = Request::GetReceipts(v1::GetReceipts { conversation_id, message_id });
                    self.request(Purpose::Receipts { conversation_id, seq }, req);
                }
            }
            Update::Receipt(r) => self.store.receipt(&r),
            Update::Typing(t) => self.store.typing(&t, self.now_ms),
            Update::Presence(p) => self.store.presence_changed(&p),
            Update::Notification(n) => {
                if n.kind() == v1::NotificationKind::AddedToConversation {
                    self.say(format!("{} added you to a conversation", self.store.username(n.actor_id)));
                }
            }
            // A message of the outbox (left by an earlier run, or still waiting after a
            // snapshot): pending, once.
            Update::Queued(o) => {
                let shown =
                    self.store.convs.get(&o.conversation_id).is_some_and(|c| {
                        c.pending.iter().any(|p| p.client_msg_id.eq_ignore_ascii_case(&o.client_msg_id))
                    });
                if !shown {
                    let pending = crate::store::Pending {
                        client_msg_id: o.client_msg_id,
                        text: o.text,
                        reply_to: o.reply_to,
                        created_ms: if o.written_ms == 0 { self.now_ms } else { o.written_ms },
                        attachments: o.attachments.iter().map(|a| a.to_proto()).collect(),
                        seq: None,
                        failed: None,
                    };
                    self.store.add_pending(o.conversation_id, pending);
                }
            }
            Update::Sent { conversation_id, client_msg_id, result } => {
                if self.status.as_ref().is_some_and(|(s, _)| s.starts_with("not sent")) {
                    self.done();
                }
                self.store.sent(conversation_id, &client_msg_id, result.seq);
            }
            Update::SendFailed { conversation_id, client_msg_id, error } => {
                self.store.send_failed(conversation_id, &client_msg_id, &error);
                self.say(format!("not sent: {error}"));
            }
            Update::Reply { tag, result } => self.on_reply(tag, result),
            Update::Transfer { id, done, total } => self.on_transfer(id, done, total),
            Update::TransferDone { id, result } => self.on_transfer_done(id, result),
        }
    }

    fn on_entry(&mut self, e: &v1::ConversationEvent) {
        let known = self.store.convs.contains_key(&e.conversation_id);
        let applied = self.store.apply_entry(e);
        if !known {
            self.net(Command::Request {
                tag: Tag::Refresh,
                request: Request::GetConversation(v1::GetConversation { conversation_id: e.conversation_id }),
            });
        }
        let viewing = self.open == Some(e.conversation_id) && matches!(self.screen, Screen::Main);
        if viewing && applied.incoming.is_some() {
            self.mark_read(e.conversation_id);
        }
        if let (Some(msg), false) = (&applied.incoming, viewing) {
            self.alert(e.conversation_id, msg, applied.mentions_me);
        }
    }

    /// Bell and desktop notification for a DM or a mention, unless muted.
    fn alert(&mut self, conversation_id: u64, msg: &Msg, mentions_me: bool) {
        let Some(conv) = self.store.convs.get(&conversation_id) else { return };
        let direct = conv.kind == ConversationKind::Direct;
        if !(direct || mentions_me)
            || self.muted.contains(&conversation_id)
            || self.notify.muted.contains(&conversation_id)
        {
            return;
        }
        if self.notify.bell {
            self.effects.push(Effect::Bell);
        }
        if self.notify.desktop {
            let title = format!("{} in {}", self.store.username(msg.sender), self.store.conv_name(conv));
            self.effects.push(Effect::Desktop { title, body: msg.text.chars().take(200).collect() });
        }
    }

    /// Looks up the next member of a new group, or creates it when all are known.
    pub(crate) fn group_step(&mut self, title: String, remaining: Vec<String>, ids: Vec<u64>) {
        match remaining.first() {
            Some(next) => {
                let query = next.clone();
                self.request(Purpose::Group { title, remaining, ids }, search(&query));
            }
            None => self.create(ConversationKind::Group, title, ids),
        }
    }

    pub(crate) fn create(&mut self, kind: ConversationKind, title: String, member_ids: Vec<u64>) {
        let req = v1::CreateConversation { kind: kind as i32, title, description: String::new(), member_ids };
        self.request(Purpose::Open, Request::CreateConversation(req));
    }

    pub(crate) fn ask_users(&mut self, ids: Vec<u64>) {
        let ids: Vec<u64> = ids
            .into_iter()
            .filter(|id| *id != 0 && !self.store.users.contains_key(id) && self.users_asked.insert(*id))
            .collect();
        for chunk in ids.chunks(100) {
            self.net(Command::Request {
                tag: Tag::Users,
                request: Request::GetUsers(v1::GetUsers { user_ids: chunk.to_vec() }),
            });
        }
    }

    /// After a batch of updates: fetch profiles of users shown but unknown.
    pub fn after_updates(&mut self) {
        let unknown = self.store.unknown_users();
        self.ask_users(unknown);
    }

    /// Once a second or so: expire typing and status lines.
    pub fn on_tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        self.store.expire(now_ms);
        if self.status.as_ref().is_some_and(|(_, until)| *until <= now_ms) {
            self.status = None;
        }
    }
}

/// A SearchUsers request for an exact username lookup.
pub(crate) fn search(name: &str) -> Request {
    Request::SearchUsers(v1::SearchUsers {
        query: name.trim_start_matches('@').to_string(),
        page_token: String::new(),
        limit: 100,
    })
}
