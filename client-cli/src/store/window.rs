//! History pages merged into a conversation's loaded messages. What is loaded is one run of the
//! log up to the head, or two: a jump to an old message (a search hit) loads a page around it
//! without everything above it, and leaves a [`Gap`] below the run that reaches the head. Pages
//! fill the gap from either side (GetHistory's `after_seq` from below, `before_seq` from above,
//! docs/protocol.md §13.4) and close it when they meet; a jump elsewhere replaces the old page.

use confab_protocol::v1;

use super::{Conv, Msg, Store};

/// Messages not loaded: those with `after < seq < before`. Below it is the page around the old
/// message (with what was loaded under it), from `before` up the run that reaches the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub after: u64,
    pub before: u64,
    /// A page filling it was asked for.
    pub loading: bool,
}

impl Conv {
    /// Where the run that reaches the head starts: every message from this seq up is loaded.
    fn newest_run_start(&self) -> u64 {
        match self.gap {
            Some(g) => g.before,
            None if self.history_loaded && !self.has_older => 0,
            // Loaded from a page, or live entries only (which run from where they began).
            None => self.oldest_seq().unwrap_or(self.head_seq + 1),
        }
    }

    /// Whether a message at `seq` would be loaded (it is, if it exists and is not above the
    /// head we know).
    pub fn covers(&self, seq: u64) -> bool {
        let above_oldest = !self.has_older || self.oldest_seq().is_some_and(|o| seq >= o);
        self.history_loaded && above_oldest && self.gap.is_none_or(|g| seq <= g.after || seq >= g.before)
    }

    /// Whether messages of the run that reaches the head are loaded (with a gap, the part above
    /// it may have none yet).
    pub fn newest_loaded(&self) -> bool {
        let start = self.newest_run_start();
        self.messages.range(start..).next().is_some()
    }

    fn insert_missing(&mut self, messages: &[v1::Message]) {
        for m in messages {
            if !self.messages.contains_key(&m.seq) {
                self.insert(Msg::from(m));
            }
        }
    }

    /// A page of the newest messages below `before_seq` (0: the latest page).
    fn merge_below(&mut self, before_seq: u64, messages: &[v1::Message], has_more: bool) {
        // The page covers [lo, hi] of the log: everything below it too when nothing older exists.
        let hi = if before_seq == 0 { u64::MAX } else { before_seq - 1 };
        let lo = match messages.first() {
            Some(m) if has_more => m.seq,
            _ => 0,
        };
        let oldest = if self.history_loaded { self.oldest_seq() } else { None };
        let newest = self.newest_run_start();
        if hi.saturating_add(1) >= newest {
            // It reaches the run up to the head: it extends that run down, maybe across the gap.
            if let Some(g) = &mut self.gap {
                if lo <= g.after.saturating_add(1) {
                    self.gap = None;
                } else {
                    g.before = g.before.min(lo);
                    g.loading = false;
                }
            }
        } else {
            let window_lo = if self.has_older { oldest.unwrap_or(u64::MAX) } else { 0 };
            match &mut self.gap {
                // It meets the page below the gap (scrolling it up): that page grows.
                Some(g) if hi.saturating_add(1) >= window_lo && lo <= g.after.saturating_add(1) => {
                    g.after = g.after.max(hi);
                }
                // A page apart from what is loaded: a new gap above it; an earlier jump's page
                // (all below the newest run) goes.
                other => {
                    if other.is_some() {
                        let dropped: Vec<u64> = self.messages.range(..newest).map(|(seq, _)| *seq).collect();
                        for seq in dropped {
                            if let Some(m) = self.messages.remove(&seq) {
                                self.by_id.remove(&m.id);
                            }
                        }
                    }
                    *other = Some(Gap { after: hi, before: newest, loading: false });
                    self.insert_missing(messages);
                    self.has_older = has_more;
                    return self.loaded();
                }
            }
        }
        self.insert_missing(messages);
        // The page reached further down than anything loaded: it says whether older ones exist.
        if lo < oldest.unwrap_or(u64::MAX) {
            self.has_older = has_more;
        }
        self.loaded();
    }

    /// A page of the oldest messages above `after_seq`, asked for to fill the gap from below.
    fn merge_above(&mut self, after_seq: u64, messages: &[v1::Message], has_more: bool) {
        // The gap moved (or closed) since it was asked for: what it brings is loaded or unwanted.
        let Some(g) = self.gap.filter(|g| g.after == after_seq) else { return };
        self.insert_missing(messages);
        let hi = match messages.last() {
            Some(m) if has_more => m.seq,
            _ => u64::MAX,
        };
        self.gap = (hi.saturating_add(1) < g.before).then_some(Gap { after: hi, loading: false, ..g });
    }

    fn loaded(&mut self) {
        self.history_loaded = true;
        self.loading = false;
    }
}

