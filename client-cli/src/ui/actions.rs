//! Normal-mode actions: moving through the list and the messages (by one, by half a page and a
//! page), opening, and the keys that act on the selected message.

use std::cell::Cell;

use confab_protocol::v1::{self, client_frame::Request};

use super::app::{App, Effect, Focus, MessageAt, Overlay, PromptKind, Purpose};
use super::composer::{Composer, Purpose as Compose};
use super::keymap::Action;
use crate::net::{Command, Tag};

impl App {
    /// The selected message, or the newest when none is selected.
    pub(crate) fn target(&self) -> Option<(u64, crate::store::Msg)> {
        let conv = self.store.convs.get(&self.open?)?;
        let m = match self.selected {
            Some(seq) => conv.messages.get(&seq),
            None => conv.messages.values().next_back(),
        }?;
        Some((conv.id, m.clone()))
    }

    /// Seqs of the open conversation's loaded messages.
    fn seqs(&self) -> Vec<u64> {
        self.open
            .and_then(|id| self.store.convs.get(&id))
            .map(|c| c.messages.keys().copied().collect())
            .unwrap_or_default()
    }

    /// A page down (or up): the message at the bottom of the view (or the top) ends at the
    /// other edge, one message staying in view, as a pager does.
    fn page(&mut self, down: bool) {
        let seqs = self.seqs();
        let (Some(shown), Some(id)) = (self.view_shown.get(), self.open) else { return };
        let at = |s: u64| seqs.iter().position(|x| *x == s).map(|i| i as i64);
        let cur = match self.selected {
            Some(s) => at(s),
            None => Some(seqs.len() as i64),
        };
        let step = (shown.count as i64 - 1).max(1);
        let (Some(cur), Some(edge)) = (cur, at(if down { shown.last } else { shown.first })) else { return };
        let target = if down { edge + step } else { edge - step };
        self.move_selection(target - cur);
        // Going up, the message reached is the new top.
        if !down && let Some(seq) = self.selected {
            self.view_anchor.set(Some(MessageAt { conversation_id: id, seq }));
        }
    }

    fn move_selection(&mut self, delta: i64) {
        let seqs = self.seqs();
        if seqs.is_empty() {
            return;
        }
        let cur = match self.selected {
            Some(s) => seqs.iter().position(|x| *x == s).unwrap_or(seqs.len() - 1) as i64,
            None if delta < 0 => seqs.len() as i64,
            None => return,
        };
        let next = cur + delta;
        if let Some(stop) = self.stop_at_gap(&seqs, cur, next) {
            self.selected = Some(stop);
            return;
        }
        if next >= seqs.len() as i64 {
            self.selected = None;
        } else {
            let i = next.max(0) as usize;
            self.selected = Some(seqs[i]);
            if next <= 0
                && let Some(id) = self.open
            {
                self.load_older(id);
            }
        }
    }

    fn move_list(&mut self, delta: i64) {
        let n = self.visible().len() as i64;
        if n > 0 {
            self.select_index((self.list_index() as i64 + delta).clamp(0, n - 1) as usize);
        }
    }

