//! Jumps into a conversation's history: opening it at an old message (a search hit) loads a page
//! around it, and the gap that leaves below the newest messages (`store::Gap`) is filled a page
//! at a time as the selection moves onto it, from whichever side it comes.

use super::app::App;
use crate::net::Command;

/// Messages loaded on each side of a message jumped to (at least: a page may hold more below).
pub const JUMP_CONTEXT: u64 = 25;

impl App {
    /// Opens a conversation at the message at `seq`, selected, with the messages around it
    /// loaded when they are not yet.
    pub fn open_at(&mut self, id: u64, seq: u64) {
        self.show_conversation(id);
        self.selected = Some(seq);
        // The page below seq + 26 holds the message: at most 25 messages lie between.
        let limit = self.history_page.max(2 * JUMP_CONTEXT as u32 + 1);
        let Some(c) = self.store.convs.get_mut(&id) else { return };
        // Loaded, or above the head we know: its entry is on its way.
        if c.covers(seq) {
            return;
        }
        c.loading = true;
        let before_seq = seq + JUMP_CONTEXT + 1;
        self.net(Command::History { conversation_id: id, before_seq, after_seq: 0, limit });
    }

    /// Moving the selection from index `cur` to `next` of `seqs` (the open conversation's loaded
    /// messages; `seqs.len()` stands for "following the newest") across its gap: where it stops
    /// instead, at the gap's edge, with the gap's next page asked for.
    pub(crate) fn stop_at_gap(&mut self, seqs: &[u64], cur: i64, next: i64) -> Option<u64> {
        let id = self.open?;
        let gap = self.store.convs.get(&id)?.gap?;
        let seq_at = |i: i64| seqs.get(i.max(0) as usize).copied().unwrap_or(u64::MAX);
        let (from, to) = (seq_at(cur), seq_at(next));
        let stop = if from <= gap.after && to >= gap.before {
            seqs.iter().rev().find(|s| **s <= gap.after)
        } else if from >= gap.before && to <= gap.after {
            seqs.iter().find(|s| **s >= gap.before)
        } else {
            None
        }
        .copied()?;
        self.fill_gap(id, stop <= gap.after);
        Some(stop)
    }

    /// Asks for the page of the gap next to the page below it (`from_below`) or above it.
    fn fill_gap(&mut self, id: u64, from_below: bool) {
        let limit = self.history_page;
        let Some(gap) = self.store.convs.get_mut(&id).and_then(|c| c.gap.as_mut()) else { return };
        if gap.loading {
            return;
        }
        gap.loading = true;
        // after_seq 0 would mean "the latest page": from just below the newest run instead.
        let (before_seq, after_seq) = if from_below && gap.after > 0 { (0, gap.after) } else { (gap.before, 0) };
        self.net(Command::History { conversation_id: id, before_seq, after_seq, limit });
    }

    /// The bottom key in the message pane: follow the newest messages, loading them when a jump
    /// left none.
    pub(crate) fn follow_newest(&mut self) {
        self.selected = None;
        let page = self.history_page;
        let Some(id) = self.open else { return };
        if let Some(c) = self.store.convs.get_mut(&id)
            && c.gap.is_some()
            && !c.newest_loaded()
            && !c.loading
        {
            c.loading = true;
            self.net(Command::History { conversation_id: id, before_seq: 0, after_seq: 0, limit: page });
        }
    }
}
