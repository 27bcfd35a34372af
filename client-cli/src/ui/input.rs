//! Keys: the sign-in form, prompts and popups, insert mode in the composer, and normal-mode
//! actions through the keymap.

use confab_protocol::v1::{self, ConversationKind, client_frame::Request};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Effect, Focus, Overlay, PromptKind, Purpose, Screen, search};
use super::composer::{Composer, Purpose as Compose};
use crate::net::{Command, Outgoing, Tag, new_client_msg_id};
use crate::store::Pending;

/// Send SetTyping(true) again after this long while typing.
const TYPING_REFRESH_MS: u64 = 3_000;

fn ctrl(k: &KeyEvent, c: char) -> bool {
    k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char(c)
}

/// Edits a buffer with the usual keys; false when the key is not an editing key.
pub(super) fn edit(buf: &mut Composer, k: &KeyEvent) -> bool {
    match k.code {
        _ if ctrl(k, 'w') => buf.delete_word(),
        _ if ctrl(k, 'u') => buf.delete_line(),
        _ if ctrl(k, 'a') => buf.home(),
        _ if ctrl(k, 'e') => buf.end(),
        KeyCode::Char(c) if !k.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) => buf.insert(c),
        KeyCode::Backspace => buf.backspace(),
        KeyCode::Delete => buf.delete(),
        KeyCode::Left => buf.left(),
        KeyCode::Right => buf.right(),
        KeyCode::Home => buf.home(),
        KeyCode::End => buf.end(),
        _ => return false,
    }
    true
}

impl App {
    /// Handles one key press.
    pub fn on_key(&mut self, k: KeyEvent) {
        if ctrl(&k, 'c') {
            self.quit = true;
            return;
        }
        if let Screen::Login(_) = self.screen {
            return self.login_key(&k);
        }
        if !matches!(self.overlay, Overlay::None) {
            return self.overlay_key(&k);
        }
        if self.filtering {
            return self.filter_key(&k);
        }
        if self.focus == Focus::Composer {
            return self.composer_key(&k);
        }
        if let Some(a) = self.keymap.action(&k) {
            self.action(a);
        }
    }

