//! Answers to the TUI's own requests: lists for popups (pins, members, search results), pages
//! of the message search, the conversations created or joined, receipts, and the username
//! look-ups behind DMs, groups and new members.

use confab_protocol::v1::{self, ConversationKind, client_frame::Request, response::Result as R};

use super::app::{App, ListItem, Overlay, Purpose};
use crate::net::{Command, Tag};

impl App {
    pub(crate) fn on_reply(&mut self, tag: Tag, result: Result<R, String>) {
        let purpose = match tag {
            Tag::Ui(n) => self.requests.remove(&n),
            _ => None,
        };
        let r = match result {
            Ok(r) => r,
            Err(e) => {
                match (tag, purpose) {
                    // Background refreshes: the next one will do.
                    (Tag::Silent | Tag::Users | Tag::Refresh, _) => {}
                    (_, Some(Purpose::Receipts { .. } | Purpose::Complete(_))) => {}
                    (_, Some(Purpose::MessageSearch(run))) => self.message_search_failed(run, e),
                    _ => self.say(e),
                }
                return;
            }
        };
        // Something asked for worked: an older error on the status bar is out of date.
        if matches!(tag, Tag::Quiet | Tag::Ui(_)) && !matches!(purpose, Some(Purpose::Complete(_))) {
            self.done();
        }
        match (purpose, r) {
            (_, R::GetConversation(c)) => self.store.merge_conversation(&c),
            (_, R::UpdateConversation(c)) => {
                self.store.merge_conversation(&c);
                self.say("conversation updated");
            }
            (_, R::GetUsers(u)) => self.store.add_users(&u.users),
            (Some(Purpose::Open), R::CreateConversation(c) | R::JoinChannel(c)) => {
                self.store.merge_conversation(&c);
                if c.peer_user_id != 0 {
                    // Presence became visible with the conversation: fetch the profile again.
                    let req = Request::GetUsers(v1::GetUsers { user_ids: vec![c.peer_user_id] });
                    self.net(Command::Request { tag: Tag::Users, request: req });
                }
                self.overlay = Overlay::None;
                self.open_conversation(c.conversation_id);
            }
            (Some(Purpose::Receipts { conversation_id, seq }), R::GetReceipts(r)) => {
                self.store.seed_receipts(conversation_id, seq, &r.receipts);
            }
            (Some(Purpose::Pins(_)), R::ListPins(r)) => {
                let items = r
                    .messages
                    .iter()
                    .map(|m| ListItem {
                        label: format!("{}: {}", self.store.username(m.sender_id), crate::format::preview_text(m)),
                        user: None,
                    })
                    .collect();
                self.overlay = Overlay::List { title: "Pinned messages".into(), items, selected: 0, members: None };
            }
            (Some(Purpose::Members(conversation_id)), R::ListMembers(r)) => {
                self.ask_users(r.members.iter().map(|m| m.user_id).collect());
                let items = r
                    .members
                    .iter()
                    .map(|m| {
                        let role = crate::format::role_name(m.role());
                        let p = if m.user_id == self.store.me.user_id {
                            "(you)"
                        } else {
                            crate::format::presence_name(self.presence(m.user_id))
                        };
                        ListItem {
                            label: format!("{:<24} {role:<10} {p}", self.store.username(m.user_id)),
                            user: Some(m.user_id),
                        }
                    })
                    .collect();
                let title = "Members (Enter: DM, x: remove)".into();
                self.overlay = Overlay::List { title, items, selected: 0, members: Some(conversation_id) };
            }
            (Some(Purpose::Complete(typed)), R::SearchUsers(r)) => {
                self.store.add_users(&r.users);
                self.completed(&typed, r.users.iter().map(|u| u.username.clone()).collect());
            }
            (Some(Purpose::Complete(typed)), R::DiscoverChannels(r)) => {
                self.completed(&typed, r.conversations.iter().map(|c| c.title.clone()).collect());
            }
            (Some(Purpose::Search), R::SearchUsers(r)) => {
                self.store.add_users(&r.users);
                let items: Vec<ListItem> = r
                    .users
                    .iter()
                    .map(|u| ListItem { label: crate::format::user_line(u), user: Some(u.user_id) })
                    .collect();
                let title = if items.is_empty() { "No users found" } else { "Users (Enter: DM)" };
                self.overlay = Overlay::List { title: title.into(), items, selected: 0, members: None };
            }
            (Some(p @ (Purpose::DmWith(_) | Purpose::Group { .. } | Purpose::AddMember { .. })), R::SearchUsers(r)) => {
                self.store.add_users(&r.users);
                self.lookup_done(p, &r.users);
            }
            (Some(Purpose::Join(title)), R::DiscoverChannels(r)) => {
                match r.conversations.iter().find(|c| c.title.eq_ignore_ascii_case(&title)) {
                    Some(c) => {
                        let req = Request::JoinChannel(v1::JoinChannel { conversation_id: c.conversation_id });
                        self.request(Purpose::Open, req);
                    }
                    None => self.say(format!("no channel named {title:?} (J then +{title} creates it)")),
                }
            }
            (Some(Purpose::MessageSearch(run)), R::SearchMessages(r)) => self.message_search_page(run, r),
            (_, R::AddMembers(_)) => self.say("member added"),
            _ => {}
        }
    }

    /// A username search answered for a DM, a group or a new member.
    fn lookup_done(&mut self, p: Purpose, found: &[v1::UserProfile]) {
        let pick = |name: &str| found.iter().find(|u| u.username.eq_ignore_ascii_case(name)).map(|u| u.user_id);
        match p {
            Purpose::DmWith(name) => match pick(&name) {
                Some(id) => self.create(ConversationKind::Direct, String::new(), vec![id]),
                None => self.say(format!("no user named {name:?}")),
            },
            Purpose::AddMember { conversation_id, name } => match pick(&name) {
                Some(id) => self.quiet(Request::AddMembers(v1::AddMembers { conversation_id, user_ids: vec![id] })),
                None => self.say(format!("no user named {name:?}")),
            },
            Purpose::Group { title, mut remaining, mut ids } => {
                let name = remaining.remove(0);
                match pick(&name) {
                    Some(id) => ids.push(id),
                    None => return self.say(format!("no user named {name:?}")),
                }
                self.group_step(title, remaining, ids);
            }
            _ => {}
        }
    }
}
