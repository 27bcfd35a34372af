//! What the user is writing, per conversation: each conversation keeps its own draft (switching
//! away keeps it, switching back restores it, a restart brings it back), and a bracketed paste
//! lands in the composer as one text instead of one message per line.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::app::{App, Effect, Focus, Overlay, Screen};
use super::composer::{Composer, Purpose};

/// A draft as saved in the profile's TUI state: the text, and the message it replies to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDraft {
    pub text: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reply_to: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Line breaks as the composer keeps them: `\r\n` and `\r` (what terminals paste) become `\n`.
pub fn normalize_newlines(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

impl App {
    /// Switches the composer to conversation `to`'s draft, keeping the open conversation's
    /// draft (an edit in progress is dropped: it belongs to the message, not the conversation).
    pub(crate) fn swap_draft(&mut self, to: u64) {
        if self.open == Some(to) {
            return;
        }
        let mine = self.draft_of_open();
        if let Some(from) = self.open
            && !mine.is_empty()
            && !matches!(mine.purpose, Purpose::Edit { .. })
        {
            self.drafts.insert(from, mine);
        }
        self.composer = self.drafts.remove(&to).unwrap_or_default();
        self.stop_typing();
        self.effects.push(Effect::SaveState);
    }

    /// An edit starts: what was being written is set aside, back when the edit ends.
    pub(crate) fn begin_edit(&mut self) {
        if !matches!(self.composer.purpose, Purpose::Edit { .. }) && !self.composer.is_empty() {
            self.set_aside = Some(std::mem::take(&mut self.composer));
        }
    }

    /// The composer's text was sent, saved as an edit, or dropped (Esc on a reply or an edit):
    /// the draft set aside for an edit comes back.
    pub(crate) fn end_compose(&mut self) {
        let edit = matches!(self.composer.purpose, Purpose::Edit { .. });
        self.composer = if edit { self.set_aside.take().unwrap_or_default() } else { Composer::default() };
    }

    /// Takes the open conversation's draft out of the composer (the one set aside, during an
    /// edit).
    fn draft_of_open(&mut self) -> Composer {
        let c = std::mem::take(&mut self.composer);
        match c.purpose {
            Purpose::Edit { .. } => self.set_aside.take().unwrap_or_default(),
            _ => c,
        }
    }

    /// Every draft by conversation, the open one's included, for saving.
    pub fn saved_drafts(&self) -> BTreeMap<u64, SavedDraft> {
        let open_draft = match self.composer.purpose {
            Purpose::Edit { .. } => self.set_aside.as_ref(),
            _ => Some(&self.composer),
        };
        let open = self.open.zip(open_draft);
        self.drafts
            .iter()
            .map(|(id, c)| (*id, c))
            .chain(open)
            .filter(|(_, c)| !c.is_empty() && !matches!(c.purpose, Purpose::Edit { .. }))
            .map(|(id, c)| {
                let reply_to = match c.purpose {
                    Purpose::Reply { message_id } => message_id,
                    _ => 0,
                };
                (id, SavedDraft { text: c.text(), reply_to })
            })
            .collect()
    }

    /// Drafts read back from the profile (before any conversation is open).
    pub fn restore_drafts(&mut self, saved: BTreeMap<u64, SavedDraft>) {
        for (id, d) in saved {
            let mut c = Composer::default();
            c.set(&d.text);
            if d.reply_to != 0 {
                c.purpose = Purpose::Reply { message_id: d.reply_to };
            }
            self.drafts.insert(id, c);
        }
    }

    /// Opens the conversation [`App::reopen`] names, at its selected message, once it is known
    /// and nothing else is open; true when it did.
    pub(crate) fn reopen_last(&mut self) -> bool {
        let Some(r) = self.reopen.filter(|r| self.open.is_none() && self.store.convs.contains_key(&r.conversation_id))
        else {
            return false;
        };
        self.reopen = None;
        match r.selected {
            Some(seq) => self.open_at(r.conversation_id, seq),
            None => self.open_conversation(r.conversation_id),
        }
        true
    }

    /// A bracketed paste: all of it into the composer (a conversation open: it takes the focus),
    /// its first line into a one-line field (sign-in form, prompt, filter). Nothing is sent.
    pub fn on_paste(&mut self, text: &str) {
        let text = normalize_newlines(text);
        let first_line = text.lines().next().unwrap_or_default().to_string();
        if let Screen::Login(f) = &mut self.screen {
            if !f.busy {
                f.field_mut().push_str(&first_line);
            }
            return;
        }
        match &mut self.overlay {
            Overlay::Prompt { input, completions, .. } => {
                input.insert_str(&first_line);
                completions.clear();
                return;
            }
            Overlay::None => {}
            _ => return,
        }
        if self.filtering {
            self.filter.push_str(&first_line);
            self.select_index(0);
            return;
        }
        if self.open.is_none() {
            return self.say("open a conversation first");
        }
        self.focus = Focus::Composer;
        self.composer.insert_str(&text);
        self.typing();
    }
}