    fn login_key(&mut self, k: &KeyEvent) {
        let Screen::Login(f) = &mut self.screen else { return };
        if f.busy {
            return;
        }
        let n = f.fields();
        match k.code {
            KeyCode::Esc => self.quit = true,
            KeyCode::Tab | KeyCode::Down => f.field = (f.field + 1) % n,
            KeyCode::BackTab | KeyCode::Up => f.field = (f.field + n - 1) % n,
            _ if ctrl(k, 'r') => {
                f.register = !f.register;
                f.field = f.field.min(f.fields() - 1);
            }
            KeyCode::Enter if f.field + 1 < n => f.field += 1,
            KeyCode::Enter => {
                if f.username.is_empty() || f.password.is_empty() {
                    f.error = Some("enter a username and a password".into());
                    return;
                }
                if f.register && f.confirm != f.password {
                    f.error = Some("the two passwords differ: type the password again".into());
                    f.confirm.clear();
                    f.field = 2;
                    return;
                }
                f.busy = true;
                f.error = None;
                let e =
                    Effect::Login { username: f.username.clone(), password: f.password.clone(), register: f.register };
                self.effects.push(e);
            }
            KeyCode::Backspace => {
                f.field_mut().pop();
            }
            KeyCode::Char(c) if !k.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) => {
                f.field_mut().push(c);
            }
            _ => {}
        }
    }

    fn filter_key(&mut self, k: &KeyEvent) {
        match k.code {
            KeyCode::Esc => {
                self.filter.clear();
                self.filtering = false;
            }
            KeyCode::Enter => {
                self.filtering = false;
                if let Some(id) = self.visible().first().copied() {
                    self.open_conversation(id);
                }
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => self.filter.push(c),
            _ => {}
        }
        self.select_index(0);
    }

    fn overlay_key(&mut self, k: &KeyEvent) {
        if k.code == KeyCode::Tab && matches!(self.overlay, Overlay::Prompt { .. }) {
            return self.tab_complete();
        }
        if matches!(self.overlay, Overlay::MessageSearch) {
            return self.message_search_key(k);
        }
        if matches!(self.overlay, Overlay::Links { .. }) {
            return self.links_key(k);
        }
        match &mut self.overlay {
            Overlay::None | Overlay::MessageSearch | Overlay::Links { .. } => {}
            Overlay::Help { scroll } => {
                let page = (self.view_height.get() / 2).max(1);
                let s = scroll.get();
                match k.code {
                    KeyCode::Esc | KeyCode::Char('q') | KeyCode::Char('?') | KeyCode::Enter => {
                        self.overlay = Overlay::None
                    }
                    KeyCode::Down | KeyCode::Char('j') => scroll.set(s.saturating_add(1)),
                    KeyCode::Up | KeyCode::Char('k') => scroll.set(s.saturating_sub(1)),
                    KeyCode::PageDown | KeyCode::Char(' ') => scroll.set(s.saturating_add(page)),
                    _ if ctrl(k, 'd') || ctrl(k, 'f') => scroll.set(s.saturating_add(page)),
                    KeyCode::PageUp => scroll.set(s.saturating_sub(page)),
                    _ if ctrl(k, 'u') || ctrl(k, 'b') => scroll.set(s.saturating_sub(page)),
                    KeyCode::Char('g') | KeyCode::Home => scroll.set(0),
                    KeyCode::Char('G') | KeyCode::End => scroll.set(u16::MAX),
                    _ => {}
                }
            }
            Overlay::ConfirmDelete { conversation_id, message_id } => {
                if matches!(k.code, KeyCode::Char('y') | KeyCode::Char('Y')) {
                    let req = v1::DeleteMessage { conversation_id: *conversation_id, message_id: *message_id };
                    self.overlay = Overlay::None;
                    self.quiet(Request::DeleteMessage(req));
                } else {
                    self.overlay = Overlay::None;
                }
            }
            Overlay::List { items, selected, members, .. } => match k.code {
                KeyCode::Esc | KeyCode::Char('q') => self.overlay = Overlay::None,
                KeyCode::Char('x') if members.is_some() => {
                    let (conversation_id, user) =
                        (members.unwrap_or_default(), items.get(*selected).and_then(|i| i.user));
                    self.overlay = Overlay::None;
                    if let Some(user_id) = user {
                        self.quiet(Request::RemoveMember(v1::RemoveMember { conversation_id, user_id }));
                    }
                }
                KeyCode::Down | KeyCode::Char('j') => *selected = (*selected + 1).min(items.len().saturating_sub(1)),
                KeyCode::Up | KeyCode::Char('k') => *selected = selected.saturating_sub(1),
                KeyCode::Enter => {
                    let user = items.get(*selected).and_then(|i| i.user);
                    self.overlay = Overlay::None;
                    if let Some(id) = user.filter(|id| *id != self.store.me.user_id) {
                        self.create(ConversationKind::Direct, String::new(), vec![id]);
                    }
                }
                _ => {}
            },
            Overlay::Prompt { kind, input, completions } => match k.code {
                KeyCode::Esc => self.overlay = Overlay::None,
                KeyCode::Enter => {
                    let (kind, text) = (*kind, input.text().trim().to_string());
                    self.overlay = Overlay::None;
                    if !text.is_empty() {
                        self.submit_prompt(kind, text);
                    }
                }
                _ => {
                    if edit(input, k) {
                        completions.clear();
                    }
                }
            },
            Overlay::Attachments { conversation_id, message_id, selected, open } => {
                let (conv, id, open) = (*conversation_id, *message_id, *open);
                let attachments = self
                    .store
                    .convs
                    .get(&conv)
                    .and_then(|c| c.message_by_id(id))
                    .map(|m| m.attachments.clone())
                    .unwrap_or_default();
                match k.code {
                    KeyCode::Down | KeyCode::Char('j') => {
                        *selected = (*selected + 1).min(attachments.len().saturating_sub(1));
                    }
                    KeyCode::Up | KeyCode::Char('k') => *selected = selected.saturating_sub(1),
                    KeyCode::Enter => {
                        let pick = attachments.get(*selected).cloned();
                        self.overlay = Overlay::None;
                        if let Some(a) = pick {
                            self.fetch_attachment(&a, open);
                        }
                    }
                    KeyCode::Esc | KeyCode::Char('q') => self.overlay = Overlay::None,
                    _ => {}
                }
            }
        }
    }

    pub(crate) fn submit_prompt(&mut self, kind: PromptKind, text: String) {
        match kind {
            PromptKind::NewDm => {
                let name = text.trim_start_matches('@').to_string();
                self.request(Purpose::DmWith(name.clone()), search(&name));
            }
            PromptKind::NewGroup => {
                // Shell-style words: "release crew" bob is a name with a space and one member.
                let Some(mut words) = shlex::split(&text).map(Vec::into_iter) else {
                    return self.say("unbalanced quote: write \"a name with spaces\" user…");
                };
                let title = words.next().unwrap_or_default();
                self.group_step(title, words.collect(), Vec::new());
            }
            PromptKind::JoinChannel => match text.strip_prefix('+') {
                Some(title) => self.create(ConversationKind::Channel, title.trim().to_string(), Vec::new()),
                None => {
                    let req = v1::DiscoverChannels { query: text.clone(), after_conversation_id: 0, limit: 100 };
                    self.request(Purpose::Join(text), Request::DiscoverChannels(req));
                }
            },
            PromptKind::SearchUsers => self.request(Purpose::Search, search(&text)),
            PromptKind::SearchMessages => self.search_messages(text),
            PromptKind::React { conversation_id, message_id } => {
                // `:thumbsup:`, `+1` and 👍 are one emoji, sent and counted as 👍.
                let Some(emoji) = crate::emoji::parse(&text) else {
                    return self.say(format!("{text:?} is not an emoji or a :shortcode: (:thumbsup:, :tada:)"));
                };
                let text = emoji.to_string();
                let mine = self
                    .store
                    .convs
                    .get(&conversation_id)
                    .and_then(|c| c.message_by_id(message_id))
                    .is_some_and(|m| m.reactions.iter().any(|r| r.emoji == text && r.me));
                let req = if mine {
                    Request::Unreact(v1::Unreact { conversation_id, message_id, emoji: text })
                } else {
                    Request::React(v1::React { conversation_id, message_id, emoji: text })
                };
                self.quiet(req);
            }
            PromptKind::AddMember { conversation_id } => {
                let name = text.trim_start_matches('@').to_string();
                self.request(Purpose::AddMember { conversation_id, name: name.clone() }, search(&name));
            }
            PromptKind::AttachFile { conversation_id } => self.attach(conversation_id, &text),
            PromptKind::Command => self.command(&text),
        }
    }

    /// Selects the newest loaded message matching `text` (case-insensitive) above the selection;
    /// searching the same text again finds older matches.
    fn search_messages(&mut self, text: String) {
        let Some(conv) = self.open.and_then(|id| self.store.convs.get(&id)) else { return };
        let needle = text.to_lowercase();
        let below = if text == self.last_search { self.selected.unwrap_or(u64::MAX) } else { u64::MAX };
        let found = conv
            .messages
            .range(..below)
            .rev()
            .find(|(_, m)| !m.deleted && m.text.to_lowercase().contains(&needle))
            .map(|(seq, _)| *seq);
        let older = conv.has_older;
        self.last_search = text;
        match found {
            Some(seq) => self.selected = Some(seq),
            None if older => self.say("no more matches in what is loaded: scroll up (k, g) to load older messages"),
            None => self.say("no match"),
        }
    }

    fn composer_key(&mut self, k: &KeyEvent) {
        let newline = (k.code == KeyCode::Enter && k.modifiers.contains(KeyModifiers::ALT)) || ctrl(k, 'j');
        // A terminal sends Esc then a key typed quickly after it as Alt-key: treat it as both.
        // (Shift stays: Esc then `D` comes as Alt-Shift-D.)
        if let KeyCode::Char(c) = k.code
            && k.modifiers - KeyModifiers::SHIFT == KeyModifiers::ALT
        {
            self.composer_key(&KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
            let plain = KeyEvent::new(KeyCode::Char(c), k.modifiers - KeyModifiers::ALT);
            if let Some(a) = self.keymap.action(&plain) {
                self.action(a);
            }
            return;
        }
        match k.code {
            KeyCode::Esc => {
                self.focus = if self.open.is_some() { Focus::Messages } else { Focus::List };
                if self.composer.purpose != Compose::New {
                    self.end_compose();
                }
                self.stop_typing();
            }
            _ if newline => self.composer.insert('\n'),
            // The external editor, keeping what the text is for (a reply, an edit).
            _ if ctrl(k, 'x') => self.editor(),
            KeyCode::Enter => self.submit(),
            _ => {
                if edit(&mut self.composer, k) {
                    self.typing();
                }
            }
        }
    }

    /// Tells the others we type, at most every few seconds.
    pub(crate) fn typing(&mut self) {
        let Some(conv) = self.open else { return };
        if self.composer.is_empty() {
            return self.stop_typing();
        }
        if self.typing_sent.is_some_and(|(c, at)| c == conv && self.now_ms < at + TYPING_REFRESH_MS) {
            return;
        }
        self.typing_sent = Some((conv, self.now_ms));
        let req = Request::SetTyping(v1::SetTyping { conversation_id: conv, typing: true });
        self.net(Command::Request { tag: Tag::Silent, request: req });
    }

    pub(crate) fn stop_typing(&mut self) {
        if let Some((conv, _)) = self.typing_sent.take() {
            let req = Request::SetTyping(v1::SetTyping { conversation_id: conv, typing: false });
            self.net(Command::Request { tag: Tag::Silent, request: req });
        }
    }

    /// Enter in the composer: send, reply or save an edit.
    fn submit(&mut self) {
        let Some(conv) = self.open else { return };
        let text = self.composer.text().trim_end().to_string();
        if text.trim().is_empty() {
            return;
        }
        match self.composer.purpose.clone() {
            Compose::Edit { message_id } => {
                let req = v1::EditMessage { conversation_id: conv, message_id, text };
                self.quiet(Request::EditMessage(req));
            }
            purpose => {
                let reply_to = match purpose {
                    Compose::Reply { message_id } => message_id,
                    _ => 0,
                };
                let mentions = self.mentions(&text);
                let client_msg_id = new_client_msg_id();
                let pending = Pending {
                    client_msg_id: client_msg_id.clone(),
                    text: text.clone(),
                    reply_to,
                    created_ms: self.now_ms,
                    attachments: Vec::new(),
                    seq: None,
                    failed: None,
                };
                self.store.add_pending(conv, pending);
                let attachments = Vec::new();
                let written_ms = self.now_ms;
                let out = Outgoing {
                    conversation_id: conv,
                    client_msg_id,
                    text,
                    reply_to,
                    mentions,
                    attachments,
                    written_ms,
                };
                self.net(Command::Send(out));
            }
        }
        self.end_compose();
        self.stop_typing();
        self.selected = None;
    }

    /// Users named `@username` in the text, among the users we know.
    fn mentions(&self, text: &str) -> Vec<u64> {
        let mut ids: Vec<u64> = text
            .split_whitespace()
            .filter_map(|w| w.strip_prefix('@'))
            .map(|w| w.trim_end_matches(|c: char| !c.is_alphanumeric() && c != '_'))
            .filter_map(|name| self.store.users.values().find(|u| u.username.eq_ignore_ascii_case(name)))
            .map(|u| u.user_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub(crate) fn prompt(&mut self, kind: PromptKind) {
        self.overlay = Overlay::Prompt { kind, input: Composer::default(), completions: Vec::new() };
    }
}