    /// Normal-mode actions.
    pub fn action(&mut self, a: Action) {
        // Half a page: half the messages the pane showed (else a guess of two rows each); the
        // list has two rows per conversation.
        let shown = self.view_shown.get().map_or(0, |s| s.count as i64);
        let page = if shown > 1 { shown - 1 } else { i64::from(self.view_height.get() / 2).max(1) };
        let half = (page / 2).max(1);
        let list_page = i64::from(self.view_height.get() / 2).max(1);
        let in_messages = self.focus == Focus::Messages && self.open.is_some();
        match a {
            Action::Quit => self.quit = true,
            Action::Help => self.overlay = Overlay::Help { scroll: Cell::new(0) },
            Action::Down if in_messages => self.move_selection(1),
            Action::Up if in_messages => self.move_selection(-1),
            Action::PageDown if in_messages => self.move_selection(half),
            Action::PageUp if in_messages => self.move_selection(-half),
            Action::FullPageDown if in_messages => self.page(true),
            Action::FullPageUp if in_messages => self.page(false),
            Action::FullPageDown => self.move_list(list_page),
            Action::FullPageUp => self.move_list(-list_page),
            Action::Top if in_messages => self.move_selection(-(self.seqs().len() as i64)),
            Action::Bottom if in_messages => self.follow_newest(),
            Action::Down => self.move_list(1),
            Action::Up => self.move_list(-1),
            Action::PageDown => self.move_list((list_page / 2).max(1)),
            Action::PageUp => self.move_list(-(list_page / 2).max(1)),
            Action::Top => self.select_index(0),
            Action::Bottom => self.move_list(i64::MAX / 2),
            Action::Open => match self.focus {
                Focus::List => {
                    if let Some(id) = self.visible().get(self.list_index()).copied() {
                        self.open_conversation(id);
                    }
                }
                _ => self.focus = Focus::Composer,
            },
            Action::Back => {
                self.focus = Focus::List;
                self.selected = None;
            }
            Action::NextPane => {
                self.focus = match self.focus {
                    Focus::List if self.open.is_some() => Focus::Messages,
                    _ => Focus::List,
                }
            }
            Action::Compose if self.open.is_some() => self.focus = Focus::Composer,
            Action::Compose => self.say("open a conversation first"),
            Action::Filter if in_messages => {
                // The last search, selected: Enter repeats it (older matches), typing replaces it.
                let mut input = Composer::default();
                input.set_selected(&self.last_search);
                self.overlay = Overlay::Prompt { kind: PromptKind::SearchMessages, input, completions: Vec::new() };
            }
            Action::Filter => {
                self.focus = Focus::List;
                self.filtering = true;
            }
            Action::NewDm => self.prompt(PromptKind::NewDm),
            Action::NewGroup => self.prompt(PromptKind::NewGroup),
            Action::JoinChannel => self.prompt(PromptKind::JoinChannel),
            Action::SearchUsers => self.prompt(PromptKind::SearchUsers),
            Action::SearchMessages => self.open_message_search(),
            Action::Mute => {
                let Some(id) = self.open.or_else(|| self.visible().get(self.list_index()).copied()) else { return };
                let muted = if self.muted.remove(&id) {
                    false
                } else {
                    self.muted.insert(id);
                    true
                };
                self.effects.push(Effect::SaveState);
                // The same mute for the account's push notifications (§24.3): the phone is quiet too.
                let level = if muted { v1::PushLevel::None as i32 } else { v1::PushLevel::Unspecified as i32 };
                let req = v1::SetConversationPushSettings { conversation_id: id, level, until_ms: 0 };
                self.net(Command::Request { tag: Tag::Quiet, request: Request::SetConversationPushSettings(req) });
                self.say(if muted { "notifications muted" } else { "notifications on" });
            }
            Action::Pins | Action::Members | Action::AddMember => {
                let Some(id) = self.open else { return self.say("open a conversation first") };
                match a {
                    Action::Pins => {
                        self.request(Purpose::Pins(id), Request::ListPins(v1::ListPins { conversation_id: id }))
                    }
                    Action::Members => {
                        let req = v1::ListMembers { conversation_id: id, after_user_id: 0, limit: 500 };
                        self.request(Purpose::Members(id), Request::ListMembers(req));
                    }
                    _ => self.prompt(PromptKind::AddMember { conversation_id: id }),
                }
            }
            Action::Reply | Action::Edit | Action::Delete | Action::React | Action::Pin => self.message_action(a),
            Action::Attach => self.attach_prompt(),
            Action::Save => self.attachment_key(false),
            Action::OpenAttachment => self.attachment_key(true),
            Action::NextUnread => self.next_unread(),
            Action::FirstUnread => self.jump_to_divider(),
            Action::Command => self.prompt(PromptKind::Command),
            Action::Reconnect => self.reconnect(),
            Action::Yank => self.yank(),
            Action::OpenLink => self.open_link(),
            Action::Editor => self.editor(),
        }
    }

    fn message_action(&mut self, a: Action) {
        let me = self.store.me.user_id;
        let target = if a == Action::Edit && self.selected.is_none() {
            // Edit with nothing selected: our latest message.
            self.open.and_then(|id| {
                let c = self.store.convs.get(&id)?;
                c.messages.values().rev().find(|m| m.sender == me && !m.deleted).map(|m| (id, m.clone()))
            })
        } else {
            self.target()
        };
        let Some((conv, m)) = target else { return self.say("no message selected") };
        if m.deleted {
            return self.say("that message was deleted");
        }
        match a {
            Action::Reply => {
                self.composer.purpose = Compose::Reply { message_id: m.id };
                self.focus = Focus::Composer;
            }
            Action::Edit if m.sender == me => {
                self.begin_edit();
                self.composer.set(&m.text);
                self.composer.purpose = Compose::Edit { message_id: m.id };
                self.focus = Focus::Composer;
            }
            Action::Delete if m.sender == me => {
                self.overlay = Overlay::ConfirmDelete { conversation_id: conv, message_id: m.id };
            }
            Action::Edit | Action::Delete => self.say("only your own messages"),
            Action::React => self.prompt(PromptKind::React { conversation_id: conv, message_id: m.id }),
            Action::Pin => {
                let (conversation_id, message_id) = (conv, m.id);
                let req = if m.pinned {
                    Request::UnpinMessage(v1::UnpinMessage { conversation_id, message_id })
                } else {
                    Request::PinMessage(v1::PinMessage { conversation_id, message_id })
                };
                self.quiet(req);
            }
            _ => {}
        }
    }
}