impl Store {
    /// Merges a page of history (messages in their current state), asked for below `before_seq`
    /// or, when `after_seq` is set, above it: only missing messages are inserted, since loaded
    /// ones are kept current by the log.
    pub fn merge_history(
        &mut self,
        conversation_id: u64,
        before_seq: u64,
        after_seq: u64,
        messages: &[v1::Message],
        has_more: bool,
    ) {
        let Some(conv) = self.convs.get_mut(&conversation_id) else { return };
        if after_seq != 0 {
            conv.merge_above(after_seq, messages, has_more);
        } else {
            conv.merge_below(before_seq, messages, has_more);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> v1::Message {
        v1::Message { message_id: 1000 + seq, conversation_id: 1, seq, text: format!("m{seq}"), ..Default::default() }
    }

    fn page(seqs: std::ops::RangeInclusive<u64>) -> Vec<v1::Message> {
        seqs.map(msg).collect()
    }

    fn store(head: u64) -> Store {
        let mut s = Store::default();
        let c = v1::Conversation { conversation_id: 1, head_seq: head, ..Default::default() };
        s.merge_conversation(&c);
        s
    }

    fn seqs(s: &Store) -> Vec<u64> {
        s.convs[&1].messages.keys().copied().collect()
    }

    #[test]
    fn a_jump_leaves_a_gap_that_pages_from_both_sides_close() {
        let mut s = store(1000);
        s.merge_history(1, 0, 0, &page(951..=1000), true);
        assert_eq!(s.convs[&1].gap, None);
        // A hit at 100: the page below 126.
        s.merge_history(1, 126, 0, &page(76..=125), true);
        let c = &s.convs[&1];
        assert_eq!(c.gap, Some(Gap { after: 125, before: 951, loading: false }));
        assert!(c.covers(100) && c.covers(960) && !c.covers(500) && !c.covers(10));
        assert!(c.has_older && c.newest_loaded());
        // From below (after 125), then from above (below 951): they meet.
        s.merge_history(1, 0, 125, &page(126..=600), true);
        assert_eq!(s.convs[&1].gap.map(|g| (g.after, g.before)), Some((600, 951)));
        s.merge_history(1, 951, 0, &page(601..=950), true);
        assert_eq!(s.convs[&1].gap, None);
        assert_eq!(seqs(&s), (76..=1000).collect::<Vec<_>>());
        // Older pages still load below, down to the start.
        s.merge_history(1, 76, 0, &page(1..=75), false);
        assert!(!s.convs[&1].has_older);
        assert_eq!(seqs(&s).len(), 1000);
    }

    #[test]
    fn a_second_jump_replaces_the_first_page() {
        let mut s = store(1000);
        s.merge_history(1, 0, 0, &page(951..=1000), true);
        s.merge_history(1, 126, 0, &page(76..=125), true);
        // A page below the first jump's, not touching it: that one goes.
        s.merge_history(1, 40, 0, &page(1..=39), false);
        let c = &s.convs[&1];
        assert_eq!(c.gap.map(|g| (g.after, g.before)), Some((39, 951)));
        assert!(c.messages.range(40..951).next().is_none() && c.message_by_id(1100).is_none());
        assert!(!c.has_older);
        // Scrolling the page up (older below it): it grows without a new gap.
        let mut s = store(1000);
        s.merge_history(1, 0, 0, &page(951..=1000), true);
        s.merge_history(1, 126, 0, &page(76..=125), true);
        s.merge_history(1, 76, 0, &page(26..=75), true);
        assert_eq!(s.convs[&1].gap.map(|g| (g.after, g.before)), Some((125, 951)));
        assert_eq!(seqs(&s).first(), Some(&26));
    }

    #[test]
    fn a_jump_into_an_unloaded_conversation() {
        // Nothing loaded: a page below the head leaves a gap up to it; the newest run is empty.
        let mut s = store(300);
        s.merge_history(1, 126, 0, &page(76..=125), true);
        let c = &s.convs[&1];
        assert_eq!(c.gap.map(|g| (g.after, g.before)), Some((125, 301)));
        assert!(!c.newest_loaded());
        // The latest page then loads above it; a page below the head that reaches it closes it.
        s.merge_history(1, 0, 0, &page(251..=300), true);
        assert_eq!(s.convs[&1].gap.map(|g| (g.after, g.before)), Some((125, 251)));
        s.merge_history(1, 0, 125, &page(126..=250), false);
        assert_eq!(s.convs[&1].gap, None);
        // A jump above the head is the latest page: no gap.
        let mut s = store(20);
        s.merge_history(1, 46, 0, &page(1..=20), false);
        assert_eq!(s.convs[&1].gap, None);
        assert!(s.convs[&1].covers(5));
    }

    #[test]
    fn stale_pages_are_ignored() {
        let mut s = store(1000);
        s.merge_history(1, 126, 0, &page(76..=125), true);
        // Asked for above 100 before the page grew: the gap is elsewhere now.
        s.merge_history(1, 0, 100, &page(101..=700), true);
        assert_eq!(s.convs[&1].gap.map(|g| g.after), Some(125));
        assert!(!s.convs[&1].messages.contains_key(&700));
    }
}
