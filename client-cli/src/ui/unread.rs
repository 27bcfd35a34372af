//! Unread navigation: the "new messages" divider where the read marker stood when a conversation
//! was opened, the key that jumps to it, and the key that opens the next conversation with unread
//! messages (mentions first) at its first unread message.

use super::app::{App, Divider, MessageAt};

impl App {
    /// Called as conversation `id` is shown, before it is marked read: the divider goes after
    /// its read marker when others wrote since. Showing the conversation already open keeps it.
    pub(crate) fn place_divider(&mut self, id: u64) {
        let Some(c) = self.store.convs.get(&id) else { return };
        if self.open == Some(id) && c.unread == 0 {
            return;
        }
        self.divider =
            (c.unread > 0 && c.read_seq < c.head_seq).then_some(Divider { conversation_id: id, after_seq: c.read_seq });
    }

    /// The seq the "new messages" divider follows in conversation `id`, if it has one.
    pub fn divider_after(&self, id: u64) -> Option<u64> {
        self.divider.filter(|d| d.conversation_id == id).map(|d| d.after_seq)
    }

    /// The jump key: the first message after the divider, selected at the top of the view
    /// (loaded first when it is not).
    pub(crate) fn jump_to_divider(&mut self) {
        let Some(id) = self.open else { return self.say("open a conversation first") };
        let Some(after) = self.divider_after(id) else { return self.say("no new messages here") };
        self.jump_after(id, after);
    }

    /// The next-unread key: the next conversation in the list with unread messages, one that
    /// mentions you first, opened at its first unread message.
    pub(crate) fn next_unread(&mut self) {
        let unread: Vec<&crate::store::Conv> = self
            .store
            .ordered()
            .into_iter()
            .filter(|id| Some(*id) != self.open)
            .filter_map(|id| self.store.convs.get(&id))
            .filter(|c| c.unread > 0)
            .collect();
        let pick = unread.iter().find(|c| c.mentions > 0).or(unread.first()).map(|c| (c.id, c.read_seq));
        let Some((id, read_seq)) = pick else { return self.say("no unread messages") };
        self.jump_after(id, read_seq);
    }

    /// Selects the first message after `after`, anchored at the top of the view so what follows
    /// it shows below; loads a page around it when it is not loaded.
    fn jump_after(&mut self, id: u64, after: u64) {
        let next = after.saturating_add(1);
        let first = self.store.convs.get(&id).and_then(|c| c.messages.range(next..).next().map(|(s, _)| *s));
        let target = first.unwrap_or(next);
        let loaded = first.is_some() && self.store.convs.get(&id).is_some_and(|c| c.covers(next));
        if loaded {
            self.show_conversation(id);
            self.selected = Some(target);
        } else {
            self.open_at(id, target);
        }
        self.view_anchor.set(Some(MessageAt { conversation_id: id, seq: target }));
    }

    /// After a page of history: a selection on a seq that holds no message (a reaction, an edit,
    /// a jump to just after the read marker) moves to the next message.
    pub(crate) fn snap_selection(&mut self, conversation_id: u64) {
        if self.open != Some(conversation_id) {
            return;
        }
        let Some(conv) = self.store.convs.get(&conversation_id) else { return };
        let Some(seq) = self.selected.filter(|s| !conv.messages.contains_key(s)) else { return };
        if let Some((next, _)) = conv.messages.range(seq..).next() {
            let next = *next;
            if self.view_anchor.get() == Some(MessageAt { conversation_id, seq }) {
                self.view_anchor.set(Some(MessageAt { conversation_id, seq: next }));
            }
            self.selected = Some(next);
        }
    }
}
